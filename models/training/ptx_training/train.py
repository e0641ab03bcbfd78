"""Train one model on synthetic positives (and, where given, real labelled data).

    python -m ptx_training.train classifier --out work/classifier.pt
    python -m ptx_training.train segmenter  --out work/segmenter.pt

The classifier sees whole radiographs (low resolution first, then the full 256 px); the
segmenter sees 128 px crops at full 256 px scale, mostly centred on the lesion, which keeps
its scale equal to inference's at a quarter of the cost. Loss: BCE for the classifier,
BCE + Dice for the segmenter. Checkpoints hold the weights and the history.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from . import data, evaluate, nets, synth


def augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Radiograph-style augmentation: small rotation/scale/shift, mirror, contrast and gamma.

    Mirroring is harmless here: the side of a finding is read from the mask's position,
    never learnt as a class.
    """
    h, w = img.shape
    angle = np.deg2rad(rng.uniform(-7, 7))
    s = rng.uniform(0.9, 1.1)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / s
    centre = np.array([h, w]) / 2.0
    offset = centre - rot @ (centre + rng.uniform(-0.04, 0.04, 2) * w)
    f = img.astype(np.float32) / 255.0
    f = ndimage.affine_transform(f, rot, offset, order=1, mode="nearest")
    m = ndimage.affine_transform(mask.astype(np.float32), rot, offset, order=1) > 0.5
    if rng.random() < 0.5:
        f, m = f[:, ::-1], m[:, ::-1]
    f = np.clip((f - 0.5) * rng.uniform(0.85, 1.15) + 0.5 + rng.uniform(-0.06, 0.06), 0, 1)
    f = f ** rng.uniform(0.8, 1.25)
    return np.round(f * 255).astype(np.uint8), np.ascontiguousarray(m)


class Synthetic(torch.utils.data.Dataset):
    """Each item: a radiograph, made positive with probability `pos_frac` by the synthesiser.

    A fresh lesion is drawn every epoch (the rng is seeded by seed, epoch and index).
    """

    def __init__(self, images, shapes, pos_frac, seed, crop=None, lesion_centred=0.7, neg_ok=None, masks=None):
        self.images, self.shapes, self.pos_frac, self.seed = images, shapes, pos_frac, seed
        self.masks = masks  # real labelled data: fixed masks, never synthesised
        self.neg_ok = np.ones(len(images), bool) if neg_ok is None else neg_ok
        self.crop, self.lesion_centred, self.epoch = crop, lesion_centred, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img = self.images[i]
        mask = np.zeros(img.shape, bool) if self.masks is None else self.masks[i]
        if self.masks is None and (rng.random() < self.pos_frac or not self.neg_ok[i]):
            img, mask = synth.synthesize(img, self.shapes, rng)
        img, mask = augment(img, mask, rng)
        if self.crop:
            img, mask = crop(img, mask, self.crop, rng, self.lesion_centred)
        return torch.from_numpy(data.normalize(img)), torch.tensor([float(mask.any())]), torch.from_numpy(mask[None].astype(np.float32))


def crop(img, mask, size, rng, lesion_centred):
    h, w = img.shape
    if mask.any() and rng.random() < lesion_centred:
        ys, xs = np.nonzero(mask)
        k = rng.integers(len(ys))
        cy, cx = ys[k], xs[k]
    else:
        cy, cx = rng.integers(size // 2, h - size // 2 + 1), rng.integers(size // 2, w - size // 2 + 1)
    y0 = int(np.clip(cy - size // 2, 0, h - size))
    x0 = int(np.clip(cx - size // 2, 0, w - size))
    return img[y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]


def dice_loss(logits, target, eps=1.0):
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    return (1 - (2 * inter + eps) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + eps)).mean()


def main() -> None:
    ap = argparse.ArgumentParser(description="train the classifier or the segmenter")
    ap.add_argument("kind", choices=["classifier", "segmenter"])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--init", type=Path, help="start from this checkpoint (fine-tuning)")
    ap.add_argument("--epochs-low", type=int, default=5, help="classifier: epochs of the cheap first phase")
    ap.add_argument("--low-res", type=int, default=128, help="classifier: size of the first phase's input")
    ap.add_argument("--low-crop", action="store_true",
                    help="classifier: first phase on --low-res crops at full scale (lesion-centred) instead of downscaled images")
    ap.add_argument("--epochs", type=int, default=1, help="classifier: epochs at 256; segmenter: epochs")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pos-frac", type=float, default=0.5)
    ap.add_argument("--real", type=Path, action="append", default=[],
                    help="a labelled set in the SIIM PNG layout (images/*.png + masks/*.png) to train on as well; repeatable")
    ap.add_argument("--drop-negatives", type=Path, help="json list of radiograph names not to use as negatives")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="use only this many training images (smoke tests)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    names, images = data.radiographs()
    shape_ids, shapes = data.mask_shapes()
    train_idx = [i for i, n in enumerate(names) if data.split_of(n) == "train"]
    train_shapes = shapes[[i for i, s in enumerate(shape_ids) if data.split_of(s) == "train"]]
    if args.limit:
        train_idx = train_idx[: args.limit]
    drop = set(json.loads(args.drop_negatives.read_text())) if args.drop_negatives else set()
    # Images suspected to hold a real (unlabelled) pneumothorax are still good bases for
    # synthetic positives, but must not be taught as negatives.
    neg_ok = np.array([names[i] not in drop for i in train_idx])

    seg = args.kind == "segmenter"
    ds = Synthetic(images[train_idx], train_shapes, 0.8 if seg else args.pos_frac, args.seed, crop=128 if seg else None, neg_ok=neg_ok)
    train_set = ds
    if args.real:
        real = [data.siim_layout(folder) for folder in args.real]
        real_ds = Synthetic(np.concatenate([r[1] for r in real]), train_shapes, 0.0, args.seed, crop=ds.crop,
                            masks=np.concatenate([r[2] for r in real]))
        train_set = torch.utils.data.ConcatDataset([ds, real_ds])
        print(f"training on {len(ds)} synthetic-or-clear and {len(real_ds)} real labelled radiographs")
    model = nets.build(args.kind)
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=True)["state"])
    phases = [(args.epochs, None)] if seg else [(args.epochs_low, args.low_res), (args.epochs, None)]
    total_steps = sum(n for n, _ in phases) * math.ceil(len(train_set) / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(total_steps, 1), pct_start=0.1 if not args.init else 0.01)
    val = evaluate.synthetic_split("val", limit=64 if args.limit else 0)
    history, epoch = [], 0
    for n_epochs, res in phases:
        if not seg and args.low_crop:
            # Crops keep thin lesions visible; global pooling lets the same net read whole images later.
            for d in getattr(train_set, "datasets", [train_set]):
                d.crop, d.lesion_centred = (res, 0.9) if res else (None, 0.7)
            res = None
        for _ in range(n_epochs):
            for d in getattr(train_set, "datasets", [train_set]):
                d.epoch = epoch
            gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
            loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch, shuffle=True, generator=gen, num_workers=0, drop_last=True)
            model.train()
            t0, losses = time.time(), []
            for step, (x, y, m) in enumerate(loader):
                if res:
                    x = F.interpolate(x, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
                out = model(x)
                if seg:
                    loss = F.binary_cross_entropy_with_logits(out, m) + dice_loss(out, m)
                else:
                    loss = F.binary_cross_entropy_with_logits(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                if step % 20 == 0:
                    print(f"epoch {epoch} {f'crop {ds.crop}' if ds.crop else f'res {res or 256}'} step {step}/{len(loader)} loss {np.mean(losses[-20:]):.4f} {time.time() - t0:.0f}s", flush=True)
            metrics = evaluate.score(args.kind, model, val)
            history.append({"epoch": epoch, "res": res or 256, "crop": ds.crop, "loss": float(np.mean(losses)), "val": metrics, "seconds": time.time() - t0})
            print(json.dumps(history[-1]), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state": model.state_dict(), "kind": args.kind, "history": history, "args": vars(args) | {"out": str(args.out), "init": str(args.init), "drop_negatives": str(args.drop_negatives)}}, args.out)
            epoch += 1


if __name__ == "__main__":
    main()
