"""kdtool report: a model card per exported model, from sidecars, run.json, the data and bench JSON records.

Most tests need no TensorFlow: the exported "model" is a few bytes with a sidecar that records their
SHA-256, and its metrics come from bench records built here with kdtool's own metric functions
(``--bench``, ``--no-run-bench``). One slow test converts a real tiny model and lets kdtool report run
``kdtool bench`` itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, write_fdata

from kdtool.cli import main
from kdtool.metrics import classification_report, roc_points
from kdtool.reliability import reliability_bins
from kdtool.report.card import CARD_SUFFIX, to_yaml, yaml_scalar
from kdtool.report.collect import data_facts
from kdtool.report.evaluation import with_ci
from kdtool.report.measure import match_how

CLASSES = ["nv", "mel", "bkl"]
N = (40, 20, 24)  # train, val, test images
SECTIONS = [
    "Model details",
    "Intended use and limits",
    "Training data",
    "Training recipe",
    "Evaluation",
    "Operating point",
    "Calibration",
    "Size and latency",
    "Plots",
    "How this card was made",
]
POINT = {
    "objective": "balanced",
    "fitted_on": "val",
    "fit_images": 20,
    "tau": -0.3,
    "bias": [0.25, -0.1, 0.0],
    "temperature": 1.4,
    "min_recall": [
        {
            "class": "mel",
            "target": 0.7,
            "confidence": 0.95,
            "offset": 1.23,
            "detected": 6,
            "images": 7,
            "lower_bound": 0.42,
            "reached": False,
        }
    ],
    "summary": "balanced (tau -0.30, fitted on val, 20 images); mel recall >= 0.70 at 95%: +1.23 (6/7, lower bound "
    "0.42)",
}


# ----------------------------------------------------------------------------- a tiny YAML reader for the card
def _scalar(s: str):
    if s in ("null", "~"):
        return None
    if s in ("true", "false"):
        return s == "true"
    if s in ("[]", "{}"):
        return [] if s == "[]" else {}
    if s.startswith('"'):
        return json.loads(s)
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    assert not re.search(r": |#|^[-&*!|>'%@`{\[]", s), f"plain scalar {s!r} is not plain YAML"
    return s


def _parse(lines: list[tuple[int, str]], i: int, indent: int):
    if lines[i][1] == "-" or lines[i][1].startswith("- "):
        items = []
        while i < len(lines) and lines[i][0] == indent and (lines[i][1] == "-" or lines[i][1].startswith("- ")):
            if lines[i][1] == "-":
                value, i = _parse(lines, i + 1, lines[i + 1][0])
            else:
                value, i = _scalar(lines[i][1][2:]), i + 1
            items.append(value)
        return items, i
    mapping = {}
    while i < len(lines) and lines[i][0] == indent:
        key, sep, rest = lines[i][1].partition(":")
        assert sep and re.fullmatch(r"[A-Za-z_][\w-]*", key), f"not a YAML key line: {lines[i][1]!r}"
        if rest.strip():
            mapping[key], i = _scalar(rest.strip()), i + 1
        else:
            assert lines[i + 1][0] > indent, f"{key}: has no value"
            mapping[key], i = _parse(lines, i + 1, lines[i + 1][0])
    return mapping, i


def parse_front_matter(text: str) -> dict:
    """The card's YAML block, read by a strict reader of the block-YAML subset kdtool writes (no PyYAML here)."""
    lines = text.splitlines()
    assert lines[0] == "---", "the card must start with a YAML block"
    end = lines.index("---", 1)
    flat = []
    for line in lines[1:end]:
        indent, body = len(line) - len(line.lstrip(" ")), line.strip()
        if re.match(r"- [A-Za-z_][\w-]*:( |$)", body):  # a mapping inside a list
            flat += [(indent, "-"), (indent + 2, body[2:])]
        else:
            flat.append((indent, body))
    doc, i = _parse(flat, 0, 0)
    assert i == len(flat), f"unparsed YAML from line {flat[i]}"
    return doc


def section(text: str, title: str) -> str:
    """The body of ``## title`` up to the next ``## ``."""
    body = text.split(f"\n## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def table_row(text: str, label: str) -> list[str]:
    """The cells after the first of the first table row whose first cell is ``label``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no table row {label!r}")


# ----------------------------------------------------------------------------- fixtures: data, export, run, bench
def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_export(
    folder: Path, fdata: Path, name="student_t", mode="int8", point=POINT, blob=b"TFL3 fake model"
) -> Path:
    """A ``.tflite`` stand-in and its sidecar (the keys kdtool export writes that the card reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    tflite = folder / f"{name}.{mode}.tflite"
    tflite.write_bytes(blob)
    side = {
        "format": 1,
        "name": name,
        "role": "student",
        "teacher": "teacher_t",
        "mode": mode,
        "file": tflite.name,
        "sha256": sha(blob),
        "size_bytes": len(blob),
        "params": 1234,
        "class_names": CLASSES,
        "input": {"shape": [1, 8, 8, 3], "dtype": "int8"},
        "output": {"shape": [1, 3], "dtype": "int8"},
        "preprocess": {"steps": ["x = uint8_rgb.astype(float32) / 255"]},
        "postprocess": {"steps": ["probabilities = softmax(logits)"]},
        "source": {"file": f"{name}.keras", "path": str(folder.parent / f"{name}.keras"), "sha256": "ab" * 32},
        "versions": {"kdtool": "0.1.0"},
        "data": {"path": str(fdata), "fingerprint": None},
        "sizes": {"bytes": len(blob), "ratio_to_float32": 0.29},
        "check": {"split": "val", "n": 20, "accuracy_drop": 0.5, "max_drop": 5.0, "agreement": 0.95, "passed": True},
        "created": "2026-01-01T00:00:00+0000",
    }
    if point is not None:
        side["operating_point"] = point
    tflite.with_suffix(".json").write_text(json.dumps(side))
    return tflite


def write_run(run: Path, fdata: Path, name="student_t") -> Path:
    """A run folder: run.json (config, data, the model's record) and the model's curves.png."""
    (run / name).mkdir(parents=True, exist_ok=True)
    (run / name / "curves.png").write_bytes(b"\x89PNG fake")
    doc = {
        "status": "FINISHED",
        "started": "2026-01-01T00:00:00+0000",
        "command": "kdtool distill --data FData",
        "config": {"epochs": 7, "student_filters": [8, 16], "balance": "logit-adjust", "seed": 3},
        "data": {"path": str(fdata)},
        "versions": {"kdtool": "0.1.0", "tensorflow": "2.21.0"},
        "device": {"machine": "x86_64", "cpus": 2},
        "warnings": [],
        "models": [
            {
                "name": name,
                "role": "student",
                "teacher": "teacher_t",
                "file": f"{name}.keras",
                "sha256": "ab" * 32,
                "epochs": 7,
                "train_seconds": 1.5,
            }
        ],
    }
    (run / "run.json").write_text(json.dumps(doc))
    return run


def bench_record(tflite: Path, split: str, seed: int, n: int, latency: bool = True) -> dict:
    """A bench record of the kind ``kdtool bench --json`` writes, made with kdtool's metric functions."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    probs = rng.dirichlet(np.ones(len(CLASSES)), size=n)
    probs[np.arange(n), labels] += rng.uniform(0, 1.5, size=n)
    probs /= probs.sum(axis=1, keepdims=True)
    rep = classification_report(labels, probs.argmax(axis=1), CLASSES, probabilities=probs)
    acc, mel = rep["accuracy"], CLASSES.index("mel")
    curves = {}
    for i, c in enumerate(CLASSES):
        fpr, tpr = roc_points(labels == i, probs[:, i])
        curves[c] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    cm = np.array(rep["confusion_matrix"])
    return {
        "schema": 1,
        "model": tflite.name,
        "path": str(tflite),
        "mode": "int8",
        "size_bytes": tflite.stat().st_size,
        "split": split,
        "n_images": n,
        "class_names": CLASSES,
        "accuracy": acc,
        "balanced_accuracy": rep["balanced_accuracy"],
        "roc_auc_macro": rep["roc_auc_macro"],
        "ece": rep["ece"],
        "macro": rep["macro"],
        "per_class": rep["per_class"],
        "confusion_matrix": rep["confusion_matrix"],
        "roc_auc_per_class": {c: 0.8 + 0.05 * i for i, c in enumerate(CLASSES)},
        "class_of_concern": {
            "name": "mel",
            "positives": int(cm[mel].sum()),
            "negatives": int(n - cm[mel].sum()),
            "sensitivity": rep["per_class"]["mel"]["recall"],
            "specificity": 0.9123,
        },
        "sensitivity_at_specificity": {
            "0.8": {"sensitivity": 0.7111, "threshold": 0.3, "ci95": [0.5111, 0.8811]},
            "0.9": {"sensitivity": 0.6222, "threshold": 0.4, "ci95": [0.4222, 0.8022]},
            "0.95": {"sensitivity": None, "threshold": None, "ci95": None},
        },
        "ci95": {
            "accuracy": [acc - 0.0731, acc + 0.0612],
            "balanced_accuracy": [0.3012, 0.7543],
            "macro_f1": [0.2011, 0.7766],
            "roc_auc_macro": [0.6102, 0.9433],
            "roc_auc_per_class": {c: [0.6, 0.95] for c in CLASSES},
            "class_of_concern_sensitivity": [0.3333, 0.9444],
            "class_of_concern_specificity": [0.8001, 0.9802],
        },
        "interval_method": "95% percentile bootstrap; Clopper-Pearson exact (sensitivity, specificity)",
        "bootstrap": {"n": 1000, "seed": 0, "groups": "image", "n_groups": n, "dropped": {}},
        "calibration": {"ece": 0.0877, "ece_ci95": [0.0411, 0.1502], "bins": reliability_bins(labels, probs)},
        "roc_curves": curves,
        "operating_point": POINT,
        "mean_confidence": 0.61,
        "tta": "none",
        "latency_ms": {"median": 1.234 if latency else None, "p90": 1.5 if latency else None},
        "images_per_second": 810.4 if latency else None,
        "peak_rss_mb": 60.25,
        "runs": 50 if latency else 0,
        "batch": 1,
        "threads": 4,
        "runtime": "ai_edge_litert",
        "runtime_version": "2.3.0",
        "device": {"hostname": "pi5", "machine": "aarch64", "cpu_model": "Cortex-A76"},
        "emulated": False,
        "kdtool_version": "0.1.0",
        "created": "2026-01-02T00:00:00+00:00",
    }


@pytest.fixture
def setup(tmp_path):
    """A run folder with an export, its data, and a bench JSON with validation and test records."""
    fdata = write_fdata(tmp_path / "FData", n=N, k=3, class_names=CLASSES)
    run = write_run(tmp_path / "run", fdata)
    tflite = write_export(run / "export", fdata)
    bench = tmp_path / "bench.json"
    records = [bench_record(tflite, "val", 1, N[1], latency=False), bench_record(tflite, "test", 2, N[2])]
    bench.write_text(json.dumps(records))
    return {"fdata": fdata, "run": run, "tflite": tflite, "bench": bench, "records": records, "tmp": tmp_path}


def run_cli(*args):
    result = CliRunner().invoke(main, ["report", *map(str, args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for text in expected:
        assert text in lines[0], lines[0]


# ----------------------------------------------------------------------------- the card
def test_card_quotes_the_bench_records_and_the_sidecar(setup):
    r = run_cli(setup["run"], "--bench", setup["bench"], "--no-run-bench")
    assert r.exit_code == 0, r.output
    card_path = setup["tflite"].parent / f"student_t.int8{CARD_SUFFIX}"
    text = card_path.read_text()
    val, test = setup["records"]

    meta = parse_front_matter(text)
    assert meta["library_name"] == "kdtool" and meta["license"] == "unknown"
    assert {"int8", "knowledge-distillation", "research-only"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"]
    assert [res["dataset"]["split"] for res in results] == ["val", "test"]
    by_type = {m["type"]: m["value"] for m in results[1]["metrics"]}
    assert by_type["accuracy"] == round(test["accuracy"], 4)
    assert by_type["balanced_accuracy"] == round(test["balanced_accuracy"], 4)

    heads = re.findall(r"^## (.+)$", text, flags=re.M)
    assert heads == SECTIONS
    assert "not a medical device" in section(text, "Intended use and limits")

    ev = section(text, "Evaluation")
    for label, key in (("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy")):
        assert table_row(ev, label) == [with_ci(val[key], val["ci95"][key]), with_ci(test[key], test["ci95"][key])]
    assert table_row(ev, "accuracy")[1] == (
        f"{100 * test['accuracy']:.1f}% [{100 * test['ci95']['accuracy'][0]:.1f}, "
        f"{100 * test['ci95']['accuracy'][1]:.1f}]"
    )
    assert table_row(ev, "ROC AUC (macro, one-vs-rest)")[1] == f"{test['roc_auc_macro']:.3f} [0.610, 0.943]"
    assert table_row(ev, "`mel` sensitivity at 90% specificity") == ["62.2% [42.2, 80.2]"] * 2
    assert table_row(ev, "`mel` sensitivity at 95% specificity") == ["not measured"] * 2  # none reached 95%
    assert table_row(ev, "`mel` specificity at the operating point")[1] == "91.2% [80.0, 98.0]"
    assert table_row(ev, "ECE (top-1, 15 bins)") == ["0.088 [0.041, 0.150]"] * 2
    per_class_test = ev.split("Per class, test")[1]
    mel = test["per_class"]["mel"]
    assert table_row(per_class_test, "mel")[0] == str(mel["support"])
    assert table_row(per_class_test, "mel")[1].startswith(f"{100 * mel['recall']:.1f}% [")
    assert table_row(per_class_test, "bkl")[3] == "0.900 [0.600, 0.950]"
    assert "test split is read once" in ev

    point = section(text, "Operating point")
    assert POINT["summary"] in point and "`nv` +0.250" in point and table_row(point, "temperature") == ["1.4000"]
    assert (
        "- `mel` recall >= 70.0% with 95.0% confidence: logit offset 1.230, 6/7 detected, lower bound 42.0%: "
        "NOT reached." in point
    )
    assert "1.4" in section(text, "Calibration")
    data = section(text, "Training data")
    assert table_row(data, "mel") == ["13", "7", "8"]  # write_fdata: labels are arange(n) % 3
    assert "not grouped by lesion" in data
    assert "`[8, 16]`" in section(text, "Training recipe")
    latency = section(text, "Size and latency")
    assert "1.234" in latency and "pi5 aarch64 Cortex-A76" in latency and latency.count("bench.json") == 1

    plots = section(text, "Plots")
    assert "![curves](../student_t/curves.png)" in plots
    pytest.importorskip("matplotlib")
    for kind in ("roc", "reliability"):
        png = setup["tflite"].parent / f"student_t.int8.{kind}.png"
        assert png.read_bytes().startswith(b"\x89PNG")
        assert f"]({png.name})" in text


def test_missing_keys_and_records_read_as_not_measured(setup, tmp_path):
    """An older bench record (no intervals, calibration, curves) and an older sidecar: the card says what it can."""
    fdata, tflite = setup["fdata"], setup["tflite"]
    write_export(tflite.parent, fdata, point=None)
    old = bench_record(tflite, "test", 2, N[2], latency=False)
    for key in (
        "ci95",
        "calibration",
        "roc_curves",
        "class_of_concern",
        "sensitivity_at_specificity",
        "interval_method",
        "bootstrap",
        "roc_auc_per_class",
    ):
        del old[key]
    old["melanoma_sensitivity"], old["path"] = 0.5, "/on/another/machine/student_t.int8.tflite"
    bench = tmp_path / "old.json"
    bench.write_text(json.dumps([old]))
    out = tmp_path / "cards"
    r = run_cli(tflite.parent, "--bench", bench, "--no-run-bench", "--out", out)
    assert r.exit_code == 0, r.output
    text = (out / f"student_t.int8{CARD_SUFFIX}").read_text()
    assert re.findall(r"^## (.+)$", text, flags=re.M)[:9] == SECTIONS[:9]
    ev = section(text, "Evaluation")
    assert table_row(ev, "accuracy") == ["not measured", f"{100 * old['accuracy']:.1f}%"]
    assert table_row(ev, "`mel` sensitivity at the operating point") == ["not measured", "50.0%"]
    assert table_row(ev, "ECE (top-1, 15 bins)")[1] == f"{old['ece']:.3f}"
    assert "matched by file name and size" in ev
    assert "Not recorded" in section(text, "Operating point")
    assert "**Latency**: not measured" in section(text, "Size and latency")
    assert "Reliability diagram: not measured" in section(text, "Calibration")
    assert "Subgroups: not measured" in ev
    assert list(out.glob("*.png")) == []
    assert parse_front_matter(text)["model-index"][0]["results"][0]["dataset"]["split"] == "test"


def test_subgroups_and_ham_licence(setup):
    info = {"dataset": "HAM10000, 7 classes, split by lesion", "classes": CLASSES}
    (setup["fdata"] / "dataset_info.json").write_text(json.dumps(info))
    records = setup["records"]
    records[1]["subgroups"] = {
        "column": "sex",
        "min_images": 12,
        "groups": [
            {"value": "female", "n": 10, "small": True, "balanced_accuracy": 0.61, "roc_auc_macro": 0.7,
             "ci95": {"balanced_accuracy": [0.4, 0.8], "roc_auc_macro": [0.5, 0.9]}},
            {"value": "male", "n": 14, "small": False, "balanced_accuracy": 0.52, "roc_auc_macro": 0.66,
             "ci95": {"balanced_accuracy": [0.3, 0.7], "roc_auc_macro": [0.45, 0.8]}},
        ],
        "worst": {"value": "male", "n": 14, "balanced_accuracy": 0.52, "ci95": [0.3, 0.7]},
    }  # fmt: skip
    setup["bench"].write_text(json.dumps(records))
    r = run_cli(setup["run"], "--bench", setup["bench"], "--no-run-bench")
    assert r.exit_code == 0, r.output
    text = (setup["tflite"].parent / f"student_t.int8{CARD_SUFFIX}").read_text()
    assert parse_front_matter(text)["license"] == "cc-by-nc-sa-4.0"
    assert "CC BY-NC-SA 4.0" in section(text, "Training data")
    ev = section(text, "Evaluation")
    assert table_row(ev, "male") == ["14", "52.0% [30.0, 70.0]", "0.660 [0.450, 0.800]"]
    assert table_row(ev, "female (small)")[0] == "10"
    assert "Worst group (lowest balanced accuracy): `male`, 14 images, balanced accuracy 52.0% [30.0, 70.0]." in ev


def test_split_method_from_image_ids(tmp_path):
    fdata = write_fdata(tmp_path / "FData", n=(6, 4, 4), k=2)
    rows = [("train", i, f"L{i // 2}") for i in range(6)] + [("val", i, f"V{i}") for i in range(4)]
    rows += [("test", i, f"T{i // 2}") for i in range(4)]
    with open(fdata / "image_ids.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "position", "lesion_id"])
        w.writerows(rows)
    facts = data_facts(fdata)
    assert facts.lesions == {"train": 3, "val": 4, "test": 2} and facts.shared_lesions == 0
    assert facts.split_method.startswith("by lesion")
    rows[-1] = ("test", 3, "L0")  # a training lesion in test
    with open(fdata / "image_ids.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["split", "position", "lesion_id"], *rows])
    facts = data_facts(fdata)
    assert facts.shared_lesions == 1 and "optimistic" in facts.split_method


# ----------------------------------------------------------------------------- errors and missing pieces
def test_errors_are_one_line_exit_2(setup, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_cli(empty), str(empty), "no exported models")
    one_line_error(run_cli(tmp_path / "nowhere"), "nowhere", "not found")

    side = setup["tflite"].with_suffix(".json")
    setup["tflite"].write_bytes(b"TFL3 changed after export")
    one_line_error(run_cli(setup["run"], "--bench", setup["bench"]), side.name, "sha256 does not match")
    write_export(setup["tflite"].parent, setup["fdata"])

    one_line_error(run_cli(setup["run"], "--data", tmp_path / "NoData", "--no-run-bench"), "NoData")
    (setup["fdata"] / "y_val.npy").unlink()
    one_line_error(run_cli(setup["run"], "--no-run-bench"), "y_val.npy", "not found")

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    one_line_error(run_cli(setup["run"], "--bench", bad), "bad.json")


def test_recorded_data_path_that_is_gone(setup):
    side_path = setup["tflite"].with_suffix(".json")
    side = json.loads(side_path.read_text())
    side["data"]["path"] = "gone/FData"
    side_path.write_text(json.dumps(side))
    run_json = setup["run"] / "run.json"
    doc = json.loads(run_json.read_text())
    doc["data"]["path"] = "gone/FData"
    run_json.write_text(json.dumps(doc))
    one_line_error(run_cli(setup["run"], "--no-run-bench"), "gone/FData", side_path.name, "--data")


def test_without_matplotlib_the_card_is_written_with_one_note(setup, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    r = run_cli(setup["run"], "--bench", setup["bench"], "--no-run-bench")
    assert r.exit_code == 0, r.output
    assert r.output.count("matplotlib is not installed") == 1
    assert list(setup["tflite"].parent.glob("*.png")) == []
    text = (setup["tflite"].parent / f"student_t.int8{CARD_SUFFIX}").read_text()
    assert "Reliability diagram: not measured" in text


def test_a_tflite_without_sidecar_is_skipped_with_a_note(setup):
    (setup["tflite"].parent / "foreign.tflite").write_bytes(b"TFL3 other")
    r = run_cli(setup["run"], "--bench", setup["bench"], "--no-run-bench")
    assert r.exit_code == 0, r.output
    assert "foreign.tflite: no sidecar" in r.output
    assert not (setup["tflite"].parent / f"foreign{CARD_SUFFIX}").exists()


# ----------------------------------------------------------------------------- helpers
def test_yaml_writer_round_trips():
    doc = {
        "library_name": "kdtool",
        "license": "unknown",
        "tags": ["int8", "yes", "a: b"],
        "empty": [],
        "model-index": [
            {
                "name": "s.int8",
                "results": [
                    {
                        "task": {"type": "x"},
                        "metrics": [{"type": "accuracy", "value": 0.74512}, {"type": "n", "value": 3}],
                    }
                ],
            }
        ],
    }
    text = "\n".join(["---", *to_yaml(doc), "---"])
    back = parse_front_matter(text)
    assert back["tags"] == ["int8", "yes", "a: b"] and back["empty"] == []
    assert back["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.7451
    assert yaml_scalar("null") == '"null"' and yaml_scalar(True) == "true"


def test_records_match_by_sha_path_or_name_and_size(tmp_path):
    f = tmp_path / "s.int8.tflite"
    f.write_bytes(b"x" * 10)
    assert match_how({"model": "s.int8.tflite", "path": str(f)}, f.name, str(f), 10, "aa") == "path"
    assert match_how({"model": "s.int8.tflite", "path": str(f), "size_bytes": 11}, f.name, str(f), 10, "aa") is None
    assert match_how({"model": "s.int8.tflite", "size_bytes": 11}, f.name, str(f), 10, "aa") is None
    assert match_how({"model": "t.int8.tflite", "size_bytes": 10}, f.name, str(f), 10, "aa") is None


def test_report_imports_neither_tensorflow_nor_matplotlib():
    code = (
        "import sys, kdtool.cli, kdtool.report.card, kdtool.report.cli, kdtool.report.collect, "
        "kdtool.report.measure, kdtool.report.plots; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- end to end, with kdtool bench
def tiny_tflite(folder: Path, fdata: Path) -> Path:
    """A real float32 .tflite (an untrained pooled dense layer) with a sidecar naming its SHA-256."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path = write_export(folder, fdata, mode="float32", blob=blob)
    side = json.loads(path.with_suffix(".json").read_text())
    side["input"] = {"shape": [1, 8, 8, 3], "dtype": "float32", "quantization": {"scale": 0.0, "zero_point": 0}}
    side["output"] = {"shape": [1, 3], "dtype": "float32", "quantization": {"scale": 0.0, "zero_point": 0}}
    path.with_suffix(".json").write_text(json.dumps(side))
    return path


@pytest.mark.slow
def test_report_runs_bench_for_the_splits_not_given(tmp_path):
    fdata = write_fdata(tmp_path / "FData", n=N, k=3, class_names=CLASSES)
    run = write_run(tmp_path / "run", fdata)
    tflite = tiny_tflite(run / "export", fdata)
    bench = tmp_path / "bench.json"
    given = bench_record(tflite, "test", 2, N[2])
    bench.write_text(json.dumps([given]))
    r = run_cli(run, "--bench", bench, "--bootstrap", 50)
    assert r.exit_code == 0, r.output
    text = (tflite.parent / f"student_t.float32{CARD_SUFFIX}").read_text()
    ev = section(text, "Evaluation")
    val_cell, test_cell = table_row(ev, "accuracy")
    assert test_cell == with_ci(given["accuracy"], given["ci95"]["accuracy"])
    assert re.fullmatch(r"\d+\.\d% \[\d+\.\d, \d+\.\d\]", val_cell), val_cell  # measured here, with an interval
    assert "validation: kdtool bench, run by kdtool report" in ev
    assert table_row(ev, "images") == [str(N[1]), str(N[2])]
