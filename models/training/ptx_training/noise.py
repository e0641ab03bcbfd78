"""Label-noise control: find the unlabelled training radiographs most likely to hold a real
pneumothorax, so that the next round stops teaching them as negatives.

    python -m ptx_training.noise --checkpoint work/classifier-r1.pt --drop 0.15 --out work/suspect.json

About one radiograph in five of the unlabelled pool shows a real pneumothorax (SIIM's
prevalence was 22%); round 1 learns from them as if they were clear. The round-1 model
scores every training radiograph as it is (no synthetic lesion); the top `--drop` fraction
is written out and used only as a base for synthetic positives in round 2.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import data, evaluate, nets


def compare(args) -> None:
    """Round 2 with the suspects dropped vs the same extra epoch without: AUCs, written as notes."""
    names = {"cleaned": args.cleaned, "control": args.control}
    splits = {"synthetic_val": evaluate.synthetic_split("val"), "synthetic_test": evaluate.synthetic_split("test"), "real_dev": evaluate.real_dev()}
    result = {}
    for key, path in names.items():
        model = nets.classifier()
        model.load_state_dict(torch.load(path, weights_only=True)["state"])
        result[key] = {s: evaluate.roc_auc(split["labels"], evaluate.predict_torch("classifier", model, split["images"])) for s, split in splits.items()}
    gap = result["cleaned"]["synthetic_val"] - result["control"]["synthetic_val"]
    # Differences below 0.01 AUC on ~350 synthetic val images are within noise of one run.
    verdict = "made no measurable difference" if abs(gap) < 0.01 else ("helped" if gap > 0 else "hurt")
    notes = {"label_noise_round2": (
        f"dropping the {args.drop:.0%} most suspicious unlabelled radiographs from the negative pool before two more epochs "
        f"{verdict} on synthetic val: ROC AUC cleaned/control = "
        + ", ".join(f"{s} {result['cleaned'][s]:.3f}/{result['control'][s]:.3f}" for s in splits)
        + ". Synthetic splits hold unlabelled real pneumothoraces among their negatives too, and real-dev has 10 images: "
        "a small difference here is not evidence either way; settling it needs real labelled data. Training went on from the one with the higher synthetic-val AUC (ptx_training.select).")}
    args.out.write_text(json.dumps(notes, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true", help="compare --cleaned with --control instead of scoring")
    ap.add_argument("--cleaned", type=Path)
    ap.add_argument("--control", type=Path)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--drop", type=float, default=0.15)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.compare:
        return compare(args)
    names, images = data.radiographs()
    idx = [i for i, n in enumerate(names) if data.split_of(n) == "train"]
    model = nets.classifier()
    model.load_state_dict(torch.load(args.checkpoint, weights_only=True)["state"])
    scores = evaluate.predict_torch("classifier", model, images[idx])
    k = int(round(args.drop * len(idx)))
    order = np.argsort(scores)[::-1][:k]
    suspects = [names[idx[i]] for i in order]
    args.out.write_text(json.dumps(suspects, indent=0) + "\n")
    print(f"scored {len(idx)} training radiographs; dropped {k} from the negative pool "
          f"(scores {scores[order[-1]]:.3f}..{scores[order[0]]:.3f}, median of all {np.median(scores):.3f})")


if __name__ == "__main__":
    main()
