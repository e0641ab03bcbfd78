#!/usr/bin/env python3
"""tract (through `ptxd bench`) against onnxruntime on the same model files and the same input,
in the same run, at each thread count: the ratio the performance issue is judged by.

For each role in models/manifest.toml (lungs, classifier, segmenter) and each shipped variant,
the input tensor is made once from a real radiograph, exactly as the manifest's preprocess
says (Pillow's bilinear resize, scale, mean, std, grey repeated into 3 channels), written as
raw f32, and handed to both runtimes: `ptxd --threads T bench --json --input FILE` times tract
(median of --runs after one warm-up), onnxruntime is timed the same way in this process. The
two runs alternate per file, so a busy machine slows both. The largest difference between the
two outputs is printed as a check that both computed the same thing.

Usage: python benches/onnxruntime_ratio.py [--runs 10] [--threads 1,2] [--variants int8,int8-qdq]
           [--image PNG] [--ptxd target/release/ptxd] [--json]
Needs numpy, pillow and onnxruntime (the CI venv has them: test.sh).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = (
    ROOT.parent
    / "shared/data/real-dev/images/1.2.276.0.7230010.3.1.4.8323329.1080.1517875166.235178.png"
)


def tensor(image: Path, pre: dict) -> np.ndarray:
    """The manifest's preprocess, as ptxd's preprocess.rs does it (checked by the reference vectors)."""
    grey = Image.open(image).convert("L").resize((pre["width"], pre["height"]), Image.BILINEAR)
    x = np.asarray(grey, dtype=np.float32) / np.float32(pre["scale"])
    x = (x - np.float32(pre["mean"])) / np.float32(pre["std"])
    return np.ascontiguousarray(np.repeat(x[None, None], pre["channels"], axis=1), dtype=np.float32)


def time_tract(ptxd: Path, model: Path, size: int, inp: Path, out: Path, threads: int, runs: int) -> float:
    cmd = [str(ptxd), "--threads", str(threads), "bench", "--json", "--runs", str(runs),
           "--size", str(size), "--input", str(inp), "--output", str(out), str(model)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["median_s"]


def time_ort(model: Path, x: np.ndarray, threads: int, runs: int) -> tuple[float, np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    out = session.run(None, feed)[0]  # warm-up, as ptxd bench does
    times = []
    for _ in range(max(runs, 1)):
        t = time.perf_counter()
        out = session.run(None, feed)[0]
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default=None, help="comma-separated; default: every shipped variant")
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--ptxd", type=Path, default=ROOT / "target/release/ptxd")
    ap.add_argument("--manifest", type=Path, default=ROOT / "models/manifest.toml")
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    args = ap.parse_args()
    manifest = tomllib.loads(args.manifest.read_text())
    threads = [int(t) for t in args.threads.split(",")]
    wanted = set(args.variants.split(",")) if args.variants else None
    rows = []
    timed = set()  # a file two roles share (one run gives both outputs) is timed once
    with tempfile.TemporaryDirectory() as tmp:
        for role in ("lungs", "classifier", "segmenter"):
            section = manifest[role]
            pre = section["preprocess"]
            x = tensor(args.image, pre)
            inp, out = Path(tmp) / f"{role}.f32", Path(tmp) / "out.f32"
            x.tofile(inp)
            for variant, spec in section["variants"].items():
                if (wanted is not None and variant not in wanted) or spec["file"] in timed:
                    continue
                timed.add(spec["file"])
                model = args.manifest.parent / spec["file"]
                for t in threads:
                    tract_s = time_tract(args.ptxd, model, pre["width"], inp, out, t, args.runs)
                    ort_s, ort_out = time_ort(model, x, t, args.runs)
                    tract_out = np.fromfile(out, dtype=np.float32)
                    diff = float(np.max(np.abs(tract_out - ort_out.reshape(-1))))
                    rows.append({"role": role, "variant": variant, "file": spec["file"], "threads": t,
                                 "tract_ms": tract_s * 1e3, "onnxruntime_ms": ort_s * 1e3,
                                 "ratio": tract_s / ort_s, "max_abs_diff": diff})
                    r = rows[-1]
                    if args.json:
                        print(json.dumps(r), flush=True)
                    else:
                        print(f"{r['file']:<24} {t} thread(s): tract {r['tract_ms']:8.1f} ms  "
                              f"onnxruntime {r['onnxruntime_ms']:7.1f} ms  tract/onnxruntime "
                              f"{r['ratio']:5.1f}x  max|diff| {diff:.4f}", flush=True)
    if not args.json:
        for variant in sorted({r["variant"] for r in rows}):
            for t in threads:
                sel = [r for r in rows if r["variant"] == variant and r["threads"] == t]
                total_tract = sum(r["tract_ms"] for r in sel)
                total_ort = sum(r["onnxruntime_ms"] for r in sel)
                print(f"every model of a positive image, {variant}, {t} thread(s): tract {total_tract:.0f} ms, "
                      f"onnxruntime {total_ort:.0f} ms, {total_tract / total_ort:.1f}x")
        for variant in sorted({r["variant"] for r in rows}):
            if len(threads) > 1:
                one = {r["file"]: r["tract_ms"] for r in rows if r["variant"] == variant and r["threads"] == threads[0]}
                many = {r["file"]: r["tract_ms"] for r in rows if r["variant"] == variant and r["threads"] == threads[-1]}
                gains = ", ".join(f"{f} {one[f] / many[f]:.2f}x" for f in one)
                print(f"tract {threads[-1]} threads against {threads[0]}, {variant}: {gains}")


if __name__ == "__main__":
    main()
