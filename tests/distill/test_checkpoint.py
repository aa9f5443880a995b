"""fit_resumable: early stopping (--patience), alone and after a resume; bit-identical resumes; scoring only."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from kdtool.distill.checkpoint import fit_resumable
from kdtool.distill.student import build_student

RNG = np.random.default_rng(1)
X = RNG.random((32, 8, 8, 3), dtype=np.float32)
Y = np.eye(2, dtype=np.float32)[np.arange(32) % 2]


def _frozen_model():
    # learning rate 0: the weights (and the validation score) never change, so only epoch 1 is ever "best"
    keras.utils.set_random_seed(0)
    m = build_student((8, 8, 3), 2, filters=(4,), dense_units=0, dropout=0.0)
    m.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    m(X[:1])
    return m


def test_patience_stops_and_a_resume_does_not_train_past_the_stop(tmp_path):
    kw = dict(select=(X, Y.argmax(1)), patience=2, batch_size=8, verbose=0)
    history, best = fit_resumable(_frozen_model(), tmp_path / "b", X, Y, 10, **kw)
    assert best == 1 and len(history["loss"]) == 3  # epochs 2 and 3 did not improve on epoch 1
    again, best = fit_resumable(_frozen_model(), tmp_path / "b", X, Y, 10, **kw)
    assert best == 1 and len(again["loss"]) == 3  # it had stopped: nothing more is trained


def _dropout_model(seed: int):
    keras.utils.set_random_seed(seed)
    m = build_student((8, 8, 3), 2, filters=(4,), dense_units=8, dropout=0.5)
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    m(X[:1])
    return m


@pytest.mark.slow
@pytest.mark.parametrize("views", [False, True])
def test_a_resumed_fit_is_bit_identical_to_an_uninterrupted_one(tmp_path, views):
    from kdtool.distill.augment import TrainBatches

    x = np.stack([X, X[:, ::-1]]) if views else X
    y = np.stack([Y, Y]) if views else Y

    def batches():
        # fixed views, or a fresh augmented view at every step; Keras shuffles the batch order too
        return TrainBatches(x, y, 8, augment=not views, seed=3)

    straight = _dropout_model(0)
    fit_resumable(straight, tmp_path / "straight", batches(), None, 4, verbose=0)
    fit_resumable(_dropout_model(0), tmp_path / "cut", batches(), None, 2, verbose=0)
    # "a new process": other global seeds, other initial weights and dropout streams, fresh batches
    resumed = _dropout_model(7)
    history, _ = fit_resumable(resumed, tmp_path / "cut", batches(), None, 4, verbose=0)
    assert len(history["loss"]) == 4
    for a, b in zip(straight.weights, resumed.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


@pytest.mark.slow
def test_scoring_without_keeping_ends_where_a_plain_fit_ends(tmp_path):
    """--last-epoch (keep_best False) scores every epoch for history.csv but keeps none: the weights are
    bit-identical to a fit that never scored, no best epoch is saved, and patience is refused."""
    from kdtool.distill.augment import TrainBatches

    def batches():
        return TrainBatches(X, Y, 8, augment=True, seed=3)

    plain = _dropout_model(0)
    history, best = fit_resumable(plain, tmp_path / "plain", batches(), None, 3, verbose=0)
    assert best is None and "val_balanced_accuracy" not in history
    scored = _dropout_model(0)
    history, best = fit_resumable(
        scored, tmp_path / "scored", batches(), None, 3, select=(X, Y.argmax(1)), keep_best=False, verbose=0
    )
    assert best is None and len(history["val_balanced_accuracy"]) == 3
    assert not (tmp_path / "scored" / "best.weights.h5").exists()
    for a, b in zip(plain.get_weights(), scored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="patience stops on the best validation epoch"):
        fit_resumable(
            _dropout_model(0),
            tmp_path / "p",
            batches(),
            None,
            3,
            select=(X, Y.argmax(1)),
            keep_best=False,
            patience=2,
            verbose=0,
        )


@pytest.mark.slow
def test_a_metric_that_starts_logging_after_a_resume_stays_aligned_with_the_epochs(tmp_path):
    """Epochs run before a resume by a kdtool that did not score them (--last-epoch before it scored every
    epoch) read back as NaN, so history.csv and the curves keep each value at its own epoch."""
    from kdtool.distill.outputs import write_history

    fit_resumable(_dropout_model(0), tmp_path / "b", X, Y, 2, batch_size=8, verbose=0)
    history, best = fit_resumable(
        _dropout_model(0), tmp_path / "b", X, Y, 4, select=(X, Y.argmax(1)), keep_best=False, batch_size=8, verbose=0
    )
    scores = history["val_balanced_accuracy"]
    assert best is None and len(scores) == len(history["loss"]) == 4
    assert np.isnan(scores[:2]).all() and not np.isnan(scores[2:]).any()
    write_history(history, tmp_path / "history.csv")
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[1].endswith("nan") and not rows[4].endswith("nan")
