#!/usr/bin/env bash
# ptxd on four real chest radiographs (NIH ChestX-ray14, docs/examples/, with their
# attribution): analyze them with the shipped int8 models, write the result screens and
# masks, print each verdict beside the film's label. The release never trained on these
# films (they are in its held-out fold); they were picked to show what a clinic meets at the
# shipped alarm budget: a pneumothorax raising the alarm, one only amber, a clear film passed
# and a false alarm (docs/examples/README.md).
#   ./demo.sh [OUT]      (default OUT: demo-out/)
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-demo-out}"

# what the build needs and cannot install itself: name it exactly, before a long build fails
missing=()
command -v cargo >/dev/null || missing+=("Rust: https://rustup.rs (then open a new shell)")
# the v4l crate generates its bindings with libclang at build time
if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then
    if apt-cache show libclang1-14 >/dev/null 2>&1; then
        missing+=("libclang: sudo apt-get install libclang1-14 libclang-common-14-dev")
    else
        missing+=("libclang: sudo apt-get install libclang-dev")
    fi
fi
if ((${#missing[@]})); then
    echo "demo.sh needs, first:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi
mkdir -p "$out"

echo "== building ptxd (release; about 12 minutes the first time on 2 cores)"
cargo build --quiet --release

echo "== analyzing docs/examples/ (NIH ChestX-ray14; labels: docs/examples/labels.csv)"
status=0
./target/release/ptxd analyze --overlay-dir "$out/overlays" --mask-dir "$out/masks" docs/examples/*.jpg \
    >"$out/verdicts.txt" || status=$?
# each verdict beside the film's label (NIH's, text-mined from its report)
while IFS=, read -r file label _; do
    [[ $file == file ]] && continue
    verdict=$(grep -F "docs/examples/$file" "$out/verdicts.txt" | sed 's/^[^:]*: //')
    printf '  %-18s report says: %-16s ptxd: %s\n' "$file" "$label" "$verdict"
done <docs/examples/labels.csv
cat <<MSG

Result screens (1280x720): $out/overlays/   Masks (positives only): $out/masks/
At the shipped alarm budget ptxd flags (amber or red) about one clear film in four and
misses about one pneumothorax in four: a "No pneumothorax flagged" film still goes to a reader.
models/README.md gives what the models measured on real radiographs they never saw.
Verdicts on 10 more labelled radiographs (labels in labels.csv):
  ./target/release/ptxd analyze --overlay-dir $out/real ../shared/data/real-dev/images/*.png
ptxd is a triage aid, not a diagnosis.
MSG
exit "$status"
