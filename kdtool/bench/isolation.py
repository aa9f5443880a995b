"""Run a TFLite interpreter job in a child process, so a crashing or hanging model becomes one error line.

A model not written by ``kdtool export`` (no sidecar whose ``sha256`` matches
the file, see :func:`written_by_kdtool`) runs in a child process
(:func:`run_isolated`, running :mod:`kdtool.bench._child`) by default, so an
interpreter that crashes (segfault, abort) or stops making progress for
``timeout`` seconds becomes one :class:`~kdtool.errors.InputError` line
instead of a dead benchmark. The interpreter itself is :mod:`kdtool.litert`'s.

Example:
    >>> should_isolate("models/export/s.int8.tflite", None)              # doctest: +SKIP
    False
    >>> result, arrays = run_isolated("predictions", "foreign.tflite", request)  # doctest: +SKIP
    >>> arrays["predictions"].shape                                      # doctest: +SKIP
    (1704,)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kdtool.data import sha256_file
from kdtool.errors import InputError, RuntimeFailure
from kdtool.litert import BENIGN_LOG_LINES, one_line
from kdtool.tflite_model import read_sidecar

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

    Args:
        path: the .tflite file.

    Returns:
        Whether the sidecar vouches for the file.

    Example:
        >>> written_by_kdtool("no/such/model.tflite")
        False
    """
    digest = read_sidecar(path).get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        return False
    try:
        return sha256_file(path) == digest.lower()
    except OSError:
        return False


def should_isolate(path: str | Path, isolate: bool | None) -> bool:
    """Whether a model's interpreter runs in a child process.

    Args:
        path: the .tflite file.
        isolate: ``--isolate`` (True), ``--no-isolate`` (False) or neither (None).

    Returns:
        ``isolate`` when given, else True for every file not :func:`written_by_kdtool`.

    Example:
        >>> should_isolate("no/such/model.tflite", None), should_isolate("no/such/model.tflite", False)
        (True, False)
    """
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
    """argv that starts the child (the request file is appended): this Python running :mod:`kdtool.bench._child`."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this kdtool package
    return [sys.executable, "-c", _CHILD_BOOT, root]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _signal_name(code: int) -> str:
    import signal

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
    telling = [ln for ln in lines if any(k in ln.lower() for k in keys) and not ln.startswith(BENIGN_LOG_LINES)]
    if not telling and any_line:
        telling = [ln for ln in lines if not ln.startswith(BENIGN_LOG_LINES)]
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

    Example:
        >>> result, arrays = run_isolated("predictions", "foreign.tflite",  # doctest: +SKIP
        ...                               {"data": "FData", "split": "test", "threads": 1, "batch": 1})
        >>> arrays["predictions"][:5]                                        # doctest: +SKIP
        array([0, 0, 1, 0, 3])
    """
    import subprocess
    import threading

    from kdtool.data import safe_load_npy

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
