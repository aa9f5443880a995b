"""The machine a results page was measured on: CPU, memory, load, library versions and the git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def machine_facts() -> dict:
    """CPU model, family and flags, cores, memory, platform, load average, versions and git commit."""
    from kdtool import __version__
    from kdtool.bench.device import device_facts

    facts = device_facts()
    facts.pop("runtime", None)
    facts.pop("runtime_version", None)
    try:
        info = Path("/proc/cpuinfo").read_text()
        flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
        facts["cpu_flags"] = [
            f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags
        ]
        fam = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("cpu family")), None)
        mod = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model\t")), None)
        facts["cpu_family_model"] = f"family {fam}, model {mod}" if fam else None
    except OSError:
        pass
    try:
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        facts["memory_gb"] = round(int(mem.split()[1]) / 1024**2, 1)
    except (OSError, StopIteration):
        facts["memory_gb"] = None
    facts["platform"] = platform.platform()
    facts["load_average_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    versions = {"kdtool": __version__, "python": platform.python_version(), "numpy": np.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "scikit-learn"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    facts["versions"] = versions
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        facts["git"] = {"commit": commit or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        facts["git"] = None
    return facts


def machine_line(m: dict) -> str:
    """One line naming the machine of :func:`machine_facts` and the library versions.

    >>> machine_line({"cpu_model": "X", "cpu_cores": 2, "versions": {"python": "3.11"}})[:22]
    'X, 2 cores (None usabl'
    """
    v = m.get("versions", {})
    tf = v.get("tensorflow") or v.get("tensorflow-cpu")
    cpu = m.get("cpu_model") or "?"
    if m.get("cpu_family_model"):
        cpu += f" ({m['cpu_family_model']})"
    return (
        f"{cpu}, {m.get('cpu_cores')} cores ({m.get('cpu_affinity')} usable), {m.get('memory_gb')} GB RAM, "
        f"{m.get('machine')} {m.get('system')} {m.get('release')}; Python {v.get('python')}, "
        f"TensorFlow {tf}, Keras {v.get('keras')}, ai-edge-litert {v.get('ai-edge-litert')}, "
        f"numpy {v.get('numpy')}, kdtool {v.get('kdtool')}"
    )
