"""FData validation: every bad input gives one line naming the file and exit code 2."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.cli import main
from kdtool.data import load_fdata, read_npy_header, safe_load_npy, stratified_indices, to_unit_float
from kdtool.errors import InputError


def _break(folder, split, prefix, arr):
    np.save(folder / f"{prefix}_{split}.npy", arr)


def _bad_cases():
    rng = np.random.default_rng(1)

    def missing(d):
        (d / "y_val.npy").unlink()

    def pickled(d):
        with open(d / "X_train.npy", "wb") as fh:
            pickle.dump({"not": "an array"}, fh)

    def object_array(d):
        np.save(d / "y_test.npy", np.array([{"a": 1}] * 12, dtype=object), allow_pickle=True)

    def npz_as_npy(d):
        np.savez(d / "tmp.npz", a=np.zeros(3))
        (d / "tmp.npz").rename(d / "X_val.npy")

    def strings(d):
        _break(d, "train", "X", np.full((40, 8, 8, 3), "a"))

    def nan(d):
        x = rng.uniform(0, 1, (12, 8, 8, 3)).astype(np.float32)
        x[3, 1, 1, 0] = np.nan
        _break(d, "val", "X", x)

    def inf_labels(d):
        y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
        y[0, 0] = np.inf
        _break(d, "test", "y", y)

    def out_of_range(d):
        _break(d, "train", "X", rng.uniform(0, 255, (40, 8, 8, 3)).astype(np.float32))

    def length(d):
        _break(d, "val", "y", np.eye(3, dtype=np.float32)[np.arange(11) % 3])

    def empty(d):
        _break(d, "test", "X", np.zeros((0, 8, 8, 3), np.uint8))
        _break(d, "test", "y", np.zeros((0, 3), np.float32))

    def shape_differs(d):
        _break(d, "val", "X", np.zeros((12, 9, 9, 3), np.uint8))

    def not_onehot(d):
        y = np.eye(3, dtype=np.float32)[np.arange(40) % 3]
        y[5] = [0.5, 0.5, 0]
        _break(d, "train", "y", y)

    def k_differs(d):
        _break(d, "test", "y", np.eye(4, dtype=np.float32)[np.arange(12) % 4])

    def truncated(d):
        data = (d / "X_train.npy").read_bytes()
        (d / "X_train.npy").write_bytes(data[: len(data) // 2])

    def header_bomb(d):
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 32, 32, 3), }"
        header = header + " " * (117 - len(header)) + "\n"
        (d / "X_train.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())

    def grey_images(d):
        _break(d, "train", "X", np.zeros((40, 8, 8), np.uint8))

    def names_count(d):
        (d / "classes.json").write_text(json.dumps(["a", "b"]))

    return [
        (missing, "y_val.npy: file not found"),
        (pickled, "X_train.npy: not an .npy file"),
        (object_array, "y_test.npy: holds Python objects (pickle)"),
        (npz_as_npy, "X_val.npy: an .npz (zip) archive"),
        (strings, "X_train.npy: dtype <U1 is not numeric"),
        (nan, "X_val.npy: contains NaN or Inf"),
        (inf_labels, "y_test.npy: contains NaN or Inf"),
        (out_of_range, "X_train.npy: float images must lie in [0, 1]"),
        (length, "X_val.npy: 12 images but y_val.npy has 11 labels"),
        (empty, "X_test.npy: the split is empty"),
        (shape_differs, "X_val.npy: image shape (9, 9, 3) differs"),
        (not_onehot, "y_train.npy: row 5 is not one-hot"),
        (k_differs, "y_test.npy: 4 classes but y_train.npy has 3"),
        (truncated, "X_train.npy: header declares"),
        (header_bomb, "X_train.npy: header declares 12288000000000000 bytes"),
        (grey_images, "X_train.npy: shape (40, 8, 8) is not (N, H, W, 3)"),
        (names_count, "classes.json: lists 2 class names but the labels have 3 classes"),
    ]


@pytest.mark.parametrize("breaker,message", _bad_cases(), ids=lambda v: getattr(v, "__name__", ""))
def test_bad_data_one_line_exit_2(tmp_path, breaker, message):
    folder = write_fdata(tmp_path / "FData")
    breaker(folder)
    with pytest.raises(InputError) as exc:
        load_fdata(folder)
    assert message in exc.value.message
    assert "\n" not in exc.value.message
    result = CliRunner().invoke(main, ["distill", "--data", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists(), "nothing may be written before the data is valid"


def test_missing_folder(tmp_path):
    result = CliRunner().invoke(main, ["distill", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "data folder not found" in result.output


def test_uint8_and_float_are_equivalent(tmp_path):
    a = load_fdata(write_fdata(tmp_path / "u8", dtype="uint8"))
    x = a.x("train")
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # the research format: float32 already in [0, 1]
    b_dir = tmp_path / "f32"
    b_dir.mkdir()
    for split in ("train", "val", "test"):
        np.save(b_dir / f"X_{split}.npy", a.raw_x(split).astype(np.float32) / 255)
        np.save(b_dir / f"y_{split}.npy", a.onehot(split))
    b = load_fdata(b_dir)
    np.testing.assert_allclose(b.x("train"), x, atol=1e-6)
    assert b.class_names == ["class_0", "class_1", "class_2"]


def test_class_names_sources(tmp_path, ham_dir):
    d = write_fdata(tmp_path / "named", class_names=["x", "y", "z"])
    assert load_fdata(d).class_names == ["x", "y", "z"]
    fd = load_fdata(ham_dir, splits=("test",))
    assert fd.class_names == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]  # from dataset_info.json
    assert fd.x("test").shape == (1704, 32, 32, 3)


def test_fingerprint_changes_with_data(tmp_path):
    a = load_fdata(write_fdata(tmp_path / "a", seed=0))
    b = load_fdata(write_fdata(tmp_path / "b", seed=0))
    c = load_fdata(write_fdata(tmp_path / "c", seed=1))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_safe_load_never_unpickles(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="Python objects"):
        safe_load_npy(path)
    np.save(path, np.arange(6, dtype=np.int16).reshape(2, 3))
    shape, dtype, _ = read_npy_header(path)
    assert shape == (2, 3) and dtype == np.int16
    assert safe_load_npy(path, mmap=True).sum() == 15


def test_to_unit_float():
    assert to_unit_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]


def test_stratified_indices_keep_every_class():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = stratified_indices(labels, 100, seed=3)
    counts = np.bincount(labels[idx], minlength=3)
    assert len(idx) == 100 and counts.tolist() == [90, 9, 1]
    assert np.array_equal(idx, stratified_indices(labels, 100, seed=3))
    assert len(stratified_indices(labels, 5000, seed=0)) == 1000
