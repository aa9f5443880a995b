"""Out-of-fold logits (``kdtool distill --calibration-folds K``): a larger, honest split to calibrate on.

``kdtool export`` fits its operating point (``--operating-point``, ``--min-recall CLASS=TARGET``,
``--temperature``) on labelled logits. The validation split of HAM10000 holds 95 melanomas, and on the
lesion-disjoint split they were easier than test's: melanoma floors chosen there found 11 to 13 points
fewer melanomas on test than promised. The training split holds seven times as many, but a model's
logits on its own training images are useless for this. Out-of-fold logits are not: the train split is
cut into K folds by lesion (:mod:`kdtool.folds`), the same recipe is trained K times, each time on K-1
folds (validation and epoch selection as in the run), and each model scores the fold it did not see.
The pooled logits cover every training image once, from a model of the same recipe that never saw its
lesion.

They describe the recipe, not the finished model: the fold models train on (K-1)/K of the images, and
one finished model can be better or worse at a class than its recipe. ``kdtool export --fit-on auto``
(the default) fits on them when the run has them, ``--fit-on oof`` requires them and ``--fit-on val``
ignores them; docs/decisions.md says why.

Files, under ``OUT/calibration/k<K>/``: ``folds.npy`` (the fold of each training image), one
``kdtool distill`` run per fold (``fold<f>/``, with its data under ``fold<f>/data``; re-running
resumes them), and ``<model>.oof_logits.npy`` (N_train, num_classes) float32 per student, recorded
under the student's ``calibration`` key in run.json.

Example:
    >>> pooled = out_of_fold_logits(run, strategy, print)                   # doctest: +SKIP
    >>> json.load(open("models/run.json"))["models"][0]["calibration"]      # doctest: +SKIP
    {'file': 'calibration/k3/student_alone.oof_logits.npy', 'folds': 3, 'grouped_by': 'lesion_id', ...}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np

from kdtool.data import FData, atomic_save_npy, load_fdata, safe_load_npy, save_fdata, sha256_file
from kdtool.distill.run_folder import Run
from kdtool.distill.stages import train_models
from kdtool.distill.summary import write_summary
from kdtool.distill.timing import record_phase
from kdtool.errors import InputError
from kdtool.folds import GROUPS_FILE, group_folds, read_groups
from kdtool.roles import STUDENT_ROLES


def _save_npy(path: Path, array: np.ndarray) -> str:
    atomic_save_npy(path, array)
    return sha256_file(path)


def fold_data(run: Run, folds: np.ndarray, f: int, folder: Path) -> Path:
    """Write (once) fold ``f``'s FData: train = the other folds, val = the run's val, test = fold ``f``.

    Args:
        run: the open run (its data).
        folds: the fold of every training image (:func:`plan_folds`).
        f: the held-out fold.
        folder: where the fold's FData go.

    Returns:
        ``folder``.

    Example:
        >>> fold_data(run, folds, 0, Path("models/calibration/k3/fold0/data"))  # doctest: +SKIP
    """
    if (folder / "y_test.npy").is_file():
        return folder
    fd = run.fd
    x, y = fd.raw_x("train"), fd.onehot("train")
    arrays = {
        "train": (x[folds != f], y[folds != f]),
        "val": (fd.raw_x("val"), fd.onehot("val")),
        "test": (x[folds == f], y[folds == f]),
    }
    save_fdata(
        folder,
        arrays,
        fd.class_names,
        info={
            "note": f"fold {f} of {int(folds.max()) + 1} of {fd.root}'s train split "
            "(kdtool distill --calibration-folds); test = the held-out fold"
        },
    )
    return folder


def plan_folds(fd: FData, k: int, seed: int) -> tuple[np.ndarray | None, np.ndarray]:
    """The lesion ids (None without ``image_ids.csv``) and the fold of every training image of ``fd``.

    Args:
        fd: the run's data.
        k: the number of folds.
        seed: the run's seed (which lesions go to which fold).

    Returns:
        (lesion id per training image or None, fold per training image).

    Raises:
        InputError: a bad ``image_ids.csv``, or fewer lesions than folds (one line; run_distill calls
            this before training anything).

    Example:
        >>> import tempfile
        >>> from kdtool.data import save_fdata
        >>> x, y = np.zeros((6, 4, 4, 3), np.uint8), np.eye(2, dtype=np.float32)[[0, 1] * 3]
        >>> root = save_fdata(tempfile.mkdtemp(), {s: (x, y) for s in ("train", "val")}, ["nv", "mel"])
        >>> groups, folds = plan_folds(load_fdata(root, splits=("train", "val")), 3, seed=0)
        >>> groups is None, sorted(folds.tolist())  # no image_ids.csv: every image is its own group
        (True, [0, 0, 1, 1, 2, 2])
    """
    labels = fd.labels("train")
    groups = read_groups(fd.root, "train", len(labels))
    try:
        return groups, group_folds(groups, labels, k, seed)
    except ValueError as exc:
        raise InputError(f"{fd.root}: --calibration-folds {k}: {exc}") from None


def out_of_fold_logits(run: Run, strategy, stage) -> dict[str, np.ndarray]:
    """Train the run's recipe on each fold and save every student's out-of-fold logits.

    Args:
        run: the finished :class:`kdtool.distill.run_folder.Run` (config with ``calibration_folds`` K >= 2).
        strategy: the ``tf.distribute`` strategy.
        stage: progress-line callback, as :func:`kdtool.distill.stages.train_models` takes.

    Returns:
        Student name -> (N_train, num_classes) float32 logits; each is also saved and recorded in
        run.json (``calibration``: file, sha256, folds, grouped_by).

    Example:
        >>> pooled = out_of_fold_logits(run, strategy, print)  # doctest: +SKIP
    """
    from kdtool.distill.evaluate import predict_logits

    cfg, fd = run.cfg, run.fd
    k = cfg.calibration_folds
    labels = fd.labels("train")
    groups, folds = plan_folds(fd, k, cfg.seed)
    if groups is None:
        run.warn(
            f"{fd.root / GROUPS_FILE} not found: calibration folds split images, not lesions, so images "
            "of one lesion may score each other and the out-of-fold logits are optimistic"
        )
    home = run.out / "calibration" / f"k{k}"
    home.mkdir(parents=True, exist_ok=True)
    if (home / "folds.npy").is_file():
        if not np.array_equal(safe_load_npy(home / "folds.npy"), folds):
            raise InputError(
                f"{home / 'folds.npy'}: differs from this run's folds (other lesion ids?); remove {home} to redo them"
            )
    else:
        _save_npy(home / "folds.npy", folds)
    students = [rec for rec in run.records.values() if rec["role"] in STUDENT_ROLES]
    pooled = {rec["name"]: np.full((len(labels), fd.num_classes), np.nan, dtype=np.float32) for rec in students}
    epochs: dict[str, list] = {name: [] for name in pooled}
    for f in range(k):
        data = fold_data(run, folds, f, home / f"fold{f}" / "data")
        sub_cfg = dataclasses.replace(cfg, data=str(data), out=str(home / f"fold{f}"), calibration_folds=0)
        sub = Run(sub_cfg, load_fdata(data), fresh=False)
        held = int(np.sum(folds == f))

        def sub_stage(label: str, f=f, held=held) -> None:
            stage(f"calibration fold {f + 1}/{k} ({held} held-out images): {label}")

        train_models(sub, strategy, sub_stage)
        write_summary(sub, n_boot=0)  # fold runs: nobody reads their intervals
        sub.save("FINISHED")
        fold_seconds = sum(p["seconds"] for p in sub.doc.get("phases", []))
        record_phase(run, "calibration", f"fold {f + 1}/{k} (all its models)", fold_seconds)
        x_held = sub.fd.x("test")
        for name in pooled:
            pooled[name][folds == f] = predict_logits(sub.load_model(name), x_held)
            epochs[name].append(sub.records[name].get("best_epoch"))
    stage(f"calibration: out-of-fold logits of {len(pooled)} student(s) -> {home}")
    for rec in students:
        name = rec["name"]
        path = home / f"{name}.oof_logits.npy"
        digest = _save_npy(path, pooled[name])
        rec["calibration"] = {
            "file": str(path.relative_to(run.out)),
            "sha256": digest,
            "folds": k,
            "grouped_by": "lesion_id" if groups is not None else "image",
            "model_sha256": rec["sha256"],
            "fold_best_epochs": epochs[name],
        }
        click.echo(f"  {name}: {path.name}")
    run.save()
    return pooled
