"""Resumable ``fit``: per-epoch backups and a history log that never duplicates rows.

``fit_resumable`` trains with two callbacks, in this order at every epoch end:

1. :class:`EpochLog` rewrites ``epochs.csv`` atomically with this epoch's logs and its
   ``epoch_seconds`` (one row per epoch; a re-run epoch replaces its row);
2. :class:`EpochBackup` saves weights and optimizer state atomically and then
   records the epoch in ``state.json``.

A killed fit, started again with the same backup folder, resumes after its
last backed-up epoch. The caller deletes the folder once the model is saved.
``state.json`` also holds every random state the next epoch draws from (Python's
``random``, which Keras shuffles batches with; the batches' own generator; the
model's dropout seed generators), so a resumed fit continues exactly as an
uninterrupted one would, bit for bit on the same machine.

Example:
    >>> history = fit_resumable(model, Path("models/.backup/student_alone"), x, y, epochs=20)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from kdtool.data import atomic_write_text


def read_epoch_log(path: Path, max_epoch: int | None = None) -> dict[str, list[float]]:
    """History dict (Keras style) from an epoch log: one value per epoch, in epoch order.

    Args:
        path: the ``epochs.csv`` written by :class:`EpochLog`.
        max_epoch: drop rows after this epoch.

    Returns:
        ``{metric: [value per epoch]}``, NaN where an epoch did not log that metric (e.g. epochs run by
        an older kdtool before a resume), so every list is aligned with the epochs; empty when there is no log.

    Example:
        >>> import tempfile
        >>> log = Path(tempfile.mkdtemp()) / "epochs.csv"
        >>> _ = log.write_text("epoch,loss\\n1,0.9\\n2,0.7\\n2,0.6\\n3,0.5\\n")  # epoch 2 ran twice (a resume)
        >>> read_epoch_log(log, max_epoch=2)
        {'loss': [0.9, 0.6]}
    """
    rows: dict[int, dict[str, str]] = {}
    if path.exists():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                epoch = int(row.pop("epoch"))
                if max_epoch is None or epoch <= max_epoch:
                    rows[epoch] = row  # the last row for an epoch wins
    keys = list(next(iter(rows.values()), {}))
    ordered = [rows[e] for e in sorted(rows)]
    return {k: [float(r[k]) if r.get(k) not in (None, "") else float("nan") for r in ordered] for k in keys}


class EpochLog(keras.callbacks.Callback):
    """Record each finished epoch's logs in a CSV, rewritten atomically, one row per epoch.

    Args:
        path: CSV file to keep.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = {**(logs or {}), "epoch_seconds": time.perf_counter() - self.started}
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < epoch + 1]
        rows.append({"epoch": epoch + 1, **{k: f"{float(v):.6g}" for k, v in (logs or {}).items()}})
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())


def _save_weights_atomic(model, path: Path) -> None:
    """``model.save_weights(path)`` under a temp name in the same folder, fsynced, then renamed over ``path``."""
    import os

    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}.weights.h5"
    try:
        model.save_weights(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _seed_states(model) -> list:
    """The model's seed-generator state variables (dropout's random stream), in a fixed order."""
    return [v for v in model.variables if v.path.split("/")[-1] == "seed_generator_state"]


def random_state(model, batches=None) -> dict:
    """Every random state an epoch of ``fit`` draws from, as JSON-serialisable values.

    Args:
        model: the Keras model being fitted (its seed generators: dropout).
        batches: the training data when it has ``random_state()`` (a ``TrainBatches``), else None.

    Returns:
        ``{"python": ..., "seed_generators": [...], "batches": ... or None}``.
    """
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "seed_generators": [np.asarray(v).tolist() for v in _seed_states(model)],
        "batches": batches.random_state() if hasattr(batches, "random_state") else None,
    }


def restore_random_state(model, batches, state: dict) -> None:
    """Put back what :func:`random_state` returned; nothing changes when it does not fit this model
    (another number of seed generators): the fit then resumes, only not bit for bit."""
    seeds = _seed_states(model)
    if len(seeds) != len(state.get("seed_generators") or []) or not state.get("python"):
        return
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for var, value in zip(seeds, state["seed_generators"], strict=False):
        var.assign(np.asarray(value, dtype=var.dtype))
    if state.get("batches") is not None and hasattr(batches, "restore_random_state"):
        batches.restore_random_state(state["batches"])


class _RestoreRandom(keras.callbacks.Callback):
    """At the first resumed epoch's start (after ``fit`` has peeked at the data), restore the saved random state."""

    def __init__(self, batches, state: dict):
        super().__init__()
        self.batches, self.state = batches, state

    def on_epoch_begin(self, epoch, logs=None):
        if self.state is not None:
            restore_random_state(self.model, self.batches, self.state)
            self.state = None


class EpochBackup(keras.callbacks.Callback):
    """Save weights and optimizer state after every epoch, atomically.

    ``epoch-N.weights.h5`` is written under a temp name, fsynced and renamed;
    only then does ``state.json`` (also atomic) point at it and older files go.
    A kill at any moment leaves ``state.json`` naming a complete file.
    (Keras' own BackupAndRestore writes its .h5 in place: a kill mid-write
    leaves a truncated file that the next run cannot open.)

    Args:
        folder: this model's backup folder.
        batches: the training data, whose random state is saved too when it has one (``TrainBatches``).
    """

    def __init__(self, folder: Path, batches=None):
        super().__init__()
        self.folder, self.batches = Path(folder), batches

    def on_epoch_end(self, epoch, logs=None):
        import json

        name = f"epoch-{epoch + 1}.weights.h5"
        _save_weights_atomic(self.model, self.folder / name)
        state = {"epoch": epoch + 1, "weights": name, "random": random_state(self.model, self.batches)}
        atomic_write_text(self.folder / "state.json", json.dumps(state) + "\n")
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


class BestOnValidation(keras.callbacks.Callback):
    """Track validation balanced accuracy each epoch, keep the best weights, optionally stop early.

    Adds ``val_balanced_accuracy`` to the epoch logs (so it lands in history.csv),
    saves the best epoch's weights atomically as ``best.weights.h5`` with
    ``best.json`` beside them, and stops after ``patience`` epochs without
    improvement (0: never). With ``keep=False`` it only logs the scores
    (``--last-epoch``: the curves stay in history.csv and its plot).

    Args:
        folder: this model's backup folder.
        x_val: float32 validation images.
        labels_val: integer validation labels.
        patience: epochs without improvement before stopping (0 = off).
        keep: save the best epoch's weights and stop on ``patience``; False: score and log only.
    """

    def __init__(self, folder: Path, x_val, labels_val, patience: int = 0, keep: bool = True):
        super().__init__()
        self.folder, self.x_val, self.labels_val, self.patience = Path(folder), x_val, labels_val, int(patience)
        self.keep = keep
        best = _read_json(self.folder / "best.json")
        self.best_epoch, self.best = (int(best["epoch"]), float(best["score"])) if best else (0, -1.0)

    def _score(self) -> float:
        from kdtool.metrics import classification_report

        preds = np.concatenate(
            [
                np.asarray(self.model(self.x_val[i : i + 512], training=False)).argmax(1)
                for i in range(0, len(self.x_val), 512)
            ]
        )
        k = int(max(preds.max(), self.labels_val.max())) + 1
        return classification_report(self.labels_val, preds, [str(c) for c in range(k)])["balanced_accuracy"]

    def on_epoch_end(self, epoch, logs=None):
        import json

        score = self._score()
        if self.keep and score > self.best:
            self.best, self.best_epoch = score, epoch + 1
            _save_weights_atomic(self.model, self.folder / "best.weights.h5")
            atomic_write_text(self.folder / "best.json", json.dumps({"epoch": epoch + 1, "score": score}) + "\n")
        elif self.keep and self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if logs is not None:
            logs["val_balanced_accuracy"] = score


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def resumed_epochs(backup_dir: Path) -> int:
    """How many epochs a backup folder holds (0 when none or unusable)."""
    state = _state(Path(backup_dir))
    return state[0] if state else 0


def _state(folder: Path) -> tuple[int, Path, dict | None] | None:
    import json

    try:
        doc = json.loads((folder / "state.json").read_text())
        epoch, weights = int(doc["epoch"]), folder / Path(str(doc["weights"])).name
    except (OSError, ValueError, KeyError, TypeError):
        return None
    saved = doc.get("random")
    return (epoch, weights, saved if isinstance(saved, dict) else None) if weights.is_file() else None


def fit_resumable(
    model,
    backup_dir: Path,
    x,
    y,
    epochs: int,
    select: tuple | None = None,
    patience: int = 0,
    keep_best: bool = True,
    **fit_kwargs,
) -> tuple[dict[str, list[float]], int | None]:
    """``model.fit`` that resumes from ``backup_dir`` and returns the whole history.

    Args:
        model: a compiled, built Keras model.
        backup_dir: this model's own backup folder (created).
        x, y: training data (``y`` None when ``x`` is a dataset).
        epochs: total epochs (a resumed fit runs only the missing ones).
        select: ``(x_val, labels_val)`` to score the validation balanced accuracy each epoch
            (``val_balanced_accuracy`` in the history) and keep the best epoch (its weights are
            restored at the end); None keeps the last without scoring.
        patience: with ``select``, stop after this many epochs without improvement (0: never).
        keep_best: False: ``select`` only scores; the model keeps its last epoch.
        **fit_kwargs: passed to ``fit`` (validation_data, batch_size, ...).

    Returns:
        (history dict with one value per epoch run, the restored best epoch or None).

    Raises:
        ValueError: ``patience`` without ``select`` and ``keep_best``.
    """
    if patience and (select is None or not keep_best):
        raise ValueError("patience stops on the best validation epoch: it needs select and keep_best")
    backup_dir = Path(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    log = backup_dir / "epochs.csv"
    initial, saved_random = 0, None
    state = _state(backup_dir)
    if state:
        initial, weights, saved_random = state
        if model.optimizer is not None and not model.optimizer.built:
            with model.distribute_strategy.scope():  # a distributed model's slots are distributed variables too
                model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
    callbacks = [EpochLog(log), EpochBackup(backup_dir, x)]
    if saved_random is not None:
        callbacks.insert(0, _RestoreRandom(x, saved_random))
    best = None
    if select is not None:
        best = BestOnValidation(backup_dir, select[0], select[1], patience, keep=keep_best)
        callbacks.insert(0, best)
        if keep_best and patience and best.best_epoch and initial - best.best_epoch >= patience:
            initial = epochs  # it had already stopped early before the interruption
    if initial < epochs:
        model.fit(x, y, epochs=epochs, initial_epoch=initial, callbacks=callbacks, **fit_kwargs)
    history = read_epoch_log(log, max_epoch=epochs)
    if best is not None and keep_best and (backup_dir / "best.weights.h5").is_file():
        model.load_weights(backup_dir / "best.weights.h5")
        return history, best.best_epoch
    return history, None


def seed_backup(source: Path, backup_dir: Path) -> bool:
    """Start ``backup_dir`` as a copy of ``source``'s files (a multi-worker run's chief backup), if it holds one.

    Subfolders (a teacher's ``head`` phase) are not copied: their own fit seeds them.

    Args:
        source: the chief's backup folder of this model.
        backup_dir: this worker's own backup folder (created).

    Returns:
        Whether there was a backup to copy.

    Example:
        >>> import tempfile
        >>> a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp()) / "m"
        >>> _ = (a / "state.json").write_text("{}")
        >>> seed_backup(a, b), sorted(p.name for p in b.iterdir())
        (True, ['state.json'])
    """
    source, backup_dir = Path(source), Path(backup_dir)
    if not (source / "state.json").is_file():
        return False
    backup_dir.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.is_file() and ".tmp" not in f.name:
            shutil.copy2(f, backup_dir / f.name)
    return True


def drop_backup(backup_dir: Path) -> None:
    """Remove a model's backup folder after the model itself is safely saved."""
    shutil.rmtree(backup_dir, ignore_errors=True)
