"""``kdtool bench`` and ``kdtool predict``: numpy + click + a TFLite runtime, no TensorFlow.

Nothing here imports TensorFlow, Keras or scikit-learn; the TFLite runtime is
chosen by :func:`kdtool.litert.select_runtime`, matplotlib is imported
only for ``--compare``'s plot and Pillow only for ``predict``.

Example:
    >>> from click.testing import CliRunner
    >>> "--isolate / --no-isolate" in CliRunner().invoke(bench_command, ["--help"]).output
    True
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from kdtool.bench.isolation import DEFAULT_TIMEOUT_S
from kdtool.bench.tta import list_tta_modes
from kdtool.bench.uncertainty import DEFAULT_BOOTSTRAP
from kdtool.errors import InputError

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: ``--tta`` of both commands (:mod:`kdtool.bench.tta`).
_tta_option = click.option(
    "--tta",
    type=click.Choice(list_tta_modes()),
    default="none",
    show_default=True,
    help="Test-time augmentation: average the scores over the image and its mirror (flip, 2 invokes) or its 8 "
    "rotations and mirrors (d4, 8 invokes) before deciding.",
)


@contextmanager
def _tty_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A click progress bar on stderr when it is a terminal; silent otherwise."""
    stream = sys.stderr
    if total <= 0 or not stream.isatty():
        yield lambda n: None
        return
    with click.progressbar(length=total, label=label, file=stream) as bar:
        yield bar.update


def _note(line: str) -> None:
    click.echo(f"note: {line}", err=True)


def expand_models(args: tuple[str, ...]) -> list[Path]:
    """Model arguments -> .tflite files: a folder stands for every ``*.tflite`` in it (sorted)."""
    from kdtool.tflite_model import check_tflite_file

    paths: list[Path] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            found = sorted(q for q in p.glob("*.tflite") if q.is_file())
            if not found:
                raise InputError(f"{p}: no .tflite files in this folder")
            paths += found
        else:
            paths.append(p)
    for p in paths:
        check_tflite_file(p)
    return paths


def check_output_path(path: str | None, flag: str) -> None:
    """Refuse, before any work, an output path whose folder does not exist or that is a folder."""
    if not path or path == "-":
        return
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p}: is a directory, expected a file path")
    if not p.parent.is_dir():
        raise InputError(f"{flag} {p}: folder {p.parent} does not exist")


def _check_plot_path(png: Path, out: str | None) -> None:
    """Refuse, before anything prints, a pareto.png path that cannot be written (a file where a folder goes)."""
    flag = f"--out {out}" if out else f"pareto.png {png}"
    if png.is_dir():
        raise InputError(f"{flag}: {png} is a folder, expected a .png file or a folder to hold pareto.png")
    blocker = next((p for p in (png.parent, *png.parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise InputError(f"{flag}: {blocker} is a file, expected a folder (or a path ending in .png)")


def _compare(files: tuple[str, ...], json_path, csv_path, out, plot: bool) -> None:
    from kdtool.bench import compare, pareto_plot

    png = compare.pareto_path(out, json_path)
    if plot:
        _check_plot_path(png, out)
    records = compare.load_results(files)
    compare.mark_fronts(records)  # pareto_latency, pareto_size, pareto: per device
    _emit(records, compare.compare_table(records), json_path, csv_path)
    if plot:
        _written, note = pareto_plot.plot_pareto(records, png)
        click.echo(note, err=True)


@click.command(context_settings=_CTX)
@click.argument("models", nargs=-1, required=True, metavar="MODEL.tflite|DIR...")
@click.option("--data", default="FData", show_default=True, help="FData folder with X_<split>.npy and y_<split>.npy.")
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default="test",
    show_default=True,
    help="Split to measure accuracy on.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Interpreter threads (num_threads; XNNPACK stays on).",
)
@click.option(
    "--runs", type=click.IntRange(min=0), default=200, show_default=True, help="Timed invokes (0: no latency)."
)
@click.option(
    "--warmup", type=click.IntRange(min=0), default=20, show_default=True, help="Untimed invokes before timing."
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Resize the input tensor to this batch size.",
)
@click.option(
    "--json", "json_path", metavar="PATH", help="Write results as JSON (a list, one object per model); '-' for stdout."
)
@click.option("--csv", "csv_path", metavar="PATH", help="Write results as CSV (one row per model); '-' for stdout.")
@click.option(
    "--reference",
    metavar="MODEL.tflite",
    help="Also report top-1 agreement with this model, and accuracy and balanced accuracy minus its own "
    "with paired-bootstrap intervals.",
)
@click.option(
    "--predictions",
    "predictions_path",
    metavar="PATH",
    help="Write the top-1 predictions on the split as an int64 .npy (one model only).",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Treat the arguments as bench JSON files (from several devices, say): one table, each device's "
    "accuracy frontiers, the best model per latency budget, and a pareto.png.",
)
@click.option(
    "--out",
    metavar="DIR|FILE.png",
    help="--compare: where pareto.png goes (default: beside --json, else the current folder).",
)
@click.option("--plot/--no-plot", default=True, show_default=True, help="--compare: write pareto.png.")
@click.option(
    "--isolate/--no-isolate",
    default=None,
    help="Run each model's interpreter in a child process so that a crash or hang becomes one error line "
    "(default: only models without a kdtool export sidecar whose sha256 matches).",
)
@_tta_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Isolated models: stop one that shows no progress (loading, or between invokes) for this long.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=DEFAULT_BOOTSTRAP,
    show_default=True,
    metavar="N",
    help="Bootstrap resamples for the intervals, over lesions when image_ids.csv names them (0: no intervals).",
)
@click.option(
    "--class-of-concern",
    metavar="NAME",
    help="Class whose sensitivity at fixed specificities is reported (default: mel or melanoma when present).",
)
@click.option(
    "--by",
    metavar="COLUMN",
    help="Also report every metric per value of this image_ids.csv column (age in decades), with intervals, "
    "and name the worst group.",
)
@click.option(
    "--plots",
    "plots_dir",
    metavar="DIR",
    help="Write each model's ROC curves and reliability diagram as PNG files into this folder (needs matplotlib).",
)
def bench_command(models, data, split, threads, runs, warmup, batch, json_path, csv_path, reference,
                  predictions_path, compare, out, plot, isolate, timeout, tta, bootstrap,
                  class_of_concern, by, plots_dir) -> None:  # fmt: skip
    """Accuracy, size and latency of .tflite models, without TensorFlow.

    \b
    For each model: init (load + allocate), --warmup untimed and --runs timed
    invokes (min/median/mean/std/p90/p99 ms, images/s, peak memory), then
    accuracy, balanced accuracy, per-class precision/recall/F1 and the confusion
    matrix on --split, with 95% intervals (--bootstrap), per-class ROC-AUC,
    the class of concern's sensitivity at fixed specificities and the
    calibration (ECE, reliability bins). --by COLUMN repeats the metrics per
    value of an image_ids.csv column (lesion-grouped intervals within each
    group; groups under 30 images are flagged, the worst of the others named);
    --plots DIR draws ROC curves and reliability diagrams. Quantized
    (int8/uint8) inputs and outputs are handled from the model's own
    parameters or its export sidecar JSON. With --tta the
    accuracy pass (a --reference model's too) averages over views, and img/s
    counts every view's invoke.

    \b
    Every file is checked first (TFLite identifier, a well-formed flatbuffer,
    builtin ops only). Models kdtool did not export run isolated (--isolate).

    \b
    Examples:
      kdtool bench models/export --data FData --json pi4.json
      kdtool bench s.int8.tflite --threads 4 --batch 8 --reference s.float32.tflite
      kdtool bench models/export --runs 0 --by localization --plots reports/
      kdtool bench --compare pi4.json pi5.json x86.json --out reports/
    """
    if json_path == "-" and csv_path == "-":
        raise InputError("--json - and --csv - cannot both write to stdout; give one of them a file")
    for flag, value in (("--json", json_path), ("--csv", csv_path), ("--predictions", predictions_path)):
        check_output_path(value, flag)
    if compare:
        for flag, value in (("--reference", reference), ("--predictions", predictions_path),
                            ("--class-of-concern", class_of_concern), ("--by", by),
                            ("--plots", plots_dir)):  # fmt: skip
            if value:
                raise InputError(f"{flag} applies to benchmarking models, not to --compare")
        if tta != "none":
            raise InputError("--tta applies to benchmarking models, not to --compare")
        _compare(models, json_path, csv_path, out, plot)
        return
    if out:
        raise InputError("--out applies to --compare only")
    if plots_dir:  # checked before the bench, not after it: a bad folder costs nothing
        blocker = next((p for p in (Path(plots_dir), *Path(plots_dir).parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise InputError(f"--plots {plots_dir}: {blocker} is a file, expected a folder")

    from kdtool.bench import report
    from kdtool.bench.curves import write_plots
    from kdtool.bench.device import device_facts
    from kdtool.bench.isolation import run_isolated, should_isolate
    from kdtool.bench.run import SplitData, bench_model, model_predictions
    from kdtool.bench.subgroups import format_subgroups
    from kdtool.bench.uncertainty import format_intervals, resolve_class_of_concern
    from kdtool.data import load_fdata
    from kdtool.litert import select_runtime
    from kdtool.tflite_model import check_tflite_file, load_model

    paths = expand_models(models)
    if predictions_path and len(paths) != 1:
        raise InputError(f"--predictions takes one model, but {len(paths)} were given")
    ref_path = check_tflite_file(reference) if reference else None
    fdata = load_fdata(data, splits=(split,))
    split_data = SplitData.from_fdata(fdata, split, by)  # a --by column image_ids.csv lacks: one line, exit 2
    resolve_class_of_concern(class_of_concern, split_data.class_names, str(fdata.root))  # one line before any work
    runtime = select_runtime()
    device = device_facts(runtime)
    notes: list[str] = []

    common = {
        "data": str(fdata.root),
        "split": split,
        "threads": threads,
        "batch": batch,
        "runtime": runtime.name,
        "tta": tta,
        "bootstrap": bootstrap,
        "class_of_concern": class_of_concern,
        "by": by,
    }

    ref = None
    if ref_path is not None:
        if should_isolate(ref_path, isolate):
            result, arrays = run_isolated("predictions", ref_path, common, timeout)
            notes += result.get("notes", [])
            ref_preds = arrays["predictions"]
        else:
            ref_model = load_model(ref_path, runtime, threads=threads, batch=batch)
            notes += ref_model.notes
            _, ref_preds = model_predictions(ref_model, split_data, _tty_progress, tta)
            del ref_model
        ref = (ref_path.name, ref_preds)

    records = []
    for path in paths:
        if should_isolate(path, isolate):
            request = dict(common, runs=runs, warmup=warmup, device=device, reference_name=ref[0] if ref else None)
            result, arrays = run_isolated("bench", path, request, timeout,
                                          inputs={"reference": ref[1]} if ref else None)  # fmt: skip
            rec, preds = result["record"], arrays["predictions"]
            notes += result.get("notes", [])
        else:
            rec, preds = bench_model(path, split_data, runtime, threads=threads, runs=runs, warmup=warmup,
                                     batch=batch, device=device, reference=ref, progress=_tty_progress,
                                     notes=notes, tta=tta, bootstrap=bootstrap,
                                     class_of_concern=class_of_concern)  # fmt: skip
        records.append(rec)
        if predictions_path:
            _save_predictions(predictions_path, preds)
    for line in dict.fromkeys(notes):
        _note(line)
    parts = [report.format_table(records), format_intervals(records), format_subgroups(records)]
    _emit(records, "\n\n".join(p for p in parts if p), json_path, csv_path)
    if plots_dir:
        written, note = write_plots(records, plots_dir)
        click.echo(note or f"plots: {len(written)} PNG files in {plots_dir} (<model>.roc.png, <model>.reliability.png)",
                   err=True)  # fmt: skip


def _save_predictions(path: str, preds: np.ndarray) -> None:
    from kdtool.data import atomic_save_npy

    atomic_save_npy(path, np.asarray(preds, dtype=np.int64))


@click.command(context_settings=_CTX)
@click.argument("model", metavar="MODEL.tflite")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="How many classes to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list, one object per image) instead of text.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Interpreter threads.")
@click.option(
    "--isolate/--no-isolate",
    default=None,
    help="Run the interpreter in a child process so that a crash or hang becomes one error line "
    "(default: only for a model without a kdtool export sidecar whose sha256 matches).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Isolated: stop an interpreter that shows no progress for this long.",
)
@_tta_option
def predict_command(model, images, top, as_json, threads, isolate, timeout, tta) -> None:
    """Classify image files (JPEG, PNG, ...) with a .tflite model.

    \b
    Each image is converted to RGB, resized whole to the model's input size
    with bicubic resampling and scaled by /255, as the training data was.
    --tta averages the model over the image's mirror or its 8 rotations and
    mirrors (lesions have no canonical orientation).
    Class names come from the export sidecar JSON beside the model. A model
    kdtool did not export runs in a child process (--isolate).

    \b
    Example:
      kdtool predict models/export/student.int8.tflite lesion1.jpg lesion2.png --top 3
    """
    import json

    from kdtool.bench.isolation import run_isolated, should_isolate
    from kdtool.bench.predict import classify, format_predictions
    from kdtool.litert import select_runtime
    from kdtool.tflite_model import check_tflite_file, load_model

    path = check_tflite_file(model)
    if should_isolate(path, isolate):
        request = {"images": [str(p) for p in images], "top": top, "threads": threads,
                   "runtime": select_runtime().name, "tta": tta}  # fmt: skip
        result, _ = run_isolated("classify", path, request, timeout)
        for line in result.get("notes", []):
            _note(line)
        results = result["results"]
    else:
        loaded = load_model(path, select_runtime(), threads=threads)
        for line in loaded.notes:
            _note(line)
        results = classify(loaded, images, top=top, tta=tta)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(format_predictions(results))


def _emit(records: list, table: str, json_path, csv_path) -> None:
    """Print the table (to stderr when JSON or CSV goes to stdout) and write --json/--csv."""
    from kdtool.bench import report

    click.echo(table, err="-" in (json_path, csv_path))
    if json_path:
        report.write_json(records, json_path)
    if csv_path:
        report.write_csv(records, csv_path)
