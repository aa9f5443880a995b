"""Pre-scan an untrusted ``.keras`` file before Keras opens it (pure Python + stdlib).

:func:`check_keras_file` runs before ``keras.saving.load_model(..., safe_mode=True)``:

* only ``metadata.json``, ``config.json``, ``model.weights.h5`` (or Keras'
  ``model.weights.npz``) and files under ``assets/`` (what Keras 3 writes);
  no absolute paths, ``..``, backslashes, duplicate or encrypted members, and
  only stored or deflated members;
* bounded: at most :data:`MAX_KERAS_MEMBERS` members declaring at most
  :data:`MAX_KERAS_UNCOMPRESSED` bytes in all, no member over
  :data:`MAX_COMPRESSION_RATIO`:1 (past 1 MiB); every member is then streamed
  and must hold exactly the bytes it declares, with a correct CRC;
* ``config.json``: every serialized object (any dict with ``class_name``, found
  by walking the whole config, nested models included) comes from a ``keras``
  module, or is one of kdtool's registered classes (``registered_name``
  ``kdtool>...``), or one of Keras' own ``__tuple__``-style values; no
  ``Lambda``/``__lambda__`` and no layer that wraps foreign code or files
  (:data:`REFUSED_CLASSES`). HDF5 and SavedModel folders are refused outright.

Every problem is ONE :class:`~kdtool.errors.InputError` line naming the file
(exit code 2); no other exception leaves it, whatever the bytes.

Example:
    >>> check_keras_file("models/student_alone.keras")["classes"][:2]   # doctest: +SKIP
    ['keras.layers.BatchNormalization', 'keras.layers.Conv2D']
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

from kdtool.errors import InputError

MAX_KERAS_FILE_BYTES = 4 * 1024**3
MAX_KERAS_UNCOMPRESSED = 2 * 1024**3
MAX_KERAS_MEMBERS = 10_000
MAX_COMPRESSION_RATIO = 100
MAX_CONFIG_BYTES = 64 * 1024**2
MAX_METADATA_BYTES = 1024**2
MAX_CONFIG_OBJECTS = 5_000_000

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_MEMBERS = ("metadata.json", "config.json", "model.weights.h5", "model.weights.npz")
KERAS_ASSETS = "assets/"

#: Keras classes refused even though they live in ``keras``: they run foreign code or read foreign files.
REFUSED_CLASSES = {
    "Lambda": "a Lambda layer (arbitrary Python code)",
    "__lambda__": "a serialized Python lambda (arbitrary code)",
    "TFOpLambda": "a TFOpLambda layer (arbitrary TensorFlow calls)",
    "SlicingOpLambda": "a SlicingOpLambda layer (arbitrary TensorFlow calls)",
    "TFSMLayer": "a TFSMLayer (loads a TensorFlow SavedModel from a path)",
    "TorchModuleWrapper": "a TorchModuleWrapper (a pickled PyTorch module)",
    "JaxLayer": "a JaxLayer (wraps arbitrary JAX functions)",
    "FlaxLayer": "a FlaxLayer (wraps an arbitrary Flax module)",
}
#: Keras' own encodings of plain values (tuples, arrays, tensors...), which carry no module.
KERAS_VALUE_CLASSES = frozenset({
    "__tuple__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__", "__tensor__", "__keras_tensor__",
    "__typespec__",
})  # fmt: skip
KDTOOL_REGISTERED_PREFIX = "kdtool>"


def _short(text: object, limit: int = 160) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _refuse(path: Path, reason: str) -> InputError:
    return InputError(f"{path}: cannot load the Keras model, refused: {reason}")


def _check_member_name(path: Path, name: str) -> None:
    shown = _short(repr(name), 80)
    if "\x00" in name or "\\" in name:
        raise _refuse(path, f"zip member {shown} has a NUL or backslash in its name")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise _refuse(path, f"zip member {shown} has an absolute path")
    parts = name.split("/")
    if ".." in parts or "." in parts:
        raise _refuse(path, f"zip member {shown} has a '..' or '.' path component")
    if name in KERAS_MEMBERS:
        return
    if len(parts) >= 2 and parts[0] == KERAS_ASSETS.rstrip("/") and all(parts[1:-1]):
        return  # assets/ and files or folders under it
    raise _refuse(
        path, f"unexpected zip member {shown} (a .keras file holds only {', '.join(KERAS_MEMBERS[:3])} and assets/)"
    )


def _scan_zip(path: Path, zf: zipfile.ZipFile) -> dict[str, bytes]:
    """Check names, sizes and ratios, stream every member; return the JSON members' bytes."""
    infos = zf.infolist()
    if len(infos) > MAX_KERAS_MEMBERS:
        raise _refuse(path, f"{len(infos)} zip members (limit {MAX_KERAS_MEMBERS})")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        _check_member_name(path, name)
        if name in seen:
            raise _refuse(path, f"zip member {name!r} appears twice")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise _refuse(path, f"zip member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _refuse(path, f"zip member {name!r} uses compression method {info.compress_type} "
                                "(Keras writes stored or deflated members)")  # fmt: skip
        total += info.file_size
        if total > MAX_KERAS_UNCOMPRESSED:
            raise _refuse(path, f"the zip declares over {MAX_KERAS_UNCOMPRESSED // 2**30} GiB uncompressed "
                                f"({name!r} alone {info.file_size:,} bytes): a zip bomb?")  # fmt: skip
        if info.file_size > 2**20 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise _refuse(path, f"zip member {name!r} expands {info.file_size:,} bytes from "
                                f"{info.compress_size:,} (over {MAX_COMPRESSION_RATIO}:1): a zip bomb?")  # fmt: skip
    if "config.json" not in seen:
        raise _refuse(path, "no config.json in the archive (not a Keras 3 .keras file)")
    limits = {"config.json": MAX_CONFIG_BYTES, "metadata.json": MAX_METADATA_BYTES}
    kept: dict[str, bytes] = {}
    for info in infos:
        name = info.filename
        if name in limits and info.file_size > limits[name]:
            raise _refuse(path, f"{name} declares {info.file_size:,} bytes (limit {limits[name]:,})")
        count = 0
        chunks: list[bytes] = []
        head = b""
        with zf.open(info) as fh:  # streamed: the CRC is checked at the end
            while True:
                block = fh.read(1 << 20)
                if not block:
                    break
                count += len(block)
                if count > info.file_size:
                    raise _refuse(path, f"zip member {name!r} holds more than the {info.file_size:,} bytes it declares")
                if len(head) < 8:
                    head += block[: 8 - len(head)]
                if name in limits:
                    chunks.append(block)
        if count != info.file_size:
            raise _refuse(path, f"zip member {name!r} holds {count:,} bytes, not the {info.file_size:,} it declares")
        if name == "model.weights.h5" and head != HDF5_SIGNATURE:
            raise _refuse(path, "model.weights.h5 is not an HDF5 file")
        if name in limits:
            kept[name] = b"".join(chunks)
    return kept


def _parse_json(path: Path, name: str, raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = f"{name} is not valid JSON: {_short(exc, 120)}"
        raise InputError(f"{path}: cannot load the Keras model ({reason})") from None


def _object_problem(obj: dict) -> str | None:
    """Why a serialized Keras object (a dict with ``class_name``) is refused, or None."""
    cls = obj.get("class_name")
    if not isinstance(cls, str) or not cls:
        return f"an object with class_name {_short(repr(cls), 60)}"
    module = obj.get("module")
    registered = obj.get("registered_name")
    label = f"{module}.{cls}" if module else cls
    if cls in REFUSED_CLASSES:
        return f"{_short(label, 80)} is {REFUSED_CLASSES[cls]}"
    if registered is not None and not isinstance(registered, str):
        return f"{_short(label, 80)} has a non-string registered_name"
    if isinstance(registered, str) and ">" in registered and not registered.startswith(KDTOOL_REGISTERED_PREFIX):
        return f"{_short(label, 80)} is a custom object registered as {_short(repr(registered), 60)}, not kdtool's"
    if module is None:
        if cls in KERAS_VALUE_CLASSES or (registered or "").startswith(KDTOOL_REGISTERED_PREFIX):
            return None
        return f"class {_short(repr(cls), 60)} has no module (a custom class defined in a script?)"
    if not isinstance(module, str):
        return f"{_short(repr(cls), 60)} has a non-string module"
    if module == "keras" or module.startswith("keras."):
        return None
    if module == "builtins" and cls == "function":  # a Keras built-in function by name ("relu")
        return None
    if (module == "kdtool" or module.startswith("kdtool.")) and (registered or "").startswith(KDTOOL_REGISTERED_PREFIX):
        return None
    return f"class {_short(label, 80)} is neither a Keras built-in nor one of kdtool's registered layers"


def _walk_config(path: Path, config) -> list[str]:
    """Refuse any disallowed object anywhere in the config; return the sorted distinct class labels."""
    classes: set[str] = set()
    stack = [config]
    visited = 0
    while stack:
        node = stack.pop()
        visited += 1
        if visited > MAX_CONFIG_OBJECTS:
            raise _refuse(path, f"config.json has over {MAX_CONFIG_OBJECTS:,} values")
        if isinstance(node, dict):
            if "class_name" in node:
                problem = _object_problem(node)
                if problem:
                    name = node.get("name")
                    if not isinstance(name, str) and isinstance(node.get("config"), dict):
                        name = node["config"].get("name")
                    where = f" (layer {_short(repr(name), 60)})" if isinstance(name, str) else ""
                    raise _refuse(path, f"{problem}{where}; only built-in Keras layers and kdtool's own are accepted")
                module = node.get("module")
                if isinstance(module, str) and not node["class_name"].startswith("__"):
                    classes.add(f"{module}.{node['class_name']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(classes)


def check_keras_file(path: str | os.PathLike) -> dict:
    """Pre-scan a ``.keras`` file before Keras opens it (see the module docstring for the rules).

    Args:
        path: the ``.keras`` file.

    Returns:
        ``{"members": [...], "uncompressed_bytes": int, "classes": ["keras.layers.Conv2D", ...],
        "keras_version": str | None}``.

    Raises:
        InputError: one line naming the file, for a missing file, an HDF5 file, a
            SavedModel folder, a corrupt or unsafe zip, or a disallowed class.
            Never any other exception.

    Example:
        >>> check_keras_file("models/student_alone.keras")["keras_version"]  # doctest: +SKIP
        '3.10.0'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise InputError(f"{path}: a TensorFlow SavedModel folder; only .keras files are accepted")
        raise InputError(f"{path}: is a directory, not a .keras file")
    if suffix in (".h5", ".hdf5", ".keras_h5"):
        raise InputError(f"{path}: HDF5 models are not accepted (legacy format); re-save it as .keras")
    try:
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if suffix != ".keras":
            raise InputError(
                f"{path}: not a .keras model file (suffix {suffix or 'none'!r}); only .keras files are accepted"
            )
        size = path.stat().st_size
        if size > MAX_KERAS_FILE_BYTES:
            raise InputError(f"{path}: {size / 2**30:.1f} GiB is over the {MAX_KERAS_FILE_BYTES // 2**30} GiB limit")
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head == HDF5_SIGNATURE:
            raise InputError(f"{path}: an HDF5 file named .keras; HDF5 models are not accepted, re-save it as .keras")
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path}: corrupt .keras file (not a zip archive)")
        with zipfile.ZipFile(path) as zf:
            kept = _scan_zip(path, zf)
            members = [i.filename for i in zf.infolist()]
            total = sum(i.file_size for i in zf.infolist())
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except Exception as exc:  # zipfile/zlib raise many types (BadZipFile, zlib.error, EOFError...)
        raise InputError(f"{path}: corrupt .keras file ({type(exc).__name__}: {_short(exc, 160)})") from None
    config = _parse_json(path, "config.json", kept["config.json"])
    if not isinstance(config, dict) or "class_name" not in config:
        raise InputError(f"{path}: cannot load the Keras model (config.json does not describe a Keras object)")
    keras_version = None
    if "metadata.json" in kept:
        meta = _parse_json(path, "metadata.json", kept["metadata.json"])
        if not isinstance(meta, dict):
            raise InputError(f"{path}: cannot load the Keras model (metadata.json is not a JSON object)")
        v = meta.get("keras_version")
        keras_version = v if isinstance(v, str) else None
    classes = _walk_config(path, config)
    return {"members": members, "uncompressed_bytes": total, "classes": classes, "keras_version": keras_version}
