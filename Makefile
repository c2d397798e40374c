# imgpipe: the two commands are `make run` (the whole pipeline on the local emulator) and
# `make test` (every test). Both install what they need first (infra/setup.sh).

SHELL := bash
PYTHON := .venv/bin/python
PORT ?= 4599

.PHONY: setup build build-release up run stop key test lint check-template openapi postman check-postman bench-load bench-large bench bench-codec bench-pipeline bench-functions bench-smoke bench-valgrind bench-valgrind-smoke bench-codec-ab package sam-build aarch64-std clean

setup:
	@infra/setup.sh

# Host builds of the four functions (the emulator runs them as `bootstrap` processes) and of
# imgpipe-admin, which makes the local stack's API keys.
build: setup
	cargo build --bins

# Host release builds of the functions (and the benchmark binaries): what tests/release_stack
# runs, and the profile that ships. The same packages as bench/run.sh, so one build serves both.
build-release: setup
	cargo build --release -p imgpipe-api -p imgpipe-worker -p imgpipe-notifier -p imgpipe-tests --bins

# Deploys, then makes an API key for the tenant `local` (printed, and kept in
# .stack/local/api_key for `make run`).
up: build
	@IMGPIPE_PORT=$(PORT) $(PYTHON) infra/local.py up --key-for local

# A key for another tenant on the running local stack, printed on the last line.
TENANT ?= local
key:
	@$(PYTHON) infra/local.py key --tenant $(TENANT)

run: up
	@IMGPIPE_PORT=$(PORT) $(PYTHON) infra/run_sample.py

stop:
	@$(PYTHON) infra/local.py down

# Unit tests, adapter tests on the emulator and the end-to-end test through the API; the
# test binary starts its own emulator on a free port and stops it when it exits. The
# benchmarks' smoke run comes first, so that `make bench` cannot rot, and the codec under valgrind
# on small valid, truncated and corrupt files (bench-valgrind-smoke, under a minute).
# tests/release_stack runs the release builds (build-release) on a stack of its own. Everything is built
# first; the tests then run in a network namespace with only loopback (infra/loopback_only.sh:
# root or user namespaces, or IMGPIPE_NO_NETNS=1 to run them on the host's network).
test: build build-release lint bench-smoke bench-valgrind-smoke
	cargo test --workspace --no-run
	@mkdir -p target; set -o pipefail; \
	infra/loopback_only.sh cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.log; status=$$?; \
	infra/test_summary.sh target/test-output.log; exit $$status

lint: setup check-template check-postman
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# SAM mistakes are caught by translating the template and linting the result (plain
# cfn-lint no longer runs the SAM transform); then the project's own rules (every route but the
# health check behind the API-key authorizer, least privilege), whose self-test proves they
# refuse wrong copies of the template.
check-template: setup
	@$(PYTHON) infra/check_template.py template.yaml
	@$(PYTHON) infra/check_template.py --self-test

# docs/openapi.json from the code (functions/api/src/openapi.rs), then the Postman collection
# from it. The api crate's tests fail when the committed file differs from what the code says.
openapi: setup
	IMGPIPE_WRITE_OPENAPI=1 cargo test -q -p imgpipe-api --bin api openapi::tests::committed_description_is_current
	@$(MAKE) -s postman

# docs/imgpipe.postman_collection.json (v2.1) from docs/openapi.json: infra/postman/collection.js
# with the pinned openapi-to-postmanv2. check-postman (part of lint, so of make test) fails when
# the committed collection is not what the description generates, or does not load as v2.1.
postman: setup
	@node infra/postman/collection.js

check-postman: setup
	@node infra/postman/collection.js --check

# Load benchmark (not a test): one request of IMAGES small images through its own local
# stack; prints timings and writes bench/results/load-<IMAGES>.json.
IMAGES ?= 10000
bench-load: setup
	cargo run -q -p imgpipe-tests --bin load -- --images $(IMAGES)

# 100,000 images (LARGE_IMAGES) the large-CSV way: POST /api/uploads, PUT to the presigned URL,
# fan-out in chunks of the deployed 2000 images (load.rs asks for them) (docs/performance.md, "Large CSVs").
LARGE_IMAGES ?= 100000
bench-large: setup
	cargo run -q -p imgpipe-tests --bin load -- --presigned --images $(LARGE_IMAGES) \
		--out bench/results/large-$(LARGE_IMAGES).json

# Every figure of docs/performance.md (issue 5), each part rewriting its own section there and
# its files in bench/results/. Benchmarks, not tests: run them on a quiet machine.
bench: bench-codec bench-pipeline bench-functions

# Codec, ours vs Pillow q50: builds the corpus from packaged photos, runs both single-threaded,
# writes bench/results/codec-<date>.json and codec.png. RUNS=7 timed runs per file (median).
bench-codec: setup
	@bench/run.sh --codec

# Two versions of the codec's C side by side in one process, by turns (bench/codec_ab.sh): for
# a codec change smaller than the drift between benchmark runs. BASE=<commit> [NEW=<commit>,
# else the working tree] [FILES=...] [RUNS=9]; needs a build of imgpipe-core.
bench-codec-ab: setup
	@bench/codec_ab.sh $(BASE) $(NEW) $(FILES)

# 500 catalogue photos of 1-3 MP (PIPELINE_IMAGES) through the local stack with release builds
# of the functions: images/s, per-stage times, worker RSS; then one 24 MP JPEG for the worker's
# peak RSS, and the worst batch the memory limits allow (tests/src/bin/worst_batch.rs). Then
# (issue 14) 500 URLs over the unmodified original JPEGs: the worker processes' CPU time per
# image against a plain Pillow q50 loop over the same images (bench/pillow_loop.py), the same for
# each subsampling class alone (PIPELINE_CLASSES=0 skips those), and the worker's peak RSS on a
# 24 MP 4:4:4 original. Writes bench/results/pipeline.json, worker-24mp.json,
# worker-worst-batch.json, pipeline-originals.json, pipeline-originals-{420,422,444}.json and
# worker-24mp-444.json.
bench-pipeline: setup
	@bench/run.sh --pipeline

# Init time (process start to first Runtime API poll) and arm64 zip size of each function,
# with the cost model that uses them: bench/results/functions.json. Then the arm64 codec under
# qemu-user against the host's, output by output: bench/results/arm64-codec.json.
bench-functions: setup
	@bench/run.sh --functions

# The codec under valgrind memcheck (bench/valgrind_codec.py, tests/src/bin/codec_check.rs),
# release build: every 4:2:2, 4:4:4 and EXIF-rotated original and small files, each valid,
# truncated and corrupt; fails on any memcheck error. Writes bench/results/valgrind.json.
bench-valgrind: setup
	@bench/run.sh --valgrind

# The same on the small files only, with the dev build.
bench-valgrind-smoke: setup
	@bench/run.sh --valgrind-smoke

# The codec benchmark on three small files, one run, dev build: checks that it still works
# (part of `make test`).
bench-smoke: setup
	@bench/run.sh --smoke

# The deployable zips: release builds for arm64 Lambda (provided.al2023) through cargo-lambda
# and its zig toolchain, libjpeg-turbo included; target/lambda/<function>/bootstrap.zip (in
# $CARGO_TARGET_DIR when it is set).
package: setup aarch64-std
	PATH="$$PWD/.venv/bin:$$PATH" cargo lambda build --release --arm64 --output-format zip \
	  -p imgpipe-api -p imgpipe-worker -p imgpipe-notifier -p imgpipe-authorizer
	@ls -l $${CARGO_TARGET_DIR:-target}/lambda/*/bootstrap.zip

# What `sam deploy` uploads: the SAM CLI builds template.yaml's functions with cargo-lambda
# into .aws-sam/build (no AWS account needed). The SAM CLI is pinned in
# infra/requirements-sam.txt and gets a venv of its own (.venv-sam): only this target uses it.
sam-build: setup aarch64-std
	@infra/venv.sh .venv-sam infra/requirements-sam.txt
	PATH="$$PWD/.venv/bin:$$PATH" SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam build --beta-features
	@ls -l .aws-sam/build/*/bootstrap

# The aarch64 standard library, added to the toolchain once (rustup target add).
aarch64-std:
	@rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu || \
	  rustup target add aarch64-unknown-linux-gnu

clean: stop
	rm -rf .stack
