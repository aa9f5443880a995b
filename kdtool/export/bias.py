"""Output bias correction for int8 models: remove the systematic logit shift that quantization adds.

Rounding every weight of a layer to int8 is a zero-mean error per weight, but for
one output unit the errors times the layer's (positive, post-ReLU) inputs add up
to a *fixed* offset: the same for every image. In kdtool's students it shows as
a per-class shift of the int8 logits (measured over 63 student exports: the
largest class's 0.03 to 0.39 logits; nevi pushed down, akiec/bcc up), which
moves borderline images to a lower-index class and
costs 1-3 points of accuracy on a model whose float predictions are close
calls. (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction", correct the same expected error layer by layer.)

The correction here is empirical and touches the output layer only:

1. convert to int8 as usual (calibrated on the train split);
2. run the Keras model and the int8 model on the same calibration images (the
   TRAIN split sample the converter saw; never validation or test);
3. subtract the mean difference, one number per class, from the output Dense
   layer's bias and convert again (which recalibrates the output range).

The Keras model is left as it was (the bias is restored after the conversion);
only the .tflite carries the shifted bias, which brings it closer to the Keras
model. The sidecar records the shift and the mean logit error before and after.

Example:
    >>> data, record = convert_model(model, "int8", rep)                   # doctest: +SKIP
    >>> data, correction = correct_output_bias(                            # doctest: +SKIP
    ...     model, data, rep, convert=lambda: convert_model(model, "int8", rep),
    ...     keras_logits=model.predict, run_tflite=run_tflite)
    >>> correction["applied"], correction["shift"]                         # doctest: +SKIP
    (True, [-0.158, -0.078, 0.013, -0.032, -0.017, 0.21, 0.054])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np


def output_dense_layer(model):
    """The Dense layer that produces the model's output, or None with the reason.

    Args:
        model: a ``keras.Model`` with one output.

    Returns:
        ``(layer, None)`` when the output comes straight from a Dense layer with a
        bias and a linear activation (logits), else ``(None, reason)``.
    """
    import keras

    history = getattr(model.outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None) if history is not None else None
    if not isinstance(layer, keras.layers.Dense):
        return None, f"the output layer is a {type(layer).__name__}, not a Dense layer"
    if not layer.use_bias:
        return None, f"the output layer {layer.name!r} has no bias"
    if keras.activations.serialize(layer.activation) not in ("linear", None):
        return None, f"the output layer {layer.name!r} is not linear (logits)"
    return layer, None


def add_to_bias(layer, shift: np.ndarray) -> np.ndarray:
    """Add ``shift`` (K,) to ``layer``'s bias in memory; returns the bias as it was before."""
    original = np.asarray(layer.bias.numpy()).copy()
    layer.bias.assign((original + np.asarray(shift)).astype(original.dtype))
    return original


@contextlib.contextmanager
def shifted_bias(layer, shift: np.ndarray) -> Iterator[None]:
    """Add ``shift`` to ``layer``'s bias inside the block; the original is restored on exit."""
    original = add_to_bias(layer, shift)
    try:
        yield
    finally:
        layer.bias.assign(original)


def _mean_error(keras_logits: np.ndarray, tflite_logits: np.ndarray) -> np.ndarray:
    return (np.asarray(tflite_logits, np.float64) - np.asarray(keras_logits, np.float64)).mean(axis=0)


def correct_output_bias(
    model,
    tflite: bytes,
    calibration,
    convert: Callable[[], tuple[bytes, dict]],
    keras_logits: Callable[[np.ndarray], np.ndarray],
    run_tflite: Callable[[bytes, np.ndarray], np.ndarray],
) -> tuple[bytes, dict]:
    """Remove the int8 model's mean per-class logit error on the calibration images.

    Args:
        model: the ``keras.Model`` that ``tflite`` was converted from.
        tflite: its int8 conversion.
        calibration: the calibration images (an object with ``.x``, (n, H, W, 3)
            float32, from the TRAIN split), as given to the converter.
        convert: converts ``model`` again (same mode, calibration and I/O).
        keras_logits: ``x -> (n, K)`` logits of ``model``.
        run_tflite: ``(tflite_bytes, x) -> (n, K)`` dequantized logits.

    Returns:
        ``(tflite_bytes, record)``: the corrected model, or ``tflite`` unchanged when
        the correction does not apply or does not reduce the calibration images'
        mean absolute logit error; ``record`` says which, with the shift applied
        and the errors before and after (JSON-ready, for the sidecar).

    Raises:
        RuntimeFailure: the second conversion failed.
    """
    layer, reason = output_dense_layer(model)
    x = getattr(calibration, "x", None)
    if layer is None or x is None or len(x) == 0:
        return tflite, {"applied": False, "reason": reason or "no calibration images to measure the error on"}
    reference = keras_logits(x)
    before = _mean_error(reference, run_tflite(tflite, x))
    shift = -before
    with shifted_bias(layer, shift.astype(np.float32)):
        corrected, _ = convert()
    after = _mean_error(reference, run_tflite(corrected, x))
    record = {
        "method": "mean int8-minus-Keras logit per class on the calibration images (train split), "
        "subtracted from the output layer's bias in the .tflite only",
        "layer": layer.name,
        "images": int(len(x)),
        "shift": [round(float(v), 6) for v in shift],
        "mean_error_before": [round(float(v), 6) for v in before],
        "mean_error_after": [round(float(v), 6) for v in after],
    }
    if np.abs(after).mean() >= np.abs(before).mean():
        return tflite, {"applied": False, "reason": "the correction did not reduce the mean logit error", **record}
    return corrected, {"applied": True, **record}
