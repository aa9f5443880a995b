"""The README's two commands stay in step with the code and with .ci/run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT


def _bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = _bash_blocks()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    for part in (p.strip() for p in test_cmd.split("&&")):
        assert part in ci, f".ci/run does not run the README step {part!r}"


@pytest.mark.slow
def test_readme_main_job_runs(tmp_path):
    pytest.importorskip("tensorflow")
    steps = [p.strip() for p in _bash_blocks()[0].strip().split("&&")]
    kdtool_steps = [s for s in steps if s.startswith("kdtool ")]
    assert [s.split()[1] for s in kdtool_steps] == ["data", "distill", "export", "bench"]
    for step in kdtool_steps:
        argv = shlex.split(step)[1:]
        proc = subprocess.run([sys.executable, "-m", "kdtool", *argv], cwd=tmp_path, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"{step}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "bal.acc" in proc.stdout
