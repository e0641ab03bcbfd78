"""Measure what each segmenter design costs at 256 px: GFLOP and fp32 CPU latency.

    python -m ptx_training.cost

Compares the shipped UNet++ on EfficientNet-Lite0 (slim decoder) with the seed design's
UNet++ on EfficientNet-B4 (decoder 16/32/64/128/256, as segmentation_models_pytorch's
UnetPlusPlus defaults), and the DenseNet121 classifier for scale.
"""

import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import nets


def measure(model: torch.nn.Module, runs: int = 5) -> dict:
    model.eval()
    x = torch.zeros(1, 3, 256, 256)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    params = sum(p.numel() for p in model.parameters())
    return {"gflop": round(fc.get_total_flops() / 1e9, 2), "params_m": round(params / 1e6, 2),
            "torch_fp32_s_median": round(sorted(times)[len(times) // 2], 3)}


def measure_all() -> dict:
    """The shipped segmenter, the seed design's segmenter and the classifier, on one thread."""
    torch.set_num_threads(1)
    return {"segmenter_unetpp_lite0": measure(nets.segmenter()), "seed_unetpp_b4": measure(nets.seed_design_segmenter()),
            "classifier_densenet121": measure(nets.classifier())}


def main() -> None:
    print(json.dumps(measure_all(), indent=1))


if __name__ == "__main__":
    main()
