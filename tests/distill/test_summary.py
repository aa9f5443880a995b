"""summary.csv and the printed ranking (kdtool.distill.summary): 95% intervals from each model's kept logits,
grouped by lesion when image_ids.csv names them, the paired difference to the student alone, and runs whose
models were finished by a kdtool that kept no logits. The models are fake: logits written as finish_model
writes them, so these tests need no TensorFlow (except the last, which runs finish_model on a tiny model)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import write_fdata

from kdtool.data import load_fdata
from kdtool.distill.evaluate import split_metrics
from kdtool.distill.outputs import headline, save_logits
from kdtool.distill.summary import interval_lines, print_summary, summary_columns, write_summary
from kdtool.intervals import clopper_pearson_interval

CLASSES = ["nv", "mel", "bcc"]


def _fake_run(tmp_path: Path, n_val: int = 60, n_test: int = 30):
    fd = load_fdata(write_fdata(tmp_path / "FData", n=(12, n_val, n_test), class_names=CLASSES))
    out = tmp_path / "run"
    out.mkdir()
    warnings: list[str] = []
    return SimpleNamespace(out=out, fd=fd, records={}, doc={}, warn=warnings.append, warnings=warnings)


def _logits(labels: np.ndarray, wrong: np.ndarray, seed: int) -> np.ndarray:
    """Logits that call every image right except where ``wrong`` (there: the next class), with some noise."""
    noise = np.random.default_rng(seed).uniform(0, 0.5, size=(len(labels), len(CLASSES)))
    called = np.where(wrong, (labels + 1) % len(CLASSES), labels)
    return (2.0 * np.eye(len(CLASSES))[called] + noise).astype(np.float32)


def _add(run, name: str, role: str, wrong: dict[str, np.ndarray], seed: int = 0, keep_logits: bool = True) -> None:
    """A finished model's record (and its kept logits) as finish_model leaves them."""
    rec = {"name": name, "role": role, "teacher": None if role == "baseline" else "teacher_x", "params": 10,
           "size_bytes": 2048, "train_seconds": 1.0}  # fmt: skip
    predictions = {}
    for split in ("val", "test"):
        labels = run.fd.labels(split)
        logits = _logits(labels, wrong[split], seed)
        m = split_metrics(labels, logits, CLASSES)
        rec[split] = headline({"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                               "macro": {"precision": m["macro_precision"], "recall": m["macro_recall"],
                                         "f1": m["macro_f1"]},
                               "melanoma_sensitivity": m["melanoma_sensitivity"],
                               "melanoma_specificity": m["melanoma_specificity"], "roc_auc_macro": m["roc_auc"],
                               "ece": m["ece"]})  # fmt: skip
        if keep_logits:
            (run.out / name).mkdir(exist_ok=True)
            predictions[split] = save_logits(run.out, name, split, logits)
    if keep_logits:
        rec["predictions"] = predictions
    run.records[name] = rec


def _every(run, k: int) -> dict[str, np.ndarray]:
    """Every k-th image wrong, per split."""
    return {s: np.arange(len(run.fd.labels(s))) % k == 0 for s in ("val", "test")}


def _rows(run) -> dict[str, dict]:
    with open(run.out / "summary.csv", newline="") as fh:
        return {r["name"]: r for r in csv.DictReader(fh)}


def _f(row: dict, col: str) -> float:
    return float(row[col])


def test_every_metric_gets_an_interval_and_the_same_run_the_same_csv(tmp_path):
    run = _fake_run(tmp_path)
    _add(run, "student_alone", "baseline", _every(run, 4))
    _add(run, "student_x", "student", _every(run, 10), seed=1)
    rows = write_summary(run, 200)
    assert [r["name"] for r in rows] == ["student_x", "student_alone"]  # ranked by validation accuracy
    first = (run.out / "summary.csv").read_bytes()
    table = _rows(run)
    header = list(table["student_x"])
    assert header == summary_columns(CLASSES)
    for col in ("val_accuracy", "test_accuracy", "balanced_accuracy", "macro_precision", "macro_recall",
                "macro_f1", "melanoma_sensitivity", "melanoma_specificity", "roc_auc", "ece",
                "test_balanced_accuracy", "test_macro_f1", "test_melanoma_sensitivity", "test_melanoma_specificity",
                "test_roc_auc", "sensitivity_at_specificity_0.9", "roc_auc_mel", "roc_auc_nv"):  # fmt: skip
        for name, row in table.items():
            lo, v, hi = _f(row, f"{col}_ci95_low"), _f(row, col), _f(row, f"{col}_ci95_high")
            assert lo <= v <= hi, (name, col)
    x = table["student_x"]
    assert _f(x, "balanced_accuracy_ci95_low") < _f(x, "balanced_accuracy_ci95_high")
    # melanoma sensitivity: the exact Clopper-Pearson interval of its counts
    val = run.fd.labels("val")
    mel = val == 1
    detected = int(round(_f(x, "melanoma_sensitivity") * mel.sum()))
    want = clopper_pearson_interval(detected, int(mel.sum())).as_list()
    assert [_f(x, "melanoma_sensitivity_ci95_low"), _f(x, "melanoma_sensitivity_ci95_high")] == pytest.approx(
        want, abs=1e-4
    )
    assert x["class_of_concern"] == "mel" and x["bootstrap_groups"] == "image"
    assert _f(x, "sensitivity_at_specificity_0.8") >= _f(x, "sensitivity_at_specificity_0.95")
    write_summary(run, 200)
    assert (run.out / "summary.csv").read_bytes() == first  # seeded: the same run, the same intervals


def test_grouped_intervals_resample_lesions(tmp_path):
    run = _fake_run(tmp_path)
    # errors come by lesion (3 images each): every third lesion is wrong on all its images
    wrong = {s: (np.arange(len(run.fd.labels(s))) // 3) % 3 == 0 for s in ("val", "test")}
    _add(run, "student_alone", "baseline", wrong)
    write_summary(run, 200)
    by_image = _rows(run)["student_alone"]
    rows = [f"{s},{i},L{s}{i // 3}" for s, n in (("train", 12), ("val", 60), ("test", 30)) for i in range(n)]
    (run.fd.root / "image_ids.csv").write_text("split,position,lesion_id\n" + "\n".join(rows) + "\n")
    write_summary(run, 200)
    by_lesion = _rows(run)["student_alone"]
    assert by_lesion["bootstrap_groups"] == "lesion_id" and by_image["bootstrap_groups"] == "image"
    assert by_lesion["val_accuracy"] == by_image["val_accuracy"]  # the estimate does not move, its interval does

    def width(row, col):
        return _f(row, f"{col}_ci95_high") - _f(row, f"{col}_ci95_low")

    for col in ("val_accuracy", "test_accuracy"):
        assert width(by_lesion, col) > 1.3 * width(by_image, col), col  # correlated errors: wider
    # an image_ids.csv that does not cover a split: one warning, intervals over images, no crash
    (run.fd.root / "image_ids.csv").write_text("split,position,lesion_id\nval,0,L0\n")
    write_summary(run, 200)
    assert _rows(run)["student_alone"]["val_accuracy_ci95_low"] == by_image["val_accuracy_ci95_low"]
    assert len(run.warnings) == 2 and "image_ids.csv" in run.warnings[0] and "resample images" in run.warnings[0]


def test_paired_difference_to_the_student_alone(tmp_path, capsys):
    run = _fake_run(tmp_path)
    _add(run, "student_alone", "baseline", _every(run, 3))
    _add(run, "student_better", "student", _every(run, 20), seed=1)
    _add(run, "student_worse", "student", {s: np.ones(len(run.fd.labels(s)), bool) for s in ("val", "test")}, seed=2)
    _add(run, "student_same", "student", _every(run, 3), seed=0)  # the same logits as the student alone
    table = _rows((write_summary(run, 200), run)[1])
    better, worse, same = table["student_better"], table["student_worse"], table["student_same"]
    assert _f(better, "balanced_accuracy_minus_alone_ci95_low") > 0
    assert _f(better, "balanced_accuracy_minus_alone") == pytest.approx(
        _f(better, "balanced_accuracy") - _f(table["student_alone"], "balanced_accuracy"), abs=2e-4
    )
    assert _f(worse, "balanced_accuracy_minus_alone_ci95_high") < 0
    assert _f(worse, "test_balanced_accuracy_minus_alone") < 0
    assert [_f(same, f"balanced_accuracy_minus_alone{e}") for e in ("", "_ci95_low", "_ci95_high")] == [0, 0, 0]
    assert table["student_alone"]["balanced_accuracy_minus_alone"] == ""  # not compared with itself
    print_summary(write_summary(run, 200))
    out = capsys.readouterr().out
    assert "95% intervals on the validation split" in out and "bootstrap over images, 200 resamples, seed 0" in out
    line = next(x for x in out.splitlines() if x.startswith("student_better minus student_alone: +"))
    assert line.endswith("points of balanced accuracy (validation, paired bootstrap)")
    assert "student_worse minus student_alone: -" in out


def test_models_finished_without_kept_logits_get_empty_columns(tmp_path, capsys):
    run = _fake_run(tmp_path)
    _add(run, "student_alone", "baseline", _every(run, 4), keep_logits=False)  # finished by an older kdtool
    _add(run, "student_x", "student", _every(run, 10), seed=1)
    _add(run, "student_y", "student", _every(run, 5), seed=2)
    (run.out / "student_y" / "val_logits.npy").write_bytes(b"changed since")  # its SHA-256 no longer matches
    rows = write_summary(run, 200)
    table = _rows(run)
    old = table["student_alone"]
    assert old["val_accuracy"] != "" and old["val_accuracy_ci95_low"] == "" and old["roc_auc_mel"] == ""
    x = table["student_x"]
    assert x["val_accuracy_ci95_low"] != "" and x["balanced_accuracy_minus_alone"] == ""  # nothing to pair with
    y = table["student_y"]
    assert y["val_accuracy_ci95_low"] == "" and y["test_accuracy_ci95_low"] != ""  # test logits still match
    print_summary(rows)
    out = capsys.readouterr().out
    assert "student_x" in out.split("95% intervals on")[1] and "student_alone" not in out.split("95% intervals on")[1]
    # a run with no kept logits at all prints the ranking alone; so does one written without intervals
    assert interval_lines([dict(r, balanced_accuracy_ci95_low=None) for r in rows]) == []
    plain = write_summary(run, 0)
    assert interval_lines(plain) == [] and _rows(run)["student_x"]["val_accuracy_ci95_low"] == ""
    assert _rows(run)["student_x"]["val_accuracy"] == x["val_accuracy"]


def test_data_without_a_melanoma_class(tmp_path):
    fd = load_fdata(write_fdata(tmp_path / "FData", n=(12, 30, 15), class_names=["a", "b", "c"]))
    cols = summary_columns(fd.class_names)
    assert "class_of_concern" not in cols and "roc_auc_a_ci95_low" in cols
    assert not any(c.startswith("sensitivity_at_specificity") for c in cols)


needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs the [train] extra")


@needs_tf
def test_finish_model_keeps_logits_and_draws_roc_and_reliability(tmp_path):
    """finish_model on a tiny untrained model: logits kept, metrics.json threshold-free keys, the two new PNGs."""
    import keras

    from kdtool.distill.outputs import finish_model, saved_logits

    run = _fake_run(tmp_path)
    run.add = lambda rec: run.records.__setitem__(rec["name"], rec)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=run.fd.image_shape)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    rec = finish_model(run, "student_alone", "baseline", None, model, {"loss": [1.0], "accuracy": [0.5]}, 0.5)
    folder = run.out / "student_alone"
    for png in ("confusion.png", "roc.png", "reliability.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    metrics = json.loads((folder / "metrics.json").read_text())
    val = metrics["val"]
    assert set(val["roc_auc_per_class"]) == set(CLASSES) and val["class_of_concern"] == "mel"
    assert val["calibration"]["ece"] == pytest.approx(val["ece"]) and len(val["calibration"]["bins"]["count"]) == 15
    assert set(val["sensitivity_at_specificity"]) == {"0.8", "0.9", "0.95"}
    assert val["roc_curves"]["mel"]["fpr"][0] == 0.0 and val["roc_curves"]["mel"]["tpr"][-1] == 1.0
    logits = saved_logits(run.out, rec, "val", (60, 3))
    np.testing.assert_allclose(logits, np.asarray(model(run.fd.x("val"))), rtol=1e-5, atol=1e-6)
    assert rec["val"]["accuracy"] == pytest.approx(split_metrics(run.fd.labels("val"), logits, CLASSES)["accuracy"])
    write_summary(run, 200)
    assert _rows(run)["student_alone"]["val_accuracy_ci95_low"] != ""
