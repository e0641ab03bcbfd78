import numpy as np
import pytest
from scipy import ndimage

from ptx_training import phantom, synth


@pytest.fixture(scope="module")
def base():
    return phantom.make(256, seed=3)


def apical_shape(size=256):
    y, x = np.mgrid[0:size, 0:size] / size
    return ((x - 0.27) / 0.1) ** 2 + ((y - 0.22) / 0.06) ** 2 < 1


def test_same_seed_same_result(base):
    a = synth.synthesize(base, apical_shape(), np.random.default_rng(5))
    b = synth.synthesize(base, apical_shape(), np.random.default_rng(5))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_other_seed_other_result(base):
    a = synth.synthesize(base, apical_shape(), np.random.default_rng(5))
    b = synth.synthesize(base, apical_shape(), np.random.default_rng(6))
    assert (a[0] != b[0]).any()


def second_diff(im):
    f = im.astype(float)
    return np.abs(f[:, 2:] - 2 * f[:, 1:-1] + f[:, :-2])


def test_lesion_is_darker_and_markings_removed(base):
    fixed = synth.SynthParams(flip=0.0, shift=0.0, scale=(1, 1))
    for seed in range(4):
        out, mask = synth.synthesize(base, apical_shape(), np.random.default_rng(seed), fixed)
        assert mask.sum() > 100
        assert out[mask].mean() < base[mask].mean(), "the pneumothorax must be more radiolucent"
        inner = mask[:, 1:-1] & mask[:, 2:] & mask[:, :-2]
        assert second_diff(out)[inner].mean() < second_diff(base)[inner].mean(), "lung markings must fade"
        far = ndimage.distance_transform_edt(~mask) > 40
        assert (out[far] == base[far]).all(), "nothing changes far from the lesion"


def test_pleural_line_is_on_the_lung_facing_edge():
    # A crescent against the left border of the image (the chest wall) faces the midline.
    size = 256
    shape = np.zeros((size, size), bool)
    shape[60:200, 20:50] = True
    w = synth.lung_facing_weight(shape)
    assert w[130, 52] > 0.5, "medial edge faces the lung"
    assert w[130, 18] < 0.2, "lateral edge lies on the chest wall"


def test_shape_stays_in_the_lung_field(base):
    field = synth.lung_field(base)
    rng = np.random.default_rng(0)
    inside = []
    for _ in range(10):
        _, mask = synth.synthesize(base, apical_shape(), rng)
        inside.append((mask & field).sum() / mask.sum())
    assert np.mean(inside) > 0.7
