"""What every part of the harness shares: the sections, the metrics, the presets, logging and statistics."""

from __future__ import annotations

import sys
import time

import numpy as np

SECTIONS = ("kd", "cost", "quant", "latency", "compression", "scaling")
METRICS = [  # (summary.csv key, label)
    ("test_accuracy", "test acc"),
    ("test_balanced_accuracy", "test bal acc"),
    ("test_macro_f1", "test macro-F1"),
    ("test_melanoma_sensitivity", "test mel sens"),
    ("test_roc_auc", "test ROC-AUC"),
    ("balanced_accuracy", "val bal acc"),
]

# kdtool distill options the KD runs take from the command line when given (else distill's defaults)
KD_OVERRIDES = (
    "balance",
    "augment",
    "teacher_head_epochs",
    "teacher_finetune_learning_rate",
    "temperature",
    "alpha",
    "lr_schedule",
)

T_START = time.perf_counter()


def distill_defaults():
    """kdtool distill's defaults (its config dataclass), which the full run follows."""
    from kdtool.distill.config import DistillConfig

    return DistillConfig()


def presets() -> dict:
    """The two modes: ``quick`` (< 10 min on 2 cores) and ``full`` (kdtool distill's defaults)."""
    d = distill_defaults()
    return {
        "quick": {
            "teachers": ["efficientnet_lite0"],
            "seeds": [0, 1],
            "epochs": 4,
            "teacher_epochs": 1,
            "ensemble": False,
            "cost_fraction": 0.2,
            "cost_rounds": 2,
            "lat_runs": 300,
            "keras_runs": 200,
            "predict_runs": 40,
            "fractions": [0.25, 0.5, 1.0],
            "pipeline": "quick",
            "image_size": 32,
        },
        "full": {
            "teachers": ["efficientnet_lite0", "efficientnet_lite2"],
            "seeds": [0, 1, 2],
            "epochs": d.epochs,
            "teacher_epochs": d.teacher_epochs,
            "ensemble": True,
            "cost_fraction": 1.0,
            "cost_rounds": 4,
            "lat_runs": 1000,
            "keras_runs": 500,
            "predict_runs": 100,
            "fractions": [0.25, 0.5, 1.0],
            "pipeline": "default",
            "image_size": d.image_size,
        },
    }


def log(msg: str = "", bold: bool = False) -> None:
    """Print ``msg`` with the seconds since the harness started (bold on a terminal)."""
    stamp = f"[{time.perf_counter() - T_START:7.1f}s]"
    line = f"{stamp} {msg}"
    print(f"\033[1m{line}\033[0m" if bold and sys.stdout.isatty() else line, flush=True)


def stats(values) -> dict:
    """Mean, std (ddof=1; 0 for one value), count and the values themselves, ignoring ``None``.

    >>> stats([0.5, 0.7, None])["mean"]
    0.6
    """
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    return {
        "mean": float(np.mean(vals)),
        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
        "n": len(vals),
        "values": vals,
    }


def median(values) -> float:
    """The median as a float."""
    return float(np.median(np.asarray(values, dtype=np.float64)))


def rnd(x, nd: int = 4):
    """``x`` with every float (in nested dicts, lists and tuples) rounded to ``nd`` digits.

    >>> rnd({"a": [0.123456, 2]}, 2)
    {'a': [0.12, 2]}
    """
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: rnd(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rnd(v, nd) for v in x]
    return x
