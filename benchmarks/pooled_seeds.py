"""Every seed that ``benchmarks/prior_shift_default.py`` pages hold, pooled: the fixed prior shifts side by side.

Each rule of issue #6 judged three fresh seeds; this page reads their finished pages (``--pages``, the JSONs,
nothing is retrained or re-exported) and pools the seeds, so a planner sees what the nine (or more) seeds say
together. It is an after-the-fact summary, not a rule: nothing here changes a default.

Per fixed ``--prior-shift`` (the shifts every page exported) and metric: the distilled and the alone
student's test mean +- std over seeds (ddof=1), the paired gain (distilled minus alone on the same seed,
the same shift and the same melanoma floor), on how many seeds the gain is positive, and how many seeds
meet issue #6's three thresholds (accuracy >= 74%, balanced accuracy >= 60%, melanoma sensitivity >= 60%).

    python benchmarks/pooled_seeds.py --pages benchmarks/prior_shift_mel70_s012.json,benchmarks/prior_shift_mel70.json,benchmarks/prior_shift_common.json
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

from prior_shift_default import ALONE, KD, METRICS, THRESHOLDS, label, meets, pick  # noqa: E402
from run import fmt_gain, fmt_mean_std, results_doc, stats, write_results  # noqa: E402


def load_pages(paths: list[str]) -> tuple[list[dict], list[dict]]:
    """The pooled result rows of ``paths`` and one record per page (path, seeds, floor, machine).

    Raises:
        SystemExit: a page that is unreadable, has no ``results`` list, or repeats a seed of an earlier page.
    """
    rows, pages, seen = [], [], {}
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
            found = doc["results"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}: not a prior_shift_default.py page ({type(exc).__name__}: {exc})")
        seeds = sorted({r["seed"] for r in found})
        again = [s for s in seeds if s in seen]
        if again:
            raise SystemExit(f"{path}: seed(s) {again} already come from {seen[again[0]]}")
        seen.update({s: path for s in seeds})
        rows += found
        pages.append({"page": str(path), "seeds": seeds, "melanoma_sensitivity": doc.get("melanoma_sensitivity"),
                      "data": doc.get("data", ""), "machine": doc.get("machine_line", "")})
    return rows, pages


def pooled(rows: list[dict], student: str = KD, baseline: str = ALONE) -> list[dict]:
    """Per fixed shift that every seed has for both students: stats, paired gains and seeds meeting targets.

    Returns:
        One dict per shift: ``shift``, ``seeds``, and per metric ``student``/``baseline``/``gain`` stats
        (:func:`run.stats`) plus ``gain_positive`` (seeds); ``meet`` {student, baseline}: seeds meeting all
        three thresholds.

    Example:
        >>> t = lambda a, b, m: {"accuracy": a, "balanced_accuracy": b, "melanoma_sensitivity": m,
        ...                      "macro_f1": 0.5, "roc_auc": 0.9}
        >>> rows = [{"seed": s, "student": n, "tau": 0.5, "export": "fixed", "test": t(a, 0.6, 0.6)}
        ...         for s in (0, 1) for n, a in ((KD, 0.75), (ALONE, 0.70))]
        >>> out = pooled(rows)[0]
        >>> out["shift"], out["meet"], round(out["accuracy"]["gain"]["mean"], 2)
        ('0.5', {'student': 2, 'baseline': 0}, 0.05)
    """
    seeds = sorted({r["seed"] for r in rows})
    shifts = sorted({label(r) for r in rows if r.get("export", "fixed") == "fixed"}, key=float)
    out = []
    for shift in shifts:
        mine, base = pick(rows, student, shift), pick(rows, baseline, shift)
        if [r["seed"] for r in mine] != seeds or [r["seed"] for r in base] != seeds:
            continue  # a shift some page did not export: pooled over fewer seeds it would mislead
        rec = {"shift": shift, "seeds": seeds,
               "meet": {"student": sum(meets(r["test"]) for r in mine), "baseline": sum(meets(r["test"]) for r in base)}}
        for k in METRICS:
            gains = [m["test"][k] - b["test"][k] for m, b in zip(mine, base)]
            rec[k] = {"student": stats(r["test"][k] for r in mine), "baseline": stats(r["test"][k] for r in base),
                      "gain": stats(gains), "gain_positive": sum(g > 0 for g in gains)}
        out.append(rec)
    return out


def render(doc: dict) -> str:
    """The Markdown page: the pages pooled, then per fixed shift and metric both students and the paired gain."""
    n = len(doc["pooled"][0]["seeds"]) if doc["pooled"] else 0
    lines = ["# Every judged seed, pooled: the distilled student against the student alone at fixed prior shifts", "",
             f"`{doc['command']}` — {doc['machine_line']} (this page only reads JSONs)", "",
             "Pages (each trained and exported where its own line says):", ""]
    lines += [f"- `{p['page']}`: seeds {', '.join(map(str, p['seeds']))}, melanoma floor "
              f"{p['melanoma_sensitivity']} on validation; {p['machine']}" for p in doc["pages"]]
    lines += ["", f"Int8, test split, {n} seeds, mean ± std (ddof=1), %. 'gain': distilled minus alone on the same "
              "seed, shift and floor; 'meet': seeds at accuracy >= 74, balanced accuracy >= 60 and melanoma "
              "sensitivity >= 60. Pooled after the fact: a summary for planning, not a rule.", "",
              "| --prior-shift | metric | distilled | alone | gain | gain > 0 |", "|---|---|---|---|---|---|"]
    for rec in doc["pooled"]:
        for k in METRICS:
            m = rec[k]
            lines.append(f"| {rec['shift']} | {k.replace('_', ' ')} | {fmt_mean_std(m['student'])} | "
                         f"{fmt_mean_std(m['baseline'])} | {fmt_gain(m['gain'])} | {m['gain_positive']} of {n} |")
        lines.append(f"| {rec['shift']} | meet all three | {rec['meet']['student']} of {n} | "
                     f"{rec['meet']['baseline']} of {n} | | |")
    thr = ", ".join(f"{k.replace('_', ' ')} >= {100 * v:.0f}%" for k, v in THRESHOLDS.items())
    lines += ["", f"Thresholds: {thr} (issue #6)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", required=True, help="Comma-separated JSON pages of benchmarks/prior_shift_default.py.")
    ap.add_argument("--json", default=str(HERE / "pooled_seeds.json"), help="Results JSON.")
    ap.add_argument("--md", default=str(HERE / "pooled_seeds.md"), help="Results Markdown.")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows, pages = load_pages([p.strip() for p in args.pages.split(",") if p.strip()])
    data = ", ".join(sorted({p["data"] for p in pages}))
    doc = results_doc("pooled_seeds.py", argv, data, rows, t0, pages=pages, pooled=pooled(rows))
    if not doc["pooled"]:
        raise SystemExit("no fixed shift was exported for both students on every seed of these pages")
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
