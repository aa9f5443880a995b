"""The harness's Markdown page: one section per measured part of the results JSON.

``render_markdown(json.load(open("benchmarks/results.json")))`` rebuilds ``results.md`` from its JSON.
"""

from __future__ import annotations

from pathlib import Path

from common import METRICS
from machine import machine_line


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
    return (
        f" (first {c['teacher_head_epochs']} head-only at lr {c['teacher_learning_rate']:g}, then the whole "
        f"network at lr {lr2:g})"
    )


def _processes(r: dict) -> str:
    procs = r.get("processes") or []
    if len(procs) < 2:
        return ""
    return (
        f", over {len(procs)} processes (--resume; sections per process: "
        + "; ".join(",".join(p["sections"]) or "none" for p in procs)
        + ")"
    )


def render_markdown(r: dict) -> str:
    """The results page of the harness's JSON document ``r`` (sections it lacks are left out).

    >>> page = render_markdown({"command": "python benchmarks/run.py --quick", "started": "2026-12-06T06:20:00",
    ...                         "data": "/d", "mode": "quick", "machine": {}})
    >>> page.splitlines()[0], "Raw numbers: `results.json`" in page
    ('# kdtool benchmarks', True)
    """
    m = r.get("machine", {})
    wall = r.get("wall_seconds") or 0
    L = [
        "# kdtool benchmarks",
        "",
        f"`{r['command']}` — {r['started'][:16].replace('T', ' ')} UTC — {machine_line(m)}.",
        f"Wall time of this run: {int(wall // 60)} min {int(wall % 60)} s"
        f"{_processes(r)} "
        f"(TensorFlow import {r.get('import_seconds', 0):.1f} s). Load average at the start "
        f"{', '.join(f'{v:.1f}' for v in (m.get('load_average_start') or []))} (it counts any job that ended just "
        "before); other jobs may have shared the cores, so times are upper bounds.",
        f"Data: `{r['data']}`; mode `{r['mode']}`. Raw numbers: `{r.get('json_name', 'results.json')}` beside "
        "this file.",
        "",
    ]

    for key, part in (
        ("kd_gain", _kd_gain),
        ("distill_cost", _distill_cost),
        ("quantization", _quantization),
        ("inference", _latency),
        ("compression", _compression),
        ("scaling", _scaling),
    ):
        if r.get(key):
            L += part(r)
    if r.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    return "\n".join(L)


def _kd_gain(r: dict) -> list[str]:
    """KD gain over seeds and the paired gain over the student alone."""
    kd = r["kd_gain"]
    c = kd["config"]
    L = [
        f"## 1. KD gain (mean ± std over seeds {', '.join(map(str, kd['seeds']))})",
        "",
        f"`run_distill` per seed: teachers {', '.join(c['teachers'])} fine-tuned {c['teacher_epochs']} "
        f"epoch(s) at {c['image_size']} px"
        f"{_head_phase(c)}, students {c['epochs']} epochs, learning rate "
        f"{c.get('lr_schedule', 'constant')}, alpha {c['alpha']}, T "
        f"{c['temperature']}, balance {c['balance']}, augment {c['augment']}"
        f"{' (' + str(c['views']) + ' fixed views)' if c['augment'] and c['views'] > 1 else ''}, select-best "
        f"{c['select_best']}, cached logits. Metrics in %, test split unless marked val.",
        "",
        "| model | role | " + " | ".join(lbl for _, lbl in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    order = sorted(
        kd["models"].items(),
        key=lambda kv: ({"baseline": 0, "student": 1, "ensemble": 2, "teacher": 3}.get(kv[1]["role"], 4), kv[0]),
    )
    for name, row in order:
        L.append(f"| {name} | {row['role']} | " + " | ".join(fmt_mean_std(row[k]) for k, _ in METRICS) + " |")
    if kd["gain_vs_alone"]:
        L += [
            "",
            "Paired gain over the student alone (same seed), percentage points:",
            "",
            "| student | " + " | ".join(lbl for _, lbl in METRICS) + " |",
            "|---|" + "---|" * len(METRICS),
        ]
        for name, g in sorted(
            kd["gain_vs_alone"].items(), key=lambda kv: (kd["models"][kv[0]]["role"] == "ensemble", kv[0])
        ):
            L.append(f"| {name} | " + " | ".join(fmt_gain(g[k]) for k, _ in METRICS) + " |")
    if kd.get("note"):
        L += ["", f"Note: {kd['note']}."]
    alone = kd["models"].get("student_alone", {}).get("test_balanced_accuracy", {}).get("mean")
    weak = [
        n
        for n, row in kd["models"].items()
        if row["role"] == "teacher" and alone is not None and (row["test_balanced_accuracy"]["mean"] or 0) <= alone
    ]
    if weak:
        wb = ", ".join(f"{n} {100 * kd['models'][n]['test_balanced_accuracy']['mean']:.1f}%" for n in weak)
        L += [
            "",
            f"Observation: the teacher(s) scored no better than the student alone ({100 * alone:.1f}%) on "
            f"test balanced accuracy ({wb}, after {c['teacher_epochs']} fine-tuning epoch(s); predicting one "
            "class for every image gives 1/7 = 14.3%). Soft targets from a teacher that is not better than the "
            "student cannot be expected to help: with such teachers these rows exercise the harness rather "
            "than show what distillation can gain.",
        ]
    walls = ", ".join(
        f"seed {x['seed']} {x['wall_seconds']:.0f} s"
        + (
            f" (resumed: this process's part; its models' recorded training "
            f"{sum(m['train_seconds'] for m in x['models']) / 60:.0f} min)"
            if x.get("resumed")
            else ""
        )
        for x in kd["runs"]
    )
    L += ["", f"Run wall times: {walls}.", ""]
    return L


def _distill_cost(r: dict) -> list[str]:
    """Epoch times of the cost section's configurations and its goals."""
    dc = r["distill_cost"]
    if not dc.get("goals"):
        return []
    L = [
        "## 2. Distillation cost",
        "",
        f"{dc['train_images']} train / {dc['val_images']} val images ({100 * dc['fraction_of_train']:.0f}% "
        f"stratified subset), batch {dc['batch_size']}, median of {dc['rounds_timed']} interleaved timed "
        "epochs after one untimed warm-up epoch, through kdtool's own batches, `Distiller` and logit caching; "
        "teachers frozen, random init (speed does not depend on the weights); deterministic ops on, as in "
        "`kdtool distill`. 'train' = training steps only, 'epoch' = training + validation pass. Times scale "
        f"linearly with the images: multiply by {dc['full_data_scale']:.2f} for the whole training split.",
        "",
    ]
    for key, rec in dc["recipes"].items():
        e, rat, ca = rec["epochs"], rec["ratios_vs_alone"], rec["caching"]
        sm, lg = ca["small"], ca["large"]
        what = (
            f"augmentation on: {rec['views']} fixed views per image for the student alone and cached KD "
            "(teacher run on every view), fresh random augmentation of every batch for online KD"
            if rec["augment"]
            else "no augmentation"
        )
        L += [
            f"### Recipe `{key}`: {what}; balance {rec['balance']}",
            "",
            "| configuration | train s | epoch s | train ratio vs alone | epoch ratio vs alone "
            "| first epoch s (tracing) |",
            "|---|---|---|---|---|---|",
        ]
        names = {
            "student_alone": "student alone",
            "cached_kd": "cached-logit KD",
            "online_kd_small": f"online KD, {sm['teacher']} @ {sm['image_size']} px",
            "online_kd_large": f"online KD, {lg['teacher']} @ {lg['image_size']} px",
        }
        for k, label in names.items():
            L.append(
                f"| {label} | {e[k]['train_seconds']:.2f} | {e[k]['epoch_seconds']:.2f} | "
                f"{rat[k]['train']:.2f}x | {rat[k]['epoch']:.2f}x | {e[k]['first_epoch_seconds']:.2f} |"
            )
        L += [
            "",
            "One-off logit caching (median of the timed rounds, and the cold first call)"
            + (f"; making the views took {rec['make_views_seconds']:.2f} s" if rec["views"] else "")
            + ":",
            "",
            "| teacher | params | MACs / image | images | seconds | first call s | ms / image | whole split (est.) s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in (sm, lg):
            L.append(
                f"| {c['teacher']} @ {c['image_size']} px | {c['params']:,} | {c['macs_per_image'] / 1e6:.1f} M "
                f"| {c['images']} | {c['seconds']:.2f} | {c['first_call_seconds']:.2f} | {c['ms_per_image']:.2f} "
                f"| {c['full_data_seconds_estimate']:.1f} |"
            )
        L += [
            "",
            "Full run, student part (teacher fine-tuning is the same in both modes): cached = "
            + ("making the views + " if rec["views"] else "")
            + "caching + N x cached epoch, online = N x "
            "online epoch:",
            "",
            "| N epochs | teacher | cached s | online s | online / cached |",
            "|---|---|---|---|---|",
        ]
        for n, per in rec["full_run"].items():
            for label, v in per.items():
                c = ca[label]
                L.append(
                    f"| {n} | {c['teacher']} @ {c['image_size']} px | {v['cached_seconds']:.1f} | "
                    f"{v['online_seconds']:.1f} | {v['online_over_cached']:.2f}x |"
                )
        asym = rec["online_over_cached_as_epochs_grow"]
        L += [
            "",
            f"As N grows the one-off costs are amortised and online / cached tends to online epoch / cached "
            f"epoch: {asym['small']:.2f}x ({sm['image_size']} px), {asym['large']:.2f}x ({lg['image_size']} px).",
            "",
        ]
    g = dc["goals"]
    lg = dc["recipes"][dc["goal_recipe"]]["caching"]["large"]
    L += [
        f"Goals (recipe `{dc['goal_recipe']}`, the one the KD section ran): cached KD per epoch within 1.1x "
        f"of the student alone: **{'met' if g['cached_epoch_within_1.1x_of_alone'] else 'not met'}** "
        f"({g['cached_epoch_ratio']:.2f}x); over a {g['full_run_epochs']}-epoch run (the run's student "
        f"epochs) at least 4x faster than online KD with {lg['teacher']} @ {lg['image_size']} px: "
        f"**{'met' if g['full_run_at_least_4x_faster_than_online_large'] else 'not met'}** "
        f"({g['full_run_online_over_cached_large']:.2f}x).",
        "",
    ]
    return L


def _quantization(r: dict) -> list[str]:
    """Each export mode's size, validation check and test metrics."""
    from kdtool.bench.report import operating_point_note

    q = r["quantization"]
    L = [
        "## 3. Quantization",
        "",
        f"`{q['model']}` ({q['params']:,} params) from "
        + (
            f"the run `{Path(q['source']).parent}` (--run)"
            if q.get("given_run")
            else f"the kd section's first seed's run (`{Path(q['source']).parent.name}`)"
        )
        + ", exported with `export_models` at export's defaults"
        + (
            f" (operating point: {operating_point_note(q['operating_point']) or 'as trained'})"
            if q.get("operating_point") is not None
            else ""
        )
        + " "
        "(int8: full-integer, int8 I/O, 300 stratified train images for calibration; int8-floatends: the same with "
        "the first conv and the logits layer float32); val columns from the "
        "export check (852 images), test columns from kdtool bench (1704 images). Accuracies in %.",
        "",
        "| mode | bytes | x float32 | val acc (Keras -> TFLite) | val drop pts | val bal acc | test acc | "
        "test bal acc | test macro-F1 | test mel sens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, v in q["modes"].items():
        L.append(
            f"| {mode} | {v['bytes']:,} | {v['ratio_to_float32']:.3f} | {_pct(v['val_keras_accuracy'], 2)} -> "
            f"{_pct(v['val_accuracy'], 2)} | {v['val_accuracy_drop_pts']:+.2f} | "
            f"{_pct(v['val_balanced_accuracy'], 2)} | {_pct(v['test_accuracy'], 2)} | "
            f"{_pct(v['test_balanced_accuracy'], 2)} | {_pct(v['test_macro_f1'], 2)} | "
            f"{_pct(v['test_melanoma_sensitivity'], 2)} |"
        )
    d = q["int8_drop_pts"]
    if d["test_accuracy_vs_float32"] is not None:
        L += [
            "",
            f"int8 drop: {d['val_accuracy_vs_keras']:+.2f} pts val accuracy vs Keras, "
            f"{d['val_balanced_accuracy_vs_keras']:+.2f} pts val balanced accuracy; "
            f"{d['test_accuracy_vs_float32']:+.2f} pts test accuracy and "
            f"{d['test_balanced_accuracy_vs_float32']:+.2f} pts test balanced accuracy vs float32 .tflite "
            "(positive = int8 worse; one test image is 0.06 pts, one val image 0.12).",
        ]
    L.append("")
    return L


def _latency(r: dict) -> list[str]:
    """Batch-1 latency and the compute floor."""
    inf = r["inference"]
    lat, rat = inf["latency"], inf["ratio_to_int8_1thread"]
    labels = {
        "tflite_int8_1t": "int8 .tflite, kdtool bench, 1 thread",
        "tflite_int8_2t": "int8 .tflite, kdtool bench, 2 threads",
        "tflite_float32_1t": "float32 .tflite, kdtool bench, 1 thread",
        "tflite_float32_2t": "float32 .tflite, kdtool bench, 2 threads",
        "keras_call": "Keras `model(x, training=False)`",
        "keras_predict": "Keras `model.predict(x)`",
        "keras_batched_256": "Keras, batches of 256 (per image, for reference)",
    }
    mc, pk, fl, ov = inf["macs"], inf["gemm_peak"], inf["compute_floor_ms"], inf["latency_over_floor"]
    L = [
        "## 4. Inference latency (batch 1, per image)",
        "",
        f"`{inf['model']}`; TFLite through kdtool bench's in-process API (ai-edge-litert, XNNPACK), median "
        "of the timed invokes on one test image; Keras under TensorFlow's default threads (2 cores).",
        "",
        "| runtime | median ms | p90 ms | x int8 (1 thread) |",
        "|---|---|---|---|",
    ]
    for k, label in labels.items():
        v = lat[k]
        p90 = f"{v['p90_ms']:.3f}" if v.get("p90_ms") is not None else "-"
        L.append(f"| {label} | {v['median_ms']:.3f} | {p90} | {rat[k]:.1f}x |")
    xn = pk["xnnpack"]
    L += [
        "",
        f"Compute: {mc['total'] / 1e6:.2f} M MACs = {mc['flops'] / 1e6:.1f} MFLOPs per image (conv "
        f"{mc['by_kind'].get('conv', 0) / 1e6:.2f} M, dense {mc['by_kind'].get('dense', 0) / 1e6:.3f} M MACs; "
        "counted from the layers).",
        "",
        "| precision, threads | GEMM peak here (G op/s) | compute floor us | measured median us | x floor |",
        "|---|---|---|---|---|",
    ]
    for key in ("int8_1t", "int8_2t", "float32_1t", "float32_2t"):
        mode, t = key.split("_")
        L.append(
            f"| {mode}, {t[0]} | {xn[key]['gops']:.0f} | {1000 * fl[key]:.0f} | "
            f"{1000 * lat['tflite_' + key]['median_ms']:.0f} | {ov[key]:.2f}x |"
        )
    L += [
        "",
        f"Assumption: {inf['floor_assumption']} numpy float32 peak: {pk['numpy_float32_1t']['gflops']:.0f} "
        f"GFLOP/s (floor {1000 * fl['numpy_float32_1t']:.0f} us).",
        "",
    ]
    return L


def _compression(r: dict) -> list[str]:
    """The int8 student against each teacher's float32 file."""
    co = r["compression"]
    L = [
        "## 5. Compression",
        "",
        f"int8 student `{co['student']}`: {co['student_int8_bytes']:,} bytes ({co['student_params']:,} "
        f"params; its float32 .tflite {co['student_float32_bytes']:,} bytes). Research claim: "
        f"{co['research_claim']}.",
        "",
        "| teacher | params | MACs / image | float32 .tflite bytes | x int8 student | x float32 student |",
        "|---|---|---|---|---|---|",
    ]
    for t in co["teachers"]:
        L.append(
            f"| {t['teacher']} @ {t['image_size']} px | {t['params']:,} | {t['macs_per_image'] / 1e6:.1f} M | "
            f"{t['float32_tflite_bytes']:,} | {t['teacher_f32_over_student_int8']:.1f}x | "
            f"{t['teacher_f32_over_student_f32']:.1f}x |"
        )
    L.append("")
    return L


def _scaling(r: dict) -> list[str]:
    """The pipeline's stages at each fraction of the training split."""
    sc = r["scaling"]
    if not sc.get("points"):
        return []
    L = ["## 6. Pipeline wall time and scaling", ""]
    if sc.get("pipeline"):
        c = sc["config"]
        L += [
            f"{sc['pipeline']}: teachers {', '.join(c['teachers'])} ({c['teacher_epochs']} epoch(s)), "
            f"{c['epochs']} student epochs, seed {c['seed']}. Val (852) and test (1704) stay whole. Add about "
            f"{r.get('import_seconds', 0):.0f} s of TensorFlow start-up per `kdtool distill` / `kdtool export` "
            "command.",
            "",
        ]
    stage_names = list(dict.fromkeys(k for pt in sc["points"] for k in pt.get("distill_stages", {})))
    head = ["train images", "distill s", *[f"{k} s" for k in stage_names], "export s", "bench s", "total s"]
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pt in sc["points"]:
        st = pt.get("distill_stages", {})
        cells = [
            f"{pt['train_images']} ({100 * pt['fraction']:.0f}%){' *' if pt['reused_kd_run'] else ''}",
            f"{pt['distill_seconds']:.1f}",
            *[f"{st[k]:.1f}" if k in st else "-" for k in stage_names],
            f"{pt['export_seconds']:.1f}",
            f"{pt['bench_seconds']:.1f}",
            f"{pt['total_seconds']:.1f}",
        ]
        L.append("| " + " | ".join(cells) + " |")
    if any(pt["reused_kd_run"] for pt in sc["points"]):
        L += ["", "\\* the distill time is the last seed's KD run of section 1 (same configuration)."]
    L += [
        "",
        "Per-model columns are each model's `train_seconds` from run.json (fit, with the per-epoch "
        "validation scoring, and with --select-best its best-epoch selection); the rest of `run_distill` is "
        "evaluation on val and test, plots, saving and reloading.",
    ]
    if sc.get("linear_fit"):
        f = sc["linear_fit"]
        L += [
            "",
            f"Linear fit: {f['fixed_seconds']:.0f} s fixed + {f['seconds_per_1000_images']:.1f} s per 1000 "
            f"training images; 100% takes {sc['growth_100_over_25']:.2f}x the 25% run.",
        ]
    L.append("")
    return L
