"""FData loading and validation, numpy only (it runs on the device too).

An FData folder holds six arrays, ``X_{train,val,test}.npy`` and
``y_{train,val,test}.npy``. X is (N, H, W, 3), either uint8 0..255 or float
already in [0, 1]; y is one-hot (N, K). Class names come from an optional
``classes.json`` (a list, or ``{"classes": [...]}``) or ``dataset_info.json``
(its ``classes`` list) beside them, else ``class_0..K-1``.

Every problem stops with ONE line naming the file (:class:`InputError`, exit
code 2) before any training starts.

Example:
    >>> fd = load_fdata("../shared/data/ham10000")  # doctest: +SKIP
    >>> fd.x("train").dtype, fd.num_classes          # doctest: +SKIP
    (dtype('float32'), 7)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdtool.errors import InputError, RuntimeFailure

SPLITS = ("train", "val", "test")
_CHUNK = 4096


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Read and check an .npy header without loading the data.

    Refuses files that are not .npy (an .npz renamed .npy, random bytes), object
    (pickle) arrays and headers whose declared size does not match the file size
    (a tiny file can declare terabytes; a truncated file declares more than it has).

    Args:
        path: the .npy file.

    Returns:
        (shape, dtype, fortran_order).

    Raises:
        InputError: with the file name, for any of the problems above.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
            if head != b"\x93NUMPY":
                kind = "an .npz (zip) archive" if head[:2] == b"PK" else "not an .npy file"
                raise InputError(f"{path}: {kind}; expected a numpy .npy array")
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10000)
            else:
                raise InputError(f"{path}: unsupported .npy format version {version}")
            offset = fh.tell()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected an .npy file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except InputError:
        raise
    except Exception as exc:  # numpy's parser: ValueError, SyntaxError, tokenize.TokenError...
        raise InputError(f"{path}: corrupt .npy header ({' '.join(str(exc).split())[:200]})") from None
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects (pickle); only numeric arrays are accepted")
    if any(int(d) < 0 for d in shape):
        raise InputError(f"{path}: negative dimension in header {shape}")
    expected = math.prod(int(d) for d in shape) * dtype.itemsize  # exact: a header may declare 10**400 elements
    actual = path.stat().st_size - offset
    if expected != actual:
        declared = f"{expected}" if expected < 10**18 else f"over 10^{len(str(expected)) - 1}"
        raise InputError(
            f"{path}: header declares {declared} bytes of data but the file holds {actual} (truncated or corrupt)"
        )
    return tuple(int(d) for d in shape), dtype, bool(fortran)


def safe_load_npy(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """Load an .npy file safely: header checked first, never unpickling.

    Args:
        path: the .npy file.
        mmap: memory-map instead of reading into RAM (for large arrays).

    Returns:
        The array.

    Raises:
        InputError: one line naming the file, for any unreadable or unsafe file.
    """
    path = Path(path)
    read_npy_header(path)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read .npy ({exc})") from None
    if not isinstance(arr, np.ndarray):  # pragma: no cover - header check catches npz first
        raise InputError(f"{path}: not a single numpy array")
    return arr


def to_unit_float(x: np.ndarray) -> np.ndarray:
    """Scale images to float32 in [0, 1]: integer arrays by /255, float arrays as they are.

    Args:
        x: uint8 (or other integer) 0..255 or float [0, 1] images.

    Returns:
        float32 array of the same shape.
    """
    if np.issubdtype(x.dtype, np.integer):
        return (np.asarray(x, dtype=np.float32) / np.float32(255.0)).astype(np.float32)
    return np.asarray(x, dtype=np.float32)


def _numeric(dtype: np.dtype) -> bool:
    """Plain integers or floats only: not bool, complex, datetime/timedelta (numpy counts m8 as an integer)."""
    return dtype.kind in "iuf" and dtype.fields is None


def _check_images(x: np.ndarray, path: Path) -> None:
    if not _numeric(x.dtype):
        raise InputError(f"{path}: dtype {x.dtype} is not numeric images (expected uint8 0..255 or float in [0,1])")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"{path}: shape {x.shape} is not (N, H, W, 3) RGB images")
    if x.shape[0] == 0:
        raise InputError(f"{path}: the split is empty")
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise InputError(f"{path}: image size {x.shape[1]}x{x.shape[2]} is empty")
    if np.issubdtype(x.dtype, np.floating):
        lo, hi = _finite_range(x, path)
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{path}: float images must lie in [0, 1] but range is [{lo:.4g}, {hi:.4g}] "
                "(store uint8 0..255, or divide by 255)"
            )
    else:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise InputError(f"{path}: integer images must lie in 0..255 but range is [{lo}, {hi}]")


def _finite_range(a: np.ndarray, path: Path) -> tuple[float, float]:
    """min and max of a float array, refusing NaN/Inf; chunked so mmap arrays stay cheap."""
    lo, hi = np.inf, -np.inf
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    for start in range(0, flat.shape[0], _CHUNK):
        block = np.asarray(flat[start : start + _CHUNK])
        if not np.isfinite(block).all():
            raise InputError(f"{path}: contains NaN or Inf values")
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return lo, hi


def _check_labels(y: np.ndarray, path: Path) -> None:
    if not _numeric(y.dtype):
        raise InputError(f"{path}: dtype {y.dtype} is not numeric one-hot labels")
    if y.ndim != 2 or y.shape[1] < 2:
        raise InputError(f"{path}: shape {y.shape} is not one-hot labels (N, K) with K >= 2")
    if y.shape[0] == 0:
        raise InputError(f"{path}: the split is empty")
    if np.issubdtype(y.dtype, np.floating):
        _finite_range(y, path)
    yv = np.asarray(y)
    binary = (yv == 0) | (yv == 1)
    if not binary.all() or not (yv.sum(axis=1) == 1).all():
        bad = int(np.argmax(~(binary.all(axis=1) & (yv.sum(axis=1) == 1))))
        raise InputError(f"{path}: row {bad} is not one-hot (each row needs a single 1 and zeros elsewhere)")


def read_class_names(root: Path, num_classes: int) -> list[str]:
    """Class names from classes.json or dataset_info.json, else class_0..K-1.

    Args:
        root: the FData folder.
        num_classes: K from the labels; the names file must list exactly K names.

    Returns:
        K class names.
    """
    for fname in ("classes.json", "dataset_info.json"):
        path = root / fname
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        names = doc.get("classes") if isinstance(doc, dict) else doc
        if names is None and fname == "dataset_info.json":
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f'{path}: expected a list of class-name strings (or {{"classes": [...]}})')
        if len(names) != num_classes:
            raise InputError(f"{path}: lists {len(names)} class names but the labels have {num_classes} classes")
        return names
    return [f"class_{i}" for i in range(num_classes)]


@dataclass
class FData:
    """A validated FData folder.

    Args:
        root: the folder.
        arrays: split -> (X, y) as stored (X may be uint8 or float).
        class_names: K names in label order.

    Example:
        >>> fd = load_fdata("FData", splits=("test",))  # doctest: +SKIP
        >>> x, labels = fd.x("test"), fd.labels("test")  # doctest: +SKIP
    """

    root: Path
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        x = next(iter(self.arrays.values()))[0]
        return tuple(int(d) for d in x.shape[1:])  # type: ignore[return-value]

    @property
    def splits(self) -> list[str]:
        return list(self.arrays)

    def x(self, split: str) -> np.ndarray:
        """Images of a split as float32 in [0, 1]."""
        return to_unit_float(self.arrays[split][0])

    def raw_x(self, split: str) -> np.ndarray:
        """Images of a split as stored."""
        return self.arrays[split][0]

    def onehot(self, split: str) -> np.ndarray:
        """One-hot labels of a split as float32."""
        return np.asarray(self.arrays[split][1], dtype=np.float32)

    def labels(self, split: str) -> np.ndarray:
        """Integer labels of a split."""
        return np.argmax(self.arrays[split][1], axis=1).astype(np.int64)

    def class_counts(self, split: str) -> np.ndarray:
        return np.bincount(self.labels(split), minlength=self.num_classes)

    def fingerprint(self) -> str:
        """SHA-256 over every array's dtype, shape and bytes, in split order."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for split in self.splits:
                for arr in self.arrays[split]:
                    h.update(f"{arr.dtype.str}{arr.shape}".encode())
                    flat = arr.reshape(-1)
                    step = 1 << 22
                    for start in range(0, flat.size, step):
                        h.update(np.ascontiguousarray(flat[start : start + step]).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def load_fdata(root: str | os.PathLike, splits: Iterable[str] = SPLITS, mmap: bool = False) -> FData:
    """Load and validate an FData folder.

    Args:
        root: folder holding X_/y_ {train,val,test}.npy.
        splits: which splits to load (bench needs only one).
        mmap: memory-map the arrays.

    Returns:
        An :class:`FData`.

    Raises:
        InputError: one line naming the file and the problem (exit code 2).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: data folder not found (expected X_train.npy, y_train.npy, ... inside)")
    splits = list(splits)
    for split in splits:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    for split in splits:  # missing files first, so the user sees all of the layout problem at once
        for prefix in ("X", "y"):
            if not (root / f"{prefix}_{split}.npy").exists():
                raise InputError(f"{root / f'{prefix}_{split}.npy'}: file not found")
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    first: tuple[str, np.ndarray, np.ndarray] | None = None
    for split in splits:
        xp, yp = root / f"X_{split}.npy", root / f"y_{split}.npy"
        x, y = safe_load_npy(xp, mmap=mmap), safe_load_npy(yp, mmap=mmap)
        _check_images(x, xp)
        _check_labels(y, yp)
        if len(x) != len(y):
            raise InputError(f"{xp}: {len(x)} images but {yp.name} has {len(y)} labels")
        if first is not None:
            f_split, fx, fy = first
            if x.shape[1:] != fx.shape[1:]:
                raise InputError(f"{xp}: image shape {x.shape[1:]} differs from X_{f_split}.npy's {fx.shape[1:]}")
            if y.shape[1] != fy.shape[1]:
                raise InputError(f"{yp}: {y.shape[1]} classes but y_{f_split}.npy has {fy.shape[1]}")
        else:
            first = (split, x, y)
        arrays[split] = (x, y)
    names = read_class_names(root, next(iter(arrays.values()))[1].shape[1])
    return FData(root=root, arrays=arrays, class_names=names)


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pick ``n`` indices stratified by class with a fixed seed (sorted).

    Every class gets a share proportional to its frequency, at least one image
    when it has any, so a rare class is never left out of calibration data.

    Args:
        labels: integer labels (N,).
        n: how many to draw (all when n >= N).
        seed: RNG seed.

    Returns:
        Sorted int64 indices into ``labels``.
    """
    labels = np.asarray(labels)
    if n >= labels.size:
        return np.arange(labels.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * n).astype(int))
    while quota.sum() > n:
        quota[np.argmax(quota)] -= 1
    leftover = n - quota.sum()
    order = np.argsort(-(counts / counts.sum() * n - quota))
    for i in order[:leftover]:
        quota[i] += 1
    quota = np.minimum(quota, counts)
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` atomically: temp file in the same folder, fsync, rename.

    A failure (full disk, kill) leaves any previous file untouched and no temp file.

    Raises:
        RuntimeFailure: one line naming the file when the disk is full or the folder
            is not writable (exit code 1).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise RuntimeFailure(f"{path}: cannot write ({exc.strerror or exc}); the previous file is untouched") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a ``.npy`` file (never pickled) atomically, like :func:`atomic_write_bytes`."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_fdata(
    root: str | os.PathLike,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    info: dict | None = None,
) -> Path:
    """Write an FData folder (atomic per file) with classes.json and an optional dataset_info.json.

    Args:
        root: output folder (created).
        arrays: split -> (X, y one-hot).
        class_names: K names.
        info: extra facts to store in dataset_info.json (source, licence, note).

    Returns:
        The folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in arrays.items():
        for prefix, arr in (("X", x), ("y", y)):
            atomic_save_npy(root / f"{prefix}_{split}.npy", arr)
    atomic_write_text(root / "classes.json", json.dumps(list(class_names), indent=1) + "\n")
    if info is not None:
        doc = dict(info, classes=list(class_names))
        atomic_write_text(root / "dataset_info.json", json.dumps(doc, indent=1) + "\n")
    return root
