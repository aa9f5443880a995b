"""What a trained model leaves in the run folder, and its record in run.json.

Per model: ``<name>.keras`` (written atomically, reloaded with ``safe_mode=True`` before it
counts), and ``<name>/`` with ``history.csv``, ``metrics.json`` (val and test), ``curves.png``,
and on the validation split ``confusion.png``, ``roc.png`` (one-vs-rest ROC per class, the class of
concern drawn thick) and ``reliability.png`` (reliability diagram with the ECE). The model's logits on
each split are kept as ``<name>/<split>_logits.npy`` (float32 (N, K), never pickled; their SHA-256 in the
record's ``predictions``), so ``summary.csv`` can put intervals on its numbers and compare two models on
the same images when a later run resumes. Its epoch backups go once it is saved.

Example:
    >>> headline({"accuracy": 0.8, "balanced_accuracy": 0.6, "ece": 0.05,
    ...           "macro": {"precision": 0.7, "recall": 0.6, "f1": 0.65}})["macro_f1"]
    0.65
    >>> saved_logits(Path("models"), {"name": "old"}, "val", (852, 7)) is None  # a record without predictions
    True
    >>> rec = finish_model(run, "student_alone", "baseline", None, model, history, 42.0)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kdtool.data import atomic_save_npy, atomic_write_text, safe_load_npy, sha256_file
from kdtool.distill.students.profile import count_macs
from kdtool.distill.timing import record_phase
from kdtool.errors import InputError, RuntimeFailure

if TYPE_CHECKING:
    from kdtool.distill.run_folder import Run


def save_model_atomic(model, path: Path) -> str:
    """Save a Keras model without its optimizer state, atomically, and check that it reloads.

    Args:
        model: the trained model.
        path: the ``.keras`` file to write.

    Returns:
        The SHA-256 of the file written.

    Raises:
        RuntimeFailure: the file cannot be written.

    Example:
        >>> save_model_atomic(student, Path("models/student_alone.keras"))  # doctest: +SKIP
        '3f1c...'
    """
    import keras

    import kdtool.layers  # noqa: F401 - registers the teachers' preprocessing layer

    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    # an uncompiled copy: no optimizer state in the file (clone_model keeps the compile state)
    clean = keras.Model.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    try:
        clean.save(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        keras.saving.load_model(tmp, safe_mode=True, compile=False)
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise RuntimeFailure(f"{path}: cannot write model ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def write_history(history: dict, path: Path) -> None:
    """Write a Keras-style history as ``history.csv``: one row per epoch, one column per metric.

    Args:
        history: ``{metric: [value per epoch]}``; a shorter list leaves its later cells empty.
        path: the CSV to write (atomically).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "history.csv"
        >>> write_history({"loss": [1.0, 0.5], "accuracy": [0.25]}, path)
        >>> path.read_text().splitlines()
        ['epoch,loss,accuracy', '1,1,0.25', '2,0.5,']
    """
    keys = list(history)
    n = len(history[keys[0]]) if keys else 0
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", *keys])
    for i in range(n):
        writer.writerow([i + 1, *[f"{history[k][i]:.6g}" if i < len(history[k]) else "" for k in keys]])
    atomic_write_text(path, buf.getvalue())


def headline(report: dict) -> dict:
    """The numbers run.json and summary.csv keep of a :func:`kdtool.metrics.classification_report`.

    Args:
        report: one split's report (``evaluate_model``'s).

    Returns:
        accuracy, balanced accuracy, macro precision/recall/F1, melanoma sensitivity and specificity,
        ROC-AUC and ECE (None where the report has none).
    """
    return {
        "accuracy": report["accuracy"],
        "balanced_accuracy": report["balanced_accuracy"],
        "macro_precision": report["macro"]["precision"],
        "macro_recall": report["macro"]["recall"],
        "macro_f1": report["macro"]["f1"],
        "melanoma_sensitivity": report.get("melanoma_sensitivity"),
        "melanoma_specificity": report.get("melanoma_specificity"),
        "roc_auc": report.get("roc_auc_macro"),
        "ece": report.get("ece"),
    }


def logits_file(name: str, split: str) -> str:
    """Where a model's logits on one split are kept, relative to the run folder.

    Args:
        name: the model's name in the run.
        split: ``val`` or ``test``.

    Returns:
        ``<name>/<split>_logits.npy``.

    Example:
        >>> logits_file("student_alone", "val")
        'student_alone/val_logits.npy'
    """
    return f"{name}/{split}_logits.npy"


def save_logits(out: Path, name: str, split: str, logits: np.ndarray) -> dict:
    """Keep a model's logits on one split (float32, never pickled, written atomically).

    Args:
        out: the run folder.
        name: the model's name.
        split: the split.
        logits: (N, K) logits.

    Returns:
        ``{"file", "sha256"}``, for the record's ``predictions``.

    Example:
        >>> save_logits(Path("models"), "student_alone", "val", logits)  # doctest: +SKIP
        {'file': 'student_alone/val_logits.npy', 'sha256': '9b0e...'}
    """
    rel = logits_file(name, split)
    atomic_save_npy(out / rel, np.asarray(logits, dtype=np.float32))
    return {"file": rel, "sha256": sha256_file(out / rel)}


def saved_logits(out: Path, rec: dict, split: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A finished model's kept logits on one split, or None when it has none to trust.

    None for a record without ``predictions`` (a model finished by a kdtool that kept none), and for a
    file that is missing, changed since (its SHA-256), unreadable, of another shape or not finite.

    Args:
        out: the run folder.
        rec: the model's record (run.json's ``models``).
        split: the split.
        shape: the expected (N, K).

    Returns:
        float32 (N, K) logits, or None.

    Example:
        >>> saved_logits(Path("models"), run.records["student_alone"], "val", (852, 7)).shape  # doctest: +SKIP
        (852, 7)
    """
    entry = (rec.get("predictions") or {}).get(split)
    if not isinstance(entry, dict) or "name" not in rec:
        return None
    path = out / logits_file(rec["name"], split)  # never a path taken from the record
    try:
        if sha256_file(path) != entry.get("sha256"):
            return None
        logits = safe_load_npy(path)
    except (OSError, InputError):
        return None
    if logits.shape != tuple(shape) or logits.dtype.kind != "f" or not np.isfinite(logits).all():
        return None
    return logits.astype(np.float32)


def finish_model(
    run: Run, name: str, role: str, teacher: str | None, model, history: dict, seconds: float, extra: dict | None = None
) -> dict | None:
    """Evaluate a trained model, write its files, record it in run.json and drop its epoch backups.

    Args:
        run: the open run.
        name: the model's name in the run (``student_alone``, ``teacher_<arch>``, ...).
        role: ``baseline``, ``teacher``, ``student`` or ``ensemble``.
        teacher: what it learnt from (teacher names joined by ``+``), None without a teacher.
        model: the trained Keras model (a student, not its Distiller).
        history: its per-epoch history.
        seconds: its training time.
        extra: more fields for its record (settings it trained with, kept epoch).

    Returns:
        The model's record, as run.json keeps it; None on a non-chief worker of a multi-worker run,
        which only drops its own epoch backups (the chief writes the model's files and record).
    """
    from kdtool.distill.checkpoint import drop_backup

    backups = getattr(run, "backup_root", run.out / ".backup")  # a stand-in run of the tests may lack it
    if not getattr(run, "writer", True):
        drop_backup(backups / name)
        return None
    from kdtool.distill.evaluate import predict_logits, report_from_logits, threshold_free
    from kdtool.distill.plots import plot_confusion, plot_curves
    from kdtool.figures import plot_reliability, plot_roc

    fd, out = run.fd, run.out
    t0 = time.perf_counter()
    folder = out / name
    folder.mkdir(exist_ok=True)
    splits = [split for split in ("val", "test") if split in fd.splits]
    logits = {split: predict_logits(model, fd.x(split)) for split in splits}
    metrics = {
        split: {
            **report_from_logits(logits[split], fd.labels(split), fd.class_names),
            **threshold_free(fd.labels(split), logits[split], fd.class_names),
        }
        for split in splits
    }
    predictions = {split: save_logits(out, name, split, logits[split]) for split in splits}
    write_history(history, folder / "history.csv")
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    plot_curves(history, folder / "curves.png", name)
    val = metrics["val"]
    plot_confusion(val["confusion_matrix"], fd.class_names, folder / "confusion.png", f"{name} (val)")
    curves = {c: (v["fpr"], v["tpr"]) for c, v in val["roc_curves"].items()}
    plot_roc(curves, folder / "roc.png", f"{name} (val)", val["roc_auc_per_class"], val["class_of_concern"])
    plot_reliability(val["calibration"]["bins"], folder / "reliability.png", f"{name} (val)", ece=val["ece"])
    path = out / f"{name}.keras"
    digest = save_model_atomic(model, path)
    rec = {
        "name": name,
        "role": role,
        "teacher": teacher,
        "file": path.name,
        "sha256": digest,
        "params": int(model.count_params()),
        "size_bytes": path.stat().st_size,
        "train_seconds": round(seconds, 2),
        "epochs": len(next(iter(history.values()), [])),
        "val": headline(metrics["val"]),
        "test": headline(metrics.get("test", metrics["val"])),
        "predictions": predictions,
        **(extra or {}),
    }
    images = sum(len(fd.labels(split)) for split in splits)
    record_phase(run, "evaluate", name, time.perf_counter() - t0, images, count_macs(model))
    run.add(rec)
    drop_backup(backups / name)
    return rec
