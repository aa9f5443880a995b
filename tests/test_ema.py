"""kdtool distill --ema: a moving average of the student's weights is validated, kept and resumed."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from kdtool.distill.checkpoint import averaged_weights, fit_resumable  # noqa: E402
from kdtool.distill.student import build_student  # noqa: E402
from kdtool.distill.train import DistillConfig, make_optimizer  # noqa: E402
from kdtool.errors import InputError  # noqa: E402
from kdtool.metrics import classification_report  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.random((48, 8, 8, 3), dtype=np.float32)
Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 48)]


def _model(ema: float):
    keras.utils.set_random_seed(0)
    m = build_student((8, 8, 3), 3, filters=(4,), dense_units=8, dropout=0.0)
    m.compile(optimizer=make_optimizer(3e-2, "constant", ema=ema),
              loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    m(X[:1])
    return m


def _bal(model) -> float:
    preds = np.asarray(model(X, training=False)).argmax(1)
    return classification_report(Y.argmax(1), preds, ["a", "b", "c"])["balanced_accuracy"]


def test_average_is_scored_and_kept_while_training_follows_the_raw_weights(tmp_path):
    plain = _model(0.0)
    h_plain, _ = fit_resumable(plain, tmp_path / "plain", X, Y, 5, select=(X, Y.argmax(1)), batch_size=8,
                               shuffle=False, verbose=0)
    ema = _model(0.8)
    h_ema, best = fit_resumable(ema, tmp_path / "ema", X, Y, 5, select=(X, Y.argmax(1)), batch_size=8,
                                shuffle=False, verbose=0)
    # the average never overwrites the weights the optimizer steps: the raw trajectory is the plain one
    np.testing.assert_allclose(h_ema["val_balanced_accuracy_raw"], h_plain["val_balanced_accuracy"])
    np.testing.assert_allclose(h_ema["loss"], h_plain["loss"], rtol=1e-5)
    assert "val_balanced_accuracy_raw" not in h_plain
    # what is kept is the best epoch of the average, and its score is the one logged
    assert best == int(np.argmax(h_ema["val_balanced_accuracy"])) + 1
    assert _bal(ema) == pytest.approx(max(h_ema["val_balanced_accuracy"]))
    assert h_ema["val_balanced_accuracy"] != h_ema["val_balanced_accuracy_raw"]


def test_last_epoch_ends_on_the_average_and_swapping_restores_the_raw_weights(tmp_path):
    m = _model(0.8)
    fit_resumable(m, tmp_path / "a", X, Y, 3, batch_size=8, shuffle=False, verbose=0)
    average = [v.numpy() for v in m.optimizer._model_variables_moving_average]
    for w, a in zip(m.trainable_variables, average):
        np.testing.assert_array_equal(w.numpy(), a)
    # Keras' own fit ends on the average too; move the weights off it, as a step between epochs does
    for v in m.trainable_variables:
        v.assign(v.numpy() + 1.0)
    raw = [v.numpy() for v in m.trainable_variables]
    with averaged_weights(m) as swapped:
        assert swapped
        for v, a in zip(m.trainable_variables, average):
            np.testing.assert_array_equal(v.numpy(), a)
    for v, r in zip(m.trainable_variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)
    with averaged_weights(_model(0.0)) as swapped:
        assert not swapped


def test_a_killed_fit_resumes_with_its_average(tmp_path):
    whole = _model(0.8)
    fit_resumable(whole, tmp_path / "whole", X, Y, 4, batch_size=8, shuffle=False, verbose=0)
    part = _model(0.8)
    fit_resumable(part, tmp_path / "part", X, Y, 2, batch_size=8, shuffle=False, verbose=0)  # "killed" at 2 of 4
    resumed = _model(0.8)
    fit_resumable(resumed, tmp_path / "part", X, Y, 4, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_ema_outside_zero_one_is_refused(bad):
    with pytest.raises(InputError, match=r"--ema must lie in \[0, 1\)"):
        DistillConfig(ema=bad).check()
