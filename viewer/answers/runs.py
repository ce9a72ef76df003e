"""One sentence's results as the viewer keeps them, and a memory-bounded cache of recent ones.

A `Run` keeps only what the page reads, straight from the gpt2np Trace (no copies, no second
computation): per layer hook_q, hook_k, hook_v, hook_attn_scores and hook_pattern; what the heads
and MLPs write (hook_z, hook_attn_out, hook_mlp_out, for the value ledger and the logit
attribution); the residual stream at every depth (blocks.0.hook_resid_pre and each
blocks.L.hook_resid_post, for the logit lens), the embeddings and ln_final.hook_normalized; plus
the next-token top-5 at every position (taken from the logits before they are dropped). At 64
tokens of GPT-2 small that is about 22 MB instead of the trace's 61 MB; at 1,024 tokens about
1.5 GB. `Run.trace()` hands these arrays to gpt2np's analysis functions as a Trace,
and `Run.memo` keeps the analysis results (as JSON bytes, counted in `nbytes`).

`RunCache` is least-recently-used with a bound in bytes, shared by the runs it keeps and the
work under way: `reserve(nbytes)` holds room for a forward pass, an ablation or a download while it
computes, evicting the oldest runs first, and refuses (`TooLarge`) what alone exceeds the bound;
`run_bytes` and `trace_bytes` estimate a run's and a full trace's size from the config and T. A
handle is a hash of the model and the ids, so the same sentence finds its cached run.
"""

import hashlib
import json
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from gpt2np import GPT2npError, Trace
from gpt2np.analysis import next_token_top_k
from gpt2np.trace import residual_stream_names

from .wire import thumbnails

TOP_K = 5
MEMO_ENTRIES = 16        # analysis results kept per run (heads table, findings, ablations, pairs)


MB = 2**20


def run_bytes(config, n_tokens):
    """The bytes of the arrays a `Run` keeps for n_tokens (float32; its memo and overview aside)."""
    L, H, d, T = config.n_layer, config.n_head, config.n_embd, n_tokens
    per_layer = 6 * T * d + 2 * H * T * T           # q, k, v, z, attn_out, mlp_out; scores, pattern
    floats = L * per_layer + (L + 1) * T * d + 3 * T * d   # + the residual stream, embeddings, ln_final
    return 4 * floats + T * TOP_K * (8 + 8)          # + next-token top-k ids (int64) and probs (float64)


def trace_bytes(config, n_tokens):
    """The bytes of a whole forward pass's Trace of n_tokens (float32, every name counted): per block
    resid_pre, ln1, q, k, v, z, attn_out, resid_mid, ln2, mlp_out, resid_post [T, d], the MLP's
    pre and post [T, d_mlp], scores and pattern [H, T, T], ln1's and ln2's hook_scale [T, 1]; the
    embeddings, ln_final (and its hook_scale) and the logits."""
    L, H, d, T = config.n_layer, config.n_head, config.n_embd, n_tokens
    per_layer = 11 * T * d + 2 * T * config.d_mlp + 2 * H * T * T + 2 * T
    return 4 * (L * per_layer + 3 * T * d + T + T * config.vocab_size)


class TooLarge(GPT2npError):
    """Work (or one run) that alone needs more memory than the viewer's whole bound."""

    def __init__(self, what, nbytes, max_bytes):
        fits = -(-int(nbytes * 1.25) // MB)
        super().__init__(f"{what} needs about {nbytes / MB:,.0f} MB, more than the viewer's whole "
                         f"memory bound for runs and work ({max_bytes / MB:,.0f} MB, --cache-mb). Use a "
                         f"shorter text, or start the viewer with --cache-mb {fits} or more.")
        self.nbytes, self.max_bytes = nbytes, max_bytes


def run_handle(model, ids, bos):
    key = f"{model.info.name}|{model.info.origin}|{model.info.n_params}|{int(bos)}|".encode()
    return hashlib.sha256(key + np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:20]


def finite(value):
    """JSON-ready data with NaN and ±inf floats replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


class Run:
    """What the viewer keeps of one forward pass (arrays are the trace's own, read-only)."""

    def __init__(self, handle, trace, bos, elapsed):
        L = trace.n_layer
        self.handle, self.bos, self.elapsed = handle, bos, elapsed
        self.ids, self.tokens = trace.ids, trace.tokens
        get = lambda name: [trace[f"blocks.{i}.attn.{name}"] for i in range(L)]  # noqa: E731
        # q, k and v are views of one [T, 3d] array: keeping q alone would keep all of it.
        self.q, self.k, self.v = get("hook_q"), get("hook_k"), get("hook_v")  # L × [T, H, dh]
        self.scores, self.patterns = get("hook_attn_scores"), get("hook_pattern")  # L × [H, T, T]
        self.z = get("hook_z")                                                 # L × [T, H, dh]
        block = lambda name: [trace[f"blocks.{i}.{name}"] for i in range(L)]  # noqa: E731
        self.attn_out, self.mlp_out = block("hook_attn_out"), block("hook_mlp_out")  # L × [T, d]
        self.resid = {name: trace[name] for name in residual_stream_names(L)}  # L+1 × [T, d]
        self.ends = {name: trace[name] for name in ("hook_embed", "hook_pos_embed", "ln_final.hook_normalized")}
        self.next_ids, self.next_probs = next_token_top_k(trace.logits, TOP_K)  # [T, k] each
        self._overview = None
        self._memo = OrderedDict()                                     # key -> JSON bytes
        self._lock = threading.Lock()                                  # the overview
        self._memo_lock = threading.Lock()

    @property
    def n_tokens(self):
        return len(self.ids)

    def nbytes(self):
        arrays = [*self.q, *self.k, *self.v, *self.scores, *self.patterns, *self.z, *self.attn_out,
                  *self.mlp_out, *self.resid.values(), *self.ends.values(), self.next_ids, self.next_probs]
        with self._memo_lock:
            memo = sum(map(len, self._memo.values()))
        return sum(a.nbytes for a in arrays) + (len(self._overview[0]) if self._overview else 0) + memo

    def trace(self):
        """The kept arrays as a gpt2np Trace (no copies) for gpt2np.analysis.findings / interventions:
        blocks.L.attn.hook_q/k/v/attn_scores/pattern/z, blocks.L.hook_attn_out/mlp_out, the
        residual stream, hook_embed, hook_pos_embed and ln_final.hook_normalized; no logits."""
        arrays = {**self.resid, **self.ends}
        for L, arrays_l in enumerate(zip(self.q, self.k, self.v, self.scores, self.patterns, self.z)):
            for name, a in zip(("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"), arrays_l):
                arrays[f"blocks.{L}.attn.{name}"] = a
            arrays[f"blocks.{L}.hook_attn_out"], arrays[f"blocks.{L}.hook_mlp_out"] = self.attn_out[L], self.mlp_out[L]
        return Trace(arrays, self.ids, self.tokens)

    def memo_get(self, key):
        """The memo's JSON bytes for key, or None."""
        with self._memo_lock:
            return self._memo.get(key)

    def memo(self, key, compute):
        """JSON bytes of compute() for this run, computed once per key; the last MEMO_ENTRIES kept."""
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        data = json.dumps(finite(compute()), allow_nan=False).encode()   # outside the lock: slow
        with self._memo_lock:
            self._memo[key] = data
            while len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return data

    def overview(self):
        """(bytes of [L, H, S, S] thumbnails, S), computed once."""
        with self._lock:
            if self._overview is None:
                self._overview = thumbnails(self.patterns)
            return self._overview


class RunCache:
    """Recent runs by handle, least recently used first out, and the work under way (`reserve`),
    together bounded by `max_bytes`."""

    def __init__(self, max_bytes):
        self.max_bytes = int(max_bytes)
        self._runs = OrderedDict()
        self._reserved = 0
        self._lock = threading.Lock()

    def get(self, handle):
        with self._lock:
            run = self._runs.get(handle)
            if run is not None:
                self._runs.move_to_end(handle)
            return run

    def put(self, run):
        """Keep `run` as the most recent, evicting the oldest runs beyond the bound (the newest is
        kept even if its estimate was short of its size; `check` refuses runs too large first)."""
        with self._lock:
            self._runs[run.handle] = run
            self._runs.move_to_end(run.handle)
            self._evict(keep=1)

    def check(self, what, nbytes):
        """Raise TooLarge when nbytes alone exceed the bound."""
        if nbytes > self.max_bytes:
            raise TooLarge(what, nbytes, self.max_bytes)

    @contextmanager
    def reserve(self, nbytes, what="This request", keep=None):
        """Hold nbytes of the bound for work under way, evicting the oldest runs to make room, but
        not the run `keep` (a handle: the run the work reads, counted with it). Yields a Reservation
        whose release() gives the room back early (e.g. before the work's result is put here)."""
        kept = self.get(keep) if keep is not None else None
        self.check(what, nbytes + (kept.nbytes() if kept is not None else 0))
        reservation = Reservation(self, nbytes)
        with self._lock:
            self._reserved += nbytes
            self._evict(keep=0, spare=keep)
        try:
            yield reservation
        finally:
            reservation.release()

    def _evict(self, keep, spare=None):
        """Under the lock: drop the oldest runs (not `spare`, a handle) until runs and reservations
        fit the bound, keeping at least `keep` runs."""
        order = [h for h in self._runs if h != spare]
        while order and len(self._runs) > keep and self._total() + self._reserved > self.max_bytes:
            del self._runs[order.pop(0)]

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


class Reservation:
    """Bytes held in a RunCache's bound for work under way (`RunCache.reserve`)."""

    def __init__(self, cache, nbytes):
        self.cache, self.nbytes = cache, nbytes

    def release(self):
        with self.cache._lock:
            self.cache._reserved -= self.nbytes
            self.nbytes = 0
