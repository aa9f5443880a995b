"""Latency in the manner of LiteRT's ``benchmark_model``: init, warm-up runs, timed runs.

Only ``interpreter.invoke()`` sits inside the timed region
(``time.perf_counter`` before and after); the input is set once beforehand
with real images from the split. Statistics are in milliseconds: min, median,
mean, std (population), p90 and p99 (linear interpolation); throughput is
``batch * 1000 / mean_ms`` images per second.

Example:
    >>> times = measure_latency(model.interpreter, runs=200, warmup=20)  # doctest: +SKIP
    >>> summarize(times, batch=1)["latency_ms"]["median"]               # doctest: +SKIP
    0.41
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

LATENCY_KEYS = ("min", "median", "mean", "std", "p90", "p99")


def measure_latency(
    interpreter: Any, runs: int, warmup: int, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Invoke ``warmup`` times untimed, then ``runs`` times timed.

    Args:
        interpreter: an allocated interpreter with its input already set.
        runs: timed invocations.
        warmup: untimed invocations first.
        progress: called with the runs done since its last call, ~100 times (outside the timed region).

    Returns:
        float64 seconds per timed run, shape (runs,).
    """
    invoke = interpreter.invoke
    for _ in range(warmup):
        invoke()
    times = np.empty(runs, dtype=np.float64)
    clock = time.perf_counter
    step = max(1, runs // 100)  # report progress ~100 times at most, outside the timed region
    for i in range(runs):
        t0 = clock()
        invoke()
        times[i] = clock() - t0
        if progress is not None and (i + 1) % step == 0:
            progress(step)
    if progress is not None and runs % step:
        progress(runs % step)
    return times


def summarize(times_s: np.ndarray, batch: int) -> dict:
    """Latency statistics in ms and images per second (all None when there are no runs).

    Args:
        times_s: seconds per run.
        batch: images per run.

    Returns:
        ``{"latency_ms": {min, median, mean, std, p90, p99}, "images_per_second": float}``.
    """
    t = np.asarray(times_s, dtype=np.float64) * 1000.0
    if t.size == 0:
        return {"latency_ms": dict.fromkeys(LATENCY_KEYS), "images_per_second": None}
    stats = {
        "min": float(t.min()),
        "median": float(np.median(t)),
        "mean": float(t.mean()),
        "std": float(t.std()),
        "p90": float(np.percentile(t, 90)),
        "p99": float(np.percentile(t, 99)),
    }
    ips = batch * 1000.0 / stats["mean"] if stats["mean"] > 0 else None
    return {"latency_ms": stats, "images_per_second": ips}


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (None where unknown).

    Linux: ``VmHWM`` from /proc/self/status, the high-water mark of this program's
    own memory. ``getrusage``'s ru_maxrss survives ``execve`` on Linux, so a bench
    started from a big parent (a Python test runner with TensorFlow loaded) would
    report the parent's peak; it is only the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # Unix only
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)


def current_rss_mb() -> float | None:
    """Current resident memory in MiB from /proc/self/statm (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None
