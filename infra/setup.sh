#!/usr/bin/env bash
# Installs what the build and the local stack need, once: cmake and nasm (to build
# libjpeg-turbo), and a project-local Python venv with the pinned emulator and tools.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in cmake nasm; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: ${missing[*]} missing; install them (Debian/Ubuntu: sudo apt-get install -y cmake nasm)" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: Python >= 3.10 is needed for the emulator (found $("$python" --version 2>&1))" >&2
  exit 1
fi
infra/venv.sh .venv infra/requirements.txt "$python"
