"""``kdtool distill``: click command only; TensorFlow is imported when it runs."""

from __future__ import annotations

import click

from kdtool.distill.balance import BALANCE_MODES, KD_BALANCE_MODES
from kdtool.distill.student import DEFAULT_CONVS_PER_BLOCK, DEFAULT_DENSE_UNITS, DEFAULT_DROPOUT, DEFAULT_FILTERS
from kdtool.errors import InputError


def _filters(value: str) -> tuple[int, ...]:
    try:
        filters = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--student-filters must be comma-separated integers, got {value!r}") from None
    if not filters or min(filters) < 1:
        raise InputError(f"--student-filters needs positive integers, got {value!r}")
    return filters


def _floats(option: str, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{option} must be comma-separated numbers, got {value!r}") from None


@click.command(context_settings={"show_default": True})
@click.option("--data", default="FData", type=click.Path(file_okay=False), help="FData folder with X_/y_ {train,val,test}.npy.")
@click.option("--out", default="models", type=click.Path(file_okay=False), help="Output folder (run.json, summary.csv, models). Re-running the same command here skips finished models.")
@click.option("--teachers", default="efficientnet_lite0", help="Comma-separated teacher names, or 'all'. See `kdtool distill --list-teachers`.")
@click.option("--list-teachers", is_flag=True, help="List the registered teachers and exit.")
@click.option("--weights", type=click.Choice(["auto", "imagenet", "none"]), default="auto", help="Teacher init: imagenet (fail if unavailable), auto (ImageNet, else random init with a warning), none (from scratch).")
@click.option("--image-size", type=int, default=96, help="Side teachers resize images to inside the model (raised to each architecture's minimum, e.g. 71 for Xception). 96 measured far better than 32 for EfficientNet-Lite0, for about 2x the teacher time.")
@click.option("--epochs", type=int, default=120, help="Training epochs for every student (distilled and alone), on the cached views. 120 measured better than 60 on every test metric of the distilled student over three seeds (balanced accuracy +3.8 points paired; benchmarks/recipes_v8e120.md), for twice the student training time.")
@click.option("--teacher-epochs", type=int, default=5, help="Fine-tuning epochs for each teacher, head phase included.")
@click.option("--teacher-seeds", type=int, default=1, help="Teachers fine-tuned per architecture, with seeds --seed, --seed+1, ...; each architecture's student then distils from the mean of their soft targets. 3 raised the int8 student's test melanoma sensitivity from 55.4 to 59.3% and ROC-AUC from 92.9 to 93.2 over three seeds, balanced accuracy unchanged (benchmarks/recipes_ts3.md), for 3x the teacher time.")
@click.option("--teacher-head-epochs", type=int, default=0, help="Of --teacher-epochs, how many train only the new logits head with the pretrained backbone frozen, before the whole network is fine-tuned (0: whole network from the start; ignored for randomly initialised teachers).")
@click.option("--batch-size", type=int, default=64, help="Batch size for teachers and students.")
@click.option("--learning-rate", type=float, default=1e-3, help="Adam learning rate of the students.")
@click.option("--teacher-learning-rate", type=float, default=1e-3, help="Adam learning rate of the teachers (the head phase, or all of fine-tuning without one).")
@click.option("--teacher-finetune-learning-rate", type=float, default=None, help="After a head phase: Adam learning rate of the whole-network phase (default: --teacher-learning-rate).")
@click.option("--alpha", type=float, default=0.5, help="Weight of the hard-label cross-entropy; 1-alpha weighs the soft KL term.")
@click.option("--temperature", type=float, default=2.0, help="KD temperature T (soft targets softmax(z/T); KL term scaled by T^2).")
@click.option("--sweep-temperatures", default="", help="Comma-separated temperatures to sweep, e.g. 1,2,4,8: one student per (T, alpha) pair and teacher; the best by validation balanced accuracy is reported, with a heatmap.")
@click.option("--sweep-alphas", default="", help="Comma-separated alphas to sweep, e.g. 0.1,0.3,0.5 (with --sweep-temperatures or alone).")
@click.option("--teacher-logits", type=click.Choice(["cached", "online"]), default="cached", help="cached: run each teacher once per training image; online: run the frozen teacher every step.")
@click.option("--ensemble", is_flag=True, help="Also distil one student from the mean of all teachers' soft targets.")
@click.option("--student-filters", default=",".join(map(str, DEFAULT_FILTERS)), help="Filters of the student's conv blocks (32,64,128 with --student-convs 1 is the earlier default student).")
@click.option("--student-dense", type=int, default=DEFAULT_DENSE_UNITS, help="Units of the student's dense layer (0: none).")
@click.option("--student-convs", type=click.IntRange(min=1), default=DEFAULT_CONVS_PER_BLOCK, help="Conv-BN-ReLU units per student block before its pooling. The default, 2 units of 24,40,80 filters (about 140k parameters), is VGG-style; 1 with --student-filters 32,64,128 is the earlier default (129k).")
@click.option("--student-dropout", type=float, default=DEFAULT_DROPOUT, help="Dropout before the student's logits.")
@click.option("--balance", type=click.Choice(BALANCE_MODES), default="logit-adjust", help="Class imbalance, for teachers and students: logit-adjust (unweighted CE on logits + log class prior, Menon et al. 2021; beat class weights on all five test metrics over three seeds, see benchmarks/recipes_d96.md), weights (class-weighted CE and KD terms), sampling (class-balanced batches), none.")
@click.option("--augment/--no-augment", default=True, help="Flips, 90-degree rotations, small shifts and colour jitter for teachers and students.")
@click.option("--views", type=int, default=8, help="With --augment and cached logits: fixed augmented views per training image whose teacher logits are cached (the teacher runs this many times per image).")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="cosine", help="Learning rate over each model's training: cosine decay to 0 by its last epoch (default: steadier across seeds, see benchmarks/recipes.md), or constant.")
@click.option("--kd-balance", type=click.Choice(KD_BALANCE_MODES), default="none", help="Distilled students only: weights, each training image's KD (KL) term weighted by its class's weight N / (K * n_c), the hard-label term unchanged (balanced KD, Zhang et al. 2023: without it two-thirds of the teacher's signal is spent on nevi); none: every image's KD term counts the same. On two seeds weights found more melanomas (+5.3 points) but cost 3.6 points of accuracy for +0.7 of balanced accuracy, so none is the default (benchmarks/HISTORY.md, 'Balanced KD'). Not with --balance weights, which weights both terms already.")
@click.option("--select-best/--last-epoch", "select_best", default=False, help="Keep each model's last epoch (default: with the cosine schedule, a settled model), or its epoch with the best validation balanced accuracy. The last epoch gave the distilled student more accuracy and ROC-AUC and seeds closer together, and with export's defaults its mean over fresh seeds met every target, two seeds of three on their own (benchmarks/last_epoch_rule.md, last_epoch.md). Run folders trained before it was the default record select_best: add --select-best to reuse one.")
@click.option("--patience", type=int, default=0, help="With --select-best: stop a model after this many epochs without improvement (0: never; refused without --select-best).")
@click.option("--ema", type=float, default=0.0, help="Students only: keep an exponential moving average of the weights with this momentum per step (e.g. 0.999, about the last 1000 batches); the average is what is validated, kept (with --select-best, its best epoch) and saved, and history.csv logs the raw weights' validation balanced accuracy beside it. 0: off.")
@click.option("--seed", type=int, default=42, help="Random seed (all students start from the same weights).")
@click.option("--strategy", type=click.Choice(["auto", "mirrored", "multiworker"]), default="auto", help="tf.distribute strategy: auto (mirrored on >1 GPU), mirrored (all local GPUs, else logical CPUs), multiworker (TF_CONFIG).")
@click.option("--calibration-folds", type=int, default=0, help="K >= 2: after the run, train the same recipe K more times on lesion-disjoint folds of the train split (lesions from the data's image_ids.csv) and save each student's out-of-fold logits, on which `kdtool export --floor-on oof` chooses the melanoma floor instead of the small validation split. About (K-1) times the run's training time; adding it to a finished run trains only the folds. 0: off.")
@click.option("--fresh", is_flag=True, help="Retrain every model even if this --out holds finished ones.")
def distill_command(list_teachers, fresh, student_filters, teachers, sweep_temperatures, sweep_alphas, **options):
    """Fine-tune teacher CNNs and distil each into a ~140k-parameter student.

    For every teacher: fine-tune it on the training split, cache its logits,
    and train a fresh student with
    alpha * CE + (1 - alpha) * T^2 * KL(teacher/T || student/T).
    A student trained alone with the same budget is the baseline. Every model
    is evaluated on val and test and ranked in OUT/summary.csv.

    \b
    Example (a few minutes on a laptop CPU):
      kdtool data synthetic --out FData
      kdtool distill --data FData --teachers efficientnet_lite0 --epochs 3 --teacher-epochs 1
    \b
    Sweep T and alpha (one student per pair, teacher trained once):
      kdtool distill --data FData --sweep-temperatures 1,4 --sweep-alphas 0.1,0.5 --out sweep
    """
    from kdtool.distill.teachers import TEACHERS, list_teachers as names, parse_teachers

    if list_teachers:
        for name in names():
            spec = TEACHERS[name]
            click.echo(f"{name:<20} min input {spec.min_size:>3}px  preprocessing {spec.preprocess:<7} weights: {spec.source}")
        return
    from kdtool.distill.config import DistillConfig
    from kdtool.distill.train import run_distill

    cfg = DistillConfig(teachers=parse_teachers(teachers), student_filters=_filters(student_filters),
                        temperatures=_floats("--sweep-temperatures", sweep_temperatures),
                        alphas=_floats("--sweep-alphas", sweep_alphas), **options)
    run_distill(cfg, fresh=fresh)
