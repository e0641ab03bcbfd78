"""From two checkpoints to what ships in models/: int8 files, manifest, metrics, reference vectors.

    python -m ptx_training.release --classifier work/classifier.pt --segmenter work/segmenter.pt

Steps: export + quantize both models (export.py); run every variant through onnxruntime on
the synthetic val/test splits and real-dev; choose operating thresholds on val only; compare
int8 with its fp32 twin (max abs output difference, metric drop); time each file in
onnxruntime and, when a built `ptxd` binary is given, in tract; copy the int8 files into
models/; write models/metrics.json, models/manifest.toml and models/reference/vectors.json.
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

from . import INPUT_SIZE, MEAN, STD, cost, data, evaluate, export

MODELS = Path(__file__).resolve().parents[2]
VARIANTS = ("fp32", "int8", "int8-qdq")
CLS_SENSITIVITY = 0.90  # operating point: sensitivity on synthetic val
CLS_INDETERMINATE_SENSITIVITY = 0.97  # lower edge of the "indeterminate" band


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ort_latency(path: Path, x: np.ndarray, runs: int = 10) -> float:
    """Median of `runs` onnxruntime runs (1 thread) after a warm-up run, on its default (fast)
    int8 kernels: this is the peer runtime's speed, not a reference output."""
    sess = evaluate.ort_session(path, threads=1, exact=False)
    sess.run(None, {"image": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"image": x})
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def tract_check(ptxd: Path, path: Path, inputs: list[np.ndarray], runs: int = 10) -> dict:
    """Time a file in tract through `ptxd bench` (median of `runs` on the first input, 1 thread)
    and compare tract's outputs with onnxruntime's on every input."""
    sess = evaluate.ort_session(path, threads=1)
    median, worst = None, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.f32", Path(tmp) / "out.f32"
        for k, x in enumerate(inputs):
            inp.write_bytes(x.astype("<f4").tobytes())
            cmd = [str(ptxd), "--threads", "1", "bench", "--json", "--runs", str(runs if k == 0 else 1), "--input", str(inp), "--output", str(out), str(path)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(f"tract could not run {path.name}: {res.stderr.strip()}", file=sys.stderr)
                return {"tract_s": None, "max_abs_diff_tract_vs_onnxruntime": None}
            if k == 0:
                median = json.loads(res.stdout.strip().splitlines()[-1])["median_s"]
            y = np.fromfile(out, "<f4")
            worst = max(worst, float(np.abs(y - sess.run(None, {"image": x})[0].reshape(-1)).max()))
    return {"tract_s": median, "max_abs_diff_tract_vs_onnxruntime": worst}


def history_chain(path: Path) -> list:
    """Training history of a checkpoint and of every checkpoint it was fine-tuned from (--init)."""
    ck = torch.load(path, weights_only=True)
    init = ck["args"].get("init")
    prior = history_chain(Path(init)) if init not in (None, "None") and Path(init).exists() else []
    return prior + [dict(h, checkpoint=path.name) for h in ck["history"]]


def classifier_report(preds: dict, splits: dict) -> dict:
    """Thresholds (on val) and metrics from `preds[variant][split]`, the classifier's probabilities."""
    rep = {"variants": preds}
    val_ref = rep["variants"]["int8"]["val"]
    labels = {name: s["labels"] for name, s in splits.items()}
    thr = evaluate.threshold_for_sensitivity(labels["val"], val_ref, CLS_SENSITIVITY)
    low = evaluate.threshold_for_sensitivity(labels["val"], val_ref, CLS_INDETERMINATE_SENSITIVITY)
    rep["thresholds"] = {"probability": thr, "indeterminate_low": min(low, thr)}
    metrics = {}
    for v in VARIANTS:
        metrics[v] = {}
        for name in ("test", "real_dev"):
            p = rep["variants"][v][name]
            sens, spec = evaluate.sens_spec(labels[name], p, thr)
            metrics[v][name] = {"auc": evaluate.roc_auc(labels[name], p), "sensitivity": sens, "specificity": spec,
                                "n": int(len(p)), "positives": int(labels[name].sum())}
        metrics[v]["max_abs_diff_vs_fp32"] = float(max(np.abs(rep["variants"][v][n] - rep["variants"]["fp32"][n]).max() for n in splits))
    rep["metrics"] = metrics
    rep["real_dev_scores"] = {n: float(p) for n, p in zip(splits["real_dev"]["names"], rep["variants"]["int8"]["real_dev"])}
    del rep["variants"]  # the raw scores stay out of metrics.json
    return rep


def segmenter_report(paths: dict, splits: dict, cls_scores: dict, cls_threshold: float) -> dict:
    probs = {v: {name: evaluate.predict_onnx(paths[v], s["images"]) for name, s in splits.items()} for v in VARIANTS}
    # Thresholds chosen on val (all images, segmenter alone) by SIIM's mean Dice.
    best = None
    for pt in (0.3, 0.4, 0.5, 0.6, 0.7):
        for area in (0, 10, 25, 50, 100):
            s = evaluate.segmentation_metrics(probs["int8"]["val"], splits["val"], pt, area)["siim_dice_all"]
            if best is None or s > best[0]:
                best = (s, pt, area)
    _, pt, area = best
    metrics = {}
    for v in VARIANTS:
        metrics[v] = {}
        for name in ("test", "real_dev"):
            m = evaluate.segmentation_metrics(probs[v][name], splits[name], pt, area)
            # The pipeline: the segmenter's mask counts only where the classifier alerted.
            gated = np.where((cls_scores[name] >= cls_threshold)[:, None, None], probs[v][name], 0.0)
            m["pipeline_siim_dice_all"] = evaluate.segmentation_metrics(gated, splits[name], pt, area)["siim_dice_all"]
            metrics[v][name] = m | {"n": int(len(probs[v][name])), "positives": int(splits[name]["labels"].sum())}
        metrics[v]["max_abs_diff_vs_fp32"] = float(max(np.abs(probs[v][n] - probs["fp32"][n]).max() for n in splits))
    return {"thresholds": {"pixel": pt, "min_area_pixels": area}, "metrics": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", type=Path)
    ap.add_argument("--segmenter", type=Path)
    ap.add_argument("--work", type=Path, default=MODELS / "work")
    ap.add_argument("--ptxd", type=Path, help="a built ptxd binary, to time the files in tract")
    ap.add_argument("--notes", type=Path, help="json with training notes (label-noise experiment etc.) to record")
    ap.add_argument("--manifest-only", action="store_true",
                    help="rewrite manifest.toml and the card's metrics from the existing metrics.json (no export)")
    args = ap.parse_args()
    if not args.manifest_only and not (args.classifier and args.segmenter):
        ap.error("--classifier and --segmenter checkpoints are needed (or --manifest-only)")
    if args.manifest_only:
        metrics = json.loads((MODELS / "metrics.json").read_text())
        write_manifest(metrics, args)
        write_card_metrics(metrics)
        return

    splits = {"val": evaluate.synthetic_split("val"), "test": evaluate.synthetic_split("test"), "real_dev": evaluate.real_dev()}
    paths = {k: export.export_all(k, getattr(args, k), args.work) for k in ("classifier", "segmenter")}
    cls_preds = {v: {n: evaluate.predict_onnx(paths["classifier"][v], s["images"]) for n, s in splits.items()} for v in VARIANTS}
    cls = classifier_report(cls_preds, splits)
    seg = segmenter_report(paths["segmenter"], splits, cls_preds["int8"], cls["thresholds"]["probability"])

    # Real radiographs (val split, unmodified) as the timing and comparison inputs.
    probe = [data.normalize(img)[None] for img in splits["val"]["images"][1:7:2]]
    latency = {}
    for kind in ("classifier", "segmenter"):
        latency[kind] = {}
        for v in VARIANTS:
            p = paths[kind][v]
            latency[kind][v] = {"onnxruntime_s": ort_latency(p, probe[0]), "size_mb": round(p.stat().st_size / 1e6, 2)}
            latency[kind][v] |= tract_check(args.ptxd, p, probe) if args.ptxd else {"tract_s": None, "max_abs_diff_tract_vs_onnxruntime": None}
    for kind in ("classifier", "segmenter"):
        for v in ("int8", "int8-qdq"):
            shutil.copy(paths[kind][v], MODELS / f"{kind}.{v}.onnx")

    history = {k: history_chain(getattr(args, k)) for k in ("classifier", "segmenter")}
    notes = json.loads(args.notes.read_text()) if args.notes else {}
    design_cost = cost.measure_all()
    metrics = {"released": time.strftime("%Y%m%d"), "classifier": cls, "segmenter": seg, "latency": latency, "design_cost": design_cost, "training_history": history, "notes": notes,
               "data": {"val": len(splits["val"]["names"]), "test": len(splits["test"]["names"]), "real_dev": len(splits["real_dev"]["names"])}}
    (MODELS / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_manifest(metrics, args)
    write_card_metrics(metrics)
    print(json.dumps({k: metrics[k] for k in ("classifier", "segmenter", "latency")}, indent=1))


def write_card_metrics(m: dict) -> None:
    """Replace the generated metrics section of models/README.md (between its markers)."""
    card = MODELS / "README.md"
    begin, end = "<!-- metrics:begin (generated by ptx_training.release) -->", "<!-- metrics:end -->"
    cls, seg, lat = m["classifier"], m["segmenter"], m["latency"]
    d = m["data"]
    lines = [begin, "", f"Classifier at its operating threshold {cls['thresholds']['probability']:.3f} "
             f"(indeterminate band from {cls['thresholds']['indeterminate_low']:.3f}):", "",
             "| file | data | n (pos) | ROC AUC | sensitivity | specificity |", "|---|---|---|---|---|---|"]
    for v in VARIANTS:
        for name, label in (("test", f"synthetic test ({d['test']} radiographs, half with a synthetic lesion)"), ("real_dev", "real-dev (10 real, labelled)")):
            r = cls["metrics"][v][name]
            lines.append(f"| {v} | {label} | {r['n']} ({r['positives']}) | {fmt(r['auc'])} | {fmt(r['sensitivity'])} | {fmt(r['specificity'])} |")
    lines += ["", f"Segmenter at pixel threshold {seg['thresholds']['pixel']} and minimum area {seg['thresholds']['min_area_pixels']} px (256 grid):", "",
              "| file | data | Dice (positives) | IoU (positives) | SIIM score, segmenter alone | SIIM score, gated by the classifier |", "|---|---|---|---|---|---|"]
    for v in VARIANTS:
        for name, label in (("test", "synthetic test"), ("real_dev", "real-dev (3 positives)")):
            r = seg["metrics"][v][name]
            lines.append(f"| {v} | {label} | {fmt(r['dice_pos'])} | {fmt(r['iou_pos'])} | {fmt(r['siim_dice_all'])} | {fmt(r['pipeline_siim_dice_all'])} |")
    lines += ["", "int8 against its fp32 twin, largest difference of any single output value (a probability, or one mask pixel) "
              "over val, test and real-dev; the metric drops in the tables above are what it costs: "
              f"classifier {fmt(cls['metrics']['int8']['max_abs_diff_vs_fp32'])} (QDQ {fmt(cls['metrics']['int8-qdq']['max_abs_diff_vs_fp32'])}), "
              f"segmenter {fmt(seg['metrics']['int8']['max_abs_diff_vs_fp32'])} (QDQ {fmt(seg['metrics']['int8-qdq']['max_abs_diff_vs_fp32'])}).", "",
              "Latency on the development machine (x86-64 AMD EPYC, 2 cores, no other work running; 1 thread; median of 10 runs on a real radiograph). The last column is the largest difference of any single output value over 3 real radiographs (for the segmenter, single pixels near the quantization steps):", "",
              "| model | file | MB | onnxruntime s | tract s | tract / onnxruntime | max abs diff, tract vs onnxruntime |", "|---|---|---|---|---|---|---|"]
    for kind in ("classifier", "segmenter"):
        for v in VARIANTS:
            r = lat[kind][v]
            ratio = f"{r['tract_s'] / r['onnxruntime_s']:.1f}x" if r["tract_s"] else "not measured"
            diff = r["max_abs_diff_tract_vs_onnxruntime"]
            lines.append(f"| {kind} | {v} | {r['size_mb']} | {r['onnxruntime_s']:.3f} | {fmt(r['tract_s']) if r['tract_s'] else '-'} | {ratio} | {fmt(diff) if diff is not None else '-'} |")
    dc = m["design_cost"]
    lines += ["", "Design cost at 256 px (FLOP = 2 x multiply-adds; torch fp32, 1 thread, median of 5): "
              + "; ".join(f"{k} {v['gflop']} GFLOP, {v['params_m']} M parameters, {v['torch_fp32_s_median']} s" for k, v in dc.items()) + "."]
    notes = m.get("notes") or {}
    if notes:
        lines += ["", "Training notes recorded with this release:", ""] + [f"- {k}: {v}" for k, v in notes.items()]
    lines += ["", end]
    text = card.read_text()
    if begin in text and end in text:
        text = text[: text.index(begin)] + "\n".join(lines) + text[text.index(end) + len(end):]
    else:
        text += "\n" + "\n".join(lines) + "\n"
    card.write_text(text)


def fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"


def write_manifest(m: dict, args) -> None:
    """models/manifest.toml, generated: every number in it comes from metrics.json."""
    cls, seg, lat = m["classifier"], m["segmenter"], m["latency"]

    def variants(kind: str, tolerance: dict) -> str:
        out = []
        for v, fmt_name, note in (
            ("int8", "ONNX opset 17, int8 QOperator: Conv as QLinearConv (u8 activations, s8 weights, per-tensor), other ops f32",
             "real integer convolution kernels in tract (NEON on aarch64); the default"),
            ("int8-qdq", "ONNX opset 17, int8 QDQ around Conv (u8 activations, s8 weights, per-tensor)",
             "tract computes it in f32 between quantize/dequantize pairs: same int8 numerics, no integer speed-up"),
        ):
            f = MODELS / f"{kind}.{v}.onnx"
            out.append(f'[{kind}.variants.{v}]\nfile = "{f.name}"\nsha256 = "{sha256(f)}"\nformat = "{fmt_name}"\nnote = "{note}"\ntolerance = {tolerance[v]}\n')
        out.insert(0, "# tolerance: the largest difference allowed between tract's and onnxruntime's outputs on this file\n"
                      "# (classifier: probability; segmenter: 16x16 block means of the mask), about twice the worst\n"
                      "# measured on JPEG inputs, whose decoders differ by a grey level here and there; the tests\n"
                      "# hold lossless PNG inputs to a fifth of it.\n")
        return "\n".join(out)

    def metric_lines(d: dict) -> str:
        return "\n".join(f"{k} = {fmt(v) if isinstance(v, float) else v}" for k, v in d.items() if not isinstance(v, dict))

    pre = f'''resize = "pil-bilinear"
width = {INPUT_SIZE}
height = {INPUT_SIZE}
scale = 255.0
mean = {MEAN}
std = {STD}
channels = 3
description = "decode to 8-bit grey (MONOCHROME1 inverted, VOI window applied); resize the whole image to {INPUT_SIZE}x{INPUT_SIZE} with Pillow's BILINEAR (antialiased triangle filter, aspect ratio not kept: training images are square); x/255; (x - {MEAN}) / {STD}; the grey plane repeated into 3 channels, NCHW"'''
    def io_sections(kind: str, output: str, shape: list, meaning: str) -> str:
        return (f'[{kind}.input]\nname = "image"\nshape = [1, 3, {INPUT_SIZE}, {INPUT_SIZE}]\nlayout = "NCHW"\n\n'
                f'[{kind}.output]\nname = "{output}"\nshape = {shape}\nmeaning = "{meaning}"\n\n[{kind}.preprocess]\n{pre}\n')

    released = m["released"]
    train_data = ("3,205 unlabelled real radiographs (SIIM-ACR stage-2 test images, NIH ChestX-ray14, 512 px JPEG) split 80/10/10 by id hash; "
                  "positives synthesised with 2,365 real SIIM stage-1 pneumothorax mask shapes split the same way; real-dev (10 real labelled images) for evaluation only")
    text = f'''# Generated by models/training (python -m ptx_training.release); do not edit by hand.
# Every number comes from models/metrics.json, measured by that same run.
schema = 1

[classifier]
version = "ptx-cls-densenet121-int8-{released}"
architecture = "DenseNet121 (torchvision, random init), 1 logit + sigmoid"
# Default: the QOperator file, whose QLinearConv runs tract's integer kernels (NEON on
# aarch64, the boards ptxd is for). On the x86 development machine it is slower than the fp32
# twin (see metrics.json latency); it has not yet been timed on a board: board profiles may
# choose int8-qdq where that measures faster. Both are int8 files with the same numerics.
default_variant = "int8"

{variants("classifier", {"int8": 0.03, "int8-qdq": 0.03})}
{io_sections("classifier", "probability", [1, 1], "probability that the radiograph shows a pneumothorax (0..1)")}
[classifier.thresholds]
# Chosen on the synthetic val split only: `probability` is the highest threshold reaching
# sensitivity {CLS_SENSITIVITY} there (a missed alert is the failure users fear most);
# scores in [indeterminate_low, probability) are reported as "indeterminate: have it read",
# indeterminate_low being the threshold reaching sensitivity {CLS_INDETERMINATE_SENSITIVITY}.
probability = {cls["thresholds"]["probability"]:.4f}
indeterminate_low = {cls["thresholds"]["indeterminate_low"]:.4f}

[classifier.metrics.synthetic_test]
{metric_lines(cls["metrics"]["int8"]["test"])}

[classifier.metrics.real_dev]
# 10 real labelled radiographs (3 positive): far too few for any confidence.
{metric_lines(cls["metrics"]["int8"]["real_dev"])}

[classifier.metrics.quantization]
# largest difference of any single output over val, test and real-dev; the metric drop is what it costs
max_abs_diff_int8_vs_fp32 = {fmt(cls["metrics"]["int8"]["max_abs_diff_vs_fp32"])}
fp32_synthetic_test_auc = {fmt(cls["metrics"]["fp32"]["test"]["auc"])}
int8_qdq_synthetic_test_auc = {fmt(cls["metrics"]["int8-qdq"]["test"]["auc"])}

[classifier.training]
command = "cd models/training && make classifier"
data = "{train_data}"

[segmenter]
version = "ptx-seg-unetpp-effnetlite0-int8-{released}"
architecture = "UNet++ (nested dense skips, decoder 16/24/32/48/64) on EfficientNet-Lite0 (no SE, ReLU6), random init, 1-channel sigmoid"
# Default as for the classifier; on x86 the QDQ file is the faster of the two in tract.
default_variant = "int8"

{variants("segmenter", {"int8": 0.05, "int8-qdq": 0.05})}
{io_sections("segmenter", "mask", [1, 1, INPUT_SIZE, INPUT_SIZE], f"per-pixel probability of pneumothorax on the {INPUT_SIZE}x{INPUT_SIZE} grid (resize back to the input image)")}
[segmenter.thresholds]
# Chosen on the synthetic val split by SIIM-ACR's mean Dice over all images (a grid of
# pixel thresholds x minimum component areas): components smaller than min_area_pixels (on
# the {INPUT_SIZE} grid) are dropped as noise.
pixel = {seg["thresholds"]["pixel"]}
min_area_pixels = {seg["thresholds"]["min_area_pixels"]}

[segmenter.metrics.synthetic_test]
{metric_lines(seg["metrics"]["int8"]["test"])}

[segmenter.metrics.real_dev]
{metric_lines(seg["metrics"]["int8"]["real_dev"])}

[segmenter.metrics.quantization]
# worst single mask pixel (one near the threshold flipping) over val, test and real-dev; compare the Dice drop
max_abs_diff_int8_vs_fp32 = {fmt(seg["metrics"]["int8"]["max_abs_diff_vs_fp32"])}
fp32_synthetic_test_dice_pos = {fmt(seg["metrics"]["fp32"]["test"]["dice_pos"])}

[segmenter.training]
command = "cd models/training && make segmenter"
data = "{train_data}"
'''
    (MODELS / "manifest.toml").write_text(text)


if __name__ == "__main__":
    main()
