"""Class priors of a training split, shared by training (logit adjustment) and export (operating points)."""

from __future__ import annotations

import numpy as np


def log_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """log of each class's frequency in ``labels`` (a class with no image counts as one).

    Args:
        labels: integer labels (N,) of the training split.
        num_classes: K.

    Returns:
        (K,) float32, added to the logits by the logit-adjusted cross-entropy (and, as ``tau * log_prior``
        with a fitted ``tau``, by ``kdtool export --operating-point balanced|accuracy``).

    Example:
        >>> [round(float(v), 3) for v in log_prior(np.array([0, 0, 0, 1]), 2)]
        [-0.288, -1.386]
    """
    counts = np.maximum(np.bincount(np.asarray(labels, np.int64), minlength=num_classes), 1).astype(np.float64)
    return np.log(counts / counts.sum()).astype(np.float32)
