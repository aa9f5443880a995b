"""The run's ranking: ``summary.csv`` and the tables printed at the end of ``kdtool distill``.

Every finished model of the run, ranked by validation accuracy (then balanced accuracy, then
name), one row each with the columns of :func:`summary_columns`: those of :data:`SUMMARY_COLUMNS`,
each metric followed by its 95% interval (``<metric>_ci95_low`` and ``_high``), then the threshold-free
numbers of the validation split (the class of concern's sensitivity at 80, 90 and 95% specificity, the
one-vs-rest ROC-AUC of every class) and each model's balanced accuracy minus the student trained alone's
on the same images (``balanced_accuracy_minus_alone``, validation; ``test_balanced_accuracy_minus_alone``).

Intervals come from each model's kept logits (:func:`kdtool.distill.outputs.saved_logits`): a percentile
bootstrap over images, or over whole lesions when the data's ``image_ids.csv`` names them
(:func:`kdtool.folds.read_groups`), 1000 resamples, seed 0, so the same run gives the same intervals;
melanoma sensitivity and specificity get the exact Clopper-Pearson interval; the difference to the
student alone is a paired bootstrap. A model finished by a kdtool that kept no logits has these
columns empty. The ranking reads validation numbers only; test numbers are reported, never used to choose.

Example:
    >>> SUMMARY_COLUMNS[:4]
    ['rank', 'name', 'role', 'teacher']
    >>> summary_columns(["nv", "mel"])[7:10]
    ['val_accuracy', 'val_accuracy_ci95_low', 'val_accuracy_ci95_high']
    >>> rows = write_summary(run)  # doctest: +SKIP
    >>> print_summary(rows)        # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from kdtool.data import atomic_write_text
from kdtool.distill.evaluate import N_BOOT, SEED, SPECIFICITIES, difference_to, metric_intervals
from kdtool.distill.outputs import saved_logits
from kdtool.errors import InputError
from kdtool.folds import read_groups
from kdtool.metrics import melanoma_index

if TYPE_CHECKING:
    from kdtool.data import FData
    from kdtool.distill.run_folder import Run

SUMMARY_COLUMNS = [
    "rank",
    "name",
    "role",
    "teacher",
    "student",
    "params",
    "size_bytes",
    "val_accuracy",
    "test_accuracy",
    "balanced_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "melanoma_sensitivity",
    "melanoma_specificity",
    "roc_auc",
    "ece",
    "test_balanced_accuracy",
    "test_macro_f1",
    "test_melanoma_sensitivity",
    "test_melanoma_specificity",
    "test_roc_auc",
    "train_seconds",
]

#: The columns of :data:`SUMMARY_COLUMNS` that carry a 95% interval: column -> (split, metric of
#: :func:`kdtool.distill.evaluate.split_metrics`).
INTERVAL_COLUMNS = {
    "val_accuracy": ("val", "accuracy"),
    "test_accuracy": ("test", "accuracy"),
    **{m: ("val", m) for m in ("balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                               "melanoma_sensitivity", "melanoma_specificity", "roc_auc", "ece")},
    **{f"test_{m}": ("test", m) for m in ("balanced_accuracy", "macro_f1", "melanoma_sensitivity",
                                          "melanoma_specificity", "roc_auc")},
}  # fmt: skip

#: The role of the student trained alone, which every other model is compared with.
ALONE_ROLE = "baseline"


def alone_of(model: dict, models: Sequence[dict]) -> str | None:
    """The name of the student alone ``model`` is compared with: the one of the same student design.

    A model of no design (a teacher), or of a design trained only with a teacher, is compared with the
    run's first student alone; records written before kdtool kept ``student`` all share one design.

    Args:
        model: a run.json record or a summary row (``name``, ``role``, ``student``).
        models: all of them.

    Returns:
        The student alone's name, or None when the run has none.

    Example:
        >>> runs = [{"name": n, "role": "baseline", "student": s} for n, s in (("a", "x"), ("b", "y"))]
        >>> alone_of({"name": "s", "role": "student", "student": "y"}, runs), alone_of({"name": "t"}, runs)
        ('b', 'a')
    """
    alones = [m for m in models if m.get("role") == ALONE_ROLE]
    same = [m for m in alones if (m.get("student") or "") == (model.get("student") or "")]
    return (same or alones or [{"name": None}])[0]["name"]


def _with_interval(column: str) -> list[str]:
    return [column, f"{column}_ci95_low", f"{column}_ci95_high"]


def summary_columns(class_names: Sequence[str]) -> list[str]:
    """The columns of ``summary.csv`` for data with these classes.

    Args:
        class_names: the data's K class names.

    Returns:
        :data:`SUMMARY_COLUMNS` with ``_ci95_low``/``_ci95_high`` after each of :data:`INTERVAL_COLUMNS`,
        then ``class_of_concern`` and ``sensitivity_at_specificity_<s>`` (with a melanoma class),
        ``roc_auc_<class>`` per class, ``alone`` (the student alone each model is compared with), the two
        ``*_minus_alone`` differences (each with its interval),
        ``bootstrap_groups`` (``lesion_id`` or ``image``) and ``bootstrap_resamples``.

    Example:
        >>> summary_columns(["nv", "bcc"])[-4:]
        ['test_balanced_accuracy_minus_alone_ci95_low', 'test_balanced_accuracy_minus_alone_ci95_high', \
'bootstrap_groups', 'bootstrap_resamples']
    """
    cols: list[str] = []
    for c in SUMMARY_COLUMNS:
        cols += _with_interval(c) if c in INTERVAL_COLUMNS else [c]
    if melanoma_index(class_names) is not None:
        cols.append("class_of_concern")
        for s in SPECIFICITIES:
            cols += _with_interval(f"sensitivity_at_specificity_{s:g}")
    for name in class_names:
        cols += _with_interval(f"roc_auc_{name}")
    cols += ["alone", *_with_interval("balanced_accuracy_minus_alone")]
    cols += _with_interval("test_balanced_accuracy_minus_alone")
    return [*cols, "bootstrap_groups", "bootstrap_resamples"]


def summary_rows(records, extras: dict[str, dict] | None = None) -> list[dict]:
    """One ranked summary row per model record (run.json's ``models``), best validation accuracy first.

    Args:
        records: model records, as :func:`kdtool.distill.outputs.finish_model` writes them.
        extras: model name -> more columns for its row (:func:`interval_columns`).

    Returns:
        Rows with the keys of :data:`SUMMARY_COLUMNS` (and the model's extras); ``rank`` counts from 1.

    Example:
        >>> def rec(name, acc):
        ...     val = {"accuracy": acc, "balanced_accuracy": acc, "macro_precision": acc, "macro_recall": acc,
        ...            "macro_f1": acc, "melanoma_sensitivity": None}
        ...     return {"name": name, "role": "student", "teacher": "t", "params": 1, "size_bytes": 1,
        ...             "val": val, "test": val, "train_seconds": 1.0}
        >>> [(r["rank"], r["name"]) for r in summary_rows([rec("a", 0.5), rec("b", 0.7), rec("c", 0.5)])]
        [(1, 'b'), (2, 'a'), (3, 'c')]
    """
    rows = []
    for rec in records:
        val, test = rec["val"], rec["test"]
        rows.append(
            {
                "name": rec["name"],
                "role": rec["role"],
                "teacher": rec["teacher"] or "",
                "student": rec.get("student") or "",
                "params": rec["params"],
                "size_bytes": rec["size_bytes"],
                "val_accuracy": val["accuracy"],
                "test_accuracy": test["accuracy"],
                "balanced_accuracy": val["balanced_accuracy"],
                "macro_precision": val["macro_precision"],
                "macro_recall": val["macro_recall"],
                "macro_f1": val["macro_f1"],
                "melanoma_sensitivity": val["melanoma_sensitivity"],
                "melanoma_specificity": val.get("melanoma_specificity"),
                "roc_auc": val.get("roc_auc"),
                "ece": val.get("ece"),
                "test_balanced_accuracy": test["balanced_accuracy"],
                "test_macro_f1": test["macro_f1"],
                "test_melanoma_sensitivity": test["melanoma_sensitivity"],
                "test_melanoma_specificity": test.get("melanoma_specificity"),
                "test_roc_auc": test.get("roc_auc"),
                "train_seconds": rec["train_seconds"],
                **(extras or {}).get(rec["name"], {}),
            }
        )
    rows.sort(key=lambda r: (-r["val_accuracy"], -r["balanced_accuracy"], r["name"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _number(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _put(cols: dict, column: str, iv) -> None:
    """``column`` and its interval from a :class:`kdtool.intervals.Interval` (None ends where undefined)."""
    ends = iv.as_list() or [None, None]
    cols[column], cols[f"{column}_ci95_low"], cols[f"{column}_ci95_high"] = _number(iv.estimate), *ends


def split_groups(fd: FData, warn: Callable[[str], None]) -> dict[str, np.ndarray | None]:
    """The lesion id of every val and test image (``image_ids.csv``), None per split without that file.

    Args:
        fd: the run's data.
        warn: called with one line when ``image_ids.csv`` is unusable (intervals then resample images).

    Returns:
        {split: (N,) lesion ids, or None}.

    Example:
        >>> split_groups(load_fdata("FData"), print)["val"][:2]  # doctest: +SKIP
        array(['HAM_0000118', 'HAM_0000118'], dtype='<U11')
    """
    groups = {}
    for split in ("val", "test"):
        if split not in fd.splits:
            continue
        try:
            groups[split] = read_groups(fd.root, split, len(fd.labels(split)))
        except InputError as exc:
            warn(f"{exc}; summary intervals resample images, not lesions")
            groups[split] = None
    return groups


def interval_columns(
    out: Path,
    records: Iterable[dict],
    fd: FData,
    groups: dict[str, np.ndarray | None],
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> dict[str, dict]:
    """The interval, threshold-free and paired-difference columns of every model with kept logits.

    Args:
        out: the run folder.
        records: the finished models' records.
        fd: the run's data.
        groups: :func:`split_groups`'s lesion ids per split (None: resample images).
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        Model name -> {column: value} (columns of :func:`summary_columns`); models without kept logits
        (finished by an older kdtool) are left out, so their row keeps those columns empty.

    Example:
        >>> groups = {"val": None, "test": None}
        >>> cols = interval_columns(run.out, run.records.values(), run.fd, groups)  # doctest: +SKIP
        >>> cols["student_vgg16"]["balanced_accuracy_minus_alone_ci95_low"]  # doctest: +SKIP
        -0.012
    """
    records = list(records)
    names, k = fd.class_names, fd.num_classes
    splits = [s for s in ("val", "test") if s in fd.splits]
    labels = {s: fd.labels(s) for s in splits}
    logits = {rec["name"]: {s: saved_logits(out, rec, s, (len(labels[s]), k)) for s in splits} for rec in records}
    mel = melanoma_index(names)
    table: dict[str, dict] = {}
    for rec in records:
        name, cols = rec["name"], {}
        for split in splits:
            z = logits[name][split]
            if z is None:
                continue
            ivs = metric_intervals(labels[split], z, names, groups.get(split), n_boot, seed)
            for column, (sp, metric) in INTERVAL_COLUMNS.items():
                if sp == split:
                    _put(cols, column, ivs[metric])
            if split == "val":
                if mel is not None:
                    cols["class_of_concern"] = names[mel]
                    for s in SPECIFICITIES:
                        _put(cols, f"sensitivity_at_specificity_{s:g}", ivs[f"sensitivity_at_specificity_{s:g}"])
                for c in names:
                    _put(cols, f"roc_auc_{c}", ivs[f"roc_auc_{c}"])
            alone = alone_of(rec, records)
            ref = logits[alone][split] if alone is not None else None
            if ref is not None and name != alone:
                prefix = "" if split == "val" else f"{split}_"
                diff = difference_to(labels[split], z, ref, names, groups.get(split), n_boot, seed)
                _put(cols, f"{prefix}balanced_accuracy_minus_alone", diff)
                cols["alone"] = alone
        if cols:
            cols["bootstrap_groups"] = "lesion_id" if groups.get("val") is not None else "image"
            cols["bootstrap_resamples"] = n_boot
            table[name] = cols
    return table


def write_summary(run: Run, n_boot: int = N_BOOT) -> list[dict]:
    """Rank every finished model of ``run`` and write ``summary.csv`` (atomically), intervals included.

    Args:
        run: the open run.
        n_boot: bootstrap resamples per interval; 0 writes the ranking without intervals (fold runs of
            ``--calibration-folds``, whose summaries nobody reads, need not pay for them).

    Returns:
        The rows written, best first (see :func:`summary_rows`).

    Example:
        >>> rows = write_summary(run)  # doctest: +SKIP
    """
    fd = run.fd
    extras = {}
    if n_boot > 0:
        click.echo(f"summary: 95% intervals from {n_boot} bootstrap resamples per model and split")
        extras = interval_columns(run.out, run.records.values(), fd, split_groups(fd, run.warn), n_boot)
    rows = summary_rows(run.records.values(), extras)
    columns = summary_columns(fd.class_names)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v)) for k, v in r.items()})
    atomic_write_text(run.out / "summary.csv", buf.getvalue())
    return rows


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _cell(r: dict, column: str, sign: str = "") -> str:
    """``65.2 [61.0, 69.1]`` (percent) for a row's column and its interval; ``-`` without a value."""
    v, lo, hi = r.get(column), r.get(f"{column}_ci95_low"), r.get(f"{column}_ci95_high")
    if v is None:
        return "-"
    text = f"{100 * v:{sign}.1f}"
    return text + (f" [{100 * lo:{sign}.1f}, {100 * hi:{sign}.1f}]" if lo is not None and hi is not None else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), "  ".join("-" * w for w in widths), *(line(r).rstrip() for r in rows)]


def interval_lines(rows: Sequence[dict]) -> list[str]:
    """The intervals table and the paired differences printed below the ranking (empty without intervals).

    Args:
        rows: :func:`write_summary`'s rows.

    Returns:
        Lines: a heading, a table (balanced accuracy, melanoma sensitivity, macro ROC-AUC, melanoma sensitivity
        at 90% specificity, difference to the student alone) and one line per model compared with the
        student alone: ``student_x minus student_alone: +2.1 [-0.4, +4.6] points of balanced accuracy``.

    Example:
        >>> row = {"name": "s", "balanced_accuracy": 0.652, "balanced_accuracy_ci95_low": 0.61,
        ...        "balanced_accuracy_ci95_high": 0.69, "balanced_accuracy_minus_alone": 0.021,
        ...        "balanced_accuracy_minus_alone_ci95_low": -0.004, "balanced_accuracy_minus_alone_ci95_high": 0.046,
        ...        "bootstrap_groups": "image", "bootstrap_resamples": 1000}
        >>> interval_lines([row])[-1]
        's minus the student alone: +2.1 [-0.4, +4.6] points of balanced accuracy (validation, paired bootstrap)'
    """
    shown = [r for r in rows if r.get("balanced_accuracy_ci95_low") is not None]
    if not shown:
        return []
    mel = any(r.get("melanoma_sensitivity") is not None for r in shown)
    coc = next((r["class_of_concern"] for r in shown if r.get("class_of_concern")), None)
    header = ["name", "bal acc"] + (["mel sens"] if mel else []) + ["AUC"]
    header += [f"{coc} sens@spec90"] if coc else []
    header += ["bal acc - alone"]
    table = []
    for r in shown:
        cells = [r["name"], _cell(r, "balanced_accuracy")] + ([_cell(r, "melanoma_sensitivity")] if mel else [])
        cells += [_cell(r, "roc_auc")] + ([_cell(r, "sensitivity_at_specificity_0.9")] if coc else [])
        cells.append(_cell(r, "balanced_accuracy_minus_alone", "+"))
        table.append(cells)
    unit = "lesions (image_ids.csv)" if shown[0].get("bootstrap_groups") == "lesion_id" else "images"
    lines = [
        "",
        f"95% intervals on the validation split, in % (AUC too): bootstrap over {unit}, "
        f"{shown[0].get('bootstrap_resamples')} resamples, seed {SEED}" + ("; mel sens Clopper-Pearson" if mel else ""),
        *_table(header, table),
    ]
    for r in shown:
        if r.get("balanced_accuracy_minus_alone") is not None:
            alone = r.get("alone") or "the student alone"
            lines.append(
                f"{r['name']} minus {alone}: {_cell(r, 'balanced_accuracy_minus_alone', '+')} points of balanced "
                "accuracy (validation, paired bootstrap)"
            )
    return lines


def print_summary(rows: list[dict]) -> None:
    """Print the ranking table on the console (percentages; ``-`` where a metric is missing), then the
    intervals (:func:`interval_lines`).

    Args:
        rows: :func:`write_summary`'s rows.

    Example:
        >>> print_summary(write_summary(run))  # doctest: +SKIP
    """

    def pct(v):
        return "   -" if v is None else f"{100 * v:5.1f}"

    w = max([28, *(len(r["name"]) for r in rows)])
    head = (
        f"{'#':>2} {'name':<{w}} {'role':<9} {'params':>11} {'KB':>8} {'val acc':>7} {'bal acc':>7} "
        f"{'mF1':>5} {'mel sens':>8} {'AUC':>5} {'test acc':>8} {'time s':>7}"
    )
    click.echo("\n" + head)
    click.echo("-" * len(head))
    for r in rows:
        click.echo(
            f"{r['rank']:>2} {r['name']:<{w}} {r['role']:<9} {r['params']:>11,} {r['size_bytes'] / 1024:>8.1f} "
            f"{pct(r['val_accuracy']):>7} {pct(r['balanced_accuracy']):>7} {pct(r['macro_f1']):>5} "
            f"{pct(r['melanoma_sensitivity']):>8} {pct(r['roc_auc']):>5} {pct(r['test_accuracy']):>8} "
            f"{r['train_seconds']:>7.1f}"
        )
    click.echo(
        "(val = validation split; balanced accuracy, macro-F1 and melanoma sensitivity matter more "
        "than accuracy on imbalanced data)"
    )
    for line in interval_lines(rows):
        click.echo(line)
