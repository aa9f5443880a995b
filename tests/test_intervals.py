"""kdtool.intervals: known values, seeded resampling, group resampling, paired differences, sens@spec."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdtool.intervals import (
    bootstrap_interval,
    bootstrap_intervals,
    clopper_pearson_interval,
    paired_bootstrap_difference,
    resample_indices,
    sensitivity_at_specificity,
    wilson_interval,
)
from kdtool.metrics import binary_roc_auc


def accuracy(t, p):
    return float((t == p).mean())


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(0, 10, 0.0, 0.3085), (5, 10, 0.1871, 0.8129), (10, 10, 0.6915, 1.0), (1, 20, 0.0013, 0.2487)],
)
def test_clopper_pearson_known_values(k, n, low, high):
    iv = clopper_pearson_interval(k, n)
    assert (round(iv.low, 4), round(iv.high, 4)) == (low, high)
    assert iv.estimate == k / n and iv.method == "clopper-pearson"


def test_clopper_pearson_large_n_is_close_to_wilson_and_contains_the_estimate():
    cp, w = clopper_pearson_interval(20000, 40000), wilson_interval(20000, 40000)
    assert cp.low < 0.5 < cp.high and abs(cp.low - w.low) < 1e-3 and abs(cp.high - w.high) < 1e-3
    assert clopper_pearson_interval(189, 1704, level=0.99).low < clopper_pearson_interval(189, 1704).low


def test_wilson_known_values_and_bad_input():
    iv = wilson_interval(5, 10)
    assert (round(iv.low, 4), round(iv.high, 4)) == (0.2366, 0.7634)
    assert wilson_interval(0, 10).low == 0.0
    with pytest.raises(ValueError):
        wilson_interval(3, 0)
    with pytest.raises(ValueError):
        clopper_pearson_interval(11, 10)


def test_bootstrap_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, y, 1 - y)
    a = bootstrap_interval(accuracy, y, pred, n_boot=300, seed=3)
    assert a == bootstrap_interval(accuracy, y, pred, n_boot=300, seed=3)
    assert a != bootstrap_interval(accuracy, y, pred, n_boot=300, seed=4)
    assert a.low < a.estimate < a.high and 0.05 < a.high - a.low < 0.2  # about +-0.055 for n=200, p=0.8


def test_groups_make_the_resampling_unit_the_group():
    # 40 lesions, each photographed 5 times (identical duplicates): only 40 independent units.
    rng = np.random.default_rng(1)
    y1 = rng.integers(0, 2, 40)
    p1 = np.where(rng.random(40) < 0.7, y1, 1 - y1)
    y, pred, groups = np.repeat(y1, 5), np.repeat(p1, 5), np.repeat(np.arange(40), 5)
    by_image = bootstrap_interval(accuracy, y, pred, n_boot=400, seed=0)
    by_group = bootstrap_interval(accuracy, y, pred, groups=groups, n_boot=400, seed=0)
    assert by_image.estimate == by_group.estimate
    assert (by_group.high - by_group.low) > 1.7 * (by_image.high - by_image.low)  # about sqrt(5) wider
    for idx in resample_indices(len(y), groups, n_boot=5, seed=0):
        drawn = groups[idx]
        assert all((drawn == g).sum() % 5 == 0 for g in np.unique(drawn))  # whole lesions only
        assert len(idx) == 200


def test_undefined_resamples_are_dropped_and_counted():
    y = np.array([0] * 19 + [1])  # one positive: many resamples miss it
    s = np.linspace(0, 1, 20)
    iv = bootstrap_interval(lambda t, p: binary_roc_auc(t == 1, p), y, s, n_boot=200, seed=0)
    assert 0 < iv.dropped < 200 and iv.estimate == 1.0 and iv.as_list() is not None
    none = bootstrap_interval(lambda t, p: math.nan, y, s, n_boot=10)
    assert none.dropped == 10 and none.as_list() is None


def test_several_metrics_share_the_resamples():
    y = np.array([0, 1] * 30)
    pred = np.array([0, 1] * 25 + [1, 0] * 5)
    ivs = bootstrap_intervals(lambda t, p: {"acc": accuracy(t, p), "err": 1 - accuracy(t, p)}, y, pred, n_boot=100)
    assert ivs["acc"].low == pytest.approx(1 - ivs["err"].high) and ivs["acc"].high == pytest.approx(1 - ivs["err"].low)


def test_paired_difference():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 150)
    a = np.where(rng.random(150) < 0.8, y, (y + 1) % 3)
    b = np.where(rng.random(150) < 0.6, y, (y + 2) % 3)
    same = paired_bootstrap_difference(accuracy, y, a, a, n_boot=200)
    assert same.as_list() == [0.0, 0.0] and same.estimate == 0.0 and same.method == "paired bootstrap"
    d = paired_bootstrap_difference(accuracy, y, a, b, n_boot=300, seed=0)
    assert d.estimate == pytest.approx(accuracy(y, a) - accuracy(y, b)) and d.low > 0  # a is clearly better


def test_sensitivity_at_specificity_matches_a_brute_force_search():
    rng = np.random.default_rng(5)
    for _ in range(20):
        pos = rng.random(60) < 0.3
        s = np.round(rng.random(60) + 0.4 * pos, 2)  # ties on purpose
        for target in (0.8, 0.9, 0.95):
            best = 0.0
            for t in np.unique(s):
                spec = ((s < t) & ~pos).sum() / (~pos).sum()
                if spec >= target:
                    best = max(best, ((s >= t) & pos).sum() / pos.sum())
            sens, thr = sensitivity_at_specificity(pos, s, target)
            assert sens == pytest.approx(best)
            if thr is not None:
                assert ((s < thr) & ~pos).sum() / (~pos).sum() >= target
    assert math.isnan(sensitivity_at_specificity(np.zeros(5, bool), np.arange(5.0), 0.9)[0])
    perfect = sensitivity_at_specificity(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.8, 0.9]), 0.95)
    assert perfect == (1.0, 0.8)
