"""``kdtool export`` end to end: resolve models, set each one's operating point, convert, check, write, report.

The steps live in their own modules: :mod:`~kdtool.export.sources` (what to export),
:mod:`~kdtool.export.operating_point` (the operating point folded into the output layer), :mod:`~kdtool.export.convert`
(TFLite conversion), :mod:`~kdtool.export.bias` (int8 output bias correction),
:mod:`~kdtool.export.check` (LiteRT against Keras), :mod:`~kdtool.export.sidecar` (the JSON beside each
file) and :mod:`~kdtool.export.report` (what is printed). This module runs them in order.

Example:
    >>> result = export_models("models", ExportOptions(modes=["int8"]))   # doctest: +SKIP
    >>> [r["file"] for r in result.rows]                                  # doctest: +SKIP
    ['student_alone.int8.tflite']
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from kdtool.data import FData, load_fdata, sha256_file
from kdtool.errors import InputError, QualityGateFailed, RuntimeFailure
from kdtool.export.bias import correct_output_bias
from kdtool.export.check import compare, format_interval_table, format_recall_table, format_table, run_tflite
from kdtool.export.convert import (
    REPRESENTATIVE_SEED,
    check_model_matches_data,
    convert_model,
    export_paths,
    load_keras_model,
    representative_dataset,
    versions,
    write_export,
)
from kdtool.export.modes import CALIBRATED_MODES, MODE_ORDER
from kdtool.export.operating_point import keras_logits, prepare, set_operating_point
from kdtool.export.options import ExportOptions, ExportResult
from kdtool.export.report import bias_note, point_note, print_sizes, warn
from kdtool.export.sidecar import build_sidecar, size_record, teacher_float32_from_files
from kdtool.export.sources import ExportPlan, ExportSource, plan_export
from kdtool.folds import read_groups

__all__ = ["ExportOptions", "ExportResult", "bias_corrected", "export_models"]


def load_data(plan: ExportPlan, data: str | None) -> FData:
    """The FData to calibrate and check on, matched against the run's record.

    Args:
        plan: the export plan (run.json's data record, if any).
        data: the folder given by the user, or None for run.json's data path (else ``FData``).

    Returns:
        The loaded FData.

    Raises:
        InputError: the data's class names differ from run.json's.
    """
    if data is None:
        data = plan.data_path()
        if data is None:
            recorded = (plan.run.get("data") or {}).get("path")
            if recorded:
                warn(f"run.json's data path {recorded} not found; using FData (pass --data to choose)")
            data = "FData"
    fd = load_fdata(data)
    run_data = plan.run.get("data") or {}
    names = run_data.get("class_names")
    if names is not None and list(names) != list(fd.class_names):
        raise InputError(
            f"{fd.root}: class names {fd.class_names} differ from run.json's {list(names)}; pass the run's --data"
        )
    fp = run_data.get("fingerprint")
    if fp and fp != fd.fingerprint():
        warn(f"{fd.root}: data fingerprint differs from run.json's (not the data the run was trained on?)")
    return fd


def bias_corrected(
    model, converted: tuple[bytes, dict], representative, convert: Callable[[], tuple[bytes, dict]]
) -> tuple[bytes, dict]:
    """``converted`` after :func:`kdtool.export.bias.correct_output_bias`.

    Args:
        model: the Keras model that was converted.
        converted: ``(tflite_bytes, converter_record)`` of a calibrated mode.
        representative: the calibration images it was converted with.
        convert: converts ``model`` again in the same mode.

    Returns:
        ``(tflite_bytes, record)`` with the correction under ``record["bias_correction"]``.

    Example:
        >>> data, record = bias_corrected(model, convert_model(model, "int8", rep), rep,   # doctest: +SKIP
        ...                               lambda: convert_model(model, "int8", rep))
        >>> record["bias_correction"]["applied"]                                           # doctest: +SKIP
        True
    """
    data, record = converted
    data, correction = correct_output_bias(
        model,
        data,
        representative,
        convert=convert,
        keras_logits=lambda x: keras_logits(model, x),
        run_tflite=run_tflite,
    )
    return data, {**record, "bias_correction": correction}


def _convert_modes(
    model, modes: list[str], representative, options: ExportOptions, errors: list[str]
) -> dict[str, tuple[bytes, dict]]:
    """Convert ``model`` in each mode (bias-corrected where asked), printing a line per mode.

    A failed conversion is printed and appended to ``errors``; the other modes go on.
    """
    wm = max([8, *map(len, modes)])
    converted: dict[str, tuple[bytes, dict]] = {}
    for mode in modes:
        t0 = time.perf_counter()
        try:
            result = convert_model(model, mode, representative, options.io)
            if mode in CALIBRATED_MODES and options.bias_correction:
                result = bias_corrected(
                    model,
                    result,
                    representative,
                    lambda mode=mode: convert_model(model, mode, representative, options.io),
                )
        except RuntimeFailure as exc:
            errors.append(exc.format_message())
            click.secho(f"  error: {exc.format_message()}", fg="red", err=True)
            continue
        converted[mode] = result
        click.echo(
            f"  {mode:<{wm}} converted in {time.perf_counter() - t0:5.1f} s, "
            f"{len(result[0]) / 1024:8.1f} KB{bias_note(result[1])}"
        )
    return converted


def _float32_size(model, converted: dict[str, tuple[bytes, dict]]) -> int | None:
    """The model's float32 .tflite size, converted for the ratio only when float32 is not among the modes."""
    if "float32" in converted:
        return len(converted["float32"][0])
    if not converted:
        return None
    try:
        return len(convert_model(model, "float32")[0])
    except RuntimeFailure:
        return None


def _gate_line(name: str, mode: str, check: dict, max_drop: float) -> str:
    hint = (
        "; --quantize int8-floatends keeps the two layers behind most int8 flips (first conv, logits) in float32"
        if mode == "int8"
        else ""
    )
    return (
        f"  !!! QUALITY GATE FAILED: {name}.{mode} loses {check['accuracy_drop']:.2f} points of val accuracy "
        f"(> --max-drop {max_drop:g}); the file is written but should not ship{hint}"
    )


def _interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "[-]"


@dataclass
class _Export:
    """One export's shared inputs and what it has produced so far."""

    fd: FData
    options: ExportOptions
    modes: list[str]
    out: Path
    representative: object | None
    targets: list[tuple[int, float]]
    versions: dict
    teacher_f32: dict[str, tuple[int, str]]
    x_val: np.ndarray
    y_val: np.ndarray
    groups: np.ndarray | None
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gate: list[str] = field(default_factory=list)


def _export_one(src: ExportSource, header: str, run: _Export) -> None:
    """Export one model in every mode: operating point, conversions, check, files (appended to ``run``)."""
    fd, options, modes, representative = run.fd, run.options, run.modes, run.representative
    model = load_keras_model(src.path)
    check_model_matches_data(model, fd, src.path)
    x_val, y_val = run.x_val, run.y_val
    point = set_operating_point(model, fd, options, src, x_val, run.targets)
    click.secho(
        f"{header} {src.name}{f' ({src.role})' if src.role else ''}: {src.path}, {model.count_params():,} params",
        bold=True,
    )
    click.echo(point_note(point.record))
    digest = sha256_file(src.path)
    if src.sha256 and src.sha256 != digest:
        warn(f"{src.path}: SHA-256 differs from run.json's record (file changed after training)")
    converted = _convert_modes(model, modes, representative, options, run.errors)
    f32 = _float32_size(model, converted)
    if src.role == "teacher" and f32:
        run.teacher_f32[src.name] = (f32, "converted by this export")
    wm = max([8, *map(len, modes)])
    for mode, (data, conv) in converted.items():
        check = compare(
            point.val_logits, run_tflite(data, x_val), y_val, fd.class_names, options.max_drop, groups=run.groups
        )
        calibration = representative.record() if mode in CALIBRATED_MODES else None
        sizes = size_record(src, len(data), f32, run.teacher_f32)
        tflite_path, _ = export_paths(run.out, src.name, mode)
        sidecar = build_sidecar(
            src,
            mode,
            data,
            model.count_params(),
            fd,
            conv,
            calibration,
            run.versions,
            sizes,
            check,
            point.record,
            digest,
            tflite_path.name,
        )
        write_export(run.out, src.name, mode, data, sidecar)
        run.rows.append({**sidecar, "ratio_to_float32": sizes["ratio_to_float32"]})
        click.echo(
            f"  {mode:<{wm}} -> {tflite_path}  val acc {100 * check['keras']['accuracy']:.2f}% -> "
            f"{100 * check['tflite']['accuracy']:.2f}% (drop {check['accuracy_drop']:+.2f} pts, 95% "
            f"{_interval(check['ci95']['accuracy_drop'])}; agreement {100 * check['agreement']:.1f}%)"
        )
        if not check["passed"]:
            run.gate.append(f"{src.name}.{mode} ({check['accuracy_drop']:+.2f})")
            click.secho(_gate_line(src.name, mode, check, options.max_drop), fg="red", bold=True, err=True)


def export_models(target: str, options: ExportOptions) -> ExportResult:
    """Export a ``.keras`` file or a run folder's models; print progress and the check table.

    Args:
        target: the ``.keras`` file or run folder.
        options: see :class:`~kdtool.export.options.ExportOptions`.

    Returns:
        An :class:`~kdtool.export.options.ExportResult`.

    Raises:
        InputError: bad model, data or options (exit 2).
        RuntimeFailure: a conversion or a write failed (exit 1), after the other models were exported.
        QualityGateFailed: some accuracy drop exceeded ``max_drop`` (exit 3); the files are written.

    Example:
        >>> export_models("models/student_alone.keras", ExportOptions(data="FData")).out   # doctest: +SKIP
        PosixPath('models')
    """
    modes = [m for m in MODE_ORDER if m in options.modes]
    plan = plan_export(target, options.include_teachers)
    for w in plan.warnings:
        warn(w)
    fd = load_data(plan, options.data)
    if "val" not in fd.arrays:
        raise InputError(f"{fd.root}: the check needs the validation split")
    targets = prepare(fd, options, plan.sources)  # a refused operating point stops before anything is made
    out = Path(options.out) if options.out else plan.default_out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeFailure(f"{out}: cannot create output folder ({exc.strerror or exc})") from None

    y_val = fd.labels("val")
    representative = None
    if any(m in CALIBRATED_MODES for m in modes):
        representative = representative_dataset(fd, options.representative_samples, REPRESENTATIVE_SEED)
    run = _Export(
        fd,
        options,
        modes,
        out,
        representative,
        targets,
        versions(),
        teacher_float32_from_files(plan, out),
        fd.x("val"),
        y_val,
        read_groups(fd.root, "val", len(y_val)),
    )
    for i, src in enumerate(plan.sources, 1):
        _export_one(src, f"[{i}/{len(plan.sources)}]", run)

    rows, errors, gate = run.rows, run.errors, run.gate
    if rows:
        click.echo("")
        click.echo(format_table(rows))
        click.echo("")
        click.echo(format_recall_table(rows, fd.class_names))
        click.echo("")
        click.echo(format_interval_table(rows))
        print_sizes(rows)
    click.echo(f"\nwrote {len(rows)} .tflite file(s) with .json sidecars to {out}")
    if errors:
        raise RuntimeFailure(f"{len(errors)} conversion(s) failed: " + "; ".join(errors))
    if gate:
        raise QualityGateFailed(
            f"accuracy drop above --max-drop {options.max_drop:g} points: {', '.join(gate)} "
            "(files written; see the table above)"
        )
    return ExportResult(out, rows, gate, errors)
