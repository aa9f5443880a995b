"""Output bias correction of int8 exports (kdtool.export.bias): the logic with fakes, then the real export."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.cli import main
from kdtool.data import load_fdata


def _model(last: str = "logits"):
    import keras
    from keras import layers

    inputs = keras.Input((4, 4, 3))
    x = layers.GlobalAveragePooling2D()(inputs)
    x = layers.Dense(5, activation="relu")(x)
    if last == "logits":
        x = layers.Dense(3, name="logits")(x)
    elif last == "softmax":
        x = layers.Dense(3, activation="softmax", name="probs")(x)
    elif last == "no_bias":
        x = layers.Dense(3, use_bias=False, name="nobias")(x)
    else:
        x = layers.Activation("linear", name="act")(layers.Dense(3)(x))
    return keras.Model(inputs, x)


@pytest.mark.parametrize(
    "last,reason",
    [("softmax", "is not linear"), ("no_bias", "has no bias"), ("activation", "is a Activation, not a Dense layer")],
)
def test_only_a_linear_dense_output_with_bias_is_corrected(last, reason):
    from kdtool.export.bias import correct_output_bias, output_dense_layer

    layer, why = output_dense_layer(_model("logits"))
    assert layer.name == "logits" and why is None
    model = _model(last)
    layer, why = output_dense_layer(model)
    assert layer is None and reason in why

    class Calib:
        x = np.zeros((4, 4, 4, 3), np.float32)

    def never(*_):
        raise AssertionError("must not convert or run anything")

    data, record = correct_output_bias(model, b"orig", Calib(), convert=never, keras_logits=never, run_tflite=never)
    assert data == b"orig" and record == {"applied": False, "reason": why}


class _FakeInt8:
    """A stand-in converter: the "tflite" is the output bias it was converted with; running it gives the
    Keras logits with that bias, plus a fixed per-class error, as int8 rounding of the weights would."""

    def __init__(self, model, error):
        self.model, self.error = model, np.asarray(error, np.float32)
        self.layer = model.layers[-1]
        self.original = self.layer.bias.numpy().copy()

    def convert(self):
        return self.layer.bias.numpy().astype(np.float32).tobytes(), {}

    def keras_logits(self, x):
        return np.asarray(self.model(x, training=False))

    def run(self, data, x):
        bias = np.frombuffer(data, np.float32)
        return self.keras_logits(x) - self.original + bias + self.error


def test_the_mean_logit_error_is_removed_from_the_output_bias():
    from kdtool.export.bias import correct_output_bias

    model = _model()
    fake = _FakeInt8(model, error=[0.2, -0.05, -0.15])

    class Calib:
        x = np.random.default_rng(0).random((16, 4, 4, 3), dtype=np.float32)

    data, record = correct_output_bias(model, fake.convert()[0], Calib(), fake.convert, fake.keras_logits, fake.run)
    assert record["applied"] is True and record["layer"] == "logits" and record["images"] == 16
    np.testing.assert_allclose(record["shift"], [-0.2, 0.05, 0.15], atol=1e-5)
    np.testing.assert_allclose(record["mean_error_before"], [0.2, -0.05, -0.15], atol=1e-5)
    np.testing.assert_allclose(record["mean_error_after"], 0, atol=1e-5)
    np.testing.assert_allclose(np.frombuffer(data, np.float32), fake.original + [-0.2, 0.05, 0.15], atol=1e-6)
    np.testing.assert_array_equal(model.layers[-1].bias.numpy(), fake.original)  # the Keras model is unchanged


def test_a_correction_that_does_not_help_is_not_applied():
    from kdtool.export.bias import correct_output_bias

    model = _model()
    fake = _FakeInt8(model, error=[0.0, 0.0, 0.0])

    class Calib:
        x = np.random.default_rng(1).random((8, 4, 4, 3), dtype=np.float32)

    original = fake.convert()[0]
    data, record = correct_output_bias(model, original, Calib(), fake.convert, fake.keras_logits, fake.run)
    assert data == original and record["applied"] is False
    assert "did not reduce" in record["reason"]


def test_the_bias_is_restored_when_the_reconversion_fails():
    from kdtool.errors import RuntimeFailure
    from kdtool.export.bias import correct_output_bias

    model = _model()
    fake = _FakeInt8(model, error=[0.3, 0.0, 0.0])

    def broken():
        raise RuntimeFailure("converter broke")

    class Calib:
        x = np.ones((4, 4, 4, 3), np.float32)

    with pytest.raises(RuntimeFailure):
        correct_output_bias(model, fake.convert()[0], Calib(), broken, fake.keras_logits, fake.run)
    np.testing.assert_array_equal(model.layers[-1].bias.numpy(), fake.original)


@pytest.mark.slow
def test_export_records_the_correction_and_leaves_the_keras_file_alone(tmp_path):
    import keras

    from kdtool.distill.student import build_student
    from kdtool.export.check import run_tflite
    from kdtool.export.convert import representative_dataset

    data = write_fdata(tmp_path / "FData", n=(90, 60, 12), class_names=["akiec", "bcc", "mel"])
    fd = load_fdata(data)
    keras.utils.set_random_seed(0)
    model = build_student(fd.image_shape, fd.num_classes, filters=(8, 16), dense_units=16, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(fd.x("train"), fd.onehot("train"), epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    runner = CliRunner()
    on = runner.invoke(main, ["export", str(path), "--data", str(data), "--out", str(tmp_path / "on")])
    off = runner.invoke(
        main, ["export", str(path), "--data", str(data), "--out", str(tmp_path / "off"), "--no-bias-correction"]
    )
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert "bias_correction" not in json.loads((tmp_path / "off" / "m.int8.json").read_text())["converter"]
    rec = json.loads((tmp_path / "on" / "m.int8.json").read_text())["converter"]["bias_correction"]
    x = representative_dataset(fd, 300).x  # the export's default calibration draw (all 90 train images here)
    assert rec["layer"] == "logits" and rec["images"] == len(x) == 90

    # the recorded errors are what the written files do on the calibration images
    reference = model.predict(x, verbose=0)
    err_off = (run_tflite((tmp_path / "off" / "m.int8.tflite").read_bytes(), x) - reference).mean(0)
    np.testing.assert_allclose(rec["mean_error_before"], err_off, atol=1e-4)
    err_on = (run_tflite((tmp_path / "on" / "m.int8.tflite").read_bytes(), x) - reference).mean(0)
    if rec["applied"]:
        np.testing.assert_allclose(rec["mean_error_after"], err_on, atol=1e-4)
        assert np.abs(err_on).mean() < np.abs(err_off).mean()
    else:
        np.testing.assert_allclose(err_on, err_off, atol=1e-6)
