"""Where a run's time goes: each phase (fine-tune, cache logits, train, evaluate, summary) with its images
per second and multiply-add throughput, kept in run.json's ``phases`` and printed when ``kdtool distill`` ends.

Training phases count the seconds of every epoch the model ran, in this process and in any interrupted
earlier one (``epoch_seconds`` in its epoch log), so a resumed model's time is its whole training, not the
rest after the resume. Multiply-adds per image come from :func:`kdtool.distill.students.profile.count_macs`;
a training step is counted as three forward passes (forward, and a backward pass of about twice its cost),
the usual estimate. That overstates head-only teacher epochs (frozen backbone, no backward pass through
it) and, with ``--teacher-logits online``, leaves out the teacher's forward pass. Compare
``gmacs_per_second`` with the machine's float32 matmul peak (``benchmarks/flops.py``) to see which phase
runs far below what the CPU can do.

Example:
    >>> run = type("Run", (), {"doc": {}})()
    >>> _ = record_phase(run, "train", "student_alone", 10.0, images=5953 * 120, macs_per_image=17_422_080, passes=3)
    >>> round(run.doc["phases"][0]["gmacs_per_second"], 1)
    3733.7
    >>> phase_lines(run.doc["phases"])[2].split()[:4]
    ['train', 'student_alone', '10.0', '100%']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: A training step's multiply-adds in forward passes: the forward pass and a backward pass of about twice it.
TRAINING_PASSES = 3


def fit_seconds(history: dict, fallback: float) -> tuple[float, bool]:
    """Seconds of every epoch in ``history`` (its ``epoch_seconds``), or ``fallback`` when any is unknown.

    Args:
        history: the model's per-epoch history (from its epoch log).
        fallback: this process's wall time for the fit.

    Returns:
        (seconds, whether every epoch was timed): False when an epoch ran under a kdtool that kept no
        epoch seconds, and the seconds are then this process's only.

    Example:
        >>> fit_seconds({"loss": [0.9, 0.8], "epoch_seconds": [1.5, 2.5]}, 0.1)
        (4.0, True)
        >>> fit_seconds({"loss": [0.9, 0.8], "epoch_seconds": [float("nan"), 2.5]}, 3.0)
        (3.0, False)
    """
    values = history.get("epoch_seconds") or []
    epochs = max((len(v) for v in history.values()), default=0)
    timed = len(values) == epochs > 0 and all(isinstance(v, (int, float)) and not math.isnan(v) for v in values)
    return (float(sum(values)), True) if timed else (float(fallback), False)


def record_phase(
    run, phase: str, model: str, seconds: float, images: int = 0, macs_per_image: int = 0, passes: int = 1
) -> dict:
    """Add (or replace) one phase of ``run`` in ``run.doc["phases"]``.

    Args:
        run: the open run (anything with a ``doc`` dict).
        phase: ``fine-tune``, ``cache logits``, ``train``, ``evaluate`` or ``summary``.
        model: the model it belongs to ("" for the whole run).
        seconds: its wall time.
        images: images it processed (each view counted, each epoch counted).
        macs_per_image: multiply-adds of one forward pass of one image (0: unknown).
        passes: forward passes per image (:data:`TRAINING_PASSES` for training, 1 for inference).

    Returns:
        The entry: ``phase``, ``model``, ``seconds``, ``images``, ``images_per_second``, ``gmacs_per_second``
        (None where unknown).

    Example:
        >>> run = type("Run", (), {"doc": {}})()
        >>> record_phase(run, "cache logits", "teacher_x", 2.0, images=1000, macs_per_image=10**8)["gmacs_per_second"]
        50.0
    """
    seconds = float(seconds)
    rate = images / seconds if images and seconds > 0 else None
    gmacs = rate * macs_per_image * passes / 1e9 if rate and macs_per_image else None
    entry = {
        "phase": phase,
        "model": model,
        "seconds": round(seconds, 2),
        "images": int(images),
        "images_per_second": None if rate is None else round(rate, 1),
        "gmacs_per_second": None if gmacs is None else round(gmacs, 2),
    }
    phases = [p for p in run.doc.get("phases", []) if (p["phase"], p["model"]) != (phase, model)]
    run.doc["phases"] = [*phases, entry]
    return entry


def phase_lines(phases: Sequence[dict], total_seconds: float | None = None) -> list[str]:
    """The "where the time went" table: one line per phase with its share of the total.

    Args:
        phases: run.json's ``phases``.
        total_seconds: the run's wall time, when known: what the phases leave out (loading data, making
            views, start-up) is shown as ``other`` when it is more than a second.

    Returns:
        Lines (a heading, a header row, one row per phase, the total); empty without phases.

    Example:
        >>> lines = phase_lines([{"phase": "summary", "model": "", "seconds": 3.0, "images": 0,
        ...                       "images_per_second": None, "gmacs_per_second": None}], total_seconds=5.0)
        >>> [line.split()[:3] for line in lines[2:]]
        [['summary', '3.0', '60%'], ['other', '2.0', '40%'], ['total', '5.0']]
    """
    if not phases:
        return []
    rows = [dict(p) for p in phases]
    other = (total_seconds or 0.0) - sum(p["seconds"] for p in rows)
    if other > 1.0:
        rows.append({"phase": "other", "model": "", "seconds": other, "images_per_second": None})
    total = sum(p["seconds"] for p in rows) or 1.0
    width = max(12, *(len(p["model"]) + 2 for p in rows))
    head = f"{'phase':<14}{'model':<{width}}{'seconds':>9}{'share':>7}{'img/s':>9}{'GMAC/s':>8}"
    lines = ["where the time went:", head]
    for p in rows:
        rate = "" if p.get("images_per_second") is None else f"{p['images_per_second']:.0f}"
        gmacs = "" if p.get("gmacs_per_second") is None else f"{p['gmacs_per_second']:.1f}"
        share = f"{100 * p['seconds'] / total:.0f}%"
        lines.append(f"{p['phase']:<14}{p['model']:<{width}}{p['seconds']:>9.1f}{share:>7}{rate:>9}{gmacs:>8}")
    lines.append(f"{'total':<{14 + width}}{total:>9.1f}")
    return lines
