"""Bench results: the console table, JSON and CSV (the JSON keys are documented here).

JSON (``kdtool bench --json PATH``; ``-`` for stdout) is a list with one object
per model, in the order the models were benchmarked. Keys (schema 1) are
always present; a value that does not apply is ``null``:

============================  ================================================================
key                           meaning
============================  ================================================================
schema                        1; raised only when a key changes meaning or goes away
model                         file name of the .tflite (``s.int8.tflite``)
path                          the path as given
mode                          the export sidecar's ``mode`` (float32, float16, dynamic, int8),
                              else the input dtype name
size_bytes                    file size in bytes
params                        parameter count from the sidecar's ``params``, else null
input_shape                   input tensor shape as run, [batch, H, W, 3]
input_dtype                   input tensor dtype (float32, int8, uint8)
output_dtype                  output tensor dtype
input_quantization            {scale, zero_point} of an integer input, else null
output_quantization           {scale, zero_point} of an integer output, else null
split                         FData split evaluated (train, val, test)
n_images                      images in that split
class_names                   K class names, in label order (from the data folder)
accuracy                      top-1 accuracy, 0..1
balanced_accuracy             mean recall over the classes present in the split
melanoma_sensitivity          recall of the "mel"/"melanoma" class, null without one
melanoma_specificity          fraction of non-melanoma images not called melanoma, null without one
roc_auc_macro                 one-vs-rest ROC-AUC from the softmax of the (dequantized) outputs,
                              unweighted mean over the classes present (null if fewer than 2)
ece                           expected calibration error of the top-1 probability (15 bins)
macro                         {precision, recall, f1}: unweighted mean over all K classes
weighted                      {precision, recall, f1}: mean weighted by support
per_class                     {class name: {precision, recall, f1, support}}
confusion_matrix              K x K counts, [true][predicted]
roc_auc_per_class             {class name: one-vs-rest ROC-AUC, null for a class absent from the split}
class_of_concern              {name, positives, negatives, sensitivity, specificity} of the class of
                              concern (mel/melanoma, or --class-of-concern), null without one
sensitivity_at_specificity    {"0.8", "0.9", "0.95": {sensitivity, threshold, ci95}}: the class
                              of concern's best sensitivity among thresholds on its probability whose
                              specificity reaches that target (threshold null: none does), null without one
ci95                          95% intervals, [low, high] or null: accuracy, balanced_accuracy,
                              macro_f1, roc_auc_macro, roc_auc_per_class {class: [low, high]} (bootstrap);
                              class_of_concern_sensitivity/_specificity and melanoma_sensitivity/_specificity
                              (Clopper-Pearson); null with --bootstrap 0
interval_method               how ci95 was computed, in words; null with --bootstrap 0
bootstrap                     {n, seed, groups ("lesion_id" from image_ids.csv, else "image"), n_groups,
                              dropped {metric: resamples where it was undefined, left out}}; null with
                              --bootstrap 0. Results written before kdtool had these keys lack them.
calibration                   {ece, ece_ci95 [low, high] (bootstrap over the same lesions or images; null
                              with --bootstrap 0), bins {edges, confidence, accuracy, count}: the 15
                              reliability bins of the top-1 probability (confidence, accuracy null in an
                              empty bin)}, for float and quantized models alike
roc_curves                    {class name: {fpr, tpr}}: one-vs-rest ROC curve of each class's probability,
                              (0, 0) to (1, 1), at most 201 points, 6 decimals; null for a class absent
                              from the split
subgroups                     with --by COLUMN: {column, banding ("decades" for age, else null),
                              class_of_concern, min_images (30), groups [{value, n, lesions, small
                              (n < min_images), accuracy, balanced_accuracy, roc_auc_macro, positives,
                              sensitivity, specificity (the class of concern's), ci95 {metric: [low,
                              high]}}], worst {value, n, balanced_accuracy, ci95}: the lowest balanced
                              accuracy among groups that are not small, null when all are}; else null
tta                           test-time augmentation mode of the accuracy pass (none, flip, d4;
                              null in results written before kdtool had it)
tta_views                     invokes per image in that pass (1, 2 or 8)
operating_point               the export sidecar's ``operating_point``: {objective (as-trained, balanced,
                              accuracy), fitted_on (val, oof, null), fit_images, tau, bias [K], temperature,
                              min_recall [{class, target, confidence, offset, detected, images,
                              lower_bound, reached}], summary (one line)}; older sidecars have
                              {prior_shift, majority_offset, melanoma_sensitivity} instead. Null without
                              a sidecar or in results written before kdtool had it
mean_confidence               mean top-1 probability
reference                     file name of the --reference model, else null
reference_agreement           fraction of images with the same top-1 class as the reference
reference_difference          {accuracy, balanced_accuracy: {difference, ci95}}: this model minus the
                              reference on the same images, paired bootstrap (ci95 null with
                              --bootstrap 0); null without --reference
latency_ms                    {min, median, mean, std, p90, p99} of the timed invokes, in ms
                              (values null with --runs 0)
images_per_second             batch * 1000 / (mean latency * tta_views) (null with --runs 0)
init_ms                       interpreter load + input resize + allocate, in ms
peak_rss_mb                   peak resident memory of the process so far (Linux VmHWM, else getrusage), MiB
                              (getrusage; includes the loaded split, grows across models)
model_rss_mb                  resident memory added while this model ran, MiB (Linux), else null
runs, warmup                  timed and untimed invokes
batch                         input batch size
threads                       num_threads given to the interpreter (XNNPACK on)
runtime                       ai_edge_litert, tflite_runtime or tensorflow
runtime_version               its version
device                        {hostname, machine, system, release, cpu_model, cpu_cores,
                              cpu_affinity, python, python_implementation, numpy, runtime,
                              runtime_version, emulated, emulated_reason}
emulated                      true under qemu (KDTOOL_EMULATED=1 or detected): latency
                              figures are then meaningless; accuracy is still valid
kdtool_version                kdtool's version
created                       UTC time of the run, ISO 8601
============================  ================================================================

``kdtool bench --compare`` (:mod:`kdtool.bench.compare`) adds ``pareto_latency`` and ``pareto_size`` (on its
device group's frontier of balanced accuracy against median latency / size; of plain accuracy instead, for every
record, when any merged record lacks ``balanced_accuracy``, as older bench JSONs do) and ``pareto`` (on either, on
a measured device; never for emulated results). A device group is one host, CPU, split, thread count, batch and
TTA mode (:func:`kdtool.bench.compare.device_group`).

CSV (``--csv PATH``) has one row per model: the scalar keys above, the
nested ones flattened (``macro_f1``, ``latency_median_ms``, ``machine``,
``cpu_model``, ``accuracy_ci95_low``, ``sensitivity_at_specificity_0.9``,
``ece_ci95_low``; the operating point as ``operating_objective``,
``operating_fitted_on``, ``operating_tau``, ``operating_temperature``,
``operating_min_recall`` (``mel>=0.7:+1.230``, ``!`` after one whose bound
was not reached; space-separated), or from older sidecars
``prior_shift``, ``majority_offset``, ``melanoma_offset``; with ``--by`` the
column and the worst group as ``by``, ``worst_group``,
``worst_group_balanced_accuracy``, ``worst_group_n``), then
``recall_<class>`` and ``f1_<class>`` per class. The per-group numbers are
in the JSON only.

Example:
    >>> print(format_table(records))      # doctest: +SKIP
    >>> write_json(records, "bench.json")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from kdtool.bench.tables import device_label, fmt_bytes, fmt_count, fmt_number, pct_cell, render_table
from kdtool.data import atomic_write_text

__all__ = ["device_label", "fmt_bytes", "fmt_count", "fmt_number", "pct_cell", "render_table", "format_table",
           "operating_point_note", "to_json", "write_json", "flatten", "to_csv", "write_csv"]  # fmt: skip

#: The metrics whose 95% interval (``ci95``) the CSV carries as ``<metric>_ci95_low`` and ``_high``.
CI_COLUMNS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "melanoma_sensitivity",
              "melanoma_specificity")  # fmt: skip
CSV_COLUMNS = (
    "model", "path", "mode", "size_bytes", "params", "input_dtype", "split", "n_images",
    "accuracy", "balanced_accuracy", "melanoma_sensitivity", "melanoma_specificity", "roc_auc_macro", "ece",
    "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1",
    "mean_confidence", "reference", "reference_agreement", "tta", "tta_views", "prior_shift", "majority_offset",
    "melanoma_offset", "latency_min_ms", "latency_median_ms", "latency_mean_ms", "latency_std_ms", "latency_p90_ms",
    "latency_p99_ms",
    "images_per_second", "init_ms", "peak_rss_mb", "model_rss_mb", "runs", "warmup", "batch", "threads",
    "runtime", "runtime_version", "hostname", "machine", "cpu_model", "cpu_cores", "python", "numpy",
    "emulated", "kdtool_version", "created",
) + tuple(f"{m}_ci95_{end}" for m in CI_COLUMNS for end in ("low", "high")) + (
    "class_of_concern", *(f"sensitivity_at_specificity_{s}" for s in ("0.8", "0.9", "0.95")), "bootstrap_groups",
    "ece_ci95_low", "ece_ci95_high", "operating_objective", "operating_fitted_on", "operating_tau",
    "operating_temperature", "operating_min_recall", "by", "worst_group", "worst_group_balanced_accuracy",
    "worst_group_n",
)  # fmt: skip

EMULATED_NOTE = "EMULATED ({reason}): latency, init and throughput figures are meaningless; accuracy is valid."


# ----------------------------------------------------------------------------- bench table
def format_table(records: Sequence[dict]) -> str:
    """The console table of one bench run.

    Args:
        records: bench records, one per model.

    Returns:
        One row per model, then lines with the run's split, runtime, device and notes.

    Example:
        >>> print(format_table(records))  # doctest: +SKIP
    """
    if not records:
        return "(no models)"
    with_ref = any(r.get("reference") for r in records)
    header = ["model", "mode", "size", "params", "acc", "bal.acc", "F1", "mel.sens", "AUC", "ECE", "median ms",
              "p90 ms", "img/s", "init ms"] + (["ref.agree"] if with_ref else [])  # fmt: skip
    rows = []
    for r in records:
        lat = r.get("latency_ms") or {}
        row = [
            r["model"], r.get("mode") or "-", fmt_bytes(r.get("size_bytes")), fmt_count(r.get("params")),
            fmt_number(r.get("accuracy"), ".4f"), fmt_number(r.get("balanced_accuracy"), ".4f"),
            fmt_number((r.get("macro") or {}).get("f1"), ".4f"), fmt_number(r.get("melanoma_sensitivity"), ".4f"),
            fmt_number(r.get("roc_auc_macro"), ".4f"), fmt_number(r.get("ece"), ".3f"),
            fmt_number(lat.get("median"), ".3f"), fmt_number(lat.get("p90"), ".3f"),
            fmt_number(r.get("images_per_second"), ".1f"), fmt_number(r.get("init_ms"), ".1f"),
        ]  # fmt: skip
        if with_ref:
            row.append(fmt_number(r.get("reference_agreement"), ".4f"))
        rows.append(row)
    first = records[0]
    dev = first.get("device") or {}
    lines = [
        render_table(header, rows, left=2),
        "",
        f"split {first.get('split')} ({first.get('n_images')} images); {first.get('runtime')} "
        f"{first.get('runtime_version')}, {first.get('threads')} thread(s), batch {first.get('batch')}, "
        f"{first.get('runs')} timed runs after {first.get('warmup')} warm-up"
        + (
            f"; TTA {first['tta']} ({first.get('tta_views')} invokes per image: img/s counts them all)"
            if first.get("tta") not in (None, "none")
            else ""
        ),
        f"device: {dev.get('machine')}, {dev.get('cpu_model')}, {dev.get('cpu_cores')} cores; "
        f"Python {dev.get('python')}, numpy {dev.get('numpy')}; "
        f"peak RSS {fmt_number(records[-1].get('peak_rss_mb'), '.1f')} MiB",
    ]
    points = [f"{r['model']}: {p}" for r in records if (p := operating_point_note(r.get("operating_point")))]
    if points:
        lines.append("operating points set at export: " + "; ".join(points))
    if any(r.get("emulated") for r in records):
        lines.append(EMULATED_NOTE.format(reason=dev.get("emulated_reason") or "qemu"))
    return "\n".join(lines)


def operating_point_note(point: dict | None) -> str:
    """A sidecar's ``operating_point`` in a few words.

    A sidecar written since operating points became one concept carries an ``objective`` and its own
    ``summary`` line, printed as it is; older sidecars (``prior_shift``, ``majority_offset``,
    ``melanoma_sensitivity``) are described from their keys.

    Args:
        point: the sidecar's ``operating_point`` (None without one).

    Returns:
        The note; empty for an older sidecar's model as trained.

    Example:
        >>> operating_point_note({"objective": "balanced", "fitted_on": "val", "tau": -0.3,
        ...                       "summary": "balanced (tau -0.30, fitted on val, 852 images)"})
        'balanced (tau -0.30, fitted on val, 852 images)'
        >>> operating_point_note({"objective": "accuracy", "fitted_on": "oof", "fit_images": 5953})
        'accuracy (fitted on oof, 5953 images)'
        >>> operating_point_note({"prior_shift": 0.5, "melanoma_sensitivity": {
        ...     "class": "mel", "offset": 0.412, "detected": 66, "images": 95, "target": 0.6, "confidence": 0.95}})
        'prior shift 0.5, mel logit +0.412 (val 66/95, >= 60% at 95%)'
        >>> operating_point_note({"prior_shift": 0.0, "melanoma_sensitivity": {"target": 0.6, "skipped": "..."}})
        'melanoma floor 60% not held'
        >>> operating_point_note({"prior_shift": 0.0, "majority_offset": {"class": "nv", "offset": 1.25}})
        'nv logit +1.25'
        >>> operating_point_note({"prior_shift": 0.0,
        ...                       "majority_offset": {"offset": 0.0, "asked": 1.0, "skipped": "..."}})
        'majority offset not applied'
        >>> operating_point_note({"prior_shift": 0.0})
        ''
    """
    point = point or {}
    if "objective" in point:
        if point.get("summary"):
            return str(point["summary"])
        fitted = [f"fitted on {point['fitted_on']}"] if point.get("fitted_on") else []
        fitted += [f"{point['fit_images']} images"] if point.get("fit_images") else []
        return str(point["objective"]) + (f" ({', '.join(fitted)})" if fitted else "")
    parts = [f"prior shift {point['prior_shift']:g}"] if point.get("prior_shift") else []
    major = point.get("majority_offset")
    if major and "skipped" in major:
        parts.append("majority offset not applied")
    elif major:
        parts.append(f"{major['class']} logit {major['offset']:+g}")
    held = point.get("melanoma_sensitivity")
    if held and "skipped" in held:
        parts.append(f"melanoma floor {100 * held['target']:g}% not held")
    elif held:
        parts.append(
            f"{held['class']} logit {held['offset']:+.3f} (val {held['detected']}/{held['images']}, "
            f">= {100 * held['target']:g}% at {100 * held['confidence']:g}%)"
        )
    return ", ".join(parts)


# ----------------------------------------------------------------------------- JSON / CSV
def to_json(records: Sequence[dict]) -> str:
    """The JSON text of a result list.

    Args:
        records: bench records.

    Returns:
        Indented strict JSON (no NaN), ending in a newline.

    Example:
        >>> json.loads(to_json([{"model": "s.tflite", "ece": 0.02}]))
        [{'model': 's.tflite', 'ece': 0.02}]
    """
    return json.dumps(list(records), indent=2, allow_nan=False) + "\n"


def write_json(records: Sequence[dict], path: str | Path) -> None:
    """Write results as JSON.

    Args:
        records: bench records.
        path: the file (written atomically), or ``-`` for stdout.

    Example:
        >>> write_json(records, "bench.json")  # doctest: +SKIP
    """
    text = to_json(records)
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(path, text)


def _operating_point_columns(point: dict) -> dict:
    """The CSV columns of a sidecar's operating point (new or old keys; the others empty)."""
    floors = [
        f"{m.get('class')}>={m.get('target'):g}:{m.get('offset'):+.3f}" + ("" if m.get("reached") else "!")
        for m in point.get("min_recall") or []
        if m.get("target") is not None and m.get("offset") is not None
    ]
    return {
        "operating_objective": point.get("objective"),
        "operating_fitted_on": point.get("fitted_on"),
        "operating_tau": point.get("tau"),
        "operating_temperature": point.get("temperature"),
        "operating_min_recall": " ".join(floors) or None,
        "prior_shift": point.get("prior_shift"),
        "majority_offset": (point.get("majority_offset") or {}).get("offset"),
        "melanoma_offset": (point.get("melanoma_sensitivity") or {}).get("offset"),
    }  # fmt: skip


def flatten(rec: dict) -> dict:
    """One CSV row of a record.

    Args:
        rec: a bench record.

    Returns:
        Its scalar keys, the nested ones flattened, then ``recall_<class>`` and ``f1_<class>``.

    Example:
        >>> flatten({"model": "s", "macro": {"f1": 0.5}, "per_class": {"mel": {"recall": 0.7, "f1": 0.6}}})["f1_mel"]
        0.6
    """
    row = {k: rec.get(k) for k in CSV_COLUMNS if k in rec and not isinstance(rec.get(k), (dict, list))}
    for avg in ("macro", "weighted"):
        for m in ("precision", "recall", "f1"):
            row[f"{avg}_{m}"] = (rec.get(avg) or {}).get(m)
    for k, v in (rec.get("latency_ms") or {}).items():
        row[f"latency_{k}_ms"] = v
    dev = rec.get("device") or {}
    for k in ("hostname", "machine", "cpu_model", "cpu_cores", "python", "numpy"):
        row[k] = dev.get(k)
    row.update(_operating_point_columns(rec.get("operating_point") or {}))
    for m in CI_COLUMNS:
        row[f"{m}_ci95_low"], row[f"{m}_ci95_high"] = (rec.get("ci95") or {}).get(m) or (None, None)
    row["class_of_concern"] = (rec.get("class_of_concern") or {}).get("name")
    for s, v in (rec.get("sensitivity_at_specificity") or {}).items():
        row[f"sensitivity_at_specificity_{s}"] = v.get("sensitivity")
    row["bootstrap_groups"] = (rec.get("bootstrap") or {}).get("groups")
    row["ece_ci95_low"], row["ece_ci95_high"] = (rec.get("calibration") or {}).get("ece_ci95") or (None, None)
    sub = rec.get("subgroups") or {}
    worst = sub.get("worst") or {}
    row.update(by=sub.get("column"), worst_group=worst.get("value"),
               worst_group_balanced_accuracy=worst.get("balanced_accuracy"), worst_group_n=worst.get("n"))  # fmt: skip
    for k in ("pareto", "pareto_latency", "pareto_size", "source"):  # added by --compare
        if k in rec:
            row[k] = rec[k]
    for name, m in (rec.get("per_class") or {}).items():
        row[f"recall_{name}"] = m.get("recall")
        row[f"f1_{name}"] = m.get("f1")
    return row


def to_csv(records: Sequence[dict]) -> str:
    """The CSV text of a result list.

    Args:
        records: bench records.

    Returns:
        A header (the fixed :data:`CSV_COLUMNS`, then the per-class columns in order of
        appearance) and one row per record.

    Example:
        >>> to_csv([{"model": "s"}]).splitlines()[1].split(",")[0]
        's'
    """
    rows = [flatten(r) for r in records]
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in CSV_COLUMNS and k not in extra]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS) + extra, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def write_csv(records: Sequence[dict], path: str | Path) -> None:
    """Write results as CSV.

    Args:
        records: bench records.
        path: the file (written atomically), or ``-`` for stdout.

    Example:
        >>> write_csv(records, "bench.csv")  # doctest: +SKIP
    """
    text = to_csv(records)
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)
