"""Augmentation and training batches for teachers and students (numpy, seeded).

Dermatoscopic images have no canonical orientation, so flips and 90-degree
rotations are free label-preserving views; small shifts (reflect padding) and
brightness/contrast jitter add a little more.

With cached teacher logits, :func:`make_views` fixes K augmented views of each
training image once (view 0 is the image itself); the teacher runs on each view
once and :class:`TrainBatches` serves, every epoch, one random view per image
with that view's logits. The teacher still runs only K times per image.

Example:
    >>> views = make_views(x_train, k=4, seed=0)                              # doctest: +SKIP
    >>> batches = TrainBatches(views, targets_per_view, batch_size=64, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import keras
import numpy as np


def augment(x: np.ndarray, rng: np.random.Generator, shift: int = 2, jitter: float = 0.1) -> np.ndarray:
    """A random label-preserving view of each image in a batch.

    Args:
        x: float32 (B, H, W, 3) in [0, 1].
        rng: random generator.
        shift: largest translation in pixels (reflect padding).
        jitter: largest relative brightness/contrast change.

    Returns:
        float32 array like ``x``, still in [0, 1].
    """
    out = np.array(x, dtype=np.float32, copy=True)
    b, h, w, _ = out.shape
    for i in range(b):
        img = out[i]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if h == w:
            img = np.rot90(img, k=int(rng.integers(0, 4)))
        if shift:
            dy, dx = rng.integers(-shift, shift + 1, size=2)
            if dy or dx:
                padded = np.pad(img, ((shift, shift), (shift, shift), (0, 0)), mode="reflect")
                img = padded[shift + dy : shift + dy + h, shift + dx : shift + dx + w]
        if jitter:
            brightness = 1.0 + rng.uniform(-jitter, jitter)
            contrast = 1.0 + rng.uniform(-jitter, jitter)
            mean = img.mean()
            img = (img - mean) * contrast + mean * brightness
        out[i] = np.clip(img, 0.0, 1.0)
    return out


def make_views(x: np.ndarray, k: int, seed: int, batch: int = 1024) -> np.ndarray:
    """K fixed views of every image: view 0 is the original, views 1..K-1 random augmentations.

    Args:
        x: float32 (N, H, W, 3) in [0, 1].
        k: number of views (>= 1).
        seed: RNG seed (the same seed gives the same views).
        batch: images augmented per chunk.

    Returns:
        float32 (K, N, H, W, 3).
    """
    rng = np.random.default_rng(seed)
    views = np.empty((k, *x.shape), dtype=np.float32)
    views[0] = x
    for v in range(1, k):
        for start in range(0, len(x), batch):
            views[v, start : start + batch] = augment(x[start : start + batch], rng)
    return views


class TrainBatches(keras.utils.PyDataset):
    """Shuffled training batches ``(x, y, sample_weight)`` with augmentation.

    Either ``views`` (K, N, ...) with per-view targets (K, N, D): every epoch one
    random view per image; or plain ``x`` (N, ...) with targets (N, D) and
    ``augment=True`` for a fresh random view of every image at every step.

    Args:
        x: (N, H, W, 3) images, or (K, N, H, W, 3) fixed views.
        targets: (N, D) or (K, N, D) (one-hot, possibly packed with teacher logits).
        batch_size: images per batch.
        sample_weight: optional (N,) per-image weights (class balancing).
        augment: random augmentation on the fly (plain ``x`` only).
        seed: RNG seed.
        sampling_probs: optional (N,) probabilities to draw images with replacement
            (class-balanced sampling); epoch length stays N.
    """

    def __init__(
        self,
        x,
        targets,
        batch_size: int,
        sample_weight=None,
        augment: bool = False,
        seed: int = 0,
        sampling_probs=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.views = x.ndim == 5
        self.x, self.targets = x, targets
        self.n = x.shape[1] if self.views else x.shape[0]
        self.batch_size = int(batch_size)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, np.float32)
        self.do_augment = augment and not self.views
        self.sampling_probs = sampling_probs
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return int(np.ceil(self.n / self.batch_size))

    def on_epoch_end(self):
        self._state_before_epoch_end = self.rng.bit_generator.state
        if self.sampling_probs is not None:
            self.order = self.rng.choice(self.n, size=self.n, replace=True, p=self.sampling_probs)
        else:
            self.order = self.rng.permutation(self.n)
        self.view_of = self.rng.integers(0, self.x.shape[0], size=self.n) if self.views else None

    def random_state(self) -> dict:
        """The generator's state before the last ``on_epoch_end`` (JSON-serialisable), for a resumed fit."""
        return self._state_before_epoch_end

    def restore_random_state(self, state: dict) -> None:
        """Continue as the batches that returned ``state`` from :meth:`random_state` did: the same next epoch."""
        self.rng.bit_generator.state = state
        self.on_epoch_end()

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        if self.views:
            v = self.view_of[idx]
            xb, yb = self.x[v, idx], self.targets[v, idx]
        else:
            xb, yb = self.x[idx], self.targets[idx]
            if self.do_augment:
                xb = augment(xb, self.rng)
        xb = np.asarray(xb, np.float32)
        yb = np.asarray(yb, np.float32)
        if self.sample_weight is None:
            return xb, yb
        return xb, yb, self.sample_weight[idx]
