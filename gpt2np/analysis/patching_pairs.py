"""Activation patching over many minimal pairs: each site's mean normalised effect with a 95 %
interval over pairs.

    result = patch_pairs("demo", read_pairs("pairs.jsonl"), workers=2)
    python -m gpt2np patch --pairs pairs.jsonl --model demo        (gpt2np/cli/patch.py)

A pairs file is JSON lines, one pair per line: {"clean", "corrupted", "answer", "versus"} (the
arguments of `patching.patch`; blank lines are skipped). A line that is not such an object, whose
two texts do not have the same number of tokens, whose answer or versus is not one token, or
whose patching fails (e.g. both texts give the same logit difference) is reported in `bad` with
its line number and the reason; nothing is computed for it and the other pairs go on.

Each good pair is one task, run on the same workers as corpus mode (gpt2np/analysis/corpus/
backends.py: local worker processes, a Dask cluster, or this process) and folded in file order,
so the numbers do not depend on what computed them.

Aggregation. Every pair gives, per site, its grid of normalised effects (patching.patch). The
head sites (z, pattern) have the same cells in every pair. The position sites (resid_pre, …,
z_position) have one column per token, and pairs may differ in length: their columns are aligned
at the position where the logits are read — column "p" is that position, "p-3" three tokens
before it — and a cell averages the pairs that have it (`n` per cell).

The interval is a percentile bootstrap over pairs: `resamples` resamples of the good pairs (drawn
with replacement, NumPy's default generator seeded with `seed`), the cell's mean in each, and the
2.5th and 97.5th percentiles of those means. The normalised effect is unbounded (overshoot above
1, effects below 0), so no [0, 1] interval is assumed. A cell with fewer than two pairs has no
interval (None).
"""

import json
import time
from pathlib import Path

import numpy as np

from ..api import Model, load
from ..errors import GPT2npError
from .corpus.backends import DaskWorkers, InProcess, LocalWorkers, ctrl_c_between_windows, fold_windows
from .interventions import token_id
from .patching import SITES, check_sites, patch

KEYS = ("clean", "corrupted", "answer", "versus")
RESAMPLES = 10_000
INTERVAL = ("95 % percentile bootstrap over pairs ({resamples:,} resamples of the pairs, seed {seed}): "
            "the 2.5th and 97.5th percentiles of the resampled means")


# -- the file ------------------------------------------------------------------------------------
def read_pairs(path):
    """A JSON-lines file of pairs -> (good [(line, pair)], bad [{"line", "reason"}]); lines count
    from 1, blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise GPT2npError(f"{path}: cannot read it ({e.strerror or e}). Give a JSON-lines file of "
                          'pairs: {"clean", "corrupted", "answer", "versus"} per line.') from None
    except UnicodeDecodeError as e:
        raise GPT2npError(f"{path} is not valid UTF-8 (byte offset {e.start}). Save it as UTF-8.") from None
    good, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except ValueError as e:
            bad.append({"line": number, "reason": f"not JSON ({e.msg})"})
            continue
        if not isinstance(pair, dict):
            bad.append({"line": number, "reason": "not a JSON object"})
            continue
        missing = [k for k in KEYS if not isinstance(pair.get(k), (str, int)) or isinstance(pair.get(k), bool)]
        if missing:
            bad.append({"line": number, "reason": f"no {', '.join(missing)} (each pair needs "
                                                  f"{', '.join(KEYS)})"})
            continue
        good.append((number, {k: pair[k] for k in KEYS}))
    return good, bad


def check_pair(model, pair, bos=False):
    """Why `pair` cannot be patched on `model` (a str), or None: the token counts and the two
    single tokens, checked before any forward pass."""
    try:
        token_id(model, pair["answer"])
        token_id(model, pair["versus"])
        a, b = model.prompt_ids(pair["clean"], bos), model.prompt_ids(pair["corrupted"], bos)
    except GPT2npError as e:
        return str(e)
    if len(a) != len(b):
        show = lambda ids: " | ".join(repr(t) for t in model.token_strings(ids))  # noqa: E731
        return f"clean has {len(a)} tokens ({show(a)}), corrupted {len(b)} ({show(b)})"
    return None


# -- one pair: a task on a worker ----------------------------------------------------------------
def measure_pair(model, item, context, workspace=None):
    """One pair patched (a worker's task) -> {"line", "tokens", "position", "ld_clean",
    "ld_corrupted", "grids": {site: normalised [rows][columns]}}, or {"line", "error"}."""
    line, pair = item
    try:
        r = patch(model, pair["clean"], pair["corrupted"], pair["answer"], pair["versus"],
                  sites=context["sites"], position=context["position"], head=context["head"],
                  bos=context["bos"])
    except GPT2npError as e:
        return {"line": line, "error": str(e)}
    return {"line": line, "tokens": len(r.clean_tokens), "position": r.position,
            "ld_clean": r.ld_clean, "ld_corrupted": r.ld_corrupted,
            "rows": {site: g.rows for site, g in r.grids.items()},
            "columns": {site: g.columns for site, g in r.grids.items()},
            "grids": {site: g.normalized.tolist() for site, g in r.grids.items()}}


class _Pairs:
    """The good pairs as `fold_windows` reads its work: item i, and the results folded in order."""

    def __init__(self, items):
        self.items, self.results, self.windows = items, [], 0

    def ids(self, i):
        return self.items[i]

    def add(self, i, result):
        self.results.append(result)
        self.windows += 1


# -- over pairs ----------------------------------------------------------------------------------
def bootstrap_interval(effects, resamples=RESAMPLES, seed=0):
    """effects [pairs, cells] float64, NaN where a pair has no such cell -> (mean [cells],
    low [cells], high [cells], n [cells]); low/high NaN where n < 2. The percentile bootstrap of the
    module docstring: the same resampled pairs for every cell."""
    effects = np.asarray(effects, dtype=np.float64)
    n_pairs, n_cells = effects.shape
    present = ~np.isnan(effects)
    values = np.where(present, effects, 0.0)
    n = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = values.sum(axis=0) / n
    counts = np.random.default_rng(seed).multinomial(n_pairs, np.full(n_pairs, 1 / n_pairs), size=resamples)
    counts = counts.astype(np.float64)                                            # [B, pairs]
    low, high = np.full(n_cells, np.nan), np.full(n_cells, np.nan)
    for start in range(0, n_cells, 256):                                          # [B, 256] at a time
        cells = slice(start, start + 256)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (counts @ values[:, cells]) / (counts @ present[:, cells])    # [B, cells]
        lo, hi = np.nanpercentile(means, [2.5, 97.5], axis=0) if n_pairs else (np.nan, np.nan)
        low[cells], high[cells] = lo, hi
    few = n < 2
    low[few], high[few] = np.nan, np.nan
    return mean, low, high, n


def aggregate(done, sites, resamples=RESAMPLES, seed=0):
    """The pairs' grids -> {site: {"rows", "columns", "mean", "low", "high", "n"}} (lists [rows][columns];
    None for a missing number). Position columns are aligned at the read position."""
    out = {}
    for site in sites:
        rows = done[0]["rows"][site]
        position_columns = done[0]["columns"][site][0].split(":")[0].isdigit()
        if position_columns:
            before = max(d["position"] for d in done)
            after = max(d["tokens"] - 1 - d["position"] for d in done)
            columns = [f"p-{k}" if k > 0 else "p" if k == 0 else f"p+{-k}" for k in range(before, -after - 1, -1)]
        else:
            columns = done[0]["columns"][site]
        effects = np.full((len(done), len(rows), len(columns)), np.nan)
        for i, d in enumerate(done):
            grid = np.asarray(d["grids"][site])
            start = before - d["position"] if position_columns else 0
            effects[i, :, start:start + grid.shape[1]] = grid
        mean, low, high, n = bootstrap_interval(effects.reshape(len(done), -1), resamples, seed)
        shape = (len(rows), len(columns))
        listed = lambda a: [[None if np.isnan(x) else float(x) for x in row] for row in a.reshape(shape)]  # noqa: E731
        out[site] = {"rows": rows, "columns": columns, "mean": listed(mean), "low": listed(low),
                     "high": listed(high), "n": n.reshape(shape).astype(int).tolist()}
    return out


def patch_pairs(model, pairs, sites=SITES, position=-1, head=None, bos=False, workers=1, scheduler=None,
                resamples=RESAMPLES, seed=0, bad=(), progress=None, engine=None):
    """Patch every pair and aggregate (see the module docstring) -> dict:
    {"pairs": good pairs measured, "bad": [{"line", "reason"}], "sites": {site: {"rows", "columns",
    "mean", "low", "high", "n"}}, "interval": how it is computed, "per_pair": [{"line", "tokens",
    "ld_clean", "ld_corrupted"}], "run": {"workers", "scheduler", "seconds"}}.

    model: a name or directory (worker processes load it themselves) or a loaded Model (local
      workers only). pairs: [(line, {"clean", "corrupted", "answer", "versus"})] (read_pairs) or
      plain dicts (numbered from 1). sites, position, head, bos: as for patching.patch.
    workers: local worker processes (0: in this process); scheduler: a Dask scheduler address.
    bad: problems found before (read_pairs' second result), listed first.
    progress: progress(done, total) after every pair. Ctrl+C: KeyboardInterrupt between pairs.
    Raises GPT2npError when no pair is good.
    """
    spec = model
    if not isinstance(model, Model):
        spec = str(Path(model).resolve()) if Path(str(model)).is_dir() else str(model)
        model = load(spec, engine=engine or "fast")
    if workers < 0:
        raise GPT2npError(f"--workers must be at least 1, got {workers}.")
    if resamples < 1:
        raise GPT2npError(f"resamples must be at least 1, got {resamples}.")
    sites, head = check_sites(model, sites, head)
    items = [item if isinstance(item, tuple) else (i, item) for i, item in enumerate(pairs, 1)]
    bad = list(bad)
    checked = []
    for line, pair in items:
        why = check_pair(model, pair, bos)
        (bad.append({"line": line, "reason": why}) if why else checked.append((line, pair)))
    context = {"sites": sites, "position": position, "head": head, "bos": bos}
    t0 = time.perf_counter()
    work = _Pairs(checked)
    if checked:
        backend = (DaskWorkers(spec, model.engine, context, scheduler, task=measure_pair) if scheduler else
                   InProcess(model, context, task=measure_pair) if workers == 0 else
                   LocalWorkers(spec, model.engine, context, workers, task=measure_pair))
        size = backend.size
        on_pair = (lambda w: progress(w.windows, len(checked))) if progress else None
        try:
            if progress:
                progress(0, len(checked))
            with ctrl_c_between_windows() as stop:
                fold_windows(backend, work, work, len(checked), on_pair, stop)
        finally:
            backend.close()
    else:
        size = 0
    done = [r for r in work.results if "error" not in r]
    bad += [{"line": r["line"], "reason": r["error"]} for r in work.results if "error" in r]
    bad.sort(key=lambda b: b["line"])
    if not done:
        raise GPT2npError(f"No pair could be patched ({len(bad)} bad: "
                          + "; ".join(f"line {b['line']}: {b['reason']}" for b in bad[:3])
                          + ("; …" if len(bad) > 3 else "") + ").")
    return {"pairs": len(done), "bad": bad, "sites": aggregate(done, sites, resamples, seed),
            "interval": INTERVAL.format(resamples=resamples, seed=seed),
            "per_pair": [{k: d[k] for k in ("line", "tokens", "position", "ld_clean", "ld_corrupted")}
                         for d in done],
            "run": {"workers": size, "scheduler": scheduler, "seconds": time.perf_counter() - t0}}

