"""Table cells and plain fixed-width tables for the bench's printed output (numbers for people).

:mod:`kdtool.bench.report` re-exports these names (``from kdtool.bench.report import fmt_number`` keeps working).
The cells of ``kdtool bench --compare``'s table (:func:`interval_cell`, :func:`concern_of`,
:func:`front_marks`) are here too.

Example:
    >>> print(render_table(["model", "acc"], [["s.int8", fmt_number(0.912, ".2f")]]))
    model    acc
    ------  ----
    s.int8  0.91
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def fmt_bytes(n: int | None) -> str:
    """A byte count for people.

    Args:
        n: bytes, or None.

    Returns:
        The count in B, KiB, MiB or GiB with one decimal; ``-`` for None.

    Example:
        >>> fmt_bytes(123456), fmt_bytes(None)
        ('120.6 KiB', '-')
    """
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def fmt_count(n: int | None) -> str:
    """A parameter count for people.

    Args:
        n: the count, or None.

    Returns:
        ``129.0k``, ``1.23M`` or the plain number; ``-`` for None.

    Example:
        >>> fmt_count(128999), fmt_count(1234567), fmt_count(12)
        ('129.0k', '1.23M', '12')
    """
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def fmt_number(v, spec: str) -> str:
    """A number in a table cell.

    Args:
        v: the value (None or NaN for none).
        spec: a format spec.

    Returns:
        ``format(v, spec)``, or ``-`` for a missing value.

    Example:
        >>> fmt_number(0.91234, ".3f"), fmt_number(None, ".3f")
        ('0.912', '-')
    """
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """A plain fixed-width table.

    Args:
        header: column titles.
        rows: cells, one sequence per row.
        left: how many leading columns are left-aligned (the rest are right-aligned).

    Returns:
        The table's text: header, a rule, the rows.

    Example:
        >>> print(render_table(["model", "acc"], [["s.int8", "0.91"]]))
        model    acc
        ------  ----
        s.int8  0.91
    """
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells):
        padded = (c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def device_label(rec: dict) -> str:
    """A result's device in a few words.

    Args:
        rec: a bench record.

    Returns:
        Host name, machine and CPU model, with `` [emulated]`` for an emulated run.

    Example:
        >>> device_label({"device": {"hostname": "pi", "machine": "aarch64", "cpu_model": "ARM Cortex-A72"}})
        'pi aarch64 ARM Cortex-A72'
    """
    dev = rec.get("device") or {}
    parts = [dev.get("hostname"), dev.get("machine"), dev.get("cpu_model")]
    label = " ".join(str(p) for p in parts if p)
    return (label or "unknown") + (" [emulated]" if rec.get("emulated") else "")


def pct_cell(value, interval, scale: float = 100.0, spec: str = ".1f") -> str:
    """A metric with its interval in one cell, in % by default.

    Args:
        value: the metric (None: ``-``).
        interval: ``[low, high]`` or None.
        scale: multiplier (100 for %, 1 for AUC).
        spec: format spec of each number.

    Returns:
        ``"72.3 [68.1, 76.0]"``, ``"72.3"`` without an interval, ``-`` without a value.

    Example:
        >>> pct_cell(0.7234, [0.681, 0.76]), pct_cell(0.9, None, 1.0, ".3f"), pct_cell(None, None)
        ('72.3 [68.1, 76.0]', '0.900', '-')
    """
    if value is None:
        return "-"
    text = fmt_number(value * scale, spec)
    if interval:
        text += f" [{fmt_number(interval[0] * scale, spec)}, {fmt_number(interval[1] * scale, spec)}]"
    return text


def interval_cell(value, interval, ends: str = ".2f") -> str:
    """A metric and, when there is one, its 95% interval, for ``kdtool bench --compare``'s table.

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


def concern_of(rec: dict) -> tuple[str | None, float | None, list | None]:
    """A record's class of concern, its sensitivity and that sensitivity's 95% interval.

    Args:
        rec: a bench record.

    Returns:
        ``(class, sensitivity, interval)``; melanoma's (``mel``) for results older than ``class_of_concern``;
        ``(None, None, None)`` without either.

    Example:
        >>> concern_of({"melanoma_sensitivity": 0.5}), concern_of({})
        (('mel', 0.5, None), (None, None, None))
    """
    ci95 = rec.get("ci95") or {}
    coc = rec.get("class_of_concern")
    if coc:
        return coc.get("name"), coc.get("sensitivity"), ci95.get("class_of_concern_sensitivity")
    if rec.get("melanoma_sensitivity") is not None:
        return "mel", rec["melanoma_sensitivity"], ci95.get("melanoma_sensitivity")
    return None, None, None


def front_marks(lat: bool, size: bool, emulated: bool) -> str:
    """The compare table's ``pareto`` cell.

    Args:
        lat: on its device's latency frontier.
        size: on its device's size frontier.
        emulated: an emulated result (lower case: its latency order is relative only).

    Returns:
        ``L``, ``S``, ``LS`` or ``""``; lower case when emulated.

    Example:
        >>> front_marks(True, True, False), front_marks(True, False, True), front_marks(False, False, False)
        ('LS', 'l', '')
    """
    marks = ("L" if lat else "") + ("S" if size else "")
    return marks.lower() if emulated else marks
