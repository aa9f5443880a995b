"""How far can a decision rule alone move a student toward issue #6's targets?

A classifier's logits plus one offset per class is every decision rule of the form
``argmax(z + b)``: ``--balance logit-adjust`` (b = 0), ``kdtool export --prior-shift TAU``
(b = TAU * log prior) and any hand-tuned operating point are points of it. For each int8 student
given, this script searches b (coordinate ascent over a grid) for the highest test accuracy with
balanced accuracy and melanoma sensitivity both >= the floor (0.60, the issue's targets), twice:

- **val-tuned**: b chosen on the validation split, reported on test (what a user could do);
- **oracle**: b chosen on the test split itself, an optimistic bound (never a result to quote as
  accuracy: it is fitted to the data it is scored on).

If even the oracle stays below the accuracy target, no operating point of that student meets all
targets: the model's ranking, not its threshold, has to improve. Runs with the light install (no
TensorFlow): the logits come from kdtool bench's interpreter.

``--ensemble`` also analyses the mean logits of all the models given (e.g. three seeds' teachers
exported with ``kdtool export TEACHER.keras --quantize float32``): an upper reference for what a
better-ranking model would do. ``--val-margin M`` holds melanoma sensitivity at ``floor + M`` when
tuning on val (a safety margin for the val-to-test gap; the oracle keeps the plain floor).
``--tta MODE`` scores every model as ``kdtool bench --tta MODE`` does (mean logits over views).

    python benchmarks/operating_points.py runs/recipes/d96_la_efficientnet_lite0/s*/export/student_efficientnet_lite0.int8.tflite
        [--data ../shared/data/ham10000] [--floor 0.6] [--json benchmarks/operating_points.json]
        [--md benchmarks/operating_points.md] [--ensemble] [--val-margin 0.1] [--tta d4]
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

from kdtool.bench.tta import list_tta_modes  # noqa: E402
from kdtool.data import load_fdata  # noqa: E402
from kdtool.metrics import melanoma_index  # noqa: E402
from run import fmt_mean_std, results_doc, stats, write_results  # noqa: E402

GRID = np.round(np.arange(-3.0, 3.0001, 0.05), 4)
PENALTY = 5.0  # accuracy points given up per point of shortfall below the floor


def rule_metrics(logits: np.ndarray, labels: np.ndarray, offset: np.ndarray, mel: int) -> dict:
    """Accuracy, balanced accuracy (mean recall over present classes) and melanoma sensitivity of argmax(z + b).

    Example:
        >>> z = np.array([[1.0, 0.0], [0.9, 0.0], [0.0, 1.0]])
        >>> rule_metrics(z, np.array([0, 1, 1]), np.array([0.0, 1.0]), mel=1)
        {'accuracy': 1.0, 'balanced_accuracy': 1.0, 'melanoma_sensitivity': 1.0}
    """
    pred = np.argmax(logits + offset, axis=1)
    present = [c for c in range(logits.shape[1]) if np.any(labels == c)]
    recall = {c: float(np.mean(pred[labels == c] == c)) for c in present}
    return {"accuracy": float(np.mean(pred == labels)), "balanced_accuracy": float(np.mean(list(recall.values()))),
            "melanoma_sensitivity": recall.get(mel, float("nan"))}


def objective(m: dict, floor: float, mel_floor: float | None = None) -> float:
    """Accuracy, minus PENALTY x the shortfall of balanced accuracy below ``floor`` and of melanoma
    sensitivity below ``mel_floor`` (``floor`` when None)."""
    mel_floor = floor if mel_floor is None else mel_floor
    short = max(0.0, floor - m["balanced_accuracy"]) + max(0.0, mel_floor - m["melanoma_sensitivity"])
    return m["accuracy"] - PENALTY * short


def search_offsets(logits: np.ndarray, labels: np.ndarray, mel: int, floor: float, sweeps: int = 6,
                   mel_floor: float | None = None) -> np.ndarray:
    """Per-class offsets maximising :func:`objective` by coordinate ascent over GRID (starts at 0).

    Args:
        logits: (N, K) scores.
        labels: (N,) integer labels.
        mel: the melanoma class index.
        floor: the lower bound for balanced accuracy and melanoma sensitivity.
        sweeps: passes over the K classes.
        mel_floor: a different lower bound for melanoma sensitivity (None: ``floor``).

    Returns:
        (K,) float offsets; only changes that raise the objective are kept, so the result
        scores at least as well as no offset.
    """
    b = np.zeros(logits.shape[1])
    best = objective(rule_metrics(logits, labels, b, mel), floor, mel_floor)
    for _ in range(sweeps):
        improved = False
        for c in range(len(b)):
            for g in GRID:
                trial = b.copy()
                trial[c] = g
                score = objective(rule_metrics(logits, labels, trial, mel), floor, mel_floor)
                if score > best + 1e-12:
                    best, b, improved = score, trial, True
        if not improved:
            break
    return b


def student_logits(path: Path, fd, tta: str = "none") -> dict[str, np.ndarray]:
    """Dequantized logits of one .tflite file on val and test (kdtool bench's interpreter), averaged over
    the views of ``tta`` (``kdtool bench --tta``)."""
    from kdtool.bench.evaluate import mean_scores
    from kdtool.bench.runtime import load_model, select_runtime

    model = load_model(path, select_runtime(), threads=2, batch=64)
    return {split: mean_scores(model, fd.x(split), tta=tta) for split in ("val", "test")}


def checked_inputs(ap: argparse.ArgumentParser, models: list[str], data: str, why: str = ""):
    """The FData at ``data`` once every model file exists and the data have a melanoma class (else ``ap.error``)."""
    missing = [m for m in models if not Path(m).is_file()]
    if missing:
        ap.error(f"no such model file: {missing[0]}")
    fd = load_fdata(data)
    if melanoma_index(fd.class_names) is None:
        ap.error(f"{data}: no class named like melanoma ('mel'){why}")
    return fd


def analyse(name: str, z: dict[str, np.ndarray], fd, floor: float, val_margin: float = 0.0) -> dict:
    """Plain, val-tuned and oracle decision rules for one model's val and test logits."""
    mel = melanoma_index(fd.class_names)
    yv, yt = fd.labels("val"), fd.labels("test")
    tuned = search_offsets(z["val"], yv, mel, floor, mel_floor=floor + val_margin)
    oracle = search_offsets(z["test"], yt, mel, floor)
    zero = np.zeros(fd.num_classes)
    return {"model": name,
            "plain": rule_metrics(z["test"], yt, zero, mel),
            "val_tuned": {"offset": tuned.tolist(), "val": rule_metrics(z["val"], yv, tuned, mel),
                          "test": rule_metrics(z["test"], yt, tuned, mel)},
            "oracle": {"offset": oracle.tolist(), "test": rule_metrics(z["test"], yt, oracle, mel)}}


ROWS = [("plain argmax(z), test", lambda r: r["plain"]),
        ("val-tuned offsets, on val", lambda r: r["val_tuned"]["val"]),
        ("val-tuned offsets, on test", lambda r: r["val_tuned"]["test"]),
        ("oracle offsets (fitted on test), on test", lambda r: r["oracle"]["test"])]
KEYS = ("accuracy", "balanced_accuracy", "melanoma_sensitivity")


def render(doc: dict) -> str:
    def pm(vals):
        return fmt_mean_std(stats(vals))

    floor, margin = 100 * doc["floor"], 100 * doc.get("val_margin", 0.0)
    tuned = (f" (on val, melanoma sensitivity held >= {floor + margin:.0f}%: a {margin:.0f}-point margin)"
             if margin else "")
    lines = [
        "# Operating points: what per-class logit offsets can and cannot do",
        "",
        f"`{doc['command']}` — {doc['machine_line']}",
        "",
        f"{len(doc['results'])} model(s); data `{doc['data']}`"
        + (f"; logits averaged over TTA {doc['tta']} views" if doc.get("tta", "none") != "none" else "")
        + ". Each rule is argmax(logits + b); b maximises "
        f"test or val accuracy with balanced accuracy and melanoma sensitivity held >= {floor:.0f}% (a penalty of "
        f"{PENALTY:g} points per point below){tuned}, by coordinate ascent over b in [-3, 3] step 0.05. Mean ± std "
        "over the models, %.",
        "",
        "| rule | acc | bal acc | mel sens |",
        "|---|---|---|---|",
    ]
    for label, get in ROWS:
        lines.append(f"| {label} | " + " | ".join(pm([get(r)[k] for r in doc["results"]]) for k in KEYS) + " |")
    ens = doc.get("ensemble")
    lines += ["", "Per model (test split)" + (", and the mean of their logits (ensemble)" if ens else "") + ":", "",
              "| model | plain acc / bal / mel | val-tuned | oracle |", "|---|---|---|---|"]
    for r in doc["results"] + ([ens] if ens else []):
        cells = [" / ".join(f"{100 * m[k]:.1f}" for k in KEYS)
                 for m in (r["plain"], r["val_tuned"]["test"], r["oracle"]["test"])]
        lines.append(f"| `{r['model']}` | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="int8 (or any) .tflite students written by kdtool export")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder.")
    ap.add_argument("--floor", type=float, default=0.60, help="lower bound for bal acc and mel sens (0..1)")
    ap.add_argument("--json", default=str(HERE / "operating_points.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "operating_points.md"), help="results Markdown")
    ap.add_argument("--ensemble", action="store_true", help="also analyse the mean logits of all the models given")
    ap.add_argument("--val-margin", type=float, default=0.0,
                    help="hold melanoma sensitivity at floor + this when tuning on val (0..1, default 0)")
    ap.add_argument("--tta", default="none", choices=list_tta_modes(),
                    help="test-time augmentation of every model's logits, as kdtool bench --tta (default none)")
    args = ap.parse_args(argv)
    if not 0.0 < args.floor < 1.0:
        ap.error(f"--floor must lie in (0, 1), got {args.floor}")
    if not 0.0 <= args.val_margin < 1.0 - args.floor:
        ap.error(f"--val-margin must lie in [0, {1.0 - args.floor:g}), got {args.val_margin}")
    if args.ensemble and len(args.models) < 2:
        ap.error("--ensemble needs at least two models")
    fd = checked_inputs(ap, args.models, args.data, "; nothing to hold at the floor")
    t0 = time.perf_counter()
    logits = {m: student_logits(Path(m), fd, args.tta) for m in args.models}
    results = [analyse(m, z, fd, args.floor, args.val_margin) for m, z in logits.items()]
    ensemble = None
    if args.ensemble:
        mean = {split: np.mean([z[split] for z in logits.values()], axis=0) for split in ("val", "test")}
        ensemble = analyse(f"ensemble (mean logits) of {len(logits)}", mean, fd, args.floor, args.val_margin)
    doc = results_doc("operating_points.py", argv, args.data, results, t0, floor=args.floor,
                      val_margin=args.val_margin, tta=args.tta, ensemble=ensemble)
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
