"""kdtool data images / kdtool data audit: real files, real faults, group-disjoint splits, atomic output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kdtool.cli import main
from kdtool.data import load_fdata
from kdtool.folds import read_groups
from kdtool.images import read_rgb
from kdtool.splits import group_split

CLASSES = ("bcc", "mel", "nv")


def _lesion(rng, cls: int, size=(40, 30)) -> np.ndarray:
    """A random image whose mean colour says its class."""
    img = rng.integers(0, 90, (size[1], size[0], 3)).astype(np.uint8)
    img[..., cls] += 150
    return img


def _write_table_set(root: Path, lesions_per_class=6, images_per_lesion=2, seed=0) -> tuple[Path, Path]:
    """HAM10000-like: images/<id>.jpg and a metadata.csv with lesion_id, image_id, dx, sex."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    n = 0
    for c, name in enumerate(CLASSES):
        for lesion in range(lesions_per_class):
            for _ in range(images_per_lesion):
                image_id = f"IMG_{n:04d}"
                Image.fromarray(_lesion(rng, c)).save(images / f"{image_id}.jpg", quality=95)
                rows.append(
                    {"lesion_id": f"L{c}_{lesion}", "image_id": image_id, "dx": name, "sex": "f" if n % 2 else "m"}
                )
                n += 1
    table = root / "metadata.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["lesion_id", "image_id", "dx", "sex"])
        writer.writeheader()
        writer.writerows(rows)
    return images, table


def _run(*args):
    return CliRunner().invoke(main, ["data", *map(str, args)])


def test_table_set_is_split_by_lesion_and_carries_every_column(tmp_path):
    images, table = _write_table_set(tmp_path)
    out = tmp_path / "FData"
    args = ["images", images, "--labels", table, "--group-column", "lesion_id", "--size", 48, "--out"]
    res = _run(*args, out)
    assert res.exit_code == 0, res.output
    fd = load_fdata(out)
    assert fd.class_names == list(CLASSES)
    assert fd.arrays["train"][0].shape[1:] == (48, 48, 3) and fd.arrays["train"][0].dtype == np.uint8
    with open(out / "image_ids.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["split", "position", "file", "group", "label", "sex"]
    split_of = {}
    for r in rows:  # no lesion in two splits, and every row's label matches the arrays
        assert split_of.setdefault(r["group"], r["split"]) == r["split"]
        y = fd.labels(r["split"])[int(r["position"])]
        assert CLASSES[y] == r["label"]
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert read_groups(out, "test", len(fd.labels("test"))).tolist() == [
        r["group"] for r in rows if r["split"] == "test"
    ]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["split"]["grouped_by"] == "lesion_id" and info["audit"]["pairs"] == 0
    assert sum(sum(c.values()) for c in info["counts"].values()) == 36 and info["skipped"] == []
    # the arrays hold exactly what predict would read from the file
    first = next(r for r in rows if r["split"] == "train" and r["position"] == "0")
    assert np.array_equal(fd.arrays["train"][0][0], read_rgb(images / first["file"], 48))
    # seeded: the same command gives the same folder; another seed another split
    again = tmp_path / "again"
    assert _run(*args, again).exit_code == 0
    assert (again / "image_ids.csv").read_text() == (out / "image_ids.csv").read_text()
    assert json.loads((again / "dataset_info.json").read_text())["inputs_sha256"] == info["inputs_sha256"]
    other = tmp_path / "other"
    assert _run(*args, other, "--seed", 1).exit_code == 0
    assert (other / "image_ids.csv").read_text() != (out / "image_ids.csv").read_text()


def test_group_split_keeps_groups_whole_and_shares_close():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 600, 2000).astype(str)
    labels = (np.char.str_len(groups) + rng.integers(0, 2, 2000) * 0) % 3  # one label per group
    s = group_split(labels, groups, (0.7, 0.1, 0.2), seed=3)
    for g in np.unique(groups):
        assert np.unique(s[groups == g]).size == 1
    for c in range(3):
        share = np.bincount(s[labels == c], minlength=3) / np.sum(labels == c)
        assert share == pytest.approx([0.7, 0.1, 0.2], abs=0.05)


def test_real_file_faults_are_converted_or_skipped(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for c in CLASSES:
        (src / c).mkdir(parents=True)
    rng = np.random.default_rng(1)
    rgb = _lesion(rng, 0)
    Image.fromarray(rgb[..., 0]).save(src / "bcc" / "grey.png")  # L
    Image.fromarray(rgb).convert("P").save(src / "bcc" / "palette.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])).save(src / "bcc" / "alpha.png")
    Image.fromarray(rgb).convert("CMYK").save(src / "mel" / "cmyk.jpg")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(src / "mel" / "sixteen.png")
    for i in range(4):
        Image.fromarray(_lesion(rng, 2)).save(src / "nv" / f"ok{i}.jpg")
    Image.fromarray(_lesion(rng, 1)).save(src / "mel" / "ok.jpg")
    Image.fromarray(_lesion(rng, 0)).save(src / "bcc" / "ok.jpg")
    (src / "nv" / "empty.jpg").write_bytes(b"")
    (src / "nv" / "notes.jpg").write_text("not an image")
    buf = io.BytesIO()
    Image.fromarray(_lesion(rng, 2)).save(buf, "JPEG")
    (src / "nv" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.fromarray(np.zeros((120, 120, 3), np.uint8)).save(src / "nv" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 120 x 120 > 2 x 3000: a "bomb"

    out = tmp_path / "FData"
    res = _run("images", src, "--out", out, "--split", "34,33,33")
    assert res.exit_code == 0, res.output
    assert res.output.count("warning:") == 1 and "no group column" in res.output
    info = json.loads((out / "dataset_info.json").read_text())
    skipped = {s["file"]: s["reason"] for s in info["skipped"]}
    assert set(skipped) == {"nv/empty.jpg", "nv/notes.jpg", "nv/truncated.jpg", "nv/bomb.png"}
    assert "empty" in skipped["nv/empty.jpg"] and "not an image" in skipped["nv/notes.jpg"]
    assert "decompression bomb" in skipped["nv/bomb.png"]
    assert "skipped 4 unreadable image(s)" in res.output
    assert info["images"] == 11
    # the converted ones are 8-bit RGB with the right content
    grey = read_rgb(src / "bcc" / "grey.png", 16)
    assert np.array_equal(grey[..., 0], grey[..., 2])
    sixteen = read_rgb(src / "mel" / "sixteen.png", 16)  # the same picture at 16 bits: scaled, not clipped
    assert np.abs(sixteen.astype(int) - grey).max() <= 1

    # --strict: any unreadable file stops it, and nothing is written
    strict = tmp_path / "strict"
    res = _run("images", src, "--out", strict, "--strict")
    assert res.exit_code == 2 and "--strict" in res.output and "Traceback" not in res.output
    assert not strict.exists() and not list(tmp_path.glob(".strict.tmp-*"))


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white, stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "sideways.jpg", exif=exif, quality=100)
    shown = read_rgb(tmp_path / "sideways.jpg", 40, 20)  # displayed portrait: 40 high, 20 wide
    assert shown[:15].mean() > 200 and shown[25:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda rows: rows[3].update(dx=""), "line 5: image 'IMG_0003' has no label"),
        (lambda rows: rows[4].update(image_id="IMG_0001"), "line 6: image 'IMG_0001' is listed twice"),
        (lambda rows: rows[2].update(image_id="IMG_9999"), "line 4: image 'IMG_9999' not found"),
    ],
)
def test_table_faults_are_one_line_naming_the_row(tmp_path, edit, expect):
    images, table = _write_table_set(tmp_path)
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    edit(rows)
    with open(table, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    res = _run("images", images, "--labels", table, "--group-column", "lesion_id", "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert expect in res.output and str(table) in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_too_few_groups_missing_column_and_existing_out(tmp_path):
    images, table = _write_table_set(tmp_path, lesions_per_class=2)
    res = _run("images", images, "--labels", table, "--group-column", "lesion_id", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "has 2 group(s)" in res.output and "'bcc'" in res.output
    res = _run("images", images, "--labels", table, "--group-column", "patient", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "no column 'patient'" in res.output
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    res = _run("images", images, "--labels", table, "--out", existing)
    assert res.exit_code == 2 and "already exists" in res.output
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_test_only_with_a_model_class_order(tmp_path):
    images, table = _write_table_set(tmp_path, lesions_per_class=1)
    out = tmp_path / "ext"
    res = _run("images", images, "--labels", table, "--test-only", "--classes", "nv,mel,bcc,df", "--out", out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.npy")) == ["X_test.npy", "y_test.npy"]
    fd = load_fdata(out, splits=["test"])
    assert fd.class_names == ["nv", "mel", "bcc", "df"] and np.bincount(fd.labels("test")).tolist() == [2, 2, 2]
    res = _run("images", images, "--labels", table, "--test-only", "--classes", "nv,mel", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "bcc not in --classes" in res.output


def test_audit_finds_a_copy_across_splits(tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "src"
    for c, name in enumerate(CLASSES):
        (src / name).mkdir(parents=True)
        for i in range(8):  # smooth pictures, as photographs are (JPEG keeps them)
            small = Image.fromarray(_lesion(rng, c, size=(8, 8)))
            small.resize((64, 64), Image.BICUBIC).save(src / name / f"{i}.png")
    out = tmp_path / "FData"
    assert _run("images", src, "--out", out, "--seed", 2).exit_code == 0
    assert json.loads((out / "dataset_info.json").read_text())["audit"]["pairs"] == 0
    # plant a recompressed, slightly brightened copy of a training image into the test split
    x_train, x_test = np.load(out / "X_train.npy"), np.load(out / "X_test.npy")
    buf = io.BytesIO()
    Image.fromarray(x_train[3]).save(buf, "JPEG", quality=70)
    x_test[1] = np.clip(np.asarray(Image.open(buf)).astype(int) + 4, 0, 255).astype(np.uint8)
    np.save(out / "X_test.npy", x_test)
    res = _run("audit", out, "--json", tmp_path / "audit.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert doc["pairs"] == 1
    pair = doc["listed"][0]
    assert (pair["split_a"], pair["index_a"], pair["split_b"], pair["index_b"]) == ("train", 3, "test", 1)
    assert "file_a" in pair and "1 near-identical pair" in res.output


def test_table_columns_named_like_image_ids_columns_are_kept_apart(tmp_path):
    images, table = _write_table_set(tmp_path)
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows):  # a table with its own split column, grouped by patient instead of lesion
        r["split"] = "orig_train" if i % 2 else "orig_test"
        r["patient"] = f"P{i // 4}"
    with open(table, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "FData"
    res = _run("images", images, "--labels", table, "--group-column", "patient", "--out", out)
    assert res.exit_code == 0, res.output
    with open(out / "image_ids.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["split", "position", "file", "group", "label", "table_lesion_id", "sex", "table_split"]
    fd = load_fdata(out)
    groups = read_groups(out, "train", len(fd.labels("train")))
    assert all(g.startswith("P") for g in groups)  # the split's groups, not the table's lesion ids


def test_absolute_paths_bad_out_and_bad_audit_input_are_one_line(tmp_path):
    images, table = _write_table_set(tmp_path, lesions_per_class=3, images_per_lesion=1)
    text = table.read_text().replace("IMG_0000", str(images / "IMG_0000.jpg"))
    table.write_text(text)
    res = _run("images", images, "--labels", table, "--group-column", "lesion_id", "--out", tmp_path / "ok")
    assert res.exit_code == 0, res.output
    with open(tmp_path / "ok" / "image_ids.csv", newline="") as fh:
        assert "IMG_0000.jpg" in {r["file"] for r in csv.DictReader(fh)}
    (tmp_path / "afile").write_text("x")
    res = _run("images", images, "--labels", table, "--out", tmp_path / "afile" / "FData")
    assert res.exit_code == 2 and "is a file" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "test"):
        np.save(bad / f"X_{split}.npy", np.zeros((4, 8, 8), np.uint8))
    res = _run("audit", bad)
    assert res.exit_code == 2 and "expected images of shape (N, H, W, 3)" in res.output
