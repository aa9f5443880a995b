"""What distilled students learn from: teachers' logits, cached once, on the run's fixed views.

With cached logits (the default), each teacher runs once over the training images, or over
``--views`` fixed augmented views of them, and once over the validation images. Several
teachers (``--teacher-seeds``, ``--ensemble``) are combined by averaging their soft targets.

Example:
    >>> run.views = fixed_views(run.cfg, run.fd)                 # doctest: +SKIP
    >>> cached = teacher_logits(teacher, run)                    # doctest: +SKIP
    >>> cached = mean_soft_targets([cached, cached2], run.cfg.temperature)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kdtool.data import FData
from kdtool.distill.config import DistillConfig

if TYPE_CHECKING:
    from kdtool.distill.run_folder import Run


def teacher_logits(model, run: Run, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's logits, computed once for cached-logit KD.

    Args:
        model: a (frozen) teacher.
        run: the open run (its data, and its fixed views when augmenting).
        batch: prediction batch size.

    Returns:
        (train logits: (N, C), or (K, N, C) over the run's fixed views; val logits (N, C)).

    Example:
        >>> train, val = teacher_logits(teacher, run)  # doctest: +SKIP
    """
    from kdtool.distill.evaluate import predict_logits

    fd = run.fd
    if run.views is not None:
        train = np.stack([predict_logits(model, view, batch) for view in run.views])
    else:
        train = predict_logits(model, fd.x("train"), batch)
    return train, predict_logits(model, fd.x("val"), batch)


def fixed_views(cfg: DistillConfig, fd: FData) -> np.ndarray | None:
    """The run's fixed augmented training views (K, N, H, W, 3), or None when it trains without them.

    Views exist with ``augment``, cached teacher logits and ``views`` > 1; they depend only on the
    training images, ``views`` and ``seed``, so a later process rebuilds the very same ones.

    Args:
        cfg: the run's configuration.
        fd: the run's data.

    Returns:
        The views, or None.

    Example:
        >>> fixed_views(DistillConfig(views=1), fd=None) is None  # one view: augmented on the fly instead
        True
    """
    if not (cfg.augment and cfg.teacher_logits == "cached" and cfg.views > 1):
        return None
    from kdtool.distill.augment import make_views

    return make_views(fd.x("train"), cfg.views, cfg.seed)


def mean_soft_targets(cached_all: list, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Several teachers' cached (train, val) logits -> one pair whose softmax(z/T) is their mean.

    Args:
        cached_all: one ``(train logits, val logits)`` pair per teacher, as :func:`teacher_logits` returns.
        temperature: T of the soft targets being averaged.

    Returns:
        ``(train, val)`` logits for :func:`kdtool.distill.distiller.pack_targets`.

    Example:
        >>> z = [(np.zeros((4, 3)), np.zeros((2, 3))), (np.ones((4, 3)), np.ones((2, 3)))]
        >>> [a.shape for a in mean_soft_targets(z, 2.0)]  # doctest: +SKIP
        [(4, 3), (2, 3)]
    """
    from kdtool.distill.losses import ensemble_logits

    return tuple(np.asarray(ensemble_logits([c[i] for c in cached_all], temperature)) for i in (0, 1))
