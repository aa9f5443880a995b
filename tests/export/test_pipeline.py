"""kdtool export: modes, int8 I/O, calibration on train only, quality gate, safe loading, atomic writes."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.cli import main
from kdtool.data import FData, load_fdata, stratified_indices

MODES = ("float32", "float16", "dynamic", "int8", "int8-floatends")


def _train_tiny(fd: FData, filters=(8, 16), dense=16, epochs=3, seed=0):
    import keras

    from kdtool.distill.student import build_student

    keras.utils.set_random_seed(seed)
    model = build_student(fd.image_shape, fd.num_classes, filters=filters, dense_units=dense, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(fd.x("train"), fd.onehot("train"), epochs=epochs, batch_size=8, verbose=0)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A trained tiny student (8x8, 3 classes) saved as .keras, its FData, and a fake run folder."""
    import hashlib

    def save(m, path):
        m.save(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    root = tmp_path_factory.mktemp("export")
    data = write_fdata(root / "FData", n=(90, 60, 12), class_names=["akiec", "bcc", "mel"])
    fd = load_fdata(data)
    model = _train_tiny(fd)
    acc = float((model.predict(fd.x("val"), verbose=0).argmax(1) == fd.labels("val")).mean())
    assert acc > 0.9, f"the tiny model did not learn (val accuracy {acc})"
    keras_file = root / "tiny.keras"
    save(model, keras_file)
    teacher = _train_tiny(fd, filters=(16, 32), dense=32, epochs=1, seed=1)

    run = root / "run"
    run.mkdir()
    records = []
    for name, role, t, m in (
        ("student_alone", "baseline", None, model),
        ("teacher_tiny", "teacher", None, teacher),
        ("student_tiny", "student", "teacher_tiny", model),
    ):
        path = run / f"{name}.keras"
        digest = save(m, path)
        records.append(
            {
                "name": name,
                "role": role,
                "teacher": t,
                "file": path.name,
                "sha256": digest,
                "params": int(m.count_params()),
            }
        )
    doc = {
        "status": "FINISHED",
        "config": {},
        "models": records,
        "data": {
            "path": str(data),
            "fingerprint": fd.fingerprint(),
            "class_names": fd.class_names,
            "image_shape": list(fd.image_shape),
        },
    }
    (run / "run.json").write_text(json.dumps(doc))
    return {"root": root, "data": data, "fd": fd, "model": model, "keras": keras_file, "run": run}


def _invoke(*args):
    return CliRunner().invoke(main, ["export", *[str(a) for a in args]])


def _one_line_error(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


# ----------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_converts_and_runs_in_litert(tiny, mode, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from kdtool.export.check import run_tflite
    from kdtool.export.convert import convert_model, representative_dataset, write_export

    fd = tiny["fd"]
    rep = representative_dataset(fd, 30) if mode.startswith("int8") else None
    data, record = convert_model(tiny["model"], mode, representative=rep)
    assert data[4:8] == b"TFL3"
    tflite, _ = write_export(tmp_path, "tiny", mode, data, {"mode": mode})
    interp = Interpreter(model_path=str(tflite))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert np.dtype(inp["dtype"]).name == ("int8" if mode == "int8" else "float32")
    assert list(out["shape"]) == [1, 3]
    logits = run_tflite(data, fd.x("val"))
    keras_pred = tiny["model"].predict(fd.x("val"), verbose=0).argmax(1)
    assert logits.shape == (60, 3)
    assert (logits.argmax(1) == keras_pred).mean() >= 0.95
    assert (
        record["recipe"]
        == {
            "float32": "wfp32_afp32",
            "float16": "wfp16_afp32",
            "dynamic": "dynamic_wi8_afp32",
            "int8": "static_wi8_ai8",
            "int8-floatends": "static_wi8_ai8_floatends",
        }[mode]
    )
    if mode == "int8":
        assert record["supported_ops"] == ["TFLITE_BUILTINS_INT8"]


@pytest.mark.slow
def test_floatends_keeps_only_the_first_and_last_layers_in_float(tiny):
    from ai_edge_litert.interpreter import Interpreter

    from kdtool.export.convert import convert_model, representative_dataset

    rep = representative_dataset(tiny["fd"], 30)
    data, record = convert_model(tiny["model"], "int8-floatends", representative=rep)
    first, last = record["float_nodes"]
    assert "block1_conv" in first
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    kinds = []
    for op in interp._get_ops_details():
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            kinds.append((op["op_name"], np.dtype(interp._get_tensor_details(op["inputs"][1], 0)["dtype"]).name))
    assert kinds[0] == ("CONV_2D", "float32")  # the stem's weights stay float
    assert kinds[-1] == ("FULLY_CONNECTED", "float32")  # so do the logits'
    assert kinds[1:-1] and all(dtype == "int8" for _, dtype in kinds[1:-1])  # every conv/dense between is int8
    assert len(data) < len(convert_model(tiny["model"], "float16")[0])  # still far below a float model


def test_quant_modes_registry():
    from kdtool.export.modes import QUANT_MODES, parse_modes

    assert set(QUANT_MODES) == set(MODES)
    assert parse_modes("all") == list(MODES)
    assert parse_modes("int8,float32") == ["float32", "int8"]
    with pytest.raises(ValueError, match="bogus"):
        parse_modes("bogus")


def test_every_option_has_one_short_sentence_of_help_and_its_default_from_export_options():
    import click

    from kdtool.export.cli import REMOVED, export_command
    from kdtool.export.options import DEFAULTS

    options = {p.name: p for p in export_command.params if isinstance(p, click.Option) and p.name != "help"}
    hidden = {n for n, p in options.items() if p.hidden}
    assert {options[n].opts[0] for n in hidden} == set(REMOVED)  # only the removed options are hidden
    for name, opt in options.items():
        if name in hidden:
            continue
        text = opt.help or ""
        assert 0 < len(text) <= 200 and text.endswith("."), (name, text)
        assert ". " not in text and "benchmarks/" not in text and "README" not in text, (name, text)
        assert "%" not in text, (name, text)  # no measurements
    own = {"quantize": ",".join(DEFAULTS.modes), "io_type": DEFAULTS.io, "min_recall": tuple(DEFAULTS.min_recall)}
    for name, opt in options.items():
        if name in hidden:
            continue
        want = own.get(name, getattr(DEFAULTS, name, None))
        assert opt.default == want, (name, opt.default, want)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("fit_on", "both", "--fit-on: 'both' is not one of auto, val, oof"),
        ("operating_point", "auto", "--operating-point: 'auto' is not one of as-trained, balanced, accuracy"),
        ("confidence", 1.0, "--confidence: 1.0 is not a number in [0, 1)"),
        ("min_recall", ["mel"], "--min-recall 'mel': expected CLASS=TARGET"),
        ("io", "int4", "--io: 'int4' is not one of"),
        ("modes", ["int4"], "--quantize: unknown mode(s) int4"),
    ],
)
def test_export_options_refuse_what_the_command_would_in_one_line(field, value, message):
    from kdtool.errors import InputError
    from kdtool.export.options import ExportOptions

    with pytest.raises(InputError) as info:
        ExportOptions(**{field: value})
    assert message in info.value.format_message() and "\n" not in info.value.format_message()


# ----------------------------------------------------------------------------- int8 I/O and the sidecar


@pytest.mark.slow
def test_int8_io_and_quantization_match_the_json(tiny, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "out"
    result = _invoke(tiny["keras"], "--data", tiny["data"], "--out", out)
    assert result.exit_code == 0, result.output
    side = json.loads((out / "tiny.int8.json").read_text())
    interp = Interpreter(model_path=str(out / "tiny.int8.tflite"))
    for key, det in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
        assert side[key]["dtype"] == "int8" == np.dtype(det["dtype"]).name
        scale, zp = det["quantization"]
        assert side[key]["quantization"] == {"scale": pytest.approx(scale), "zero_point": zp}
        assert scale > 0
    assert side["graph"]["tensor_dtypes"].get("float32", 0) == 0  # every op int8
    assert side["preprocess"]["quantize"]["zero_point"] == side["input"]["quantization"]["zero_point"]
    assert side["class_names"] == ["akiec", "bcc", "mel"]
    assert side["size_bytes"] == (out / "tiny.int8.tflite").stat().st_size
    assert side["params"] == tiny["model"].count_params()
    assert side["versions"]["tensorflow"] and side["converter"]["api"].endswith("from_keras_model")
    import hashlib

    assert side["source"]["sha256"] == hashlib.sha256(tiny["keras"].read_bytes()).hexdigest()
    chk = side["check"]
    assert chk["split"] == "val" and chk["n"] == 60 and chk["passed"]
    assert abs(chk["accuracy_drop"]) <= 1.0
    assert set(chk["per_class_recall_drop"]) == {"akiec", "bcc", "mel"}
    assert 0.0 <= chk["agreement"] <= 1.0
    assert side["sizes"]["float32_bytes"] > side["size_bytes"]
    assert "drop" in result.output and "gate" in result.output  # the table


def test_uint8_io(tiny, tmp_path):
    from kdtool.export.check import io_details
    from kdtool.export.convert import convert_model, representative_dataset

    data, record = convert_model(tiny["model"], "int8", representative_dataset(tiny["fd"], 30), io="uint8")
    tensors = io_details(data)
    assert tensors["input"]["dtype"] == tensors["output"]["dtype"] == "uint8"
    assert record["inference_input_type"] == "uint8"


# ----------------------------------------------------------------------------- calibration: train split only


class _TrainOnly(dict):
    """FData arrays whose val/test splits raise when touched."""

    def __getitem__(self, split):
        if split != "train":
            raise AssertionError(f"calibration touched the {split} split")
        return super().__getitem__(split)


def test_representative_data_comes_only_from_train(tiny):
    from kdtool.export.convert import representative_dataset

    fd = tiny["fd"]
    guarded = FData(root=fd.root, arrays=_TrainOnly(fd.arrays), class_names=fd.class_names)
    rep = representative_dataset(guarded, n=30, seed=0)
    batches = [b[0] for b in rep()]
    assert len(batches) == 30 and all(b.shape == (1, 8, 8, 3) and b.dtype == np.float32 for b in batches)
    idx = stratified_indices(fd.labels("train"), 30, 0)
    np.testing.assert_array_equal(rep.indices, idx)
    np.testing.assert_array_equal(np.concatenate(batches), fd.x("train")[idx])  # preprocessed as in training
    assert np.bincount(fd.labels("train")[rep.indices]).tolist() == [10, 10, 10]  # stratified
    assert rep.record()["split"] == "train"
    assert [b[0] for b in rep()][0] is not None  # callable again: a fresh generator each time


@pytest.mark.slow
def test_export_calibrates_on_train_only(tiny, tmp_path, monkeypatch):
    from kdtool.export import pipeline

    seen = []
    real = pipeline.representative_dataset

    def spy(fd, n, seed):
        guarded = FData(root=fd.root, arrays=_TrainOnly(fd.arrays), class_names=fd.class_names)
        rep = real(guarded, n, seed)
        seen.append(rep.indices)
        return rep

    monkeypatch.setattr(pipeline, "representative_dataset", spy)
    out = tmp_path / "out"
    result = _invoke(tiny["keras"], "--data", tiny["data"], "--out", out, "--representative-samples", 45)
    assert result.exit_code == 0, result.output
    cal = json.loads((out / "tiny.int8.json").read_text())["converter"]["calibration"]
    assert cal["split"] == "train" and cal["samples"] == 45 and len(seen) == 1


@pytest.mark.slow
def test_floatends_from_the_cli_records_calibration_and_float_nodes(tiny, tmp_path):
    out = tmp_path / "out"
    result = _invoke(tiny["keras"], "--data", tiny["data"], "--out", out, "--quantize", "int8-floatends")
    assert result.exit_code == 0, result.output
    side = json.loads((out / "tiny.int8-floatends.json").read_text())
    assert side["mode"] == "int8-floatends" and side["input"]["dtype"] == "float32"
    assert side["converter"]["calibration"]["split"] == "train"
    assert len(side["converter"]["float_nodes"]) == 2
    # int8 layers leave a mean logit error; the float32 logits layer takes the bias shift exactly, so none is left
    correction = side["converter"]["bias_correction"]
    assert correction["applied"] is True and correction["layer"] == "logits"
    assert np.abs(correction["mean_error_before"]).max() > 1e-4
    np.testing.assert_allclose(correction["mean_error_after"], 0.0, atol=1e-5)
    assert side["check"]["agreement"] >= 0.95
    bench = CliRunner().invoke(
        main,
        [
            "bench",
            str(out / "tiny.int8-floatends.tflite"),
            "--data",
            str(tiny["data"]),
            "--runs",
            "2",
            "--warmup",
            "0",
            "--json",
            str(tmp_path / "b.json"),
        ],
    )
    assert bench.exit_code == 0, bench.output  # the light bench reads the mixed file from its sidecar
    (rec,) = json.loads((tmp_path / "b.json").read_text())
    assert rec["mode"] == "int8-floatends" and rec["accuracy"] > 0.9


# ----------------------------------------------------------------------------- quality gate


@pytest.mark.slow
def test_sabotaged_calibration_trips_the_gate(tiny, tmp_path, monkeypatch):
    from kdtool.export import pipeline
    from kdtool.export.convert import RepresentativeData

    calls = []

    def all_zero(fd, n, seed):  # calibration images that are all black: int8 ranges that fit nothing real
        calls.append(n)
        return RepresentativeData(np.zeros((20, *fd.image_shape), np.float32), np.arange(20), seed)

    monkeypatch.setattr(pipeline, "representative_dataset", all_zero)
    out = tmp_path / "out"
    result = _invoke(tiny["keras"], "--data", tiny["data"], "--out", out)
    assert result.exit_code == 3, result.output
    assert "QUALITY GATE FAILED" in result.output
    assert "--quantize int8-floatends keeps the two layers" in result.output  # the way out, named
    assert "accuracy drop above --max-drop 1 points: tiny.int8" in result.output.strip().splitlines()[-1]
    side = json.loads((out / "tiny.int8.json").read_text())  # still written
    assert (out / "tiny.int8.tflite").is_file()
    assert side["check"]["passed"] is False and side["check"]["accuracy_drop"] > 1.0
    assert calls == [300] and side["converter"]["calibration"]["samples"] == 20  # the sabotaged draw was used


# ----------------------------------------------------------------------------- bad inputs: one line, exit 2


def test_bad_inputs_give_one_line_and_exit_2(tiny, tmp_path):
    cases = {}
    missing = tmp_path / "nope.keras"
    cases["file not found"] = missing
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    cases["HDF5"] = h5
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"this is not a zip archive")
    cases["not a zip archive"] = junk
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hi")
    cases["not a kdtool run folder"] = folder
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\0")
    cases["SavedModel"] = saved
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\0")
    cases["not a .keras model file"] = onnx
    for expect, path in cases.items():
        result = _invoke(path, "--data", tiny["data"])
        assert result.exit_code == 2, (expect, result.output)
        line = _one_line_error(result)
        assert expect in line and str(path) in line, line


def test_corrupt_keras_zip_is_one_line(tiny, tmp_path):
    bad = tmp_path / "broken.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "{not json")
        zf.writestr("metadata.json", "{}")
    result = _invoke(bad, "--data", tiny["data"])
    assert result.exit_code == 2, result.output
    line = _one_line_error(result)
    assert "cannot load the Keras model" in line and str(bad) in line


def test_lambda_model_refused_by_safe_mode(tiny, tmp_path):
    import keras

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out).save(path)
    result = _invoke(path, "--data", tiny["data"])
    assert result.exit_code == 2, result.output
    line = _one_line_error(result)
    assert "cannot load the Keras model" in line and "Lambda" in line


def test_truncated_keras_file(tiny, tmp_path):
    bad = tmp_path / "cut.keras"
    raw = tiny["keras"].read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    result = _invoke(bad, "--data", tiny["data"])
    assert result.exit_code == 2, result.output
    assert str(bad) in _one_line_error(result)


def test_option_errors(tiny):
    result = _invoke(tiny["keras"], "--quantize", "int4", "--data", tiny["data"])
    assert result.exit_code == 2 and "int4" in _one_line_error(result)
    result = _invoke(tiny["keras"], "--quantize", "float16", "--io", "uint8", "--data", tiny["data"])
    assert result.exit_code == 2 and "--io applies to int8" in _one_line_error(result)


def test_model_data_mismatch(tiny, tmp_path):
    other = write_fdata(tmp_path / "FData16", n=(21, 9, 9), size=16)
    result = _invoke(tiny["keras"], "--data", other, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "(8, 8, 3)" in _one_line_error(result)


# ----------------------------------------------------------------------------- atomic writes


@pytest.mark.slow
def test_interrupted_write_leaves_no_partial_file(tiny, tmp_path, monkeypatch):
    import kdtool.data

    out = tmp_path / "out"
    assert _invoke(tiny["keras"], "--data", tiny["data"], "--out", out, "--quantize", "float16").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    real_open = open

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    def fake_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return HalfWriter(fh) if "w" in mode else fh

    monkeypatch.setattr(kdtool.data, "open", fake_open, raising=False)
    result = _invoke(tiny["keras"], "--data", tiny["data"], "--out", out, "--quantize", "float16")
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output.strip().splitlines()[-1]
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # previous file intact, no temp file left


def test_killed_write_leaves_previous_file(tmp_path, monkeypatch):
    import os

    from kdtool.export.convert import write_export

    write_export(tmp_path, "m", "int8", b"old model", {"v": 1})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_export(tmp_path, "m", "int8", b"new model that is longer", {"v": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.json", "m.int8.tflite"]
    assert (tmp_path / "m.int8.tflite").read_bytes() == b"old model"


# ----------------------------------------------------------------------------- run folders


@pytest.mark.slow
def test_run_dir_exports_students_only_by_default(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    result = _invoke(run, "--quantize", "float16")  # data path from run.json, out = run/export
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run / "export").glob("*.tflite"))
    assert names == ["student_alone.float16.tflite", "student_tiny.float16.tflite"]
    side = json.loads((run / "export" / "student_tiny.float16.json").read_text())
    assert side["role"] == "student" and side["teacher"] == "teacher_tiny"
    assert side["sizes"]["teacher_float32_bytes"] is None  # teacher not converted without --include-teachers


@pytest.mark.slow
def test_run_dir_with_teachers_reports_size_ratio(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    # dynamic: smaller than float32 like int8, without int8's calibration and bias correction (faster)
    result = _invoke(run, "--quantize", "dynamic", "--include-teachers", "--out", tmp_path / "exp", "--max-drop", 50)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "exp").glob("*.tflite"))
    assert names == ["student_alone.dynamic.tflite", "student_tiny.dynamic.tflite", "teacher_tiny.dynamic.tflite"]
    side = json.loads((tmp_path / "exp" / "student_tiny.dynamic.json").read_text())
    s = side["sizes"]
    assert s["teacher_float32_bytes"] > s["float32_bytes"] > s["bytes"]
    assert s["ratio_to_teacher_float32"] == pytest.approx(s["bytes"] / s["teacher_float32_bytes"], rel=1e-3)
    assert "x teacher_tiny float32" in result.output


def test_run_dir_class_names_must_match(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    doc = json.loads((run / "run.json").read_text())
    doc["data"]["class_names"] = ["a", "b", "c"]
    (run / "run.json").write_text(json.dumps(doc))
    result = _invoke(run, "--quantize", "float16")
    assert result.exit_code == 2
    assert "differ from run.json" in _one_line_error(result)


def test_run_dir_missing_model_file(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    (run / "student_tiny.keras").unlink()
    result = _invoke(run, "--quantize", "float16")
    assert result.exit_code == 2
    assert "student_tiny.keras" in _one_line_error(result)


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_default_student_on_real_slice_int8(ham_slice, tmp_path):
    import keras

    from kdtool.distill.student import build_student

    fd = load_fdata(ham_slice)
    keras.utils.set_random_seed(0)
    model = build_student(fd.image_shape, fd.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(fd.x("train"), fd.onehot("train"), epochs=3, batch_size=64, verbose=0)
    path = tmp_path / "student.keras"
    model.save(path)
    result = _invoke(path, "--data", ham_slice, "--max-drop", "5")
    assert result.exit_code == 0, result.output
    side = json.loads((tmp_path / "student.int8.json").read_text())
    assert side["size_bytes"] < 200 * 1024
    assert side["input"]["dtype"] == side["output"]["dtype"] == "int8"
    assert side["check"]["n"] == 200 and abs(side["check"]["accuracy_drop"]) <= 5.0
    assert side["check"]["agreement"] >= 0.9
