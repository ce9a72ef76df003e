"""Statistics of attention patterns, pure NumPy over a Trace's arrays.

Every function takes patterns [..., T, T] (rows = queries, columns = keys, rows sum to 1) and
averages over query positions 1..T-1: position 0 can only attend to itself, so including it would
add a trivial 1.0 to every "sink" and "self" statistic.
"""

import numpy as np


def sink_mass(pattern):
    """Mean attention on key position 0 over queries 1..T-1. [..., T, T] -> [...]"""
    return pattern[..., 1:, 0].mean(axis=-1)


def previous_token_mass(pattern):
    """Mean attention on the previous token (key i-1 for query i), queries 1..T-1. [..., T, T] -> [...]"""
    return np.diagonal(pattern, offset=-1, axis1=-2, axis2=-1).mean(axis=-1)


def top_keys(row, k=5, skip_first=False):
    """The k keys with the most weight in one pattern row [T] -> list of (key index, weight)."""
    row = np.asarray(row, dtype=np.float64)
    order = [j for j in np.argsort(-row, kind="stable") if not (skip_first and j == 0)]
    return [(int(j), float(row[j])) for j in order[:k]]
