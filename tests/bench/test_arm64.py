"""kdtool bench under an emulated 64-bit ARM Debian (qemu-user, Cortex-A72) gives the x86 predictions.

Runs ``benchmarks/arm64_bench.sh``, which installs qemu-user-static and
debootstrap with apt-get when missing, debootstraps an arm64 root into
``.arm64/bookworm`` (git-ignored, reused) and pip-installs aarch64 wheels of
ai-edge-litert (pinned to the host's version), numpy, click, cloup, Pillow and this
checkout. About 40 s the first time, ~15 s after. Skipped only when not root,
or when the package registries are unreachable and the root is not prepared yet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, write_fdata

from kdtool.cli import main

pytestmark = pytest.mark.arm64

SCRIPT = ROOT / "benchmarks" / "arm64_bench.sh"
ARM_ROOT = Path(os.environ.get("ROOT", ROOT / ".arm64" / "bookworm"))
CLASSES = ["nv", "mel", "bkl", "bcc"]


def _reachable(url: str) -> bool:
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=10):
            return True
    except Exception:  # any failure means unreachable
        return False


def _debian_mirror() -> str:
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        try:
            m = re.search(r"(?:URIs:|deb)\s+(https?://\S+)", path.read_text())
        except OSError:
            continue
        if m:
            return m.group(1).rstrip("/")
    return "http://deb.debian.org/debian"


def _pypi_index() -> str:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                         capture_output=True, text=True)  # fmt: skip
    url = out.stdout.strip() if out.returncode == 0 else ""
    return url if url.startswith("http") else os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: apt-get (qemu-user-static, debootstrap) and debootstrap of an arm64 root"
    prepared = (
        shutil.which("qemu-aarch64-static")
        and (ARM_ROOT / "usr" / "bin" / "python3.11").exists()
        and (ARM_ROOT / "opt" / "site" / ".stamp").exists()
    )
    if prepared:
        return None  # pip may still need PyPI if the host's versions changed; the run will say so
    for name, url in (("Debian", f"{_debian_mirror()}/dists/bookworm/Release"), ("PyPI", _pypi_index())):
        if not _reachable(url):
            return f"the {name} registry ({url}) is unreachable and {ARM_ROOT} is not prepared yet"
    return None


@pytest.fixture(scope="module")
def arm_setup(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from bench.test_bench import build_tiny_models

    root = tmp_path_factory.mktemp("arm64")
    fdata = write_fdata(root / "FData", n=(240, 4, 48), k=len(CLASSES), size=8, class_names=CLASSES, seed=3)
    models = build_tiny_models(root / "models", fdata, seed=1)
    return root, fdata, models["int8"]


@pytest.mark.slow  # debootstraps or reuses an emulated ARM64 root
def test_emulated_arm64_predictions_equal_x86(arm_setup):
    root, fdata, model = arm_setup
    host_json, host_npy, arm_npy = root / "host.json", root / "host.npy", root / "arm.npy"
    r = CliRunner().invoke(main, ["bench", str(model), "--data", str(fdata), "--runs", "3", "--warmup", "1",
                                  "--json", str(host_json), "--predictions", str(host_npy)])  # fmt: skip
    assert r.exit_code == 0, r.output
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.run(
        ["bash", str(SCRIPT), str(model), str(fdata), "--runs", "3", "--warmup", "1", "--predictions", str(arm_npy)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    arm = json.loads(out.stdout)
    host = json.loads(host_json.read_text())
    assert len(arm) == 1 and list(arm[0]) == list(host[0])  # the same JSON keys on both
    a, h = arm[0], host[0]
    assert a["device"]["machine"] == "aarch64" and h["device"]["machine"] != "aarch64"
    assert a["emulated"] is True and h["emulated"] is False
    assert "Cortex-A72" in a["device"]["cpu_model"]
    assert a["runtime"] == h["runtime"] == "ai_edge_litert" and a["runtime_version"] == h["runtime_version"]
    assert "EMULATED" in out.stderr  # the table says the timings are meaningless
    arm_preds, host_preds = np.load(arm_npy, allow_pickle=False), np.load(host_npy, allow_pickle=False)
    assert arm_preds.shape == host_preds.shape == (48,)
    assert np.array_equal(arm_preds, host_preds)
    for key in ("accuracy", "balanced_accuracy", "confusion_matrix", "per_class", "n_images", "size_bytes"):
        assert a[key] == h[key], key


def test_script_usage_errors():
    if os.geteuid() != 0:
        pytest.skip("needs root: the script refuses to run without it")
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 2 and "usage" in out.stderr
    out = subprocess.run(["bash", str(SCRIPT), "/nonexistent.tflite", "/tmp"], capture_output=True, text=True)
    assert out.returncode == 2 and "/nonexistent.tflite: file not found" in out.stderr
