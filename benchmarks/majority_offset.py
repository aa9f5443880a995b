"""Should ``kdtool export`` default to ``--majority-offset C``? ``majority_offset_rule.md`` applied to finished runs.

``--prior-shift TAU`` adds ``TAU * log(train class frequencies)`` to every logit: nevi (67% of HAM10000)
gain on every other class, and the rare classes (dermatofibroma, vascular lesions, actinic keratoses)
lose the most, which is where balanced accuracy goes. ``--majority-offset C`` raises the most frequent
class's logit only: the accuracy that a shift buys comes mostly from nevi, and the rare classes keep their
decisions among themselves.

For each seed's finished ``kdtool distill`` run (``--runs``), on a hard-linked copy (``--work``/s<seed>; the run
itself is not touched), both students are exported to int8 at every ``--offsets`` C (``--prior-shift 0``,
``--melanoma-sensitivity`` floor chosen on validation after the offset) and benched on the test split. With a
``--rule``, the candidate C is judged by ``prior_shift_default.py``'s four criteria, the student alone exported
the same way (the same C and floor) being the baseline of criterion 4:

1. mean test accuracy >= 74%, balanced accuracy >= 60%, melanoma sensitivity >= 60%;
2. at least two seeds meet all three on their own;
3. mean test ROC-AUC >= 92%;
4. paired by seed, balanced accuracy above the student alone's by a mean margin larger than the larger of the
   two models' seed standard deviations (ddof=1).

    python benchmarks/majority_offset.py --runs R9,R10,R11 --seeds 9,10,11 --offsets 0,0.5,1,1.25,1.5 \\
        --candidate 1.25 --melanoma-sensitivity 0.7 [--rule majority_offset_rule.md | --rule none] \\
        [--adopts "what the rule adopts"] [--work runs/maj] [--json ...] [--md ...]

Every export and bench JSON is reused when present, so the tables rebuild in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from calibrated_floor import METRICS, add_run_arguments, kdtool, linked_copy, runs_and_seeds, test_metrics  # noqa: E402
from prior_shift_default import ALONE, KD, criteria_lines, decide, table  # noqa: E402
from run import fmt_mean_std, results_doc, write_results  # noqa: E402


def one_seed(data: str, run: Path, seed: int, work: Path, offsets: list[float], target: float) -> list[dict]:
    """Export both students of one run at each majority offset (floor ``target`` on validation) and bench them on
    test (both reused when done); one row per (student, offset)."""
    work.parent.mkdir(parents=True, exist_ok=True)
    linked_copy(run, work)
    log = work / "majority_offset.log"
    rows = []
    for c in offsets:
        out = work / f"export_maj{c:g}_mel{target:g}"
        bench = out / "bench_test.json"
        if not bench.is_file():
            kdtool("export", str(work), "--floor-on", "val", "--prior-shift", "0", "--majority-offset", f"{c:g}",
                   "--melanoma-sensitivity", f"{target:g}", "--out", str(out), log=log, ok=(0, 3))
            kdtool("bench", str(out), "--data", data, "--split", "test", "--runs", "0", "--json", str(bench), log=log)
        for rec in json.loads(bench.read_text()):
            side = json.loads((out / rec["model"]).with_suffix(".json").read_text())
            point = side["operating_point"]
            rows.append({"seed": seed, "student": side["name"], "tau": point["prior_shift"], "label": f"{c:g}",
                         "majority_offset": (point.get("majority_offset") or {}).get("offset", 0.0),
                         "offset": point["melanoma_sensitivity"].get("offset"),
                         "val_balanced_accuracy": side["check"]["keras"]["balanced_accuracy"],
                         "size_bytes": rec["size_bytes"], "int8_gate_passed": side["check"]["passed"],
                         "test": test_metrics(rec)})
    return rows


def render(doc: dict) -> str:
    """The Markdown page: summary table per (student, offset), per-seed rows, the verdict."""
    rule = doc["rule"]
    adopts = doc.get("adopts") or (f"--majority-offset {doc['candidate']:g} "
                                   f"--melanoma-sensitivity {doc['melanoma_sensitivity']:g}")
    title = ((f"# Adopt `{doc['adopts']}`? ({rule})" if doc.get("adopts") else
              f"# `kdtool export --majority-offset {doc['candidate']:g}` as the default? ({rule})") if rule else
             "# `kdtool export --majority-offset C` (table only: no rule judges these seeds)")
    lines = [title, "", f"`{doc['command']}` — {doc['machine_line']}", "",
             f"Seeds {doc['seeds']}; int8, `--prior-shift 0`, melanoma floor {100 * doc['melanoma_sensitivity']:g}% at "
             "95% chosen on validation after the offset, test split. Mean ± std over seeds (ddof=1), %; 'meet': "
             "seeds at accuracy >= 74, balanced accuracy >= 60 and melanoma sensitivity >= 60.", "",
             "| student | --majority-offset | test acc | test bal acc | test macro-F1 | test mel sens | test ROC-AUC "
             "| meet | bytes |", "|---|---|---|---|---|---|---|---|---|"]
    for s in doc["table"]:
        lines.append(f"| {s['student']} | {s['export']} | " + " | ".join(fmt_mean_std(s["test"][k]) for k in METRICS)
                     + f" | {len(s['seeds_meeting'])}/{len(s['taus'])} | {s['size_bytes']:,} |")
    lines += ["", "Per seed (test, int8): acc / bal acc / mel sens; validation balanced accuracy (Keras) and the "
              "melanoma offset the floor added.", "",
              "| seed | student | --majority-offset | val bal acc | mel offset | test acc | test bal acc | test mel sens |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sorted(doc["results"], key=lambda r: (r["seed"], r["student"], float(r["label"]))):
        t = r["test"]
        lines.append(f"| {r['seed']} | {r['student']} | {r['label']} | {100 * r['val_balanced_accuracy']:.1f} | "
                     f"{r['offset']:+.2f} | {100 * t['accuracy']:.1f} | {100 * t['balanced_accuracy']:.1f} | "
                     f"{100 * t['melanoma_sensitivity']:.1f} |")
    if rule:
        d = doc["decision"]
        verdict = (f"adopt {adopts}" if d["adopt"] else
                   "keep the defaults" if doc.get("adopts") else "keep export's defaults")
        lines += ["", f"## Verdict: {verdict}", "", *criteria_lines(d)]
    lines += ["", f"Wall time {doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(ap)
    ap.add_argument("--offsets", default="0,0.5,1,1.25,1.5", help="comma-separated --majority-offset values (>= 0)")
    ap.add_argument("--candidate", type=float, default=1.25, help="the offset the rule judges (one of --offsets)")
    ap.add_argument("--melanoma-sensitivity", type=float, default=0.7, help="kdtool export --melanoma-sensitivity")
    ap.add_argument("--rule", default="majority_offset_rule.md",
                    help="the rule file the page cites for its verdict; 'none': a table only, no verdict")
    ap.add_argument("--adopts", default="",
                    help="what the rule adopts, as the page's title and verdict name it (default: the export options "
                         "--majority-offset CANDIDATE --melanoma-sensitivity F)")
    ap.add_argument("--min-meeting", type=int, default=2,
                    help="criterion 2: seeds that must meet all three thresholds on their own (a pooled rule: more)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "maj"), help="folder for the linked copies")
    ap.add_argument("--json", default=str(HERE / "majority_offset.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "majority_offset.md"), help="results Markdown")
    args = ap.parse_args(argv)
    runs, seeds = runs_and_seeds(ap, args)
    try:
        offsets = [float(c) for c in args.offsets.split(",") if c.strip()]
    except ValueError:
        ap.error(f"--offsets must be comma-separated numbers, got {args.offsets!r}")
    if not offsets or any(c < 0 for c in offsets):
        ap.error(f"--offsets must be numbers >= 0, got {args.offsets!r}")
    if args.rule != "none" and args.candidate not in offsets:
        ap.error(f"--candidate {args.candidate:g} must be one of --offsets ({args.offsets})")
    if not 1 <= args.min_meeting <= max(len(seeds), 2):  # 2, the default, judges a rule short of seeds as failed
        ap.error(f"--min-meeting must lie in [1, {len(seeds)}] (the number of seeds), got {args.min_meeting}")
    if not 0.0 < args.melanoma_sensitivity <= 1.0:
        ap.error(f"--melanoma-sensitivity must lie in (0, 1], got {args.melanoma_sensitivity:g}")
    t0 = time.perf_counter()
    rows = []
    for run, seed in zip(runs, seeds):
        rows += one_seed(args.data, run, seed, Path(args.work) / f"s{seed}", offsets, args.melanoma_sensitivity)
    rule = "" if args.rule == "none" else args.rule
    doc = results_doc("majority_offset.py", argv, args.data, rows, t0, seeds=seeds, table=table(rows),
                      decision=decide(rows, KD, ALONE, export=f"{args.candidate:g}",
                                      min_meeting=args.min_meeting) if rule else None,
                      candidate=args.candidate, melanoma_sensitivity=args.melanoma_sensitivity, rule=rule,
                      offsets=offsets, adopts=args.adopts)
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
