"""The distillation run's configuration: one dataclass that owns every default.

``DistillConfig`` is what ``kdtool distill`` builds from its options (and a ``--config`` file),
what ``run.json`` records under ``"config"``, and what the pipeline reads. The command's options
take their defaults from :data:`DEFAULTS`; the fields in :data:`LIST_FIELDS` are one
comma-separated string on the command line, converted here and nowhere else.

Example:
    >>> cfg = DistillConfig(epochs=2)
    >>> cfg.epochs, cfg.temperature
    (2, 2.0)
    >>> list_to_text(DEFAULTS.student_filters)
    '24,40,80'
    >>> list_from_text("temperatures", "1, 4")
    (1.0, 4.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdtool.distill.balance import BALANCE_MODES, KD_BALANCE_MODES
from kdtool.distill.student import DEFAULT_CONVS_PER_BLOCK, DEFAULT_DENSE_UNITS, DEFAULT_DROPOUT, DEFAULT_FILTERS
from kdtool.distill.students import DEFAULT_STUDENT, STUDENTS, list_students, parse_students
from kdtool.distill.teachers import parse_teachers
from kdtool.errors import InputError

LR_SCHEDULES = ("constant", "cosine")
WEIGHTS = ("auto", "imagenet", "none")
TEACHER_LOGITS = ("cached", "online")
STRATEGIES = ("auto", "mirrored", "multiworker")
# Settings added after run.json's config was first written, with the value that means "what kdtool did
# before the setting existed": a run.json without the key matches that value, so re-running an older
# folder still skips its finished models. A new setting must be added here.
SETTINGS_BEFORE_THEY_EXISTED = {
    "lr_schedule": "constant",
    "teacher_seeds": 1,
    "calibration_folds": 0,
    "student_convs": 1,
    "kd_balance": "none",
    "student": DEFAULT_STUDENT,
}
# Settings that add work to a finished run without changing its models: a re-run may change them.
ADDS_TO_A_RUN = ("calibration_folds",)
# Settings kdtool no longer has, with the value that meant "off": a run.json recording that value is
# today's run; any other value describes a run kdtool cannot repeat.
REMOVED_SETTINGS = {"ema": 0.0}
# Fields the command line takes as one comma-separated string, with the type of their elements.
LIST_FIELDS = {"teachers": str, "student_filters": int, "temperatures": float, "alphas": float}
# The options that shape the vgg family of students (StudentSpec.family == "vgg"), as DistillConfig fields.
VGG_FIELDS = ("student_filters", "student_convs", "student_dense", "student_dropout")


@dataclass
class DistillConfig:
    """Everything that defines a distillation run (stored in run.json).

    Args:
        data: FData folder.
        out: output folder.
        teachers: registered teacher names.
        weights: ``auto``, ``imagenet`` or ``none``.
        image_size: side teachers resize to (raised to each one's minimum).
        epochs: student epochs (distilled and alone).
        teacher_epochs: teacher fine-tuning epochs in all (head phase included).
        teacher_seeds: teachers fine-tuned per architecture, with seeds ``seed``, ``seed + 1``, ...;
            with more than one, that architecture's student distils from the mean of their soft
            targets (a seed ensemble), and ``ensemble`` weighs architectures equally.
        teacher_head_epochs: of those, epochs that train only the new logits head with the
            pretrained backbone frozen (phase 1); the rest fine-tune the whole network at
            ``teacher_finetune_learning_rate`` (phase 2). Skipped for randomly initialised teachers.
        batch_size: batch size for every model.
        learning_rate: student Adam learning rate.
        teacher_learning_rate: teacher Adam learning rate (the head phase, or the whole
            fine-tuning when there is none).
        teacher_finetune_learning_rate: Adam learning rate of the whole-network phase after a
            head phase (None: ``teacher_learning_rate``).
        temperatures, alphas: sweep grids; when either is non-empty, each teacher gets one
            student per (T, alpha) pair (the other defaults to ``temperature`` / ``alpha``),
            and the pair with the best validation balanced accuracy is reported per teacher.
        alpha: CE weight in the KD loss.
        temperature: KD temperature.
        teacher_logits: ``cached`` or ``online``.
        ensemble: also distil one student from the mean of all teachers' soft targets.
        student: a registered student (:data:`kdtool.distill.students.STUDENTS`), or several
            comma-separated: each is trained alone and distilled from the same teachers' cached logits.
        student_filters, student_dense, student_dropout, student_convs: the vgg students' architecture
            (``student_convs``: Conv-BN-ReLU units per block before its pooling); the other students
            have a fixed design and refuse values other than the defaults.
        balance: ``none``, ``weights`` (class-weighted CE and KD terms), ``sampling``
            (class-balanced sampling) or ``logit-adjust`` (CE on logits + log class prior),
            for teachers and students alike.
        augment: flips, 90-degree rotations, small shifts and colour jitter.
        views: with ``augment`` and cached logits, fixed augmented views per training image
            whose teacher logits are cached (the teacher runs ``views`` times per image).
        lr_schedule: ``constant`` or ``cosine`` (each fit decays its learning rate to 0 over its
            own epochs, per step), for teachers and students alike.
        select_best: keep each model's epoch with the best validation balanced accuracy; False (the
            default): its last epoch.
        patience: with ``select_best``, stop after this many epochs without improvement (0: never;
            an error without ``select_best``).
        seed: random seed (same student initialisation for every student).
        strategy: ``auto``, ``mirrored`` or ``multiworker``.
        calibration_folds: K >= 2: after the run, train the same recipe K more times on lesion-disjoint
            folds of the train split and save each student's out-of-fold logits (see
            :mod:`kdtool.distill.calibration`), from which ``kdtool export`` chooses the melanoma
            floor; 0: none.
        kd_balance: ``none``, or ``weights``: each training image's KL term weighted by its class's
            weight N / (K * n_c), the hard-label term unchanged (balanced KD, Zhang et al. 2023).
            Distilled students only; not with ``balance="weights"``, which weights both terms already.
    """

    data: str = "FData"
    out: str = "models"
    teachers: list = field(default_factory=lambda: ["efficientnet_lite0"])
    weights: str = "auto"
    image_size: int = 96
    epochs: int = 120
    teacher_epochs: int = 5
    teacher_seeds: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    teacher_learning_rate: float = 1e-3
    teacher_head_epochs: int = 0
    teacher_finetune_learning_rate: float | None = None
    alpha: float = 0.5
    temperature: float = 2.0
    teacher_logits: str = "cached"
    temperatures: tuple = ()
    alphas: tuple = ()
    ensemble: bool = False
    student: str = DEFAULT_STUDENT
    student_filters: tuple = DEFAULT_FILTERS
    student_dense: int = DEFAULT_DENSE_UNITS
    student_convs: int = DEFAULT_CONVS_PER_BLOCK
    student_dropout: float = DEFAULT_DROPOUT
    balance: str = "logit-adjust"
    augment: bool = True
    views: int = 8
    lr_schedule: str = "cosine"
    select_best: bool = False
    patience: int = 0
    seed: int = 42
    strategy: str = "auto"
    calibration_folds: int = 0
    kd_balance: str = "none"

    def students(self) -> list[str]:
        """The registered students this run trains (``student`` names one, or several comma-separated).

        Returns:
            Their registered names in the order given, each once.

        Example:
            >>> DistillConfig(student="vgg-small, resnet8").students()
            ['vgg-small', 'resnet8']
        """
        return parse_students(self.student)

    def check_student(self) -> None:
        """Refuse an unknown student, or vgg options when no listed student is a vgg one (one line, exit code 2).

        Example:
            >>> DistillConfig(student="resnet8", student_dense=64).check_student()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            kdtool.errors.InputError: --student resnet8 has a fixed design and ignores --student-dense; drop it ...
        """
        names = self.students()
        self.student = ",".join(names)
        if any(STUDENTS[n].family == "vgg" for n in names):
            return
        given = [option_name(f) for f in VGG_FIELDS if tuple_or_value(getattr(self, f)) != getattr(DEFAULTS, f)]
        if given:
            vgg = ", ".join(n for n in list_students() if STUDENTS[n].family == "vgg")
            them = "them" if len(given) > 1 else "it"
            has = "has a fixed design" if len(names) == 1 else "have fixed designs"
            raise InputError(
                f"--student {self.student} {has} and ignores {', '.join(given)}; "
                f"drop {them} or choose a vgg student ({vgg})"
            )

    def student_recipe(self, student: str | None = None) -> dict:
        """The keyword arguments :func:`kdtool.distill.students.create_student` takes for one student.

        Args:
            student: a registered name (default: the run's first student).

        Returns:
            The vgg options for a vgg student, else ``{}``.

        Example:
            >>> DistillConfig().student_recipe()["filters"], DistillConfig(student="resnet8").student_recipe()
            ((24, 40, 80), {})
        """
        if STUDENTS[student or self.students()[0]].family != "vgg":
            return {}
        return {
            "filters": tuple(self.student_filters),
            "dense_units": self.student_dense,
            "dropout": self.student_dropout,
            "convs_per_block": self.student_convs,
        }

    def check(self) -> None:
        """Refuse impossible settings with one line (exit code 2)."""
        self.check_student()
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"--alpha must lie in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise InputError(f"--temperature must be > 0, got {self.temperature}")
        for name in ("epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.teacher_seeds < 1:
            raise InputError(f"--teacher-seeds must be >= 1, got {self.teacher_seeds}")
        if self.teacher_epochs < 0:
            raise InputError(f"--teacher-epochs must be >= 0, got {self.teacher_epochs}")
        if not 0 <= self.teacher_head_epochs <= self.teacher_epochs:
            raise InputError(
                f"--teacher-head-epochs must lie in [0, --teacher-epochs={self.teacher_epochs}], "
                f"got {self.teacher_head_epochs}"
            )
        finetune = self.teacher_finetune_learning_rate
        if self.learning_rate <= 0 or self.teacher_learning_rate <= 0 or (finetune is not None and finetune <= 0):
            raise InputError("learning rates must be > 0")
        if any(not 0.0 <= a <= 1.0 for a in self.alphas) or any(t <= 0 for t in self.temperatures):
            raise InputError(
                f"--sweep-alphas must lie in [0, 1] and --sweep-temperatures be > 0, got "
                f"{list(self.alphas)} and {list(self.temperatures)}"
            )
        for name, choices in (("weights", WEIGHTS), ("teacher_logits", TEACHER_LOGITS), ("strategy", STRATEGIES)):
            if getattr(self, name) not in choices:
                raise InputError(
                    f"{option_name(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                )
        if self.balance not in BALANCE_MODES:
            raise InputError(f"--balance must be one of {', '.join(BALANCE_MODES)}, got {self.balance!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.student_convs < 1 or self.student_dense < 0 or not 0.0 <= self.student_dropout < 1.0:
            raise InputError("--student-convs must be >= 1, --student-dense >= 0 and --student-dropout in [0, 1)")
        if self.views < 1 or self.patience < 0:
            raise InputError("--views must be >= 1 and --patience >= 0")
        if self.patience and not self.select_best:
            raise InputError("--patience stops on the best validation epoch: it needs --select-best")
        if self.calibration_folds < 0 or self.calibration_folds == 1:
            raise InputError(f"--calibration-folds must be 0 (off) or >= 2, got {self.calibration_folds}")
        if self.kd_balance not in KD_BALANCE_MODES:
            raise InputError(f"--kd-balance must be one of {', '.join(KD_BALANCE_MODES)}, got {self.kd_balance!r}")
        if self.kd_balance == "weights" and self.balance == "weights":
            raise InputError(
                "--kd-balance weights with --balance weights would weight the KD term twice; use one of them"
            )
        if self.ensemble and len(self.teachers) < 2:
            raise InputError("--ensemble needs at least two teachers")


#: Every default, read by ``kdtool distill``'s options (``default=DEFAULTS.epochs``, ...).
DEFAULTS = DistillConfig()
# The options whose name is not "--" + the field's name with dashes.
_OPTION_NAMES = {"temperatures": "--sweep-temperatures", "alphas": "--sweep-alphas"}


def tuple_or_value(value):
    """A list as a tuple (run.json stores tuples as lists), anything else unchanged.

    Example:
        >>> tuple_or_value([8, 16]), tuple_or_value(0.3)
        ((8, 16), 0.3)
    """
    return tuple(value) if isinstance(value, list) else value


def option_name(field_name: str) -> str:
    """The ``kdtool distill`` option that sets a DistillConfig field.

    Args:
        field_name: a DistillConfig field, e.g. ``"student_filters"``.

    Returns:
        The option, e.g. ``"--student-filters"``.

    Example:
        >>> option_name("student_filters"), option_name("temperatures")
        ('--student-filters', '--sweep-temperatures')
    """
    return _OPTION_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def list_to_text(values) -> str:
    """A list field's command-line form: its elements joined by commas.

    Args:
        values: the field's value (list or tuple).

    Returns:
        The comma-separated string (empty for an empty list).

    Example:
        >>> list_to_text(["vgg16", "resnet50"]), list_to_text(())
        ('vgg16,resnet50', '')
    """
    return ",".join(map(str, values))


def list_from_text(field_name: str, text: str):
    """Parse a list field's command-line form (``--teachers vgg16,resnet50``) into its dataclass form.

    Args:
        field_name: one of :data:`LIST_FIELDS`.
        text: the comma-separated string; blanks around commas are ignored, empty means none.

    Returns:
        What :func:`normalise_list` returns for the elements.

    Raises:
        InputError: one line naming the option, when an element is not of the field's type.

    Example:
        >>> list_from_text("student_filters", "8, 16")
        (8, 16)
    """
    parts = [v.strip() for v in text.split(",") if v.strip()]
    kind = LIST_FIELDS[field_name]
    if field_name == "teachers":
        return normalise_list(field_name, parts)
    try:
        values = [kind(v) for v in parts]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise InputError(f"{option_name(field_name)} must be comma-separated {what}, got {text!r}") from None
    return normalise_list(field_name, values)


def normalise_list(field_name: str, values) -> list | tuple:
    """Check a list field's elements and return the field's dataclass form.

    ``teachers`` becomes a list of registered names (``all`` expands, duplicates go), the others
    tuples (``student_filters`` of positive integers, the sweep grids of floats).

    Args:
        field_name: one of :data:`LIST_FIELDS`.
        values: the elements, already of the field's element type.

    Returns:
        A list for ``teachers``, else a tuple.

    Raises:
        InputError: one line naming the option, for an unknown teacher or a filter count below 1.

    Example:
        >>> normalise_list("teachers", ["VGG16", "vgg16"]), normalise_list("alphas", [0.5])
        (['vgg16'], (0.5,))
    """
    if field_name == "teachers":
        return parse_teachers(",".join(values))
    values = tuple(LIST_FIELDS[field_name](v) for v in values)
    if field_name == "student_filters" and (not values or min(values) < 1):
        raise InputError(f"--student-filters needs positive integers, got {list_to_text(values)!r}")
    return values
