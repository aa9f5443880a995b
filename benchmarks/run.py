"""kdtool's benchmark harness: every Performance number of the README, side by side, in one run.

    python benchmarks/run.py --quick          # < 10 min on 2 CPU cores; writes results.json + results.md
    python benchmarks/run.py --work runs/bench_full [--resume]
                                              # the full run (about 5 h on 2 cores; see --plan)
    python benchmarks/run.py --plan [--quick] # print what a run would do, and exit

Measured on the shared data (default ``../shared/data/ham10000`` beside the repository):

1. ``kd``: KD gain. The student alone vs distilled from each teacher (vs the ensemble, with
   two or more teachers), each through :func:`kdtool.distill.train.run_distill` with its own
   ``--out`` per seed; test accuracy, balanced accuracy, macro-F1, melanoma sensitivity and
   ROC-AUC as mean +- std over the seeds, and the paired gain (distilled - alone, same seed).
2. ``cost``: distillation cost. Wall seconds per epoch of the student alone, cached-logit KD and
   online KD (frozen teacher on every batch, as in the Keras example) with a small
   (EfficientNet-Lite0 at 32 px) and a large (Lite0 at 96 px) teacher, through kdtool's own
   batches (``train.training_batches``), ``Distiller`` and logit caching (``train.teacher_logits``); the
   configurations alternate epoch by epoch (interleaved rounds, the first one untimed) so that
   load from other jobs hits all of them; the median epoch is reported. Plus the one-off logit
   caching and the full-run ratio online / cached = N x online epoch / (caching + N x cached
   epoch). Measured without augmentation ("plain") and, when the KD runs augment (kdtool's
   default), with their recipe ("configured": fixed views for cached KD, on-the-fly for online).
3. ``quant``: float32 / float16 / dynamic / int8 .tflite of the first seed's first distilled student via
   :func:`kdtool.export.pipeline.export_models` (its val check) and kdtool bench (test split).
4. ``latency``: per-image latency, batch 1: int8 and float32 .tflite through kdtool bench's
   in-process API (1 and 2 threads) vs Keras ``model(x)`` and ``model.predict(x)``; the student's
   MACs counted from its layers and the compute floor at the GEMM peak LiteRT/XNNPACK reaches here
   (measured with a large FULLY_CONNECTED .tflite, float32 and int8; numpy's BLAS for comparison).
5. ``compression``: the int8 student's bytes vs each teacher's float32 .tflite bytes.
6. ``scaling``: the default pipeline (``kdtool distill``, ``kdtool export`` int8,
   ``kdtool bench``) timed stage by stage at 25/50/100% of the training images (stratified
   subsets written with :func:`kdtool.data.save_fdata`; val and test unchanged).

``--quick``: one teacher (efficientnet_lite0 at 32 px, 1 fine-tuning epoch), seeds 0 and 1,
4 student epochs, kdtool distill's default recipe otherwise (``--balance``/``--augment`` override
it), cost timed on a 20% stratified subset (2 timed rounds); the pipeline of section 6 is the
quick KD configuration (its 100% point is the last seed's KD run, not repeated). The full run: teachers
efficientnet_lite0 and efficientnet_lite2 at 96 px (kdtool distill's default) plus their ensemble, seeds 0, 1, 2, kdtool's
default epochs (120 student, 5 teacher), cost on the whole training split, and the
library-default pipeline (``kdtool distill --data D`` with nothing else) for section 6.

A full run outlasts a working session here; ``--work DIR --resume`` continues it in a later
process: sections recorded as finished in ``--json`` are kept, and the kd section's ``kdtool
distill`` runs pick up where they stopped (finished models reused, a killed one resumed from its
last epoch). The timed sections (cost, latency, scaling) always rerun in one piece; run them on an
otherwise idle machine, e.g. ``--sections kd`` first, then the rest.

Outputs: ``--json`` (default benchmarks/results.json, rewritten after every section) and
``--md`` (default benchmarks/results.md). Work files (runs, exports, subsets) go to ``--work``
(default: a temporary folder, deleted at the end unless ``--keep``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from kdtool.data import atomic_write_text  # noqa: E402
from kdtool.bench.report import operating_point_note  # noqa: E402
from kdtool.distill.balance import BALANCE_MODES  # noqa: E402
from kdtool.distill.config import DistillConfig  # noqa: E402

DEFAULTS = DistillConfig()  # kdtool distill's defaults, which the full run follows

SECTIONS = ("kd", "cost", "quant", "latency", "compression", "scaling")
METRICS = [  # (summary.csv key, label)
    ("test_accuracy", "test acc"),
    ("test_balanced_accuracy", "test bal acc"),
    ("test_macro_f1", "test macro-F1"),
    ("test_melanoma_sensitivity", "test mel sens"),
    ("test_roc_auc", "test ROC-AUC"),
    ("balanced_accuracy", "val bal acc"),
]

# kdtool distill options the KD runs take from the command line when given (else distill's defaults)
KD_OVERRIDES = ("balance", "augment", "teacher_head_epochs", "teacher_finetune_learning_rate", "temperature", "alpha",
                "lr_schedule")

PRESETS = {
    "quick": {
        "teachers": ["efficientnet_lite0"], "seeds": [0, 1], "epochs": 4, "teacher_epochs": 1,
        "ensemble": False, "cost_fraction": 0.2, "cost_rounds": 2, "lat_runs": 300, "keras_runs": 200,
        "predict_runs": 40, "fractions": [0.25, 0.5, 1.0], "pipeline": "quick", "image_size": 32,
    },
    "full": {
        "teachers": ["efficientnet_lite0", "efficientnet_lite2"], "seeds": [0, 1, 2], "epochs": DEFAULTS.epochs,
        "teacher_epochs": DEFAULTS.teacher_epochs, "ensemble": True, "cost_fraction": 1.0, "cost_rounds": 4,
        "lat_runs": 1000,
        "keras_runs": 500, "predict_runs": 100, "fractions": [0.25, 0.5, 1.0], "pipeline": "default",
        "image_size": DEFAULTS.image_size,
    },
}


# ----------------------------------------------------------------------------- small helpers

T_START = time.perf_counter()


def log(msg: str = "", bold: bool = False) -> None:
    stamp = f"[{time.perf_counter() - T_START:7.1f}s]"
    line = f"{stamp} {msg}"
    print(f"\033[1m{line}\033[0m" if bold and sys.stdout.isatty() else line, flush=True)


def stats(values) -> dict:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
            "n": len(vals), "values": vals}


def median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def rnd(x, nd: int = 4):
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: rnd(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rnd(v, nd) for v in x]
    return x


def _determinism_enabled() -> bool | None:
    try:
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    except Exception:  # noqa: BLE001 - private API moved
        return None


def machine_facts() -> dict:
    from kdtool import __version__
    from kdtool.bench.device import device_facts

    facts = device_facts()
    facts.pop("runtime", None)
    facts.pop("runtime_version", None)
    try:
        info = Path("/proc/cpuinfo").read_text()
        flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
        facts["cpu_flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                          "amx_int8") if f in flags]
        fam = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("cpu family")), None)
        mod = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model\t")), None)
        facts["cpu_family_model"] = f"family {fam}, model {mod}" if fam else None
    except OSError:
        pass
    try:
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        facts["memory_gb"] = round(int(mem.split()[1]) / 1024**2, 1)
    except (OSError, StopIteration):
        facts["memory_gb"] = None
    facts["platform"] = platform.platform()
    facts["load_average_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    versions = {"kdtool": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "scikit-learn"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001 - not installed
            pass
    facts["versions"] = versions
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        facts["git"] = {"commit": commit or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        facts["git"] = None
    return facts


def results_doc(script: str, argv: list[str] | None, data: str, results: list, t0: float, **extra) -> dict:
    """The JSON document of a per-model benchmark script: command, machine, data, results, wall time."""
    args = argv if argv is not None else sys.argv[1:]
    doc = {"command": f"python benchmarks/{script} {shlex.join(args)}".rstrip(),  # quoted: it can be pasted
           "machine": machine_facts(), "data": data, **extra, "results": results,
           "wall_seconds": time.perf_counter() - t0}
    doc["machine_line"] = machine_line(doc["machine"])
    return doc


def write_results(doc: dict, json_path: str | Path, md_path: str | Path, markdown: str) -> None:
    """Write a benchmark script's results: ``doc`` as JSON and ``markdown``, both atomically; print the Markdown."""
    atomic_write_text(Path(json_path), json.dumps(rnd(doc), indent=1) + "\n")
    atomic_write_text(Path(md_path), markdown)
    print(markdown)


def machine_line(m: dict) -> str:
    v = m.get("versions", {})
    tf = v.get("tensorflow") or v.get("tensorflow-cpu")
    cpu = m.get("cpu_model") or "?"
    if m.get("cpu_family_model"):
        cpu += f" ({m['cpu_family_model']})"
    return (f"{cpu}, {m.get('cpu_cores')} cores ({m.get('cpu_affinity')} usable), {m.get('memory_gb')} GB RAM, "
            f"{m.get('machine')} {m.get('system')} {m.get('release')}; Python {v.get('python')}, "
            f"TensorFlow {tf}, Keras {v.get('keras')}, ai-edge-litert {v.get('ai-edge-litert')}, "
            f"numpy {v.get('numpy')}, kdtool {v.get('kdtool')}")


# ----------------------------------------------------------------------------- the harness

class Harness:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.mode = "quick" if args.quick else "full"
        self.p = dict(PRESETS[self.mode])
        for key in ("teachers", "seeds", "epochs", "teacher_epochs", "image_size"):
            if getattr(args, key) is not None:
                self.p[key] = getattr(args, key)
        if args.ensemble is not None:
            self.p["ensemble"] = args.ensemble
        self.p["ensemble"] = bool(self.p["ensemble"]) and len(self.p["teachers"]) >= 2
        self.data = str(Path(args.data).resolve())
        self.sections = [s for s in SECTIONS if s in args.sections]
        self.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kdtool-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.results: dict = {
            "schema": 1,
            "command": "python " + " ".join([os.path.relpath(sys.argv[0], os.getcwd()), *sys.argv[1:]]),
            "mode": self.mode,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "data": self.data,
            "settings": {**self.p, **{k: getattr(args, k) for k in KD_OVERRIDES},
                         "small_teacher": [args.cost_teacher, args.small_size],
                         "large_teacher": [args.cost_teacher, args.large_size], "sections": self.sections},
            "notes": [],
            "json_name": Path(args.json).name,
        }
        self.kd_runs: dict[int, dict] = {}  # seed -> {"out", "rows", "wall_s", "cfg"}
        self.done_sections: set[str] = set()
        self.wall_before = 0.0  # seconds spent by earlier processes of a resumed run
        if args.resume:
            self._resume()
        self.results.setdefault("processes", []).append(
            {"command": self.results["command"], "started": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"), "sections": [s for s in self.sections if s not in self.done_sections]})

    def _resume(self) -> None:
        """Carry over what an earlier process of this run recorded in --json (same mode and settings)."""
        path = Path(self.args.json)
        if not path.is_file():
            return
        try:
            prev = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: unreadable results ({exc}); drop --resume or choose another --json")
        if not isinstance(prev, dict):
            raise SystemExit(f"{path}: not a results file of benchmarks/run.py; drop --resume or choose another --json")

        def same(settings: dict) -> dict:  # as JSON stores them (tuples as lists), sections aside
            return {k: v for k, v in json.loads(json.dumps(settings, default=str)).items() if k != "sections"}

        if prev.get("mode") != self.mode or same(prev.get("settings") or {}) != same(self.results["settings"]):
            raise SystemExit(f"{path} holds a {prev.get('mode')} run with other settings; drop --resume, or "
                             "give the same options (or another --json)")
        self.done_sections = set(prev.get("section_seconds") or {})
        self.wall_before = float(prev.get("wall_seconds") or 0.0)
        keep = {k: v for k, v in prev.items() if k not in ("command", "json_name", "settings", "wall_seconds")}
        self.results = {**self.results, **keep, "started": prev.get("started", self.results["started"])}

    # -------------------------------------------------------------- config
    def kd_config(self, seed: int, out: Path, data: str | None = None, teachers=None):
        extra = {k: getattr(self.args, k) for k in KD_OVERRIDES if getattr(self.args, k) is not None}
        return DistillConfig(data=data or self.data, out=str(out), teachers=list(teachers or self.p["teachers"]),
                             epochs=self.p["epochs"], teacher_epochs=self.p["teacher_epochs"],
                             image_size=self.p["image_size"], ensemble=self.p["ensemble"] if teachers is None else False,
                             seed=seed, **extra)

    def pipeline_config(self, out: Path, data: str):
        """The configuration section 6 times: the quick KD one, or kdtool distill's defaults."""
        if self.p["pipeline"] == "default":
            return DistillConfig(data=data, out=str(out))
        # the last seed: its KD run is not the process's first training, like the subset runs
        return self.kd_config(self.p["seeds"][-1], out, data, teachers=self.p["teachers"][:1])

    def save(self) -> None:
        self.results["wall_seconds"] = round(self.wall_before + time.perf_counter() - T_START, 1)
        self.results["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(rnd(self.results, 6), indent=1, default=str) + "\n")
        atomic_write_text(Path(self.args.md), render_markdown(self.results))

    def note(self, text: str) -> None:
        log(f"note: {text}")
        self.results["notes"].append(text)

    # -------------------------------------------------------------- plan
    def plan_lines(self) -> list[str]:
        p = self.p
        t, s = len(p["teachers"]), len(p["seeds"])
        students = 1 + t + int(p["ensemble"])
        lines = [
            f"mode {self.mode}: data {self.data}, work folder {self.work}",
            f"1 kd: {s} seed(s) {p['seeds']} x [{t} teacher(s) {', '.join(p['teachers'])} fine-tuned "
            f"{p['teacher_epochs']} epoch(s) at {p['image_size']} px + {students} students x {p['epochs']} "
            f"epochs] = {s * t} teacher and {s * students} student trainings on the full train split",
            f"2 cost: 4 configurations (alone, cached, online {self.args.cost_teacher}@{self.args.small_size}, "
            f"online @{self.args.large_size}) x {p['cost_rounds']} timed + 1 warm-up epoch on "
            f"{100 * p['cost_fraction']:.0f}% of train (stratified), plus logit caching per teacher; without "
            "augmentation, and again with the KD runs' augmentation when they use it",
            "3 quant / 4 latency / 5 compression: seed "
            f"{p['seeds'][0]}'s students exported float32/float16/dynamic/int8, benched on test "
            f"({p['lat_runs']} timed invokes), Keras model(x) x {p['keras_runs']}, predict x {p['predict_runs']}, "
            "teachers converted to float32 .tflite",
            f"6 scaling: the {'library-default' if p['pipeline'] == 'default' else 'quick'} pipeline "
            f"(distill + export int8 + bench) at {', '.join(f'{100 * f:.0f}%' for f in p['fractions'])} of train",
        ]
        est = self.estimate()
        if est:
            lines.append(est)
        return lines

    def estimate(self) -> str | None:
        """A rough duration from a previous results.json (per-epoch rates measured there)."""
        try:
            prev = json.loads(Path(self.args.json).read_text())
            runs = prev["kd_gain"]["runs"]
            rec = runs[0]["models"]
            st = [m for m in rec if m["role"] != "teacher"]
            te = [m for m in rec if m["role"] == "teacher"]
            s_epoch = np.mean([m["train_seconds"] / max(1, m["epochs"]) for m in st])
            t_epoch = np.mean([m["train_seconds"] / max(1, m["epochs"] or 1) for m in te])
            t_size = int(prev["settings"].get("image_size") or 32)
        except Exception:  # noqa: BLE001 - no previous run: no estimate
            return None
        p = self.p
        # measured here for Lite0: an epoch at 96 px costs ~2.9x one at 32 px, about the ratio of the sides
        t_epoch_here = t_epoch * p["image_size"] / t_size
        lite2 = sum(2.0 if "lite2" in n else 1.0 for n in p["teachers"])  # lite2 ~2x lite0 per epoch (guess)
        students = 1 + len(p["teachers"]) + int(p["ensemble"])
        per_seed = lite2 * p["teacher_epochs"] * t_epoch_here + students * p["epochs"] * s_epoch
        kd = len(p["seeds"]) * per_seed
        d = DEFAULTS
        pipe = ((d.teacher_epochs * t_epoch * d.image_size / t_size + 2 * d.epochs * s_epoch)
                if p["pipeline"] == "default" else per_seed / lite2)
        total = kd + 1.75 * pipe + 300
        return (f"rough estimate from {self.args.json} ({prev.get('mode')} run's per-epoch rates: student "
                f"{s_epoch:.1f} s, teacher {t_epoch:.1f} s at {t_size} px, scaled by the side): about "
                f"{total / 60:.0f} min")

    # -------------------------------------------------------------- 1. KD gain
    def section_kd(self) -> None:
        from kdtool.distill.train import run_distill

        p = self.p
        runs = []
        for seed in p["seeds"]:
            out = self.work / "kd" / f"seed{seed}"
            cfg = self.kd_config(seed, out)
            log(f"kd: seed {seed}: run_distill -> {out}", bold=True)
            t0 = time.perf_counter()
            # --resume: a finished model in OUT is reused, a killed one continues from its last epoch
            rows = run_distill(cfg, fresh=not self.args.resume)
            wall = time.perf_counter() - t0
            doc = json.loads((out / "run.json").read_text())
            resumed = doc.get("first_started") not in (None, doc.get("started"))
            self.kd_runs[seed] = {"out": out, "rows": rows, "wall_s": wall, "cfg": cfg, "resumed": resumed}
            runs.append({
                "seed": seed, "out": str(out), "wall_seconds": wall, "run_total_seconds": doc.get("total_seconds"),
                "resumed": resumed,
                "warnings": doc.get("warnings", []),
                "models": [{"name": m["name"], "role": m["role"], "teacher": m.get("teacher"),
                            "params": m["params"], "train_seconds": m["train_seconds"], "epochs": m["epochs"],
                            "best_epoch": m.get("best_epoch"), "weights": m.get("weights")}
                           for m in doc["models"]],
                "rows": [{k: r[k] for k in ("name", "role", "teacher", "val_accuracy", *[m for m, _ in METRICS])}
                         for r in rows],
            })
            log(f"kd: seed {seed} done in {wall:.1f} s")
        models: dict[str, dict] = {}
        for run in runs:
            for r in run["rows"]:
                models.setdefault(r["name"], {"role": r["role"], "teacher": r["teacher"], "by_seed": {}})
                models[r["name"]]["by_seed"][run["seed"]] = r
        table = {}
        for name, m in models.items():
            table[name] = {"role": m["role"], "teacher": m["teacher"],
                           **{k: stats([m["by_seed"][s].get(k) for s in m["by_seed"]]) for k, _ in METRICS}}
        gain = {}
        base = models.get("student_alone", {}).get("by_seed", {})
        for name, m in models.items():
            if m["role"] in ("student", "ensemble"):
                gain[name] = {k: stats([m["by_seed"][s][k] - base[s][k] for s in m["by_seed"]
                                        if s in base and m["by_seed"][s].get(k) is not None
                                        and base[s].get(k) is not None]) for k, _ in METRICS}
        self.results["kd_gain"] = {
            "config": {k: v for k, v in dataclasses.asdict(self.kd_config(p["seeds"][0], Path("-"))).items()
                       if k not in ("out", "data", "seed")},
            "seeds": p["seeds"], "runs": runs, "models": table, "gain_vs_alone": gain,
            "ensemble": p["ensemble"],
            "note": None if p["ensemble"] else "no ensemble student: it needs two or more teachers",
        }

    def seed0_run(self) -> Path:
        if self.args.run:
            return Path(self.args.run)
        seed = self.p["seeds"][0]
        if seed in self.kd_runs:
            return Path(self.kd_runs[seed]["out"])
        earlier = self.work / "kd" / f"seed{seed}"  # the kd section of an earlier process (--resume)
        try:
            if json.loads((earlier / "run.json").read_text()).get("status") == "FINISHED":
                return earlier
        except (OSError, ValueError):
            pass
        raise SystemExit("sections quant/latency/compression need the kd section (or --run RUN_DIR)")

    # -------------------------------------------------------------- 2. cost
    def section_cost(self) -> None:
        import tensorflow as tf

        from kdtool.data import FData, load_fdata, stratified_indices

        # run_distill switches deterministic kernels on for the whole process (kdtool distill --seed);
        # the timings below run under the same setting as a real run.
        tf.config.experimental.enable_op_determinism()
        p = self.p
        fd = load_fdata(self.data)
        frac = p["cost_fraction"]
        i_tr = stratified_indices(fd.labels("train"), int(round(frac * len(fd.labels("train")))), 0)
        i_va = stratified_indices(fd.labels("val"), int(round(frac * len(fd.labels("val")))), 0)
        sub = FData(root=fd.root, class_names=list(fd.class_names),
                    arrays={"train": tuple(a[i_tr] for a in fd.arrays["train"]),
                            "val": tuple(a[i_va] for a in fd.arrays["val"])})
        cfg = self.kd_config(0, Path("-"))
        recipes = {"plain": dataclasses.replace(cfg, augment=False)}
        if cfg.augment:
            recipes["configured"] = cfg
        log(f"cost: {len(i_tr)} train / {len(i_va)} val images ({100 * frac:.0f}%), batch {cfg.batch_size}, "
            f"recipes: " + "; ".join(f"{k} (augment {c.augment}, views {c.views if c.augment else '-'}, balance "
                                      f"{c.balance})" for k, c in recipes.items()), bold=True)
        out = {}
        for key, rcfg in recipes.items():
            out[key] = self._cost_recipe(key, rcfg, sub)
            self.results["distill_cost"] = {"recipes": out}
            self.save()
        goal_key = "configured" if "configured" in out else "plain"
        g = out[goal_key]
        big = g["full_run"][str(p["epochs"])]["large"]["online_over_cached"]  # a full run: kdtool's own epochs
        self.results["distill_cost"] = {
            "fraction_of_train": frac, "train_images": len(i_tr), "val_images": len(i_va),
            "batch_size": cfg.batch_size, "full_data_scale": 1.0 / frac,
            "teacher_weights": "random init (speed does not depend on the weights)",
            "op_determinism": _determinism_enabled(), "rounds_timed": p["cost_rounds"],
            "recipes": out, "goal_recipe": goal_key,
            "goals": {
                "cached_epoch_within_1.1x_of_alone": g["ratios_vs_alone"]["cached_kd"]["epoch"] <= 1.1,
                "cached_epoch_ratio": g["ratios_vs_alone"]["cached_kd"]["epoch"],
                "full_run_epochs": p["epochs"],
                "full_run_online_over_cached_large": big,
                "full_run_at_least_4x_faster_than_online_large": big >= 4.0,
            },
            "method": ("kdtool's own batches (train.training_batches: balancing, on-the-fly augmentation or fixed views), "
                       "Distiller and compile settings; fit(epochs=1) per configuration in interleaved rounds "
                       "(order reversed every other round); round 1 untimed (graph tracing); median over the timed "
                       "rounds. Logit caching (train.teacher_logits: every fixed view + val) is timed in the timed "
                       "rounds too; its cold first call is listed apart. With augmentation, cached KD and the "
                       "student alone train on fixed views made once by make_views (counted with the caching), "
                       "online KD augments every batch on the fly, as kdtool distill does. 'train' = the training "
                       "steps, 'epoch' = training + Keras' validation pass (online KD runs the teacher there too). "
                       "Teacher fine-tuning is the same in both modes and is not counted. Every time scales "
                       "linearly with the images, so the ratios hold for the full split."),
        }

    def _cost_recipe(self, key: str, cfg, sub) -> dict:
        """Time student alone / cached KD / online KD (small, large teacher) epochs for one training recipe."""
        import types

        import keras

        from _flops import count_macs
        from kdtool.distill.augment import make_views
        from kdtool.distill.distiller import Distiller, pack_targets, student_metrics
        from kdtool.distill.student import build_student
        from kdtool.distill.teachers import create_teacher
        from kdtool.distill.balance import balancing
        from kdtool.distill.train import teacher_logits, training_batches  # the library's own data path

        p, a = self.p, self.args
        k = sub.num_classes
        # the parts of a kdtool Run that training_batches reads
        run = types.SimpleNamespace(cfg=cfg, fd=sub, views=None,
                                    balancing=balancing(cfg.balance, sub.labels("train"), k))
        views_s = 0.0
        if cfg.augment and cfg.teacher_logits == "cached" and cfg.views > 1:
            t0 = time.perf_counter()
            run.views = make_views(sub.x("train"), cfg.views, cfg.seed)
            views_s = time.perf_counter() - t0
        x_tr, y_tr, x_va, y_va = sub.x("train"), sub.onehot("train"), sub.x("val"), sub.onehot("val")
        x_fit, y_fit = x_tr, y_tr
        if run.views is not None:
            x_fit, y_fit = run.views, np.broadcast_to(y_tr, (run.views.shape[0], *y_tr.shape))

        teachers, caching, cache_times = {}, {}, {}

        def cache(label):
            t0 = time.perf_counter()
            got = teacher_logits(teachers[label], run)
            cache_times[label].append(time.perf_counter() - t0)
            return got

        for label, size in (("small", a.small_size), ("large", a.large_size)):
            keras.utils.set_random_seed(0)
            t, info = create_teacher(a.cost_teacher, k, sub.image_shape, size, "none")
            t.trainable = False
            teachers[label], cache_times[label] = t, []
            logits = cache(label)  # the cold, first call: what a run pays right after fine-tuning
            n_img = (run.views.shape[0] if run.views is not None else 1) * len(x_tr) + len(x_va)
            caching[label] = {"teacher": a.cost_teacher, "image_size": info["image_size"], "images": n_img,
                              "params": int(t.count_params()), "macs_per_image": count_macs(t)["total"]}
            if label == "small":
                cached_logits = logits
            log(f"cost[{key}]: caching logits of {a.cost_teacher}@{info['image_size']}px, {n_img} images "
                f"(first call): {cache_times[label][0]:.2f} s")

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.rows: list[tuple[float, float]] = []

            def on_epoch_begin(self, epoch, logs=None):
                self.t0, self.tv = time.perf_counter(), None

            def on_test_begin(self, logs=None):
                self.tv = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                end = time.perf_counter()
                self.rows.append(((self.tv or end) - self.t0, end - self.t0))

        def student():
            keras.utils.set_random_seed(0)
            return build_student(sub.image_shape, k, cfg.student_filters, cfg.student_dense, cfg.student_dropout,
                                 convs_per_block=cfg.student_convs)

        configs = {}
        s = student()
        s.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=student_metrics())
        configs["student_alone"] = (s, training_batches(run, x_fit, y_fit), (x_va, y_va))
        d = Distiller(student(), k, cfg.alpha, cfg.temperature)
        d.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), metrics=student_metrics())
        configs["cached_kd"] = (d, training_batches(run, x_fit, pack_targets(y_fit, cached_logits[0])),
                                (x_va, pack_targets(y_va, cached_logits[1])))
        for label in ("small", "large"):
            d = Distiller(student(), k, cfg.alpha, cfg.temperature, teachers=[teachers[label]])
            d.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), metrics=student_metrics())
            configs[f"online_kd_{label}"] = (d, training_batches(run, x_tr, y_tr), (x_va, y_va))
        timers = {name: EpochTimer() for name in configs}
        rounds = 1 + p["cost_rounds"]
        for r in range(rounds):
            order = list(configs) if r % 2 == 0 else list(configs)[::-1]  # alternate the order too
            for name in order:
                model, batches, val = configs[name]
                model.fit(batches, validation_data=val, epochs=1, batch_size=cfg.batch_size, verbose=0,
                          callbacks=[timers[name]])
            if r:  # caching in the timed rounds only
                for label in (("small", "large") if r % 2 == 0 else ("large", "small")):
                    cache(label)
            log(f"cost[{key}]: round {r + 1}/{rounds}{' (warm-up, untimed)' if r == 0 else ''}: " + ", ".join(
                f"{n} {timers[n].rows[-1][1]:.2f}s" for n in configs) + ("" if not r else ", caching " + ", ".join(
                    f"{lb} {cache_times[lb][-1]:.2f}s" for lb in ("small", "large"))))
        epochs = {}
        for name, tm in timers.items():
            timed = tm.rows[1:]
            epochs[name] = {"train_seconds": median([t for t, _ in timed]),
                            "epoch_seconds": median([e for _, e in timed]),
                            "first_epoch_seconds": tm.rows[0][1], "timed": [list(t) for t in timed]}
        for label, c in caching.items():
            timed = cache_times[label][1:]
            sec = median(timed)
            c.update({"seconds": sec, "first_call_seconds": cache_times[label][0], "timed": timed,
                      "ms_per_image": 1000 * sec / c["images"], "full_data_seconds_estimate": sec / p["cost_fraction"]})
        alone = epochs["student_alone"]
        ratios = {name: {"train": e["train_seconds"] / alone["train_seconds"],
                         "epoch": e["epoch_seconds"] / alone["epoch_seconds"]} for name, e in epochs.items()}
        full_run = {}
        for n in sorted({p["epochs"], 20}):
            full_run[str(n)] = {}
            for label in ("small", "large"):
                cached_total = views_s + caching[label]["seconds"] + n * epochs["cached_kd"]["epoch_seconds"]
                online_total = n * epochs[f"online_kd_{label}"]["epoch_seconds"]
                full_run[str(n)][label] = {"cached_seconds": cached_total, "online_seconds": online_total,
                                           "online_over_cached": online_total / cached_total}
        asymptote = {lb: epochs[f"online_kd_{lb}"]["epoch_seconds"] / epochs["cached_kd"]["epoch_seconds"]
                     for lb in ("small", "large")}
        del configs, teachers
        return {"augment": cfg.augment, "views": cfg.views if run.views is not None else None,
                "balance": cfg.balance, "make_views_seconds": views_s, "epochs": epochs,
                "ratios_vs_alone": ratios, "caching": caching, "full_run": full_run,
                "online_over_cached_as_epochs_grow": asymptote}

    # -------------------------------------------------------------- 3 + 4 + 5: export, bench, keras
    def export_student(self) -> dict:
        from kdtool.export.modes import MODE_ORDER
        from kdtool.export.pipeline import ExportOptions, export_models

        run = self.seed0_run()
        doc = json.loads((run / "run.json").read_text())
        students = [m for m in doc["models"] if m["role"] in ("student", "ensemble")]
        name = (students[0] if students else doc["models"][0])["name"]
        out = self.work / "export_quant"
        log(f"quant: exporting {run / (name + '.keras')} {'/'.join(MODE_ORDER)} -> {out}", bold=True)
        t0 = time.perf_counter()
        res = export_models(str(run / f"{name}.keras"),
                            ExportOptions(modes=list(MODE_ORDER), data=self.data,
                                          out=str(out), max_drop=100.0))
        self._export = {"run": run, "name": name, "out": out, "rows": {r["mode"]: r for r in res.rows},
                        "seconds": time.perf_counter() - t0, "doc": doc}
        return self._export

    def bench(self, path: Path, threads: int, runs: int) -> dict:
        from kdtool.bench.device import device_facts
        from kdtool.bench.run import SplitData, bench_model
        from kdtool.bench.runtime import select_runtime
        from kdtool.data import load_fdata

        if not hasattr(self, "_split"):
            self._runtime = select_runtime()
            self._device = device_facts(self._runtime)
            self._split = SplitData.from_fdata(load_fdata(self.data, splits=("test",)), "test")
        rec, _ = bench_model(path, self._split, self._runtime, threads=threads, runs=runs, warmup=50,
                             device=self._device)
        return rec

    def section_quant(self) -> None:
        ex = getattr(self, "_export", None) or self.export_student()
        summary = {r["name"]: r for r in self.kd_runs.get(self.p["seeds"][0], {}).get("rows", [])}
        keras_row = summary.get(ex["name"])
        modes = {}
        self._bench = {}
        for mode, row in ex["rows"].items():
            path = ex["out"] / row["file"]
            rec = self.bench(path, 1, self.p["lat_runs"])
            self._bench[(mode, 1)] = rec
            chk = row["check"]
            modes[mode] = {
                "file": row["file"], "bytes": row["size_bytes"], "ratio_to_float32": row["ratio_to_float32"],
                "val_keras_accuracy": chk["keras"]["accuracy"], "val_accuracy": chk["tflite"]["accuracy"],
                "val_accuracy_drop_pts": chk["accuracy_drop"],
                "val_balanced_accuracy": chk["tflite"]["balanced_accuracy"],
                "val_balanced_accuracy_drop_pts": chk["balanced_accuracy_drop"],
                "val_agreement": chk.get("agreement"),
                "test_accuracy": rec["accuracy"], "test_balanced_accuracy": rec["balanced_accuracy"],
                "test_macro_f1": rec["macro"]["f1"], "test_melanoma_sensitivity": rec["melanoma_sensitivity"],
                "latency_ms_median_1thread": rec["latency_ms"]["median"],
            }
            log(f"quant: {mode:<14} {row['size_bytes']:>9,} B  val acc {100 * chk['tflite']['accuracy']:.2f}% "
                f"(drop {chk['accuracy_drop']:+.2f})  test acc {100 * rec['accuracy']:.2f}%  "
                f"bal {100 * rec['balanced_accuracy']:.2f}%  {rec['latency_ms']['median']:.3f} ms")
        f32, i8 = modes.get("float32"), modes.get("int8")
        self.results["quantization"] = {
            "model": ex["name"], "source": str(ex["run"] / f"{ex['name']}.keras"), "given_run": bool(self.args.run),
            # export's default operating point when this ran (the int8 file's; every mode gets the same offsets)
            "operating_point": ex["rows"]["int8"].get("operating_point") if "int8" in ex["rows"] else None,
            "params": ex["rows"]["float32"]["params"] if "float32" in ex["rows"] else None,
            "keras_test": {k: keras_row[k] for k, _ in METRICS} if keras_row else None,
            "modes": modes, "export_seconds": ex["seconds"],
            "int8_drop_pts": {
                "val_accuracy_vs_keras": i8["val_accuracy_drop_pts"] if i8 else None,
                "val_balanced_accuracy_vs_keras": i8["val_balanced_accuracy_drop_pts"] if i8 else None,
                "test_accuracy_vs_float32": 100 * (f32["test_accuracy"] - i8["test_accuracy"]) if f32 and i8 else None,
                "test_balanced_accuracy_vs_float32":
                    100 * (f32["test_balanced_accuracy"] - i8["test_balanced_accuracy"]) if f32 and i8 else None,
            },
            "calibration": ex["rows"]["int8"]["converter"].get("calibration") if "int8" in ex["rows"] else None,
        }

    def section_latency(self) -> None:
        import keras

        from _flops import count_macs, matmul_peak_gflops, tflite_gemm_peak
        from kdtool.distill.evaluate import predict_logits
        from kdtool.export.convert import load_keras_model

        ex = getattr(self, "_export", None) or self.export_student()
        p = self.p
        bench = getattr(self, "_bench", {})
        tfl = {}
        for mode in ("int8", "float32"):
            for threads in (1, 2):
                rec = bench.get((mode, threads)) or self.bench(ex["out"] / ex["rows"][mode]["file"], threads,
                                                               p["lat_runs"])
                tfl[f"tflite_{mode}_{threads}t"] = {"median_ms": rec["latency_ms"]["median"],
                                                    "p90_ms": rec["latency_ms"]["p90"],
                                                    "min_ms": rec["latency_ms"]["min"],
                                                    "runs": rec["runs"], "runtime": rec["runtime"],
                                                    "runtime_version": rec["runtime_version"]}
                log(f"latency: {mode} .tflite, {threads} thread(s): median {rec['latency_ms']['median']:.3f} ms")
        model = load_keras_model(ex["run"] / f"{ex['name']}.keras")
        x = self._split.x
        x1 = x[:1]

        def per_call(fn, runs, warm):
            for _ in range(warm):
                fn()
            times = np.empty(runs)
            for i in range(runs):
                t0 = time.perf_counter()
                fn()
                times[i] = time.perf_counter() - t0
            return {"median_ms": 1000 * float(np.median(times)), "p90_ms": 1000 * float(np.percentile(times, 90)),
                    "min_ms": 1000 * float(times.min()), "runs": runs}

        kr = {}
        kr["keras_call"] = per_call(lambda: np.asarray(model(x1, training=False)), p["keras_runs"], 20)
        log(f"latency: Keras model(x): median {kr['keras_call']['median_ms']:.3f} ms")
        kr["keras_predict"] = per_call(lambda: model.predict(x1, verbose=0), p["predict_runs"], 5)
        log(f"latency: Keras model.predict(x): median {kr['keras_predict']['median_ms']:.3f} ms")
        predict_logits(model, x[:256])
        t0 = time.perf_counter()
        predict_logits(model, x, 256)
        kr["keras_batched_256"] = {"median_ms": 1000 * (time.perf_counter() - t0) / len(x), "runs": 1,
                                   "note": f"whole test split in batches of 256, per image ({len(x)} images)"}
        log(f"latency: Keras batched (256): {kr['keras_batched_256']['median_ms']:.3f} ms/image")
        int8 = tfl["tflite_int8_1t"]["median_ms"]
        entries = {**tfl, **kr}
        ratios = {k: v["median_ms"] / int8 for k, v in entries.items()}
        macs = count_macs(model)
        flops = macs["flops"]
        numpy1 = matmul_peak_gflops(1)
        xnn = {f"{mode}_{t}t": tflite_gemm_peak(mode, t) for mode in ("float32", "int8") for t in (1, 2)}
        floor = {f"{mode}_{t}t": flops / (xnn[f"{mode}_{t}t"]["gops"] * 1e9) * 1000
                 for mode in ("float32", "int8") for t in (1, 2)}
        floor["numpy_float32_1t"] = flops / (numpy1["gflops"] * 1e9) * 1000
        over = {f"{mode}_{t}t": tfl[f"tflite_{mode}_{t}t"]["median_ms"] / floor[f"{mode}_{t}t"]
                for mode in ("float32", "int8") for t in (1, 2)}
        log(f"latency: student {macs['total'] / 1e6:.2f} M MACs/image; XNNPACK GEMM peak float32 "
            f"{xnn['float32_1t']['gops']:.0f} GFLOP/s, int8 {xnn['int8_1t']['gops']:.0f} GOP/s (1 thread); numpy "
            f"float32 {numpy1['gflops']:.0f} GFLOP/s -> floors {1000 * floor['float32_1t']:.0f} us float32, "
            f"{1000 * floor['int8_1t']:.0f} us int8")
        self.results["inference"] = {
            "model": ex["name"], "batch": 1, "split": "test", "latency": entries, "ratio_to_int8_1thread": ratios,
            "macs": macs, "gemm_peak": {"xnnpack": xnn, "numpy_float32_1t": numpy1},
            "compute_floor_ms": floor, "latency_over_floor": over,
            "floor_assumption": ("floor = 2 x (conv + dense MACs) of the student / the best GEMM rate LiteRT's "
                                 "XNNPACK reaches on this CPU in the same precision (a 256x1024 @ 1024x1024 "
                                 "FULLY_CONNECTED .tflite, 10th percentile of its invokes, same thread count); "
                                 "element-wise layers (BN folded, ReLU, pooling) are not counted. numpy's BLAS "
                                 "float32 GEMM (1024^3, 1 thread) is listed for comparison."),
        }
        del model

    def section_compression(self) -> None:
        from _flops import count_macs
        from kdtool.export.convert import convert_model, load_keras_model

        ex = getattr(self, "_export", None) or self.export_student()
        doc = ex["doc"]
        int8 = ex["rows"]["int8"]["size_bytes"]
        f32_student = ex["rows"]["float32"]["size_bytes"]
        rows = []
        for m in doc["models"]:
            if m["role"] != "teacher":
                continue
            path = ex["run"] / m["file"]
            model = load_keras_model(path)
            t0 = time.perf_counter()
            data, _ = convert_model(model, "float32")
            sec = time.perf_counter() - t0
            rows.append({"teacher": m["name"], "params": int(model.count_params()), "image_size": m.get("image_size"),
                         "macs_per_image": count_macs(model)["total"], "keras_bytes": path.stat().st_size,
                         "float32_tflite_bytes": len(data), "convert_seconds": sec,
                         "teacher_f32_over_student_int8": len(data) / int8,
                         "teacher_f32_over_student_f32": len(data) / f32_student})
            log(f"compression: {m['name']} float32 .tflite {len(data):,} B = {len(data) / int8:.1f}x the int8 "
                f"student ({int8:,} B)")
            del model
        self.results["compression"] = {"student": ex["name"], "student_int8_bytes": int8,
                                       "student_float32_bytes": f32_student,
                                       "student_params": ex["rows"]["int8"]["params"], "teachers": rows,
                                       "research_claim": "~100x"}

    # -------------------------------------------------------------- 6. scaling
    def section_scaling(self) -> None:
        from kdtool.data import load_fdata, save_fdata, stratified_indices
        from kdtool.distill.train import run_distill
        from kdtool.export.pipeline import ExportOptions, export_models

        fd = load_fdata(self.data)
        n_all = len(fd.labels("train"))
        points = []
        seed0 = self.p["seeds"][-1]
        for frac in self.p["fractions"]:
            n = int(round(frac * n_all))
            reuse = None
            if frac >= 1.0 and seed0 in self.kd_runs and not self.kd_runs[seed0]["resumed"]:
                kd = self.kd_runs[seed0]
                want = dataclasses.asdict(self.pipeline_config(Path("-"), self.data))
                have = dataclasses.asdict(kd["cfg"])
                if {k: v for k, v in want.items() if k != "out"} == {k: v for k, v in have.items() if k != "out"}:
                    reuse = kd
            if frac >= 1.0:
                data = self.data
            else:
                data = str(self.work / "subsets" / f"train{int(100 * frac)}")
                idx = stratified_indices(fd.labels("train"), n, 0)
                arrays = {"train": (fd.raw_x("train")[idx], fd.arrays["train"][1][idx])}
                arrays.update({s: fd.arrays[s] for s in ("val", "test")})
                save_fdata(data, arrays, fd.class_names,
                           info={"source": self.data, "note": f"stratified {100 * frac:.0f}% of train, seed 0"})
            out = self.work / "scaling" / f"train{int(100 * frac)}"
            log(f"scaling: {100 * frac:.0f}% of train ({n} images)", bold=True)
            if reuse:
                out, distill_s = Path(reuse["out"]), reuse["wall_s"]
                log(f"scaling: distill = kd seed {seed0}'s run ({distill_s:.1f} s, same configuration)")
            else:
                t0 = time.perf_counter()
                run_distill(self.pipeline_config(out, data), fresh=True)
                distill_s = time.perf_counter() - t0
            exp_out = out / "export_pipeline"
            shutil.rmtree(exp_out, ignore_errors=True)
            t0 = time.perf_counter()
            res = export_models(str(out), ExportOptions(modes=["int8"], data=data, out=str(exp_out), max_drop=100.0))
            export_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for row in res.rows:  # kdtool bench's defaults: 1 thread, 200 runs, 20 warm-up, test split
                from kdtool.bench.device import device_facts
                from kdtool.bench.run import SplitData, bench_model
                from kdtool.bench.runtime import select_runtime

                rt = select_runtime()
                bench_model(exp_out / row["file"], SplitData.from_fdata(load_fdata(data, splits=("test",)), "test"),
                            rt, device=device_facts(rt))
            bench_s = time.perf_counter() - t0
            total = distill_s + export_s + bench_s
            models = json.loads((out / "run.json").read_text())["models"]
            stages = {m["name"]: m["train_seconds"] for m in models}
            stages["evaluation, plots, saving"] = distill_s - sum(stages.values())
            points.append({"fraction": frac, "train_images": n, "distill_seconds": distill_s, "distill_stages": stages,
                           "export_seconds": export_s, "bench_seconds": bench_s, "total_seconds": total,
                           "reused_kd_run": bool(reuse), "models_exported": len(res.rows)})
            log(f"scaling: {100 * frac:.0f}%: distill {distill_s:.1f} s, export {export_s:.1f} s, "
                f"bench {bench_s:.1f} s, total {total:.1f} s")
            self.results["scaling"] = {"points": points}
            self.save()
        xs = np.array([pt["train_images"] for pt in points], float)
        ys = np.array([pt["total_seconds"] for pt in points], float)
        fit = None
        if len(points) >= 2:
            slope, intercept = np.polyfit(xs, ys, 1)
            fit = {"seconds_per_1000_images": 1000 * slope, "fixed_seconds": intercept}
        cfg = dataclasses.asdict(self.pipeline_config(Path("-"), self.data))
        self.results["scaling"] = {
            "pipeline": ("kdtool distill defaults" if self.p["pipeline"] == "default" else "the quick KD configuration")
            + " + kdtool export (int8) + kdtool bench (test split, defaults), in-process (no interpreter start-up)",
            "config": {k: v for k, v in cfg.items() if k not in ("out", "data")},
            "points": points, "linear_fit": fit,
            "growth_100_over_25": ys[-1] / ys[0] if len(ys) >= 2 else None,
            "import_seconds": self.results.get("import_seconds"),
        }


# ----------------------------------------------------------------------------- markdown

def _pct(v, nd: int = 1) -> str:
    return "-" if v is None else f"{100 * v:.{nd}f}"


def fmt_mean_std(s: dict | None, nd: int = 1) -> str:
    """A :func:`stats` dict as ``"mean ± std"`` in percent (``-`` when empty)."""
    if not s or s.get("mean") is None:
        return "-"
    return f"{100 * s['mean']:.{nd}f} ± {100 * s['std']:.{nd}f}"


def fmt_gain(s: dict | None) -> str:
    """A :func:`stats` dict of paired differences as ``"+mean ± std"`` in percentage points (``-`` when empty)."""
    if not s or s.get("mean") is None:
        return "-"
    return f"{100 * s['mean']:+.1f} ± {100 * s['std']:.1f}"


def _head_phase(c: dict) -> str:
    if not c.get("teacher_head_epochs"):
        return ""
    lr2 = c.get("teacher_finetune_learning_rate") or c["teacher_learning_rate"]
    return (f" (first {c['teacher_head_epochs']} head-only at lr {c['teacher_learning_rate']:g}, then the whole "
            f"network at lr {lr2:g})")


def _processes(r: dict) -> str:
    procs = r.get("processes") or []
    if len(procs) < 2:
        return ""
    return (f", over {len(procs)} processes (--resume; sections per process: "
            + "; ".join(",".join(p["sections"]) or "none" for p in procs) + ")")


def render_markdown(r: dict) -> str:
    m = r.get("machine", {})
    wall = r.get("wall_seconds") or 0
    L = ["# kdtool benchmarks", "",
         f"`{r['command']}` — {r['started'][:16].replace('T', ' ')} UTC — {machine_line(m)}.",
         f"Wall time of this run: {int(wall // 60)} min {int(wall % 60)} s"
         f"{_processes(r)} "
         f"(TensorFlow import {r.get('import_seconds', 0):.1f} s). Load average at the start "
         f"{', '.join(f'{v:.1f}' for v in (m.get('load_average_start') or []))} (it counts any job that ended just "
         "before); other jobs may have shared the cores, so times are upper bounds.",
         f"Data: `{r['data']}`; mode `{r['mode']}`. Raw numbers: `{r.get('json_name', 'results.json')}` beside "
         "this file.", ""]

    kd = r.get("kd_gain")
    if kd:
        c = kd["config"]
        L += [f"## 1. KD gain (mean ± std over seeds {', '.join(map(str, kd['seeds']))})", "",
              f"`run_distill` per seed: teachers {', '.join(c['teachers'])} fine-tuned {c['teacher_epochs']} "
              f"epoch(s) at {c['image_size']} px"
              f"{_head_phase(c)}, students {c['epochs']} epochs, learning rate "
              f"{c.get('lr_schedule', 'constant')}, alpha {c['alpha']}, T "
              f"{c['temperature']}, balance {c['balance']}, augment {c['augment']}"
              f"{' (' + str(c['views']) + ' fixed views)' if c['augment'] and c['views'] > 1 else ''}, select-best "
              f"{c['select_best']}, cached logits. Metrics in %, test split unless marked val.", "",
              "| model | role | " + " | ".join(lbl for _, lbl in METRICS) + " |",
              "|---|---|" + "---|" * len(METRICS)]
        order = sorted(kd["models"].items(), key=lambda kv: ({"baseline": 0, "student": 1, "ensemble": 2,
                                                              "teacher": 3}.get(kv[1]["role"], 4), kv[0]))
        for name, row in order:
            L.append(f"| {name} | {row['role']} | " + " | ".join(fmt_mean_std(row[k]) for k, _ in METRICS) + " |")
        if kd["gain_vs_alone"]:
            L += ["", "Paired gain over the student alone (same seed), percentage points:", "",
                  "| student | " + " | ".join(lbl for _, lbl in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
            for name, g in sorted(kd["gain_vs_alone"].items(),
                                  key=lambda kv: (kd["models"][kv[0]]["role"] == "ensemble", kv[0])):
                L.append(f"| {name} | " + " | ".join(fmt_gain(g[k]) for k, _ in METRICS) + " |")
        if kd.get("note"):
            L += ["", f"Note: {kd['note']}."]
        alone = kd["models"].get("student_alone", {}).get("test_balanced_accuracy", {}).get("mean")
        weak = [n for n, row in kd["models"].items() if row["role"] == "teacher" and alone is not None
                and (row["test_balanced_accuracy"]["mean"] or 0) <= alone]
        if weak:
            wb = ", ".join(f"{n} {100 * kd['models'][n]['test_balanced_accuracy']['mean']:.1f}%" for n in weak)
            L += ["", f"Observation: the teacher(s) scored no better than the student alone ({100 * alone:.1f}%) on "
                  f"test balanced accuracy ({wb}, after {c['teacher_epochs']} fine-tuning epoch(s); predicting one "
                  "class for every image gives 1/7 = 14.3%). Soft targets from a teacher that is not better than the "
                  "student cannot be expected to help: with such teachers these rows exercise the harness rather "
                  "than show what distillation can gain."]
        walls = ", ".join(f"seed {x['seed']} {x['wall_seconds']:.0f} s"
                          + (f" (resumed: this process's part; its models' recorded training "
                             f"{sum(m['train_seconds'] for m in x['models']) / 60:.0f} min)" if x.get("resumed") else "")
                          for x in kd["runs"])
        L += ["", f"Run wall times: {walls}.", ""]

    dc = r.get("distill_cost")
    if dc and dc.get("goals"):
        L += ["## 2. Distillation cost", "",
              f"{dc['train_images']} train / {dc['val_images']} val images ({100 * dc['fraction_of_train']:.0f}% "
              f"stratified subset), batch {dc['batch_size']}, median of {dc['rounds_timed']} interleaved timed "
              "epochs after one untimed warm-up epoch, through kdtool's own batches, `Distiller` and logit caching; "
              "teachers frozen, random init (speed does not depend on the weights); deterministic ops on, as in "
              "`kdtool distill`. 'train' = training steps only, 'epoch' = training + validation pass. Times scale "
              f"linearly with the images: multiply by {dc['full_data_scale']:.2f} for the whole training split.", ""]
        for key, rec in dc["recipes"].items():
            e, rat, ca = rec["epochs"], rec["ratios_vs_alone"], rec["caching"]
            sm, lg = ca["small"], ca["large"]
            what = (f"augmentation on: {rec['views']} fixed views per image for the student alone and cached KD "
                    "(teacher run on every view), fresh random augmentation of every batch for online KD"
                    if rec["augment"] else "no augmentation")
            L += [f"### Recipe `{key}`: {what}; balance {rec['balance']}", "",
                  "| configuration | train s | epoch s | train ratio vs alone | epoch ratio vs alone | first epoch s (tracing) |",
                  "|---|---|---|---|---|---|"]
            names = {"student_alone": "student alone", "cached_kd": "cached-logit KD",
                     "online_kd_small": f"online KD, {sm['teacher']} @ {sm['image_size']} px",
                     "online_kd_large": f"online KD, {lg['teacher']} @ {lg['image_size']} px"}
            for k, label in names.items():
                L.append(f"| {label} | {e[k]['train_seconds']:.2f} | {e[k]['epoch_seconds']:.2f} | "
                         f"{rat[k]['train']:.2f}x | {rat[k]['epoch']:.2f}x | {e[k]['first_epoch_seconds']:.2f} |")
            L += ["", "One-off logit caching (median of the timed rounds, and the cold first call)"
                  + (f"; making the views took {rec['make_views_seconds']:.2f} s" if rec["views"] else "") + ":", "",
                  "| teacher | params | MACs / image | images | seconds | first call s | ms / image | whole split (est.) s |",
                  "|---|---|---|---|---|---|---|---|"]
            for c in (sm, lg):
                L.append(f"| {c['teacher']} @ {c['image_size']} px | {c['params']:,} | {c['macs_per_image'] / 1e6:.1f} M "
                         f"| {c['images']} | {c['seconds']:.2f} | {c['first_call_seconds']:.2f} | {c['ms_per_image']:.2f} "
                         f"| {c['full_data_seconds_estimate']:.1f} |")
            L += ["", "Full run, student part (teacher fine-tuning is the same in both modes): cached = "
                  + ("making the views + " if rec["views"] else "") + "caching + N x cached epoch, online = N x "
                  "online epoch:", "", "| N epochs | teacher | cached s | online s | online / cached |",
                  "|---|---|---|---|---|"]
            for n, per in rec["full_run"].items():
                for label, v in per.items():
                    c = ca[label]
                    L.append(f"| {n} | {c['teacher']} @ {c['image_size']} px | {v['cached_seconds']:.1f} | "
                             f"{v['online_seconds']:.1f} | {v['online_over_cached']:.2f}x |")
            asym = rec["online_over_cached_as_epochs_grow"]
            L += ["", f"As N grows the one-off costs are amortised and online / cached tends to online epoch / cached "
                  f"epoch: {asym['small']:.2f}x ({sm['image_size']} px), {asym['large']:.2f}x ({lg['image_size']} px).",
                  ""]
        g = dc["goals"]
        lg = dc["recipes"][dc["goal_recipe"]]["caching"]["large"]
        L += [f"Goals (recipe `{dc['goal_recipe']}`, the one the KD section ran): cached KD per epoch within 1.1x "
              f"of the student alone: **{'met' if g['cached_epoch_within_1.1x_of_alone'] else 'not met'}** "
              f"({g['cached_epoch_ratio']:.2f}x); over a {g.get('full_run_epochs', 20)}-epoch run (the run's student "
              f"epochs) at least 4x faster than online KD with {lg['teacher']} @ {lg['image_size']} px: "
              f"**{'met' if g['full_run_at_least_4x_faster_than_online_large'] else 'not met'}** "
              f"({g.get('full_run_online_over_cached_large', g.get('full_run_20_epochs_online_over_cached_large')):.2f}x).",
              ""]

    q = r.get("quantization")
    if q:
        L += ["## 3. Quantization", "",
              f"`{q['model']}` ({q['params']:,} params) from "
              + (f"the run `{Path(q['source']).parent}` (--run)" if q.get("given_run") else
                 f"the kd section's first seed's run (`{Path(q['source']).parent.name}`)")
              + ", exported with `export_models` at export's defaults"
              + (f" (operating point: {operating_point_note(q['operating_point']) or 'as trained'})"
                 if q.get("operating_point") is not None else "")
              + " "
              "(int8: full-integer, int8 I/O, 300 stratified train images for calibration; int8-floatends: the same with "
              "the first conv and the logits layer float32); val columns from the "
              "export check (852 images), test columns from kdtool bench (1704 images). Accuracies in %.", "",
              "| mode | bytes | x float32 | val acc (Keras -> TFLite) | val drop pts | val bal acc | test acc | "
              "test bal acc | test macro-F1 | test mel sens |", "|---|---|---|---|---|---|---|---|---|---|"]
        for mode, v in q["modes"].items():
            L.append(f"| {mode} | {v['bytes']:,} | {v['ratio_to_float32']:.3f} | {_pct(v['val_keras_accuracy'], 2)} -> "
                     f"{_pct(v['val_accuracy'], 2)} | {v['val_accuracy_drop_pts']:+.2f} | "
                     f"{_pct(v['val_balanced_accuracy'], 2)} | {_pct(v['test_accuracy'], 2)} | "
                     f"{_pct(v['test_balanced_accuracy'], 2)} | {_pct(v['test_macro_f1'], 2)} | "
                     f"{_pct(v['test_melanoma_sensitivity'], 2)} |")
        d = q["int8_drop_pts"]
        if d["test_accuracy_vs_float32"] is not None:
            L += ["", f"int8 drop: {d['val_accuracy_vs_keras']:+.2f} pts val accuracy vs Keras, "
                  f"{d['val_balanced_accuracy_vs_keras']:+.2f} pts val balanced accuracy; "
                  f"{d['test_accuracy_vs_float32']:+.2f} pts test accuracy and "
                  f"{d['test_balanced_accuracy_vs_float32']:+.2f} pts test balanced accuracy vs float32 .tflite "
                  "(positive = int8 worse; one test image is 0.06 pts, one val image 0.12)."]
        L.append("")

    inf = r.get("inference")
    if inf:
        lat, rat = inf["latency"], inf["ratio_to_int8_1thread"]
        labels = {"tflite_int8_1t": "int8 .tflite, kdtool bench, 1 thread",
                  "tflite_int8_2t": "int8 .tflite, kdtool bench, 2 threads",
                  "tflite_float32_1t": "float32 .tflite, kdtool bench, 1 thread",
                  "tflite_float32_2t": "float32 .tflite, kdtool bench, 2 threads",
                  "keras_call": "Keras `model(x, training=False)`",
                  "keras_predict": "Keras `model.predict(x)`",
                  "keras_batched_256": "Keras, batches of 256 (per image, for reference)"}
        mc, pk, fl, ov = inf["macs"], inf["gemm_peak"], inf["compute_floor_ms"], inf["latency_over_floor"]
        L += ["## 4. Inference latency (batch 1, per image)", "",
              f"`{inf['model']}`; TFLite through kdtool bench's in-process API (ai-edge-litert, XNNPACK), median "
              "of the timed invokes on one test image; Keras under TensorFlow's default threads (2 cores).", "",
              "| runtime | median ms | p90 ms | x int8 (1 thread) |", "|---|---|---|---|"]
        for k, label in labels.items():
            v = lat[k]
            p90 = f"{v['p90_ms']:.3f}" if v.get("p90_ms") is not None else "-"
            L.append(f"| {label} | {v['median_ms']:.3f} | {p90} | {rat[k]:.1f}x |")
        xn = pk["xnnpack"]
        L += ["", f"Compute: {mc['total'] / 1e6:.2f} M MACs = {mc['flops'] / 1e6:.1f} MFLOPs per image (conv "
              f"{mc['by_kind'].get('conv', 0) / 1e6:.2f} M, dense {mc['by_kind'].get('dense', 0) / 1e6:.3f} M MACs; "
              "counted from the layers).", "",
              "| precision, threads | GEMM peak here (G op/s) | compute floor us | measured median us | x floor |",
              "|---|---|---|---|---|"]
        for key in ("int8_1t", "int8_2t", "float32_1t", "float32_2t"):
            mode, t = key.split("_")
            L.append(f"| {mode}, {t[0]} | {xn[key]['gops']:.0f} | {1000 * fl[key]:.0f} | "
                     f"{1000 * lat['tflite_' + key]['median_ms']:.0f} | {ov[key]:.2f}x |")
        L += ["", f"Assumption: {inf['floor_assumption']} numpy float32 peak: {pk['numpy_float32_1t']['gflops']:.0f} "
              f"GFLOP/s (floor {1000 * fl['numpy_float32_1t']:.0f} us).", ""]

    co = r.get("compression")
    if co:
        L += ["## 5. Compression", "",
              f"int8 student `{co['student']}`: {co['student_int8_bytes']:,} bytes ({co['student_params']:,} "
              f"params; its float32 .tflite {co['student_float32_bytes']:,} bytes). Research claim: "
              f"{co['research_claim']}.", "",
              "| teacher | params | MACs / image | float32 .tflite bytes | x int8 student | x float32 student |",
              "|---|---|---|---|---|---|"]
        for t in co["teachers"]:
            L.append(f"| {t['teacher']} @ {t['image_size']} px | {t['params']:,} | {t['macs_per_image'] / 1e6:.1f} M | "
                     f"{t['float32_tflite_bytes']:,} | {t['teacher_f32_over_student_int8']:.1f}x | "
                     f"{t['teacher_f32_over_student_f32']:.1f}x |")
        L.append("")

    sc = r.get("scaling")
    if sc and sc.get("points"):
        L += ["## 6. Pipeline wall time and scaling", ""]
        if sc.get("pipeline"):
            c = sc["config"]
            L += [f"{sc['pipeline']}: teachers {', '.join(c['teachers'])} ({c['teacher_epochs']} epoch(s)), "
                  f"{c['epochs']} student epochs, seed {c['seed']}. Val (852) and test (1704) stay whole. Add about "
                  f"{r.get('import_seconds', 0):.0f} s of TensorFlow start-up per `kdtool distill` / `kdtool export` "
                  "command.", ""]
        stage_names = list(dict.fromkeys(k for pt in sc["points"] for k in pt.get("distill_stages", {})))
        head = ["train images", "distill s", *[f"{k} s" for k in stage_names], "export s", "bench s", "total s"]
        L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for pt in sc["points"]:
            st = pt.get("distill_stages", {})
            cells = [f"{pt['train_images']} ({100 * pt['fraction']:.0f}%){' *' if pt['reused_kd_run'] else ''}",
                     f"{pt['distill_seconds']:.1f}", *[f"{st[k]:.1f}" if k in st else "-" for k in stage_names],
                     f"{pt['export_seconds']:.1f}", f"{pt['bench_seconds']:.1f}", f"{pt['total_seconds']:.1f}"]
            L.append("| " + " | ".join(cells) + " |")
        if any(pt["reused_kd_run"] for pt in sc["points"]):
            L += ["", "\\* the distill time is the last seed's KD run of section 1 (same configuration)."]
        L += ["", "Per-model columns are each model's `train_seconds` from run.json (fit, with the per-epoch "
              "validation scoring, and with --select-best its best-epoch selection); the rest of `run_distill` is evaluation on val and test, "
              "plots, saving and reloading."]
        if sc.get("linear_fit"):
            f = sc["linear_fit"]
            L += ["", f"Linear fit: {f['fixed_seconds']:.0f} s fixed + {f['seconds_per_1000_images']:.1f} s per 1000 "
                  f"training images; 100% takes {sc['growth_100_over_25']:.2f}x the 25% run."]
        L.append("")

    if r.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    return "\n".join(L)


# ----------------------------------------------------------------------------- main

def _ints(v: str) -> list[int]:
    return [int(x) for x in v.split(",") if x.strip()]


def _names(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the < 10 min configuration (see above)")
    ap.add_argument("--plan", action="store_true", help="print the scope of the run and exit")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--resume", action="store_true",
                    help="continue a run an earlier process began (needs --work, which is kept): sections recorded "
                         "as finished in --json are skipped, and the kd section's kdtool distill runs in --work "
                         "reuse finished models and resume a killed one from its last epoch; other sections "
                         "rerun in one piece")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "results.md"), help="results Markdown")
    ap.add_argument("--sections", type=_names, default=list(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--run", default=None, help="an existing kdtool distill run folder for quant/latency/compression "
                                                "(instead of the kd section's seed-0 run)")
    ap.add_argument("--seeds", type=_ints, default=None, help="seeds, comma list (quick: 0,1; full: 0,1,2)")
    ap.add_argument("--teachers", type=_names, default=None, help="teachers of the KD section")
    ap.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=None,
                    help="distil an ensemble student too (needs >= 2 teachers; full: on)")
    ap.add_argument("--epochs", type=int, default=None,
                    help=f"student epochs (quick 4, full {DEFAULTS.epochs} as kdtool distill)")
    ap.add_argument("--teacher-epochs", type=int, default=None,
                    help=f"teacher epochs (quick 1, full {DEFAULTS.teacher_epochs} as kdtool distill)")
    ap.add_argument("--image-size", type=int, default=None,
                    help=f"teacher input size in the KD section (quick 32, full {DEFAULTS.image_size} as "
                         "kdtool distill)")
    ap.add_argument("--balance", default=None, choices=BALANCE_MODES,
                    help="class balancing of the KD runs (default: kdtool distill's default)")
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                    help="augmentation in the KD runs (default: kdtool distill's default)")
    ap.add_argument("--teacher-head-epochs", type=int, default=None,
                    help="of --teacher-epochs, head-only epochs (kdtool distill --teacher-head-epochs)")
    ap.add_argument("--teacher-finetune-learning-rate", type=float, default=None,
                    help="learning rate of the whole-network phase after a head phase")
    ap.add_argument("--temperature", type=float, default=None, help="KD temperature (default: kdtool distill's)")
    ap.add_argument("--alpha", type=float, default=None, help="KD alpha (default: kdtool distill's)")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None,
                    help="Learning-rate schedule of the KD runs (default: kdtool distill's)")
    ap.add_argument("--cost-teacher", default="efficientnet_lite0", help="teacher timed in the cost section")
    ap.add_argument("--small-size", type=int, default=32)
    ap.add_argument("--large-size", type=int, default=96)
    args = ap.parse_args(argv)
    if args.resume and not args.work:
        ap.error("--resume needs --work: the folder of the run to continue")
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")

    h = Harness(args)
    log(f"kdtool benchmark harness, {h.mode} mode. Scope:", bold=True)
    for line in h.plan_lines():
        log("  " + line)
    if args.plan:
        if not args.work:
            shutil.rmtree(h.work, ignore_errors=True)
        return 0

    t0 = time.perf_counter()
    from kdtool.train_extra import require_train_extra

    require_train_extra("benchmarks/run.py")  # as kdtool distill loads it (oneDNN on unless the user says not)
    import keras  # noqa: F401

    h.results["import_seconds"] = time.perf_counter() - t0
    h.results["machine"] = machine_facts()
    log(f"machine: {machine_line(h.results['machine'])}")
    h.save()
    steps = {"kd": h.section_kd, "cost": h.section_cost, "quant": h.section_quant, "latency": h.section_latency,
             "compression": h.section_compression, "scaling": h.section_scaling}
    try:
        for name in h.sections:
            if name in h.done_sections:
                log(f"=== section {name}: finished by an earlier process (--resume), kept ===")
                continue
            log(f"=== section {name} ===", bold=True)
            s0 = time.perf_counter()
            steps[name]()
            h.results.setdefault("section_seconds", {})[name] = time.perf_counter() - s0
            h.results["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
            h.save()
            log(f"=== section {name} done in {time.perf_counter() - s0:.1f} s ===")
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(h.work, ignore_errors=True)
        elif args.keep:
            log(f"work files kept in {h.work}")
    h.save()
    wall = time.perf_counter() - T_START
    log(f"done in {wall / 60:.1f} min: wrote {args.json} and {args.md}", bold=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
