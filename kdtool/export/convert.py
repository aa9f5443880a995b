"""Load a ``.keras`` model safely, convert it to TFLite, write the file and its JSON sidecar atomically.

Example:
    >>> model = load_keras_model("models/student_alone.keras")             # doctest: +SKIP
    >>> rep = representative_dataset(load_fdata("FData"), n=300)           # doctest: +SKIP
    >>> data, record = convert_model(model, "int8", representative=rep)    # doctest: +SKIP
    >>> write_export("models/export", "student_alone", "int8", data, sidecar)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from kdtool.data import FData, atomic_write_bytes, atomic_write_text, stratified_indices
from kdtool.errors import InputError, RuntimeFailure
from kdtool.export.modes import CALIBRATED_MODES, QUANT_MODES
from kdtool.train_extra import require_train_extra

REPRESENTATIVE_SEED = 0
SIDECAR_FORMAT = 1


# ----------------------------------------------------------------------------- quiet TensorFlow


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Silence TensorFlow/LiteRT chatter (C++ logs on fd 1/2, Keras prints, Python warnings).

    What was printed is kept; on an exception its last lines are available in
    the yielded list (filled on exit). Set ``KDTOOL_VERBOSE=1`` to see everything.
    """
    captured: list[str] = []
    if os.environ.get("KDTOOL_VERBOSE"):
        yield captured
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
    except (OSError, ValueError, AttributeError):  # no real fds (embedded use): Python-level only
        saved = None
    log = tempfile.TemporaryFile()
    try:
        if saved is not None:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(io.StringIO()) as pyout, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                yield captured
            finally:
                captured.extend(pyout.getvalue().splitlines())
    finally:
        if saved is not None:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        log.seek(0)
        captured.extend(log.read().decode("utf-8", "replace").splitlines())
        log.close()


def import_tf():
    """Import TensorFlow quietly (TF_CPP_MIN_LOG_LEVEL=3 unless set, absl and TF loggers at ERROR)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet():
        tf = require_train_extra("kdtool export")
        import keras  # noqa: F401 - its import logs too
    with contextlib.suppress(Exception):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:limit] if text else type(exc).__name__


# ----------------------------------------------------------------------------- loading


def check_model_path(path: str | os.PathLike) -> Path:
    """Refuse anything but a safe ``.keras`` zip file, in one line (InputError).

    Refused: a missing path, HDF5 (``.h5``/``.hdf5``), a SavedModel folder, any other
    folder or suffix, a ``.keras`` that is not a zip archive, and anything
    :func:`kdtool.safety.check_keras_file`'s pre-scan refuses (unexpected or
    ``..`` members, a zip bomb, a Lambda or a non-Keras class in config.json).
    """
    from kdtool.safety import check_keras_file  # stdlib only

    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise InputError(
                f"{path}: a TensorFlow SavedModel folder; only .keras files (or a kdtool run folder) are accepted"
            )
        raise InputError(f"{path}: not a kdtool run folder (no run.json) and not a .keras file")
    check_keras_file(path)
    return path


def load_keras_model(path: str | os.PathLike):
    """Load a ``.keras`` model with ``safe_mode=True`` (no Lambda/pickled code), uncompiled.

    The file is pre-scanned first (:func:`check_model_path`, i.e.
    :func:`kdtool.safety.check_keras_file`), before Keras opens it. No custom
    objects are passed: only Keras built-ins and kdtool's registered layers
    (teachers' preprocessing, imported here) can be deserialized.

    Args:
        path: the ``.keras`` file.

    Returns:
        A ``keras.Model`` with one image input (None, H, W, 3) and one logits output (None, K).

    Raises:
        InputError: one line naming the file, for any unreadable, unsafe or unsuitable model.
    """
    path = check_model_path(path)
    import_tf()
    import keras

    import kdtool.layers  # noqa: F401 - registers teachers' preprocessing layer

    try:
        with quiet():
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for a bad file
        text = " ".join(str(exc).split())
        if "safe_mode" in text:  # Lambda / arbitrary code: say so, without keras' advice to switch safe mode off
            first = text.split(". ")[0].rstrip(".")
            raise InputError(f"{path}: cannot load the Keras model, refused by safe mode ({first[:240]})") from None
        raise InputError(f"{path}: cannot load the Keras model ({_one_line(exc)})") from None
    if not isinstance(model, keras.Model):
        raise InputError(f"{path}: holds a {type(model).__name__}, not a keras.Model")
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"{path}: the model has {len(inputs)} inputs and {len(outputs)} outputs; expected one of each")
    if len(inputs[0].shape) != 4 or len(outputs[0].shape) != 2:
        raise InputError(
            f"{path}: input shape {tuple(inputs[0].shape)} / output shape {tuple(outputs[0].shape)} "
            "is not an image classifier (None, H, W, 3) -> (None, K)"
        )
    return model


def check_model_matches_data(model, fd: FData, path: str | os.PathLike) -> None:
    """InputError if the model's input shape or class count differs from the FData's."""
    in_shape = tuple(model.inputs[0].shape[1:])
    k = model.outputs[0].shape[-1]
    if tuple(in_shape) != tuple(fd.image_shape):
        raise InputError(f"{path}: the model takes images of shape {in_shape} but {fd.root} holds {fd.image_shape}")
    if k != fd.num_classes:
        raise InputError(f"{path}: the model has {k} outputs but {fd.root} has {fd.num_classes} classes")


# ----------------------------------------------------------------------------- calibration


class RepresentativeData:
    """Calibration images for int8: a stratified, seeded sample of the TRAIN split only.

    Calling it returns a fresh generator of ``[x]`` with x of shape (1, H, W, 3),
    float32 in [0, 1], exactly as training sees the images (``FData.x``).

    Attributes:
        x: the calibration images (n, H, W, 3) float32.
        indices: their indices in the train split (sorted).
        split: always ``"train"``.
        seed: the RNG seed of the stratified draw.
    """

    split = "train"

    def __init__(self, x: np.ndarray, indices: np.ndarray, seed: int):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.x)

    def __call__(self) -> Iterator[list[np.ndarray]]:
        for i in range(len(self.x)):
            yield [self.x[i : i + 1]]

    def record(self) -> dict:
        """What the sidecar stores about the calibration data."""
        return {
            "split": self.split,
            "samples": len(self),
            "stratified_by_class": True,
            "seed": self.seed,
            "indices_sha256": hashlib.sha256(self.indices.tobytes()).hexdigest(),
        }


def representative_dataset(fd: FData, n: int = 300, seed: int = REPRESENTATIVE_SEED) -> RepresentativeData:
    """Draw ``n`` calibration images from the TRAIN split, stratified by class, fixed seed.

    Never touches the validation or test split: only ``fd.labels("train")`` and
    ``fd.x("train")`` are read.

    Args:
        fd: the FData (its train split must be loaded).
        n: how many images (all of train when n >= its size).
        seed: seed for :func:`kdtool.data.stratified_indices`.

    Returns:
        A :class:`RepresentativeData` (callable, as TFLite's ``representative_dataset`` wants).
    """
    if "train" not in fd.arrays:
        raise InputError(f"{fd.root}: int8 calibration needs the train split")
    idx = stratified_indices(fd.labels("train"), int(n), seed)
    return RepresentativeData(fd.x("train")[idx], idx, seed)


# ----------------------------------------------------------------------------- conversion


def convert_model(model, mode: str, representative: Callable | None = None, io: str = "int8") -> tuple[bytes, dict]:
    """Convert a Keras model with ``tf.lite.TFLiteConverter.from_keras_model`` in one mode.

    Args:
        model: a loaded ``keras.Model``.
        mode: a key of :data:`kdtool.export.modes.QUANT_MODES`.
        representative: calibration data (the int8 modes; see :func:`representative_dataset`).
        io: int8 mode's input/output type: int8, uint8 or float32.
            ``int8-floatends`` records the nodes it left in float as ``float_nodes``.

    Returns:
        ``(tflite_bytes, converter_record)``.

    Raises:
        RuntimeFailure: the converter failed (one line, with its last message).
    """
    if mode not in QUANT_MODES:
        raise InputError(f"unknown quantization mode {mode!r}; choose from {', '.join(QUANT_MODES)}")
    tf = import_tf()

    def configured():
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        rec = QUANT_MODES[mode](conv, representative=representative if mode in CALIBRATED_MODES else None, io=io)
        return conv, rec

    converter, record = configured()
    log: list[str] = []
    try:
        with quiet() as log:
            if record.get("float_ops") == "ends":
                data, record["float_nodes"] = convert_selective(tf, configured, representative, first_and_last)
            else:
                data = converter.convert()
    except Exception as exc:  # converter errors come in many types
        detail = next((ln.strip() for ln in reversed(log) if "error" in ln.lower()), "")
        msg = _one_line(exc, 240) + (f" | {detail[:200]}" if detail else "")
        raise RuntimeFailure(f"{model.name}: {mode} conversion failed ({msg})") from None
    return bytes(data), record


def first_and_last(names: list[str]) -> list[str]:
    """The first and the last of the quantized ops' output tensors (``int8-floatends``'s float ops)."""
    return list(dict.fromkeys([names[0], names[-1]]))


def convert_selective(
    tf, configured: Callable, representative, pick: Callable[[list[str]], list[str]], debug_images: int = 32
) -> tuple[bytes, list[str]]:
    """Selective quantization: int8 except the ops whose output tensors ``pick`` chooses, left float32.

    TFLite's quantization debugger lists the quantized ops' output tensors in
    execution order; ``pick(names)`` chooses which to denylist, and the debugger
    builds the model without its debugging outputs.

    Args:
        tf: the ``tensorflow`` module.
        configured: returns a fresh ``(converter, record)`` set up by a mode function
            that allows float builtin ops (``int8-floatends``'s).
        representative: the calibration data; its first ``debug_images`` batches feed the debugger.
        pick: ``names -> the names to keep float``, e.g. :func:`first_and_last`.
        debug_images: images the debugger runs to list the ops.

    Returns:
        ``(tflite_bytes, [denylisted node names])``.
    """
    images = [batch for _, batch in zip(range(debug_images), representative(), strict=False)]

    def debug_data():
        yield from images

    debugger = tf.lite.experimental.QuantizationDebugger
    probe = debugger(converter=configured()[0], debug_dataset=debug_data)
    probe.run()
    buf = io.StringIO()
    probe.layer_statistics_dump(buf)
    buf.seek(0)
    names = [row["tensor_name"] for row in csv.DictReader(buf)]
    if not names:
        raise RuntimeError("the quantization debugger found no quantized op to keep in float")
    keep = pick(names)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep)
    final = debugger(converter=configured()[0], debug_dataset=debug_data, debug_options=options)
    return bytes(final.get_nondebug_quantized_model()), keep


def versions() -> dict:
    """Versions of the converter stack, for the sidecar."""
    from importlib import metadata

    tf = import_tf()
    import keras

    from kdtool import __version__

    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "kdtool": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": dist("ai-edge-litert"),
        "numpy": np.__version__,
    }


def preprocess_record(input_details: dict, image_shape) -> dict:
    """How to turn a [0, 1] RGB image into the input tensor, for the sidecar."""
    dtype = input_details["dtype"]
    scale, zp = input_details["quantization"]["scale"], input_details["quantization"]["zero_point"]
    h, w, c = (int(d) for d in image_shape)
    rec = {
        "image": f"RGB, {h}x{w}x{c} (HWC), resized as the training data, no mean/std normalization",
        "unit_range": "float32 in [0, 1]: uint8 pixels / 255 (what the model was trained on)",
        "layout": "NHWC, batch dimension first",
        "dtype": dtype,
    }
    if dtype in ("int8", "uint8"):
        lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
        rec["quantize"] = {
            "scale": scale,
            "zero_point": zp,
            "min": lo,
            "max": hi,
            "formula": f"q = clip(round(x / {scale!r}) + {zp}, {lo}, {hi}).astype({dtype})",
        }
        rec["steps"] = ["x = uint8_rgb.astype(float32) / 255", rec["quantize"]["formula"]]
    else:
        rec["quantize"] = None
        rec["steps"] = ["x = uint8_rgb.astype(float32) / 255"]
    return rec


def postprocess_record(output_details: dict) -> dict:
    """How to read the output tensor (logits), for the sidecar."""
    dtype = output_details["dtype"]
    scale, zp = output_details["quantization"]["scale"], output_details["quantization"]["zero_point"]
    steps = []
    if dtype in ("int8", "uint8"):
        steps.append(f"logits = (q.astype(float32) - {zp}) * {scale!r}")
    steps += ["probabilities = softmax(logits)", "class = argmax(logits)"]
    return {"output": "logits (no softmax in the model)", "steps": steps}


# ----------------------------------------------------------------------------- writing


def export_paths(out: str | os.PathLike, name: str, mode: str) -> tuple[Path, Path]:
    """``(<out>/<name>.<mode>.tflite, <out>/<name>.<mode>.json)``."""
    out = Path(out)
    return out / f"{name}.{mode}.tflite", out / f"{name}.{mode}.json"


def write_export(out: str | os.PathLike, name: str, mode: str, data: bytes, sidecar: dict) -> tuple[Path, Path]:
    """Write ``<name>.<mode>.tflite`` then its ``.json`` sidecar, each atomically (temp + os.replace).

    A failure or kill leaves the previous files untouched and no temp file.

    Raises:
        RuntimeFailure: the folder is not writable or the disk is full.
    """
    tflite, side = export_paths(out, name, mode)
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(tflite, data)
        atomic_write_text(side, json.dumps(sidecar, indent=1) + "\n")
    except OSError as exc:
        raise RuntimeFailure(f"{tflite}: cannot write ({exc.strerror or exc})") from None
    return tflite, side
