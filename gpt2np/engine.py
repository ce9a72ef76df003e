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
  - Memory is reused only when the caller asks for it: `Model.run(..., workspace=ws)` takes the
    arrays a pass writes from a `Workspace`, which hands out only arrays of traces given back to it
    (`ws.give_back(trace)`); without one a pass writes fresh arrays and nothing is kept after it.
    Fresh memory costs more than writing it: the operating system must map and zero every page
    first (at 1,024 tokens a trace is 2.1 GB), and on a virtual machine that hands freed memory
    back to its host, each page is also faulted in again there.
"""

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

from . import model, ops
from .errors import GPT2npError

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


class Workspace:
    """Memory for forward passes, owned by the caller: `model.run(text, workspace=ws)` writes its
    arrays into arrays given back to `ws` earlier (same shapes), or new ones; `ws.give_back(trace)`
    returns a trace's arrays for the next pass to write, and the trace refuses to be read from then on.

        ws = gpt2np.Workspace()
        for text in texts:
            trace = model.run(text, workspace=ws)
            ...                                   # read it, copy what you want to keep
            ws.give_back(trace)                   # the next pass writes into these arrays

    What is kept: the arrays given back since the last pass ended. A pass takes the ones of the
    shapes it writes; when it ends, the ones it did not take are let go (so a workspace holds at
    most what was given back since, and nothing once it is dropped or `clear()`ed). A pass that
    fails lets its arrays go.

    Views you kept: giving back does not need a promise. Every array a pass writes is handed out
    as a view of its memory through a `memoryview`, which every further view (a row, a reshape, a
    transpose, the trace's own q, k and v) keeps alive. `give_back` holds only a weak reference to
    it: an array of the trace that anything still reaches (an array or a view of it you kept)
    keeps that reference alive and is simply not reused; it stays yours, freed when you drop it.
    Only arrays nothing else can reach any more are written again. No reference count is read:
    a weak reference is dead only once its object is gone, so a wrong guess can only mean less
    reuse, never a held array overwritten. (Digging the memory out from under a view, through
    `.base.obj` or a pointer, defeats this, as it would defeat any bookkeeping.)

    Threads: passes in several threads may share one workspace. They run at the same time; each
    given-back array goes to one pass only, the others get new arrays.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._free = {}         # shape -> arrays given back, free to write

    def __repr__(self):
        with self._lock:
            n = sum(map(len, self._free.values()))
            mb = sum(a.nbytes for arrays in self._free.values() for a in arrays) / 1e6
        return f"<gpt2np.Workspace: {n} arrays given back, {mb:.1f} MB>"

    @contextmanager
    def one_pass(self):
        """Run one pass inside this: it yields the pass's `Lease` (give it to `forward` as memory).
        When the pass ends, the given-back arrays it did not take are let go."""
        try:
            yield Lease(self)
        finally:
            with self._lock:
                self._free = {}

    def _take(self, shape):
        with self._lock:
            spares = self._free.get(shape)
            return spares.pop() if spares else None

    def give_back(self, trace):
        """Hand a trace computed with this workspace back: from now on the trace refuses to be read
        (its arrays are no longer reachable through it), and the next passes may write its arrays,
        except any that something still reaches (see the class docstring)."""
        lease = getattr(trace, "_lease", None)
        if getattr(trace, "given_back", False):
            raise GPT2npError("This trace was already given back to its workspace; give each trace "
                              "back once.")
        if lease is None or lease.workspace is not self:
            raise GPT2npError("This trace was not computed with this workspace: give back only "
                              "traces from model.run(..., workspace=ws) with the same ws.")
        trace._given_back()                               # drops its arrays
        with self._lock:
            for memory, handed_out in lease.arrays:
                if handed_out() is None:                  # nothing reaches it any more
                    self._free.setdefault(memory.shape, []).append(memory)
        lease.arrays = []

    def clear(self):
        """Let go of the arrays given back (freed, as nothing else holds them)."""
        with self._lock:
            self._free = {}


class Lease:
    """The arrays one pass took from a Workspace: each is the workspace's own memory, handed out
    as a view through a memoryview; kept here are the memory and a weak reference to that view's
    memoryview (which every view of it keeps alive)."""

    def __init__(self, workspace):
        self.workspace = workspace
        self.arrays = []        # (memory, weakref to the memoryview the pass's array is a view of)

    def empty(self, shape):
        memory = self.workspace._take(shape)
        if memory is None:
            memory = np.empty(shape, dtype=np.float32)
        array = np.asarray(memoryview(memory))           # a view whose base is a memoryview
        self.arrays.append((memory, weakref.ref(array.base)))
        return array


class CPUKernels(model.Kernels):
    """model.Kernels that split their work into `workers` groups run at once (default: one per core).
    memory: where the arrays they write come from, a Workspace's `Lease` for one pass (None: new
    arrays). Their settings are fixed when made: for other settings make other kernels
    (`CPUKernels(workers=1)`, `kernels.for_pass(lease)`)."""

    def __init__(self, workers=N_CORES, memory=None):    # the four kernels are the methods below
        self.workers = workers
        self.memory = memory

    def for_pass(self, memory):
        """The same kernels writing into `memory` (a Lease), for one pass."""
        return CPUKernels(self.workers, memory)

    def empty(self, shape):
        return np.empty(shape, dtype=np.float32) if self.memory is None else self.memory.empty(shape)

    def linear(self, x, weight, bias=None):
        """ops.linear (y = x @ W + b) with the output columns, or on long inputs the rows, split
        across the workers."""
        y = self.empty((x.shape[0], weight.shape[1]))                           # [T, n_out]
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
        out = self.empty(x.shape)
        workers = min(self.workers, len(x) // MIN_ROWS_PER_CORE)
        over_groups(lambda rows: fn(x[rows], *args, out=out[rows]), len(x), workers)
        return out

    def layer_norm(self, x, weight, bias, eps):
        """ops.layer_norm on blocks of rows, one per worker -> normalized [T, d], scale [T, 1]."""
        y, scale = self.empty(x.shape), self.empty((len(x), 1))
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
        scores = self.empty((H, T, T))
        pattern = self.empty((H, T, T))
        z = self.empty((H, T, dh))
        over_groups(lambda h: attend_block_rows(q[h], k[h], v[h], scores[h], pattern[h], z[h]),
                    H, self.workers)
        return scores, pattern, z


CPU = CPUKernels()      # one worker per core, new arrays; never changed (make other kernels instead)


def forward(params, config, ids, edit=model.keep, kernels=CPU, memory=None):
    """model.forward with the CPU schedule's kernels, BLAS held to one thread.
    memory: a Workspace's Lease for this pass (`Workspace.one_pass`); None: new arrays."""
    with one_blas_thread():
        return model.forward(params, config, ids, edit,
                             kernels if memory is None else kernels.for_pass(memory))


def blocks_from(params, config, layer, resid_pre, edit=model.keep, kernels=CPU):
    """model.blocks_from (the blocks from `layer` on) with the CPU schedule's kernels, BLAS held to
    one thread."""
    with one_blas_thread():
        return model.blocks_from(params, config, layer, resid_pre, edit, kernels)


def forward_step(params, config, cache, token, kernels=CPU):
    """model.forward_step (one token over the KV cache) with the CPU schedule's kernels, BLAS held
    to one thread: of its products only the LM head is large enough to be split across the cores.
    A step's arrays are small (one row each): they are new every step."""
    with one_blas_thread():
        return model.forward_step(params, config, cache, token, kernels)
