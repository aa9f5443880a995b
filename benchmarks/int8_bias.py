"""int8 export with and without output bias correction, over the students of finished runs.

For each run folder it runs ``kdtool export RUN --quantize int8 --no-bias-correction`` and
``kdtool export RUN --quantize int8`` (bias correction is the default) into a work folder, then
compares the two checks (validation split, Keras minus TFLite) student by student: accuracy drop,
balanced-accuracy drop, top-1 agreement. Finished exports in the work folder are reused.

A student that appears in two runs (the recipes share their student trained alone) is counted
once: students are matched by their Keras validation results and their uncorrected export's.

    python benchmarks/int8_bias.py runs/default96 runs/recipes/cos_views4_efficientnet_lite0/s0 ...
        [--work runs/int8_bias] [--json benchmarks/int8_bias.json] [--md benchmarks/int8_bias.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = {"off": ["--no-bias-correction"], "on": []}


def export(run: Path, out: Path, flags: list[str], data: str | None) -> None:
    """Run ``kdtool export`` unless ``out`` holds a finished export (its DONE marker)."""
    if (out / "DONE").is_file():
        return
    cmd = [sys.executable, "-m", "kdtool", "export", str(run), "--quantize", "int8", "--out", str(out),
           "--majority-offset", "0", "--melanoma-sensitivity", "0", *flags]  # the model as trained, as measured
    if data:
        cmd += ["--data", data]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 3):  # 3: a quality gate failed, the files are written
        sys.exit(f"{run}: kdtool export failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    (out / "DONE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def _key(side: dict) -> tuple:
    k = side["check"]["keras"]
    return (side["name"].startswith("student_alone"), round(k["accuracy"], 6), round(k["balanced_accuracy"], 6),
            round(k["macro_f1"], 6), round(side["check"]["max_abs_logit_diff"], 5))


def compare(run: Path, work: Path) -> list[dict]:
    """One row per student of ``run``: the off and on checks side by side."""
    rows = []
    for on_file in sorted((work / "on").glob("*.int8.json")):
        on = json.loads(on_file.read_text())
        off = json.loads((work / "off" / on_file.name).read_text())
        if on.get("role") == "teacher":
            continue
        corr = on["converter"].get("bias_correction") or {}
        rows.append({
            "run": str(run), "model": on["name"], "key": _key(off),
            "off": {k: off["check"][k] for k in ("accuracy_drop", "balanced_accuracy_drop", "agreement")},
            "on": {k: on["check"][k] for k in ("accuracy_drop", "balanced_accuracy_drop", "agreement")},
            "applied": corr.get("applied"),
            "largest_mean_logit_error": max((abs(v) for v in corr.get("mean_error_before", [])), default=None),
        })
    return rows


def summarize(rows: list[dict]) -> dict:
    """Mean, max and gate counts of the off and on drops."""
    out = {"students": len(rows)}
    for mode in MODES:
        acc = [r[mode]["accuracy_drop"] for r in rows]
        bal = [r[mode]["balanced_accuracy_drop"] for r in rows]
        agree = [r[mode]["agreement"] for r in rows]
        out[mode] = {
            "mean_accuracy_drop": round(statistics.fmean(acc), 3), "max_accuracy_drop": max(acc),
            "over_1pt": sum(a > 1.0 for a in acc), "over_half_pt": sum(a > 0.5 for a in acc),
            "mean_balanced_accuracy_drop": round(statistics.fmean(bal), 3),
            "mean_agreement": round(statistics.fmean(agree), 4), "min_agreement": min(agree),
        }
    return out


def render(rows: list[dict], summary: dict, command: str) -> str:
    lines = ["# int8 output bias correction", "", f"`{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", "Validation split (852 images, one image = 0.12 points); drops in points, Keras minus int8 TFLite; "
             "off = `--no-bias-correction`, on = the default.", "",
             "| run | student | acc drop off -> on | bal acc drop off -> on | agreement % off -> on | "
             "largest mean logit error |", "|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["off"], r["on"]
        err = r["largest_mean_logit_error"]
        lines.append(f"| {r['run']} | {r['model']} | {a['accuracy_drop']:+.2f} -> {b['accuracy_drop']:+.2f} | "
                     f"{a['balanced_accuracy_drop']:+.2f} -> {b['balanced_accuracy_drop']:+.2f} | "
                     f"{100 * a['agreement']:.1f} -> {100 * b['agreement']:.1f} | "
                     f"{'-' if err is None else f'{err:.3f}'} |")
    s = summary
    lines += ["", f"{s['students']} distinct students:", "", "| | off | on |", "|---|---|---|"]
    for label, key, fmt in (("mean accuracy drop", "mean_accuracy_drop", "{:+.2f}"),
                            ("largest accuracy drop", "max_accuracy_drop", "{:+.2f}"),
                            ("students over 1.0 point (the default --max-drop)", "over_1pt", "{}"),
                            ("students over 0.5 point", "over_half_pt", "{}"),
                            ("mean balanced accuracy drop", "mean_balanced_accuracy_drop", "{:+.2f}"),
                            ("mean top-1 agreement", "mean_agreement", "{:.3f}"),
                            ("lowest top-1 agreement", "min_agreement", "{:.3f}")):
        lines.append(f"| {label} | {fmt.format(s['off'][key])} | {fmt.format(s['on'][key])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished kdtool distill run folders")
    p.add_argument("--work", type=Path, default=Path("runs/int8_bias"), help="where the exports go (reused)")
    p.add_argument("--data", default=None, help="FData folder [default: each run.json's]")
    p.add_argument("--json", type=Path, default=Path("benchmarks/int8_bias.json"), help="raw rows and summary")
    p.add_argument("--md", type=Path, default=Path("benchmarks/int8_bias.md"), help="Markdown table")
    args = p.parse_args(argv)
    rows, seen = [], set()
    for i, run in enumerate(args.runs, 1):
        if not (run / "run.json").is_file():
            p.error(f"{run}: not a kdtool run folder (no run.json)")
        work = args.work / str(run).strip("/").replace("/", "_")
        for mode, flags in MODES.items():
            print(f"[{i}/{len(args.runs)}] {run}: export, bias correction {mode}", flush=True)
            export(run, work / mode, flags, args.data)
        for row in compare(run, work):
            if row["key"] not in seen:
                seen.add(row["key"])
                rows.append(row)
    summary = summarize(rows)
    command = "python benchmarks/int8_bias.py " + " ".join(str(r) for r in args.runs)
    for r in rows:
        del r["key"]
    args.json.write_text(json.dumps({"command": command, "summary": summary, "rows": rows}, indent=1) + "\n")
    args.md.write_text(render(rows, summary, command))
    print(render(rows, summary, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
