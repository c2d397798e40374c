#!/usr/bin/env bash
# Makes DIR a Python venv with the pins of REQUIREMENTS, unless it has them already (it keeps a
# copy of the file it was made from): infra/venv.sh DIR REQUIREMENTS [PYTHON]
# Used for .venv (infra/setup.sh), .venv-bench (bench/run.sh) and .venv-sam (make sam-build).
set -euo pipefail
dir=$1 requirements=$2 python=${3:-python3}
if ! cmp -s "$requirements" "$dir/requirements.txt"; then
  echo "installing $requirements into $dir" >&2
  "$python" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$dir/requirements.txt"
fi
