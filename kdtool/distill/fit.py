"""Training one model of a run: a teacher's fine-tuning, or a student's distillation (or baseline).

Every model trains with Adam (:func:`make_optimizer`, constant or cosine learning rate), on the
run's batches (:func:`training_batches`: its balancing and augmentation), and with per-epoch
backups under ``out/.backup/<name>`` (:func:`fit_model`), so a killed run resumes where it
stopped. These functions train and return the model; :func:`kdtool.distill.outputs.finish_model`
then saves and records it.

Example:
    >>> teacher, info = train_teacher(run, strategy, "vgg16", "teacher_vgg16", seed=42)         # doctest: +SKIP
    >>> student, info = distil_student(run, strategy, "student_alone", "baseline", None, [], None)  # doctest: +SKIP
    >>> sorted(info)                                                                               # doctest: +SKIP
    ['history', 'record', 'seconds']
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from kdtool.data import FData
from kdtool.distill.balance import class_weights
from kdtool.distill.config import LR_SCHEDULES, DistillConfig
from kdtool.distill.students.profile import count_macs
from kdtool.distill.timing import TRAINING_PASSES, fit_seconds, record_phase

if TYPE_CHECKING:
    from kdtool.distill.run_folder import Run


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

    Raises:
        ValueError: an unknown schedule.

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


def compile_classifier(
    model,
    lr: float,
    schedule: str = "constant",
    epochs: int = 1,
    steps_per_epoch: int = 1,
    offset: np.ndarray | None = None,
) -> None:
    """Compile a model that learns from hard labels alone (a teacher, or the baseline student).

    Args:
        model: the Keras model (logits out).
        lr, schedule, epochs, steps_per_epoch: its optimizer (:func:`make_optimizer`).
        offset: a log class prior added to the logits inside the loss (``--balance logit-adjust``), or None.

    Example:
        >>> compile_classifier(student, 1e-3, "cosine", epochs=120, steps_per_epoch=94)  # doctest: +SKIP
    """
    import keras

    from kdtool.distill.distiller import student_metrics
    from kdtool.distill.losses import logit_adjusted_crossentropy

    loss = (
        keras.losses.CategoricalCrossentropy(from_logits=True)
        if offset is None
        else logit_adjusted_crossentropy(offset)
    )
    model.compile(optimizer=make_optimizer(lr, schedule, epochs, steps_per_epoch), loss=loss, metrics=student_metrics())


def logit_offset(run: Run) -> np.ndarray | None:
    """The log class prior of the train split with ``--balance logit-adjust``, else None."""
    return run.balancing.logit_offset


def kd_class_weights(run: Run) -> np.ndarray | None:
    """The KL term's per-class weights N / (K * n_c) of the train split with ``--kd-balance weights``, else None."""
    if run.cfg.kd_balance != "weights":
        return None
    return class_weights(run.fd.labels("train"), run.fd.num_classes)


def training_batches(run: Run, x: np.ndarray, targets: np.ndarray, seed: int | None = None):
    """Training batches with the run's balancing and augmentation.

    Args:
        run: the open run (its config gives batch size, balance, augment, seed).
        x: float32 training images (N, H, W, 3), or fixed views (K, N, H, W, 3).
        targets: (N, C) one-hot or packed KD targets, or (K, N, C) with views.
        seed: shuffling/augmentation seed instead of the run's (a teacher of ``--teacher-seeds``).

    Returns:
        A :class:`kdtool.distill.augment.TrainBatches` for ``fit``.

    Example:
        >>> batches = training_batches(run, run.fd.x("train"), run.fd.onehot("train"))  # doctest: +SKIP
    """
    from kdtool.distill.augment import TrainBatches

    cfg, bal = run.cfg, run.balancing
    return TrainBatches(
        x,
        targets,
        cfg.batch_size,
        sample_weight=bal.sample_weight,
        augment=cfg.augment,
        seed=cfg.seed if seed is None else seed,
        sampling_probs=bal.sampling_probs,
    )


def progress_verbosity() -> int:
    """Keras ``verbose``: a progress bar on a terminal (1), one line per epoch in a log (2)."""
    return 1 if sys.stdout.isatty() else 2


def fit_model(run: Run, name: str, model, batches, validation_data, epochs: int) -> tuple[dict, int | None]:
    """Fit with per-epoch backups under ``out/.backup/<name>``: a killed run resumes there.

    A non-chief worker of a multi-worker run starts from a copy of the chief's backup and writes its
    own into its temporary folder (``run.backup_root``), so every worker resumes from the same epoch.

    Validation balanced accuracy is scored every epoch (history.csv); the best epoch is kept only
    with ``--select-best`` (and ``--patience`` may stop early).

    Args:
        run: the open run.
        name: the backup folder's name (the model's name, or ``<teacher>/head`` for a head phase).
        model: the compiled, built model (or Distiller).
        batches: its training batches (:func:`training_batches`).
        validation_data: ``(x_val, y_val)`` for Keras' own validation metrics.
        epochs: epochs of this fit.

    Returns:
        (history, the kept epoch or None when the last epoch is kept).

    Example:
        >>> history, best = fit_model(run, "student_alone", student, batches, (x_val, y_val), 120)  # doctest: +SKIP
    """
    from kdtool.distill.checkpoint import fit_resumable, resumed_epochs, seed_backup

    backup = run.backup_root / name
    if not run.writer:  # a worker resumes where the chief's backup says, as the chief does
        seed_backup(run.out / ".backup" / name, backup)
    done = resumed_epochs(backup)
    if done:
        click.echo(f"  resuming {name} after epoch {done}/{epochs}")
    select = (run.fd.x("val"), run.fd.labels("val"))  # scored every epoch; kept only with --select-best
    history, best = fit_resumable(
        model,
        backup,
        batches,
        None,
        epochs,
        select=select,
        patience=run.cfg.patience,
        keep_best=run.cfg.select_best,
        validation_data=validation_data,
        verbose=progress_verbosity(),
    )
    if best is not None:
        click.echo(f"  kept epoch {best} (best validation balanced accuracy)")
    return history, best


def train_teacher(run: Run, strategy, arch: str, name: str, seed: int) -> tuple[object, dict]:
    """Fine-tune one teacher: an optional head-only phase (backbone frozen), then the whole network.

    Args:
        run: the open run.
        strategy: the ``tf.distribute`` strategy.
        arch: the registered architecture (``efficientnet_lite0``, ...).
        name: the model's name in the run (its backup folder), e.g. ``teacher_efficientnet_lite0_seed43``.
        seed: seeds its initial head, batches and augmentation.

    Returns:
        (the teacher, ``{"history", "seconds", "record"}``), ``record`` holding the settings it
        trained with for run.json (weights, image size, learning rates, head epochs, kept epoch, seed).
    """
    import keras

    from kdtool.distill.teachers import create_teacher

    cfg, fd = run.cfg, run.fd
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model, info = create_teacher(arch, fd.num_classes, fd.image_shape, cfg.image_size, cfg.weights)
    if info["warning"]:
        run.warn(info["warning"])
    # freezing a randomly initialised backbone would only train a linear probe on noise
    head = cfg.teacher_head_epochs if info["weights"] != "none" else 0
    lr = cfg.teacher_learning_rate
    lr2 = (cfg.teacher_finetune_learning_rate or lr) if head else lr
    plan = (
        f"{head} head epoch(s) at lr={lr:g}, then {cfg.teacher_epochs - head} at lr={lr2:g}"
        if head
        else f"{cfg.teacher_epochs} epoch(s), lr={lr:g}"
    )
    click.echo(
        f"  {name}: {model.count_params():,} params, {info['image_size']}px, "
        f"weights={info['weights']}, seed {seed}, {plan}"
    )
    t0 = time.perf_counter()
    train = training_batches(run, fd.x("train"), fd.onehot("train"), seed=seed)
    val = (fd.x("val"), fd.onehot("val"))
    history, best, head_history, head_best = {}, None, {}, None
    backbone = model.get_layer(info["backbone"])
    if head:
        backbone.trainable = False
        with strategy.scope():
            compile_classifier(model, lr, cfg.lr_schedule, head, len(train), offset=logit_offset(run))
        click.echo("  phase 1: head only (backbone frozen)")
        # inside the teacher's own backup folder: dropped with it once the teacher is saved
        head_history, head_best = fit_model(run, f"{name}/head", model, train, val, head)
        backbone.trainable = True
        if cfg.teacher_epochs > head:
            click.echo("  phase 2: whole network")
    if cfg.teacher_epochs > head:
        with strategy.scope():
            compile_classifier(
                model, lr2, cfg.lr_schedule, cfg.teacher_epochs - head, len(train), offset=logit_offset(run)
            )
        history, best = fit_model(run, name, model, train, val, cfg.teacher_epochs - head)
    if head:
        best = keep_better_phase(model, run.backup_root / name / "head", head, head_history, head_best, history, best)
        history = {
            k: list(head_history.get(k, [])) + list(history.get(k, []))
            for k in dict.fromkeys([*head_history, *history])
        }
    record = {
        "weights": info["weights"],
        "image_size": info["image_size"],
        "learning_rate": lr,
        "head_epochs": head,
        "finetune_learning_rate": lr2 if head else None,
        "best_epoch": best,
        "seed": seed,
    }
    seconds, timed = fit_seconds(history, time.perf_counter() - t0)
    images = train.n * len(next(iter(history.values()), [])) if timed else 0  # unknown when not every epoch timed
    record_phase(run, "fine-tune", name, seconds, images, count_macs(model), TRAINING_PASSES)
    return model, {"history": history, "seconds": seconds, "record": record}


def keep_better_phase(
    model, head_backup: Path, head: int, head_history: dict, head_best: int | None, history: dict, best: int | None
) -> int | None:
    """After two phases, keep the head phase's best weights when they beat the whole-network phase.

    Args:
        model: the teacher, holding the whole-network phase's kept weights.
        head_backup: the head phase's backup folder (its ``best.weights.h5``).
        head: epochs of the head phase.
        head_history, head_best: the head phase's history and kept epoch (None: none kept).
        history, best: the whole-network phase's history and kept epoch.

    Returns:
        The kept epoch counted over both phases (None with ``--last-epoch``).

    Example:
        >>> keep_better_phase(None, Path("."), 2, {"val_balanced_accuracy": [0.5, 0.6]}, 2,
        ...                   {"val_balanced_accuracy": [0.7, 0.65]}, 1)
        3
    """
    if best is None:  # --last-epoch (both None), or no phase 2
        return None if history else head_best
    key = "val_balanced_accuracy"  # logged by BestOnValidation every epoch
    if head_best and head_history[key][head_best - 1] > history[key][best - 1]:
        with warnings.catch_warnings():  # the file also holds the head phase's (smaller) optimizer state
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(head_backup / "best.weights.h5")
        click.echo(f"  kept head-phase epoch {head_best}: it beat the whole-network phase on validation")
        return head_best
    return head + best


def new_student(cfg: DistillConfig, fd: FData, name: str, student: str | None = None):
    """A fresh student for ``fd``, seeded with ``cfg.seed``: every student of a run starts from the same weights.

    Args:
        cfg: the run's configuration (seed, vgg options).
        fd: the run's data (image shape, classes).
        name: the Keras model's name.
        student: one of the run's registered students (default: its first).

    Returns:
        The fresh, uncompiled student.

    Example:
        >>> new_student(DistillConfig(), load_fdata("FData"), "student_alone").count_params()  # doctest: +SKIP
        139543
    """
    import keras

    from kdtool.distill.students import create_student

    student = student or cfg.students()[0]
    keras.utils.set_random_seed(cfg.seed)
    return create_student(student, fd.image_shape, fd.num_classes, name=name, **cfg.student_recipe(student))


def distil_student(
    run: Run,
    strategy,
    name: str,
    role: str,
    teacher_label: str | None,
    teacher_models: list,
    cached: tuple[np.ndarray, np.ndarray] | None,
    kd: tuple[float, float] | None = None,
    student_design: str | None = None,
) -> tuple[object, dict]:
    """Train one student: alone (the baseline), from cached teacher logits, or online.

    With the run's fixed views (``run.views``), the student (the baseline too) trains on the same
    fixed augmented views; cached logits then have shape (K, N, C).

    Args:
        run: the open run.
        strategy: the ``tf.distribute`` strategy.
        name: the student's name in the run.
        role: ``baseline`` (no teacher), ``student`` or ``ensemble``.
        teacher_label: what it learns from, for the log and its record (None for the baseline).
        teacher_models: the frozen teachers, used with ``--teacher-logits online``.
        cached: ``(train logits, val logits)`` with cached logits, else None.
        kd: ``(temperature, alpha)`` instead of the run's (a sweep point).
        student_design: which of the run's registered students (default: its first).

    Returns:
        (the student, ``{"history", "seconds", "record"}``), ``record`` holding its KD settings
        and kept epoch for run.json.
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
        student_design = student_design or cfg.students()[0]
        student = new_student(cfg, fd, name, student_design)
        if role == "baseline":
            compile_classifier(
                student, cfg.learning_rate, cfg.lr_schedule, cfg.epochs, len(fit_data), offset=logit_offset(run)
            )
            trainer = student
        else:
            trainer = Distiller(
                student,
                fd.num_classes,
                alpha,
                temperature,
                teachers=teacher_models if online else None,
                logit_offset=logit_offset(run),
                kd_class_weights=kd_class_weights(run),
            )
            trainer.compile(
                optimizer=make_optimizer(cfg.learning_rate, cfg.lr_schedule, cfg.epochs, len(fit_data)),
                metrics=student_metrics(),
            )
    click.echo(
        f"  {name}: {student.count_params():,} params, {cfg.epochs} epoch(s)"
        + (
            ""
            if role == "baseline"
            else f", {cfg.teacher_logits} logits from {teacher_label}, "
            f"alpha={alpha:g}, T={temperature:g}" + (", class-weighted KD term" if cfg.kd_balance == "weights" else "")
        )
    )
    trainer(x_va[:1])  # build before restoring a backup
    history, best = fit_model(run, name, trainer, fit_data, (x_va, y_val), cfg.epochs)
    baseline = role == "baseline"
    record = {
        "student": student_design,
        "teacher_logits": None if baseline else cfg.teacher_logits,
        "temperature": None if baseline else temperature,
        "alpha": None if baseline else alpha,
        "best_epoch": best,
    }
    seconds, timed = fit_seconds(history, time.perf_counter() - t0)
    images = fit_data.n * len(next(iter(history.values()), [])) if timed else 0
    record_phase(run, "train", name, seconds, images, count_macs(student), TRAINING_PASSES)
    return student, {"history": history, "seconds": seconds, "record": record}
