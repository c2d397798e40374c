#!/usr/bin/env bash
# Installs what the build and the local stack need, once: cmake and nasm (to build
# libjpeg-turbo), Node.js and npm (the Postman collection's generator), valgrind (the codec's
# memory check), a project-local Python venv with the pinned emulator and tools, and
# infra/postman's pinned npm packages.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in cmake nasm; do command -v "$tool" >/dev/null || missing+=("$tool"); done
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# valgrind, for the codec's memory check in `make test` (bench-valgrind-smoke): Debian bookworm's.
command -v valgrind >/dev/null || missing+=(valgrind=1:3.19.0-1)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: ${missing[*]} missing; install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: Python >= 3.10 is needed for the emulator (found $("$python" --version 2>&1))" >&2
  exit 1
fi
infra/venv.sh .venv infra/requirements.txt "$python"

# openapi-to-postmanv2 and postman-collection, as infra/postman/package-lock.json pins them;
# again only when the lock file changed (node_modules keeps a copy of the one it came from).
lock=infra/postman/package-lock.json
if ! cmp -s "$lock" infra/postman/node_modules/.imgpipe-lock.json; then
  echo "installing infra/postman's npm packages (npm ci)" >&2
  npm ci --prefix infra/postman --no-audit --no-fund --loglevel=error
  cp "$lock" infra/postman/node_modules/.imgpipe-lock.json
fi
