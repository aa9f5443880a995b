"""kdtool export --min-recall: the Clopper-Pearson bound, the offset, and the exported files that carry it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.cli import main
from kdtool.data import load_fdata
from kdtool.errors import InputError
from kdtool.export.min_recall import binomial_lower_bound, fewest_detections, parse_min_recall, recall_offset


@pytest.mark.parametrize(
    "k,n,conf", [(66, 95, 0.95), (57, 95, 0.9), (1, 3, 0.95), (50, 50, 0.99), (0, 7, 0.95), (300, 1000, 0.999)]
)
def test_lower_bound_is_clopper_pearson(k, n, conf):
    beta = pytest.importorskip("scipy.stats").beta
    expected = 0.0 if k == 0 else beta.ppf(1 - conf, k, n - k + 1)
    assert binomial_lower_bound(k, n, conf) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("k,n,conf", [(66, 95, 0.95), (7, 10, 0.9), (30, 30, 0.975)])
def test_lower_bound_is_the_lower_end_of_the_two_sided_interval_at_twice_the_error(k, n, conf):
    from kdtool.intervals import clopper_pearson_interval

    assert binomial_lower_bound(k, n, conf) == pytest.approx(clopper_pearson_interval(k, n, 2 * conf - 1).low, abs=1e-9)


def test_lower_bound_rejects_impossible_counts():
    with pytest.raises(ValueError, match="0 <= k <= n"):
        binomial_lower_bound(4, 3, 0.9)
    with pytest.raises(ValueError, match="confidence"):
        binomial_lower_bound(1, 3, 1.0)


def test_fewest_detections_is_the_first_count_whose_bound_reaches_the_target():
    for n, target, conf in [(95, 0.6, 0.95), (40, 0.8, 0.9), (200, 0.5, 0.99)]:
        k = fewest_detections(n, target, conf)
        assert binomial_lower_bound(k, n, conf) >= target > binomial_lower_bound(k - 1, n, conf)


def _logits(seed: int, n: int = 400, k: int = 5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), labels] += 0.8  # informative, far from perfect
    return z, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target,conf", [(0.6, 0.95), (0.9, 0.5), (0.5, 0.0)])
def test_offset_is_the_smallest_that_finds_the_fewest_detections_that_bound_the_target(seed, target, conf):
    z, labels = _logits(seed)
    rec = recall_offset(z, labels, 2, target, conf)
    own = z[labels == 2]
    need = fewest_detections(rec["images"], target, conf)
    shifted = own.copy()
    shifted[:, 2] += rec["offset"]
    found = int(np.sum(np.argmax(shifted, axis=1) == 2))
    assert rec["before"] == int(np.sum(np.argmax(own, axis=1) == 2)) < need  # these targets need an offset
    assert rec["detected"] == found == need  # random logits: no ties, so exactly the fewest
    assert rec["lower_bound"] >= target and rec["recall"] == found / rec["images"]
    # a little less loses one: the offset is the least that reaches the target
    margins = np.sort(np.delete(own, 2, axis=1).max(axis=1) - own[:, 2])
    shifted[:, 2] = own[:, 2] + margins[need - 1] - 1e-9
    assert int(np.sum(np.argmax(shifted, axis=1) == 2)) == need - 1
    assert margins[need - 1] <= rec["offset"] < margins[need]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.1, 0.3, 0.9])
def test_the_offset_never_lowers_the_class(seed, target):
    z, labels = _logits(seed)
    rec = recall_offset(z, labels, 2, target, 0.9)
    need = fewest_detections(rec["images"], target, 0.9)
    assert rec["offset"] >= 0 and rec["detected"] == max(rec["before"], need)
    assert (rec["offset"] == 0) == (rec["before"] >= need)


def test_offset_survives_tied_margins():
    z = np.zeros((6, 3))
    z[:, 0] = 1.0  # every class-1 image has the same margin
    rec = recall_offset(z, np.array([1, 1, 1, 1, 0, 0]), 1, 0.5, 0.0)
    assert rec["detected"] >= 2 and rec["recall"] >= 0.5 and rec["offset"] > 1.0


def test_offset_refuses_too_few_images_and_an_absent_class():
    z, labels = _logits(1, n=20)
    with pytest.raises(ValueError, match=r"cannot show recall >= 0.95 at confidence 0.95 \(finding all"):
        recall_offset(z, labels, 2, 0.95, 0.95)
    with pytest.raises(ValueError, match="no image of the class"):
        recall_offset(z, labels, 7, 0.5, 0.95)


@pytest.mark.parametrize(
    "values,message",
    [
        (["mel"], "--min-recall 'mel': expected CLASS=TARGET"),
        (["=0.5"], "--min-recall '=0.5': expected CLASS=TARGET"),
        (["mel=high"], "--min-recall mel=high: TARGET must be a number in (0, 1]"),
        (["mel=0"], "--min-recall mel=0: TARGET must be a number in (0, 1]"),
        (["mel=1.2"], "--min-recall mel=1.2: TARGET must be a number in (0, 1]"),
        (["mel=nan"], "--min-recall mel=nan: TARGET must be a number in (0, 1]"),
        (["mel=0.5", "mel=0.7"], "--min-recall mel=0.7: class 'mel' is named more than once"),
    ],
)
def test_malformed_min_recall_is_one_line(values, message):
    with pytest.raises(InputError) as info:
        parse_min_recall(values)
    assert info.value.format_message().startswith(message) and "\n" not in info.value.format_message()
    assert parse_min_recall(["mel = 1", "bcc=0.25"]) == [("mel", 1.0), ("bcc", 0.25)]


# ----------------------------------------------------------------------------- through kdtool export


def _tiny(fd, seed=3):
    import keras

    from kdtool.distill.student import build_student

    keras.utils.set_random_seed(seed)
    return build_student(fd.image_shape, fd.num_classes, filters=(8,), dense_units=8, dropout=0.0)


def test_export_holds_a_min_recall_on_validation_in_the_written_file(tmp_path):
    from kdtool.export.check import run_tflite

    data = write_fdata(tmp_path / "FData", n=(60, 90, 12), class_names=["akiec", "mel", "nv"])
    fd = load_fdata(data)
    model = _tiny(fd)
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "o"
    args = ["--quantize", "float32", "--min-recall", "nv=0.8", "--confidence", "0.9"]
    result = CliRunner().invoke(main, ["export", str(path), "--data", str(data), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    point = json.loads((out / "m.float32.json").read_text())["operating_point"]
    x, y = fd.x("val"), fd.labels("val")
    z = model.predict(x, verbose=0)
    expected = recall_offset(z, y, 2, 0.8, 0.9)  # the same fit, on the model's validation logits
    held = point["min_recall"][0]
    assert (point["objective"], point["fitted_on"], point["fit_images"], point["tau"]) == (
        "as-trained",
        "val",
        90,
        None,
    )
    assert (held["class"], held["target"], held["confidence"], held["images"]) == ("nv", 0.8, 0.9, 30)
    assert held["offset"] == pytest.approx(expected["offset"]) and held["detected"] == expected["detected"]
    assert held["lower_bound"] >= 0.8 and held["reached"] is True
    np.testing.assert_allclose(point["bias"], [0.0, 0.0, held["offset"]])
    assert f"operating point: {point['summary']}" in result.output
    assert (
        point["summary"].startswith("as trained; nv recall >= 0.80 at 90%: +")
        and "fitted on val, 90 images" in (point["summary"])
    )
    # the written file is the model plus that bias, and finds what the record says
    got = run_tflite((out / "m.float32.tflite").read_bytes(), x)
    np.testing.assert_allclose(got, z + np.asarray(point["bias"]), atol=1e-4)
    assert int(np.sum(np.argmax(got[y == 2], axis=1) == 2)) == held["detected"]


@pytest.mark.parametrize(
    "names,args,message",
    [
        (
            ["akiec", "bcc", "nv"],
            ["--min-recall", "mel=0.6"],
            "--min-recall mel=0.6: the data have no class 'mel' (classes: akiec, bcc, nv)",
        ),
        (
            ["akiec", "mel", "nv"],
            ["--min-recall", "mel=0.99"],
            "y_val.npy: --min-recall mel=0.99: 4 validation mel image(s) cannot show recall >= 0.99 at confidence 0.95",
        ),
        (
            ["akiec", "mel", "nv"],
            ["--min-recall", "mel=1.5"],
            "--min-recall mel=1.5: TARGET must be a number in (0, 1]",
        ),
        (["akiec", "mel", "nv"], ["--min-recall", "mel:0.5"], "--min-recall 'mel:0.5': expected CLASS=TARGET"),
    ],
)
def test_export_refuses_a_min_recall_it_cannot_hold_in_one_line(tmp_path, names, args, message):
    data = write_fdata(tmp_path / "FData", n=(30, 12, 6), class_names=names)
    path = tmp_path / "m.keras"
    _tiny(load_fdata(data)).save(path)
    out = tmp_path / "o"
    result = CliRunner().invoke(
        main, ["export", str(path), "--data", str(data), "--out", str(out), "--quantize", "float32", *args]
    )
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert message in lines[0] and "Traceback" not in result.output
    if "data have no class" in message or "cannot show" in message:
        assert str(data.name) in lines[0]
    assert not list(out.glob("*.tflite"))
