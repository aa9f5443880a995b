#!/usr/bin/env bash
# Run `kdtool bench` inside an emulated 64-bit ARM (Raspberry Pi 4-class, Cortex-A72) Debian on an x86-64 host:
# qemu-user + a debootstrapped arm64 root folder (no binfmt, no chroot), with ai-edge-litert, numpy, click, cloup,
# Pillow and a wheel of this checkout. Functional check only: emulated timings mean nothing, and the JSON says
# so ("emulated": true, from KDTOOL_EMULATED=1); accuracy and predictions are real.
#
# usage: benchmarks/arm64_bench.sh MODEL.tflite DATA_DIR [extra `kdtool bench` args...]
#   prints the bench JSON on stdout (the table goes to stderr) unless --json is among the extra args.
#   e.g.  sudo benchmarks/arm64_bench.sh models/export/student.int8.tflite FData --runs 20 --predictions arm.npy
#
# env:  ROOT=<repo>/.arm64/bookworm (git-ignored)  SUITE=bookworm  PYV=3.11  CPU=cortex-a72
#       PYTHON=<host python with pip; default: <repo>/.venv/bin/python, else python3>
#       EXTRA_PKGS="..." more pip requirements for the emulated system
# Needs root (apt-get of qemu-user-static + debootstrap when missing; debootstrap) and, the first time, the
# Debian and PyPI registries: about 40 s from nothing, then a few seconds per call plus the emulated run.
# The ai-edge-litert and numpy versions are pinned to the host's, so predictions can be compared like for like.
#
# Adapted from ../shared/recipes/arm64-python.sh, whose hard-won notes apply:
# - qemu's default CPU model gives wrong int8 results with LiteRT/XNNPACK: use cortex-a72/-a76 or neoverse-n1.
# - LiteRT segfaults unless the root folder has an arm64 proc/cpuinfo and sys/devices/system/cpu files
#   (qemu -L serves them from ROOT instead of the host's).
# - pip matches manylinux tags exactly with --platform: name several so both LiteRT's and numpy's wheels fit.
set -euo pipefail

usage() { sed -n '7,9p' "$0" | sed 's/^# \{0,1\}//' >&2; }
if [ $# -lt 2 ]; then usage; exit 2; fi
MODEL=$1; DATA=$2; shift 2
if [ "$(id -u)" != 0 ]; then echo "arm64_bench.sh: needs root (apt-get, debootstrap)" >&2; exit 1; fi
[ -f "$MODEL" ] || { echo "arm64_bench.sh: $MODEL: file not found" >&2; exit 2; }
[ -d "$DATA" ] || { echo "arm64_bench.sh: $DATA: data folder not found" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=${SUITE:-bookworm}; PYV=${PYV:-3.11}; CPU=${CPU:-cortex-a72}
R=${ROOT:-$REPO/.arm64/$SUITE}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
LOG=$(mktemp); trap 'rm -f "$LOG"' EXIT
quiet() {  # run a step, its output shown only when it fails
  if ! "$@" >"$LOG" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -30 >&2
    echo "arm64_bench.sh: failed: $*" >&2
    return 1
  fi
}
say() { echo "arm64_bench.sh: $*" >&2; }

# 1. qemu-user and debootstrap on the host.
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  say "installing qemu-user-static and debootstrap (apt-get)"
  quiet apt-get update -qq
  quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static debootstrap
fi

# 2. The arm64 root folder: unpacked packages, no second stage, fake arm64 cpuinfo and cpu topology.
if [ ! -x "$R/usr/bin/python$PYV" ]; then
  say "creating the arm64 $SUITE root in $R (debootstrap)"
  mkdir -p "$R"
  quiet debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$R"
  for f in "$R"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$f" "$R"; done
  mkdir -p "$R/proc" "$R/sys/devices/system/cpu"
  for i in 0 1 2 3; do
    printf 'processor\t: %d\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' $i
  done > "$R/proc/cpuinfo"
  for f in possible present online; do echo 0-3 > "$R/sys/devices/system/cpu/$f"; done
fi

# 3. Runtime dependencies for aarch64, pinned to the host's LiteRT and numpy (reinstalled when the list changes).
hostver() { "$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
LITERT=$(hostver ai-edge-litert); NUMPY=$(hostver numpy)
PKGS="ai-edge-litert${LITERT:+==$LITERT} numpy${NUMPY:+==$NUMPY} click cloup Pillow ${EXTRA_PKGS:-}"
PLAT=(--platform manylinux2014_aarch64)
for m in 17 27 28 31 34 35 36; do PLAT+=(--platform "manylinux_2_${m}_aarch64"); done
T="$R/opt/site"
stamp=$(echo "$PYV $PKGS" | sha256sum | cut -c1-16)
if [ "$(cat "$T/.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "installing $PKGS for aarch64"
  rm -rf "$T"
  # shellcheck disable=SC2086
  quiet "$PYTHON" -m pip install --no-compile --target "$T" --only-binary=:all: "${PLAT[@]}" \
    --python-version "$PYV" --implementation cp --root-user-action=ignore $PKGS
  echo "$stamp" > "$T/.stamp"
fi

# 4. kdtool itself: a wheel of this checkout (pure Python), rebuilt and reinstalled on every call. It is built
#    from a copy of the package files, so the checkout gets no build/ or egg-info folders and no stale modules.
W=$(mktemp -d); trap 'rm -f "$LOG"; rm -rf "$W"' EXIT
mkdir "$W/src" "$W/whl"
(cd "$REPO" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' kdtool \
  $(ls setup.cfg setup.py pyproject.toml README.md MANIFEST.in LICENSE 2>/dev/null)) | tar -xf - -C "$W/src"
if ! quiet "$PYTHON" -m pip wheel --no-deps --no-build-isolation -w "$W/whl" "$W/src"; then
  quiet "$PYTHON" -m pip wheel --no-deps -w "$W/whl" "$W/src"
fi
K="$R/opt/kdtool"
rm -rf "$K"
quiet "$PYTHON" -m pip install --no-deps --no-compile --target "$K" --root-user-action=ignore "$W"/whl/kdtool-*.whl

# 5. Run. JSON to stdout unless the caller chose --json; KDTOOL_EMULATED=1 marks the results as emulated.
# In-process by default: without binfmt, the emulated Python cannot exec the child process that
# --isolate starts (Exec format error); qemu itself already keeps a crash away from the host.
JSON=(--json -)
ISOLATE=(--no-isolate)
for a in "$@"; do case $a in --json|--json=*) JSON=();; --isolate|--no-isolate) ISOLATE=();; esac; done
exec env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$K:$T" \
  KDTOOL_EMULATED=1 qemu-aarch64-static -cpu "$CPU" -L "$R" "$R/usr/bin/python$PYV" \
  -m kdtool bench "$MODEL" --data "$DATA" "${JSON[@]}" "${ISOLATE[@]}" "$@"
