"""One sentence's results as the viewer keeps them, and a memory-bounded cache of recent ones.

A `Run` keeps only what the page reads, straight from the gpt2np Trace (no copies, no second
computation): per layer hook_q, hook_k, hook_attn_scores and hook_pattern, plus the next-token
top-5 at every position (taken from the logits before they are dropped). At 64 tokens of GPT-2
small that is about 10 MB instead of the trace's 61 MB; at 1,024 tokens about 1.3 GB.

`RunCache` is least-recently-used with a bound in bytes. The newest run is always kept, even
when it alone is over the bound, so a long input can still be viewed; older runs are evicted.
A handle is a hash of the model and the ids, so the same sentence finds its cached run.
"""

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from gpt2np.ops import softmax

from .wire import thumbnails

TOP_K = 5


def run_handle(model, ids, bos):
    key = f"{model.info.name}|{model.info.origin}|{model.info.n_params}|{int(bos)}|".encode()
    return hashlib.sha256(key + np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:20]


def next_token_top_k(logits, k=TOP_K):
    """logits [T, V] -> (ids [T, k], probs [T, k] float32), best first, softmax over the vocab."""
    k = min(k, logits.shape[-1])
    probs = softmax(logits, axis=-1)                                    # [T, V] float32
    top = np.argpartition(-probs, k - 1, axis=-1)[:, :k]                # [T, k] unordered
    top_p = np.take_along_axis(probs, top, axis=-1)
    order = np.argsort(-top_p, axis=-1, kind="stable")
    return np.take_along_axis(top, order, axis=-1), np.take_along_axis(top_p, order, axis=-1)


class Run:
    """What the viewer keeps of one forward pass (arrays are the trace's own, read-only)."""

    def __init__(self, handle, trace, bos, elapsed):
        L = trace.n_layer
        self.handle, self.bos, self.elapsed = handle, bos, elapsed
        self.ids, self.tokens = trace.ids, trace.tokens
        get = lambda name: [trace[f"blocks.{i}.attn.{name}"] for i in range(L)]  # noqa: E731
        self.q, self.k = get("hook_q"), get("hook_k")                  # L × [T, H, dh]
        self.scores, self.patterns = get("hook_attn_scores"), get("hook_pattern")  # L × [H, T, T]
        self.next_ids, self.next_probs = next_token_top_k(trace.logits)  # [T, k] each
        self._overview = None
        self._lock = threading.Lock()

    @property
    def n_tokens(self):
        return len(self.ids)

    def nbytes(self):
        arrays = [*self.q, *self.k, *self.scores, *self.patterns, self.next_ids, self.next_probs]
        return sum(a.nbytes for a in arrays) + (len(self._overview[0]) if self._overview else 0)

    def overview(self):
        """(bytes of [L, H, S, S] thumbnails, S), computed once."""
        with self._lock:
            if self._overview is None:
                self._overview = thumbnails(self.patterns)
            return self._overview


class RunCache:
    """Recent runs by handle, least recently used first out, bounded by `max_bytes`."""

    def __init__(self, max_bytes):
        self.max_bytes = int(max_bytes)
        self._runs = OrderedDict()
        self._lock = threading.Lock()

    def get(self, handle):
        with self._lock:
            run = self._runs.get(handle)
            if run is not None:
                self._runs.move_to_end(handle)
            return run

    def put(self, run):
        with self._lock:
            self._runs[run.handle] = run
            self._runs.move_to_end(run.handle)
            while len(self._runs) > 1 and self._total() > self.max_bytes:
                self._runs.popitem(last=False)

    def nbytes(self):
        # Under the lock: another request's put() may be adding or evicting runs meanwhile.
        with self._lock:
            return self._total()

    def _total(self):
        return sum(run.nbytes() for run in self._runs.values())

    def __len__(self):
        return len(self._runs)

    def __contains__(self, handle):
        return handle in self._runs
