"""benchmarks/calibrated_floor.py: the prior-shift rule and the per-student summary (records, no model)."""

from __future__ import annotations

import doctest

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
    assert rule["test"]["accuracy"] == pytest.approx((0.72, 0.04))  # seed 0 at 0.5 (0.76), seed 1 at 0 (0.68)
    assert summary["0.5"]["test"]["accuracy"] == pytest.approx((0.75, 0.01))
    assert "| s | rule | 0.5, 0 | 72.0 ± 4.0 |" in cf.render(
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
