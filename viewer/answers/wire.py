"""What goes over the wire to the browser: compact attention bytes and exact float32 text.

Attention for the heatmaps is sent as bytes, one unsigned byte per cell:

    code = round(254 · √p)        p ≈ (code / 254)²        255 = masked (thumbnails only)

The square root spends the 254 levels where attention weights live (many small, a few large):
codes resolve p to about ±0.004 near 1 and to 10⁻⁵ near 0, enough for any colour scale.
A head's heatmap is its lower triangle only, row by row (row i holds keys 0..i), so 1,024
tokens cost 524,800 bytes. Exact values never travel this way: `f32` writes a float32 as the
shortest decimal text that reads back to the same float32, for the ledger and the hover readout.
"""

from functools import lru_cache

import numpy as np

ENCODING = "u8-sqrt254-lower-triangle"
THUMB_ENCODING = "u8-sqrt254-blockmax-255-masked"
MASKED = 255
THUMB_SIZE = 32          # thumbnails are at most 32 × 32 cells


def f32(x):
    """A float32 as text that parses back to the identical float32: '0.12345679', '-inf'."""
    return str(np.float32(x))


def f32_list(values):
    return [str(v) for v in np.asarray(values, dtype=np.float32)]


def quantize(p):
    """Attention weights in [0, 1] -> uint8 codes round(254·√p)."""
    return np.rint(np.sqrt(np.clip(p, 0.0, 1.0)) * np.float32(254)).astype(np.uint8)


@lru_cache(maxsize=4)
def tril_indices(n):
    return np.tril_indices(n)


def lower_triangle_bytes(pattern):
    """One head's pattern [T, T] -> T(T+1)/2 bytes, rows in order, keys 0..i in row i."""
    rows, cols = tril_indices(pattern.shape[0])
    return quantize(pattern[rows, cols]).tobytes()


def block_edges(n, size):
    """Start index of each of `size` blocks that split range(n) as evenly as possible."""
    return np.linspace(0, n, size + 1).astype(np.int64)


def thumbnails(patterns, size=THUMB_SIZE):
    """Per-layer patterns [H, T, T] -> bytes of [L, H, S, S] uint8, S = min(T, size).

    Each cell is the largest weight in its block (max, so a thin diagonal stays visible when 1,024
    tokens shrink to 32 cells); a block lying wholly above the diagonal is 255, drawn black.
    """
    T = patterns[0].shape[-1]
    S = min(T, size)
    edges = block_edges(T, S)
    starts = edges[:-1]
    last_row = edges[1:] - 1
    masked = starts[None, :] > last_row[:, None]                     # [S, S]: block (a, b)
    out = np.empty((len(patterns), patterns[0].shape[0], S, S), dtype=np.uint8)
    for layer, p in enumerate(patterns):                            # p [H, T, T]
        pooled = np.maximum.reduceat(np.maximum.reduceat(p, starts, axis=1), starts, axis=2)
        codes = quantize(pooled)                                     # [H, S, S]
        codes[:, masked] = MASKED
        out[layer] = codes
    return out.tobytes(), S
