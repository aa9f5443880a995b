"""Make an FData folder: DermaMNIST (download, verify, convert) or a synthetic set.

numpy, Pillow and the standard library only.

Example:
    >>> make_synthetic("FData", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from kdtool.data import SPLITS, save_fdata
from kdtool.errors import InputError, RuntimeFailure

# HAM10000 class codes in DermaMNIST's label order (medmnist INFO["dermamnist"]["label"]).
HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]

# From the medmnist package's INFO["dermamnist"] (MedMNIST v2, Zenodo record 10519652).
_ZENODO = "https://zenodo.org/records/10519652/files/"
DERMAMNIST = {
    28: ("https://zenodo.org/records/10519652/files/dermamnist.npz?download=1", "0744692d530f8e62ec473284d019b0c7"),
    64: ("https://zenodo.org/records/10519652/files/dermamnist_64.npz?download=1", "b70a2f5635c6199aeaa28c31d7202e1f"),
    128: (_ZENODO + "dermamnist_128.npz?download=1", "2defd784463fa5243564e855ed717de1"),  # MedMNIST+
    224: (_ZENODO + "dermamnist_224.npz?download=1", "8974907d8e169bef5f5b96bc506ae45d"),  # MedMNIST+
}
DERMAMNIST_INFO = {
    "dataset": "DermaMNIST (MedMNIST v2), HAM10000 images; MedMNIST's own image-level split",
    "licence": "CC BY-NC 4.0 (MedMNIST); HAM10000 CC BY-NC-SA 4.0, Tschandl et al., Sci Data 5, 180161 (2018)",
    "citation": "Yang et al., MedMNIST v2, Scientific Data 10, 41 (2023)",
}


def md5sum(path: Path) -> str:
    h = hashlib.md5()  # checksum published by MedMNIST, not a security boundary
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its MD5.

    Args:
        url: source address.
        dest: target file (kept if it already exists with the right checksum).
        md5: expected MD5 hex digest.
        timeout: socket timeout in seconds.

    Returns:
        ``dest``.
    """
    if dest.exists() and md5sum(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
        got = md5sum(tmp)
        if got != md5:
            raise RuntimeFailure(f"{url}: checksum mismatch (MD5 {got}, expected {md5}); download again")
        os.replace(tmp, dest)
        return dest
    except OSError as exc:
        raise RuntimeFailure(f"{url}: download failed ({exc}); download it by hand and pass --npz") from None
    finally:
        tmp.unlink(missing_ok=True)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 RGB images to size x size with PIL bicubic (as the HAM10000 set was made)."""
    from PIL import Image

    if x.shape[1] == size and x.shape[2] == size:
        return x
    out = np.empty((len(x), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(x):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
    return out


def convert_medmnist_npz(npz_path: Path, out: Path, size: int = 32, info: dict | None = None) -> Path:
    """Convert a MedMNIST .npz (``{split}_images``, ``{split}_labels``) to FData.

    Args:
        npz_path: the .npz file (loaded with ``allow_pickle=False``).
        out: FData folder to write.
        size: output image side (32 by default, the research code's size).
        info: facts for dataset_info.json.

    Returns:
        The FData folder.
    """
    npz_path = Path(npz_path)
    try:
        archive = np.load(npz_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{npz_path}: not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{npz_path}: expected an .npz archive with train/val/test images and labels")
    arrays = {}
    with archive:
        for split in SPLITS:
            for key in (f"{split}_images", f"{split}_labels"):
                if key not in archive.files:
                    raise InputError(f"{npz_path}: missing array {key!r} (expected MedMNIST's layout)")
            try:
                images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
            except ValueError as exc:
                raise InputError(f"{npz_path}: unreadable array in {split} ({exc})") from None
            if images.dtype != np.uint8 or images.ndim not in (3, 4):
                raise InputError(
                    f"{npz_path}: {split}_images must be uint8 (N, H, W[, 3]), got {images.dtype} {images.shape}"
                )
            if images.ndim == 3:
                images = np.repeat(images[..., None], 3, axis=-1)
            labels = np.asarray(labels).reshape(-1).astype(np.int64)
            if len(labels) != len(images) or labels.min(initial=0) < 0 or labels.max(initial=0) >= len(HAM_CLASSES):
                raise InputError(f"{npz_path}: {split}_labels must be one label 0..6 per image")
            y = np.eye(len(HAM_CLASSES), dtype=np.float32)[labels]
            arrays[split] = (resize_images(images, size), y)
    return save_fdata(out, arrays, HAM_CLASSES, info=dict(info or DERMAMNIST_INFO, source=str(npz_path.name)))


def make_synthetic(
    out: str | os.PathLike, n_train: int = 700, n_val: int = 150, n_test: int = 150, size: int = 32, seed: int = 0
) -> Path:
    """Write a small SYNTHETIC 7-class FData set for trying the pipeline offline.

    Each class is a coloured blob of its own hue, size and texture on a skin-toned
    background with noise; class frequencies are imbalanced like HAM10000's. It is
    learnable in a few epochs and says nothing about real accuracy.

    Args:
        out: folder to write.
        n_train, n_val, n_test: images per split.
        size: image side.
        seed: RNG seed.

    Returns:
        The folder.
    """
    rng = np.random.default_rng(seed)
    k = len(HAM_CLASSES)
    freq = np.array([3, 5, 11, 1.5, 11, 60, 1.5])
    freq = freq / freq.sum()
    hues = rng.uniform(0, 1, size=(k, 3))
    yy, xx = np.mgrid[0:size, 0:size] / size
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = rng.choice(k, size=n, p=freq)
        labels[:k] = np.arange(k)  # every class present in every split
        x = np.empty((n, size, size, 3), dtype=np.float32)
        for i, c in enumerate(labels):
            cx, cy = rng.uniform(0.35, 0.65, size=2)
            radius = 0.15 + 0.04 * (c % 4) + rng.normal(0, 0.02)
            blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2)))
            stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (c + 1) * (xx + yy))
            skin = np.array([0.85, 0.65, 0.55]) + rng.normal(0, 0.05, size=3)
            colour = 0.7 * hues[c] + 0.3 * rng.uniform(0, 1, size=3)
            img = skin * (1 - blob[..., None]) + colour * blob[..., None] * (0.8 + 0.2 * stripes[..., None])
            x[i] = img + rng.normal(0, 0.06, size=img.shape)
        x = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
        arrays[split] = (x, np.eye(k, dtype=np.float32)[labels])
    info = {
        "dataset": "SYNTHETIC blobs (kdtool data synthetic) - for trying the pipeline only, never an accuracy result",
        "synthetic": True,
        "seed": seed,
    }
    return save_fdata(out, arrays, HAM_CLASSES, info=info)
