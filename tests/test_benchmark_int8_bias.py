"""benchmarks/int8_bias.py: pairing of the off/on exports, de-duplication and the summary (no export)."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def int8_bias():
    return load_benchmark("int8_bias")


def _sidecar(name, keras_acc, drop, agreement, role="student", applied=None):
    side = {"name": name, "role": role, "converter": {},
            "check": {"keras": {"accuracy": keras_acc, "balanced_accuracy": 0.5, "macro_f1": 0.4},
                      "max_abs_logit_diff": 0.5, "accuracy_drop": drop, "balanced_accuracy_drop": drop / 2,
                      "agreement": agreement}}
    if applied is not None:
        side["converter"]["bias_correction"] = {"applied": applied, "mean_error_before": [0.1, -0.2]}
    return side


def _write(work, mode, *sides):
    (work / mode).mkdir(parents=True, exist_ok=True)
    for s in sides:
        (work / mode / f"{s['name']}.int8.json").write_text(json.dumps(s))


def test_rows_pair_off_and_on_and_skip_teachers(int8_bias, tmp_path):
    _write(tmp_path, "off", _sidecar("student_alone", 0.6, 2.0, 0.93), _sidecar("teacher_x", 0.7, 1.0, 0.9, "teacher"))
    _write(tmp_path, "on", _sidecar("student_alone", 0.6, 0.2, 0.98, applied=True),
           _sidecar("teacher_x", 0.7, 0.5, 0.95, "teacher", applied=True))
    rows = int8_bias.compare(tmp_path / "run", tmp_path)
    assert [r["model"] for r in rows] == ["student_alone"]
    assert rows[0]["off"]["accuracy_drop"] == 2.0 and rows[0]["on"]["accuracy_drop"] == 0.2
    assert rows[0]["applied"] is True and rows[0]["largest_mean_logit_error"] == 0.2


def test_summary_counts_gate_failures_and_renders(int8_bias):
    rows = [{"run": "r", "model": f"m{i}", "applied": True, "largest_mean_logit_error": 0.1,
             "off": {"accuracy_drop": off, "balanced_accuracy_drop": 0.0, "agreement": 0.95},
             "on": {"accuracy_drop": on, "balanced_accuracy_drop": 0.0, "agreement": 0.99}}
            for i, (off, on) in enumerate([(3.0, 0.1), (0.7, 0.6), (-0.2, 1.2)])]
    s = int8_bias.summarize(rows)
    assert s["students"] == 3
    assert s["off"]["over_1pt"] == 1 and s["on"]["over_1pt"] == 1
    assert s["off"]["over_half_pt"] == 2 and s["on"]["over_half_pt"] == 2
    assert s["off"]["max_accuracy_drop"] == 3.0 and s["on"]["mean_accuracy_drop"] == pytest.approx(0.633, abs=1e-3)
    md = int8_bias.render(rows, s, "python benchmarks/int8_bias.py r")
    assert "| r | m0 | +3.00 -> +0.10 |" in md and "| students over 1.0 point (the default --max-drop) | 1 | 1 |" in md
