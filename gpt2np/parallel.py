"""Use every CPU core: split independent work into one group per core and run the groups at once.

NumPy runs each elementwise operation on one core. BLAS can run a matrix product on all cores,
but its worker threads wait for each other by spinning: on a machine with anything else running
they lose their turn and a product can take ten times longer (measured here). So gpt2np holds BLAS
to one thread and splits the work itself, in threads (NumPy releases the GIL inside its loops):
  - a layer's attention heads: one group of heads per core (`model.attention`);
  - a linear layer's output columns: one block of columns per core (`linear` below).
The arithmetic is unchanged: every head and every column is computed by the same code.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from . import ops

N_CORES = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
_pool = ThreadPoolExecutor(N_CORES, thread_name_prefix="gpt2np-heads")
_blas = ThreadpoolController()


def over_groups(fn, n_items, workers=N_CORES):
    """Call fn(group) for slices that split range(n_items) into `workers` groups, concurrently."""
    workers = max(1, min(workers, n_items))
    groups = [slice(i * n_items // workers, (i + 1) * n_items // workers) for i in range(workers)]
    if workers == 1:
        fn(groups[0])
        return
    with _blas.limit(limits=1, user_api="blas"):
        for done in [_pool.submit(fn, group) for group in groups]:
            done.result()


def linear(x, weight, bias=None):
    """`ops.linear` (y = x @ W + b) with the output columns split across the cores.

    x [T, n_in], weight [n_in, n_out], bias [n_out] or None -> [T, n_out]
    """
    y = np.empty((x.shape[0], weight.shape[1]), dtype=np.float32)
    over_groups(lambda cols: ops.linear(x, weight[:, cols], None if bias is None else bias[cols],
                                        out=y[:, cols]), weight.shape[1])
    return y
