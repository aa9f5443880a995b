"""Which TFLite interpreter runs a model, and how one is built; shared by ``kdtool export`` and ``kdtool bench``.

TensorFlow-free. The interpreter comes from the first of these that works
(see :data:`RUNTIMES`):

1. ``ai_edge_litert`` (LiteRT, the light install's dependency);
2. ``tflite_runtime``, only where numpy < 2: it imports under numpy 2 but fails
   as soon as an ``Interpreter`` is built;
3. ``tensorflow.lite`` as a last resort, when neither of the others is
   installed. This is the one place the bench path may import TensorFlow.

XNNPACK stays on (the default op resolver) unless ``delegates=False``;
``threads`` is passed through as ``num_threads``. :func:`open_interpreter` is
the one place kdtool builds an interpreter; :mod:`kdtool.tflite_model` loads a
classifier with it and runs images through it.

Example:
    >>> rt = select_runtime()                                              # doctest: +SKIP
    >>> rt.name                                                            # doctest: +SKIP
    'ai_edge_litert'
    >>> interp = open_interpreter("models/export/s.int8.tflite", rt, threads=4)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kdtool.errors import InputError, RuntimeFailure

#: Native log lines that carry no information for the user.
BENIGN_LOG_LINES = ("INFO: Created TensorFlow Lite XNNPACK delegate", "INFO: Initialized TensorFlow Lite runtime")


# ----------------------------------------------------------------------------- runtimes


@dataclass(frozen=True)
class Runtime:
    """A usable TFLite interpreter implementation.

    Args:
        name: ``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow``.
        version: its package version.
        interpreter_class: the ``Interpreter`` class to instantiate.
        op_resolver_type: its ``OpResolverType`` enum (for ``delegates=False``), None when it has none.
    """

    name: str
    version: str
    interpreter_class: Any = field(repr=False)
    op_resolver_type: Any = field(default=None, repr=False)


def _dist_version(dist: str, module: Any = None) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _numpy_major() -> int:
    return int(np.__version__.split(".")[0])


def _ai_edge_litert() -> Runtime:
    mod = importlib.import_module("ai_edge_litert.interpreter")
    return Runtime("ai_edge_litert", _dist_version("ai-edge-litert", mod), mod.Interpreter,
                   getattr(mod, "OpResolverType", None))  # fmt: skip


def _tflite_runtime() -> Runtime:
    if _numpy_major() >= 2:
        raise ImportError(f"tflite_runtime is built against numpy 1.x and numpy {np.__version__} is installed")
    mod = importlib.import_module("tflite_runtime.interpreter")
    return Runtime("tflite_runtime", _dist_version("tflite-runtime", mod), mod.Interpreter,
                   getattr(mod, "OpResolverType", None))  # fmt: skip


def _tensorflow() -> Runtime:
    # Last resort only: reached when neither LiteRT nor tflite_runtime is usable.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_stderr_fd([]):  # TensorFlow's start-up log lines
        tf = importlib.import_module("tensorflow")
    return Runtime("tensorflow", str(tf.__version__), tf.lite.Interpreter,
                   getattr(tf.lite.experimental, "OpResolverType", None))  # fmt: skip


#: Interpreter providers in order of preference.
RUNTIMES: dict[str, Callable[[], Runtime]] = {
    "ai_edge_litert": _ai_edge_litert,
    "tflite_runtime": _tflite_runtime,
    "tensorflow": _tensorflow,
}


@functools.cache
def select_runtime(prefer: str | None = None) -> Runtime:
    """Pick the TFLite interpreter: ai_edge_litert, then tflite_runtime (numpy < 2), then TensorFlow.

    Args:
        prefer: a key of :data:`RUNTIMES` to try first (mainly for tests).

    Returns:
        The first :class:`Runtime` that imports.

    Raises:
        InputError: ``prefer`` is not a key of :data:`RUNTIMES`.
        RuntimeFailure: none is installed (exit code 1), with the install command.

    Example:
        >>> select_runtime().name in RUNTIMES                      # doctest: +SKIP
        True
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
    """An exception message squeezed onto one line.

    Args:
        exc: the exception or text.
        limit: the most characters returned.

    Returns:
        The message with runs of whitespace made one space, cut with ``...``.

    Example:
        >>> one_line(ValueError("bad\\n  tensor"), 20)
        'bad tensor'
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def captured_stderr_fd(lines: list[str]) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 (LiteRT's INFO/ERROR lines) into ``lines``.

    The runtime prints e.g. ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
    straight to fd 2; kdtool keeps its output to one table or one error line.

    Args:
        lines: receives the captured non-blank lines on exit.

    Example:
        >>> lines = []
        >>> with captured_stderr_fd(lines):                         # doctest: +SKIP
        ...     os.write(2, b"INFO: hello\\n")
        >>> lines                                                   # doctest: +SKIP
        ['INFO: hello']
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


def open_interpreter(source: str | Path | bytes, runtime: Runtime, threads: int = 1, delegates: bool = True,
                     native: list[str] | None = None) -> Any:  # fmt: skip
    """Build an interpreter (not allocated): the one place kdtool instantiates one.

    Args:
        source: a .tflite path (check it first with :func:`check_tflite_file`) or the model's bytes.
        runtime: from :func:`select_runtime`.
        threads: ``num_threads``.
        delegates: False builds it without the default delegates (XNNPACK), so every builtin op shows.
        native: receives the native log lines it printed (captured, never shown), if given.

    Returns:
        The runtime's ``Interpreter``.

    Example:
        >>> interp = open_interpreter(tflite_bytes, select_runtime(), delegates=False)  # doctest: +SKIP
    """
    kwargs: dict[str, Any] = {"num_threads": int(threads)}
    if isinstance(source, (bytes, bytearray, memoryview)):
        kwargs["model_content"] = bytes(source)
    else:
        kwargs["model_path"] = str(source)
    if not delegates and runtime.op_resolver_type is not None:
        kwargs["experimental_op_resolver_type"] = runtime.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with captured_stderr_fd(native if native is not None else []), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice, on the fallback only
        return runtime.interpreter_class(**kwargs)
