"""The isolated interpreter process (``python -m kdtool.bench._child REQUEST.json`` works too).

:func:`kdtool.bench.isolation.run_isolated` starts it for a model that was not
written by ``kdtool export``, so that a crash (segfault, abort) or a hang in
the TFLite interpreter kills only this process. Protocol, all through the
request's temporary ``outdir``:

* ``REQUEST.json``: ``{"job", "model", "outdir", "inputs": {name: .npy}, ...}``
  (the job's parameters, see :data:`JOBS`);
* stdout: heartbeats only, a stage letter (see
  :data:`kdtool.bench.isolation.STAGES`) or ``.`` after each progress step; the
  parent stops the child when none comes for ``--timeout`` seconds. Anything
  else written to fd 1 (native log lines) is sent to stderr instead;
* ``outdir/result.json``: ``{"ok": true, ...}`` or ``{"error": line,
  "exit_code": 1|2}``, written atomically; arrays as ``outdir/out_<name>.npy``.

Exit code: 0, or that of the kdtool error. No TensorFlow is imported here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_beat_file: Any = None
_progress_file: Any = None


def beat(mark: str = ".") -> None:
    """Tell the parent we are alive (and in which stage)."""
    if _beat_file is None:
        return
    try:
        _beat_file.write(mark.encode("ascii"))
    except OSError:  # the parent is gone: nobody to report to
        os._exit(3)


_STAGE_OF = {"latency": "T", "accuracy": "A"}


@contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """Progress factory for :func:`kdtool.bench.run.bench_model`: heartbeats, and a bar on the parent's terminal."""
    beat(_STAGE_OF.get(label.split(" ", 1)[0], "."))
    if _progress_file is None or total <= 0:
        yield lambda n: beat()
        return
    import click

    with click.progressbar(length=total, label=label, file=_progress_file) as bar:

        def update(n: int) -> None:
            bar.update(n)
            beat()

        yield update


def _split(req: dict):
    from kdtool.bench.run import SplitData
    from kdtool.data import load_fdata

    fdata = load_fdata(req["data"], splits=(req["split"],))
    return SplitData.from_fdata(fdata, req["split"], req.get("by"))


def _runtime(req: dict):
    from kdtool.litert import select_runtime

    return select_runtime(req.get("runtime"))


def job_bench(req: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """``bench``: :func:`kdtool.bench.run.bench_model` on one model -> record, notes, predictions."""
    from kdtool.bench.run import bench_model
    from kdtool.data import safe_load_npy

    data, runtime = _split(req), _runtime(req)
    reference = None
    if req.get("reference_name") and "reference" in req["inputs"]:
        reference = (req["reference_name"], safe_load_npy(req["inputs"]["reference"]))
    notes: list[str] = []
    beat("L")
    record, preds = bench_model(req["model"], data, runtime, threads=req["threads"], runs=req["runs"],
                                warmup=req["warmup"], batch=req["batch"], device=req.get("device"),
                                reference=reference, progress=progress, notes=notes,
                                tta=req.get("tta", "none"), bootstrap=req.get("bootstrap", 0),
                                class_of_concern=req.get("class_of_concern"))  # fmt: skip
    return {"record": record, "notes": notes}, {"predictions": preds}


def job_predictions(req: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """``predictions``: top-1 predictions of one model on the split (for ``--reference``)."""
    from kdtool.bench.run import model_predictions
    from kdtool.tflite_model import load_model

    data, runtime = _split(req), _runtime(req)
    beat("L")
    model = load_model(req["model"], runtime, threads=req["threads"], batch=req["batch"])
    _, preds = model_predictions(model, data, progress, req.get("tta", "none"))
    return {"notes": model.notes}, {"predictions": preds}


def job_classify(req: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """``classify``: ``kdtool predict`` on image files -> results, notes."""
    from kdtool.bench.predict import classify
    from kdtool.tflite_model import load_model

    runtime = _runtime(req)
    beat("L")
    model = load_model(req["model"], runtime, threads=req["threads"])
    beat("P")
    return {
        "notes": model.notes,
        "results": classify(model, req["images"], top=req["top"], tta=req.get("tta", "none")),
    }, {}


#: job name -> function(request) -> (JSON-ready result, arrays).
JOBS: dict[str, Callable[[dict], tuple[dict, dict[str, np.ndarray]]]] = {
    "bench": job_bench,
    "predictions": job_predictions,
    "classify": job_classify,
}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _write_result(outdir: Path, result: dict) -> None:
    tmp = outdir / ".result.json.tmp"
    tmp.write_text(json.dumps(result, default=_jsonable), encoding="utf-8")
    os.replace(tmp, outdir / "result.json")


def main(argv: list[str] | None = None) -> int:
    """Run the job in ``argv[0]`` (a request file); return the exit code."""
    global _beat_file, _progress_file
    argv = sys.argv[1:] if argv is None else argv
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    outdir = Path(req["outdir"])
    sys.stdout.flush()
    _beat_file = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # native code's and stray prints go to the log, never into the heartbeat pipe
    fd = os.environ.pop("KDTOOL_PROGRESS_FD", None)
    if fd and fd.isdigit():
        try:
            _progress_file = os.fdopen(int(fd), "w")
        except OSError:
            _progress_file = None
    beat("S")

    import click

    from kdtool.errors import InputError

    try:
        job = JOBS.get(req.get("job"))
        if job is None:
            raise InputError(f"unknown isolated job {req.get('job')!r}")
        result, arrays = job(req)
        for name, arr in arrays.items():
            np.save(outdir / f"out_{name}.npy", np.asarray(arr), allow_pickle=False)
        _write_result(outdir, {"ok": True, **result, "arrays": sorted(arrays)})
        return 0
    except click.ClickException as exc:  # InputError (2), RuntimeFailure (1), ...
        _write_result(outdir, {"error": exc.format_message(), "exit_code": exc.exit_code})
        return exc.exit_code
    except Exception as exc:  # an interpreter failure on an untrusted model
        from kdtool.litert import one_line

        msg = f"{req.get('model')}: the TFLite interpreter failed ({type(exc).__name__}: {one_line(exc, 240)})"
        _write_result(outdir, {"error": msg, "exit_code": InputError.exit_code})
        return InputError.exit_code


if __name__ == "__main__":
    sys.exit(main())
