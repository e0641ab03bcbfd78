"""Do a role's shipped variants agree at the operating point? The classifier's thresholds were
chosen on the default variant's outputs (ptx_training.release); this runs every shipped
classifier variant of a manifest through onnxruntime on real-labelled/'s fold 0 (held out
of both the default release, real.RELEASE_FOLD, and the DenseNet121 variant, trained on folds
2-4) and the real dev set and prints how far each moves from the default: probabilities, verdict bands
(negative / indeterminate / positive), alarms, and sensitivity and specificity at the
manifest's thresholds. A variant whose verdicts move is another model at that operating
point: it stays out of `variant = "auto"` (src/model/variant.rs) unless the manifest marks it
`calibrated`.

Usage: python -m ptx_training.variants [--manifest ../manifest.toml]
"""

import argparse
import tomllib
from pathlib import Path

import numpy as np

from . import evaluate, real

MODELS = Path(__file__).resolve().parents[2]


def bands(p: np.ndarray, thr: dict) -> np.ndarray:
    """0 negative, 1 indeterminate, 2 positive, as ptxd's Thresholds::verdict."""
    return np.where(p >= thr["probability"], 2, np.where(p >= thr["indeterminate_low"], 1, 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=MODELS / "manifest.toml")
    args = ap.parse_args()
    section = tomllib.loads(args.manifest.read_text())["classifier"]
    thr, default = section["thresholds"], section["default_variant"]
    files = {name: args.manifest.parent / v["file"] for name, v in section["variants"].items()}
    held_out = real.real_split("val", holdout=(real.RELEASE_FOLD,))
    for split, s in (("real fold 0", held_out), ("real dev", evaluate.real_dev())):
        y = np.asarray(s["labels"])
        scores = {name: evaluate.predict_onnx(f, s["images"], output=section["output"]["name"]) for name, f in files.items()}
        base = scores[default]
        print(f"{split}: {len(y)} radiographs, {int(y.sum())} with pneumothorax")
        for name, p in scores.items():
            sens, spec = evaluate.sens_spec(y, p, thr["probability"])
            line = f"  {files[name].name:<38} sensitivity {sens:.3f} specificity {spec:.3f} AUC {evaluate.roc_auc(y, p):.3f}"
            if name != default:
                d = np.abs(p - base)
                line += (f"; against {files[default].name}: |diff| mean {d.mean():.3f} max {d.max():.3f}, "
                         f"{int((bands(p, thr) != bands(base, thr)).sum())} verdicts change, "
                         f"{int(((p >= thr['probability']) != (base >= thr['probability'])).sum())} alarms")
            print(line)


if __name__ == "__main__":
    main()
