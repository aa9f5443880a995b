"""Does a student distilled from several seeds' teachers beat one distilled from its own teacher?

    python benchmarks/seed_ensemble.py runs/recipes/d96_la_v8e60_efficientnet_lite0/s0 \\
        runs/recipes/d96_la_v8e60_efficientnet_lite0/s1 runs/recipes/d96_la_v8e60_efficientnet_lite0/s2

Each RUN is a finished ``kdtool distill`` run with one teacher, all with the same configuration but
their seeds. For each RUN, a student is distilled again with that run's own configuration, seed and
cached augmented views, but with the soft targets averaged over ALL the runs' teachers (kdtool's
``--ensemble`` averaging: the mean of softmax(z/T)) into ``OUT/s<seed>/student_seed_ensemble.keras``.
That student is exported to int8 and benched on the test split like the run's own (``kdtool export``,
``kdtool bench``), and the table pairs it with the run's own distilled student, seed by seed.

What it measures is what ``kdtool distill --teacher-seeds N`` buys, from teachers already trained: the
teachers' ensemble ranks better than any one of them (``benchmarks/operating_points_teachers.md``), for N
times the teacher training. (With ``--seed s --teacher-seeds N`` the teachers have seeds s..s+N-1; here
every student shares the given runs' teachers.)
Each teacher's logits over a run's views are cached in ``OUT/s<seed>/`` (re-running reuses them and the
finished student). Needs the ``[train]`` extra. Writes ``benchmarks/seed_ensemble.{json,md}``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from recipes import int8_results  # noqa: E402
from run import fmt_mean_std, results_doc, stats, write_results  # noqa: E402

NAME = "student_seed_ensemble"
KEYS = [("accuracy", "test acc"), ("balanced_accuracy", "test bal acc"), ("macro_f1", "test macro-F1"),
        ("melanoma_sensitivity", "test mel sens"), ("roc_auc", "test ROC-AUC")]


def _teacher(run_dir: Path) -> tuple[Path, dict]:
    doc = json.loads((run_dir / "run.json").read_text())
    teachers = [m for m in doc["models"] if m["role"] == "teacher"]
    if doc.get("status") != "FINISHED" or len(teachers) != 1:
        raise SystemExit(f"{run_dir}: needs a FINISHED kdtool distill run with exactly one teacher")
    return run_dir / teachers[0]["file"], doc


def _cached_logits(model_path: Path, run, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """One teacher's logits over the run's views and val (kdtool's teacher_logits), cached in ``cache``."""
    from kdtool.data import atomic_write_bytes
    from kdtool.distill.train import teacher_logits
    from kdtool.export.convert import load_keras_model

    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return z["train"], z["val"]
    train, val = teacher_logits(load_keras_model(model_path), run)
    buf = io.BytesIO()
    np.savez(buf, train=train, val=val)
    atomic_write_bytes(cache, buf.getvalue())
    return train, val


def distil_one(doc: dict, teachers: list[Path], out: Path, data: str) -> Path:
    """Distil NAME for one run (``doc``: its run.json) from the mean soft targets of ``teachers``; returns its folder."""
    from kdtool.data import load_fdata
    from kdtool.distill.train import (SETTINGS_BEFORE_THEY_EXISTED, DistillConfig, Run, _distil, fixed_views,
                                      make_strategy, mean_soft_targets, write_summary)
    from kdtool.train_extra import require_train_extra

    # a run.json from before a setting existed means that setting's old value, not today's default
    cfg = DistillConfig(**{**SETTINGS_BEFORE_THEY_EXISTED, **doc["config"],
                           "out": str(out / f"s{doc['config']['seed']}"), "data": data})
    for key in ("student_filters", "temperatures", "alphas"):
        setattr(cfg, key, tuple(getattr(cfg, key)))
    tf = require_train_extra("benchmarks/seed_ensemble.py")
    tf.config.experimental.enable_op_determinism()
    run = Run(cfg, load_fdata(cfg.data), fresh=False)
    if run.done(NAME):
        return run.out
    run.views = fixed_views(cfg, run.fd)
    logits = [_cached_logits(t, run, run.out / f"teacher{i}_logits.npz") for i, t in enumerate(teachers)]
    cached = mean_soft_targets(logits, cfg.temperature)
    label = "+".join(str(t) for t in teachers)
    _distil(run, make_strategy(cfg.strategy), NAME, "ensemble", label, [], cached)
    write_summary(run)
    run.save("FINISHED")
    return run.out


def render(doc: dict) -> str:
    def pm(vals):
        return fmt_mean_std(stats(vals))

    rows = doc["results"]
    lines = ["# Distilling from several seeds' teachers", "", f"`{doc['command']}` — {doc['machine_line']}", "",
             f"{len(rows)} seed(s); int8 students (kdtool export, bias correction on), test split, mean ± std, %; "
             "the last row pairs them seed by seed (points).", "",
             "| student | " + " | ".join(label for _, label in KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    for which, label in (("own", "distilled from its own teacher"), ("ensemble", "distilled from all teachers")):
        lines.append(f"| {label} | " + " | ".join(pm([r[which][k] for r in rows]) for k, _ in KEYS) + " |")
    lines.append("| paired gain | " + " | ".join(pm([r["ensemble"][k] - r["own"][k] for r in rows])
                                               for k, _ in KEYS) + " |")
    lines += ["", "| seed | own: acc / bal / mel / AUC | all teachers: acc / bal / mel / AUC | train s |",
              "|---|---|---|---|"]
    for r in rows:
        cells = [" / ".join(f"{100 * r[w][k]:.1f}" for k in ("accuracy", "balanced_accuracy",
                                                          "melanoma_sensitivity", "roc_auc")) for w in ("own", "ensemble")]
        lines.append(f"| {r['seed']} | {cells[0]} | {cells[1]} | {r['train_seconds']:.0f} |")
    lines += ["", f"Wall time {doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="finished kdtool distill run folders (one teacher each)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder")
    ap.add_argument("--out", default=str(ROOT / "runs" / "seed_ensemble"), help="where the new students go")
    ap.add_argument("--json", default=str(HERE / "seed_ensemble.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "seed_ensemble.md"), help="results Markdown")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        ap.error("give at least two runs: one teacher is not an ensemble")
    for r in args.runs:
        if not (Path(r) / "run.json").is_file():
            ap.error(f"{r}: no run.json (not a kdtool distill run folder)")
    t0 = time.perf_counter()
    found = [_teacher(Path(r)) for r in args.runs]
    teachers = [t for t, _ in found]
    results = []
    for r, (_, doc) in zip(args.runs, found):
        seed = doc["config"]["seed"]
        own = [m["name"] for m in doc["models"] if m["role"] == "student"]
        folder = distil_one(doc, teachers, Path(args.out), args.data)
        rec = json.loads((folder / "run.json").read_text())["models"]
        results.append({"seed": seed, "run": r, "out": str(folder),
                        "own": int8_results(Path(r), args.data, 0.0)[own[0]],
                        "ensemble": int8_results(folder, args.data, 0.0)[NAME],
                        "train_seconds": next(m["train_seconds"] for m in rec if m["name"] == NAME)})
        print(f"  seed {seed}: done", flush=True)
    doc = results_doc("seed_ensemble.py", argv, args.data, results, t0, teachers=[str(t) for t in teachers])
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
