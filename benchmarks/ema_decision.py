"""Apply benchmarks/ema_rule.md to a recipes.py result: does ``kdtool distill --ema`` become the default?

Reads the JSON that ``recipes.py --variants d96_la_v8e120,d96_la_v8e120_ema ... --int8
--melanoma-sensitivity 0.6`` wrote (per-seed paired differences of the int8 files, test split),
checks that each EMA run's raw-weight validation curve (``val_balanced_accuracy_raw`` in its
students' history.csv) equals the baseline run's curve epoch by epoch (the pairing), and writes the
verdict as Markdown and JSON.

Several ``--recipes`` files (say, seeds 0 and 1 from one machine and seed 2 from another) are
pooled seed by seed: each pair of runs stays on one machine, which is what the pairing needs.

Example:
    python benchmarks/ema_decision.py --recipes benchmarks/recipes_ema.json --md benchmarks/ema_decision.md
    python benchmarks/ema_decision.py --recipes benchmarks/recipes_ema.json --recipes benchmarks/recipes_ema_s2.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from recipes import run_folder  # noqa: E402
from run import write_results  # noqa: E402

BASE, EMA = "d96_la_v8e120", "d96_la_v8e120_ema"
STUDENTS = ("student_efficientnet_lite0", "student_alone")
DECIDES = "student_efficientnet_lite0"
KEYS = [("int8_balanced_accuracy", "bal acc"), ("int8_accuracy", "acc"),
        ("int8_melanoma_sensitivity", "mel sens"), ("int8_roc_auc", "ROC-AUC")]


def _column(path: Path, name: str) -> list[float]:
    with open(path, newline="") as fh:
        return [float(row[name]) for row in csv.DictReader(fh) if row.get(name) not in (None, "")]


def pairing(root: Path, teachers: str, seeds: list[int]) -> dict:
    """Largest |raw EMA-run curve - baseline curve| per seed and student (None where a file is missing)."""
    out = {}
    for seed in seeds:
        for student in STUDENTS:
            base = run_folder(root, BASE, teachers, seed) / student / "history.csv"
            ema = run_folder(root, EMA, teachers, seed) / student / "history.csv"
            key = f"s{seed} {student}"
            if not (base.is_file() and ema.is_file()):
                out[key] = None
                continue
            a, b = _column(base, "val_balanced_accuracy"), _column(ema, "val_balanced_accuracy_raw")
            n = min(len(a), len(b))
            out[key] = {"epochs": n, "max_abs_diff": max((abs(x - y) for x, y in zip(a[:n], b[:n])), default=None)}
    return out


def pool(docs: list[dict], names: list[str], variant: str = EMA) -> dict:
    """One recipes-like doc whose per-seed paired values of ``variant`` (against the baseline) are those
    of ``docs`` together, seed by seed.

    Raises:
        ValueError: naming the file, when a seed is in two files, the files held melanoma sensitivity
            at different targets, or a file's values do not line up with its seeds.
    """
    seeds, machines, values = [], {}, {s: {f"{k}_vs_baseline": {"values": []} for k, _ in KEYS} for s in STUDENTS}
    mel = docs[0].get("melanoma_sensitivity")
    for doc, name in zip(docs, names):
        if doc.get("melanoma_sensitivity") != mel:
            raise ValueError(f"{name}: --melanoma-sensitivity {doc.get('melanoma_sensitivity')}, "
                             f"the first file has {mel}")
        twice = sorted(set(doc["seeds"]) & set(seeds))
        if twice:
            raise ValueError(f"{name}: seed(s) {twice} are in an earlier file too")
        for student in STUDENTS:
            row = doc["variants"][variant]["models"][student]
            for key, _ in KEYS:
                got = row[f"{key}_vs_baseline"]["values"]
                if len(got) != len(doc["seeds"]):
                    raise ValueError(f"{name}: {student} has {len(got)} paired {key} values for seeds {doc['seeds']}")
                values[student][f"{key}_vs_baseline"]["values"] += got
        seeds += doc["seeds"]
        m = doc.get("machine") or {}
        for seed in doc["seeds"]:
            machines[seed] = f"{m.get('cpu_model', '?')} ({m.get('cpu_family_model', '?')})"
    return {"command": "; ".join(d["command"] for d in docs), "seeds": seeds, "melanoma_sensitivity": mel,
            "machines": machines, "variants": {variant: {"models": values}}}


def load_pooled(ap: argparse.ArgumentParser, names: list[str], variant: str = EMA) -> dict:
    """Read the recipes.py JSONs ``names`` and ``pool`` them; a file that is unreadable, lacks ``variant``
    against the baseline or --int8, or does not pool ends in ``ap.error`` (one line, exit 2)."""
    docs = []
    for name in names:
        try:
            doc = json.loads(Path(name).read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"{name}: cannot read a recipes.py JSON ({exc})")
        if not doc.get("int8") or variant not in doc.get("variants", {}) or doc.get("baseline") != BASE:
            ap.error(f"{name}: needs recipes.py --variants {BASE},{variant} ... --int8")
        docs.append(doc)
    try:
        return pool(docs, names, variant)
    except ValueError as exc:
        ap.error(str(exc))


def decide(doc: dict) -> dict:
    """The rule of ema_rule.md on the distilled student's paired int8 test differences."""
    row = doc["variants"][EMA]["models"][DECIDES]
    d = {k: row[f"{k}_vs_baseline"]["values"] for k, _ in KEYS}
    mean = {k: sum(v) / len(v) for k, v in d.items()}
    checks = {
        "balanced accuracy: mean gain > 0 and at least 2 of 3 seeds gain":
            mean["int8_balanced_accuracy"] > 0 and sum(v > 0 for v in d["int8_balanced_accuracy"]) >= 2,
        "accuracy: mean change >= 0": mean["int8_accuracy"] >= 0,
        "melanoma sensitivity: mean change >= -2 points": mean["int8_melanoma_sensitivity"] >= -0.02,
        "ROC-AUC: mean change >= -0.3 points": mean["int8_roc_auc"] >= -0.003,
    }
    return {"paired": d, "mean": mean, "checks": checks, "adopt": all(checks.values())}


def render(doc: dict, verdict: dict, pairs: dict, command: str) -> str:
    seeds, machines = doc["seeds"], doc.get("machines") or {}
    lines = ["# Does `--ema 0.999` become the default? (benchmarks/ema_rule.md)", "", f"`{command}`", "",
             f"From `{doc['command']}`.", "",
             "Paired by seed, EMA minus baseline, int8 files exported as kdtool did by default then "
             f"(`--melanoma-sensitivity {doc.get('melanoma_sensitivity')}`, no majority offset), test split, "
             "points:", ""]
    if len(set(machines.values())) > 1:  # each seed's pair of runs is on one machine; say which
        lines += [", ".join(f"seed {s}: {machines[s]}" for s in seeds) + ".", ""]
    lines += ["| student | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
              "|---|---|" + "---|" * (len(seeds) + 1)]
    for student in STUDENTS:
        row = doc["variants"][EMA]["models"][student]
        for key, label in KEYS:
            vals = row[f"{key}_vs_baseline"]["values"]
            lines.append(f"| {student} | {label} | " + " | ".join(f"{v * 100:+.1f}" for v in vals)
                         + f" | {sum(vals) / len(vals) * 100:+.1f} |")
    lines += ["", "The rule (distilled student only):", ""]
    lines += [f"- {'met' if ok else 'NOT met'}: {name}" for name, ok in verdict["checks"].items()]
    lines += ["", f"**Verdict: {'adopt --ema 0.999 as the default' if verdict['adopt'] else 'the default stays 0 (off)'}.**",
              "", "Pairing check (raw-weight validation balanced accuracy of the EMA run against the baseline run's, "
              "largest absolute difference over the epochs both logged):", ""]
    for key, p in pairs.items():
        lines.append(f"- {key}: " + ("missing here (the runs are not under --root on this machine)" if p is None
                                     else f"{p['max_abs_diff']:.6f} over {p['epochs']} epochs"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", required=True, action="append",
                    help="recipes.py JSON with both variants and --int8; repeat it to pool seeds from several files.")
    ap.add_argument("--root", default=str(ROOT / "runs" / "recipes"), help="recipes.py's --root (for the pairing check).")
    ap.add_argument("--teachers", default="efficientnet_lite0", help="recipes.py's --teachers.")
    ap.add_argument("--json", default=str(HERE / "ema_decision.json"), help="Verdict JSON.")
    ap.add_argument("--md", default=str(HERE / "ema_decision.md"), help="Verdict Markdown.")
    args = ap.parse_args(argv)
    doc = load_pooled(ap, args.recipes)
    verdict = decide(doc)
    pairs = pairing(Path(args.root), args.teachers.replace(",", "+"), doc["seeds"])
    command = " ".join(["python benchmarks/ema_decision.py", *(argv if argv is not None else sys.argv[1:])])
    out = {"command": command, "recipes": doc["command"], "machines": doc["machines"], "verdict": verdict,
           "pairing": pairs}
    write_results(out, args.json, args.md, render(doc, verdict, pairs, command))
    print(f"verdict: {'adopt' if verdict['adopt'] else 'keep 0'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
