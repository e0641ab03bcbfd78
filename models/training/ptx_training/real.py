"""The real validation protocol: real labelled radiographs, patient-level splits, and metrics
with bootstrap intervals, pooled and within each image source.

Every model decision (architecture, epochs, thresholds) is made on `real_split("val")`, never
on synthetic images. Why within each source: SIIM and NIH images are easy to tell apart (AUC
0.89 from frozen ImageNet features) and 45 of the 48 SIIM images are positive, so a pooled AUC
rewards a model that only recognises SIIM processing. The NIH-only AUC cannot be earned that
way; `siim_domain` AUC (SIIM positives against unlabelled SIIM-processed `cxr-512/` images,
about one in five of which is itself a pneumothorax) is a pessimistic stand-in for the other
source, since SIIM-ACR's own negatives are not here.

Splits: 5 folds by a hash of the `patient` column (one patient's images always together),
folds 0-1 are `val` (about 40%: 30+ positives), folds 2-4 are `train`. The cxr-512 copies of
labelled images (`same_image_in_cxr512`) and the real-dev images never enter training.
"""

import csv
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from . import INPUT_SIZE, data, public
from .evaluate import dice_iou, roc_auc, sens_spec

VAL_FOLDS = (0, 1)
N_FOLDS = 5
# The cross-validation model the release ships (ptx_training.cv): trained on the other folds.
RELEASE_FOLD = 0


def fold_of(patient: str) -> int:
    return int(hashlib.sha1(f"ptx-real-{patient}".encode()).hexdigest(), 16) % N_FOLDS


def labelled(size: int = INPUT_SIZE) -> dict:
    """All of real-labelled/ at size x size: images (uint8), labels, source, patient, fold,
    masks (bool, all-false where there is none) and has_mask (SIIM's radiologist masks)."""
    cache = data.CACHE / f"real-labelled-{size}.npz"
    root = data.data_dir() / "real-labelled"
    with open(root / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    if cache.exists():
        z = np.load(cache)
        images, masks = z["images"], z["masks"]
    else:
        images = np.stack([data.load_grey(root / "images" / r["image"], size) for r in rows])
        masks = np.stack([_mask(root / "masks" / r["mask"], size) if r["mask"] else np.zeros((size, size), bool) for r in rows])
        data.CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, images=images, masks=masks)
    out = {
        "names": [r["id"] for r in rows],
        "images": images,
        "masks": masks,
        "has_mask": np.array([r["label_source"] == "siim-mask" for r in rows]),
        "labels": np.array([r["pneumothorax"] == "1" for r in rows]),
        "source": np.array([r["dataset"] for r in rows]),
        "patient": [r["patient"] for r in rows],
    }
    extra = published(size, out)
    if extra is not None:
        out = public.concat(out, extra)
    out["fold"] = np.array([fold_of(p) for p in out["patient"]])
    out["cxr512_twin"] = {r["same_image_in_cxr512"] for r in rows if r["same_image_in_cxr512"]}
    return out


def published(size: int, labelled_rows: dict) -> dict | None:
    """The published SIIM-ACR and NIH sets that $PTX_SIIM / $PTX_NIH point at (`public`),
    less the images real-labelled/ and real-dev/ already hold; None when neither is set."""
    roots = public.roots()
    if not roots:
        return None
    key = hashlib.sha1(repr(sorted((k, str(v.resolve())) for k, v in roots.items())).encode()).hexdigest()[:12]
    cache = data.CACHE / f"published-{key}-{size}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return {k: (list(z[k]) if k in ("names", "patient") else z[k]) for k in z.files}
    skip = set(labelled_rows["names"]) | data.real_dev_ids()
    known = {n: p for n, p, s in zip(labelled_rows["names"], labelled_rows["patient"], labelled_rows["source"]) if s == "siim"}
    parts = []
    if "siim" in roots:
        parts.append(public.siim(roots["siim"], size, known, skip))
    if "nih" in roots:
        parts.append(public.nih(roots["nih"], size, skip))
    extra = parts[0] if len(parts) == 1 else public.concat(*parts)
    data.CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{k: (np.array(v) if isinstance(v, list) else v) for k, v in extra.items()})
    return extra


def _mask(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.BILINEAR)) >= 96


def real_split(split: str, size: int = INPUT_SIZE, holdout: tuple[int, ...] = VAL_FOLDS) -> dict:
    """`train` or `val` of real-labelled/, as a dict of arrays (see `labelled`). `val` is the
    folds in `holdout` (the fixed real val split by default; one fold in cross-validation,
    none for a release trained on every labelled image)."""
    d = labelled(size)
    keep = np.isin(d["fold"], holdout) if split == "val" else ~np.isin(d["fold"], holdout)
    out = {k: (v[keep] if isinstance(v, np.ndarray) else [x for x, m in zip(v, keep) if m]) for k, v in d.items() if k != "cxr512_twin"}
    return out


def siim_domain(size: int = INPUT_SIZE, holdout: tuple[int, ...] = VAL_FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled SIIM-processed radiographs (cxr-512/) usable as presumed negatives:
    (indices into data.radiographs(), split per image: 'val' where its name hashes into the
    `holdout` folds, as the labelled images' patients do, else 'train'), leaving out the
    labelled images' twins."""
    names, _ = data.radiographs(size)
    twins = labelled(size)["cxr512_twin"]
    idx = np.array([i for i, n in enumerate(names) if n not in twins])
    split = np.array(["val" if fold_of(names[i]) in holdout else "train" for i in idx])
    return idx, split


def bootstrap(fn, arrays: list[np.ndarray], n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """fn(*arrays) and its 95% percentile bootstrap interval (resampling images)."""
    point = fn(*arrays)
    rng = np.random.default_rng(seed)
    m = len(arrays[0])
    stats = []
    for _ in range(n):
        k = rng.integers(0, m, m)
        v = fn(*[a[k] for a in arrays])
        if np.isfinite(v):
            stats.append(v)
    lo, hi = (np.percentile(stats, [2.5, 97.5]) if stats else (np.nan, np.nan))
    return float(point), float(lo), float(hi)


def ci(value: tuple[float, float, float]) -> dict:
    return {"value": round(value[0], 4), "ci95": [round(value[1], 4), round(value[2], 4)]}


def classifier_report(labels, scores, source, threshold: float, siim_neg_scores=None) -> dict:
    """ROC AUC pooled and within NIH (and SIIM positives vs SIIM-domain presumed negatives),
    sensitivity and specificity at `threshold`, each with its 95% bootstrap interval."""
    labels, scores, source = np.asarray(labels, bool), np.asarray(scores, float), np.asarray(source)
    nih = source == "nih"
    rep = {
        "n": int(len(labels)),
        "positives": int(labels.sum()),
        "nih_n": int(nih.sum()),
        "nih_positives": int(labels[nih].sum()),
        "auc_pooled": ci(bootstrap(roc_auc, [labels, scores])),
        "auc_nih": ci(bootstrap(roc_auc, [labels[nih], scores[nih]])),
        "threshold": round(float(threshold), 4),
        "sensitivity": ci(bootstrap(lambda l, s: sens_spec(l, s, threshold)[0], [labels, scores])),
        "specificity": ci(bootstrap(lambda l, s: sens_spec(l, s, threshold)[1], [labels, scores])),
        "sensitivity_nih": ci(bootstrap(lambda l, s: sens_spec(l, s, threshold)[0], [labels[nih], scores[nih]])),
        "specificity_nih": ci(bootstrap(lambda l, s: sens_spec(l, s, threshold)[1], [labels[nih], scores[nih]])),
    }
    if siim_neg_scores is not None:
        siim_pos = scores[(source == "siim") & labels]
        neg = np.asarray(siim_neg_scores, float)
        lab = np.r_[np.ones(len(siim_pos), bool), np.zeros(len(neg), bool)]
        rep["auc_siim_vs_siim_domain"] = ci(bootstrap(roc_auc, [lab, np.r_[siim_pos, neg]]))
        rep["siim_domain_flag_rate"] = round(float((neg >= threshold).mean()), 4)
        rep["siim_domain_n"] = int(len(neg))
    return rep


def segmenter_report(probs: np.ndarray, masks: np.ndarray, pixel: float, min_area: int) -> dict:
    """Dice and IoU on real masked positives, after the pixel threshold and the minimum area."""
    from .evaluate import clean_mask

    dice, iou = [], []
    for p, m in zip(probs, masks):
        d, i = dice_iou(clean_mask(p, pixel, min_area), m)
        dice.append(d)
        iou.append(i)
    dice, iou = np.array(dice), np.array(iou)
    return {"n": int(len(dice)), "dice": ci(bootstrap(np.mean, [dice])), "iou": ci(bootstrap(np.mean, [iou]))}
