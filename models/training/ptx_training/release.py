"""From checkpoints to what ships in models/: int8 files, manifests, metrics, reference vectors.

    python -m ptx_training.release --segmenter ../work/cv/fold0/seg-mt.pt --cv ../work/cv/report.json \\
        [--lite0 ../work/cls-lite0.pt --densenet ../work/cls-densenet121.pt --lungs ../work/lungs.pt --chest ../work/chest.pt] \\
        [--ptxd ../../target/debug/ptxd]

The default classifier is the segmenter's own score (nets.SegmenterScore, as the SIIM-ACR
winners scored images): one network, shipped as one file per variant with two outputs, the
mask and the score (export.expose_mask), which ptxd runs once per image for both roles. Its thresholds
and its metrics come from cross-validation (`ptx_training.cv`): the recipe trained once per
patient fold, each image scored by the model that never saw it, the alarm-budget thresholds
chosen on those out-of-fold scores, their report nested. The release file is the fold-0
model (real.RELEASE_FOLD): its own numbers are the out-of-fold ones of fold 0, and it is also
checked on real-dev (10 images no choice touches), against its fp32 twin, and on synthetic
lesions (a measure of the synthesiser).

The other models keep the fixed real-val protocol they were trained under (`real.real_split`):
DenseNet121 (a variant pipeline, densenet121.toml) and the Lite0 classifier (measured, not
shipped), each thresholded at sensitivity >= 0.90 on real val, and the lung-field model with
its not-a-chest-radiograph limits (`gate`). A model whose checkpoint is not given keeps its
shipped file and its last measurements. Writes models/{manifest.toml, densenet121.toml,
metrics.json, README.md's metrics section, reference/vectors.json} and copies the int8 files
into models/.
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

from . import INPUT_SIZE, LUNG_SIZE, MEAN, STD, data, evaluate, export, gate, real, variants

MODELS = Path(__file__).resolve().parents[2]
VARIANTS = ("fp32", "int8", "int8-qdq")
CLS_SENSITIVITY = 0.90
CLS_INDETERMINATE_SENSITIVITY = 0.97


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


def default_section(paths: dict, cvrep: dict, dev: dict, synth: dict, probe: np.ndarray) -> dict:
    """The default classifier (the segmenter's score): thresholds and metrics from the
    cross-validation report, and the release file's own checks on images no choice used."""
    t = cvrep["thresholds"]
    dev_scores = evaluate.predict_onnx(paths["classifier"]["int8"], dev["images"])
    band = variants.bands(dev_scores, t)
    int8 = evaluate.predict_onnx(paths["classifier"]["int8"], probe)
    fp32 = evaluate.predict_onnx(paths["classifier"]["fp32"], probe)
    from scipy.stats import spearmanr

    return {
        "thresholds": t,
        "out_of_fold": {k: v for k, v in cvrep.items() if k not in ("segmenter", "thresholds")},
        "real_dev": {"n": len(dev["labels"]), "positives": int(dev["labels"].sum()), "auc": round(evaluate.roc_auc(dev["labels"], dev_scores), 4),
                     "bands": {n: ["negative", "indeterminate", "positive"][b] for n, b in zip(dev["names"], band)},
                     "labels": {n: bool(y) for n, y in zip(dev["names"], dev["labels"])},
                     "scores": {n: round(float(x), 4) for n, x in zip(dev["names"], dev_scores)}},
        "synthetic_test": {"auc": round(evaluate.roc_auc(synth["labels"], evaluate.predict_onnx(paths["classifier"]["int8"], synth["images"])), 4),
                           "n": len(synth["labels"]), "note": "synthetic lesions on real radiographs: a measure of the synthesiser, not of real skill"},
        "quantization": {"images": len(probe), "note": "the release's int8 file against its fp32 twin on unlabelled cxr-512/ radiographs",
                         "max_abs_diff": round(float(np.abs(int8 - fp32).max()), 4), "spearman": round(float(spearmanr(int8, fp32)[0]), 4)},
    }


def release_segmenter(paths: dict, cvrep: dict, dev: dict, dev_fields: np.ndarray, checkpoint: Path) -> dict:
    s = cvrep["segmenter"]
    pt, area = s["thresholds"]["pixel"], s["thresholds"]["min_area_pixels"]
    probs = evaluate.predict_onnx(paths["segmenter"]["int8"], dev["images"], output="mask")
    pos = dev["labels"]
    ddice = [evaluate.dice_iou(evaluate.clean_mask(p * f, pt, area), m)[0] for p, f, m in zip(probs[pos], dev_fields[pos], dev["masks"][pos])]
    return {"thresholds": s["thresholds"], "out_of_fold_masked_positives": s, "real_dev_dice_positives": [round(float(d), 4) for d in ddice],
            "training": [torch.load(checkpoint.parent / stage, weights_only=False)["history"] for stage in ("seg.pt", "seg-mt.pt")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segmenter", type=Path, required=True, help="the release's segmenter checkpoint (the fold-0 model of ptx_training.cv); its score is the default classifier")
    ap.add_argument("--cv", type=Path, required=True, help="the cross-validation report (ptx_training.cv report): thresholds and out-of-fold metrics")
    ap.add_argument("--lite0", type=Path, help="the EfficientNet-Lite0 classifier checkpoint, measured only (absent: its last measurements kept)")
    ap.add_argument("--densenet", type=Path, help="the DenseNet121 classifier checkpoint, shipped as a variant (absent: the shipped file kept)")
    ap.add_argument("--lungs", type=Path, help="the lung-field checkpoint (absent: the shipped file and its measurements kept)")
    ap.add_argument("--chest", type=Path, help="the chest-or-not head for the lung-field file (ptx_training.chest)")
    ap.add_argument("--work", type=Path, default=MODELS / "work")
    ap.add_argument("--ptxd", type=Path, help="a built ptxd binary, to time the files in tract")
    args = ap.parse_args()
    if (args.lungs is None) != (args.chest is None):
        ap.error("--lungs and --chest go together")
    previous = json.loads((MODELS / "metrics.json").read_text())
    cvrep = json.loads(args.cv.read_text())

    kinds = {"classifier": args.segmenter, "lite0": args.lite0, "densenet121": args.densenet, "lungs": args.lungs}
    kinds = {k: v for k, v in kinds.items() if v is not None}
    paths = {}
    for name, ck in kinds.items():
        kind = "classifier" if name in ("densenet121", "lite0") else name
        paths[name] = export.export_all(kind, ck, args.work / name, chest=args.chest if name == "lungs" else None)
    # the segmenter file is the score file with its mask exposed: one file, both roles
    (args.work / "segmenter").mkdir(parents=True, exist_ok=True)
    paths["segmenter"] = {v: export.expose_mask(paths["classifier"][v], args.work / "segmenter" / f"segmenter.{v}.onnx") for v in VARIANTS}
    lungs_file = paths["lungs"]["int8"] if "lungs" in paths else MODELS / "lungs.int8.onnx"
    dev = evaluate.real_dev()
    _, cxr = data.radiographs()
    probe = cxr[np.random.default_rng(11).choice(len(cxr), size=200, replace=False)]
    synth = evaluate.synthetic_split("test")
    metrics = {"released": time.strftime("%Y%m%d"), "protocol": cvrep["protocol"]}
    metrics["classifier"] = default_section(paths, cvrep, dev, synth, probe)
    metrics["classifier"]["training"] = "the segmenter's (below)"
    metrics["segmenter"] = release_segmenter(paths, cvrep, dev, lung_fields(lungs_file, dev["images"]), args.segmenter)

    # the other models keep the fixed real-val protocol they were trained under
    rval = real.real_split("val")
    cxr_idx, cxr_split = real.siim_domain()
    siim_val = cxr[np.random.default_rng(5).choice(cxr_idx[cxr_split == "val"], size=200, replace=False)]
    sets = {"val": rval["images"], "dev": dev["images"], "siim_domain": siim_val, "synthetic": synth["images"]}
    for name in ("lite0", "densenet121"):
        if name not in paths:
            metrics[name] = previous[name]
            continue
        scores = {k: evaluate.predict_onnx(paths[name]["int8"], v) for k, v in sets.items()}
        metrics[name] = classifier_section(scores, rval, dev, synth)
        metrics[name]["training"] = torch.load(kinds[name], weights_only=False)["history"]
        fp32 = evaluate.predict_onnx(paths[name]["fp32"], rval["images"])
        metrics[name]["quantization"] = {"max_abs_diff_int8_vs_fp32_real_val": round(float(np.abs(fp32 - scores["val"]).max()), 4),
                                         "fp32_auc_pooled_real_val": round(evaluate.roc_auc(rval["labels"], fp32), 4)}
    if "lungs" in paths:
        gate_report_path = args.work / "gate.json"
        subprocess.run([sys.executable, "-m", "ptx_training.gate", "--lungs", str(lungs_file), "--out", str(gate_report_path)], check=True)
        gate_report = json.loads(gate_report_path.read_text())
        lungs_ck = torch.load(args.lungs, weights_only=False)
        metrics["lungs"] = {"thresholds": gate_report["thresholds"], "gate": gate_report, "training": lungs_ck["history"],
                            "val_dice": lungs_ck["history"][-1]["val_dice"], "val_names": lungs_ck["val_names"],
                            "chest_head": {k: v for k, v in torch.load(args.chest, weights_only=False).items() if k not in ("mean", "std", "weight")}}
    else:
        metrics["lungs"] = previous["lungs"]

    latency = dict(previous.get("latency", {}))
    for name, p in paths.items():
        if name == "classifier":  # shipped inside the segmenter file, timed there
            continue
        size = LUNG_SIZE if name == "lungs" else INPUT_SIZE
        x = data.normalize(data.resize_grey(Image.fromarray(dev["images"][0]), size))[None]
        latency[name] = {}
        for v in VARIANTS:
            latency[name][v] = {"onnxruntime_s": round(ort_latency(p[v], x), 4), "size_mb": round(p[v].stat().st_size / 1e6, 2),
                                "tract_s": tract_time(args.ptxd, p[v], x) if args.ptxd else None}
    metrics["latency"] = latency
    files = {"densenet121": "classifier-densenet121", "segmenter": "segmenter", "lungs": "lungs"}
    for name, stem in files.items():  # lite0: measured, not shipped; the classifier is in the segmenter file
        if name in paths:
            for v in ("int8", "int8-qdq"):
                shutil.copy(paths[name][v], MODELS / f"{stem}.{v}.onnx")
    (MODELS / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    from . import card

    card.write_manifests(metrics)
    card.write_card_metrics(metrics)
    subprocess.run([sys.executable, "-m", "ptx_training.reference", "--models-dir", str(MODELS), "--out", str(MODELS / "reference" / "vectors.json")], check=True)
    print(json.dumps({k: metrics[k]["thresholds"] for k in ("classifier", "densenet121", "segmenter", "lungs")}, indent=1))


if __name__ == "__main__":
    main()
