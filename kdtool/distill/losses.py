"""The knowledge-distillation loss (Hinton et al., 2015).

    loss = alpha * CE(y, softmax(s)) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

``s`` are student logits, ``t`` teacher logits, ``T`` the temperature. The T^2
factor keeps the soft term's gradients on the same scale as the hard term's
when T changes.

Logit adjustment (``--balance logit-adjust``; Menon et al., 2021, "Long-tail
learning via logit adjustment"): the hard-label term becomes CE(y, softmax(s + log p)),
with ``p`` the training split's class frequencies. The model learns logits ``s``
whose argmax is the class-balanced decision, with no weighting of the loss.

Balanced KD (``kdtool distill --kd-balance weights``; Zhang et al., 2023, "Balanced
knowledge distillation for long-tailed learning"): each image's KL term is weighted
by its class's weight N / (K * n_c), the hard-label term is not. Two-thirds of the
images are nevi, so without it most of the teacher's signal is spent on nevi.

Example:
    >>> per_sample = kd_loss(y, teacher_logits, student_logits, alpha=0.3, temperature=4.0)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from keras import ops


def logit_adjusted_crossentropy(offset: np.ndarray):
    """Cross-entropy on ``logits + offset`` (offset = :func:`kdtool.distill.balance.log_prior`), as a Keras loss.

    Args:
        offset: (K,) added to the logits inside the loss only; the model's own
            outputs stay unadjusted.

    Returns:
        ``loss(y_true, logits) -> (B,)``.
    """
    offset = np.asarray(offset, np.float32)

    def logit_adjusted_ce(y_true, logits):
        z = ops.cast(logits, "float32") + offset
        return -ops.sum(ops.cast(y_true, "float32") * ops.log_softmax(z, axis=-1), axis=-1)

    return logit_adjusted_ce


def kd_loss(
    y_true, teacher_logits, student_logits, alpha: float, temperature: float, logit_offset=None, kd_class_weights=None
):
    """Per-sample KD loss (average it yourself, so sample weights can apply).

    Args:
        y_true: one-hot labels (B, K).
        teacher_logits: (B, K) logits (not probabilities).
        student_logits: (B, K) logits.
        alpha: weight of the hard-label cross-entropy, in [0, 1].
        temperature: softening temperature T > 0.
        logit_offset: optional (K,) added to the student's logits in the hard-label
            term only (logit adjustment); the KL term compares the logits as they are.
        kd_class_weights: optional (K,) weights; each image's KL term is multiplied by its
            class's weight (``--kd-balance weights``), the hard-label term is not.

    Returns:
        A (B,) tensor.

    Example:
        >>> y = np.eye(2, dtype="float32")
        >>> z = np.array([[2.0, 0.0], [0.0, 1.0]], "float32")
        >>> plain = kd_loss(y, z, 0 * z, alpha=0.0, temperature=1.0)
        >>> heavy = kd_loss(y, z, 0 * z, alpha=0.0, temperature=1.0, kd_class_weights=[1.0, 3.0])
        >>> [round(float(h / p), 3) for h, p in zip(heavy, plain)]
        [1.0, 3.0]
    """
    t = float(temperature)
    y_true = ops.cast(y_true, "float32")
    student_logits = ops.cast(student_logits, "float32")
    teacher_logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    hard = student_logits if logit_offset is None else student_logits + ops.cast(logit_offset, "float32")
    ce = -ops.sum(y_true * ops.log_softmax(hard, axis=-1), axis=-1)
    log_p_teacher = ops.log_softmax(teacher_logits / t, axis=-1)
    log_p_student = ops.log_softmax(student_logits / t, axis=-1)
    kl = ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    if kd_class_weights is not None:
        kl = kl * ops.sum(y_true * ops.cast(np.asarray(kd_class_weights, np.float32), "float32"), axis=-1)
    return alpha * ce + (1.0 - alpha) * (t * t) * kl


def ensemble_logits(logits_list, temperature: float):
    """Logits whose softmax(z/T) is the MEAN of the teachers' softmax(z_i/T).

    ``T * log(mean_i softmax(z_i / T))``: averaging soft targets (not logits),
    expressed as logits so the same :func:`kd_loss` applies.

    Args:
        logits_list: list of (B, K) teacher logits (numpy arrays or tensors).
        temperature: T.

    Returns:
        (B, K) tensor.
    """
    t = float(temperature)
    probs = [ops.softmax(ops.cast(z, "float32") / t, axis=-1) for z in logits_list]
    mean = probs[0]
    for p in probs[1:]:
        mean = mean + p
    mean = mean / float(len(probs))
    return t * ops.log(ops.maximum(mean, 1e-12))
