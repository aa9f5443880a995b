"""Drawing ``pareto.png`` for ``kdtool bench --compare``: each device's accuracy frontiers.

Two panels share the y axis (balanced accuracy, or accuracy for older JSONs): against median latency (ms,
log) and against file size (KiB, log). Each device has its own colour and marker; emulated devices are
drawn hollow and labelled ``latency relative only``. A device's frontier is a step line through its
frontier points (the best metric reachable at that cost or less); every point is labelled with its model
name (shortened) and carries an error bar where the record has a 95% interval; the latency budgets are
faint vertical lines. The frontiers are :mod:`kdtool.bench.compare`'s (:func:`plot_groups`); this module
only draws. matplotlib is imported lazily (the device install has none) and the PNG is written atomically.

Example:
    >>> short_name("student_resnet8.int8.tflite")
    'student_resnet8.int8'
    >>> plot_pareto(load_results(["pi4.json", "x86.json"]), "reports/pareto.png")  # doctest: +SKIP
    (PosixPath('reports/pareto.png'), 'wrote reports/pareto.png')
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from kdtool.bench.compare import LATENCY_BUDGETS_MS, METRIC_NAMES, by_group, front_flags, frontier_metric
from kdtool.data import atomic_write_bytes
from kdtool.errors import InputError, RuntimeFailure

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
MAX_NAME = 22


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def plot_groups(records: Sequence[dict]) -> list[dict]:
    """The points to draw, one dict per device, with their frontier flags.

    Args:
        records: merged bench records (:func:`kdtool.bench.compare.load_results`).

    Returns:
        Per device (:func:`kdtool.bench.compare.device_group`): ``label``, ``emulated`` and ``points``, each
        point a dict of ``name``, ``latency_ms`` and ``size_kib`` (None when missing), ``value`` (the
        frontier metric), ``interval`` (its 95% interval or None), ``on_latency`` and ``on_size``
        (:func:`kdtool.bench.compare.front_flags`). Records without the metric are left out.

    Example:
        >>> g = plot_groups([{"model": "s.tflite", "accuracy": 0.7, "size_bytes": 2048, "latency_ms": {}}])
        >>> g[0]["label"], g[0]["points"][0]["size_kib"], g[0]["points"][0]["on_size"]
        ('unknown', 2.0, True)
    """
    metric = frontier_metric(records)
    lat, size = front_flags(records, "latency", metric), front_flags(records, "size", metric)
    groups = []
    for label, idx in by_group(records).items():
        points = []
        for i in idx:
            r = records[i]
            value, nbytes = _num(r.get(metric)), _num(r.get("size_bytes"))
            if value is None:
                continue
            ms, ci = _num((r.get("latency_ms") or {}).get("median")), (r.get("ci95") or {}).get(metric)
            points.append(dict(name=str(r["model"]), latency_ms=ms, size_kib=nbytes / 1024 if nbytes else None,
                               value=value, interval=ci, on_latency=lat[i], on_size=size[i]))  # fmt: skip
        groups.append({"label": label, "emulated": any(records[i].get("emulated") for i in idx), "points": points})
    return groups


def plot_pareto(
    records: Sequence[dict], path: str | Path, budgets: Sequence[float] = LATENCY_BUDGETS_MS
) -> tuple[Path | None, str]:
    """``pareto.png``: each device's frontiers of the frontier metric against median latency and size.

    Args:
        records: merged results.
        path: the PNG to write (its folder is created; written atomically).
        budgets: median-latency budgets in ms, drawn as faint vertical lines.

    Returns:
        (path written or None, a one-line note for the user; without matplotlib it says so).

    Example:
        >>> plot_pareto(records, "reports/pareto.png")[1]  # doctest: +SKIP
        'wrote reports/pareto.png'
    """
    return draw_frontiers(plot_groups(records), path, METRIC_NAMES[frontier_metric(records)], budgets)


def short_name(model: str, limit: int = MAX_NAME) -> str:
    """A model's file name for a plot label: without ``.tflite``, at most ``limit`` characters.

    Args:
        model: the record's ``model``.
        limit: the longest label; longer names keep their start and end around ``~``.

    Returns:
        The label.

    Example:
        >>> short_name("a.tflite"), short_name("mobilenetv2_w035_64px.int8-floatends.tflite")
        ('a', 'mobilenetv2~-floatends')
    """
    name = model.removesuffix(".tflite")
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2 + (limit - 1) % 2
    return f"{name[:head]}~{name[len(name) - (limit - 1 - head) :]}"


def _front_step(ax, pts: list[tuple[float, float]], colour: str) -> None:
    """A frontier as a step line: from each point, its metric holds until the next, costlier one."""
    pts = sorted(pts)
    if pts:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color=colour, linewidth=1.2, alpha=0.8)


def _panel(ax, groups: Sequence[dict], key: str, front: str) -> int:
    """Draw every device's points on one panel; returns how many points it drew."""
    drawn, labelled = 0, set()
    for i, g in enumerate(groups):
        colour, marker = f"C{i % 10}", MARKERS[i % len(MARKERS)]
        pts = [p for p in g["points"] if p[key] is not None and p[key] > 0]
        if not pts:
            continue
        label = g["label"] + (" (latency relative only)" if g["emulated"] else "")
        for p in pts:
            x, y, ci = p[key], p["value"], p.get("interval")
            if ci and None not in ci:
                ax.errorbar(x, y, yerr=[[max(y - ci[0], 0.0)], [max(ci[1] - y, 0.0)]], color=colour, alpha=0.5,
                            linewidth=0.8, capsize=2, zorder=2)  # fmt: skip
            on = p[front]
            ax.scatter(x, y, marker=marker, s=70 if on else 30, zorder=3, linewidths=1.2 if on else 0.8,
                       facecolors="none" if g["emulated"] else colour, edgecolors="black" if on else colour,
                       label=label)  # fmt: skip
            label = None  # one legend entry per device
            if (p["name"], x, y) not in labelled:
                labelled.add((p["name"], x, y))
                ax.annotate(short_name(p["name"]), (x, y), fontsize=6, xytext=(4, 3), textcoords="offset points")
            drawn += 1
        _front_step(ax, [(p[key], p["value"]) for p in pts if p[front]], colour)
    return drawn


def draw_frontiers(
    groups: Sequence[dict], path: str | Path, metric: str, budgets: Sequence[float] = ()
) -> tuple[Path | None, str]:
    """Draw the two frontier panels and write the PNG.

    Args:
        groups: per device, ``label``, ``emulated`` and ``points`` (:func:`plot_groups`).
        path: the PNG (its folder is created; written atomically).
        metric: the y axis's name (``balanced accuracy`` or ``accuracy``).
        budgets: median-latency budgets in ms, drawn as faint vertical lines on the latency panel.

    Returns:
        (path written or None, a one-line note for the user; without matplotlib, no file and a note).

    Raises:
        InputError: ``path``'s folder, or a folder above it, is a file.
        RuntimeFailure: another write failure (permission, full disk), in one line.

    Example:
        >>> draw_frontiers([], "pareto.png", "accuracy")[0]  # doctest: +SKIP
        PosixPath('pareto.png')
    """
    try:
        # Figure without pyplot: no global backend state, PNG through Agg.
        from matplotlib.figure import Figure  # optional, lazy
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return None, "matplotlib is not installed: no pareto.png (pip install matplotlib)"
    path = Path(path)
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    ax_lat, ax_size = fig.subplots(1, 2, sharey=True)
    n_lat = _panel(ax_lat, groups, "latency_ms", "on_latency")
    n_size = _panel(ax_size, groups, "size_kib", "on_size")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    some = FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:e}"[0] in "25" else "")  # minor ticks: 2s and 5s only
    for ax, n, what in ((ax_lat, n_lat, "median latency"), (ax_size, n_size, "size")):
        if n:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(some)
        else:
            ax.text(0.5, 0.5, f"no {what} in these results", transform=ax.transAxes, ha="center", color="0.4")
        ax.grid(True, alpha=0.3)
    if n_lat:
        lo, hi = ax_lat.get_xlim()
        if budgets:  # show every budget, even beyond the points
            ax_lat.set_xlim(min(lo, min(budgets) / 1.3), max(hi, max(budgets) * 1.3))
        for b in budgets:
            ax_lat.axvline(b, color="0.5", linestyle=":", linewidth=0.8, alpha=0.6, zorder=1)
            ax_lat.annotate(f"{b:g} ms", (b, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="0.4",
                            xytext=(2, -10), textcoords="offset points")  # fmt: skip
    ax_lat.set_xlabel("median latency (ms, log)")
    ax_lat.set_ylabel(metric)
    ax_lat.set_title(f"{metric} vs median latency, frontier per device", fontsize=9)
    ax_size.set_xlabel("model file size (KiB, log)")
    ax_size.set_title(f"{metric} vs size, frontier per device", fontsize=9)
    handles, labels = ax_lat.get_legend_handles_labels()
    if not handles:
        handles, labels = ax_size.get_legend_handles_labels()
    if handles:
        (ax_lat if n_lat else ax_size).legend(handles, labels, fontsize=7, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{path}: cannot write the plot, {path.parent} is not a folder") from None
    except OSError as exc:
        raise RuntimeFailure(f"{path}: cannot write the plot ({exc.strerror or exc})") from None
    return path, f"wrote {path}"
