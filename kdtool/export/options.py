"""The options of ``kdtool export`` and what it returns (no TensorFlow): the one place their defaults live.

The click command (:mod:`kdtool.export.cli`) reads its defaults from :data:`DEFAULTS`, and the Python
API takes an :class:`ExportOptions`; both therefore export with the same settings.

Example:
    >>> options = ExportOptions(modes=["int8", "float32"], prior_shift=0.5)
    >>> options.resolved_majority_offset()   # the default offset goes with prior shift 0 only
    0.0
    >>> DEFAULTS.floor_on, DEFAULTS.resolved_majority_offset()
    ('val', 1.5)
    >>> ExportOptions(floor_on="both")
    Traceback (most recent call last):
    ...
    kdtool.errors.InputError: --floor-on: 'both' is not one of val, oof, auto
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import InputError
from kdtool.export.modes import IO_TYPES, MODE_ORDER
from kdtool.export.sensitivity import DEFAULT_CONFIDENCE, DEFAULT_MAJORITY_OFFSET, DEFAULT_TARGET, FLOOR_SOURCES


@dataclass
class ExportOptions:
    """The options of ``kdtool export`` (see its --help); the defaults are the command's.

    Attributes:
        modes: quantization modes, e.g. ``["int8"]`` (names of :data:`kdtool.export.modes.MODE_ORDER`).
        data: FData folder; None = run.json's data.path when it exists, else ``FData``.
        representative_samples: int8 calibration images drawn from the train split.
        io: int8 mode's input/output type (int8, uint8, float32).
        out: output folder; None = ``<run>/export`` or the .keras file's folder.
        max_drop: accuracy drop (points) above which the command exits 3.
        include_teachers: also export a run's teachers.
        bias_correction: int8 modes only: remove the mean per-class logit error measured on the
            calibration images from the output layer's bias (see :mod:`kdtool.export.bias`).
        prior_shift: the operating point tau in [0, 1]: ``tau * log(train class frequencies)`` is added
            to the output layer's bias of every exported file (0: the model as trained).
        majority_offset: a logit offset added to the output layer's bias for the train split's majority
            class only (the one with more than half of its images: nevi in HAM10000), before ``prior_shift``
            and the melanoma floor; 0: off. None (the default): ``DEFAULT_MAJORITY_OFFSET`` with
            ``prior_shift`` 0, the operating point it was chosen at, else 0 (see
            :meth:`resolved_majority_offset`).
        majority_required: True when the user asked for the offset: data without a majority class or a
            model without a logits layer are an error (exit 2). False (the default offset): they are
            exported without it, the reason in the sidecar.
        melanoma_sensitivity: a melanoma logit offset, chosen per model after ``prior_shift``, is added to
            the output layer's bias so that melanoma sensitivity reaches this target at
            ``sensitivity_confidence`` (see :mod:`kdtool.export.sensitivity`); None: the model's own
            melanoma decisions.
        sensitivity_confidence: confidence of that claim (one-sided Clopper-Pearson lower bound);
            0 holds the observed sensitivity itself at the target.
        sensitivity_required: True when the user asked for the target: data or a model that cannot
            hold it are an error (exit 2). False (the default target): they are exported as trained,
            with a note and the reason in the sidecar.
        floor_on: where the melanoma offset is chosen: ``val`` (the validation split), ``oof`` (the
            out-of-fold logits that ``kdtool distill --calibration-folds`` saved for the model; required)
            or ``auto`` (oof when the model has them, else val).

    Raises:
        InputError: an unknown mode, I/O type or floor source, or a prior shift outside [0, 1] (one line).
    """

    modes: list[str] = field(default_factory=lambda: ["int8"])
    data: str | None = None
    representative_samples: int = 300
    io: str = "int8"
    out: str | None = None
    max_drop: float = 1.0
    include_teachers: bool = False
    bias_correction: bool = True
    prior_shift: float = 0.0
    majority_offset: float | None = None
    majority_required: bool = False
    melanoma_sensitivity: float | None = DEFAULT_TARGET
    sensitivity_confidence: float = DEFAULT_CONFIDENCE
    sensitivity_required: bool = False
    floor_on: str = "val"

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODE_ORDER]
        if unknown or not self.modes:
            raise InputError(
                f"--quantize: unknown mode(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODE_ORDER)}"
            )
        if self.io not in IO_TYPES:
            raise InputError(f"--io: {self.io!r} is not one of {', '.join(IO_TYPES)}")
        if self.floor_on not in FLOOR_SOURCES:
            raise InputError(f"--floor-on: {self.floor_on!r} is not one of {', '.join(FLOOR_SOURCES)}")
        if (
            isinstance(self.prior_shift, bool)
            or not isinstance(self.prior_shift, (int, float))
            or not 0.0 <= self.prior_shift <= 1.0
        ):
            raise InputError(f"--prior-shift: {self.prior_shift!r} is not a number in [0, 1]")

    def resolved_majority_offset(self) -> float:
        """The majority offset to apply.

        Returns:
            ``majority_offset`` when given, else the default offset at prior shift 0 (where it was
            chosen) and 0 at any other prior shift.
        """
        if self.majority_offset is not None:
            return self.majority_offset
        return DEFAULT_MAJORITY_OFFSET if self.prior_shift == 0 else 0.0


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
