"""A MobileNetV2 student at width 0.35 with a reduced stage list for 32-64 px inputs, logits output.

Reference: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (the
inverted residual: 1x1 expansion, 3x3 depthwise, linear 1x1 projection, identity shortcut when
shape allows); width 0.35 is the multiplier MCUNet (Lin et al. 2020) and TinyML deployments use.
The paper's last two stages (160 and 320 channels) are dropped: at 32 px the map is already 2x2
after the 64-channel stage. Channels are the paper's times ``width``, rounded to multiples of 8
as ``keras.applications.MobileNetV2`` does; the last 1x1 convolution has 1280 x ``width`` channels.
A stride-2 stage keeps stride 1 once the feature map is below 2 px.

Example:
    >>> make_divisible(32 * 0.35)
    16
    >>> model = build_mobilenetv2((32, 32, 3), 7)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

# (expansion t, channels c, repeats n, first stride s): the paper's Table 2 without its 160/320 stages
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
BN_MOMENTUM = 0.9


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never below 90% of ``value`` (MobileNet's rule).

    Args:
        value: the scaled channel count.
        divisor: the multiple.

    Returns:
        The rounded count.

    Example:
        >>> make_divisible(96 * 0.35), make_divisible(1280 * 0.35)
        (32, 448)
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def build_mobilenetv2(
    input_shape: Sequence[int], num_classes: int, width: float = 0.35, name: str = "student", stages=STAGES
):
    """Build the MobileNetV2 student. Input: float32 images in [0, 1]; output: logits.

    Args:
        input_shape: (H, W, 3).
        num_classes: K.
        width: the width multiplier.
        name: model name.
        stages: (t, c, n, s) per stage.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras
    from keras import layers

    def bn_relu(x, tag, relu=True):
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{tag}_bn")(x)
        return layers.ReLU(6.0, name=f"{tag}_relu")(x) if relu else x

    def stride_for(x, s):
        return s if s > 1 and min(x.shape[1], x.shape[2]) >= 2 else 1

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    stem = make_divisible(32 * width)
    x = layers.Conv2D(stem, 3, strides=stride_for(inputs, 2), padding="same", use_bias=False, name="stem_conv")(inputs)
    x = bn_relu(x, "stem")
    block = 0
    for t, c, n, s in stages:
        out = make_divisible(c * width)
        for r in range(n):
            block += 1
            tag = f"block{block}"
            stride = stride_for(x, s) if r == 0 else 1
            y = x
            if t != 1:
                y = layers.Conv2D(x.shape[-1] * t, 1, use_bias=False, name=f"{tag}_expand")(y)
                y = bn_relu(y, f"{tag}_expand")
            y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{tag}_depthwise")(y)
            y = bn_relu(y, f"{tag}_depthwise")
            y = layers.Conv2D(out, 1, use_bias=False, name=f"{tag}_project")(y)
            y = bn_relu(y, f"{tag}_project", relu=False)
            x = layers.Add(name=f"{tag}_add")([x, y]) if stride == 1 and x.shape[-1] == out else y
    x = layers.Conv2D(make_divisible(1280 * width), 1, use_bias=False, name="head_conv")(x)
    x = bn_relu(x, "head")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(int(num_classes), name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
