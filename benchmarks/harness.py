"""The harness's state: the run's settings, its results document, resuming, and what sections share.

Each section is a function of the :class:`Harness` in ``sections.py`` or ``cost.py``; :func:`section_steps`
maps the section names to them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import KD_OVERRIDES, SECTIONS, T_START, distill_defaults, log, presets, rnd
from render import render_markdown


def section_steps() -> dict:
    """Section name -> the function that measures it (looked up when called, so tests can replace one)."""
    import cost
    import sections

    return {
        "kd": sections.kd_gain,
        "cost": cost.distill_cost,
        "quant": sections.quantization,
        "latency": sections.latency,
        "compression": sections.compression,
        "scaling": sections.scaling,
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Harness:
    """One harness run: settings from the mode's preset and the command line, results saved as it goes.

    Args:
        args: ``run.py``'s parsed arguments.

    Example:
        >>> h = Harness(run.parse_args(["--quick", "--work", "runs/b"]))   # doctest: +SKIP
        >>> h.p["epochs"]                                                   # doctest: +SKIP
        4
    """

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.mode = "quick" if args.quick else "full"
        self.p = dict(presets()[self.mode])
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
            "started": _now(),
            "data": self.data,
            "settings": {
                **self.p,
                **{k: getattr(args, k) for k in KD_OVERRIDES},
                "small_teacher": [args.cost_teacher, args.small_size],
                "large_teacher": [args.cost_teacher, args.large_size],
                "sections": self.sections,
            },
            "notes": [],
            "json_name": Path(args.json).name,
        }
        self.kd_runs: dict[int, dict] = {}  # seed -> {"out", "rows", "wall_s", "cfg", "resumed"}
        self.done_sections: set[str] = set()
        self.wall_before = 0.0  # seconds spent by earlier processes of a resumed run
        self.exported: dict | None = None  # the first student's export, shared by quant, latency, compression
        self.benched: dict = {}  # (mode, threads) -> kdtool bench record
        if args.resume:
            self._resume()
        self.results.setdefault("processes", []).append(
            {
                "command": self.results["command"],
                "started": _now(),
                "sections": [s for s in self.sections if s not in self.done_sections],
            }
        )

    def _resume(self) -> None:
        """Carry over what an earlier process of this run recorded in --json (same mode and settings)."""
        path = Path(self.args.json)
        if not path.is_file():
            return
        try:
            prev = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: unreadable results ({exc}); drop --resume or choose another --json") from None
        if not isinstance(prev, dict):
            raise SystemExit(f"{path}: not a results file of benchmarks/run.py; drop --resume or choose another --json")

        def same(settings: dict) -> dict:  # as JSON stores them (tuples as lists), sections aside
            return {k: v for k, v in json.loads(json.dumps(settings, default=str)).items() if k != "sections"}

        if prev.get("mode") != self.mode or same(prev.get("settings") or {}) != same(self.results["settings"]):
            raise SystemExit(
                f"{path} holds a {prev.get('mode')} run with other settings; drop --resume, or "
                "give the same options (or another --json)"
            )
        self.done_sections = set(prev.get("section_seconds") or {})
        self.wall_before = float(prev.get("wall_seconds") or 0.0)
        keep = {k: v for k, v in prev.items() if k not in ("command", "json_name", "settings", "wall_seconds")}
        self.results = {**self.results, **keep, "started": prev.get("started", self.results["started"])}

    # -------------------------------------------------------------- configuration
    def kd_config(self, seed: int, out: Path, data: str | None = None, teachers=None):
        """The kdtool distill configuration of the KD section's run of ``seed``."""
        from kdtool.distill.config import DistillConfig

        extra = {k: getattr(self.args, k) for k in KD_OVERRIDES if getattr(self.args, k) is not None}
        return DistillConfig(
            data=data or self.data,
            out=str(out),
            teachers=list(teachers or self.p["teachers"]),
            epochs=self.p["epochs"],
            teacher_epochs=self.p["teacher_epochs"],
            image_size=self.p["image_size"],
            ensemble=self.p["ensemble"] if teachers is None else False,
            seed=seed,
            **extra,
        )

    def pipeline_config(self, out: Path, data: str):
        """The configuration section 6 times: the quick KD one, or kdtool distill's defaults."""
        from kdtool.distill.config import DistillConfig

        if self.p["pipeline"] == "default":
            return DistillConfig(data=data, out=str(out))
        # the last seed: its KD run is not the process's first training, like the subset runs
        return self.kd_config(self.p["seeds"][-1], out, data, teachers=self.p["teachers"][:1])

    # -------------------------------------------------------------- results
    def save(self) -> None:
        """Write --json and --md (atomically) with what has been measured so far."""
        from kdtool.data import atomic_write_text

        self.results["wall_seconds"] = round(self.wall_before + time.perf_counter() - T_START, 1)
        self.results["finished"] = _now()
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(rnd(self.results, 6), indent=1, default=str) + "\n")
        atomic_write_text(Path(self.args.md), render_markdown(self.results))

    def note(self, text: str) -> None:
        log(f"note: {text}")
        self.results["notes"].append(text)

    # -------------------------------------------------------------- plan
    def plan_lines(self) -> list[str]:
        """What the run will do, one line per section (printed by --plan and at the start)."""
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
        """A rough duration from a previous results JSON at --json (per-epoch rates measured there)."""
        try:
            prev = json.loads(Path(self.args.json).read_text())
            rec = prev["kd_gain"]["runs"][0]["models"]
            st = [m for m in rec if m["role"] != "teacher"]
            te = [m for m in rec if m["role"] == "teacher"]
            s_epoch = np.mean([m["train_seconds"] / max(1, m["epochs"]) for m in st])
            t_epoch = np.mean([m["train_seconds"] / max(1, m["epochs"] or 1) for m in te])
            t_size = int(prev["settings"].get("image_size") or 32)
        except (OSError, ValueError, KeyError, IndexError, TypeError):  # no previous run: no estimate
            return None
        p = self.p
        # measured here for Lite0: an epoch at 96 px costs ~2.9x one at 32 px, about the ratio of the sides
        t_epoch_here = t_epoch * p["image_size"] / t_size
        lite2 = sum(2.0 if "lite2" in n else 1.0 for n in p["teachers"])  # lite2 ~2x lite0 per epoch (guess)
        students = 1 + len(p["teachers"]) + int(p["ensemble"])
        per_seed = lite2 * p["teacher_epochs"] * t_epoch_here + students * p["epochs"] * s_epoch
        kd = len(p["seeds"]) * per_seed
        d = distill_defaults()
        pipe = (
            (d.teacher_epochs * t_epoch * d.image_size / t_size + 2 * d.epochs * s_epoch)
            if p["pipeline"] == "default"
            else per_seed / lite2
        )
        total = kd + 1.75 * pipe + 300
        return (
            f"rough estimate from {self.args.json} ({prev.get('mode')} run's per-epoch rates: student "
            f"{s_epoch:.1f} s, teacher {t_epoch:.1f} s at {t_size} px, scaled by the side): about "
            f"{total / 60:.0f} min"
        )

    # -------------------------------------------------------------- shared by quant, latency, compression
    def seed0_run(self) -> Path:
        """The run folder whose first student sections 3-5 measure: --run, or the KD section's first seed."""
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

    def export_student(self) -> dict:
        """Export the first student of :meth:`seed0_run` in every mode at export's defaults (once per process)."""
        if self.exported is not None:
            return self.exported
        from kdtool.export.modes import MODE_ORDER
        from kdtool.export.options import ExportOptions
        from kdtool.export.pipeline import export_models

        run = self.seed0_run()
        doc = json.loads((run / "run.json").read_text())
        students = [m for m in doc["models"] if m["role"] in ("student", "ensemble")]
        name = (students[0] if students else doc["models"][0])["name"]
        out = self.work / "export_quant"
        log(f"quant: exporting {run / (name + '.keras')} {'/'.join(MODE_ORDER)} -> {out}", bold=True)
        t0 = time.perf_counter()
        res = export_models(
            str(run / f"{name}.keras"),
            ExportOptions(modes=list(MODE_ORDER), data=self.data, out=str(out), max_drop=100.0),
        )
        self.exported = {
            "run": run,
            "name": name,
            "out": out,
            "rows": {r["mode"]: r for r in res.rows},
            "seconds": time.perf_counter() - t0,
            "doc": doc,
        }
        return self.exported

    def bench(self, path: Path, threads: int, runs: int) -> dict:
        """``kdtool bench``'s record of one .tflite file on the test split (runtime and split loaded once)."""
        from kdtool.bench.device import device_facts
        from kdtool.bench.run import SplitData, bench_model
        from kdtool.data import load_fdata
        from kdtool.litert import select_runtime

        if not hasattr(self, "split"):
            self.runtime = select_runtime()
            self.device = device_facts(self.runtime)
            self.split = SplitData.from_fdata(load_fdata(self.data, splits=("test",)), "test")
        rec, _ = bench_model(path, self.split, self.runtime, threads=threads, runs=runs, warmup=50, device=self.device)
        return rec
