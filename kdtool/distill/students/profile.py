"""Size and cost of the registered students: multiply-adds, parameters, an int8 size estimate, the list.

:func:`count_macs` walks a Keras graph and counts the multiply-adds of its Conv2D,
DepthwiseConv2D and Dense layers (output H x W x the kernel's multiply-adds per output
position); BatchNormalization, activations, pooling and additions are not counted (the
converter folds BN into the convolutions; the rest are a few per output element).
:func:`int8_size_estimate` is the weights at 1 byte plus a measured overhead: 24 bytes per
output channel (the int32 bias BN folds into every layer and the per-channel quantization
scales and zero points) and 670 bytes per weighted layer (tensors, op and buffer records),
fitted by least squares on int8 TFLite files of the four registered students at 32 px (within
2% of each file; docs/students.md gives the measurement).

Example:
    >>> import keras  # doctest: +SKIP
    >>> net = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same")])  # doctest: +SKIP
    >>> count_macs(net)  # 8 * 8 * 4 * 3 * 3 * 3                # doctest: +SKIP
    6912
"""

from __future__ import annotations

from collections.abc import Sequence

# Measured: int8 .tflite bytes minus the weights, least squares over the registered students
# (TensorFlow 2.x converter, full int8, per-channel): a per output channel and a per layer part.
OVERHEAD_PER_CHANNEL = 24
OVERHEAD_PER_LAYER = 670
DEFAULT_SHAPE = (32, 32, 3)
DEFAULT_CLASSES = 7


def _layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def layer_costs(model) -> list[dict]:
    """Per weighted layer: name, kind, multiply-adds, weights and (folded) bias count.

    Args:
        model: a built ``keras.Model``.

    Returns:
        ``[{"name", "kind", "macs", "weights", "biases"}]`` for each Conv2D, DepthwiseConv2D and
        Dense layer, in graph order (``biases``: the output channels, as after BN folding).
    """
    import numpy as np
    from keras import layers

    rows = []
    for layer in _layers(model):
        if isinstance(layer, layers.DepthwiseConv2D):
            kind = "depthwise"
        elif isinstance(layer, layers.Conv2D):
            kind = "conv"
        elif isinstance(layer, layers.Dense):
            kind = "dense"
        else:
            continue
        out = tuple(layer.output.shape)
        kernel = tuple(layer.kernel.shape)
        weights = int(np.prod(kernel))
        # every kernel weight is one multiply-add per output position: conv (kh, kw, C_in / groups, C_out),
        # depthwise (kh, kw, C, multiplier: each output channel sees kh * kw inputs), dense (in, units)
        positions = int(np.prod(out[1:-1])) if len(out) > 2 else 1
        rows.append(
            {"name": layer.name, "kind": kind, "macs": positions * weights, "weights": weights, "biases": out[-1]}
        )
    return rows


def count_macs(model) -> int:
    """Multiply-adds of one forward pass of one image (Conv2D, DepthwiseConv2D and Dense layers).

    Args:
        model: a built ``keras.Model`` (nested models are walked too).

    Returns:
        The count.

    Example:
        >>> count_macs(create_student("vgg-small", (32, 32, 3), 7))  # doctest: +SKIP
        17417984
    """
    return sum(r["macs"] for r in layer_costs(model))


def int8_size_estimate(model) -> int:
    """Estimated bytes of the model's int8 .tflite: weights x 1 byte + the measured overhead.

    Args:
        model: a built ``keras.Model``.

    Returns:
        The estimate in bytes.
    """
    rows = layer_costs(model)
    weights = sum(r["weights"] for r in rows)
    return weights + OVERHEAD_PER_CHANNEL * sum(r["biases"] for r in rows) + OVERHEAD_PER_LAYER * len(rows)


def student_rows(input_shape: Sequence[int] = DEFAULT_SHAPE, num_classes: int = DEFAULT_CLASSES) -> list[dict]:
    """One row per registered student at ``input_shape`` and ``num_classes``.

    Args:
        input_shape: (H, W, 3).
        num_classes: K.

    Returns:
        ``[{"name", "params", "macs", "int8_bytes", "description"}]``, sorted by name.

    Example:
        >>> student_rows()[0]["name"]  # doctest: +SKIP
        'mobilenetv2-0.35'
    """
    rows = []
    for name in list_students():
        model = create_student(name, input_shape, num_classes)
        rows.append(
            {
                "name": name,
                "params": int(model.count_params()),
                "macs": count_macs(model),
                "int8_bytes": int8_size_estimate(model),
                "description": STUDENTS[name].description,
            }
        )
    return rows


def format_rows(rows: Sequence[dict], input_shape: Sequence[int], num_classes: int) -> str:
    """The ``--list-students`` table.

    Args:
        rows: :func:`student_rows`'s rows.
        input_shape: the shape they were measured at.
        num_classes: K.

    Returns:
        The table, one header line, one line per student and a note line.

    Example:
        >>> row = {"name": "x", "params": 1000, "macs": 2_500_000, "int8_bytes": 3000, "description": "d"}
        >>> print(format_rows([row], (32, 32, 3), 7))  # doctest: +NORMALIZE_WHITESPACE
        student            params   M MACs  int8 KB (est.)  description
        x                   1,000     2.50             2.9  d
        at 32x32x3, 7 classes; multiply-adds of Conv2D, DepthwiseConv2D and Dense; int8 size is an estimate
    """
    lines = [f"{'student':<16} {'params':>8} {'M MACs':>8} {'int8 KB (est.)':>15}  description"]
    for r in rows:
        lines.append(
            f"{r['name']:<16} {r['params']:>8,} {r['macs'] / 1e6:>8.2f} {r['int8_bytes'] / 1024:>15.1f}  "
            f"{r['description']}"
        )
    h, w, c = (int(v) for v in input_shape)
    lines.append(
        f"at {h}x{w}x{c}, {num_classes} classes; multiply-adds of Conv2D, DepthwiseConv2D and Dense; "
        "int8 size is an estimate"
    )
    return "\n".join(lines)


from kdtool.distill.students import STUDENTS, create_student, list_students  # noqa: E402
