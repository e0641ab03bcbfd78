"""SIIM-ACR run-length encoding.

Pixels are numbered column-major on a square grid (1024x1024 in SIIM), and each run's
start is relative to the end of the previous run. Only numpy is needed, so CI can test it.
"""

import numpy as np


def decode(encoded: str, size: int = 1024) -> np.ndarray:
    """Decode one `EncodedPixels` string into a bool mask of shape (size, size).

    "-1" (or an empty string) decodes to an empty mask. Raises ValueError on a malformed
    string or runs that leave the grid, rather than silently clipping.
    """
    flat = np.zeros(size * size, dtype=bool)
    text = encoded.strip()
    if text in ("", "-1"):
        return flat.reshape(size, size).T.copy()
    numbers = [int(tok) for tok in text.split()]
    if len(numbers) % 2:
        raise ValueError(f"odd number of values in RLE ({len(numbers)})")
    pos = 0
    for start, length in zip(numbers[0::2], numbers[1::2]):
        pos += start
        if start < 0 or length < 0 or pos + length > flat.size:
            raise ValueError(f"run {start} {length} leaves the {size}x{size} grid")
        flat[pos : pos + length] = True
        pos += length
    # column-major numbering: reshape in C order then transpose.
    return flat.reshape(size, size).T.copy()


def encode(mask: np.ndarray) -> str:
    """Encode a bool mask back into SIIM's relative RLE ("-1" when empty)."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    if edges.size == 0:
        return "-1"
    starts, ends = edges[0::2], edges[1::2]
    out, prev_end = [], 0
    for s, e in zip(starts, ends):
        out += [int(s - prev_end), int(e - s)]
        prev_end = e
    return " ".join(map(str, out))
