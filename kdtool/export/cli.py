"""``kdtool export``: the click command only; TensorFlow is imported when it runs.

Every default comes from :data:`kdtool.export.options.DEFAULTS` (or, for the majority offset, from
:data:`kdtool.export.sensitivity.DEFAULT_MAJORITY_OFFSET`), so the command and the Python API agree.
"""

from __future__ import annotations

import click

from kdtool.errors import InputError
from kdtool.export.modes import IO_TYPES, MODE_ORDER, parse_modes
from kdtool.export.options import DEFAULTS, ExportOptions
from kdtool.export.sensitivity import DEFAULT_MAJORITY_OFFSET, FLOOR_SOURCES


def _given(name: str) -> bool:
    """Whether the running command's option ``name`` was set by the user.

    Args:
        name: the option's parameter name, e.g. ``"majority_offset"``.

    Returns:
        True when it came from the command line (or the environment), False for its default.
    """
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _tau(ctx, param, value):  # click callback: (context, parameter, value)
    """Parse --prior-shift: a number in [0, 1] (``auto`` was removed: say so rather than 'not a number').

    Args:
        ctx, param: click's context and parameter (unused).
        value: the text given.

    Returns:
        TAU as a float.

    Raises:
        click.BadParameter: ``auto``, not a number, or outside [0, 1] (one error line, exit 2).
    """
    if value.strip().lower() == "auto":
        raise click.BadParameter("'auto' is no longer available; give TAU, a number in [0, 1]")
    try:
        tau = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number in [0, 1]") from None
    if not 0.0 <= tau <= 1.0:
        raise click.BadParameter(f"{value} is not in the range 0<=x<=1")
    return tau


@click.command(context_settings={"show_default": True})
@click.argument("model", metavar="MODEL.keras|RUN_DIR", type=click.Path())
@click.option(
    "--quantize",
    "quantize",
    default=",".join(DEFAULTS.modes),
    metavar="|".join((*MODE_ORDER, "all")),
    help="Quantization mode(s): float32, float16, dynamic, int8, int8-floatends (int8 except the first "
    "conv and the logits layer), a comma list, or all.",
)
@click.option(
    "--data",
    default=DEFAULTS.data,
    type=click.Path(file_okay=False),
    show_default="run.json's data path, else FData",
    help="FData folder: int8 calibration draws from its train split and the check runs on its val split.",
)
@click.option(
    "--representative-samples",
    default=DEFAULTS.representative_samples,
    type=click.IntRange(1),
    help="Number of int8 calibration images, drawn from the train split, stratified by class, fixed seed.",
)
@click.option(
    "--io",
    "io_type",
    default=DEFAULTS.io,
    type=click.Choice(IO_TYPES),
    help="Input and output tensor type of int8 models.",
)
@click.option(
    "--out",
    default=DEFAULTS.out,
    type=click.Path(file_okay=False),
    show_default="RUN_DIR/export, or the .keras file's folder",
    help="Output folder.",
)
@click.option(
    "--max-drop",
    default=DEFAULTS.max_drop,
    type=click.FloatRange(0.0),
    help="Largest acceptable val accuracy drop in points (Keras minus TFLite); above it the file is "
    "still written and the command exits 3.",
)
@click.option(
    "--include-teachers",
    is_flag=True,
    default=DEFAULTS.include_teachers,
    help="Also export a run's teachers, and compare each student's size with its teacher's float32 file.",
)
@click.option(
    "--bias-correction/--no-bias-correction",
    default=DEFAULTS.bias_correction,
    help="For int8 modes, remove the mean per-class logit error on the calibration images from the "
    "output layer's bias, then convert again.",
)
@click.option(
    "--prior-shift",
    default=DEFAULTS.prior_shift,
    type=str,
    callback=_tau,
    metavar="TAU",
    help="Add TAU * log(train class frequencies) to every exported file's logits: 0 keeps the model's "
    "own decisions, 1 favours frequent classes.",
)
@click.option(
    "--majority-offset",
    default=DEFAULT_MAJORITY_OFFSET,
    type=click.FloatRange(0.0),
    metavar="C",
    help="Add C to the logit of the train split's majority class (more than half of its images) "
    "before the prior shift; the default applies with --prior-shift 0 only, and 0 turns it off.",
)
@click.option(
    "--melanoma-sensitivity",
    default=DEFAULTS.melanoma_sensitivity,
    type=click.FloatRange(0.0, 1.0),
    metavar="TARGET",
    help="Raise the melanoma logit by the least offset that makes melanoma sensitivity reach TARGET "
    "at --sensitivity-confidence; 0 turns it off.",
)
@click.option(
    "--sensitivity-confidence",
    default=DEFAULTS.sensitivity_confidence,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    metavar="C",
    help="Confidence of the --melanoma-sensitivity claim (a one-sided Clopper-Pearson lower bound); "
    "0 asks only that the observed sensitivity reach TARGET.",
)
@click.option(
    "--floor-on",
    "floor_on",
    default=DEFAULTS.floor_on,
    type=click.Choice(FLOOR_SOURCES),
    help="Where the melanoma offset is chosen: val (the validation split), oof (out-of-fold logits "
    "from kdtool distill --calibration-folds) or auto (oof when the run has them).",
)
def export_command(
    model,
    quantize,
    data,
    representative_samples,
    io_type,
    out,
    max_drop,
    include_teachers,
    bias_correction,
    prior_shift,
    majority_offset,
    melanoma_sensitivity,
    sensitivity_confidence,
    floor_on,
):
    """Convert a .keras model, or every student of a `kdtool distill` run, to TFLite and check it.

    \b
    Modes (file: NAME.MODE.tflite plus NAME.MODE.json beside it):
      float32  plain conversion, float32 everywhere (reference, largest)
      float16  float16 weights, float32 compute and I/O
      dynamic  int8 weights, float32 activations and I/O
      int8     full-integer: every op int8, int8 input/output (--io), calibrated
               on --representative-samples TRAIN images; for microcontrollers/NPUs
      int8-floatends  int8 except the first conv and the logits layer (float32,
               float I/O)

    \b
    A run folder exports its students (teachers with --include-teachers).
    Each file runs with LiteRT on the validation split and is compared with
    the Keras model; the JSON sidecar records classes, I/O types, sizes,
    versions, this check and the operating point.

    \b
    Exit codes: 0 ok, 2 bad input, 1 conversion/IO failure,
    3 some accuracy drop > --max-drop (files written anyway).

    \b
    Example:
      kdtool export models                          # int8 students -> models/export/
      kdtool export models/student_alone.keras --quantize all --data FData
      kdtool export models --melanoma-sensitivity 0.8 --out models/screen
      kdtool export models --melanoma-sensitivity 0 --majority-offset 0 --out models/as_trained
      kdtool export models --majority-offset 0 --melanoma-sensitivity 0.6 --out models/balanced
    """
    from kdtool.export.pipeline import export_models

    try:
        modes = parse_modes(quantize)
    except ValueError as exc:
        raise InputError(f"--quantize: {exc}") from None
    if _given("io_type") and "int8" not in modes:
        raise InputError("--io applies to int8 models only; add int8 to --quantize")
    options = ExportOptions(
        modes=modes,
        data=data,
        representative_samples=representative_samples,
        io=io_type,
        out=out,
        max_drop=max_drop,
        include_teachers=include_teachers,
        bias_correction=bias_correction,
        prior_shift=prior_shift,
        majority_offset=majority_offset if _given("majority_offset") else None,
        majority_required=_given("majority_offset") and bool(majority_offset),
        melanoma_sensitivity=melanoma_sensitivity or None,
        sensitivity_confidence=sensitivity_confidence,
        sensitivity_required=_given("melanoma_sensitivity") and bool(melanoma_sensitivity),
        floor_on=floor_on,
    )
    export_models(model, options)
