"""Kill a real `kdtool distill` run (SIGKILL, SIGINT) mid-epoch; re-running it finishes with nothing lost or doubled."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, write_fdata

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # each test trains a real kdtool distill run twice, in subprocesses

EPOCHS, TEACHER_EPOCHS = 5, 3
MODELS = ["student_alone", "teacher_efficientnet_lite0", "student_efficientnet_lite0"]


def _cmd(data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kdtool",
        "distill",
        "--data",
        str(data),
        "--out",
        str(out),
        "--teachers",
        "efficientnet_lite0",
        "--weights",
        "none",
        "--epochs",
        str(EPOCHS),
        "--teacher-epochs",
        str(TEACHER_EPOCHS),
        "--batch-size",
        "16",
        "--image-size",
        "32",
        "--student-filters",
        "8,16",
        "--student-dense",
        "16",
    ]


def _backed_up(folder: Path) -> int:
    """Epochs the model's backup holds (state.json is written last, after the weights)."""
    try:
        return int(json.loads((folder / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _start_and_interrupt(data, out, sig, model, epoch, timeout=300):
    """Start the run; send ``sig`` once ``model`` has backed up ``epoch`` epochs (the marker file)."""
    # A shell's background job (`pytest ... &`) starts with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the run the default disposition, as a terminal's Ctrl-C finds it.
    proc = subprocess.Popen(
        _cmd(data, out),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    marker = out / ".backup" / model
    deadline = time.monotonic() + timeout
    while _backed_up(marker) < epoch and not (out / model / "metrics.json").exists():
        assert proc.poll() is None, f"run ended before the kill point:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.005)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    return proc.returncode, output


def _assert_finished(data, out):
    proc = subprocess.run(_cmd(data, out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "FINISHED"
    assert sorted(m["name"] for m in doc["models"]) == sorted(MODELS)
    import keras

    import kdtool.layers  # noqa: F401 - registers the teachers' preprocessing layer

    for rec in doc["models"]:
        keras.saving.load_model(out / rec["file"], safe_mode=True)
        with open(out / rec["name"] / "history.csv") as fh:
            rows = list(csv.DictReader(fh))
        want = TEACHER_EPOCHS if rec["role"] == "teacher" else EPOCHS
        assert [int(r["epoch"]) for r in rows] == list(range(1, want + 1)), rec["name"]
        assert rec["epochs"] == want
    with open(out / "summary.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(MODELS)
    assert not (out / ".backup").exists() or not any((out / ".backup").iterdir())
    assert not list(out.glob(".*.tmp*")), "temp files left behind"
    return proc.stdout


def test_sigkill_then_resume(tmp_path):
    data = write_fdata(tmp_path / "FData", n=(96, 16, 16), size=16)
    out = tmp_path / "run"
    rng = random.Random()
    model = rng.choice(["student_alone", "teacher_efficientnet_lite0"])
    epoch = rng.randint(1, (TEACHER_EPOCHS if model.startswith("teacher") else EPOCHS) - 1)
    code, output = _start_and_interrupt(data, out, signal.SIGKILL, model, epoch)
    assert code == -signal.SIGKILL, output[-2000:]
    assert json.loads((out / "run.json").read_text())["status"] == "RUNNING"  # what SIGKILL leaves
    stdout = _assert_finished(data, out)
    assert "already done, skipped" in stdout or "resuming" in stdout, (model, epoch, stdout[-2000:])


def test_sigint_marks_killed_then_resume(tmp_path):
    data = write_fdata(tmp_path / "FData", n=(96, 16, 16), size=16)
    out = tmp_path / "run"
    code, output = _start_and_interrupt(data, out, signal.SIGINT, "student_efficientnet_lite0", 2)
    assert code == 130, output[-2000:]
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "KILLED" and "SIGINT" in doc["error"]
    assert "marked KILLED" in output and "Traceback" not in output
    stdout = _assert_finished(data, out)
    assert "resuming student_efficientnet_lite0 after epoch" in stdout
