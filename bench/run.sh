#!/usr/bin/env bash
# Benchmarks (not tests), each writing bench/results/ and its part of docs/performance.md:
#   bench/run.sh --codec       codec vs Pillow on the corpus, release build   (make bench-codec)
#   bench/run.sh --pipeline    500 photos through the local stack (each URL distinct, then 30% of them
#                              repeated) + worker RSS on 24 MP and on the worst batch the memory
#                              limits allow; then 500 unmodified originals, worker CPU against a
#                              Pillow q50 loop      (make bench-pipeline)
#   bench/run.sh --functions   init time and arm64 zip size per function, and the arm64 codec's
#                              outputs under qemu-user against the host's  (make bench-functions)
#   bench/run.sh --smoke       three small files, one run, dev build, stdout only  (make bench-smoke)
#   bench/codec_ab.sh BASE     two versions of the codec's C in one process  (make bench-codec-ab)
#   bench/run.sh --valgrind    the codec under valgrind memcheck on valid, truncated and corrupt
#                              originals and small files, release build  (make bench-valgrind)
#   bench/run.sh --valgrind-smoke  the small files only, dev build        (make bench-valgrind-smoke)
# Needs python3 with venv, apt-get and dpkg-deb (Debian), cmake and nasm (infra/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:---codec}
py=.venv-bench/bin/python
# Where cargo puts the builds (a target directory shared by several checkouts, or target/).
target=${CARGO_TARGET_DIR:-target}
infra/venv.sh .venv-bench bench/requirements.txt

# One set of packages for every host release build here and in tests/src/stack.rs: cargo
# unifies features over the packages it builds, so another set would rebuild the whole SDK.
release_build() {
    cargo build --release -p imgpipe-api -p imgpipe-worker -p imgpipe-notifier -p imgpipe-authorizer \
        -p imgpipe-admin -p imgpipe-tests --bins
}

# codec_loop CODEC_BENCH IMAGES OUT FILE...: our codec over the pipeline benchmark's images in
# its order (codec_bench --loop), one thread, with the worker's GLIBC_TUNABLES from template.yaml.
codec_loop() {
    local bin=$1 images=$2 out=$3
    shift 3
    GLIBC_TUNABLES=$(sed -n 's/^ *GLIBC_TUNABLES: "\(.*\)"$/\1/p' template.yaml) "$bin" --loop "$images" "$@" > "$out"
}

codec() {
    local smoke=$1 corpus runs work bin
    if [[ -n "$smoke" ]]; then
        corpus=bench/.corpus-smoke runs=1 work=bench/.corpus-smoke-out
        $py bench/corpus.py --smoke "$corpus"
        cargo build -q -p imgpipe-tests --bin codec_bench
        bin=$target/debug/codec_bench
    else
        corpus=bench/.corpus runs=${RUNS:-7} work=bench/.corpus-out
        $py bench/corpus.py "$corpus"
        release_build
        bin=$target/release/codec_bench
    fi
    local files=("$corpus"/*.jpg "$corpus"/*.png) file
    mkdir -p "$work"
    : > "$work/ours.jsonl"
    : > "$work/pillow.jsonl"
    # File by file, ours then Pillow's, so that both codecs of a file meet the same machine:
    # on a shared machine the speed drifts by tens of percent between minutes.
    echo "codec_bench and pillow_bench: ${#files[@]} files, $runs runs each" >&2
    for file in "${files[@]}"; do
        "$bin" --runs "$runs" --out "$work/ours" "$file" >> "$work/ours.jsonl"
        $py bench/pillow_bench.py --runs "$runs" --out "$work/pillow" --ours "$work/ours" "$file" >> "$work/pillow.jsonl"
    done

    local report=(bench/report.py "$work/ours.jsonl" "$work/pillow.jsonl" "$corpus/manifest.json")
    if [[ -n "$smoke" ]]; then
        echo "bench-smoke: dev build, one run: the speed figures below mean nothing, only that it works" >&2
        $py "${report[@]}"
        # The side-by-side harness for codec changes, HEAD against the working tree.
        RUNS=1 bench/codec_ab.sh HEAD "$corpus"/*.jpg
        # The pipeline benchmark's path, on 10 small images with the debug functions, between two
        # Pillow loops as the originals' request is.
        mkdir -p target/bench-smoke
        $py bench/pillow_loop.py --images 10 --json target/bench-smoke/pillow-before.json "$corpus"
        cargo run -q -p imgpipe-tests --bin load -- --images 10 --urls-per-row 5 --photos "$corpus" \
            --out target/bench-smoke/pipeline.json
        $py bench/pillow_loop.py --images 10 --merge-into target/bench-smoke/pipeline.json \
            --before target/bench-smoke/pillow-before.json "$corpus"
        codec_loop "$bin" 10 target/bench-smoke/codec-loop.json "$corpus"/*.jpg "$corpus"/*.png
        $py bench/pipeline_report.py --pipeline target/bench-smoke/pipeline.json --originals target/bench-smoke/pipeline.json \
            --codec-loop target/bench-smoke/codec-loop.json
    else
        $py "${report[@]}" --json "bench/results/codec-$(date -u +%F).json" --chart bench/results/codec.png \
            --doc docs/performance.md
        echo "wrote bench/results/codec-$(date -u +%F).json, bench/results/codec.png, docs/performance.md" >&2
    fi
}

# Release builds of the functions on the local stack (IMGPIPE_FUNCTIONS=release): 500 catalogue
# photos of 1-3 MP in one request, the same with 30% of the URLs repeated (the cost model's counts),
# then one 24 MP JPEG on fresh worker processes, then the worst
# batch (a 50 MP 16-bit RGBA PNG to turn, with nine 25 MiB downloads held) on a fresh one.
# Then (issue 14) 500 URLs over the unmodified originals, the workers' CPU time against a plain
# Pillow q50 loop over the same images right before and right after it, and one 24 MP 4:4:4
# original on fresh worker processes.
pipeline() {
    local images=${PIPELINE_IMAGES:-500}
    $py bench/corpus.py --pipeline bench/.corpus-pipeline
    $py bench/corpus.py bench/.corpus
    $py bench/corpus.py --originals bench/.corpus-originals
    release_build
    IMGPIPE_FUNCTIONS=release $target/release/load --images "$images" --urls-per-row 5 \
        --photos bench/.corpus-pipeline --out bench/results/pipeline.json
    # The same photos with 30% of the slots repeating a URL: the cost model's second request.
    IMGPIPE_FUNCTIONS=release $target/release/load --images "${PIPELINE_IMAGES:-500}" --urls-per-row 5 --repeats 30 \
        --photos bench/.corpus-pipeline --out bench/results/pipeline-repeats.json
    IMGPIPE_FUNCTIONS=release $target/release/load --images 1 --photos bench/.corpus/kleiber-24mp.jpg \
        --fresh-workers --out bench/results/worker-24mp.json
    $target/release/worst_batch --out bench/results/worker-worst-batch.json
    # The Pillow loop right before the request and right after it: the machine's speed drifts by
    # tens of percent between minutes, and the two loops show how much it did around the request.
    $py bench/pillow_loop.py --images "$images" --json bench/.corpus-originals-pillow-before.json \
        bench/.corpus-originals
    IMGPIPE_FUNCTIONS=release $target/release/load --images "$images" --urls-per-row 5 \
        --photos bench/.corpus-originals --out bench/results/pipeline-originals.json
    $py bench/pillow_loop.py --images "$images" --merge-into bench/results/pipeline-originals.json \
        --before bench/.corpus-originals-pillow-before.json bench/.corpus-originals
    # Our codec alone over the same images in one thread, as the worker runs it: what the worker
    # adds to it (fetch, upload, record, runtime) is the difference.
    codec_loop "$target/release/codec_bench" "$images" bench/results/codec-loop-originals.json bench/.corpus-originals/*.jpg
    # Each subsampling class alone, the same way, in a request of its share of the images on a
    # stack of its own: CPU per image of that class only (PIPELINE_CLASSES=0 skips them).
    if [[ "${PIPELINE_CLASSES:-1}" != 0 ]]; then
        local all=(bench/.corpus-originals/*.jpg) class dir files file n
        for class in 420 422 444; do
            dir=bench/.corpus-originals-$class files=(bench/.corpus-originals/o$class-*.jpg)
            n=$((images * ${#files[@]} / ${#all[@]})) && ((n > 0)) || n=1
            rm -rf "$dir" && mkdir -p "$dir"
            for file in "${files[@]}" bench/.corpus-originals/manifest.json; do ln -s "$PWD/$file" "$dir/"; done
            IMGPIPE_FUNCTIONS=release $target/release/load --images "$n" --urls-per-row 5 --photos "$dir" \
                --out "bench/results/pipeline-originals-$class.json"
            $py bench/pillow_loop.py --images "$n" --merge-into "bench/results/pipeline-originals-$class.json" "$dir"
        done
    fi
    IMGPIPE_FUNCTIONS=release $target/release/load --images 1 --photos bench/.corpus-originals/o444-painting-24mp-icc.jpg \
        --fresh-workers --out bench/results/worker-24mp-444.json
    $py bench/pipeline_report.py --doc docs/performance.md
}

# The codec under valgrind memcheck (bench/valgrind_codec.py): with "smoke", the small files
# only and the dev build; otherwise the originals too, with the release build that ships.
valgrind_check() {
    if [[ -n "$1" ]]; then
        cargo build -q -p imgpipe-tests --bin codec_check
        $py bench/valgrind_codec.py --smoke "$target/debug/codec_check" bench/.corpus-originals \
            target/valgrind-smoke
    else
        $py bench/corpus.py --originals bench/.corpus-originals
        release_build
        $py bench/valgrind_codec.py --json bench/results/valgrind.json --doc docs/performance.md \
            "$target/release/codec_check" bench/.corpus-originals target/valgrind
    fi
}

functions() {
    make --no-print-directory package
    release_build
    $py bench/init_time.py $target/release 15 --json bench/results/functions.json
    # The codec as Lambda runs it (arm64: NEON, the portable C of requantize.c) must give the
    # host's bytes on every corpus file.
    $py bench/corpus.py bench/.corpus
    PATH="$PWD/.venv/bin:$PATH" cargo lambda build --release --arm64 -p imgpipe-tests --bin codec_bench
    $py bench/arm64_codec.py bench/.corpus $target/lambda/codec_bench/bootstrap $target/release/codec_bench \
        --json bench/results/arm64-codec.json
    $py bench/pipeline_report.py --doc docs/performance.md
}

case "$mode" in
    --smoke) codec 1 ;;
    --codec) codec "" ;;
    --pipeline) pipeline ;;
    --functions) functions ;;
    --valgrind) valgrind_check "" ;;
    --valgrind-smoke) valgrind_check smoke ;;
    *) echo "usage: bench/run.sh [--codec | --pipeline | --functions | --smoke | --valgrind | --valgrind-smoke]" >&2
       exit 2 ;;
esac
