"""Self-supervised pretraining of the segmenter's encoder on every real radiograph here,
labels unused: SimCLR (Chen et al. 2020) from ImageNet EfficientNet-Lite0.

    python -m ptx_training.ssl --out ../work/ssl/encoder.pt --size 128 --epochs 8       # 2 CPU cores: about 25 min (`make ssl`)
    python -m ptx_training.ssl --out ../work/ssl/encoder.pt --size 256 --epochs 200 --batch 512   # a GPU
    python -m ptx_training.cv folds --work ../work/cv-ssl --encoder ../work/ssl/encoder.pt
    python -m ptx_training.cv compare ../work/cv ../work/cv-ssl

The radiographs: cxr-512/ (3,205), lungs/ (76) and the images of real-labelled/ (627), about
3,900, whatever their labels. Two strongly augmented views of each film (geometry, contrast,
gamma, blur or noise) are pulled together and pushed from the batch's other films (NT-Xent
on a 2-layer projection of the pooled stride-32 features). The encoder it writes replaces the
ImageNet start of `train --encoder`; whether it wins is decided by the cross-validation
report (`cv compare`), never assumed.

Pretraining on the labelled images' pixels is not a leak into their fold's report: no label
is read, and a fold model that never trained on a patient's label has still seen many
unlabelled films of the same kind. It is the transductive setting the clinic's device is in.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data, nets, real


def radiographs(size: int) -> np.ndarray:
    """Every real radiograph here at size x size (uint8), labels unused."""
    _, cxr = data.radiographs(size)
    lungs = np.stack([data.load_grey(p, size) for p in sorted((data.data_dir() / "lungs" / "images").glob("*.jpg"))])
    return np.concatenate([cxr, lungs, real.labelled(size)["images"]])


def views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One strong random view of each uint8 film (N x H x W), normalised as the models read it."""
    n = x.shape[0]
    x = x.float()[:, None] / 255

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    ang = u(-15, 15) * math.pi / 180
    scale = u(0.7, 1.1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.stack([torch.stack([torch.cos(ang) * scale * flip, -torch.sin(ang) * scale, u(-0.12, 0.12)], 1),
                         torch.stack([torch.sin(ang) * scale * flip, torch.cos(ang) * scale, u(-0.12, 0.12)], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), padding_mode="border", align_corners=False)
    x = ((x - 0.5) * u(0.6, 1.4)[:, None, None, None] + 0.5 + u(-0.2, 0.2)[:, None, None, None]).clamp(1e-4, 1)
    x = x ** torch.exp(u(-0.4, 0.4))[:, None, None, None]
    k = torch.tensor([1.0, 4, 6, 4, 1])
    k = (k[:, None] * k[None]) / 256
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k[None, None])
    pick = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    x = pick * blurred + (1 - pick) * (x + 0.02 * torch.randn(x.shape, generator=gen))
    from . import MEAN, STD

    return ((x.clamp(0, 1) - MEAN) / STD).expand(-1, 3, -1, -1).contiguous()


class SimCLR(nn.Module):
    """The segmenter's encoder and a projection head for the contrastive loss."""

    def __init__(self):
        super().__init__()
        self.encoder = nets.EfficientNetLite0()
        nets.imagenet_lite0(self.encoder)
        self.projection = nn.Sequential(nn.Linear(320, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))

    def forward(self, x):
        return self.projection(self.encoder(x)[-1].mean((2, 3)))


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss on 2N projections, view i of film k at row k and k + N."""
    z = F.normalize(z, dim=1)
    n = z.shape[0] // 2
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the pretrained encoder's weights (for train --encoder)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--per-epoch", type=int, default=0, help="films per epoch (0: all of them)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    films = torch.from_numpy(radiographs(args.size))
    per_epoch = args.per_epoch or len(films)
    steps = max(1, per_epoch // args.batch)
    model = SimCLR().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps, pct_start=0.1)
    gen, rng = torch.Generator().manual_seed(args.seed), np.random.default_rng(args.seed)
    history = []
    for epoch in range(args.epochs):
        model.train()
        t0, losses = time.time(), []
        order = rng.permutation(len(films))[: steps * args.batch]
        for s in range(steps):
            batch = films[order[s * args.batch:(s + 1) * args.batch]]
            x = torch.cat([views(batch, gen), views(batch, gen)]).to(device)
            loss = nt_xent(model(x), args.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 1), "films": int(len(order))})
        print(json.dumps(history[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"encoder": model.encoder.state_dict(), "history": history, "args": vars(args) | {"out": str(args.out)}}, args.out)


if __name__ == "__main__":
    main()
