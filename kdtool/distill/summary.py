"""The run's ranking: ``summary.csv`` and the table printed at the end of ``kdtool distill``.

Every finished model of the run, ranked by validation accuracy (then balanced accuracy, then
name), one row each with the columns of :data:`SUMMARY_COLUMNS`.

Example:
    >>> SUMMARY_COLUMNS[:4]
    ['rank', 'name', 'role', 'teacher']
    >>> rows = write_summary(run)  # doctest: +SKIP
    >>> print_summary(rows)        # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

import click

from kdtool.data import atomic_write_text

if TYPE_CHECKING:
    from kdtool.distill.run_folder import Run

SUMMARY_COLUMNS = [
    "rank",
    "name",
    "role",
    "teacher",
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


def summary_rows(records) -> list[dict]:
    """One ranked summary row per model record (run.json's ``models``), best validation accuracy first.

    Args:
        records: model records, as :func:`kdtool.distill.outputs.finish_model` writes them.

    Returns:
        Rows with the keys of :data:`SUMMARY_COLUMNS`; ``rank`` counts from 1.

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
            }
        )
    rows.sort(key=lambda r: (-r["val_accuracy"], -r["balanced_accuracy"], r["name"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def write_summary(run: Run) -> list[dict]:
    """Rank every finished model of ``run`` and write ``summary.csv`` (atomically).

    Args:
        run: the open run.

    Returns:
        The rows written, best first (see :func:`summary_rows`).
    """
    rows = summary_rows(run.records.values())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v)) for k, v in r.items()})
    atomic_write_text(run.out / "summary.csv", buf.getvalue())
    return rows


def print_summary(rows: list[dict]) -> None:
    """Print the ranking table on the console (percentages; ``-`` where a metric is missing).

    Args:
        rows: :func:`write_summary`'s rows.
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
