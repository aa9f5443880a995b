"""Training recipes for the student, compared over seeds: which defaults does the data support?

    python benchmarks/recipes.py                               # every variant, seeds 0,1,2, student alone
    python benchmarks/recipes.py --variants views4,cos_views4  # some of them
    python benchmarks/recipes.py --teachers efficientnet_lite0 # with a distilled student too (slower)

Each (variant, seed) is one ``kdtool distill`` run in its own process with its own ``--out``
(``runs/recipes/<variant>/s<seed>``, with ``_<teachers>`` after the variant when there are
teachers); re-running reuses the finished models, so the tables can be rebuilt for free.
Every variant spells out all the options it compares, so a later change of kdtool's
defaults does not change what a variant means.

Writes ``benchmarks/recipes.json`` and ``benchmarks/recipes.md``: per variant and model, test
accuracy, balanced accuracy, macro-F1, melanoma sensitivity and ROC-AUC, validation balanced
accuracy and the kept epoch, as mean +- std over seeds (ddof=1), plus the paired difference
to the first variant (same model, same seed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # kdtool from this checkout, and run.py's helpers

from kdtool.data import atomic_write_text  # noqa: E402
from run import machine_facts, machine_line, rnd, stats  # noqa: E402

# the teacher settings these variants were measured with (kdtool's defaults until the 96 px result)
_TEACHER = ["--image-size", "32", "--temperature", "4", "--alpha", "0.3"]
_CONSTANT = ["--lr-schedule", "constant", *_TEACHER]
_COSINE = ["--lr-schedule", "cosine", *_TEACHER]
# the 96 px recipe (kdtool's defaults since the three-seed cosine measurement), spelled out
_D96 = ["--augment", "--views", "4", "--lr-schedule", "cosine", "--image-size", "96", "--temperature", "2",
        "--alpha", "0.5", "--epochs", "20", "--teacher-epochs", "5"]
VARIANTS = {  # name -> (what it is, kdtool distill options)
    "views4": ("4 fixed augmented views (cached-KD style), constant lr, 15 epochs",
               ["--balance", "weights", "--augment", "--views", "4", *_CONSTANT, "--epochs", "15"]),
    "online": ("a fresh augmentation every step, constant lr, 15 epochs",
               ["--balance", "weights", "--augment", "--views", "1", *_CONSTANT, "--epochs", "15"]),
    "noaug": ("no augmentation, constant lr, 15 epochs",
              ["--balance", "weights", "--no-augment", *_CONSTANT, "--epochs", "15"]),
    "sampling_online": ("class-balanced sampling instead of class weights, fresh augmentation, 15 epochs",
                        ["--balance", "sampling", "--augment", "--views", "1", *_CONSTANT, "--epochs", "15"]),
    "cos_views4": ("4 fixed views, cosine lr decay, 15 epochs",
                   ["--balance", "weights", "--augment", "--views", "4", *_COSINE, "--epochs", "15"]),
    "cos_noaug": ("no augmentation, cosine lr decay, 15 epochs",
                  ["--balance", "weights", "--no-augment", *_COSINE, "--epochs", "15"]),
    "cos_online": ("fresh augmentation, cosine lr decay, 15 epochs",
                   ["--balance", "weights", "--augment", "--views", "1", *_COSINE, "--epochs", "15"]),
    "cos_online_e30": ("fresh augmentation, cosine lr decay, 30 epochs",
                       ["--balance", "weights", "--augment", "--views", "1", *_COSINE, "--epochs", "30"]),
    "d96_weights": ("kdtool's defaults until logit adjustment: class weights, 96 px teacher, T=2, alpha=0.5, cosine, "
                    "20 epochs", ["--balance", "weights", *_D96]),
    "d96_la": ("the same with logit adjustment instead of class weights",
               ["--balance", "logit-adjust", *_D96]),
    "cos_views4_la": ("logit adjustment instead of class weights, 4 fixed views, cosine lr decay, 15 epochs",
                      ["--balance", "logit-adjust", "--augment", "--views", "4", *_COSINE, "--epochs", "15"]),
}
METRICS = [("test", "accuracy", "test acc"), ("test", "balanced_accuracy", "test bal acc"),
           ("test", "macro_f1", "test macro-F1"), ("test", "melanoma_sensitivity", "test mel sens"),
           ("test", "roc_auc", "test ROC-AUC"), ("val", "balanced_accuracy", "val bal acc")]


def _folder(root: Path, variant: str, teachers: str, seed: int) -> Path:
    tag = variant + (f"_{teachers.replace(',', '+')}" if teachers else "")
    return root / tag / f"s{seed}"


def run_one(data: str, root: Path, variant: str, teachers: str, seed: int) -> dict:
    """One ``kdtool distill`` run (reused when finished); returns its run.json."""
    out = _folder(root, variant, teachers, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "kdtool", "distill", "--data", data, "--teachers", teachers,
           "--seed", str(seed), "--out", str(out), *VARIANTS[variant][1]]
    t0 = time.perf_counter()
    with open(out.parent / f"s{seed}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        raise SystemExit(f"{variant} seed {seed}: kdtool distill exited {rc}; see {out.parent / f's{seed}.log'}")
    print(f"  {variant} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads((out / "run.json").read_text())


def summarise(docs: dict[str, dict[int, dict]], baseline: str) -> dict:
    """Per variant and model: metric stats over seeds, and paired differences to ``baseline``."""
    def values(variant: str, model: str, split: str, key: str) -> dict[int, float]:
        out = {}
        for seed, doc in docs[variant].items():
            rec = next((m for m in doc["models"] if m["name"] == model), None)
            if rec is not None and rec[split].get(key) is not None:
                out[seed] = float(rec[split][key])
        return out

    result = {}
    for variant, by_seed in docs.items():
        names = list(dict.fromkeys(m["name"] for doc in by_seed.values() for m in doc["models"]))
        rows = {}
        for name in names:
            row = {}
            for split, key, _ in METRICS:
                mine = values(variant, name, split, key)
                row[f"{split}_{key}"] = stats(mine.values())
                base = values(baseline, name, split, key) if baseline in docs else {}
                paired = [mine[s] - base[s] for s in mine if s in base]
                row[f"{split}_{key}_vs_baseline"] = stats(paired) if variant != baseline else None
            recs = [next(m for m in doc["models"] if m["name"] == name) for doc in by_seed.values()
                    if any(m["name"] == name for m in doc["models"])]
            row["best_epoch"] = stats(r.get("best_epoch") for r in recs)
            row["train_seconds"] = stats(r.get("train_seconds") for r in recs)
            rows[name] = row
        result[variant] = {"description": VARIANTS[variant][0], "options": VARIANTS[variant][1],
                           "seeds": sorted(by_seed), "models": rows}
    return result


def _pm(s: dict | None, scale: float = 100.0, nd: int = 1) -> str:
    if not s or s.get("mean") is None:
        return ""
    return f"{s['mean'] * scale:.{nd}f} ± {s['std'] * scale:.{nd}f}"


def render(doc: dict) -> str:
    base = doc["baseline"]
    lines = [
        "# Student training recipes, over seeds",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {machine_line(doc['machine'])}  ",
        f"Data: `{doc['data']}`; seeds {', '.join(map(str, doc['seeds']))}; teachers: "
        f"{doc['teachers'] or 'none (student alone)'}; this invocation took {doc['wall_seconds'] / 60:.0f} min "
        "(finished runs are reused: \"train s\" is what each model took when it was trained).",
        "",
        f"In %, mean ± std over seeds. \"vs {base}\": paired difference in test balanced accuracy "
        "(same model, same seed), in points.",
        "",
        "| variant | model | " + " | ".join(label for _, _, label in METRICS)
        + f" | test bal acc vs {base} | kept epoch | train s |",
        "|---|---|" + "---|" * (len(METRICS) + 3),
    ]
    for variant, v in doc["variants"].items():
        for name, row in v["models"].items():
            cells = [_pm(row[f"{split}_{key}"]) for split, key, _ in METRICS]
            lines.append(f"| `{variant}` | {name} | " + " | ".join(cells)
                         + f" | {_pm(row['test_balanced_accuracy_vs_baseline'])} | "
                         f"{_pm(row['best_epoch'], 1.0)} | {_pm(row['train_seconds'], 1.0, 0)} |")
    lines += ["", "Variants:", ""]
    lines += [f"- `{name}`: {v['description']} (`{' '.join(v['options'])}`)" for name, v in doc["variants"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder.")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"Comma-separated variants, the first is the baseline of the paired differences "
                         f"(choose from: {', '.join(VARIANTS)}).")
    ap.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds.")
    ap.add_argument("--teachers", default="", help="kdtool distill --teachers (empty: the student alone).")
    ap.add_argument("--root", default=str(ROOT / "runs" / "recipes"), help="Folder for the runs.")
    ap.add_argument("--json", default=str(HERE / "recipes.json"), help="Results JSON.")
    ap.add_argument("--md", default=str(HERE / "recipes.md"), help="Results Markdown.")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        ap.error(f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from: {', '.join(VARIANTS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        ap.error(f"--seeds must be one or more comma-separated integers, got {args.seeds!r}")
    t0 = time.perf_counter()
    docs = {v: {s: run_one(args.data, Path(args.root), v, args.teachers, s) for s in seeds} for v in variants}
    doc = {"command": " ".join(["python benchmarks/recipes.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": machine_facts(), "data": args.data, "seeds": seeds, "teachers": args.teachers,
           "baseline": variants[0], "wall_seconds": time.perf_counter() - t0,
           "variants": summarise(docs, variants[0])}
    atomic_write_text(Path(args.json), json.dumps(rnd(doc), indent=1) + "\n")
    atomic_write_text(Path(args.md), render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
