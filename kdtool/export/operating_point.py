"""The operating point of an exported file: logit offsets written into the output layer's bias.

Three offsets, applied to the in-memory Keras model in this order (the ``.keras`` file is untouched),
so that the exported file needs no extra op and ``kdtool bench`` measures it as it ships:

1. the majority offset (:func:`offset_majority`): the train split's majority class is raised by a constant;
2. the prior shift (:func:`shift_prior`): ``tau * log(train class frequencies)`` is added to every logit;
3. the melanoma floor (:func:`hold_melanoma`): melanoma is raised by the least offset that finds enough
   melanomas (:func:`kdtool.export.sensitivity.floor_offset`), chosen on validation or on the model's
   out-of-fold logits (:func:`out_of_fold_logits`).

:func:`set_operating_point` runs the three and returns the sidecar's ``operating_point`` record.

Example:
    >>> point = set_operating_point(model, fd, ExportOptions(), src, x_val)   # doctest: +SKIP
    >>> point.record["majority_offset"]["class"], point.record["prior_shift"]   # doctest: +SKIP
    ('nv', 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdtool.data import FData, safe_load_npy, sha256_file
from kdtool.errors import InputError
from kdtool.export.bias import add_to_bias, output_dense_layer
from kdtool.export.convert import quiet
from kdtool.export.options import ExportOptions
from kdtool.export.report import warn
from kdtool.export.sensitivity import floor_offset, shortfall
from kdtool.export.sources import ExportSource
from kdtool.metrics import melanoma_index
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


def offset_majority(
    model, fd: FData, offset: float, path: Path, required: bool = True
) -> tuple[dict | None, np.ndarray]:
    """Add ``offset`` to the in-memory model's output bias for the train split's majority class (more than half).

    Args:
        model: the ``keras.Model`` to change in memory.
        fd: the FData (its train split names the majority class).
        offset: the logit offset; 0 does nothing.
        path: the model's file, for error messages.
        required: the user asked for the offset: a model or data that cannot take it are an error (exit 2).
            False (the default offset): data without a majority class are exported without it and without
            a word, and a model without a linear logits layer with the reason in the sidecar's record.

    Returns:
        The sidecar's record (None for offset 0 or nothing to raise) and the exact (K,) bias added.

    Raises:
        InputError: with ``required``, a model without a logits layer or data without a majority class.
    """
    added = np.zeros(fd.num_classes)
    if not offset:
        return None, added
    layer, why = output_dense_layer(model)
    if layer is None and required:
        raise InputError(f"{path}: --majority-offset needs a linear Dense output layer with a bias ({why})")
    problem = None  # then the data: without a majority class there is nothing to raise, whatever the model
    if "train" not in fd.arrays:
        problem = (fd.root, "needs the train split (its majority class)")
    else:
        counts = np.bincount(fd.labels("train"), minlength=fd.num_classes)
        major = int(np.argmax(counts))
        if counts[major] * 2 <= counts.sum():
            problem = (
                fd.root,
                f"needs a majority class, one with more than half of the train split (the most "
                f"frequent, {fd.class_names[major]}, has {100 * counts[major] / counts.sum():.1f}%)",
            )
    if problem is not None:
        if required:
            raise InputError(f"{problem[0]}: --majority-offset {problem[1]}")
        return None, added  # data without a majority class: nothing to raise, nothing to say
    if layer is None:  # data that could take the offset, a model that cannot: say so
        return {
            "offset": 0.0,
            "asked": float(offset),
            "skipped": f"needs a linear Dense output layer with a bias ({why})",
        }, added
    added[major] = np.float32(offset)
    add_to_bias(layer, added.astype(np.float32))
    return {
        "class": str(fd.class_names[major]),
        "offset": float(offset),
        "train_share": round(float(counts[major] / counts.sum()), 6),
    }, added


def shift_prior(model, fd: FData, tau: float, path: Path) -> tuple[dict, np.ndarray]:
    """Add ``tau * log(prior)`` to the in-memory model's output bias (the file is untouched).

    Args:
        model: the ``keras.Model`` to change in memory.
        fd: the FData (its train split gives the class frequencies).
        tau: the prior shift in [0, 1]; 0 does nothing.
        path: the model's file, for error messages.

    Returns:
        The sidecar's record (rounded for reading) and the exact (K,) shift added (zeros for tau 0).

    Raises:
        InputError: a model without a linear logits layer, or data without a train split.
    """
    if not tau:
        return {"prior_shift": 0.0}, np.zeros(fd.num_classes)
    layer, why = output_dense_layer(model)
    if layer is None:
        raise InputError(f"{path}: --prior-shift needs a linear Dense output layer with a bias ({why})")
    if "train" not in fd.arrays:
        raise InputError(f"{fd.root}: --prior-shift needs the train split (its class frequencies)")
    labels = fd.labels("train")
    prior = log_prior(labels, fd.num_classes)
    shift = (float(tau) * prior).astype(np.float32)
    add_to_bias(layer, shift)
    return {
        "prior_shift": float(tau),
        "log_prior": [round(float(v), 6) for v in prior],
        "bias_added": [round(float(v), 6) for v in shift],
        "prior_from": "train split class frequencies",
        "train_counts": np.bincount(labels, minlength=fd.num_classes).tolist(),
    }, shift.astype(np.float64)


def melanoma_class(fd: FData, options: ExportOptions) -> tuple[int | None, str | None]:
    """The class whose sensitivity export holds, once per export (it depends on the data only).

    Args:
        fd: the FData (class names, validation labels).
        options: ``melanoma_sensitivity``, ``sensitivity_confidence`` and ``sensitivity_required``.

    Returns:
        ``(index, None)``; ``(None, None)`` when no floor was asked for or the data have no melanoma
        class; ``(None, why)`` when the default floor cannot be held on these data.

    Raises:
        InputError: the floor was asked for and the data cannot hold it.
    """
    target, conf = options.melanoma_sensitivity, options.sensitivity_confidence
    if target is None:
        return None, None
    mel = melanoma_index(fd.class_names)
    if mel is None:  # nothing to hold: a dataset without melanomas, not a note on every export
        if options.sensitivity_required:
            raise InputError(
                f"{fd.root}: --melanoma-sensitivity needs a class named 'mel' or 'melanoma' "
                f"(classes: {', '.join(map(str, fd.class_names))})"
            )
        return None, None
    why = shortfall(int(np.sum(fd.labels("val") == mel)), target, conf, "validation melanoma image(s)")
    if why:
        if options.sensitivity_required:
            raise InputError(f"{fd.root / 'y_val.npy'}: --melanoma-sensitivity on the validation split: {why}")
        return None, why
    return mel, None


def out_of_fold_logits(src: ExportSource, fd: FData, floor_on: str) -> np.ndarray | None:
    """The model's out-of-fold logits on the train split (``kdtool distill --calibration-folds``).

    Args:
        src: the model (its ``calibration`` record from run.json).
        fd: the FData whose train split the logits must match.
        floor_on: ``val`` (never read them), ``oof`` (required) or ``auto`` (when the run has them).

    Returns:
        (N_train, K) float64 logits, or None to choose the floor on validation.

    Raises:
        InputError: ``--floor-on oof`` without them, or a file that is missing, changed since distill
            or does not match the train split (one line naming it).
    """
    if floor_on == "val":
        return None
    cal = src.calibration
    if not cal:
        if floor_on == "oof":
            raise InputError(
                f"{src.path}: --floor-on oof needs the model's out-of-fold logits; "
                "train it with `kdtool distill --calibration-folds 3` (or use --floor-on val)"
            )
        return None
    path = Path(cal["path"])
    if not path.is_file():
        raise InputError(
            f"{path}: out-of-fold logits listed in run.json ({src.name}) but the file is missing; "
            "re-run the distill command, or pass --floor-on val"
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
        warn(f"{path}: folds split images, not lesions (no image_ids.csv): the floor chosen on them is optimistic")
    return z.astype(np.float64)


def hold_melanoma(
    model,
    fd: FData,
    options: ExportOptions,
    src: ExportSource,
    mel: int | None,
    not_held: str | None,
    val_logits: np.ndarray,
    oof: np.ndarray | None,
) -> dict | None:
    """Add the melanoma offset of :func:`kdtool.export.sensitivity.floor_offset` to the in-memory model's bias.

    Args:
        model: the ``keras.Model`` to change in memory.
        fd: the FData.
        options: the floor's target, confidence and whether it was asked for.
        src: the model (its path and out-of-fold record).
        mel, not_held: from :func:`melanoma_class`.
        val_logits: the model's validation logits as it now is; updated in place with the offset.
        oof: the out-of-fold logits of the model as it now is (offsets already added), or None to
            choose on validation.

    Returns:
        The record for the sidecar: the offset's (``chosen_on`` ``val`` or ``oof``; with ``oof``, also
        what validation finds), or ``skipped`` with the reason (``not_held``, or a model without a
        logits layer when the target was not asked for); None when there is nothing to hold.

    Raises:
        InputError: the floor was asked for and the model has no linear logits layer.
    """
    if mel is None and not not_held:
        return None
    layer, why = output_dense_layer(model)
    if mel is not None and layer is None:
        if options.sensitivity_required:
            raise InputError(
                f"{src.path}: --melanoma-sensitivity needs a linear Dense output layer with a bias ({why})"
            )
        not_held = f"no linear logits layer to shift ({why})"
    if mel is None or layer is None:
        return {
            "target": options.melanoma_sensitivity,
            "confidence": options.sensitivity_confidence,
            "skipped": not_held,
        }
    y_val = fd.labels("val")
    rec = floor_offset(
        val_logits,
        y_val,
        mel,
        options.melanoma_sensitivity,
        options.sensitivity_confidence,
        oof,
        fd.labels("train") if oof is not None else None,
    )
    where = (
        {}
        if oof is None
        else {
            "oof_file": src.calibration["path"],
            "oof_folds": src.calibration.get("folds"),
            "oof_grouped_by": src.calibration.get("grouped_by"),
        }
    )
    shift = np.zeros(fd.num_classes, dtype=np.float32)
    shift[mel] = rec["offset"]
    add_to_bias(layer, shift)
    val_logits += shift  # the bias is added to every logit: the model's logits now, without a second pass
    if oof is not None:
        where["val_detected"] = int(np.sum(np.argmax(val_logits[y_val == mel], axis=1) == mel))
        where["val_images"] = int(np.sum(y_val == mel))
    return {"class": str(fd.class_names[mel]), "chosen_on": rec.pop("chosen_on"), **where, **rec}


@dataclass
class OperatingPoint:
    """What :func:`set_operating_point` did to a model.

    Attributes:
        record: the sidecar's ``operating_point`` (``prior_shift`` and its details, plus
            ``majority_offset`` and ``melanoma_sensitivity`` when they apply).
        val_logits: the validation logits of the model with every offset (the check's reference).
    """

    record: dict
    val_logits: np.ndarray

    @property
    def majority(self) -> dict | None:
        """The majority offset's record, or None."""
        return self.record.get("majority_offset")

    @property
    def melanoma(self) -> dict | None:
        """The melanoma floor's record, or None."""
        return self.record.get("melanoma_sensitivity")


def set_operating_point(
    model,
    fd: FData,
    options: ExportOptions,
    src: ExportSource,
    x_val: np.ndarray,
    mel: int | None = None,
    not_held: str | None = None,
) -> OperatingPoint:
    """Apply the majority offset, the prior shift and the melanoma floor to the in-memory model, in that order.

    Args:
        model: the loaded ``keras.Model`` (its output bias changes; the file does not).
        fd: the FData.
        options: the export's options.
        src: the model being exported.
        x_val: the validation images.
        mel, not_held: from :func:`melanoma_class` (computed once per export).

    Returns:
        An :class:`OperatingPoint`.

    Raises:
        InputError: an offset the user asked for that the model or data cannot take.
    """
    oof = out_of_fold_logits(src, fd, options.floor_on) if mel is not None else None  # loaded once per model
    majority, majority_bias = offset_majority(
        model, fd, options.resolved_majority_offset(), src.path, options.majority_required
    )
    record, prior_bias = shift_prior(model, fd, options.prior_shift, src.path)
    if majority is not None:
        record["majority_offset"] = majority
    if oof is not None:  # the out-of-fold logits of the model as it now is
        oof = oof + majority_bias + prior_bias
    val_logits = keras_logits(model, x_val)
    held = hold_melanoma(model, fd, options, src, mel, not_held, val_logits, oof)
    if held is not None:
        record["melanoma_sensitivity"] = held
    return OperatingPoint(record, val_logits)
