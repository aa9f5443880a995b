"""Should ``kdtool export`` default to ``--prior-shift auto``? ``prior_shift_default_rule.md`` applied to finished runs.

For each seed's finished ``kdtool distill`` run (``--runs``), on a hard-linked copy (``--work``/s<seed>; the
run itself is not touched), both students are exported to int8 with the melanoma floor (``--melanoma-sensitivity``,
by default 0.6, ``MEASURED_FLOOR``: export's default when these pages were measured) chosen on VALIDATION at every ``--taus`` shift and with ``--prior-shift auto``, and benched on the test split
(``benchmarks/calibrated_floor.py``'s steps with ``--floor-on val`` and no calibration folds). The rule,
committed before the runs finished, then decides on the distilled student's ``auto`` files:

1. mean test accuracy >= 74%, balanced accuracy >= 60%, melanoma sensitivity >= 60%;
2. at least two seeds meet all three on their own;
3. mean test ROC-AUC >= 92%;
4. paired by seed, balanced accuracy above the student alone's (exported the same way) by a mean margin
   larger than the larger of the two models' seed standard deviations (ddof=1). With ``--common-shift``
   (``prior_shift_common_rule.md``) the student alone's file on each seed is its fixed-shift one at the
   shift ``auto`` chose for the distilled student, not its own ``auto`` file.

    python benchmarks/prior_shift_default.py --runs R0,R1,R2 --seeds 0,1,2 [--melanoma-sensitivity 0.7]
        [--rule prior_shift_mel70_rule.md | --rule none] [--common-shift] [--work runs/psd] [--json ...] [--md ...]

``--melanoma-sensitivity 0.7`` with ``--rule prior_shift_mel70_rule.md`` applies the same four criteria to
``--prior-shift auto --melanoma-sensitivity 0.7`` (that rule's candidate); ``--rule none`` writes the
tables without a verdict (seeds no rule judges).

Every export and bench JSON is reused when present, so the tables rebuild in seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from calibrated_floor import MEASURED_FLOOR, METRICS, add_run_arguments, one_seed, runs_and_seeds  # noqa: E402
from run import fmt_mean_std, results_doc, stats, write_results  # noqa: E402


KD, ALONE = "student_efficientnet_lite0", "student_alone"
THRESHOLDS = {"accuracy": 0.74, "balanced_accuracy": 0.60, "melanoma_sensitivity": 0.60}
MIN_AUC = 0.92


def label(row: dict) -> str:
    """A row's export: its own ``label`` when it has one (another script's operating point), else ``auto`` or
    its fixed shift (``0``, ``0.25``, ...)."""
    if "label" in row:
        return row["label"]
    return "auto" if row.get("export") == "auto" else f"{row['tau']:g}"


def pick(rows: list[dict], student: str, export: str) -> list[dict]:
    """The rows of one student and export, ordered by seed."""
    return sorted((r for r in rows if r["student"] == student and label(r) == export), key=lambda r: r["seed"])


def meets(test: dict) -> bool:
    """True when one seed's test metrics reach all three of issue #6's thresholds.

    Example:
        >>> meets({"accuracy": 0.75, "balanced_accuracy": 0.61, "melanoma_sensitivity": 0.60})
        True
        >>> meets({"accuracy": 0.739, "balanced_accuracy": 0.70, "melanoma_sensitivity": 0.70})
        False
    """
    return all(test[k] >= v for k, v in THRESHOLDS.items())


def decide(rows: list[dict], student: str = KD, baseline: str = ALONE, export: str = "auto",
           common_shift: bool = False, min_meeting: int = 2) -> dict:
    """The rule's four criteria for ``student``'s ``export`` files, each with its numbers and verdict.

    Args:
        rows: one per (seed, student, export): ``seed``, ``student``, ``tau``, ``export`` and ``test`` (METRICS).
        student, baseline: the model judged and the one it must beat (paired by seed).
        export: ``auto`` or a fixed shift's label.
        common_shift: criterion 4 compares, on each seed, with ``baseline``'s FIXED-shift file at the shift
            ``student``'s file has (``prior_shift_common_rule.md``); False: with ``baseline``'s ``export``
            files, whatever shift they chose (``prior_shift_default_rule.md``).
        min_meeting: criterion 2, the seeds that must meet all three thresholds on their own (2 of 3 in every
            rule but a pooled one).

    Returns:
        ``{"criteria": [{"name", "passed", ...}], "adopt": bool, "seeds": [...]}``; ``adopt`` needs every
        criterion and the same seeds for both models.

    Example:
        >>> t = {"accuracy": 0.75, "balanced_accuracy": 0.66, "macro_f1": 0.5, "melanoma_sensitivity": 0.62,
        ...      "roc_auc": 0.93}
        >>> rows = [{"seed": s, "student": "kd", "tau": 0.5, "export": "auto", "test": t} for s in (0, 1)]
        >>> rows += [{"seed": s, "student": "alone", "tau": 0.5, "export": "auto",
        ...           "test": {**t, "balanced_accuracy": 0.60 + 0.01 * s}} for s in (0, 1)]
        >>> decide(rows, "kd", "alone")["adopt"]
        True
    """
    mine = pick(rows, student, export)
    seeds = [r["seed"] for r in mine]
    if common_shift:
        fixed = {(r["seed"], r["tau"]): r for r in rows if r["student"] == baseline and label(r) != "auto"}
        base = [fixed[(r["seed"], r["tau"])] for r in mine if (r["seed"], r["tau"]) in fixed]
        wanted = f"fixed-shift files at {student}'s shifts"
    else:
        base, wanted = pick(rows, baseline, export), f"export {export}"
    if not mine or seeds != [r["seed"] for r in base]:
        return {"seeds": seeds, "criteria": [], "adopt": False,
                "why": f"{student} and {baseline} need the same seeds with {wanted}"}
    per = {k: stats([r["test"][k] for r in mine]) for k in METRICS}
    crit = [{"name": "means reach the thresholds", "means": {k: per[k]["mean"] for k in THRESHOLDS},
             "passed": all(per[k]["mean"] >= v for k, v in THRESHOLDS.items())}]
    met = [r["seed"] for r in mine if meets(r["test"])]
    crit.append({"name": f"at least {'two' if min_meeting == 2 else min_meeting} seeds meet all three",
                 "seeds_meeting": met, "passed": len(met) >= min_meeting})
    crit.append({"name": f"mean ROC-AUC >= {100 * MIN_AUC:.0f}%", "mean": per["roc_auc"]["mean"],
                 "passed": per["roc_auc"]["mean"] >= MIN_AUC})
    gain = stats([a["test"]["balanced_accuracy"] - b["test"]["balanced_accuracy"] for a, b in zip(mine, base)])
    spread = max(per["balanced_accuracy"]["std"], stats([r["test"]["balanced_accuracy"] for r in base])["std"])
    shifts = ", ".join(f"{r['tau']:g}" for r in base)
    at = f" at the same shift ({shifts})" if common_shift else ""
    crit.append({"name": f"balanced accuracy beats {baseline}{at} beyond the seed spread", "paired_gain": gain,
                 "spread": spread, "passed": gain["mean"] > spread, "baseline_taus": [r["tau"] for r in base]})
    return {"seeds": seeds, "criteria": crit, "adopt": all(c["passed"] for c in crit)}


def table(rows: list[dict]) -> list[dict]:
    """Per (student, export): the seeds' shifts and ``stats`` (ddof=1) of every test metric."""
    out = []
    for student in (KD, ALONE):
        for export in sorted({label(r) for r in rows}, key=lambda e: (e == "auto", e)):
            mine = pick(rows, student, export)
            if mine:
                out.append({"student": student, "export": export, "taus": [r["tau"] for r in mine],
                            "size_bytes": max(r["size_bytes"] for r in mine),
                            "test": {k: stats([r["test"][k] for r in mine]) for k in METRICS},
                            "seeds_meeting": [r["seed"] for r in mine if meets(r["test"])]})
    return out


def criteria_lines(decision: dict) -> list[str]:
    """One Markdown bullet per criterion of a ``decide`` result (passed or not, with its numbers), then why
    none was judged when that is so."""
    lines = []
    for c in decision["criteria"]:
        if "means" in c:
            what = ", ".join(f"{k} {100 * v:.1f}" for k, v in c["means"].items())
        elif "seeds_meeting" in c:
            what = f"seeds meeting: {c['seeds_meeting'] or 'none'}"
        elif "paired_gain" in c:
            what = f"paired gain {fmt_mean_std(c['paired_gain'])} against a spread of {100 * c['spread']:.1f}"
        else:
            what = f"{100 * c['mean']:.1f}"
        lines.append(f"- {c['name']}: {'yes' if c['passed'] else 'NO'} ({what})")
    if decision.get("why"):
        lines.append(f"- {decision['why']}")
    return lines


def render(doc: dict) -> str:
    """The Markdown page: summary table, per-seed rows, the rule's verdict."""
    candidate, rule = doc.get("candidate", "--prior-shift auto"), doc.get("rule", "prior_shift_default_rule.md")
    title = (f"# `kdtool export {candidate}` as the default? ({rule})" if rule else
             f"# `kdtool export {candidate}` and fixed shifts (table only: no rule judges these seeds)")
    lines = [title, "",
             f"`{doc['command']}` — {doc['machine_line']}", "",
             f"Seeds {doc['seeds']}; int8, melanoma floor {100 * doc.get('melanoma_sensitivity', MEASURED_FLOOR):g}% at 95% chosen "
             "on validation, test "
             "split. Mean ± std over seeds (ddof=1), %; 'meet': seeds at accuracy >= 74, balanced accuracy >= 60 "
             "and melanoma sensitivity >= 60.", "",
             "| student | --prior-shift | per seed | test acc | test bal acc | test macro-F1 | test mel sens | "
             "test ROC-AUC | meet | bytes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in doc["table"]:
        lines.append(f"| {s['student']} | {s['export']} | {', '.join(f'{t:g}' for t in s['taus'])} | "
                     + " | ".join(fmt_mean_std(s["test"][k]) for k in METRICS)
                     + f" | {len(s['seeds_meeting'])}/{len(s['taus'])} | {s['size_bytes']:,} |")
    lines += ["", "Per seed (test, int8): acc / bal acc / mel sens; validation balanced accuracy (Keras, what auto "
              "reads) and the melanoma offset.", "",
              "| seed | student | --prior-shift | val bal acc | offset | test acc | test bal acc | test mel sens |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sorted(doc["results"], key=lambda r: (r["seed"], r["student"], label(r))):
        t = r["test"]
        shown = f"{r['tau']:g} (auto)" if label(r) == "auto" else label(r)
        lines.append(f"| {r['seed']} | {r['student']} | {shown} | {100 * r['val_balanced_accuracy']:.1f} | "
                     f"{r['offset']:+.2f} | {100 * t['accuracy']:.1f} | {100 * t['balanced_accuracy']:.1f} | "
                     f"{100 * t['melanoma_sensitivity']:.1f} |")
    if not rule:
        lines += ["", f"Wall time {doc['wall_seconds']:.0f} s.", ""]
        return "\n".join(lines)
    d = doc["decision"]
    keep = "keep --prior-shift 0" if candidate == "--prior-shift auto" else "keep export's defaults"
    lines += ["", f"## Verdict: {f'adopt {candidate}' if d['adopt'] else keep}", "", *criteria_lines(d)]
    for export, lead in doc["fixed_leads"].items():
        lines.append(f"- fixed --prior-shift {export} (table only, never adopted by this rule): "
                     f"{'would pass' if lead else 'would fail'}")
    lines += ["", f"Wall time {doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(ap)
    ap.add_argument("--variant", default="d96_la_v8e120_c2", help="recipes.py variant of the runs (recorded)")
    ap.add_argument("--taus", default="0,0.25,0.5", help="comma-separated fixed --prior-shift values")
    ap.add_argument("--melanoma-sensitivity", type=float, default=None,
                    help=f"kdtool export --melanoma-sensitivity for every file (default: {MEASURED_FLOOR:g}, export's when these pages were measured; another value "
                         "exports into folders ending _mel<value>)")
    ap.add_argument("--rule", default="prior_shift_default_rule.md",
                    help="the rule file the page cites for its verdict; 'none': a table only, no verdict")
    ap.add_argument("--common-shift", action="store_true",
                    help="criterion 4 at a common shift: the student alone's fixed-shift file at the shift auto chose "
                         "for the distilled student on each seed (prior_shift_common_rule.md)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "psd"), help="folder for the linked copies")
    ap.add_argument("--json", default=str(HERE / "prior_shift_default.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "prior_shift_default.md"), help="results Markdown")
    args = ap.parse_args(argv)
    runs, seeds = runs_and_seeds(ap, args)
    taus = [float(t) for t in args.taus.split(",") if t.strip()]
    t0 = time.perf_counter()
    target = args.melanoma_sensitivity
    rows = []
    for run, seed in zip(runs, seeds):
        rows += one_seed(args.data, run, seed, None, Path(args.work) / f"s{seed}", args.variant, args.teachers,
                         0, taus, "val", target)
    leads = {f"{t:g}": decide(rows, export=f"{t:g}")["adopt"] for t in taus if t}
    doc = results_doc("prior_shift_default.py", argv, args.data, rows, t0, variant=args.variant,
                      teachers=args.teachers, seeds=seeds, table=table(rows),
                      decision=decide(rows, common_shift=args.common_shift), common_shift=args.common_shift,
                      melanoma_sensitivity=MEASURED_FLOOR if target is None else target,
                      fixed_leads=leads, rule="" if args.rule == "none" else args.rule,
                      candidate="--prior-shift auto" + ("" if target is None else f" --melanoma-sensitivity {target:g}"))
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
