"""Bench results: console table, JSON, CSV, multi-device comparison and the Pareto plot.

JSON (``kdtool bench --json PATH``; ``-`` for stdout) is a list with one object
per model, in the order the models were benchmarked. Keys (schema 1) are
always present; a value that does not apply is ``null``:

=======================  ================================================================
key                      meaning
=======================  ================================================================
schema                   1; raised only when a key changes meaning or goes away
model                    file name of the .tflite (``s.int8.tflite``)
path                     the path as given
mode                     the export sidecar's ``mode`` (float32, float16, dynamic, int8),
                         else the input dtype name
size_bytes               file size in bytes
params                   parameter count from the sidecar's ``params``, else null
input_shape              input tensor shape as run, [batch, H, W, 3]
input_dtype              input tensor dtype (float32, int8, uint8)
output_dtype             output tensor dtype
input_quantization       {scale, zero_point} of an integer input, else null
output_quantization      {scale, zero_point} of an integer output, else null
split                    FData split evaluated (train, val, test)
n_images                 images in that split
class_names              K class names, in label order (from the data folder)
accuracy                 top-1 accuracy, 0..1
balanced_accuracy        mean recall over the classes present in the split
melanoma_sensitivity     recall of the "mel"/"melanoma" class, null without one
melanoma_specificity     fraction of non-melanoma images not called melanoma, null without one
roc_auc_macro            one-vs-rest ROC-AUC from the softmax of the (dequantized) outputs,
                         unweighted mean over the classes present (null if fewer than 2)
ece                      expected calibration error of the top-1 probability (15 bins)
macro                    {precision, recall, f1}: unweighted mean over all K classes
weighted                 {precision, recall, f1}: mean weighted by support
per_class                {class name: {precision, recall, f1, support}}
confusion_matrix         K x K counts, [true][predicted]
tta                      test-time augmentation mode of the accuracy pass (none, flip, d4;
                         null in results written before kdtool had it)
tta_views                invokes per image in that pass (1, 2 or 8)
operating_point          the export sidecar's ``operating_point`` ({prior_shift, with
                         --majority-offset majority_offset: {class, offset, train_share}, and with
                         --melanoma-sensitivity melanoma_sensitivity: {offset, target, ...}}),
                         null without a sidecar or in results written before kdtool had it
mean_confidence          mean top-1 probability
reference                file name of the --reference model, else null
reference_agreement      fraction of images with the same top-1 class as the reference
latency_ms               {min, median, mean, std, p90, p99} of the timed invokes, in ms
                         (values null with --runs 0)
images_per_second        batch * 1000 / (mean latency * tta_views) (null with --runs 0)
init_ms                  interpreter load + input resize + allocate, in ms
peak_rss_mb              peak resident memory of the process so far (Linux VmHWM, else getrusage), MiB
                         (getrusage; includes the loaded split, grows across models)
model_rss_mb             resident memory added while this model ran, MiB (Linux), else null
runs, warmup             timed and untimed invokes
batch                    input batch size
threads                  num_threads given to the interpreter (XNNPACK on)
runtime                  ai_edge_litert, tflite_runtime or tensorflow
runtime_version          its version
device                   {hostname, machine, system, release, cpu_model, cpu_cores,
                         cpu_affinity, python, python_implementation, numpy, runtime,
                         runtime_version, emulated, emulated_reason}
emulated                 true under qemu (KDTOOL_EMULATED=1 or detected): latency
                         figures are then meaningless; accuracy is still valid
kdtool_version           kdtool's version
created                  UTC time of the run, ISO 8601
=======================  ================================================================

``kdtool bench --compare`` adds ``pareto`` (true when no other result has at
least the accuracy, at most the size and at most the median latency, and is
better in one; false for emulated results or those without latency).

CSV (``--csv PATH``) has one row per model: the scalar keys above, the
nested ones flattened (``macro_f1``, ``latency_median_ms``, ``machine``,
``cpu_model``, ``prior_shift``, ``melanoma_offset`` ...), then ``recall_<class>`` and ``f1_<class>`` per class.

Example:
    >>> print(format_table(records))      # doctest: +SKIP
    >>> write_json(records, "bench.json")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Iterable, Sequence

from kdtool.data import atomic_write_text
from kdtool.errors import InputError

REQUIRED_KEYS = ("model", "size_bytes", "accuracy", "latency_ms", "device")
MAX_RESULT_BYTES = 64 * 2**20

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
)  # fmt: skip

EMULATED_NOTE = "EMULATED ({reason}): latency, init and throughput figures are meaningless; accuracy is valid."


# ----------------------------------------------------------------------------- formatting helpers
def fmt_bytes(n: int | None) -> str:
    """``123456`` -> ``120.6 KiB``."""
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def fmt_count(n: int | None) -> str:
    """``128999`` -> ``129.0k``."""
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _f(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """Plain fixed-width table; the first ``left`` columns left-aligned, the rest right-aligned."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def device_label(rec: dict) -> str:
    """Short device name: ``host aarch64 ARM Cortex-A72`` (+ ``[emulated]``)."""
    dev = rec.get("device") or {}
    parts = [dev.get("hostname"), dev.get("machine"), dev.get("cpu_model")]
    label = " ".join(str(p) for p in parts if p)
    return (label or "unknown") + (" [emulated]" if rec.get("emulated") else "")


# ----------------------------------------------------------------------------- bench table
def format_table(records: Sequence[dict]) -> str:
    """The console table of one bench run (one row per model) with the run's facts below."""
    if not records:
        return "(no models)"
    with_ref = any(r.get("reference") for r in records)
    header = ["model", "mode", "size", "params", "acc", "bal.acc", "F1", "mel.sens", "AUC", "median ms", "p90 ms",
              "img/s", "init ms"] + (["ref.agree"] if with_ref else [])  # fmt: skip
    rows = []
    for r in records:
        lat = r.get("latency_ms") or {}
        row = [
            r["model"], r.get("mode") or "-", fmt_bytes(r.get("size_bytes")), fmt_count(r.get("params")),
            _f(r.get("accuracy"), ".4f"), _f(r.get("balanced_accuracy"), ".4f"),
            _f((r.get("macro") or {}).get("f1"), ".4f"), _f(r.get("melanoma_sensitivity"), ".4f"),
            _f(r.get("roc_auc_macro"), ".4f"), _f(lat.get("median"), ".3f"), _f(lat.get("p90"), ".3f"),
            _f(r.get("images_per_second"), ".1f"), _f(r.get("init_ms"), ".1f"),
        ]  # fmt: skip
        if with_ref:
            row.append(_f(r.get("reference_agreement"), ".4f"))
        rows.append(row)
    first = records[0]
    dev = first.get("device") or {}
    lines = [
        render_table(header, rows, left=2),
        "",
        f"split {first.get('split')} ({first.get('n_images')} images); {first.get('runtime')} "
        f"{first.get('runtime_version')}, {first.get('threads')} thread(s), batch {first.get('batch')}, "
        f"{first.get('runs')} timed runs after {first.get('warmup')} warm-up"
        + (f"; TTA {first['tta']} ({first.get('tta_views')} invokes per image: img/s counts them all)"
           if first.get("tta") not in (None, "none") else ""),
        f"device: {dev.get('machine')}, {dev.get('cpu_model')}, {dev.get('cpu_cores')} cores; "
        f"Python {dev.get('python')}, numpy {dev.get('numpy')}; peak RSS {_f(records[-1].get('peak_rss_mb'), '.1f')} MiB",
    ]
    points = [f"{r['model']}: {p}" for r in records if (p := operating_point_note(r.get("operating_point")))]
    if points:
        lines.append("operating points set at export: " + "; ".join(points))
    if any(r.get("emulated") for r in records):
        lines.append(EMULATED_NOTE.format(reason=dev.get("emulated_reason") or "qemu"))
    return "\n".join(lines)


def operating_point_note(point: dict | None) -> str:
    """A sidecar's ``operating_point`` in a few words; empty for the model as trained.

    Example:
        >>> operating_point_note({"prior_shift": 0.5, "melanoma_sensitivity": {
        ...     "class": "mel", "offset": 0.412, "detected": 66, "images": 95, "target": 0.6, "confidence": 0.95}})
        'prior shift 0.5, mel logit +0.412 (val 66/95, >= 60% at 95%)'
        >>> operating_point_note({"prior_shift": 0.0, "melanoma_sensitivity": {"target": 0.6, "skipped": "..."}})
        'melanoma floor 60% not held'
        >>> operating_point_note({"prior_shift": 0.0, "majority_offset": {"class": "nv", "offset": 1.25}})
        'nv logit +1.25'
        >>> operating_point_note({"prior_shift": 0.0, "majority_offset": {"offset": 0.0, "asked": 1.0, "skipped": "..."}})
        'majority offset not applied'
        >>> operating_point_note({"prior_shift": 0.0})
        ''
    """
    point = point or {}
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
        parts.append(f"{held['class']} logit {held['offset']:+.3f} (val {held['detected']}/{held['images']}, "
                     f">= {100 * held['target']:g}% at {100 * held['confidence']:g}%)")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- JSON / CSV
def to_json(records: Sequence[dict]) -> str:
    """The JSON text of a result list (strict JSON: no NaN)."""
    return json.dumps(list(records), indent=2, allow_nan=False) + "\n"


def write_json(records: Sequence[dict], path: str | Path) -> None:
    """Write results as JSON to ``path`` (atomically), or to stdout when ``path`` is ``-``."""
    text = to_json(records)
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(path, text)


def flatten(rec: dict) -> dict:
    """One CSV row: scalar keys, nested ones flattened, per-class recall/F1."""
    row = {k: rec.get(k) for k in CSV_COLUMNS if k in rec and not isinstance(rec.get(k), (dict, list))}
    for avg in ("macro", "weighted"):
        for m in ("precision", "recall", "f1"):
            row[f"{avg}_{m}"] = (rec.get(avg) or {}).get(m)
    for k, v in (rec.get("latency_ms") or {}).items():
        row[f"latency_{k}_ms"] = v
    dev = rec.get("device") or {}
    for k in ("hostname", "machine", "cpu_model", "cpu_cores", "python", "numpy"):
        row[k] = dev.get(k)
    point = rec.get("operating_point") or {}
    row["prior_shift"] = point.get("prior_shift")
    row["majority_offset"] = (point.get("majority_offset") or {}).get("offset")
    row["melanoma_offset"] = (point.get("melanoma_sensitivity") or {}).get("offset")
    for k in ("pareto", "source"):  # added by --compare
        if k in rec:
            row[k] = rec[k]
    for name, m in (rec.get("per_class") or {}).items():
        row[f"recall_{name}"] = m.get("recall")
        row[f"f1_{name}"] = m.get("f1")
    return row


def to_csv(records: Sequence[dict]) -> str:
    """CSV text: the fixed :data:`CSV_COLUMNS`, then per-class columns in order of appearance."""
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
    """Write results as CSV to ``path`` (atomically), or to stdout when ``path`` is ``-``."""
    text = to_csv(records)
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)


# ----------------------------------------------------------------------------- compare
def load_results(paths: Sequence[str | Path]) -> list[dict]:
    """Read and merge bench JSON files (each a list of records, or one record).

    Raises:
        InputError: one line naming the file: missing, too big, not JSON, or
            not kdtool bench results.
    """
    merged: list[dict] = []
    for p in map(Path, paths):
        try:
            if p.stat().st_size > MAX_RESULT_BYTES:
                raise InputError(f"{p}: over {MAX_RESULT_BYTES // 2**20} MiB; not a kdtool bench JSON")
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{p}: file not found") from None
        except IsADirectoryError:
            raise InputError(f"{p}: is a directory, expected a bench JSON file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{p}: cannot read ({exc})") from None
        except ValueError as exc:
            raise InputError(f"{p}: not valid JSON ({exc})") from None
        docs = doc if isinstance(doc, list) else [doc]
        if not docs:
            raise InputError(f"{p}: holds no results")
        for i, rec in enumerate(docs):
            if not isinstance(rec, dict):
                raise InputError(f"{p}: item {i} is not an object; not a kdtool bench JSON")
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise InputError(f"{p}: item {i} lacks {', '.join(missing)}; not a kdtool bench JSON")
            if not isinstance(rec["latency_ms"], dict) or not isinstance(rec["device"], dict):
                raise InputError(f"{p}: item {i} has malformed latency_ms/device; not a kdtool bench JSON")
            merged.append(dict(rec, source=str(p)))
    return merged


def _median_ms(rec: dict) -> float | None:
    v = (rec.get("latency_ms") or {}).get("median")
    return float(v) if isinstance(v, (int, float)) and not rec.get("emulated") else None


def pareto_flags(records: Sequence[dict]) -> list[bool]:
    """Non-dominated results in (accuracy up, size down, median latency down).

    Emulated results and results without latency are never on the front and
    take no part in it.
    """
    pts = []
    for r in records:
        lat, acc, size = _median_ms(r), r.get("accuracy"), r.get("size_bytes")
        pts.append((acc, size, lat) if None not in (lat, acc, size) else None)
    flags = []
    for i, p in enumerate(pts):
        if p is None:
            flags.append(False)
            continue
        dominated = any(
            q is not None and j != i and q[0] >= p[0] and q[1] <= p[1] and q[2] <= p[2] and q != p
            for j, q in enumerate(pts)
        )
        flags.append(not dominated)
    return flags


def compare_table(records: Sequence[dict]) -> str:
    """One table over results from several devices; ``*`` marks the Pareto front."""
    flags = pareto_flags(records)
    header = ["model", "device", "runtime", "thr", "batch", "acc", "bal.acc", "mel.sens", "size", "median ms",
              "p90 ms", "img/s", "pareto"]  # fmt: skip
    rows = []
    for r, front in zip(records, flags):
        lat = r.get("latency_ms") or {}
        rows.append([
            r["model"], device_label(r), f"{r.get('runtime') or '-'} {r.get('runtime_version') or ''}".strip(),
            _f(r.get("threads"), "d"), _f(r.get("batch"), "d"), _f(r.get("accuracy"), ".4f"),
            _f(r.get("balanced_accuracy"), ".4f"), _f(r.get("melanoma_sensitivity"), ".4f"),
            fmt_bytes(r.get("size_bytes")), _f(lat.get("median"), ".3f"), _f(lat.get("p90"), ".3f"),
            _f(r.get("images_per_second"), ".1f"), "*" if front else "",
        ])  # fmt: skip
    lines = [render_table(header, rows, left=3)]
    if any(r.get("emulated") for r in records):
        lines += ["", "[emulated] rows ran under qemu: their latency figures are meaningless and take no part in "
                      "the Pareto front."]  # fmt: skip
    return "\n".join(lines)


def pareto_path(out: str | Path | None, json_path: str | Path | None) -> Path:
    """Where ``--compare`` writes its plot.

    ``--out`` wins (a ``.png`` path is used as is, anything else is a folder
    that gets ``pareto.png``); else beside the ``--json`` file (unless that is
    stdout); else ``pareto.png`` in the current folder.
    """
    if out is not None:
        out = Path(out)
        return out if out.suffix.lower() == ".png" else out / "pareto.png"
    if json_path is not None and str(json_path) != "-":
        return Path(json_path).resolve().parent / "pareto.png"
    return Path.cwd() / "pareto.png"


def plot_pareto(records: Sequence[dict], path: str | Path) -> tuple[Path | None, str]:
    """Accuracy vs size and accuracy vs median latency, Pareto fronts drawn; matplotlib lazily.

    Args:
        records: merged results.
        path: the PNG to write (its folder is created).

    Returns:
        (path written or None, a one-line note for the user).
    """
    try:
        # Figure without pyplot: no global backend state, PNG through Agg.
        from matplotlib.figure import Figure  # noqa: PLC0415 - optional, lazy
        from matplotlib.ticker import FuncFormatter  # noqa: PLC0415
    except ImportError:
        return None, "matplotlib is not installed: no pareto.png (pip install matplotlib)"
    path = Path(path)
    flags = pareto_flags(records)
    devices = list(dict.fromkeys(device_label(r) for r in records))
    colours = {d: f"C{i % 10}" for i, d in enumerate(devices)}
    fig = Figure(figsize=(12, 5), layout="constrained")
    ax_size, ax_lat = fig.subplots(1, 2, sharey=True)

    def front_line(ax, pts):
        # 2-D front: sort by cost, keep points that raise the best accuracy so far.
        best, xs, ys = -1.0, [], []
        for x, y in sorted(pts):
            if y > best:
                best = y
                xs.append(x)
                ys.append(y)
        if xs:
            ax.step(xs, ys, where="post", color="0.4", linestyle="--", linewidth=1, label="Pareto front")

    size_pts, lat_pts, n_emulated, seen = [], [], 0, set()
    for r, front in zip(records, flags):
        acc, size, lat = r.get("accuracy"), r.get("size_bytes"), _median_ms(r)
        if acc is None:
            continue
        name, colour = r["model"], colours[device_label(r)]
        if size and (name, size, acc) not in seen:  # size does not depend on the device: one point per model
            seen.add((name, size, acc))
            ax_size.scatter(size / 1024, acc, color="C0", s=50, zorder=3)
            ax_size.annotate(name, (size / 1024, acc), fontsize=7, xytext=(4, 4), textcoords="offset points")
            size_pts.append((size / 1024, acc))
        if lat is not None:
            ax_lat.scatter(lat, acc, color=colour, edgecolors="black" if front else colour, s=160 if front else 50,
                           zorder=3, marker="*" if front else "o", label=device_label(r))  # fmt: skip
            ax_lat.annotate(name, (lat, acc), fontsize=7, xytext=(4, 4), textcoords="offset points")
            lat_pts.append((lat, acc))
        elif r.get("emulated"):
            n_emulated += 1
    front_line(ax_size, size_pts)
    front_line(ax_lat, lat_pts)
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax_size.set_xscale("log")
    ax_size.xaxis.set_major_formatter(plain)
    ax_size.xaxis.set_minor_formatter(plain)
    ax_size.set_xlabel("model size (KiB, log)")
    ax_size.set_ylabel("accuracy")
    ax_size.set_title("accuracy vs size")
    if lat_pts:
        ax_lat.set_xscale("log")
        ax_lat.xaxis.set_major_formatter(plain)
    ax_lat.set_xlabel("median latency (ms, log)")
    title = "accuracy vs latency (* = Pareto over accuracy, size, latency)"
    if n_emulated:
        title += f"\n{n_emulated} emulated result(s) left out: emulated timings are meaningless"
    ax_lat.set_title(title, fontsize=9)
    handles, labels = ax_lat.get_legend_handles_labels()
    if handles:
        uniq = dict(zip(labels, handles))
        ax_lat.legend(uniq.values(), uniq.keys(), fontsize=7, loc="lower right")
    for ax in (ax_size, ax_lat):
        ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path, f"wrote {path}"
