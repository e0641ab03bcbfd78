"""A procedural chest-radiograph phantom: the only kind of image the repository may ship.

Real radiographs may not be committed, so demos and committed fixtures use this: dark lung
fields, a bright mediastinum and diaphragm, rib arcs, quantum-like noise, and optionally a
marking-free, darker region with a pleural line at a lung apex. It is not a radiograph and
the models' verdicts on it mean nothing clinically; it exists to exercise the code paths
with bytes anyone can regenerate (`python -m ptx_training.phantom OUT.png`).
"""

import argparse

import numpy as np
from PIL import Image
from scipy import ndimage


def make(size: int = 512, seed: int = 0, pneumothorax: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = 0.08 + 0.62 * np.exp(-((x - 0.5) / 0.44) ** 8)  # soft tissue; air at the sides
    lungs = np.zeros_like(img, bool)
    for cx in (0.30, 0.70):
        lungs |= ((x - cx) / 0.15) ** 2 + ((y - 0.45) / 0.30) ** 2 < 1
    img[lungs] = 0.30 + 0.1 * y[lungs]
    img[(np.abs(x - 0.5) < 0.08) & (y > 0.2)] = 0.85  # mediastinum
    img[y > 0.78] = np.maximum(img[y > 0.78], 0.8)  # diaphragm and abdomen
    for k in range(9):  # rib arcs
        ribs = np.abs(y - (0.22 + 0.065 * k) - 0.12 * (x - 0.5) ** 2 * 4) < 0.012
        img[ribs & lungs] += 0.12
    vessels = ndimage.gaussian_filter(rng.normal(0, 1, img.shape), 2.0)
    img[lungs] += 0.05 * vessels[lungs] / vessels.std()
    if pneumothorax:
        ptx = lungs & (((x - 0.27) / 0.12) ** 2 + ((y - 0.2) / 0.09) ** 2 < 1)
        img[ptx] = ndimage.gaussian_filter(img, 6)[ptx] - 0.06
        edge = ndimage.binary_dilation(ptx, iterations=2) & ~ptx & lungs
        img[edge] += 0.1
    img = ndimage.gaussian_filter(img, 1.0) + rng.normal(0, 0.012, img.shape)
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pneumothorax", action="store_true")
    args = ap.parse_args()
    Image.fromarray(make(args.size, args.seed, args.pneumothorax)).save(args.out)


if __name__ == "__main__":
    main()
