#!/usr/bin/env bash
# Codec benchmark, ours vs Pillow: `make bench` (full corpus, release build, results and
# docs/performance.md) or `make bench-smoke` (three small files, one run, dev build, stdout).
# Needs python3 with venv, apt-get and dpkg-deb (Debian), cmake and nasm (infra/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=$([[ "${1:-}" == --smoke ]] && echo 1 || echo "")
py=.venv-bench/bin/python
if ! cmp -s bench/requirements.txt .venv-bench/requirements.txt; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
    cp bench/requirements.txt .venv-bench/requirements.txt
fi

if [[ -n "$smoke" ]]; then
    corpus=bench/.corpus-smoke runs=1 work=bench/.corpus-smoke-out
    $py bench/corpus.py --smoke "$corpus"
    cargo build -q -p imgpipe-tests --bin codec_bench
    bin=target/debug/codec_bench
else
    corpus=bench/.corpus runs=${RUNS:-7} work=bench/.corpus-out
    $py bench/corpus.py "$corpus"
    cargo build --release -p imgpipe-tests --bin codec_bench
    bin=target/release/codec_bench
fi

files=("$corpus"/*.jpg "$corpus"/*.png)
mkdir -p "$work"
echo "codec_bench: ${#files[@]} files, $runs runs each" >&2
"$bin" --runs "$runs" --out "$work/ours" "${files[@]}" > "$work/ours.jsonl"
echo "pillow_bench: ${#files[@]} files, $runs runs each" >&2
$py bench/pillow_bench.py --runs "$runs" --out "$work/pillow" --ours "$work/ours" "${files[@]}" > "$work/pillow.jsonl"

report=(bench/report.py "$work/ours.jsonl" "$work/pillow.jsonl" "$corpus/manifest.json")
if [[ -n "$smoke" ]]; then
    echo "bench-smoke: dev build, one run: the speed figures below mean nothing, only that it works" >&2
    $py "${report[@]}"
else
    $py "${report[@]}" --json "bench/results/codec-$(date -u +%F).json" --chart bench/results/codec.png \
        --doc docs/performance.md
    echo "wrote bench/results/codec-$(date -u +%F).json, bench/results/codec.png, docs/performance.md" >&2
fi
