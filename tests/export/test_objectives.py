"""Operating-point objectives (kdtool.export.objectives): tau on a grid, min recall after it, temperature last."""

from __future__ import annotations

import numpy as np
import pytest

from kdtool.export.min_recall import binomial_lower_bound, recall_offset
from kdtool.export.objectives import (
    OBJECTIVES,
    TAU_GRID,
    decision_scores,
    fit_operating_point,
    fit_tau,
    summary,
)
from kdtool.metrics import classification_report
from kdtool.reliability import fit_temperature

KEYS = {"objective", "fitted_on", "fit_images", "tau", "bias", "temperature", "min_recall", "summary"}
HELD_KEYS = {"class", "target", "confidence", "offset", "detected", "images", "lower_bound", "reached"}


def _gaussian(seed: int, n: int = 20000):
    """Logits that are each class's log-likelihood (what logit-adjusted training aims at), a 70/20/10 prior.

    Balanced accuracy is then best at argmax of the logits (tau 0) and accuracy at logits + log prior (tau 1).
    """
    rng = np.random.default_rng(seed)
    mu = np.array([0.0, 1.5, 3.0])
    y = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    x = rng.normal(mu[y], 1.0)
    z = -((x[:, None] - mu[None, :]) ** 2) / 2
    return z, y, np.log(np.bincount(y, minlength=3) / n)


@pytest.mark.parametrize("seed", range(3))
def test_balanced_finds_the_model_as_trained_and_accuracy_the_train_prior(seed):
    z, y, lp = _gaussian(seed)
    assert abs(fit_tau(z, y, lp, "balanced")[0]) <= 0.15
    assert abs(fit_tau(z, y, lp, "accuracy")[0] - 1.0) <= 0.15


def test_the_grid_runs_from_minus_one_to_two_in_steps_of_a_twentieth():
    assert TAU_GRID[0] == -1.0 and TAU_GRID[-1] == 2.0 and len(TAU_GRID) == 61 and 0.0 in TAU_GRID
    assert np.allclose(np.diff(TAU_GRID), 0.05)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("objective", ["balanced", "accuracy"])
def test_tau_scores_best_on_the_grid_and_is_the_smallest_such(seed, objective):
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=120, p=[0.55, 0.25, 0.15, 0.05])
    z = rng.normal(size=(120, 4))
    z[np.arange(120), y] += 1.0
    lp = np.log(np.array([0.55, 0.25, 0.15, 0.05]))
    key = {"balanced": "balanced_accuracy", "accuracy": "accuracy"}[objective]
    names = ["a", "b", "c", "d"]
    scores = {t: classification_report(y, np.argmax(z + t * lp, axis=1), names)[key] for t in TAU_GRID}
    tau, score = fit_tau(z, y, lp, objective)
    assert score == pytest.approx(max(scores.values())) == pytest.approx(scores[tau])
    assert all(scores[t] < score - 1e-12 for t in TAU_GRID if abs(t) < abs(tau))


def test_ties_go_to_the_smallest_tau():
    z = np.array([[5.0, 0.0], [0.0, 5.0]])  # right at every tau of the grid
    assert fit_tau(z, np.array([0, 1]), np.log([0.9, 0.1]), "balanced") == (0.0, 1.0)
    with pytest.raises(ValueError, match="fits no tau"):
        fit_tau(z, np.array([0, 1]), np.log([0.9, 0.1]), "as-trained")


def test_decision_scores_agree_with_the_classification_report():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    y[y == 3] = 2  # a class absent from the labels is left out of balanced accuracy
    report = classification_report(y, pred, list("abcd"))
    got = decision_scores(y, pred, 4)
    assert got["accuracy"] == pytest.approx(report["accuracy"])
    assert got["balanced_accuracy"] == pytest.approx(report["balanced_accuracy"])


def test_as_trained_fits_nothing():
    point = fit_operating_point(None, None, ["nv", "mel"])
    assert set(point) == KEYS and OBJECTIVES[0] == "as-trained"
    assert point == {
        "objective": "as-trained",
        "fitted_on": None,
        "fit_images": None,
        "tau": None,
        "bias": [0.0, 0.0],
        "temperature": None,
        "min_recall": [],
        "summary": "as trained (no bias)",
    }


def test_the_objective_comes_first_then_min_recall_on_the_shifted_logits():
    z, y, lp = _gaussian(0, n=3000)
    point = fit_operating_point(z, y, ["nv", "bkl", "mel"], "accuracy", lp, [(2, 0.9)], 0.95, fitted_on="oof")
    assert set(point) == KEYS and (point["fitted_on"], point["fit_images"]) == ("oof", 3000)
    tau = fit_tau(z, y, lp, "accuracy")[0]
    expected = recall_offset(z + tau * lp, y, 2, 0.9, 0.95)
    held = point["min_recall"][0]
    assert set(held) == HELD_KEYS and point["tau"] == tau
    assert held["offset"] == pytest.approx(expected["offset"]) and held["offset"] > 0
    np.testing.assert_allclose(point["bias"], tau * lp + np.array([0.0, 0.0, expected["offset"]]))
    assert (held["detected"], held["images"], held["reached"]) == (expected["detected"], expected["images"], True)
    assert point["summary"] == (
        f"accuracy (tau {tau:+.2f}, fitted on out-of-fold train logits, 3000 images); mel recall >= 0.90 at 95%: "
        f"{held['offset']:+.2f} ({held['detected']}/{held['images']}, lower bound {held['lower_bound']:.2f})"
    )


def test_several_min_recalls_all_hold_at_the_final_bias():
    rng = np.random.default_rng(5)
    y = rng.choice(4, size=600, p=[0.6, 0.2, 0.1, 0.1])
    z = rng.normal(size=(600, 4))
    z[np.arange(600), y] += 0.7
    point = fit_operating_point(z, y, list("abcd"), "as-trained", None, [(2, 0.6), (3, 0.6)], 0.9, fitted_on="val")
    final = z + np.asarray(point["bias"])
    assert point["tau"] is None and point["bias"][0] == point["bias"][1] == 0.0
    for held, cls in zip(point["min_recall"], (2, 3), strict=True):
        detected = int(np.sum(np.argmax(final[y == cls], axis=1) == cls))
        assert held["detected"] == detected and held["reached"] is True
        assert held["lower_bound"] == pytest.approx(binomial_lower_bound(detected, held["images"], 0.9))
        assert held["lower_bound"] >= 0.6


def test_temperature_is_fitted_last_and_changes_no_decision():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 400)
    z = rng.normal(size=(400, 3)) * 4.0
    z[np.arange(400), y] += 2.0  # overconfident: large logits, many of them wrong
    lp = np.log(np.array([0.5, 0.3, 0.2]))
    plain = fit_operating_point(z, y, list("abc"), "balanced", lp, [(1, 0.6)], 0.95, fitted_on="val")
    warm = fit_operating_point(z, y, list("abc"), "balanced", lp, [(1, 0.6)], 0.95, temperature=True, fitted_on="val")
    assert warm["bias"] == plain["bias"] and warm["min_recall"] == plain["min_recall"]
    shifted = z + np.asarray(warm["bias"])
    assert warm["temperature"] == fit_temperature(shifted, y) > 1.0
    np.testing.assert_array_equal(np.argmax(shifted / warm["temperature"], axis=1), np.argmax(shifted, axis=1))
    assert warm["summary"] == plain["summary"] + f"; temperature {warm['temperature']:.3g}"


def test_summary_says_when_a_min_recall_is_not_reached_and_what_observed_means():
    record = {
        "objective": "as-trained",
        "fitted_on": "val",
        "fit_images": 50,
        "tau": None,
        "temperature": None,
        "min_recall": [
            {"class": "mel", "target": 0.7, "confidence": 0.0, "offset": 0.5, "detected": 6, "images": 10,
             "lower_bound": 0.6, "reached": False},
        ],
    }  # fmt: skip
    assert (
        summary(record)
        == "as trained; mel recall >= 0.70 observed: +0.50 (6/10), NOT reached; fitted on val, 50 images"
    )


def test_fitting_needs_its_data():
    with pytest.raises(ValueError, match="needs fit logits"):
        fit_operating_point(None, None, ["a", "b"], "balanced", np.log([0.5, 0.5]))
    with pytest.raises(ValueError, match="needs the train class frequencies"):
        fit_operating_point(np.zeros((2, 2)), np.array([0, 1]), ["a", "b"], "accuracy", None, fitted_on="val")
    with pytest.raises(ValueError, match="unknown objective"):
        fit_operating_point(None, None, ["a", "b"], "majority")
