"""Accuracy of a TFLite model over an FData split, with quantized I/O, in numpy only.

Images arrive as float32 in [0, 1] (``FData.x``), exactly what the float
models were trained on. For an integer (int8/uint8) input the model's own
quantization parameters (or the export sidecar's) give
``q = clip(round(x / scale) + zero_point)``; an integer output is dequantized
as ``(q - zero_point) * scale``. Probabilities are the softmax of the
dequantized scores, unless the scores already are probabilities (each row
non-negative and summing to 1 within 0.02, the error of an 8-bit softmax).

Example:
    >>> probs = predict_proba(model, fd.x("test"))               # doctest: +SKIP
    >>> report = classification_report(fd.labels("test"), probs.argmax(1), fd.class_names)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from kdtool.bench.runtime import LoadedModel, TensorIO
from kdtool.bench.tta import mean_over_views
from kdtool.errors import InputError


def quantize(x: np.ndarray, io: TensorIO) -> np.ndarray:
    """Float images -> the input tensor's dtype.

    Args:
        x: float32 images in [0, 1].
        io: the input tensor.

    Returns:
        ``clip(round(x / scale) + zero_point)`` in the tensor's integer dtype,
        or ``x`` cast to a float dtype.
    """
    if io.quantized:
        info = np.iinfo(io.dtype)
        q = np.round(np.asarray(x, dtype=np.float32) / np.float32(io.scale)) + io.zero_point
        return np.clip(q, info.min, info.max).astype(io.dtype)
    if np.issubdtype(io.dtype, np.integer):  # pragma: no cover - load_model refuses this
        raise ValueError(f"integer input {io.name} without quantization parameters")
    return np.asarray(x, dtype=io.dtype)


def dequantize(q: np.ndarray, io: TensorIO) -> np.ndarray:
    """Output tensor -> float32 scores: ``(q - zero_point) * scale`` for an integer tensor."""
    if io.quantized:
        return ((np.asarray(q, dtype=np.float32) - np.float32(io.zero_point)) * np.float32(io.scale)).astype(
            np.float32
        )
    return np.asarray(q, dtype=np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def looks_like_probabilities(scores: np.ndarray, tol: float = 0.02) -> bool:
    """True when every row is non-negative and sums to 1 within ``tol``."""
    scores = np.asarray(scores)
    return bool(scores.size and (scores >= -1e-6).all() and np.abs(scores.sum(axis=-1) - 1.0).max() <= tol)


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Dequantized scores -> probabilities (softmax of logits; probabilities pass through)."""
    return np.asarray(scores, dtype=np.float32) if looks_like_probabilities(scores) else softmax(scores)


def check_data_shape(model: LoadedModel, image_shape: tuple[int, ...], num_classes: int, data_file: str) -> None:
    """Refuse, in one line, a model whose input/output does not fit the data."""
    if tuple(model.image_shape) != tuple(image_shape):
        h, w, c = model.image_shape
        raise InputError(
            f"{model.path}: model input is {h}x{w}x{c} but {data_file} holds "
            f"{'x'.join(str(d) for d in image_shape)} images"
        )
    if model.num_classes != num_classes:
        raise InputError(f"{model.path}: model outputs {model.num_classes} classes but {data_file} has {num_classes}")


def set_input(model: LoadedModel, x: np.ndarray) -> None:
    """Quantize ``x`` (one batch, float in [0, 1]) and set it as the model's input."""
    model.interpreter.set_tensor(model.input.index, quantize(x, model.input))


def predict_scores(
    model: LoadedModel, x: np.ndarray, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Dequantized output scores for all images, batch by batch.

    The last partial batch is padded with zeros to the allocated batch size
    and the padding's outputs are dropped, so the interpreter never resizes.

    Args:
        model: an allocated model.
        x: float32 images (N, H, W, 3) in [0, 1].
        progress: called with the number of images done after each batch.

    Returns:
        float32 (N, K) scores (logits, or probabilities for a softmax model).
    """
    n, b = len(x), model.batch
    out = np.empty((n, model.num_classes), dtype=np.float32)
    interp = model.interpreter
    for start in range(0, n, b):
        chunk = np.asarray(x[start : start + b], dtype=np.float32)
        m = len(chunk)
        if m < b:
            chunk = np.concatenate([chunk, np.zeros((b - m, *chunk.shape[1:]), dtype=np.float32)])
        set_input(model, chunk)
        interp.invoke()
        out[start : start + m] = dequantize(interp.get_tensor(model.output.index), model.output)[:m]
        if progress is not None:
            progress(m)
    return out


def mean_scores(
    model: LoadedModel, x: np.ndarray, progress: Callable[[int], None] | None = None, tta: str = "none"
) -> np.ndarray:
    """:func:`predict_scores` averaged over the views of a test-time augmentation mode.

    Args:
        model: an allocated model.
        x: float32 images (N, H, W, 3) in [0, 1].
        progress: called with the number of images done after each batch (of every view).
        tta: a mode of :data:`kdtool.bench.tta.TTA_MODES`; ``none`` gives ``predict_scores(model, x)``.

    Returns:
        float32 (N, K) mean scores.
    """
    return mean_over_views(lambda v, p: predict_scores(model, v, p), x, tta, progress)


def predict_proba(
    model: LoadedModel, x: np.ndarray, progress: Callable[[int], None] | None = None, tta: str = "none"
) -> np.ndarray:
    """Class probabilities (N, K) for float images in [0, 1]: the softmax of :func:`mean_scores` (same
    arguments), or those scores themselves when they already are probabilities."""
    return to_probabilities(mean_scores(model, x, progress, tta))
