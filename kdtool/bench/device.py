"""Facts about the machine a benchmark ran on, and whether it was emulated.

Emulation (qemu-user running an ARM Python on an x86 host) is detected from,
in order: ``KDTOOL_EMULATED=1`` in the environment (set by
``benchmarks/arm64_bench.sh``); a process named ``qemu-*`` in
``/proc/self/status``; ``/proc/cpuinfo`` or
``/sys/devices/system/cpu/modalias`` describing another architecture than
``uname -m``. Timings taken under emulation mean nothing; accuracy and
predictions stay valid.

Example:
    >>> facts = device_facts(select_runtime())   # doctest: +SKIP
    >>> facts["machine"], facts["emulated"]      # doctest: +SKIP
    ('aarch64', False)
"""

from __future__ import annotations

import os
import platform
import re
import sys

import numpy as np

# MIDR "CPU part" numbers of common Arm cores (implementer 0x41), for /proc/cpuinfo without a model name.
ARM_PARTS = {
    0xD03: "Cortex-A53",
    0xD04: "Cortex-A35",
    0xD05: "Cortex-A55",
    0xD07: "Cortex-A57",
    0xD08: "Cortex-A72",
    0xD09: "Cortex-A73",
    0xD0A: "Cortex-A75",
    0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1",
    0xD0D: "Cortex-A77",
    0xD40: "Neoverse-V1",
    0xD41: "Cortex-A78",
    0xD44: "Cortex-X1",
    0xD46: "Cortex-A510",
    0xD47: "Cortex-A710",
    0xD49: "Neoverse-N2",
    0xD4F: "Neoverse-V2",
}

_ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l", "armv6l")
_X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def _read(path: str, limit: int = 1 << 16) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _arch_family(machine: str) -> str | None:
    m = machine.lower()
    if m in _ARM_MACHINES or m.startswith("arm"):
        return "arm"
    if m in _X86_MACHINES:
        return "x86"
    return None


def _cpuinfo_family(cpuinfo: str) -> str | None:
    if re.search(r"^(vendor_id|model name)\s*:\s*(GenuineIntel|AuthenticAMD|Intel|AMD)", cpuinfo, re.M | re.I):
        return "x86"
    if re.search(r"^flags\s*:.*\b(sse2|avx)\b", cpuinfo, re.M):
        return "x86"
    if re.search(r"^CPU implementer\s*:", cpuinfo, re.M) or re.search(r"^Features\s*:.*\basimd\b", cpuinfo, re.M):
        return "arm"
    return None


def cpu_model(cpuinfo: str | None = None) -> str:
    """A readable CPU name from /proc/cpuinfo (x86 model name, Arm core by MIDR part, board model)."""
    cpuinfo = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    name = fields.get("model name") or fields.get("Processor") or fields.get("cpu model")
    if not name and "CPU part" in fields:
        try:
            part = int(fields["CPU part"], 16)
            impl = int(fields.get("CPU implementer", "0"), 16)
        except ValueError:
            part, impl = -1, -1
        core = ARM_PARTS.get(part) if impl == 0x41 else None
        name = f"ARM {core}" if core else f"implementer {fields.get('CPU implementer')} part {fields['CPU part']}"
    board = fields.get("Model") or _read("/proc/device-tree/model").strip("\x00\n ")
    name = name or platform.processor() or platform.machine() or "unknown"
    return f"{name} ({board})" if board else name


def detect_emulation() -> tuple[bool, str | None]:
    """Whether this process runs under an emulator (qemu-user), and why we think so.

    Returns:
        (emulated, reason); reason is None when not emulated.
    """
    if os.environ.get("KDTOOL_EMULATED", "").strip().lower() in ("1", "true", "yes"):
        return True, "KDTOOL_EMULATED=1"
    status = _read("/proc/self/status", 4096)
    m = re.search(r"^Name:\s*(\S+)", status, re.M)
    if m and m.group(1).startswith("qemu-"):
        return True, f"process runs as {m.group(1)}"
    machine = platform.machine()
    family = _arch_family(machine)
    if family is not None:
        cpu_family = _cpuinfo_family(_read("/proc/cpuinfo"))
        if cpu_family is not None and cpu_family != family:
            return True, f"uname says {machine} but /proc/cpuinfo describes an {cpu_family} CPU"
        modalias = _read("/sys/devices/system/cpu/modalias", 256)
        m = re.match(r"cpu:type:(\w+)", modalias)
        if m:
            alias_family = "x86" if m.group(1).startswith("x86") else "arm" if "arm" in m.group(1).lower() else None
            if alias_family is not None and alias_family != family:
                return True, f"uname says {machine} but the kernel's CPU modalias is {m.group(1)}"
    return False, None


def device_facts(runtime=None) -> dict:
    """JSON-ready facts about this machine and software.

    Args:
        runtime: the :class:`~kdtool.litert.Runtime` used, if any.

    Returns:
        ``{hostname, machine, system, release, cpu_model, cpu_cores, cpu_affinity,
        python, numpy, runtime, runtime_version, emulated, emulated_reason}``.
    """
    uname = platform.uname()
    emulated, reason = detect_emulation()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        affinity = None
    return {
        "hostname": uname.node,
        "machine": uname.machine,
        "system": uname.system,
        "release": uname.release,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": affinity,
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "numpy": np.__version__,
        "runtime": getattr(runtime, "name", None),
        "runtime_version": getattr(runtime, "version", None),
        "emulated": emulated,
        "emulated_reason": reason,
    }
