"""TFLite interpreter selection, model-file checks and loading; no TensorFlow on this path.

The interpreter comes from the first of these that works (see :data:`RUNTIMES`):

1. ``ai_edge_litert`` (LiteRT, the light install's dependency);
2. ``tflite_runtime``, only where numpy < 2: it imports under numpy 2 but fails
   as soon as an ``Interpreter`` is built;
3. ``tensorflow.lite`` as a last resort, when neither of the others is
   installed. This is the one place the bench path may import TensorFlow.

XNNPACK stays on (the default op resolver); ``threads`` is passed through as
``num_threads``. A model file is checked before any interpreter sees it
(:func:`kdtool.safety.check_tflite_file`): it must exist, hold 8 bytes to
512 MB, carry the ``TFL3`` identifier at bytes 4..8, parse as a TFLite
flatbuffer and use builtin ops only. Every problem is one
:class:`~kdtool.errors.InputError` line naming the file (exit code 2).

A model not written by ``kdtool export`` (no sidecar whose ``sha256`` matches
the file, see :func:`written_by_kdtool`) runs in a child process
(:func:`run_isolated`, running :mod:`kdtool.bench._child`) by default, so an
interpreter that crashes (segfault, abort) or stops making progress for
``timeout`` seconds becomes one error line instead of a dead benchmark.

Example:
    >>> rt = select_runtime()                                   # doctest: +SKIP
    >>> model = load_model("models/export/s.int8.tflite", rt)   # doctest: +SKIP
    >>> model.input.shape, model.input.dtype, model.init_ms      # doctest: +SKIP
    ((1, 32, 32, 3), dtype('int8'), 3.1)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kdtool import safety
from kdtool.data import sha256_file
from kdtool.errors import InputError, RuntimeFailure

MAX_MODEL_BYTES = safety.MAX_TFLITE_BYTES
MIN_MODEL_BYTES = safety.MIN_TFLITE_BYTES
TFLITE_IDENTIFIER = safety.TFLITE_IDENTIFIER
MAX_SIDECAR_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Runtime:
    """A usable TFLite interpreter implementation.

    Args:
        name: ``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow``.
        version: its package version.
        interpreter_class: the ``Interpreter`` class to instantiate.
    """

    name: str
    version: str
    interpreter_class: Any = field(repr=False)


def _dist_version(dist: str, module: Any = None) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _numpy_major() -> int:
    return int(np.__version__.split(".")[0])


def _ai_edge_litert() -> Runtime:
    mod = importlib.import_module("ai_edge_litert.interpreter")
    return Runtime("ai_edge_litert", _dist_version("ai-edge-litert", mod), mod.Interpreter)


def _tflite_runtime() -> Runtime:
    if _numpy_major() >= 2:
        raise ImportError(f"tflite_runtime is built against numpy 1.x and numpy {np.__version__} is installed")
    mod = importlib.import_module("tflite_runtime.interpreter")
    return Runtime("tflite_runtime", _dist_version("tflite-runtime", mod), mod.Interpreter)


def _tensorflow() -> Runtime:
    # Last resort only: reached when neither LiteRT nor tflite_runtime is usable.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_stderr_fd([]):  # TensorFlow's start-up log lines
        tf = importlib.import_module("tensorflow")
    return Runtime("tensorflow", str(tf.__version__), tf.lite.Interpreter)


#: Interpreter providers in order of preference.
RUNTIMES: dict[str, Callable[[], Runtime]] = {
    "ai_edge_litert": _ai_edge_litert,
    "tflite_runtime": _tflite_runtime,
    "tensorflow": _tensorflow,
}


@functools.lru_cache(maxsize=None)
def select_runtime(prefer: str | None = None) -> Runtime:
    """Pick the TFLite interpreter: ai_edge_litert, then tflite_runtime (numpy < 2), then TensorFlow.

    Args:
        prefer: a key of :data:`RUNTIMES` to try first (mainly for tests).

    Returns:
        The first :class:`Runtime` that imports.

    Raises:
        RuntimeFailure: none is installed (exit code 1), with the install command.
    """
    order = list(RUNTIMES)
    if prefer is not None:
        if prefer not in RUNTIMES:
            raise InputError(f"unknown TFLite runtime {prefer!r}; choose one of {', '.join(RUNTIMES)}")
        order.remove(prefer)
        order.insert(0, prefer)
    reasons = []
    for name in order:
        try:
            return RUNTIMES[name]()
        except Exception as exc:  # ImportError, or a broken install failing on import
            reasons.append(f"{name}: {one_line(exc, 80)}")
    raise RuntimeFailure(
        "no TFLite interpreter is installed: run  pip install ai-edge-litert  (" + "; ".join(reasons) + ")"
    )


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """An exception message squeezed onto one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """
    return safety.check_tflite_file(path).path


def sidecar_path(model_path: str | Path) -> Path:
    """``X.int8.tflite`` -> ``X.int8.json`` (the export's sidecar)."""
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


@contextlib.contextmanager
def captured_stderr_fd(lines: list[str]):
    """Capture what native code writes to file descriptor 2 (LiteRT's INFO/ERROR lines) into ``lines``.

    The runtime prints e.g. ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
    straight to fd 2; kdtool keeps its output to one table or one error line.
    """
    try:
        fd = 2
        sys.stderr.flush()  # what Python already wrote stays on the real stderr
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), fd)
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            lines.extend(ln.strip() for ln in tmp.read(1 << 16).decode("utf-8", "replace").splitlines() if ln.strip())


#: Native log lines that carry no information for the user.
_BENIGN = ("INFO: Created TensorFlow Lite XNNPACK delegate", "INFO: Initialized TensorFlow Lite runtime")


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
        return bool(np.issubdtype(self.dtype, np.integer) and self.scale > 0)

    def quantization(self) -> dict | None:
        """``{"scale", "zero_point"}`` or None when not quantized (JSON-ready)."""
        return {"scale": float(self.scale), "zero_point": int(self.zero_point)} if self.quantized else None


@dataclass
class LoadedModel:
    """An allocated interpreter with its I/O description.

    Args:
        path: the .tflite file.
        interpreter: the allocated interpreter.
        runtime: which implementation built it.
        input: the image input.
        output: the class-score output (the first output).
        init_ms: load + (resize) + allocate time in ms.
        sidecar: the export sidecar dict ({} when absent).
        threads: num_threads given to the interpreter.
        notes: warning lines for the user.
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

    @property
    def batch(self) -> int:
        return int(self.input.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.output.shape[-1])

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

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


def load_model(path: str | Path, runtime: Runtime, threads: int = 1, batch: int | None = None) -> LoadedModel:
    """Check, load and allocate a .tflite model for image classification.

    Args:
        path: the .tflite file (checked with :func:`check_tflite_file`).
        runtime: from :func:`select_runtime`.
        threads: ``num_threads`` for the interpreter (XNNPACK stays on).
        batch: resize the input's batch dimension to this (None keeps the model's).

    Returns:
        A :class:`LoadedModel`; ``init_ms`` covers load + resize + allocate.

    Raises:
        InputError: a bad file, an interpreter failure, or a model that is not
            one (N, H, W, 3) image input -> class scores.
    """
    path = check_tflite_file(path)
    notes: list[str] = []
    side = read_sidecar(path, notes)
    native: list[str] = []
    t0 = time.perf_counter()
    try:
        with captured_stderr_fd(native), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice, on the fallback only
            interp = runtime.interpreter_class(model_path=str(path), num_threads=int(threads))
            inputs = interp.get_input_details()
            if len(inputs) == 1 and batch is not None and int(inputs[0]["shape"][0]) != batch:
                shape = [int(batch)] + [int(d) for d in inputs[0]["shape"][1:]]
                interp.resize_tensor_input(inputs[0]["index"], shape)
            interp.allocate_tensors()
        init_ms = (time.perf_counter() - t0) * 1000.0
        inputs, outputs = interp.get_input_details(), interp.get_output_details()  # may fail on bad tensor names
    except Exception as exc:  # the interpreter's errors are ValueError/RuntimeError with long texts
        raise InputError(f"{path}: the TFLite interpreter ({runtime.name}) cannot load it: {one_line(exc)}") from None
    notes += [f"{path}: {ln}" for ln in native if not ln.startswith(_BENIGN)]
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
    return LoadedModel(path, interp, runtime, inp, out, init_ms, side, int(threads), notes)


# ----------------------------------------------------------------------------- isolation

#: argv that starts a child interpreter process (the request file is appended); None: this Python running
#: :mod:`kdtool.bench._child`. Tests point it at a child whose interpreter crashes or hangs.
CHILD_COMMAND: list[str] | None = None
#: Default --timeout: seconds without progress after which an isolated interpreter is stopped.
DEFAULT_TIMEOUT_S = 300.0
#: Heartbeat bytes the child writes to its stdout: a stage letter, or "." for progress within it.
STAGES = {"S": "starting", "L": "loading the model", "T": "timing invokes", "A": "running the split",
          "P": "classifying the images"}  # fmt: skip


def written_by_kdtool(path: str | Path) -> bool:
    """True when the model's export sidecar records a ``sha256`` equal to the file's.

    This tells a file ``kdtool export`` wrote (and nobody changed since) from a
    foreign one; it is provenance, not a signature: whoever can write both files
    can fake it. Any problem reading either file means False.
    """
    digest = read_sidecar(path).get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        return False
    try:
        return sha256_file(path) == digest.lower()
    except OSError:
        return False


def should_isolate(path: str | Path, isolate: bool | None) -> bool:
    """``--isolate``/``--no-isolate`` as given, else isolate every file not :func:`written_by_kdtool`."""
    return (not written_by_kdtool(path)) if isolate is None else bool(isolate)


#: The child's first Python statements: drop the current folder from sys.path (``python -m`` or ``-c`` would
#: put it first, letting a stray numpy.py there hijack the child), make this kdtool importable, run the job.
_CHILD_BOOT = (
    "import sys\n"
    "del sys.path[0]\n"
    "sys.path.insert(0, sys.argv[1]) if sys.argv[1] not in sys.path else None\n"
    "from kdtool.bench._child import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def _child_command() -> list[str]:
    if CHILD_COMMAND is not None:
        return list(CHILD_COMMAND)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this kdtool package
    return [sys.executable, "-c", _CHILD_BOOT, root]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _signal_name(code: int) -> str:
    import signal  # noqa: PLC0415

    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return f"signal {-code}"


def _log_hint(log_path: Path, any_line: bool = False) -> str:
    """The last telling line of the child's stderr (a native ERROR line, a fatal error; else the last line
    when ``any_line``), for the message."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(log_path) - (1 << 16)))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    keys = ("error", "fatal", "abort", "segmentation", "check failed")
    telling = [ln for ln in lines if any(k in ln.lower() for k in keys) and not ln.startswith(_BENIGN)]
    if not telling and any_line:
        telling = [ln for ln in lines if not ln.startswith(_BENIGN)]
    return f": {one_line(telling[-1], 160)}" if telling else ""


def run_isolated(job: str, model: str | Path, request: dict, timeout: float = DEFAULT_TIMEOUT_S,
                 inputs: dict[str, np.ndarray] | None = None) -> tuple[dict, dict[str, np.ndarray]]:  # fmt: skip
    """Run one interpreter job (:mod:`kdtool.bench._child`) in a child process and return its result.

    The child's stdout carries heartbeats; when none comes for ``timeout``
    seconds the child is killed. Its stderr (native log lines) goes to a
    temporary file, read only to explain a crash. Everything is exchanged
    through a temporary folder that is removed afterwards.

    Args:
        job: ``bench``, ``predictions`` or ``classify`` (see :data:`kdtool.bench._child.JOBS`).
        model: the .tflite file (for messages; also ``request["model"]``).
        request: the job's JSON-ready parameters.
        timeout: seconds without progress before the child is stopped.
        inputs: arrays handed to the child (saved as .npy).

    Returns:
        (the child's JSON result, the arrays it returned).

    Raises:
        InputError: the job failed on the model or data (the child's own line), the
            interpreter crashed (the signal is named) or hung past ``timeout``.
        RuntimeFailure: the child could not be started, or failed on the environment.
    """
    import subprocess  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from kdtool.data import safe_load_npy  # noqa: PLC0415

    model = Path(model)
    try:
        workdir = tempfile.TemporaryDirectory(prefix="kdtool-isolated-")
    except OSError as exc:
        raise RuntimeFailure(f"no temporary folder for an isolated interpreter ({one_line(exc)})") from None
    with workdir as tmp:
        work = Path(tmp)
        req = dict(request, job=job, model=str(model), outdir=str(work), inputs={})
        try:
            for name, arr in (inputs or {}).items():
                np.save(work / f"in_{name}.npy", np.asarray(arr), allow_pickle=False)
                req["inputs"][name] = str(work / f"in_{name}.npy")
            (work / "request.json").write_text(json.dumps(req), encoding="utf-8")
        except OSError as exc:
            raise RuntimeFailure(f"{work}: cannot write the isolated interpreter's request ({one_line(exc)})") from None
        cmd = _child_command() + [str(work / "request.json")]
        env = _child_env()
        pass_fds: tuple[int, ...] = ()
        if os.name == "posix":
            with contextlib.suppress(AttributeError, OSError, ValueError):
                if sys.stderr.isatty():  # the child draws its progress bar on our terminal
                    pass_fds = (os.dup(sys.stderr.fileno()),)
                    env["KDTOOL_PROGRESS_FD"] = str(pass_fds[0])
        log_path = work / "stderr.log"
        state = {"last": time.monotonic(), "stage": "S"}

        def pump(stream) -> None:
            for chunk in iter(lambda: stream.read1(256), b""):
                state["last"] = time.monotonic()
                letters = [c for c in chunk.decode("ascii", "replace") if c in STAGES]
                if letters:
                    state["stage"] = letters[-1]

        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env,
                                        pass_fds=pass_fds)  # fmt: skip
            except OSError as exc:
                raise RuntimeFailure(f"cannot start the isolated interpreter process ({one_line(exc)})") from None
            finally:
                for fd in pass_fds:
                    os.close(fd)
            reader = threading.Thread(target=pump, args=(proc.stdout,), daemon=True)
            reader.start()
            hung = False
            try:
                while proc.poll() is None:
                    if time.monotonic() - state["last"] > timeout:
                        hung = True
                        proc.kill()
                        break
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=min(0.2, max(timeout, 0.01)))
            finally:
                if proc.poll() is None:  # KeyboardInterrupt or another exception here: never leave it running
                    proc.kill()
                proc.wait()
                reader.join(timeout=5)
                proc.stdout.close()
        stage = STAGES.get(state["stage"], "running")
        if hung:
            raise InputError(
                f"{model}: no progress for {timeout:g} s while {stage} in the isolated TFLite interpreter; "
                "stopped it (a hanging model? raise --timeout on a very slow device)"
            )
        result_path = work / "result.json"
        result = None
        if result_path.is_file():
            try:
                result = json.loads(result_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                result = None
        if isinstance(result, dict) and "error" in result:
            cls = RuntimeFailure if result.get("exit_code") == RuntimeFailure.exit_code else InputError
            raise cls(one_line(result["error"], 1000))
        code = proc.returncode
        if code < 0:
            raise InputError(
                f"{model}: the TFLite interpreter crashed ({_signal_name(code)}) while {stage}"
                f"{_log_hint(log_path)}; it ran isolated, nothing else was affected"
            )
        if code != 0 or not isinstance(result, dict):
            raise InputError(
                f"{model}: the isolated TFLite interpreter exited with code {code} while {stage}"
                f"{_log_hint(log_path, any_line=True)}"
            )
        names = result.get("arrays", [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise InputError(f"{model}: the isolated TFLite interpreter returned a malformed result")
        arrays = {name: np.asarray(safe_load_npy(work / f"out_{name}.npy")) for name in names}
        return result, arrays
