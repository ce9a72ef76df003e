"""Where corpus mode's windows are computed: worker processes on this machine, a Dask cluster, or
this process; and the fold of their results in window order.

The backends run any task `task(model, item, context, workspace)` (a module-level function, so
that it reaches spawned and Dask workers): corpus mode's is `measure_window` (the default), and
`gpt2np.analysis.patching.patch_pairs` runs one minimal pair per task on the same workers."""

import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_first
from contextlib import contextmanager
from multiprocessing import get_context

from ... import engine as cpu_engine
from ...api import Model, load
from ...errors import GPT2npError
from .window import measure_window

# -- running the windows -------------------------------------------------------------------------
_WORKER = {}     # in a worker process: the model, its spec and the context of the run


def _start_worker(spec, engine, context, task=None):
    """Initializer of a local worker process: Ctrl+C is the parent's to handle; one thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_model(spec, engine)
    _WORKER["context"], _WORKER["task"] = context, task or window_task


def _worker_model(spec, engine):
    """The model of this worker process, loaded once (memory-mapped)."""
    if _WORKER.get("key") != (str(spec), engine):
        model = spec if isinstance(spec, Model) else load(spec, allow_download=False, engine=engine)
        _WORKER.update(key=(str(spec), engine), model=model, workspace=cpu_engine.Workspace())
    return _WORKER["model"]


def window_task(model, ids, context, workspace):
    """Corpus mode's task: one window's statistics (window.measure_window)."""
    return measure_window(model, ids, context, workspace)


def _local_task(item):
    return _WORKER["task"](_WORKER["model"], item, _WORKER["context"], _WORKER["workspace"])


def dask_task(spec, engine, context, item, task=None):
    """One task on a Dask worker (the model and a workspace made once per worker process)."""
    return (task or window_task)(_worker_model(spec, engine), item, context, _WORKER["workspace"])


class LocalWorkers:
    """`workers` processes on this machine (spawned: each imports gpt2np and loads the model)."""

    def __init__(self, spec, engine, context, workers, task=None):
        self.size = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                        initargs=(spec, engine, context, task))

    def submit(self, ids):
        return self.pool.submit(_local_task, ids)

    def wait(self, futures, timeout):
        return wait_first(futures, timeout, return_when=FIRST_COMPLETED).done

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskWorkers:
    """The workers of a Dask distributed cluster, reached through its scheduler's address."""

    def __init__(self, spec, engine, context, address, task=None):
        try:
            import distributed
        except ImportError:
            raise GPT2npError("--scheduler needs Dask's `distributed`: pip install 'gpt2np[scale]' "
                              "(or pip install distributed).") from None
        if isinstance(spec, Model):
            raise GPT2npError("On a Dask cluster every worker loads the model itself: give it by "
                              "name or directory, not as a loaded Model.")
        self.distributed, self.args, self.task = distributed, (spec, engine, context), task
        try:
            self.client = distributed.Client(address, timeout="10s")
        except (OSError, TimeoutError, ValueError) as e:
            raise GPT2npError(f"Cannot reach the Dask scheduler at {address} ({e}). Start one "
                              "(`dask scheduler`, then `dask worker ADDRESS`), or leave out "
                              "--scheduler to run on this machine.") from None
        self.size = max(1, sum(self.client.nthreads().values()))

    def submit(self, ids):
        return self.client.submit(dask_task, *self.args, ids, self.task, pure=False)

    def wait(self, futures, timeout):
        try:
            return self.distributed.wait(list(futures), timeout, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return set()

    def close(self):
        self.client.close()


class InProcess:
    """Tasks computed here, one by one (no worker processes)."""
    size = 1

    def __init__(self, model, context, task=None):
        self.model, self.context, self.workspace = model, context, cpu_engine.Workspace()
        self.task = task or window_task

    def submit(self, ids):
        f = Future()
        f.set_result(self.task(self.model, ids, self.context, self.workspace))
        return f

    def wait(self, futures, timeout):
        return set(futures)

    def close(self):
        pass


def fold_windows(backend, corpus, totals, end, on_window=None, stop=None):
    """Compute windows totals.windows..end-1 on `backend`, folding each into `totals` in window
    order; at most two windows per worker are in flight. on_window(totals) after every fold.
    stop: an Event (`ctrl_c_between_windows`); once set, KeyboardInterrupt between two folds."""
    pending, ready, following = {}, {}, totals.windows
    while totals.windows < end:
        while following < end and len(pending) + len(ready) < 2 * backend.size:
            pending[backend.submit(corpus.ids(following))] = following
            following += 1
        for future in backend.wait(pending, timeout=0.2):
            ready[pending.pop(future)] = future.result()
        while totals.windows in ready and not (stop and stop.is_set()):
            totals.add(totals.windows, ready.pop(totals.windows))
            if on_window:
                on_window(totals)
        if stop and stop.is_set():
            raise KeyboardInterrupt


@contextmanager
def ctrl_c_between_windows():
    """While measuring, Ctrl+C (SIGINT) only sets the Event yielded, which `fold_windows` reads
    between two windows: a window is never half folded into the sums that get saved. (Only the
    main thread receives signals; elsewhere the Event is never set.)"""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
