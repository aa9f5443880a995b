"""Quantization modes: one small function per mode, each configuring a TFLite converter.

``QUANT_MODES`` maps the name used on the command line (and in the output file
name ``<model>.<mode>.tflite``) to a function that sets up a
``tf.lite.TFLiteConverter`` built with ``from_keras_model``. Each function
returns a JSON-ready record of what it set, stored in the sidecar's
``converter`` key.

Naming convention decoder for the function names (as in ai-edge-quantizer's
recipe aliases):

- ``static``: activations quantized ahead of time from calibration data (the
  representative dataset); ``dynamic``: weights quantized ahead of time,
  activations quantized on the fly at run time.
- ``wi[N]``: weights integer N-bit (``wi8``: 8-bit, per channel for convolutions);
  ``wfp[N]``: weights float N-bit (``wfp16``: stored as float16).
- ``ai[N]``: activations integer N-bit; ``afp32``: activations stay float32.

So the five modes are:

==================  ============================  ====================================
mode                function                      what the .tflite holds
==================  ============================  ====================================
``float32``         ``wfp32_afp32``               a plain conversion, every tensor float32
``float16``         ``wfp16_afp32``               float16 weights (dequantized when loaded)
``dynamic``         ``dynamic_wi8_afp32``         int8 weights, float32 activations and I/O
``int8``            ``static_wi8_ai8``            every op int8 (TFLITE_BUILTINS_INT8), int8
                                                  (or uint8/float32, see ``io``) input and output
``int8-floatends``  ``static_wi8_ai8_floatends``  every op int8 except the first and the last
                                                  quantized ones (in kdtool's students: the stem
                                                  conv with its folded BatchNorm and ReLU, and
                                                  the logits layer), which stay float32;
                                                  float32 input and output
==================  ============================  ====================================

Why ``int8-floatends``: in kdtool's students the full-int8 model changes about 2%
of top-1 decisions, and two layers cause nearly all of it
(measured with ``benchmarks/int8_noise.py`` at commit a31cf42; see docs/decisions.md):
the stem's int8 weights (a 3x3 filter over raw RGB responds to small colour differences
on a large common level), and the int8
logits themselves, whose output step (about 0.06-0.10 logits) ties the two top
classes on 1-3% of images, ties that ``argmax`` gives to the lower class index.
Keeping just those two small layers float (about 7 KB more) brings agreement with
the Keras model to about 99.5%; everything between them runs the same int8 kernels.

Only the calibrated modes (``CALIBRATED_MODES``) need calibration data and only
``int8`` looks at ``io``; the others take and return float32 tensors.

Example:
    >>> import tensorflow as tf                                      # doctest: +SKIP
    >>> conv = tf.lite.TFLiteConverter.from_keras_model(model)       # doctest: +SKIP
    >>> record = QUANT_MODES["int8"](conv, representative=gen, io="int8")  # doctest: +SKIP
    >>> tflite_bytes = conv.convert()                                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

MODE_ORDER = ("float32", "float16", "dynamic", "int8", "int8-floatends")
CALIBRATED_MODES = ("int8", "int8-floatends")
IO_TYPES = ("int8", "uint8", "float32")


def _tf():
    import tensorflow as tf  # lazy: this module is imported by the CLI

    return tf


def _record(recipe: str, converter, representative: bool) -> dict:
    tf = _tf()
    ops = sorted(str(op).split(".")[-1] for op in converter.target_spec.supported_ops)
    return {
        "api": "tf.lite.TFLiteConverter.from_keras_model",
        "recipe": recipe,
        "optimizations": sorted(str(o).split(".")[-1] for o in (converter.optimizations or [])),
        "supported_ops": ops,
        "supported_types": [tf.as_dtype(t).name for t in (converter.target_spec.supported_types or [])],
        "inference_input_type": tf.as_dtype(converter.inference_input_type).name,
        "inference_output_type": tf.as_dtype(converter.inference_output_type).name,
        "representative_dataset": representative,
    }


def wfp32_afp32(converter, *, representative: Callable | None = None, io: str | None = None) -> dict:
    """float32: a plain conversion (no optimization), float32 weights, activations and I/O.

    Args:
        converter: a ``tf.lite.TFLiteConverter`` from ``from_keras_model``.
        representative: ignored.
        io: ignored (I/O is float32).

    Returns:
        The converter settings, for the sidecar.
    """
    return _record("wfp32_afp32", converter, False)


def wfp16_afp32(converter, *, representative: Callable | None = None, io: str | None = None) -> dict:
    """float16: weights stored as float16 (half the size), float32 compute and I/O.

    Args:
        converter: a ``tf.lite.TFLiteConverter`` from ``from_keras_model``.
        representative: ignored.
        io: ignored (I/O is float32).

    Returns:
        The converter settings, for the sidecar.
    """
    tf = _tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return _record("wfp16_afp32", converter, False)


def dynamic_wi8_afp32(converter, *, representative: Callable | None = None, io: str | None = None) -> dict:
    """dynamic: dynamic-range quantization, int8 weights, float32 activations and I/O.

    No calibration data: activations are quantized on the fly by the kernels that
    support it.

    Args:
        converter: a ``tf.lite.TFLiteConverter`` from ``from_keras_model``.
        representative: ignored (must be None so the converter does not calibrate).
        io: ignored (I/O is float32).

    Returns:
        The converter settings, for the sidecar.
    """
    tf = _tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return _record("dynamic_wi8_afp32", converter, False)


def static_wi8_ai8(converter, *, representative: Callable | None = None, io: str | None = "int8") -> dict:
    """int8: full-integer post-training quantization, every op int8.

    Activation ranges come from ``representative`` (calibration data; kdtool
    always draws it from the TRAIN split). ``supported_ops`` is
    ``TFLITE_BUILTINS_INT8`` only, so conversion fails rather than leave a
    float op behind.

    Args:
        converter: a ``tf.lite.TFLiteConverter`` from ``from_keras_model``.
        representative: a callable returning an iterator of ``[x]`` batches of
            float32 [0, 1] images (shape (1, H, W, 3)).
        io: input/output tensor type: ``int8`` (default), ``uint8`` or ``float32``.

    Returns:
        The converter settings, for the sidecar.

    Raises:
        ValueError: without ``representative`` or with an unknown ``io``.
    """
    tf = _tf()
    if representative is None:
        raise ValueError("int8 quantization needs a representative dataset")
    io = io or "int8"
    if io not in IO_TYPES:
        raise ValueError(f"unknown io type {io!r}; choose one of {', '.join(IO_TYPES)}")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.as_dtype(io)
    converter.inference_output_type = tf.as_dtype(io)
    return _record("static_wi8_ai8", converter, True)


def static_wi8_ai8_floatends(converter, *, representative: Callable | None = None, io: str | None = None) -> dict:
    """int8-floatends: post-training int8 quantization except the first and last ops, which stay float32.

    Configures the converter as ``int8`` does but lets float builtin ops remain
    (``TFLITE_BUILTINS`` beside ``TFLITE_BUILTINS_INT8``) and marks the record
    with ``float_ops: "ends"``: :func:`kdtool.export.convert.convert_model` then
    converts through TFLite's quantization debugger with the first and the last
    quantized op denylisted (selective quantization), so exactly those stay float.

    Args:
        converter: a ``tf.lite.TFLiteConverter`` from ``from_keras_model``.
        representative: calibration data, as for ``int8``.
        io: ignored (the float first op takes float32 input; the float last op returns float32).

    Returns:
        The converter settings, for the sidecar.

    Raises:
        ValueError: without ``representative``.
    """
    tf = _tf()
    if representative is None:
        raise ValueError("int8-floatends quantization needs a representative dataset")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return {**_record("static_wi8_ai8_floatends", converter, True), "float_ops": "ends"}


QUANT_MODES: dict[str, Callable[..., dict]] = {
    "float32": wfp32_afp32,
    "float16": wfp16_afp32,
    "dynamic": dynamic_wi8_afp32,
    "int8": static_wi8_ai8,
    "int8-floatends": static_wi8_ai8_floatends,
}


def parse_modes(value: str) -> list[str]:
    """Parse ``--quantize``: one mode, a comma list, or ``all`` (in MODE_ORDER).

    Raises:
        ValueError: naming the unknown mode.
    """
    names = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    if not names:
        raise ValueError("no quantization mode given")
    if "all" in names:
        return list(MODE_ORDER)
    for name in names:
        if name not in QUANT_MODES:
            raise ValueError(f"unknown quantization mode {name!r}; choose from {', '.join(MODE_ORDER)} or all")
    return [m for m in MODE_ORDER if m in names]
