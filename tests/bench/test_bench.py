"""kdtool bench / predict: accuracy with quantized I/O, file checks, JSON/CSV/compare, no TensorFlow on the path.

The tiny .tflite models are built once per module with TensorFlow (tests may use it;
the bench path may not): a small CNN trained for a few seconds on a learnable
FData folder, converted to float32 and to full int8 (int8 input and output).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, write_fdata
from hypothesis import given, settings
from hypothesis import strategies as st

from kdtool.bench import compare, report
from kdtool.bench.device import cpu_model, detect_emulation
from kdtool.bench.evaluate import softmax, to_probabilities
from kdtool.cli import main
from kdtool.data import load_fdata, save_fdata
from kdtool.errors import InputError, RuntimeFailure
from kdtool.litert import RUNTIMES, select_runtime
from kdtool.tflite_model import TensorIO, _tensor_io, check_tflite_file

CLASSES = ["nv", "mel", "bkl", "bcc"]
SIZE = 8


def build_tiny_models(out: Path, fdata_dir: Path, epochs: int = 40, seed: int = 0) -> dict[str, Path]:
    """Train a tiny CNN on ``fdata_dir`` and write ``tiny.float32.tflite`` and ``tiny.int8.tflite`` (+ sidecars).

    Args:
        out: folder for the models.
        fdata_dir: an FData folder (train split used).
        epochs: training epochs (full batch, a second or two).
        seed: Keras seed.

    Returns:
        {"float32": path, "int8": path}.
    """
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    fd = load_fdata(fdata_dir, splits=("train",))
    x, y = fd.x("train"), fd.onehot("train")
    h, w, _ = fd.image_shape
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((h, w, 3)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(fd.num_classes),
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(0.03), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for mode in ("float32", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if mode == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blob = conv.convert()
        path = out / f"tiny.{mode}.tflite"
        path.write_bytes(blob)
        interp = Interpreter(model_content=blob)
        io_doc = {}
        for key, det in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
            scale, zp = det["quantization"]
            io_doc[key] = {"shape": [int(d) for d in det["shape"]], "dtype": np.dtype(det["dtype"]).name,
                           "scale": float(scale), "zero_point": int(zp)}  # fmt: skip
        side = {"name": "tiny", "mode": mode, "class_names": fd.class_names, **io_doc,
                "params": int(model.count_params()), "size_bytes": len(blob), "source_sha256": "0" * 64,
                "check": {}}  # fmt: skip
        path.with_suffix(".json").write_text(json.dumps(side))
        paths[mode] = path
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """FData (4 classes, 8x8, 60 test images) + float32 and int8 tiny models with sidecars."""
    root = tmp_path_factory.mktemp("bench")
    fdata = write_fdata(root / "FData", n=(240, 8, 60), k=len(CLASSES), size=SIZE, class_names=CLASSES, seed=1)
    models = build_tiny_models(root / "models", fdata)
    return SimpleNamespace(root=root, fdata=fdata, f32=models["float32"], i8=models["int8"], models=root / "models")


def run_cli(args, **kw):
    result = CliRunner().invoke(main, [str(a) for a in args], **kw)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def bench_json(tiny, tmp_path, *models, extra=()):
    out = tmp_path / "bench.json"
    r = run_cli(["bench", *models, "--data", tiny.fdata, "--runs", 5, "--warmup", 1, "--json", out, *extra])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text()), r


# --------------------------------------------------------------------------- quantized I/O
def test_quantize_follows_the_formula():
    io_ = TensorIO(0, "x", (1, 2, 2, 3), np.dtype(np.int8), scale=1 / 255, zero_point=-128)
    x = np.array([0.0, 0.4, 1.0, 2.0, -1.0], dtype=np.float32)
    q = io_.quantize(x)
    assert q.dtype == np.int8
    assert q.tolist() == [-128, 102 - 128, 127, 127, -128]
    assert io_.dequantize(q)[:3] == pytest.approx([0.0, 0.4, 1.0], abs=1 / 255)
    u = TensorIO(0, "x", (1,), np.dtype(np.uint8), scale=0.5, zero_point=10)
    assert u.quantize(np.array([-10.0, 1.0, 500.0])).tolist() == [0, 12, 255]
    f = TensorIO(0, "x", (1,), np.dtype(np.float32))
    assert f.quantize(x).dtype == np.float32 and not f.quantized


@settings(max_examples=50, deadline=None)
@given(
    st.floats(1e-4, 1.0), st.integers(-128, 127),
    st.lists(st.floats(0, 1, width=32), min_size=1, max_size=20),
)  # fmt: skip
def test_quantize_round_trip_within_half_a_step(scale, zp, values):
    io_ = TensorIO(0, "x", (1,), np.dtype(np.int8), scale=scale, zero_point=zp)
    x = np.array(values, dtype=np.float32)
    back = io_.dequantize(io_.quantize(x))
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale
    inside = (x >= lo) & (x <= hi)
    assert np.all(np.abs(back - x)[inside] <= scale / 2 + 1e-6 * max(1.0, scale))
    assert np.all((back >= lo - 1e-6) & (back <= hi + 1e-6))


def test_probabilities_softmax_or_pass_through():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    p = softmax(z)
    assert np.isfinite(p).all() and p.sum(axis=1) == pytest.approx([1, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]], dtype=np.float32)
    assert np.array_equal(to_probabilities(probs), probs)
    assert to_probabilities(np.array([[2.0, 1.0, 0.5]])).sum() == pytest.approx(1.0)


def test_sidecar_supplies_missing_quantization(tmp_path):
    model = tmp_path / "m.int8.tflite"
    detail = {"index": 0, "name": "in", "shape": [1, 8, 8, 3], "dtype": np.int8, "quantization": (0.0, 0)}
    with pytest.raises(InputError, match="without quantization parameters"):
        _tensor_io(detail, {}, "input", model)
    io_ = _tensor_io(detail, {"input": {"scale": 0.5, "zero_point": -3}}, "input", model)
    assert (io_.scale, io_.zero_point, io_.quantized) == (0.5, -3, True)
    # the layout kdtool export writes
    io_ = _tensor_io(detail, {"input": {"quantization": {"scale": 0.25, "zero_point": 7}}}, "input", model)
    assert (io_.scale, io_.zero_point) == (0.25, 7)


def test_int8_accuracy_close_to_float(tiny, tmp_path):
    recs, r = bench_json(tiny, tmp_path, tiny.f32, tiny.i8, extra=["--reference", tiny.f32])
    f32, i8 = recs
    assert f32["input_dtype"] == "float32" and i8["input_dtype"] == "int8" and i8["output_dtype"] == "int8"
    assert i8["input_quantization"]["scale"] > 0 and f32["input_quantization"] is None
    assert f32["accuracy"] >= 0.8, "the tiny model did not learn; the fixture is broken"
    assert abs(i8["accuracy"] - f32["accuracy"]) <= 0.05
    assert f32["reference_agreement"] == 1.0 and i8["reference_agreement"] >= 0.9
    same = f32["reference_difference"]["balanced_accuracy"]
    assert same == {"difference": 0.0, "ci95": [0.0, 0.0]}  # paired: a model minus itself is exactly 0
    d = i8["reference_difference"]["accuracy"]
    assert d["difference"] == pytest.approx(i8["accuracy"] - f32["accuracy"])
    assert d["ci95"][0] <= d["difference"] <= d["ci95"][1] and "bal.acc - ref" in r.output
    assert "+0.0 [+0.0, +0.0]" in r.output
    assert i8["params"] == f32["params"] > 0 and i8["mode"] == "int8"
    assert i8["size_bytes"] == tiny.i8.stat().st_size


def test_batch_gives_the_same_predictions(tiny, tmp_path):
    preds = {}
    for batch in (1, 7):  # 60 images: the last batch of 7 is padded
        out = tmp_path / f"p{batch}.npy"
        r = run_cli(["bench", tiny.i8, "--data", tiny.fdata, "--runs", 3, "--warmup", 0, "--batch", batch,
                     "--predictions", out])  # fmt: skip
        assert r.exit_code == 0, r.output
        preds[batch] = np.load(out, allow_pickle=False)
    assert preds[1].dtype == np.int64 and preds[1].shape == (60,)
    assert np.array_equal(preds[1], preds[7])


def test_export_check_and_bench_feed_the_same_integers(tiny, monkeypatch):
    """kdtool export's check and kdtool bench quantize a borderline image alike and read back the same scores."""
    from kdtool import quant
    from kdtool.export.check import run_tflite
    from kdtool.tflite_model import load_model, predict_scores

    model = load_model(tiny.i8, select_runtime(), batch=7)
    scale, zp = model.input.scale, model.input.zero_point
    x = load_fdata(tiny.fdata, splits=("test",)).x("test").copy()
    # pixels next to a half step, where float32 and float64 division give different integers
    centres = np.float32((np.arange(40) + 0.5) * scale)
    near = np.concatenate([np.nextafter(centres, np.float32(-1)), centres, np.nextafter(centres, np.float32(2))])
    borderline = near[np.rint(near / np.float32(scale)) != np.rint(near.astype(np.float64) / scale)]
    assert borderline.size >= 5, "no borderline value for this scale; the test would show nothing"
    x.reshape(-1)[: borderline.size] = borderline
    fed = []  # every integer input tensor, in order
    real = quant.quantize

    def recording(*args, **kwargs):
        fed.append(real(*args, **kwargs))
        return fed[-1]

    monkeypatch.setattr(quant, "quantize", recording)
    from_export = run_tflite(tiny.i8.read_bytes(), x, batch_size=7)
    export_fed = fed[:]
    from_bench = predict_scores(model, x)
    bench_fed = fed[len(export_fed) :]
    assert len(export_fed) == len(bench_fed) == 9  # 60 images in batches of 7
    for a, b in zip(export_fed, bench_fed, strict=True):
        assert a.dtype == np.int8 and np.array_equal(a, b)
    first = bench_fed[0].reshape(-1)[: borderline.size].astype(np.int64)
    old = np.clip(np.round(borderline.astype(np.float64) / scale) + zp, -128, 127)
    assert not np.array_equal(first, old)  # the float64 arithmetic would have fed other integers
    assert from_export.dtype == np.float32 and np.array_equal(from_export, from_bench)


# --------------------------------------------------------------------------- metrics against scikit-learn
def test_bench_metrics_match_sklearn_with_an_absent_class(tiny, tmp_path):
    sk = pytest.importorskip("sklearn.metrics")
    fd = load_fdata(tiny.fdata)
    keep = fd.labels("test") != 3  # "bcc" absent from the test split
    arrays = {s: (fd.raw_x(s), fd.onehot(s)) for s in ("train", "val")}
    arrays["test"] = (fd.raw_x("test")[keep], fd.onehot("test")[keep])
    data = save_fdata(tmp_path / "absent", arrays, fd.class_names)
    pred_file = tmp_path / "p.npy"
    r = run_cli(["bench", tiny.i8, "--data", data, "--runs", 0, "--json", tmp_path / "b.json",
                 "--predictions", pred_file])  # fmt: skip
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "b.json").read_text())[0]
    y_true, y_pred = np.argmax(arrays["test"][1], axis=1), np.load(pred_file)
    labels = list(range(len(CLASSES)))
    assert rec["n_images"] == int(keep.sum()) and rec["per_class"]["bcc"]["support"] == 0
    assert rec["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert rec["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
        for avg in ("macro", "weighted"):
            p, rc, f, _ = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                             zero_division=0)  # fmt: skip
            assert rec[avg] == pytest.approx({"precision": p, "recall": rc, "f1": f})
        p, rc, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, name in enumerate(CLASSES):
        assert rec["per_class"][name] == pytest.approx(
            {"precision": p[i], "recall": rc[i], "f1": f[i], "support": int(s[i])}
        )
    assert rec["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert rec["melanoma_sensitivity"] == pytest.approx(rc[1])
    mel_neg = y_true != 1
    assert rec["melanoma_specificity"] == pytest.approx(float((y_pred[mel_neg] != 1).mean()))
    # ROC-AUC from the softmax of the dequantized int8 outputs, against scikit-learn on the same probabilities
    from kdtool.bench.evaluate import predict_proba
    from kdtool.tflite_model import load_model

    probs = predict_proba(load_model(tiny.i8, select_runtime()), load_fdata(data).x("test"))
    assert np.array_equal(probs.argmax(1), y_pred)
    present = sorted(set(y_true.tolist()))
    expected = np.mean([sk.roc_auc_score(y_true == c, probs[:, c]) for c in present])
    assert rec["roc_auc_macro"] == pytest.approx(expected, abs=1e-6)
    assert 0.0 <= rec["ece"] <= 1.0
    assert rec["latency_ms"] == dict.fromkeys(("min", "median", "mean", "std", "p90", "p99"))  # --runs 0


# --------------------------------------------------------------------------- file checks: one line, exit 2
def _one_line_error(result, name):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert name in lines[0] and lines[0].startswith("Error:")
    return lines[0]


def test_truncated_and_foreign_files_fail_in_one_line(tiny, tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tiny.i8.read_bytes()[:600])
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(b"PK\x03\x04" + os.urandom(200))
    tiny_file = tmp_path / "short.tflite"
    tiny_file.write_bytes(b"TFL3")
    cases = {
        truncated: "cannot load it",
        foreign: "not a TFLite model",
        tiny_file: "too small",
        tmp_path / "missing.tflite": "file not found",
    }
    for path, why in cases.items():
        line = _one_line_error(run_cli(["bench", path, "--data", tiny.fdata]), path.name)
        assert why in line
    _one_line_error(run_cli(["predict", truncated, "x.png"]), truncated.name)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    _one_line_error(run_cli(["bench", empty, "--data", tiny.fdata]), "empty_dir")
    with pytest.raises(InputError):
        check_tflite_file(foreign)


def test_bad_data_and_shape_mismatch_fail_in_one_line(tiny, tmp_path):
    _one_line_error(run_cli(["bench", tiny.i8, "--data", tmp_path / "nope"]), "nope")
    other = write_fdata(tmp_path / "big", n=(4, 4, 4), k=len(CLASSES), size=SIZE + 2)
    line = _one_line_error(run_cli(["bench", tiny.i8, "--data", other]), tiny.i8.name)
    assert "8x8x3" in line and "10x10x3" in line
    three = write_fdata(tmp_path / "three", n=(4, 4, 4), k=3, size=SIZE)
    assert "classes" in _one_line_error(run_cli(["bench", tiny.i8, "--data", three]), tiny.i8.name)
    r = run_cli(["bench", tiny.i8, tiny.f32, "--data", tiny.fdata, "--predictions", tmp_path / "p.npy"])
    assert "one model" in _one_line_error(r, "--predictions")


# --------------------------------------------------------------------------- JSON / CSV / compare
def documented_keys() -> list[str]:
    """The keys listed in kdtool.bench.report's docstring table (the documentation is the contract)."""
    lines = report.__doc__.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("=====")]
    keys = []
    for line in lines[rules[1] + 1 : rules[2]]:
        if line[:1].strip():  # a key row; continuation rows are indented
            keys += [k.strip() for k in line[: len(lines[rules[0]].split()[0])].split(",")]
    return keys


def test_json_keys_are_documented_and_stable(tiny, tmp_path):
    recs, r = bench_json(tiny, tmp_path, tiny.models)  # a folder: every *.tflite in it
    assert [x["model"] for x in recs] == ["tiny.float32.tflite", "tiny.int8.tflite"]
    keys = documented_keys()
    assert len(keys) >= 42 and "roc_auc_macro" in keys and "melanoma_sensitivity" in keys
    for rec in recs:
        assert list(rec) == keys  # same keys, same order, every time
        assert set(rec["latency_ms"]) == {"min", "median", "mean", "std", "p90", "p99"}
        assert rec["latency_ms"]["min"] <= rec["latency_ms"]["median"] <= rec["latency_ms"]["p99"]
        assert rec["images_per_second"] > 0 and rec["init_ms"] > 0 and rec["peak_rss_mb"] > 0
        assert set(rec["per_class"]) == set(CLASSES) and rec["class_names"] == CLASSES
        assert set(rec["macro"]) == set(rec["weighted"]) == {"precision", "recall", "f1"}
        assert rec["threads"] == 1 and rec["runtime"] == "ai_edge_litert" and rec["emulated"] is False
        assert rec["device"]["machine"] and rec["device"]["numpy"] == np.__version__
        assert rec["split"] == "test" and rec["n_images"] == 60
    assert "tiny.int8.tflite" in r.output and "median ms" in r.output


def test_json_to_stdout_and_csv(tiny, tmp_path):
    out_csv = tmp_path / "b.csv"
    r = run_cli(["bench", tiny.f32, tiny.i8, "--data", tiny.fdata, "--runs", 3, "--json", "-", "--csv", out_csv])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)  # the table went to stderr
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == 2 and [row["model"] for row in rows] == [x["model"] for x in recs]
    header = list(rows[0])
    assert header[: len(report.CSV_COLUMNS)] == list(report.CSV_COLUMNS)
    assert {"recall_mel", "f1_bcc"} <= set(header)
    for row, rec in zip(rows, recs, strict=True):
        assert float(row["accuracy"]) == pytest.approx(rec["accuracy"])
        assert float(row["latency_median_ms"]) == pytest.approx(rec["latency_ms"]["median"])
        assert int(row["size_bytes"]) == rec["size_bytes"]


def test_compare_merges_devices_and_plots(tiny, tmp_path, monkeypatch):
    (tmp_path / "host").mkdir()
    host, _ = bench_json(tiny, tmp_path / "host", tiny.f32, tiny.i8)
    monkeypatch.setenv("KDTOOL_EMULATED", "1")
    (tmp_path / "arm").mkdir()
    arm, r = bench_json(tiny, tmp_path / "arm", tiny.i8)
    assert arm[0]["emulated"] is True and "EMULATED" in r.output
    monkeypatch.delenv("KDTOOL_EMULATED")
    merged = tmp_path / "out" / "merged.json"
    merged.parent.mkdir()
    r = run_cli(["bench", "--compare", tmp_path / "host" / "bench.json", tmp_path / "arm" / "bench.json",
                 "--json", merged, "--csv", tmp_path / "m.csv"])  # fmt: skip
    assert r.exit_code == 0, r.output
    recs = json.loads(merged.read_text())
    assert len(recs) == 3 and [x["emulated"] for x in recs] == [False, False, True]
    assert recs[2]["pareto"] is False  # emulated timings never make the front
    assert any(x["pareto"] for x in recs[:2])
    assert "[emulated]" in r.output and "pareto" in r.output
    assert "pareto" in (tmp_path / "m.csv").read_text().splitlines()[0]
    try:
        import matplotlib  # noqa: F401 - only whether it is installed
    except ImportError:
        assert "matplotlib is not installed" in r.output
    else:
        assert (merged.parent / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # beside --json
        r = run_cli(["bench", "--compare", merged, "--out", tmp_path / "plots"])
        assert r.exit_code == 0 and (tmp_path / "plots" / "pareto.png").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"model": "x"}]))
    assert "not a kdtool bench JSON" in _one_line_error(run_cli(["bench", "--compare", bad]), "bad.json")
    assert host[0]["model"] == "tiny.float32.tflite"


def test_pareto_flags():
    def rec(acc, size, med, emulated=False):
        return {"accuracy": acc, "size_bytes": size, "latency_ms": {"median": med}, "emulated": emulated}

    recs = [rec(0.9, 100, 1.0), rec(0.8, 50, 1.0), rec(0.7, 200, 2.0), rec(0.95, 10, 0.1, True), rec(0.9, 100, 1.0)]
    assert compare.pareto_flags(recs) == [True, True, False, False, True]
    assert compare.pareto_path(None, None) == Path.cwd() / "pareto.png"
    assert compare.pareto_path("r/x.png", "a/b.json") == Path("r/x.png")
    assert compare.pareto_path("r", "-") == Path("r/pareto.png")


# --------------------------------------------------------------------------- intervals and threshold-free metrics
def test_bench_intervals_groups_and_class_of_concern(tiny, tmp_path):
    from kdtool.intervals import clopper_pearson_interval

    recs, r = bench_json(tiny, tmp_path, tiny.f32, extra=["--bootstrap", 200])  # isolated: no sha256 sidecar
    rec = recs[0]
    ci = rec["ci95"]
    for key, value in (("accuracy", rec["accuracy"]), ("balanced_accuracy", rec["balanced_accuracy"]),
                       ("macro_f1", rec["macro"]["f1"]), ("roc_auc_macro", rec["roc_auc_macro"])):  # fmt: skip
        assert ci[key][0] <= value <= ci[key][1] and ci[key][0] < ci[key][1], key
    mel = rec["class_of_concern"]
    assert mel["name"] == "mel" and mel["positives"] == rec["per_class"]["mel"]["support"] == 15
    assert mel["sensitivity"] == rec["melanoma_sensitivity"] and mel["specificity"] == rec["melanoma_specificity"]
    detected = round(mel["sensitivity"] * mel["positives"])
    assert ci["melanoma_sensitivity"] == ci["class_of_concern_sensitivity"]
    assert ci["melanoma_sensitivity"] == clopper_pearson_interval(detected, 15).as_list()
    assert set(rec["sensitivity_at_specificity"]) == {"0.8", "0.9", "0.95"}
    at80, at95 = rec["sensitivity_at_specificity"]["0.8"], rec["sensitivity_at_specificity"]["0.95"]
    assert at80["sensitivity"] >= at95["sensitivity"] and at80["ci95"][0] <= at80["sensitivity"] <= at80["ci95"][1]
    assert set(rec["roc_auc_per_class"]) == set(CLASSES) and set(ci["roc_auc_per_class"]) == set(CLASSES)
    assert rec["bootstrap"] == {"n": 200, "seed": 0, "groups": "image", "n_groups": 60, "dropped": {}}
    assert "95% intervals" in r.output and "60 images" in r.output and "class of concern mel" in r.output
    again, _ = bench_json(tiny, tmp_path, tiny.f32, extra=["--bootstrap", 200, "--no-isolate"])
    assert again[0]["ci95"] == ci  # seeded, and the same in and out of the child process

    # image_ids.csv naming lesions of 3 images each: the bootstrap resamples 20 lesions, not 60 images
    grouped = tmp_path / "grouped"
    shutil.copytree(tiny.fdata, grouped)
    rows = [f"test,{i},L{i // 3}" for i in range(60)]
    (grouped / "image_ids.csv").write_text("split,position,lesion_id\n" + "\n".join(rows) + "\n")
    out = tmp_path / "g.json"
    r = run_cli(["bench", tiny.f32, "--data", grouped, "--runs", 0, "--bootstrap", 200, "--json", out])
    assert r.exit_code == 0, r.output
    g = json.loads(out.read_text())[0]
    assert g["bootstrap"]["groups"] == "lesion_id" and g["bootstrap"]["n_groups"] == 20
    assert g["accuracy"] == rec["accuracy"] and g["ci95"]["accuracy"] != ci["accuracy"]
    assert "20 lesions (image_ids.csv lesion_id)" in r.output

    # another class of concern; a class the data lack is one line, exit 2
    out = tmp_path / "bcc.json"
    r = run_cli(["bench", tiny.f32, "--data", tiny.fdata, "--runs", 0, "--class-of-concern", "BCC",
                 "--bootstrap", 0, "--json", out])  # fmt: skip
    assert r.exit_code == 0, r.output
    b = json.loads(out.read_text())[0]
    assert b["class_of_concern"]["name"] == "bcc" and b["ci95"] is None and b["bootstrap"] is None
    assert b["sensitivity_at_specificity"]["0.9"]["ci95"] is None and b["accuracy"] == rec["accuracy"]
    assert "95% intervals" not in r.output and "class of concern bcc" in r.output
    bad = run_cli(["bench", tiny.f32, "--data", tiny.fdata, "--class-of-concern", "scc"])
    assert "no such class" in _one_line_error(bad, "scc")


def test_resample_metrics_by_weights_equal_the_direct_ones():
    """The bench bootstrap scores a resample by image multiplicities (no sort per resample): same numbers."""
    from kdtool.bench.uncertainty import _resample_metrics
    from kdtool.intervals import resample_indices, sensitivity_at_specificity
    from kdtool.metrics import binary_roc_auc, roc_auc_ovr

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 80)
    p = np.round(rng.dirichlet(np.ones(4), 80) + 0.3 * np.eye(4)[y], 1)  # coarse: many ties
    metrics = _resample_metrics(y, p, CLASSES, 1)
    for idx in [np.arange(80), *resample_indices(80, n_boot=10, seed=0)]:
        m, ys, ps = metrics(y[idx], idx), y[idx], p[idx]
        for c, name in enumerate(CLASSES):
            assert m[f"auc:{name}"] == pytest.approx(binary_roc_auc(ys == c, ps[:, c]), abs=1e-12)
        assert m["roc_auc_macro"] == pytest.approx(roc_auc_ovr(ys, ps), abs=1e-12)
        for spec in (0.8, 0.9, 0.95):
            assert m[f"sens@{spec:g}"] == pytest.approx(sensitivity_at_specificity(ys == 1, ps[:, 1], spec)[0])
        assert m["accuracy"] == pytest.approx((ps.argmax(axis=1) == ys).mean())


def test_compare_and_csv_read_results_without_the_interval_keys(tiny, tmp_path):
    recs, _ = bench_json(tiny, tmp_path, tiny.i8, extra=["--bootstrap", 20])
    from kdtool.bench.uncertainty import FIELDS, format_intervals

    old = [{k: v for k, v in rec.items() if k not in FIELDS} for rec in recs]
    assert old[0] != recs[0] and "ci95" not in old[0]
    (tmp_path / "old.json").write_text(json.dumps(old))
    merged = tmp_path / "merged.json"
    r = run_cli(["bench", "--compare", tmp_path / "old.json", tmp_path / "bench.json", "--json", merged,
                 "--csv", tmp_path / "m.csv", "--no-plot"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(json.loads(merged.read_text())) == 2
    rows = list(csv.DictReader(io.StringIO((tmp_path / "m.csv").read_text())))
    assert rows[0]["accuracy_ci95_low"] == "" and float(rows[1]["accuracy_ci95_low"]) <= recs[0]["accuracy"]
    assert rows[1]["class_of_concern"] == "mel" and rows[1]["bootstrap_groups"] == "image"
    assert format_intervals(old) == "" and "95% intervals" in format_intervals(recs)


# --------------------------------------------------------------------------- predict
def test_predict_png_matches_bench(tiny, tmp_path):
    from PIL import Image

    fd = load_fdata(tiny.fdata, splits=("test",))
    pred_file = tmp_path / "p.npy"
    assert run_cli(["bench", tiny.i8, "--data", tiny.fdata, "--runs", 0, "--predictions", pred_file]).exit_code == 0
    bench_preds = np.load(pred_file)
    images = []
    for i in range(3):
        p = tmp_path / f"lesion{i}.png"
        Image.fromarray(fd.raw_x("test")[i]).save(p)  # model size: no resize, so exactly the bench input
        images.append(p)
    big = tmp_path / "big.jpg"
    Image.fromarray(fd.raw_x("test")[0]).resize((64, 48), Image.Resampling.NEAREST).convert("L").save(big)
    r = run_cli(["predict", tiny.i8, *images, big, "--json", "--top", 2])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert [x["image"] for x in res] == [str(p) for p in (*images, big)]
    for i, x in enumerate(res[:3]):
        assert len(x["top"]) == 2 and x["top"][0]["class"] == CLASSES[bench_preds[i]]
        assert sum(x["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert x["top"][0]["probability"] >= x["top"][1]["probability"]
    r = run_cli(["predict", tiny.f32, images[0]])
    assert r.exit_code == 0
    line = r.output.strip()
    assert line.startswith(f"{images[0]}: ") and line.count(",") == 2  # top 3 by default
    assert any(c in line for c in CLASSES)
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    _one_line_error(run_cli(["predict", tiny.i8, not_image]), "notes.png")


def test_predict_without_sidecar_uses_class_i(tiny, tmp_path):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(tiny.f32.read_bytes())
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(img)
    r = run_cli(["predict", bare, img, "--json"])
    assert r.exit_code == 0 and set(json.loads(r.stdout)[0]["probabilities"]) == {f"class_{i}" for i in range(4)}


def test_corrupt_sidecar_is_a_note(tiny, tmp_path):
    m = tmp_path / "tiny.int8.tflite"
    m.write_bytes(tiny.i8.read_bytes())
    m.with_suffix(".json").write_text("{not json")
    r = run_cli(["bench", m, "--data", tiny.fdata, "--runs", 0])
    assert r.exit_code == 0 and "note:" in r.stderr and "ignored" in r.stderr


# --------------------------------------------------------------------------- runtime and device
def test_runtime_order_and_numpy2_rule(monkeypatch):
    import kdtool.litert as rt

    assert select_runtime().name == "ai_edge_litert"
    calls = []

    def fake(name, ok):
        def provider():
            calls.append(name)
            if not ok:
                raise ImportError(f"no {name}")
            return rt.Runtime(name, "0", object)

        return provider

    monkeypatch.setattr(rt, "RUNTIMES", {"ai_edge_litert": fake("ai_edge_litert", False),
                                         "tflite_runtime": fake("tflite_runtime", False),
                                         "tensorflow": fake("tensorflow", True)})  # fmt: skip
    select_runtime.cache_clear()
    try:
        assert select_runtime().name == "tensorflow" and calls == ["ai_edge_litert", "tflite_runtime", "tensorflow"]
        monkeypatch.setattr(rt, "RUNTIMES", {"ai_edge_litert": fake("ai_edge_litert", False)})
        select_runtime.cache_clear()
        with pytest.raises(RuntimeFailure, match="pip install ai-edge-litert"):
            select_runtime()
    finally:
        select_runtime.cache_clear()
    monkeypatch.setattr(rt, "_numpy_major", lambda: 2)
    with pytest.raises(ImportError, match="numpy"):
        rt._tflite_runtime()
    assert list(RUNTIMES) == ["ai_edge_litert", "tflite_runtime", "tensorflow"]


def test_emulation_detection_and_cpu_names(monkeypatch):
    monkeypatch.setenv("KDTOOL_EMULATED", "1")
    assert detect_emulation() == (True, "KDTOOL_EMULATED=1")
    monkeypatch.delenv("KDTOOL_EMULATED")
    assert detect_emulation()[0] is False  # this test machine is not emulated
    arm = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"
    assert cpu_model(arm).startswith("ARM Cortex-A72")
    assert cpu_model("model name\t: AMD EPYC 7B13\nflags\t: sse2\n").startswith("AMD EPYC 7B13")
    pi = arm + "Model\t: Raspberry Pi 4 Model B Rev 1.4\n"
    assert cpu_model(pi) == "ARM Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)"


# --------------------------------------------------------------------------- the light path
def test_bench_and_predict_never_import_tensorflow(tiny, tmp_path):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8), (10, 200, 10)).save(img)
    data = tmp_path / "FData"  # with an image_ids.csv, for --by (subgroups, calibration and ROC curves: numpy only)
    shutil.copytree(tiny.fdata, data)
    rows = [
        f"{s},{i},L{s}{i // 2},{'back' if i % 2 else 'face'}"
        for s, n in (("train", 240), ("val", 8), ("test", 60))
        for i in range(n)
    ]
    (data / "image_ids.csv").write_text("split,position,lesion_id,site\n" + "\n".join(rows) + "\n")
    code = (
        "import sys\n"
        "from kdtool.cli import main\n"
        f"main(['bench', {str(tiny.i8)!r}, {str(tiny.f32)!r}, '--data', {str(data)!r}, '--runs', '3', '--by', "
        f"'site', '--reference', {str(tiny.f32)!r}, '--json', {str(tmp_path / 'b.json')!r}], standalone_mode=False)\n"
        f"main(['predict', {str(tiny.i8)!r}, {str(img)!r}], standalone_mode=False)\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn', 'matplotlib'))\n"
        "print('HEAVY', heavy)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
    rec = json.loads((tmp_path / "b.json").read_text())[0]
    assert rec["runtime"] == "ai_edge_litert" and rec["calibration"]["bins"] and rec["roc_curves"]["mel"]
    assert [g["value"] for g in rec["subgroups"]["groups"]] == ["back", "face"]


def test_tensorflow_fallback_gives_the_same_predictions(tiny):
    from kdtool.bench.evaluate import predict_proba
    from kdtool.tflite_model import load_model

    x = load_fdata(tiny.fdata, splits=("test",)).x("test")
    preds = {}
    for name in ("ai_edge_litert", "tensorflow"):
        rt = select_runtime(name)
        assert rt.name == name
        preds[name] = predict_proba(load_model(tiny.i8, rt), x).argmax(axis=1)
    assert np.array_equal(preds["ai_edge_litert"], preds["tensorflow"])


# --------------------------------------------------------------------------- test-time augmentation
def test_tta_views_are_the_symmetries_of_the_square():
    from kdtool.bench.tta import list_tta_modes, tta_views, view_count

    x = np.random.default_rng(0).random((3, 5, 5, 2)).astype(np.float32)
    assert list_tta_modes() == ["none", "flip", "d4"]
    for mode in list_tta_modes():
        views = tta_views(x, mode)
        assert len(views) == view_count(mode) and np.array_equal(views[0], x)
        for v in views:  # each view moves pixels, never changes them
            assert v.shape == x.shape and np.array_equal(np.sort(v, axis=None), np.sort(x, axis=None))
    flip = tta_views(x, "flip")
    assert np.array_equal(flip[1], x[:, :, ::-1])
    d4 = tta_views(x, "d4")
    keys = {v.tobytes() for v in d4}
    assert len(keys) == 8  # all distinct
    for v in d4:  # a group: rotating or mirroring any view gives a view again
        assert np.rot90(v, axes=(1, 2)).copy().tobytes() in keys
        assert v[:, :, ::-1].copy().tobytes() in keys
    with pytest.raises(InputError, match="choose from: none, flip, d4"):
        tta_views(x, "d8")
    with pytest.raises(InputError, match="square"):
        tta_views(np.zeros((1, 4, 6, 3), np.float32), "d4")


def test_tta_d4_is_invariant_to_rotating_the_input(tiny):
    """The d4 average is the same for an image and its rotation or mirror; a single view is not."""
    from kdtool.bench.evaluate import predict_proba, softmax
    from kdtool.tflite_model import load_model, predict_scores

    x = load_fdata(tiny.fdata, splits=("test",)).x("test")
    for path in (tiny.f32, tiny.i8):
        model = load_model(path, select_runtime(), batch=16)
        p = predict_proba(model, x, tta="d4")
        turned = np.ascontiguousarray(np.rot90(x, k=1, axes=(1, 2)))
        mirrored = np.ascontiguousarray(x[:, ::-1])
        np.testing.assert_allclose(predict_proba(model, turned, tta="d4"), p, atol=1e-5)
        np.testing.assert_allclose(predict_proba(model, mirrored, tta="d4"), p, atol=1e-5)
        assert not np.allclose(predict_proba(model, turned), predict_proba(model, x), atol=1e-3)
        by_hand = np.mean([predict_scores(model, np.ascontiguousarray(np.rot90(v, k, axes=(1, 2))))
                           for v in (x, x[:, :, ::-1]) for k in range(4)], axis=0)  # fmt: skip
        np.testing.assert_allclose(p, softmax(by_hand), atol=1e-5)


def test_bench_and_predict_tta(tiny, tmp_path):
    from PIL import Image

    fd = load_fdata(tiny.fdata, splits=("test",))
    preds = {}
    for tta, isolate in (("none", "--no-isolate"), ("d4", "--no-isolate"), ("d4", "--isolate")):
        out = tmp_path / f"{tta}{isolate}.npy"
        recs, r = bench_json(tiny, tmp_path, tiny.i8, extra=["--tta", tta, isolate, "--predictions", out])
        assert recs[0]["tta"] == tta and recs[0]["tta_views"] == (8 if tta == "d4" else 1)
        assert ("TTA d4 (8 invokes per image" in r.output) == (tta == "d4")
        preds[tta, isolate] = np.load(out, allow_pickle=False)
    assert np.array_equal(preds["d4", "--no-isolate"], preds["d4", "--isolate"])
    images = []
    for i in range(4):
        p = tmp_path / f"lesion{i}.png"
        Image.fromarray(fd.raw_x("test")[i]).save(p)
        images.append(p)
    r = run_cli(["predict", tiny.i8, *images, "--json", "--tta", "d4"])
    assert r.exit_code == 0, r.output
    assert [x["top"][0]["class"] for x in json.loads(r.stdout)] == [CLASSES[c] for c in preds["d4", "--no-isolate"][:4]]
    bench_out = tmp_path / "b.json"
    run_cli(["bench", tiny.i8, "--data", tiny.fdata, "--runs", 2, "--json", bench_out])
    _one_line_error(run_cli(["bench", "--compare", bench_out, "--tta", "d4"]), "--tta")
