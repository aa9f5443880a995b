"""kdtool distill --calibration-folds: out-of-fold logits by lesion, and kdtool export fitting on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY, register_tinynet, write_fdata

from kdtool.cli import main
from kdtool.data import load_fdata, safe_load_npy
from kdtool.export.objectives import fit_operating_point
from kdtool.priors import log_prior

pytest.importorskip("tensorflow")

#: export options that fit an operating point on the out-of-fold logits, and on nothing else
_FIT_OOF = ("--fit-on", "oof", "--operating-point", "balanced")


def _with_lesions(folder):
    """Pair the train images of each class into two-image lesions (image_ids.csv, as the shared data ship it).

    Validation and test images are one lesion each: the file covers every split, as export reads validation's.
    """
    fd = load_fdata(folder)
    labels = fd.labels("train")
    lesion = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        for j, i in enumerate(idx):
            lesion[i] = f"HAM_{c}_{j // 2}"
    rows = ["split,position,image_id,lesion_id,dx"] + [f"train,{i},ISIC_{i},{les},x" for i, les in enumerate(lesion)]
    for split, tag in (("val", "V"), ("test", "T")):
        rows += [f"{split},{i},ISIC_{tag}{i},{tag}{i},x" for i in range(len(fd.labels(split)))]
    (folder / "image_ids.csv").write_text("\n".join(rows) + "\n")
    return lesion.astype(str)


@pytest.fixture(scope="module")
def tinynet_teacher():
    """The stand-in teacher, registered for the whole module (its runs are re-run by later tests)."""
    with pytest.MonkeyPatch.context() as mp:
        register_tinynet(mp)
        yield ["--teachers", "tinynet"]


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, tinynet_teacher):
    tmp = tmp_path_factory.mktemp("calibration")
    data = write_fdata(tmp / "FData", n=(60, 30, 15), class_names=["nv", "mel", "bcc"])
    lesions = _with_lesions(data)
    out = tmp / "run"
    args = ["distill", "--data", str(data), "--out", str(out), "--calibration-folds", "2", *TINY, *tinynet_teacher]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return data, out, args, lesions, result.output


@pytest.mark.slow  # the calibrated_run fixture trains 9 models
def test_every_student_gets_out_of_fold_logits_from_models_that_never_saw_the_lesion(calibrated_run):
    import keras

    import kdtool.layers  # noqa: F401 - registers the teachers' preprocessing layer

    data, out, _, lesions, output = calibrated_run
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "FINISHED" and doc["config"]["calibration_folds"] == 2
    assert "[10/10] calibration: out-of-fold logits of 2 student(s)" in output
    assert "calibration fold 2/2" in output
    home = out / "calibration" / "k2"
    folds = safe_load_npy(home / "folds.npy")
    for les in set(lesions):
        assert len(set(folds[lesions == les].tolist())) == 1
    fd = load_fdata(data)
    students = [m for m in doc["models"] if m["role"] != "teacher"]
    assert {m["name"] for m in students} == {"student_alone", "student_tinynet"}
    assert all("calibration" not in m for m in doc["models"] if m["role"] == "teacher")
    for rec in students:
        cal = rec["calibration"]
        assert (cal["folds"], cal["grouped_by"], len(cal["fold_best_epochs"])) == (2, "lesion_id", 2)
        oof = safe_load_npy(out / cal["file"])
        assert oof.shape == (60, 3) and oof.dtype == np.float32 and np.isfinite(oof).all()
        for f in range(2):
            fold = load_fdata(home / f"fold{f}" / "data")
            np.testing.assert_array_equal(fold.raw_x("test"), fd.raw_x("train")[folds == f])
            np.testing.assert_array_equal(fold.raw_x("train"), fd.raw_x("train")[folds != f])
            model = keras.saving.load_model(home / f"fold{f}" / f"{rec['name']}.keras", safe_mode=True)
            np.testing.assert_allclose(oof[folds == f], model(fold.x("test"), training=False), atol=1e-5)


@pytest.mark.slow  # the calibrated_run fixture trains 9 models
def test_rerunning_trains_nothing_and_keeps_the_logits(calibrated_run):
    _, out, args, _, _ = calibrated_run

    def cal():
        return {
            m["name"]: m["calibration"]["sha256"]
            for m in json.loads((out / "run.json").read_text())["models"]
            if "calibration" in m
        }

    before = cal()
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("already done, skipped") == 9  # 3 models here, 3 in each fold
    assert cal() == before


@pytest.mark.slow  # the calibrated_run fixture trains 9 models
def test_export_fits_the_operating_point_on_the_out_of_fold_logits(calibrated_run, tmp_path):
    import keras

    import kdtool.layers  # noqa: F401 - registers the preprocessing layer, should a model hold one
    from kdtool.export.check import run_tflite

    data, out, _, _, _ = calibrated_run
    fd = load_fdata(data)
    y_train = fd.labels("train")
    runner = CliRunner()
    common = ["--quantize", "float32", "--operating-point", "balanced", "--min-recall", "mel=0.75", "--confidence", "0"]
    result = runner.invoke(main, ["export", str(out), "--out", str(tmp_path / "oof"), *common])  # auto: oof here
    assert result.exit_code == 0, result.output
    assert "fitted on out-of-fold train logits, 60 images" in result.output
    doc = json.loads((out / "run.json").read_text())
    students = [m for m in doc["models"] if "calibration" in m]
    assert len(students) == 2
    for rec in students:
        point = json.loads((tmp_path / "oof" / f"{rec['name']}.float32.json").read_text())["operating_point"]
        assert (point["fitted_on"], point["fit_images"], point["min_recall"][0]["images"]) == ("oof", 60, 20)
        oof = safe_load_npy(out / rec["calibration"]["file"]).astype(np.float64)
        expected = fit_operating_point(
            oof, y_train, ["nv", "mel", "bcc"], "balanced", log_prior(y_train, 3), [(1, 0.75)], 0.0, fitted_on="oof"
        )
        assert point["tau"] == expected["tau"]
        assert point["bias"] == pytest.approx(expected["bias"], abs=1e-5)
        assert point["min_recall"][0]["offset"] == pytest.approx(expected["min_recall"][0]["offset"], abs=1e-5)
        assert point["min_recall"][0]["detected"] == expected["min_recall"][0]["detected"]
        assert point["min_recall"][0]["reached"]
        # the .tflite file decides with that bias: its logits are the .keras model's plus the OOF-fitted bias
        model = keras.saving.load_model(out / rec["file"], safe_mode=True)
        want = np.asarray(model(fd.x("val"), training=False)) + np.asarray(point["bias"])
        got = run_tflite((tmp_path / "oof" / f"{rec['name']}.float32.tflite").read_bytes(), fd.x("val"))
        np.testing.assert_allclose(got, want, atol=1e-4)
    result = runner.invoke(main, ["export", str(out), "--out", str(tmp_path / "val"), "--fit-on", "val", *common])
    assert result.exit_code == 0, result.output
    point = json.loads((tmp_path / "val" / "student_alone.float32.json").read_text())["operating_point"]
    assert (point["fitted_on"], point["fit_images"], point["min_recall"][0]["images"]) == ("val", 30, 10)


@pytest.mark.slow  # the calibrated_run fixture trains 9 models
def test_export_refuses_missing_or_changed_out_of_fold_logits_in_one_line(calibrated_run, tmp_path):
    import shutil

    _, out, _, _, _ = calibrated_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    runner = CliRunner()

    def refused(target, *args):
        result = runner.invoke(
            main,
            ["export", str(target), "--quantize", "float32", "--out", str(tmp_path / "o"), *_FIT_OOF, *args],
        )
        lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        return lines[0]

    oof = run / "calibration" / "k2" / "student_alone.oof_logits.npy"
    np.save(oof, np.zeros((5, 3), np.float32))
    line = refused(run)
    assert "SHA-256 differs from run.json's record" in line and str(oof) in line
    oof.unlink()
    assert "listed in run.json (student_alone) but the file is missing" in refused(run)
    doc = json.loads((run / "run.json").read_text())
    doc["models"][0]["calibration"]["file"] = "../../elsewhere.npy"
    (run / "run.json").write_text(json.dumps(doc))
    assert "calibration file '../../elsewhere.npy' must lie inside the run folder" in refused(run)


def test_fit_on_oof_needs_a_calibrated_run_and_folds_need_two(tmp_path):
    import keras

    from kdtool.distill.student import build_student

    data = write_fdata(tmp_path / "FData", n=(60, 30, 15), class_names=["nv", "mel", "bcc"])
    keras.utils.set_random_seed(0)
    path = tmp_path / "m.keras"
    build_student((8, 8, 3), 3, filters=(8,), dense_units=8, dropout=0.0).save(path)
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(path), "--data", str(data), "--quantize", "float32", *_FIT_OOF])
    assert result.exit_code == 2 and "--fit-on oof needs the model's out-of-fold logits" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    result = runner.invoke(main, ["distill", "--data", str(data), "--calibration-folds", "1", *TINY])
    assert result.exit_code == 2 and "--calibration-folds must be 0 (off) or >= 2" in result.output
    (data / "image_ids.csv").write_text("split,position,lesion_id\ntrain,0,A\n")  # 1 of 60 train images
    out = tmp_path / "run"
    result = runner.invoke(main, ["distill", "--data", str(data), "--out", str(out), "--calibration-folds", "2", *TINY])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "image_ids.csv: its 'train' rows do not cover positions 0..59" in result.output
    assert not out.exists()  # refused before any training
