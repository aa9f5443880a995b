"""Evaluate Keras models on an FData split with kdtool's numpy metrics, and put 95% intervals on them.

:func:`evaluate_model` gives a split's :func:`kdtool.metrics.classification_report`. From a model's
logits on a split, :func:`split_metrics` gives the numbers ``summary.csv`` keeps, the threshold-free ones
included (per-class ROC-AUC; for the class of concern its sensitivity at 80, 90 and 95% specificity),
:func:`metric_intervals` their 95% intervals (percentile bootstrap over images, or whole lesions when
``groups`` are given, seeded; Clopper-Pearson for melanoma sensitivity and specificity), and
:func:`difference_to` a paired-bootstrap difference of balanced accuracy between two models on the same
images.

Example:
    >>> y = np.array([0, 1, 2, 1] * 10)
    >>> logits = 3.0 * np.eye(3)[y]
    >>> m = split_metrics(y, logits, ["nv", "mel", "bcc"])
    >>> m["balanced_accuracy"], m["roc_auc_mel"], m["sensitivity_at_specificity_0.9"]
    (1.0, 1.0, 1.0)
    >>> metric_intervals(y, logits, ["nv", "mel", "bcc"], n_boot=50)["melanoma_sensitivity"].method
    'clopper-pearson'
    >>> report = evaluate_model(model, fd, "val")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdtool.data import FData
from kdtool.distill.cluster import is_multi_worker
from kdtool.intervals import (
    Interval,
    bootstrap_intervals,
    clopper_pearson_interval,
    paired_bootstrap_difference,
    sensitivity_at_specificity,
)
from kdtool.metrics import (
    classification_report,
    expected_calibration_error,
    melanoma_index,
    roc_auc_per_class,
    roc_points,
)
from kdtool.reliability import reliability_bins, softmax

#: Specificities at which the class of concern's sensitivity is reported (as ``kdtool bench`` does).
SPECIFICITIES = (0.8, 0.9, 0.95)
#: Bootstrap resamples and seed of every interval: the same data give the same intervals.
N_BOOT = 1000
SEED = 0


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of ``model`` on float32 [0, 1] images, batched, in inference mode.

    Under a multi-worker strategy each process predicts on its own (no collective), so the chief can
    evaluate alone and every worker computes the same cached teacher logits.

    Args:
        model: a Keras model returning logits.
        x: (N, H, W, 3) float32 images.
        batch_size: batch size.

    Returns:
        float32 (N, K) logits.

    Example:
        >>> predict_logits(model, fd.x("val")).shape  # doctest: +SKIP
        (852, 7)
    """
    if len(x) <= batch_size:  # one eager call: predict()'s set-up costs more than it saves
        return np.asarray(model(x, training=False), dtype=np.float32)
    if is_multi_worker(getattr(model, "_distribute_strategy", None)):
        # predict() would shard x across the workers and gather: every worker would have to call it at once.
        # Each worker (the chief alone, for its outputs) predicts locally, with its own copy of the weights.
        parts = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts).astype(np.float32)
    # compiled inference: about 2x faster than eager calls when caching teacher logits
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


def report_from_logits(logits: np.ndarray, labels: np.ndarray, class_names) -> dict:
    """Classification report from logits and integer labels.

    Args:
        logits: (N, K) logits.
        labels: (N,) integer labels.
        class_names: K names.

    Returns:
        :func:`kdtool.metrics.classification_report`'s dict, with probabilities (ROC-AUC, ECE).

    Example:
        >>> report_from_logits(np.eye(2), np.array([0, 1]), ["nv", "mel"])["accuracy"]
        1.0
    """
    return classification_report(labels, logits.argmax(axis=1), class_names, probabilities=softmax(logits))


def evaluate_model(model, fd: FData, split: str, batch_size: int = 256) -> dict:
    """Classification report of ``model`` on one split of ``fd``.

    Args:
        model: Keras model (logits).
        fd: validated data.
        split: "train", "val" or "test".
        batch_size: inference batch size.

    Returns:
        :func:`kdtool.metrics.classification_report`'s dict.

    Example:
        >>> evaluate_model(model, fd, "val")["balanced_accuracy"]  # doctest: +SKIP
    """
    return report_from_logits(predict_logits(model, fd.x(split), batch_size), fd.labels(split), fd.class_names)


def threshold_free(labels: np.ndarray, logits: np.ndarray, class_names: Sequence[str]) -> dict:
    """The threshold-free numbers and the calibration ``metrics.json`` adds to a split's report.

    Keys as in a ``kdtool bench`` record, so one reader serves both.

    Args:
        labels: (N,) integer labels.
        logits: (N, K) logits.
        class_names: K names.

    Returns:
        ``roc_auc_per_class`` {class: AUC or None}; ``roc_curves`` {class: {fpr, tpr}} (at most 201 points);
        ``class_of_concern`` (the melanoma class's name, or None); ``sensitivity_at_specificity``
        {"0.8", "0.9", "0.95": {sensitivity, threshold}} of that class (None without one); ``calibration``
        {ece, bins} (:func:`kdtool.reliability.reliability_bins`).

    Example:
        >>> t = threshold_free(np.array([0, 1, 1]), np.array([[2.0, 0], [0, 2], [1, 0]]), ["nv", "mel"])
        >>> at90 = t["sensitivity_at_specificity"]["0.9"]
        >>> t["roc_auc_per_class"], at90["sensitivity"], round(at90["threshold"], 4)
        ({'nv': 1.0, 'mel': 1.0}, 1.0, 0.2689)
    """
    labels = np.asarray(labels)
    probs = softmax(np.asarray(logits))
    names = list(class_names)
    coc = melanoma_index(names)
    curves = {}
    for c, name in enumerate(names):
        fpr, tpr = roc_points(labels == c, probs[:, c])
        curves[name] = {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}
    at_spec = None
    if coc is not None:
        at_spec = {}
        for s in SPECIFICITIES:
            value, threshold = sensitivity_at_specificity(labels == coc, probs[:, coc], s)
            at_spec[f"{s:g}"] = {"sensitivity": None if np.isnan(value) else value, "threshold": threshold}
    return {
        "roc_auc_per_class": dict(zip(names, roc_auc_per_class(labels, probs), strict=True)),
        "roc_curves": curves,
        "class_of_concern": None if coc is None else names[coc],
        "sensitivity_at_specificity": at_spec,
        "calibration": {"ece": expected_calibration_error(labels, probs), "bins": reliability_bins(labels, probs)},
    }


# ----------------------------------------------------------------------------- metrics with intervals
def _metrics_of_probabilities(class_names: Sequence[str], coc: int | None):
    """(labels, probabilities) -> the flat metrics of :func:`split_metrics` (None where undefined)."""
    names = list(class_names)

    def metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
        rep = classification_report(y, probs.argmax(axis=1), names)
        aucs = roc_auc_per_class(y, probs)
        present = [a for a in aucs if a is not None]
        out = {
            "accuracy": rep["accuracy"],
            "balanced_accuracy": rep["balanced_accuracy"],
            "macro_precision": rep["macro"]["precision"],
            "macro_recall": rep["macro"]["recall"],
            "macro_f1": rep["macro"]["f1"],
            "melanoma_sensitivity": rep.get("melanoma_sensitivity"),
            "melanoma_specificity": rep.get("melanoma_specificity"),
            "roc_auc": float(np.mean(present)) if len(present) >= 2 else None,
            "ece": expected_calibration_error(y, probs),
        }
        out.update({f"roc_auc_{name}": a for name, a in zip(names, aucs, strict=True)})
        if coc is not None:
            for s in SPECIFICITIES:
                value = sensitivity_at_specificity(y == coc, probs[:, coc], s)[0]
                out[f"sensitivity_at_specificity_{s:g}"] = None if np.isnan(value) else value
        return out

    return metrics


def split_metrics(labels: np.ndarray, logits: np.ndarray, class_names: Sequence[str]) -> dict[str, float | None]:
    """The numbers ``summary.csv`` keeps of one model on one split, from its logits.

    The class of concern is the melanoma class (``mel``/``melanoma``) when the data have one.

    Args:
        labels: (N,) integer labels.
        logits: (N, K) the model's logits.
        class_names: K names.

    Returns:
        accuracy, balanced_accuracy, macro_precision, macro_recall, macro_f1, melanoma_sensitivity,
        melanoma_specificity, roc_auc (macro one-vs-rest), ece, ``roc_auc_<class>`` per class and, with a
        melanoma class, ``sensitivity_at_specificity_<s>`` for s in :data:`SPECIFICITIES`; None where undefined.

    Example:
        >>> split_metrics(np.array([0, 1]), np.eye(2), ["a", "b"])["melanoma_sensitivity"] is None
        True
    """
    metrics = _metrics_of_probabilities(class_names, melanoma_index(class_names))
    return metrics(np.asarray(labels), softmax(np.asarray(logits)))


def metric_intervals(
    labels: np.ndarray,
    logits: np.ndarray,
    class_names: Sequence[str],
    groups: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> dict[str, Interval]:
    """95% intervals of every metric of :func:`split_metrics`.

    Percentile bootstrap over images (whole groups with ``groups``), all metrics on the same resamples;
    melanoma sensitivity and specificity get the exact Clopper-Pearson interval of their counts instead.

    Args:
        labels: (N,) integer labels.
        logits: (N, K) logits.
        class_names: K names.
        groups: (N,) lesion ids to resample whole lesions, or None for images.
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        {metric: :class:`kdtool.intervals.Interval`}; NaN ends where a metric is undefined.

    Example:
        >>> y = np.array([0, 1] * 10)
        >>> iv = metric_intervals(y, np.eye(2)[y], ["nv", "mel"], n_boot=20)
        >>> iv["accuracy"].as_list(), iv["roc_auc_mel"].estimate
        ([1.0, 1.0], 1.0)
    """
    labels = np.asarray(labels)
    probs = softmax(np.asarray(logits))
    mel = melanoma_index(class_names)
    out = bootstrap_intervals(_metrics_of_probabilities(class_names, mel), labels, probs, groups, n_boot, seed)
    if mel is not None:
        pos, called = labels == mel, probs.argmax(axis=1) == mel
        for key, hits, n in (
            ("melanoma_sensitivity", int((pos & called).sum()), int(pos.sum())),
            ("melanoma_specificity", int((~pos & ~called).sum()), int((~pos).sum())),
        ):
            if n:
                out[key] = clopper_pearson_interval(hits, n)
    return out


def difference_to(
    labels: np.ndarray,
    logits: np.ndarray,
    reference_logits: np.ndarray,
    class_names: Sequence[str],
    groups: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> Interval:
    """Balanced accuracy of a model minus a reference's on the same images, with a paired-bootstrap interval.

    Args:
        labels: (N,) integer labels.
        logits: (N, K) the model's logits.
        reference_logits: (N, K) the reference's (e.g. the student trained alone), same images, same order.
        class_names: K names.
        groups: (N,) lesion ids to resample whole lesions, or None for images.
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        The :class:`kdtool.intervals.Interval` of the difference (fractions, not points).

    Example:
        >>> y = np.array([0, 1] * 10)
        >>> good, coin = np.eye(2)[y], np.zeros((20, 2))
        >>> difference_to(y, good, coin, ["a", "b"], n_boot=50).estimate
        0.5
    """
    names = list(class_names)

    def balanced(t: np.ndarray, pred: np.ndarray) -> float:
        return classification_report(t, pred, names)["balanced_accuracy"]

    pred = np.asarray(logits).argmax(axis=1)
    ref = np.asarray(reference_logits).argmax(axis=1)
    return paired_bootstrap_difference(balanced, np.asarray(labels), pred, ref, groups, n_boot, seed)
