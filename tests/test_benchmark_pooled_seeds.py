"""benchmarks/pooled_seeds.py: prior_shift_default.py pages pooled over their seeds (records, no model)."""

from __future__ import annotations

import doctest
import json

import pytest
from conftest import load_benchmark

KD, ALONE = "student_efficientnet_lite0", "student_alone"


@pytest.fixture(scope="module")
def ps():
    return load_benchmark("pooled_seeds")


def _row(seed, student, tau, acc, bal=0.62, mel=0.61, export="fixed"):
    return {"seed": seed, "student": student, "tau": tau, "export": export,
            "test": {"accuracy": acc, "balanced_accuracy": bal, "macro_f1": 0.5, "melanoma_sensitivity": mel,
                     "roc_auc": 0.93}}


def _page(tmp_path, name, seeds, taus=(0.0, 0.5)):
    rows = [_row(s, KD, t, 0.70 + 0.1 * t + 0.01 * s) for s in seeds for t in taus]
    rows += [_row(s, ALONE, t, 0.72 + 0.01 * s, mel=0.55) for s in seeds for t in taus]
    rows += [_row(s, KD, 0.5, 0.9, export="auto") for s in seeds]  # auto rows are not pooled
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"results": rows, "melanoma_sensitivity": 0.7, "data": "D", "machine_line": "m"}))
    return path


def test_docstring_examples(ps):
    assert doctest.testmod(ps).failed == 0


def test_pages_pool_by_seed_and_only_shifts_every_page_has(ps, tmp_path):
    a, b = _page(tmp_path, "a", (0, 1)), _page(tmp_path, "b", (2,), taus=(0.5,))
    md, js = tmp_path / "p.md", tmp_path / "p.json"
    assert ps.main(["--pages", f"{a},{b}", "--json", str(js), "--md", str(md)]) == 0
    doc = json.loads(js.read_text())
    assert [p["seeds"] for p in doc["pages"]] == [[0, 1], [2]]
    (rec,) = doc["pooled"]  # shift 0 is missing on seed 2: left out, not pooled over fewer seeds
    assert rec["shift"] == "0.5" and rec["seeds"] == [0, 1, 2]
    acc = rec["accuracy"]
    assert acc["student"]["mean"] == pytest.approx(0.76) and acc["baseline"]["mean"] == pytest.approx(0.73)
    assert acc["gain"]["mean"] == pytest.approx(0.03) and acc["gain_positive"] == 3
    assert rec["meet"] == {"student": 3, "baseline": 0}  # the alone rows find 55% of melanomas
    text = md.read_text()
    assert "| 0.5 | accuracy | 76.0 ± 1.0 | 73.0 ± 1.0 | +3.0 ± 0.0 | 3 of 3 |" in text
    assert "| 0.5 | meet all three | 3 of 3 | 0 of 3 | | |" in text


def test_a_seed_on_two_pages_or_an_unreadable_page_is_refused(ps, tmp_path):
    a, b = _page(tmp_path, "a", (0, 1)), _page(tmp_path, "b", (1, 2))
    with pytest.raises(SystemExit, match=r"b\.json: seed\(s\) \[1\] already come from .*a\.json"):
        ps.load_pages([str(a), str(b)])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="bad.json: not a prior_shift_default.py page"):
        ps.load_pages([str(bad)])
