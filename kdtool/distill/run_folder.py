"""One run folder's state: ``run.json``, the records of finished models, and reuse of older folders.

``run.json`` holds the run's full configuration (``dataclasses.asdict`` of
:class:`kdtool.distill.config.DistillConfig`, the keys ``kdtool distill --config`` takes), the
versions and device it ran on, the data's fingerprint, its status (RUNNING, FINISHED, KILLED,
FAILED), warnings, and one record per finished model (file, SHA-256, metrics).

Re-running a command in the same ``--out`` reuses the folder: a finished model whose file still
has its recorded SHA-256 is skipped. The folder is refused, in one line, when it holds a run with
another configuration or other data. A setting added to kdtool after a folder was written counts
as what kdtool did before it (``SETTINGS_BEFORE_THEY_EXISTED``); a setting kdtool has since
removed (``REMOVED_SETTINGS``) still matches when the folder recorded it off; a folder that had it
on is refused in one line.

Example:
    >>> new = dataclasses.asdict(DistillConfig(epochs=3))
    >>> differing_settings({**new, "epochs": 2, "out": "elsewhere"}, new)
    ['epochs']
    >>> run = Run(DistillConfig(data="FData", out="models"), load_fdata("FData"), fresh=False)  # doctest: +SKIP
    >>> run.done("student_alone")["val"]["accuracy"]                                          # doctest: +SKIP
    0.74
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from kdtool import __version__
from kdtool.data import FData, atomic_write_text, sha256_file
from kdtool.distill.balance import Balancing, balancing
from kdtool.distill.config import (
    ADDS_TO_A_RUN,
    REMOVED_SETTINGS,
    SETTINGS_BEFORE_THEY_EXISTED,
    DistillConfig,
    option_name,
)
from kdtool.errors import InputError, RuntimeFailure

if TYPE_CHECKING:
    from kdtool.distill.cluster import Cluster


def removed_settings_used(old: dict) -> list[str]:
    """The removed settings an older run's config turned on, as ``option value``.

    Args:
        old: the ``config`` of an older run.json.

    Returns:
        One ``"--option value"`` per setting of ``REMOVED_SETTINGS`` recorded with a value other
        than its off value; empty when the run can be reused.

    Example:
        >>> removed_settings_used({"ema": 0.999, "epochs": 2})
        ['--ema 0.999']
        >>> removed_settings_used({"ema": 0.0}), removed_settings_used({})
        ([], [])
    """
    used = []
    for key, off in REMOVED_SETTINGS.items():
        value = old.get(key, off)
        if value is not None and value != off:
            used.append(f"{option_name(key)} {value}")
    return used


def differing_settings(old: dict, new: dict) -> list[str]:
    """The settings on which an older run's recorded config and this run's differ.

    Not compared: ``out``, ``data`` (the data are compared by fingerprint, not by the path they
    were given as), settings that only add work to a finished run (``ADDS_TO_A_RUN``) and removed
    settings (see :func:`removed_settings_used`). A setting missing from ``old`` counts with its
    value from ``SETTINGS_BEFORE_THEY_EXISTED``.

    Args:
        old: the ``config`` of an older run.json.
        new: this run's config, as run.json records it.

    Returns:
        The differing keys, in the order they first appear.

    Example:
        >>> new = dataclasses.asdict(DistillConfig(seed=1))
        >>> differing_settings({**new, "seed": 0, "calibration_folds": 3, "ema": 0.0}, new)
        ['seed']
    """
    old = {**SETTINGS_BEFORE_THEY_EXISTED, **old}
    skip = ("out", "data", *ADDS_TO_A_RUN, *REMOVED_SETTINGS)
    return [k for k in dict.fromkeys([*old, *new]) if k not in skip and old.get(k) != new.get(k)]


def config_doc(cfg: DistillConfig) -> dict:
    """``cfg`` as run.json records it: ``dataclasses.asdict``, with tuples as lists (JSON's arrays).

    Example:
        >>> config_doc(DistillConfig(temperatures=(2, 4)))["temperatures"]
        [2, 4]
    """
    doc = dataclasses.asdict(cfg)
    for key, value in doc.items():
        if isinstance(value, tuple):
            doc[key] = list(value)
    return doc


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
        from tensorflow.python.util import _pywrap_util_port  # private, read only

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def versions() -> dict:
    """The versions run.json records: kdtool, Python, numpy, TensorFlow, Keras, and oneDNN on or off.

    Example:
        >>> versions()["tensorflow"]  # doctest: +SKIP
        '2.21.0'
    """
    import keras
    import tensorflow as tf

    return {
        "kdtool": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": onednn_enabled(),
    }


def device() -> dict:
    """The machine run.json records: architecture, host name, CPU count, GPUs TensorFlow sees.

    Example:
        >>> device()["gpus"]  # doctest: +SKIP
        []
    """
    import tensorflow as tf

    return {
        "machine": platform.machine(),
        "node": platform.node(),
        "cpus": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def is_synthetic(fd: FData) -> bool:
    """Whether ``fd`` was written by ``kdtool data synthetic`` (its dataset_info.json says so).

    Example:
        >>> is_synthetic(load_fdata("FData"))  # doctest: +SKIP
        True
    """
    info = fd.root / "dataset_info.json"
    try:
        return bool(json.loads(info.read_text()).get("synthetic")) if info.exists() else False
    except (OSError, ValueError):
        return False


class Run:
    """The state of one run folder: run.json, the finished models' records, the run's balancing.

    Opening it creates the folder and writes run.json with status RUNNING. An older run.json of
    the same configuration and data is continued: its models whose files still match their
    SHA-256 count as done, and when and how the run first began stays on record.

    In a multi-worker run (``cluster``) only the chief writes the folder. Every other worker reads it
    (the same finished models are skipped on every worker) but writes nothing there: ``save`` does
    nothing, and its epoch backups go to a temporary folder of its own (``backup_root``), removed by
    :meth:`close`. ``--out`` must then be one folder every worker sees (a shared file system).

    Args:
        cfg: the run's configuration (``cfg.out`` is the folder).
        fd: the run's data.
        fresh: start over: ignore an older run.json and drop its epoch backups and fold runs.
        cluster: this process's place in a multi-worker run (:mod:`kdtool.distill.cluster`), or None.

    Raises:
        InputError: the folder holds an unreadable run.json, or a run with another configuration,
            other data, or a setting kdtool no longer supports (one line; exit code 2).
        RuntimeFailure: the folder cannot be created.

    Example:
        >>> run = Run(DistillConfig(out="models"), load_fdata("FData"), fresh=False)  # doctest: +SKIP
        >>> run.doc["status"]                                                         # doctest: +SKIP
        'RUNNING'
    """

    def __init__(self, cfg: DistillConfig, fd: FData, fresh: bool, cluster: Cluster | None = None):
        self.cfg, self.fd = cfg, fd
        self.cluster = cluster
        self.writer = cluster is None or cluster.is_chief
        self.scratch: Path | None = None
        if not self.writer:
            self.scratch = Path(tempfile.mkdtemp(prefix=f"kdtool-{cluster.task_type}{cluster.index}-"))
        self.out = Path(cfg.out)
        self.path = self.out / "run.json"
        self.records: dict[str, dict] = {}
        self.doc: dict = {}
        self.views: np.ndarray | None = None  # (K, N, H, W, 3) fixed augmented views, when used
        self.balancing: Balancing = balancing(cfg.balance, fd.labels("train"), fd.num_classes)
        self._open(fresh)

    def _read_older(self) -> dict:
        """The folder's run.json, checked to be this run's; fills ``records`` with its finished models."""
        try:
            old = json.loads(self.path.read_text())
            if not isinstance(old, dict) or not isinstance(old.get("config", {}), dict):
                raise ValueError("not a kdtool run record")
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: unreadable run.json ({exc}); use --fresh or another --out") from None
        old_cfg = old.get("config", {})
        removed = removed_settings_used(old_cfg)
        if removed:
            raise InputError(
                f"{self.path}: this run used {', '.join(removed)}, which kdtool no longer supports; "
                "use another --out, or --fresh to retrain here"
            )
        new_cfg = config_doc(self.cfg)
        differ = differing_settings(old_cfg, new_cfg)
        same_data = (old.get("data") or {}).get("fingerprint") == self.fd.fingerprint()
        if differ or not same_data:
            before = {**SETTINGS_BEFORE_THEY_EXISTED, **old_cfg}
            what = (
                (
                    "configuration ("
                    + "; ".join(f"{k}: {before.get(k)!r} there, {new_cfg.get(k)!r} now" for k in differ[:3])
                    + ")"
                )
                if differ
                else "data"
            )
            raise InputError(
                f"{self.path}: this folder holds a run with a different {what}; "
                "use another --out, or --fresh to retrain here"
            )
        for rec in old.get("models", []):
            f = self.out / rec.get("file", "")
            if rec.get("sha256") and f.is_file() and sha256_file(f) == rec["sha256"]:
                self.records[rec["name"]] = rec
        return old

    @property
    def backup_root(self) -> Path:
        """Where this process keeps its epoch backups: ``out/.backup``, or a worker's own temporary folder."""
        return self.out / ".backup" if self.writer else self.scratch / ".backup"

    def close(self) -> None:
        """Remove a worker's temporary folder (nothing for the writer)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _open(self, fresh: bool) -> None:
        if self.writer:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RuntimeFailure(f"{self.out}: cannot create output folder ({exc.strerror})") from None
        if fresh and self.writer:  # epoch backups of an earlier run must not be resumed by a fresh one
            shutil.rmtree(self.out / ".backup", ignore_errors=True)
            shutil.rmtree(self.out / "calibration", ignore_errors=True)  # fold runs of the models retrained
        first, carried = {}, {}
        if self.path.exists() and not fresh:
            old = self._read_older()
            # the run continues in this folder: when and how it began stays on record
            first = {
                "first_started": old.get("first_started", old.get("started")),
                "first_command": old.get("first_command", old.get("command")),
            }
            # so is the time its finished models took (kdtool.distill.timing); a phase run again replaces its entry
            if isinstance(old.get("phases"), list):
                carried["phases"] = [p for p in old["phases"] if isinstance(p, dict) and {"phase", "model"} <= set(p)]
        self.doc = {
            "kdtool_version": __version__,
            "status": "RUNNING",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
            **first,
            "config": config_doc(self.cfg),
            "data": {
                "path": str(self.fd.root),
                "fingerprint": self.fd.fingerprint(),
                "class_names": self.fd.class_names,
                "image_shape": list(self.fd.image_shape),
                "counts": {s: self.fd.class_counts(s).tolist() for s in self.fd.splits},
                "synthetic": is_synthetic(self.fd),
            },
            "versions": versions(),
            "device": device(),
            "warnings": [],
            "models": [],
            **carried,
        }
        self.save()

    def done(self, name: str) -> dict | None:
        """The record of finished model ``name``, or None when it still has to be trained."""
        return self.records.get(name)

    def add(self, rec: dict) -> None:
        """Record a finished model (its ``name`` key names it) and save run.json."""
        self.records[rec["name"]] = rec
        self.save()

    def warn(self, message: str) -> None:
        """Print a warning and keep it in run.json's ``warnings``."""
        click.secho(f"warning: {message}", fg="yellow", err=True)
        self.doc["warnings"].append(message)
        self.save()

    def load_model(self, name: str):
        """Finished model ``name``, reloaded from its ``.keras`` file with ``safe_mode=True`` (uncompiled)."""
        import keras

        import kdtool.layers  # noqa: F401 - registers the teachers' preprocessing layer

        return keras.saving.load_model(self.out / self.records[name]["file"], safe_mode=True, compile=False)

    def save(self, status: str | None = None, error: str | None = None) -> None:
        """Write run.json atomically, with a final ``status`` (and ``error``) if given; a non-chief worker: nothing."""
        if not self.writer:
            return
        if status:
            self.doc["status"] = status
            self.doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if error:
            self.doc["error"] = error
        self.doc["models"] = list(self.records.values())
        atomic_write_text(self.path, json.dumps(self.doc, indent=1, default=str) + "\n")
