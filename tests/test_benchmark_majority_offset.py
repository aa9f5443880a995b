"""benchmarks/majority_offset.py: majority_offset_rule.md applied to bench records (kdtool's steps faked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark

KD, ALONE = "student_efficientnet_lite0", "student_alone"


@pytest.fixture(scope="module")
def mo():
    return load_benchmark("majority_offset")


def _fake_kdtool(results: dict):
    """A stand-in for calibrated_floor.kdtool: export writes both sidecars, bench the test records, both
    from ``results`` {(student, offset): (acc, bal, mel)}."""
    calls = []

    def kdtool(*args, log, ok=(0,)):  # noqa: ARG001 - the real one's signature
        calls.append(args)
        if args[0] == "export":
            out = Path(args[args.index("--out") + 1])
            c = float(args[args.index("--majority-offset") + 1])
            out.mkdir(parents=True)
            for name in (KD, ALONE):
                point = {"prior_shift": 0.0, "melanoma_sensitivity": {"offset": 0.5, "target": 0.7}}
                if c:
                    point["majority_offset"] = {"class": "nv", "offset": c, "train_share": 0.67}
                (out / f"{name}.int8.json").write_text(json.dumps(
                    {"name": name, "operating_point": point,
                     "check": {"keras": {"balanced_accuracy": 0.7}, "passed": True}}))
        else:
            out = Path(args[1])
            c = float(out.name.split("_")[1][3:])
            recs = []
            for name in (KD, ALONE):
                acc, bal, mel = results[(name, c)]
                recs.append({"model": f"{name}.int8.tflite", "size_bytes": 163_832, "accuracy": acc,
                             "balanced_accuracy": bal, "macro": {"f1": 0.55}, "melanoma_sensitivity": mel,
                             "roc_auc_macro": 0.93})
            (out / "bench_test.json").write_text(json.dumps(recs))
    return kdtool, calls


def _results(seed):
    return {(KD, 0.0): (0.70, 0.66, 0.62), (KD, 1.25): (0.75 + 0.005 * seed, 0.64, 0.63),
            (ALONE, 0.0): (0.67, 0.62, 0.70), (ALONE, 1.25): (0.72, 0.60 - 0.01 * seed, 0.70)}


def _run(mo, monkeypatch, tmp_path, seeds=(0, 1, 2)):
    rows = []
    for s in seeds:
        fake, calls = _fake_kdtool(_results(s))
        monkeypatch.setattr(mo, "kdtool", fake)
        run = tmp_path / "runs" / f"s{s}"
        run.mkdir(parents=True, exist_ok=True)
        (run / "run.json").write_text("{}")
        rows += mo.one_seed("data", run, s, tmp_path / "work" / f"s{s}", [0.0, 1.25], 0.7)
    return rows, calls


def test_rows_carry_each_offset_as_the_export_label(mo, monkeypatch, tmp_path):
    rows, calls = _run(mo, monkeypatch, tmp_path)
    assert len(rows) == 12 and {r["label"] for r in rows} == {"0", "1.25"}
    r = next(r for r in rows if r["seed"] == 2 and r["student"] == KD and r["label"] == "1.25")
    assert r["majority_offset"] == 1.25 and r["test"]["accuracy"] == pytest.approx(0.76) and r["tau"] == 0.0
    assert next(r for r in rows if r["label"] == "0")["majority_offset"] == 0.0
    export = calls[0]
    assert export[export.index("--melanoma-sensitivity") + 1] == "0.7"
    assert export[export.index("--prior-shift") + 1] == "0"
    # a second pass reuses every bench JSON: kdtool is not called again
    again, calls = _run(mo, monkeypatch, tmp_path)
    assert calls == [] and again == rows


def test_the_candidate_is_judged_against_the_student_alone_at_the_same_offset(mo, monkeypatch, tmp_path):
    rows, _ = _run(mo, monkeypatch, tmp_path)
    d = mo.decide(rows, KD, ALONE, export="1.25")
    assert d["adopt"] and d["criteria"][1]["seeds_meeting"] == [0, 1, 2]
    # gains 0.04, 0.05, 0.06 against the alone student's spread of 0.01
    assert d["criteria"][3]["paired_gain"]["mean"] == pytest.approx(0.05)
    assert not mo.decide(rows, KD, ALONE, export="0")["adopt"]  # accuracy 70
    pooled = mo.decide(rows, KD, ALONE, export="1.25", min_meeting=3)
    assert pooled["adopt"] and pooled["criteria"][1]["name"] == "at least 3 seeds meet all three"
    assert not mo.decide([r for r in rows if not (r["seed"] == 2 and r["student"] == KD and r["label"] == "1.25")]
                         + [{**r, "test": {**r["test"], "accuracy": 0.70}} for r in rows
                            if r["seed"] == 2 and r["student"] == KD and r["label"] == "1.25"],
                         KD, ALONE, export="1.25", min_meeting=3)["criteria"][1]["passed"]
    doc = {"command": "c", "machine_line": "m", "seeds": [0, 1, 2], "table": mo.table(rows), "results": rows,
           "decision": d, "candidate": 1.25, "melanoma_sensitivity": 0.7, "rule": "majority_offset_rule.md",
           "wall_seconds": 1.0}
    md = mo.render(doc)
    assert md.startswith("# `kdtool export --majority-offset 1.25` as the default? (majority_offset_rule.md)")
    assert "| student_efficientnet_lite0 | 1.25 | 75.5 ± 0.5 | 64.0 ± 0.0 |" in md
    assert "## Verdict: adopt --majority-offset 1.25 --melanoma-sensitivity 0.7" in md
    other = mo.render({**doc, "rule": "kd_balance_rule.md", "adopts": "kdtool distill --kd-balance weights"})
    assert other.startswith("# Adopt `kdtool distill --kd-balance weights`? (kd_balance_rule.md)")
    assert "## Verdict: adopt kdtool distill --kd-balance weights" in other
    refused = {**doc, "decision": {**d, "adopt": False}}
    assert "## Verdict: keep export's defaults" in mo.render(refused)
    assert "## Verdict: keep the defaults" in mo.render({**refused, "adopts": "kdtool distill --kd-balance weights"})
    assert "| 2 | student_alone | 1.25 | 70.0 | +0.50 | 72.0 | 58.0 | 70.0 |" in md
    bare = mo.render({**doc, "rule": "", "decision": None})
    assert "table only: no rule judges these seeds" in bare and "Verdict" not in bare


@pytest.mark.parametrize("argv, message", [
    (["--offsets", "0,x"], "--offsets must be comma-separated numbers"),
    (["--offsets", "0,-1"], "--offsets must be numbers >= 0"),
    (["--offsets", "0,1", "--candidate", "1.25"], "--candidate 1.25 must be one of --offsets"),
    (["--melanoma-sensitivity", "0"], "--melanoma-sensitivity must lie in (0, 1]"),
    (["--min-meeting", "3"], "--min-meeting must lie in [1, 1] (the number of seeds), got 3"),
    (["--min-meeting", "0"], "--min-meeting must lie in [1, 1] (the number of seeds), got 0"),
])
def test_main_names_the_bad_option(mo, tmp_path, capsys, argv, message):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        mo.main(["--runs", str(tmp_path), "--seeds", "0", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err
