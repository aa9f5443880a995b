"""Quantize images for an integer TFLite input and dequantize an integer output (numpy only).

The one implementation used by ``kdtool export``'s check
(:func:`kdtool.export.check.run_tflite`) and by ``kdtool bench``/``predict``
(:func:`kdtool.litert.predict_scores`), so both feed a model the same integer
images and read the same scores back.

Arithmetic, chosen once:

* **float32.** ``q = clip(rint(float32(x) / float32(scale)) + zero_point)``.
  The images are float32 (``FData.x``), a TFLite model stores its scales as
  float32, and TFLite's own QUANTIZE kernel divides in float32, so float32 is
  the precision the model's numbers actually have. Doing the division in
  float64 gives a different integer for a pixel whose ``x / scale`` lies
  within float32 rounding of a half step; such a borderline image is where
  the export check and ``kdtool bench`` used to disagree.
* **Ties to even** (numpy's ``rint``, what ``kdtool bench`` has always used):
  a borderline quotient often lands exactly on a half step in float32.
* **Dequantize** as ``(float32(q) - zero_point) * float32(scale)``, in float32.

A tensor is quantized when its dtype is an integer and its scale is above 0
(TFLite writes scale 0.0 for a tensor without quantization).

Example:
    >>> import numpy as np
    >>> quantize(np.array([0.0, 0.2, 1.0], np.float32), "int8", 1 / 255, -128)
    array([-128,  -77,  127], dtype=int8)
    >>> dequantize(np.array([-128, 0, 127], np.int8), 1 / 255, -128)
    array([0.       , 0.5019608, 1.       ], dtype=float32)
"""

from __future__ import annotations

import numpy as np


def is_quantized(dtype: np.dtype | str, scale: float) -> bool:
    """True for an integer tensor that carries a scale above 0.

    Args:
        dtype: the tensor's dtype.
        scale: its quantization scale (0.0 when it has none).

    Returns:
        Whether :func:`quantize`/:func:`dequantize` apply the affine mapping.

    Example:
        >>> is_quantized("int8", 0.0039), is_quantized("float32", 0.0), is_quantized("int8", 0.0)
        (True, False, False)
    """
    return bool(np.issubdtype(np.dtype(dtype), np.integer) and scale > 0)


def quantize(x: np.ndarray, dtype: np.dtype | str, scale: float = 0.0, zero_point: int = 0) -> np.ndarray:
    """Float images -> an input tensor of ``dtype``, in float32 arithmetic (see the module docstring).

    Args:
        x: float images, in [0, 1] for kdtool's models.
        dtype: the input tensor's dtype (int8, uint8, int16, float32, float16).
        scale: its quantization scale; must be above 0 for an integer dtype.
        zero_point: its quantization zero point.

    Returns:
        ``clip(rint(x / scale) + zero_point)`` in ``dtype`` for an integer dtype,
        else ``x`` cast to ``dtype``.

    Raises:
        ValueError: an integer dtype without a scale above 0.

    Example:
        >>> quantize(np.array([0.25], np.float32), "uint8", 1 / 255, 0)
        array([64], dtype=uint8)
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(x, dtype=dtype)
    if not scale > 0:
        raise ValueError(f"cannot quantize to {dtype.name} without a quantization scale (scale {scale})")
    info = np.iinfo(dtype)
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)) + np.float32(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float = 0.0, zero_point: int = 0) -> np.ndarray:
    """An output tensor -> float32 scores, in float32 arithmetic.

    Args:
        q: the output tensor's values.
        scale: its quantization scale (0.0 when it has none).
        zero_point: its quantization zero point.

    Returns:
        float32 ``(q - zero_point) * scale`` for an integer tensor with a scale,
        else ``q`` cast to float32.

    Example:
        >>> dequantize(np.array([10, -6], np.int8), 0.5, -6)
        array([8., 0.], dtype=float32)
    """
    q = np.asarray(q)
    if not is_quantized(q.dtype, scale):
        return q.astype(np.float32)
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
