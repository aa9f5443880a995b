"""``kdtool bench --compare``: merge bench JSONs from several devices, find each device's frontiers, plot them.

The question it answers is a deployer's: on my device, within my latency budget, which student is best?

Frontiers. Records are grouped by the device they were measured on and how (:func:`device_group`: host,
machine, CPU, the split, the threads, the batch size when it is not 1 and the TTA mode when there is one):
a val bench and a test bench, or 1 and 4 threads, never share a frontier or a budget pick. Within each group
a result is on the *latency frontier* (``pareto_latency``) when no other result of the group has at least
its balanced accuracy and at most its median latency, better in one; on the *size frontier*
(``pareto_size``) likewise against ``size_bytes`` (the int8 or float file). ``pareto`` is true when a
result is on either frontier of a measured device. Balanced accuracy is the frontier metric; when any
record lacks it (bench JSONs older than the key) every frontier uses plain accuracy instead, and the table
says so (:func:`frontier_metric`).

Emulated results (``emulated`` true, e.g. arm64 under qemu) keep their accuracy, which is the device's,
but not their timings. They form their own group, marked ``[emulated]``: its latency frontier ranks the
models against each other only (qemu slows some instructions more than others, so even that order is
approximate); it gets no latency budgets and its results never have ``pareto`` true.

Below the table, per device: the latency frontier in order of latency, the size frontier, and for each
budget of :data:`LATENCY_BUDGETS_MS` the most accurate result whose median latency fits (:func:`best_within`),
with its 95% interval when the record has one, and the split its metric is on. A pick on ``test`` is
reporting only: to choose a model, bench the validation split (``--split val``) and pick there
(docs/evaluation.md); the output says so under such picks. ``pareto.png``
(:func:`kdtool.bench.pareto_plot.plot_pareto`) shows the same: the metric against median latency and
against size, one colour per device, each frontier as a step line, the budgets as faint lines. It needs
matplotlib, imported lazily: without it the plot is one note line.

The table shows a metric's 95% interval beside it (``0.652 [0.61, 0.69]``) where the JSON carries one
(``ci95``, ``calibration.ece_ci95``); results written before kdtool had these keys show the bare numbers.

Example:
    >>> records = load_results(["pi4.json", "x86.json"])            # doctest: +SKIP
    >>> print(compare_table(records))                               # doctest: +SKIP
    >>> mark_fronts(records)                                        # doctest: +SKIP
    'balanced_accuracy'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from kdtool.bench.report import device_label, fmt_bytes, fmt_number, operating_point_note, render_table
from kdtool.bench.tables import concern_of, front_marks, interval_cell
from kdtool.errors import InputError

REQUIRED_KEYS = ("model", "size_bytes", "accuracy", "latency_ms", "device")
MAX_RESULT_BYTES = 64 * 2**20
#: median-latency budgets (ms) for which the best model of each device is named
LATENCY_BUDGETS_MS = (1.0, 5.0, 20.0)
METRIC_NAMES = {"balanced_accuracy": "balanced accuracy", "accuracy": "accuracy"}


def load_results(paths: Sequence[str | Path]) -> list[dict]:
    """Read and merge bench JSON files (each a list of records, or one record).

    Args:
        paths: the JSON files, e.g. one per device.

    Returns:
        All their records in order, each with ``source`` (the file it came from).

    Raises:
        InputError: one line naming the file: missing, too big, not JSON, or
            not kdtool bench results.

    Example:
        >>> [r["source"] for r in load_results(["pi4.json", "x86.json"])]  # doctest: +SKIP
        ['pi4.json', 'x86.json']
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


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _latency(rec: dict) -> float | None:
    """Median latency in ms, emulated or not (None without timings, e.g. ``--runs 0``)."""
    return _num((rec.get("latency_ms") or {}).get("median"))


def _size(rec: dict) -> float | None:
    return _num(rec.get("size_bytes"))


def frontier_metric(records: Sequence[dict]) -> str:
    """The metric every frontier uses: ``balanced_accuracy``, or ``accuracy`` when any record lacks it.

    One metric for all records: a front that mixed balanced accuracy with plain accuracy would rank an
    old result by a number that is higher on imbalanced data.

    Args:
        records: bench records.

    Returns:
        ``"balanced_accuracy"`` or ``"accuracy"``.

    Example:
        >>> frontier_metric([{"balanced_accuracy": 0.6, "accuracy": 0.7}]), frontier_metric([{"accuracy": 0.7}])
        ('balanced_accuracy', 'accuracy')
    """
    return "balanced_accuracy" if all(_num(r.get("balanced_accuracy")) is not None for r in records) else "accuracy"


def device_group(rec: dict) -> str:
    """The device a result was measured on, and how, as the frontiers group it.

    Args:
        rec: a bench record.

    Returns:
        :func:`kdtool.bench.report.device_label` (``[emulated]`` included), then where the record has them
        the split (its metric is on that split's images), ``N threads``, ``batch N`` when the batch is not 1
        (a batch's latency is not one image's) and ``tta MODE`` when the accuracy pass used test-time
        augmentation (``none`` and older records without the key are one group).

    Example:
        >>> device_group({"device": {"hostname": "pi", "machine": "aarch64"}, "split": "val", "threads": 4,
        ...               "batch": 8, "tta": "flip", "emulated": True})
        'pi aarch64 [emulated], val, 4 threads, batch 8, tta flip'
    """
    split, threads, batch, tta = rec.get("split"), rec.get("threads"), rec.get("batch"), rec.get("tta")
    parts = [device_label(rec), str(split) if split else None]
    parts.append(f"{threads} thread{'' if threads == 1 else 's'}" if threads is not None else None)
    parts.append(f"batch {batch}" if batch not in (None, 1) else None)
    parts.append(f"tta {tta}" if tta not in (None, "none") else None)
    return ", ".join(p for p in parts if p)


def _front_2d(points: Sequence[tuple[float, float] | None]) -> list[bool]:
    """Non-dominated (cost down, value up) points; None is never on it; equal points are both on it."""
    return [
        p is not None
        and not any(q is not None and q != p and q[0] <= p[0] and q[1] >= p[1] for q in points)
        for p in points
    ]  # fmt: skip


def front_flags(records: Sequence[dict], against: str, metric: str | None = None) -> list[bool]:
    """Each record's place on its device's frontier of ``metric`` against latency or size.

    Args:
        records: bench records, from any number of devices (:func:`device_group`).
        against: ``"latency"`` (median ms) or ``"size"`` (``size_bytes``).
        metric: the record key to maximise; default :func:`frontier_metric`.

    Returns:
        One flag per record: True when no other record of the same device has at least its metric and
        at most its cost, and is better in one. Records without the metric or the cost are never on it.
        Emulated devices get flags too (their own group; the latency order is relative only).

    Example:
        >>> def rec(host, bacc, ms, size=100):
        ...     return {"device": {"hostname": host}, "balanced_accuracy": bacc, "size_bytes": size,
        ...             "latency_ms": {"median": ms}}
        >>> recs = [rec("pi", 0.7, 8.0), rec("pi", 0.6, 2.0), rec("pc", 0.7, 1.0), rec("pc", 0.6, 2.0)]
        >>> front_flags(recs, "latency")  # the 0.6 model is on the Pi's frontier, not the PC's
        [True, True, True, False]
    """
    if against not in ("latency", "size"):
        raise ValueError(f"against must be 'latency' or 'size', not {against!r}")
    metric = metric or frontier_metric(records)
    cost = _latency if against == "latency" else _size
    flags = [False] * len(records)
    for idx in by_group(records).values():
        pts = [(c, v) if None not in (c := cost(records[i]), v := _num(records[i].get(metric))) else None for i in idx]
        for i, on in zip(idx, _front_2d(pts), strict=True):
            flags[i] = on
    return flags


def pareto_flags(records: Sequence[dict]) -> list[bool]:
    """``pareto``: on its device's latency or size frontier (:func:`front_flags`), and not emulated.

    Args:
        records: bench records.

    Returns:
        One flag per record: the results worth considering on a measured device.

    Example:
        >>> def rec(acc, size, ms):
        ...     return {"accuracy": acc, "size_bytes": size, "latency_ms": {"median": ms}}
        >>> pareto_flags([rec(0.9, 100, 2.0), rec(0.8, 200, 3.0), rec(0.7, 50, 2.5)])
        [True, False, True]
    """
    lat, size = front_flags(records, "latency"), front_flags(records, "size")
    return [(a or b) and not r.get("emulated") for r, a, b in zip(records, lat, size, strict=True)]


def mark_fronts(records: Sequence[dict]) -> str:
    """Add ``pareto_latency``, ``pareto_size`` and ``pareto`` to each record, in place.

    Args:
        records: merged bench records (:func:`load_results`).

    Returns:
        The metric the frontiers used (:func:`frontier_metric`).

    Example:
        >>> recs = [{"accuracy": 0.8, "size_bytes": 10, "latency_ms": {"median": 1.0}}]
        >>> mark_fronts(recs), recs[0]["pareto_latency"], recs[0]["pareto"]
        ('accuracy', True, True)
    """
    metric = frontier_metric(records)
    lat, size = front_flags(records, "latency", metric), front_flags(records, "size", metric)
    for r, a, b in zip(records, lat, size, strict=True):
        r.update(pareto_latency=a, pareto_size=b, pareto=(a or b) and not r.get("emulated"))
    return metric


def best_within(records: Sequence[dict], budget_ms: float, metric: str | None = None) -> dict | None:
    """The most accurate result of one device whose median latency fits a budget.

    Ties go to the lower median latency, then the smaller file, then the model name, so the pick is
    always on the latency frontier.

    Args:
        records: results of ONE device (:func:`device_group`).
        budget_ms: the budget; a median equal to it fits.
        metric: the record key to maximise; default :func:`frontier_metric`.

    Returns:
        That record, or None when none fits (or none has a latency and the metric).

    Example:
        >>> def rec(m, bacc, ms):
        ...     return {"model": m, "balanced_accuracy": bacc, "size_bytes": 1, "latency_ms": {"median": ms}}
        >>> recs = [rec("a", 0.6, 0.8), rec("b", 0.7, 4.0), rec("c", 0.7, 3.0)]
        >>> best_within(recs, 1.0)["model"], best_within(recs, 5.0)["model"], best_within(recs, 0.5)
        ('a', 'c', None)
    """
    metric = metric or frontier_metric(records)
    timed = [(r, _latency(r)) for r in records if _num(r.get(metric)) is not None]
    fits = [r for r, ms in timed if ms is not None and ms <= budget_ms]
    if not fits:
        return None
    return min(fits, key=lambda r: (-_num(r[metric]), _latency(r), _size(r) or 0.0, str(r.get("model"))))


def by_group(records: Sequence[dict]) -> dict[str, list[int]]:
    """Record indices per :func:`device_group`, in order of first appearance.

    Args:
        records: bench records, from any number of devices.

    Returns:
        ``{group label: [indices into records]}``, the groups and their indices in the records' order.

    Example:
        >>> by_group([{"device": {"hostname": "pi"}}, {"device": {"hostname": "pc"}}, {"device": {"hostname": "pi"}}])
        {'pi': [0, 2], 'pc': [1]}
    """
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(device_group(r), []).append(i)
    return groups


def frontier_lines(records: Sequence[dict], budgets: Sequence[float] = LATENCY_BUDGETS_MS) -> list[str]:
    """Per device: its latency frontier in order of latency, its size frontier, and the pick per budget.

    Args:
        records: merged bench records.
        budgets: median-latency budgets in ms.

    Returns:
        Text lines: a heading, then per device (:func:`device_group`) its name, ``by latency:`` (one line
        naming the frontier, fastest first), ``by size:``, and one line per budget naming the split of the
        pick's metric (``none fits`` when nothing does; emulated devices get no budgets); under picks on the
        test split, a note that choosing a model belongs on a validation bench.

    Example:
        >>> recs = [{"model": "a", "accuracy": 0.7, "balanced_accuracy": 0.6, "size_bytes": 2048,
        ...          "latency_ms": {"median": 3.0}, "device": {"hostname": "pi"}, "split": "val"}]
        >>> print("\\n".join(frontier_lines(recs, budgets=(1, 5))))
        frontiers of balanced accuracy, per device (fastest or smallest first), and the pick per latency budget:
        pi, val
          by latency: a (0.600, 3.00 ms)
          by size: a (0.600, 2.0 KiB)
          <= 1 ms: none fits (fastest: a, 3.00 ms)
          <= 5 ms: a, balanced accuracy on val 0.6000, median 3.00 ms, 2.0 KiB
    """
    metric = frontier_metric(records)
    name = METRIC_NAMES[metric]
    lat, size = front_flags(records, "latency", metric), front_flags(records, "size", metric)
    lines = [f"frontiers of {name}, per device (fastest or smallest first), and the pick per latency budget:"]
    for group, idx in by_group(records).items():
        recs = [records[i] for i in idx]
        emulated = any(r.get("emulated") for r in recs)
        lines.append(group + (" (latency relative only)" if emulated else ""))
        on_lat = sorted((records[i] for i in idx if lat[i]), key=lambda r: (_latency(r), -_num(r[metric])))
        on_size = sorted((records[i] for i in idx if size[i]), key=lambda r: (_size(r), -_num(r[metric])))
        lat_items = [f"{r['model']} ({r[metric]:.3f}, {_latency(r):.2f} ms)" for r in on_lat]
        lines.append("  by latency: " + (" < ".join(lat_items) or "no median latency measured"))
        size_items = [f"{r['model']} ({r[metric]:.3f}, {fmt_bytes(r['size_bytes'])})" for r in on_size]
        lines.append("  by size: " + (" < ".join(size_items) or "-"))
        if emulated:
            lines.append("  budgets: none picked, emulated latency is not the device's")
            continue
        if not on_lat:
            continue
        fastest, split = min(on_lat, key=_latency), recs[0].get("split")  # one split per group
        picked = False
        for b in budgets:
            best = best_within(recs, b, metric)
            if best is None:
                lines.append(f"  <= {b:g} ms: none fits (fastest: {fastest['model']}, {_latency(fastest):.2f} ms)")
                continue
            picked, cell = True, interval_cell(best[metric], (best.get("ci95") or {}).get(metric))
            lines.append(f"  <= {b:g} ms: {best['model']}, {name}{f' on {split}' if split else ''} {cell}, "
                         f"median {_latency(best):.2f} ms, {fmt_bytes(best.get('size_bytes'))}")  # fmt: skip
        if picked and split == "test":
            lines.append("  (test picks are reporting only: to choose a model, pick on a validation bench, --split "
                         "val; choosing on test breaks the evaluation protocol, docs/evaluation.md)")  # fmt: skip
    return lines


def compare_table(records: Sequence[dict], budgets: Sequence[float] = LATENCY_BUDGETS_MS) -> str:
    """One table over results from several devices, then each device's frontiers and budget picks.

    Args:
        records: merged bench records (:func:`load_results`).
        budgets: median-latency budgets in ms for :func:`frontier_lines`.

    Returns:
        The table: intervals beside the metrics whose records carry them (:func:`interval_cell`), an
        ``ECE`` column when any record has ``calibration``, and a ``pareto`` column marking each result's
        frontiers on its device (``L`` latency, ``S`` size, ``LS`` both; :func:`front_flags`); then notes
        (the frontier metric, what the intervals are, operating points, emulated rows), then
        :func:`frontier_lines`.

    Example:
        >>> print(compare_table(load_results(["pi4.json", "x86.json"])))  # doctest: +SKIP
    """
    metric = frontier_metric(records)
    lat_front, size_front = front_flags(records, "latency", metric), front_flags(records, "size", metric)
    concerns = {c for c in (concern_of(r)[0] for r in records) if c}
    one_concern = len(concerns) <= 1
    sens_header = f"{next(iter(concerns), 'mel')}.sens" if one_concern else "concern.sens"
    with_ece = any((r.get("calibration") or {}).get("ece") is not None for r in records)
    header = ["model", "device", "runtime", "thr", "batch", "acc", "bal.acc", sens_header]
    header += (["ECE"] if with_ece else []) + ["size", "median ms", "p90 ms", "img/s"]
    header.append("pareto" if metric == "balanced_accuracy" else "pareto(acc)")
    rows = []
    for r, on_lat, on_size in zip(records, lat_front, size_front, strict=True):
        lat, ci95 = r.get("latency_ms") or {}, r.get("ci95") or {}
        name, sens, sens_ci = concern_of(r)
        sens_cell = interval_cell(sens, sens_ci)
        if not one_concern and name:
            sens_cell = f"{name} {sens_cell}"
        row = [
            r["model"], device_group(r), f"{r.get('runtime') or '-'} {r.get('runtime_version') or ''}".strip(),
            fmt_number(r.get("threads"), "d"), fmt_number(r.get("batch"), "d"),
            interval_cell(r.get("accuracy"), ci95.get("accuracy")),
            interval_cell(r.get("balanced_accuracy"), ci95.get("balanced_accuracy")), sens_cell,
        ]  # fmt: skip
        if with_ece:
            cal = r.get("calibration") or {}
            row.append(interval_cell(cal.get("ece"), cal.get("ece_ci95"), ".3f"))
        row += [
            fmt_bytes(r.get("size_bytes")), fmt_number(lat.get("median"), ".3f"), fmt_number(lat.get("p90"), ".3f"),
            fmt_number(r.get("images_per_second"), ".1f"), front_marks(on_lat, on_size, bool(r.get("emulated"))),
        ]  # fmt: skip
        rows.append(row)
    lines = [render_table(header, rows, left=3)]
    notes = [f"pareto: L on its device's frontier of {METRIC_NAMES[metric]} against median latency, S against size"
             + ("; l, s: the same on an emulated device (its own group, latency relative only)"
                if any(r.get("emulated") for r in records) else "")]  # fmt: skip
    if metric == "accuracy":
        lacking = sum(_num(r.get("balanced_accuracy")) is None for r in records)
        notes.append(f"frontiers use accuracy, not balanced accuracy: {lacking} result(s) lack balanced accuracy "
                     "(bench JSONs from an older kdtool; bench again for balanced accuracy)")  # fmt: skip
    if any(r.get("ci95") for r in records):
        groups = {(r.get("bootstrap") or {}).get("groups") for r in records if r.get("ci95")}
        unit = "lesions" if groups == {"lesion_id"} else "images" if groups == {"image"} else "images or lesions"
        notes.append(f"[low, high]: 95% intervals over the split's {unit} (bootstrap; sensitivity Clopper-Pearson) "
                     "where a result carries them")  # fmt: skip
    points = dict.fromkeys(
        f"{r['model']}: {p}" for r in records if (p := operating_point_note(r.get("operating_point")))
    )
    if points:
        notes.append("operating points set at export: " + "; ".join(points))
    if any(r.get("emulated") for r in records):
        notes.append("[emulated] rows ran under qemu: their latency is not the device's; they form their own device, "
                     "whose latency frontier ranks its models relative to each other only (no budgets)")  # fmt: skip
    return "\n".join(lines + [""] + notes + [""] + frontier_lines(records, budgets))


def pareto_path(out: str | Path | None, json_path: str | Path | None) -> Path:
    """Where ``--compare`` writes its plot.

    ``--out`` wins (a ``.png`` path is used as is, anything else is a folder
    that gets ``pareto.png``); else beside the ``--json`` file (unless that is
    stdout); else ``pareto.png`` in the current folder.

    Args:
        out: ``--out``, or None.
        json_path: ``--json``, or None.

    Returns:
        The PNG path.

    Example:
        >>> pareto_path("reports/front.png", None).name, pareto_path("reports", None).name
        ('front.png', 'pareto.png')
    """
    if out is not None:
        out = Path(out)
        return out if out.suffix.lower() == ".png" else out / "pareto.png"
    if json_path is not None and str(json_path) != "-":
        return Path(json_path).resolve().parent / "pareto.png"
    return Path.cwd() / "pareto.png"
