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

With ``--int8`` every run's students are also exported (``kdtool export RUN --quantize int8 --melanoma-sensitivity 0 --majority-offset 0``: as trained,
into ``RUN/export``, or ``RUN/export_tau<TAU>`` with ``--prior-shift TAU``, ``..._mel<S>`` with
``--melanoma-sensitivity S``) and benched on the
test split (``kdtool bench ... --split test --runs 0``; both log to ``RUN/<that folder>.log``): the tables gain the int8 files' test
metrics and their validation accuracy drop (points, Keras minus int8). ``--quantize int8-floatends``
exports that mode instead (into ``RUN/export_int8-floatends``).
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

from kdtool.export.modes import CALIBRATED_MODES  # noqa: E402 - no TensorFlow at import
from run import machine_facts, machine_line, stats, write_results  # noqa: E402

# the teacher settings these variants were measured with (kdtool's defaults until the 96 px result)
_TEACHER = ["--image-size", "32", "--temperature", "4", "--alpha", "0.3"]
_CONSTANT = ["--lr-schedule", "constant", *_TEACHER]
_COSINE = ["--lr-schedule", "cosine", *_TEACHER]


def _d96(image_size: int = 96, teacher_epochs: int = 5, views: int = 4, epochs: int = 20) -> list[str]:
    """The 96 px recipe, spelled out; its defaults are kdtool's defaults from the three-seed cosine
    measurement until students moved to 60 epochs on 8 views (variant ``d96_la_v8e60``)."""
    return ["--augment", "--views", str(views), "--lr-schedule", "cosine", "--image-size", str(image_size),
            "--temperature", "2", "--alpha", "0.5", "--epochs", str(epochs), "--teacher-epochs", str(teacher_epochs)]


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
                    "20 epochs", ["--balance", "weights", *_d96()]),
    "d96_la": ("the same with logit adjustment instead of class weights",
               ["--balance", "logit-adjust", *_d96()]),
    "d128_la": ("logit adjustment with the teacher at 128 px instead of 96",
                ["--balance", "logit-adjust", *_d96(128)]),
    "d96_la_v8e60": ("logit adjustment; students (alone and distilled) 60 epochs on 8 cached views instead of "
                     "20 on 4", ["--balance", "logit-adjust", *_d96(views=8, epochs=60)]),
    "d96_la_v8e120": ("students trained 120 epochs instead of 60 (same 8 cached views): kdtool's defaults from the "
                      "three-seed measurement until the deeper student",
                      ["--balance", "logit-adjust", *_d96(views=8, epochs=120)]),
    "d96_la_v8e120_ts3": ("d96_la_v8e120 with three teachers per run (--teacher-seeds 3: seeds s, s+1, s+2), "
                          "the student distilled from their mean soft targets",
                          ["--balance", "logit-adjust", *_d96(views=8, epochs=120), "--teacher-seeds", "3"]),
    "d96_la_v8e120_te10": ("d96_la_v8e120 with 10 teacher epochs instead of 5 (cosine decay over the 10)",
                           ["--balance", "logit-adjust", *_d96(views=8, epochs=120, teacher_epochs=10)]),
    "d96_la_v8e120_ens": ("d96_la_v8e120 with --ensemble: with two or more --teachers, also a student distilled "
                          "from the mean of their soft targets (benchmarks/run.py's full kd section)",
                          ["--balance", "logit-adjust", *_d96(views=8, epochs=120), "--ensemble"]),
    "d96_la_v8e120_ema": ("d96_la_v8e120 with --ema 0.999: each student's weights and BatchNorm statistics "
                          "averaged over about the last 1000 batches (10 epochs), the average validated, selected "
                          "and saved",
                          ["--balance", "logit-adjust", *_d96(views=8, epochs=120), "--ema", "0.999"]),
    "d96_la_v8e120_c2": ("d96_la_v8e120 with a deeper student: two Conv-BN-ReLU units per block, narrower "
                         "(24/40/80 filters; 139k parameters against 129k, 1.7x the multiply-adds); kdtool's "
                         "defaults from deep_student_rule.md until last_epoch_rule.md",
                         ["--balance", "logit-adjust", *_d96(views=8, epochs=120), "--student-convs", "2",
                          "--student-filters", "24,40,80"]),
    "d96_la_v8e120_c2_last": ("d96_la_v8e120_c2 with --last-epoch: every model keeps its last epoch "
                              "instead of the one with the best validation balanced accuracy; kdtool's defaults "
                              "since last_epoch_rule.md adopted it",
                              ["--balance", "logit-adjust", *_d96(views=8, epochs=120), "--student-convs", "2",
                               "--student-filters", "24,40,80", "--last-epoch"]),
    "d96_la_te10": ("logit adjustment with 10 teacher epochs instead of 5 (cosine decay over the 10)",
                    ["--balance", "logit-adjust", *_d96(teacher_epochs=10)]),
    "cos_views4_la": ("logit adjustment instead of class weights, 4 fixed views, cosine lr decay, 15 epochs",
                      ["--balance", "logit-adjust", "--augment", "--views", "4", *_COSINE, "--epochs", "15"]),
}
# The student every variant but d96_la_v8e120_c2 was measured with: kdtool's default until the deeper student
# won deep_student_rule.md. Spelled out so that those runs keep their meaning (and their finished folders match).
_STUDENT_1 = ["--student-convs", "1", "--student-filters", "32,64,128"]
VARIANTS = {name: (what, opts if {"--student-convs", "--student-filters"} & set(opts) else [*opts, *_STUDENT_1])
            for name, (what, opts) in VARIANTS.items()}
# Likewise every variant but d96_la_v8e120_c2_last kept each model's best validation epoch, kdtool's default
# until last_epoch_rule.md adopted --last-epoch.
VARIANTS = {name: (what, opts if "--last-epoch" in opts else [*opts, "--select-best"])
            for name, (what, opts) in VARIANTS.items()}
INT8_METRICS = [("int8", "accuracy", "int8 test acc"), ("int8", "balanced_accuracy", "int8 test bal acc"),
                ("int8", "macro_f1", "int8 test macro-F1"), ("int8", "melanoma_sensitivity", "int8 test mel sens"),
                ("int8", "roc_auc", "int8 test ROC-AUC"), ("int8", "val_accuracy_drop", "int8 val acc drop (pts)")]
METRICS = [("test", "accuracy", "test acc"), ("test", "balanced_accuracy", "test bal acc"),
           ("test", "macro_f1", "test macro-F1"), ("test", "melanoma_sensitivity", "test mel sens"),
           ("test", "roc_auc", "test ROC-AUC"), ("val", "balanced_accuracy", "val bal acc")]


def run_folder(root: Path, variant: str, teachers: str, seed: int) -> Path:
    """Where ``run_one`` trains ``variant`` with ``teachers`` (kdtool distill --teachers) and ``seed``."""
    tag = variant + (f"_{teachers.replace(',', '+')}" if teachers else "")
    return root / tag / f"s{seed}"


def run_logged(args: list[str], log_path: Path, label: str, ok: tuple[int, ...] = (0,)) -> float:
    """Run ``python -m kdtool ARGS`` with its output appended to ``log_path`` (a re-run keeps what is there).

    Returns the wall seconds; exits with a line naming ``label`` and the log when the exit code is
    outside ``ok`` (export's 3, an int8 drop above --max-drop, still writes the files).
    """
    t0 = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} kdtool {' '.join(args)}\n")
        log.flush()
        rc = subprocess.run([sys.executable, "-m", "kdtool", *args], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT).returncode
    if rc not in ok:
        raise SystemExit(f"{label}: kdtool {args[0]} exited {rc}; see {log_path}")
    return time.perf_counter() - t0


def distill_logged(data: str, out: Path, teachers: str, seed: int, variant: str, log_path: Path, label: str,
                   extra: tuple[str, ...] = ()) -> None:
    """Run ``kdtool distill`` with ``variant``'s options (then ``extra``) into ``out`` (finished models are
    reused), appending its output to ``log_path``; exits with a line naming ``label`` and the log when it fails."""
    seconds = run_logged(["distill", "--data", str(data), "--teachers", teachers, "--seed", str(seed),
                          "--out", str(out), *VARIANTS[variant][1], *extra], log_path, label)
    print(f"  {label}: {seconds:.0f} s", flush=True)


def run_one(data: str, root: Path, variant: str, teachers: str, seed: int) -> dict:
    """One ``kdtool distill`` run (reused when finished); returns its run.json."""
    out = run_folder(root, variant, teachers, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    distill_logged(data, out, teachers, seed, variant, out.parent / f"s{seed}.log", f"{variant} seed {seed}")
    return json.loads((out / "run.json").read_text())


def _exports_current(run: Path, out: Path, bench: Path, mode: str = "int8", mel: float | None = None) -> bool:
    """True when ``bench`` exists and every student's ``mode`` file was exported from the run's current .keras,
    holding melanoma sensitivity at ``mel`` (None: not held) as today's export does (as a floor).

    A run retrained in the same folder (``--fresh``) has new SHA-256s in run.json; its old exports are stale.
    """
    if not bench.is_file():
        return False
    models = json.loads((run / "run.json").read_text())["models"]
    for m in models:
        if m["role"] == "teacher":
            continue
        side = out / f"{m['name']}.{mode}.json"
        if not side.is_file():
            return False
        doc = json.loads(side.read_text())
        held = (doc.get("operating_point") or {}).get("melanoma_sensitivity") or {}
        if doc.get("source", {}).get("sha256") != m["sha256"] or held.get("target") != mel or \
                (mel is not None and not held.get("floor")):
            return False
    return True


def export_folder(run: Path, tau: float = 0.0, mode: str = "int8", mel: float | None = None) -> Path:
    """The folder under ``run`` that ``int8_results`` exports ``mode`` files into (one per option set)."""
    return run / (("export" if mode == "int8" else f"export_{mode}") + (f"_tau{tau:g}" if tau else "")
                  + (f"_mel{mel:g}" if mel is not None else ""))


def int8_results(run: Path, data: str, tau: float, mode: str = "int8", mel: float | None = None) -> dict[str, dict]:
    """Export a run's students to int8 (or ``mode``) and bench them on the test split (both reused when done).

    Returns:
        {model name: {accuracy, balanced_accuracy, macro_f1, melanoma_sensitivity, roc_auc,
        val_accuracy_drop}}, fractions (the drop divided by 100, so tables print points).
    """
    out = export_folder(run, tau, mode, mel)
    bench = out / "bench_test.json"
    if not _exports_current(run, out, bench, mode, mel):
        log = out.parent / f"{out.name}.log"
        run_logged(["export", str(run), "--quantize", mode, "--data", data, "--out", str(out), "--prior-shift",
                    str(tau), "--melanoma-sensitivity", str(mel or 0), "--majority-offset", "0"], log, str(run),
                   ok=(0, 3))  # 3: some drop above --max-drop, the files are written
        run_logged(["bench", str(out), "--data", data, "--split", "test", "--runs", "0", "--json", str(bench)],
                   log, str(run))
    results = {}
    for rec in json.loads(bench.read_text()):
        name = rec["model"].removesuffix(f".{mode}.tflite")
        side = json.loads((out / f"{name}.{mode}.json").read_text())
        results[name] = {"accuracy": rec["accuracy"], "balanced_accuracy": rec["balanced_accuracy"],
                         "macro_f1": rec["macro"]["f1"], "melanoma_sensitivity": rec["melanoma_sensitivity"],
                         "roc_auc": rec.get("roc_auc_macro"), "val_accuracy_drop": side["check"]["accuracy_drop"] / 100}
    return results


def summarise(docs: dict[str, dict[int, dict]], baseline: str, metrics=None) -> dict:
    """Per variant and model: metric stats over seeds, and paired differences to ``baseline``."""
    def values(variant: str, model: str, split: str, key: str) -> dict[int, float]:
        out = {}
        for seed, doc in docs[variant].items():
            rec = next((m for m in doc["models"] if m["name"] == model), None)
            if rec is not None and (rec.get(split) or {}).get(key) is not None:
                out[seed] = float(rec[split][key])
        return out

    result = {}
    for variant, by_seed in docs.items():
        names = list(dict.fromkeys(m["name"] for doc in by_seed.values() for m in doc["models"]))
        rows = {}
        for name in names:
            row = {}
            for split, key, _ in metrics or METRICS:
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
    mode = doc.get("quantize", "int8")
    metrics = METRICS + (INT8_METRICS if doc.get("int8") else [])
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
        "| variant | model | " + " | ".join(label.replace("int8", mode, 1) for _, _, label in metrics)
        + f" | test bal acc vs {base} | kept epoch | train s |",
        "|---|---|" + "---|" * (len(metrics) + 3),
    ]
    for variant, v in doc["variants"].items():
        for name, row in v["models"].items():
            cells = [_pm(row[f"{split}_{key}"]) for split, key, _ in metrics]
            lines.append(f"| `{variant}` | {name} | " + " | ".join(cells)
                         + f" | {_pm(row['test_balanced_accuracy_vs_baseline'])} | "
                         f"{_pm(row['best_epoch'], 1.0)} | {_pm(row['train_seconds'], 1.0, 0)} |")
    if doc.get("int8"):
        mel = doc.get("melanoma_sensitivity")
        held = f" --melanoma-sensitivity {mel:g}" if mel is not None else " --melanoma-sensitivity 0"
        lines += ["", f"{mode} columns: `kdtool export RUN --quantize {mode} --prior-shift {doc['prior_shift']:g}{held}"
                  " --majority-offset 0` "
                  "(output bias correction on), then `kdtool bench` on the test split; the drop is the export's "
                  f"validation check, Keras minus {mode}, in points."]
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
    ap.add_argument("--int8", action="store_true", help="Also export every run's students to int8 and bench them "
                                                          "on the test split.")
    ap.add_argument("--prior-shift", type=float, default=0.0, help="With --int8: kdtool export --prior-shift.")
    ap.add_argument("--melanoma-sensitivity", type=float, default=None,
                    help="With --int8: kdtool export --melanoma-sensitivity (its default confidence, 0.95); "
                         "without it the files are exported as trained (--melanoma-sensitivity 0).")
    ap.add_argument("--quantize", default="int8", choices=CALIBRATED_MODES,
                    help="With --int8: the kdtool export mode of the exported files.")
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
    if args.int8:
        for v in variants:
            for s in seeds:
                found = int8_results(run_folder(Path(args.root), v, args.teachers, s), args.data, args.prior_shift,
                                     args.quantize, args.melanoma_sensitivity)
                for m in docs[v][s]["models"]:
                    m["int8"] = found.get(m["name"])
    doc = {"command": " ".join(["python benchmarks/recipes.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": machine_facts(), "data": args.data, "seeds": seeds, "teachers": args.teachers,
           "baseline": variants[0], "wall_seconds": time.perf_counter() - t0,
           "int8": args.int8, "prior_shift": args.prior_shift, "quantize": args.quantize,
           "melanoma_sensitivity": args.melanoma_sensitivity,
           "variants": summarise(docs, variants[0], METRICS + (INT8_METRICS if args.int8 else []))}
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
