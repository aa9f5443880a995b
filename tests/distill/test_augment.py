"""Augmentation, cached views, class balancing and best-epoch selection."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from kdtool.distill.augment import TrainBatches, augment, make_views
from kdtool.distill.balance import balanced_sampling_probs, class_weights


def test_augment_preserves_range_and_content():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    out = augment(x, np.random.default_rng(1), shift=0, jitter=0.0)
    assert out.shape == x.shape and out.dtype == np.float32
    # flips and 90-degree rotations only permute pixels
    np.testing.assert_allclose(np.sort(out.reshape(16, -1), axis=1), np.sort(x.reshape(16, -1), axis=1))
    jittered = augment(x, np.random.default_rng(1))
    assert 0.0 <= jittered.min() and jittered.max() <= 1.0


def test_views_are_seeded_and_view0_is_the_image():
    x = np.random.default_rng(0).uniform(0, 1, (10, 8, 8, 3)).astype(np.float32)
    a, b = make_views(x, 3, seed=5), make_views(x, 3, seed=5)
    assert a.shape == (3, 10, 8, 8, 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], x)
    assert not np.array_equal(a[1], x)


def test_batches_serve_one_view_per_image_with_its_targets():
    k, n = 3, 20
    views = np.zeros((k, n, 2, 2, 3), np.float32)
    targets = np.zeros((k, n, 1), np.float32)
    for v in range(k):
        for i in range(n):
            views[v, i] = v * 100 + i
            targets[v, i] = v * 100 + i
    batches = TrainBatches(views, targets, batch_size=8, seed=0)
    seen = []
    for i in range(len(batches)):
        xb, yb = batches[i]
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb[:, 0])  # the view's own targets
        seen.extend((yb[:, 0] % 100).astype(int).tolist())
    assert sorted(seen) == list(range(n))  # every image once per epoch


def test_class_weights_and_sampling():
    labels = np.array([0] * 8 + [1] * 2)
    w = class_weights(labels, 3)
    assert w.tolist() == pytest.approx([10 / (2 * 8), 10 / (2 * 2), 0.0])
    assert w[labels].mean() == pytest.approx(1.0)
    p = balanced_sampling_probs(labels, 3)
    assert p[labels == 0].sum() == pytest.approx(0.5) and p[labels == 1].sum() == pytest.approx(0.5)
    xb, yb, sw = TrainBatches(
        np.zeros((10, 2, 2, 3), np.float32), np.eye(2, dtype=np.float32)[labels], 4, sample_weight=w[labels], seed=0
    )[0]
    assert sw.shape == (4,)


def test_best_epoch_is_restored(tmp_path):
    import keras

    from kdtool.distill.checkpoint import fit_resumable
    from kdtool.distill.student import build_student

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (32, 8, 8, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(32) % 2]
    keras.utils.set_random_seed(0)
    model = build_student((8, 8, 3), 2, filters=(4,), dense_units=4, dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    history, best = fit_resumable(model, tmp_path / "b", x, y, 4, select=(x, y.argmax(1)), batch_size=8, verbose=0)
    scores = history["val_balanced_accuracy"]
    assert len(scores) == 4 and best == int(np.argmax(scores)) + 1
    preds = np.asarray(model(x, training=False)).argmax(1)
    from kdtool.metrics import classification_report

    assert classification_report(y.argmax(1), preds, ["a", "b"])["balanced_accuracy"] == pytest.approx(max(scores))


def test_balancing_sets_one_thing_per_mode():
    from kdtool.distill.balance import BALANCE_MODES, balancing, log_prior

    labels = np.array([0, 0, 0, 1, 2, 2])
    fields = {m: balancing(m, labels, 3) for m in BALANCE_MODES}
    assert all(b.mode == m for m, b in fields.items())
    assert fields["none"].sample_weight is None and fields["none"].sampling_probs is None
    assert fields["none"].logit_offset is None
    np.testing.assert_allclose(fields["weights"].sample_weight, class_weights(labels, 3)[labels])
    assert fields["weights"].sampling_probs is None and fields["weights"].logit_offset is None
    np.testing.assert_allclose(fields["sampling"].sampling_probs, balanced_sampling_probs(labels, 3))
    assert fields["sampling"].sample_weight is None and fields["sampling"].logit_offset is None
    np.testing.assert_allclose(fields["logit-adjust"].logit_offset, log_prior(labels, 3))
    assert fields["logit-adjust"].sample_weight is None and fields["logit-adjust"].sampling_probs is None
    with pytest.raises(ValueError, match="none, weights, sampling, logit-adjust"):
        balancing("focal", labels, 3)
