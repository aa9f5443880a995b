"""Class-imbalance handling for training: the ``--balance`` modes (numpy only).

HAM10000 is two-thirds nevi. Each mode corrects for that in one place of training:

- ``none``: nothing.
- ``weights``: per-image loss weights N / (K * n_c) (CE and KD terms alike).
- ``sampling``: batches drawn so every class appears equally often.
- ``logit-adjust``: the hard-label cross-entropy sees ``logits + log p`` (Menon et al., 2021),
  with ``p`` the training split's class frequencies; no weights, no resampling.

:func:`balancing` turns a mode and the training labels into a :class:`Balancing`, the three
things training needs (image weights, sampling probabilities, logit offset), of which a mode
sets at most one.

Example:
    >>> b = balancing("weights", np.array([0, 0, 0, 1]), 2)
    >>> b.sample_weight.tolist(), b.sampling_probs, b.logit_offset
    ([0.6666666865348816, 0.6666666865348816, 0.6666666865348816, 2.0], None, None)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdtool.priors import log_prior

BALANCE_MODES = ("none", "weights", "sampling", "logit-adjust")
KD_BALANCE_MODES = ("none", "weights")  # kdtool distill --kd-balance: the KL term's per-class weights


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced class weights N / (K * n_c) (mean weight over the images is 1); absent classes get 0.

    Args:
        labels: integer labels (N,).
        num_classes: K.

    Returns:
        (K,) float32 weights.

    Example:
        >>> class_weights(np.array([0, 0, 0, 1]), 3).tolist()
        [0.6666666865348816, 2.0, 0.0]
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights.astype(np.float32)


def balanced_sampling_probs(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-image probabilities that draw every present class equally often.

    Args:
        labels: integer labels (N,).
        num_classes: K.

    Returns:
        (N,) float64 probabilities summing to 1.
    """
    w = class_weights(labels, num_classes)[labels].astype(np.float64)
    return w / w.sum()


@dataclass(frozen=True)
class Balancing:
    """What one ``--balance`` mode asks of training (at most one field is set).

    Attributes:
        mode: the mode's name.
        sample_weight: (N,) per-image loss weights, or None.
        sampling_probs: (N,) per-image sampling probabilities, or None.
        logit_offset: (K,) log class prior for the logit-adjusted hard-label loss, or None.
    """

    mode: str
    sample_weight: np.ndarray | None = None
    sampling_probs: np.ndarray | None = None
    logit_offset: np.ndarray | None = None


def balancing(mode: str, labels: np.ndarray, num_classes: int) -> Balancing:
    """The :class:`Balancing` of ``mode`` for these training labels.

    Args:
        mode: one of :data:`BALANCE_MODES`.
        labels: integer training labels (N,).
        num_classes: K.

    Returns:
        A :class:`Balancing`.

    Raises:
        ValueError: an unknown mode (the message names the valid ones).
    """
    labels = np.asarray(labels, np.int64)
    if mode == "none":
        return Balancing(mode)
    if mode == "weights":
        return Balancing(mode, sample_weight=class_weights(labels, num_classes)[labels])
    if mode == "sampling":
        return Balancing(mode, sampling_probs=balanced_sampling_probs(labels, num_classes))
    if mode == "logit-adjust":
        return Balancing(mode, logit_offset=log_prior(labels, num_classes))
    raise ValueError(f"unknown balance mode {mode!r}; choose from {', '.join(BALANCE_MODES)}")
