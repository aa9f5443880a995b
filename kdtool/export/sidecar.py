"""The JSON sidecar written beside each ``.tflite``: what the file is, how to feed it, and how it checked.

Its keys (``format`` :data:`kdtool.export.convert.SIDECAR_FORMAT`) are what ``kdtool bench`` and
``kdtool predict`` read: class names, input/output tensors and their quantization, pre- and
post-processing, the source ``.keras`` file, converter and versions, sizes, the validation check and
the operating point.

Example:
    >>> side = build_sidecar(src, "int8", data, model.count_params(), fd, conv, calibration,   # doctest: +SKIP
    ...                      versions(), sizes, check, point.record, digest, "student.int8.tflite")
    >>> side["input"]["dtype"], side["check"]["passed"]                                        # doctest: +SKIP
    ('int8', True)
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from kdtool.data import FData
from kdtool.export.check import graph_summary, io_details
from kdtool.export.convert import SIDECAR_FORMAT, export_paths, postprocess_record, preprocess_record
from kdtool.export.sources import ExportPlan, ExportSource


def teacher_float32_from_files(plan: ExportPlan, out: Path) -> dict[str, tuple[int, str]]:
    """The teachers' float32 ``.tflite`` files already in the output folder.

    Args:
        plan: the export plan (its run's teachers).
        out: the output folder.

    Returns:
        Teacher name -> (size in bytes, path) for each teacher whose float32 file exists.
    """
    sizes = {}
    for name in plan.teacher_files:
        path, _ = export_paths(out, name, "float32")
        if path.is_file():
            sizes[name] = (path.stat().st_size, str(path))
    return sizes


def size_record(src: ExportSource, nbytes: int, f32: int | None, teacher_f32: dict[str, tuple[int, str]]) -> dict:
    """The sidecar's ``sizes``: the file against its own float32 conversion and its teachers' float32 files.

    Args:
        src: the exported model (its role and teachers).
        nbytes: the file's size.
        f32: the size of the same model converted to float32, or None.
        teacher_f32: from :func:`teacher_float32_from_files`, plus teachers converted by this export.

    Returns:
        Sizes and ratios; the teacher's are None unless every teacher's float32 size is known.

    Example:
        >>> src = ExportSource("s", Path("s.keras"), "student", "t")
        >>> size_record(src, 100, 400, {"t": (10000, "t.float32.tflite")})["ratio_to_teacher_float32"]
        0.01
    """
    rec = {
        "bytes": nbytes,
        "float32_bytes": f32,
        "ratio_to_float32": round(nbytes / f32, 4) if f32 else None,
        "teacher": src.teacher if src.role != "teacher" else None,
        "teacher_float32_bytes": None,
        "ratio_to_teacher_float32": None,
        "teacher_float32_source": None,
    }
    names = src.teachers() if src.role != "teacher" else []
    if names and all(n in teacher_f32 for n in names):
        total = sum(teacher_f32[n][0] for n in names)
        rec["teacher_float32_bytes"] = total
        rec["ratio_to_teacher_float32"] = round(nbytes / total, 6)
        rec["teacher_float32_source"] = " + ".join(teacher_f32[n][1] for n in names)
    return rec


def build_sidecar(
    src: ExportSource,
    mode: str,
    data: bytes,
    params: int,
    fd: FData,
    converter: dict,
    calibration: dict | None,
    versions: dict,
    sizes: dict,
    check: dict,
    operating_point: dict,
    source_sha256: str,
    file_name: str,
) -> dict:
    """The sidecar of one exported file.

    Args:
        src: the exported model.
        mode: its quantization mode.
        data: the ``.tflite`` bytes.
        params: the Keras model's parameter count.
        fd: the FData it was checked on.
        converter: the converter's record (:func:`kdtool.export.convert.convert_model`).
        calibration: the calibration images' record (calibrated modes), else None.
        versions: :func:`kdtool.export.convert.versions`.
        sizes: :func:`size_record`.
        check: :func:`kdtool.export.check.compare`'s record.
        operating_point: the operating point folded into the output layer
            (:attr:`kdtool.export.operating_point.OperatingPoint.record`).
        source_sha256: the ``.keras`` file's SHA-256.
        file_name: the ``.tflite``'s file name.

    Returns:
        A JSON-ready dict.
    """
    tensors = io_details(data)
    return {
        "format": SIDECAR_FORMAT,
        "name": src.name,
        "role": src.role,
        "teacher": src.teacher,
        "mode": mode,
        "file": file_name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "params": int(params),
        "class_names": list(fd.class_names),
        "input": tensors["input"],
        "output": tensors["output"],
        "preprocess": preprocess_record(tensors["input"], fd.image_shape),
        "postprocess": postprocess_record(tensors["output"]),
        "source": {
            "file": src.path.name,
            "path": str(src.path.resolve()),
            "sha256": source_sha256,
            "size_bytes": src.path.stat().st_size,
        },
        "converter": {**converter, "calibration": calibration},
        "versions": versions,
        "graph": graph_summary(data),
        "data": {"path": str(fd.root), "fingerprint": fd.fingerprint(), "image_shape": list(fd.image_shape)},
        "sizes": sizes,
        "check": check,
        "operating_point": operating_point,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
