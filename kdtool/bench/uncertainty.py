"""Bench intervals and threshold-free metrics: the record keys they add and the table that shows them.

:func:`interval_fields` adds to a bench record (keys documented in :mod:`kdtool.bench.report`):

* one-vs-rest ROC-AUC per class;
* for the class of concern (``mel``/``melanoma`` when the data have it, or ``--class-of-concern``)
  its sensitivity and specificity with Clopper-Pearson intervals, and its sensitivity at 80%, 90%
  and 95% specificity (thresholds on its probability, so no operating point is assumed);
* 95% percentile-bootstrap intervals of accuracy, balanced accuracy, macro-F1 and ROC-AUC,
  resampling whole lesions when the FData folder's ``image_ids.csv`` names them, else images
  (:mod:`kdtool.intervals`; numpy only, so it runs on the device).

:func:`reference_difference` gives the paired-bootstrap difference to a ``--reference`` model.

Example:
    >>> y = np.array([0, 1, 2, 1] * 10)
    >>> probs = np.eye(3)[y] * 0.6 + 0.1
    >>> f = interval_fields(y, probs, ["nv", "mel", "bkl"], class_of_concern=1, n_boot=50)
    >>> f["class_of_concern"]["name"], f["ci95"]["accuracy"], f["bootstrap"]["groups"]
    ('mel', [1.0, 1.0], 'image')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdtool.bench.tables import pct_cell as _cell
from kdtool.bench.tables import render_table
from kdtool.errors import InputError
from kdtool.intervals import (
    bootstrap_intervals,
    clopper_pearson_interval,
    paired_bootstrap_difference,
    sensitivity_at_specificity,
)
from kdtool.metrics import classification_report, melanoma_index

#: Specificities at which the class of concern's sensitivity is reported.
SPECIFICITIES = (0.8, 0.9, 0.95)
#: The bootstrap's seed: the same data give the same intervals.
BOOTSTRAP_SEED = 0
#: ``--bootstrap``'s default number of resamples.
DEFAULT_BOOTSTRAP = 1000
#: The record keys :func:`interval_fields` adds, in order.
FIELDS = ("roc_auc_per_class", "class_of_concern", "sensitivity_at_specificity", "ci95", "interval_method",
          "bootstrap")  # fmt: skip


def resolve_class_of_concern(name: str | None, class_names: Sequence[str], source: str) -> int | None:
    """The index of the class of concern: ``name`` (any case), else the melanoma class, else None.

    Args:
        name: ``--class-of-concern``, or None.
        class_names: the data's class names.
        source: the data folder, for the error message.

    Returns:
        The class index, or None (no name given and no melanoma class).

    Raises:
        InputError: ``name`` is not one of the classes (one line, exit code 2).

    Example:
        >>> resolve_class_of_concern(None, ["nv", "mel"], "FData"), resolve_class_of_concern("NV", ["nv", "mel"], "F")
        (1, 0)
    """
    if name is None:
        return melanoma_index(class_names)
    for i, c in enumerate(class_names):
        if str(c).lower() == name.lower():
            return i
    raise InputError(f"--class-of-concern {name}: {source} has no such class (classes: {', '.join(class_names)})")


def _spec_key(s: float) -> str:
    return f"{s:g}"


class RankedScores:
    """One class's scores sorted once: a resample's AUC and sensitivity at specificity are then
    sums weighted by how often it drew each image, with no sort per resample."""

    def __init__(self, positive: np.ndarray, scores: np.ndarray):
        uniq, inverse = np.unique(scores, return_inverse=True)
        self.size, self.inverse, self.positive = len(uniq), inverse.ravel(), positive

    def _counts(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.bincount(self.inverse, weights=weights * self.positive, minlength=self.size)
        return pos, np.bincount(self.inverse, weights=weights * ~self.positive, minlength=self.size)

    def auc(self, weights: np.ndarray) -> float | None:
        pos, neg = self._counts(weights)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return None
        return float((pos * (np.cumsum(neg) - 0.5 * neg)).sum() / (n_pos * n_neg))  # ties count one half

    def sensitivity_at(self, weights: np.ndarray, specificities: Sequence[float]) -> list[float]:
        pos, neg = self._counts(weights)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return [float("nan")] * len(specificities)
        spec = (np.cumsum(neg) - neg) / n_neg  # as kdtool.intervals.sensitivity_at_specificity
        sens = (n_pos - (np.cumsum(pos) - pos)) / n_pos
        out = []
        for target in specificities:
            ok = np.flatnonzero(spec >= target - 1e-12)
            out.append(float(sens[ok[0]]) if ok.size else 0.0)
        return out


def _resample_metrics(labels: np.ndarray, probs: np.ndarray, names: Sequence[str], coc: int | None):
    """Metrics of a resample given as (its labels, the indices it drew) (``scores`` = ``arange(N)``)."""
    pred = probs.argmax(axis=1)
    ranked = [RankedScores(labels == c, probs[:, c]) for c in range(len(names))]

    def metrics(y: np.ndarray, idx: np.ndarray) -> dict[str, float | None]:
        rep = classification_report(y, pred[idx], names)
        weights = np.bincount(idx, minlength=len(labels)).astype(np.float64)
        aucs = [r.auc(weights) for r in ranked]
        present = [a for a in aucs if a is not None]
        out = {
            "accuracy": rep["accuracy"],
            "balanced_accuracy": rep["balanced_accuracy"],
            "macro_f1": rep["macro"]["f1"],
            "roc_auc_macro": float(np.mean(present)) if len(present) >= 2 else None,
        }
        out.update({f"auc:{name}": a for name, a in zip(names, aucs, strict=True)})
        if coc is not None:
            values = ranked[coc].sensitivity_at(weights, SPECIFICITIES)
            out.update({f"sens@{_spec_key(s)}": v for s, v in zip(SPECIFICITIES, values, strict=True)})
        return out

    return metrics


def _proportion(k: int, n: int, with_interval: bool) -> tuple[float | None, list[float] | None]:
    if n == 0:
        return None, None
    return k / n, clopper_pearson_interval(k, n).as_list() if with_interval else None


def interval_fields(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    class_of_concern: int | None = None,
    groups: np.ndarray | None = None,
    group_by: str = "image",
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """The record keys of :data:`FIELDS` for one model on one split.

    Args:
        labels: (N,) integer labels.
        probs: (N, K) class probabilities (top-1 predictions are their argmax).
        class_names: K names.
        class_of_concern: index of the class of concern, or None.
        groups: (N,) group id per image (lesion ids) to resample whole groups, or None.
        group_by: what ``groups`` are, for the record (``lesion_id``; ``image`` without groups).
        n_boot: bootstrap resamples; 0 leaves every interval out (null).
        seed: the bootstrap's seed.

    Returns:
        A dict with the keys of :data:`FIELDS`, in that order.

    Example:
        >>> interval_fields(np.array([0, 1]), np.eye(2), ["a", "b"], n_boot=0)["ci95"] is None
        True
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    names = list(class_names)
    intervals = n_boot > 0
    metrics = _resample_metrics(labels, probs, names, class_of_concern)
    everything = np.arange(len(labels))
    point = metrics(labels, everything)
    boot = bootstrap_intervals(metrics, labels, everything, groups, n_boot, seed) if intervals else {}

    def ci(key: str) -> list[float] | None:
        return boot[key].as_list() if key in boot else None

    coc, at_spec = None, None
    pred = probs.argmax(axis=1)
    ci95: dict = {k: ci(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro")}
    ci95["roc_auc_per_class"] = {name: ci(f"auc:{name}") for name in names}
    for key, index in (("class_of_concern", class_of_concern), ("melanoma", melanoma_index(names))):
        if index is None:
            ci95[f"{key}_sensitivity"] = ci95[f"{key}_specificity"] = None
            continue
        pos, called = labels == index, pred == index
        sens = _proportion(int((pos & called).sum()), int(pos.sum()), intervals)
        spec = _proportion(int((~pos & ~called).sum()), int((~pos).sum()), intervals)
        ci95[f"{key}_sensitivity"], ci95[f"{key}_specificity"] = sens[1], spec[1]
        if key == "class_of_concern":
            coc = {"name": names[index], "positives": int(pos.sum()), "negatives": int((~pos).sum()),
                   "sensitivity": sens[0], "specificity": spec[0]}  # fmt: skip
    if class_of_concern is not None:
        at_spec = {}
        for s in SPECIFICITIES:
            value, threshold = sensitivity_at_specificity(labels == class_of_concern, probs[:, class_of_concern], s)
            at_spec[_spec_key(s)] = {
                "sensitivity": None if np.isnan(value) else value,
                "threshold": threshold,
                "ci95": ci(f"sens@{_spec_key(s)}"),
            }
    public = {"auc:": "roc_auc_per_class.", "sens@": "sensitivity_at_specificity."}  # names as in the record
    dropped = {}
    for k, iv in boot.items():
        if iv.dropped:
            name = next((new + k[len(old) :] for old, new in public.items() if k.startswith(old)), k)
            dropped[name] = iv.dropped
    n_groups = len(np.unique(groups)) if groups is not None else len(labels)
    return {
        "roc_auc_per_class": {name: point[f"auc:{name}"] for name in names},
        "class_of_concern": coc,
        "sensitivity_at_specificity": at_spec,
        "ci95": ci95 if intervals else None,
        "interval_method": (
            "95% percentile bootstrap (accuracy, balanced accuracy, macro-F1, ROC-AUC, sensitivity at "
            "specificity); Clopper-Pearson exact (sensitivity, specificity)"
            if intervals
            else None
        ),
        "bootstrap": {
            "n": int(n_boot),
            "seed": int(seed),
            "groups": group_by if groups is not None else "image",
            "n_groups": int(n_groups),
            "dropped": dropped,
        }
        if intervals
        else None,
    }


def reference_difference(
    labels: np.ndarray,
    preds: np.ndarray,
    reference_preds: np.ndarray,
    class_names: Sequence[str],
    groups: np.ndarray | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """Accuracy and balanced accuracy of a model minus a reference's, on the same images (paired bootstrap).

    Args:
        labels: (N,) integer labels.
        preds: (N,) the model's top-1 predictions.
        reference_preds: (N,) the reference's, for the same images.
        class_names: K names.
        groups: (N,) lesion ids to resample whole lesions, or None for images.
        n_boot: bootstrap resamples; 0: the differences without intervals.
        seed: the bootstrap's seed.

    Returns:
        {"accuracy": {"difference", "ci95"}, "balanced_accuracy": {...}}; ``ci95`` null with ``n_boot`` 0.

    Example:
        >>> y = np.array([0, 1, 1, 0, 1])
        >>> reference_difference(y, y, y, ["a", "b"], n_boot=20)["balanced_accuracy"]
        {'difference': 0.0, 'ci95': [0.0, 0.0]}
    """
    out = {}
    for key in ("accuracy", "balanced_accuracy"):

        def metric(t: np.ndarray, p: np.ndarray, key: str = key) -> float:
            return classification_report(t, p, class_names)[key]

        diff = metric(labels, preds) - metric(labels, reference_preds)
        ci = None
        if n_boot > 0:
            ci = paired_bootstrap_difference(metric, labels, preds, reference_preds, groups, n_boot, seed).as_list()
        out[key] = {"difference": diff, "ci95": ci}
    return out


# ----------------------------------------------------------------------------- the table
def format_intervals(records: Sequence[dict]) -> str:
    """The intervals and threshold-free metrics of a bench run, as two small tables (empty without them).

    Args:
        records: bench records.

    Returns:
        Text to print below :func:`kdtool.bench.report.format_table`; "" when no record has intervals
        or a class of concern (older results, or ``--bootstrap 0`` without one).

    Example:
        >>> y = np.array([0, 1] * 10)
        >>> rec = {"model": "s.tflite", "accuracy": 1.0, "balanced_accuracy": 1.0, "macro": {"f1": 1.0},
        ...        "roc_auc_macro": 1.0, "ece": 0.05, **interval_fields(y, np.eye(2)[y], ["nv", "mel"], 1, n_boot=20)}
        >>> print(format_intervals([rec]).splitlines()[3])
        s.tflite  100.0 [100.0, 100.0]  100.0 [100.0, 100.0]  100.0 [100.0, 100.0]  1.000 [1.000, 1.000]  0.050
    """
    with_ci = [r for r in records if r.get("ci95")]
    with_coc = [r for r in records if r.get("class_of_concern")]
    lines: list[str] = []
    with_ref = any(r.get("reference_difference") for r in with_ci)
    if with_ci:
        rows = []
        for r in with_ci:
            ci = r["ci95"]
            rows.append([
                r["model"], _cell(r.get("accuracy"), ci.get("accuracy")),
                _cell(r.get("balanced_accuracy"), ci.get("balanced_accuracy")),
                _cell((r.get("macro") or {}).get("f1"), ci.get("macro_f1")),
                _cell(r.get("roc_auc_macro"), ci.get("roc_auc_macro"), 1.0, ".3f"),
                _cell(r.get("ece"), (r.get("calibration") or {}).get("ece_ci95"), 1.0, ".3f"),
            ])  # fmt: skip
            if with_ref:
                d = (r.get("reference_difference") or {}).get("balanced_accuracy") or {}
                rows[-1].append(_cell(d.get("difference"), d.get("ci95"), spec="+.1f"))
        b = with_ci[0].get("bootstrap") or {}
        header = ["model", "acc", "bal.acc", "F1", "AUC", "ECE"]
        unit = "lesions (image_ids.csv lesion_id)" if b.get("groups") == "lesion_id" else "images"
        lines += [
            f"95% intervals, in % (AUC, ECE 0..1): bootstrap, {b.get('n')} resamples of the split's "
            f"{b.get('n_groups')} {unit}, seed {b.get('seed')}",
            render_table(header + (["bal.acc - ref"] if with_ref else []), rows),
        ]
        if any((r.get("bootstrap") or {}).get("dropped") for r in with_ci):
            lines.append("some resamples lacked a class and were left out of those intervals (bootstrap.dropped)")
    if with_coc:
        rows = []
        for r in with_coc:
            c, ci, at = r["class_of_concern"], r.get("ci95") or {}, r.get("sensitivity_at_specificity") or {}
            row = [r["model"], _cell(c.get("sensitivity"), ci.get("class_of_concern_sensitivity")),
                   _cell(c.get("specificity"), ci.get("class_of_concern_specificity"))]  # fmt: skip
            row += [_cell((at.get(_spec_key(s)) or {}).get("sensitivity"), (at.get(_spec_key(s)) or {}).get("ci95"))
                    for s in SPECIFICITIES]  # fmt: skip
            rows.append(row)
        c = with_coc[0]["class_of_concern"]
        header = ["model", "sens", "spec"] + [f"sens@spec{100 * s:g}" for s in SPECIFICITIES]
        lines += [
            *([""] if lines else []),
            f"class of concern {c['name']}: {c['positives']} of {c['positives'] + c['negatives']} images, in %"
            + ("; sens/spec intervals Clopper-Pearson, sens@spec bootstrap" if with_ci else ""),
            render_table(header, rows),
        ]
    return "\n".join(lines)
