"""95% intervals for classification metrics, in numpy and the standard library only (it runs on the device).

* :func:`bootstrap_interval` / :func:`bootstrap_intervals`: the percentile bootstrap over images,
  or over whole groups (lesions, patients) when ``groups`` is given: a resample draws groups with
  replacement and takes every image of each. Seeded: the same data give the same interval.
* :func:`paired_bootstrap_difference`: metric(a) - metric(b) on the same resampled images.
* :func:`clopper_pearson_interval` (exact) and :func:`wilson_interval` for one proportion, such
  as one class's sensitivity or specificity.
* :func:`sensitivity_at_specificity`: a threshold-free operating point of one class's scores.

A resample where a metric is undefined (a class missing, say) gives NaN; such resamples are left
out of that metric's percentiles and counted in :attr:`Interval.dropped`.

Example:
    >>> y = np.array([0, 1] * 10)
    >>> pred = np.array([0, 1] * 8 + [1, 0] * 2)
    >>> accuracy = lambda t, p: float((t == p).mean())
    >>> iv = bootstrap_interval(accuracy, y, pred, n_boot=200, seed=0)
    >>> iv.estimate, iv.low <= 0.8 <= iv.high, iv == bootstrap_interval(accuracy, y, pred, n_boot=200, seed=0)
    (0.8, True, True)
    >>> [round(v, 4) for v in clopper_pearson_interval(5, 10).as_list()]
    [0.1871, 0.8129]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

#: A metric: (y_true, scores or predictions) of one resample -> a number (NaN when undefined there).
Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval.

    Args:
        estimate: the metric on all the data.
        low: lower end.
        high: upper end.
        level: coverage, e.g. 0.95.
        method: ``bootstrap``, ``paired bootstrap``, ``clopper-pearson`` or ``wilson``.
        dropped: bootstrap resamples left out because the metric was undefined there.
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95
    method: str = "bootstrap"
    dropped: int = 0

    def as_list(self) -> list[float] | None:
        """``[low, high]`` for JSON, or None when the interval is undefined (NaN).

        Returns:
            Two floats, or None.

        Example:
            >>> Interval(0.5, 0.25, 0.75).as_list(), Interval(0.5, math.nan, math.nan).as_list()
            ([0.25, 0.75], None)
        """
        if math.isnan(self.low) or math.isnan(self.high):
            return None
        return [float(self.low), float(self.high)]


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


# ----------------------------------------------------------------------------- bootstrap
def resample_indices(
    n: int, groups: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0
) -> Iterator[np.ndarray]:
    """Index arrays of ``n_boot`` bootstrap resamples of ``n`` images.

    Args:
        n: number of images.
        groups: (n,) group id per image (e.g. lesion ids), or None: each image its own group.
        n_boot: number of resamples.
        seed: seed of numpy's default generator.

    Returns:
        An iterator of int64 index arrays. Without groups each has length ``n``; with groups,
        as many groups as there are are drawn with replacement and all their images taken.

    Example:
        >>> [ix.tolist() for ix in resample_indices(4, np.array(["a", "a", "b", "b"]), n_boot=2, seed=1)]
        [[0, 1, 2, 3], [2, 3, 2, 3]]
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(n_boot):
            yield rng.integers(0, n, size=n)
        return
    groups = np.asarray(groups).ravel()
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} images")
    _, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")  # images sorted by group
    counts = np.bincount(inverse)
    starts = np.cumsum(counts) - counts
    n_groups = len(counts)
    for _ in range(n_boot):
        drawn = rng.integers(0, n_groups, size=n_groups)
        lengths = counts[drawn]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield order[np.repeat(starts[drawn], lengths) + offsets]


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float, int]:
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        return math.nan, math.nan, len(values)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(kept, [tail, 100.0 - tail])
    return float(low), float(high), int(len(values) - kept.size)


def _as_float(v) -> float:
    return math.nan if v is None else float(v)


def bootstrap_intervals(
    metrics: Callable[[np.ndarray, np.ndarray], Mapping[str, float | None]],
    y_true: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of several metrics computed together on each resample.

    Args:
        metrics: (y_true, scores) -> {name: value}; None or NaN where a value is undefined.
        y_true: (N,) labels.
        scores: (N, ...) scores or predictions, indexed along the first axis with ``y_true``.
        groups: (N,) group ids: resample whole groups (see :func:`resample_indices`); None: images.
        n_boot: number of resamples (>= 1).
        seed: the generator's seed.
        level: coverage.

    Returns:
        {name: :class:`Interval`}; NaN ends when the estimate or every resample is undefined.

    Example:
        >>> both = lambda t, p: {"acc": float((t == p).mean()), "errors": float((t != p).sum())}
        >>> ivs = bootstrap_intervals(both, np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), n_boot=50)
        >>> sorted(ivs), ivs["acc"].estimate
        (['acc', 'errors'], 0.75)
    """
    _check_level(level)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    point = {k: _as_float(v) for k, v in metrics(y_true, scores).items()}
    samples: dict[str, list[float]] = {k: [] for k in point}
    for idx in resample_indices(len(y_true), groups, n_boot, seed):
        values = metrics(y_true[idx], scores[idx])
        for k in point:
            samples[k].append(_as_float(values.get(k)))
    out = {}
    for k, est in point.items():
        low, high, dropped = _percentiles(np.asarray(samples[k], dtype=np.float64), level)
        if math.isnan(est):
            low = high = math.nan
        out[k] = Interval(est, low, high, level, "bootstrap", dropped)
    return out


def bootstrap_interval(
    metric: Metric,
    y_true: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of one metric (see :func:`bootstrap_intervals`).

    Args:
        metric: (y_true, scores) -> value (None or NaN where undefined).
        y_true: (N,) labels.
        scores: (N, ...) scores or predictions.
        groups: (N,) group ids to resample whole groups, or None for images.
        n_boot: number of resamples.
        seed: the generator's seed.
        level: coverage.

    Returns:
        The :class:`Interval`.

    Example:
        >>> acc = lambda t, p: float((t == p).mean())
        >>> bootstrap_interval(acc, np.zeros(5), np.zeros(5), n_boot=20).as_list()
        [1.0, 1.0]
    """
    one = bootstrap_intervals(lambda t, s: {"m": metric(t, s)}, y_true, scores, groups, n_boot, seed, level)
    return one["m"]


def paired_bootstrap_difference(
    metric: Metric,
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Interval of metric(a) - metric(b), both computed on the same resampled images.

    Args:
        metric: (y_true, predictions or scores) -> value.
        y_true: (N,) labels.
        pred_a: (N, ...) model A's predictions or scores.
        pred_b: (N, ...) model B's, for the same images in the same order.
        groups: (N,) group ids to resample whole groups, or None for images.
        n_boot: number of resamples.
        seed: the generator's seed.
        level: coverage.

    Returns:
        The :class:`Interval` of the difference (method ``paired bootstrap``).

    Example:
        >>> acc = lambda t, p: float((t == p).mean())
        >>> y, a = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
        >>> paired_bootstrap_difference(acc, y, a, a, n_boot=30).as_list()
        [0.0, 0.0]
    """
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    if pred_a.shape[0] != pred_b.shape[0]:
        raise ValueError(f"pred_a has {pred_a.shape[0]} images but pred_b has {pred_b.shape[0]}")
    both = np.stack([pred_a, pred_b], axis=1)  # (N, 2, ...): resampled together

    def diff(t: np.ndarray, s: np.ndarray) -> dict[str, float]:
        return {"d": _as_float(metric(t, s[:, 0])) - _as_float(metric(t, s[:, 1]))}

    iv = bootstrap_intervals(diff, y_true, both, groups, n_boot, seed, level)["d"]
    return Interval(iv.estimate, iv.low, iv.high, level, "paired bootstrap", iv.dropped)


# ----------------------------------------------------------------------------- one proportion
def wilson_interval(k: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion k/n.

    Args:
        k: successes (e.g. melanomas detected).
        n: trials (e.g. melanomas), > 0.
        level: coverage.

    Returns:
        The :class:`Interval` (method ``wilson``).

    Example:
        >>> [round(v, 4) for v in wilson_interval(5, 10).as_list()]
        [0.2366, 0.7634]
    """
    _check_level(level)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Interval(p, low, high, level, "wilson")


def _binom_cdf(log_coef: np.ndarray, k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    i = np.arange(k + 1)
    logs = log_coef[: k + 1] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def _bisect(f: Callable[[float], float], target: float, increasing: bool) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(100):  # 2**-100: far below float resolution
        mid = (lo + hi) / 2.0
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def clopper_pearson_interval(k: int, n: int, level: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) interval of a proportion k/n, by inverting the binomial CDF.

    The lower end is the p at which P(X >= k) = (1 - level) / 2 (0 when k = 0), the upper
    end the p at which P(X <= k) = (1 - level) / 2 (1 when k = n); both found by bisection,
    the CDF summed in log space (exact for n up to tens of thousands).

    Args:
        k: successes.
        n: trials, > 0.
        level: coverage.

    Returns:
        The :class:`Interval` (method ``clopper-pearson``).

    Example:
        >>> round(clopper_pearson_interval(0, 10).high, 4)
        0.3085
    """
    _check_level(level)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = (1.0 - level) / 2.0
    j = np.arange(1, n + 1)
    log_coef = np.concatenate([[0.0], np.cumsum(np.log(n - j + 1) - np.log(j))])  # log C(n, i)
    low = 0.0 if k == 0 else _bisect(lambda p: 1.0 - _binom_cdf(log_coef, k - 1, n, p), alpha, increasing=True)
    high = 1.0 if k == n else _bisect(lambda p: _binom_cdf(log_coef, k, n, p), alpha, increasing=False)
    return Interval(k / n, low, high, level, "clopper-pearson")


# ----------------------------------------------------------------------------- threshold-free
def sensitivity_at_specificity(
    positive: np.ndarray, scores: np.ndarray, specificity: float
) -> tuple[float, float | None]:
    """The best sensitivity among thresholds whose specificity reaches a target.

    An image is called positive when its score is >= the threshold; thresholds run over the
    observed scores (and one above them all: specificity 1, sensitivity 0).

    Args:
        positive: (N,) bool, True for the class of concern.
        scores: (N,) that class's scores (probabilities).
        specificity: the target, in [0, 1].

    Returns:
        (sensitivity, threshold); (NaN, None) when the positives or the negatives are missing.
        The threshold is None when only "call nothing positive" reaches the target.

    Example:
        >>> pos = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
        >>> s = np.array([0.9, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05])
        >>> sensitivity_at_specificity(pos, s, 0.8)    # threshold 0.6: 4/5 negatives below it
        (0.6666666666666666, 0.6)
    """
    positive = np.asarray(positive, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan, None
    uniq, inverse = np.unique(scores, return_inverse=True)
    inverse = inverse.ravel()
    pos_at = np.bincount(inverse, weights=positive, minlength=len(uniq))
    neg_at = np.bincount(inverse, weights=~positive, minlength=len(uniq))
    spec = (np.cumsum(neg_at) - neg_at) / n_neg  # negatives strictly below each threshold
    sens = (n_pos - (np.cumsum(pos_at) - pos_at)) / n_pos  # positives at or above it
    ok = np.flatnonzero(spec >= specificity - 1e-12)
    if ok.size == 0:
        return 0.0, None
    j = int(ok[0])  # specificity grows and sensitivity falls with the threshold: the lowest that qualifies
    return float(sens[j]), float(uniq[j])
