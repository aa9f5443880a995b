"""The default ~140k-parameter student CNN.

Three blocks of two Conv-BN-ReLU units and a MaxPool each (24/40/80 filters: VGG-style,
chosen over one unit of 32/64/128 filters; docs/decisions.md says why), global
average pooling, a dense layer, dropout and a logits layer. ``convs_per_block=1`` with
32/64/128 filters is the earlier default (129k parameters). Only built-in Keras layers,
so the saved ``.keras`` file loads anywhere with ``safe_mode=True`` and converts to
TFLite with builtin int8 ops only.

Example:
    >>> model = build_student((32, 32, 3), num_classes=7)  # doctest: +SKIP
    >>> model.count_params()                                # doctest: +SKIP
    139247
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_FILTERS = (24, 40, 80)
DEFAULT_CONVS_PER_BLOCK = 2
DEFAULT_DENSE_UNITS = 256
DEFAULT_DROPOUT = 0.3
# 0.99 averages over ~100 steps: after a few short epochs the moving statistics are
# still far from the data's and inference collapses to one class. 0.9 settles in ~10.
DEFAULT_BN_MOMENTUM = 0.9


def build_student(
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 7,
    filters: Sequence[int] = DEFAULT_FILTERS,
    dense_units: int = DEFAULT_DENSE_UNITS,
    dropout: float = DEFAULT_DROPOUT,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: str = "student",
    convs_per_block: int = DEFAULT_CONVS_PER_BLOCK,
):
    """Build the student CNN. Input: float32 images in [0, 1]; output: logits.

    Args:
        input_shape: (H, W, 3).
        num_classes: K.
        filters: filters of each Conv-BN-ReLU-MaxPool block.
        dense_units: width of the dense layer before the logits (0 for none).
        dropout: dropout rate before the logits.
        bn_momentum: BatchNorm moving-average momentum.
        name: model name.
        convs_per_block: Conv-BN-ReLU units in each block before its pooling (1: layer
            names ``block<i>_conv``, ``block<i>_bn``, ...; more, as the default 2:
            ``block<i>_conv<j>``, ``block<i>_bn<j>``, ...).

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras
    from keras import layers

    if not filters:
        raise ValueError("the student needs at least one conv block")
    convs = int(convs_per_block)
    if convs < 1:
        raise ValueError(f"convs_per_block must be >= 1, got {convs_per_block}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, f in enumerate(filters):
        for j in range(convs):
            n = "" if convs == 1 else str(j + 1)
            x = layers.Conv2D(int(f), 3, padding="same", name=f"block{i + 1}_conv{n}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{i + 1}_bn{n}")(x)
            x = layers.ReLU(name=f"block{i + 1}_relu{n}")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dense_units:
        x = layers.Dense(int(dense_units), activation="relu", name="dense")(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout")(x)
    outputs = layers.Dense(int(num_classes), name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
