#!/usr/bin/env bash
# The main job on an embedded default: make a few synthetic chest phantoms with the
# project's own generator (no real image is ever committed), analyze them with the shipped
# int8 models, write overlays and masks, print the verdicts.
#   ./demo.sh [OUT]      (default OUT: demo-out/)
# The phantoms are not radiographs: the verdicts show the pipeline working, not skill.
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-demo-out}"

# what the build needs and cannot install itself: name it exactly, before a long build fails
missing=()
command -v cargo >/dev/null || missing+=("Rust: https://rustup.rs (then open a new shell)")
python3 -m venv --help >/dev/null 2>&1 || missing+=("Python venv: sudo apt-get install python3-venv")
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
mkdir -p "$out/inputs"

echo "== making phantoms in $out/inputs"
py="$(models/training/setup-venv.sh)"
for seed in 1 2 3; do
    (cd models/training && "$py" -m ptx_training.phantom "../../$out/inputs/phantom-$seed-clear.png" --seed "$seed")
    (cd models/training && "$py" -m ptx_training.phantom "../../$out/inputs/phantom-$seed-ptx.png" --seed "$seed" --pneumothorax)
done

echo "== building ptxd (release; about 12 minutes the first time on 2 cores)"
cargo build --quiet --release

echo "== analyzing"
status=0
./target/release/ptxd analyze --overlay-dir "$out/overlays" --mask-dir "$out/masks" "$out"/inputs/*.png \
    | tee "$out/verdicts.txt" || status=$?
total=$(wc -l <"$out/verdicts.txt")
refused=$(grep -c ': not_chest_radiograph' "$out/verdicts.txt" || true)
if ((refused == total)); then
    said="all $total were refused as NOT A CHEST RADIOGRAPH (violet screens, no alarm): they are
drawings, and ptxd says so rather than read them."
else
    said="$refused of $total were refused as NOT A CHEST RADIOGRAPH; the other $((total - refused)) got a
reading, which on a drawing means nothing (see models/README.md: the chest-or-not check)."
fi
cat <<MSG

Overlays (the result screen, 1280x720): $out/overlays/
Masks (positives only, input size):      $out/masks/
Of the phantoms, $said
Verdicts on real radiographs (labels in labels.csv):
  ./target/release/ptxd analyze --overlay-dir $out/real ../shared/data/real-dev/images/*.png
ptxd is a triage aid, not a diagnosis; models/README.md gives what the models measured on
real radiographs.
MSG
exit "$status"
