"""Cross-validation by patient: the release recipe trained five times, each image of
real-labelled/ scored by the one model that never saw its patient, and every choice made on
those out-of-fold scores.

    python -m ptx_training.cv folds --work ../work/cv          # the recipe once per fold, held-out fold scored
    python -m ptx_training.cv report --work ../work/cv         # out-of-fold metrics, choices, intervals
    python -m ptx_training.cv compare ../work/cv ../work/cv-b  # another recipe's paired gain over this one

The release ships the fold-0 model (real.RELEASE_FOLD): trained on folds 1-4, 80% of the labelled
images; its own held-out fold holds the demo's examples (docs/examples/), so the demo shows
it on films it never trained on.

Why: with 77 real positives, choosing the epoch, the calibration and the thresholds on a
29-positive val split and then reporting on it gave numbers that new images did not repeat.
Here each of the five models is trained with a fixed recipe (fixed epochs, the last one kept:
nothing is chosen on the fold it is scored on), exported and quantized to int8 exactly as the
release is, and scores its held-out fold through onnxruntime. Where a choice is made on the
out-of-fold scores (the alarm-budget thresholds, the segmenter's pixel threshold and minimum
area), its report is nested: each fold is judged by the choice made on the other four.

The held-out fold's share of cxr-512/ (by the same name hash, twins of labelled images left
out) is that fold's SIIM-domain set: presumed negatives the fold's model never trained on.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import INPUT_SIZE, data, evaluate, export, nets, real, variants

# The release recipe: a UNet++ on ImageNet EfficientNet-Lite0 trained on 128 px crops at full
# scale, then fine-tuned on whole images with the image-level loss on its score (NIH positives
# teach it by label; the 10% of presumed negatives it scores highest are dropped). Fixed
# epochs: the earlier 10 + 4 with the best val epoch kept had chosen epoch 0 of the
# fine-tune, and the fine-tunes overfit by their second or third epoch.
STAGES = (
    ["segmenter", "--epochs", "6", "--pos-repeat", "6", "--lr", "1e-3"],
    ["segmenter", "--crop", "256", "--image-loss", "0.5", "--clean-negatives", "0.1", "--epochs", "2", "--lr", "3e-4", "--pos-repeat", "6"],
)
# The alarm budget: the share of clear films that may be flagged (amber or red), and the
# share that may raise the red alarm. Thresholds are quantiles of clear films' out-of-fold scores.
FLAG_BUDGET = 0.25
ALARM_BUDGET = 0.10
SEG_PIXELS = (0.3, 0.4, 0.5, 0.6, 0.7)
# No 0: a region of a pixel or two is noise, and int8 rounding on another CPU (NEON against
# x86) makes or unmakes it, so the findings would differ by board (measured: 3 regions on
# aarch64 against 1 on x86 for the same radiograph at 0).
SEG_AREAS = (25, 50, 100, 200)
SIIM_DOMAIN_PER_FOLD = 200
CACHE_NAME = "oof.npz"


def fit(out: Path, holdout: list[int], threads: int, encoder: Path | None = None) -> Path:
    """Train the recipe with `holdout` folds left out; returns the final checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    first, second = out / "seg.pt", out / "seg-mt.pt"
    common = ["--holdout", *map(str, holdout), "--keep-last", "--threads", str(threads)]
    start = ["--encoder", str(encoder)] if encoder else []
    for stage, ck, init in ((STAGES[0], first, start), (STAGES[1], second, ["--init", str(first)])):
        if ck.exists():
            print(f"{ck} exists, kept", flush=True)
            continue
        tmp = ck.with_suffix(".partial.pt")
        subprocess.run([sys.executable, "-m", "ptx_training.train", *stage, *init, *common, "--out", str(tmp)], check=True)
        tmp.rename(ck)
    return second


def int8_segmenter(checkpoint: Path, out_dir: Path) -> Path:
    """The int8 file the release would ship from this checkpoint (QOperator, as ptxd runs it)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    paths = {v: out_dir / f"segmenter.{v}.onnx" for v in ("fp32", "pre", "int8")}
    if not paths["int8"].exists():
        export.export_fp32("segmenter", checkpoint, paths["fp32"])
        quant_pre_process(str(paths["fp32"]), str(paths["pre"]), skip_symbolic_shape=True)
        export.quantize(paths["pre"], paths["int8"], "qop", 64, keep_stem=True)
    return paths["int8"]


def block_scores(masks: np.ndarray, block: int = nets.SegmenterScore.BLOCK) -> np.ndarray:
    """nets.SegmenterScore in numpy: the largest block x block mean of each mask. Equal to the
    classifier file's output (the same network; measured within 2e-7 on the shipped files)."""
    n, h, w = masks.shape
    return masks.reshape(n, h // block, block, w // block, block).mean((2, 4)).max((1, 2))


def siim_domain_fold(fold: int) -> np.ndarray:
    """Indices into data.radiographs() of the fold's held-out SIIM-domain images (fixed sample)."""
    idx, split = real.siim_domain(INPUT_SIZE, (fold,))
    held = idx[split == "val"]
    return np.sort(np.random.default_rng(5 + fold).choice(held, size=min(SIIM_DOMAIN_PER_FOLD, len(held)), replace=False))


def folds(work: Path, threads: int, encoder: Path | None = None, which: list[int] | None = None) -> None:
    d = real.labelled()
    _, cxr = data.radiographs()
    for k in which if which is not None else range(real.N_FOLDS):
        out = work / f"fold{k}"
        pred = out / "pred.npz"
        if pred.exists():
            continue
        onnx = int8_segmenter(fit(out, [k], threads, encoder), out)
        held = np.flatnonzero(d["fold"] == k)
        dom = siim_domain_fold(k)
        masks = evaluate.predict_onnx(onnx, d["images"][held])
        dom_scores = block_scores(evaluate.predict_onnx(onnx, cxr[dom]))
        np.savez_compressed(pred, index=held, masks=masks.astype(np.float16), scores=block_scores(masks), domain_index=dom, domain_scores=dom_scores)
        print(f"fold {k}: {len(held)} held-out images scored", flush=True)


def scored_folds(work: Path) -> list[int]:
    """The folds whose held-out predictions are on disk."""
    return [k for k in range(real.N_FOLDS) if (work / f"fold{k}" / "pred.npz").exists()]


def collect(work: Path, which: list[int] | None = None) -> dict:
    """The folds' predictions gathered into arrays over real-labelled/ (index order): every
    fold, or only `which` (their images' scores set, the others' NaN)."""
    d = real.labelled()
    n = len(d["labels"])
    scores, masks = np.full(n, np.nan), np.zeros(d["masks"].shape, np.float16)
    dom_scores, dom_fold = [], []
    for k in range(real.N_FOLDS) if which is None else which:
        z = np.load(work / f"fold{k}" / "pred.npz")
        scores[z["index"]] = z["scores"]
        masks[z["index"]] = z["masks"]
        dom_scores.append(z["domain_scores"])
        dom_fold.append(np.full(len(z["domain_scores"]), k))
    assert which is not None or not np.isnan(scores).any(), "a fold is missing"
    return d | {"scores": scores, "probs": masks, "domain_scores": np.concatenate(dom_scores), "domain_fold": np.concatenate(dom_fold)}


def alarm_thresholds(clear_scores: np.ndarray) -> dict:
    """The alarm budget as thresholds: at most FLAG_BUDGET of these clear films at or above
    `indeterminate_low`, at most ALARM_BUDGET at or above `probability`."""
    def above(share):
        # the smallest threshold that flags at most `share` of them (ties flag together)
        s = np.sort(clear_scores)
        k = int(np.ceil((1 - share) * len(s)))
        return float(np.nextafter(s[k - 1], np.inf)) if k >= 1 else float(s[0])
    return {"probability": above(ALARM_BUDGET), "indeterminate_low": above(FLAG_BUDGET)}


def nested_bands(r: dict) -> tuple[np.ndarray, list[dict]]:
    """Each image's band (0 negative, 1 amber, 2 red) under thresholds chosen on the other folds' clear films."""
    band = np.zeros(len(r["scores"]), int)
    per_fold = []
    for k in range(real.N_FOLDS):
        other = (r["fold"] != k) & ~r["labels"]
        t = alarm_thresholds(r["scores"][other])
        here = r["fold"] == k
        band[here] = variants.bands(r["scores"][here], t)
        per_fold.append({k2: round(v, 4) for k2, v in t.items()})
    return band, per_fold


def band_report(labels: np.ndarray, band: np.ndarray, source: np.ndarray) -> dict:
    """Flagged shares of clear films and sensitivities, with 95% bootstrap intervals."""
    def share(group, sel, cond):
        """The share of `group` (a mask over the images) in `sel` whose band meets `cond`."""
        return real.ci(real.bootstrap(lambda g, x: float(np.mean(cond(x[g]))) if g.any() else float("nan"), [group[sel], band[sel]]))

    out = {}
    for name, sel in (("pooled", np.ones(len(labels), bool)), ("nih", source == "nih"), ("siim", source == "siim")):
        out[name] = {"n": int(sel.sum()), "positives": int(labels[sel].sum()),
                     "clear_flagged": share(~labels, sel, lambda x: x >= 1), "clear_red": share(~labels, sel, lambda x: x >= 2),
                     "sensitivity_flagged": share(labels, sel, lambda x: x >= 1), "sensitivity_red": share(labels, sel, lambda x: x >= 2)}
    return out


def nested_segmenter(r: dict, fields: np.ndarray) -> dict:
    """Pixel threshold and minimum area chosen by mean Dice on the other folds' masked
    positives; each fold's Dice at the choice made without it."""
    pos = np.flatnonzero(r["has_mask"] & r["labels"])
    clipped = {i: r["probs"][i].astype(np.float32) * fields[i] for i in pos}
    dice = {(pt, a): np.array([evaluate.dice_iou(evaluate.clean_mask(clipped[i], pt, a), r["masks"][i])[0] for i in pos])
            for pt in SEG_PIXELS for a in SEG_AREAS}
    folds_of = r["fold"][pos]
    nested = np.zeros(len(pos))
    choices = []
    for k in range(real.N_FOLDS):
        other, here = folds_of != k, folds_of == k
        best = max(dice, key=lambda c: dice[c][other].mean())
        nested[here] = dice[best][here]
        choices.append(list(best))
    best = max(dice, key=lambda c: dice[c].mean())
    return {"n": int(len(pos)), "dice_nested": real.ci(real.bootstrap(np.mean, [nested])), "per_fold_choice": choices,
            "thresholds": {"pixel": best[0], "min_area_pixels": best[1]},
            "dice_at_release_choice": real.ci(real.bootstrap(np.mean, [dice[best]]))}


def report(work: Path, lungs_onnx: Path) -> dict:
    r = collect(work)
    labels, scores, source = r["labels"], r["scores"], r["source"]
    nih = source == "nih"
    siim_pos = scores[(source == "siim") & labels]
    dom = r["domain_scores"]
    lab_dom = np.r_[np.ones(len(siim_pos), bool), np.zeros(len(dom), bool)]
    band, per_fold = nested_bands(r)
    release = alarm_thresholds(scores[~labels])
    dom_band = variants.bands(dom, release)
    from .release import lung_fields

    fields = lung_fields(lungs_onnx, r["images"])
    out = {
        "protocol": __doc__.strip(),
        "recipe": [" ".join(s) for s in STAGES],
        "n": int(len(labels)), "positives": int(labels.sum()), "nih_n": int(nih.sum()), "nih_positives": int(labels[nih].sum()),
        "auc_pooled": real.ci(real.bootstrap(evaluate.roc_auc, [labels, scores])),
        "auc_nih": real.ci(real.bootstrap(evaluate.roc_auc, [labels[nih], scores[nih]])),
        "auc_siim_vs_siim_domain": real.ci(real.bootstrap(evaluate.roc_auc, [lab_dom, np.r_[siim_pos, dom]])),
        "siim_domain_n": int(len(dom)),
        "auc_per_fold": [round(evaluate.roc_auc(labels[r["fold"] == k], scores[r["fold"] == k]), 4) for k in range(real.N_FOLDS)],
        "budget": {"flag": FLAG_BUDGET, "alarm": ALARM_BUDGET},
        "nested": {"thresholds_per_fold": per_fold, "bands": band_report(labels, band, source)},
        "thresholds": {k: round(v, 4) for k, v in release.items()},
        "siim_domain_at_release_thresholds": {"flagged": round(float((dom_band >= 1).mean()), 4), "red": round(float((dom_band >= 2).mean()), 4),
                                              "note": "unlabelled SIIM-processed images, about one in five of them a pneumothorax"},
        "segmenter": nested_segmenter(r, fields),
    }
    (work / "report.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def compare(a: Path, b: Path) -> dict:
    """Two recipes' out-of-fold scores on the same images: each AUC and the paired bootstrap
    interval of B's gain over A (pooled and within NIH). B wins only where that interval
    lies above zero. Where B has not scored every fold yet, both are compared on the folds
    B has, and the answer names them."""
    in_a = set(scored_folds(a))
    which = [k for k in scored_folds(b) if k in in_a]
    ra, rb = collect(a, which), collect(b, which)
    held = ~np.isnan(rb["scores"])
    labels, nih = ra["labels"], ra["source"] == "nih"
    out = {"folds": which, "images": int(held.sum()), "positives": int(labels[held].sum())}
    for name, sel in (("pooled", held), ("nih", held & nih)):
        y, sa, sb = labels[sel], ra["scores"][sel], rb["scores"][sel]
        out[name] = {"a": round(evaluate.roc_auc(y, sa), 4), "b": round(evaluate.roc_auc(y, sb), 4),
                     "gain": real.ci(real.bootstrap(lambda l, x, z: evaluate.roc_auc(l, z) - evaluate.roc_auc(l, x), [y, sa, sb]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    fo = sub.add_parser("folds", help="the recipe once per fold, each held-out fold scored")
    fo.add_argument("--work", type=Path, required=True)
    fo.add_argument("--threads", type=int, default=2)
    fo.add_argument("--encoder", type=Path, help="start from this pretrained encoder (ptx_training.ssl) instead of ImageNet")
    fo.add_argument("--only", type=int, nargs="+", help="these folds only (default: all)")
    cp = sub.add_parser("compare", help="two recipes' out-of-fold AUCs and B's paired gain over A")
    cp.add_argument("a", type=Path)
    cp.add_argument("b", type=Path)
    rp = sub.add_parser("report", help="out-of-fold metrics and choices (writes WORK/report.json)")
    rp.add_argument("--work", type=Path, required=True)
    rp.add_argument("--lungs", type=Path, default=Path(__file__).resolve().parents[2] / "lungs.int8.onnx")
    args = ap.parse_args()
    if args.cmd == "folds":
        folds(args.work, args.threads, args.encoder, args.only)
    elif args.cmd == "compare":
        print(json.dumps(compare(args.a, args.b), indent=1))
    else:
        rep = report(args.work, args.lungs)
        print(json.dumps({k: rep[k] for k in ("auc_pooled", "auc_nih", "auc_siim_vs_siim_domain", "thresholds")} | {"bands": rep["nested"]["bands"]["pooled"]}, indent=1))


if __name__ == "__main__":
    main()
