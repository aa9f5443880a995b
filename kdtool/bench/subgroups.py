"""``kdtool bench --by COLUMN``: every metric per value of an ``image_ids.csv`` column, with intervals.

The FData folder's ``image_ids.csv`` (see :mod:`kdtool.folds`) may carry, besides ``split``,
``position`` and ``lesion_id``, any column describing an image: HAM10000's metadata has
``localization``, ``sex`` and ``age``, a multi-site set a ``site``. For each value of the column
:func:`subgroup_field` reports the images and lesions, accuracy, balanced accuracy and macro
one-vs-rest ROC-AUC with 95% bootstrap intervals (whole lesions resampled *within* the group, as the
split-level intervals of :mod:`kdtool.bench.uncertainty`), and the class of concern's sensitivity and
specificity with Clopper-Pearson intervals. A column named ``age`` is banded into decades
(``0-9``, ``10-19``, ..., ``80+``; a value that is not a number becomes ``unknown``); other columns
are grouped by their values as written (an empty cell becomes ``(missing)``).

Groups under :data:`MIN_GROUP_IMAGES` images are reported but flagged ``small``: their intervals are
wide and their balanced accuracy rests on a handful of images per class. The *worst* group is the
one with the lowest balanced accuracy among the groups that are not small.

Example:
    >>> y = np.array([0, 1] * 40)
    >>> probs = np.eye(2)[y] * 0.8 + 0.1
    >>> sites = np.array(["a"] * 60 + ["b"] * 20)
    >>> f = subgroup_field(y, probs, ["nv", "mel"], 1, sites, "site", n_boot=20)
    >>> [(g["value"], g["n"], g["small"], g["accuracy"]) for g in f["groups"]]
    [('a', 60, False, 1.0), ('b', 20, True, 1.0)]
    >>> f["worst"]["value"]
    'a'
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdtool.bench.tables import pct_cell, render_table
from kdtool.bench.uncertainty import BOOTSTRAP_SEED, DEFAULT_BOOTSTRAP
from kdtool.errors import InputError
from kdtool.folds import GROUPS_FILE
from kdtool.intervals import bootstrap_intervals, clopper_pearson_interval

#: Groups with fewer images are flagged ``small`` and never named the worst group.
MIN_GROUP_IMAGES = 30
#: A column with more distinct values in the split is refused (it names images, not subgroups).
MAX_GROUPS = 50
#: Columns that place an image in the arrays rather than describe it.
_NOT_SUBGROUPS = ("split", "position")
#: Values of an ``age`` cell that mean "not recorded".
_MISSING = "unknown"


@dataclass(frozen=True)
class SubgroupColumn:
    """One ``image_ids.csv`` column read for one split.

    Args:
        name: the column as written in the file.
        values: (N,) str, the value (or age band) of every image of the split, in array order.
        banding: ``decades`` for an age column, else None.
        source: the file, for messages.
    """

    name: str
    values: np.ndarray
    banding: str | None
    source: str


def age_band(text: str) -> str:
    """The decade of an age written in a CSV cell.

    Args:
        text: the cell (``45``, ``45.0``, empty, ``unknown`` ...).

    Returns:
        ``40-49``; ``80+`` from 80 on; ``unknown`` for anything that is not a non-negative number.

    Example:
        >>> [age_band(t) for t in ("45.0", "5", "85", "", "n/a", "-3")]
        ['40-49', '0-9', '80+', 'unknown', 'unknown', 'unknown']
    """
    try:
        age = float(text)
    except ValueError:
        return _MISSING
    if not math.isfinite(age) or age < 0:
        return _MISSING
    decade = int(age // 10) * 10
    return "80+" if decade >= 80 else f"{decade}-{decade + 9}"


def _order(value: str, banding: str | None) -> tuple:
    """Sort key of a group: age bands by age, other values as text; missing values last."""
    missing = value in (_MISSING, "(missing)")
    if banding == "decades" and not missing:
        return (0, int(value.rstrip("+").split("-")[0]), value)
    return (int(missing), 0, value)


def read_subgroup_column(root: str | os.PathLike, split: str, n: int, column: str) -> SubgroupColumn:
    """The value of ``column`` for every image of ``split``, from ``root/image_ids.csv``.

    Args:
        root: the FData folder.
        split: ``train``, ``val`` or ``test``.
        n: the split's number of images (its rows must be positions 0..n-1).
        column: the column's name (an exact match first, else the one column matching in any case).

    Returns:
        The :class:`SubgroupColumn` (an ``age`` column banded into decades).

    Raises:
        InputError: no ``image_ids.csv``, no such column (the line lists the columns there), a
            placement column (split, position), more than :data:`MAX_GROUPS` values, or rows that do
            not cover the split (one line naming the file, exit code 2).

    Example:
        >>> read_subgroup_column("FData", "test", 1704, "localization").values[:2]  # doctest: +SKIP
        array(['back', 'face'], dtype='<U15')
    """
    path = Path(root) / GROUPS_FILE
    if not path.is_file():
        raise InputError(
            f"--by {column}: {path} not found (--by reads a column of it, beside split, position and lesion_id)"
        )
    cells: dict[int, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            name = column if column in fields else next((f for f in fields if f.lower() == column.lower()), None)
            if name is None:
                raise InputError(f"--by {column}: {path} has no such column (columns: {', '.join(fields) or 'none'})")
            if "split" not in fields or "position" not in fields:
                raise InputError(f"{path}: missing column(s) split, position (needs split, position, lesion_id)")
            if name in _NOT_SUBGROUPS:
                raise InputError(f"--by {column}: {path}'s {name!r} places images in the arrays; pick another column")
            for row in reader:
                if row["split"] == split:
                    cells[int(row["position"])] = (row.get(name) or "").strip()
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    if sorted(cells) != list(range(n)):
        raise InputError(
            f"{path}: its {split!r} rows do not cover positions 0..{n - 1} exactly ({len(cells)} rows for {n} images)"
        )
    banding = "decades" if name.lower() == "age" else None
    raw = [cells[i] for i in range(n)]
    values = [age_band(v) for v in raw] if banding else [v or "(missing)" for v in raw]
    distinct = len(set(values))
    if distinct > MAX_GROUPS:
        raise InputError(
            f"--by {column}: {path} has {distinct} distinct {name!r} values in the {split} split "
            f"(at most {MAX_GROUPS}: a subgroup column describes images, it does not name them)"
        )
    return SubgroupColumn(name, np.array(values, dtype=str), banding, str(path))


class _RankedClasses:
    """Every class's one-vs-rest scores ranked once: a resample's K AUCs are then two weighted bincounts.

    Image i of class c's ranking sits at slot ``c * N + rank`` (tied scores share a rank), so one bincount
    over all K rankings gives each class's positive and negative weight per rank.
    """

    def __init__(self, labels: np.ndarray, probs: np.ndarray):
        n, k = probs.shape
        ranks = np.empty((k, n), dtype=np.int64)
        for c in range(k):
            ranks[c] = np.unique(probs[:, c], return_inverse=True)[1].ravel()
        self.slots = (ranks + n * np.arange(k)[:, None]).ravel()
        self.positive = (labels[None, :] == np.arange(k)[:, None]).ravel().astype(np.float64)
        self.k, self.n = k, n

    def aucs(self, weights: np.ndarray) -> np.ndarray:
        """(K,) one-vs-rest ROC-AUC of each class for images counted ``weights`` times; NaN where undefined."""
        w = np.tile(weights, self.k)
        pos = np.bincount(self.slots, weights=w * self.positive, minlength=self.k * self.n).reshape(self.k, self.n)
        neg = np.bincount(self.slots, weights=w * (1.0 - self.positive), minlength=self.k * self.n)
        neg = neg.reshape(self.k, self.n)
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        below = (pos * (np.cumsum(neg, axis=1) - 0.5 * neg)).sum(axis=1)  # ties count one half
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((n_pos > 0) & (n_neg > 0), below / (n_pos * n_neg), np.nan)


def _group_metrics(labels: np.ndarray, probs: np.ndarray):
    """(labels, resample indices) -> accuracy, balanced accuracy, macro ROC-AUC of one group's resample.

    Scored by how often the resample drew each image (no sort per resample): the numbers equal
    :func:`kdtool.metrics.classification_report`'s and :func:`kdtool.metrics.roc_auc_ovr`'s on the resample.
    """
    k = probs.shape[1]
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    ranked = _RankedClasses(labels, probs)

    def metrics(y: np.ndarray, idx: np.ndarray) -> dict[str, float | None]:
        w = np.bincount(idx, minlength=len(labels)).astype(np.float64)
        support = np.bincount(labels, weights=w, minlength=k)
        hits = np.bincount(labels, weights=w * correct, minlength=k)
        present = support > 0
        aucs = ranked.aucs(w)
        aucs = aucs[~np.isnan(aucs)]
        return {
            "accuracy": float(hits.sum() / w.sum()),
            "balanced_accuracy": float((hits[present] / support[present]).mean()),
            "roc_auc_macro": float(aucs.mean()) if aucs.size >= 2 else None,
        }

    return metrics


def _proportion(k: int, n: int, intervals: bool) -> tuple[float | None, list[float] | None]:
    if n == 0:
        return None, None
    return k / n, clopper_pearson_interval(k, n).as_list() if intervals else None


def _one_group(value: str, labels, probs, lesions, coc: int | None, n_boot: int, seed: int) -> dict:
    n = len(labels)
    metrics = _group_metrics(labels, probs)
    everything = np.arange(n)
    point = metrics(labels, everything)
    boot = bootstrap_intervals(metrics, labels, everything, lesions, n_boot, seed) if n_boot > 0 else {}
    ci95: dict = {key: (boot[key].as_list() if key in boot else None) for key in point}
    group = {"value": value, "n": n, "lesions": int(len(np.unique(lesions))) if lesions is not None else n,
             "small": n < MIN_GROUP_IMAGES, **point}  # fmt: skip
    if coc is not None:
        pos, called = labels == coc, probs.argmax(axis=1) == coc
        group["positives"] = int(pos.sum())
        group["sensitivity"], ci95["sensitivity"] = _proportion(int((pos & called).sum()), int(pos.sum()), n_boot > 0)
        group["specificity"], ci95["specificity"] = _proportion(
            int((~pos & ~called).sum()), int((~pos).sum()), n_boot > 0
        )
    group["ci95"] = ci95 if n_boot > 0 else None
    return group


def subgroup_field(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    class_of_concern: int | None,
    values: np.ndarray,
    column: str,
    lesions: np.ndarray | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    banding: str | None = None,
) -> dict:
    """The record's ``subgroups`` key: every metric per value of a column, and the worst group.

    Args:
        labels: (N,) integer labels.
        probs: (N, K) class probabilities (decisions are their argmax).
        class_names: K names.
        class_of_concern: index of the class whose sensitivity and specificity are reported, or None.
        values: (N,) the group (value or band) of every image.
        column: the column's name, for the record.
        lesions: (N,) lesion ids: each group's bootstrap resamples its whole lesions; None: images.
        n_boot: bootstrap resamples per group (0: no intervals).
        seed: the bootstrap's seed (the same for every group).
        banding: how the values were banded (``decades``), or None.

    Returns:
        ``{"column", "banding", "class_of_concern", "min_images", "groups": [...], "worst"}``; each group
        ``{"value", "n", "lesions", "small", "accuracy", "balanced_accuracy", "roc_auc_macro"`` (and with
        a class of concern ``"positives", "sensitivity", "specificity"``), ``"ci95": {metric: [low, high]
        or null}}`` (null with ``n_boot`` 0); ``worst`` is ``{"value", "n", "balanced_accuracy", "ci95"}``
        of the lowest balanced accuracy among groups of at least :data:`MIN_GROUP_IMAGES` images, null
        when none is that large.

    Example:
        >>> f = subgroup_field(np.array([0, 1]), np.eye(2), ["a", "b"], None, np.array(["x", "y"]), "c", n_boot=0)
        >>> f["groups"][0]["small"], f["groups"][0]["ci95"], f["worst"]
        (True, None, None)
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    values = np.asarray(values).astype(str)
    lesion_ids = None if lesions is None else np.asarray(lesions)
    groups = []
    for value in sorted(set(values.tolist()), key=lambda v: _order(v, banding)):
        mask = values == value
        sub_lesions = None if lesion_ids is None else lesion_ids[mask]
        groups.append(_one_group(value, labels[mask], probs[mask], sub_lesions, class_of_concern, n_boot, seed))
    large = [g for g in groups if not g["small"]]
    worst = min(large, key=lambda g: g["balanced_accuracy"]) if large else None
    return {
        "column": column,
        "banding": banding,
        "class_of_concern": class_names[class_of_concern] if class_of_concern is not None else None,
        "min_images": MIN_GROUP_IMAGES,
        "groups": groups,
        "worst": {
            "value": worst["value"],
            "n": worst["n"],
            "balanced_accuracy": worst["balanced_accuracy"],
            "ci95": (worst["ci95"] or {}).get("balanced_accuracy"),
        }
        if worst
        else None,
    }


def format_subgroups(records: Sequence[dict]) -> str:
    """The ``--by`` tables of a bench run: one per model, then its worst group ("" without ``--by``).

    Args:
        records: bench records.

    Returns:
        Text to print below the interval tables.

    Example:
        >>> y, sites = np.array([0, 1] * 20), np.array(["a"] * 30 + ["b"] * 10)
        >>> rec = {"model": "s.tflite", "subgroups": subgroup_field(y, np.eye(2)[y], ["nv", "mel"], 1, sites, "site",
        ...                                                         n_boot=0)}
        >>> print(format_subgroups([rec]).splitlines()[-1])
        s.tflite: worst group a (lowest balanced accuracy among groups of >= 30 images): 100.0%, 30 images
    """
    lines: list[str] = []
    for r in records:
        sub = r.get("subgroups")
        if not sub:
            continue
        coc = sub.get("class_of_concern")
        header = ["group", "n", "lesions", "acc", "bal.acc", "AUC"] + ([f"{coc} sens", f"{coc} spec"] if coc else [])
        rows = []
        for g in sub["groups"]:
            ci = g.get("ci95") or {}
            row = [g["value"] + (" *" if g["small"] else ""), str(g["n"]), str(g["lesions"]),
                   pct_cell(g["accuracy"], ci.get("accuracy")),
                   pct_cell(g["balanced_accuracy"], ci.get("balanced_accuracy")),
                   pct_cell(g["roc_auc_macro"], ci.get("roc_auc_macro"), 1.0, ".3f")]  # fmt: skip
            if coc:
                row += [pct_cell(g.get("sensitivity"), ci.get("sensitivity")),
                        pct_cell(g.get("specificity"), ci.get("specificity"))]  # fmt: skip
            rows.append(row)
        how = "95% intervals: bootstrap over the lesions of each group, sens/spec Clopper-Pearson"
        how = how if any(g.get("ci95") for g in sub["groups"]) else ""
        banded = " in decades" if sub.get("banding") == "decades" else ""
        lines += [
            *([""] if lines else []),
            f"{r['model']} by {sub['column']}{banded} (image_ids.csv), in % (AUC 0..1)"
            + ("; " + how if how else "")
            + f"; * fewer than {sub['min_images']} images",
            render_table(header, rows),
        ]
        w, rule = sub.get("worst"), f"lowest balanced accuracy among groups of >= {sub['min_images']} images"
        if w:
            ci = w.get("ci95")
            interval = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
            lines.append(
                f"{r['model']}: worst group {w['value']} ({rule}): {100 * w['balanced_accuracy']:.1f}%{interval}, "
                f"{w['n']} images"
            )
        else:
            lines.append(f"{r['model']}: no worst group named (none has >= {sub['min_images']} images)")
    return "\n".join(lines)
