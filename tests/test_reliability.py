"""kdtool.reliability and kdtool.figures: calibration numbers and the plots drawn from them."""

import numpy as np
import pytest

from kdtool.metrics import binary_roc_auc, expected_calibration_error, roc_points
from kdtool.reliability import fit_temperature, nll, reliability_bins, softmax


def _overconfident(n=400, seed=0):
    """Logits whose argmax is right 70% of the time but whose softmax claims about 98%."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, y, (y + 1) % 3)
    logits = np.zeros((n, 3))
    logits[np.arange(n), pred] = 5.0
    return logits, y


def test_fitted_temperature_lowers_nll_and_ece_and_keeps_decisions():
    logits, y = _overconfident()
    t = fit_temperature(logits, y)
    assert t > 1.5  # overconfident: soften
    assert nll(logits, y, t) < nll(logits, y) - 0.1
    before = expected_calibration_error(y, softmax(logits))
    after = expected_calibration_error(y, softmax(logits, t))
    assert after < before / 3
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()
    # the minimum is a minimum: neighbours are no better
    assert nll(logits, y, t) <= min(nll(logits, y, t * 1.05), nll(logits, y, t / 1.05)) + 1e-9


def test_temperature_is_reproducible_and_checks_its_input():
    logits, y = _overconfident(seed=3)
    assert fit_temperature(logits, y) == fit_temperature(logits.copy(), y.copy())
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="match"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))


def test_reliability_bins_add_up_to_the_ece():
    logits, y = _overconfident(seed=1)
    probs = softmax(logits, 2.0)
    bins = reliability_bins(y, probs, bins=15)
    assert sum(bins["count"]) == len(y) and len(bins["edges"]) == 16
    gap = sum(n * abs(a - c) for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True) if n)
    assert gap / len(y) == pytest.approx(expected_calibration_error(y, probs, bins=15), abs=1e-5)
    assert all(a is None for n, a in zip(bins["count"], bins["accuracy"], strict=True) if n == 0)


def test_roc_points_integrate_to_the_auc_and_thin_keeping_the_ends():
    rng = np.random.default_rng(2)
    positive = rng.random(3000) < 0.2
    scores = np.round(rng.random(3000) + positive * 0.6, 3)  # ties on purpose
    fpr, tpr = roc_points(positive, scores, max_points=10**6)
    assert np.trapezoid(tpr, fpr) == pytest.approx(binary_roc_auc(positive, scores), abs=1e-12)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    fpr, tpr = roc_points(positive, scores, max_points=50)
    assert len(fpr) <= 50 and (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert roc_points(np.zeros(4, bool), np.arange(4.0))[0].size == 0


def test_plots_write_png_files(tmp_path):
    pytest.importorskip("matplotlib")
    from kdtool.figures import plot_reliability, plot_roc

    logits, y = _overconfident(seed=4)
    probs = softmax(logits)
    curves = {str(c): roc_points(y == c, probs[:, c]) for c in range(3)}
    plot_roc(curves, tmp_path / "roc.png", "test", {"0": 0.8}, highlight="0")
    plot_reliability(reliability_bins(y, probs), tmp_path / "rel.png", "test", ece=0.2)
    for name in ("roc.png", "rel.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel.png", "roc.png"]  # no temporary files left
