"""``kdtool export``: the click command only; TensorFlow is imported when it runs.

Every default comes from :data:`kdtool.export.options.DEFAULTS`, so the command and the Python API agree.
The options that set the operating point form one group (docs/operating-points.md); the options that
named its old pieces are kept hidden and stop with one line saying what replaced them.
"""

from __future__ import annotations

import click
import cloup

from kdtool.errors import InputError
from kdtool.export.modes import IO_TYPES, MODE_ORDER, parse_modes
from kdtool.export.objectives import FIT_SOURCES, OBJECTIVES
from kdtool.export.options import DEFAULTS, ExportOptions

#: Removed options and what replaced them (each stops the command with this line, exit 2).
REMOVED = {
    "--prior-shift": "--prior-shift was replaced by --operating-point balanced|accuracy, which fits tau "
    "on validation or out-of-fold logits",
    "--majority-offset": "--majority-offset was removed (its constant was tuned on one test split); "
    "--operating-point accuracy restores the train prior",
    "--melanoma-sensitivity": "--melanoma-sensitivity was replaced by --min-recall mel=TARGET",
    "--sensitivity-confidence": "--sensitivity-confidence was replaced by --confidence",
    "--floor-on": "--floor-on was replaced by --fit-on",
}


def _given(name: str) -> bool:
    """Whether the running command's option ``name`` was set by the user.

    Args:
        name: the option's parameter name, e.g. ``"io_type"``.

    Returns:
        True when it came from the command line (or the environment), False for its default.
    """
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _removed(ctx, param, value):  # click callback: (context, parameter, value)
    """Stop with one line naming what replaced a removed option, when it was given.

    Args:
        ctx: click's context (unused).
        param: the removed option.
        value: its value, None when not given.

    Returns:
        None.

    Raises:
        InputError: the option was given (one line, exit 2).
    """
    if value is not None:
        raise InputError(REMOVED[param.opts[0]])


def _removed_option(name: str):
    """A hidden option ``name`` that only says what replaced it (:func:`_removed`)."""
    return cloup.option(name, type=str, default=None, hidden=True, expose_value=False, callback=_removed)


@cloup.command(context_settings={"show_default": True}, align_option_groups=True)
@click.argument("model", metavar="MODEL.keras|RUN_DIR", type=click.Path())
@cloup.option_group(
    "Conversion",
    cloup.option(
        "--quantize",
        "quantize",
        default=",".join(DEFAULTS.modes),
        metavar="|".join((*MODE_ORDER, "all")),
        help="Quantization mode(s): float32, float16, dynamic, int8, int8-floatends (int8 except the first "
        "conv and the logits layer), a comma list, or all.",
    ),
    cloup.option(
        "--representative-samples",
        default=DEFAULTS.representative_samples,
        type=click.IntRange(1),
        help="Number of int8 calibration images, drawn from the train split, stratified by class, fixed seed.",
    ),
    cloup.option(
        "--io",
        "io_type",
        default=DEFAULTS.io,
        type=click.Choice(IO_TYPES),
        help="Input and output tensor type of int8 models.",
    ),
    cloup.option(
        "--bias-correction/--no-bias-correction",
        default=DEFAULTS.bias_correction,
        help="For int8 modes, remove the mean per-class logit error on the calibration images from the "
        "output layer's bias, then convert again.",
    ),
    cloup.option(
        "--include-teachers",
        is_flag=True,
        default=DEFAULTS.include_teachers,
        help="Also export a run's teachers, and compare each student's size with its teacher's float32 file.",
    ),
)
@cloup.option_group(
    "Data, output and check",
    cloup.option(
        "--data",
        default=DEFAULTS.data,
        type=click.Path(file_okay=False),
        show_default="run.json's data path, else FData",
        help="FData folder: int8 calibration draws from its train split and the check runs on its val split.",
    ),
    cloup.option(
        "--out",
        default=DEFAULTS.out,
        type=click.Path(file_okay=False),
        show_default="RUN_DIR/export, or the .keras file's folder",
        help="Output folder.",
    ),
    cloup.option(
        "--max-drop",
        default=DEFAULTS.max_drop,
        type=click.FloatRange(0.0),
        help="Largest acceptable val accuracy drop in points (Keras minus TFLite, the point estimate); above it "
        "the file is still written and the command exits 3.",
    ),
)
@cloup.option_group(
    "Operating point",
    cloup.option(
        "--operating-point",
        "operating_point",
        default=DEFAULTS.operating_point,
        type=click.Choice(OBJECTIVES),
        help="The objective: as-trained adds no bias, balanced and accuracy fit tau in tau * log(train class "
        "frequencies) to that metric on the fit data.",
    ),
    cloup.option(
        "--min-recall",
        "min_recall",
        default=tuple(f"{name}={target:g}" for name, target in DEFAULTS.min_recall),
        multiple=True,
        metavar="CLASS=TARGET",
        help="After the objective, raise CLASS's logit by the smallest offset whose recall lower bound on the "
        "fit data reaches TARGET; repeatable.",
    ),
    cloup.option(
        "--confidence",
        default=DEFAULTS.confidence,
        type=click.FloatRange(0.0, 1.0, max_open=True),
        help="Confidence of the --min-recall lower bound (one-sided Clopper-Pearson); 0 asks only that the "
        "observed recall reach TARGET.",
    ),
    cloup.option(
        "--fit-on",
        "fit_on",
        default=DEFAULTS.fit_on,
        type=click.Choice(FIT_SOURCES),
        help="The fit data: val, oof (out-of-fold train logits from kdtool distill --calibration-folds) or "
        "auto (oof when the run has them, else val).",
    ),
    cloup.option(
        "--temperature/--no-temperature",
        default=DEFAULTS.temperature,
        help="Fit a temperature on the fit data and divide the exported logits by it, which changes "
        "probabilities but no decision.",
    ),
)
@_removed_option("--prior-shift")
@_removed_option("--majority-offset")
@_removed_option("--melanoma-sensitivity")
@_removed_option("--sensitivity-confidence")
@_removed_option("--floor-on")
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
    operating_point,
    min_recall,
    confidence,
    fit_on,
    temperature,
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
    the Keras model (95% bootstrap intervals); the JSON sidecar records
    classes, I/O types, sizes, versions, this check and the operating point.

    \b
    Operating point: the model as trained by default; --operating-point
    balanced|accuracy fits one bias, --min-recall raises a class, both on
    validation or out-of-fold train logits (--fit-on), never on test.

    \b
    Exit codes: 0 ok, 2 bad input, 1 conversion/IO failure,
    3 some accuracy drop > --max-drop (files written anyway).

    \b
    Example:
      kdtool export models                          # int8 students -> models/export/
      kdtool export models/student_alone.keras --quantize all --data FData
      kdtool export models --operating-point accuracy --out models/accuracy
      kdtool export models --min-recall mel=0.8 --out models/screen
      kdtool export models --operating-point balanced --fit-on oof --temperature
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
        operating_point=operating_point,
        min_recall=list(min_recall),
        confidence=confidence,
        fit_on=fit_on,
        temperature=temperature,
    )
    export_models(model, options)
