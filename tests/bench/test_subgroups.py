"""``kdtool bench --by COLUMN``, calibration, ROC curves, ``--plots`` and the operating point, with tiny models."""

from __future__ import annotations

import csv
import io
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import write_fdata

from bench.test_bench import CLASSES, SIZE, _one_line_error, build_tiny_models, run_cli
from kdtool.data import load_fdata
from kdtool.intervals import clopper_pearson_interval
from kdtool.metrics import expected_calibration_error

SITES = ["back", "face", "ear"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """FData (4 classes, 60 test images) with an image_ids.csv (lesions of 2 images, a site, an age) + tiny models."""
    root = tmp_path_factory.mktemp("subgroups")
    fdata = write_fdata(root / "FData", n=(240, 8, 60), k=len(CLASSES), size=SIZE, class_names=CLASSES, seed=1)
    models = build_tiny_models(root / "models", fdata)
    plain = root / "plain"
    shutil.copytree(fdata, plain)  # the same data without image_ids.csv
    rows = ["split,position,image_id,lesion_id,site,age"]
    for split, n in (("train", 240), ("val", 8), ("test", 60)):
        for i in range(n):
            site = "back" if i < 36 else "face" if i < 56 else "ear"  # 36, 20, 4 test images
            age = "" if i == 59 else f"{15 + i}.0"
            rows.append(f"{split},{i},ISIC_{split}{i},L{split}{i // 2},{site},{age}")
    (fdata / "image_ids.csv").write_text("\n".join(rows) + "\n")
    return SimpleNamespace(root=root, fdata=fdata, plain=plain, f32=models["float32"], i8=models["int8"])


def _bench(tiny, tmp_path, *extra, models=None, data=None):
    out = tmp_path / "b.json"
    models = models or [tiny.f32, tiny.i8]
    r = run_cli(["bench", *models, "--data", data or tiny.fdata, "--runs", 0, "--json", out, *extra])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text()), r


def test_by_column_reports_every_group_with_intervals(tiny, tmp_path):
    recs, r = _bench(tiny, tmp_path, "--by", "site", "--bootstrap", 100, "--csv", tmp_path / "b.csv")
    for rec in recs:
        sub = rec["subgroups"]
        assert sub["column"] == "site" and sub["banding"] is None and sub["class_of_concern"] == "mel"
        groups = {g["value"]: g for g in sub["groups"]}
        assert set(groups) == set(SITES) and [groups[s]["n"] for s in SITES] == [36, 20, 4]
        assert [groups[s]["lesions"] for s in SITES] == [18, 10, 2]
        assert [groups[s]["small"] for s in SITES] == [False, True, True]
        assert sub["worst"]["value"] == "back"  # the only group of >= 30 images
        assert sub["worst"]["balanced_accuracy"] == groups["back"]["balanced_accuracy"]
        weighted = sum(g["accuracy"] * g["n"] for g in sub["groups"]) / 60
        assert weighted == pytest.approx(rec["accuracy"])  # the groups partition the split
        back = groups["back"]
        lo, hi = back["ci95"]["accuracy"]
        assert lo <= back["accuracy"] <= hi and lo < hi
        if back["positives"]:
            k = round(back["sensitivity"] * back["positives"])
            assert back["ci95"]["sensitivity"] == clopper_pearson_interval(k, back["positives"]).as_list()
    assert "tiny.int8.tflite by site (image_ids.csv)" in r.output and "ear *" in r.output
    assert "tiny.float32.tflite: worst group back (lowest balanced accuracy among groups of >= 30 images)" in r.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "b.csv").read_text())))
    assert rows[0]["by"] == "site" and rows[0]["worst_group"] == "back" and rows[0]["worst_group_n"] == "36"
    again, _ = _bench(tiny, tmp_path, "--by", "site", "--bootstrap", 100, "--no-isolate")
    assert again[0]["subgroups"] == recs[0]["subgroups"]  # seeded, and the same in and out of the child process


def test_by_age_is_banded_in_decades(tiny, tmp_path):
    recs, r = _bench(tiny, tmp_path, "--by", "AGE", "--bootstrap", 0, models=[tiny.i8])
    sub = recs[0]["subgroups"]
    assert sub["column"] == "age" and sub["banding"] == "decades"
    values = [g["value"] for g in sub["groups"]]
    assert values == ["10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "unknown"]
    assert sub["groups"][0]["n"] == 5 and sub["groups"][-1]["n"] == 1 and sub["groups"][0]["ci95"] is None
    assert sub["worst"] is None and "no worst group named (none has >= 30 images)" in r.output
    assert "by age in decades" in r.output


def test_by_a_missing_column_or_without_image_ids_is_one_line(tiny, tmp_path):
    line = _one_line_error(run_cli(["bench", tiny.i8, "--data", tiny.fdata, "--by", "sex"]), "image_ids.csv")
    assert "--by sex" in line and "columns: split, position, image_id, lesion_id, site, age" in line
    line = _one_line_error(run_cli(["bench", tiny.i8, "--data", tiny.plain, "--by", "site"]), "image_ids.csv")
    assert "not found" in line
    line = _one_line_error(run_cli(["bench", tiny.i8, "--data", tiny.fdata, "--by", "image_id"]), "image_ids.csv")
    assert "60 distinct 'image_id' values in the test split (at most 50" in line
    bad = run_cli(["bench", "--compare", tmp_path / "x.json", "--by", "site"])
    assert "--by applies to benchmarking models" in _one_line_error(bad, "--by")


def test_calibration_and_roc_for_float_and_int8(tiny, tmp_path):
    from kdtool.bench.evaluate import predict_proba
    from kdtool.litert import select_runtime
    from kdtool.tflite_model import load_model

    recs, r = _bench(tiny, tmp_path, "--bootstrap", 100, data=tiny.plain)
    x, y = load_fdata(tiny.plain, splits=("test",)).x("test"), load_fdata(tiny.plain).labels("test")
    for rec, path in zip(recs, (tiny.f32, tiny.i8), strict=True):
        assert rec["subgroups"] is None
        cal = rec["calibration"]
        probs = predict_proba(load_model(path, select_runtime()), x)
        assert 0.0 <= cal["ece"] <= 1.0 and cal["ece"] == pytest.approx(expected_calibration_error(y, probs), abs=1e-9)
        assert cal["ece"] == rec["ece"] and cal["ece_ci95"][0] <= cal["ece"] <= cal["ece_ci95"][1]
        assert sum(cal["bins"]["count"]) == 60 and len(cal["bins"]["edges"]) == 16
        assert set(rec["roc_curves"]) == set(CLASSES)
        for curve in rec["roc_curves"].values():
            assert curve["fpr"][0] == curve["tpr"][0] == 0.0 and curve["fpr"][-1] == curve["tpr"][-1] == 1.0
    assert "ECE" in r.output.splitlines()[0] and recs[1]["mode"] == "int8"


def test_plots_write_pngs_or_a_note(tiny, tmp_path):
    plots = tmp_path / "plots"
    _, r = _bench(tiny, tmp_path, "--bootstrap", 0, "--plots", plots)
    try:
        import matplotlib  # noqa: F401 - only whether it is installed
    except ImportError:
        assert "matplotlib not installed: no plots" in r.output and not plots.exists()
        return
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["tiny.float32.reliability.png", "tiny.float32.roc.png", "tiny.int8.reliability.png",
                     "tiny.int8.roc.png"]  # fmt: skip
    assert all((plots / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    assert "plots: 4 PNG files" in r.output
    (tmp_path / "file").write_text("x")
    assert "is a file" in _one_line_error(run_cli(["bench", tiny.i8, "--plots", tmp_path / "file"]), "file")


def test_new_and_old_operating_points_print(tiny, tmp_path):
    models = tmp_path / "m"
    models.mkdir()
    points = {
        "new": {"objective": "balanced", "fitted_on": "val", "fit_images": 8, "tau": -0.3, "bias": [0.0] * 4,
                "temperature": None, "min_recall": [], "summary": "balanced (tau -0.30, fitted on val, 8 images)"},
        "old": {"prior_shift": 0.5, "majority_offset": {"class": "nv", "offset": 1.5, "train_share": 0.3}},
    }  # fmt: skip
    paths = []
    for name, point in points.items():
        path = models / f"{name}.int8.tflite"
        shutil.copy(tiny.i8, path)
        side = json.loads(tiny.i8.with_suffix(".json").read_text())
        path.with_suffix(".json").write_text(json.dumps(dict(side, operating_point=point)))
        paths.append(path)
    recs, r = _bench(tiny, tmp_path, "--bootstrap", 0, "--csv", tmp_path / "b.csv", models=paths)
    assert recs[0]["operating_point"] == points["new"] and recs[1]["operating_point"] == points["old"]
    assert "new.int8.tflite: balanced (tau -0.30, fitted on val, 8 images)" in r.output
    assert "old.int8.tflite: prior shift 0.5, nv logit +1.5" in r.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "b.csv").read_text())))
    assert rows[0]["operating_objective"] == "balanced" and rows[1]["prior_shift"] == "0.5"
    assert np.isclose(float(rows[0]["operating_tau"]), -0.3) and rows[0]["majority_offset"] == ""
