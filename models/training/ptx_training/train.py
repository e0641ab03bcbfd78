"""Training that sees real radiographs every epoch, judged on the real validation split.

    python -m ptx_training.train classifier --arch lite0 --out ../work/cls-lite0.pt
    python -m ptx_training.train segmenter --out ../work/seg.pt
    python -m ptx_training.train lungs --out ../work/lungs.pt

Classifier epochs mix: every real training radiograph (positives repeated), SIIM-processed
presumed negatives from cxr-512/ (so that "looks like SIIM" stops predicting "positive"), and
synthetic positives drawn into both sources' clear images (so that each source has positives
and negatives). Augmentation (contrast, gamma, blur, noise, geometry) is the same for all, to
blur the processing differences between sources. The epoch kept is the one with the best
mean of the NIH-only AUC and the SIIM-vs-SIIM-domain AUC on real val: numbers that the
source shortcut cannot explain.

The segmenter sees 128 px crops at the full 256 px scale: the real masked training positives
(repeated), synthetic positives, and clear images. Its encoder starts from ImageNet.

The lung-field model is trained on lungs/ (Montgomery, Shenzhen): 64 images train, 12 val (by name hash).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from . import LUNG_SIZE, data, evaluate, nets, real, synth



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


def dice_loss(logits, target, eps=1.0, reduce=True):
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    per = 1 - (2 * inter + eps) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + eps)
    return per.mean() if reduce else per


def segmenter_loss(logits, masks, targets, known, image_weight):
    """BCE + Dice on the images whose mask is known (real masks, synthetic lesions, clear
    images), and, with `image_weight`, BCE of the image's score (nets.SegmenterScore: the
    largest 8x8-block mean) against its label on every image. The image term is what lets the
    NIH positives, which have a label and no mask, teach the segmenter anything."""
    per = F.binary_cross_entropy_with_logits(logits, masks, reduction="none").mean((1, 2, 3)) + dice_loss(logits, masks, reduce=False)
    loss = (per * known).sum() / known.sum().clamp(min=1)
    if image_weight:
        score = nets.block_score(torch.sigmoid(logits)).flatten()
        loss = loss + image_weight * F.binary_cross_entropy(score.clamp(1e-6, 1 - 1e-6), targets.flatten())
    return loss


def segmenter_scores(model, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The default classifier's score (nets.SegmenterScore) of a segmenter in training; its
    block keeps the same share of the image at another input size."""
    scorer = nets.SegmenterScore(model, nets.SegmenterScore.BLOCK * images.shape[-1] // 256).eval()
    with torch.no_grad():
        return np.concatenate([scorer(torch.from_numpy(data.normalize(images[s:s + batch]))).numpy()[:, 0]
                               for s in range(0, len(images), batch)])


def source_blind(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Augmentation on top of `train.augment` that hides processing differences between the
    image sources: random blur or sharpening, noise, and histogram stretch."""
    f = img.astype(np.float32)
    r = rng.random()
    if r < 0.3:
        f = ndimage.gaussian_filter(f, rng.uniform(0.3, 1.2))
    elif r < 0.5:
        blur = ndimage.gaussian_filter(f, 1.0)
        f = f + rng.uniform(0.3, 1.0) * (f - blur)
    if rng.random() < 0.3:
        f = f + rng.normal(0, rng.uniform(1, 5), f.shape)
    if rng.random() < 0.3:
        lo, hi = np.percentile(f, [rng.uniform(0, 3), rng.uniform(97, 100)])
        f = (f - lo) / max(hi - lo, 1) * 255
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


class Items(torch.utils.data.Dataset):
    """A list of (image, mask, target, synthesise?, mask known?) built per epoch."""

    def __init__(self, items, shapes, seed, epoch, crop_size=None, lesion_centred=0.8):
        self.items, self.shapes, self.seed, self.epoch = items, shapes, seed, epoch
        self.crop_size, self.lesion_centred = crop_size, lesion_centred

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        img, mask, target, make, known = self.items[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if make:
            img, mask = synth.synthesize(img, self.shapes, rng)
        img, mask = augment(img, mask, rng)
        img = source_blind(img, rng)
        if self.crop_size:
            img, mask = crop(img, mask, self.crop_size, rng, self.lesion_centred)
        return (torch.from_numpy(data.normalize(img)), torch.tensor([target], dtype=torch.float32),
                torch.from_numpy(mask[None].astype(np.float32)), torch.tensor(float(known)))


def epoch_items(kind, rtrain, cxr_images, cxr_train, rng, args):
    items = []
    for img, m, y in zip(rtrain["images"], rtrain["masks"], rtrain["labels"]):
        known = not (y and not m.any())  # NIH positives have a label and no mask
        if kind == "segmenter" and not known and not args.image_loss:
            continue  # without the image-level term they have nothing to teach the segmenter
        reps = args.pos_repeat if y else 1
        items += [(img, m, float(y), False, known)] * reps
    empty = np.zeros(cxr_images.shape[1:], bool)
    negs = rng.choice(cxr_train, size=args.siim_negatives, replace=False)
    items += [(cxr_images[i], empty, 0.0, False, True) for i in negs]
    rest = np.setdiff1d(cxr_train, negs)
    synth_base = list(rng.choice(rest, size=args.synthetic // 2, replace=False))
    nih_clear = np.flatnonzero(~rtrain["labels"])
    items += [(cxr_images[i], empty, 1.0, True, True) for i in synth_base]
    items += [(rtrain["images"][i], empty, 1.0, True, True) for i in rng.choice(nih_clear, size=args.synthetic - len(synth_base), replace=False)]
    return items


def validate_classifier(score_fn, rval, siim_val_images, threshold=0.5):
    scores = score_fn(rval["images"])
    siim_scores = score_fn(siim_val_images)
    rep = real.classifier_report(rval["labels"], scores, rval["source"], threshold, siim_scores)
    return rep, scores, siim_scores


def selection_score(rep):
    """Mean of the two AUCs that the source shortcut cannot explain."""
    return 0.5 * (rep["auc_nih"]["value"] + rep["auc_siim_vs_siim_domain"]["value"])


def freeze_early(model, kind, arch):
    """Freeze the stem and the first two stages of an ImageNet encoder: their edge and texture
    filters transfer as they are, and their backward pass at full resolution is the costliest."""
    if arch != "lite0" and kind == "classifier":
        return
    enc = model.encoder
    for mod in [enc.stem, enc.stages[0], enc.stages[1]]:
        for p in mod.parameters():
            p.requires_grad_(False)


def set_frozen_bn_eval(model):
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d) and not any(p.requires_grad for p in mod.parameters()):
            mod.eval()


def train_lungs(args):
    root = data.data_dir() / "lungs"
    names = sorted(p.name for p in (root / "images").glob("*.jpg"))
    imgs = np.stack([data.load_grey(root / "images" / n, LUNG_SIZE) for n in names])
    masks = []
    for n in names:
        from PIL import Image
        with Image.open(root / "masks" / n.replace(".jpg", ".png")) as im:
            masks.append(np.asarray(im.convert("L").resize((LUNG_SIZE, LUNG_SIZE), Image.BILINEAR)) >= 128)
    masks = np.stack(masks)
    val = np.array([data.split_of(n) != "train" for n in names])  # about 20% by name hash
    model = nets.build("lungs", pretrained=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * int(np.ceil((~val).sum() * args.repeat / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    history = []
    tr = np.flatnonzero(~val)
    for epoch in range(args.epochs):
        items = [(imgs[i], masks[i], 1.0, False, True) for i in tr] * args.repeat
        ds = Items(items, None, args.seed, epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(epoch))
        model.train()
        t0, losses = time.time(), []
        for x, _, m, _ in loader:
            out = model(x)
            loss = F.binary_cross_entropy_with_logits(out, m) + dice_loss(out, m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        prob = evaluate.predict_torch("segmenter", model, imgs[val])
        dices = [evaluate.dice_iou(p >= 0.5, t)[0] for p, t in zip(prob, masks[val])]
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": float(np.mean(dices)), "seconds": time.time() - t0})
        print(json.dumps(history[-1]), flush=True)
    torch.save({"state": model.state_dict(), "kind": "lungs", "history": history, "val_names": [n for n, v in zip(names, val) if v], "args": vars(args) | {"out": str(args.out)}}, args.out)


def main() -> None:
    ap = argparse.ArgumentParser(description="train on real labelled radiographs, choose on real val")
    ap.add_argument("kind", choices=["classifier", "segmenter", "lungs"])
    ap.add_argument("--arch", choices=["lite0", "densenet121"], default="lite0")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pos-repeat", type=int, default=3, help="times each real positive appears per epoch")
    ap.add_argument("--siim-negatives", type=int, default=200, help="cxr-512 presumed negatives per epoch")
    ap.add_argument("--synthetic", type=int, default=120, help="synthetic positives per epoch")
    ap.add_argument("--repeat", type=int, default=6, help="lungs: copies of each training image per epoch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, help="start from this checkpoint's weights instead of ImageNet")
    ap.add_argument("--size", type=int, default=256, help="segmenter: input size (the shipped files read 256)")
    ap.add_argument("--crop", type=int, default=128, help="segmenter: training crop size on the --size grid (--size: whole images)")
    ap.add_argument("--image-loss", type=float, default=0.0, help="segmenter: weight of the image-level BCE on its score (0: off)")
    ap.add_argument("--clean-negatives", type=float, help="drop this share of the cxr-512 presumed negatives, those that score "
                    "highest under --init (pseudo-labels: about one in five of them is positive)")
    ap.add_argument("--holdout", type=int, nargs="*", help="real-labelled folds held out of training (default: real val, "
                    "folds 0-1; one fold in cross-validation; none: train on every labelled image)")
    ap.add_argument("--encoder", type=Path, help="start the encoder from these weights (ptx_training.ssl) instead of ImageNet")
    ap.add_argument("--keep-last", action="store_true", help="keep the last epoch: no choice is made on the held-out folds")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.kind == "lungs":
        return train_lungs(args)

    seg = args.kind == "segmenter"
    holdout = real.VAL_FOLDS if args.holdout is None else tuple(args.holdout)
    rtrain, rval = real.real_split("train", args.size, holdout), real.real_split("val", args.size, holdout)
    _, cxr_images = data.radiographs(args.size)
    cxr_idx, cxr_split = real.siim_domain(args.size, holdout)
    cxr_train, cxr_val = cxr_idx[cxr_split == "train"], cxr_idx[cxr_split == "val"]
    validate = len(rval["labels"]) > 0
    siim_val_images = cxr_images[np.random.default_rng(5).choice(cxr_val, size=200, replace=False)] if validate else None
    shape_ids, shapes = data.mask_shapes(args.size)
    train_shapes = shapes[[i for i, s in enumerate(shape_ids) if data.split_of(s) == "train"]]

    model = nets.build(args.kind, args.arch, pretrained=args.init is None)
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=False)["state"])
    elif args.encoder:
        model.encoder.load_state_dict(torch.load(args.encoder, weights_only=False)["encoder"])
    if args.clean_negatives is not None:
        scores = segmenter_scores(model, cxr_images[cxr_train])
        cut = float(np.quantile(scores, 1 - args.clean_negatives))
        print(f"pseudo-labels: {int((scores >= cut).sum())} of {len(cxr_train)} presumed negatives score >= {cut:.4f} "
              "and are dropped as likely positives", flush=True)
        cxr_train = cxr_train[scores < cut]
    freeze_early(model, args.kind, args.arch)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    per_epoch = len(epoch_items(args.kind, rtrain, cxr_images, cxr_train, np.random.default_rng(0), args))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * (per_epoch // args.batch), pct_start=0.15)
    history, best = [], -1.0
    for epoch in range(args.epochs):
        items = epoch_items(args.kind, rtrain, cxr_images, cxr_train, rng, args)
        ds = Items(items, train_shapes, args.seed, epoch, crop_size=args.crop if seg and args.crop < args.size else None)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True,
                                             generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        model.train()
        set_frozen_bn_eval(model)
        t0, losses = time.time(), []
        for step, (x, y, m, known) in enumerate(loader):
            out = model(x)
            loss = segmenter_loss(out, m, y, known, args.image_loss) if seg else F.binary_cross_entropy_with_logits(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if step % 10 == 0:
                print(f"epoch {epoch} step {step}/{len(loader)} loss {np.mean(losses[-10:]):.4f} {time.time() - t0:.0f}s", flush=True)
        rec = {"epoch": epoch, "loss": float(np.mean(losses)), "train_seconds": time.time() - t0, "items": len(items)}
        if not validate:
            score = float(epoch)  # nothing held out: the schedule's last epoch is kept
        elif seg:
            pos = rval["has_mask"] & rval["labels"]
            prob = evaluate.predict_torch("segmenter", model, rval["images"][pos])
            rec["val"] = real.segmenter_report(prob, rval["masks"][pos], 0.5, 0)
            score = rec["val"]["dice"]["value"]
            # its score too: trained for it (chosen as the classifiers are, Dice >= 0.40 kept),
            # or at another size (an experiment, never shipped as it is)
            if args.image_loss or args.size != 256:
                rec["val_score"], _, _ = validate_classifier(lambda im: segmenter_scores(model, im), rval, siim_val_images)
            if args.image_loss:
                score = selection_score(rec["val_score"]) if score >= 0.40 else score - 1
        else:
            rec["val"], _, _ = validate_classifier(lambda im: evaluate.predict_torch("classifier", model, im), rval, siim_val_images)
            score = selection_score(rec["val"])
        if args.keep_last:
            score = float(epoch)  # cross-validation: the held-out fold is reported on, never chosen on
        rec["selection_score"] = score
        history.append(rec)
        print(json.dumps(rec), flush=True)
        if score > best:
            best = score
            torch.save({"state": model.state_dict(), "kind": args.kind, "arch": args.arch, "epoch": epoch, "history": history,
                        "args": vars(args) | {"out": str(args.out)}}, args.out)
    ck = torch.load(args.out, weights_only=False)
    ck["history"] = history
    torch.save(ck, args.out)
    print(f"kept epoch {ck['epoch']} (selection score {best:.4f})")


if __name__ == "__main__":
    main()
