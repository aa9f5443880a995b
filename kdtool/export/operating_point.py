"""Set an exported model's operating point: fit it on validation or out-of-fold logits, fold it into the model.

An operating point is a per-class logit bias, and optionally a temperature, chosen by a named objective on
the **fit data** (:mod:`kdtool.export.objectives`): the validation split, or the out-of-fold train logits
that ``kdtool distill --calibration-folds`` saved for the model (:func:`out_of_fold_logits`). It is folded
into the output Dense layer of the in-memory Keras model (:func:`fold_into_layer`; the ``.keras`` file is
untouched), so the exported file needs no extra op and ``kdtool bench`` measures it as it ships.

:func:`prepare` checks, once per export and before anything is written, that the data can hold what was
asked (named classes exist, enough images for each min recall); :func:`set_operating_point` does the
rest per model and returns the sidecar's ``operating_point`` record.

Example:
    >>> targets = prepare(fd, ExportOptions(min_recall=["mel=0.7"]), plan.sources)   # doctest: +SKIP
    >>> point = set_operating_point(model, fd, options, src, x_val, targets)           # doctest: +SKIP
    >>> point.record["summary"]                                                        # doctest: +SKIP
    'as trained; mel recall >= 0.70 at 95%: +1.23 (40/50, lower bound 0.71); fitted on val, 852 images'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdtool.data import FData, safe_load_npy, sha256_file
from kdtool.errors import InputError
from kdtool.export.bias import output_dense_layer
from kdtool.export.convert import quiet
from kdtool.export.min_recall import shortfall
from kdtool.export.objectives import fit_operating_point
from kdtool.export.options import ExportOptions
from kdtool.export.report import warn
from kdtool.export.sources import ExportSource
from kdtool.priors import log_prior


def keras_logits(model, x: np.ndarray) -> np.ndarray:
    """The Keras model's logits, quietly.

    Args:
        model: a ``keras.Model``.
        x: (N, H, W, 3) float32 images in [0, 1].

    Returns:
        (N, K) float32 logits.
    """
    with quiet():
        return np.asarray(model.predict(x, batch_size=128, verbose=0), dtype=np.float32)


def fit_source(src: ExportSource, options: ExportOptions) -> str | None:
    """Where ``src``'s operating point is fitted: ``val``, ``oof``, or None when nothing is fitted.

    Args:
        src: the model (its ``calibration`` record from run.json).
        options: ``fit_on`` and what is asked (:meth:`ExportOptions.fits`).

    Returns:
        ``oof`` with ``--fit-on oof``, or with ``auto`` when the model has out-of-fold logits; else ``val``.

    Raises:
        InputError: ``--fit-on oof`` for a model without out-of-fold logits.
    """
    if not options.fits():
        return None
    if options.fit_on == "val":
        return "val"
    if src.calibration:
        return "oof"
    if options.fit_on == "oof":
        raise InputError(
            f"{src.path}: --fit-on oof needs the model's out-of-fold logits; "
            "train it with `kdtool distill --calibration-folds 3` (or use --fit-on val)"
        )
    return "val"


def prepare(fd: FData, options: ExportOptions, sources: Sequence[ExportSource]) -> list[tuple[int, float]]:
    """Check what the operating point asks of the data, before any model is exported.

    Args:
        fd: the FData.
        options: the export's options.
        sources: the models to export (where each one is fitted).

    Returns:
        The min-recall targets as ``(class index, target)`` pairs.

    Raises:
        InputError: a class the data lack, data without a train split where the objective or the
            out-of-fold logits need one, or too few images of a class to ever reach its bound on
            the fit data (one line naming the data).
    """
    names = [str(c) for c in fd.class_names]
    targets = []
    for name, target in options.min_recall:
        if name not in names:
            raise InputError(
                f"{fd.root}: --min-recall {name}={target:g}: the data have no class {name!r} "
                f"(classes: {', '.join(names)})"
            )
        targets.append((names.index(name), target))
    sites = {fit_source(src, options) for src in sources} - {None}
    needs_train = options.operating_point != "as-trained" or "oof" in sites
    if sites and needs_train and "train" not in fd.arrays:
        raise InputError(f"{fd.root}: the operating point needs the train split (its class frequencies)")
    for site in sorted(sites):
        split = "val" if site == "val" else "train"
        labels = fd.labels(split)
        what = "validation" if site == "val" else "out-of-fold train"
        for cls, target in targets:
            why = shortfall(int(np.sum(labels == cls)), target, options.confidence, f"{what} {names[cls]} image(s)")
            if why:
                raise InputError(f"{fd.root / f'y_{split}.npy'}: --min-recall {names[cls]}={target:g}: {why}")
    return targets


def out_of_fold_logits(src: ExportSource, fd: FData) -> np.ndarray:
    """The model's out-of-fold logits on the train split (``kdtool distill --calibration-folds``).

    Args:
        src: the model (its ``calibration`` record from run.json, with ``path`` resolved).
        fd: the FData whose train split the logits must match.

    Returns:
        (N_train, K) float64 logits.

    Raises:
        InputError: a file that is missing, changed since distill, or does not match the train split
            (one line naming it).
    """
    cal = src.calibration or {}
    path = Path(cal.get("path", ""))
    if not path.is_file():
        raise InputError(
            f"{path}: out-of-fold logits listed in run.json ({src.name}) but the file is missing; "
            "re-run the distill command, or pass --fit-on val"
        )
    if cal.get("sha256") and sha256_file(path) != cal["sha256"]:
        raise InputError(f"{path}: SHA-256 differs from run.json's record (changed after kdtool distill)")
    z = safe_load_npy(path)
    n = len(fd.labels("train"))
    if z.shape != (n, fd.num_classes) or not np.issubdtype(z.dtype, np.floating) or not np.isfinite(z).all():
        raise InputError(
            f"{path}: expected finite float logits of shape ({n}, {fd.num_classes}) for {fd.root}'s "
            f"train split, got {z.dtype} {z.shape} (another dataset?)"
        )
    if cal.get("grouped_by") == "image":
        warn(
            f"{path}: folds split images, not lesions (no image_ids.csv): "
            "the operating point fitted on them is optimistic"
        )
    return z.astype(np.float64)


def fold_into_layer(layer, bias: Sequence[float], temperature: float | None) -> None:
    """Make ``layer`` output ``(z + bias) / temperature`` where it output ``z`` (in memory).

    Args:
        layer: the model's output Dense layer (linear, with a bias).
        bias: (K,) added to its logits.
        temperature: T > 0 dividing the sum, or None (1).

    Example:
        >>> fold_into_layer(output_dense_layer(model)[0], [0.0, 0.4], 1.5)   # doctest: +SKIP
    """
    t = float(temperature or 1.0)
    b = np.asarray(layer.bias.numpy())
    layer.bias.assign(((b.astype(np.float64) + np.asarray(bias, dtype=np.float64)) / t).astype(b.dtype))
    if t != 1.0:
        w = np.asarray(layer.kernel.numpy())
        layer.kernel.assign((w.astype(np.float64) / t).astype(w.dtype))


def _asked(options: ExportOptions) -> str:
    """The options that asked for a fitted operating point, for error messages."""
    parts = []
    if options.operating_point != "as-trained":
        parts.append(f"--operating-point {options.operating_point}")
    if options.min_recall:
        parts.append("--min-recall")
    if options.temperature:
        parts.append("--temperature")
    return " and ".join(parts)


@dataclass
class OperatingPoint:
    """What :func:`set_operating_point` did to a model.

    Attributes:
        record: the sidecar's ``operating_point`` (:func:`kdtool.export.objectives.fit_operating_point`).
        val_logits: the validation logits of the model as exported (the check's reference).
    """

    record: dict
    val_logits: np.ndarray


def set_operating_point(
    model,
    fd: FData,
    options: ExportOptions,
    src: ExportSource,
    x_val: np.ndarray,
    targets: Sequence[tuple[int, float]] = (),
) -> OperatingPoint:
    """Fit the operating point on the model's fit data and fold it into the in-memory model.

    Args:
        model: the loaded ``keras.Model`` (its output layer changes; the file does not).
        fd: the FData.
        options: the export's options.
        src: the model being exported.
        x_val: the validation images.
        targets: the min-recall targets from :func:`prepare`.

    Returns:
        An :class:`OperatingPoint`.

    Raises:
        InputError: a fitted point for a model without a linear logits layer, or out-of-fold logits that
            cannot be used.
    """
    names = [str(c) for c in fd.class_names]
    z_val = keras_logits(model, x_val)
    site = fit_source(src, options)
    if site is None:
        return OperatingPoint(fit_operating_point(None, None, names), z_val)
    layer, why = output_dense_layer(model)
    if layer is None:
        raise InputError(f"{src.path}: {_asked(options)} needs a linear Dense output layer with a bias ({why})")
    if site == "oof":
        z, y = out_of_fold_logits(src, fd), fd.labels("train")
    else:
        z, y = z_val, fd.labels("val")
    prior = log_prior(fd.labels("train"), fd.num_classes) if options.operating_point != "as-trained" else None
    try:
        record = fit_operating_point(
            z, y, names, options.operating_point, prior, targets, options.confidence, options.temperature, site
        )
    except ValueError as exc:  # prepare() checked the counts; this names anything it could not foresee
        raise InputError(f"{src.path}: operating point: {exc}") from None
    fold_into_layer(layer, record["bias"], record["temperature"])
    for held in record["min_recall"]:
        if not held["reached"]:
            warn(
                f"{src.path}: --min-recall {held['class']}={held['target']:g} not reached together with the other "
                f"min recalls (lower bound {held['lower_bound']:.3f} on the fit data)"
            )
    return OperatingPoint(record, keras_logits(model, x_val))
