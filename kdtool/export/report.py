"""What ``kdtool export`` prints: warnings, one line per operating point and conversion, the size summary.

Each function turns a record that also goes into the sidecar into the line a person reads, so the
console and the JSON never tell different stories. No TensorFlow.

Example:
    >>> point_note({"summary": "balanced (tau -0.30, fitted on val, 852 images)"})
    '  operating point: balanced (tau -0.30, fitted on val, 852 images)'
    >>> human(2048), human(3 * 1024 * 1024)
    ('2.0 KB', '3.00 MB')
"""

from __future__ import annotations

import click
import numpy as np


def warn(message: str) -> None:
    """Print ``warning: message`` in yellow on stderr (a problem that does not stop the export).

    Args:
        message: the warning, naming the file it is about.
    """
    click.secho(f"warning: {message}", fg="yellow", err=True)


def point_note(record: dict) -> str:
    """The line for the sidecar's ``operating_point`` record: its summary.

    Args:
        record: from :func:`kdtool.export.objectives.fit_operating_point`.

    Returns:
        ``  operating point: <summary>``.

    Example:
        >>> point_note({"summary": "as trained (no bias)"})
        '  operating point: as trained (no bias)'
    """
    return f"  operating point: {record['summary']}"


def bias_note(converter: dict) -> str:
    """The tail of a conversion's line about the output bias correction.

    Args:
        converter: the sidecar's ``converter`` record.

    Returns:
        ``""`` when no correction was tried, else what it did or why it was not applied.

    Example:
        >>> bias_note({"bias_correction": {"applied": False, "reason": "no logits layer"}})
        ' (no bias correction: no logits layer)'
    """
    correction = converter.get("bias_correction")
    if not correction:
        return ""
    if not correction["applied"]:
        return f" (no bias correction: {correction['reason']})"
    before = np.abs(correction["mean_error_before"]).max()
    after = np.abs(correction["mean_error_after"]).max()
    return f", output bias corrected (largest mean logit error {before:.3f} -> {after:.3f})"


def human(nbytes: int) -> str:
    """A file size for reading: KB below a megabyte, else MB.

    Args:
        nbytes: the size in bytes.

    Returns:
        The size with its unit.
    """
    return f"{nbytes / 1024:.1f} KB" if nbytes < 1024 * 1024 else f"{nbytes / 1024 / 1024:.2f} MB"


def size_lines(rows: list[dict]) -> list[str]:
    """One line per written file that has something to compare its size with.

    Args:
        rows: the sidecars written (their ``name``, ``mode`` and ``sizes``).

    Returns:
        ``name.mode: size, ratio to its float32, ratio to its teacher's float32`` lines.

    Example:
        >>> size_lines([{"name": "s", "mode": "int8", "sizes": {"bytes": 1024, "float32_bytes": 4096,
        ...     "ratio_to_float32": 0.25, "teacher": None, "teacher_float32_bytes": None}}])
        ['s.int8: 1.0 KB, 0.250x its float32 (4.0 KB)']
    """
    lines = []
    for r in rows:
        s = r["sizes"]
        parts = [f"{r['name']}.{r['mode']}: {human(s['bytes'])}"]
        if s["float32_bytes"] and r["mode"] != "float32":
            parts.append(f"{s['ratio_to_float32']:.3f}x its float32 ({human(s['float32_bytes'])})")
        if s["teacher_float32_bytes"]:
            parts.append(
                f"{s['ratio_to_teacher_float32']:.4f}x {s['teacher']} float32 ({human(s['teacher_float32_bytes'])})"
            )
        elif s["teacher"]:
            parts.append(f"{s['teacher']} float32 size unknown (export with --include-teachers)")
        if len(parts) > 1:
            lines.append(", ".join(parts))
    return lines


def print_sizes(rows: list[dict]) -> None:
    """Print :func:`size_lines` under a ``sizes:`` heading (nothing when there are none).

    Args:
        rows: the sidecars written.
    """
    lines = size_lines(rows)
    if lines:
        click.echo("\nsizes:")
        for ln in lines:
            click.echo(f"  {ln}")
