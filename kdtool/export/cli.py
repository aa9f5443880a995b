"""``kdtool export``: click command only; TensorFlow is imported when it runs."""

from __future__ import annotations

import click

from kdtool.errors import InputError
from kdtool.export.modes import IO_TYPES, MODE_ORDER, parse_modes
from kdtool.export.sensitivity import DEFAULT_CONFIDENCE, DEFAULT_MAJORITY_OFFSET, DEFAULT_TARGET, FLOOR_SOURCES


def _given(name: str) -> bool:
    """Whether the running command's option ``name`` was set by the user (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _tau(ctx, param, value):  # noqa: ARG001 - click callback
    """--prior-shift: a number in [0, 1] or 'auto'."""
    if value == "auto":
        return "auto"
    try:
        tau = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number in [0, 1] nor 'auto'") from None
    if not 0.0 <= tau <= 1.0:
        raise click.BadParameter(f"{value} is not in the range 0<=x<=1")
    return tau


@click.command(context_settings={"show_default": True})
@click.argument("model", metavar="MODEL.keras|RUN_DIR", type=click.Path())
@click.option("--quantize", "quantize", default="int8", metavar="|".join((*MODE_ORDER, "all")),
              help="Quantization mode(s): float32, float16, dynamic, int8, int8-floatends (int8 except the first "
                   "conv and the logits layer, kept float32: about 7 KB larger, far fewer decisions flipped), a comma "
                   "list, or all.")
@click.option("--data", default=None, type=click.Path(file_okay=False),
              help="FData folder: int8 calibration comes from its train split, the check uses its val split. "
                   "[default: run.json's data path for a run folder, else FData]")
@click.option("--representative-samples", default=300, type=click.IntRange(1),
              help="int8 calibration images, drawn from the TRAIN split, stratified by class, fixed seed.")
@click.option("--io", "io_type", default=None, type=click.Choice(IO_TYPES),
              help="Input/output tensor type of int8 models.  [default: int8]")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder.  [default: RUN_DIR/export, or the .keras file's folder]")
@click.option("--max-drop", default=1.0, type=click.FloatRange(0.0),
              help="Largest acceptable val accuracy drop (percentage points, Keras - TFLite); above it the "
                   "file is still written but the command exits with code 3.")
@click.option("--include-teachers", is_flag=True,
              help="Also export a run's teachers (and report each student's size against its teacher's float32 .tflite).")
@click.option("--bias-correction/--no-bias-correction", default=True,
              help="int8: measure the int8 model's mean logit error per class on the calibration (train) images "
                   "and remove it from the output layer's bias, then convert again (the .keras file is not changed).")
@click.option("--prior-shift", default="0", callback=_tau, metavar="TAU|auto",
              help="Operating point: add TAU * log(train class frequencies) to the output logits of every "
                   "exported file. 0 keeps the model's balanced decisions (best balanced accuracy and "
                   "melanoma sensitivity with --balance logit-adjust); 1 favours frequent classes (best plain "
                   "accuracy). auto: per model, the largest of 0, 0.25, 0.5 whose VALIDATION balanced accuracy, "
                   "with its melanoma floor, stays >= --min-balanced-accuracy. Use another --out to keep both. A TAU "
                   "other than 0 turns export's default --majority-offset off (give one to combine them).")
@click.option("--majority-offset", default=DEFAULT_MAJORITY_OFFSET, type=click.FloatRange(0.0), metavar="C",
              help="Operating point: add C to the output logit of the train split's majority class only (the "
                   "one with more than half of its images: nevi in HAM10000), before --prior-shift and the "
                   "melanoma floor. Unlike --prior-shift it leaves the rare classes' decisions among themselves "
                   "alone, so it buys accuracy for less balanced accuracy. The default, 1.5, with the 0.7 melanoma "
                   "floor and distill's --last-epoch met the accuracy, balanced-accuracy and melanoma targets on "
                   "the mean of fresh seeds, two of three on their own (benchmarks/last_epoch_rule.md; README, "
                   "'Majority offset'). 0: off. The default applies with --prior-shift 0 only (the combination "
                   "the rule measured); with another --prior-shift give C here to combine them. At the default, "
                   "data without a majority class are exported without it; a C given here is required.")
@click.option("--min-balanced-accuracy", default=0.60, type=click.FloatRange(0.0, 1.0),
              help="With --prior-shift auto: the validation balanced accuracy the chosen TAU must keep (if none "
                   "does, TAU is 0).")
@click.option("--melanoma-sensitivity", default=DEFAULT_TARGET, type=click.FloatRange(0.0, 1.0),
              metavar="TARGET",
              help="A floor under melanoma sensitivity, for screening: if the model finds too few of the "
                   "VALIDATION split's melanomas (or of its out-of-fold logits, see --floor-on) for its sensitivity to be at least TARGET at "
                   "--sensitivity-confidence (0.7: of 95 melanomas it must find 75), raise the melanoma logit "
                   "(after --prior-shift) by the least offset that finds enough; a model that finds enough gets "
                   "no melanoma offset. 0: off. At the default, data without a 'mel' class are exported without "
                   "one, and too few validation melanomas with a note; a TARGET given here is required.")
@click.option("--sensitivity-confidence", default=DEFAULT_CONFIDENCE, type=click.FloatRange(0.0, 1.0, max_open=True),
              metavar="C",
              help="Confidence of --melanoma-sensitivity's claim: a one-sided Clopper-Pearson lower bound on "
                   "the validation count. 0 asks only that the observed validation sensitivity reach TARGET.")
@click.option("--floor-on", "floor_on", default="val", type=click.Choice(FLOOR_SOURCES),
              help="Where --melanoma-sensitivity's offset is chosen: val = the validation split; oof = the "
                   "model's out-of-fold logits on the TRAIN split, saved by `kdtool distill --calibration-folds K` "
                   "(7x more melanomas than val, but they describe the recipe, not this model: over three seeds "
                   "they held on test for two and missed on the third, see README); both = the larger of the two "
                   "offsets, so the floor holds on both (not yet measured); auto = oof when the run has them, "
                   "else val.")
def export_command(model, quantize, data, representative_samples, io_type, out, max_drop, include_teachers,
                   bias_correction, prior_shift, majority_offset, min_balanced_accuracy, melanoma_sensitivity,
                   sensitivity_confidence, floor_on):
    """Convert a .keras model, or every student of a `kdtool distill` run, to TFLite and check it.

    \b
    Modes (file: NAME.MODE.tflite plus NAME.MODE.json beside it):
      float32  plain conversion, float32 everywhere (reference, largest)
      float16  float16 weights, float32 compute and I/O (about half size)
      dynamic  int8 weights, float32 activations and I/O (about a quarter)
      int8     full-integer: every op int8, int8 input/output (--io), calibrated
               on --representative-samples TRAIN images; for microcontrollers/NPUs
      int8-floatends  int8 except the first conv and the logits layer (float32,
               float I/O): the two layers behind most of int8's flipped decisions

    Given a run folder, exports its students (baseline, distilled, ensemble);
    teachers only with --include-teachers. Each file is then run with LiteRT's
    interpreter on the VALIDATION split and compared with the Keras model:
    accuracy, balanced accuracy, macro-F1, per-class recall, top-1 agreement.
    The JSON sidecar records class names, input/output dtype and quantization,
    preprocessing, source SHA-256, versions, sizes and this check.

    Size vs the teacher: a student's size is compared with its teacher's float32
    .tflite when one is in --out already or --include-teachers converts it.

    \b
    Exit codes: 0 ok, 2 bad input, 1 conversion/IO failure,
    3 some accuracy drop > --max-drop (files written anyway).

    \b
    Example:
      kdtool export models                          # int8 students -> models/export/
      kdtool export models/student_alone.keras --quantize all --data FData
      kdtool export models --melanoma-sensitivity 0.8 --out models/screen
      kdtool export models --melanoma-sensitivity 0 --majority-offset 0 --out models/as_trained
      kdtool export models --floor-on val --out models/val_floor
      kdtool export models --prior-shift auto --out models/auto
      kdtool export models --majority-offset 0 --melanoma-sensitivity 0.6 --out models/balanced
    """
    from kdtool.export.pipeline import ExportOptions, export_models

    try:
        modes = parse_modes(quantize)
    except ValueError as exc:
        raise InputError(f"--quantize: {exc}") from None
    if io_type is not None and "int8" not in modes:
        raise InputError("--io applies to int8 models only; add int8 to --quantize")
    options = ExportOptions(modes=modes, data=data, representative_samples=representative_samples,
                            io=io_type or "int8", out=out, max_drop=max_drop, include_teachers=include_teachers,
                            bias_correction=bias_correction, prior_shift=prior_shift,
                            majority_offset=majority_offset if _given("majority_offset") else None,
                            majority_required=_given("majority_offset") and bool(majority_offset),
                            min_balanced_accuracy=min_balanced_accuracy,
                            melanoma_sensitivity=melanoma_sensitivity or None,
                            sensitivity_confidence=sensitivity_confidence,
                            sensitivity_required=_given("melanoma_sensitivity") and bool(melanoma_sensitivity),
                            floor_on=floor_on)
    export_models(model, options)
