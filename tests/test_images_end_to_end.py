"""Your own images at 64 px, end to end: kdtool data images -> distill -> export int8 -> bench -> predict.

Reads a slice of the shared HAM10000 JPEGs (../shared/data/ham10000_images, CC BY-NC-SA 4.0, Tschandl et
al. 2018); skipped where they are not present.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, register_tinynet

from kdtool.cli import main

SHARED_IMAGES = ROOT.parent / "shared" / "data" / "ham10000_images"


def _slice_table(path, per_class=12):
    """The first images of whole lesions, up to ``per_class`` per diagnosis, as a metadata table."""
    with open(SHARED_IMAGES / "metadata.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    by_lesion: dict[str, list[dict]] = {}
    for r in rows:
        by_lesion.setdefault(r["lesion_id"], []).append(r)
    taken: dict[str, int] = {}
    keep = []
    for lesion_rows in by_lesion.values():
        dx = lesion_rows[0]["dx"]
        if taken.get(dx, 0) < per_class:
            keep += lesion_rows
            taken[dx] = taken.get(dx, 0) + len(lesion_rows)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep)
    return keep


@pytest.mark.slow
def test_a_64_px_model_from_jpegs_to_a_prediction(tmp_path, monkeypatch):
    if not (SHARED_IMAGES / "metadata.csv").is_file():
        pytest.skip(f"shared HAM10000 images not found at {SHARED_IMAGES}")
    pytest.importorskip("tensorflow")
    register_tinynet(monkeypatch)
    rows = _slice_table(tmp_path / "meta.csv")
    run = CliRunner().invoke
    data = tmp_path / "F64"
    res = run(main, ["data", "images", str(SHARED_IMAGES / "images"), "--labels", str(tmp_path / "meta.csv"),
                     "--group-column", "lesion_id", "--size", "64", "--out", str(data)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert np.load(data / "X_train.npy").shape[1:] == (64, 64, 3)

    models = tmp_path / "models"
    res = run(main, ["distill", "--data", str(data), "--out", str(models), "--teachers", "tinynet",
                     "--image-size", "64", "--weights", "none", "--epochs", "1", "--teacher-epochs", "1",
                     "--batch-size", "16", "--student-filters", "8,16", "--student-dense", "16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = run(main, ["export", str(models), "--quantize", "int8", "--max-drop", "100"])
    assert res.exit_code == 0, res.output
    tflites = sorted((models / "export").glob("*.int8.tflite"))
    assert tflites
    sidecar = json.loads(tflites[0].with_suffix(".json").read_text())
    assert list(sidecar["input"]["shape"])[1:3] == [64, 64], sidecar["input"]

    bench_json = tmp_path / "bench.json"
    res = run(main, ["bench", str(models / "export"), "--data", str(data), "--runs", "2", "--warmup", "1",
                     "--bootstrap", "50", "--json", str(bench_json)])  # fmt: skip
    assert res.exit_code == 0, res.output
    records = json.loads(bench_json.read_text())
    n_test = int(np.load(data / "y_test.npy").shape[0])
    assert records and all(r["n_images"] == n_test for r in records)

    jpeg = SHARED_IMAGES / "images" / f"{rows[0]['image_id']}.jpg"
    res = run(main, ["predict", str(tflites[0]), str(jpeg)])
    assert res.exit_code == 0, res.output
    assert jpeg.name in res.output
