"""The running totals of corpus mode: streaming sums folded in window order (no trace is kept),
saved and restored as plain JSON state."""

import numpy as np

from ... import analysis
from .. import findings
from ..findings import HOLDS, NOT_APPLICABLE
from .window import N_BINS, PREDICTIONS, STATISTICS


# -- the streaming sums --------------------------------------------------------------------------
def merge_top(a, b, k):
    """The k best of two top lists (value, window, position) [..., n] each: largest value first;
    ties: earlier window, then earlier position. -> the same three arrays [..., k]"""
    value, window, position = (np.concatenate([x, y], axis=-1) for x, y in zip(a, b))
    order = np.lexsort((position, window, -value), axis=-1)[..., :k]
    return tuple(np.take_along_axis(x, order, axis=-1) for x in (value, window, position))


def empty_top(shape, k):
    return (np.full((*shape, k), -np.inf), np.full((*shape, k), -1, dtype=np.int64),
            np.full((*shape, k), -1, dtype=np.int64))


class Totals:
    """Everything a run keeps, folded window by window in window order; `state()` is JSON (floats
    as Python writes them, which read back to the same bits) and `from_state` reads it back."""

    def __init__(self, n_layer, n_head, top_k):
        shape = (len(STATISTICS), n_layer, n_head)
        self.top_k, self.windows = top_k, 0
        self.mean, self.m2 = np.zeros(shape), np.zeros(shape)     # Welford over window means
        self.histogram = np.zeros((*shape, N_BINS), dtype=np.int64)
        self.top_windows, self.top_positions = empty_top(shape, top_k), empty_top(shape, top_k)
        self.types = np.zeros((n_layer, n_head, len(analysis.HEAD_TYPES)), dtype=np.int64)
        self.verdicts = {i: {HOLDS: 0, findings.FAILS: 0, NOT_APPLICABLE: 0} for i in PREDICTIONS}
        self.detail = {"above_diagonal": 0.0, "first_weight": 1.0, "first_entropy": 0.0,
                       "sink_heads": np.zeros(n_layer, dtype=np.int64),
                       "distinct_types": np.zeros(n_layer, dtype=np.int64)}

    def add(self, index, r):
        """Fold in window `index`'s result (measure_window); windows must come in order."""
        if index != self.windows:
            raise ValueError(f"window {index} folded after {self.windows} windows")
        self.windows += 1
        delta = r["values"] - self.mean
        self.mean += delta / self.windows
        self.m2 += delta * (r["values"] - self.mean)
        self.histogram += r["histogram"]
        shape = r["values"].shape
        this = lambda n: np.full((*shape, n), index, dtype=np.int64)  # noqa: E731 - this window
        no_position = np.full((*shape, 1), -1, dtype=np.int64)
        self.top_windows = merge_top(self.top_windows, (r["values"][..., None], this(1), no_position),
                                     self.top_k)
        self.top_positions = merge_top(self.top_positions, (
            r["top_value"], this(r["top_value"].shape[-1]), r["top_position"]), self.top_k)
        layer, head = np.indices(r["types"].shape)
        self.types[layer, head, r["types"]] += 1
        for i, verdict in r["verdicts"].items():
            self.verdicts[i][verdict] += 1
        d, new = self.detail, r["detail"]
        d["above_diagonal"] = max(d["above_diagonal"], new["above_diagonal"])
        d["first_weight"] = min(d["first_weight"], new["first_weight"])
        d["first_entropy"] = max(d["first_entropy"], new["first_entropy"])
        for L, c in new["sink_heads"].items():
            d["sink_heads"][L] += c
        for L, c in new["distinct_types"].items():
            d["distinct_types"][L] += c

    def sd(self):
        """Standard deviation of the window means (n - 1 in the denominator). [S, L, H]"""
        return np.sqrt(self.m2 / max(self.windows - 1, 1))

    def state(self):
        def tops(top):                        # empty slots (window -1) hold -inf: written as 0
            value, window, position = top
            return [np.where(window >= 0, value, 0.0).tolist(), window.tolist(), position.tolist()]
        return {"windows": self.windows, "top_k": self.top_k, "mean": self.mean.tolist(),
                "m2": self.m2.tolist(), "histogram": self.histogram.tolist(),
                "top_windows": tops(self.top_windows), "top_positions": tops(self.top_positions),
                "types": self.types.tolist(),
                "verdicts": {str(i): v for i, v in self.verdicts.items()},
                "detail": {k: v.tolist() if isinstance(v, np.ndarray) else v
                           for k, v in self.detail.items()}}

    @classmethod
    def from_state(cls, state):
        mean = np.array(state["mean"], dtype=np.float64)
        t = cls(mean.shape[1], mean.shape[2], state["top_k"])
        t.windows, t.mean, t.m2 = state["windows"], mean, np.array(state["m2"], dtype=np.float64)
        t.histogram = np.array(state["histogram"], dtype=np.int64)

        def tops(saved):
            value, window, position = (np.array(x) for x in saved)
            return np.where(window >= 0, value, -np.inf).astype(np.float64), window, position
        t.top_windows, t.top_positions = tops(state["top_windows"]), tops(state["top_positions"])
        t.types = np.array(state["types"], dtype=np.int64)
        t.verdicts = {int(i): v for i, v in state["verdicts"].items()}
        t.detail = {k: np.array(v, dtype=np.int64) if isinstance(v, list) else v
                    for k, v in state["detail"].items()}
        return t
