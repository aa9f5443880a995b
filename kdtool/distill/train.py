"""``kdtool distill``'s whole job: :func:`run_distill` fine-tunes teachers, distils students, ranks them.

Per teacher: fine-tune it, cache its logits on the train and val images, distil a fresh student.
Always also train the student alone with the same budget and the same initial weights (the
baseline); with ``ensemble`` one more student learns from the mean of all teachers' soft targets
(:mod:`kdtool.distill.stages`). With ``calibration_folds`` the same recipe then trains on each
fold for out-of-fold logits (:mod:`kdtool.distill.calibration`).

Everything lands in ``out``: ``run.json`` (config, versions, data fingerprint, timings, status;
:mod:`kdtool.distill.run_folder`), ``summary.csv`` (ranked by validation accuracy;
:mod:`kdtool.distill.summary`) and per model ``<name>.keras`` plus ``<name>/`` with
``history.csv``, ``metrics.json``, ``curves.png`` and ``confusion.png``
(:mod:`kdtool.distill.outputs`). Model files are written atomically and reloaded with
``safe_mode=True`` before they count as done; re-running the same command skips models already
done (``fresh=True`` retrains them), and a killed run resumes from its last epoch.

With ``--strategy multiworker`` every worker runs this same pipeline on its share of each batch
(:mod:`kdtool.distill.cluster`); only the chief writes ``out`` (docs/distributed.md).

Example:
    >>> cfg = DistillConfig(data="FData", out="models", teachers=["efficientnet_lite0"], epochs=2)  # doctest: +SKIP
    >>> rows = run_distill(cfg)                                                                     # doctest: +SKIP
    >>> rows[0]["name"], rows[0]["rank"]                                                            # doctest: +SKIP
    ('student_efficientnet_lite0', 1)
"""

from __future__ import annotations

import signal
import sys
import time

import click

from kdtool.data import load_fdata
from kdtool.distill.calibration import out_of_fold_logits, plan_folds
from kdtool.distill.cluster import agree, all_ok, cluster_from_env, cluster_timeout, config_digest, start_multiworker
from kdtool.distill.config import DistillConfig
from kdtool.distill.run_folder import Run, config_doc
from kdtool.distill.stages import stage_count, train_models
from kdtool.distill.summary import print_summary, write_summary
from kdtool.distill.timing import phase_lines, record_phase
from kdtool.errors import InputError, RuntimeFailure


def make_strategy(name: str):
    """A ``tf.distribute`` strategy for ``kdtool distill --strategy``.

    Args:
        name: ``auto`` (mirrored on more than one GPU, else the default strategy), ``mirrored``
            (all local GPUs; without GPUs, the logical CPU devices, which is useful to test) or
            ``multiworker`` (the cluster from ``TF_CONFIG``).

    Returns:
        The strategy.

    Raises:
        InputError: an unknown name, or ``multiworker`` without ``TF_CONFIG`` or with a bad one.

    Example:
        >>> make_strategy("auto")  # doctest: +SKIP
        <tensorflow.python.distribute.distribute_lib._DefaultDistributionStrategy object at ...>
    """
    import tensorflow as tf

    if name == "multiworker":  # before anything lists devices: the strategy must set TensorFlow up first
        from kdtool.distill.keras_fix import fix_keras_for_multiworker

        cluster_from_env(name)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        fix_keras_for_multiworker()
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    raise InputError(f"unknown --strategy {name!r}; choose auto, mirrored or multiworker")


def open_run_together(cfg: DistillConfig, fd, fresh: bool, cluster, strategy) -> Run:
    """Open the run folder on every worker of a multi-worker run, the chief first.

    The chief opens (checks and writes) it; then every worker learns whether it could, and only then
    do the others read it, so each sees the run.json the chief wrote and skips the same finished models.

    Args:
        cfg, fd, fresh: as :func:`run_distill` has them.
        cluster: this process's :class:`kdtool.distill.cluster.Cluster`.
        strategy: the multi-worker strategy (for the collective).

    Returns:
        The :class:`kdtool.distill.run_folder.Run` (a non-chief one writes nothing).

    Raises:
        InputError: the chief refused the folder (its own line on the chief; on the others, one line
            pointing at it).

    Example:
        >>> run = open_run_together(cfg, fd, False, cluster, strategy)  # doctest: +SKIP
    """
    run, refused = None, None
    if cluster.is_chief:
        try:
            run = Run(cfg, fd, fresh, cluster)
        except click.ClickException as exc:
            refused = exc
    if not all_ok(strategy, cluster, refused is None):
        if refused is not None:
            raise refused
        raise InputError(f"{cluster.describe()}: the chief refused the run folder {cfg.out}; its log says why")
    return run if run is not None else Run(cfg, fd, fresh, cluster)


def lost_worker(exc: Exception, cluster, tf) -> str | None:
    """The line for a multi-worker run that lost a worker mid-training (a collective failed), else None.

    Args:
        exc: what training raised.
        cluster: the run's :class:`kdtool.distill.cluster.Cluster`, or None.
        tf: the ``tensorflow`` module.

    Returns:
        One line saying what happened and how to resume, or None for any other error.

    Example:
        >>> lost_worker(ValueError("x"), None, None) is None
        True
    """
    if cluster is None or tf is None:
        return None
    errors = (
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
        tf.errors.DeadlineExceededError,
    )
    if not isinstance(exc, errors):
        return None
    unhealthy = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("/job:")]
    who = f" ({', '.join(unhealthy[:4])} stopped answering)" if unhealthy else ""
    return (
        f"{cluster.describe()}: lost contact with a worker mid-training{who}; start every worker again with "
        "the same command: the run resumes from the last epoch backup"
    )


def _install_signal_handlers() -> dict:
    """SIGTERM raises KeyboardInterrupt, as SIGINT does; the returned dict then names the signal."""
    state: dict = {}

    def on_term(signum, frame):
        state["signal"] = "SIGTERM"
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (e.g. some test runners)
        pass
    return state


def run_distill(cfg: DistillConfig, fresh: bool = False) -> list[dict]:
    """Run the whole pipeline into ``cfg.out``.

    The data (and with ``calibration_folds`` their ``image_ids.csv``) are checked before TensorFlow
    loads, and so is ``TF_CONFIG`` with ``--strategy multiworker``. SIGINT or SIGTERM marks run.json
    KILLED and exits 130 or 143; an error marks it FAILED. In a multi-worker run only the chief writes
    ``out`` and prints the summary.

    Args:
        cfg: the run configuration.
        fresh: retrain models even if a previous identical run finished them.

    Returns:
        Summary rows, best validation accuracy first (:func:`kdtool.distill.summary.summary_rows`).

    Raises:
        InputError: bad data or settings, or an ``out`` that holds another run (one line, exit code 2).

    Example:
        >>> rows = run_distill(DistillConfig(data="FData", epochs=2), fresh=True)  # doctest: +SKIP
    """
    cfg.check()
    cluster = cluster_from_env(cfg.strategy)  # a bad TF_CONFIG is refused before any TensorFlow work
    if cluster is not None:
        cluster_timeout()
        if cfg.calibration_folds:
            raise InputError("--calibration-folds does not run with --strategy multiworker yet; run the folds apart")
    fd = load_fdata(cfg.data)  # validate before any TensorFlow work
    if cfg.calibration_folds:
        plan_folds(fd, cfg.calibration_folds, cfg.seed)  # a bad image_ids.csv is refused before any training
    from kdtool.train_extra import require_train_extra

    strategy = dog = None
    if cluster is not None:  # TensorFlow sets collectives up only before its first op
        strategy, dog = start_multiworker(cluster)
    tf = require_train_extra("kdtool distill")
    # --seed makes a run repeatable on the same machine and versions: seeded weights, batches and
    # views, plus deterministic op kernels (run.json records versions and device to explain a difference).
    tf.config.experimental.enable_op_determinism()
    if cluster is None:
        run = Run(cfg, fd, fresh)
    else:  # nothing is written before every worker has answered and runs the same command
        agree(strategy, cluster, config_digest(config_doc(cfg), fd.fingerprint(), fresh), dog)
        run = open_run_together(cfg, fd, fresh, cluster, strategy)
    if run.doc["data"]["synthetic"] and run.writer:
        run.warn(f"{fd.root} is SYNTHETIC data: use it to try the pipeline, never quote its accuracy")
    stop = _install_signal_handlers()
    try:
        if cluster is None:
            strategy = make_strategy(cfg.strategy)
        else:
            run.doc["cluster"] = {"workers": cluster.num_workers, "replicas": strategy.num_replicas_in_sync}
            replicas = strategy.num_replicas_in_sync
            click.echo(f"{cluster.describe()}: {replicas} replicas in sync; the chief writes {run.out}")
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
            out_of_fold_logits(run, strategy, stage)
        if not run.writer:
            click.echo(f"{cluster.describe()}: done; the chief wrote {run.out}")
            return []
        t0 = time.perf_counter()
        rows = write_summary(run)
        record_phase(run, "summary", "", time.perf_counter() - t0)
        run.doc["total_seconds"] = round(time.perf_counter() - t_start, 2)
        run.save("FINISHED")
    except KeyboardInterrupt:
        run.save("KILLED", error=f"interrupted by {stop.get('signal', 'SIGINT')}")
        marked = "run.json marked KILLED; " if run.writer else ""
        click.secho(f"interrupted: {marked}re-run the same command to continue", fg="red", err=True)
        sys.exit(143 if stop.get("signal") == "SIGTERM" else 130)
    except click.ClickException as exc:
        run.save("FAILED", error=exc.format_message())
        raise
    except Exception as exc:
        lost = lost_worker(exc, cluster, tf)
        run.save("FAILED", error=lost or f"{type(exc).__name__}: {exc}")
        if lost:
            raise RuntimeFailure(lost) from None
        raise
    finally:
        run.close()
    print_summary(rows)
    click.echo("\n" + "\n".join(phase_lines(run.doc.get("phases", []), run.doc.get("total_seconds"))))
    click.echo(f"\nwrote {run.out}/summary.csv, run.json and per-model folders")
    return rows
