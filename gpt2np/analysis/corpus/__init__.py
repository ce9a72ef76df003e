"""Corpus mode: head statistics and the original demo's predictions over many texts.

    stats = gpt2np.analysis.corpus.measure("demo", ["a text", "another text"], window=128, workers=2)
    python -m gpt2np corpus FILE|DIR|- --model demo --out stats.json      (gpt2np/cli/corpus.py)

The texts are cut into windows of `window` tokens (a window never spans two documents: every text
is one, and so is every piece of a text between literal `<|endoftext|>` markers). Each window gets
one forward pass; from its attention patterns come, for every head, five statistics of each query
1..T-1 (gpt2np.analysis):

    entropy         bits of the query's attention row                          0 … log2(window)
    sink            its weight on position 0                                   0 … 1
    previous        its weight on the previous token                           0 … 1
    self            its weight on itself                                       0 … 1
    vw_sink_share   its share of value-weighted attention from position 0      0 … 1

They are kept as streaming sums, folded in window order (no trace is kept):
  - each window's mean over its queries (what gpt2np.analysis gives for that window): their mean
    over windows, with a 95% interval that stays inside the statistic's range (the normal interval
    on the logit scale, from s: the standard deviation between windows; report.mean_interval);
  - a histogram of the single queries' values, on fixed bins;
  - the `top_k` windows (largest window mean) and the `top_k` positions (largest single value);
  - each head's type in each window (analysis.classify_head, with the induction probe's scores).
And per window, the original demo's predictions that apply to any text, with gpt2np.analysis.findings'
checks and numbers: 1 exact causal mask, 2 first token on itself, 3 sinks in layers 4–8, 5 ≥ 3 head
types by layer 4 — reported as the share of windows where each holds, with a 95% Wilson interval.

Every window is a task. Tasks run in worker processes on this machine (each loads the model once,
memory-mapped, and computes one window at a time on one thread: its memory is one window's trace)
or on a Dask cluster (`scheduler="tcp://…"`, the optional extra `gpt2np[scale]`). Results are
folded in window order, so the numbers do not depend on what computed them. With `out`, the results
file is also the checkpoint: rewritten every `checkpoint_every` seconds and when interrupted; a
rerun with the same model, input and settings continues where it stopped.
"""

import json
import os
import time
from pathlib import Path

from ...api import Model, load
from ...errors import GPT2npError
from .. import findings
from .backends import DaskWorkers, InProcess, LocalWorkers, ctrl_c_between_windows, fold_windows
from .report import FORMAT, report, with_intervals
from .sources import read_sources, split
from .totals import Totals
from .window import STATISTICS

# The package's face: what the command line and the viewer use. The parts are in sources.py,
# window.py, totals.py, report.py and backends.py.
# The layout of the saved sums ("state"), part of a run's fingerprint. The report's VERSION can
# change (version 2: other intervals) without making a checkpoint of the same run unusable.
STATE_VERSION = 1

__all__ = ["measure", "read_stats", "read_sources", "write_json", "Interrupted", "STATISTICS", "FORMAT"]


# -- the whole run -------------------------------------------------------------------------------
def measure(model, texts, window=128, stride=None, bos=False, top_k=5, workers=1, scheduler=None,
            max_windows=None, out=None, restart=False, checkpoint_every=60.0, progress=None,
            engine=None):
    """Measure the heads of `model` over `texts` (see the module docstring) -> the report dict.

    model: a name or directory (what gpt2np.load takes; worker processes load it themselves) or a
      loaded Model (sent to the local workers; a Dask cluster needs a name or directory).
    texts: strings or (name, string) pairs. window, stride, bos: see `split`.
    workers: local worker processes (0: compute in this process).
    scheduler: a Dask scheduler address (tcp://host:port) instead of local workers.
    max_windows: measure only the first N windows (a rerun with more continues).
    out: the results file, also the checkpoint (resumed when it holds this run; another run's file
      is refused unless restart=True). checkpoint_every: seconds between its rewrites.
    progress: a callable(done, total) called before the first window and after each one.
    engine: "fast" or "reference" for a model given by name (default "fast"); a loaded Model
      keeps its own.
    The report's "run" part says what computed it and how fast; everything else depends only on
    the model, the input and the settings. Ctrl+C writes `out`, then raises `Interrupted`; a
    failing worker writes it, then raises GPT2npError.
    """
    spec = model
    if not isinstance(model, Model):
        spec = str(Path(model).resolve()) if Path(str(model)).is_dir() else str(model)
        model = load(spec, engine=engine or "fast")
    engine = model.engine
    if top_k < 1:
        raise GPT2npError(f"--top-k must be at least 1, got {top_k}.")
    if workers < 0:
        raise GPT2npError(f"--workers must be at least 1, got {workers}.")
    if max_windows is not None and max_windows < 1:
        raise GPT2npError(f"--max-windows must be at least 1, got {max_windows}.")
    corpus = split(model, texts, window, stride, bos)
    settings = {"window": window, "stride": window - bos if stride is None else stride,
                "bos": bos, "top_k": top_k}
    identity = {"format": FORMAT, "version": STATE_VERSION, "settings": settings, "engine": engine,
                "model": [model.info.name, model.info.origin, model.info.n_params,
                          vars(model.config)]}
    fingerprint = corpus.fingerprint(identity)
    totals = resume(out, fingerprint, restart) or Totals(model.config.n_layer, model.config.n_head,
                                                         top_k)
    end = len(corpus.windows) if max_windows is None else min(max_windows, len(corpus.windows))
    spec_name = None if isinstance(spec, Model) else spec

    def result(run):
        r = report(model, corpus, settings, totals, fingerprint, spec_name)
        r["state"] = totals.state()
        r["run"] = run
        return r

    run = {"windows": 0, "seconds": 0.0, "windows_per_s": None, "workers": None,
           "scheduler": scheduler, "interrupted": False}
    if totals.windows >= end:
        r = result(run)
        if out:
            write_json(out, r)        # rewritten as this version's report (intervals, say)
        return r
    context = {"induction": findings.induction_scores(model)[0].tolist(), "top_k": top_k,
               "window": window}
    backend = (DaskWorkers(spec, engine, context, scheduler) if scheduler else
               InProcess(model, context) if workers == 0 else
               LocalWorkers(spec, engine, context, workers))
    run["workers"] = backend.size
    first, t0, saved = totals.windows, time.perf_counter(), [time.perf_counter()]

    def after_window(t):
        run["windows"] = t.windows - first
        run["seconds"] = time.perf_counter() - t0
        run["windows_per_s"] = run["windows"] / run["seconds"] if run["seconds"] > 0 else None
        if progress:
            progress(t.windows, end)
        if out and time.perf_counter() - saved[0] >= checkpoint_every:
            write_json(out, result(run))
            saved[0] = time.perf_counter()

    try:
        if out:
            write_json(out, result(run))       # a file to resume from, and a writable --out
        if progress:
            progress(totals.windows, end)
        with ctrl_c_between_windows() as stop:
            fold_windows(backend, corpus, totals, end, after_window, stop)
    except BaseException as e:                 # Ctrl+C, a worker that died, ...: keep what is done
        run["interrupted"] = True
        if out:
            write_json(out, result(run))
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(totals.windows, end, out) from None
        if isinstance(e, GPT2npError):
            raise
        kept = f"the {totals.windows} windows before it are in {out}" if out else "nothing was saved (no out)"
        raise GPT2npError(f"Computing window {totals.windows} failed ({type(e).__name__}: {e}); "
                          f"{kept}. Run the same command again to continue.") from e
    finally:
        backend.close()
    r = result(run)
    if out:
        write_json(out, r)
    return r


class Interrupted(KeyboardInterrupt):
    """Ctrl+C during `measure`: `done` of `total` windows are folded (and saved in `out`)."""

    def __init__(self, done, total, out):
        super().__init__(f"interrupted after {done} of {total} windows")
        self.done, self.total, self.out = done, total, out


def resume(out, fingerprint, restart):
    """The Totals saved in `out` when it holds this very run; None when there is nothing to resume.
    A file that is not a corpus file, or holds another run, is never overwritten silently."""
    if out is None or not Path(out).exists():
        return None
    try:
        saved = json.loads(Path(out).read_text(encoding="utf-8"))
        ours = saved.get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours, saved = False, None
    if not ours:
        raise GPT2npError(f"{out} exists and is not a gpt2np corpus file: give another --out "
                          "(it is not overwritten).")
    if restart:
        return None
    if saved["input"]["fingerprint"] != fingerprint:
        raise GPT2npError(f"{out} holds the results of another model, input or settings: give "
                          "another --out, or pass --restart to replace it.")
    return Totals.from_state(saved["state"])


def write_json(path, data):
    """Write `data` to path atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise GPT2npError(f"Cannot write {path}: {e.strerror or e}. Give a writable --out.") from None
    finally:
        tmp.unlink(missing_ok=True)          # left only when the write did not finish


def read_stats(path):
    """A results file written by `measure`, checked to be one -> dict; one of an earlier version
    gets this version's intervals (report.with_intervals)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise GPT2npError(f"{path}: cannot read it ({e.strerror or e}).") from None
    except ValueError:
        raise GPT2npError(f"{path} is not JSON: give a file written by `gpt2np corpus --out`.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GPT2npError(f"{path} is not a gpt2np corpus file: give one written by "
                          "`gpt2np corpus --out`.")
    try:
        return with_intervals(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise GPT2npError(f"{path} is a gpt2np corpus file of version {data.get('version')} that "
                          "cannot be read: run the `gpt2np corpus` command that wrote it again "
                          "(with the same --out it reuses the saved sums).") from None
