"""kdtool export --melanoma-sensitivity: the bound, the offset, and the exported files that carry it."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.cli import main
from kdtool.data import load_fdata
from kdtool.export.sensitivity import binomial_lower_bound, fewest_detections, sensitivity_offset


@pytest.mark.parametrize(
    "k,n,conf", [(66, 95, 0.95), (57, 95, 0.9), (1, 3, 0.95), (50, 50, 0.99), (0, 7, 0.95), (300, 1000, 0.999)]
)
def test_lower_bound_is_clopper_pearson(k, n, conf):
    beta = pytest.importorskip("scipy.stats").beta
    expected = 0.0 if k == 0 else beta.ppf(1 - conf, k, n - k + 1)
    assert binomial_lower_bound(k, n, conf) == pytest.approx(expected, abs=1e-9)


def test_lower_bound_rejects_impossible_counts():
    with pytest.raises(ValueError, match="0 <= k <= n"):
        binomial_lower_bound(4, 3, 0.9)
    with pytest.raises(ValueError, match="confidence"):
        binomial_lower_bound(1, 3, 1.0)


def test_fewest_detections_is_the_first_count_whose_bound_reaches_the_target():
    for n, target, conf in [(95, 0.6, 0.95), (40, 0.8, 0.9), (200, 0.5, 0.99)]:
        k = fewest_detections(n, target, conf)
        assert binomial_lower_bound(k, n, conf) >= target > binomial_lower_bound(k - 1, n, conf)


def _logits(seed: int, n: int = 400, k: int = 5, mel: int = 2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), labels] += 0.8  # informative, far from perfect
    return z, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target,conf", [(0.6, 0.95), (0.9, 0.5), (0.3, 0.0)])
def test_offset_finds_exactly_the_fewest_detections_that_bound_the_target(seed, target, conf):
    z, labels = _logits(seed)
    rec = sensitivity_offset(z, labels, 2, target, conf, floor=False)
    shifted = z.copy()
    shifted[:, 2] += rec["offset"]
    found = int(np.sum(np.argmax(shifted[labels == 2], axis=1) == 2))
    need = fewest_detections(rec["images"], target, conf)
    assert rec["detected"] == found == need  # random logits: no ties, so exactly the fewest
    assert rec["lower_bound"] >= target and rec["sensitivity"] == found / rec["images"]
    assert rec["before"] == int(np.sum(np.argmax(z[labels == 2], axis=1) == 2))
    # an offset a little smaller loses one of them: the offset is the least that reaches the target
    margins = np.sort(np.delete(z[labels == 2], 2, axis=1).max(axis=1) - z[labels == 2][:, 2])
    shifted[:, 2] = z[:, 2] + margins[need - 1] - 1e-9
    assert int(np.sum(np.argmax(shifted[labels == 2], axis=1) == 2)) == need - 1


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.3, 0.6, 0.9])
def test_as_a_floor_the_offset_only_ever_raises_the_class(seed, target):
    z, labels = _logits(seed)
    rec = sensitivity_offset(z, labels, 2, target, 0.9)
    need = fewest_detections(rec["images"], target, 0.9)
    assert rec["offset"] >= 0 and rec["detected"] == max(rec["before"], need)
    assert (rec["offset"] == 0) == (rec["before"] >= need)


def test_without_the_floor_a_model_that_finds_more_gives_the_surplus_back():
    z, labels = _logits(0)
    z[:, 2] += 3.0  # calls nearly everything class 2
    rec = sensitivity_offset(z, labels, 2, 0.5, 0.0, floor=False)
    assert rec["offset"] < 0 and rec["before"] > rec["detected"]
    assert sensitivity_offset(z, labels, 2, 0.5, 0.0)["offset"] == 0.0


def test_offset_survives_tied_margins():
    z = np.zeros((6, 3))
    z[:, 0] = 1.0  # every class-1 image has the same margin
    rec = sensitivity_offset(z, np.array([1, 1, 1, 1, 0, 0]), 1, 0.5, 0.0)
    assert rec["detected"] >= 2 and rec["sensitivity"] >= 0.5


def test_offset_refuses_too_few_images_and_an_absent_class():
    z, labels = _logits(1, n=20)
    with pytest.raises(ValueError, match=r"cannot show sensitivity >= 0.95 at confidence 0.95 \(finding all"):
        sensitivity_offset(z, labels, 2, 0.95, 0.95)
    with pytest.raises(ValueError, match="no image of the class"):
        sensitivity_offset(z, labels, 7, 0.5)


def _tiny(fd):
    import keras

    from kdtool.distill.student import build_student

    keras.utils.set_random_seed(3)
    return build_student(fd.image_shape, fd.num_classes, filters=(8,), dense_units=8, dropout=0.0)


def test_export_holds_validation_melanoma_sensitivity_in_the_written_file(tmp_path):
    from kdtool.export.check import run_tflite
    from kdtool.metrics import melanoma_index

    data = write_fdata(tmp_path / "FData", n=(60, 90, 12), class_names=["akiec", "mel", "nv"])
    fd = load_fdata(data)
    model = _tiny(fd)
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "o"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(path),
            "--data",
            str(data),
            "--out",
            str(out),
            "--quantize",
            "float32",
            "--prior-shift",
            "0.5",
            "--melanoma-sensitivity",
            "0.8",
            "--sensitivity-confidence",
            "0.9",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "operating point: mel logit" in result.output
    point = json.loads((out / "m.float32.json").read_text())["operating_point"]
    held = point["melanoma_sensitivity"]
    assert point["prior_shift"] == 0.5 and held["class"] == "mel" and held["chosen_on"] == "val"
    assert held["target"] == 0.8 and held["confidence"] == 0.9 and held["images"] == 30
    assert held["lower_bound"] >= 0.8 and held["detected"] == fewest_detections(30, 0.8, 0.9)
    # the file is the model + prior shift + the melanoma offset, and finds what the record says
    x, y = fd.x("val"), fd.labels("val")
    mel = melanoma_index(fd.class_names)
    expected = model.predict(x, verbose=0) + np.asarray(point["bias_added"])
    expected[:, mel] += held["offset"]
    got = run_tflite((out / "m.float32.tflite").read_bytes(), x)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert int(np.sum(np.argmax(got[y == mel], axis=1) == mel)) == held["detected"]
    # kdtool bench carries the operating point into its JSON and CSV
    bench = CliRunner().invoke(
        main,
        [
            "bench",
            str(out / "m.float32.tflite"),
            "--data",
            str(data),
            "--split",
            "val",
            "--runs",
            "0",
            "--json",
            str(tmp_path / "b.json"),
            "--csv",
            str(tmp_path / "b.csv"),
        ],
    )
    assert bench.exit_code == 0, bench.output
    assert "operating points set at export: m.float32.tflite: prior shift 0.5, mel logit" in bench.output
    rec = json.loads((tmp_path / "b.json").read_text())[0]
    assert rec["operating_point"] == point
    assert rec["melanoma_sensitivity"] == pytest.approx(held["sensitivity"])
    row = next(csv.DictReader(io.StringIO((tmp_path / "b.csv").read_text())))
    assert float(row["prior_shift"]) == 0.5 and float(row["melanoma_offset"]) == pytest.approx(held["offset"])


@pytest.mark.parametrize(
    "names,args,message",
    [
        (
            ["akiec", "bcc", "nv"],
            ["--melanoma-sensitivity", "0.6"],
            "--melanoma-sensitivity needs a class named 'mel' or 'melanoma' (classes: akiec, bcc, nv)",
        ),
        (
            ["akiec", "mel", "nv"],
            ["--melanoma-sensitivity", "0.99"],
            "--melanoma-sensitivity on the validation split: 4 validation melanoma image(s) cannot show sensitivity "
            ">= 0.99",
        ),
    ],
)
def test_export_refuses_a_sensitivity_it_cannot_hold_in_one_line(tmp_path, names, args, message):
    data = write_fdata(tmp_path / "FData", n=(30, 12, 6), class_names=names)
    path = tmp_path / "m.keras"
    _tiny(load_fdata(data)).save(path)
    out = tmp_path / "o"
    result = CliRunner().invoke(
        main, ["export", str(path), "--data", str(data), "--out", str(out), "--quantize", "float32", *args]
    )
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert message in lines[0] and str(data.name) in lines[0]
    assert not list(out.glob("*.tflite"))


@pytest.mark.slow
def test_by_default_export_holds_seventy_percent_where_it_can_and_says_where_it_cannot(tmp_path):
    runner = CliRunner()

    def export(names, n, *args):
        data = write_fdata(tmp_path / f"F{len(list(tmp_path.iterdir()))}", n=n, class_names=names)
        path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.keras"
        _tiny(load_fdata(data)).save(path)
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        result = runner.invoke(
            main, ["export", str(path), "--data", str(data), "--out", str(out), "--quantize", "float32", *args]
        )
        assert result.exit_code == 0, result.output
        export.last = (out / f"{path.stem}.float32.tflite", data)
        return result.output, json.loads((out / f"{path.stem}.float32.json").read_text())["operating_point"]

    # enough validation melanomas (30): held at 0.7 with 95% confidence, as if asked for
    output, point = export(["akiec", "mel", "nv"], (60, 90, 12))
    held = point["melanoma_sensitivity"]
    assert (held["target"], held["confidence"]) == (0.7, 0.95) and held["lower_bound"] >= 0.7
    assert held["detected"] == max(held["before"], fewest_detections(30, 0.7, 0.95)) and held["offset"] >= 0
    assert "operating point: mel logit" in output
    # too few (4): exported as trained, with a note and the reason in the sidecar
    output, point = export(["akiec", "mel", "nv"], (30, 12, 6))
    assert point["melanoma_sensitivity"]["skipped"].startswith("4 validation melanoma image(s) cannot show")
    assert "note: melanoma sensitivity not held at 70%" in output
    tflite, data = export.last
    bench = runner.invoke(main, ["bench", str(tflite), "--data", str(data), "--runs", "0"])
    assert bench.exit_code == 0 and "melanoma floor 70% not held" in bench.output, bench.output
    # no melanoma class: nothing to hold, nothing said
    output, point = export(["akiec", "bcc", "nv"], (30, 12, 6))
    assert point == {"prior_shift": 0.0} and "melanoma" not in output
    # 0 switches it off
    output, point = export(["akiec", "mel", "nv"], (60, 90, 12), "--melanoma-sensitivity", "0")
    assert point == {"prior_shift": 0.0} and "operating point" not in output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prior-shift", "nope"], "'nope' is not a number in [0, 1]"),
        (["--prior-shift", "1.5"], "not in the range"),
        (["--prior-shift", "auto"], "'auto' is no longer available; give TAU, a number in [0, 1]"),
        (["--floor-on", "both"], "'both' is not one of 'val', 'oof', 'auto'"),
        (["--min-balanced-accuracy", "0.6"], "No such option '--min-balanced-accuracy'"),
    ],
)
def test_removed_and_out_of_range_operating_points_are_refused_in_one_error_line(tmp_path, args, message):
    result = CliRunner().invoke(main, ["export", str(tmp_path / "m.keras"), *args])
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
