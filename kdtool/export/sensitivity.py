"""A sensitivity operating point: the logit offset that makes one class (melanoma) be found often enough.

A screening device is specified by how many melanomas it finds, not by its accuracy. Adding an offset
``b`` to one class's logit moves every decision ``argmax(z + b * e_c)`` toward that class: the class's
sensitivity rises with ``b`` and the other classes pay for it. :func:`sensitivity_offset` picks ``b``
on labelled (validation) logits so that the class's sensitivity reaches a target with a stated
confidence: the one-sided Clopper-Pearson lower bound of the detected fraction (:func:`binomial_lower_bound`)
must reach the target, which for 95 melanomas at 95% confidence means finding about 70% of them to
claim 60%. The bound covers the sampling error of a small split; it assumes the images the device will
see are drawn like the validation ones, which no bound can check.

``kdtool export`` (``--melanoma-sensitivity``, by default 0.7 at 95% when the data have a melanoma
class) adds the chosen ``b`` to the output layer's bias, so the exported file needs no extra op and
``kdtool bench`` measures the shifted model as it ships.

Example:
    >>> import numpy as np
    >>> z = np.array([[0.0, 1.0], [0.0, 0.5], [0.0, -1.0], [1.0, 0.0]])   # class 1: the first three rows
    >>> r = sensitivity_offset(z, np.array([1, 1, 1, 0]), cls=1, target=0.9, confidence=0.0)
    >>> r["before"], r["detected"], r["images"], round(r["offset"], 3)   # just past the 3rd image's margin
    (2, 3, 3, 1.001)
    >>> sensitivity_offset(z, np.array([1, 1, 1, 0]), cls=1, target=0.6, confidence=0.0)["offset"]
    0.0
"""

from __future__ import annotations

import math

import numpy as np

#: ``kdtool export``'s defaults: find enough validation melanomas that a 95% lower bound of the
#: sensitivity is 70%, with the train split's majority class (nevi) raised by 1.5 first (why: docs/decisions.md).
DEFAULT_TARGET = 0.7
#: ``kdtool export --majority-offset``'s default (see above).
DEFAULT_MAJORITY_OFFSET = 1.5
DEFAULT_CONFIDENCE = 0.95
#: ``kdtool export --floor-on`` choices: where the offset is chosen (validation, out-of-fold logits, or
#: out-of-fold where the run has them; see :func:`floor_offset`).
FLOOR_SOURCES = ("val", "oof", "auto")


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def binomial_lower_bound(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower confidence bound of a proportion seen as ``k`` of ``n``.

    The largest ``p`` with ``P(X >= k | n, p) <= 1 - confidence``: with probability at least
    ``confidence`` the true proportion is at least this.

    Args:
        k: successes (0..n).
        n: trials (>= 1).
        confidence: in [0, 1); 0 gives the point estimate ``k / n``.

    Returns:
        The bound in [0, k / n].

    Example:
        >>> round(binomial_lower_bound(10, 10, 0.95), 4)   # 0.05 ** (1 / 10)
        0.7411
        >>> binomial_lower_bound(7, 10, 0.0)
        0.7
    """
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 <= confidence < 1.0:
        raise ValueError(f"confidence must lie in [0, 1), got {confidence}")
    if confidence == 0.0 or k == 0:
        return k / n
    alpha = 1.0 - confidence
    lo, hi = 0.0, k / n  # the tail grows with p: bisect for tail(p) = alpha
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _binomial_tail(k, n, mid) <= alpha:
            lo = mid
        else:
            hi = mid
    return lo


def fewest_detections(n: int, target: float, confidence: float) -> int | None:
    """The smallest k of n whose lower bound (:func:`binomial_lower_bound`) reaches ``target``; None if none does.

    Example:
        >>> fewest_detections(95, 0.6, 0.95), fewest_detections(95, 0.6, 0.0)
        (66, 57)
        >>> fewest_detections(5, 0.9, 0.95) is None    # 5 of 5 bounds it at 0.55 only
        True
    """

    def enough(k: int) -> bool:
        return binomial_lower_bound(k, n, confidence) >= target - 1e-12

    if not enough(n):
        return None
    lo, hi = -1, n  # the bound grows with k: bisect for the first k that is enough
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def shortfall(n: int, target: float, confidence: float, what: str = "images of the class") -> str | None:
    """Why ``n`` images cannot show sensitivity >= ``target`` at ``confidence``, or None when they can.

    Example:
        >>> shortfall(4, 0.99, 0.95, "melanomas")
        '4 melanomas cannot show sensitivity >= 0.99 at confidence 0.95 (finding all 4 bounds it at 0.473)'
        >>> shortfall(95, 0.6, 0.95) is None
        True
    """
    if n and fewest_detections(n, target, confidence) is not None:
        return None
    best = binomial_lower_bound(n, n, confidence) if n else 0.0
    return (
        f"{n} {what} cannot show sensitivity >= {target:g} at confidence {confidence:g} "
        f"(finding all {n} bounds it at {best:.3f})"
    )


def sensitivity_offset(
    logits: np.ndarray, labels: np.ndarray, cls: int, target: float, confidence: float = 0.95, floor: bool = True
) -> dict:
    """The offset on class ``cls``'s logit that makes ``argmax(logits + offset * e_cls)`` find enough of it.

    For each image of the class, ``m_i = max_{j != cls} z_ij - z_i,cls`` is the offset from which it is
    called ``cls``. With ``k`` the fewest detections whose lower bound reaches ``target``
    (:func:`fewest_detections`), the offset lies halfway between the k-th and the (k+1)-th smallest
    ``m_i``: exactly the k easiest images cross, with the most room on both sides. With ``floor`` (what
    export does) the target is a floor: a model that already finds k keeps offset 0. Without it the
    offset can be negative (the surplus given back to the other classes).

    Args:
        logits: (N, K) scores of labelled images (validation, never test).
        labels: (N,) integer labels.
        cls: the class to hold (melanoma's index).
        target: the sensitivity to reach, in (0, 1].
        confidence: of the lower bound, in [0, 1); 0 holds the observed sensitivity itself at ``target``.
        floor: never lower the class's logit (offset >= 0).

    Returns:
        A dict: ``offset``, ``images`` (of the class), ``detected`` and ``sensitivity`` at the offset,
        its ``lower_bound``, ``target``, ``confidence``, ``floor``, and ``before`` (detected without offset).

    Raises:
        ValueError: no image of the class, or too few for ``target`` at ``confidence`` (the message
            says how many there are and the best bound they allow).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    own = logits[labels == cls]
    n = len(own)
    if n == 0:
        raise ValueError("no image of the class to measure its sensitivity on")
    why = shortfall(n, target, confidence)
    if why:
        raise ValueError(why)
    k = fewest_detections(n, target, confidence)
    margins = np.sort(np.delete(own, cls, axis=1).max(axis=1) - own[:, cls])
    if k == 0:
        offset = float(margins[0]) - 1.0
    elif k == n:
        offset = float(margins[-1]) + 1e-3 * max(1.0, abs(float(margins[-1])))
    else:
        offset = 0.5 * float(margins[k - 1] + margins[k])

    def found(b: float) -> int:
        shifted = own.copy()
        shifted[:, cls] += b
        return int(np.sum(np.argmax(shifted, axis=1) == cls))

    if floor and found(0.0) >= k:
        offset = 0.0
    detected = found(offset)
    if detected < k:  # tied margins: step just past the k-th one
        offset = float(np.nextafter(margins[k - 1], np.inf)) + 1e-6 * max(1.0, abs(float(margins[k - 1])))
        detected = found(offset)
    return {
        "offset": offset,
        "images": n,
        "detected": detected,
        "sensitivity": detected / n,
        "lower_bound": binomial_lower_bound(detected, n, confidence),
        "target": float(target),
        "confidence": float(confidence),
        "floor": bool(floor),
        "before": found(0.0),
    }


def floor_offset(
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    cls: int,
    target: float,
    confidence: float,
    oof_logits: np.ndarray | None = None,
    oof_labels: np.ndarray | None = None,
) -> dict:
    """:func:`sensitivity_offset` on the out-of-fold logits when given, else on validation.

    Args:
        val_logits, val_labels: the validation split's logits (N, K) and labels (N,).
        cls, target, confidence: as for :func:`sensitivity_offset`.
        oof_logits, oof_labels: the train split's out-of-fold logits and labels, or None.

    Returns:
        :func:`sensitivity_offset`'s record of the source that set the offset, with ``chosen_on``
        (``val`` or ``oof``).

    Example:
        >>> z = np.array([[0.0, 1.0], [0.0, -0.5], [0.0, -2.0]]); y = np.array([1, 1, 0])
        >>> floor_offset(z, y, 1, 1.0, 0.0)["offset"], floor_offset(z, y, 1, 1.0, 0.0, z[:1], y[:1])["chosen_on"]
        (0.501, 'oof')
    """
    if oof_logits is None:
        return {"chosen_on": "val", **sensitivity_offset(val_logits, val_labels, cls, target, confidence)}
    return {"chosen_on": "oof", **sensitivity_offset(oof_logits, oof_labels, cls, target, confidence)}
