"""Classification metrics in numpy only (used on the device, where there is no scikit-learn).

Example:
    >>> import numpy as np
    >>> r = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    >>> round(r["accuracy"], 3)
    0.667
"""

from __future__ import annotations

from typing import Sequence

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
        probabilities: optional (N, K) scores, only used for ``mean_confidence``.

    Returns:
        A JSON-ready dict with keys ``n``, ``accuracy``, ``balanced_accuracy``,
        ``per_class`` {name: {precision, recall, f1, support}}, ``macro`` and
        ``weighted`` {precision, recall, f1}, ``confusion_matrix`` (list of lists)
        and, for the melanoma class when present, ``melanoma_sensitivity``.
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
    if probabilities is not None:
        report["mean_confidence"] = float(np.asarray(probabilities).max(axis=1).mean())
    return report


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
