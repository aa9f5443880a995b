"""A run's stages: every model it trains, in order, each skipped when already finished.

First the student alone (the baseline, no teacher); then per teacher architecture its
``--teacher-seeds`` fine-tuned teachers and the student(s) distilled from them (one per
(T, alpha) point of a sweep); with ``--ensemble``, one more student from the mean of all
teachers' soft targets. With several students (``--student a,b``) each of them is trained
alone and distilled from the same teachers, fine-tuned and cached once; their names end in
the student's name (``student_alone_resnet8``, ``student_efficientnet_lite0_resnet8``).
:func:`train_models` trains what is missing and records each model in
run.json as it finishes; ``kdtool distill --calibration-folds`` trains the same models on each fold.

Example:
    >>> cfg = DistillConfig(teachers=["efficientnet_lite0", "vgg16"], ensemble=True)
    >>> stage_count(cfg)  # the student alone, 2 teachers, 2 students, the ensemble student
    6
    >>> stage_count(DistillConfig(student="vgg-small,resnet8"))  # 2 students alone, 1 teacher, 2 distilled
    5
    >>> train_models(run, strategy, print)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click
import numpy as np

from kdtool.distill.config import DistillConfig
from kdtool.distill.fit import distil_student, train_teacher
from kdtool.distill.outputs import finish_model
from kdtool.distill.students import model_suffix
from kdtool.distill.students.profile import count_macs
from kdtool.distill.targets import fixed_views, mean_soft_targets, teacher_logits
from kdtool.distill.timing import record_phase

if TYPE_CHECKING:
    from kdtool.distill.run_folder import Run


def teacher_instances(cfg: DistillConfig, arch: str) -> list[tuple[str, int]]:
    """(model name, seed) of each teacher of architecture ``arch``: ``--teacher-seeds`` of them.

    The first keeps the plain name and the run's seed, so a one-seed run is unchanged.

    Example:
        >>> teacher_instances(DistillConfig(seed=0, teacher_seeds=3), "vgg16")
        [('teacher_vgg16', 0), ('teacher_vgg16_seed1', 1), ('teacher_vgg16_seed2', 2)]
    """
    return [(f"teacher_{arch}" + (f"_seed{cfg.seed + i}" if i else ""), cfg.seed + i) for i in range(cfg.teacher_seeds)]


def sweep_grid(cfg: DistillConfig) -> list[tuple[float, float]]:
    """The (temperature, alpha) pairs each teacher's students train with (one pair without a sweep).

    Example:
        >>> sweep_grid(DistillConfig(temperatures=(2, 4)))
        [(2.0, 0.5), (4.0, 0.5)]
    """
    temps = [float(t) for t in cfg.temperatures] or [float(cfg.temperature)]
    alphas = [float(a) for a in cfg.alphas] or [float(cfg.alpha)]
    return [(t, a) for t in dict.fromkeys(temps) for a in dict.fromkeys(alphas)]


def student_name(arch: str, kd: tuple[float, float], swept: bool) -> str:
    """``student_<arch>``, with ``_T<T>_a<alpha>`` appended for a sweep point.

    Example:
        >>> student_name("efficientnet_lite0", (4.0, 0.3), True)
        'student_efficientnet_lite0_T4_a0.3'
    """
    return f"student_{arch}" + (f"_T{kd[0]:g}_a{kd[1]:g}" if swept else "")


def stage_count(cfg: DistillConfig) -> int:
    """How many models one run of ``cfg`` trains (the progress lines' total), fold runs aside.

    Example:
        >>> stage_count(DistillConfig(teachers=["vgg16"], teacher_seeds=3, temperatures=(1, 2, 4)))
        7
    """
    per_student = 1 + len(sweep_grid(cfg)) * len(cfg.teachers) + int(cfg.ensemble)
    return cfg.teacher_seeds * len(cfg.teachers) + per_student * len(cfg.students())


def student_names(cfg: DistillConfig) -> dict[str, str]:
    """``{student: suffix}``: the suffix each of the run's students adds to its models' names.

    One student keeps today's names (no suffix); several each end in their own name.

    Args:
        cfg: the run's configuration.

    Returns:
        The registered names in the order given, each with its suffix.

    Example:
        >>> student_names(DistillConfig(student="vgg-small,mobilenetv2-0.35"))
        {'vgg-small': '_vgg_small', 'mobilenetv2-0.35': '_mobilenetv2_035'}
        >>> student_names(DistillConfig())
        {'vgg-small': ''}
    """
    students = cfg.students()
    return {s: model_suffix(s) if len(students) > 1 else "" for s in students}


def train_models(run: Run, strategy, stage: Callable[[str], None]) -> None:
    """Train every model of ``run`` that is not finished yet: the student alone, each teacher and its
    student(s), the ensemble student; each is saved and recorded in run.json as it finishes.

    Args:
        run: the open run (its config, data and finished records).
        strategy: the ``tf.distribute`` strategy.
        stage: ``label -> None``, called as each model begins (prints a progress line).

    Example:
        >>> train_models(Run(cfg, fd, fresh=False), tf.distribute.get_strategy(), print)  # doctest: +SKIP
    """
    cfg = run.cfg
    run.views = fixed_views(cfg, run.fd)
    grid = sweep_grid(cfg)
    swept = len(grid) > 1
    suffixes = student_names(cfg)
    for student, sfx in suffixes.items():
        stage(f"student_alone{sfx} (baseline, no teacher)")
        if not run.done(f"student_alone{sfx}"):
            _distil(run, strategy, f"student_alone{sfx}", "baseline", None, [], None, student=student)
        else:
            click.echo("  already done, skipped")
    online = cfg.teacher_logits == "online"
    teacher_models, cached_all = [], []
    for arch in cfg.teachers:
        snames = {
            (student, kd): student_name(arch, kd, swept) + sfx for student, sfx in suffixes.items() for kd in grid
        }
        need_cached = not online and (
            not all(run.done(s) for s in snames.values())
            or (cfg.ensemble and not all(run.done(f"student_ensemble{sfx}") for sfx in suffixes.values()))
        )
        members, member_logits = [], []
        for tname, seed in teacher_instances(cfg, arch):
            stage(f"{tname}: fine-tune")
            if run.done(tname):
                click.echo("  already done, skipped")
                if not (need_cached or online):  # every student it teaches is finished too
                    members.append((tname, None))
                    continue
                teacher = run.load_model(tname)
            else:
                teacher, info = train_teacher(run, strategy, arch, tname, seed)
                finish_model(
                    run,
                    tname,
                    "teacher",
                    None,
                    teacher,
                    info["history"] or {"loss": []},
                    info["seconds"],
                    info["record"],
                )
            teacher.trainable = False
            members.append((tname, teacher))
            if need_cached:
                t0 = time.perf_counter()
                member_logits.append(teacher_logits(teacher, run))
                views = len(run.views) if run.views is not None else 1
                images = views * len(run.fd.labels("train")) + len(run.fd.labels("val"))
                record_phase(run, "cache logits", tname, time.perf_counter() - t0, images, count_macs(teacher))
        label = "+".join(t for t, _ in members)
        cached = None
        if need_cached:
            cached = member_logits[0] if len(members) == 1 else mean_soft_targets(member_logits, cfg.temperature)
        if online:  # cached KD needs no teacher past its logits: let it go
            teacher_models += [t for _, t in members]
        cached_all.append(cached)
        for (student, kd), sname in snames.items():
            stage(f"{sname}: distil from {label}" + (f" (T={kd[0]:g}, alpha={kd[1]:g})" if swept else ""))
            if run.done(sname):
                click.echo("  already done, skipped")
            else:
                teachers = [t for _, t in members]
                _distil(run, strategy, sname, "student", label, teachers, cached, kd, student=student)
        if swept and run.writer:  # the chief reports the sweep; the other workers have no records to read
            for student, sfx in suffixes.items():
                points = {kd: name for (s, kd), name in snames.items() if s == student}
                _report_sweep(run, arch, points, sfx)
    if cfg.ensemble:
        label = "+".join(t for a in cfg.teachers for t, _ in teacher_instances(cfg, a))
        cached = None if online or None in cached_all else mean_soft_targets(cached_all, cfg.temperature)
        for student, sfx in suffixes.items():
            stage(f"student_ensemble{sfx}: distil from the mean of {len(cfg.teachers)} teacher architectures")
            if run.done(f"student_ensemble{sfx}"):
                click.echo("  already done, skipped")
            else:
                name = f"student_ensemble{sfx}"
                _distil(run, strategy, name, "ensemble", label, teacher_models, cached, student=student)


def _distil(
    run: Run,
    strategy,
    name: str,
    role: str,
    teacher_label: str | None,
    teacher_models: list,
    cached,
    kd: tuple[float, float] | None = None,
    student: str | None = None,
) -> dict | None:
    """Train one student (:func:`kdtool.distill.fit.distil_student`), then save and record it."""
    model, info = distil_student(run, strategy, name, role, teacher_label, teacher_models, cached, kd, student)
    return finish_model(run, name, role, teacher_label, model, info["history"], info["seconds"], info["record"])


def _report_sweep(run: Run, arch: str, snames: dict, suffix: str = "") -> None:
    """Pick the sweep point with the best validation balanced accuracy; run.json, table and heatmap."""
    from kdtool.distill.plots import plot_sweep

    temps = list(dict.fromkeys(kd[0] for kd in snames))
    alphas = list(dict.fromkeys(kd[1] for kd in snames))
    scores = np.full((len(temps), len(alphas)), np.nan)
    points = []
    for (t, a), sname in snames.items():
        rec = run.done(sname)
        score = rec["val"]["balanced_accuracy"]
        scores[temps.index(t), alphas.index(a)] = score
        points.append(
            {
                "name": sname,
                "temperature": t,
                "alpha": a,
                "val_balanced_accuracy": score,
                "val_accuracy": rec["val"]["accuracy"],
                "val_melanoma_sensitivity": rec["val"].get("melanoma_sensitivity"),
            }
        )
    best = max(points, key=lambda p: p["val_balanced_accuracy"])
    run.doc.setdefault("sweep", {})[f"teacher_{arch}{suffix}"] = {"best": best, "points": points}
    run.save()
    plot_sweep(temps, alphas, scores, run.out / f"sweep_{arch}{suffix}.png", f"KD sweep, teacher_{arch}{suffix}")
    click.echo(f"  sweep over {len(points)} (T, alpha) pairs for teacher_{arch}{suffix} (val balanced accuracy, %):")
    click.echo("  " + "T \\ alpha".ljust(10) + "".join(f"{a:>8g}" for a in alphas))
    for i, t in enumerate(temps):
        click.echo("  " + f"{t:<10g}" + "".join(f"{100 * v:>8.1f}" for v in scores[i]))
    click.echo(
        f"  best: {best['name']} (T={best['temperature']:g}, alpha={best['alpha']:g}, "
        f"val balanced accuracy {100 * best['val_balanced_accuracy']:.1f}%); heatmap "
        f"{run.out / f'sweep_{arch}{suffix}.png'}"
    )
