"""A moving average of a student's weights, BatchNorm statistics included (``kdtool distill --ema``).

:class:`WeightAverage` is a Keras callback that, after every training batch,
moves an exponential average of the model's float variables towards their
current values: kernels and biases, and also BatchNorm's moving mean and
variance, as timm's ``ModelEmaV2`` does, so that the averaged weights are
validated with statistics that belong to them (Keras' own ``use_ema`` averages
only the trainable variables and leaves BatchNorm's statistics those of the
latest raw weights). The momentum warms up as ``min(m, (1 + step) / (10 + step))``
so that the first epochs are not dominated by the random initial weights.

The average never replaces the weights the optimizer steps:
:meth:`WeightAverage.swapped` puts it in place for a validation pass and then
restores the raw values. It is saved beside the per-epoch backup
(``average.npz``) so that a killed fit resumes with it.

Example:
    >>> avg = WeightAverage(0.999, Path("models/.backup/student_alone/average.npz"))  # doctest: +SKIP
    >>> model.fit(x, y, epochs=10, callbacks=[avg])                                 # doctest: +SKIP
    >>> with avg.swapped():                                                          # doctest: +SKIP
    ...     logits = model(x_val)
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import keras
import numpy as np

from kdtool.data import atomic_write_bytes


def _averaged_variables(model) -> list:
    # A Distiller trains a student (and, online, holds frozen teachers): only the student is averaged.
    target = getattr(model, "student", model)
    return [v for v in target.weights if "float" in str(v.dtype)]


class WeightAverage(keras.callbacks.Callback):
    """Exponential moving average of a model's float weights, updated after every batch.

    Args:
        momentum: the average's momentum per step, in (0, 1) (e.g. 0.999: about the last 1000 batches).
        path: where it is saved after each epoch and read back on resume (None: not saved).
        resume_epoch: the epoch the model's backup resumes after; a saved average is used only
            when it was saved after that same epoch (else averaging starts again from the weights).
    """

    def __init__(self, momentum: float, path: Path | None = None, resume_epoch: int = 0):
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must lie in (0, 1), got {momentum}")
        self.momentum, self.path, self.resume_epoch = float(momentum), path, int(resume_epoch)
        self.average: list[np.ndarray] | None = None
        self.step = 0

    def start(self, model) -> None:
        """Attach to ``model`` and begin (or resume) the average; ``fit`` does this itself."""
        self.set_model(model)
        if self.average is None:
            self.average = self._saved() or [np.array(v.numpy(), dtype=np.float64)
                                             for v in _averaged_variables(model)]

    def _saved(self) -> list[np.ndarray] | None:
        if self.path is None or not self.resume_epoch or not Path(self.path).is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as doc:
                if int(doc["epoch"]) != self.resume_epoch:
                    return None
                arrays = [doc[f"w{i}"] for i in range(int(doc["count"]))]
                step = int(doc["step"])
        except (OSError, ValueError, KeyError):
            return None
        shapes = [tuple(v.shape) for v in _averaged_variables(self.model)]
        if [a.shape for a in arrays] != shapes:
            return None
        self.step = step
        return [a.astype(np.float64) for a in arrays]

    def on_train_begin(self, logs=None):
        self.start(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        decay = min(self.momentum, (1.0 + self.step) / (10.0 + self.step))
        for avg, var in zip(self.average, _averaged_variables(self.model)):
            avg *= decay
            avg += (1.0 - decay) * np.asarray(var.numpy(), dtype=np.float64)

    def on_epoch_end(self, epoch, logs=None):
        if self.path is None:
            return
        buf = io.BytesIO()
        np.savez(buf, epoch=np.int64(epoch + 1), step=np.int64(self.step), count=np.int64(len(self.average)),
                 **{f"w{i}": a.astype(np.float32) for i, a in enumerate(self.average)})
        atomic_write_bytes(Path(self.path), buf.getvalue())

    def assign(self) -> None:
        """Replace the model's weights by the average for good (the end of a last-epoch fit)."""
        for avg, var in zip(self.average, _averaged_variables(self.model)):
            var.assign(avg.astype(var.dtype))

    @contextlib.contextmanager
    def swapped(self):
        """Put the average in place of the model's weights, and the raw weights back afterwards."""
        variables = _averaged_variables(self.model)
        raw = [v.numpy() for v in variables]
        self.assign()
        try:
            yield
        finally:
            for var, value in zip(variables, raw):
                var.assign(value)
