"""An experiment, not a release step: how much of the default classifier's real-val skill its
int8 file loses, and whether another calibration of the same QOperator export wins it back.

    python -m ptx_training.calibration --work ../work/release/classifier

reads `classifier.fp32.onnx` and `classifier.pre.onnx` that `make release` left in --work,
quantizes the pre-processed graph as `export.quantize` does (QLinearConv, per-channel weights,
depthwise convolutions left f32) with each calibration below, and prints for each file: the
real-val AUCs (pooled, within NIH, SIIM vs SIIM-domain) and its fidelity to the fp32 twin on
200 real *training* radiographs (Spearman rank correlation of the scores, median |logit
difference|), a number that uses no label and no val image.

With --sensitivity, instead: the shipped calibration with one encoder stage at a time left in
f32 (not quantized), to find where the int8 file loses its fidelity.

Why it matters: with 13 NIH positives in val, a calibration picked for its val AUC would be
picked for noise; fidelity is the label-free yardstick, and the spread of the AUCs across
calibrations says how much of a difference is only quantization noise.
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from . import data, evaluate, export, real

# (name, calibration images, method, percentile)
CALIBRATIONS = [
    ("MinMax, 64 cxr-512 (shipped)", "cxr", "minmax", None),
    ("MinMax, 64 cxr-512 + 64 real train", "mixed", "minmax", None),
    ("percentile 99.9, 64 cxr-512", "cxr", "percentile", 99.9),
    ("percentile 99.99, 64 cxr-512", "cxr", "percentile", 99.99),
    ("percentile 99.9, mixed", "mixed", "percentile", 99.9),
    ("percentile 99.99, mixed", "mixed", "percentile", 99.99),
    ("percentile 99.999, mixed", "mixed", "percentile", 99.999),
]


class Reader:
    def __init__(self, images):
        self.batches = iter([{export.INPUT_NAME: data.normalize(i)[None]} for i in images])

    def get_next(self):
        return next(self.batches, None)


def calibration_images(which: str) -> np.ndarray:
    names, cxr = data.radiographs()
    train = [i for i, n in enumerate(names) if data.split_of(n) == "train"]
    images = cxr[np.random.default_rng(7).choice(train, size=64, replace=False)]  # as export.RadiographReader
    if which == "mixed":
        rtrain = real.real_split("train")["images"]
        images = np.concatenate([images, rtrain[np.random.default_rng(8).choice(len(rtrain), 64, replace=False)]])
    return images


# encoder stages by their node-name prefix in the exported graph (nets.EfficientNetLite0)
STAGES = {"stem + stage 0 (stride 2)": ("/segmenter/encoder/stem", "/segmenter/encoder/stages.0/")}
STAGES |= {f"stage {k}": (f"/segmenter/encoder/stages.{k}/",) for k in range(1, 7)}


def quantize(pre: Path, out: Path, images: np.ndarray, method: str, percentile: float | None,
             keep_f32: tuple[str, ...] = ()) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(pre), str(out), Reader(images), quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax,
        nodes_to_exclude=export.depthwise_convs(pre) + list(keep_f32), extra_options={"CalibPercentile": percentile} if percentile else {},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("../work/release/classifier"))
    ap.add_argument("--sensitivity", action="store_true", help="one encoder stage at a time left f32 (shipped calibration)")
    args = ap.parse_args()
    rval = real.real_split("val")
    _, cxr = data.radiographs()
    idx, split = real.siim_domain()
    siim = cxr[np.random.default_rng(5).choice(idx[split == "val"], size=200, replace=False)]
    fid_images = real.real_split("train")["images"][:200]
    fp32 = args.work / "classifier.fp32.onnx"
    fp32_fid = evaluate.predict_onnx(fp32, fid_images).ravel()
    logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))

    def row(name: str, path: Path) -> None:
        s = evaluate.predict_onnx(path, fid_images).ravel()
        rep = real.classifier_report(rval["labels"], evaluate.predict_onnx(path, rval["images"]).ravel(), rval["source"], 0.5,
                                     evaluate.predict_onnx(path, siim).ravel())
        print(f"| {name} | {spearmanr(s, fp32_fid)[0]:.2f} | {np.median(np.abs(logit(s) - logit(fp32_fid))):.3f} | "
              f"{rep['auc_pooled']['value']:.3f} | {rep['auc_nih']['value']:.3f} | {rep['auc_siim_vs_siim_domain']['value']:.3f} |", flush=True)

    print("| file | Spearman vs fp32 | median abs logit diff | AUC pooled | AUC NIH | AUC SIIM vs domain |\n|---|---|---|---|---|---|")
    row("fp32", fp32)
    if args.sensitivity:
        import onnx

        pre = args.work / "classifier.pre.onnx"
        convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        for i, (name, prefixes) in enumerate(STAGES.items()):
            keep = [c for c in convs if c.startswith(prefixes)]
            out = args.work / f"sensitivity-{i}.onnx"
            quantize(pre, out, calibration_images("cxr"), "minmax", None, keep_f32=keep)
            row(f"{name} left f32 ({len(keep)} Conv)", out)
        return
    for name, which, method, pct in CALIBRATIONS:
        out = args.work / f"calibration-{which}-{method}-{pct}.onnx"
        quantize(args.work / "classifier.pre.onnx", out, calibration_images(which), method, pct)
        row(name, out)


if __name__ == "__main__":
    main()
