"""Screening operating points: ``--prior-shift TAU`` with ``--melanoma-sensitivity S``, swept on exported students.

``kdtool export`` has two operating-point knobs: ``--prior-shift TAU`` adds ``TAU * log(train class
frequencies)`` to the logits (accuracy up, rare classes down) and ``--melanoma-sensitivity S`` then adds
the melanoma offset that finds enough validation melanomas for a 95% lower bound of S, raising the
melanoma logit only (:mod:`kdtool.export.sensitivity`). This script applies both to the dequantized logits of int8 files
exported at TAU = 0 without a target or majority offset (``kdtool export RUN --melanoma-sensitivity 0
--majority-offset 0``; export's defaults before 2026-12-01 and 12-06), for a grid of TAU and S, and reports
validation and test accuracy, balanced accuracy and melanoma sensitivity, and how many files meet issue
#6's targets on test (accuracy >= 74%, balanced accuracy and melanoma sensitivity >= 60%).

It is a sweep over the test split, to show the trade-off a deployer chooses from, not a way to choose:
a point picked here by its test numbers is fitted to test. It differs from a real export at that point
only in where the offsets are added (to the int8 file's logits here; export adds them to the float
bias before converting, and chooses the melanoma offset on the Keras model's logits). Runs with the
light install (no TensorFlow).

    python benchmarks/screening_points.py runs/recipes/d96_la_v8e120_efficientnet_lite0/s*/export/student_efficientnet_lite0.int8.tflite
        [--taus 0,0.25,0.5] [--targets none,0.6,0.65,0.7] [--confidence 0.95]
        [--json benchmarks/screening_points.json] [--md benchmarks/screening_points.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from kdtool.export.sensitivity import sensitivity_offset  # noqa: E402
from kdtool.metrics import melanoma_index  # noqa: E402
from operating_points import KEYS, checked_inputs, rule_metrics, student_logits  # noqa: E402
from run import fmt_mean_std, results_doc, stats, write_results  # noqa: E402

TARGETS = {"accuracy": 0.74, "balanced_accuracy": 0.60, "melanoma_sensitivity": 0.60}


def point_offsets(z_val: np.ndarray, y_val: np.ndarray, log_prior: np.ndarray, mel: int, tau: float,
                  target: float | None, confidence: float) -> tuple[np.ndarray, dict | None]:
    """The logit offsets of ``--prior-shift tau --melanoma-sensitivity target``, chosen on validation logits.

    Returns:
        ``(b, record)``: b (K,) to add to the logits, and sensitivity_offset's record (None without a target).

    Example:
        >>> z = np.array([[1.0, 0.0], [1.0, 0.5], [0.0, 1.0]])
        >>> b, rec = point_offsets(z, np.array([1, 1, 1]), np.log([0.5, 0.5]), 1, 0.0, 0.6, 0.0)
        >>> rec["detected"], b.round(2).tolist()
        (2, [0.0, 0.75])
    """
    b = (tau * log_prior).astype(np.float64) + 0.0  # + 0.0: no -0.0
    if target is None:
        return b, None
    rec = sensitivity_offset(z_val + b, y_val, mel, target, confidence)
    b[mel] += rec["offset"]
    return b, rec


def sweep(z: dict[str, np.ndarray], fd, taus, targets, confidence: float) -> list[dict]:
    """Every (tau, target) point of one model's val and test logits."""
    mel = melanoma_index(fd.class_names)
    yv, yt = fd.labels("val"), fd.labels("test")
    counts = np.bincount(fd.labels("train"), minlength=fd.num_classes)
    log_prior = np.log(np.maximum(counts, 1) / counts.sum())
    rows = []
    for tau in taus:
        for target in targets:
            b, rec = point_offsets(z["val"], yv, log_prior, mel, tau, target, confidence)
            rows.append({"tau": tau, "target": target, "melanoma_offset": None if rec is None else rec["offset"],
                         "val": rule_metrics(z["val"], yv, b, mel), "test": rule_metrics(z["test"], yt, b, mel)})
    return rows


def meets(m: dict) -> bool:
    """Whether test metrics ``m`` reach every one of issue #6's TARGETS."""
    return all(m[k] >= v - 1e-12 for k, v in TARGETS.items())


def render(doc: dict) -> str:
    res = doc["results"]
    n = len(res)
    lines = ["# Screening operating points: prior shift and a held melanoma sensitivity", "",
             f"`{doc['command']}` — {doc['machine_line']}", "",
             f"{n} int8 file(s); data `{doc['data']}`. Each point is `kdtool export --prior-shift TAU "
             f"--melanoma-sensitivity S --sensitivity-confidence {doc['confidence']:g}` applied to the files' "
             "dequantized logits (S chosen on the validation split). A sweep over test, for the trade-off: a "
             "point picked by its test numbers is fitted to test. Mean ± std over the files, %; \"meet\": files "
             "at accuracy >= 74, balanced accuracy >= 60 and melanoma sensitivity >= 60 on test.", "",
             "| TAU | S | val acc | val bal acc | val mel sens | test acc | test bal acc | test mel sens | meet |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, p in enumerate(res[0]["points"]):
        pts = [r["points"][i] for r in res]
        cells = [fmt_mean_std(stats([q[split][k] for q in pts])) for split in ("val", "test") for k in KEYS]
        s = "-" if p["target"] is None else f"{p['target']:g}"
        lines.append(f"| {p['tau']:g} | {s} | " + " | ".join(cells) + f" | {sum(meets(q['test']) for q in pts)}/{n} |")
    lines += ["", "Per file, test acc / bal acc / mel sens:", "",
              "| TAU | S | " + " | ".join(f"`{Path(r['model']).parent.parent.name}/{Path(r['model']).name}`"
                                          for r in res) + " |",
              "|---|---|" + "---|" * n]
    for i, p in enumerate(res[0]["points"]):
        s = "-" if p["target"] is None else f"{p['target']:g}"
        cells = [" / ".join(f"{100 * r['points'][i]['test'][k]:.1f}" for k in KEYS) for r in res]
        lines.append(f"| {p['tau']:g} | {s} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _floats(text: str, what: str, ap, allow_none: bool = False) -> list:
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if allow_none and item == "none":
            out.append(None)
            continue
        try:
            out.append(float(item))
        except ValueError:
            ap.error(f"{what}: {item!r} is not a number")
    if not out:
        ap.error(f"{what}: give at least one value")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="int8 (or any) .tflite students written by kdtool export (TAU 0)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder.")
    ap.add_argument("--taus", default="0,0.25,0.5", help="comma-separated --prior-shift values in [0, 1]")
    ap.add_argument("--targets", default="none,0.6,0.65,0.7",
                    help="comma-separated --melanoma-sensitivity values in (0, 1], 'none' for no target")
    ap.add_argument("--confidence", type=float, default=0.95, help="--sensitivity-confidence, in [0, 1)")
    ap.add_argument("--json", default=str(HERE / "screening_points.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "screening_points.md"), help="results Markdown")
    args = ap.parse_args(argv)
    taus = _floats(args.taus, "--taus", ap)
    targets = _floats(args.targets, "--targets", ap, allow_none=True)
    if any(not 0.0 <= t <= 1.0 for t in taus):
        ap.error(f"--taus must lie in [0, 1], got {args.taus}")
    if any(t is not None and not 0.0 < t <= 1.0 for t in targets):
        ap.error(f"--targets must lie in (0, 1], got {args.targets}")
    if not 0.0 <= args.confidence < 1.0:
        ap.error(f"--confidence must lie in [0, 1), got {args.confidence}")
    fd = checked_inputs(ap, args.models, args.data)
    t0 = time.perf_counter()
    results = []
    for m in args.models:
        try:
            points = sweep(student_logits(Path(m), fd), fd, taus, targets, args.confidence)
        except ValueError as exc:
            ap.error(f"{m}: {exc}")
        results.append({"model": m, "points": points})
    doc = results_doc("screening_points.py", argv, args.data, results, t0, confidence=args.confidence,
                      taus=taus, targets=targets, issue_targets=TARGETS)
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
