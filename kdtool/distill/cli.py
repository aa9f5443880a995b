"""``kdtool distill``: the click command only; TensorFlow is imported when it runs.

Every option sets the DistillConfig field of the same name and shows that field's default
(:data:`kdtool.distill.config.DEFAULTS`); ``--config`` reads a recipe with the same keys, and the
options given on the command line override it.
"""

from __future__ import annotations

import click
import cloup
from click.core import ParameterSource

from kdtool.distill.balance import BALANCE_MODES, KD_BALANCE_MODES
from kdtool.distill.config import (
    DEFAULTS,
    LIST_FIELDS,
    LR_SCHEDULES,
    STRATEGIES,
    TEACHER_LOGITS,
    WEIGHTS,
    DistillConfig,
    list_from_text,
    list_to_text,
    option_name,
)


def _option(name: str, help: str, decl: str | None = None, **kwargs):
    """A ``cloup.option`` that sets DistillConfig field ``name``, its default read from :data:`DEFAULTS`."""
    default = getattr(DEFAULTS, name)
    if name in LIST_FIELDS:
        default = list_to_text(default)
        kwargs.setdefault("metavar", "A,B,..")
    elif isinstance(default, bool) and decl is None:
        kwargs["is_flag"] = True
    elif default is not None:
        kwargs.setdefault("type", type(default))
    kwargs.setdefault("show_default", True)
    return cloup.option(decl or option_name(name), name, default=default, help=help, **kwargs)


@cloup.command(context_settings={"show_default": True}, align_option_groups=True)
@cloup.option_group(
    "Data",
    _option(
        "data",
        "FData folder holding X_{train,val,test}.npy and y_{train,val,test}.npy.",
        type=click.Path(file_okay=False),
    ),
    _option(
        "out",
        "Output folder for run.json, summary.csv and the models; re-running into it skips finished models.",
        type=click.Path(file_okay=False),
    ),
    _option(
        "balance",
        "Class imbalance, for teachers and students: logit-adjust (log class prior added to the "
        "logits), weights (class-weighted loss), sampling (class-balanced batches) or none.",
        type=click.Choice(BALANCE_MODES),
    ),
    _option(
        "augment",
        "Augment training images with flips, 90-degree rotations, small shifts and colour jitter.",
        "--augment/--no-augment",
    ),
    _option(
        "views",
        "With --augment and cached logits, the fixed augmented views of each training image whose "
        "teacher logits are cached.",
    ),
)
@cloup.option_group(
    "Teachers",
    _option(
        "teachers",
        "Comma-separated teacher names, or all (see --list-teachers); an empty string trains the student alone only.",
    ),
    cloup.option("--list-teachers", is_flag=True, help="List the registered teachers and exit."),
    _option(
        "weights",
        "Teacher initialisation: imagenet (fail if unavailable), auto (ImageNet, else random with "
        "a warning) or none (from scratch).",
        type=click.Choice(WEIGHTS),
    ),
    _option(
        "image_size", "Side the teachers resize images to inside the model, raised to each architecture's minimum."
    ),
    _option("teacher_epochs", "Fine-tuning epochs of each teacher, head phase included."),
    _option(
        "teacher_head_epochs",
        "Of --teacher-epochs, the first ones train only the new logits head with the "
        "pretrained backbone frozen (skipped for randomly initialised teachers).",
    ),
    _option(
        "teacher_seeds",
        "Teachers fine-tuned per architecture, with seeds --seed, --seed+1 and so on; its "
        "student distils from the mean of their soft targets.",
    ),
    _option(
        "teacher_learning_rate",
        "Adam learning rate of the teachers (their head phase, or all of fine-tuning without one).",
    ),
    _option(
        "teacher_finetune_learning_rate",
        "Adam learning rate of the whole-network phase after a head phase (default: --teacher-learning-rate).",
        type=float,
    ),
    _option(
        "teacher_logits",
        "cached runs each teacher once per training view and keeps its logits; online runs "
        "the frozen teacher at every step.",
        type=click.Choice(TEACHER_LOGITS),
    ),
)
@cloup.option_group(
    "Student",
    cloup.option(
        "--student",
        "--students",
        "student",
        default=DEFAULTS.student,
        show_default=True,
        metavar="NAME[,NAME..]",
        help="Student design(s), registered names (see --list-students); several are each trained alone and "
        "distilled from one teacher pass.",
    ),
    cloup.option(
        "--list-students",
        is_flag=True,
        help="List the registered students with parameters, multiply-adds and int8 size at "
        "--data's resolution, and exit.",
    ),
    _option("student_filters", "Filters of the student's conv blocks, comma-separated."),
    _option("student_convs", "Conv-BN-ReLU units per student block before its pooling.", type=click.IntRange(1)),
    _option("student_dense", "Units of the student's dense layer before its logits (0: none)."),
    _option("student_dropout", "Dropout rate before the student's logits."),
)
@cloup.option_group(
    "Distillation",
    _option("alpha", "Weight of the hard-label cross-entropy; 1 - alpha weighs the soft KL term."),
    _option("temperature", "KD temperature T: soft targets are softmax(z/T) and the KL term is scaled by T^2."),
    _option(
        "temperatures",
        "Temperatures to sweep: one student per (T, alpha) pair and teacher, the best by "
        "validation balanced accuracy reported with a heatmap.",
        show_default="no sweep",
    ),
    _option("alphas", "Alphas to sweep, with --sweep-temperatures or alone.", show_default="no sweep"),
    _option("ensemble", "Also distil one student from the mean of all teachers' soft targets."),
    _option(
        "kd_balance",
        "Distilled students only: weights scales each image's KD term by its class weight "
        "N/(K*n_c), not with --balance weights; none counts every image the same.",
        type=click.Choice(KD_BALANCE_MODES),
    ),
)
@cloup.option_group(
    "Schedule",
    _option("epochs", "Training epochs of every student, distilled or alone."),
    _option("batch_size", "Batch size of teachers and students."),
    _option("learning_rate", "Adam learning rate of the students."),
    _option(
        "lr_schedule",
        "Learning rate over each model's training: cosine decays it to 0 by the last epoch, constant keeps it.",
        type=click.Choice(LR_SCHEDULES),
    ),
    _option(
        "select_best",
        "Keep each model's epoch with the best validation balanced accuracy, or its last epoch.",
        "--select-best/--last-epoch",
    ),
    _option("patience", "With --select-best, stop a model after this many epochs without improvement (0: never)."),
)
@cloup.option_group(
    "Runtime",
    cloup.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="A TOML recipe, or a run.json to replay, keyed by the option names without their leading -- "
        "(or run.json's field names); options given here override it.",
    ),
    _option("seed", "Random seed; every student starts from the same weights."),
    _option(
        "strategy",
        "tf.distribute strategy: auto (mirrored on more than one GPU), mirrored (all local GPUs, "
        "else logical CPUs) or multiworker (TF_CONFIG).",
        type=click.Choice(STRATEGIES),
    ),
    _option(
        "calibration_folds",
        "K >= 2: then train the recipe K more times on lesion-disjoint folds of the "
        "train split and save out-of-fold logits for kdtool export (0: off).",
    ),
    cloup.option("--fresh", is_flag=True, help="Retrain every model even if --out holds finished ones."),
)
@click.pass_context
def distill_command(
    ctx: click.Context, config: str | None, list_teachers: bool, list_students: bool, fresh: bool, **options
) -> None:
    """Fine-tune teacher CNNs, distil each into a small student and rank every model in OUT/summary.csv.

    \b
    Examples:
      kdtool data synthetic --out FData
      kdtool distill --data FData --epochs 3 --teacher-epochs 1
      kdtool distill --data FData --sweep-temperatures 1,4 --sweep-alphas 0.1,0.5 --out sweep
      kdtool distill --config recipe.toml
      kdtool distill --list-students --data FData
      kdtool distill --data FData --student resnet8
      kdtool distill --data FData --students vgg-small,resnet8,mobilenetv2-0.35
      kdtool distill --config models/run.json --out models2

    \b
    A recipe.toml (lists where an option takes a comma-separated list):
      teachers = ["efficientnet_lite0", "vgg16"]
      student-filters = [24, 40, 80]
      epochs = 60
      select-best = true
    """
    if list_teachers:
        from kdtool.distill.teachers import TEACHERS
        from kdtool.distill.teachers import list_teachers as names

        for name in names():
            spec = TEACHERS[name]
            click.echo(
                f"{name:<20} min input {spec.min_size:>3}px  preprocessing {spec.preprocess:<7} weights: {spec.source}"
            )
        return
    if list_students:
        given = ctx.get_parameter_source("data") not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
        show_students(options["data"] if given else None)
        return
    cfg = config_from(ctx, config, options)  # a bad --config file is refused before TensorFlow loads
    cfg.check_student()
    from kdtool.distill.train import run_distill

    run_distill(cfg, fresh=fresh)


def show_students(data: str | None) -> None:
    """Print the student registry's table at ``data``'s image shape and classes (32x32x3 and 7 without).

    Args:
        data: an FData folder, or None.

    Example:
        >>> show_students(None)  # doctest: +SKIP
        student            params  M MACs  int8 KB (est.)  description
        ...
    """
    from kdtool.distill.students.profile import DEFAULT_CLASSES, DEFAULT_SHAPE, format_rows, student_rows
    from kdtool.train_extra import require_train_extra

    shape, classes = DEFAULT_SHAPE, DEFAULT_CLASSES
    if data is not None:
        from kdtool.data import load_fdata

        fd = load_fdata(data, splits=("train",), mmap=True)
        shape, classes = fd.image_shape, fd.num_classes
    require_train_extra("kdtool distill --list-students")  # quiet start-up, or one line without TensorFlow
    click.echo(format_rows(student_rows(shape, classes), shape, classes))


def config_from(ctx: click.Context, config: str | None, options: dict) -> DistillConfig:
    """The run's DistillConfig: the defaults, then ``--config``'s file, then the options given.

    Args:
        ctx: the running command's context (it knows which options were given).
        config: ``--config``'s path, or None.
        options: the command's DistillConfig options, ``{field: value}`` in command-line form.

    Returns:
        The configuration (not yet checked: ``DistillConfig.check`` is the pipeline's first step).

    Example:
        >>> ctx = distill_command.make_context("distill", ["--epochs", "3", "--student-filters", "8,16"])
        >>> skip = ("config", "list_teachers", "list_students", "fresh")
        >>> options = {k: v for k, v in ctx.params.items() if k not in skip}
        >>> cfg = config_from(ctx, None, options)
        >>> cfg.epochs, cfg.student_filters, cfg.alpha
        (3, (8, 16), 0.5)
    """
    from kdtool.distill.config_file import read_config

    values = read_config(config) if config else {}
    for name, value in options.items():
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            continue
        values[name] = list_from_text(name, value) if name in LIST_FIELDS else value
    return DistillConfig(**values)
