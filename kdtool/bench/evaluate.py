"""Class probabilities of a TFLite model over an FData split (with --tta views), in numpy only.

Images arrive as float32 in [0, 1] (``FData.x``), exactly what the float
models were trained on. An integer (int8/uint8) input is quantized and an
integer output dequantized by :mod:`kdtool.quant` (the arithmetic ``kdtool
export``'s check uses too), with the model's own quantization parameters or
the export sidecar's; the batch loop is :func:`kdtool.tflite_model.predict_scores`.
Probabilities are the softmax of the dequantized scores, unless the scores
already are probabilities (each row non-negative and summing to 1 within
0.02, the error of an 8-bit softmax).

Example:
    >>> probs = predict_proba(model, fd.x("test"))               # doctest: +SKIP
    >>> report = classification_report(fd.labels("test"), probs.argmax(1), fd.class_names)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdtool.bench.tta import mean_over_views
from kdtool.errors import InputError
from kdtool.reliability import softmax
from kdtool.tflite_model import LoadedModel, predict_scores

__all__ = ["check_data_shape", "looks_like_probabilities", "mean_scores", "predict_proba", "softmax",
           "to_probabilities"]  # fmt: skip


def looks_like_probabilities(scores: np.ndarray, tol: float = 0.02) -> bool:
    """Whether scores already are probabilities (a model ending in softmax).

    Args:
        scores: (N, K) dequantized scores.
        tol: how far a row's sum may be from 1 (an 8-bit softmax's error).

    Returns:
        True when every row is non-negative and sums to 1 within ``tol``.

    Example:
        >>> looks_like_probabilities(np.array([[0.3, 0.71]])), looks_like_probabilities(np.array([[2.0, -1.0]]))
        (True, False)
    """
    scores = np.asarray(scores)
    return bool(scores.size and (scores >= -1e-6).all() and np.abs(scores.sum(axis=-1) - 1.0).max() <= tol)


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Dequantized scores -> probabilities.

    Args:
        scores: (N, K) logits or probabilities.

    Returns:
        float32 (N, K): the scores themselves when :func:`looks_like_probabilities`, else their softmax.

    Example:
        >>> to_probabilities(np.array([[0.25, 0.75]]))
        array([[0.25, 0.75]], dtype=float32)
    """
    probs = scores if looks_like_probabilities(scores) else softmax(scores)
    return np.asarray(probs, dtype=np.float32)


def check_data_shape(model: LoadedModel, image_shape: tuple[int, ...], num_classes: int, data_file: str) -> None:
    """Refuse, in one line, a model whose input/output does not fit the data.

    Args:
        model: a loaded model.
        image_shape: the data's (H, W, 3).
        num_classes: the data's K.
        data_file: the images file, named in the message.

    Raises:
        InputError: another image size or class count.

    Example:
        >>> check_data_shape(model, (32, 32, 3), 7, "FData/X_test.npy")  # doctest: +SKIP
    """
    if tuple(model.image_shape) != tuple(image_shape):
        h, w, c = model.image_shape
        raise InputError(
            f"{model.path}: model input is {h}x{w}x{c} but {data_file} holds "
            f"{'x'.join(str(d) for d in image_shape)} images"
        )
    if model.num_classes != num_classes:
        raise InputError(f"{model.path}: model outputs {model.num_classes} classes but {data_file} has {num_classes}")


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

    Example:
        >>> mean_scores(model, fd.x("test"), tta="d4").shape  # doctest: +SKIP
        (1704, 7)
    """
    return mean_over_views(lambda v, p: predict_scores(model, v, p), x, tta, progress)


def predict_proba(
    model: LoadedModel, x: np.ndarray, progress: Callable[[int], None] | None = None, tta: str = "none"
) -> np.ndarray:
    """Class probabilities for float images in [0, 1].

    Args:
        model: an allocated model.
        x: float32 images (N, H, W, 3) in [0, 1].
        progress: called with the number of images done after each batch (of every view).
        tta: a mode of :data:`kdtool.bench.tta.TTA_MODES`.

    Returns:
        float32 (N, K): :func:`to_probabilities` of :func:`mean_scores`.

    Example:
        >>> predict_proba(model, fd.x("test"), tta="flip").argmax(1)  # doctest: +SKIP
    """
    return to_probabilities(mean_scores(model, x, progress, tta))
