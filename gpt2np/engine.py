"""The CPU schedule: faster kernels for the forward pass in model.py, computing the same arrays.

model.py is the math; it takes its four heavy computations as `Kernels` (linear layers, LayerNorm,
GELU, `attend`). This module supplies versions of them that use every CPU core, and
`forward(...)` runs model.forward with them. Nothing here is a second forward pass: the blocks,
the names and the order of the computation are model.py's.

What the schedule does, and why:
  - BLAS is held to one thread for the whole pass (`one_blas_thread`). Its worker threads wait for
    each other by spinning: on a machine with anything else running they lose their turn and a
    product can take ten times longer. gpt2np splits the work itself, in threads (NumPy releases
    the GIL inside its loops), one group per core:
  - a linear layer's output columns (`linear`), when the product is large enough to be worth a
    thread (not one row through one layer, as in a generation step: `MIN_PRODUCT_PER_CORE`);
    on long inputs its rows instead;
  - LayerNorm and GELU on long inputs: blocks of rows (`by_rows`); row by row they are the same
    operations, so the numbers are bit-identical;
  - attention: groups of heads (`attend`), and within a group, blocks of 128 queries. A block's
    scores are scaled, masked and softmaxed while they are still in the CPU cache, and the keys
    after the block, all masked, are written as exact -inf / 0 instead of computed (at 1,024
    tokens that skips almost half of the q·k products and of the softmax).
  The calling thread computes the first group itself while the pool computes the others.
  - The arrays a pass writes come from `Reuse`: the last pass's arrays of the same shapes, once
    nothing refers to them any more (the caller has dropped that trace). Fresh memory costs more
    than writing it: the operating system must map and zero every page first (at 1,024 tokens a
    trace is 2.1 GB), and on a virtual machine that hands freed memory back to its host, each page
    is also faulted in again there. A trace or array you keep is never written again.
"""

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

from . import model, ops

N_CORES = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
_pool = ThreadPoolExecutor(N_CORES, thread_name_prefix="gpt2np-engine")
_blas = ThreadpoolController()

# Queries per block in `attend`: a block's scores (heads × 128 rows × keys) stay in cache.
QUERY_BLOCK = 128
# Below this many rows per core, handing work to another thread costs more than it saves.
MIN_ROWS_PER_CORE = 64
# The same for a linear layer, in multiply-adds per core: a generation step's products (one row
# through one layer: at most 2.4M for GPT-2 small) run on the calling thread; its LM head is split.
MIN_PRODUCT_PER_CORE = 4_000_000
# From this many rows per core on, a block's linear layers are split by rows instead of output
# columns: each worker then reads the weights whole and writes whole rows (measured: a whole pass
# 4% faster at 256 tokens, 8% at 1,024; at 64 tokens the columns are faster). The LM head, whose
# output is 65 times wider than its input, stays split by columns (there the rows were slower).
MIN_ROWS_PER_CORE_FOR_ROW_SPLIT = 128
MAX_WIDENING_FOR_ROW_SPLIT = 4      # n_out / n_in: the MLP's first layer (4×) is split by rows


def over_groups(fn, n_items, workers=N_CORES):
    """Call fn(group) for slices that split range(n_items) into `workers` groups, concurrently.

    The calling thread computes the first group itself while the pool computes the others.
    Run it inside `one_blas_thread()`, or each group's products would start BLAS threads of their own.
    """
    workers = max(1, min(workers, n_items))
    groups = [slice(i * n_items // workers, (i + 1) * n_items // workers) for i in range(workers)]
    others = [_pool.submit(fn, group) for group in groups[1:]]
    fn(groups[0])
    for done in others:
        done.result()


@contextmanager
def one_blas_thread():
    """Hold BLAS to one thread (per calling thread) while gpt2np splits the work across cores."""
    with _blas.limit(limits=1, user_api="blas"):
        yield


def attend_block_rows(q, k, v, scores, pattern, z):
    """`model.attend` for a group of h heads, in blocks of queries, written into the given arrays.

    q, k, v [h, T, dh] -> scores, pattern [h, T, T], z [h, T, dh]

    For queries [a, b), keys from b on come after every query of the block: their scores are -inf
    and their weights 0, exactly. Inside the block the mask is added as usual; only the square of
    keys a..b-1 can hold a key later than its query, so only that square needs it.
    """
    T, dh = q.shape[1], q.shape[2]
    for a in range(0, T, QUERY_BLOCK):
        b = min(a + QUERY_BLOCK, T)
        s = scores[:, a:b, :b]                                       # [h, rows, b]: keys 0..b-1
        np.matmul(q[:, a:b], k[:, :b].transpose(0, 2, 1), out=s)    # [h,rows,dh] @ [h,dh,b]: q·k
        s /= dh ** 0.5                                               # q·k / √dh
        s[:, :, a:] += model.causal_mask(b - a)                      # -inf where key j > query i
        scores[:, a:b, b:] = -np.inf                                 # keys after the whole block
        p = ops.softmax(s, axis=-1, out=pattern[:, a:b, :b])         # rows sum to 1; masked → 0
        pattern[:, a:b, b:] = 0.0
        np.matmul(p, v[:, :b], out=z[:, a:b])                        # [h,rows,b] @ [h,b,dh] -> [h,rows,dh]


def unshared(spares, free_count):
    """Pop arrays off the list `spares` until one has no reference but this function's local:
    return it (None if none has). The others are someone else's now and are dropped."""
    while spares:
        a = spares.pop()
        if sys.getrefcount(a) == free_count:
            return a
    return None


# What sys.getrefcount shows in `unshared` for an array nothing else refers to, found by trying:
# 2 (the local and the argument) up to Python 3.13; 1 from 3.14, whose interpreter may lend the
# local to the call without counting it. None (never reuse) where there are no reference counts.
FREE_COUNT = next((n for n in (1, 2, 3) if hasattr(sys, "getrefcount")
                   and unshared([np.empty(0)], n) is not None), None)


class Reuse:
    """Output arrays for a pass, handed out again by the next pass once nothing else refers to them.

    During a pass (`one_pass`), `empty(shape)` returns an array of the last pass with that shape
    if no one holds it any more (no trace, no view of it: its only references are this object's),
    otherwise a new one. After the pass only that pass's arrays are kept, so what stays allocated
    between passes is at most one trace's worth, freed when the next pass needs other shapes or
    by `clear()`. Outside a pass, or while another thread's pass holds this object, `empty` is
    np.empty.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.kept = {}          # shape -> arrays of the last pass
        self.taken = None       # shape -> arrays handed out in the pass under way
        self.owner = None       # the thread whose pass this is

    @contextmanager
    def one_pass(self):
        """Run a pass inside this: its `empty` calls reuse the last pass's arrays (a pass another
        thread starts meanwhile gets new ones)."""
        with self.lock:
            mine = self.owner is None
            if mine:
                self.owner, self.taken = threading.get_ident(), {}
        try:
            yield
        finally:
            if mine:
                with self.lock:
                    self.kept, self.taken, self.owner = self.taken, None, None

    def empty(self, shape):
        with self.lock:
            if self.owner != threading.get_ident():
                return np.empty(shape, dtype=np.float32)
            a = unshared(self.kept.get(shape, []), FREE_COUNT) if FREE_COUNT else None
            if a is None:
                a = np.empty(shape, dtype=np.float32)
            else:
                a.flags.writeable = True                     # a Trace hands its arrays out read-only
            self.taken.setdefault(shape, []).append(a)
            return a

    def clear(self):
        """Let go of the arrays kept for reuse (their memory is freed if nothing else holds them)."""
        with self.lock:
            self.kept = {}


class CPUKernels(model.Kernels):
    """model.Kernels that split their work into `workers` groups run at once (default: one per core)."""

    def __init__(self, workers=N_CORES):    # the four kernels are the methods below
        self.workers = workers
        self.memory = Reuse()

    def linear(self, x, weight, bias=None):
        """ops.linear (y = x @ W + b) with the output columns, or on long inputs the rows, split
        across the workers."""
        y = self.memory.empty((x.shape[0], weight.shape[1]))                    # [T, n_out]
        workers = max(1, min(self.workers, x.shape[0] * weight.size // MIN_PRODUCT_PER_CORE))
        if workers == 1:
            return ops.linear(x, weight, bias, out=y)
        n_in, n_out = weight.shape
        if len(x) >= workers * MIN_ROWS_PER_CORE_FOR_ROW_SPLIT and n_out <= MAX_WIDENING_FOR_ROW_SPLIT * n_in:
            over_groups(lambda rows: ops.linear(x[rows], weight, bias, out=y[rows]), len(x), workers)
        else:
            over_groups(lambda cols: ops.linear(x, weight[:, cols], None if bias is None else bias[cols],
                                                out=y[:, cols]), n_out, workers)
        return y

    def by_rows(self, fn, x, *args):
        """fn(x, *args, out=...) on blocks of rows of x, one block per worker; fn must treat every
        row on its own (LayerNorm, GELU): the blocks then give exactly the numbers of one call."""
        out = self.memory.empty(x.shape)
        workers = min(self.workers, len(x) // MIN_ROWS_PER_CORE)
        over_groups(lambda rows: fn(x[rows], *args, out=out[rows]), len(x), workers)
        return out

    def layer_norm(self, x, weight, bias, eps):
        """ops.layer_norm on blocks of rows, one per worker -> normalized [T, d], scale [T, 1]."""
        y, scale = self.memory.empty(x.shape), self.memory.empty((len(x), 1))
        workers = min(self.workers, len(x) // MIN_ROWS_PER_CORE)
        over_groups(lambda rows: ops.layer_norm(x[rows], weight, bias, eps, out=(y[rows], scale[rows])),
                    len(x), workers)
        return y, scale

    def gelu(self, x):
        return self.by_rows(ops.gelu_new, x)

    def attend(self, q, k, v):
        """model.attend with groups of heads on the workers, each in blocks of queries. A cached
        generation step (one query, more keys) is too small to split: model.attend itself."""
        if q.shape[1] != k.shape[1]:
            return model.attend(q, k, v)
        H, T, dh = q.shape
        scores = self.memory.empty((H, T, T))
        pattern = self.memory.empty((H, T, T))
        z = self.memory.empty((H, T, dh))
        over_groups(lambda h: attend_block_rows(q[h], k[h], v[h], scores[h], pattern[h], z[h]),
                    H, self.workers)
        return scores, pattern, z


CPU = CPUKernels()


def forward(params, config, ids, edit=model.keep, kernels=CPU):
    """model.forward with the CPU schedule's kernels, BLAS held to one thread."""
    with one_blas_thread(), kernels.memory.one_pass():
        return model.forward(params, config, ids, edit, kernels)


def blocks_from(params, config, layer, resid_pre, edit=model.keep, kernels=CPU):
    """model.blocks_from (the blocks from `layer` on) with the CPU schedule's kernels, BLAS held to
    one thread."""
    with one_blas_thread():
        return model.blocks_from(params, config, layer, resid_pre, edit, kernels)


def forward_step(params, config, cache, token, kernels=CPU):
    """model.forward_step (one token over the KV cache) with the CPU schedule's kernels, BLAS held
    to one thread: of its products only the LM head is large enough to be split across the cores."""
    with one_blas_thread(), kernels.memory.one_pass():
        return model.forward_step(params, config, cache, token, kernels)
