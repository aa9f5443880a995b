"""Untrusted inputs: every bad .npy / .keras / .tflite gives kdtool's one-line error (exit 2), never a traceback.

A corpus of bad files, each through the CLI (``kdtool bench``/``distill`` for
data, ``kdtool export`` for .keras, ``kdtool bench``/``predict`` for .tflite),
with nothing written anywhere; property-based fuzzing of the validators
(only :class:`~kdtool.errors.InputError` may come out); and the isolated
interpreter turning a crash (a real SIGSEGV/SIGABRT in the child) or a hang
into one line. Every bad file is generated here (TensorFlow builds the tiny
models), none is committed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, write_fdata
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kdtool.cli import main
from kdtool.data import load_fdata, read_npy_header, safe_load_npy
from kdtool.errors import InputError
from kdtool.safety import BUILTIN_OPS, check_keras_file, check_tflite_file

K = 3  # classes
SIZE = 8
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- fixtures: good files to spoil


def _quiet_convert(converter) -> bytes:
    from kdtool.export.convert import quiet

    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(converter.convert())


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid FData, a tiny float32 .tflite (8x8x3 -> 3), a .tflite with a custom op, a valid and a Lambda .keras."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("untrusted")
    fdata = write_fdata(root / "FData", n=(12, 6, 6), k=K, size=SIZE)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(K),
    ])  # fmt: skip
    tflite = root / "tiny.tflite"
    tflite.write_bytes(_quiet_convert(tf.lite.TFLiteConverter.from_keras_model(model)))
    keras_file = root / "tiny.keras"
    model.save(keras_file)

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def erf(x):
        return tf.math.erf(x) * 2.0  # no builtin TFLite op for Erf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([erf.get_concrete_function()], erf)
    conv.allow_custom_ops = True
    custom = root / "custom_op.tflite"
    custom.write_bytes(_quiet_convert(conv))

    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double_it")(inp)
    out = keras.layers.Dense(K)(keras.layers.GlobalAveragePooling2D()(x))
    lam = root / "lambda.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Model(inp, out).save(lam)

    from PIL import Image

    img = root / "lesion.png"
    Image.fromarray(np.full((SIZE, SIZE, 3), 120, np.uint8)).save(img)
    with zipfile.ZipFile(keras_file) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    return SimpleNamespace(root=root, fdata=fdata, tflite=tflite, keras=keras_file, custom=custom, lam=lam,
                           img=img, members=members)  # fmt: skip


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Run in an empty current folder with a private temp folder; checks nothing is left anywhere afterwards."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp_path
    assert not any(cwd.iterdir()), f"files written to the current folder: {sorted(_tree(cwd))}"
    assert not any(tmp.iterdir()), f"temporary files left behind: {sorted(_tree(tmp))}"


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *expected: str, code: int = 2) -> str:
    """kdtool's own error: exit code 2, exactly one line 'Error: ...' holding every ``expected`` text."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def expect_nothing_written(tmp_path: Path, result_fn):
    """Call ``result_fn()`` and check the test's whole tmp tree is unchanged (the sandbox checks cwd and temp)."""
    before = _tree(tmp_path)
    result = result_fn()
    assert _tree(tmp_path) == before, sorted(_tree(tmp_path) ^ before)
    return result


# ----------------------------------------------------------------------------- bad data (.npy)


def _npy_header(d: dict) -> bytes:
    h = repr(d).encode("latin1")
    h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def _pickle_npy(path: Path) -> None:
    np.save(path, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)


def _npz_as_npy(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, x=np.zeros((2, SIZE, SIZE, 3), np.uint8))


def _header_bomb(path: Path) -> None:
    path.write_bytes(_npy_header({"descr": "|u1", "fortran_order": False, "shape": (10**12, SIZE, SIZE, 3)}))


def _header_overflow(path: Path) -> None:  # more elements than a float can count
    path.write_bytes(_npy_header({"descr": "<f4", "fortran_order": False, "shape": (10**200, 10**200, 1, 3)}))


def _truncated(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])


def _nan_images(path: Path) -> None:
    x = np.load(path).astype(np.float32) / 255
    x[1, 2, 3, 0] = np.nan
    np.save(path, x)


def _inf_labels(path: Path) -> None:
    y = np.load(path)
    y[0, 0] = np.inf
    np.save(path, y)


def _not_one_hot(path: Path) -> None:
    y = np.load(path)
    y[2] = 0.5
    np.save(path, y)


def _integer_class_ids(path: Path) -> None:
    np.save(path, np.argmax(np.load(path), axis=1))


def _timedelta_images(path: Path) -> None:
    np.save(path, np.load(path).astype("m8[s]"))


DATA_CASES = {
    "pickle": ("X_train.npy", _pickle_npy, "pickle"),
    "npz-as-npy": ("X_train.npy", _npz_as_npy, "an .npz (zip) archive"),
    "header-size-bomb": ("X_train.npy", _header_bomb, "header declares 192000000000000 bytes"),
    "header-overflow": ("y_train.npy", _header_overflow, "header declares over 10^"),
    "truncated": ("X_train.npy", _truncated, "truncated or corrupt"),
    "nan-images": ("X_train.npy", _nan_images, "NaN or Inf"),
    "inf-labels": ("y_train.npy", _inf_labels, "NaN or Inf"),
    "not-one-hot": ("y_train.npy", _not_one_hot, "not one-hot"),
    "class-ids": ("y_train.npy", _integer_class_ids, "not one-hot labels"),
    "timedelta": ("X_train.npy", _timedelta_images, "is not numeric images"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_line_via_bench_and_distill(good, sandbox, case):
    fname, spoil, why = DATA_CASES[case]
    data = sandbox / "bad"
    shutil.copytree(good.fdata, data)
    spoil(data / fname)
    r = expect_nothing_written(sandbox, lambda: run_cli("bench", good.tflite, "--data", data, "--split", "train",
                                                        "--runs", 1, "--json", sandbox / "out.json"))  # fmt: skip
    one_line_error(r, fname, why)
    if case in ("pickle", "header-size-bomb", "not-one-hot"):  # distill validates before any TensorFlow work
        r = expect_nothing_written(sandbox, lambda: run_cli("distill", "--data", data, "--out", sandbox / "models"))
        one_line_error(r, fname, why)


# ----------------------------------------------------------------------------- bad .keras


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members.items():
                zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def _declare_size(path: Path, name: str, size: int) -> None:
    """Patch the central directory so ``name`` declares ``size`` uncompressed bytes (a lying zip)."""
    raw = bytearray(path.read_bytes())
    needle = b"PK\x01\x02"
    pos = raw.find(needle)
    while pos >= 0:
        n = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46 : pos + 46 + n].decode() == name:
            struct.pack_into("<I", raw, pos + 24, size)
            break
        pos = raw.find(needle, pos + 4)
    path.write_bytes(bytes(raw))


def _config_with(good, change) -> bytes:
    cfg = json.loads(good.members["config.json"])
    change(cfg)
    return json.dumps(cfg).encode()


def _os_system(cfg: dict) -> None:
    layer = cfg["config"]["layers"][1]
    layer["module"], layer["class_name"] = "os", "system"


def _nested_lambda(cfg: dict) -> None:
    # a Lambda hidden inside a nested functional model's layer list
    inner = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "registered_name": "Functional",
        "config": {
            "name": "inner",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Lambda",
                    "config": {"name": "sneaky"},
                    "registered_name": None,
                }
            ],
        },
    }
    cfg["config"]["layers"].append(inner)


def _foreign_registered(cfg: dict) -> None:
    cfg["config"]["layers"][1]["registered_name"] = "evil>Conv2D"


def _keras_cases(good, d: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    m = good.members
    cases = {}
    lam = d / "lambda.keras"
    shutil.copy(good.lam, lam)
    cases["lambda"] = (lam, ("refused", "Lambda", "double_it"))
    cases["dotdot-member"] = (_zip(d / "dotdot.keras", {**m, "../evil.txt": b"pwned"}), ("'..'",))
    cases["absolute-member"] = (_zip(d / "abs.keras", {**m, "/tmp/evil.txt": b"x"}), ("absolute path",))
    cases["unexpected-member"] = (_zip(d / "extra.keras", {**m, "model.pkl": b"\x80\x04"}), ("unexpected zip member",))
    dup = d / "dup2.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(dup, "w") as zf:
            for name, data in m.items():
                zf.writestr(name, data)
            zf.writestr("config.json", b'{"class_name": "Functional"}')
    cases["duplicate-member"] = (dup, ("appears twice",))
    bomb = _zip(d / "bomb.keras", m)
    _declare_size(bomb, "model.weights.h5", 0xFFFFFFF0)  # 4 GiB declared, a few KB stored
    cases["declared-huge"] = (bomb, ("zip bomb",))
    ratio = _zip(d / "ratio.keras", {**m, "assets/zeros.bin": b"\0" * (8 << 20)}, zipfile.ZIP_DEFLATED)
    cases["ratio-bomb"] = (ratio, ("zip bomb", "assets/zeros.bin"))
    cases["os-system-class"] = (
        _zip(d / "os.keras", {**m, "config.json": _config_with(good, _os_system)}),
        ("os.system", "neither a Keras built-in"),
    )
    cases["nested-lambda"] = (
        _zip(d / "nested.keras", {**m, "config.json": _config_with(good, _nested_lambda)}),
        ("Lambda", "sneaky"),
    )
    cases["foreign-registered"] = (
        _zip(d / "reg.keras", {**m, "config.json": _config_with(good, _foreign_registered)}),
        ("evil>Conv2D",),
    )
    cases["not-json-config"] = (_zip(d / "nojson.keras", {**m, "config.json": b"{not json"}), ("not valid JSON",))
    deep = b"[" * 100_000 + b"]" * 100_000
    cases["deep-json"] = (_zip(d / "deep.keras", {**m, "config.json": deep}), ("config.json",))
    cases["weights-not-hdf5"] = (_zip(d / "w.keras", {**m, "model.weights.h5": b"not hdf5 at all"}), ("HDF5",))
    cut = d / "cut.keras"
    cut.write_bytes(good.keras.read_bytes()[:-200])
    cases["truncated"] = (cut, ("not a zip archive",))
    h5 = d / "model.h5"
    import h5py

    with h5py.File(h5, "w") as f:
        f["w"] = np.zeros(3)
    cases["h5"] = (h5, ("HDF5 models are not accepted",))
    h5k = d / "h5named.keras"
    shutil.copy(h5, h5k)
    cases["h5-named-keras"] = (h5k, ("HDF5 file named .keras",))
    saved = d / "saved_model_dir"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\0")
    cases["savedmodel"] = (saved, ("SavedModel",))
    return cases


KERAS_CASES = ["lambda", "dotdot-member", "absolute-member", "unexpected-member", "duplicate-member",
               "declared-huge", "ratio-bomb", "os-system-class", "nested-lambda", "foreign-registered",
               "not-json-config", "deep-json", "weights-not-hdf5", "truncated", "h5", "h5-named-keras",
               "savedmodel"]  # fmt: skip


@pytest.mark.parametrize("case", KERAS_CASES)
def test_bad_keras_is_one_line_via_export(good, sandbox, case):
    d = sandbox / "models"
    d.mkdir()
    path, expected = _keras_cases(good, d)[case]
    r = expect_nothing_written(sandbox, lambda: run_cli("export", path, "--data", good.fdata))
    one_line_error(r, str(path), *expected)
    if not path.is_dir() and path.suffix == ".keras":
        with pytest.raises(InputError):
            check_keras_file(path)


def test_good_keras_passes_the_prescan(good):
    info = check_keras_file(good.keras)
    assert info["members"] == ["metadata.json", "config.json", "model.weights.h5"]
    assert "keras.layers.Conv2D" in info["classes"] and info["keras_version"]


def test_kdtool_registered_layer_passes_and_loads(good, tmp_path):
    import keras

    from kdtool.export.convert import load_keras_model
    from kdtool.layers import ImagePreprocess

    inp = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Dense(K)(keras.layers.GlobalAveragePooling2D()(ImagePreprocess("tf")(inp)))
    path = tmp_path / "teacherish.keras"
    keras.Model(inp, out).save(path)
    assert "kdtool.layers.ImagePreprocess" in check_keras_file(path)["classes"]
    assert load_keras_model(path).count_params() > 0


# ----------------------------------------------------------------------------- bad .tflite


def _tflite_cases(good, d: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    raw = good.tflite.read_bytes()
    cut = d / "truncated.tflite"
    cut.write_bytes(raw[: len(raw) // 2])
    rnd = d / "random.tflite"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    tfl3 = d / "random_tfl3.tflite"
    tfl3.write_bytes(b"\x10\x00\x00\x00TFL3" + np.random.default_rng(1).bytes(4096))
    empty = d / "empty.tflite"
    empty.write_bytes(b"")
    custom = d / "custom_op.tflite"
    shutil.copy(good.custom, custom)
    return {
        "truncated": (cut, ("corrupt or truncated",)),
        "random-bytes": (rnd, ("not a TFLite model",)),
        "random-with-identifier": (tfl3, ("corrupt or truncated",)),
        "empty": (empty, ("too small",)),
        "custom-op": (custom, ("custom op", "'Erf'", "only builtin TFLite ops")),
    }


TFLITE_CASES = ["truncated", "random-bytes", "random-with-identifier", "empty", "custom-op"]


@pytest.mark.parametrize("case", TFLITE_CASES)
def test_bad_tflite_is_one_line_via_bench_and_predict(good, sandbox, case):
    d = sandbox / "m"
    d.mkdir()
    path, expected = _tflite_cases(good, d)[case]
    r = expect_nothing_written(sandbox, lambda: run_cli("bench", path, "--data", good.fdata, "--runs", 1,
                                                        "--json", sandbox / "b.json"))  # fmt: skip
    one_line_error(r, str(path), *expected)
    r = expect_nothing_written(sandbox, lambda: run_cli("predict", path, good.img))
    one_line_error(r, str(path), *expected)
    with pytest.raises(InputError):
        check_tflite_file(path)


def test_check_tflite_reports_builtin_ops(good):
    info = check_tflite_file(good.tflite)
    assert info.schema_version == 3 and info.subgraphs == 1 and info.operators >= 3
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(info.op_names) and "CUSTOM" not in info.op_names
    assert BUILTIN_OPS[32] == "CUSTOM" and BUILTIN_OPS[3] == "CONV_2D"


def test_patched_custom_opcode_is_refused(good, tmp_path):
    """Flip a valid file's first operator code to CUSTOM (32) in place: refused without any interpreter."""
    raw = bytearray(good.tflite.read_bytes())
    root = struct.unpack_from("<I", raw, 0)[0]

    def field(table, i):
        vt = table - struct.unpack_from("<i", raw, table)[0]
        if 4 + 2 * i >= struct.unpack_from("<H", raw, vt)[0]:
            return None
        rel = struct.unpack_from("<H", raw, vt + 4 + 2 * i)[0]
        return table + rel if rel else None

    codes = field(root, 1)
    vec = codes + struct.unpack_from("<I", raw, codes)[0]
    first = vec + 4 + struct.unpack_from("<I", raw, vec + 4)[0]
    patched = 0
    for i, fmt in ((0, "<b"), (3, "<i")):  # deprecated_builtin_code, builtin_code
        pos = field(first, i)
        if pos is not None:
            struct.pack_into(fmt, raw, pos, 32)
            patched += 1
    assert patched
    bad = tmp_path / "patched.tflite"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="custom op"):
        check_tflite_file(bad)


# ----------------------------------------------------------------------------- fuzzing: only kdtool's errors

NPY_DTYPES = st.one_of(
    hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(), hnp.datetime64_dtypes(), hnp.timedelta64_dtypes(),
    hnp.byte_string_dtypes(max_len=3), hnp.unicode_string_dtypes(max_len=3),
)  # fmt: skip
ANY_ARRAY = hnp.arrays(NPY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=3))
IMAGES = hnp.arrays(
    st.sampled_from([np.uint8, np.int16, np.uint16, np.float16, np.float32, np.float64]),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 3), st.sampled_from([1, 3])),
)
LABEL_SHAPES = st.tuples(st.integers(0, 3), st.integers(1, 3))
LABELS = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64]), LABEL_SHAPES,
               elements=st.sampled_from([0.0, 1.0, 0.5, -1.0]) | st.floats(width=32)),
    hnp.arrays(st.sampled_from([np.int8, np.int64]), LABEL_SHAPES, elements=st.sampled_from([0, 1, 2, -1])),
    hnp.arrays(np.uint8, LABEL_SHAPES, elements=st.sampled_from([0, 1, 2])),
)  # fmt: skip


@FUZZ
@given(x=st.one_of(IMAGES, ANY_ARRAY), y=st.one_of(LABELS, ANY_ARRAY))
def test_fuzz_load_fdata_raises_only_input_error(x, y):
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "X_test.npy", x, allow_pickle=False)
        np.save(Path(d) / "y_test.npy", y, allow_pickle=False)
        try:
            fd = load_fdata(d, splits=("test",))
        except InputError as exc:
            assert "\n" not in exc.format_message()
            return
        xs, labels = fd.x("test"), fd.labels("test")  # what bench and distill use next must work too
        assert xs.dtype == np.float32 and np.isfinite(xs).all() and xs.min() >= 0 and xs.max() <= 1
        assert labels.shape == (len(xs),) and fd.class_counts("test").sum() == len(xs)
        assert len(fd.fingerprint()) == 64


def _valid_npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


NPY_BYTES = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"\x93NUMPY" + b),
    st.tuples(
        hnp.arrays(NPY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3)),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
        st.integers(0, 400) | st.none(),
    ).map(lambda t: _mutate(_valid_npy(t[0]), t[1], t[2])),  # fmt: skip
)


def _mutate(raw: bytes, flips, cut) -> bytes:
    b = bytearray(raw)
    for pos, val in flips:
        if pos < len(b):
            b[pos] = val
    return bytes(b[:cut] if cut is not None else b)


_GOOD_HEADER = _npy_header({"descr": "<f4", "fortran_order": False, "shape": (1,)})


@FUZZ
@given(raw=NPY_BYTES)
@example(raw=_npy_header({"descr": "<f4", "fortran_order": False, "shape": (10**200, 10**200)}))  # OverflowError
@example(raw=_GOOD_HEADER[:20] + b"'" * 3 + _GOOD_HEADER[23:])  # numpy's tokenize fallback: TokenError
def test_fuzz_npy_header_raises_only_input_error(raw):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.npy"
        path.write_bytes(raw)
        try:
            read_npy_header(path)
            safe_load_npy(path)
        except InputError as exc:
            assert str(path) in exc.format_message() and "\n" not in exc.format_message()


@pytest.fixture(scope="module")
def tflite_bytes(good) -> bytes:
    return good.tflite.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_check_tflite_raises_only_input_error(tflite_bytes, data):
    kind = data.draw(st.sampled_from(["random", "identifier", "mutated", "truncated"]))
    if kind == "random":
        raw = data.draw(st.binary(max_size=2000))
    elif kind == "identifier":
        raw = data.draw(st.binary(min_size=4, max_size=4)) + b"TFL3" + data.draw(st.binary(max_size=2000))
    else:
        flips = data.draw(st.lists(st.tuples(st.integers(0, len(tflite_bytes) - 1), st.integers(0, 255)),
                                   min_size=0 if kind == "truncated" else 1, max_size=8))  # fmt: skip
        cut = data.draw(st.integers(0, len(tflite_bytes))) if kind == "truncated" else None
        raw = _mutate(tflite_bytes, flips, cut)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.tflite"
        path.write_bytes(raw)
        try:
            info = check_tflite_file(path)
        except InputError as exc:
            assert "\n" not in exc.format_message()
        else:
            assert info.subgraphs >= 1 and all(n != "CUSTOM" for n in info.op_names)


CLASS_NAMES = st.sampled_from(["Dense", "Lambda", "__lambda__", "Functional", "system", "__tuple__", "TFSMLayer", ""])
MODULES = st.sampled_from(["keras.layers", "keras", "os", "builtins", "kdtool.layers", None, 3])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.fixed_dictionaries({"class_name": CLASS_NAMES, "module": MODULES,
                             "registered_name": st.sampled_from([None, "kdtool>ImagePreprocess", "evil>X", "Dense"])}),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["class_name", "module", "config", "layers", "name"]) | st.text(max_size=5), kids, max_size=4),
    max_leaves=25,
)  # fmt: skip
MEMBER_NAMES = st.sampled_from(["config.json", "metadata.json", "model.weights.h5", "assets/", "assets/v.txt",
                                "../x", "/abs", "a\\b", "assets/../x", "model.pkl", "assets//x"]) | st.text(
    min_size=1, max_size=12)  # fmt: skip
MEMBER_DATA = st.one_of(
    st.binary(max_size=64), JSONISH.map(lambda o: json.dumps(o).encode()), st.just(b"\x89HDF\r\n\x1a\n" + b"\0" * 16)
)


@FUZZ
@given(data=st.data())
def test_fuzz_check_keras_raises_only_input_error(good, data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.keras"
        if data.draw(st.booleans()):
            members = data.draw(st.lists(st.tuples(MEMBER_NAMES, MEMBER_DATA), max_size=5))
            if data.draw(st.booleans()):
                members.append(("config.json", json.dumps(data.draw(JSONISH)).encode()))
            compression = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with zipfile.ZipFile(path, "w") as zf:
                    for name, blob in members:
                        zf.writestr(zipfile.ZipInfo(name), blob, compress_type=compression)
        else:
            raw = good.keras.read_bytes()
            flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=8))
            path.write_bytes(_mutate(raw, flips, data.draw(st.none() | st.integers(0, len(raw)))))
        try:
            info = check_keras_file(path)
        except InputError as exc:
            assert "\n" not in exc.format_message()
        else:
            assert all(not c.endswith((".Lambda", ".system")) for c in info["classes"])


# ----------------------------------------------------------------------------- isolation: crash and hang

CHILD = """
import ctypes, os, sys, time
from ai_edge_litert import interpreter as _litert

def invoke(self):
    mode = os.environ["KDTOOL_TEST_CHILD"]
    if mode == "segv":
        ctypes.string_at(0)  # a real segmentation fault, as a broken kernel would do
    elif mode == "abort":
        os.abort()
    elif mode == "hang":
        time.sleep(3600)

_litert.Interpreter.invoke = invoke  # the real child, with an interpreter whose invoke() misbehaves
from kdtool.bench._child import main
sys.exit(main())
"""


@pytest.fixture
def bad_child(tmp_path, monkeypatch):
    """Start isolated interpreters through a child whose invoke() crashes or hangs (KDTOOL_TEST_CHILD)."""
    from kdtool.bench import isolation

    script = tmp_path / "bad_child.py"
    script.write_text(CHILD)
    monkeypatch.setattr(isolation, "_child_command", lambda: [sys.executable, str(script)])

    def use(mode: str) -> None:
        monkeypatch.setenv("KDTOOL_TEST_CHILD", mode)

    return use


def _trusted_copy(good, d: Path) -> tuple[Path, Path]:
    """(a copy with a matching kdtool sidecar, a foreign copy without one)."""
    d.mkdir(exist_ok=True)
    trusted, foreign = d / "ours.float32.tflite", d / "foreign.tflite"
    shutil.copy(good.tflite, trusted)
    shutil.copy(good.tflite, foreign)
    digest = hashlib.sha256(trusted.read_bytes()).hexdigest()
    trusted.with_suffix(".json").write_text(json.dumps({"format": 1, "mode": "float32", "sha256": digest}))
    return trusted, foreign


@pytest.mark.parametrize("mode, signal_name", [("segv", "SIGSEGV"), ("abort", "SIGABRT")])
def test_isolated_crash_is_one_line(good, sandbox, bad_child, mode, signal_name):
    bad_child(mode)
    _, foreign = _trusted_copy(good, sandbox / "m")
    r = run_cli("bench", foreign, "--data", good.fdata, "--runs", 2, "--warmup", 1)
    one_line_error(r, str(foreign), f"crashed ({signal_name})", "timing invokes")
    r = run_cli("predict", foreign, good.img)
    one_line_error(r, str(foreign), f"crashed ({signal_name})", "classifying")


@pytest.mark.slow
def test_isolated_hang_is_a_timeout_line(good, sandbox, bad_child):
    bad_child("hang")
    _, foreign = _trusted_copy(good, sandbox / "m")
    r = run_cli("bench", foreign, "--data", good.fdata, "--runs", 2, "--timeout", 2)
    one_line_error(r, str(foreign), "no progress for 2 s", "--timeout")
    r = run_cli("bench", foreign, "--data", good.fdata, "--reference", foreign, "--timeout", 2)
    one_line_error(r, str(foreign), "no progress for 2 s")


def test_default_isolates_only_files_kdtool_did_not_write(good, sandbox, bad_child):
    from kdtool.bench.isolation import should_isolate, written_by_kdtool

    bad_child("segv")  # every isolated run crashes, so the outcome shows where the model ran
    trusted, foreign = _trusted_copy(good, sandbox / "m")
    assert written_by_kdtool(trusted) and not written_by_kdtool(foreign)
    assert not should_isolate(trusted, None) and should_isolate(foreign, None) and should_isolate(trusted, True)
    assert run_cli("bench", trusted, "--data", good.fdata, "--runs", 2).exit_code == 0  # in-process
    assert run_cli("bench", foreign, "--data", good.fdata, "--runs", 2, "--no-isolate").exit_code == 0
    one_line_error(run_cli("bench", trusted, "--data", good.fdata, "--runs", 2, "--isolate"), "crashed")
    one_line_error(run_cli("bench", foreign, "--data", good.fdata, "--runs", 2), "crashed")
    assert run_cli("predict", trusted, good.img).exit_code == 0
    # a sidecar whose sha256 does not match (the file was swapped): isolated again
    trusted.with_suffix(".json").write_text(json.dumps({"sha256": "0" * 64}))
    assert not written_by_kdtool(trusted)
    one_line_error(run_cli("bench", trusted, "--data", good.fdata, "--runs", 2), "crashed")


def test_isolated_and_in_process_give_the_same_results(good, sandbox):
    _, foreign = _trusted_copy(good, sandbox / "m")
    preds, recs = {}, {}
    for flag in ("--isolate", "--no-isolate"):
        out, js = sandbox / f"p{flag}.npy", sandbox / f"b{flag}.json"
        r = run_cli("bench", foreign, "--data", good.fdata, "--runs", 3, "--warmup", 1, flag, "--predictions", out,
                    "--json", js, "--reference", foreign)  # fmt: skip
        assert r.exit_code == 0, r.output
        preds[flag], recs[flag] = np.load(out), json.loads(js.read_text())[0]
    assert np.array_equal(preds["--isolate"], preds["--no-isolate"])
    for key in ("accuracy", "confusion_matrix", "input_shape", "model", "reference_agreement"):
        assert recs["--isolate"][key] == recs["--no-isolate"][key]
    assert list(recs["--isolate"]) == list(recs["--no-isolate"])
    r1 = run_cli("predict", foreign, good.img, "--json", "--isolate")
    r2 = run_cli("predict", foreign, good.img, "--json", "--no-isolate")
    assert r1.exit_code == r2.exit_code == 0 and json.loads(r1.stdout) == json.loads(r2.stdout)


def test_isolated_errors_keep_their_line(good, sandbox):
    """An InputError raised inside the child (here: data/model shape mismatch) comes back as the same line."""
    other = write_fdata(sandbox / "big", n=(4, 4, 4), k=K, size=SIZE + 2)
    _, foreign = _trusted_copy(good, sandbox / "m")
    lines = [one_line_error(run_cli("bench", foreign, "--data", other, flag), "8x8x3", "10x10x3")
             for flag in ("--isolate", "--no-isolate")]  # fmt: skip
    assert lines[0] == lines[1]
    not_image = sandbox / "notes.png"
    not_image.write_text("hello")
    one_line_error(run_cli("predict", foreign, not_image, "--isolate"), "notes.png")


def test_safety_and_child_import_no_tensorflow():
    code = (
        "import sys, kdtool.safety, kdtool.bench._child, kdtool.bench.isolation, kdtool.bench.run\n"
        "import kdtool.bench.predict, kdtool.litert, kdtool.tflite_model, kdtool.quant\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_child_ignores_modules_in_the_current_folder(good, tmp_path, monkeypatch):
    """The child must not import a numpy.py lying in the folder kdtool was started from."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "numpy.py").write_text("raise SystemExit('hijacked by ./numpy.py')\n")
    monkeypatch.chdir(here)
    _, foreign = _trusted_copy(good, tmp_path / "m")
    r = run_cli("bench", foreign, "--data", good.fdata, "--runs", 1, "--isolate")
    assert r.exit_code == 0, r.output


def test_large_weight_buffers_pass_the_tflite_check(tmp_path):
    """A real model with a weight tensor over a million bytes (a teacher's float32 file) is not 'corrupt'."""
    import keras
    import tensorflow as tf

    from kdtool.safety import check_tflite_file

    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(1024), keras.layers.Dense(3)])
    path = tmp_path / "big.float32.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    info = check_tflite_file(path)
    assert "FULLY_CONNECTED" in info.op_names
