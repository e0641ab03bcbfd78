import numpy as np
import pytest

from ptx_training import rle


def test_decode_is_column_major_and_relative():
    # 4x4 grid: run 1 starts at pixel 1 (column 0, row 1), length 2; the next starts 3 after it ends.
    m = rle.decode("1 2 3 1", size=4)
    expected = np.zeros((4, 4), bool)
    expected[1:3, 0] = True  # pixels 1, 2 -> column 0 rows 1-2
    expected[2, 1] = True  # pixel 3 + 3 = 6 -> column 1, row 2
    assert (m == expected).all()


def test_empty_mask():
    assert not rle.decode("-1", size=8).any()
    assert rle.encode(np.zeros((8, 8), bool)) == "-1"


@pytest.mark.parametrize("seed", range(5))
def test_roundtrip(seed):
    m = np.random.default_rng(seed).random((32, 32)) > 0.7
    assert (rle.decode(rle.encode(m), size=32) == m).all()


def test_runs_leaving_the_grid_are_errors():
    with pytest.raises(ValueError):
        rle.decode("10 20", size=4)
    with pytest.raises(ValueError):
        rle.decode("1 2 3", size=4)
