"""Test-time augmentation on exported students: what ``kdtool bench --tta`` buys, and what it costs.

For each .tflite file given (e.g. the int8 students of three seeds), every TTA mode
(``none``, ``flip``, ``d4``) is benched on the validation and the test split through kdtool
bench's own code path (:func:`kdtool.bench.run.bench_model`, one thread, batch 1): accuracy,
balanced accuracy, macro-F1, melanoma sensitivity and specificity, ROC-AUC and ECE, and the
latency per image (median invoke time x views). The tables give mean ± std over the files and
the paired difference of each mode to ``none`` (same file), in points. Light install only (no
TensorFlow).

    python benchmarks/tta.py runs/recipes/d96_la_v8e120_efficientnet_lite0/s*/export/student_efficientnet_lite0.int8.tflite
        [--data ../shared/data/ham10000] [--modes none,flip,d4] [--runs 200]
        [--json benchmarks/tta.json] [--md benchmarks/tta.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from kdtool.bench.tta import list_tta_modes  # noqa: E402
from kdtool.data import load_fdata  # noqa: E402
from run import fmt_mean_std, results_doc, stats, write_results  # noqa: E402

#: (record key or path, label) of the quality columns, all fractions.
METRICS = [("accuracy", "acc"), ("balanced_accuracy", "bal acc"), ("macro.f1", "macro-F1"),
           ("melanoma_sensitivity", "mel sens"), ("melanoma_specificity", "mel spec"), ("roc_auc_macro", "ROC-AUC"),
           ("ece", "ECE")]


def metric(rec: dict, key: str) -> float | None:
    """``rec[key]``, where ``key`` may name a nested value as ``outer.inner``.

    Example:
        >>> metric({"macro": {"f1": 0.5}, "accuracy": 0.7}, "macro.f1"), metric({"accuracy": 0.7}, "accuracy")
        (0.5, 0.7)
    """
    for part in key.split("."):
        rec = (rec or {}).get(part)
    return rec


def bench_file(path: Path, fd, modes: list[str], runs: int) -> dict:
    """Every mode of one file on val and test: {mode: {"val": record, "test": record}} (kdtool bench records)."""
    from kdtool.bench.device import device_facts
    from kdtool.bench.run import SplitData, bench_model
    from kdtool.bench.runtime import select_runtime

    runtime = select_runtime()
    device = device_facts(runtime)
    splits = {split: SplitData.from_fdata(fd, split) for split in ("val", "test")}
    out = {}
    for mode in modes:
        out[mode] = {}
        for split, data in splits.items():
            rec, _ = bench_model(path, data, runtime, runs=runs if split == "test" else 0, warmup=20, device=device,
                                 tta=mode)  # fmt: skip
            out[mode][split] = rec
        print(f"  {path}: {mode} done", flush=True)
    return out


def per_image_ms(rec: dict) -> float | None:
    """Median invoke time x views: the latency of one image with the record's TTA mode."""
    median = (rec.get("latency_ms") or {}).get("median")
    return None if median is None else median * rec["tta_views"] / rec["batch"]


def summarise(results: list[dict], modes: list[str]) -> dict:
    """Per mode and split: stats over files of each metric, of its paired difference to ``none``, and of the
    per-image latency (test split)."""
    out = {}
    for mode in modes:
        row = {}
        for split in ("val", "test"):
            for key, _ in METRICS:
                vals = [metric(r["modes"][mode][split], key) for r in results]
                row[f"{split}_{key}"] = stats(vals)
                if "none" in modes and mode != "none":
                    base = [metric(r["modes"]["none"][split], key) for r in results]
                    row[f"{split}_{key}_vs_none"] = stats(
                        v - b for v, b in zip(vals, base) if v is not None and b is not None)
        row["ms_per_image"] = stats(per_image_ms(r["modes"][mode]["test"]) for r in results)
        out[mode] = row
    return out


def render(doc: dict) -> str:
    modes, summ = doc["modes"], doc["summary"]
    lines = ["# Test-time augmentation (kdtool bench --tta)", "",
             f"`{doc['command']}` — {doc['machine_line']}", "",
             f"{len(doc['results'])} model file(s); data `{doc['data']}`. %, mean ± std over the files; "
             "\"vs none\": paired difference (same file), points. ms/image: median invoke x views, 1 thread, "
             "batch 1, on the machine above.", ""]
    for split in ("test", "val"):
        lines += [f"{split.capitalize()} split:", "",
                  "| --tta | " + " | ".join(label for _, label in METRICS) + (" | ms/image |" if split == "test" else " |"),
                  "|---|" + "---|" * (len(METRICS) + (split == "test"))]
        for mode in modes:
            row = summ[mode]
            cells = [fmt_mean_std(row[f"{split}_{key}"]) for key, _ in METRICS]
            ms = row["ms_per_image"]
            lines.append(f"| {mode} | " + " | ".join(cells)
                         + (f" | {ms['mean']:.3f} |" if split == "test" and ms["mean"] is not None
                            else (" | - |" if split == "test" else " |")))
        for mode in modes:
            if mode == "none" or f"{split}_accuracy_vs_none" not in summ[mode]:
                continue
            cells = [fmt_mean_std(summ[mode][f"{split}_{key}_vs_none"]) for key, _ in METRICS]
            lines.append(f"| {mode} vs none | " + " | ".join(cells) + (" | |" if split == "test" else " |"))
        lines.append("")
    lines += ["Per file (test split, acc / bal acc / mel sens / ROC-AUC):", "",
              "| file | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for r in doc["results"]:
        cells = [" / ".join(f"{100 * metric(r['modes'][m]['test'], k):.1f}"
                            for k in ("accuracy", "balanced_accuracy", "melanoma_sensitivity", "roc_auc_macro"))
                 for m in modes]
        lines.append(f"| `{r['model']}` | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help=".tflite files written by kdtool export")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder.")
    ap.add_argument("--modes", default=",".join(list_tta_modes()),
                    help=f"comma-separated TTA modes, from: {', '.join(list_tta_modes())} (default all)")
    ap.add_argument("--runs", type=int, default=200, help="timed invokes per file and mode on test (0: no latency)")
    ap.add_argument("--json", default=str(HERE / "tta.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "tta.md"), help="results Markdown")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in list_tta_modes()]
    if bad or not modes:
        ap.error(f"unknown TTA mode(s) {', '.join(bad) or '(none given)'}; choose from: {', '.join(list_tta_modes())}")
    if args.runs < 0:
        ap.error(f"--runs must be >= 0, got {args.runs}")
    missing = [m for m in args.models if not Path(m).is_file()]
    if missing:
        ap.error(f"no such model file: {missing[0]}")
    fd = load_fdata(args.data, splits=("val", "test"))
    t0 = time.perf_counter()
    results = [{"model": m, "modes": bench_file(Path(m), fd, modes, args.runs)} for m in args.models]
    slim = [{"model": r["model"],
             "modes": {mode: {split: {k: metric(rec, k) for k, _ in METRICS} | {"ms_per_image": per_image_ms(rec)}
                              for split, rec in by_split.items()} for mode, by_split in r["modes"].items()}}
            for r in results]
    doc = results_doc("tta.py", argv, args.data, slim, t0, modes=modes, summary=summarise(results, modes))
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
