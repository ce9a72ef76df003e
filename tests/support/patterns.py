"""Hand-made attention patterns [T, T] with known statistics, for the analysis tests."""

import numpy as np


def one_key(T, key):
    """Every query i attends only to key(i) (which must be ≤ i)."""
    p = np.zeros((T, T), dtype=np.float32)
    for i in range(T):
        p[i, key(i)] = 1.0
    return p


def uniform(T):
    """Query i spreads evenly over keys 0..i."""
    return np.tril(np.ones((T, T), dtype=np.float32)) / np.arange(1, T + 1, dtype=np.float32)[:, None]
