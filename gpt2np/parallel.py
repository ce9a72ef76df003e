"""Run the attention of a layer's heads on all CPU cores at once.

NumPy runs each elementwise operation (scale, mask, softmax) on one core, and BLAS runs each
matrix product on all cores. Attention is mostly elementwise passes over [H, T, T] arrays between
two small matrix products, so done head-batched it leaves cores idle. `over_groups` splits the
heads into one group per core and computes the groups in threads (NumPy releases the GIL inside
its loops), with BLAS held to one thread meanwhile so the threads do not fight over the cores.
The arithmetic is unchanged: every head is computed by the same code, whichever thread runs it.
"""

import os
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

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
