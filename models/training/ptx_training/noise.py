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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--drop", type=float, default=0.15)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names, images = data.radiographs()
    idx = [i for i, n in enumerate(names) if data.split_of(n) == "train"]
    model = nets.classifier()
    model.load_state_dict(torch.load(args.checkpoint)["state"])
    scores = evaluate.predict_torch("classifier", model, images[idx])
    k = int(round(args.drop * len(idx)))
    order = np.argsort(scores)[::-1][:k]
    suspects = [names[idx[i]] for i in order]
    args.out.write_text(json.dumps(suspects, indent=0) + "\n")
    print(f"scored {len(idx)} training radiographs; dropped {k} from the negative pool "
          f"(scores {scores[order[-1]]:.3f}..{scores[order[0]]:.3f}, median of all {np.median(scores):.3f})")


if __name__ == "__main__":
    main()
