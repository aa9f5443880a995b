"""Classification metrics in numpy only (used on the device, where there is no scikit-learn).

Example:
    >>> import numpy as np
    >>> r = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    >>> round(r["accuracy"], 3)
    0.667
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts[i, j] = images of true class i predicted as class j.

    Args:
        y_true: integer labels, shape (N,).
        y_pred: integer predictions, shape (N,).
        num_classes: K; labels must lie in 0..K-1.

    Returns:
        int64 array of shape (K, K).
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    probabilities: np.ndarray | None = None,
) -> dict:
    """Accuracy, balanced accuracy, per-class and averaged precision/recall/F1.

    Conventions match scikit-learn with ``zero_division=0``: a class with no
    prediction has precision 0, a class absent from ``y_true`` has recall 0 and
    is left out of balanced accuracy (as ``balanced_accuracy_score`` does).

    Args:
        y_true: integer labels (N,).
        y_pred: integer predictions (N,).
        class_names: K names; their order is the label order.
        probabilities: optional (N, K) class probabilities (ROC-AUC, calibration).

    Returns:
        A JSON-ready dict with keys ``n``, ``accuracy``, ``balanced_accuracy``,
        ``per_class`` {name: {precision, recall, f1, support}}, ``macro`` and
        ``weighted`` {precision, recall, f1}, ``confusion_matrix`` (list of lists);
        when a melanoma class is present ``melanoma_sensitivity`` and
        ``melanoma_specificity``; with ``probabilities`` also ``mean_confidence``,
        ``roc_auc_macro`` (one-vs-rest) and ``ece`` (expected calibration error).
    """
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    n = int(cm.sum())
    present = support > 0
    total = max(support.sum(), 1.0)
    report = {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "weighted": {
            "precision": float((precision * support).sum() / total),
            "recall": float((recall * support).sum() / total),
            "f1": float((f1 * support).sum() / total),
        },
        "confusion_matrix": cm.tolist(),
    }
    mel = melanoma_index(class_names)
    if mel is not None:
        report["melanoma_sensitivity"] = float(recall[mel])
        negatives = n - support[mel]
        false_alarms = predicted[mel] - tp[mel]
        report["melanoma_specificity"] = float((negatives - false_alarms) / negatives) if negatives else 0.0
    if probabilities is not None:
        probs = np.asarray(probabilities, dtype=np.float64)
        report["mean_confidence"] = float(probs.max(axis=1).mean())
        report["roc_auc_macro"] = roc_auc_ovr(y_true, probs)
        report["ece"] = expected_calibration_error(y_true, probs)
    return report


def binary_roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); None if one class is missing.

    Vectorized (no Python loop over scores), so the bootstrap in :mod:`kdtool.intervals` can call it often.

    Args:
        positive: (N,) bool, True for the positive class.
        scores: (N,) scores, higher meaning more positive.

    Returns:
        The AUC in 0..1, or None when the positives or the negatives are missing.

    Example:
        >>> binary_roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    positive = np.asarray(positive, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts) + ends + 1) / 2.0  # 1-based ranks, averaged over ties
    return float((ranks[inverse.ravel()][positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_points(positive: np.ndarray, scores: np.ndarray, max_points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """The one-vs-rest ROC curve: false- and true-positive rates at every distinct score threshold.

    Tied scores make one step, so the curve is the one :func:`binary_roc_auc` integrates. Long curves are
    thinned to at most ``max_points`` points (always keeping both ends), enough for a plot or a JSON record.

    Args:
        positive: (N,) bool, True for the positive class.
        scores: (N,) scores, higher meaning more positive.
        max_points: most points returned (>= 2).

    Returns:
        ``(fpr, tpr)``: float64 arrays from (0, 0) to (1, 1), non-decreasing; both empty when the positives
        or the negatives are missing.

    Example:
        >>> fpr, tpr = roc_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    positive = np.asarray(positive, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last image of each run of tied scores
    tp = np.cumsum(pos)[last]
    fp = np.cumsum(~pos)[last]
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    if fpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, max(2, max_points))).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr, tpr


def roc_auc_per_class(y_true: np.ndarray, probabilities: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC-AUC of every class (its probability against all other images).

    Args:
        y_true: (N,) integer labels.
        probabilities: (N, K) class scores.

    Returns:
        K values; None for a class absent from ``y_true`` (or the only one present).

    Example:
        >>> roc_auc_per_class(np.array([0, 0, 1]), np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]))
        [1.0, 1.0]
    """
    y_true = np.asarray(y_true).ravel()
    return [binary_roc_auc(y_true == c, probabilities[:, c]) for c in range(probabilities.shape[1])]


def roc_auc_ovr(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Macro one-vs-rest ROC-AUC over the classes present in ``y_true`` (as scikit-learn's
    ``roc_auc_score(..., multi_class="ovr", average="macro")`` on those classes); None if < 2 present."""
    aucs = [a for a in roc_auc_per_class(y_true, probabilities) if a is not None]
    return float(np.mean(aucs)) if len(aucs) >= 2 else None


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Top-1 expected calibration error: sum over equal-width confidence bins of
    (share of images) * |accuracy - mean confidence|."""
    probs = np.asarray(probabilities, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true).ravel()
    if conf.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    # per bin |sum(correct) - sum(confidence)| / N equals share * |accuracy - mean confidence|
    gap = np.bincount(idx, weights=correct - conf, minlength=bins)
    return float(np.abs(gap).sum() / conf.size)


def melanoma_index(class_names: Sequence[str]) -> int | None:
    """Index of the melanoma class ("mel" or "melanoma"), or None."""
    for i, name in enumerate(class_names):
        if str(name).lower() in ("mel", "melanoma"):
            return i
    return None


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of images where two models give the same top-1 class."""
    pred_a, pred_b = np.asarray(pred_a).ravel(), np.asarray(pred_b).ravel()
    return float((pred_a == pred_b).mean()) if pred_a.size else 0.0
