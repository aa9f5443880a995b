"""kdtool distill --ema: a moving average of the student's weights (BatchNorm statistics too) is
validated, kept and resumed, and never changes the raw weights' training."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from kdtool.distill.averaging import WeightAverage  # noqa: E402
from kdtool.distill.checkpoint import fit_resumable  # noqa: E402
from kdtool.distill.student import build_student  # noqa: E402
from kdtool.distill.config import DistillConfig
from kdtool.distill.train import make_optimizer  # noqa: E402
from kdtool.errors import InputError  # noqa: E402
from kdtool.metrics import classification_report  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.random((48, 8, 8, 3), dtype=np.float32)
Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 48)]


def _model():
    keras.utils.set_random_seed(0)
    m = build_student((8, 8, 3), 3, filters=(4,), dense_units=8, dropout=0.0)
    m.compile(optimizer=make_optimizer(3e-2, "constant"),
              loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    m(X[:1])
    return m


def _bal(model) -> float:
    preds = np.asarray(model(X, training=False)).argmax(1)
    return classification_report(Y.argmax(1), preds, ["a", "b", "c"])["balanced_accuracy"]


def test_average_is_scored_and_kept_while_training_follows_the_raw_weights(tmp_path):
    plain = _model()
    h_plain, _ = fit_resumable(plain, tmp_path / "plain", X, Y, 5, select=(X, Y.argmax(1)), batch_size=8,
                               shuffle=False, verbose=0)
    ema = _model()
    h_ema, best = fit_resumable(ema, tmp_path / "ema", X, Y, 5, select=(X, Y.argmax(1)), average=0.8,
                                batch_size=8, shuffle=False, verbose=0)
    # the average never overwrites the weights the optimizer steps: the raw trajectory is the plain one
    np.testing.assert_allclose(h_ema["val_balanced_accuracy_raw"], h_plain["val_balanced_accuracy"])
    np.testing.assert_allclose(h_ema["loss"], h_plain["loss"], rtol=1e-5)
    assert "val_balanced_accuracy_raw" not in h_plain
    # what is kept is the best epoch of the average, and its score is the one logged
    assert best == int(np.argmax(h_ema["val_balanced_accuracy"])) + 1
    assert _bal(ema) == pytest.approx(max(h_ema["val_balanced_accuracy"]), abs=1e-6)  # epochs.csv rounds
    assert h_ema["val_balanced_accuracy"] != h_ema["val_balanced_accuracy_raw"]


def test_the_average_covers_batchnorm_statistics_warms_up_and_swaps_back(tmp_path):
    m = _model()
    bn = [v for v in m.weights if "moving_mean" in v.path]
    assert bn, "the test student has BatchNorm"
    first = [v.numpy() for v in m.weights if "float" in str(v.dtype)]
    avg = WeightAverage(0.9)
    m.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0, callbacks=[avg])
    assert avg.step == 12
    # by hand: a_t = d_t a_(t-1) + (1 - d_t) w_t with d_t = min(0.9, (1 + t) / (10 + t)), a_0 = w_0
    m2 = _model()
    by_hand = [f.astype(np.float64) for f in first]

    class Step(keras.callbacks.Callback):
        t = 0

        def on_train_batch_end(self, batch, logs=None):
            Step.t += 1
            d = min(0.9, (1 + Step.t) / (10 + Step.t))
            for i, v in enumerate(v for v in self.model.weights if "float" in str(v.dtype)):
                by_hand[i] = d * by_hand[i] + (1 - d) * v.numpy()

    m2.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0, callbacks=[Step()])
    for a, b in zip(avg.average, by_hand):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    raw = [v.numpy() for v in m.weights]
    with avg.swapped():
        floats = [v for v in m.weights if "float" in str(v.dtype)]
        for v, a in zip(floats, avg.average):
            np.testing.assert_allclose(v.numpy(), a, rtol=1e-6)
        assert not np.allclose(bn[0].numpy(), raw[[v.path for v in m.weights].index(bn[0].path)])
    for v, r in zip(m.weights, raw):
        np.testing.assert_array_equal(v.numpy(), r)
    with pytest.raises(ValueError, match="momentum"):
        WeightAverage(1.0)


def test_last_epoch_ends_on_the_average(tmp_path):
    m = _model()
    fit_resumable(m, tmp_path / "a", X, Y, 3, average=0.8, batch_size=8, shuffle=False, verbose=0)
    with np.load(tmp_path / "a" / "average.npz", allow_pickle=False) as doc:
        saved = [doc[f"w{i}"] for i in range(int(doc["count"]))]
        assert int(doc["epoch"]) == 3 and int(doc["step"]) == 18
    for v, a in zip([v for v in m.weights if "float" in str(v.dtype)], saved):
        np.testing.assert_allclose(v.numpy(), a, rtol=1e-6)
    plain = _model()
    fit_resumable(plain, tmp_path / "b", X, Y, 3, batch_size=8, shuffle=False, verbose=0)
    assert not (tmp_path / "b" / "average.npz").exists()
    assert any(not np.allclose(a, b) for a, b in zip(m.get_weights(), plain.get_weights()))


def test_a_killed_fit_resumes_with_its_average(tmp_path):
    whole = _model()
    fit_resumable(whole, tmp_path / "whole", X, Y, 4, average=0.8, batch_size=8, shuffle=False, verbose=0)
    part = _model()
    fit_resumable(part, tmp_path / "part", X, Y, 2, average=0.8, batch_size=8, shuffle=False, verbose=0)  # "killed"
    resumed = _model()
    fit_resumable(resumed, tmp_path / "part", X, Y, 4, average=0.8, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # a fit with nothing left to run still ends on the saved average
    again = _model()
    fit_resumable(again, tmp_path / "part", X, Y, 4, average=0.8, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(whole.get_weights(), again.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_ema_outside_zero_one_is_refused(bad):
    with pytest.raises(InputError, match=r"--ema must lie in \[0, 1\)"):
        DistillConfig(ema=bad).check()
