"""A Keras 3 ``Model`` that trains a student with the KD loss.

Two sources of teacher logits:

- cached (default): the teacher runs ONCE per training image before training;
  its logits travel with the labels, packed as ``y = [one_hot | teacher_logits]``.
- online: frozen teacher model(s) run on every batch (needed when inputs are
  randomly augmented). Teachers are set ``trainable = False``: a Keras 3
  ``compute_loss`` distiller holding an unfrozen teacher silently trains it too.

Only ``compile``-time settings, ``call``, ``compute_loss`` and
``compute_metrics`` are overridden (as in the Keras example), so ``fit`` and
``evaluate`` work unchanged under any tf.distribute strategy. Metrics
(``accuracy``, ``ce``) are the student's own, computed on the one-hot part of
``y``; ``loss`` is the combined KD loss.

Example:
    >>> d = Distiller(student, num_classes=7, alpha=0.3, temperature=4.0)      # doctest: +SKIP
    >>> d.compile(optimizer="adam", metrics=student_metrics())                    # doctest: +SKIP
    >>> d.fit(x, pack_targets(y, teacher_logits), epochs=5)                       # doctest: +SKIP
    >>> d.student.save("student.keras")                                           # doctest: +SKIP
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kdtool.distill.losses import ensemble_logits, kd_loss


def pack_targets(onehot: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
    """Concatenate one-hot labels and cached teacher logits on the last axis: (..., N, 2K) float32."""
    return np.concatenate([onehot, teacher_logits], axis=-1).astype(np.float32)


def student_metrics() -> list:
    """The student's own metrics: top-1 accuracy and cross-entropy on logits."""
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        keras.metrics.CategoricalCrossentropy(from_logits=True, name="ce"),
    ]


class Distiller(keras.Model):
    """Distil a student from cached teacher logits or from frozen online teachers.

    Args:
        student: the student ``keras.Model`` (outputs logits).
        num_classes: K.
        alpha: weight of the hard-label CE term.
        temperature: KD temperature T.
        teachers: frozen teacher models for online mode; ``None``/empty for cached mode.
        logit_offset: (K,) log class prior added to the student's logits in the CE term
            (``--balance logit-adjust``), or None.
        kd_class_weights: (K,) per-class weights of the KL term (``--kd-balance weights``), or None.
    """

    def __init__(
        self,
        student,
        num_classes: int,
        alpha: float = 0.3,
        temperature: float = 4.0,
        teachers=None,
        logit_offset=None,
        kd_class_weights=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.student = student
        self.num_classes = int(num_classes)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.teachers = list(teachers or [])
        self.logit_offset = None if logit_offset is None else np.asarray(logit_offset, np.float32)
        self.kd_class_weights = None if kd_class_weights is None else np.asarray(kd_class_weights, np.float32)
        for teacher in self.teachers:
            teacher.trainable = False

    @property
    def online(self) -> bool:
        return bool(self.teachers)

    def call(self, x, training=False):
        return self.student(x, training=training)

    def teacher_logits(self, x, y):
        """Teacher logits for a batch: from ``y`` (cached) or the frozen teachers (online)."""
        if not self.online:
            return y[:, self.num_classes :]
        logits = [ops.stop_gradient(t(x, training=False)) for t in self.teachers]
        return logits[0] if len(logits) == 1 else ensemble_logits(logits, self.temperature)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        onehot = y[:, : self.num_classes]
        per_sample = kd_loss(
            onehot,
            self.teacher_logits(x, y),
            y_pred,
            self.alpha,
            self.temperature,
            self.logit_offset,
            self.kd_class_weights,
        )
        if sample_weight is not None:
            sw = ops.cast(ops.reshape(sample_weight, (-1,)), per_sample.dtype)
            loss = ops.sum(per_sample * sw) / ops.maximum(ops.sum(sw), 1e-12)
        else:
            loss = ops.mean(per_sample)
        # as Keras' own losses are: each of N replicas' gradients is summed, so each takes 1/N of its mean
        # (no-op on one replica; without it the logged loss was N times too large under tf.distribute)
        return _scale_for_replicas(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y[:, : self.num_classes], y_pred, sample_weight)


def _scale_for_replicas(loss):
    """``loss`` divided by the strategy's replicas in sync, as Keras scales its compiled losses."""
    from keras.src.losses.loss import scale_loss_for_distribution  # Keras' own helper; no public name

    return scale_loss_for_distribution(loss)
