"""KD loss by hand, the Distiller (frozen teachers, cached == online), the student and teachers."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from kdtool.distill.distiller import Distiller, pack_targets, student_metrics
from kdtool.distill.losses import ensemble_logits, kd_loss, logit_adjusted_crossentropy
from kdtool.distill.student import build_student
from kdtool.distill.teachers import TEACHERS, create_teacher, list_teachers, parse_teachers
from kdtool.errors import InputError, RuntimeFailure
from kdtool.priors import log_prior


def test_kd_loss_by_hand():
    # one sample, two classes; everything below is worked out with math.exp/log only
    y = np.array([[1.0, 0.0]], np.float32)
    s = np.array([[2.0, 0.0]], np.float32)
    t = np.array([[0.0, 4.0]], np.float32)
    T, alpha = 2.0, 0.25
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))  # 0.126928
    pt = [1 / (1 + math.exp(2)), math.exp(2) / (1 + math.exp(2))]  # softmax(t/T) = softmax([0, 2])
    ps = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]  # softmax(s/T) = softmax([1, 0])
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
    expected = alpha * ce + (1 - alpha) * T * T * kl
    got = float(np.asarray(kd_loss(y, t, s, alpha, T))[0])
    assert got == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.25 * 0.126928 + 0.75 * 4 * 0.828725, rel=1e-4)  # written-out numbers
    # alpha = 1 is plain cross-entropy; identical logits give zero KL
    assert float(np.asarray(kd_loss(y, t, s, 1.0, T))[0]) == pytest.approx(ce, rel=1e-5)
    assert float(np.asarray(kd_loss(y, s, s, 0.0, T))[0]) == pytest.approx(0.0, abs=1e-6)


def test_logit_adjustment_by_hand():
    # train split with classes 0, 0, 0, 1 and an empty class 2 (counted as one image)
    prior = log_prior(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(prior, np.log([3 / 5, 1 / 5, 1 / 5]), rtol=1e-6)
    y = np.array([[0.0, 1.0, 0.0]], np.float32)
    s = np.array([[1.0, 1.0, 0.0]], np.float32)
    z = [1.0 + math.log(3 / 5), 1.0 + math.log(1 / 5), math.log(1 / 5)]  # the logits the CE term sees
    expected = -(z[1] - math.log(sum(math.exp(v) for v in z)))
    assert float(np.asarray(logit_adjusted_crossentropy(prior)(y, s))[0]) == pytest.approx(expected, rel=1e-5)
    # in the KD loss the offset moves the hard-label term only: alpha = 1 is the adjusted CE,
    # alpha = 0 ignores it, and a zero offset is the plain loss
    t = np.array([[0.0, 2.0, 1.0]], np.float32)
    assert float(np.asarray(kd_loss(y, t, s, 1.0, 2.0, prior))[0]) == pytest.approx(expected, rel=1e-5)
    assert float(np.asarray(kd_loss(y, t, s, 0.0, 2.0, prior))[0]) == pytest.approx(
        float(np.asarray(kd_loss(y, t, s, 0.0, 2.0))[0]), rel=1e-6
    )
    assert float(np.asarray(kd_loss(y, t, s, 0.5, 2.0, np.zeros(3, np.float32)))[0]) == pytest.approx(
        float(np.asarray(kd_loss(y, t, s, 0.5, 2.0))[0]), rel=1e-6
    )
    # a rare class's (adjusted) loss is larger: the model must push its raw logit further up
    assert expected > -math.log(math.exp(1.0) / (2 * math.exp(1.0) + 1))


def test_distiller_applies_the_logit_offset():
    student = build_student((8, 8, 3), 3, filters=(4,), dense_units=0, dropout=0.0)
    x = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    teacher = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    offset = np.log(np.array([0.7, 0.2, 0.1], np.float32))
    plain, adjusted = Distiller(student, 3, 1.0, 2.0), Distiller(student, 3, 1.0, 2.0, logit_offset=offset)
    logits = student(x)
    expected = np.asarray(logit_adjusted_crossentropy(offset)(y, logits)).mean()
    got = float(adjusted.compute_loss(x, pack_targets(y, teacher), logits))
    assert got == pytest.approx(expected, rel=1e-5)
    assert abs(float(plain.compute_loss(x, pack_targets(y, teacher), logits)) - got) > 1e-3


def test_class_weighted_kd_term_by_hand():
    """--kd-balance weights: each image's KL term times its class's weight; the hard-label term unchanged."""
    y = np.eye(3, dtype=np.float32)[[0, 2]]
    s = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], np.float32)
    t = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 0.0]], np.float32)
    w = np.array([0.5, 1.0, 4.0], np.float32)
    prior = np.log(np.array([0.7, 0.2, 0.1], np.float32))
    ce = np.asarray(kd_loss(y, t, s, 1.0, 2.0, prior))
    kl = np.asarray(kd_loss(y, t, s, 0.0, 2.0, prior))  # (1 - 0) * T^2 * KL, per image
    got = np.asarray(kd_loss(y, t, s, 0.3, 2.0, prior, kd_class_weights=w))
    np.testing.assert_allclose(got, 0.3 * ce + 0.7 * kl * np.array([0.5, 4.0]), rtol=1e-5)
    # hard-label only: the weights change nothing; all-ones weights are the plain loss
    np.testing.assert_allclose(np.asarray(kd_loss(y, t, s, 1.0, 2.0, prior, kd_class_weights=w)), ce, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(kd_loss(y, t, s, 0.3, 2.0, prior, kd_class_weights=np.ones(3))),
        np.asarray(kd_loss(y, t, s, 0.3, 2.0, prior)),
        rtol=1e-6,
    )


def test_distiller_applies_the_kd_class_weights():
    student = build_student((8, 8, 3), 3, filters=(4,), dense_units=0, dropout=0.0)
    x = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    teacher = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    w = np.array([0.5, 1.0, 3.0], np.float32)
    logits = student(x)
    weighted = Distiller(student, 3, 0.4, 2.0, kd_class_weights=w)
    expected = np.asarray(kd_loss(y, teacher, logits, 0.4, 2.0, kd_class_weights=w)).mean()
    assert float(weighted.compute_loss(x, pack_targets(y, teacher), logits)) == pytest.approx(expected, rel=1e-5)
    plain = float(Distiller(student, 3, 0.4, 2.0).compute_loss(x, pack_targets(y, teacher), logits))
    assert abs(plain - expected) > 1e-3


def test_ensemble_logits_average_soft_targets():
    a = np.array([[0.0, 2.0, -1.0]], np.float32)
    b = np.array([[1.0, -1.0, 0.5]], np.float32)
    T = 3.0

    def sm(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    z = np.asarray(ensemble_logits([a, b], T))
    np.testing.assert_allclose(sm(z[0] / T), (sm(a[0] / T) + sm(b[0] / T)) / 2, rtol=1e-5)


def _tiny(seed, k=3):
    keras.utils.set_random_seed(seed)
    return build_student((8, 8, 3), k, filters=(4, 8), dense_units=8, dropout=0.0)


def _batch(k=3, n=16):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, 8, 8, 3)).astype(np.float32), np.eye(k, dtype=np.float32)[np.arange(n) % k]


def test_only_student_weights_change_online():
    x, y = _batch()
    teacher = _tiny(1)
    before = [w.copy() for w in teacher.get_weights()]
    d = Distiller(_tiny(2), 3, alpha=0.5, temperature=2.0, teachers=[teacher])
    d.compile(optimizer=keras.optimizers.SGD(0.5), metrics=student_metrics())
    assert {id(v) for v in d.trainable_variables} == {id(v) for v in d.student.trainable_variables}
    s_before = [w.copy() for w in d.student.get_weights()]
    d.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # teacher untouched (BN statistics included)
    assert any(not np.array_equal(a, b) for a, b in zip(s_before, d.student.get_weights(), strict=True))


def test_cached_and_online_agree_on_first_step():
    x, y = _batch()
    teacher = _tiny(1)
    logits = np.asarray(teacher(x, training=False))
    results = []
    for online in (False, True):
        d = Distiller(_tiny(2), 3, alpha=0.3, temperature=4.0, teachers=[teacher] if online else None)
        d.compile(optimizer=keras.optimizers.SGD(0.1), metrics=student_metrics())
        targets = y if online else pack_targets(y, logits)
        h = d.fit(x, targets, epochs=1, batch_size=16, shuffle=False, verbose=0)
        results.append((h.history["loss"][0], d.student.get_weights()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_distiller_metrics_are_the_students():
    x, y = _batch()
    d = Distiller(_tiny(2), 3, alpha=0.3, temperature=4.0)
    d.compile(optimizer="adam", metrics=student_metrics())
    out = d.evaluate(x, pack_targets(y, np.zeros_like(y)), verbose=0, return_dict=True)
    pred = np.asarray(d.student(x, training=False)).argmax(1)
    assert out["accuracy"] == pytest.approx((pred == y.argmax(1)).mean())
    assert out["ce"] != pytest.approx(out["loss"])


def test_default_student_size():
    model = build_student((32, 32, 3), 7)
    assert 120_000 <= model.count_params() <= 145_000  # "about 140k" in --student-convs' help
    assert [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"] == [24, 24, 40, 40, 80, 80]
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert "BatchNormalization" in layer_types and "Lambda" not in layer_types
    assert all(layer.momentum <= 0.95 for layer in model.layers if type(layer).__name__ == "BatchNormalization")


def test_every_student_of_a_run_starts_from_the_same_weights(tiny_fdata):
    """The baseline and each distilled student start alike (the run's seed), whatever ran before them."""
    from kdtool.data import load_fdata
    from kdtool.distill.config import DistillConfig
    from kdtool.distill.fit import new_student

    fd = load_fdata(tiny_fdata)
    cfg = DistillConfig(seed=3, student_filters=(4,), student_dense=8)
    first = new_student(cfg, fd, "student_alone")
    keras.utils.set_random_seed(99)
    np.random.default_rng(0).random(10)
    _tiny(5)  # another model drew from the global generators in between
    second = new_student(cfg, fd, "student_vgg16")
    other = new_student(DistillConfig(seed=4, student_filters=(4,), student_dense=8), fd, "student_alone")
    assert second.name == "student_vgg16" and len(first.get_weights()) == len(second.get_weights()) > 0
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights(), strict=True))


def test_deeper_student_stacks_convs_per_block_and_the_earlier_one_keeps_its_names():
    deep = build_student((32, 32, 3), 7, filters=(24, 40, 80), convs_per_block=2)
    convs = [layer for layer in deep.layers if type(layer).__name__ == "Conv2D"]
    assert [layer.name for layer in convs] == [f"block{i}_conv{j}" for i in (1, 2, 3) for j in (1, 2)]
    assert [layer.filters for layer in convs] == [24, 24, 40, 40, 80, 80]
    assert sum(type(layer).__name__ == "MaxPooling2D" for layer in deep.layers) == 3
    assert deep.count_params() == build_student((32, 32, 3), 7).count_params()  # the default
    earlier = build_student((32, 32, 3), 7, filters=(32, 64, 128), convs_per_block=1)
    assert 120_000 <= earlier.count_params() <= 140_000
    names = {layer.name for layer in earlier.layers}
    assert {"block1_conv", "block1_bn", "block3_relu", "logits"} <= names  # convs_per_block=1: as before
    with pytest.raises(ValueError, match="convs_per_block"):
        build_student((8, 8, 3), 3, filters=(4,), convs_per_block=0)


# the default teacher in the quick suite; building the ImageNet-sized others takes 5-25 s each on 2 cores
@pytest.mark.parametrize(
    "name", [n if n == "efficientnet_lite0" else pytest.param(n, marks=pytest.mark.slow) for n in TEACHERS]
)
def test_every_teacher_builds_at_its_minimum(name):
    spec = TEACHERS[name]
    model, info = create_teacher(name, num_classes=4, input_shape=(16, 16, 3), image_size=8, weights="none")
    assert {k: info[k] for k in ("weights", "image_size", "warning")} == {
        "weights": "none",
        "image_size": spec.min_size,
        "warning": None,
    }
    assert model.get_layer(info["backbone"]).count_params() > 0.9 * model.count_params()  # what a head phase freezes
    out = model(np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype("float32"), training=False)
    assert tuple(out.shape) == (2, 4)
    assert model.layers[-1].activation.__name__ == "linear"  # logits, not probabilities


def test_registry_errors_name_the_choices():
    with pytest.raises(InputError, match="choose from: densenet121, efficientnet_lite0"):
        parse_teachers("vgg16,alexnet")
    assert parse_teachers("all") == list(TEACHERS)
    assert parse_teachers("VGG16, vgg16") == ["vgg16"]
    assert list_teachers("vgg*") == ["vgg16", "vgg19"]
    with pytest.raises(InputError, match="--weights"):
        create_teacher("vgg16", 3, weights="random")


def test_imagenet_unavailable(monkeypatch):
    real = TEACHERS["vgg16"].build

    def offline(input_shape, weights):
        if weights == "imagenet":
            raise OSError("URL fetch failure: no network")
        return real(input_shape, weights)

    monkeypatch.setitem(TEACHERS, "vgg16", TEACHERS["vgg16"].__class__(offline, "caffe", 32))
    with pytest.raises(RuntimeFailure, match="vgg16: ImageNet weights unavailable"):
        create_teacher("vgg16", 3, weights="imagenet")
    _, info = create_teacher("vgg16", 3, weights="auto")
    assert info["weights"] == "none" and "training from random init" in info["warning"]


def _lr_now(opt) -> float:
    lr = opt.learning_rate
    return float(lr(opt.iterations) if callable(lr) else lr)


@pytest.mark.slow
def test_cosine_schedule_decays_to_zero_and_resumes(tmp_path):
    from kdtool.distill.checkpoint import fit_resumable
    from kdtool.distill.fit import make_optimizer

    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]

    def model(schedule):
        keras.utils.set_random_seed(0)
        m = build_student((8, 8, 3), 3, filters=(4,), dense_units=0, dropout=0.0)
        m.compile(
            optimizer=make_optimizer(1e-2, schedule, epochs=3, steps_per_epoch=4),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        )
        return m

    assert _lr_now(model("constant").optimizer) == pytest.approx(1e-2)
    m = model("cosine")
    assert _lr_now(m.optimizer) == pytest.approx(1e-2)
    fit_resumable(m, tmp_path / "a", x, y, 2, batch_size=8, verbose=0)  # "killed" after epoch 2 of 3
    mid = _lr_now(m.optimizer)
    assert 0 < mid < 1e-2
    resumed = model("cosine")
    resumed(x[:1])
    fit_resumable(resumed, tmp_path / "a", x, y, 3, batch_size=8, verbose=0)
    assert int(resumed.optimizer.iterations) == 12  # the schedule went on from step 8, not from 0
    assert _lr_now(resumed.optimizer) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="constant, cosine"):
        make_optimizer(1e-3, "step")
