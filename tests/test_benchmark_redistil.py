"""benchmarks/redistil.py: a linked copy of a finished run without its distilled students (kdtool faked)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def rd():
    return load_benchmark("redistil")


def _finished_run(path):
    path.mkdir(parents=True)
    models = [{"name": "student_alone", "role": "baseline", "file": "student_alone.keras"},
              {"name": "teacher_t", "role": "teacher", "file": "teacher_t.keras", "epochs": 5, "best_epoch": 5},
              {"name": "student_t", "role": "student", "file": "student_t.keras"}]
    doc = {"command": f"/x/kdtool/__main__.py distill --data /d --teachers t --seed 3 --out {path} --alpha 0.5",
           "config": {"alpha": 0.5, "kd_balance": "none", "seed": 3}, "models": models}
    (path / "run.json").write_text(json.dumps(doc))
    for m in models:
        (path / m["file"]).write_text(m["name"])
        (path / m["name"]).mkdir()
        (path / m["name"] / "metrics.json").write_text("{}")
    for extra in ("summary.csv", "export_mel0.6/student_t.int8.tflite", ".backup/student_t/epoch.keras", "x.log"):
        (path / extra).parent.mkdir(parents=True, exist_ok=True)
        (path / extra).write_text("x")
    return doc


def test_the_copy_keeps_teachers_and_the_student_alone_and_records_the_new_settings(rd, tmp_path):
    run, work = tmp_path / "run", tmp_path / "work" / "s3"
    before = _finished_run(run)
    args = rd.prepare(run, work, rd.parse_settings(["kd_balance=weights", "alpha=0.3"]))
    assert args == ["distill", "--data", "/d", "--teachers", "t", "--seed", "3", "--alpha", "0.5", "--out", str(work),
                    "--kd-balance", "weights", "--alpha", "0.3"]  # click keeps the last --alpha
    assert sorted(p.name for p in work.iterdir()) == ["run.json", "student_alone", "student_alone.keras",
                                                      "teacher_t", "teacher_t.keras"]
    assert os.path.samefile(run / "teacher_t.keras", work / "teacher_t.keras")  # linked, not copied
    doc = json.loads((work / "run.json").read_text())
    assert doc["config"] == {"alpha": 0.3, "kd_balance": "weights", "seed": 3}
    assert [m["name"] for m in doc["models"]] == ["student_alone", "teacher_t"]
    assert json.loads((run / "run.json").read_text()) == before  # the run itself is untouched
    doc = json.loads((run / "run.json").read_text())  # a command that spelled it --out=PATH
    (run / "run.json").unlink()
    (run / "run.json").write_text(json.dumps({**doc, "command": doc["command"].replace("--out ", "--out=")}))
    assert rd.prepare(run, work, {})[-2:] == ["--out", str(work)] and "--out=" not in " ".join(rd.prepare(run, work, {}))
    (work / "student_t.keras").write_text("retrained")  # a second call reuses the copy as it is
    assert rd.prepare(run, work, {"kd_balance": "weights"})[-2:] == ["--kd-balance", "weights"]
    assert (work / "student_t.keras").read_text() == "retrained"


def test_main_runs_each_copy_and_refuses_other_settings(rd, tmp_path, monkeypatch, capsys):
    _finished_run(tmp_path / "r3")
    calls = []
    monkeypatch.setattr(rd, "run_logged", lambda args, log, label: calls.append((args, log, label)) or 1.0)
    assert rd.main(["--runs", str(tmp_path / "r3"), "--seeds", "3", "--set", "kd_balance=weights",
                    "--work", str(tmp_path / "w")]) == 0
    (args, log, label), = calls
    assert args[-2:] == ["--kd-balance", "weights"] and log == tmp_path / "w" / "s3.log" and label == "redistil seed 3"
    for bad, message in ((["--set", "epochs=5"], "KEY one of alpha, temperature, kd_balance"),
                         (["--set", "alpha=x"], "'x' is not a float"), ([], "give at least one --set")):
        with pytest.raises(SystemExit) as exc:
            rd.main(["--runs", str(tmp_path / "r3"), "--seeds", "3", "--work", str(tmp_path / "w"), *bad])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_last_epoch_is_a_flag_and_needs_teachers_that_kept_their_last_epoch(rd, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r3"
    doc = _finished_run(run)
    assert rd.prepare(run, tmp_path / "w" / "s3", rd.parse_settings(["select_best=False"]))[-1] == "--last-epoch"
    assert json.loads((tmp_path / "w" / "s3" / "run.json").read_text())["config"]["select_best"] is False
    assert rd.prepare(run, tmp_path / "w2", {"select_best": True})[-1] == "--select-best"
    # a run that recorded select_best true, from before --last-epoch was the default: its command does not
    # say so, so the copy spells it out, and a setting given wins over it
    (run / "run.json").write_text(json.dumps({**doc, "config": {**doc["config"], "select_best": True}}))
    assert rd.prepare(run, tmp_path / "w4", {"kd_balance": "weights"})[-3:] == ["--select-best", "--kd-balance",
                                                                                 "weights"]
    assert rd.prepare(run, tmp_path / "w5", {"select_best": False})[-1] == "--last-epoch"
    assert "--select-best" not in rd.prepare(run, tmp_path / "w5", {"select_best": False})
    (run / "run.json").write_text(json.dumps(doc))
    doc["models"][1]["best_epoch"] = 4  # a teacher that kept an earlier epoch: the copy would mislabel it
    # a run at today's default, --last-epoch: its teachers record no kept epoch (None), which is their last
    last = {**doc, "config": {**doc["config"], "select_best": False},
            "models": [{**m, "best_epoch": None} if m["role"] == "teacher" else m for m in doc["models"]]}
    (run / "run.json").write_text(json.dumps(last))
    assert rd.prepare(run, tmp_path / "w6", {"select_best": False})[-1] == "--last-epoch"
    with pytest.raises(ValueError, match="select_best=true would record a best-epoch choice"):
        rd.prepare(run, tmp_path / "w7", {"select_best": True})
    (run / "run.json").write_text(json.dumps(doc))
    monkeypatch.setattr(rd, "run_logged", lambda *a: pytest.fail("must not train"))
    for bad, message in ((["--set", "select_best=false"], "teachers that kept an earlier epoch than their last: teacher_t"),
                         (["--set", "select_best=maybe"], "'maybe' is not a bool")):
        with pytest.raises(SystemExit) as exc:
            rd.main(["--runs", str(run), "--seeds", "3", "--work", str(tmp_path / "w3"), *bad])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_retrain_alone_forgets_the_student_alone_also_in_an_earlier_copy_but_never_a_retrained_one(rd, tmp_path):
    run, work = tmp_path / "run", tmp_path / "w" / "s3"
    _finished_run(run)
    rd.prepare(run, tmp_path / "fresh", {}, retrain_alone=True)
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["run.json", "teacher_t", "teacher_t.keras"]
    rd.prepare(run, work, {})  # a copy made without it keeps the run's student alone ...
    assert (work / "student_alone.keras").is_file()
    rd.prepare(run, work, {}, retrain_alone=True)  # ... until asked: then it goes, from run.json too
    assert not (work / "student_alone.keras").exists() and not (work / "student_alone").exists()
    assert [m["name"] for m in json.loads((work / "run.json").read_text())["models"]] == ["teacher_t"]
    assert (run / "student_alone.keras").read_text() == "student_alone"  # the run's own file is untouched
    (work / "student_alone.keras").write_text("retrained")  # kdtool's new file is kept on a re-run
    rd.prepare(run, work, {}, retrain_alone=True)
    assert (work / "student_alone.keras").read_text() == "retrained"
