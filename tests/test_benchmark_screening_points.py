"""benchmarks/screening_points.py: prior shift plus a held melanoma sensitivity (logit arrays, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark, write_fdata

from kdtool.data import load_fdata
from kdtool.export.sensitivity import binomial_lower_bound


@pytest.fixture(scope="module")
def sp():
    return load_benchmark("screening_points")


def _logits(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(len(labels), k))
    z[np.arange(len(labels)), labels] += 1.0
    return z


def test_sweep_applies_the_prior_shift_then_holds_validation_melanoma_sensitivity(sp, tmp_path):
    fd = load_fdata(write_fdata(tmp_path / "FData", n=(90, 120, 60), class_names=["akiec", "mel", "nv"]))
    z = {s: _logits(fd.labels(s), 3, i) for i, s in enumerate(("val", "test"))}
    rows = sp.sweep(z, fd, taus=[0.0, 0.5], targets=[None, 0.7], confidence=0.9)
    assert [(r["tau"], r["target"]) for r in rows] == [(0.0, None), (0.0, 0.7), (0.5, None), (0.5, 0.7)]
    plain = sp.rule_metrics(z["test"], fd.labels("test"), np.zeros(3), mel=1)
    assert rows[0]["test"] == plain and rows[0]["melanoma_offset"] is None
    n_mel = int(np.sum(fd.labels("val") == 1))
    for r in (rows[1], rows[3]):  # the held points: the validation count bounds 0.7 at 90%, as a floor
        found = round(r["val"]["melanoma_sensitivity"] * n_mel)
        assert binomial_lower_bound(found, n_mel, 0.9) >= 0.7 and r["melanoma_offset"] >= 0
        if r["melanoma_offset"] > 0:  # raised: exactly as far as needed
            assert binomial_lower_bound(found - 1, n_mel, 0.9) < 0.7
    # the prior shift favours frequent classes: with equal frequencies it changes nothing
    assert rows[2]["test"] == rows[0]["test"]


def test_meets_needs_every_target(sp):
    assert sp.meets({"accuracy": 0.74, "balanced_accuracy": 0.6, "melanoma_sensitivity": 0.6})
    assert not sp.meets({"accuracy": 0.80, "balanced_accuracy": 0.59, "melanoma_sensitivity": 0.9})


def test_render_has_one_row_per_point_and_counts_the_files_that_meet(sp):
    good = {"accuracy": 0.8, "balanced_accuracy": 0.7, "melanoma_sensitivity": 0.7}
    bad = {"accuracy": 0.7, "balanced_accuracy": 0.7, "melanoma_sensitivity": 0.7}
    points = lambda t: [{"tau": 0.0, "target": None, "val": good, "test": t},  # noqa: E731
                        {"tau": 0.5, "target": 0.6, "val": good, "test": good}]
    doc = {"command": "c", "machine_line": "m", "data": "d", "confidence": 0.95, "wall_seconds": 1.0,
           "results": [{"model": "r/s0/export/a.tflite", "points": points(good)},
                       {"model": "r/s1/export/a.tflite", "points": points(bad)}]}
    md = sp.render(doc)
    assert "| 0 | - |" in md and "| 0.5 | 0.6 |" in md
    assert md.count("| 1/2 |") == 1 and md.count("| 2/2 |") == 1


@pytest.mark.parametrize("args,message", [(["--taus", "0,x"], "--taus: 'x' is not a number"),
                                          (["--taus", "2"], "--taus must lie in [0, 1]"),
                                          (["--targets", "0"], "--targets must lie in (0, 1]"),
                                          (["--confidence", "1"], "--confidence must lie in [0, 1)")])
def test_bad_arguments_are_refused(sp, tmp_path, capsys, args, message):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(SystemExit) as exc:
        sp.main([str(model), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_docstring_examples(sp):
    import doctest

    result = doctest.testmod(sp, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
