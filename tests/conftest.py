"""Shared test fixtures: tiny FData folders and the shared real HAM10000 slice."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# the kernels kdtool's own TensorFlow import asks for (kdtool.train_extra.require_train_extra): test modules
# import TensorFlow before kdtool does, and TensorFlow reads this only when it loads
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_HAM = ROOT.parent / "shared" / "data" / "ham10000"
#: kdtool distill options for a tiny, fast run (no ImageNet weights, 32 px, a two-block 8/16 student).
TINY = [
    "--epochs",
    "2",
    "--teacher-epochs",
    "1",
    "--batch-size",
    "16",
    "--weights",
    "none",
    "--image-size",
    "32",
    "--student-filters",
    "8,16",
    "--student-dense",
    "16",
]


def tiny_backbone(input_shape, weights):
    """A stand-in teacher backbone (one 4-filter conv, pooled): tiny and seeded, its weights random.

    Registered as ``tinynet`` by :func:`register_tinynet` where a test needs a teacher but not a real
    architecture: tracing an EfficientNet-Lite0 train step costs about 15 s per model on 2 cores.
    """
    import keras

    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="tinynet_backbone")


def register_tinynet(mp: pytest.MonkeyPatch) -> None:
    """Add ``tinynet`` (:func:`tiny_backbone`) to kdtool's teacher registry for ``mp``'s lifetime."""
    from kdtool.distill.teachers import TEACHERS, TeacherSpec

    mp.setitem(TEACHERS, "tinynet", TeacherSpec(tiny_backbone, "torch", 8, "test stand-in"))


def write_fdata(folder: Path, n=(40, 12, 12), k=3, size=8, dtype="uint8", seed=0, class_names=None) -> Path:
    """Write a small, learnable FData folder: class c has a brighter channel c % 3.

    Args:
        folder: where to write.
        n: images in (train, val, test).
        k: classes.
        size: image side.
        dtype: "uint8" (0..255) or "float32" ([0, 1]).
        seed: RNG seed.
        class_names: optional names written to classes.json.

    Returns:
        The folder.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in zip(("train", "val", "test"), n, strict=True):
        labels = np.arange(count) % k
        rng.shuffle(labels)
        x = rng.uniform(0, 0.5, size=(count, size, size, 3))
        for i, c in enumerate(labels):
            x[i, :, :, c % 3] += 0.4 + 0.1 * (c // 3)
        x = np.clip(x, 0, 1)
        x = (x * 255).round().astype(np.uint8) if dtype == "uint8" else x.astype(np.float32)
        y = np.eye(k, dtype=np.float32)[labels]
        np.save(folder / f"X_{split}.npy", x)
        np.save(folder / f"y_{split}.npy", y)
    if class_names is not None:
        import json

        (folder / "classes.json").write_text(json.dumps(list(class_names)))
    return folder


@pytest.fixture
def tiny_fdata(tmp_path) -> Path:
    """A 3-class 8x8 FData folder (uint8)."""
    return write_fdata(tmp_path / "FData")


@pytest.fixture(scope="session")
def ham_dir() -> Path:
    """The shared real HAM10000 set (CI has it at ../shared)."""
    if not (SHARED_HAM / "X_train.npy").exists():
        pytest.skip(f"shared HAM10000 data not found at {SHARED_HAM}")
    return SHARED_HAM


@pytest.fixture(scope="session")
def ham_slice(tmp_path_factory, ham_dir) -> Path:
    """A stratified slice of the real data (600/200/200 images), for integration tests."""
    from kdtool.data import load_fdata, save_fdata, stratified_indices

    fd = load_fdata(ham_dir)
    out = tmp_path_factory.mktemp("ham_slice")
    arrays = {}
    for split, n in (("train", 600), ("val", 200), ("test", 200)):
        idx = stratified_indices(fd.labels(split), n, seed=0)
        arrays[split] = (fd.raw_x(split)[idx], fd.onehot(split)[idx])
    return save_fdata(out, arrays, fd.class_names)


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (not a package) as a module, for unit tests of its helpers."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # registered under its name, replacing a copy another benchmark imported: doctest and
    # inspect look functions' modules up in sys.modules
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
