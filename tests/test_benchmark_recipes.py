"""benchmarks/recipes.py: the seed statistics and paired differences it reports (no training)."""

from __future__ import annotations

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def recipes():
    return load_benchmark("recipes")


def _doc(bal_accs: dict[str, float]) -> dict:
    return {"models": [{"name": name, "best_epoch": 3, "train_seconds": 10.0,
                        "val": {"balanced_accuracy": v}, "test": {"balanced_accuracy": v, "accuracy": 0.5}}
                       for name, v in bal_accs.items()]}


def test_summarise_pairs_by_seed_and_model(recipes):
    docs = {
        "views4": {0: _doc({"student_alone": 0.50}), 1: _doc({"student_alone": 0.60})},
        "noaug": {0: _doc({"student_alone": 0.55}), 1: _doc({"student_alone": 0.61})},
    }
    out = recipes.summarise(docs, "views4")
    base = out["views4"]["models"]["student_alone"]
    assert base["test_balanced_accuracy"]["mean"] == pytest.approx(0.55)
    assert base["test_balanced_accuracy_vs_baseline"] is None
    paired = out["noaug"]["models"]["student_alone"]["test_balanced_accuracy_vs_baseline"]
    assert paired["values"] == pytest.approx([0.05, 0.01])  # seed by seed, not mean minus mean
    assert paired["std"] == pytest.approx(0.0282842712)  # ddof=1
    assert out["noaug"]["models"]["student_alone"]["test_melanoma_sensitivity"]["n"] == 0  # absent, not 0


def test_render_has_one_row_per_variant_and_model(recipes):
    docs = {"views4": {0: _doc({"student_alone": 0.5, "teacher_x": 0.7})}}
    doc = {"command": "python benchmarks/recipes.py", "machine": {}, "data": "d", "seeds": [0], "teachers": "x",
           "baseline": "views4", "wall_seconds": 60.0, "variants": recipes.summarise(docs, "views4")}
    md = recipes.render(doc)
    assert md.count("| `views4` |") == 2
    assert "| `views4` | teacher_x | 50.0 ± 0.0 | 70.0 ± 0.0 |" in md


def test_int8_columns_for_exported_students_only(recipes):
    docs = {"views4": {s: _doc({"student_alone": 0.5, "teacher_x": 0.7}) for s in (0, 1)}}
    for s, drop in ((0, 0.5), (1, 1.5)):
        docs["views4"][s]["models"][0]["int8"] = {"accuracy": 0.6, "balanced_accuracy": 0.5, "macro_f1": 0.4,
                                                  "melanoma_sensitivity": 0.3, "roc_auc": 0.9,
                                                  "val_accuracy_drop": drop / 100}
    metrics = recipes.METRICS + recipes.INT8_METRICS
    doc = {"command": "c", "machine": {}, "data": "d", "seeds": [0, 1], "teachers": "x", "baseline": "views4",
           "wall_seconds": 60.0, "int8": True, "prior_shift": 0.0,
           "variants": recipes.summarise(docs, "views4", metrics)}
    md = recipes.render(doc)
    assert "int8 val acc drop (pts)" in md and "--prior-shift 0" in md
    student = next(ln for ln in md.splitlines() if "| student_alone |" in ln)
    teacher = next(ln for ln in md.splitlines() if "| teacher_x |" in ln)
    assert "| 60.0 ± 0.0 | 50.0 ± 0.0 | 40.0 ± 0.0 | 30.0 ± 0.0 | 90.0 ± 0.0 | 1.0 ± 0.7 |" in student
    assert teacher.count("|  |") >= 6  # no int8 file for the teacher: empty cells, not zeros


@pytest.mark.parametrize("argv,message", [
    (["--variants", "nope"], "choose from: views4"),
    (["--seeds", ","], "--seeds must be one or more comma-separated integers"),
    (["--seeds", "a"], "--seeds must be one or more comma-separated integers"),
])
def test_bad_arguments_are_refused(recipes, capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exc:
        recipes.main([*argv, "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_exports_are_redone_after_the_run_retrains(recipes, tmp_path):
    import json

    run, out = tmp_path / "s0", tmp_path / "s0" / "export"
    out.mkdir(parents=True)
    models = [{"name": "teacher_x", "role": "teacher", "sha256": "t"},
              {"name": "student_alone", "role": "baseline", "sha256": "a"}]
    (run / "run.json").write_text(json.dumps({"models": models}))
    bench = out / "bench_test.json"
    assert not recipes._exports_current(run, out, bench)  # nothing benched yet
    bench.write_text("[]")
    assert not recipes._exports_current(run, out, bench)  # no export of the student
    (out / "student_alone.int8.json").write_text(json.dumps({"source": {"sha256": "a"}}))
    assert recipes._exports_current(run, out, bench)
    models[1]["sha256"] = "b"  # retrained with --fresh
    (run / "run.json").write_text(json.dumps({"models": models}))
    assert not recipes._exports_current(run, out, bench)


def test_a_rerun_appends_to_the_runs_log(recipes, tmp_path, monkeypatch):
    """Re-running reuses a finished run; its log keeps the training's lines (was overwritten by the reuse)."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    said = iter(["trained 120 epochs\n", "reused the finished models\n"])

    def fake_run(cmd, stdout, **kw):
        out = cmd[cmd.index("--out") + 1]
        stdout.write(next(said))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "run.json").write_text(json.dumps({"models": []}))
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(recipes.subprocess, "run", fake_run)
    for _ in range(2):
        assert recipes.run_one("FData", tmp_path / "root", "d96_la", "", 0) == {"models": []}
    log = (tmp_path / "root" / "d96_la" / "s0.log").read_text()
    assert "trained 120 epochs" in log and "reused the finished models" in log
    assert log.count("=== ") == 2 and "--seed 0" in log


def test_run_logged_appends_the_output_and_names_the_log_when_kdtool_fails(recipes, tmp_path):
    log = tmp_path / "k.log"
    log.write_text("kept\n")
    missing = str(tmp_path / "no_such_run")
    with pytest.raises(SystemExit, match=r"^seed 9: kdtool bench exited 2; see .*k\.log$"):
        recipes.run_logged(["bench", missing], log, "seed 9")
    assert recipes.run_logged(["bench", missing], log, "seed 9", ok=(2,)) >= 0
    text = log.read_text()
    assert text.startswith("kept\n") and text.count(f"kdtool bench {missing}") == 2 and "no_such_run" in text


def test_int8_results_logs_export_and_bench_and_tolerates_exports_drop_exit(recipes, tmp_path, monkeypatch):
    import json
    from pathlib import Path
    from types import SimpleNamespace

    run = tmp_path / "s0"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"models": [{"name": "student_alone", "role": "baseline",
                                                          "sha256": "a"}]}))

    def fake_run(cmd, stdout, **kw):
        stdout.write(f"{cmd[3]} ran\n")
        if cmd[3] == "export":  # writes the file and its sidecar, then exits 3 (an int8 drop above --max-drop)
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "student_alone.int8.json").write_text(json.dumps({
                "source": {"sha256": "a"}, "check": {"accuracy_drop": 0.7},
                "operating_point": {"melanoma_sensitivity": {"target": 0.6, "floor": True}}}))
            return SimpleNamespace(returncode=3)
        rec = {"model": "student_alone.int8.tflite", "accuracy": 0.7, "balanced_accuracy": 0.6,
               "macro": {"f1": 0.5}, "melanoma_sensitivity": 0.62, "roc_auc_macro": 0.9}
        Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps([rec]))
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(recipes.subprocess, "run", fake_run)
    found = recipes.int8_results(run, "FData", 0.0, mel=0.6)
    assert found["student_alone"]["melanoma_sensitivity"] == 0.62
    assert found["student_alone"]["val_accuracy_drop"] == pytest.approx(0.007)
    log = (run / "export_mel0.6.log").read_text()
    assert "export ran" in log and "bench ran" in log and log.count("=== ") == 2
