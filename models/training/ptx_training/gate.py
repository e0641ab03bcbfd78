"""The not-a-chest-radiograph gate: its limits, chosen on real radiographs, and its catch rate
on images that are not chest radiographs.

    python -m ptx_training.gate --lungs ../work/lungs.int8.onnx --out ../work/gate.json

`features` mirrors ptxd's `lungs::LungField` exactly (threshold, midline, sides, contrast,
the chest-or-not output), on the shipped int8 lung-field file through onnxruntime, so the
numbers here are the ones the daemon computes. Limits: every real radiograph in
../shared/data (cxr-512, real-labelled, lungs, real-dev and the DICOM files) must pass, with a
margin: each limit sits at a fixed fraction of the most extreme real value (`MARGIN`), not at
the edge. The chest-or-not limit is chosen on cxr-512 alone, the one source its head learned
from (ptx_training.chest), so its false-refusal rate on the other sources is a held-out one.

Non-chest images are made here or come with packages (none is committed): blank and noise
frames, the V4L2 test patterns that vivid draws, scikit-image's sample photographs (which
include a Shepp-Logan CT phantom) and the 20 LFW faces the head did not learn from, pydicom's
CT and MR test slices, and the project's own chest phantoms (drawings, not radiographs; the
chest-or-not head was shown other seeds of them, so their refusal is by construction). Inverted radiographs are reported apart: they are chest radiographs shown
wrongly (a MONOCHROME1 file read as MONOCHROME2).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import LUNG_SIZE, chest, data, phantom, real
from .evaluate import ort_session

# A limit's distance from the most extreme real value: a lower limit at MARGIN x the real
# minimum, an upper limit at the real maximum plus (1 - MARGIN) of the room left above it.
MARGIN = 0.6
PIXEL = 0.5
MARGIN_CELLS = 3


def features(probs: np.ndarray, grey: np.ndarray, chest_score: float, pixel: float = PIXEL) -> dict:
    """lungs::LungField::new in Python: lung fraction, smaller side's share, contrast, and the
    chest-or-not output as it is."""
    h, w = probs.shape
    cells = probs >= pixel
    per_col = cells.sum(0)
    total = int(per_col.sum())
    if total == 0:
        midline = w / 2
    else:
        median = int(np.argmax(np.cumsum(per_col) * 2 >= total))
        cand = range(w // 4, min(3 * w // 4, w - 1) + 1)
        midline = min(cand, key=lambda x: (per_col[x], abs(x - median))) + 0.5
    xs = np.nonzero(cells)[1] + 0.5
    left = int((xs < midline).sum())
    right = total - left
    return {
        "fraction": total / (w * h),
        "side_share": min(left, right) / total if total else 0.0,
        "contrast": float(grey.astype(np.float64).std()),
        "chest": float(chest_score),
        "midline": midline,
    }


def lung_probs(sess, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lung file's two outputs for each image: lung probabilities (N x H x W) and the
    chest-or-not probability (N)."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: data.normalize(im)[None]}) for im in images]
    return np.stack([o[0][0, 0] for o in outs]), np.array([float(o[1].reshape(-1)[0]) for o in outs])


def all_features(sess, images: np.ndarray) -> list[dict]:
    probs, chest_scores = lung_probs(sess, images)
    return [features(p, g, c) for p, g, c in zip(probs, images, chest_scores)]


def resize(im: Image.Image) -> np.ndarray:
    return data.resize_grey(im.convert("L"), LUNG_SIZE)


def real_sets() -> dict[str, np.ndarray]:
    """Every real radiograph in the shared data, at the lung model's input size."""
    root = data.data_dir()
    sets = {"cxr-512": data.radiographs(LUNG_SIZE)[1], "real-labelled": real.labelled(LUNG_SIZE)["images"]}
    sets["lungs"] = np.stack([data.load_grey(p, LUNG_SIZE) for p in sorted((root / "lungs" / "images").glob("*.jpg"))])
    sets["real-dev"] = np.stack([data.load_grey(p, LUNG_SIZE) for p in sorted((root / "real-dev" / "images").glob("*.png"))])
    sets["dicom"] = np.stack([dicom_grey(p) for p in sorted((root / "dicom").glob("*.dcm"))])
    return sets


def dicom_grey(path: Path) -> np.ndarray:
    """A DICOM file decoded as the reference vectors decode it (`reference.dicom_grey`),
    resized for the lung model."""
    from .reference import dicom_grey as decode

    return resize(decode(path))


def colour_bars(w: int = 640, h: int = 480, level: float = 0.75) -> np.ndarray:
    """vivid's default pattern: eight vertical bars, white to black through the colours."""
    colours = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]], float)
    cols = np.minimum((np.arange(w) * 8) // w, 7)
    return np.round(colours[cols][None].repeat(h, 0) * 255 * level).astype(np.uint8)


def non_chest() -> list[tuple[str, str, np.ndarray]]:
    """(name, category, 128x128 grey) for every non-chest image used to measure the catch rate."""
    out = []
    rng = np.random.default_rng(0)
    for v in (0, 16, 128, 235, 255):
        out.append((f"blank-{v}", "blank frame", np.full((LUNG_SIZE, LUNG_SIZE), v, np.uint8)))
    for s in (2, 8, 30):
        out.append((f"noise-{s}", "noise frame", resize(Image.fromarray(np.clip(rng.normal(40, s, (480, 640)), 0, 255).astype(np.uint8)))))
    # the V4L2 test patterns vivid draws (a capture device with no digitizer behind it)
    out.append(("colour-bars-75", "test pattern", resize(Image.fromarray(colour_bars()))))
    out.append(("colour-bars-100", "test pattern", resize(Image.fromarray(colour_bars(level=1.0)))))
    ramp = np.tile(np.linspace(0, 255, 640), (480, 1)).astype(np.uint8)
    out.append(("grey-ramp", "test pattern", resize(Image.fromarray(ramp))))
    checkers = (((np.arange(480)[:, None] // 40) + (np.arange(640)[None] // 40)) % 2 * 255).astype(np.uint8)
    out.append(("checkers", "test pattern", resize(Image.fromarray(checkers))))
    lines = np.zeros((480, 640), np.uint8)
    lines[::2] = 255
    out.append(("horizontal-lines", "test pattern", resize(Image.fromarray(lines))))
    # photographs and other medical images shipped with packages
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    for name in ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "chessboard_GRAY.png", "clock_motion.png",
                 "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png",
                 "logo.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg",
                 "text.png"]:
        with Image.open(sk / name) as im:
            out.append((name, "photograph or drawing", resize(im)))
    with Image.open(sk / "phantom.png") as im:
        out.append(("shepp-logan-phantom", "CT slice", resize(im)))
    for i, f in enumerate(chest.lfw_faces()[:chest.HELD_OUT_FACES]):
        out.append((f"face-{i}", "photograph or drawing", f))
    from pydicom.data import get_testdata_file

    for name, cat in [("CT_small.dcm", "CT slice"), ("MR_small.dcm", "MR slice")]:
        out.append((name, cat, dicom_grey(Path(get_testdata_file(name)))))
    for seed in (1, 2, 3):
        for ptx in (False, True):
            out.append((f"phantom-{seed}-{'ptx' if ptx else 'clear'}", "project chest phantom", resize(Image.fromarray(phantom.make(512, seed=seed, pneumothorax=ptx)))))
    return out


def choose(real_feats: list[dict], chest_source: list[dict]) -> dict:
    """Limits from every real radiograph's features; the chest-or-not limit from the head's
    own training source only (`chest_source`)."""
    frac = np.array([f["fraction"] for f in real_feats])
    share = np.array([f["side_share"] for f in real_feats])
    contrast = np.array([f["contrast"] for f in real_feats])
    return {
        "pixel": PIXEL,
        "min_fraction": round(float(frac.min() * MARGIN), 4),
        "max_fraction": round(float(frac.max() + (1 - frac.max()) * (1 - MARGIN)), 4),
        "min_side_share": round(float(share.min() * MARGIN), 4),
        "min_contrast": round(float(contrast.min() * MARGIN), 2),
        "min_chest": round(min(f["chest"] for f in chest_source) * MARGIN, 4),
        "margin_cells": MARGIN_CELLS,
    }


def passes(f: dict, t: dict) -> str | None:
    """The first failed limit's name (the order of lungs::LungField::check), or None."""
    if f["contrast"] < t["min_contrast"]:
        return "blank"
    if f["chest"] < t["min_chest"]:
        return "not_chest_like"
    if f["fraction"] < t["min_fraction"]:
        return "too_little_lung"
    if f["fraction"] > t["max_fraction"]:
        return "too_much_lung"
    if f["side_share"] < t["min_side_share"]:
        return "one_sided"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description="choose the not-a-chest-radiograph limits and measure them")
    ap.add_argument("--lungs", required=True, type=Path, help="the int8 lung-field ONNX file")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    sess = ort_session(args.lungs, 2)
    real_feats = {}
    for name, images in real_sets().items():
        real_feats[name] = all_features(sess, images)
        print(name, len(images), flush=True)
    allf = [f for fs in real_feats.values() for f in fs]
    t = choose(allf, real_feats["cxr-512"])
    report = {"thresholds": t, "margin": MARGIN, "real": {}, "non_chest": {}, "inverted": {}}
    for name, fs in real_feats.items():
        refused = [passes(f, t) for f in fs]
        report["real"][name] = {"n": len(fs), "refused": int(sum(r is not None for r in refused)),
                                "fraction_range": [round(min(f["fraction"] for f in fs), 4), round(max(f["fraction"] for f in fs), 4)],
                                "side_share_min": round(min(f["side_share"] for f in fs), 4),
                                "contrast_min": round(min(f["contrast"] for f in fs), 2),
                                "chest_min": round(min(f["chest"] for f in fs), 4)}
    items = non_chest()
    per_cat: dict = {}
    for (name, cat, im), f in zip(items, all_features(sess, np.stack([im for _, _, im in items]))):
        why = passes(f, t)
        c = per_cat.setdefault(cat, {"n": 0, "caught": 0, "missed": []})
        c["n"] += 1
        c["caught"] += why is not None
        if why is None:
            c["missed"].append(name)
        print(f"{cat:24s} {name:28s} frac {f['fraction']:.3f} share {f['side_share']:.3f} contrast {f['contrast']:.1f} chest {f['chest']:.3f} -> {why or 'PASSES'}")
    report["non_chest"] = per_cat
    names, cxr = data.radiographs(LUNG_SIZE)
    inv = 255 - cxr[np.random.default_rng(3).choice(len(cxr), 100, replace=False)]
    inv_refused = [passes(f, t) for f in all_features(sess, inv)]
    report["inverted"] = {"n": len(inv), "refused": int(sum(r is not None for r in inv_refused))}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "non_chest"}, indent=1))
    print({k: (v["caught"], v["n"]) for k, v in per_cat.items()})


if __name__ == "__main__":
    main()
