"""MLPerf Tiny's ResNet-8 student (16/32/64 filters, three residual stages), logits output.

Reference: the MLPerf Tiny image classification benchmark's ResNet-8 (Banbury et al. 2021,
"MLPerf Tiny Benchmark"; ``training/image_classification/keras_model.py`` of
github.com/mlcommons/tiny): a 3x3 stem of 16 filters, then three stages of two 3x3
Conv-BN units with an identity (stage 1) or strided 1x1 convolution (stages 2 and 3) shortcut,
average pooling and a dense layer. Here the pooling is global (any input side) and the dense
layer gives logits; a stride-2 stage keeps stride 1 once the feature map is below 2 px.

Example:
    >>> model = build_resnet8((32, 32, 3), 7)  # doctest: +SKIP
    >>> model.output_shape                     # doctest: +SKIP
    (None, 7)
"""

from __future__ import annotations

from collections.abc import Sequence

FILTERS = (16, 32, 64)
BN_MOMENTUM = 0.9  # as the vgg student: settles within a few short epochs


def build_resnet8(input_shape: Sequence[int], num_classes: int, name: str = "student", filters=FILTERS):
    """Build ResNet-8. Input: float32 images in [0, 1]; output: logits.

    Args:
        input_shape: (H, W, 3).
        num_classes: K.
        name: model name.
        filters: filters of the three stages.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras
    from keras import layers

    def conv_bn(x, f, kernel, stride, tag, relu=True):
        x = layers.Conv2D(f, kernel, strides=stride, padding="same", name=f"{tag}_conv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{tag}_bn")(x)
        return layers.ReLU(name=f"{tag}_relu")(x) if relu else x

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = conv_bn(inputs, filters[0], 3, 1, "stem")
    for i, f in enumerate(filters):
        stage = f"stage{i + 1}"
        stride = 2 if i > 0 and min(x.shape[1], x.shape[2]) >= 2 else 1
        y = conv_bn(x, f, 3, stride, f"{stage}_a")
        y = conv_bn(y, f, 3, 1, f"{stage}_b", relu=False)
        if stride != 1 or x.shape[-1] != f:
            x = layers.Conv2D(f, 1, strides=stride, padding="same", name=f"{stage}_shortcut")(x)
        x = layers.Add(name=f"{stage}_add")([x, y])
        x = layers.ReLU(name=f"{stage}_out")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(int(num_classes), name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
