#!/usr/bin/env bash
# Sums cargo's "test result:" lines into one closing line, so a run over many test
# binaries ends with the totals rather than with the last (often empty) binary's count.
set -euo pipefail
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$1"
