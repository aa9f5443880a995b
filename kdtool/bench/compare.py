"""``kdtool bench --compare``: merge bench JSON files from several devices, flag the Pareto front, plot it.

A result is on the Pareto front (``pareto`` true) when no other result has at
least the accuracy, at most the size and at most the median latency, and is
better in one; emulated results and those without latency are never on it.
The plot (``pareto.png``) needs matplotlib, imported only here and lazily.

The table shows a metric's 95% interval beside it (``0.652 [0.61, 0.69]``)
where the JSON carries one (``ci95``, ``calibration.ece_ci95``): accuracy,
balanced accuracy and the class of concern's sensitivity, plus the ECE when
records have ``calibration``; below it, each model's operating point.
Results written before kdtool had these keys show the bare numbers.

Example:
    >>> records = load_results(["pi4.json", "x86.json"])            # doctest: +SKIP
    >>> print(compare_table(records))                               # doctest: +SKIP
    >>> plot_pareto(records, pareto_path("reports/", None))         # doctest: +SKIP
    (PosixPath('reports/pareto.png'), 'wrote reports/pareto.png')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from kdtool.bench.report import device_label, fmt_bytes, fmt_number, operating_point_note, render_table
from kdtool.errors import InputError

REQUIRED_KEYS = ("model", "size_bytes", "accuracy", "latency_ms", "device")
MAX_RESULT_BYTES = 64 * 2**20


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


def _median_ms(rec: dict) -> float | None:
    v = (rec.get("latency_ms") or {}).get("median")
    return float(v) if isinstance(v, (int, float)) and not rec.get("emulated") else None


def pareto_flags(records: Sequence[dict]) -> list[bool]:
    """Non-dominated results in (accuracy up, size down, median latency down).

    Args:
        records: bench records.

    Returns:
        One flag per record: True when no other result has at least its accuracy,
        at most its size and at most its median latency, and is better in one.
        Emulated results and results without latency are never on the front and
        take no part in it.

    Example:
        >>> def rec(acc, size, ms):
        ...     return {"accuracy": acc, "size_bytes": size, "latency_ms": {"median": ms}}
        >>> pareto_flags([rec(0.9, 100, 2.0), rec(0.8, 200, 3.0), rec(0.7, 50, 2.5)])
        [True, False, True]
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


def interval_cell(value, interval, ends: str = ".2f") -> str:
    """A metric and, when there is one, its 95% interval, for the compare table.

    Args:
        value: the metric (None: ``-``).
        interval: ``[low, high]``, or None (older results, ``--bootstrap 0``).
        ends: format of the interval's ends (``.3f`` for small numbers such as the ECE).

    Returns:
        ``0.652 [0.61, 0.69]``; ``0.6523`` (four decimals) without an interval, as before intervals existed.

    Example:
        >>> interval_cell(0.6523, [0.611, 0.688]), interval_cell(0.6523, None), interval_cell(None, [0.1, 0.2])
        ('0.652 [0.61, 0.69]', '0.6523', '-')
    """
    if value is None:
        return "-"
    if not interval or None in interval:
        return fmt_number(value, ".4f")
    return f"{fmt_number(value, '.3f')} [{fmt_number(interval[0], ends)}, {fmt_number(interval[1], ends)}]"


def _concern(rec: dict) -> tuple[str | None, float | None, list | None]:
    """(class, sensitivity, its interval) of a record's class of concern; melanoma in older results."""
    ci95 = rec.get("ci95") or {}
    coc = rec.get("class_of_concern")
    if coc:
        return coc.get("name"), coc.get("sensitivity"), ci95.get("class_of_concern_sensitivity")
    if rec.get("melanoma_sensitivity") is not None:
        return "mel", rec["melanoma_sensitivity"], ci95.get("melanoma_sensitivity")
    return None, None, None


def compare_table(records: Sequence[dict]) -> str:
    """One table over results from several devices.

    Args:
        records: merged bench records (:func:`load_results`).

    Returns:
        The table, ``*`` marking the Pareto front (:func:`pareto_flags`), intervals beside the metrics
        whose records carry them (:func:`interval_cell`), an ``ECE`` column when any record has
        ``calibration``; then notes: what the intervals are, each model's operating point, emulated rows.

    Example:
        >>> print(compare_table(load_results(["pi4.json", "x86.json"])))  # doctest: +SKIP
    """
    flags = pareto_flags(records)
    concerns = {c for c in (_concern(r)[0] for r in records) if c}
    one_concern = len(concerns) <= 1
    sens_header = f"{next(iter(concerns), 'mel')}.sens" if one_concern else "concern.sens"
    with_ece = any((r.get("calibration") or {}).get("ece") is not None for r in records)
    header = ["model", "device", "runtime", "thr", "batch", "acc", "bal.acc", sens_header]
    header += (["ECE"] if with_ece else []) + ["size", "median ms", "p90 ms", "img/s", "pareto"]
    rows = []
    for r, front in zip(records, flags, strict=True):
        lat, ci95 = r.get("latency_ms") or {}, r.get("ci95") or {}
        name, sens, sens_ci = _concern(r)
        sens_cell = interval_cell(sens, sens_ci)
        if not one_concern and name:
            sens_cell = f"{name} {sens_cell}"
        row = [
            r["model"], device_label(r), f"{r.get('runtime') or '-'} {r.get('runtime_version') or ''}".strip(),
            fmt_number(r.get("threads"), "d"), fmt_number(r.get("batch"), "d"),
            interval_cell(r.get("accuracy"), ci95.get("accuracy")),
            interval_cell(r.get("balanced_accuracy"), ci95.get("balanced_accuracy")), sens_cell,
        ]  # fmt: skip
        if with_ece:
            cal = r.get("calibration") or {}
            row.append(interval_cell(cal.get("ece"), cal.get("ece_ci95"), ".3f"))
        row += [
            fmt_bytes(r.get("size_bytes")), fmt_number(lat.get("median"), ".3f"), fmt_number(lat.get("p90"), ".3f"),
            fmt_number(r.get("images_per_second"), ".1f"), "*" if front else "",
        ]  # fmt: skip
        rows.append(row)
    lines = [render_table(header, rows, left=3)]
    notes = []
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
        notes.append("[emulated] rows ran under qemu: their latency figures are meaningless and take no part in "
                     "the Pareto front.")  # fmt: skip
    return "\n".join(lines + ([""] + notes if notes else []))


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


def plot_pareto(records: Sequence[dict], path: str | Path) -> tuple[Path | None, str]:
    """Accuracy vs size and accuracy vs median latency, Pareto fronts drawn; matplotlib lazily.

    Args:
        records: merged results.
        path: the PNG to write (its folder is created).

    Returns:
        (path written or None, a one-line note for the user).

    Example:
        >>> plot_pareto(records, "reports/pareto.png")[1]  # doctest: +SKIP
        'wrote reports/pareto.png'
    """
    try:
        # Figure without pyplot: no global backend state, PNG through Agg.
        from matplotlib.figure import Figure  # optional, lazy
        from matplotlib.ticker import FuncFormatter
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
    for r, front in zip(records, flags, strict=True):
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
        uniq = dict(zip(labels, handles, strict=True))
        ax_lat.legend(uniq.values(), uniq.keys(), fontsize=7, loc="lower right")
    for ax in (ax_size, ax_lat):
        ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path, f"wrote {path}"
