"""benchmarks/recipes.py: the seed statistics and paired differences it reports (no training)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def recipes():
    spec = importlib.util.spec_from_file_location("recipes", ROOT / "benchmarks" / "recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
