"""A TFLite image classifier loaded for kdtool: file checks, sidecar, quantized I/O, predictions.

Shared by ``kdtool export``'s check (:func:`kdtool.export.check.run_tflite`)
and ``kdtool bench``/``predict``, TensorFlow-free. A model file is checked
before any interpreter sees it (:func:`kdtool.safety.check_tflite_file`):
every problem is one :class:`~kdtool.errors.InputError` line naming the file
(exit code 2). The interpreter is :func:`kdtool.litert.open_interpreter`'s;
inputs are quantized and outputs dequantized by :mod:`kdtool.quant`, the one
implementation of that arithmetic.

Example:
    >>> model = load_model("models/export/s.int8.tflite", select_runtime())  # doctest: +SKIP
    >>> model.input.shape, model.input.dtype                                 # doctest: +SKIP
    ((1, 32, 32, 3), dtype('int8'))
    >>> predict_scores(model, images).shape                                  # doctest: +SKIP
    (852, 7)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdtool import quant, safety
from kdtool.errors import InputError
from kdtool.litert import BENIGN_LOG_LINES, Runtime, captured_stderr_fd, one_line, open_interpreter

MAX_SIDECAR_BYTES = 4 * 1024 * 1024
#: What :attr:`LoadedModel.path` shows for a model given as bytes (the export check's, not yet written).
IN_MEMORY = Path("<in-memory model>")


# ----------------------------------------------------------------------------- model files and sidecars


def check_tflite_file(path: str | Path) -> Path:
    """Check a model file before an interpreter sees it (:func:`kdtool.safety.check_tflite_file`).

    Args:
        path: the .tflite file.

    Returns:
        The path.

    Raises:
        InputError: missing, a folder, unreadable, under 8 bytes, over 512 MB,
            without the ``TFL3`` identifier at bytes 4..8, a malformed or
            truncated flatbuffer, or a custom (non-builtin) op.

    Example:
        >>> check_tflite_file("models/export/s.int8.tflite")        # doctest: +SKIP
        PosixPath('models/export/s.int8.tflite')
    """
    return safety.check_tflite_file(path).path


def sidecar_path(model_path: str | Path) -> Path:
    """The export's sidecar JSON of a model file.

    Args:
        model_path: the .tflite file.

    Returns:
        The same path with ``.json`` for its suffix.

    Example:
        >>> sidecar_path("export/s.int8.tflite").name
        's.int8.json'
    """
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | Path, notes: list[str] | None = None) -> dict:
    """Read the optional export sidecar JSON beside a model.

    Missing file -> ``{}``. An unreadable, oversized or non-object file is
    ignored too, with a note appended to ``notes`` (the CLI prints it).

    Args:
        model_path: the .tflite file.
        notes: where to append a warning line, if given.

    Returns:
        The sidecar dict (possibly empty); keys are optional.

    Example:
        >>> read_sidecar("no/such/model.tflite")
        {}
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"over {MAX_SIDECAR_BYTES // 2**20} MiB")
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        if notes is not None:
            notes.append(f"{path}: ignored ({one_line(exc, 120)})")
        return {}
    return doc


# ----------------------------------------------------------------------------- loaded models


@dataclass
class TensorIO:
    """One input or output tensor and its quantization.

    Args:
        index: tensor index in the interpreter.
        name: tensor name.
        shape: shape as allocated.
        dtype: numpy dtype.
        scale: quantization scale (0.0 when not quantized).
        zero_point: quantization zero point.

    Example:
        >>> io = TensorIO(0, "x", (1, 2), np.dtype("int8"), scale=0.5, zero_point=-1)
        >>> io.quantize(np.array([1.0, 2.0])), io.dequantize(np.array([1, 3], np.int8))
        (array([1, 3], dtype=int8), array([1., 2.], dtype=float32))
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """True for an integer tensor carrying a scale."""
        return quant.is_quantized(self.dtype, self.scale)

    def quantization(self) -> dict | None:
        """``{"scale", "zero_point"}`` or None when not quantized (JSON-ready)."""
        return {"scale": float(self.scale), "zero_point": int(self.zero_point)} if self.quantized else None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float images -> this (input) tensor's dtype, by :func:`kdtool.quant.quantize`."""
        return quant.quantize(x, self.dtype, self.scale, self.zero_point)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This (output) tensor's values -> float32 scores, by :func:`kdtool.quant.dequantize`."""
        return quant.dequantize(q, self.scale, self.zero_point)


@dataclass
class LoadedModel:
    """An allocated interpreter with its I/O description.

    Args:
        path: the .tflite file (:data:`IN_MEMORY` for a model given as bytes).
        interpreter: the allocated interpreter.
        runtime: which implementation built it.
        input: the image input.
        output: the class-score output (the first output).
        init_ms: load + (resize) + allocate time in ms.
        sidecar: the export sidecar dict ({} when absent).
        threads: num_threads given to the interpreter.
        notes: warning lines for the user.
        size_bytes: the model's size in bytes.
    """

    path: Path
    interpreter: Any
    runtime: Runtime
    input: TensorIO
    output: TensorIO
    init_ms: float
    sidecar: dict
    threads: int
    notes: list[str] = field(default_factory=list)
    size_bytes: int = 0

    @property
    def batch(self) -> int:
        """The allocated batch size."""
        return int(self.input.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(H, W, 3) of the input."""
        return tuple(int(d) for d in self.input.shape[1:])

    @property
    def num_classes(self) -> int:
        """K, the output's last dimension."""
        return int(self.output.shape[-1])

    def class_names(self) -> list[str]:
        """From the sidecar when it lists one name per output, else ``class_0..K-1``."""
        names = self.sidecar.get("class_names")
        if isinstance(names, list) and len(names) == self.num_classes and all(isinstance(n, str) for n in names):
            return list(names)
        return [f"class_{i}" for i in range(self.num_classes)]

    def params(self) -> int | None:
        """Parameter count from the sidecar, when it records one."""
        p = self.sidecar.get("params")
        return int(p) if isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0 else None


def _tensor_io(detail: dict, side: dict, which: str, path: Path) -> TensorIO:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = (detail.get("quantization") or (0.0, 0))[:2]
    io = TensorIO(
        index=int(detail["index"]),
        name=str(detail.get("name", "")),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=dtype,
        scale=float(scale),
        zero_point=int(zero_point),
    )
    if np.issubdtype(dtype, np.integer) and not io.scale > 0:
        # The model carries no quantization for this integer tensor: fall back on the export sidecar.
        # kdtool export nests it: {"input": {"quantization": {"scale", "zero_point"}}}
        q = side.get(which) if isinstance(side.get(which), dict) else {}
        q = q.get("quantization") if isinstance(q.get("quantization"), dict) else q
        s, zp = q.get("scale"), q.get("zero_point")
        if isinstance(s, (int, float)) and s > 0 and isinstance(zp, (int, float)):
            io.scale, io.zero_point = float(s), int(zp)
        else:
            raise InputError(
                f"{path}: {which} tensor is {dtype.name} without quantization parameters "
                f"(none in the model, none in {sidecar_path(path).name})"
            )
    return io


def load_model(source: str | Path | bytes, runtime: Runtime, threads: int = 1,
               batch: int | None = None) -> LoadedModel:  # fmt: skip
    """Check, load and allocate a .tflite model for image classification.

    Args:
        source: the .tflite file (checked with :func:`check_tflite_file`; its
            sidecar is read), or a model's bytes (the export check's own
            conversion: no file check, no sidecar).
        runtime: from :func:`select_runtime`.
        threads: ``num_threads`` for the interpreter (XNNPACK stays on).
        batch: resize the input's batch dimension to this (None keeps the model's).

    Returns:
        A :class:`LoadedModel`; ``init_ms`` covers load + resize + allocate.

    Raises:
        InputError: a bad file, an interpreter failure, or a model that is not
            one (N, H, W, 3) image input -> class scores.

    Example:
        >>> model = load_model("s.int8.tflite", select_runtime(), batch=8)  # doctest: +SKIP
        >>> model.batch, model.num_classes                                 # doctest: +SKIP
        (8, 7)
    """
    notes: list[str] = []
    if isinstance(source, (bytes, bytearray, memoryview)):
        path, side, size = IN_MEMORY, {}, len(source)
    else:
        path = source = check_tflite_file(source)
        side, size = read_sidecar(path, notes), path.stat().st_size
    native: list[str] = []
    t0 = time.perf_counter()
    try:
        interp = open_interpreter(source, runtime, threads, native=native)
        with captured_stderr_fd(native):
            inputs = interp.get_input_details()
            if len(inputs) == 1 and batch is not None and int(inputs[0]["shape"][0]) != batch:
                shape = [int(batch)] + [int(d) for d in inputs[0]["shape"][1:]]
                interp.resize_tensor_input(inputs[0]["index"], shape)
            interp.allocate_tensors()
        init_ms = (time.perf_counter() - t0) * 1000.0
        inputs, outputs = interp.get_input_details(), interp.get_output_details()  # may fail on bad tensor names
    except Exception as exc:  # the interpreter's errors are ValueError/RuntimeError with long texts
        raise InputError(f"{path}: the TFLite interpreter ({runtime.name}) cannot load it: {one_line(exc)}") from None
    notes += [f"{path}: {ln}" for ln in native if not ln.startswith(BENIGN_LOG_LINES)]
    if len(inputs) != 1:
        raise InputError(f"{path}: has {len(inputs)} inputs; expected one image input (N, H, W, 3)")
    if not outputs:
        raise InputError(f"{path}: has no output tensor")
    inp = _tensor_io(inputs[0], side, "input", path)
    out = _tensor_io(outputs[0], side, "output", path)
    if len(inp.shape) != 4 or inp.shape[-1] != 3 or min(inp.shape) < 1:
        raise InputError(f"{path}: input shape {list(inp.shape)} is not (N, H, W, 3) RGB images")
    if len(out.shape) != 2 or out.shape[0] != inp.shape[0] or out.shape[1] < 2:
        raise InputError(f"{path}: output shape {list(out.shape)} is not (N, K) class scores")
    if len(outputs) > 1:
        notes.append(f"{path}: has {len(outputs)} outputs; using the first ({out.name})")
    return LoadedModel(path, interp, runtime, inp, out, init_ms, side, int(threads), notes, int(size))


# ----------------------------------------------------------------------------- running


def set_input(model: LoadedModel, x: np.ndarray) -> None:
    """Quantize one batch of float images in [0, 1] (:mod:`kdtool.quant`) and set it as the model's input.

    Args:
        model: an allocated model.
        x: float32 images, exactly ``model.batch`` of them.

    Example:
        >>> set_input(model, images[: model.batch]); model.interpreter.invoke()  # doctest: +SKIP
    """
    model.interpreter.set_tensor(model.input.index, model.input.quantize(x))


def predict_scores(model: LoadedModel, x: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Dequantized output scores for all images, batch by batch.

    The last partial batch is padded with zeros to the allocated batch size
    and the padding's outputs are dropped, so the interpreter never resizes.

    Args:
        model: an allocated model.
        x: float32 images (N, H, W, 3) in [0, 1].
        progress: called with the number of images done after each batch.

    Returns:
        float32 (N, K) scores (logits, or probabilities for a softmax model).

    Example:
        >>> predict_scores(load_model(blob, select_runtime(), batch=32), x_val).shape  # doctest: +SKIP
        (852, 7)
    """
    n, b = len(x), model.batch
    out = np.empty((n, model.num_classes), dtype=np.float32)
    interp = model.interpreter
    for start in range(0, n, b):
        chunk = np.asarray(x[start : start + b], dtype=np.float32)
        m = len(chunk)
        if m < b:
            chunk = np.concatenate([chunk, np.zeros((b - m, *chunk.shape[1:]), dtype=np.float32)])
        set_input(model, chunk)
        interp.invoke()
        out[start : start + m] = model.output.dequantize(interp.get_tensor(model.output.index))[:m]
        if progress is not None:
            progress(m)
    return out
