"""Calibration and ROC curves of a bench record, and their plots (``kdtool bench --plots DIR``).

* :func:`calibration_field`: the record's ``calibration`` key, the expected calibration error of the
  top-1 probability (:func:`kdtool.metrics.expected_calibration_error`, 15 bins) with a 95% bootstrap
  interval over the same lesions or images as the other intervals, and the reliability bins
  (:func:`kdtool.reliability.reliability_bins`) a diagram is drawn from. The float and the int8 model
  are measured alike, from the probabilities bench computes (softmax of the dequantized outputs).
* :func:`roc_curves`: the record's ``roc_curves`` key, one-vs-rest ROC points per class
  (:func:`kdtool.metrics.roc_points`, at most 201 points each).
* :func:`write_plots`: ``<model>.roc.png`` and ``<model>.reliability.png`` per record
  (:mod:`kdtool.figures`); without matplotlib (the device install) no plot and one note.

Example:
    >>> y = np.array([0, 1, 1, 0] * 5)
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]] * 5)
    >>> cal = calibration_field(y, probs, n_boot=50)
    >>> round(cal["ece"], 4), sum(cal["bins"]["count"]), cal["ece_ci95"][0] <= cal["ece"] <= cal["ece_ci95"][1]
    (0.3, 20, True)
    >>> roc_curves(y, probs, ["nv", "mel"])["mel"]["fpr"]
    [0.0, 0.0, 0.0, 0.5, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdtool.bench.uncertainty import BOOTSTRAP_SEED, DEFAULT_BOOTSTRAP
from kdtool.intervals import bootstrap_intervals
from kdtool.metrics import expected_calibration_error, roc_points
from kdtool.reliability import reliability_bins

#: Confidence bins of the ECE and the reliability diagram (as the record's ``ece`` key).
ECE_BINS = 15
#: Most points of each ROC curve in the record.
ROC_POINTS = 201
#: The line printed instead of plots when matplotlib is missing.
NO_MATPLOTLIB = "matplotlib not installed: no plots"


def _weighted_ece(labels: np.ndarray, probs: np.ndarray, bins: int):
    """(labels, resample indices) -> the ECE of the resample, from per-bin sums weighted by multiplicity.

    Sum over bins of (share of images) * |accuracy - mean confidence| = sum over bins of
    |sum of (correct - confidence)| / images: :func:`expected_calibration_error` without a pass per bin.
    """
    conf = probs.max(axis=1)
    gap = (probs.argmax(axis=1) == labels).astype(np.float64) - conf
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)

    def ece(y: np.ndarray, drawn: np.ndarray) -> dict[str, float]:
        w = np.bincount(drawn, minlength=len(labels)).astype(np.float64)
        return {"ece": float(np.abs(np.bincount(idx, weights=w * gap, minlength=bins)).sum() / w.sum())}

    return ece


def calibration_field(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    bins: int = ECE_BINS,
) -> dict:
    """The record's ``calibration`` key.

    Args:
        labels: (N,) integer labels.
        probs: (N, K) class probabilities.
        groups: (N,) lesion ids to resample whole lesions, or None for images.
        n_boot: bootstrap resamples (0: no interval).
        seed: the bootstrap's seed.
        bins: equal-width confidence bins.

    Returns:
        ``{"ece": float, "ece_ci95": [low, high] or None, "bins": reliability_bins(...)}``.

    Example:
        >>> calibration_field(np.array([0, 1]), np.array([[0.75, 0.25], [0.75, 0.25]]), n_boot=0)["ece"]
        0.25
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    ci = None
    if n_boot > 0 and len(labels):
        everything = np.arange(len(labels))
        boot = bootstrap_intervals(_weighted_ece(labels, probs, bins), labels, everything, groups, n_boot, seed)
        ci = boot["ece"].as_list()
    return {
        "ece": expected_calibration_error(labels, probs, bins),
        "ece_ci95": ci,
        "bins": reliability_bins(labels, probs, bins),
    }


def roc_curves(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """The record's ``roc_curves`` key: each class's one-vs-rest ROC curve.

    Args:
        labels: (N,) integer labels.
        probs: (N, K) class probabilities.
        class_names: K names.

    Returns:
        ``{class name: {"fpr": [...], "tpr": [...]}}`` from (0, 0) to (1, 1), at most :data:`ROC_POINTS`
        points rounded to 6 decimals; None for a class absent from the split (or the only one present).

    Example:
        >>> roc_curves(np.array([0, 0]), np.array([[0.6, 0.4], [0.7, 0.3]]), ["a", "b"])
        {'a': None, 'b': None}
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    out: dict = {}
    for c, name in enumerate(class_names):
        fpr, tpr = roc_points(labels == c, probs[:, c], ROC_POINTS)
        out[name] = {"fpr": np.round(fpr, 6).tolist(), "tpr": np.round(tpr, 6).tolist()} if fpr.size else None
    return out


def plot_stem(model: str) -> str:
    """The file-name stem of a model's plots.

    Args:
        model: the record's ``model`` (a file name).

    Returns:
        The name without ``.tflite``.

    Example:
        >>> plot_stem("student.int8.tflite")
        'student.int8'
    """
    return model[: -len(".tflite")] if model.endswith(".tflite") else model


def write_plots(records: Sequence[dict], folder: str | Path) -> tuple[list[Path], str | None]:
    """``<model>.roc.png`` and ``<model>.reliability.png`` for every record that has the curves.

    Args:
        records: bench records (with ``roc_curves`` and ``calibration``).
        folder: where the PNG files go (created if missing).

    Returns:
        (the files written, a note line or None); no files and :data:`NO_MATPLOTLIB` when matplotlib is
        missing. Two models with the same file name get ``-2``, ``-3`` ... after the second one's stem.

    Example:
        >>> written, note = write_plots(records, "plots")  # doctest: +SKIP
    """
    from kdtool import figures

    if not figures.matplotlib_available():
        return [], NO_MATPLOTLIB
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: dict[str, int] = {}
    for rec in records:
        curves, cal = rec.get("roc_curves"), rec.get("calibration")
        if not curves and not cal:
            continue
        stem = plot_stem(rec["model"])
        seen[stem] = seen.get(stem, 0) + 1
        stem += f"-{seen[stem]}" if seen[stem] > 1 else ""
        title = f"{rec['model']} ({rec.get('split')}, {rec.get('n_images')} images)"
        if curves:
            path = folder / f"{stem}.roc.png"
            figures.plot_roc({k: (v["fpr"], v["tpr"]) for k, v in curves.items() if v}, path, title,
                             aucs=rec.get("roc_auc_per_class"),
                             highlight=(rec.get("class_of_concern") or {}).get("name"))  # fmt: skip
            written.append(path)
        if cal:
            path = folder / f"{stem}.reliability.png"
            figures.plot_reliability(cal["bins"], path, title, ece=cal.get("ece"))
            written.append(path)
    return written, None
