"""The public labelled sets as they are published, read into the records of real-labelled/.

A clinic network that holds SIIM-ACR or NIH ChestX-ray14 points the same commands at them:

    PTX_SIIM=/data/siim-acr PTX_NIH=/data/chestxray14 make all

- **SIIM-ACR Pneumothorax Segmentation (2019), stage 1 train**, as Kaggle published it:
  `train-rle.csv` (columns `ImageId` and ` EncodedPixels`, the second name with its leading
  space; one row per pneumothorax region, ` -1` for none; column-major runs with relative
  starts, see `rle`) and the DICOMs under `dicom-images-train/<study>/<series>/<SOP UID>.dcm`
  (found anywhere below the folder, by SOP Instance UID). Radiologist masks: every image is
  labelled and masked.
- **NIH ChestX-ray14 (2017)**: `Data_Entry_2017.csv` (`Image Index`, `Finding Labels`,
  `Patient ID`, `View Position`, ...) and the 1024x1024 PNGs under `images/` (or the
  `images_001/images/` ... folders of other copies; any PNG below the folder, by name).
  Labels are text-mined from reports ("Pneumothorax" among the finding labels), with no
  mask. Only frontal views (PA, AP) are read, and of the negatives only
  `nih_negatives_per_positive` per positive (default 4: 5,302 positives and 21,208
  negatives, about 1.7 GB at 256 px), so that the set fits in memory and stays balanced.

Patients keep the keys real-labelled/ uses (an NIH patient is its number; a SIIM patient
is the real-labelled/ key of any of its images there, else its DICOM Patient ID), so that
one patient's images land in one fold whichever copy they came from. Images already in
real-labelled/ or real-dev/ are not read twice.
"""

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image

from . import INPUT_SIZE, data, rle

SIIM_ENV, NIH_ENV = "PTX_SIIM", "PTX_NIH"


def roots() -> dict[str, Path]:
    """The published sets pointed at by $PTX_SIIM and $PTX_NIH (either may be unset)."""
    out = {}
    for name, env in (("siim", SIIM_ENV), ("nih", NIH_ENV)):
        if os.environ.get(env):
            path = Path(os.environ[env])
            if not path.is_dir():
                raise SystemExit(f"${env} is {path}, which is not a folder")
            out[name] = path
    return out


def _column(row: dict, name: str) -> str:
    """A CSV field by name, whatever spaces the published header put around it."""
    for key, value in row.items():
        if key is not None and key.strip() == name:
            return value
    raise KeyError(f"no column {name!r} (columns: {', '.join(k.strip() for k in row if k)})")


def siim(root: Path, size: int = INPUT_SIZE, known: dict[str, str] | None = None, skip: set[str] = frozenset()) -> dict:
    """SIIM-ACR stage 1 train as records. `known` maps SOP UIDs already in real-labelled/
    to their patient key there; `skip` holds ids not to read (real-labelled/, real-dev/)."""
    import pydicom

    known = known or {}
    csv.field_size_limit(1 << 24)
    with open(root / "train-rle.csv", newline="") as f:
        runs: dict[str, list[str]] = {}
        for row in csv.DictReader(f):
            runs.setdefault(_column(row, "ImageId").strip(), []).append(_column(row, "EncodedPixels"))
    files = {p.stem: p for p in root.rglob("*.dcm")}
    missing = [i for i in runs if i not in files]
    if missing:
        raise SystemExit(f"{root}: {len(missing)} images of train-rle.csv have no DICOM below it (first: {missing[0]})")
    headers = {}
    for uid in runs:
        headers[uid] = pydicom.dcmread(files[uid], stop_before_pixels=True)
    # one patient, one key: the real-labelled/ key of any of its images, else its Patient ID
    key_of_patient = {str(headers[u].PatientID): known[u] for u in runs if u in known}
    names, images, masks, patients = [], [], [], []
    for uid, encoded in runs.items():
        if uid in skip:
            continue
        ds = pydicom.dcmread(files[uid])
        full = np.zeros((ds.Rows, ds.Columns), bool)
        for e in encoded:
            full |= rle.decode(e, ds.Rows)
        names.append(uid)
        images.append(_grey(ds, size))
        masks.append(_shrink(full, size))
        pid = str(ds.PatientID) or uid
        patients.append(key_of_patient.get(pid, pid))
    n = len(names)
    masks_a = np.stack(masks) if n else np.zeros((0, size, size), bool)
    return {"names": names, "images": np.stack(images) if n else np.zeros((0, size, size), np.uint8), "masks": masks_a,
            "has_mask": np.ones(n, bool), "labels": masks_a.any((1, 2)), "source": np.array(["siim"] * n), "patient": patients}


def nih(root: Path, size: int = INPUT_SIZE, skip: set[str] = frozenset(), negatives_per_positive: int = 4, seed: int = 0) -> dict:
    """NIH ChestX-ray14 frontal views as records: every pneumothorax, and a seeded sample of
    `negatives_per_positive` other films per positive."""
    with open(root / "Data_Entry_2017.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if _column(r, "View Position").strip() in ("PA", "AP")]
    rows = [r for r in rows if _column(r, "Image Index").strip().removesuffix(".png") not in skip]
    positive = np.array(["Pneumothorax" in _column(r, "Finding Labels").split("|") for r in rows])
    neg = np.flatnonzero(~positive)
    keep_neg = np.random.default_rng(seed).choice(neg, size=min(len(neg), negatives_per_positive * int(positive.sum())), replace=False)
    keep = np.sort(np.r_[np.flatnonzero(positive), keep_neg]).astype(int)
    files = {p.name: p for p in root.rglob("*.png")}
    names, images = [], []
    for i in keep:
        index = _column(rows[i], "Image Index").strip()
        if index not in files:
            raise SystemExit(f"{root}: {index} is in Data_Entry_2017.csv but no such PNG is below the folder")
        names.append(index.removesuffix(".png"))
        images.append(data.load_grey(files[index], size))
    n = len(names)
    return {"names": names, "images": np.stack(images) if n else np.zeros((0, size, size), np.uint8),
            "masks": np.zeros((n, size, size), bool), "has_mask": np.zeros(n, bool), "labels": positive[keep],
            "source": np.array(["nih"] * n), "patient": [str(int(_column(rows[i], "Patient ID"))) for i in keep]}


def _grey(ds, size: int) -> np.ndarray:
    """A DICOM's pixels as the manifest's 8-bit grey at size x size (MONOCHROME1 inverted,
    the full stored range stretched: SIIM's files are 8-bit MONOCHROME2)."""
    px = ds.pixel_array.astype(np.float32)
    if px.ndim == 3:
        px = px.mean(-1)
    lo, hi = float(px.min()), float(px.max())
    grey = np.round((px - lo) / max(hi - lo, 1.0) * 255).astype(np.uint8)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        grey = 255 - grey
    return data.resize_grey(Image.fromarray(grey), size)


def _shrink(mask: np.ndarray, size: int) -> np.ndarray:
    """A full-size mask at size x size, thin shapes kept (the threshold real-labelled/'s masks use)."""
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)
    return np.asarray(small) >= 96


def concat(a: dict, b: dict) -> dict:
    """Two record sets as one (arrays stacked, lists joined)."""
    return {k: (np.concatenate([a[k], b[k]]) if isinstance(a[k], np.ndarray) else a[k] + b[k]) for k in a}
