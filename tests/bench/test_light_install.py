"""The light install (`pip install .`: numpy, click, cloup, ai-edge-litert, Pillow; no TensorFlow) runs bench
and predict.

Builds a fresh venv WITHOUT the [train] extra, installs this checkout into it
and runs `kdtool bench` and `kdtool predict` on an int8 model there. Skipped
only when the package registry cannot be reached.
"""

from __future__ import annotations

import json
import subprocess
import venv

import numpy as np
import pytest
from conftest import ROOT, write_fdata

from bench.test_bench import build_tiny_models

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory):
    env_dir = tmp_path_factory.mktemp("light") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        if "Could not find a version" in proc.stderr or "NewConnectionError" in proc.stderr:
            pytest.skip(f"package registry unreachable: {proc.stderr.strip().splitlines()[-1]}")
        pytest.fail(proc.stderr[-3000:])
    return env_dir


def test_bench_and_predict_without_tensorflow(light_venv, tmp_path):
    py = light_venv / "bin" / "python"
    kdtool = light_venv / "bin" / "kdtool"
    probe = subprocess.run([str(py), "-c", "import tensorflow"], capture_output=True, text=True)
    assert probe.returncode != 0, "the light install must not pull TensorFlow in"

    fdata = write_fdata(tmp_path / "FData", n=(60, 20, 30), k=4, class_names=["nv", "mel", "bkl", "bcc"])
    models = build_tiny_models(tmp_path / "m", fdata, epochs=10)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            str(kdtool),
            "bench",
            str(models["int8"]),
            "--data",
            str(fdata),
            "--runs",
            "10",
            "--warmup",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = json.loads(out.read_text())[0]
    assert rec["runtime"] == "ai_edge_litert" and rec["input_dtype"] == "int8" and rec["n_images"] == 30
    assert "bal.acc" in proc.stdout and "ai_edge_litert" in proc.stdout

    from PIL import Image

    img = tmp_path / "lesion.png"
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(img)
    proc = subprocess.run(
        [str(kdtool), "predict", str(models["int8"]), str(img), "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "mel" in proc.stdout or "nv" in proc.stdout
