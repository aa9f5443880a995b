"""Test-time augmentation (TTA): average a model's scores over label-preserving views, in numpy only.

Dermatoscopic images have no canonical orientation, and kdtool's students are
trained on flipped and rotated views (:mod:`kdtool.distill.augment`), so a
lesion turned by 90 degrees is the same lesion. TTA runs the model on several
such views of each image and averages the dequantized scores (logits, or
probabilities for a model that ends in softmax) before the softmax/argmax. It
costs one invoke per view and no change to the model file.

Modes (one function each, ``image batch -> list of views``):

========  =====  ==========================================================
mode      views  what
========  =====  ==========================================================
none      1      the image as it is (kdtool's default)
flip      2      the image and its left-right mirror
d4        8      the 8 symmetries of the square: 4 rotations x mirror
========  =====  ==========================================================

Every view is an exact permutation of the pixels, so an int8 model sees the
same quantized values, rearranged.

Example:
    >>> import numpy as np
    >>> x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    >>> [v.shape for v in tta_views(x, "flip")]
    [(2, 4, 4, 3), (2, 4, 4, 3)]
    >>> len(tta_views(x, "d4"))
    8
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdtool.errors import InputError


def _none(x: np.ndarray) -> list[np.ndarray]:
    """The images as they are."""
    return [x]


def _flip(x: np.ndarray) -> list[np.ndarray]:
    """The images and their left-right mirrors."""
    return [x, x[:, :, ::-1]]


def _d4(x: np.ndarray) -> list[np.ndarray]:
    """The 8 symmetries of the square: rotations by 0/90/180/270 degrees, each also mirrored."""
    rotations = [np.rot90(x, k=k, axes=(1, 2)) for k in range(4)]
    return rotations + [r[:, :, ::-1] for r in rotations]


#: mode name -> function(images (N, H, W, C)) -> list of views, each (N, H, W, C).
TTA_MODES: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {
    "none": _none,
    "flip": _flip,
    "d4": _d4,
}


def list_tta_modes() -> list[str]:
    """The TTA mode names, in order of cost.

    Returns:
        ``["none", "flip", "d4"]``.
    """
    return list(TTA_MODES)


def view_count(mode: str) -> int:
    """How many views (invokes per image) ``mode`` runs.

    Args:
        mode: one of :func:`list_tta_modes`.

    Returns:
        1, 2 or 8.

    Raises:
        InputError: an unknown mode; the message lists the valid ones.

    Example:
        >>> view_count("d4")
        8
    """
    fn = TTA_MODES.get(mode)
    if fn is None:
        raise InputError(f"unknown TTA mode {mode!r}; choose from: {', '.join(TTA_MODES)}")
    return len(fn(np.zeros((1, 2, 2, 1), dtype=np.float32)))


def tta_views(x: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of a batch of images that ``mode`` averages over.

    Args:
        x: images (N, H, W, C).
        mode: one of :func:`list_tta_modes`.

    Returns:
        A list of ``view_count(mode)`` arrays shaped like ``x`` (contiguous copies, view 0 is ``x``).

    Raises:
        InputError: an unknown mode (the message lists the valid ones), or ``d4`` on non-square images.
    """
    view_count(mode)
    if mode == "d4" and x.shape[1] != x.shape[2]:
        raise InputError(f"--tta d4 rotates by 90 degrees and needs square images, got {x.shape[1]}x{x.shape[2]}")
    return [np.ascontiguousarray(v) for v in TTA_MODES[mode](x)]


def mean_over_views(
    score_fn: Callable[[np.ndarray, Callable[[int], None] | None], np.ndarray],
    x: np.ndarray,
    mode: str,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Scores averaged over the TTA views of ``x``.

    Args:
        score_fn: ``score_fn(images, progress) -> (N, K) scores``, e.g.
            ``lambda v, p: predict_scores(model, v, p)``.
        x: images (N, H, W, C).
        mode: a TTA mode.
        progress: called with images done, over all views (total ``N * view_count(mode)``).

    Returns:
        float32 (N, K) mean scores; exactly ``score_fn(x)`` for mode ``none``.

    Example:
        >>> x = np.zeros((3, 2, 2, 1), dtype=np.float32)
        >>> mean_over_views(lambda v, p: v.reshape(len(v), -1)[:, :2] + 1.0, x, "d4").tolist()
        [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    views = tta_views(x, mode)
    total = None
    for view in views:
        scores = np.asarray(score_fn(view, progress), dtype=np.float64)
        total = scores if total is None else total + scores
    return (total / len(views)).astype(np.float32)
