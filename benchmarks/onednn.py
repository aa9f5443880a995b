"""How much TensorFlow's oneDNN kernels speed up kdtool's training on this CPU.

    python benchmarks/onednn.py                      # about 15 min on 2 cores without AVX-512
    python benchmarks/onednn.py --no-pipeline        # the step timings only

TensorFlow's Linux x86 wheels turn oneDNN on by default only on CPUs with AVX512_VNNI (or newer
neural-network instructions); elsewhere (AVX2-only x86: AMD Zen 1-3, Intel before Cascade Lake,
most laptops) its Eigen kernels run unless ``TF_ENABLE_ONEDNN_OPTS=1``. ``kdtool distill`` and
``kdtool export`` set it to 1 unless the user has set it. This script measures what that buys, each
setting in its own process (the variable is read when TensorFlow loads), alternating settings:

1. ``steps``: mean (and median) milliseconds per training step (batch 64, Adam, cross-entropy, Keras ``fit``)
   of the earlier default student (``--student-convs 1 --student-filters 32,64,128``), the deeper
   student (``--student-convs 2 --student-filters 24,40,80``, kdtool's default since 2026-12-03)
   and the EfficientNet-Lite0 teacher at 96 px (random init: the speed does not depend on the
   weights), on real training images; and the teacher's inference per image (batch 256), which is
   what caching its logits costs. Each child also reports whether oneDNN was on and checks that
   two seeded fits of the student give identical weights under ``enable_op_determinism``.
2. ``pipeline``: wall time of the README's smoke command, ``kdtool distill --data D --teachers
   efficientnet_lite0 --epochs 2 --teacher-epochs 1 --image-size 32``, with each setting.

Writes ``--json`` and ``--md`` (default ``benchmarks/onednn.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from run import machine_facts, machine_line, write_results  # noqa: E402

SETTINGS = ("0", "1")
MODELS = ("student", "student_c2", "teacher_lite0_96")


def _child(data: str, steps: int) -> dict:
    """Time the models in this process (TF_ENABLE_ONEDNN_OPTS is whatever the parent set)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from kdtool.data import load_fdata
    from kdtool.distill.student import build_student
    from kdtool.distill.teachers import create_teacher
    from kdtool.distill.train import onednn_enabled

    tf.config.experimental.enable_op_determinism()
    fd = load_fdata(data)
    n = 64 * (steps + 3)
    x = fd.x("train")[:n]
    y = fd.onehot("train")[:n]

    def build(name: str):
        """The model, seeded and compiled (Adam, cross-entropy on logits)."""
        keras.utils.set_random_seed(0)
        if name == "student":
            model = build_student(fd.image_shape, fd.num_classes, (32, 64, 128), convs_per_block=1)
        elif name == "student_c2":
            model = build_student(fd.image_shape, fd.num_classes, (24, 40, 80), convs_per_block=2)
        else:
            model = create_teacher("efficientnet_lite0", num_classes=fd.num_classes, input_shape=fd.image_shape,
                                   image_size=96, weights="none")[0]
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        return model

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self._t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._t)

    out: dict = {"onednn": onednn_enabled(), "ms_per_step": {}, "median_ms_per_step": {}}
    for name in MODELS:
        model = build(name)
        clock = Clock()
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
        timed = clock.times[3:]  # 3 warm-up steps untimed
        out["ms_per_step"][name] = 1000 * float(np.mean(timed))  # what a run's time adds up from
        out["median_ms_per_step"][name] = 1000 * float(np.median(timed))
        if name == "teacher_lite0_96":
            model.predict(x[:256], batch_size=256, verbose=0)
            t = time.perf_counter()
            model.predict(x[:512], batch_size=256, verbose=0)
            out["teacher_ms_per_image"] = 1000 * (time.perf_counter() - t) / 512
    weights = []
    for _ in range(2):  # determinism: two seeded fits of the student, same weights?
        model = build("student")
        keras.utils.set_random_seed(1)
        model.fit(x[:640], y[:640], batch_size=64, epochs=1, verbose=0, shuffle=True)
        weights.append(model.get_weights())
    out["deterministic"] = all(np.array_equal(a, b) for a, b in zip(*weights))
    return out


def _spawn(setting: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True)


def _steps(data: str, steps: int, repeats: int) -> dict:
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for r in range(repeats):
        for s in SETTINGS:  # alternate, so that load from other jobs hits both settings
            proc = _spawn(s, [__file__, "--child", "--data", data, "--steps", str(steps)])
            if proc.returncode:
                raise SystemExit(f"child (TF_ENABLE_ONEDNN_OPTS={s}) failed:\n{proc.stderr[-2000:]}")
            runs[s].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  steps, repeat {r + 1}, TF_ENABLE_ONEDNN_OPTS={s}: {runs[s][-1]['ms_per_step']}", flush=True)
    return runs


def _pipeline(data: str, work: Path) -> dict:
    seconds = {}
    for s in SETTINGS:
        out = work / f"smoke_{s}"
        t = time.perf_counter()
        proc = _spawn(s, ["-m", "kdtool", "distill", "--data", data, "--teachers", "efficientnet_lite0",
                          "--epochs", "2", "--teacher-epochs", "1", "--image-size", "32", "--out", str(out)])
        seconds[s] = time.perf_counter() - t
        if proc.returncode:
            raise SystemExit(f"kdtool distill (TF_ENABLE_ONEDNN_OPTS={s}) failed:\n{proc.stdout[-1500:]}")
        print(f"  pipeline, TF_ENABLE_ONEDNN_OPTS={s}: {seconds[s]:.0f} s", flush=True)
    return seconds


def _markdown(doc: dict) -> str:
    runs = doc["steps"]
    med = {s: {m: float(np.median([r["ms_per_step"][m] for r in runs[s]])) for m in MODELS} for s in SETTINGS}
    typical = {s: {m: float(np.median([r["median_ms_per_step"][m] for r in runs[s]])) for m in MODELS}
               for s in SETTINGS}
    inf = {s: float(np.median([r["teacher_ms_per_image"] for r in runs[s]])) for s in SETTINGS}
    lines = ["# TensorFlow's oneDNN kernels on this CPU", "",
             f"Command: `{doc['command']}`  ",
             f"Machine: {doc['machine_line']}; CPU flags: {', '.join(doc['machine'].get('cpu_flags') or [])}  ",
             f"Data: `{doc['data']}`; {doc['repeats']} alternating repeats per setting; took "
             f"{doc['wall_seconds'] / 60:.0f} min.", "",
             "Mean ms per training step (batch 64; median over the repeats of each child's mean) and per "
             "teacher inference image (batch 256); oneDNN as TensorFlow reported it in each child.", "",
             "| | oneDNN on | deterministic | student | deeper student | teacher Lite0 96 px | teacher inference, ms/image |",
             "|---|---|---|---|---|---|---|"]
    for s in SETTINGS:
        on = {r["onednn"] for r in runs[s]}
        det = all(r["deterministic"] for r in runs[s])
        lines.append(f"| `TF_ENABLE_ONEDNN_OPTS={s}` | {', '.join(str(v) for v in sorted(on, key=str))} | {det} | "
                     + " | ".join(f"{med[s][m]:.0f}" for m in MODELS) + f" | {inf[s]:.2f} |")
    lines.append("| speed-up (0 / 1) | | | " + " | ".join(f"{med['0'][m] / med['1'][m]:.2f}x" for m in MODELS)
                 + f" | {inf['0'] / inf['1']:.2f}x |")
    lines += ["", "Median step instead of the mean (a step's typical time, without the slow ones), ms: "
              + "; ".join(f"`={s}`: " + ", ".join(f"{typical[s][m]:.0f}" for m in MODELS) for s in SETTINGS)
              + f" ({', '.join(MODELS)})."]
    if doc.get("pipeline"):
        p = doc["pipeline"]
        lines += ["", "The README's smoke command (`kdtool distill --data D --teachers efficientnet_lite0 --epochs 2 "
                  "--teacher-epochs 1 --image-size 32`, TensorFlow start-up included), wall seconds: "
                  f"{p['0']:.0f} with `TF_ENABLE_ONEDNN_OPTS=0`, {p['1']:.0f} with `=1` "
                  f"({p['0'] / p['1']:.2f}x)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per model (after 3 warm-up steps)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating repeats of each setting")
    ap.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the smoke kdtool distill command with each setting")
    ap.add_argument("--json", default=str(HERE / "onednn.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "onednn.md"), help="results Markdown")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.data, a.steps)))
        return
    t0 = time.perf_counter()
    doc = {"command": " ".join(["python benchmarks/onednn.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": machine_facts(), "data": a.data, "repeats": a.repeats, "steps": _steps(a.data, a.steps, a.repeats)}
    if a.pipeline:
        with tempfile.TemporaryDirectory() as work:
            doc["pipeline"] = _pipeline(a.data, Path(work))
    doc["wall_seconds"] = time.perf_counter() - t0
    doc["machine_line"] = machine_line(doc["machine"])
    write_results(doc, a.json, a.md, _markdown(doc))


if __name__ == "__main__":
    main()
