#!/usr/bin/env bash
# Two versions of the codec's C (functions/core/csrc) side by side in one process
# (bench/codec_ab.c), for a codec change too small for the pipeline benchmark to resolve: its
# worker CPU figure moves by tens of percent between runs on a shared machine, and even two runs
# of codec_bench minutes apart do.
#
#   bench/codec_ab.sh BASE [NEW] [FILE...]       (make bench-codec-ab BASE=<commit>)
#
# BASE and NEW are commits (NEW: the working tree when not given); the files default to
# bench/.corpus-originals/*.jpg (bench/corpus.py --originals); RUNS=9 timed runs of each per file.
# Prints a markdown table: per file each build's median time and reading time, the median of
# the run-by-run ratios NEW / BASE, and whether the outputs are byte-identical. Runs with the
# worker's GLIBC_TUNABLES from template.yaml. Needs libjpeg-turbo's static library and headers,
# which turbojpeg-sys builds in any build of imgpipe-core (release or dev).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:?usage: bench/codec_ab.sh BASE [NEW] [FILE...]}
shift
new=
if [[ $# -gt 0 && ! -f "$1" ]]; then
    new=$1
    shift
fi
files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=(bench/.corpus-originals/*.jpg)
target=${CARGO_TARGET_DIR:-target}
# The first build of libjpeg-turbo found; a loop, not `| head -1`, which under pipefail fails
# with SIGPIPE (141) whenever there are several of them.
turbo=
for dir in "$target"/{release,debug}/build/turbojpeg-sys-*/out; do
    if [[ -f "$dir/lib/libturbojpeg.a" ]]; then
        turbo=$dir
        break
    fi
done
[[ -n "$turbo" ]] || { echo "codec_ab: no libturbojpeg.a under $target: build imgpipe-core first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each version's C compiled as build.rs compiles it, linked into one object whose own symbols
# get the prefix a_ or b_ (libjpeg's stay as they are: both builds call the same library).
for side in a b; do
    rev=$base
    [[ $side == b ]] && rev=$new
    mkdir -p "$work/$side/src"
    if [[ -n "$rev" ]]; then
        git archive "$rev" functions/core/csrc | tar -x -C "$work/$side/src" --strip-components=3
    else
        cp functions/core/csrc/* "$work/$side/src/"
    fi
    for c in "$work/$side"/src/*.c; do
        cc -c -O3 -ffp-contract=off -fPIC -I"$turbo/include" -I"$work/$side/src" "$c" -o "${c%.c}.o"
    done
    ld -r -o "$work/$side.o" "$work/$side"/src/*.o
    nm --defined-only -g "$work/$side.o" | awk -v p="$side" '{print $3, p "_" $3}' > "$work/$side.map"
    objcopy --redefine-syms="$work/$side.map" "$work/$side.o"
done
cc -O2 bench/codec_ab.c "$work/a.o" "$work/b.o" "$turbo/lib/libturbojpeg.a" -lm -o "$work/codec_ab"

tunables=$(sed -n 's/^ *GLIBC_TUNABLES: "\(.*\)"$/\1/p' template.yaml)
echo "A: ${base}, B: ${new:-the working tree}; ${RUNS:-9} runs each, by turns; GLIBC_TUNABLES=$tunables" >&2
GLIBC_TUNABLES=$tunables "$work/codec_ab" "${RUNS:-9}" "${files[@]}"
