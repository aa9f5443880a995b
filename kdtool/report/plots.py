"""The card's own plots, ``<model>.roc.png`` and ``<model>.reliability.png``, drawn from bench records.

The ROC curves come from a record's ``roc_curves`` and the reliability diagram from its
``calibration.bins`` (:mod:`kdtool.figures` draws them; matplotlib is optional). The test split's record
is drawn when it has the key, else the validation split's. The run's own ``curves.png`` and
``confusion.png`` (written by ``kdtool distill``) are linked when they exist.

Example:
    >>> pick_record({"val": {"roc_curves": {}}, "test": {}}, "roc_curves")
    ('val', {'roc_curves': {}})
    >>> pick_record({"test": {"roc_curves": None}}, "roc_curves")
    (None, None)
"""

from __future__ import annotations

import os
from pathlib import Path

from kdtool.report.measure import SPLIT_WORDS

MISSING_MATPLOTLIB = "matplotlib is not installed: the cards are written without their ROC and reliability plots"


def pick_record(records: dict[str, dict], key: str) -> tuple[str | None, dict | None]:
    """The split and record to draw ``key`` from: test when it has it, else validation.

    Args:
        records: split -> bench record.
        key: ``roc_curves`` or ``calibration``.

    Returns:
        (split, record), or (None, None) when neither has it.
    """
    for split in ("test", "val"):
        rec = records.get(split)
        if rec is not None and rec.get(key) is not None:
            return split, rec
    return None, None


def relative_link(target: Path, card_dir: Path) -> str:
    """A link from the card's folder to ``target``, with forward slashes.

    Example:
        >>> relative_link(Path("models/student/curves.png"), Path("models/export"))
        '../student/curves.png'
    """
    return Path(os.path.relpath(Path(target).resolve(), Path(card_dir).resolve())).as_posix()


def draw(
    records: dict[str, dict], out_dir: Path, stem: str, highlight: str | None
) -> tuple[dict[str, tuple[Path, str]], str | None]:
    """Draw the ROC curves and the reliability diagram of one model.

    Args:
        records: split -> bench record.
        out_dir: where the PNGs go.
        stem: the model's file name without ``.tflite``.
        highlight: the class of concern, drawn thick.

    Returns:
        ({"roc": (path, split), "reliability": (path, split)} for the plots drawn; a note when
        matplotlib is missing, else None).

    Example:
        >>> draw({}, Path("."), "s.int8", None)
        ({}, None)
    """
    written: dict[str, tuple[Path, str]] = {}
    roc_split, roc_rec = pick_record(records, "roc_curves")
    cal_split, cal_rec = pick_record(records, "calibration")
    cal_bins = ((cal_rec or {}).get("calibration") or {}).get("bins")
    if roc_rec is None and not cal_bins:
        return written, None
    try:
        from kdtool.figures import plot_reliability, plot_roc

        if roc_rec is not None and roc_rec["roc_curves"]:
            curves = {name: (c.get("fpr") or [], c.get("tpr") or []) for name, c in roc_rec["roc_curves"].items()}
            path = Path(out_dir) / f"{stem}.roc.png"
            aucs = roc_rec.get("roc_auc_per_class") or {}
            plot_roc(curves, path, f"{stem} ({SPLIT_WORDS[roc_split]})", aucs=aucs, highlight=highlight)
            written["roc"] = (path, roc_split)
        if cal_bins:
            path = Path(out_dir) / f"{stem}.reliability.png"
            ece = cal_rec["calibration"].get("ece")
            plot_reliability(cal_bins, path, f"{stem} ({SPLIT_WORDS[cal_split]})", ece=ece)
            written["reliability"] = (path, cal_split)
    except ImportError:
        return {}, MISSING_MATPLOTLIB
    return written, None


def run_plots(run_folder: Path | None, name: str) -> dict[str, Path]:
    """The run's plots of model ``name`` that exist: ``curves`` and ``confusion``.

    Args:
        run_folder: the run folder, or None.
        name: the model's name in the run.

    Returns:
        Plot name -> file.

    Example:
        >>> run_plots(None, "student_t")
        {}
    """
    if run_folder is None:
        return {}
    found = {}
    for key in ("curves", "confusion"):
        path = Path(run_folder) / name / f"{key}.png"
        if path.is_file():
            found[key] = path
    return found
