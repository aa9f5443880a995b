"""The distillation pipeline: fine-tune teachers, distil students, rank everything.

Per teacher: fine-tune it, cache its logits on the train and val images, distil
a fresh student. Always also train the student alone with the same budget and
the same initial weights (the baseline); with ``ensemble`` one more student
learns from the mean of all teachers' soft targets.

Everything lands in ``out``: ``run.json`` (config, versions, data fingerprint,
timings, status), ``summary.csv`` (ranked by validation accuracy) and per model
``<name>.keras`` plus ``<name>/`` with ``history.csv``, ``metrics.json``,
``curves.png`` and ``confusion.png``. Model files are written atomically and
reloaded with ``safe_mode=True`` before they count as done; re-running the same
command skips models already done (``fresh=True`` retrains them).

Example:
    >>> cfg = DistillConfig(data="FData", out="models", teachers=["efficientnet_lite0"], epochs=2)  # doctest: +SKIP
    >>> run_distill(cfg)                                                                            # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path

import click
import numpy as np

from kdtool import __version__
from kdtool.data import FData, atomic_write_text, load_fdata, sha256_file
from kdtool.distill.balance import Balancing, balancing, class_weights
from kdtool.distill.config import ADDS_TO_A_RUN, LR_SCHEDULES, SETTINGS_BEFORE_THEY_EXISTED, DistillConfig
from kdtool.errors import InputError, RuntimeFailure

SUMMARY_COLUMNS = [
    "rank", "name", "role", "teacher", "params", "size_bytes", "val_accuracy", "test_accuracy",
    "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "melanoma_sensitivity",
    "melanoma_specificity", "roc_auc", "ece", "test_balanced_accuracy", "test_macro_f1",
    "test_melanoma_sensitivity", "test_melanoma_specificity", "test_roc_auc", "train_seconds",
]

# ----------------------------------------------------------------------------- helpers

def _versions() -> dict:
    import keras
    import tensorflow as tf

    return {"kdtool": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "tensorflow": tf.__version__, "keras": keras.__version__, "onednn": onednn_enabled()}


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels in this process (None: cannot tell).

    They change the floating-point rounding, so two machines agree to the last digit only when
    both have them on or both off; run.json records it beside the versions.

    Returns:
        TensorFlow's own answer (a private but long-standing query), or None where it is missing.

    Example:
        >>> onednn_enabled()  # doctest: +SKIP
        True
    """
    try:
        from tensorflow.python.util import _pywrap_util_port  # noqa: PLC0415 - private, read only

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def _device() -> dict:
    import tensorflow as tf

    return {"machine": platform.machine(), "node": platform.node(), "cpus": os.cpu_count(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def make_strategy(name: str):
    """A tf.distribute strategy: ``auto`` (mirrored on >1 GPU, else default), ``mirrored``, ``multiworker``.

    ``mirrored`` without GPUs mirrors across the logical CPU devices (useful to test).
    ``multiworker`` reads the cluster from ``TF_CONFIG``.
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise InputError("--strategy multiworker needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError(f"unknown --strategy {name!r}; choose auto, mirrored or multiworker")


def save_model_atomic(model, path: Path) -> str:
    """Save a Keras model to ``path`` atomically, reload it with safe_mode=True, return its SHA-256."""
    import keras

    import kdtool.layers  # noqa: F401 - registers teachers' preprocessing layer

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


def _write_history(history: dict, path: Path) -> None:
    keys = list(history)
    n = len(history[keys[0]]) if keys else 0
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", *keys])
    for i in range(n):
        writer.writerow([i + 1, *[f"{history[k][i]:.6g}" if i < len(history[k]) else "" for k in keys]])
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- the run

class Run:
    """State of one run folder: run.json, model records, summary."""

    def __init__(self, cfg: DistillConfig, fd: FData, fresh: bool):
        self.cfg, self.fd = cfg, fd
        self.out = Path(cfg.out)
        self.path = self.out / "run.json"
        self.records: dict[str, dict] = {}
        self.doc: dict = {}
        self.views: np.ndarray | None = None  # (K, N, H, W, 3) fixed augmented views, when used
        self.balancing: Balancing = balancing(cfg.balance, fd.labels("train"), fd.num_classes)
        self._open(fresh)

    def _config_doc(self) -> dict:
        cfg = dataclasses.asdict(self.cfg)
        for key in ("student_filters", "temperatures", "alphas"):
            cfg[key] = list(cfg[key])
        return cfg

    def _open(self, fresh: bool) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeFailure(f"{self.out}: cannot create output folder ({exc.strerror})") from None
        if fresh:  # epoch backups of an earlier run must not be resumed by a fresh one
            shutil.rmtree(self.out / ".backup", ignore_errors=True)
            shutil.rmtree(self.out / "calibration", ignore_errors=True)  # fold runs of the models retrained
        if self.path.exists() and not fresh:
            try:
                old = json.loads(self.path.read_text())
                if not isinstance(old, dict) or not isinstance(old.get("config", {}), dict):
                    raise ValueError("not a kdtool run record")
            except (OSError, ValueError) as exc:
                raise InputError(f"{self.path}: unreadable run.json ({exc}); use --fresh or another --out") from None
            # a setting added to kdtool after that run was written counts as what kdtool did before it;
            # the data are compared by fingerprint, not by the path they were given as
            old_cfg = {**SETTINGS_BEFORE_THEY_EXISTED, **old.get("config", {})}
            new_cfg = self._config_doc()
            differ = [k for k in dict.fromkeys([*old_cfg, *new_cfg])
                      if k not in ("out", "data", *ADDS_TO_A_RUN) and old_cfg.get(k) != new_cfg.get(k)]
            same_data = (old.get("data") or {}).get("fingerprint") == self.fd.fingerprint()
            if differ or not same_data:
                what = ("configuration (" + "; ".join(f"{k}: {old_cfg.get(k)!r} there, {new_cfg.get(k)!r} now"
                                                       for k in differ[:3]) + ")") if differ else "data"
                raise InputError(
                    f"{self.path}: this folder holds a run with a different {what}; "
                    "use another --out, or --fresh to retrain here"
                )
            for rec in old.get("models", []):
                f = self.out / rec.get("file", "")
                if rec.get("sha256") and f.is_file() and sha256_file(f) == rec["sha256"]:
                    self.records[rec["name"]] = rec
            # the run continues in this folder: when and how it began stays on record
            first = {"first_started": old.get("first_started", old.get("started")),
                     "first_command": old.get("first_command", old.get("command"))}
        else:
            first = {}
        self.doc = {
            "kdtool_version": __version__,
            "status": "RUNNING",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
            **first,
            "config": self._config_doc(),
            "data": {"path": str(self.fd.root), "fingerprint": self.fd.fingerprint(),
                     "class_names": self.fd.class_names, "image_shape": list(self.fd.image_shape),
                     "counts": {s: self.fd.class_counts(s).tolist() for s in self.fd.splits},
                     "synthetic": _is_synthetic(self.fd)},
            "versions": _versions(),
            "device": _device(),
            "warnings": [],
            "models": [],
        }
        self.save()

    def done(self, name: str) -> dict | None:
        return self.records.get(name)

    def add(self, rec: dict) -> None:
        self.records[rec["name"]] = rec
        self.save()

    def warn(self, message: str) -> None:
        click.secho(f"warning: {message}", fg="yellow", err=True)
        self.doc["warnings"].append(message)
        self.save()

    def save(self, status: str | None = None, error: str | None = None) -> None:
        if status:
            self.doc["status"] = status
            self.doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if error:
            self.doc["error"] = error
        self.doc["models"] = list(self.records.values())
        atomic_write_text(self.path, json.dumps(self.doc, indent=1, default=str) + "\n")


def _is_synthetic(fd: FData) -> bool:
    info = fd.root / "dataset_info.json"
    try:
        return bool(json.loads(info.read_text()).get("synthetic")) if info.exists() else False
    except (OSError, ValueError):
        return False


def make_optimizer(learning_rate: float, schedule: str = "constant", epochs: int = 1, steps_per_epoch: int = 1):
    """The Adam optimizer every kdtool model trains with.

    Args:
        learning_rate: the initial learning rate.
        schedule: ``constant``, or ``cosine``: decay to 0 over ``epochs * steps_per_epoch`` steps.
            The step count lives in the optimizer's state, which the per-epoch backups keep,
            so a resumed fit continues the schedule where it stopped.
        epochs: epochs of this fit.
        steps_per_epoch: batches per epoch.

    Returns:
        A ``keras.optimizers.Adam``.

    Example:
        >>> opt = make_optimizer(1e-3, "cosine", epochs=20, steps_per_epoch=94)  # doctest: +SKIP
    """
    import keras

    if schedule == "cosine":
        steps = max(1, int(epochs) * int(steps_per_epoch))
        return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps))
    if schedule != "constant":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose from {', '.join(LR_SCHEDULES)}")
    return keras.optimizers.Adam(learning_rate)


def logit_offset(run: Run) -> np.ndarray | None:
    """The log class prior of the train split with ``--balance logit-adjust``, else None."""
    return run.balancing.logit_offset


def kd_class_weights(run: Run) -> np.ndarray | None:
    """The KL term's per-class weights N / (K * n_c) of the train split with ``--kd-balance weights``, else None."""
    if run.cfg.kd_balance != "weights":
        return None
    return class_weights(run.fd.labels("train"), run.fd.num_classes)


def _compile_classifier(model, lr: float, schedule: str = "constant", epochs: int = 1, steps_per_epoch: int = 1,
                        offset: np.ndarray | None = None):
    import keras

    from kdtool.distill.distiller import student_metrics
    from kdtool.distill.losses import logit_adjusted_crossentropy

    loss = (keras.losses.CategoricalCrossentropy(from_logits=True) if offset is None
            else logit_adjusted_crossentropy(offset))
    model.compile(optimizer=make_optimizer(lr, schedule, epochs, steps_per_epoch), loss=loss,
                  metrics=student_metrics())


def _verbose() -> int:
    return 1 if sys.stdout.isatty() else 2


def _finish_model(run: Run, name: str, role: str, teacher: str | None, model, history: dict,
                  seconds: float, extra: dict | None = None) -> dict:
    """Save model, history, metrics and plots; record it in run.json."""
    from kdtool.distill.evaluate import evaluate_model
    from kdtool.distill.plots import plot_confusion, plot_curves

    fd, out = run.fd, run.out
    folder = out / name
    folder.mkdir(exist_ok=True)
    metrics = {split: evaluate_model(model, fd, split) for split in ("val", "test") if split in fd.splits}
    _write_history(history, folder / "history.csv")
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    plot_curves(history, folder / "curves.png", name)
    plot_confusion(metrics["val"]["confusion_matrix"], fd.class_names, folder / "confusion.png", f"{name} (val)")
    path = out / f"{name}.keras"
    digest = save_model_atomic(model, path)
    rec = {
        "name": name, "role": role, "teacher": teacher, "file": path.name, "sha256": digest,
        "params": int(model.count_params()), "size_bytes": path.stat().st_size,
        "train_seconds": round(seconds, 2), "epochs": len(next(iter(history.values()), [])),
        "val": _headline(metrics["val"]), "test": _headline(metrics.get("test", metrics["val"])),
        **(extra or {}),
    }
    run.add(rec)
    from kdtool.distill.checkpoint import drop_backup

    drop_backup(out / ".backup" / name)
    return rec


def _headline(report: dict) -> dict:
    return {
        "accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"],
        "macro_precision": report["macro"]["precision"], "macro_recall": report["macro"]["recall"],
        "macro_f1": report["macro"]["f1"], "melanoma_sensitivity": report.get("melanoma_sensitivity"),
        "melanoma_specificity": report.get("melanoma_specificity"), "roc_auc": report.get("roc_auc_macro"),
        "ece": report.get("ece"),
    }


def _student(cfg: DistillConfig, fd: FData, name: str):
    import keras

    from kdtool.distill.student import build_student

    keras.utils.set_random_seed(cfg.seed)  # every student starts from the same weights
    return build_student(fd.image_shape, fd.num_classes, cfg.student_filters, cfg.student_dense,
                         cfg.student_dropout, name=name, convs_per_block=cfg.student_convs)


def _train_teacher(run: Run, strategy, name: str, tname: str, seed: int) -> tuple[object, dict]:
    """Fine-tune one teacher: an optional head-only phase (backbone frozen), then the whole network.

    ``name`` is the registered architecture, ``tname`` the model's name in the run (its backup
    folder), ``seed`` seeds its initial head, batches and augmentation.
    """
    import keras

    from kdtool.distill.teachers import create_teacher

    cfg, fd = run.cfg, run.fd
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model, info = create_teacher(name, fd.num_classes, fd.image_shape, cfg.image_size, cfg.weights)
    if info["warning"]:
        run.warn(info["warning"])
    # freezing a randomly initialised backbone would only train a linear probe on noise
    head = cfg.teacher_head_epochs if info["weights"] != "none" else 0
    lr = cfg.teacher_learning_rate
    lr2 = (cfg.teacher_finetune_learning_rate or lr) if head else lr
    plan = (f"{head} head epoch(s) at lr={lr:g}, then {cfg.teacher_epochs - head} at lr={lr2:g}" if head
            else f"{cfg.teacher_epochs} epoch(s), lr={lr:g}")
    click.echo(f"  {tname}: {model.count_params():,} params, {info['image_size']}px, "
               f"weights={info['weights']}, seed {seed}, {plan}")
    t0 = time.perf_counter()
    train = training_batches(run, fd.x("train"), fd.onehot("train"), seed=seed)
    val = (fd.x("val"), fd.onehot("val"))
    history, best, head_history, head_best = {}, None, {}, None
    backbone = model.get_layer(info["backbone"])
    if head:
        backbone.trainable = False
        with strategy.scope():
            _compile_classifier(model, lr, cfg.lr_schedule, head, len(train), offset=logit_offset(run))
        click.echo("  phase 1: head only (backbone frozen)")
        # inside the teacher's own backup folder: dropped with it once the teacher is saved
        head_history, head_best = _fit(run, f"{tname}/head", model, train, val, head)
        backbone.trainable = True
        if cfg.teacher_epochs > head:
            click.echo("  phase 2: whole network")
    if cfg.teacher_epochs > head:
        with strategy.scope():
            _compile_classifier(model, lr2, cfg.lr_schedule, cfg.teacher_epochs - head, len(train),
                                offset=logit_offset(run))
        history, best = _fit(run, tname, model, train, val, cfg.teacher_epochs - head)
    if head:
        best = _keep_better_phase(model, run.out / ".backup" / tname / "head", head,
                                  head_history, head_best, history, best)
        history = {k: list(head_history.get(k, [])) + list(history.get(k, []))
                   for k in dict.fromkeys([*head_history, *history])}
    seconds = time.perf_counter() - t0
    return model, {"history": history, "seconds": seconds, "weights": info["weights"], "seed": seed,
                   "image_size": info["image_size"], "learning_rate": lr, "head_epochs": head,
                   "finetune_learning_rate": lr2 if head else None, "best_epoch": best}


def _keep_better_phase(model, head_backup: Path, head: int, head_history: dict, head_best: int | None,
                       history: dict, best: int | None) -> int | None:
    """After two phases, keep the head phase's best weights when they beat the whole-network phase.

    Returns the kept epoch counted over both phases (None with ``--last-epoch``).
    """
    if best is None:  # --last-epoch (both None), or no phase 2
        return None if history else head_best
    key = "val_balanced_accuracy"  # logged by BestOnValidation every epoch
    if head_best and head_history[key][head_best - 1] > history[key][best - 1]:
        import warnings

        with warnings.catch_warnings():  # the file also holds the head phase's (smaller) optimizer state
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(head_backup / "best.weights.h5")
        click.echo(f"  kept head-phase epoch {head_best}: it beat the whole-network phase on validation")
        return head_best
    return head + best


def _distil(run: Run, strategy, name: str, role: str, teacher_label: str | None,
            teacher_models: list, cached: tuple[np.ndarray, np.ndarray] | None,
            kd: tuple[float, float] | None = None):
    """Train one student: alone (no teacher), from cached logits, or online.

    With cached views (``run.views``), the student (the baseline too) trains on
    the same fixed augmented views; cached logits then have shape (K, N, C).
    ``kd`` = (temperature, alpha) overrides the run's (a sweep point).
    """
    from kdtool.distill.distiller import Distiller, pack_targets, student_metrics

    cfg, fd = run.cfg, run.fd
    temperature, alpha = kd or (cfg.temperature, cfg.alpha)
    x_tr, y_tr, x_va, y_va = fd.x("train"), fd.onehot("train"), fd.x("val"), fd.onehot("val")
    online = cfg.teacher_logits == "online"
    if run.views is not None and not (online and role != "baseline"):
        x_tr, y_tr = run.views, np.broadcast_to(y_tr, (run.views.shape[0], *y_tr.shape))
    t0 = time.perf_counter()
    if role == "baseline" or online:
        y_fit, y_val = y_tr, y_va
    else:
        y_fit, y_val = pack_targets(y_tr, cached[0]), pack_targets(y_va, cached[1])
    fit_data = training_batches(run, x_tr, y_fit)
    with strategy.scope():
        student = _student(cfg, fd, name)
        if role == "baseline":
            _compile_classifier(student, cfg.learning_rate, cfg.lr_schedule, cfg.epochs, len(fit_data),
                                offset=logit_offset(run))
            trainer = student
        else:
            trainer = Distiller(student, fd.num_classes, alpha, temperature,
                                teachers=teacher_models if online else None, logit_offset=logit_offset(run),
                                kd_class_weights=kd_class_weights(run))
            trainer.compile(optimizer=make_optimizer(cfg.learning_rate, cfg.lr_schedule, cfg.epochs, len(fit_data)),
                            metrics=student_metrics())
    click.echo(f"  {name}: {student.count_params():,} params, {cfg.epochs} epoch(s)"
               + (f", weight average {cfg.ema:g}" if cfg.ema else "")
               + ("" if role == "baseline" else f", {cfg.teacher_logits} logits from {teacher_label}, "
                  f"alpha={alpha:g}, T={temperature:g}"
                  + (", class-weighted KD term" if cfg.kd_balance == "weights" else "")))
    trainer(x_va[:1])  # build before restoring a backup
    history, best = _fit(run, name, trainer, fit_data, (x_va, y_val), cfg.epochs, average=cfg.ema)
    seconds = time.perf_counter() - t0
    return _finish_model(run, name, role, teacher_label, student, history, seconds,
                         {"teacher_logits": None if role == "baseline" else cfg.teacher_logits,
                          "temperature": None if role == "baseline" else temperature,
                          "alpha": None if role == "baseline" else alpha, "best_epoch": best})


def training_batches(run: Run, x: np.ndarray, targets: np.ndarray, seed: int | None = None):
    """Training batches with the run's balancing and augmentation.

    Args:
        run: the open run (its config gives batch size, balance, augment, seed).
        x: float32 training images (N, H, W, 3), or fixed views (K, N, H, W, 3).
        targets: (N, C) one-hot or packed KD targets, or (K, N, C) with views.
        seed: shuffling/augmentation seed instead of the run's (a teacher of ``--teacher-seeds``).

    Returns:
        A :class:`kdtool.distill.augment.TrainBatches` for ``fit``.
    """
    from kdtool.distill.augment import TrainBatches

    cfg, bal = run.cfg, run.balancing
    return TrainBatches(x, targets, cfg.batch_size, sample_weight=bal.sample_weight, augment=cfg.augment,
                        seed=cfg.seed if seed is None else seed, sampling_probs=bal.sampling_probs)


def _fit(run: Run, name: str, model, batches, validation_data, epochs: int,
         average: float = 0.0) -> tuple[dict, int | None]:
    """Fit with per-epoch backups under ``out/.backup/<name>``: a killed run resumes there.

    ``average`` > 0 keeps a moving average of the weights with that momentum (``--ema``).
    """
    from kdtool.distill.checkpoint import fit_resumable, resumed_epochs

    backup = run.out / ".backup" / name
    done = resumed_epochs(backup)
    if done:
        click.echo(f"  resuming {name} after epoch {done}/{epochs}")
    select = (run.fd.x("val"), run.fd.labels("val"))  # scored every epoch; kept only with --select-best
    history, best = fit_resumable(model, backup, batches, None, epochs, select=select, patience=run.cfg.patience,
                                  average=average, keep_best=run.cfg.select_best,
                                  validation_data=validation_data, verbose=_verbose())
    if best is not None:
        click.echo(f"  kept epoch {best} (best validation balanced accuracy)")
    return history, best


def teacher_logits(model, run: Run, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's logits, computed once for cached-logit KD.

    Args:
        model: a (frozen) teacher.
        run: the open run (its data, and its fixed views when augmenting).
        batch: prediction batch size.

    Returns:
        (train logits: (N, C), or (K, N, C) over the run's fixed views; val logits (N, C)).
    """
    from kdtool.distill.evaluate import predict_logits

    fd = run.fd
    if run.views is not None:
        train = np.stack([predict_logits(model, view, batch) for view in run.views])
    else:
        train = predict_logits(model, fd.x("train"), batch)
    return train, predict_logits(model, fd.x("val"), batch)


def fixed_views(cfg: DistillConfig, fd: FData) -> np.ndarray | None:
    """The run's fixed augmented training views (K, N, H, W, 3), or None when it trains without them.

    Views exist with ``augment``, cached teacher logits and ``views`` > 1; they depend only on the
    training images, ``views`` and ``seed``, so a later process rebuilds the very same ones.
    """
    if not (cfg.augment and cfg.teacher_logits == "cached" and cfg.views > 1):
        return None
    from kdtool.distill.augment import make_views

    return make_views(fd.x("train"), cfg.views, cfg.seed)


def mean_soft_targets(cached_all: list, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Several teachers' cached (train, val) logits -> one pair whose softmax(z/T) is their mean.

    Args:
        cached_all: one ``(train logits, val logits)`` pair per teacher, as :func:`teacher_logits` returns.
        temperature: T of the soft targets being averaged.

    Returns:
        ``(train, val)`` logits for :func:`kdtool.distill.distiller.pack_targets`.
    """
    from kdtool.distill.losses import ensemble_logits

    return tuple(np.asarray(ensemble_logits([c[i] for c in cached_all], temperature)) for i in (0, 1))


def _load(run: Run, name: str):
    import keras

    import kdtool.layers  # noqa: F401

    return keras.saving.load_model(run.out / run.records[name]["file"], safe_mode=True, compile=False)


def run_distill(cfg: DistillConfig, fresh: bool = False) -> list[dict]:
    """Run the whole pipeline; returns the summary rows (ranked).

    Args:
        cfg: the run configuration.
        fresh: retrain models even if a previous identical run finished them.

    Returns:
        Summary rows, best validation accuracy first.
    """
    cfg.check()
    fd = load_fdata(cfg.data)  # validate before any TensorFlow work
    if cfg.calibration_folds:
        from kdtool.distill.calibration import plan_folds  # noqa: PLC0415

        plan_folds(fd, cfg.calibration_folds, cfg.seed)  # a bad image_ids.csv is refused before any training
    from kdtool.train_extra import require_train_extra

    tf = require_train_extra("kdtool distill")
    # --seed makes a run repeatable on the same machine and versions: seeded weights, batches and
    # views, plus deterministic op kernels (run.json records versions and device to explain a difference).
    tf.config.experimental.enable_op_determinism()
    run = Run(cfg, fd, fresh)
    if run.doc["data"]["synthetic"]:
        run.warn(f"{fd.root} is SYNTHETIC data: use it to try the pipeline, never quote its accuracy")
    stop = _install_signal_handlers()
    try:
        strategy = make_strategy(cfg.strategy)
        t_start = time.perf_counter()
        folds = cfg.calibration_folds
        total = stage_count(cfg) * (1 + folds) + int(folds > 0)
        step = 0

        def stage(label: str) -> None:
            nonlocal step
            step += 1
            click.secho(f"[{step}/{total}] {label}", bold=True)

        train_models(run, strategy, stage)
        if folds:
            from kdtool.distill.calibration import out_of_fold_logits  # noqa: PLC0415

            out_of_fold_logits(run, strategy, stage)
        rows = write_summary(run)
        run.doc["total_seconds"] = round(time.perf_counter() - t_start, 2)
        run.save("FINISHED")
    except KeyboardInterrupt:
        run.save("KILLED", error=f"interrupted by {stop.get('signal', 'SIGINT')}")
        click.secho(f"interrupted: run.json marked KILLED; re-run the same command to continue", fg="red", err=True)
        sys.exit(143 if stop.get("signal") == "SIGTERM" else 130)
    except click.ClickException as exc:
        run.save("FAILED", error=exc.format_message())
        raise
    except Exception as exc:
        run.save("FAILED", error=f"{type(exc).__name__}: {exc}")
        raise
    print_summary(rows)
    click.echo(f"\nwrote {run.out}/summary.csv, run.json and per-model folders")
    return rows


def stage_count(cfg: DistillConfig) -> int:
    """How many models one run of ``cfg`` trains (the progress lines' total), fold runs aside."""
    return 1 + (cfg.teacher_seeds + len(sweep_grid(cfg))) * len(cfg.teachers) + int(cfg.ensemble)


def train_models(run: Run, strategy, stage) -> None:
    """Train every model of ``run`` that is not finished yet: the student alone, each teacher and its
    student(s), the ensemble student; each is saved and recorded in run.json as it finishes.

    Args:
        run: the open run (its config, data and finished records).
        strategy: the ``tf.distribute`` strategy.
        stage: ``label -> None``, called as each model begins (prints a progress line).
    """
    cfg, fd = run.cfg, run.fd
    run.views = fixed_views(cfg, fd)
    grid = sweep_grid(cfg)
    swept = len(grid) > 1
    stage("student_alone (baseline, no teacher)")
    if not run.done("student_alone"):
        _distil(run, strategy, "student_alone", "baseline", None, [], None)
    else:
        click.echo("  already done, skipped")
    online = cfg.teacher_logits == "online"
    teacher_models, cached_all = [], []
    for name in cfg.teachers:
        snames = {kd: student_name(name, kd, swept) for kd in grid}
        need_cached = not online and (
            not all(run.done(s) for s in snames.values()) or (cfg.ensemble and not run.done("student_ensemble")))
        members, member_logits = [], []
        for tname, seed in teacher_instances(cfg, name):
            stage(f"{tname}: fine-tune")
            if run.done(tname):
                click.echo("  already done, skipped")
                if not (need_cached or online):  # every student it teaches is finished too
                    members.append((tname, None))
                    continue
                teacher = _load(run, tname)
            else:
                teacher, info = _train_teacher(run, strategy, name, tname, seed)
                _finish_model(run, tname, "teacher", None, teacher, info["history"] or {"loss": []},
                              info["seconds"], {k: info[k] for k in ("weights", "image_size", "learning_rate",
                                                                     "head_epochs", "finetune_learning_rate",
                                                                     "best_epoch", "seed")})
            teacher.trainable = False
            members.append((tname, teacher))
            if need_cached:
                member_logits.append(teacher_logits(teacher, run))
        label = "+".join(t for t, _ in members)
        cached = None
        if need_cached:
            cached = member_logits[0] if len(members) == 1 else mean_soft_targets(member_logits, cfg.temperature)
        if online:  # cached KD needs no teacher past its logits: let it go
            teacher_models += [t for _, t in members]
        cached_all.append(cached)
        for kd, sname in snames.items():
            stage(f"{sname}: distil from {label}" + (f" (T={kd[0]:g}, alpha={kd[1]:g})" if swept else ""))
            if run.done(sname):
                click.echo("  already done, skipped")
            else:
                _distil(run, strategy, sname, "student", label, [t for _, t in members], cached, kd)
        if swept:
            _report_sweep(run, name, snames)
    if cfg.ensemble:
        label = "+".join(t for n in cfg.teachers for t, _ in teacher_instances(cfg, n))
        stage(f"student_ensemble: distil from the mean of {len(cfg.teachers)} teacher architectures")
        if run.done("student_ensemble"):
            click.echo("  already done, skipped")
        else:
            cached = None if online else mean_soft_targets(cached_all, cfg.temperature)
            _distil(run, strategy, "student_ensemble", "ensemble", label, teacher_models, cached)


def teacher_instances(cfg: DistillConfig, name: str) -> list[tuple[str, int]]:
    """(model name, seed) of each teacher of architecture ``name``: ``--teacher-seeds`` of them.

    The first keeps the plain name and the run's seed, so a one-seed run is unchanged.

    Example:
        >>> teacher_instances(DistillConfig(seed=0, teacher_seeds=3), "vgg16")
        [('teacher_vgg16', 0), ('teacher_vgg16_seed1', 1), ('teacher_vgg16_seed2', 2)]
    """
    return [(f"teacher_{name}" + (f"_seed{cfg.seed + i}" if i else ""), cfg.seed + i)
            for i in range(cfg.teacher_seeds)]


def sweep_grid(cfg: DistillConfig) -> list[tuple[float, float]]:
    """The (temperature, alpha) pairs each teacher's students train with (one pair without a sweep).

    Example:
        >>> sweep_grid(DistillConfig(temperatures=(2, 4)))
        [(2.0, 0.5), (4.0, 0.5)]
    """
    temps = [float(t) for t in cfg.temperatures] or [float(cfg.temperature)]
    alphas = [float(a) for a in cfg.alphas] or [float(cfg.alpha)]
    return [(t, a) for t in dict.fromkeys(temps) for a in dict.fromkeys(alphas)]


def student_name(teacher: str, kd: tuple[float, float], swept: bool) -> str:
    """``student_<teacher>``, with ``_T<T>_a<alpha>`` appended for a sweep point.

    Example:
        >>> student_name("efficientnet_lite0", (4.0, 0.3), True)
        'student_efficientnet_lite0_T4_a0.3'
    """
    return f"student_{teacher}" + (f"_T{kd[0]:g}_a{kd[1]:g}" if swept else "")


def _report_sweep(run: Run, teacher: str, snames: dict) -> None:
    """Pick the sweep point with the best validation balanced accuracy; run.json, table and heatmap."""
    from kdtool.distill.plots import plot_sweep

    temps = list(dict.fromkeys(kd[0] for kd in snames))
    alphas = list(dict.fromkeys(kd[1] for kd in snames))
    scores = np.full((len(temps), len(alphas)), np.nan)
    points = []
    for (t, a), sname in snames.items():
        rec = run.done(sname)
        score = rec["val"]["balanced_accuracy"]
        scores[temps.index(t), alphas.index(a)] = score
        points.append({"name": sname, "temperature": t, "alpha": a, "val_balanced_accuracy": score,
                       "val_accuracy": rec["val"]["accuracy"],
                       "val_melanoma_sensitivity": rec["val"].get("melanoma_sensitivity")})
    best = max(points, key=lambda p: p["val_balanced_accuracy"])
    run.doc.setdefault("sweep", {})[f"teacher_{teacher}"] = {"best": best, "points": points}
    run.save()
    plot_sweep(temps, alphas, scores, run.out / f"sweep_{teacher}.png", f"KD sweep, teacher_{teacher}")
    click.echo(f"  sweep over {len(points)} (T, alpha) pairs for teacher_{teacher} (val balanced accuracy, %):")
    click.echo("  " + "T \\ alpha".ljust(10) + "".join(f"{a:>8g}" for a in alphas))
    for i, t in enumerate(temps):
        click.echo("  " + f"{t:<10g}" + "".join(f"{100 * v:>8.1f}" for v in scores[i]))
    click.echo(f"  best: {best['name']} (T={best['temperature']:g}, alpha={best['alpha']:g}, "
               f"val balanced accuracy {100 * best['val_balanced_accuracy']:.1f}%); heatmap "
               f"{run.out / f'sweep_{teacher}.png'}")


def _install_signal_handlers() -> dict:
    state: dict = {}

    def on_term(signum, frame):  # noqa: ARG001
        state["signal"] = "SIGTERM"
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (e.g. some test runners)
        pass
    return state


def write_summary(run: Run) -> list[dict]:
    """Rank every model by validation accuracy and write summary.csv."""
    rows = []
    for rec in run.records.values():
        val, test = rec["val"], rec["test"]
        rows.append({
            "name": rec["name"], "role": rec["role"], "teacher": rec["teacher"] or "",
            "params": rec["params"], "size_bytes": rec["size_bytes"],
            "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
            "balanced_accuracy": val["balanced_accuracy"], "macro_precision": val["macro_precision"],
            "macro_recall": val["macro_recall"], "macro_f1": val["macro_f1"],
            "melanoma_sensitivity": val["melanoma_sensitivity"],
            "melanoma_specificity": val.get("melanoma_specificity"), "roc_auc": val.get("roc_auc"),
            "ece": val.get("ece"),
            "test_balanced_accuracy": test["balanced_accuracy"], "test_macro_f1": test["macro_f1"],
            "test_melanoma_sensitivity": test["melanoma_sensitivity"],
            "test_melanoma_specificity": test.get("melanoma_specificity"), "test_roc_auc": test.get("roc_auc"),
            "train_seconds": rec["train_seconds"],
        })
    rows.sort(key=lambda r: (-r["val_accuracy"], -r["balanced_accuracy"], r["name"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v))
                         for k, v in r.items()})
    atomic_write_text(run.out / "summary.csv", buf.getvalue())
    return rows


def print_summary(rows: list[dict]) -> None:
    """The ranking table on the console."""
    def pct(v):
        return "   -" if v is None else f"{100 * v:5.1f}"

    w = max([28, *(len(r["name"]) for r in rows)])
    head = f"{'#':>2} {'name':<{w}} {'role':<9} {'params':>11} {'KB':>8} {'val acc':>7} {'bal acc':>7} " \
           f"{'mF1':>5} {'mel sens':>8} {'AUC':>5} {'test acc':>8} {'time s':>7}"
    click.echo("\n" + head)
    click.echo("-" * len(head))
    for r in rows:
        click.echo(f"{r['rank']:>2} {r['name']:<{w}} {r['role']:<9} {r['params']:>11,} {r['size_bytes'] / 1024:>8.1f} "
                   f"{pct(r['val_accuracy']):>7} {pct(r['balanced_accuracy']):>7} {pct(r['macro_f1']):>5} "
                   f"{pct(r['melanoma_sensitivity']):>8} {pct(r['roc_auc']):>5} {pct(r['test_accuracy']):>8} "
                   f"{r['train_seconds']:>7.1f}")
    click.echo("(val = validation split; balanced accuracy, macro-F1 and melanoma sensitivity matter more "
               "than accuracy on imbalanced data)")
