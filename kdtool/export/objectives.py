"""Operating points: a per-class logit bias fitted to a named objective, plus where it came from (numpy only).

An exported model decides ``argmax(z + bias)``, where ``z`` are its logits as trained. The **objective**
names how ``bias`` is chosen:

* ``as-trained``: no bias, the model's own decisions (with logit-adjusted training, the balanced point);
* ``balanced`` and ``accuracy``: ``bias = tau * log(train class frequencies)`` with ONE scalar ``tau``
  fitted on a grid (:data:`TAU_GRID`) to maximise balanced accuracy resp. accuracy on the fit data
  (:func:`fit_tau`; ties go to the smallest ``|tau|``). One parameter stays stable on a small
  validation split; ``tau = 1`` restores the train prior, ``tau < 0`` favours rare classes.

Then **min recall** (:mod:`kdtool.export.min_recall`) raises named classes until their recall lower bound
reaches a target, and an optional **temperature** T, fitted last on ``z + bias``, divides the logits
(``(z + bias) / T``): it changes the probabilities, never a decision. :func:`fit_operating_point` does all
three on the **fit data** (validation or out-of-fold train logits, never test) and returns the sidecar's
``operating_point`` record with its :func:`summary` line (docs/operating-points.md).

Example:
    >>> m = np.array([-3, -3, -3, -3, -0.2, -0.2, 1.0, -0.5])   # class 1's logit minus class 0's
    >>> z, y = np.stack([np.zeros(8), m], axis=1), np.array([0] * 6 + [1] * 2)
    >>> lp = np.log([0.8, 0.2])                                # class 1 is rare in train
    >>> fit_tau(z, y, lp, "balanced"), fit_tau(z, y, lp, "accuracy")
    ((-0.4, 0.8333333333333333), (0.0, 0.875))
    >>> fit_operating_point(z, y, ["nv", "mel"], "balanced", lp, fitted_on="val")["summary"]
    'balanced (tau -0.40, fitted on val, 8 images)'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdtool.export.min_recall import binomial_lower_bound, found, recall_offset
from kdtool.reliability import fit_temperature

#: ``kdtool export --operating-point`` choices.
OBJECTIVES = ("as-trained", "balanced", "accuracy")
#: ``kdtool export --fit-on`` choices: out-of-fold train logits when the run has them (auto), validation, or
#: out-of-fold (required).
FIT_SOURCES = ("auto", "val", "oof")
#: The values of ``tau`` that ``balanced`` and ``accuracy`` choose from.
TAU_GRID = tuple(round(-1.0 + 0.05 * i, 2) for i in range(61))
#: Rounds of min-recall offsets when several classes are named (raising one class can cost another).
MAX_PASSES = 20
#: How the fit data are named in the summary line.
FIT_NAMES = {"val": "val", "oof": "out-of-fold train logits"}


def decision_scores(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and balanced accuracy (mean recall over the classes present), as kdtool.metrics defines them.

    Args:
        labels: (N,) integer labels.
        pred: (N,) integer predictions.
        num_classes: K.

    Returns:
        ``{"accuracy", "balanced_accuracy"}`` as fractions.

    Example:
        >>> decision_scores(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2)
        {'accuracy': 0.75, 'balanced_accuracy': 0.5}
    """
    labels, pred = np.asarray(labels), np.asarray(pred)
    support = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels[labels == pred], minlength=num_classes)
    present = support > 0
    return {
        "accuracy": float(np.mean(labels == pred)) if len(labels) else 0.0,
        "balanced_accuracy": float(np.mean(hits[present] / support[present])) if present.any() else 0.0,
    }


def fit_tau(
    logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray, objective: str, grid: Sequence[float] = TAU_GRID
) -> tuple[float, float]:
    """The ``tau`` on ``grid`` whose decisions ``argmax(logits + tau * log_prior)`` score best.

    Args:
        logits: (N, K) logits of the fit data as trained.
        labels: (N,) integer labels.
        log_prior: (K,) log train class frequencies (:func:`kdtool.priors.log_prior`).
        objective: ``balanced`` (balanced accuracy) or ``accuracy``.
        grid: candidate values.

    Returns:
        ``(tau, score)``; among equal scores the smallest ``|tau|`` (then the smaller tau).

    Raises:
        ValueError: an objective that fits nothing.

    Example:
        >>> z, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
        >>> fit_tau(z, y, np.log([0.5, 0.5]), "accuracy")   # a flat prior: every tau ties, 0 wins
        (0.0, 1.0)
    """
    key = {"balanced": "balanced_accuracy", "accuracy": "accuracy"}.get(objective)
    if key is None:
        raise ValueError(f"objective {objective!r} fits no tau (choose balanced or accuracy)")
    z = np.asarray(logits, dtype=np.float64)
    lp = np.asarray(log_prior, dtype=np.float64)
    scored = [(decision_scores(labels, np.argmax(z + t * lp, axis=1), z.shape[1])[key], float(t)) for t in grid]
    best = max(s for s, _ in scored)
    tau = min((t for s, t in scored if s >= best - 1e-12), key=lambda t: (abs(t), t))
    return tau, best


def _min_recall(
    z: np.ndarray, labels: np.ndarray, bias: np.ndarray, targets: Sequence[tuple[int, float]], confidence: float
) -> tuple[np.ndarray, list[tuple[int, float, float]]]:
    """Offsets (K,) that raise each named class until its recall bound reaches its target.

    Classes are raised in turn; when raising one costs another its bound, another round follows
    (at most :data:`MAX_PASSES`). Returns the offsets and ``(class, target, offset)`` per target.
    """
    offsets = np.zeros(z.shape[1])
    for _ in range(MAX_PASSES):
        moved = False
        for cls, target in targets:
            step = recall_offset(z + bias + offsets, labels, cls, target, confidence)["offset"]
            if step > 0:
                offsets[cls] += step
                moved = True
        if not moved:
            break
    return offsets, [(cls, target, float(offsets[cls])) for cls, target in targets]


def fit_operating_point(
    logits: np.ndarray | None,
    labels: np.ndarray | None,
    class_names: Sequence[str],
    objective: str = "as-trained",
    log_prior: np.ndarray | None = None,
    min_recall: Sequence[tuple[int, float]] = (),
    confidence: float = 0.95,
    temperature: bool = False,
    fitted_on: str | None = None,
) -> dict:
    """The sidecar's ``operating_point``: the objective's bias, then min recall, then the temperature.

    Args:
        logits: (N, K) logits of the fit data as trained (None when nothing is fitted).
        labels: (N,) their labels.
        class_names: K names.
        objective: one of :data:`OBJECTIVES`.
        log_prior: (K,) log train class frequencies (needed by ``balanced`` and ``accuracy``).
        min_recall: ``(class index, target)`` pairs, applied in that order.
        confidence: of the min-recall lower bounds, in [0, 1).
        temperature: also fit a temperature on ``logits + bias``.
        fitted_on: ``val`` or ``oof``: what the fit data are.

    Returns:
        ``{"objective", "fitted_on", "fit_images", "tau", "bias", "temperature", "min_recall", "summary"}``:
        ``bias`` is the (K,) total added to the as-trained logits, ``temperature`` divides the sum
        (None: not fitted), ``min_recall`` one record per target (``class``, ``target``, ``confidence``,
        ``offset``, ``detected``, ``images``, ``lower_bound``, ``reached``).

    Raises:
        ValueError: an unknown objective, missing fit data or prior, or a class with too few images.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    k = len(class_names)
    fits = objective != "as-trained" or bool(min_recall) or temperature
    record = {
        "objective": objective,
        "fitted_on": None,
        "fit_images": None,
        "tau": None,
        "bias": [0.0] * k,
        "temperature": None,
        "min_recall": [],
    }
    if not fits:
        return {**record, "summary": summary(record)}
    if logits is None or labels is None or fitted_on is None:
        raise ValueError("fitting an operating point needs fit logits, labels and their source")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    bias = np.zeros(k)
    if objective != "as-trained":
        if log_prior is None:
            raise ValueError(f"objective {objective!r} needs the train class frequencies")
        tau, _ = fit_tau(z, y, log_prior, objective)
        bias = tau * np.asarray(log_prior, dtype=np.float64)
        record["tau"] = tau
    offsets, held = _min_recall(z, y, bias, min_recall, confidence)
    bias = bias + offsets
    for cls, target, offset in held:
        own = z[y == cls] + bias
        detected = found(own, cls, 0.0)
        bound = binomial_lower_bound(detected, len(own), confidence)
        record["min_recall"].append(
            {
                "class": str(class_names[cls]),
                "target": float(target),
                "confidence": float(confidence),
                "offset": offset,
                "detected": detected,
                "images": len(own),
                "lower_bound": bound,
                "reached": bool(bound >= target - 1e-12),
            }
        )
    if temperature:
        record["temperature"] = fit_temperature(z + bias, y)
    record.update(fitted_on=fitted_on, fit_images=int(len(y)), bias=[float(v) for v in bias])
    return {**record, "summary": summary(record)}


def summary(record: dict) -> str:
    """The one human line of an ``operating_point`` record (printed by export, read back by bench).

    Args:
        record: the record without (or with) its ``summary``.

    Returns:
        For example ``balanced (tau -0.30, fitted on val, 852 images); mel recall >= 0.70 at 95%: +1.23
        (40/50, lower bound 0.71)``.

    Example:
        >>> summary({"objective": "as-trained", "fitted_on": None, "min_recall": [], "temperature": None})
        'as trained (no bias)'
    """
    where = None
    if record.get("fitted_on"):
        where = f"fitted on {FIT_NAMES.get(record['fitted_on'], record['fitted_on'])}, {record['fit_images']} images"
    if record["objective"] == "as-trained":
        head = "as trained" if (record.get("min_recall") or record.get("temperature")) else "as trained (no bias)"
    else:
        head = f"{record['objective']} (tau {record['tau']:+.2f}, {where})"
    parts = [head]
    for held in record.get("min_recall") or []:
        conf = f"at {100 * held['confidence']:g}%" if held["confidence"] else "observed"
        bound = f", lower bound {held['lower_bound']:.2f}" if held["confidence"] else ""
        parts.append(
            f"{held['class']} recall >= {held['target']:.2f} {conf}: {held['offset']:+.2f} "
            f"({held['detected']}/{held['images']}{bound}){'' if held['reached'] else ', NOT reached'}"
        )
    if record.get("temperature"):
        parts.append(f"temperature {record['temperature']:.3g}")
    if record["objective"] == "as-trained" and where:
        parts.append(where)
    return "; ".join(parts)
