"""Sections 1, 3, 4, 5 and 6 of the harness: KD gain, quantization, latency, compression, scaling.

Each is a function of the :class:`harness.Harness` that stores its results under its own key of
``h.results`` (section 2, the distillation cost, is in ``cost.py``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from common import METRICS, log, stats


# ----------------------------------------------------------------------------- 1. KD gain
def kd_gain(h) -> None:
    """Distil each seed with kdtool's own ``run_distill``; mean ± std over seeds and the paired gain."""
    from kdtool.distill.train import run_distill

    p = h.p
    runs = []
    for seed in p["seeds"]:
        out = h.work / "kd" / f"seed{seed}"
        cfg = h.kd_config(seed, out)
        log(f"kd: seed {seed}: run_distill -> {out}", bold=True)
        t0 = time.perf_counter()
        # --resume: a finished model in OUT is reused, a killed one continues from its last epoch
        rows = run_distill(cfg, fresh=not h.args.resume)
        wall = time.perf_counter() - t0
        doc = json.loads((out / "run.json").read_text())
        resumed = doc.get("first_started") not in (None, doc.get("started"))
        h.kd_runs[seed] = {"out": out, "rows": rows, "wall_s": wall, "cfg": cfg, "resumed": resumed}
        runs.append(
            {
                "seed": seed,
                "out": str(out),
                "wall_seconds": wall,
                "run_total_seconds": doc.get("total_seconds"),
                "resumed": resumed,
                "warnings": doc.get("warnings", []),
                "models": [
                    {
                        "name": m["name"],
                        "role": m["role"],
                        "teacher": m.get("teacher"),
                        "params": m["params"],
                        "train_seconds": m["train_seconds"],
                        "epochs": m["epochs"],
                        "best_epoch": m.get("best_epoch"),
                        "weights": m.get("weights"),
                    }
                    for m in doc["models"]
                ],
                "rows": [
                    {k: r[k] for k in ("name", "role", "teacher", "val_accuracy", *[m for m, _ in METRICS])}
                    for r in rows
                ],
            }
        )
        log(f"kd: seed {seed} done in {wall:.1f} s")
    table, gain = summarize_kd(runs)
    h.results["kd_gain"] = {
        "config": {
            k: v
            for k, v in dataclasses.asdict(h.kd_config(p["seeds"][0], Path("-"))).items()
            if k not in ("out", "data", "seed")
        },
        "seeds": p["seeds"],
        "runs": runs,
        "models": table,
        "gain_vs_alone": gain,
        "ensemble": p["ensemble"],
        "note": None if p["ensemble"] else "no ensemble student: it needs two or more teachers",
    }


def summarize_kd(runs: list[dict]) -> tuple[dict, dict]:
    """Per model, :func:`stats` of each metric over the seeds; per student, of its gain over the student alone.

    >>> row = lambda name, role, acc: {"name": name, "role": role, "teacher": None, "test_accuracy": acc}
    >>> runs = [{"seed": s, "rows": [row("student_alone", "baseline", a), row("student_t", "student", b)]}
    ...         for s, a, b in ((0, 0.6, 0.7), (1, 0.5, 0.7))]
    >>> table, gain = summarize_kd(runs)
    >>> round(gain["student_t"]["test_accuracy"]["mean"], 6), table["student_t"]["test_accuracy"]["std"]
    (0.15, 0.0)
    """
    models: dict[str, dict] = {}
    for run in runs:
        for r in run["rows"]:
            models.setdefault(r["name"], {"role": r["role"], "teacher": r["teacher"], "by_seed": {}})
            models[r["name"]]["by_seed"][run["seed"]] = r
    table = {
        name: {
            "role": m["role"],
            "teacher": m["teacher"],
            **{k: stats([m["by_seed"][s].get(k) for s in m["by_seed"]]) for k, _ in METRICS},
        }
        for name, m in models.items()
    }
    gain = {}
    base = models.get("student_alone", {}).get("by_seed", {})
    for name, m in models.items():
        if m["role"] in ("student", "ensemble"):
            gain[name] = {
                k: stats(
                    [
                        m["by_seed"][s][k] - base[s][k]
                        for s in m["by_seed"]
                        if s in base and m["by_seed"][s].get(k) is not None and base[s].get(k) is not None
                    ]
                )
                for k, _ in METRICS
            }
    return table, gain


# ----------------------------------------------------------------------------- 3. quantization
def quantization(h) -> None:
    """Every export mode of the first student: size, the export's validation check, kdtool bench on test."""
    ex = h.export_student()
    summary = {r["name"]: r for r in h.kd_runs.get(h.p["seeds"][0], {}).get("rows", [])}
    keras_row = summary.get(ex["name"])
    modes = {}
    for mode, row in ex["rows"].items():
        rec = h.bench(ex["out"] / row["file"], 1, h.p["lat_runs"])
        h.benched[(mode, 1)] = rec
        chk = row["check"]
        modes[mode] = {
            "file": row["file"],
            "bytes": row["size_bytes"],
            "ratio_to_float32": row["ratio_to_float32"],
            "val_keras_accuracy": chk["keras"]["accuracy"],
            "val_accuracy": chk["tflite"]["accuracy"],
            "val_accuracy_drop_pts": chk["accuracy_drop"],
            "val_balanced_accuracy": chk["tflite"]["balanced_accuracy"],
            "val_balanced_accuracy_drop_pts": chk["balanced_accuracy_drop"],
            "val_agreement": chk.get("agreement"),
            "test_accuracy": rec["accuracy"],
            "test_balanced_accuracy": rec["balanced_accuracy"],
            "test_macro_f1": rec["macro"]["f1"],
            "test_melanoma_sensitivity": rec["melanoma_sensitivity"],
            "latency_ms_median_1thread": rec["latency_ms"]["median"],
        }
        log(
            f"quant: {mode:<14} {row['size_bytes']:>9,} B  val acc {100 * chk['tflite']['accuracy']:.2f}% "
            f"(drop {chk['accuracy_drop']:+.2f})  test acc {100 * rec['accuracy']:.2f}%  "
            f"bal {100 * rec['balanced_accuracy']:.2f}%  {rec['latency_ms']['median']:.3f} ms"
        )
    f32, i8 = modes.get("float32"), modes.get("int8")
    h.results["quantization"] = {
        "model": ex["name"],
        "source": str(ex["run"] / f"{ex['name']}.keras"),
        "given_run": bool(h.args.run),
        # export's default operating point when this ran (the int8 file's; every mode gets the same offsets)
        "operating_point": ex["rows"]["int8"].get("operating_point") if "int8" in ex["rows"] else None,
        "params": ex["rows"]["float32"]["params"] if "float32" in ex["rows"] else None,
        "keras_test": {k: keras_row[k] for k, _ in METRICS} if keras_row else None,
        "modes": modes,
        "export_seconds": ex["seconds"],
        "int8_drop_pts": {
            "val_accuracy_vs_keras": i8["val_accuracy_drop_pts"] if i8 else None,
            "val_balanced_accuracy_vs_keras": i8["val_balanced_accuracy_drop_pts"] if i8 else None,
            "test_accuracy_vs_float32": 100 * (f32["test_accuracy"] - i8["test_accuracy"]) if f32 and i8 else None,
            "test_balanced_accuracy_vs_float32": 100 * (f32["test_balanced_accuracy"] - i8["test_balanced_accuracy"])
            if f32 and i8
            else None,
        },
        "calibration": ex["rows"]["int8"]["converter"].get("calibration") if "int8" in ex["rows"] else None,
    }


# ----------------------------------------------------------------------------- 4. latency
def _per_call(fn, runs: int, warm: int) -> dict:
    """Median, p90 and min milliseconds of ``runs`` calls of ``fn`` after ``warm`` untimed ones."""
    for _ in range(warm):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return {
        "median_ms": 1000 * float(np.median(times)),
        "p90_ms": 1000 * float(np.percentile(times, 90)),
        "min_ms": 1000 * float(times.min()),
        "runs": runs,
    }


def latency(h) -> None:
    """Batch-1 latency of the int8 and float32 files (1 and 2 threads) and of Keras, against a compute floor."""
    from kdtool.distill.evaluate import predict_logits
    from kdtool.export.convert import load_keras_model

    from flops import count_macs, matmul_peak_gflops, tflite_gemm_peak

    ex = h.export_student()
    p = h.p
    tfl = {}
    for mode in ("int8", "float32"):
        for threads in (1, 2):
            rec = h.benched.get((mode, threads)) or h.bench(
                ex["out"] / ex["rows"][mode]["file"], threads, p["lat_runs"]
            )
            tfl[f"tflite_{mode}_{threads}t"] = {
                "median_ms": rec["latency_ms"]["median"],
                "p90_ms": rec["latency_ms"]["p90"],
                "min_ms": rec["latency_ms"]["min"],
                "runs": rec["runs"],
                "runtime": rec["runtime"],
                "runtime_version": rec["runtime_version"],
            }
            log(f"latency: {mode} .tflite, {threads} thread(s): median {rec['latency_ms']['median']:.3f} ms")
    model = load_keras_model(ex["run"] / f"{ex['name']}.keras")
    x = h.split.x
    x1 = x[:1]
    kr = {"keras_call": _per_call(lambda: np.asarray(model(x1, training=False)), p["keras_runs"], 20)}
    log(f"latency: Keras model(x): median {kr['keras_call']['median_ms']:.3f} ms")
    kr["keras_predict"] = _per_call(lambda: model.predict(x1, verbose=0), p["predict_runs"], 5)
    log(f"latency: Keras model.predict(x): median {kr['keras_predict']['median_ms']:.3f} ms")
    predict_logits(model, x[:256])
    t0 = time.perf_counter()
    predict_logits(model, x, 256)
    kr["keras_batched_256"] = {
        "median_ms": 1000 * (time.perf_counter() - t0) / len(x),
        "runs": 1,
        "note": f"whole test split in batches of 256, per image ({len(x)} images)",
    }
    log(f"latency: Keras batched (256): {kr['keras_batched_256']['median_ms']:.3f} ms/image")
    int8 = tfl["tflite_int8_1t"]["median_ms"]
    entries = {**tfl, **kr}
    macs = count_macs(model)
    flops = macs["flops"]
    numpy1 = matmul_peak_gflops(1)
    xnn = {f"{mode}_{t}t": tflite_gemm_peak(mode, t) for mode in ("float32", "int8") for t in (1, 2)}
    keys = list(xnn)
    floor = {k: flops / (xnn[k]["gops"] * 1e9) * 1000 for k in keys}
    floor["numpy_float32_1t"] = flops / (numpy1["gflops"] * 1e9) * 1000
    log(
        f"latency: student {macs['total'] / 1e6:.2f} M MACs/image; XNNPACK GEMM peak float32 "
        f"{xnn['float32_1t']['gops']:.0f} GFLOP/s, int8 {xnn['int8_1t']['gops']:.0f} GOP/s (1 thread); numpy "
        f"float32 {numpy1['gflops']:.0f} GFLOP/s -> floors {1000 * floor['float32_1t']:.0f} us float32, "
        f"{1000 * floor['int8_1t']:.0f} us int8"
    )
    h.results["inference"] = {
        "model": ex["name"],
        "batch": 1,
        "split": "test",
        "latency": entries,
        "ratio_to_int8_1thread": {k: v["median_ms"] / int8 for k, v in entries.items()},
        "macs": macs,
        "gemm_peak": {"xnnpack": xnn, "numpy_float32_1t": numpy1},
        "compute_floor_ms": floor,
        "latency_over_floor": {k: tfl[f"tflite_{k}"]["median_ms"] / floor[k] for k in keys},
        "floor_assumption": (
            "floor = 2 x (conv + dense MACs) of the student / the best GEMM rate LiteRT's "
            "XNNPACK reaches on this CPU in the same precision (a 256x1024 @ 1024x1024 "
            "FULLY_CONNECTED .tflite, 10th percentile of its invokes, same thread count); "
            "element-wise layers (BN folded, ReLU, pooling) are not counted. numpy's BLAS "
            "float32 GEMM (1024^3, 1 thread) is listed for comparison."
        ),
    }


# ----------------------------------------------------------------------------- 5. compression
def compression(h) -> None:
    """The int8 student's bytes against each teacher's float32 .tflite."""
    from kdtool.export.convert import convert_model, load_keras_model

    from flops import count_macs

    ex = h.export_student()
    int8 = ex["rows"]["int8"]["size_bytes"]
    f32_student = ex["rows"]["float32"]["size_bytes"]
    rows = []
    for m in ex["doc"]["models"]:
        if m["role"] != "teacher":
            continue
        path = ex["run"] / m["file"]
        model = load_keras_model(path)
        t0 = time.perf_counter()
        data, _ = convert_model(model, "float32")
        sec = time.perf_counter() - t0
        rows.append(
            {
                "teacher": m["name"],
                "params": int(model.count_params()),
                "image_size": m.get("image_size"),
                "macs_per_image": count_macs(model)["total"],
                "keras_bytes": path.stat().st_size,
                "float32_tflite_bytes": len(data),
                "convert_seconds": sec,
                "teacher_f32_over_student_int8": len(data) / int8,
                "teacher_f32_over_student_f32": len(data) / f32_student,
            }
        )
        log(
            f"compression: {m['name']} float32 .tflite {len(data):,} B = {len(data) / int8:.1f}x the int8 "
            f"student ({int8:,} B)"
        )
        del model
    h.results["compression"] = {
        "student": ex["name"],
        "student_int8_bytes": int8,
        "student_float32_bytes": f32_student,
        "student_params": ex["rows"]["int8"]["params"],
        "teachers": rows,
        "research_claim": "~100x",
    }


# ----------------------------------------------------------------------------- 6. scaling
def _subset(h, fd, frac: float, n: int) -> str:
    """A stratified ``frac`` of the training split (val and test whole) saved as an FData folder."""
    from kdtool.data import save_fdata, stratified_indices

    data = str(h.work / "subsets" / f"train{int(100 * frac)}")
    idx = stratified_indices(fd.labels("train"), n, 0)
    arrays = {"train": (fd.raw_x("train")[idx], fd.arrays["train"][1][idx])}
    arrays.update({s: fd.arrays[s] for s in ("val", "test")})
    save_fdata(
        data, arrays, fd.class_names, info={"source": h.data, "note": f"stratified {100 * frac:.0f}% of train, seed 0"}
    )
    return data


def scaling(h) -> None:
    """The pipeline (distill, export int8, bench) timed stage by stage at fractions of the training split."""
    from kdtool.bench.device import device_facts
    from kdtool.bench.run import SplitData, bench_model
    from kdtool.data import load_fdata
    from kdtool.distill.train import run_distill
    from kdtool.export.options import ExportOptions
    from kdtool.export.pipeline import export_models
    from kdtool.litert import select_runtime

    fd = load_fdata(h.data)
    n_all = len(fd.labels("train"))
    points = []
    last = h.p["seeds"][-1]
    for frac in h.p["fractions"]:
        n = int(round(frac * n_all))
        reuse = None
        if frac >= 1.0 and last in h.kd_runs and not h.kd_runs[last]["resumed"]:
            kd = h.kd_runs[last]
            want = dataclasses.asdict(h.pipeline_config(Path("-"), h.data))
            have = dataclasses.asdict(kd["cfg"])
            if {k: v for k, v in want.items() if k != "out"} == {k: v for k, v in have.items() if k != "out"}:
                reuse = kd
        data = h.data if frac >= 1.0 else _subset(h, fd, frac, n)
        out = h.work / "scaling" / f"train{int(100 * frac)}"
        log(f"scaling: {100 * frac:.0f}% of train ({n} images)", bold=True)
        if reuse:
            out, distill_s = Path(reuse["out"]), reuse["wall_s"]
            log(f"scaling: distill = kd seed {last}'s run ({distill_s:.1f} s, same configuration)")
        else:
            t0 = time.perf_counter()
            run_distill(h.pipeline_config(out, data), fresh=True)
            distill_s = time.perf_counter() - t0
        exp_out = out / "export_pipeline"
        shutil.rmtree(exp_out, ignore_errors=True)
        t0 = time.perf_counter()
        res = export_models(str(out), ExportOptions(modes=["int8"], data=data, out=str(exp_out), max_drop=100.0))
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for row in res.rows:  # kdtool bench's defaults: 1 thread, 200 runs, 20 warm-up, test split
            rt = select_runtime()
            bench_model(
                exp_out / row["file"],
                SplitData.from_fdata(load_fdata(data, splits=("test",)), "test"),
                rt,
                device=device_facts(rt),
            )
        bench_s = time.perf_counter() - t0
        total = distill_s + export_s + bench_s
        stages = {m["name"]: m["train_seconds"] for m in json.loads((out / "run.json").read_text())["models"]}
        stages["evaluation, plots, saving"] = distill_s - sum(stages.values())
        points.append(
            {
                "fraction": frac,
                "train_images": n,
                "distill_seconds": distill_s,
                "distill_stages": stages,
                "export_seconds": export_s,
                "bench_seconds": bench_s,
                "total_seconds": total,
                "reused_kd_run": bool(reuse),
                "models_exported": len(res.rows),
            }
        )
        log(
            f"scaling: {100 * frac:.0f}%: distill {distill_s:.1f} s, export {export_s:.1f} s, "
            f"bench {bench_s:.1f} s, total {total:.1f} s"
        )
        h.results["scaling"] = {"points": points}
        h.save()
    xs = np.array([pt["train_images"] for pt in points], float)
    ys = np.array([pt["total_seconds"] for pt in points], float)
    fit = None
    if len(points) >= 2:
        slope, intercept = np.polyfit(xs, ys, 1)
        fit = {"seconds_per_1000_images": 1000 * slope, "fixed_seconds": intercept}
    cfg = dataclasses.asdict(h.pipeline_config(Path("-"), h.data))
    h.results["scaling"] = {
        "pipeline": ("kdtool distill defaults" if h.p["pipeline"] == "default" else "the quick KD configuration")
        + " + kdtool export (int8) + kdtool bench (test split, defaults), in-process (no interpreter start-up)",
        "config": {k: v for k, v in cfg.items() if k not in ("out", "data")},
        "points": points,
        "linear_fit": fit,
        "growth_100_over_25": ys[-1] / ys[0] if len(ys) >= 2 else None,
        "import_seconds": h.results.get("import_seconds"),
    }
