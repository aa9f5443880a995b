"""Bench calibration, ROC curves, subgroup metrics and the operating-point note, on arrays (no model, no TensorFlow)."""

from __future__ import annotations

import csv
import io
import sys

import numpy as np
import pytest

from kdtool.bench import curves, report
from kdtool.bench.curves import calibration_field, roc_curves, write_plots
from kdtool.bench.subgroups import (
    MAX_GROUPS,
    MIN_GROUP_IMAGES,
    _group_metrics,
    age_band,
    read_subgroup_column,
    subgroup_field,
)
from kdtool.errors import InputError
from kdtool.intervals import clopper_pearson_interval, resample_indices
from kdtool.metrics import classification_report, expected_calibration_error, roc_auc_ovr, roc_points

NAMES = ["nv", "mel", "bkl"]


def _data(n=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- calibration
def test_calibration_ece_bins_and_interval():
    y, p = _data()
    cal = calibration_field(y, p, n_boot=200)
    assert cal["ece"] == expected_calibration_error(y, p)
    assert 0.0 <= cal["ece_ci95"][0] < cal["ece"] < cal["ece_ci95"][1] <= 1.0
    bins = cal["bins"]
    assert len(bins["edges"]) == 16 and sum(bins["count"]) == len(y)
    gap = sum(c * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True) if c)
    assert gap / len(y) == pytest.approx(cal["ece"], abs=1e-5)  # the bins add up to the ECE
    assert calibration_field(y, p, n_boot=200) == cal  # seeded
    assert calibration_field(y, p, n_boot=0)["ece_ci95"] is None
    lesions = np.repeat(np.arange(len(y) // 5), 5)
    assert calibration_field(y, p, lesions, n_boot=200)["ece_ci95"] != cal["ece_ci95"]  # whole lesions resampled


def test_weighted_ece_equals_the_direct_one_on_resamples():
    y, p = _data(seed=4)
    ece = curves._weighted_ece(y, p, 15)
    for idx in [np.arange(len(y)), *resample_indices(len(y), n_boot=5, seed=2)]:
        assert ece(y[idx], idx)["ece"] == pytest.approx(expected_calibration_error(y[idx], p[idx]), abs=1e-12)


def test_roc_curves_per_class():
    y, p = _data(n=600, seed=1)
    rc = roc_curves(y, p, NAMES)
    assert list(rc) == NAMES
    for c, name in enumerate(NAMES):
        fpr, tpr = rc[name]["fpr"], rc[name]["tpr"]
        assert len(fpr) == len(tpr) <= 201 and (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
        ref = roc_points(y == c, p[:, c], 201)[0]
        assert fpr == pytest.approx(ref.tolist(), abs=1e-6)
    assert roc_curves(np.zeros(4, int), p[:4], NAMES)["mel"] is None  # a class absent from the split


def test_plots_without_matplotlib_are_a_note(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    written, note = write_plots([{"model": "s.tflite", "roc_curves": {}, "calibration": {}}], tmp_path / "p")
    assert written == [] and note == "matplotlib not installed: no plots" and not (tmp_path / "p").exists()


# --------------------------------------------------------------------------- subgroups
def test_group_metrics_by_weights_equal_the_direct_ones():
    y, p = _data(n=90, seed=3)
    p = np.round(p, 1)  # ties
    metrics = _group_metrics(y, p)
    for idx in [np.arange(90), *resample_indices(90, np.arange(90) // 3, n_boot=8, seed=0)]:
        m, rep = metrics(y[idx], idx), classification_report(y[idx], p[idx].argmax(axis=1), NAMES)
        assert m["accuracy"] == pytest.approx(rep["accuracy"])
        assert m["balanced_accuracy"] == pytest.approx(rep["balanced_accuracy"])
        assert m["roc_auc_macro"] == pytest.approx(roc_auc_ovr(y[idx], p[idx]), abs=1e-12)


def test_subgroup_field_metrics_flags_and_worst():
    y, p = _data(n=200, seed=5)
    p[:40] = p[:40, ::-1]  # group "a" gets worse decisions
    sites = np.array(["a"] * 40 + ["b"] * 140 + ["c"] * 20)
    lesions = np.arange(200) // 2
    f = subgroup_field(y, p, NAMES, 1, sites, "site", lesions, n_boot=100)
    assert f["column"] == "site" and f["class_of_concern"] == "mel" and f["min_images"] == MIN_GROUP_IMAGES
    groups = {g["value"]: g for g in f["groups"]}
    assert [g["value"] for g in f["groups"]] == ["a", "b", "c"]
    assert [groups[v]["small"] for v in "abc"] == [False, False, True] and groups["b"]["lesions"] == 70
    for value, g in groups.items():
        m = sites == value
        rep = classification_report(y[m], p[m].argmax(axis=1), NAMES)
        assert g["n"] == m.sum() and g["accuracy"] == pytest.approx(rep["accuracy"])
        assert g["balanced_accuracy"] == pytest.approx(rep["balanced_accuracy"])
        assert g["roc_auc_macro"] == pytest.approx(roc_auc_ovr(y[m], p[m]))
        pos, called = y[m] == 1, p[m].argmax(axis=1) == 1
        assert g["positives"] == pos.sum() and g["sensitivity"] == pytest.approx(rep["per_class"]["mel"]["recall"])
        assert g["ci95"]["sensitivity"] == clopper_pearson_interval(int((pos & called).sum()), int(pos.sum())).as_list()
        lo, hi = g["ci95"]["balanced_accuracy"]
        assert lo <= g["balanced_accuracy"] <= hi
    worst = min((groups["a"], groups["b"]), key=lambda g: g["balanced_accuracy"])
    assert worst["value"] == "a"  # never the small group c, whatever its score
    assert f["worst"] == {"value": "a", "n": 40, "balanced_accuracy": worst["balanced_accuracy"],
                          "ci95": worst["ci95"]["balanced_accuracy"]}  # fmt: skip
    assert subgroup_field(y, p, NAMES, 1, sites, "site", lesions, n_boot=100) == f  # seeded
    none = subgroup_field(y[:20], p[:20], NAMES, None, sites[:20], "site", n_boot=0)
    assert none["worst"] is None and none["groups"][0]["ci95"] is None and "sensitivity" not in none["groups"][0]


def test_age_bands_in_age_order():
    assert [age_band(a) for a in ("0", "9.9", "10", "79", "80", "95.0", "", "unknown", "nan")] == [
        "0-9", "0-9", "10-19", "70-79", "80+", "80+", "unknown", "unknown", "unknown"]  # fmt: skip
    ages = np.array(["80+", "unknown", "10-19", "0-9", "40-49"])
    f = subgroup_field(np.zeros(5, int), np.eye(3)[np.zeros(5, int)], NAMES, None, ages, "age", n_boot=0,
                       banding="decades")  # fmt: skip
    assert [g["value"] for g in f["groups"]] == ["0-9", "10-19", "40-49", "80+", "unknown"]


def _ids(folder, rows, header="split,position,lesion_id,localization,Age"):
    folder.mkdir(exist_ok=True)
    (folder / "image_ids.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return folder


def test_read_subgroup_column_and_its_one_line_errors(tmp_path):
    rows = [f"test,{i},L{i // 2},{'back' if i % 3 else ''},{20 + i}.0" for i in range(6)] + ["val,0,V0,face,50"]
    root = _ids(tmp_path / "d", rows)
    col = read_subgroup_column(root, "test", 6, "localization")
    assert col.values.tolist() == ["(missing)", "back", "back", "(missing)", "back", "back"] and col.banding is None
    age = read_subgroup_column(root, "test", 6, "age")  # any case; banded
    assert age.name == "Age" and age.banding == "decades" and age.values.tolist()[:2] == ["20-29", "20-29"]
    with pytest.raises(InputError, match=r"no such column \(columns: split, position, lesion_id, localization, Age\)"):
        read_subgroup_column(root, "test", 6, "sex")
    with pytest.raises(InputError, match="places images"):
        read_subgroup_column(root, "test", 6, "position")
    with pytest.raises(InputError, match="do not cover"):
        read_subgroup_column(root, "test", 7, "localization")
    with pytest.raises(InputError, match="image_ids.csv not found"):
        read_subgroup_column(tmp_path, "test", 6, "sex")
    many = _ids(tmp_path / "m", [f"test,{i},L{i},x{i},1" for i in range(MAX_GROUPS + 1)])
    with pytest.raises(InputError, match="distinct"):
        read_subgroup_column(many, "test", MAX_GROUPS + 1, "localization")


def test_format_subgroups_names_the_worst_group():
    from kdtool.bench.subgroups import format_subgroups

    y, p = _data(n=100, seed=7)
    sites = np.array(["trunk"] * 70 + ["ear"] * 30)
    rec = {"model": "s.int8.tflite", "subgroups": subgroup_field(y, p, NAMES, 1, sites, "localization", n_boot=50)}
    text = format_subgroups([rec, {"model": "old.tflite"}])
    assert "s.int8.tflite by localization" in text and "mel sens" in text and "bootstrap over the lesions" in text
    worst = rec["subgroups"]["worst"]
    assert f"s.int8.tflite: worst group {worst['value']} (lowest balanced accuracy among groups of >= 30" in text
    assert "old.tflite" not in text and format_subgroups([{"model": "x"}]) == ""


# --------------------------------------------------------------------------- operating point in the table and CSV
SUMMARY = "balanced (tau -0.30, fitted on val, 852 images); mel recall >= 0.70 at 95%: +1.23"
NEW_POINT = {"objective": "balanced", "fitted_on": "val", "fit_images": 852, "tau": -0.3, "bias": [0.1, -0.2, 0.0],
             "temperature": 1.4, "min_recall": [{"class": "mel", "target": 0.7, "confidence": 0.95, "offset": 1.23,
                                                  "detected": 40, "images": 50, "lower_bound": 0.71, "reached": True}],
             "summary": SUMMARY}  # fmt: skip
OLD_POINT = {"prior_shift": 0.5, "majority_offset": {"class": "nv", "offset": 1.5, "train_share": 0.67},
             "melanoma_sensitivity": {"class": "mel", "offset": 0.4, "detected": 6, "images": 9, "target": 0.6,
                                      "confidence": 0.95}}  # fmt: skip


def test_operating_point_new_and_old_sidecars_in_table_and_csv():
    assert report.operating_point_note(NEW_POINT) == NEW_POINT["summary"]
    assert (
        report.operating_point_note(OLD_POINT)
        == "prior shift 0.5, nv logit +1.5, mel logit +0.400 (val 6/9, >= 60% at 95%)"
    )
    recs = [
        {"model": "new.tflite", "operating_point": NEW_POINT},
        {"model": "old.tflite", "operating_point": OLD_POINT},
    ]
    table = report.format_table(recs)
    assert f"new.tflite: {NEW_POINT['summary']}" in table and "old.tflite: prior shift 0.5" in table
    rows = list(csv.DictReader(io.StringIO(report.to_csv(recs))))
    assert (rows[0]["operating_objective"], rows[0]["operating_fitted_on"], rows[0]["operating_tau"]) == (
        "balanced", "val", "-0.3")  # fmt: skip
    assert rows[0]["operating_temperature"] == "1.4" and rows[0]["operating_min_recall"] == "mel>=0.7:+1.230"
    assert rows[0]["prior_shift"] == rows[0]["majority_offset"] == ""
    assert (rows[1]["prior_shift"], rows[1]["majority_offset"], rows[1]["melanoma_offset"]) == ("0.5", "1.5", "0.4")
    assert rows[1]["operating_objective"] == ""
