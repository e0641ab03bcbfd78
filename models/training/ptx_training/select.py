"""Keep the checkpoint with the best final validation score recorded during training.

    python -m ptx_training.select --out work/classifier.pt work/classifier-r2.pt work/classifier-r3.pt

Selection uses the synthetic val split only (the score each training run recorded after its
last epoch: ROC AUC for the classifier, SIIM mean Dice for the segmenter); the test split
and real-dev stay untouched by the choice.
"""

import argparse
import shutil
from pathlib import Path

import torch


def final_score(path: Path) -> float:
    ck = torch.load(path, weights_only=True)
    val = ck["history"][-1]["val"]
    return float(val["auc"] if ck["kind"] == "classifier" else val["siim_dice_all"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("checkpoints", type=Path, nargs="+")
    args = ap.parse_args()
    scores = {p: final_score(p) for p in args.checkpoints}
    best = max(scores, key=scores.get)
    for p, s in scores.items():
        print(f"{p}: final val score {s:.4f}{'  <- kept' if p == best else ''}")
    if best.resolve() != args.out.resolve():
        shutil.copy(best, args.out)


if __name__ == "__main__":
    main()
