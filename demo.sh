#!/usr/bin/env bash
# The main job on an embedded default: make a few synthetic chest phantoms with the
# project's own generator (no real image is ever committed), analyze them with the shipped
# int8 models, write overlays and masks, print the verdicts.
#   ./demo.sh [OUT]      (default OUT: demo-out/)
# The phantoms are not radiographs: the verdicts show the pipeline working, not skill.
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-demo-out}"
mkdir -p "$out/inputs"

echo "== making phantoms in $out/inputs"
py="$(models/training/setup-venv.sh)"
for seed in 1 2 3; do
    (cd models/training && "$py" -m ptx_training.phantom "../../$out/inputs/phantom-$seed-clear.png" --seed "$seed")
    (cd models/training && "$py" -m ptx_training.phantom "../../$out/inputs/phantom-$seed-ptx.png" --seed "$seed" --pneumothorax)
done

echo "== building ptxd (dependencies optimised, as in the tests)"
cargo build --quiet

echo "== analyzing"
status=0
./target/debug/ptxd analyze --overlay-dir "$out/overlays" --mask-dir "$out/masks" "$out"/inputs/*.png || status=$?
cat <<MSG

Overlays (the result screen, 1280x720): $out/overlays/
Masks (positives only, input size):      $out/masks/
Note: the phantoms are drawings, not radiographs, and ptxd refuses them as such (NOT A CHEST
RADIOGRAPH, violet screens, no alarm). Verdicts on real radiographs (labels in labels.csv):
  ./target/debug/ptxd analyze --overlay-dir $out/real ../shared/data/real-dev/images/*.png
ptxd is a triage aid, not a diagnosis; models/README.md gives what the models measured on
real radiographs.
MSG
exit "$status"
