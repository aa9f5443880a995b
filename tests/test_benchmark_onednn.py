"""benchmarks/onednn.py: each setting reaches its own child process, and the table's ratios."""

from __future__ import annotations

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def onednn():
    return load_benchmark("onednn")


def test_each_setting_is_in_the_childs_environment(onednn, monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # the parent's own setting must not leak through
    for setting in onednn.SETTINGS:
        proc = onednn._spawn(setting, ["-c", "import os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"])
        assert proc.stdout.strip() == setting


MODELS = ("student", "student_c2", "teacher_lite0_96")  # benchmarks/onednn.py's, in its table's order


def _child(ms: float, on: bool, deterministic: bool = True) -> dict:
    return {"onednn": on, "deterministic": deterministic, "teacher_ms_per_image": ms / 100,
            "ms_per_step": {m: ms * (i + 1) for i, m in enumerate(MODELS)},
            "median_ms_per_step": {m: ms for m in MODELS}}


def test_speed_up_is_eigen_over_onednn_from_the_median_of_the_repeats(onednn):
    assert onednn.MODELS == MODELS
    doc = {"command": "python benchmarks/onednn.py", "machine": {"cpu_flags": ["avx2", "fma"]},
           "machine_line": "a CPU", "data": "D", "repeats": 3, "wall_seconds": 60.0,
           "steps": {"0": [_child(200, False), _child(210, False), _child(900, False)],
                     "1": [_child(100, True), _child(105, True, deterministic=False), _child(90, True)]},
           "pipeline": {"0": 300.0, "1": 200.0}}
    md = onednn._markdown(doc)
    assert "| `TF_ENABLE_ONEDNN_OPTS=0` | False | True | 210 | 420 | 630 | 2.10 |" in md  # medians, not the 900 outlier
    assert "| `TF_ENABLE_ONEDNN_OPTS=1` | True | False | 100 | 200 | 300 | 1.00 |" in md  # one repeat not repeatable
    assert "| speed-up (0 / 1) | | | 2.10x | 2.10x | 2.10x | 2.10x |" in md
    assert "300 with `TF_ENABLE_ONEDNN_OPTS=0`, 200 with `=1` (1.50x)" in md
