"""kdtool export's operating point end to end: objectives, fit-on, temperature, the sidecar, removed options."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.cli import main
from kdtool.data import load_fdata
from kdtool.export.cli import REMOVED
from kdtool.export.objectives import fit_operating_point, fit_tau
from kdtool.priors import log_prior
from kdtool.reliability import fit_temperature, softmax

NAMES = ["nv", "mel", "bcc"]


def _lines(result) -> list[str]:
    return [ln for ln in result.output.strip().splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained tiny student and FData whose train split is two-thirds nv (so the prior matters)."""
    import keras

    from kdtool.distill.student import build_student

    root = tmp_path_factory.mktemp("point")
    data = write_fdata(root / "FData", n=(60, 30, 12), class_names=NAMES)
    y = np.load(data / "y_train.npy")
    y[::3] = np.eye(3, dtype=y.dtype)[0]
    np.save(data / "y_train.npy", y)
    fd = load_fdata(data)
    keras.utils.set_random_seed(7)
    model = build_student(fd.image_shape, fd.num_classes, filters=(8,), dense_units=8, dropout=0.0)
    path = root / "m.keras"
    model.save(path)
    return {
        "root": root,
        "data": data,
        "fd": fd,
        "model": model,
        "path": path,
        "z_val": model.predict(fd.x("val"), verbose=0),
    }


def _export(target, data, out, *args):
    result = CliRunner().invoke(
        main, ["export", str(target), "--data", str(data), "--out", str(out), "--quantize", "float32", *args]
    )
    return result


def _sidecar(out, name="m"):
    return json.loads((out / f"{name}.float32.json").read_text())


@pytest.mark.parametrize("option", sorted(REMOVED))
def test_removed_options_stop_with_one_line_saying_what_replaced_them(tmp_path, option):
    result = CliRunner().invoke(main, ["export", str(tmp_path / "m.keras"), option, "0.5"])
    assert result.exit_code == 2 and _lines(result) == [f"Error: {REMOVED[option]}"], result.output
    assert "Traceback" not in result.output


def test_removed_options_name_their_replacements():
    assert "--min-recall mel=TARGET" in REMOVED["--melanoma-sensitivity"]
    assert "--operating-point" in REMOVED["--prior-shift"] and "--operating-point" in REMOVED["--majority-offset"]
    assert "--confidence" in REMOVED["--sensitivity-confidence"] and "--fit-on" in REMOVED["--floor-on"]


def test_by_default_the_model_is_exported_as_trained_and_the_check_has_intervals(tiny, tmp_path):
    from kdtool.export.check import run_tflite

    fd = tiny["fd"]
    digest = hashlib.sha256(tiny["path"].read_bytes()).hexdigest()
    # lesions of two validation images each: the check resamples lesions
    rows = ["split,position,lesion_id"] + [f"val,{i},L{i // 2}" for i in range(30)]
    (tiny["data"] / "image_ids.csv").write_text("\n".join(rows) + "\n")
    try:
        result = _export(tiny["path"], tiny["data"], tmp_path / "o")
    finally:
        (tiny["data"] / "image_ids.csv").unlink()
    assert result.exit_code == 0, result.output
    assert "operating point: as trained (no bias)" in result.output
    assert hashlib.sha256(tiny["path"].read_bytes()).hexdigest() == digest
    side = _sidecar(tmp_path / "o")
    assert side["operating_point"] == fit_operating_point(None, None, NAMES)
    got = run_tflite((tmp_path / "o" / "m.float32.tflite").read_bytes(), fd.x("val"))
    np.testing.assert_allclose(got, tiny["z_val"], atol=1e-4)
    check = side["check"]
    assert check["bootstrap"] == {"n": 1000, "seed": 0, "groups": "lesion_id", "n_groups": 15}
    assert check["gate"].startswith("accuracy_drop (point estimate)")
    lo, hi = check["ci95"]["tflite_accuracy"]
    assert lo <= check["tflite"]["accuracy"] <= hi and hi - lo > 0
    assert check["ci95"]["accuracy_drop"] == [0.0, 0.0]  # float32 matches Keras exactly here
    assert "95% intervals (val)" in result.output and "resamples of the 15 val lesions" in result.output


@pytest.mark.parametrize("objective", ["balanced", "accuracy"])
def test_objectives_fit_tau_on_validation_and_the_file_carries_the_bias(tiny, tmp_path, objective):
    from kdtool.export.check import run_tflite

    fd = tiny["fd"]
    result = _export(tiny["path"], tiny["data"], tmp_path / "o", "--operating-point", objective)
    assert result.exit_code == 0, result.output
    point = _sidecar(tmp_path / "o")["operating_point"]
    lp = log_prior(fd.labels("train"), 3)
    tau = fit_tau(tiny["z_val"], fd.labels("val"), lp, objective)[0]
    assert (point["objective"], point["fitted_on"], point["fit_images"], point["tau"]) == (objective, "val", 30, tau)
    np.testing.assert_allclose(point["bias"], tau * lp, atol=1e-6)
    assert point["temperature"] is None and point["min_recall"] == []
    assert point["summary"] == f"{objective} (tau {tau:+.2f}, fitted on val, 30 images)"
    assert f"operating point: {point['summary']}" in result.output
    got = run_tflite((tmp_path / "o" / "m.float32.tflite").read_bytes(), fd.x("val"))
    np.testing.assert_allclose(got, tiny["z_val"] + np.asarray(point["bias"]), atol=1e-4)


def test_temperature_is_folded_into_the_file_and_changes_probabilities_not_decisions(tiny, tmp_path):
    from kdtool.export.check import run_tflite

    fd = tiny["fd"]
    args = ("--operating-point", "accuracy", "--min-recall", "mel=0.5", "--confidence", "0", "--temperature")
    result = _export(tiny["path"], tiny["data"], tmp_path / "o", *args)
    assert result.exit_code == 0, result.output
    point = _sidecar(tmp_path / "o")["operating_point"]
    y = fd.labels("val")
    plain = fit_operating_point(
        tiny["z_val"], y, NAMES, "accuracy", log_prior(fd.labels("train"), 3), [(1, 0.5)], 0.0, fitted_on="val"
    )
    shifted = tiny["z_val"] + np.asarray(point["bias"])
    assert point["bias"] == pytest.approx(plain["bias"]) and point["tau"] == plain["tau"]
    assert point["temperature"] == fit_temperature(shifted, y) and point["temperature"] != 1.0
    assert point["summary"] == plain["summary"] + f"; temperature {point['temperature']:.3g}"
    got = run_tflite((tmp_path / "o" / "m.float32.tflite").read_bytes(), fd.x("val"))
    np.testing.assert_allclose(got, shifted / point["temperature"], atol=1e-4)
    np.testing.assert_array_equal(got.argmax(1), shifted.argmax(1))  # the temperature decides nothing
    assert not np.allclose(softmax(got), softmax(shifted), atol=1e-3)  # but the probabilities move


def test_a_fitted_point_needs_a_logits_layer(tmp_path):
    import keras

    data = write_fdata(tmp_path / "FData", n=(12, 6, 6), k=3, size=4)
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.GlobalAveragePooling2D()(inputs))
    path = tmp_path / "probs.keras"
    keras.Model(inputs, outputs).save(path)
    result = _export(path, data, tmp_path / "o", "--operating-point", "accuracy", "--temperature")
    assert result.exit_code == 2 and len(_lines(result)) == 1, result.output
    line = _lines(result)[0]
    assert "probs.keras: --operating-point accuracy and --temperature needs a linear Dense output layer" in line
    assert _export(path, data, tmp_path / "o").exit_code == 0  # as trained: nothing to fold


# ----------------------------------------------------------------------------- fit on out-of-fold logits


def _run_with_oof(tiny, tmp_path, oof):
    """A run folder holding the tiny model with out-of-fold train logits, as kdtool distill records them."""
    run = tmp_path / "run"
    (run / "calibration" / "k2").mkdir(parents=True)
    tiny["model"].save(run / "student_alone.keras")
    np.save(run / "calibration" / "k2" / "student_alone.oof_logits.npy", oof.astype(np.float32))
    fd = tiny["fd"]
    sha = hashlib.sha256
    rec = {
        "name": "student_alone",
        "role": "baseline",
        "teacher": None,
        "file": "student_alone.keras",
        "sha256": sha((run / "student_alone.keras").read_bytes()).hexdigest(),
        "calibration": {
            "file": "calibration/k2/student_alone.oof_logits.npy",
            "sha256": sha((run / "calibration" / "k2" / "student_alone.oof_logits.npy").read_bytes()).hexdigest(),
            "folds": 2,
            "grouped_by": "lesion_id",
        },
    }
    data = {"path": str(tiny["data"]), "fingerprint": fd.fingerprint(), "class_names": NAMES}
    (run / "run.json").write_text(json.dumps({"status": "FINISHED", "config": {}, "models": [rec], "data": data}))
    return run


def _oof(fd, seed=0):
    rng = np.random.default_rng(seed)
    y = fd.labels("train")
    z = rng.normal(size=(len(y), 3))
    z[np.arange(len(y)), y] += 0.6
    return z.astype(np.float32).astype(np.float64)


def test_auto_fits_on_the_out_of_fold_logits_when_the_run_has_them(tiny, tmp_path):
    fd = tiny["fd"]
    oof = _oof(fd)
    run = _run_with_oof(tiny, tmp_path, oof)
    args = ("--operating-point", "balanced", "--min-recall", "mel=0.8", "--confidence", "0")
    result = _export(run, tiny["data"], tmp_path / "auto", *args)
    assert result.exit_code == 0, result.output
    point = _sidecar(tmp_path / "auto", "student_alone")["operating_point"]
    lp = log_prior(fd.labels("train"), 3)
    expected = fit_operating_point(oof, fd.labels("train"), NAMES, "balanced", lp, [(1, 0.8)], 0.0, fitted_on="oof")
    assert point == json.loads(json.dumps(expected))
    assert (point["fitted_on"], point["fit_images"], point["min_recall"][0]["images"]) == ("oof", 60, 15)
    assert "fitted on out-of-fold train logits, 60 images" in result.output
    # --fit-on val fits the same run on validation instead
    result = _export(run, tiny["data"], tmp_path / "val", *args, "--fit-on", "val")
    assert result.exit_code == 0, result.output
    point = _sidecar(tmp_path / "val", "student_alone")["operating_point"]
    assert (point["fitted_on"], point["fit_images"]) == ("val", 30)


def test_out_of_fold_logits_that_cannot_be_used_are_one_line(tiny, tmp_path):
    fd = tiny["fd"]
    run = _run_with_oof(tiny, tmp_path, _oof(fd))
    oof = run / "calibration" / "k2" / "student_alone.oof_logits.npy"

    def refused(target, *args):
        result = _export(target, tiny["data"], tmp_path / "o", "--operating-point", "balanced", *args)
        assert result.exit_code == 2 and len(_lines(result)) == 1, result.output
        assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.tflite"))
        return _lines(result)[0]

    assert "--fit-on oof needs the model's out-of-fold logits" in refused(tiny["path"], "--fit-on", "oof")
    np.save(oof, np.zeros((5, 3), np.float32))
    line = refused(run)
    assert "SHA-256 differs from run.json's record" in line and str(oof) in line
    doc = json.loads((run / "run.json").read_text())
    doc["models"][0]["calibration"]["sha256"] = hashlib.sha256(oof.read_bytes()).hexdigest()
    (run / "run.json").write_text(json.dumps(doc))
    assert "expected finite float logits of shape (60, 3)" in refused(run, "--fit-on", "oof")
    oof.unlink()
    assert "listed in run.json (student_alone) but the file is missing" in refused(run)
    # nothing to fit: the logits are not read at all
    assert _export(run, tiny["data"], tmp_path / "plain").exit_code == 0


def test_a_refused_operating_point_leaves_no_output_folder(tiny, tmp_path):
    out = tmp_path / "never"
    result = _export(tiny["path"], tiny["data"], out, "--min-recall", "df=0.5")
    assert result.exit_code == 2 and len(_lines(result)) == 1, result.output
    assert "df" in result.output and not out.exists()
