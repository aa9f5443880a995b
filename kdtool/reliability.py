"""Calibration in numpy only: reliability bins, negative log-likelihood and a fitted temperature.

A classifier is calibrated when, of the images it labels with confidence 0.8, about 80% are right.
:func:`reliability_bins` gives the points of a reliability diagram (the expected calibration error is
:func:`kdtool.metrics.expected_calibration_error` over the same bins), and :func:`fit_temperature` finds
the single temperature T that makes ``softmax(logits / T)`` fit the labels best (Guo et al., 2017, "On
Calibration of Modern Neural Networks"). Dividing every logit by one T > 0 never changes a decision, only
the confidence. Fit T on validation or out-of-fold logits, never on test (docs/evaluation.md).

Example:
    >>> import numpy as np
    >>> logits = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> y = np.array([0, 1, 1, 0])                 # half right at confidence 0.98: overconfident
    >>> t = fit_temperature(logits, y)
    >>> t > 10, nll(logits, y, t) < nll(logits, y)
    (True, True)
    >>> reliability_bins(y, softmax(logits), bins=2)["count"]
    [0, 4]
"""

from __future__ import annotations

import math

import numpy as np

#: Temperatures :func:`fit_temperature` searches between.
T_MIN, T_MAX = 0.05, 20.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of ``logits / temperature``, computed stably in float64 (the one softmax of kdtool).

    Args:
        logits: (..., K) logits.
        temperature: T > 0.

    Returns:
        float64 probabilities of the same shape, each row summing to 1.

    Example:
        >>> softmax(np.array([[0.0, 0.0]])).tolist()
        [[0.5, 0.5]]
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under ``softmax(logits / temperature)``.

    Args:
        logits: (N, K) logits.
        y_true: (N,) integer labels.
        temperature: T > 0.

    Returns:
        The mean NLL in nats.

    Example:
        >>> round(nll(np.array([[0.0, 0.0]]), np.array([1])), 4)   # log 2
        0.6931
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    m = z.max(axis=1, keepdims=True)
    log_norm = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    y = np.asarray(y_true).ravel().astype(int)
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature in [T_MIN, T_MAX] with the least :func:`nll` (golden-section search on log T).

    The NLL is convex in 1/T, so a one-dimensional search finds its minimum; the answer is rounded to
    4 significant digits so that the same logits give the same recorded value everywhere.

    Args:
        logits: (N, K) logits of the fit data (validation or out-of-fold).
        y_true: (N,) integer labels.

    Returns:
        T; 1.0 when there are no images.

    Raises:
        ValueError: non-finite logits, or labels that do not match them.

    Example:
        >>> logits = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> fit_temperature(logits, np.array([0, 1, 0])) < 1     # always right: sharpen
        True
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true).ravel()
    if z.ndim != 2 or len(y) != len(z):
        raise ValueError(f"logits {z.shape} and labels {y.shape} do not match")
    if not np.isfinite(z).all():
        raise ValueError("logits are not all finite")
    if len(y) == 0:
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(z, y, math.exp(a)), nll(z, y, math.exp(b))
    for _ in range(80):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(z, y, math.exp(b))
    return float(f"{math.exp((lo + hi) / 2):.4g}")


def reliability_bins(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> dict:
    """The points of a reliability diagram: per equal-width confidence bin, mean confidence and accuracy.

    The bins are those of :func:`kdtool.metrics.expected_calibration_error`, so the gaps weighted by
    ``count`` add up to its value.

    Args:
        y_true: (N,) integer labels.
        probabilities: (N, K) class probabilities.
        bins: number of bins over [0, 1].

    Returns:
        ``{"edges": bins + 1 floats, "confidence": [...], "accuracy": [...], "count": [...]}``, one entry
        per bin; confidence and accuracy are None in an empty bin.

    Example:
        >>> r = reliability_bins(np.array([0, 1]), np.array([[0.9, 0.1], [0.95, 0.05]]), bins=5)
        >>> r["count"], r["accuracy"][4]
        ([0, 0, 0, 0, 2], 0.5)
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out: dict = {"edges": [round(float(e), 6) for e in edges], "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        out["count"].append(n)
        out["confidence"].append(round(float(conf[mask].mean()), 6) if n else None)
        out["accuracy"].append(round(float(correct[mask].mean()), 6) if n else None)
    return out
