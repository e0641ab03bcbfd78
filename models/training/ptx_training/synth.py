"""The pneumothorax synthesiser: a real SIIM mask shape rendered into a real radiograph.

What a reader looks for in a pneumothorax, and what this draws inside the shape:
  * no lung markings: the vessel texture is replaced by a heavily smoothed field, with
    the image's own fine-grain noise put back so the region is not unnaturally clean;
  * more radiolucent (darker on a MONOCHROME2 image): the field is dimmed by a factor;
  * the visceral pleural line: a thin bright line along the edge that faces the lung
    (medial and inferior edges), not along the chest wall;
  * a gentle intensity step across the line: the collapsed lung beyond it is slightly denser.

All sizes are fractions of the image width, so the same call works at 256 or 512 px.
Deterministic: every random draw comes from the `numpy.random.Generator` passed in.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SynthParams:
    """Ranges the synthesiser draws from; defaults were chosen by looking at contact sheets."""

    scale: tuple[float, float] = (0.85, 1.15)  # shape size jitter about its centroid
    shift: float = 0.03  # max shift, fraction of width
    flip: float = 0.5  # probability of mirroring the shape to the other hemithorax
    dim: tuple[float, float] = (0.06, 0.18)  # radiolucency: fraction the field is dimmed by
    smooth: float = 0.008  # sigma of the marking-free field (vessels go, ribs stay), fraction of width
    line: tuple[float, float] = (0.05, 0.14)  # pleural line brightness (0..1 scale)
    line_width: float = 0.0025  # sigma of the line profile, fraction of width
    step: tuple[float, float] = (0.01, 0.04)  # density step beyond the line
    step_width: float = 0.02  # decay length of that step, fraction of width
    in_lung: float = 0.7  # fraction of the placed shape that must lie in the rough lung field
    tries: int = 8  # placements tried before accepting the best one


def lung_field(image_u8: np.ndarray) -> np.ndarray:
    """A rough lung-field mask: dark regions of the smoothed image that do not touch the border.

    Good enough to keep synthetic lesions off the neck, shoulders and abdomen; not a
    segmentation. The lungs are the darkest large regions inside the body, while the air
    outside the body is dark too but reaches the image border.
    """
    h, w = image_u8.shape
    s = ndimage.gaussian_filter(image_u8.astype(np.float32), sigma=0.02 * w)
    core = s[h // 10 : -h // 10, w // 10 : -w // 10]
    dark = s < np.percentile(core, 40)
    labels, n = ndimage.label(dark)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    sizes = ndimage.sum(dark, labels, index=np.arange(1, n + 1))
    centres = ndimage.center_of_mass(dark, labels, index=np.arange(1, n + 1))
    # the trachea and mediastinal air are dark too, but sit on the midline
    lateral = [abs(c[1] - w / 2) > 0.08 * w for c in centres]
    keep = [i + 1 for i in np.argsort(sizes)[::-1] if i + 1 not in border and lateral[i]][:2]
    field = np.isin(labels, keep)
    return ndimage.binary_dilation(field, iterations=max(1, int(0.015 * w)))


def place_shape(shape: np.ndarray, rng: np.random.Generator, p: SynthParams) -> np.ndarray:
    """Jitter a bool mask: mirror (to the other side), scale about its centroid, shift."""
    h, w = shape.shape
    m = shape[:, ::-1] if rng.random() < p.flip else shape
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    s = rng.uniform(*p.scale)
    dy, dx = rng.uniform(-p.shift, p.shift, size=2) * w
    # output pixel o maps to input (o - c - d) / s + c
    matrix = np.eye(2) / s
    offset = np.array([cy, cx]) - matrix @ np.array([cy + dy, cx + dx])
    out = ndimage.affine_transform(m.astype(np.float32), matrix, offset, order=1, mode="constant")
    out = out > 0.5
    return out if out.sum() >= 4 else shape


def lung_facing_weight(mask: np.ndarray) -> np.ndarray:
    """Per-pixel weight in [0, 1]: how much the mask edge near a pixel faces the lung.

    The outward normal of the shape is compared with the direction to the midline and
    downwards: a pneumothorax lies against the chest wall (lateral, apical), and its
    visceral pleural line is the edge towards the lung, i.e. medial and inferior.
    """
    h, w = mask.shape
    soft = ndimage.gaussian_filter(mask.astype(np.float32), sigma=max(1.0, 0.006 * w))
    gy, gx = np.gradient(soft)
    norm = np.hypot(gx, gy) + 1e-6
    ny, nx = -gy / norm, -gx / norm  # outward normal
    to_mid = np.sign(w / 2.0 - np.arange(w))[None, :]
    facing = np.clip(nx * to_mid + 0.6 * ny + 0.2, 0.0, 1.0)
    return ndimage.gaussian_filter(facing, sigma=max(1.0, 0.01 * w))


def render(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, p: SynthParams = SynthParams()) -> np.ndarray:
    """Render a pneumothorax into `image` (float32 in [0, 1]) inside bool `mask`."""
    h, w = image.shape
    img = image.astype(np.float32)
    m_soft = ndimage.gaussian_filter(mask.astype(np.float32), sigma=max(0.5, 0.002 * w))

    # Marking-free, darker field, with the image's own fine noise put back.
    field = ndimage.gaussian_filter(img, sigma=p.smooth * w)
    fine = img - ndimage.gaussian_filter(img, sigma=max(0.7, 0.0025 * w))
    noise_sd = 1.4826 * np.median(np.abs(fine))
    field = field * (1.0 - rng.uniform(*p.dim)) + rng.normal(0.0, noise_sd, img.shape).astype(np.float32)
    out = img * (1.0 - m_soft) + field * m_soft

    # Pleural line and density step, just outside the shape, on the lung-facing edge.
    outside = ndimage.distance_transform_edt(~mask).astype(np.float32)
    facing = lung_facing_weight(mask)
    lw = max(0.6, p.line_width * w)
    line = np.exp(-0.5 * ((outside - 0.5) / lw) ** 2) * (outside > 0)
    step = np.exp(-outside / (p.step_width * w)) * (outside > 0)
    out += facing * (rng.uniform(*p.line) * line + rng.uniform(*p.step) * step)
    return np.clip(out, 0.0, 1.0)


def synthesize(image_u8: np.ndarray, shapes: np.ndarray, rng: np.random.Generator, p: SynthParams = SynthParams()) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic positive: (uint8 image, bool mask) from a real radiograph and a bank of
    real shapes (N x H x W bool, or a single H x W shape). Shapes are drawn from the bank
    until one lands mostly inside the rough lung field."""
    bank = shapes[None] if shapes.ndim == 2 else shapes
    field = lung_field(image_u8)
    best, best_frac = None, -1.0
    for _ in range(p.tries):
        mask = place_shape(bank[rng.integers(len(bank))], rng, p)
        frac = float((mask & field).sum()) / mask.sum()
        if frac > best_frac:
            best, best_frac = mask, frac
        if frac >= p.in_lung:
            break
    # Keep only the part inside the chest when the best placement still strays out of it.
    clipped = best & field
    mask = clipped if best_frac < p.in_lung and clipped.sum() >= 4 else best
    out = render(image_u8.astype(np.float32) / 255.0, mask, rng, p)
    return np.round(out * 255.0).astype(np.uint8), mask
