"""The options of ``kdtool export`` and what it returns (no TensorFlow): the one place their defaults live.

The click command (:mod:`kdtool.export.cli`) reads its defaults from :data:`DEFAULTS`, and the Python
API takes an :class:`ExportOptions`; both therefore export with the same settings.

Example:
    >>> options = ExportOptions(modes=["int8", "float32"], operating_point="balanced", min_recall=["mel=0.7"])
    >>> options.min_recall, options.fits()
    ([('mel', 0.7)], True)
    >>> DEFAULTS.operating_point, DEFAULTS.fit_on, DEFAULTS.confidence, DEFAULTS.fits()
    ('as-trained', 'auto', 0.95, False)
    >>> ExportOptions(fit_on="both")
    Traceback (most recent call last):
    ...
    kdtool.errors.InputError: --fit-on: 'both' is not one of auto, val, oof
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import InputError
from kdtool.export.min_recall import DEFAULT_CONFIDENCE, parse_min_recall
from kdtool.export.modes import IO_TYPES, MODE_ORDER
from kdtool.export.objectives import FIT_SOURCES, OBJECTIVES


@dataclass
class ExportOptions:
    """The options of ``kdtool export`` (see its --help); the defaults are the command's.

    Attributes:
        modes: quantization modes, e.g. ``["int8"]`` (names of :data:`kdtool.export.modes.MODE_ORDER`).
        data: FData folder; None = run.json's data.path when it exists, else ``FData``.
        representative_samples: int8 calibration images drawn from the train split.
        io: int8 mode's input/output type (int8, uint8, float32).
        out: output folder; None = ``<run>/export`` or the .keras file's folder.
        max_drop: accuracy drop (points, Keras minus TFLite, point estimate) above which the command exits 3.
        include_teachers: also export a run's teachers.
        bias_correction: int8 modes only: remove the mean per-class logit error measured on the
            calibration images from the output layer's bias (see :mod:`kdtool.export.bias`).
        operating_point: the objective (:data:`kdtool.export.objectives.OBJECTIVES`): ``as-trained`` (no
            bias), or ``balanced`` / ``accuracy`` (``tau * log(train class frequencies)`` with ``tau`` fitted
            to that metric on the fit data).
        min_recall: ``CLASS=TARGET`` strings or ``(class, target)`` pairs, parsed into pairs: after the
            objective, each class's logit is raised by the smallest offset whose recall lower bound on the fit
            data reaches TARGET (:mod:`kdtool.export.min_recall`).
        confidence: of that lower bound (one-sided Clopper-Pearson), in [0, 1); 0 asks for the observed recall.
        fit_on: the fit data: ``auto`` (the out-of-fold train logits of ``kdtool distill --calibration-folds``
            when the model has them, else validation), ``val`` or ``oof`` (required).
        temperature: also fit a temperature on the fit data and divide the exported logits by it.

    Raises:
        InputError: an unknown mode, I/O type, objective or fit source, a malformed min recall, or a
            confidence outside [0, 1) (one line).
    """

    modes: list[str] = field(default_factory=lambda: ["int8"])
    data: str | None = None
    representative_samples: int = 300
    io: str = "int8"
    out: str | None = None
    max_drop: float = 1.0
    include_teachers: bool = False
    bias_correction: bool = True
    operating_point: str = "as-trained"
    min_recall: list = field(default_factory=list)
    confidence: float = DEFAULT_CONFIDENCE
    fit_on: str = "auto"
    temperature: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODE_ORDER]
        if unknown or not self.modes:
            raise InputError(
                f"--quantize: unknown mode(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODE_ORDER)}"
            )
        if self.io not in IO_TYPES:
            raise InputError(f"--io: {self.io!r} is not one of {', '.join(IO_TYPES)}")
        if self.operating_point not in OBJECTIVES:
            raise InputError(f"--operating-point: {self.operating_point!r} is not one of {', '.join(OBJECTIVES)}")
        if self.fit_on not in FIT_SOURCES:
            raise InputError(f"--fit-on: {self.fit_on!r} is not one of {', '.join(FIT_SOURCES)}")
        if (
            isinstance(self.confidence, bool)
            or not isinstance(self.confidence, (int, float))
            or not 0.0 <= self.confidence < 1.0
        ):
            raise InputError(f"--confidence: {self.confidence!r} is not a number in [0, 1)")
        self.min_recall = parse_min_recall(self.min_recall)

    def fits(self) -> bool:
        """Whether anything is fitted (an objective other than as-trained, a min recall or a temperature).

        Returns:
            False for the model as trained, exported without a bias.
        """
        return self.operating_point != "as-trained" or bool(self.min_recall) or self.temperature


#: The defaults of ``kdtool export``'s options, read by its click command.
DEFAULTS = ExportOptions()


@dataclass
class ExportResult:
    """What an export produced.

    Attributes:
        out: the output folder.
        rows: one sidecar per written file (plus ``ratio_to_float32``), in the order written.
        gate_failures: ``name.mode (drop)`` of each file above ``max_drop``.
        errors: one line per failed conversion or write.
    """

    out: Path
    rows: list[dict]
    gate_failures: list[str]
    errors: list[str]
