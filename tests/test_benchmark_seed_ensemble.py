"""benchmarks/seed_ensemble.py: its argument checks and its table (no training here)."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def se():
    return load_benchmark("seed_ensemble")


def test_one_run_or_a_folder_without_run_json_is_refused(se, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        se.main([str(tmp_path)])
    assert exc.value.code == 2 and "at least two runs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        se.main([str(tmp_path), str(tmp_path / "nope")])
    assert exc.value.code == 2 and "no run.json" in capsys.readouterr().err


def test_a_run_without_exactly_one_finished_teacher_is_refused(se, tmp_path):
    doc = {"status": "FINISHED", "models": [{"name": "student_alone", "role": "baseline", "file": "a.keras"}]}
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="exactly one teacher"):
        se._teacher(tmp_path)
    doc["models"].append({"name": "teacher_x", "role": "teacher", "file": "t.keras"})
    doc["status"] = "KILLED"
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="FINISHED"):
        se._teacher(tmp_path)
    doc["status"] = "FINISHED"
    (tmp_path / "run.json").write_text(json.dumps(doc))
    assert se._teacher(tmp_path)[0] == tmp_path / "t.keras"


def test_render_pairs_the_students_seed_by_seed(se):
    def m(acc, bal):
        return {"accuracy": acc, "balanced_accuracy": bal, "macro_f1": 0.5, "melanoma_sensitivity": 0.5,
                "roc_auc": 0.9}

    doc = {"command": "c", "machine_line": "here", "wall_seconds": 3.0,
           "results": [{"seed": 0, "own": m(0.70, 0.60), "ensemble": m(0.72, 0.63), "train_seconds": 300},
                       {"seed": 1, "own": m(0.68, 0.62), "ensemble": m(0.70, 0.63), "train_seconds": 310}]}
    text = se.render(doc)
    assert "| distilled from its own teacher | 69.0 ± 1.4 | 61.0 ± 1.4 |" in text
    assert "| paired gain | 2.0 ± 0.0 | 2.0 ± 1.4 |" in text
    assert "| 1 | 68.0 / 62.0 / 50.0 / 90.0 | 70.0 / 63.0 / 50.0 / 90.0 | 310 |" in text
