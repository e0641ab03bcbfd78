"""ONNX export and int8 quantization.

    python -m ptx_training.export classifier work/classifier.pt --out-dir work/

writes, for a model NAME:
  NAME.fp32.onnx        opset 17, static 1x3x256x256, eval-mode export (Conv+BN folded), sigmoid output
  NAME.pre.onnx         after onnxruntime's quant_pre_process (shape inference, graph fusions)
  NAME.int8.onnx        QOperator format, Conv only -> QLinearConv (real integer kernels in tract), per-channel weights, depthwise Conv
                        left f32, and (but for the lung-field file) the encoder's stem and first stage
  NAME.int8-qdq.onnx    QDQ format, every Conv but that stem, per-channel weights (tract runs it in f32 with quantize/dequantize around)

The default classifier is the segmenter's score, so the release ships one file per variant
for both roles: the classifier file with its mask made an output too (`expose_mask`,
outputs "mask" then "probability"), which ptxd runs once per image.

Why Conv only: tract 0.23.9 has no QLinearConcat/QLinearAdd/QLinearSigmoid/QGemm, so a full
QOperator file does not load; Conv is where almost all the arithmetic is.
Calibration: static, MinMax, on real radiographs from the training split (never noise).
"""

import argparse
from pathlib import Path

import numpy as np

from . import INPUT_SIZE, LUNG_SIZE, data

INPUT_NAME = "image"
OUTPUT_NAMES = {"classifier": ["probability"], "segmenter": ["mask"], "lungs": ["lungs", "chest"]}


def input_size(kind: str) -> int:
    """The lung-field model reads 128 px; the classifier and segmenter 256."""
    return LUNG_SIZE if kind == "lungs" else INPUT_SIZE


def export_fp32(kind: str, checkpoint: Path, out: Path, chest: Path | None = None) -> None:
    """A classifier from a segmenter checkpoint is the segmenter's score (nets.SegmenterScore);
    the lung-field net carries the chest-or-not head (`chest`, from ptx_training.chest) as a
    second output (nets.LungsAndChest)."""
    import torch  # here, not above: expose_mask and the CI checks run without torch

    from . import nets

    ck = torch.load(checkpoint, weights_only=False)
    model = nets.build(ck.get("kind", kind), ck.get("arch", ""))
    model.load_state_dict(ck["state"])
    if kind == "classifier" and ck.get("kind") == "segmenter":
        wrapped = nets.SegmenterScore(model).eval()
    elif kind == "lungs":
        if chest is None:
            raise ValueError("the lung-field file needs its chest-or-not head: pass the file ptx_training.chest wrote")
        wrapped = nets.LungsAndChest(model, torch.load(chest, weights_only=False)).eval()
    else:
        wrapped = nets.WithSigmoid(model).eval()
    size = input_size(kind)
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        wrapped, dummy, str(out), opset_version=17, input_names=[INPUT_NAME], output_names=OUTPUT_NAMES[kind],
        do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL, dynamo=False,
    )


class RadiographReader:
    """onnxruntime CalibrationDataReader over real, unmodified training-split radiographs."""

    def __init__(self, count: int, seed: int = 7, size: int = INPUT_SIZE):
        names, images = data.radiographs(size)
        idx = [i for i, n in enumerate(names) if data.split_of(n) == "train"]
        pick = np.random.default_rng(seed).choice(idx, size=count, replace=False)
        self.batches = iter([{INPUT_NAME: data.normalize(images[i])[None]} for i in pick])

    def get_next(self):
        return next(self.batches, None)


def depthwise_convs(path: Path) -> list[str]:
    """Names of the grouped (depthwise) convolutions of an ONNX file."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def stem_convs(path: Path) -> list[str]:
    """The EfficientNet-Lite0 encoder's stem and first stage (stride 2), whose input is the
    image itself: quantized, they cost the default classifier most of its ranking (fold 0,
    out of fold: AUC 0.73 int8 against 0.89 fp32; 0.89 with these three left f32; models/README.md)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node
            if n.op_type == "Conv" and ("/encoder/stem/" in n.name or "/encoder/stages.0/" in n.name)]


def quantize(pre: Path, out: Path, fmt: str, calibration: int, size: int = INPUT_SIZE, keep_stem: bool = False) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # QOperator: tract 0.23.9 panics on a per-channel depthwise QLinearConv (an integer Sub
    # overflows while it evaluates it), so depthwise convolutions stay f32 there: they are a
    # small share of the arithmetic; the QDQ file quantizes them. With `keep_stem`, both
    # leave the encoder's stem and first stage f32 (`stem_convs`).
    exclude = (depthwise_convs(pre) if fmt == "qop" else []) + (stem_convs(pre) if keep_stem else [])
    quantize_static(
        str(pre), str(out), RadiographReader(calibration, size=size),
        quant_format=QuantFormat.QOperator if fmt == "qop" else QuantFormat.QDQ,
        # per-channel weights: per-tensor scales wreck EfficientNet's depthwise convolutions,
        # whose channels' weight ranges differ by orders of magnitude (measured on the lung
        # model: Dice 0.96 against its fp32 twin per channel, 0.58-0.63 per tensor)
        op_types_to_quantize=["Conv"], per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
    )


def export_all(kind: str, checkpoint: Path, out_dir: Path, calibration: int = 64, chest: Path | None = None) -> dict[str, Path]:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {v: out_dir / f"{kind}.{v}.onnx" for v in ("fp32", "pre", "int8", "int8-qdq")}
    export_fp32(kind, checkpoint, paths["fp32"], chest)
    quant_pre_process(str(paths["fp32"]), str(paths["pre"]), skip_symbolic_shape=True)
    # the lung-field file keeps its quantized stem: its chest-or-not head was fitted on those features
    quantize(paths["pre"], paths["int8"], "qop", calibration, input_size(kind), keep_stem=kind != "lungs")
    quantize(paths["pre"], paths["int8-qdq"], "qdq", calibration, input_size(kind), keep_stem=kind != "lungs")
    return paths


def expose_mask(score_file: Path, out: Path) -> Path:
    """The segmenter's score file (nets.SegmenterScore: sigmoid mask -> block means -> max)
    with its mask made a graph output as well: outputs "mask" (1x1xHxW) then "probability".
    A renaming, not a new computation: the mask tensor is the one the score is computed
    from, so both outputs come from one run, and they equal what the score file and the
    segmenter file exported alone give (checked by ptx_training.share)."""
    import onnx

    model = onnx.load(str(score_file))
    graph = model.graph
    sigmoids = [n for n in graph.node if n.op_type == "Sigmoid"]
    if len(sigmoids) != 1 or [o.name for o in graph.output] != ["probability"]:
        raise ValueError(f"{score_file}: not a segmenter score file (one Sigmoid, one output 'probability')")
    old = sigmoids[0].output[0]
    for node in graph.node:
        node.output[:] = ["mask" if t == old else t for t in node.output]
        node.input[:] = ["mask" if t == old else t for t in node.input]
    size = int(graph.input[0].type.tensor_type.shape.dim[-1].dim_value)
    mask = onnx.helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, [1, 1, size, size])
    for info in [v for v in graph.value_info if v.name == old]:
        graph.value_info.remove(info)
    graph.output.insert(0, mask)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="export a checkpoint to fp32 ONNX and the two int8 variants")
    ap.add_argument("kind", choices=["classifier", "segmenter", "lungs"])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--calibration", type=int, default=64, help="number of real radiographs to calibrate on")
    ap.add_argument("--chest", type=Path, help="lungs: the chest-or-not head (ptx_training.chest)")
    args = ap.parse_args()
    for variant, path in export_all(args.kind, args.checkpoint, args.out_dir, args.calibration, args.chest).items():
        print(f"{variant:9s} {path} {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
