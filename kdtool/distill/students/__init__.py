"""Student registry: ``STUDENTS = {name: StudentSpec}``, ``list_students()``, ``create_student()``.

Every student takes float32 [0, 1] RGB images of the data's size (any side from 32 to 256 px:
global average pooling at the end, and a stride or pooling only while the feature map is at least
2 px), ends in a logits layer (no softmax) and uses only built-in Keras layers, so its ``.keras``
file loads with ``safe_mode=True`` and it converts to TFLite with builtin int8 ops only.
``vgg-small`` is today's student and the default; the ``vgg`` family follows ``--student-filters``,
``--student-convs``, ``--student-dense`` and ``--student-dropout``, the others have a fixed design.

Example:
    >>> list_students()
    ['mobilenetv2-0.35', 'resnet8', 'vgg-small', 'vgg-wide']
    >>> parse_student("ResNet8")
    'resnet8'
    >>> parse_students("vgg-small, resnet8")
    ['vgg-small', 'resnet8']
    >>> model = create_student("resnet8", (32, 32, 3), 7)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kdtool.errors import InputError

DEFAULT_STUDENT = "vgg-small"


@dataclass(frozen=True)
class StudentSpec:
    """How to build one student.

    Args:
        build: ``build(input_shape, num_classes, name, **recipe) -> keras.Model`` (logits output).
        reference: where the design comes from (for the list and docs).
        description: one line for ``kdtool distill --list-students``.
        family: ``"vgg"`` when ``--student-filters``/``-convs``/``-dense``/``-dropout`` shape it
            (they arrive as ``recipe``), else None (a fixed design that takes no recipe).
    """

    build: Callable
    reference: str
    description: str
    family: str | None = None


def _vgg(width: int) -> Callable:
    def build(input_shape, num_classes, name="student", **recipe):
        from kdtool.distill.student import DEFAULT_FILTERS, build_student

        filters = tuple(int(f) * width for f in recipe.pop("filters", DEFAULT_FILTERS))
        return build_student(input_shape, num_classes, filters=filters, name=name, **recipe)

    build.__name__ = f"build_vgg_x{width}"
    build.__doc__ = (
        f"VGG-style student with {width}x the filters of ``filters`` (Simonyan and Zisserman 2015, "
        "'Very Deep Convolutional Networks'); see :func:`kdtool.distill.student.build_student`."
    )
    return build


def _resnet8(input_shape, num_classes, name="student", **recipe):
    """MLPerf Tiny's ResNet-8 (Banbury et al. 2021, MLPerf Tiny image classification reference)."""
    from kdtool.distill.students.resnet import build_resnet8

    return build_resnet8(input_shape, num_classes, name=name)


def _mobilenetv2(input_shape, num_classes, name="student", **recipe):
    """MobileNetV2 at width 0.35 (Sandler et al. 2018; the width MCUNet, Lin et al. 2020, deploys)."""
    from kdtool.distill.students.mobilenet import build_mobilenetv2

    return build_mobilenetv2(input_shape, num_classes, width=0.35, name=name)


STUDENTS: dict[str, StudentSpec] = {
    "vgg-small": StudentSpec(
        _vgg(1),
        "VGG-style blocks (Simonyan & Zisserman 2015); kdtool's default, docs/decisions.md",
        "3 blocks of 2 Conv-BN-ReLU + max-pool (24/40/80 filters), dense 256, dropout",
        "vgg",
    ),
    "vgg-wide": StudentSpec(
        _vgg(2),
        "VGG-style blocks (Simonyan & Zisserman 2015), twice vgg-small's filters",
        "vgg-small with twice the filters of --student-filters (48/80/160 by default)",
        "vgg",
    ),
    "resnet8": StudentSpec(
        _resnet8,
        "MLPerf Tiny image classification reference ResNet-8 (Banbury et al. 2021)",
        "MLPerf Tiny ResNet-8: 16/32/64 filters, three residual stages",
    ),
    "mobilenetv2-0.35": StudentSpec(
        _mobilenetv2,
        "MobileNetV2 (Sandler et al. 2018) at width 0.35, as MCUNet (Lin et al. 2020) deploys it",
        "MobileNetV2 inverted residuals, width 0.35, 5 stages for 32-64 px",
    ),
}


def list_students() -> list[str]:
    """Registered student names, sorted.

    Returns:
        The names.

    Example:
        >>> "vgg-small" in list_students()
        True
    """
    return sorted(STUDENTS)


def parse_student(value: str) -> str:
    """Check ``--student``: a registered name (case and surrounding blanks ignored).

    Args:
        value: the name given.

    Returns:
        The registered name.

    Raises:
        InputError: one line naming the unknown student and the valid choices.

    Example:
        >>> parse_student("vgg-small")
        'vgg-small'
    """
    name = str(value).strip().lower()
    if name not in STUDENTS:
        raise InputError(f"unknown student {value!r}; choose from: {', '.join(list_students())}")
    return name


def parse_students(value: str) -> list[str]:
    """Check ``--student`` when it names one or several students, comma-separated.

    Args:
        value: the names given (``"vgg-small,resnet8"``).

    Returns:
        The registered names in the order given, each once.

    Raises:
        InputError: an empty list, or one line naming an unknown student and the valid choices.

    Example:
        >>> parse_students("resnet8,VGG-small,resnet8")
        ['resnet8', 'vgg-small']
    """
    names = [parse_student(v) for v in str(value).split(",") if v.strip()]
    if not names:
        raise InputError(f"--student names no student; choose from: {', '.join(list_students())}")
    return list(dict.fromkeys(names))


def model_suffix(student: str) -> str:
    """The suffix a run with several students gives each model's name: letters, digits and ``_`` only.

    Args:
        student: a registered name.

    Returns:
        ``_<name>`` with every other character turned into ``_`` (dots dropped).

    Example:
        >>> model_suffix("mobilenetv2-0.35"), model_suffix("resnet8")
        ('_mobilenetv2_035', '_resnet8')
    """
    return "_" + "".join(c if c.isalnum() else "_" for c in student.replace(".", ""))


def create_student(student: str, input_shape: Sequence[int], num_classes: int, name: str = "student", **recipe):
    """Build registered student ``student`` (a fresh, uncompiled ``keras.Model`` with logits output).

    Args:
        student: a registered name (see :func:`list_students`).
        input_shape: (H, W, 3), sides 32 to 256.
        num_classes: K.
        name: the model's name.
        **recipe: the vgg family's ``filters``, ``dense_units``, ``dropout``, ``convs_per_block``
            (ignored by the other students).

    Returns:
        The model.

    Raises:
        InputError: an unknown student.

    Example:
        >>> create_student("vgg-small", (32, 32, 3), 7).count_params()  # doctest: +SKIP
        139247
    """
    spec = STUDENTS[parse_student(student)]
    if spec.family != "vgg":
        recipe = {}
    return spec.build(tuple(input_shape), int(num_classes), name=name, **recipe)
