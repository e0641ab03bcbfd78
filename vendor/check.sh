#!/usr/bin/env bash
# vendor/ is crates.io's tract-core and tract-linalg 0.23.9 plus docs/upstream/tract-int8-conv.patch,
# and nothing else: this fetches the published sources, applies the patch and compares.
#   vendor/check.sh          compare (exit 1 on any difference)
#   vendor/check.sh --make   rewrite vendor/tract-* from the published sources and the patch
#   vendor/check.sh --diff   print the patch from the published sources to vendor/ (to refresh it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=0.23.9
crates=(tract-core tract-linalg)
# what the published tract-linalg carries that a build never reads (two core dumps, a spreadsheet)
dropped=(tract-linalg/core.331 tract-linalg/core.347 tract-linalg/SME_PHASE1_BENCH.xlsx)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# a throwaway package depending on the published crates, so that cargo downloads them
mkdir -p "$tmp/fetch/src"
touch "$tmp/fetch/src/lib.rs"
cat > "$tmp/fetch/Cargo.toml" <<EOF
[package]
name = "fetch-published-tract"
version = "0.0.0"
edition = "2021"
[dependencies]
tract-core = "=$version"
tract-linalg = "=$version"
EOF
(cd "$tmp/fetch" && cargo fetch --quiet)
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
mkdir -p "$tmp/a"
for crate in "${crates[@]}"; do
    src=$(ls -d "$registry"/*/"$crate-$version" | head -1)
    cp -r "$src" "$tmp/a/$crate"
    rm -f "$tmp/a/$crate/.cargo-ok"
done
for f in "${dropped[@]}"; do rm -f "$tmp/a/$f"; done

if [[ ${1:-} == --diff ]]; then
    cd "$tmp/a" && mkdir -p ../b && for crate in "${crates[@]}"; do cp -r "$root/vendor/$crate" "../b/$crate"; done
    cd "$tmp" && { diff -ruN a b || true; } | sed -E 's/^((\+\+\+|---) [^\t]*)\t.*$/\1/'
    exit 0
fi

cp -r "$tmp/a" "$tmp/patched"
(cd "$tmp/patched" && patch --quiet -p1 < "$root/docs/upstream/tract-int8-conv.patch")

if [[ ${1:-} == --make ]]; then
    for crate in "${crates[@]}"; do
        rm -rf "${root:?}/vendor/$crate"
        cp -r "$tmp/patched/$crate" "$root/vendor/$crate"
    done
    echo "vendor/: published $version + the patch"
    exit 0
fi

status=0
for crate in "${crates[@]}"; do
    rm -rf "$root/vendor/$crate/target"
    if ! diff -r "$tmp/patched/$crate" "$root/vendor/$crate" > "$tmp/diff.txt"; then
        echo "vendor/$crate is not crates.io's $version plus docs/upstream/tract-int8-conv.patch:" >&2
        head -40 "$tmp/diff.txt" >&2
        status=1
    fi
done
[[ $status == 0 ]] && echo "vendor/: crates.io's tract $version plus docs/upstream/tract-int8-conv.patch, nothing else"
exit $status
