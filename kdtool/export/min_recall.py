"""Min recall: the smallest logit offset that makes one class be found often enough, with a stated confidence.

A screening device is specified by how many of one class (melanomas, say) it finds, not by its accuracy.
Adding an offset ``b >= 0`` to class ``c``'s logit moves every decision ``argmax(z + b * e_c)`` toward ``c``:
its recall rises with ``b`` and the other classes pay for it. :func:`recall_offset` picks the smallest such
``b`` on labelled fit data (validation or out-of-fold train logits, never test) so that the one-sided
Clopper-Pearson lower bound of the class's recall (:func:`binomial_lower_bound`) reaches the target: for 95
melanomas at 95% confidence, finding about 70% of them to claim 60%. The bound covers the sampling error of
a small split; it assumes the images the device will see are drawn like the fit data, which no bound can check.

``kdtool export --min-recall CLASS=TARGET`` (:func:`parse_min_recall`) adds the offset to the output layer's
bias after the operating point's objective (:mod:`kdtool.export.objectives`); docs/operating-points.md
explains the whole record.

Example:
    >>> import numpy as np
    >>> z = np.array([[0.0, 1.0], [0.0, 0.5], [0.0, -1.0], [1.0, 0.0]])   # class 1: the first three rows
    >>> r = recall_offset(z, np.array([1, 1, 1, 0]), cls=1, target=0.9, confidence=0.0)
    >>> r["before"], r["detected"], r["images"], round(r["offset"], 3)   # just past the 3rd image's margin
    (2, 3, 3, 1.001)
    >>> recall_offset(z, np.array([1, 1, 1, 0]), cls=1, target=0.6, confidence=0.0)["offset"]   # already found
    0.0
    >>> parse_min_recall(["mel=0.7"])
    [('mel', 0.7)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from kdtool.errors import InputError

#: ``kdtool export --confidence``'s default: of the one-sided Clopper-Pearson lower bound.
DEFAULT_CONFIDENCE = 0.95


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

    Raises:
        ValueError: impossible counts or a confidence outside [0, 1).

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

    Args:
        n: images of the class.
        target: the recall to claim, in (0, 1].
        confidence: of the bound, in [0, 1).

    Returns:
        k, or None when even finding all ``n`` does not reach the target.

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
    """Why ``n`` images cannot show recall >= ``target`` at ``confidence``, or None when they can.

    Args:
        n: images of the class.
        target: the recall to claim.
        confidence: of the bound.
        what: how to name the images in the message.

    Returns:
        The reason, or None.

    Example:
        >>> shortfall(4, 0.99, 0.95, "mel images")
        '4 mel images cannot show recall >= 0.99 at confidence 0.95 (finding all 4 bounds it at 0.473)'
        >>> shortfall(95, 0.6, 0.95) is None
        True
    """
    if n and fewest_detections(n, target, confidence) is not None:
        return None
    best = binomial_lower_bound(n, n, confidence) if n else 0.0
    return (
        f"{n} {what} cannot show recall >= {target:g} at confidence {confidence:g} "
        f"(finding all {n} bounds it at {best:.3f})"
    )


def found(own: np.ndarray, cls: int, offset: float) -> int:
    """How many rows of ``own`` (logits of images of class ``cls``) are called ``cls`` with ``offset`` added.

    Args:
        own: (n, K) logits of the class's images.
        cls: the class.
        offset: added to column ``cls``.

    Returns:
        The count.

    Example:
        >>> found(np.array([[1.0, 0.0], [0.0, 1.0]]), 1, 0.0), found(np.array([[1.0, 0.0], [0.0, 1.0]]), 1, 2.0)
        (1, 2)
    """
    shifted = np.array(own, dtype=np.float64, copy=True)
    shifted[:, cls] += offset
    return int(np.sum(np.argmax(shifted, axis=1) == cls))


def recall_offset(logits: np.ndarray, labels: np.ndarray, cls: int, target: float, confidence: float) -> dict:
    """The smallest offset ``b >= 0`` on class ``cls``'s logit whose recall lower bound reaches ``target``.

    For each image of the class, ``m_i = max_{j != cls} z_ij - z_i,cls`` is the offset from which it is
    called ``cls``. With ``k`` the fewest detections whose lower bound reaches ``target``
    (:func:`fewest_detections`), the offset lies halfway between the k-th and the (k+1)-th smallest
    ``m_i``: exactly the k easiest images cross, with the most room on both sides. A model that already
    finds k keeps offset 0 (min recall never lowers a class).

    Args:
        logits: (N, K) logits of labelled fit images (validation or out-of-fold, never test).
        labels: (N,) integer labels.
        cls: the class's index.
        target: the recall to reach, in (0, 1].
        confidence: of the lower bound, in [0, 1); 0 asks only that the observed recall reach ``target``.

    Returns:
        A dict: ``offset``, ``images`` (of the class), ``detected`` and ``recall`` at the offset, its
        ``lower_bound``, ``target``, ``confidence``, and ``before`` (detected without the offset).

    Raises:
        ValueError: no image of the class, or too few for ``target`` at ``confidence`` (the message
            says how many there are and the best bound they allow).
    """
    logits = np.asarray(logits, dtype=np.float64)
    own = logits[np.asarray(labels) == cls]
    n = len(own)
    if n == 0:
        raise ValueError("no image of the class to measure its recall on")
    why = shortfall(n, target, confidence)
    if why:
        raise ValueError(why)
    k = fewest_detections(n, target, confidence)
    before = found(own, cls, 0.0)
    offset = 0.0
    if before < k:
        margins = np.sort(np.delete(own, cls, axis=1).max(axis=1) - own[:, cls])
        if k == n:
            offset = float(margins[-1]) + 1e-3 * max(1.0, abs(float(margins[-1])))
        else:
            offset = 0.5 * float(margins[k - 1] + margins[k])
        if found(own, cls, offset) < k:  # tied margins: step just past the k-th one
            offset = float(np.nextafter(margins[k - 1], np.inf)) + 1e-6 * max(1.0, abs(float(margins[k - 1])))
        offset = max(offset, 0.0)
    detected = found(own, cls, offset)
    return {
        "offset": offset,
        "images": n,
        "detected": detected,
        "recall": detected / n,
        "lower_bound": binomial_lower_bound(detected, n, confidence),
        "target": float(target),
        "confidence": float(confidence),
        "before": before,
    }


def parse_min_recall(values: Iterable[str] | Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Parse ``--min-recall CLASS=TARGET`` values (or ``(class, target)`` pairs) into ``[(class, target)]``.

    Args:
        values: strings such as ``"mel=0.7"``, or pairs.

    Returns:
        The pairs in the order given.

    Raises:
        InputError: a value not of the form CLASS=TARGET, a TARGET outside (0, 1], or a class named
            twice (one line naming the value).

    Example:
        >>> parse_min_recall(["mel=0.7", ("bcc", 0.5)])
        [('mel', 0.7), ('bcc', 0.5)]
        >>> parse_min_recall(["mel=1.5"])
        Traceback (most recent call last):
        ...
        kdtool.errors.InputError: --min-recall mel=1.5: TARGET must be a number in (0, 1]
    """
    pairs: list[tuple[str, float]] = []
    for value in values:
        if isinstance(value, str):
            name, sep, text = value.partition("=")
            name, text = name.strip(), text.strip()
            if not sep or not name or not text:
                raise InputError(f"--min-recall {value!r}: expected CLASS=TARGET, e.g. mel=0.7")
            shown = value
        else:
            name, text = value
            shown = f"{name}={text}"
        try:
            target = float(text)
        except (TypeError, ValueError):
            target = math.nan
        if not 0.0 < target <= 1.0:  # NaN fails too
            raise InputError(f"--min-recall {shown}: TARGET must be a number in (0, 1]")
        if any(name == other for other, _ in pairs):
            raise InputError(f"--min-recall {shown}: class {name!r} is named more than once")
        pairs.append((str(name), target))
    return pairs
