# imgpipe: the two commands are `make run` (the whole pipeline on the local emulator) and
# `make test` (every test). Both install what they need first (infra/setup.sh).

SHELL := bash
PYTHON := .venv/bin/python
PORT ?= 4599

.PHONY: setup build up run stop test lint check-template bench-load bench bench-smoke package clean

setup:
	@infra/setup.sh

# Host builds of the three functions: the emulator runs them as `bootstrap` processes.
build: setup
	cargo build --bins

up: build
	@IMGPIPE_PORT=$(PORT) $(PYTHON) infra/local.py up

run: up
	@IMGPIPE_PORT=$(PORT) $(PYTHON) infra/run_sample.py

stop:
	@$(PYTHON) infra/local.py down

# Unit tests, adapter tests on the emulator and the end-to-end test through the API; the
# test binary starts its own emulator on a free port and stops it when it exits.
test: build lint
	@mkdir -p target; set -o pipefail; \
	cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.log; status=$$?; \
	infra/test_summary.sh target/test-output.log; exit $$status

lint: setup check-template
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# SAM mistakes are caught by translating the template and linting the result (plain
# cfn-lint no longer runs the SAM transform).
check-template: setup
	@$(PYTHON) infra/check_template.py template.yaml

# Load benchmark (not a test): one request of IMAGES small images through its own local
# stack; prints timings and writes bench/results/load-<IMAGES>.json.
IMAGES ?= 10000
bench-load: setup
	cargo run -q -p imgpipe-tests --bin load -- $(IMAGES)

# Codec benchmark, ours vs Pillow q50 (not a test): builds the corpus from packaged photos,
# runs both single-threaded, writes bench/results/codec-<date>.json, bench/results/codec.png
# and the table in docs/performance.md. RUNS=7 timed runs per file (median).
bench: setup
	@bench/run.sh

# The same on three small files, one run, dev build: checks that the benchmark still works.
bench-smoke: setup
	@bench/run.sh --smoke

# The deployable zips: release builds for arm64 Lambda (provided.al2023) through cargo-lambda
# and its zig toolchain, libjpeg-turbo included; target/lambda/<function>/bootstrap.zip.
# Needs the aarch64 standard library: rustup target add aarch64-unknown-linux-gnu.
package: setup
	@rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu || \
	  { echo "package: the aarch64 Rust target is missing: rustup target add aarch64-unknown-linux-gnu" >&2; exit 1; }
	PATH="$$PWD/.venv/bin:$$PATH" cargo lambda build --release --arm64 --output-format zip \
	  -p imgpipe-api -p imgpipe-worker -p imgpipe-notifier
	@ls -l target/lambda/*/bootstrap.zip

clean: stop
	rm -rf .stack
