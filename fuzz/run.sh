#!/usr/bin/env bash
# Build the fuzz targets (cargo-fuzz, nightly) and run each for SECONDS (default 30) from
# freshly made seeds; prints each target's executions and fails on the first crash, leak
# of memory past 1 GB, or timeout. Used by ./test.sh (a short run) and for the long runs
# recorded in docs/reliability.md. Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(decode host_command frame_codec config journal_line)
"${PY:-python3}" fuzz/seeds.py
# no sanitizer: the targets look for panics, runaway memory and hangs in (safe) Rust; an
# address sanitizer would double the build and slow every run
cargo +nightly fuzz build -s none 2>&1 | tail -n 1
for t in "${targets[@]}"; do
    log=$(mktemp)
    if ! cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz $t: FAILED (the input is in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    echo "fuzz $t: ${runs:-?} executions in ${secs} s, no crash"
    rm -f "$log"
done
