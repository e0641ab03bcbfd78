"""From checkpoints to what ships in models/: int8 files, manifests, metrics, reference vectors.

    python -m ptx_training.release --segmenter ../work/seg.pt --lite0 ../work/cls-lite0.pt \\
        --densenet ../work/cls-densenet121.pt --lungs ../work/lungs.pt --chest ../work/chest.pt [--ptxd ../../target/release/ptxd]

Three classifiers are measured side by side on real val: the segmenter's own score
(nets.SegmenterScore, as the SIIM-ACR winners scored images), an ImageNet-initialised
EfficientNet-Lite0 classifier, and the design's DenseNet121. The default classifier is the
segmenter's score (the best there, see models/README.md); DenseNet121 ships as a variant
pipeline (densenet121.toml); the Lite0 classifier is measured, not shipped.

Every decision is made on the real validation split (`real.real_split("val")`), with the
int8 QOperator files that ptxd runs by default, through onnxruntime:
  - the classifier's operating threshold (sensitivity >= 0.90 on real val) and the lower edge
    of its indeterminate band (sensitivity >= 0.97);
  - the segmenter's pixel threshold and minimum area (mean Dice on real val's masked
    positives, masks clipped to the lung fields as ptxd does);
  - the not-a-chest-radiograph limits (`gate`: every real radiograph passes, with a margin).
Metrics come with 95% bootstrap intervals, pooled and within NIH. Synthetic metrics are
reported as what they are: a measure of the synthesiser. real-dev stays a separate check.
Writes models/{manifest.toml, densenet121.toml, metrics.json, README.md's metrics section,
reference/vectors.json} and copies the int8 files into models/.
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import INPUT_SIZE, LUNG_SIZE, MEAN, STD, data, evaluate, export, gate, real

MODELS = Path(__file__).resolve().parents[2]
VARIANTS = ("fp32", "int8", "int8-qdq")
CLS_SENSITIVITY = 0.90
CLS_INDETERMINATE_SENSITIVITY = 0.97
SEG_PIXELS = (0.3, 0.4, 0.5, 0.6, 0.7)
SEG_AREAS = (0, 25, 50, 100, 200)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ort_latency(path: Path, x: np.ndarray, runs: int = 10) -> float:
    """Median of `runs` onnxruntime runs (1 thread, default kernels) after a warm-up."""
    sess = evaluate.ort_session(path, threads=1, exact=False)
    sess.run(None, {"image": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"image": x})
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def tract_time(ptxd: Path, path: Path, x: np.ndarray, runs: int = 3) -> float | None:
    """Median tract time of one file through `ptxd bench` (1 thread), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.f32"
        inp.write_bytes(x.astype("<f4").tobytes())
        cmd = [str(ptxd), "--threads", "1", "bench", "--json", "--runs", str(runs), "--size", str(x.shape[-1]), "--input", str(inp), str(path)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"tract could not run {path.name}: {res.stderr.strip()}", file=sys.stderr)
            return None
        return json.loads(res.stdout.strip().splitlines()[-1])["median_s"]


def lung_fields(lung_onnx: Path, images_256: np.ndarray) -> np.ndarray:
    """Grown lung fields (bool, 256 grid) as ptxd computes them: the 128 px model on the
    image resized from its source, thresholded, grown by MARGIN_CELLS, upsampled."""
    from scipy import ndimage

    sess = evaluate.ort_session(lung_onnx, 2)
    out = []
    for img in images_256:
        small = data.resize_grey(Image.fromarray(img), LUNG_SIZE)
        p = gate.lung_probs(sess, small[None])[0][0] >= gate.PIXEL
        grown = ndimage.binary_dilation(p, np.ones((2 * gate.MARGIN_CELLS + 1,) * 2, bool))
        out.append(np.kron(grown, np.ones((INPUT_SIZE // LUNG_SIZE,) * 2, bool)))
    return np.stack(out)


def classifier_section(scores: dict, rval: dict, dev: dict, synth: dict) -> dict:
    """Thresholds on real val and the metrics at them; scores[split] are probabilities."""
    thr = evaluate.threshold_for_sensitivity(rval["labels"], scores["val"], CLS_SENSITIVITY)
    low = min(evaluate.threshold_for_sensitivity(rval["labels"], scores["val"], CLS_INDETERMINATE_SENSITIVITY), thr)
    val = real.classifier_report(rval["labels"], scores["val"], rval["source"], thr, scores["siim_domain"])
    val_low = real.classifier_report(rval["labels"], scores["val"], rval["source"], low, scores["siim_domain"])
    dsens, dspec = evaluate.sens_spec(dev["labels"], scores["dev"], thr)
    flagged_dev = [bool(s >= low) for s, y in zip(scores["dev"], dev["labels"]) if y]
    return {
        "thresholds": {"probability": round(float(thr), 4), "indeterminate_low": round(float(low), 4)},
        "real_val": val,
        "real_val_at_indeterminate_low": {k: val_low[k] for k in ("threshold", "sensitivity", "specificity", "sensitivity_nih", "specificity_nih", "siim_domain_flag_rate")},
        "real_dev": {"n": len(dev["labels"]), "positives": int(dev["labels"].sum()), "auc": round(evaluate.roc_auc(dev["labels"], scores["dev"]), 4),
                     "sensitivity": round(dsens, 4), "specificity": round(dspec, 4), "positives_flagged_positive_or_indeterminate": flagged_dev,
                     "scores": {n: round(float(s), 4) for n, s in zip(dev["names"], scores["dev"])}},
        "synthetic_test": {"auc": round(evaluate.roc_auc(synth["labels"], scores["synthetic"]), 4), "n": len(synth["labels"]),
                           "note": "synthetic lesions on real radiographs: a measure of the synthesiser, not of real skill"},
    }


def segmenter_section(probs: dict, fields: dict, rval: dict, dev: dict, cls_thr: float, cls_scores: np.ndarray) -> dict:
    """Pixel threshold and minimum area on real val's masked positives (lung-clipped)."""
    pos = rval["has_mask"] & rval["labels"]
    clipped = probs["val"] * fields["val"]
    best = None
    for pt in SEG_PIXELS:
        for area in SEG_AREAS:
            d = np.mean([evaluate.dice_iou(evaluate.clean_mask(p, pt, area), m)[0] for p, m in zip(clipped[pos], rval["masks"][pos])])
            if best is None or d > best[0]:
                best = (d, pt, area)
    _, pt, area = best
    val = real.segmenter_report(clipped[pos], rval["masks"][pos], pt, area)
    # outside the lungs: what share of the raw mask ptxd drops
    raw = np.stack([evaluate.clean_mask(p, pt, area) for p in probs["val"][pos]])
    outside = float((raw & ~fields["val"][pos]).sum() / max(raw.sum(), 1))
    # the segmenter as a classifier: largest lung-clipped mask component area (SIIM winners'
    # "mask present" rule) and the maximum probability
    area_score = np.array([evaluate.clean_mask(p, pt, 0).sum() for p in clipped]) / clipped[0].size
    max_score = clipped.reshape(len(clipped), -1).max(1)
    seg_cls = {name: real.classifier_report(rval["labels"], s, rval["source"], evaluate.threshold_for_sensitivity(rval["labels"], s, CLS_SENSITIVITY))
               for name, s in (("mask_area", area_score), ("max_probability", max_score))}
    # the pipeline's SIIM score on all real val images: empty prediction where the classifier is below threshold
    gated = np.where((cls_scores >= cls_thr)[:, None, None], clipped, 0.0)
    siim = [evaluate.dice_iou(evaluate.clean_mask(p, pt, area), m)[0] for p, m, y, hm in zip(gated, rval["masks"], rval["labels"], rval["has_mask"]) if hm or not y]
    dpos = dev["labels"]
    ddice = [evaluate.dice_iou(evaluate.clean_mask(p * f, pt, area), m)[0] for p, f, m in zip(probs["dev"][dpos], fields["dev"][dpos], dev["masks"][dpos])]
    return {
        "thresholds": {"pixel": pt, "min_area_pixels": area},
        "real_val_masked_positives": val,
        "share_of_raw_mask_outside_lungs": round(outside, 4),
        "as_classifier": seg_cls,
        "pipeline_siim_score_real_val": {"value": round(float(np.mean(siim)), 4), "n": len(siim),
                                         "note": "mean Dice over real val images with a known mask (SIIM positives and all negatives; NIH positives have no mask)"},
        "real_dev_dice_positives": [round(float(d), 4) for d in ddice],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segmenter", type=Path, required=True, help="the segmenter checkpoint; its score is the default classifier")
    ap.add_argument("--lite0", type=Path, required=True, help="the EfficientNet-Lite0 classifier checkpoint, measured only")
    ap.add_argument("--densenet", type=Path, required=True, help="the DenseNet121 classifier checkpoint, shipped as a variant")
    ap.add_argument("--lungs", type=Path, required=True)
    ap.add_argument("--chest", type=Path, required=True, help="the chest-or-not head for the lung-field file (ptx_training.chest)")
    ap.add_argument("--work", type=Path, default=MODELS / "work")
    ap.add_argument("--ptxd", type=Path, help="a built ptxd binary, to time the files in tract")
    args = ap.parse_args()

    kinds = {"classifier": args.segmenter, "lite0": args.lite0, "densenet121": args.densenet, "segmenter": args.segmenter, "lungs": args.lungs}
    paths = {}
    for name, ck in kinds.items():
        kind = "classifier" if name in ("densenet121", "lite0") else name
        out = args.work / name
        paths[name] = export.export_all(kind, ck, out, chest=args.chest if name == "lungs" else None)
    # the files ptxd runs by default decide everything
    rval, dev = real.real_split("val"), evaluate.real_dev()
    _, cxr = data.radiographs()
    cxr_idx, cxr_split = real.siim_domain()
    siim_val = cxr[np.random.default_rng(5).choice(cxr_idx[cxr_split == "val"], size=200, replace=False)]
    synth = evaluate.synthetic_split("test")
    sets = {"val": rval["images"], "dev": dev["images"], "siim_domain": siim_val, "synthetic": synth["images"]}

    gate_report_path = args.work / "gate.json"
    subprocess.run([sys.executable, "-m", "ptx_training.gate", "--lungs", str(paths["lungs"]["int8"]), "--out", str(gate_report_path)], check=True)
    gate_report = json.loads(gate_report_path.read_text())
    fields = {"val": lung_fields(paths["lungs"]["int8"], rval["images"]), "dev": lung_fields(paths["lungs"]["int8"], dev["images"])}

    classifiers = {}
    for name in ("classifier", "lite0", "densenet121"):
        scores = {k: evaluate.predict_onnx(paths[name]["int8"], v) for k, v in sets.items()}
        classifiers[name] = classifier_section(scores, rval, dev, synth)
        classifiers[name]["training"] = torch.load(kinds[name], weights_only=False)["history"] if name != "classifier" else "the segmenter's (below)"
        classifiers[name]["_val_scores"] = scores["val"]
        fp32 = evaluate.predict_onnx(paths[name]["fp32"], rval["images"])
        classifiers[name]["quantization"] = {"max_abs_diff_int8_vs_fp32_real_val": round(float(np.abs(fp32 - scores["val"]).max()), 4),
                                             "fp32_auc_pooled_real_val": round(evaluate.roc_auc(rval["labels"], fp32), 4)}
    cls = classifiers["classifier"]
    seg_probs = {"val": evaluate.predict_onnx(paths["segmenter"]["int8"], rval["images"]), "dev": evaluate.predict_onnx(paths["segmenter"]["int8"], dev["images"])}
    seg = segmenter_section(seg_probs, fields, rval, dev, cls["thresholds"]["probability"], cls.pop("_val_scores"))
    classifiers["densenet121"].pop("_val_scores")
    classifiers["lite0"].pop("_val_scores")
    seg["training"] = torch.load(args.segmenter, weights_only=False)["history"]
    lungs_ck = torch.load(args.lungs, weights_only=False)
    lungs = {"thresholds": gate_report["thresholds"], "gate": gate_report, "training": lungs_ck["history"],
             "val_dice": lungs_ck["history"][-1]["val_dice"], "val_names": lungs_ck["val_names"],
             "chest_head": {k: v for k, v in torch.load(args.chest, weights_only=False).items() if k not in ("mean", "std", "weight")}}

    latency = {}
    for name, p in paths.items():
        size = LUNG_SIZE if name == "lungs" else INPUT_SIZE
        x = data.normalize(data.resize_grey(Image.fromarray(rval["images"][0]), size))[None]
        latency[name] = {}
        for v in VARIANTS:
            latency[name][v] = {"onnxruntime_s": round(ort_latency(p[v], x), 4), "size_mb": round(p[v].stat().st_size / 1e6, 2),
                                "tract_s": tract_time(args.ptxd, p[v], x) if args.ptxd else None}
    files = {"classifier": "classifier", "densenet121": "classifier-densenet121", "segmenter": "segmenter", "lungs": "lungs"}
    for name, stem in files.items():  # lite0: measured, not shipped
        for v in ("int8", "int8-qdq"):
            shutil.copy(paths[name][v], MODELS / f"{stem}.{v}.onnx")
    metrics = {"released": time.strftime("%Y%m%d"), "protocol": real.__doc__.strip(), "classifier": cls, "lite0": classifiers["lite0"], "densenet121": classifiers["densenet121"],
               "segmenter": seg, "lungs": lungs, "latency": latency}
    (MODELS / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    from . import card

    card.write_manifests(metrics)
    card.write_card_metrics(metrics)
    subprocess.run([sys.executable, "-m", "ptx_training.reference", "--models-dir", str(MODELS), "--out", str(MODELS / "reference" / "vectors.json")], check=True)
    print(json.dumps({k: metrics[k]["thresholds"] for k in ("classifier", "densenet121", "segmenter", "lungs")}, indent=1))


if __name__ == "__main__":
    main()
