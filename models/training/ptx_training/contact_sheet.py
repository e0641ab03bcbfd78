"""Write a contact sheet PNG of synthetic positives to inspect the synthesiser by eye.

    python -m ptx_training.contact_sheet --out sheet.png [--n 8] [--size 512] [--seed 0]

Each row: the original radiograph | the synthetic positive | the same with the mask outlined.
"""

import argparse

import numpy as np
from PIL import Image
from scipy import ndimage

from . import data, synth


def outline(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=-1).copy()
    edge = mask & ~ndimage.binary_erosion(mask)
    rgb[edge] = (255, 40, 40)
    return rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    names, images = data.radiographs(args.size)
    _, shapes = data.mask_shapes(args.size)
    rows = []
    for _ in range(args.n):
        img = images[rng.integers(len(images))]
        out, mask = synth.synthesize(img, shapes, rng)
        grey3 = lambda g: np.repeat(g[..., None], 3, axis=-1)
        rows.append(np.concatenate([grey3(img), grey3(out), outline(out, mask)], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}: {args.n} synthetic positives at {args.size} px")


if __name__ == "__main__":
    main()
