"""Loading radiographs and mask shapes, deterministic splits, and the SIIM PNG+mask layout.

Everything is reduced once to the model's working resolution and cached as .npy under
`models/training/.cache/` (git-ignored), so an epoch costs no JPEG decoding.
"""

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from . import INPUT_SIZE, rle

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(__file__).resolve().parents[1] / ".cache"


def data_dir() -> Path:
    """The shared data folder: $PTX_DATA, else ../shared/data beside the repository."""
    path = Path(os.environ.get("PTX_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        raise SystemExit(f"data folder {path} not found: set PTX_DATA to the folder holding cxr-512/")
    return path


def split_of(key: str) -> str:
    """Deterministic 80/10/10 split by a stable hash of an image or mask id."""
    bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


def load_grey(path: Path, size: int = INPUT_SIZE) -> np.ndarray:
    """Read an image file as 8-bit grey and resize it to size x size (the manifest's resize).

    PIL's BILINEAR resize with its antialiasing support is the reference resize; the
    daemon reproduces it (the reference vectors check the match).
    """
    with Image.open(path) as im:
        return resize_grey(im.convert("L"), size)


def resize_grey(im: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """The manifest's resize: Pillow BILINEAR of an 8-bit grey image to size x size."""
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def radiographs(size: int = INPUT_SIZE) -> tuple[list[str], np.ndarray]:
    """All unlabelled radiographs of cxr-512/ as (names, uint8 array N x size x size)."""
    cache = CACHE / f"cxr-{size}.npz"
    if cache.exists():
        z = np.load(cache)
        return list(z["names"]), z["images"]
    folder = data_dir() / "cxr-512"
    with open(data_dir() / "cxr-512.csv") as f:
        names = sorted(row["file"] for row in csv.DictReader(f))
    images = np.stack([load_grey(folder / n, size) for n in names])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), images=images)
    return names, images


def real_dev_ids() -> set[str]:
    with open(data_dir() / "real-dev" / "labels.csv") as f:
        return {row["image"].removesuffix(".png") for row in csv.DictReader(f)}


def mask_shapes(size: int = INPUT_SIZE) -> tuple[list[str], np.ndarray]:
    """The real pneumothorax shapes of siim-train-rle.csv at size x size (bool).

    The shapes of the real-dev images are left out, so that evaluation on real-dev never
    sees a lesion the synthesiser has drawn.
    """
    cache = CACHE / f"shapes-{size}.npz"
    if cache.exists():
        z = np.load(cache)
        return list(z["ids"]), np.unpackbits(z["bits"], axis=-1)[..., :size].astype(bool)
    excluded = real_dev_ids()
    ids, masks = [], []
    csv.field_size_limit(1 << 24)
    with open(data_dir() / "siim-train-rle.csv") as f:
        for row in csv.DictReader(f):
            if row["target"] != "1" or row["ImageId"] in excluded:
                continue
            full = rle.decode(row["EncodedPixels"], 1024)
            small = Image.fromarray(full.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)
            # threshold below 0.5 so that thin shapes survive the 4x reduction.
            m = np.asarray(small) >= 96
            if m.sum() >= 4:
                ids.append(row["ImageId"])
                masks.append(m)
    masks = np.stack(masks)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=np.array(ids), bits=np.packbits(masks, axis=-1))
    return ids, masks


def siim_layout(folder: Path, size: int = INPUT_SIZE) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A labelled set in the SIIM PNG layout: `images/*.png` with `masks/*.png` (0/255).

    This is how real data drops in (real-dev/ here, the full SIIM-ACR PNG set or a
    clinic's own labelled images elsewhere). Returns names, images and bool masks.
    """
    names = sorted(p.name for p in (folder / "images").glob("*.png"))
    if not names:
        raise SystemExit(f"no images/*.png under {folder}")
    images = np.stack([load_grey(folder / "images" / n, size) for n in names])
    masks = []
    for n in names:
        mpath = folder / "masks" / n
        if mpath.exists():
            with Image.open(mpath) as im:
                m = im.convert("L").resize((size, size), Image.BILINEAR)
            masks.append(np.asarray(m) >= 96)
        else:
            masks.append(np.zeros((size, size), bool))
    return names, images, np.stack(masks)


def normalize(grey_u8: np.ndarray) -> np.ndarray:
    """uint8 grey (..., H, W) -> float32 (..., 3, H, W): x/255, (x-MEAN)/STD, grey to 3 channels."""
    from . import MEAN, STD

    x = (grey_u8.astype(np.float32) / 255.0 - MEAN) / STD
    return np.repeat(x[..., None, :, :], 3, axis=-3)
