"""Reference vectors: what the Python side computes, for the Rust side to match.

    python -m ptx_training.reference --models-dir .. --out ../reference/vectors.json

For each input (the committed phantom PNGs, plus a few real radiographs of ../shared/data
named by relative path and sha256, never copied), it records:
  * a summary of the preprocessed tensor (PIL bilinear resize to 256x256 of the 8-bit grey
    image): sha256 of the resized 8-bit pixels, their mean, and some sampled pixels;
  * onnxruntime's outputs for every shipped int8 file, each by its name: a classifier's
    "probability"; a mask ("mask", "lungs") as its sum, maximum, count of pixels >= 0.5 and
    a 16x16 grid of block means; the lung file's "chest" score. The segmenter file has both
    a mask and the default classifier's probability (export.expose_mask). The lung-field
    model reads the same image resized to its own 128 px (`model_input`).
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import LUNG_SIZE, data, phantom
from .evaluate import ort_session

REAL_INPUTS = [
    "cxr-512/ID_0011fe81e.jpg",
    "cxr-512/ID_ecdae7d8d.jpg",
    "dicom/ID_0a920cc01.dcm",
    "real-dev/images/1.2.276.0.7230010.3.1.4.8323329.1080.1517875166.235178.png",
]
FILES = [f"{stem}.{v}.onnx" for stem in ("lungs", "classifier-densenet121", "segmenter") for v in ("int8", "int8-qdq")]
PHANTOMS = {"phantom-clear.png": dict(seed=1, pneumothorax=False), "phantom-ptx.png": dict(seed=2, pneumothorax=True)}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summarize_input(resized: np.ndarray) -> dict:
    samples = [[int(y), int(x), int(resized[y, x])] for y, x in [(0, 0), (17, 200), (128, 128), (200, 31), (255, 255), (64, 190)]]
    return {"resized_sha256": hashlib.sha256(resized.tobytes()).hexdigest(), "resized_mean": float(resized.mean()), "samples": samples}


def summarize_mask(prob: np.ndarray) -> dict:
    h, w = prob.shape
    grid = prob.reshape(16, h // 16, 16, w // 16).mean((1, 3))
    return {"sum": float(prob.sum()), "max": float(prob.max()), "count_ge_0_5": int((prob >= 0.5).sum()), "grid16": np.round(grid, 5).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description="write reference vectors for the shipped int8 models")
    ap.add_argument("--models-dir", type=Path, required=True, help="folder holding the shipped .onnx files")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--files", nargs="+", default=FILES)
    args = ap.parse_args()
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)

    inputs = []
    for name, kw in PHANTOMS.items():
        Image.fromarray(phantom.make(512, **kw)).save(out_dir / name)
        inputs.append(("repo", out_dir / name, f"models/reference/{name}"))
    for rel in REAL_INPUTS:
        inputs.append(("shared", data.data_dir() / rel, f"../shared/data/{rel}"))

    records = []
    for origin, path, label in inputs:
        grey = grey_image(path)
        resized = data.resize_grey(grey)
        rec = {"input": label, "origin": origin, "input_sha256": file_sha256(path), "preprocessed": summarize_input(resized), "outputs": {}}
        for f in args.files:
            rec["outputs"][f] = summarize_outputs(args.models_dir / f, model_input(f, grey))
        records.append(rec)
        print(label, {k: v.get("probability", v.get("count_ge_0_5")) for k, v in rec["outputs"].items()})
    doc = {
        "about": "Reference vectors from ptx_training.reference: onnxruntime outputs on the shipped int8 files. "
        "Paths starting ../shared/data are read at test time, never committed.",
        "files": {f: file_sha256(args.models_dir / f) for f in args.files},
        "inputs": records,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


def summarize_outputs(path: Path, resized: np.ndarray) -> dict:
    """Every output of the file at `path` on one resized image, summarised by its name:
    "probability" and "chest" as numbers, a mask ("mask", "lungs") by `summarize_mask`."""
    sess = ort_session(path, 2)
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(None, {sess.get_inputs()[0].name: data.normalize(resized)[None]})
    out = {}
    for name, v in zip(names, values):
        if name in ("probability", "chest"):
            out[name] = float(v.reshape(-1)[0])
        else:
            out.update(summarize_mask(v[0, 0]))
    return out


def grey_image(path: Path) -> Image.Image:
    """The input as 8-bit grey, before any resize (DICOM through `dicom_grey`)."""
    if path.suffix == ".dcm":
        return dicom_grey(path)
    with Image.open(path) as im:
        return im.convert("L")


def model_input(file: str, grey: Image.Image) -> np.ndarray:
    """The original grey image resized as the model in `file` reads it (ptxd resizes the
    original for each model: 128 px for the lung fields, 256 px for the others)."""
    return data.resize_grey(grey, LUNG_SIZE if file.startswith("lungs") else data.INPUT_SIZE)


def dicom_resized(path: Path) -> np.ndarray:
    return data.resize_grey(dicom_grey(path))


def dicom_grey(path: Path) -> Image.Image:
    """The DICOM reference path: pixel data as 8-bit grey (these files are 8-bit MONOCHROME2
    JPEG baseline, so no windowing applies), then the same resize as every other input."""
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float64)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        arr = arr.max() - arr
    lo, hi = arr.min(), arr.max()
    grey = np.round((arr - lo) / max(hi - lo, 1) * 255).astype(np.uint8) if ds.BitsStored > 8 else arr.astype(np.uint8)
    return Image.fromarray(grey)


if __name__ == "__main__":
    main()
