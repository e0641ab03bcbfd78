"""Metrics, fixed evaluation sets, and evaluation of checkpoints and ONNX files.

    python -m ptx_training.evaluate --onnx ../segmenter.int8.onnx --kind classifier

Evaluation sets: the held-out synthetic `val` (threshold choice) and `test` splits, built
from radiographs and mask shapes that training never sees, with a fixed seed; and
`real-dev/` (10 real labelled radiographs: far too few for confident numbers).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from . import data, synth

_CACHE: dict = {}


def synthetic_split(split: str, limit: int = 0, seed: int = 1234) -> dict:
    """A fixed synthetic evaluation set: every other radiograph of the split is made positive
    with a shape from the same split's shape bank."""
    key = (split, limit, seed)
    if key in _CACHE:
        return _CACHE[key]
    names, images = data.radiographs()
    shape_ids, shapes = data.mask_shapes()
    idx = [i for i, n in enumerate(names) if data.split_of(n) == split]
    if limit:
        idx = idx[:limit]
    bank = shapes[[i for i, s in enumerate(shape_ids) if data.split_of(s) == split]]
    out_img, out_mask = [], []
    for k, i in enumerate(idx):
        rng = np.random.default_rng([seed, k])
        if k % 2 == 0:
            img, mask = synth.synthesize(images[i], bank, rng)
        else:
            img, mask = images[i], np.zeros(images[i].shape, bool)
        out_img.append(img)
        out_mask.append(mask)
    masks = np.stack(out_mask)
    result = {"names": [names[i] for i in idx], "images": np.stack(out_img), "masks": masks, "labels": masks.any((1, 2))}
    _CACHE[key] = result
    return result


def real_dev() -> dict:
    names, images, masks = data.siim_layout(data.data_dir() / "real-dev")
    return {"names": names, "images": images, "masks": masks, "labels": masks.any((1, 2))}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum statistic (ties counted half)."""
    labels = np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def sens_spec(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    labels = np.asarray(labels, bool)
    pred = scores >= threshold
    sens = float((pred & labels).sum() / max(labels.sum(), 1))
    spec = float((~pred & ~labels).sum() / max((~labels).sum(), 1))
    return sens, spec


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity is at least `target` (a missed alert costs most)."""
    pos = np.sort(scores[np.asarray(labels, bool)])
    k = int(np.floor((1.0 - target) * len(pos)))
    return float(pos[min(k, len(pos) - 1)])


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two bool masks; both empty counts as a perfect 1 (SIIM-ACR's rule)."""
    inter = float((pred & truth).sum())
    total = float(pred.sum() + truth.sum())
    union = float((pred | truth).sum())
    if total == 0:
        return 1.0, 1.0
    return 2 * inter / total, inter / union


def clean_mask(prob: np.ndarray, pixel_threshold: float, min_area: int) -> np.ndarray:
    """Threshold a probability map and drop connected components smaller than min_area pixels
    (8-connectivity); the daemon's findings step does the same."""
    from scipy import ndimage

    binary = prob >= pixel_threshold
    labels, n = ndimage.label(binary, structure=np.ones((3, 3)))
    if n == 0:
        return binary
    sizes = ndimage.sum(binary, labels, index=np.arange(1, n + 1))
    return np.isin(labels, 1 + np.flatnonzero(sizes >= min_area))


def predict_torch(kind: str, model, images: np.ndarray, batch: int = 16) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(data.normalize(images[s : s + batch]))
            outs.append(torch.sigmoid(model(x)).numpy())
    return np.concatenate(outs)[:, 0]  # classifier: (N,); segmenter: (N, H, W)


def ort_session(path: Path, threads: int, exact: bool = True):
    """An onnxruntime CPU session with a fixed thread count; `exact=False` only for timing."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    # Exact int8 arithmetic on x86 CPUs without VNNI. There (AVX2 only, e.g. the AMD EPYC CI
    # machines) onnxruntime's default kernels add int8 products pairwise in int16 with
    # saturation (vpmaddubsw): measured up to 0.042 off the reference vectors on the
    # classifier, while an earlier machine reproduced them within the tests' 1e-4. This
    # widens the operands to int16 first (slower; this is a reference, not a benchmark).
    if exact:
        so.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def predict_onnx(path: Path, images: np.ndarray, threads: int = 2, output: str | None = None) -> np.ndarray:
    """Run an exported file (fp32 or int8) through onnxruntime, one image at a time (static
    batch 1); `output` names the output to return (None: the file's first). The default
    release's segmenter file has two, "mask" then "probability" (export.expose_mask)."""
    sess = ort_session(path, threads)
    name = sess.get_inputs()[0].name
    wanted = [output] if output else None
    outs = [sess.run(wanted, {name: data.normalize(img)[None]})[0][0] for img in images]
    out = np.stack(outs)
    return out[:, 0]  # classifier: (N,) probabilities; segmenter: (N, H, W) probabilities


def segmentation_metrics(prob: np.ndarray, split: dict, pixel_threshold: float, min_area: int) -> dict:
    """Mean Dice and IoU on the positives, and SIIM-ACR's mean Dice over all images."""
    dices, ious, all_dice = [], [], []
    for p, truth in zip(prob, split["masks"]):
        pred = clean_mask(p, pixel_threshold, min_area)
        d, i = dice_iou(pred, truth)
        all_dice.append(d)
        if truth.any():
            dices.append(d)
            ious.append(i)
    return {"dice_pos": float(np.mean(dices)), "iou_pos": float(np.mean(ious)), "siim_dice_all": float(np.mean(all_dice))}


def main() -> None:
    ap = argparse.ArgumentParser(description="evaluate an ONNX file on the synthetic test split and real-dev")
    ap.add_argument("--onnx", required=True, type=Path)
    ap.add_argument("--kind", required=True, choices=["classifier", "segmenter"])
    ap.add_argument("--threshold", type=float, default=0.5, help="classifier probability or segmenter pixel threshold")
    ap.add_argument("--min-area", type=int, default=0)
    args = ap.parse_args()
    out = {}
    for name, split in (("synthetic_test", synthetic_split("test")), ("real_dev", real_dev())):
        # by name: the shipped segmenter file has both outputs (export.expose_mask)
        prob = predict_onnx(args.onnx, split["images"], output="probability" if args.kind == "classifier" else "mask")
        if args.kind == "classifier":
            sens, spec = sens_spec(split["labels"], prob, args.threshold)
            out[name] = {"auc": roc_auc(split["labels"], prob), "sensitivity": sens, "specificity": spec, "n": len(prob), "positives": int(split["labels"].sum())}
        else:
            out[name] = segmentation_metrics(prob, split, args.threshold, args.min_area) | {"n": len(prob)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
