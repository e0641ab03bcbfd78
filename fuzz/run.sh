#!/usr/bin/env bash
# Build the fuzz targets (cargo-fuzz, nightly) and run each for SECONDS (default 30) from
# freshly made seeds; prints each target's executions and fails on the first crash, leak
# of memory past 512 MB, or timeout. Used by ./test.sh (a short run) and for the long runs
# recorded in docs/reliability.md. Usage: fuzz/run.sh [SECONDS] [TARGET...], or
# fuzz/run.sh --runs N [TARGET...] to run each target for N executions, and
# fuzz/run.sh --long [TARGET...] for the 10 million of the recorded long runs. The corpus
# (fuzz/corpus/) and any finding (fuzz/artifacts/) are kept between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --long ]]; then
    set -- --runs 10000000 "${@:2}"
fi
if [[ ${1:-} == --runs ]]; then
    budget=(-runs="$2")
    what="$2 runs"
    shift 2
else
    budget=(-max_total_time="${1:-30}")
    what="${1:-30} s"
    shift || true
fi
targets=("$@")
((${#targets[@]})) || targets=(decode host_command frame_codec config journal_line)
"${PY:-python3}" fuzz/seeds.py
# no sanitizer: the targets look for panics, runaway memory and hangs in (safe) Rust; an
# address sanitizer would double the build and slow every run
cargo +nightly fuzz build -s none 2>&1 | tail -n 1
for t in "${targets[@]}"; do
    log=$(mktemp)
    start=$SECONDS
    if ! cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" -- \
        "${budget[@]}" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        # CI keeps only its log: print the input itself, so a find on a machine that is gone
        # can still be replayed (base64 -d >file; fuzz/target/*/release/$t file)
        for a in "fuzz/artifacts/$t"/*; do
            [[ -f $a && $(stat -c %s "$a") -le 65536 ]] || continue
            echo "== $a, base64:"
            base64 -w 0 "$a"
            echo
        done
        echo "fuzz $t: FAILED (the input is in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$')
    echo "fuzz $t: ${runs:-?} executions ($what) in $((SECONDS - start)) s, peak RSS ${peak:-?} MB, no crash"
    rm -f "$log"
done
