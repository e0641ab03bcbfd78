"""One file for the classifier and the segmenter, made from the shipped score files.

    python -m ptx_training.share [--models-dir ..]

The default classifier is the segmenter's network scoring its own mask, so the release ships
one file per variant for both roles (export.expose_mask: outputs "mask" then "probability")
and ptxd runs it once per image. `release` makes it from a fresh export; this makes it from
the files already in models/ (classifier.<v>.onnx, the score only, and segmenter.<v>.onnx,
the mask only), no retraining, and checks through onnxruntime on the reference inputs that
the new file's two outputs are bit-identical to the two files it replaces. It writes
segmenter.<v>.onnx and removes classifier.<v>.onnx; then `make card` writes the manifests and
`python -m ptx_training.reference` the vectors.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from . import data, export, phantom, reference
from .evaluate import ort_session

MODELS = Path(__file__).resolve().parents[2]
VARIANTS = ("int8", "int8-qdq")


def outputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort_session(path, 2)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))


def inputs() -> list[np.ndarray]:
    """The phantoms and the real reference radiographs, as the 256 px models read them."""
    images = [data.resize_grey(__import__("PIL.Image").Image.fromarray(phantom.make(512, **kw)))
              for kw in reference.PHANTOMS.values()]
    images += [data.resize_grey(reference.grey_image(data.data_dir() / rel)) for rel in reference.REAL_INPUTS]
    return [data.normalize(im)[None] for im in images]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", type=Path, default=MODELS)
    args = ap.parse_args()
    xs = inputs()
    for v in VARIANTS:
        score, mask_only = args.models_dir / f"classifier.{v}.onnx", args.models_dir / f"segmenter.{v}.onnx"
        with tempfile.TemporaryDirectory() as tmp:
            shared = export.expose_mask(score, Path(tmp) / "shared.onnx")
            for x in xs:
                got = outputs(shared, x)
                assert list(got) == ["mask", "probability"], list(got)
                assert np.array_equal(got["probability"], outputs(score, x)["probability"]), f"{v}: the score moved"
                assert np.array_equal(got["mask"], outputs(mask_only, x)["mask"]), f"{v}: the mask moved"
            mask_only.write_bytes(shared.read_bytes())
        score.unlink()
        print(f"{mask_only}: mask and probability, bit-identical to the two files on {len(xs)} inputs; {score.name} removed")


if __name__ == "__main__":
    main()
