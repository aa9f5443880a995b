"""benchmarks/calibrated_floor.py: the prior-shift rule and the per-student summary (records, no model)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def cf():
    return load_benchmark("calibrated_floor")


def _row(seed, tau, val_bal, acc):
    test = {"accuracy": acc, "balanced_accuracy": 0.6, "macro_f1": 0.5, "melanoma_sensitivity": 0.62, "roc_auc": 0.93}
    return {"seed": seed, "student": "s", "tau": tau, "val_balanced_accuracy": val_bal, "size_bytes": 1000 + seed,
            "test": test}


def test_rule_and_docstring_examples(cf):
    assert doctest.testmod(cf).failed == 0
    assert cf.chosen_tau([_row(0, 0.0, 0.7, 0.7), _row(0, 0.25, 0.6, 0.72), _row(0, 0.5, 0.599, 0.75)], 0.6) == 0.25


def test_summary_takes_each_seeds_own_tau_and_reports_fixed_taus_beside_it(cf):
    rows = [_row(0, 0.0, 0.66, 0.70), _row(0, 0.5, 0.63, 0.76), _row(1, 0.0, 0.64, 0.68), _row(1, 0.5, 0.58, 0.74)]
    summary = {s["tau"]: s for s in cf.summarise(rows, 0.60)}
    assert set(summary) == {"rule", "0", "0.5"}
    rule = summary["rule"]
    assert rule["taus"] == [0.5, 0.0] and rule["size_bytes"] == 1001
    # seed 0 at 0.5 (0.76), seed 1 at 0 (0.68); std over seeds with ddof=1, as the other benchmark tables
    assert rule["test"]["accuracy"] == pytest.approx((0.72, 0.08 / 2 ** 0.5))
    assert summary["0.5"]["test"]["accuracy"] == pytest.approx((0.75, 0.02 / 2 ** 0.5))
    assert "| s | rule | 0.5, 0 | 72.0 ± 5.7 |" in cf.render(
        {"command": "c", "machine_line": "m", "variant": "v", "teachers": "t", "folds": 3, "seeds": [0, 1],
         "min_val_balanced": 0.6, "summary": cf.summarise(rows, 0.6), "wall_seconds": 1.0,
         "results": [{**r, "offset": 0.1, "chosen_on": "oof"} for r in rows]})


def test_main_refuses_mismatched_lists_and_a_folder_without_run_json(cf, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cf.main(["--runs", "a,b", "--seeds", "0"])
    assert exc.value.code == 2 and "one entry per seed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cf.main(["--runs", str(tmp_path), "--seeds", "0"])
    assert exc.value.code == 2 and "no run.json" in capsys.readouterr().err


def test_one_seed_without_folds_passes_a_floor_target_and_keeps_its_exports_apart(cf, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    calls = []

    def fake_kdtool(*args, log, ok=(0,)):  # noqa: ARG001 - the signature of calibrated_floor.kdtool
        calls.append(args)
        if args[0] == "bench":
            out = Path(args[1])
            rec = {"model": "s.int8.tflite", "size_bytes": 10, "accuracy": 0.7, "balanced_accuracy": 0.6,
                   "macro": {"f1": 0.5}, "melanoma_sensitivity": 0.6, "roc_auc_macro": 0.9}
            (out / "s.int8.json").write_text(json.dumps({
                "name": "s", "operating_point": {"prior_shift": 0.5, "melanoma_sensitivity": {"offset": 0.2,
                                                                                              "chosen_on": "val"}},
                "check": {"keras": {"balanced_accuracy": 0.6}, "tflite": {"accuracy": 0.7}, "passed": True}}))
            Path(args[args.index("--json") + 1]).write_text(json.dumps([rec]))
        else:
            Path(args[args.index("--out") + 1]).mkdir(parents=True)

    monkeypatch.setattr(cf, "kdtool", fake_kdtool)
    monkeypatch.setattr(cf, "distill_logged", lambda *a, **k: pytest.fail("no folds: nothing to distil"))
    rows = cf.one_seed("D", run, 0, None, tmp_path / "w", "v", "t", 0, [0.5], "val", 0.7)
    exports = [c for c in calls if c[0] == "export"]
    assert [c[c.index("--out") + 1].rsplit("/", 1)[1] for c in exports] == ["export_val_t0.5_mel0.7",
                                                                            "export_val_auto_mel0.7"]
    assert all(c[c.index("--melanoma-sensitivity") + 1] == "0.7" for c in exports)
    assert [r["tau"] for r in rows] == [0.5, 0.5] and rows[0]["offset"] == 0.2
    calls.clear()
    cf.one_seed("D", run, 0, None, tmp_path / "w", "v", "t", 0, [0.5], "val")  # export's default when measured
    exports = [c for c in calls if c[0] == "export"]
    assert [c[c.index("--out") + 1].rsplit("/", 1)[1] for c in exports] == ["export_val_t0.5", "export_val_auto"]
    assert all(c[c.index("--melanoma-sensitivity") + 1] == "0.6" and c[c.index("--majority-offset") + 1] == "0"
               for c in exports)
