"""The chest-or-not head: does this image look like a frontal chest radiograph at all?

    python -m ptx_training.chest --lungs ../work/lungs.pt --out ../work/chest.pt

The lung-field net's encoder (EfficientNet-Lite0, ImageNet weights fine-tuned on lung fields)
already runs on every image. Its five stages, each averaged over the image (512 numbers,
`nets.pooled_features`), feed a logistic regression: chest radiograph or not. It ships inside
the lung-field file as a second output (`nets.LungsAndChest`), so it costs no extra pass.

What it learns from, and what is held out (so the rates in gate.py measure something):
- **Chest radiographs**: only `cxr-512/` (SIIM processing), plus copies with the changes a
  digitizer or a viewer makes (gamma, contrast, a left-right flip, a small rotation or zoom,
  noise). Every other real source (NIH images in `real-labelled/`, Montgomery and Shenzhen in
  `lungs/`, `real-dev/`, the DICOM files) is never seen here: gate.py measures the false-
  refusal rate on them.
- **Not chest radiographs**: images drawn here (noise, gradients, bars, checkers and stripes,
  CT-like ellipse slices, lines, boxes and letters), 180 of scikit-image's 200 LFW face
  photographs, and the project's own chest phantoms (`phantom.make`, seeds 100-399). The
  phantoms are drawings made to look like a chest film; the demo and the tests use them, and
  ptxd must not read them as radiographs (unlearned, the first fit let all of them through and
  the classifier called the clear ones positive). Their refusal in gate.py (seeds 1-3) is
  therefore by construction, not a measure of anything. The catch rate is measured on what is
  not used here: scikit-image's other photographs, its Shepp-Logan phantom, pydicom's CT and MR
  slices, the first 20 faces, and vivid's test patterns as vivid draws them.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from . import LUNG_SIZE, data, nets, phantom

# LFW faces 0..HELD_OUT_FACES-1 are kept for measuring (gate.non_chest), the rest train.
HELD_OUT_FACES = 20
# Regularisation of the logistic regression (sklearn's C), chosen by held-out real sources'
# lowest score in the first fit (C 0.01, 0.1, 1: lowest real score 0.04, 0.17, 0.72).
C = 1.0


def drawn(rng: np.random.Generator, n: int, size: int = LUNG_SIZE) -> np.ndarray:
    """n images that are not radiographs, in six kinds taken in turn (uint8 n x size x size)."""
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:  # noise over a level, maybe blurred
            a = rng.uniform(0, 255) + rng.normal(0, rng.uniform(1, 80), (size, size))
            img = Image.fromarray(a.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 4)))
        elif kind == 1:  # a ramp at any angle, maybe curved
            angle = rng.uniform(0, 2 * np.pi)
            y, x = np.mgrid[0:size, 0:size] / size
            g = np.cos(angle) * x + np.sin(angle) * y
            g = (g - g.min()) / (np.ptp(g) + 1e-6)
            if rng.random() < 0.5:
                g = g ** rng.uniform(0.3, 3)
            img = Image.fromarray((g * rng.uniform(80, 255) + rng.uniform(0, 60)).clip(0, 255).astype(np.uint8))
        elif kind == 2:  # bars of random greys, vertical or horizontal
            nb = int(rng.integers(2, 12))
            levels = rng.uniform(0, 255, nb)
            bars = np.tile(levels[np.minimum((np.arange(size) * nb) // size, nb - 1)], (size, 1))
            img = Image.fromarray((bars if rng.random() < 0.5 else bars.T).astype(np.uint8))
        elif kind == 3:  # checkers or stripes
            p = int(rng.integers(2, 40))
            y, x = np.mgrid[0:size, 0:size]
            pattern = ((y // p) + (x // p)) % 2 if rng.random() < 0.6 else (y // p) % 2
            lo, hi = sorted(rng.uniform(0, 255, 2))
            img = Image.fromarray((lo + pattern * (hi - lo)).astype(np.uint8))
        elif kind == 4:  # a CT or MR slice's look: a body outline with organs inside
            img = Image.new("L", (size, size), int(rng.uniform(0, 40)))
            d = ImageDraw.Draw(img)
            cx, cy = size / 2 + rng.normal(0, 5), size / 2 + rng.normal(0, 5)
            rx, ry = rng.uniform(0.23, 0.48) * size, rng.uniform(0.2, 0.48) * size
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=int(rng.uniform(60, 255)))
            for _ in range(int(rng.integers(1, 10))):
                ex, ey = cx + rng.normal(0, rx / 2), cy + rng.normal(0, ry / 2)
                er, es = rng.uniform(3, rx / 2), rng.uniform(3, ry / 2)
                d.ellipse([ex - er, ey - es, ex + er, ey + es], fill=int(rng.uniform(0, 255)))
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 2)))
        else:  # a drawing: lines, boxes, letters
            img = Image.new("L", (size, size), int(rng.uniform(0, 255)))
            d = ImageDraw.Draw(img)
            for _ in range(int(rng.integers(3, 40))):
                x0, y0, x1, y1 = rng.uniform(0, size, 4)
                c = int(rng.uniform(0, 255))
                r = rng.random()
                if r < 0.4:
                    d.line([x0, y0, x1, y1], fill=c, width=int(rng.integers(1, 6)))
                elif r < 0.7:
                    d.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=c)
                else:
                    d.text((x0, y0), "".join(chr(int(rng.integers(65, 91))) for _ in range(int(rng.integers(1, 8)))), fill=c)
        a = np.asarray(img, np.float64)
        if rng.random() < 0.3:
            a = a + rng.normal(0, rng.uniform(1, 20), a.shape)
        out.append(a.clip(0, 255).astype(np.uint8))
    return np.stack(out)


def varied(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """Copies of radiographs as another digitizer or viewer might show them: gamma, contrast
    (down to a washed-out film), a left-right flip, a rotation, a zoom in, or the film small
    in a dark or light frame, noise. Still chest radiographs."""
    out = []
    for im in images:
        img = Image.fromarray(im)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        zoom = rng.uniform(0.85, 1.0)
        w = LUNG_SIZE * zoom
        x0, y0 = rng.uniform(0, LUNG_SIZE - w, 2)
        img = img.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR).crop((x0, y0, x0 + w, y0 + w))
        img = img.resize((LUNG_SIZE, LUNG_SIZE), Image.BILINEAR)
        if rng.random() < 0.25:  # the film small in the frame, on black or white
            side = int(LUNG_SIZE * rng.uniform(0.55, 0.9))
            frame = Image.new("L", (LUNG_SIZE, LUNG_SIZE), 0 if rng.random() < 0.7 else 255)
            frame.paste(img.resize((side, side), Image.BILINEAR), tuple(int(v) for v in rng.uniform(0, LUNG_SIZE - side, 2)))
            img = frame
        a = np.asarray(img, np.float64) / 255
        a = a ** rng.uniform(0.6, 1.6)
        a = (a - 0.5) * rng.uniform(0.3, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
        a = a * 255 + rng.normal(0, rng.uniform(0, 6), a.shape)
        out.append(a.clip(0, 255).astype(np.uint8))
    return np.stack(out)


def phantoms(seeds=range(100, 400)) -> np.ndarray:
    """The project's chest phantoms (clear and with a drawn lesion, alternately) at the lung
    model's size; seeds 1-3 (the demo's and the reference vectors') are left out."""
    return np.stack([data.resize_grey(Image.fromarray(phantom.make(512, seed=s, pneumothorax=bool(s % 2))), LUNG_SIZE)
                     for s in seeds])


def lfw_faces() -> np.ndarray:
    """scikit-image's 200 LFW face photographs at the lung model's size."""
    import skimage

    faces = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")
    return np.stack([data.resize_grey(Image.fromarray(np.round(f * 255).astype(np.uint8)), LUNG_SIZE) for f in faces])


class PooledEncoder(torch.nn.Module):
    def __init__(self, net: nets.UNetPlusPlus):
        super().__init__()
        self.encoder = net.encoder

    def forward(self, x):
        return nets.pooled_features(self.encoder(x))


def int8_encoder(net: nets.UNetPlusPlus, work: Path) -> Path:
    """The lung net's encoder and pooling alone, quantized exactly as the shipped lung-field
    file is (same calibration images, same settings): the head is fitted on the features the
    int8 file computes. Fitted on f32 features instead, it refused 21 of the 3,205 cxr-512
    radiographs once quantized (low-contrast and small-in-frame films, whose int8 features
    drift): quantization noise the head never saw."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from . import export

    work.mkdir(parents=True, exist_ok=True)
    fp32, pre, int8 = work / "encoder.fp32.onnx", work / "encoder.pre.onnx", work / "encoder.int8.onnx"
    torch.onnx.export(PooledEncoder(net).eval(), torch.zeros(1, 3, LUNG_SIZE, LUNG_SIZE), str(fp32), opset_version=17,
                      input_names=[export.INPUT_NAME], output_names=["features"], dynamo=False)
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    export.quantize(pre, int8, "qop", 64, LUNG_SIZE)
    return int8


def features(encoder: Path, images: np.ndarray) -> np.ndarray:
    """The 512 pooled features of each image, through the int8 encoder in onnxruntime."""
    from .evaluate import ort_session

    sess = ort_session(encoder, 2)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: data.normalize(im)[None]})[0] for im in images])


def load_lungs(checkpoint: Path) -> nets.UNetPlusPlus:
    ck = torch.load(checkpoint, weights_only=False)
    net = nets.build("lungs")
    net.load_state_dict(ck["state"])
    return net.eval()


def fit(encoder: Path, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    _, cxr = data.radiographs(LUNG_SIZE)
    pos = np.concatenate([features(encoder, cxr), features(encoder, varied(rng, cxr[rng.choice(len(cxr), 1600, replace=False)]))])
    neg = np.concatenate([features(encoder, drawn(rng, 2400)), features(encoder, lfw_faces()[HELD_OUT_FACES:]),
                          features(encoder, phantoms())])
    x = np.concatenate([pos, neg])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    mean, std = x.mean(0), x.std(0) + 1e-6
    lr = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit((x - mean) / std, y)
    train_scores = lr.predict_proba((x - mean) / std)[:, 1]
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32), "weight": lr.coef_[0].astype(np.float32),
            "bias": float(lr.intercept_[0]), "C": C, "n_chest": len(pos), "n_other": len(neg),
            "train_lowest_chest": float(train_scores[y == 1].min()), "train_highest_other": float(train_scores[y == 0].max())}


def main() -> None:
    ap = argparse.ArgumentParser(description="fit the chest-or-not head on the lung-field net's encoder")
    ap.add_argument("--lungs", required=True, type=Path, help="the lung-field checkpoint (train.py lungs)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    head = fit(int8_encoder(load_lungs(args.lungs), args.out.parent / "chest-encoder"))
    torch.save(head, args.out)
    print({k: v for k, v in head.items() if k not in ("mean", "std", "weight")})


if __name__ == "__main__":
    main()
