"""Old home of the interpreter wrapper, kept only so existing imports keep working; import from the new homes.

Moved: :mod:`kdtool.litert` (``Runtime``, ``RUNTIMES``, ``select_runtime``,
``one_line``, ``captured_stderr_fd``), :mod:`kdtool.tflite_model`
(``TensorIO``, ``LoadedModel``, ``load_model``, ``check_tflite_file``,
``sidecar_path``, ``read_sidecar``) and :mod:`kdtool.bench.isolation`
(``run_isolated``, ``should_isolate``, ``written_by_kdtool``,
``DEFAULT_TIMEOUT_S``, ``STAGES``). This module goes away
once ``benchmarks/`` imports from those.

Example:
    >>> from kdtool.bench.runtime import select_runtime
    >>> from kdtool.litert import select_runtime as moved
    >>> select_runtime is moved
    True
"""

from __future__ import annotations

from kdtool.bench.isolation import DEFAULT_TIMEOUT_S, STAGES, run_isolated, should_isolate, written_by_kdtool
from kdtool.litert import RUNTIMES, Runtime, captured_stderr_fd, one_line, select_runtime
from kdtool.tflite_model import LoadedModel, TensorIO, check_tflite_file, load_model, read_sidecar, sidecar_path

__all__ = [
    "DEFAULT_TIMEOUT_S", "RUNTIMES", "STAGES", "LoadedModel", "Runtime", "TensorIO", "captured_stderr_fd",
    "check_tflite_file", "load_model", "one_line", "read_sidecar", "run_isolated", "select_runtime",
    "should_isolate", "sidecar_path", "written_by_kdtool",
]  # fmt: skip
