"""``kdtool export`` end to end: resolve models, convert each in each mode, check, write, report.

Example:
    >>> result = export_models("models", ExportOptions(modes=["int8"]))   # doctest: +SKIP
    >>> [r["file"] for r in result.rows]                                  # doctest: +SKIP
    ['student_alone.int8.tflite']
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import numpy as np

from kdtool.data import FData, load_fdata, safe_load_npy
from kdtool.errors import InputError, QualityGateFailed, RuntimeFailure
from kdtool.export.convert import (
    REPRESENTATIVE_SEED,
    SIDECAR_FORMAT,
    check_model_matches_data,
    convert_model,
    export_paths,
    load_keras_model,
    postprocess_record,
    preprocess_record,
    quiet,
    representative_dataset,
    sha256_file,
    versions,
    write_export,
)
from kdtool.export.modes import CALIBRATED_MODES, MODE_ORDER
from kdtool.export.sensitivity import (DEFAULT_CONFIDENCE, DEFAULT_MAJORITY_OFFSET, DEFAULT_TARGET, floor_offset,
                                       shortfall)
from kdtool.export.sources import ExportPlan, ExportSource, plan_export

# Tests only: a replacement for representative_dataset(fd, n, seed), e.g. all-zero images,
# to check that a broken calibration trips the accuracy gate. Never set in normal use.
CALIBRATION_HOOK: Callable[[FData, int, int], Callable] | None = None


@dataclass
class ExportOptions:
    """The options of ``kdtool export`` (see its --help).

    Attributes:
        modes: quantization modes, e.g. ``["int8"]``.
        data: FData folder; None = run.json's data.path when it exists, else ``FData``.
        representative_samples: int8 calibration images drawn from the train split.
        io: int8 mode's input/output type (int8, uint8, float32).
        out: output folder; None = ``<run>/export`` or the .keras file's folder.
        max_drop: accuracy drop (points) above which the command exits 3.
        include_teachers: also export a run's teachers.
        bias_correction: int8 only: remove the mean per-class logit error measured on the
            calibration images from the output layer's bias (see :mod:`kdtool.export.bias`).
        prior_shift: the operating point tau: ``tau * log(train class frequencies)`` is added
            to the output layer's bias of every exported file (0: the model as trained); ``"auto"``:
            chosen per model by :func:`kdtool.export.auto_shift.choose_prior_shift`.
        min_balanced_accuracy: with ``prior_shift="auto"``, the validation balanced accuracy the
            chosen tau must keep.
        majority_offset: a logit offset added to the output layer's bias for the train split's majority
            class only (the one with more than half of its images: nevi in HAM10000), before ``prior_shift``
            and the melanoma floor: more of that class is predicted (accuracy up) while the rarer classes
            keep their decisions among themselves; 0: off. None (the default): ``DEFAULT_MAJORITY_OFFSET``
            (1.5) with ``prior_shift`` 0, the operating point it was measured at, else 0.
        majority_required: True when the user asked for the offset: data without a majority class or a
            model without a logits layer are an error (exit 2). False (the default offset): they are
            exported without it, the reason in the sidecar.
        melanoma_sensitivity: a melanoma logit offset, chosen per model on the validation split
            after ``prior_shift``, is added to the output layer's bias so that validation melanoma
            sensitivity reaches this target at ``sensitivity_confidence`` (see
            :mod:`kdtool.export.sensitivity`); None: the model's own melanoma decisions.
        sensitivity_confidence: confidence of that claim (one-sided Clopper-Pearson lower bound);
            0 holds the observed validation sensitivity itself at the target.
        floor_on: where the melanoma offset is chosen: ``val`` (the default), ``oof`` (the out-of-fold
            logits that ``kdtool distill --calibration-folds`` saved for the model; required), ``both``
            (the larger of the two offsets: the floor holds on both; out-of-fold logits required) or
            ``auto`` (oof when the model has them, else val).
        sensitivity_required: True when the user asked for the target: data or a model that cannot
            hold it are an error (exit 2). False (the default target): they are exported as trained,
            with a note and the reason in the sidecar.
    """

    modes: list[str] = field(default_factory=lambda: ["int8"])
    data: str | None = None
    representative_samples: int = 300
    io: str = "int8"
    out: str | None = None
    max_drop: float = 1.0
    include_teachers: bool = False
    bias_correction: bool = True
    prior_shift: float | str = 0.0
    majority_offset: float | None = None
    majority_required: bool = False
    min_balanced_accuracy: float = 0.60
    melanoma_sensitivity: float | None = DEFAULT_TARGET
    sensitivity_confidence: float = DEFAULT_CONFIDENCE
    sensitivity_required: bool = False
    floor_on: str = "val"

    def resolved_majority_offset(self) -> float:
        """The majority offset to apply: the one given, or the default where it was measured (prior shift 0)."""
        if self.majority_offset is not None:
            return self.majority_offset
        return DEFAULT_MAJORITY_OFFSET if self.prior_shift == 0 else 0.0


@dataclass
class ExportResult:
    """What an export produced: one row per file (the sidecar), and the failures."""

    out: Path
    rows: list[dict]
    gate_failures: list[str]
    errors: list[str]


def _warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def _load_data(plan: ExportPlan, options: ExportOptions) -> FData:
    if options.data is not None:
        data = options.data
    else:
        data = plan.data_path()
        if data is None:
            recorded = (plan.run.get("data") or {}).get("path")
            if recorded:
                _warn(f"run.json's data path {recorded} not found; using FData (pass --data to choose)")
            data = "FData"
    fd = load_fdata(data)
    run_data = plan.run.get("data") or {}
    names = run_data.get("class_names")
    if names is not None and list(names) != list(fd.class_names):
        raise InputError(f"{fd.root}: class names {fd.class_names} differ from run.json's {list(names)}; pass the run's --data")
    fp = run_data.get("fingerprint")
    if fp and fp != fd.fingerprint():
        _warn(f"{fd.root}: data fingerprint differs from run.json's (not the data the run was trained on?)")
    return fd


def _teacher_float32_from_files(plan: ExportPlan, out: Path) -> dict[str, tuple[int, str]]:
    sizes = {}
    for name in plan.teacher_files:
        path, _ = export_paths(out, name, "float32")
        if path.is_file():
            sizes[name] = (path.stat().st_size, str(path))
    return sizes


def _sizes(src: ExportSource, nbytes: int, f32: int | None, teacher_f32: dict[str, tuple[int, str]]) -> dict:
    rec = {"bytes": nbytes, "float32_bytes": f32,
           "ratio_to_float32": round(nbytes / f32, 4) if f32 else None,
           "teacher": src.teacher if src.role != "teacher" else None,
           "teacher_float32_bytes": None, "ratio_to_teacher_float32": None, "teacher_float32_source": None}
    names = src.teachers() if src.role != "teacher" else []
    if names and all(n in teacher_f32 for n in names):
        total = sum(teacher_f32[n][0] for n in names)
        rec["teacher_float32_bytes"] = total
        rec["ratio_to_teacher_float32"] = round(nbytes / total, 6)
        rec["teacher_float32_source"] = " + ".join(teacher_f32[n][1] for n in names)
    return rec


def _keras_logits(model, x: np.ndarray) -> np.ndarray:
    with quiet():
        return np.asarray(model.predict(x, batch_size=128, verbose=0), dtype=np.float32)


def _offset_majority(model, fd: FData, offset: float, path: Path,
                     required: bool = True) -> tuple[dict | None, np.ndarray]:
    """Add ``offset`` to the in-memory model's output bias for the train split's majority class (more than half).

    Args:
        required: the user asked for the offset: a model or data that cannot take it are an error (exit 2).
            False (the default offset): data without a majority class are exported without it and without
            a word, and a model without a linear logits layer with the reason in the sidecar's record.

    Returns the sidecar's record (None for offset 0 or nothing to raise) and the exact (K,) bias added.
    """
    from kdtool.export.bias import add_to_bias, output_dense_layer  # noqa: PLC0415

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
            problem = (fd.root, f"needs a majority class, one with more than half of the train split (the most "
                                f"frequent, {fd.class_names[major]}, has {100 * counts[major] / counts.sum():.1f}%)")
    if problem is not None:
        if required:
            raise InputError(f"{problem[0]}: --majority-offset {problem[1]}")
        return None, added  # data without a majority class: nothing to raise, nothing to say
    if layer is None:  # data that could take the offset, a model that cannot: say so
        return {"offset": 0.0, "asked": float(offset),
                "skipped": f"needs a linear Dense output layer with a bias ({why})"}, added
    added[major] = np.float32(offset)
    add_to_bias(layer, added.astype(np.float32))
    return {"class": str(fd.class_names[major]), "offset": float(offset),
            "train_share": round(float(counts[major] / counts.sum()), 6)}, added


def _shift_prior(model, fd: FData, tau: float, path: Path) -> tuple[dict, np.ndarray]:
    """Add ``tau * log(prior)`` to the in-memory model's output bias (the file is untouched).

    Returns the sidecar's record (rounded for reading) and the exact (K,) shift added (zeros for tau 0).
    """
    from kdtool.priors import log_prior  # noqa: PLC0415
    from kdtool.export.bias import add_to_bias, output_dense_layer  # noqa: PLC0415

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
    return {"prior_shift": float(tau), "log_prior": [round(float(v), 6) for v in prior],
            "bias_added": [round(float(v), 6) for v in shift], "prior_from": "train split class frequencies",
            "train_counts": np.bincount(labels, minlength=fd.num_classes).tolist()}, shift.astype(np.float64)


def _auto_prior_shift(model, fd: FData, options: ExportOptions, mel: int | None, x_val: np.ndarray,
                      oof: np.ndarray | None) -> tuple[float, dict]:
    """``--prior-shift auto``: the tau of :func:`kdtool.export.auto_shift.choose_prior_shift` and its record."""
    from kdtool.priors import log_prior  # noqa: PLC0415
    from kdtool.export.auto_shift import choose_prior_shift  # noqa: PLC0415
    from kdtool.export.bias import output_dense_layer  # noqa: PLC0415

    layer, why = output_dense_layer(model)
    if layer is None:
        return 0.0, {"chosen": 0.0, "skipped": f"no linear logits layer to shift ({why})"}
    if "train" not in fd.arrays:
        raise InputError(f"{fd.root}: --prior-shift auto needs the train split (its class frequencies)")
    tau, rec = choose_prior_shift(_keras_logits(model, x_val), fd.labels("val"),
                                  log_prior(fd.labels("train"), fd.num_classes), mel, oof,
                                  fd.labels("train") if oof is not None else None, options.melanoma_sensitivity,
                                  options.sensitivity_confidence, options.min_balanced_accuracy,
                                  also_val=options.floor_on == "both")
    return tau, rec


def _auto_note(rec: dict) -> str:
    if "skipped" in rec:
        return f"  prior shift auto: 0 ({rec['skipped']})"
    tried = ", ".join(f"{c['tau']:g}: {100 * c['val_balanced_accuracy']:.1f}%" for c in rec["candidates"])
    verdict = (f">= {100 * rec['min_balanced_accuracy']:g}%" if rec["met"]
               else f"none reaches {100 * rec['min_balanced_accuracy']:g}%")
    floor = " with the melanoma floor" if rec["melanoma_floor"] else ""
    return f"  prior shift auto: {rec['chosen']:g} (val balanced accuracy{floor} {tried}; {verdict})"


def _melanoma_class(fd: FData, options: ExportOptions) -> tuple[int | None, str | None]:
    """The class index whose sensitivity export holds, or None and why not (None: not asked for, or the data
    have no melanoma class to hold); raises when the target was asked for and cannot be held."""
    from kdtool.metrics import melanoma_index  # noqa: PLC0415

    target, conf = options.melanoma_sensitivity, options.sensitivity_confidence
    if target is None:
        return None, None
    mel = melanoma_index(fd.class_names)
    if mel is None:  # nothing to hold: a dataset without melanomas, not a note on every export
        if options.sensitivity_required:
            raise InputError(f"{fd.root}: --melanoma-sensitivity needs a class named 'mel' or 'melanoma' "
                             f"(classes: {', '.join(map(str, fd.class_names))})")
        return None, None
    why = shortfall(int(np.sum(fd.labels("val") == mel)), target, conf, "validation melanoma image(s)")
    if why:
        if options.sensitivity_required:
            raise InputError(f"{fd.root / 'y_val.npy'}: --melanoma-sensitivity on the validation split: {why}")
        return None, why
    return mel, None


def out_of_fold_logits(src: ExportSource, fd: FData, options: ExportOptions) -> np.ndarray | None:
    """The model's out-of-fold logits on the train split (``kdtool distill --calibration-folds``), when
    ``options.floor_on`` asks for them and the run has them; None to choose on validation.

    Raises:
        InputError: ``--floor-on oof`` without them, or a file that is missing, changed since distill
            or does not match the train split (one line naming it).
    """
    if options.floor_on == "val":
        return None
    cal = src.calibration
    if not cal:
        if options.floor_on in ("oof", "both"):
            raise InputError(f"{src.path}: --floor-on {options.floor_on} needs the model's out-of-fold logits; "
                             "train it with `kdtool distill --calibration-folds 3` (or use --floor-on val)")
        return None
    path = Path(cal["path"])
    if not path.is_file():
        raise InputError(f"{path}: out-of-fold logits listed in run.json ({src.name}) but the file is missing; "
                         "re-run the distill command, or pass --floor-on val")
    if cal.get("sha256") and sha256_file(path) != cal["sha256"]:
        raise InputError(f"{path}: SHA-256 differs from run.json's record (changed after kdtool distill)")
    z = safe_load_npy(path)
    n = len(fd.labels("train"))
    if z.shape != (n, fd.num_classes) or not np.issubdtype(z.dtype, np.floating) or not np.isfinite(z).all():
        raise InputError(f"{path}: expected finite float logits of shape ({n}, {fd.num_classes}) for {fd.root}'s "
                         f"train split, got {z.dtype} {z.shape} (another dataset?)")
    if cal.get("grouped_by") == "image":
        _warn(f"{path}: folds split images, not lesions (no image_ids.csv): the floor chosen on them is optimistic")
    return z.astype(np.float64)


def _hold_melanoma(model, fd: FData, options: ExportOptions, src: ExportSource, mel: int | None,
                   not_held: str | None, val_logits: np.ndarray, prior_bias: np.ndarray,
                   oof: np.ndarray | None) -> dict | None:
    """Add the melanoma offset of :func:`kdtool.export.sensitivity.floor_offset` to the in-memory model's
    output bias, chosen on the model's out-of-fold logits ``oof`` (from :func:`out_of_fold_logits`; plus
    ``prior_bias``, the prior shift already in the model), on the validation logits ``val_logits``
    (updated in place with the offset), or on the larger of the two (``--floor-on both``).

    Returns:
        The record for the sidecar: the offset's (``chosen_on`` ``val`` or ``oof``; with ``oof``, also
        what validation finds), or ``skipped`` with the reason (``not_held``, from
        :func:`_melanoma_class`, or a model without a logits layer when the target was not asked for);
        None when there is nothing to hold.
    """
    from kdtool.export.bias import add_to_bias, output_dense_layer  # noqa: PLC0415

    if mel is None and not not_held:
        return None
    layer, why = output_dense_layer(model)
    if mel is not None and layer is None:
        if options.sensitivity_required:
            raise InputError(f"{src.path}: --melanoma-sensitivity needs a linear Dense output layer with a bias ({why})")
        not_held = f"no linear logits layer to shift ({why})"
    if mel is None or layer is None:
        return {"target": options.melanoma_sensitivity, "confidence": options.sensitivity_confidence,
                "skipped": not_held}
    rec = floor_offset(val_logits, fd.labels("val"), mel, options.melanoma_sensitivity, options.sensitivity_confidence,
                       None if oof is None else oof + prior_bias, fd.labels("train"), both=options.floor_on == "both")
    where = {} if oof is None else {"oof_file": src.calibration["path"], "oof_folds": src.calibration.get("folds"),
                                    "oof_grouped_by": src.calibration.get("grouped_by")}
    shift = np.zeros(fd.num_classes, dtype=np.float32)
    shift[mel] = rec["offset"]
    add_to_bias(layer, shift)
    val_logits += shift  # the bias is added to every logit: the model's logits now, without a second pass
    y_val = fd.labels("val")
    if oof is not None:
        where["val_detected"] = int(np.sum(np.argmax(val_logits[y_val == mel], axis=1) == mel))
        where["val_images"] = int(np.sum(y_val == mel))
    return {"class": str(fd.class_names[mel]), "chosen_on": rec.pop("chosen_on"), **where, **rec}


def _sensitivity_note(rec: dict) -> str:
    if "skipped" in rec:
        return (f"  note: melanoma sensitivity not held at {100 * rec['target']:g}%: {rec['skipped']}; "
                "no melanoma offset")
    conf = (f"{100 * rec['confidence']:g}% lower bound {100 * rec['lower_bound']:.1f}%" if rec["confidence"]
            else "observed")
    where = "val" if rec["chosen_on"] == "val" else f"out-of-fold ({rec['oof_folds']} folds of train)"
    line = (f"  operating point: {rec['class']} logit {rec['offset']:+.3f}: {where} finds {rec['detected']}/"
            f"{rec['images']} ({100 * rec['sensitivity']:.1f}%, {conf} >= target {100 * rec['target']:g}%; "
            f"{rec['before']}/{rec['images']} without the offset)")
    if rec["chosen_on"] == "oof":
        line += f"; val finds {rec['val_detected']}/{rec['val_images']}"
    return line


def bias_corrected(model, converted: tuple[bytes, dict], representative,
                   convert: Callable[[], tuple[bytes, dict]]) -> tuple[bytes, dict]:
    """``converted`` after :func:`kdtool.export.bias.correct_output_bias`; ``convert()`` converts again.

    Returns:
        ``(tflite_bytes, record)`` with the correction under ``record["bias_correction"]``.
    """
    from kdtool.export.bias import correct_output_bias  # noqa: PLC0415
    from kdtool.export.check import run_tflite  # noqa: PLC0415

    data, record = converted
    data, correction = correct_output_bias(model, data, representative, convert=convert,
                                           keras_logits=lambda x: _keras_logits(model, x), run_tflite=run_tflite)
    return data, {**record, "bias_correction": correction}


def _bias_note(record: dict) -> str:
    correction = record.get("bias_correction")
    if not correction:
        return ""
    if not correction["applied"]:
        return f" (no bias correction: {correction['reason']})"
    before = np.abs(correction["mean_error_before"]).max()
    after = np.abs(correction["mean_error_after"]).max()
    return f", output bias corrected (largest mean logit error {before:.3f} -> {after:.3f})"


def export_models(target: str, options: ExportOptions) -> ExportResult:
    """Export a ``.keras`` file or a run folder's models; print progress and the check table.

    Args:
        target: the ``.keras`` file or run folder.
        options: see :class:`ExportOptions`.

    Returns:
        An :class:`ExportResult`.

    Raises:
        InputError: bad model, data or options (exit 2).
        RuntimeFailure: a conversion or a write failed (exit 1), after the other models were exported.
        QualityGateFailed: some accuracy drop exceeded ``max_drop`` (exit 3); the files are written.
    """
    from kdtool.export.check import (  # noqa: PLC0415
        compare,
        format_recall_table,
        format_table,
        graph_summary,
        io_details,
        run_tflite,
    )

    modes = [m for m in MODE_ORDER if m in options.modes]
    wm = max([8, *map(len, modes)])  # the mode column of the progress lines
    plan = plan_export(target, options.include_teachers)
    for w in plan.warnings:
        _warn(w)
    fd = _load_data(plan, options)
    if "val" not in fd.arrays:
        raise InputError(f"{fd.root}: the check needs the validation split")
    out = Path(options.out) if options.out else plan.default_out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeFailure(f"{out}: cannot create output folder ({exc.strerror or exc})") from None

    representative = None
    if any(m in CALIBRATED_MODES for m in modes):
        make = CALIBRATION_HOOK or representative_dataset
        representative = make(fd, options.representative_samples, REPRESENTATIVE_SEED)
    x_val, y_val = fd.x("val"), fd.labels("val")
    vers = versions()
    teacher_f32 = _teacher_float32_from_files(plan, out)
    rows: list[dict] = []
    errors: list[str] = []
    gate: list[str] = []
    total = len(plan.sources)

    mel, not_held = _melanoma_class(fd, options)
    for i, src in enumerate(plan.sources, 1):
        model = load_keras_model(src.path)
        check_model_matches_data(model, fd, src.path)
        oof = out_of_fold_logits(src, fd, options) if mel is not None else None  # loaded once per model
        majority, majority_bias = _offset_majority(model, fd, options.resolved_majority_offset(), src.path,
                                                   options.majority_required)
        if oof is not None:  # the out-of-fold logits of the model as it now is
            oof = oof + majority_bias
        auto = None
        tau = options.prior_shift
        if tau == "auto":
            tau, auto = _auto_prior_shift(model, fd, options, mel, x_val, oof)
        operating_point, prior_bias = _shift_prior(model, fd, tau, src.path)
        if auto is not None:
            operating_point["prior_shift_auto"] = auto
        if majority is not None:
            operating_point["majority_offset"] = majority
        keras_logits = _keras_logits(model, x_val)
        held = _hold_melanoma(model, fd, options, src, mel, not_held, keras_logits, prior_bias, oof)
        if held is not None:
            operating_point["melanoma_sensitivity"] = held
        role = f" ({src.role})" if src.role else ""
        click.secho(f"[{i}/{total}] {src.name}{role}: {src.path}, {model.count_params():,} params", bold=True)
        if majority is not None and "skipped" in majority:
            click.echo(f"  majority offset: not applied, {majority['skipped']}")
        elif majority is not None:
            click.echo(f"  majority offset: +{majority['offset']:g} to {majority['class']}'s logit "
                       f"({100 * majority['train_share']:.0f}% of train)")
        if auto is not None:
            click.echo(_auto_note(auto))
        if held is not None:
            click.echo(_sensitivity_note(held))
        digest = sha256_file(src.path)
        if src.sha256 and src.sha256 != digest:
            _warn(f"{src.path}: SHA-256 differs from run.json's record (file changed after training)")
        converted: dict[str, tuple[bytes, dict]] = {}
        for mode in modes:
            t0 = time.perf_counter()
            try:
                converted[mode] = convert_model(model, mode, representative, options.io)
            except RuntimeFailure as exc:
                errors.append(exc.format_message())
                click.secho(f"  error: {exc.format_message()}", fg="red", err=True)
                continue
            if mode in CALIBRATED_MODES and options.bias_correction:
                try:
                    converted[mode] = bias_corrected(
                        model, converted[mode], representative,
                        lambda: convert_model(model, mode, representative, options.io))
                except RuntimeFailure as exc:
                    errors.append(exc.format_message())
                    click.secho(f"  error: {exc.format_message()}", fg="red", err=True)
                    del converted[mode]
                    continue
            click.echo(f"  {mode:<{wm}} converted in {time.perf_counter() - t0:5.1f} s, "
                       f"{len(converted[mode][0]) / 1024:8.1f} KB{_bias_note(converted[mode][1])}")
        f32 = len(converted["float32"][0]) if "float32" in converted else None
        if f32 is None and converted:  # for the size ratio only, not written
            try:
                f32 = len(convert_model(model, "float32")[0])
            except RuntimeFailure:
                f32 = None
        if src.role == "teacher" and f32:
            teacher_f32[src.name] = (f32, "converted by this export")
        for mode, (data, conv) in converted.items():
            tensors = io_details(data)
            tflite_logits = run_tflite(data, x_val)
            check = compare(keras_logits, tflite_logits, y_val, fd.class_names, options.max_drop)
            calibrated = mode in CALIBRATED_MODES
            calibration = representative.record() if calibrated and hasattr(representative, "record") else None
            if calibrated and calibration is None:
                calibration = {"split": "custom", "samples": None, "note": "calibration hook (tests only)"}
            sizes = _sizes(src, len(data), f32, teacher_f32)
            tflite_path, json_path = export_paths(out, src.name, mode)
            sidecar = {
                "format": SIDECAR_FORMAT,
                "name": src.name,
                "role": src.role,
                "teacher": src.teacher,
                "mode": mode,
                "file": tflite_path.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_bytes": len(data),
                "params": int(model.count_params()),
                "class_names": list(fd.class_names),
                "input": tensors["input"],
                "output": tensors["output"],
                "preprocess": preprocess_record(tensors["input"], fd.image_shape),
                "postprocess": postprocess_record(tensors["output"]),
                "source": {"file": src.path.name, "path": str(src.path.resolve()), "sha256": digest,
                           "size_bytes": src.path.stat().st_size},
                "converter": {**conv, "calibration": calibration},
                "versions": vers,
                "graph": graph_summary(data),
                "data": {"path": str(fd.root), "fingerprint": fd.fingerprint(), "image_shape": list(fd.image_shape)},
                "sizes": sizes,
                "check": check,
                "operating_point": operating_point,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            write_export(out, src.name, mode, data, sidecar)
            rows.append({**sidecar, "ratio_to_float32": sizes["ratio_to_float32"]})
            line = (f"  {mode:<{wm}} -> {tflite_path}  val acc {100 * check['keras']['accuracy']:.2f}% -> "
                    f"{100 * check['tflite']['accuracy']:.2f}% (drop {check['accuracy_drop']:+.2f} pts, "
                    f"agreement {100 * check['agreement']:.1f}%)")
            click.echo(line)
            if not check["passed"]:
                gate.append(f"{src.name}.{mode} ({check['accuracy_drop']:+.2f})")
                click.secho(
                    f"  !!! QUALITY GATE FAILED: {src.name}.{mode} loses {check['accuracy_drop']:.2f} points of "
                    f"val accuracy (> --max-drop {options.max_drop:g}); the file is written but should not ship"
                    + ("; --quantize int8-floatends keeps the two layers behind most int8 flips (first conv, "
                       "logits) in float32, about 7 KB more" if mode == "int8" else ""),
                    fg="red", bold=True, err=True)
        del model

    if rows:
        click.echo("")
        click.echo(format_table(rows))
        click.echo("")
        click.echo(format_recall_table(rows, fd.class_names))
        _print_sizes(rows)
    click.echo(f"\nwrote {len(rows)} .tflite file(s) with .json sidecars to {out}")
    if errors:
        raise RuntimeFailure(f"{len(errors)} conversion(s) failed: " + "; ".join(errors))
    if gate:
        raise QualityGateFailed(
            f"accuracy drop above --max-drop {options.max_drop:g} points: {', '.join(gate)} "
            "(files written; see the table above)"
        )
    return ExportResult(out, rows, gate, errors)


def _human(nbytes: int) -> str:
    return f"{nbytes / 1024:.1f} KB" if nbytes < 1024 * 1024 else f"{nbytes / 1024 / 1024:.2f} MB"


def _print_sizes(rows: list[dict]) -> None:
    lines = []
    for r in rows:
        s = r["sizes"]
        parts = [f"{r['name']}.{r['mode']}: {_human(s['bytes'])}"]
        if s["float32_bytes"] and r["mode"] != "float32":
            parts.append(f"{s['ratio_to_float32']:.3f}x its float32 ({_human(s['float32_bytes'])})")
        if s["teacher_float32_bytes"]:
            parts.append(f"{s['ratio_to_teacher_float32']:.4f}x {s['teacher']} float32 "
                         f"({_human(s['teacher_float32_bytes'])})")
        elif s["teacher"]:
            parts.append(f"{s['teacher']} float32 size unknown (export with --include-teachers)")
        if len(parts) > 1:
            lines.append(", ".join(parts))
    if lines:
        click.echo("\nsizes:")
        for ln in lines:
            click.echo(f"  {ln}")
