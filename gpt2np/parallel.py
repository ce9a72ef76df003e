"""Use every CPU core: split independent work into one group per core and run the groups at once.

NumPy runs each elementwise operation on one core. BLAS can run a matrix product on all cores,
but its worker threads wait for each other by spinning: on a machine with anything else running
they lose their turn and a product can take ten times longer (measured here). So gpt2np holds BLAS
to one thread for the whole forward pass (`one_blas_thread`) and splits the work itself, in
threads (NumPy releases the GIL inside its loops):
  - a layer's attention heads: one group of heads per core (`model.attention`);
  - a linear layer's output columns: one block of columns per core (`linear` below);
  - LayerNorm and GELU on long inputs: one block of rows per core (`by_rows` below).
The arithmetic is unchanged: every head and every column is computed by the same code.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

from . import ops

N_CORES = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
_pool = ThreadPoolExecutor(N_CORES, thread_name_prefix="gpt2np-heads")
_blas = ThreadpoolController()


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


def linear(x, weight, bias=None):
    """`ops.linear` (y = x @ W + b) with the output columns split across the cores.

    x [T, n_in], weight [n_in, n_out], bias [n_out] or None -> [T, n_out]
    """
    y = np.empty((x.shape[0], weight.shape[1]), dtype=np.float32)
    over_groups(lambda cols: ops.linear(x, weight[:, cols], None if bias is None else bias[cols],
                                        out=y[:, cols]), weight.shape[1])
    return y


# Below this many rows per core, handing work to another thread costs more than it saves.
MIN_ROWS_PER_CORE = 64


def by_rows(fn, x, *args):
    """fn(x, *args, out=...) on blocks of rows of x, one block per core. fn must treat every row
    on its own (LayerNorm, GELU): then the blocks give exactly the numbers of one call on all of x.

    x [T, ...] -> array shaped like x
    """
    out = np.empty_like(x)
    workers = min(N_CORES, len(x) // MIN_ROWS_PER_CORE)
    over_groups(lambda rows: fn(x[rows], *args, out=out[rows]), len(x), workers=workers)
    return out
