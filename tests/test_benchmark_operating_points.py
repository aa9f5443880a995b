"""benchmarks/operating_points.py: the decision-rule search (tiny logit arrays, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def op():
    return load_benchmark("operating_points")


def test_rule_metrics_counts_present_classes_only(op):
    z = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0]])
    m = op.rule_metrics(z, np.array([0, 1, 1]), np.zeros(3), mel=1)
    assert m == {"accuracy": pytest.approx(2 / 3), "balanced_accuracy": pytest.approx(0.75),
                 "melanoma_sensitivity": pytest.approx(0.5)}  # class 2 has no image: not in the mean


def test_search_finds_the_offset_that_meets_the_floor(op):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 80 + [1] * 20)
    z = rng.normal(0, 0.3, (100, 2))
    z[:, 0] += 1.0  # class 0 favoured everywhere
    z[labels == 1, 1] += 0.8  # class 1 images lean to class 1, not enough to win
    plain = op.rule_metrics(z, labels, np.zeros(2), mel=1)
    assert plain["melanoma_sensitivity"] < 0.6
    b = op.search_offsets(z, labels, mel=1, floor=0.6)
    found = op.rule_metrics(z, labels, b, mel=1)
    assert found["melanoma_sensitivity"] >= 0.6 and found["balanced_accuracy"] >= 0.6
    assert op.objective(found, 0.6) >= op.objective(plain, 0.6)


def test_bad_arguments_are_refused(op, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        op.main([str(tmp_path / "missing.tflite"), "--json", str(tmp_path / "o.json"), "--md", str(tmp_path / "o.md")])
    assert exc.value.code == 2 and "no such model file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        op.main([str(tmp_path), "--floor", "1.5"])
    assert exc.value.code == 2 and "--floor must lie in (0, 1)" in capsys.readouterr().err


def test_docstring_examples(op):
    import doctest

    result = doctest.testmod(op, verbose=False)
    assert result.attempted >= 2 and result.failed == 0


def test_a_melanoma_floor_of_its_own_moves_the_rule(op):
    rng = np.random.default_rng(1)
    labels = np.array([0] * 80 + [1] * 20)
    z = rng.normal(0, 0.5, (100, 2))
    z[:, 0] += 1.0
    z[labels == 1, 1] += 1.0
    at_floor = op.rule_metrics(z, labels, op.search_offsets(z, labels, mel=1, floor=0.6), mel=1)
    margin = op.rule_metrics(z, labels, op.search_offsets(z, labels, mel=1, floor=0.6, mel_floor=0.8), mel=1)
    assert margin["melanoma_sensitivity"] >= 0.8 > at_floor["melanoma_sensitivity"]
    assert margin["accuracy"] <= at_floor["accuracy"]  # the margin is paid for in accuracy
    m = {"accuracy": 0.9, "balanced_accuracy": 0.7, "melanoma_sensitivity": 0.7}
    assert op.objective(m, 0.6) == pytest.approx(0.9)
    assert op.objective(m, 0.6, mel_floor=0.75) == pytest.approx(0.9 - op.PENALTY * 0.05)


def test_ensemble_and_margin_arguments_are_checked(op, tmp_path, capsys):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(SystemExit) as exc:
        op.main([str(model), "--ensemble"])
    assert exc.value.code == 2 and "--ensemble needs at least two models" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        op.main([str(model), "--val-margin", "0.5"])
    assert exc.value.code == 2 and "--val-margin must lie in [0, 0.4)" in capsys.readouterr().err


def test_render_lists_the_ensemble_after_the_models(op):
    m = {"accuracy": 0.7, "balanced_accuracy": 0.6, "melanoma_sensitivity": 0.5}

    def result(name):
        return {"model": name, "plain": m, "val_tuned": {"offset": [0.0], "val": m, "test": m},
                "oracle": {"offset": [0.0], "test": m}}

    doc = {"command": "c", "machine_line": "here", "data": "d", "floor": 0.6, "val_margin": 0.1,
           "results": [result("a"), result("b")], "ensemble": result("ensemble (mean logits) of 2"),
           "wall_seconds": 1.0}
    text = op.render(doc)
    assert "2 model(s)" in text and "held >= 70%: a 10-point margin" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["a", "b", "ensemble (mean logits) of 2"]
    assert "| plain argmax(z), test | 70.0 ± 0.0 | 60.0 ± 0.0 | 50.0 ± 0.0 |" in text
