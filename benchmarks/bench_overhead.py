"""How much does ``kdtool bench``'s timing loop add over a bare ``invoke()`` loop?

Builds a real-size student (``kdtool.distill.student.build_student()``, random
weights, 32x32x3 -> 7 classes) as float32 and full-int8 .tflite (int8 calibrated
on random images: fine for timing, meaningless for accuracy), then, in a fresh
process without TensorFlow, on ONE interpreter per model:

- ``kdtool``: :func:`kdtool.bench.latency.measure_latency` (what ``kdtool bench`` times);
- ``bare``: a plain ``for`` loop, ``perf_counter()`` around each ``interpreter.invoke()``;
- ``bare-block``: one ``perf_counter()`` around the whole loop, divided by the runs
  (no per-call timing at all: the floor).

The two timed loops alternate over several rounds so that drift hits both;
the medians of the per-round medians are compared. Also runs the full
``kdtool bench`` CLI once per model and prints its reported median.

usage: python benchmarks/bench_overhead.py [--runs 500] [--warmup 50] [--rounds 7] [--threads 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

def build_models(out: Path, size: int = 32, classes: int = 7, seed: int = 0) -> list[Path]:
    """float32 and int8 .tflite of the default student with random weights."""
    from kdtool.distill.student import build_student
    from kdtool.train_extra import require_train_extra

    tf = require_train_extra("benchmarks/bench_overhead.py")  # as kdtool loads it (oneDNN on unless set)

    tf.keras.utils.set_random_seed(seed)
    model = build_student((size, size, 3), num_classes=classes)
    calib = np.random.default_rng(seed).uniform(0, 1, (64, size, size, 3)).astype(np.float32)
    paths = []
    for mode in ("float32", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if mode == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        path = out / f"student.{mode}.tflite"
        path.write_bytes(conv.convert())
        (out / f"student.{mode}.json").write_text(
            json.dumps({"name": "student", "mode": mode, "params": int(model.count_params()),
                        "class_names": [f"c{i}" for i in range(classes)]})  # fmt: skip
        )
        paths.append(path)
    # a small FData split for the CLI run
    from kdtool.data import save_fdata

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    y = np.eye(classes, dtype=np.float32)[np.arange(64) % classes]
    save_fdata(out / "FData", {s: (x, y) for s in ("train", "val", "test")}, [f"c{i}" for i in range(classes)])
    return paths


def bare_loop(interp, runs: int) -> np.ndarray:
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times[i] = time.perf_counter() - t0
    return times


def bare_block(interp, runs: int) -> float:
    t0 = time.perf_counter()
    for _ in range(runs):
        interp.invoke()
    return (time.perf_counter() - t0) / runs


def measure(folder: Path, runs: int, warmup: int, rounds: int, threads: int) -> None:
    """Phase 2, in a process without TensorFlow."""
    from kdtool.bench.evaluate import set_input
    from kdtool.bench.latency import measure_latency
    from kdtool.bench.runtime import load_model, select_runtime
    from kdtool.cli import main

    assert "tensorflow" not in sys.modules
    rt = select_runtime()
    print(f"runtime {rt.name} {rt.version}, threads {threads}, {runs} runs x {rounds} rounds, warm-up {warmup}")
    print(f"{'model':<22}{'kdtool median':>15}{'bare median':>13}{'diff':>9}{'bare-block mean':>17}{'CLI median':>12}")
    for path in sorted(folder.glob("*.tflite")):
        model = load_model(path, rt, threads=threads)
        set_input(model, np.random.default_rng(0).uniform(0, 1, (1, *model.image_shape)).astype(np.float32))
        interp = model.interpreter
        for _ in range(warmup):
            interp.invoke()
        ours, bare, block = [], [], []
        for _ in range(rounds):
            ours.append(np.median(measure_latency(interp, runs, 0)))
            bare.append(np.median(bare_loop(interp, runs)))
            block.append(bare_block(interp, runs))
        k, b = float(np.median(ours)) * 1e3, float(np.median(bare)) * 1e3
        out_json = folder / f"{path.stem}.bench.json"
        with contextlib.redirect_stdout(io.StringIO()):  # the CLI's table
            main(["bench", str(path), "--data", str(folder / "FData"), "--runs", str(runs), "--warmup", str(warmup),
                  "--threads", str(threads), "--json", str(out_json)], standalone_mode=False)  # fmt: skip
        cli = json.loads(out_json.read_text())[0]["latency_ms"]["median"]
        print(f"{path.name:<22}{k:>12.4f} ms{b:>10.4f} ms{(k - b) / b * 100:>+8.2f}%"
              f"{float(np.median(block)) * 1e3:>14.4f} ms{cli:>9.4f} ms")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="build the models here and keep them")
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # phase 1 (internal)
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # phase 2 (internal)
    args = ap.parse_args()
    if args.build:
        build_models(args.build)
        return
    if args.measure:
        measure(args.measure, args.runs, args.warmup, args.rounds, args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not sorted(folder.glob("student.*.tflite")):
            # Build in a child process so that the timing process never loads TensorFlow.
            subprocess.run([sys.executable, __file__, "--build", str(folder)], check=True)
        subprocess.run([sys.executable, __file__, "--measure", str(folder), "--runs", str(args.runs),
                        "--warmup", str(args.warmup), "--rounds", str(args.rounds), "--threads", str(args.threads)],
                       check=True)  # fmt: skip


if __name__ == "__main__":
    main()
