"""Section 2 of the harness: what distillation costs per epoch, cached-logit against online KD.

The student alone, cached-logit KD and online KD (a frozen teacher on every batch, as in the Keras
example) with a small and a large teacher train through kdtool's own batches, ``Distiller`` and logit
caching. The configurations alternate epoch by epoch (the first round untimed) so that load from other
jobs hits all of them, and the median epoch is reported, with the one-off logit caching and the
full-run ratio online / cached = N x online epoch / (caching + N x cached epoch).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from common import log, median

METHOD = (
    "kdtool's own batches (training_batches: balancing, on-the-fly augmentation or fixed views), "
    "Distiller and compile settings; fit(epochs=1) per configuration in interleaved rounds "
    "(order reversed every other round); round 1 untimed (graph tracing); median over the timed "
    "rounds. Logit caching (teacher_logits: every fixed view + val) is timed in the timed "
    "rounds too; its cold first call is listed apart. With augmentation, cached KD and the "
    "student alone train on fixed views made once by fixed_views (counted with the caching), "
    "online KD augments every batch on the fly, as kdtool distill does. 'train' = the training "
    "steps, 'epoch' = training + Keras' validation pass (online KD runs the teacher there too). "
    "Teacher fine-tuning is the same in both modes and is not counted. Every time scales "
    "linearly with the images, so the ratios hold for the full split."
)


def distill_cost(h) -> None:
    """Time the four configurations without augmentation and, when the KD runs augment, with their recipe."""
    import tensorflow as tf

    from kdtool.data import FData, load_fdata, stratified_indices

    # run_distill switches deterministic kernels on for the whole process (kdtool distill --seed);
    # the timings below run under the same setting as a real run.
    tf.config.experimental.enable_op_determinism()
    p = h.p
    fd = load_fdata(h.data)
    frac = p["cost_fraction"]
    i_tr = stratified_indices(fd.labels("train"), int(round(frac * len(fd.labels("train")))), 0)
    i_va = stratified_indices(fd.labels("val"), int(round(frac * len(fd.labels("val")))), 0)
    sub = FData(
        root=fd.root,
        class_names=list(fd.class_names),
        arrays={"train": tuple(a[i_tr] for a in fd.arrays["train"]), "val": tuple(a[i_va] for a in fd.arrays["val"])},
    )
    cfg = h.kd_config(0, Path("-"))
    recipes = {"plain": dataclasses.replace(cfg, augment=False)}
    if cfg.augment:
        recipes["configured"] = cfg
    log(
        f"cost: {len(i_tr)} train / {len(i_va)} val images ({100 * frac:.0f}%), batch {cfg.batch_size}, "
        f"recipes: "
        + "; ".join(
            f"{k} (augment {c.augment}, views {c.views if c.augment else '-'}, balance {c.balance})"
            for k, c in recipes.items()
        ),
        bold=True,
    )
    out = {}
    for key, rcfg in recipes.items():
        out[key] = cost_recipe(h, key, rcfg, sub)
        h.results["distill_cost"] = {"recipes": out}
        h.save()
    goal_key = "configured" if "configured" in out else "plain"
    h.results["distill_cost"] = {
        "fraction_of_train": frac,
        "train_images": len(i_tr),
        "val_images": len(i_va),
        "batch_size": cfg.batch_size,
        "full_data_scale": 1.0 / frac,
        "teacher_weights": "random init (speed does not depend on the weights)",
        "op_determinism": True,  # enabled above, as run_distill does
        "rounds_timed": p["cost_rounds"],
        "recipes": out,
        "goal_recipe": goal_key,
        "goals": cost_goals(out[goal_key], p["epochs"]),
        "method": METHOD,
    }


def cost_goals(recipe: dict, run_epochs: int) -> dict:
    """The cost goals, judged over a run of ``run_epochs`` student epochs (the KD section's own).

    Cached KD should cost at most 1.1x the student alone per epoch, and a whole run should be at least
    4x faster than online KD with the large teacher.

    >>> recipe = {"ratios_vs_alone": {"cached_kd": {"epoch": 1.05}},
    ...           "full_run": {"120": {"large": {"online_over_cached": 2.5}}}}
    >>> g = cost_goals(recipe, 120)
    >>> g["cached_epoch_within_1.1x_of_alone"], g["full_run_at_least_4x_faster_than_online_large"]
    (True, False)
    """
    ratio = recipe["ratios_vs_alone"]["cached_kd"]["epoch"]
    big = recipe["full_run"][str(run_epochs)]["large"]["online_over_cached"]
    return {
        "cached_epoch_within_1.1x_of_alone": ratio <= 1.1,
        "cached_epoch_ratio": ratio,
        "full_run_epochs": run_epochs,
        "full_run_online_over_cached_large": big,
        "full_run_at_least_4x_faster_than_online_large": big >= 4.0,
    }


def _epoch_timer():
    """A Keras callback that records (training seconds, epoch seconds) of every epoch."""
    import keras

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

    return EpochTimer()


def cost_recipe(h, key: str, cfg, sub) -> dict:
    """Time student alone / cached KD / online KD (small, large teacher) epochs for one training recipe."""
    import types

    import keras

    from kdtool.distill.balance import balancing
    from kdtool.distill.distiller import Distiller, pack_targets, student_metrics
    from kdtool.distill.fit import training_batches  # the library's own data path
    from kdtool.distill.student import build_student
    from kdtool.distill.targets import fixed_views, teacher_logits
    from kdtool.distill.teachers import create_teacher

    from flops import count_macs

    p, a = h.p, h.args
    k = sub.num_classes
    # the parts of a kdtool Run that training_batches and teacher_logits read
    run = types.SimpleNamespace(cfg=cfg, fd=sub, views=None, balancing=balancing(cfg.balance, sub.labels("train"), k))
    t0 = time.perf_counter()
    run.views = fixed_views(cfg, sub)  # None unless augmenting with cached logits on several views
    views_s = time.perf_counter() - t0 if run.views is not None else 0.0
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
        caching[label] = {
            "teacher": a.cost_teacher,
            "image_size": info["image_size"],
            "images": n_img,
            "params": int(t.count_params()),
            "macs_per_image": count_macs(t)["total"],
        }
        if label == "small":
            cached_logits = logits
        log(
            f"cost[{key}]: caching logits of {a.cost_teacher}@{info['image_size']}px, {n_img} images "
            f"(first call): {cache_times[label][0]:.2f} s"
        )

    def student():
        keras.utils.set_random_seed(0)
        return build_student(
            sub.image_shape,
            k,
            cfg.student_filters,
            cfg.student_dense,
            cfg.student_dropout,
            convs_per_block=cfg.student_convs,
        )

    configs = {}
    s = student()
    s.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=student_metrics(),
    )
    configs["student_alone"] = (s, training_batches(run, x_fit, y_fit), (x_va, y_va))
    d = Distiller(student(), k, cfg.alpha, cfg.temperature)
    d.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), metrics=student_metrics())
    configs["cached_kd"] = (
        d,
        training_batches(run, x_fit, pack_targets(y_fit, cached_logits[0])),
        (x_va, pack_targets(y_va, cached_logits[1])),
    )
    for label in ("small", "large"):
        d = Distiller(student(), k, cfg.alpha, cfg.temperature, teachers=[teachers[label]])
        d.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), metrics=student_metrics())
        configs[f"online_kd_{label}"] = (d, training_batches(run, x_tr, y_tr), (x_va, y_va))
    timers = {name: _epoch_timer() for name in configs}
    rounds = 1 + p["cost_rounds"]
    for r in range(rounds):
        order = list(configs) if r % 2 == 0 else list(configs)[::-1]  # alternate the order too
        for name in order:
            model, batches, val = configs[name]
            model.fit(
                batches, validation_data=val, epochs=1, batch_size=cfg.batch_size, verbose=0, callbacks=[timers[name]]
            )
        if r:  # caching in the timed rounds only
            for label in ("small", "large") if r % 2 == 0 else ("large", "small"):
                cache(label)
        log(
            f"cost[{key}]: round {r + 1}/{rounds}{' (warm-up, untimed)' if r == 0 else ''}: "
            + ", ".join(f"{n} {timers[n].rows[-1][1]:.2f}s" for n in configs)
            + (
                ""
                if not r
                else ", caching " + ", ".join(f"{lb} {cache_times[lb][-1]:.2f}s" for lb in ("small", "large"))
            )
        )
    epochs = {}
    for name, tm in timers.items():
        timed = tm.rows[1:]
        epochs[name] = {
            "train_seconds": median([t for t, _ in timed]),
            "epoch_seconds": median([e for _, e in timed]),
            "first_epoch_seconds": tm.rows[0][1],
            "timed": [list(t) for t in timed],
        }
    for label, c in caching.items():
        timed = cache_times[label][1:]
        sec = median(timed)
        c.update(
            {
                "seconds": sec,
                "first_call_seconds": cache_times[label][0],
                "timed": timed,
                "ms_per_image": 1000 * sec / c["images"],
                "full_data_seconds_estimate": sec / p["cost_fraction"],
            }
        )
    return {
        "augment": cfg.augment,
        "views": cfg.views if run.views is not None else None,
        "balance": cfg.balance,
        "make_views_seconds": views_s,
        "epochs": epochs,
        "caching": caching,
        **cost_ratios(epochs, caching, views_s, p["epochs"]),
    }


def cost_ratios(epochs: dict, caching: dict, views_s: float, run_epochs: int) -> dict:
    """Each configuration's epoch against the student alone's, and a full run's online / cached ratio.

    A full run of N epochs costs N online epochs online, and making the views + caching + N cached
    epochs cached; as N grows the ratio tends to online epoch / cached epoch.

    >>> ep = lambda s: {"train_seconds": s, "epoch_seconds": s}
    >>> epochs = {"student_alone": ep(1.0), "cached_kd": ep(1.0),
    ...           "online_kd_small": ep(2.0), "online_kd_large": ep(4.0)}
    >>> r = cost_ratios(epochs, {"small": {"seconds": 10.0}, "large": {"seconds": 30.0}}, 0.0, 20)
    >>> r["full_run"]["20"]["large"]["online_over_cached"], r["online_over_cached_as_epochs_grow"]["large"]
    (1.6, 4.0)
    """
    alone = epochs["student_alone"]
    ratios = {
        name: {
            "train": e["train_seconds"] / alone["train_seconds"],
            "epoch": e["epoch_seconds"] / alone["epoch_seconds"],
        }
        for name, e in epochs.items()
    }
    full_run = {}
    for n in sorted({run_epochs, 20}):
        full_run[str(n)] = {}
        for label in ("small", "large"):
            cached_total = views_s + caching[label]["seconds"] + n * epochs["cached_kd"]["epoch_seconds"]
            online_total = n * epochs[f"online_kd_{label}"]["epoch_seconds"]
            full_run[str(n)][label] = {
                "cached_seconds": cached_total,
                "online_seconds": online_total,
                "online_over_cached": online_total / cached_total,
            }
    asymptote = {
        lb: epochs[f"online_kd_{lb}"]["epoch_seconds"] / epochs["cached_kd"]["epoch_seconds"]
        for lb in ("small", "large")
    }
    return {"ratios_vs_alone": ratios, "full_run": full_run, "online_over_cached_as_epochs_grow": asymptote}
