"""Corpus mode: head statistics and the original demo's predictions over many texts.

    stats = gpt2np.corpus.measure("demo", ["a text", "another text"], window=128, workers=2)
    python -m gpt2np corpus FILE|DIR|- --model demo --out stats.json      (gpt2np/cli_corpus.py)

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
    over windows, with a 95% interval mean ± 1.96·s/√n (s: the standard deviation between windows);
  - a histogram of the single queries' values, on fixed bins;
  - the `top_k` windows (largest window mean) and the `top_k` positions (largest single value);
  - each head's type in each window (analysis.classify_head, with the induction probe's scores).
And per window, the original demo's predictions that apply to any text, with gpt2np.findings'
checks and numbers: 1 exact causal mask, 2 first token on itself, 3 sinks in layers 4–8, 5 ≥ 3 head
types by layer 4 — reported as the share of windows where each holds, with a 95% Wilson interval.

Every window is a task. Tasks run in worker processes on this machine (each loads the model once,
memory-mapped, and computes one window at a time on one thread: its memory is one window's trace)
or on a Dask cluster (`scheduler="tcp://…"`, the optional extra `gpt2np[scale]`). Results are
folded in window order, so the numbers do not depend on what computed them. With `out`, the results
file is also the checkpoint: rewritten every `checkpoint_every` seconds and when interrupted; a
rerun with the same model, input and settings continues where it stopped.
"""

import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_first
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from . import analysis, findings
from . import engine as cpu_engine
from .api import Model, load
from .errors import GPT2npError
from .findings import (
    HOLDS,
    MIN_TYPES,
    NOT_APPLICABLE,
    SINK_LAYERS,
    SINK_SHARE,
    SPECIALIZED_BY,
)
from .tokenizer import ENDOFTEXT

FORMAT, VERSION = "gpt2np-corpus-stats", 1
STATISTICS = ("entropy", "sink", "previous", "self", "vw_sink_share")
ABOUT = {
    "entropy": "entropy of the query's attention row, in bits",
    "sink": "the query's weight on position 0",
    "previous": "the query's weight on the previous token",
    "self": "the query's weight on itself",
    "vw_sink_share": "the query's share of value-weighted attention ‖α·v·W_O‖ from position 0",
}
N_BINS = 20
Z95 = 1.959963984540054             # the standard normal's 97.5% quantile: a two-sided 95% interval
MEAN_INTERVAL = ("mean ± 1.96·s/√n over windows (normal approximation; s: the standard deviation "
                 "of the window means, n: windows)")
SHARE_INTERVAL = "Wilson score interval, 95% (z = 1.96)"
PREDICTIONS = {       # the original demo's predictions that apply to any text, numbered as in findings
    1: "the upper triangle of every attention pattern is exactly 0",
    2: "the first token attends 1.0 to itself, with entropy 0",
    3: f"in layers {SINK_LAYERS.start}–{SINK_LAYERS.stop - 1}, 1–2 heads per layer put "
       f"≥ {SINK_SHARE:.0%} of their weight on position 0",
    5: f"by layer {SPECIALIZED_BY}, some layer has ≥ {MIN_TYPES} distinct head types",
}


# -- intervals -----------------------------------------------------------------------------------
def wilson_interval(k, n, z=Z95):
    """Wilson score interval of a proportion k/n -> (low, high); None when n = 0."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def mean_interval(mean, sd, n, z=Z95):
    """mean ± z·sd/√n -> (low, high); None for fewer than 2 observations."""
    if n < 2:
        return None
    half = z * sd / math.sqrt(n)
    return mean - half, mean + half


# -- texts, documents, windows -------------------------------------------------------------------
def read_sources(path, errors="strict", stdin=None):
    """The texts of a file, of every *.txt file below a directory (sorted), or of standard input
    ("-"), as [(name, text)]. errors: "strict" refuses invalid UTF-8, "replace" puts U+FFFD there.
    Empty files and binary data (a NUL byte) are refused."""
    if str(path) == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return [("<stdin>", decode_text("standard input", stream.read(), errors))]
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise GPT2npError(f"{path}: the directory has no *.txt file. Give a text file, a "
                              "directory of .txt files, or - for standard input.")
    elif path.is_file():
        files = [path]
    else:
        raise GPT2npError(f"{path}: no such file or directory. Give a text file, a directory of "
                          ".txt files, or - for standard input.")
    sources = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise GPT2npError(f"{f}: cannot read it ({e.strerror or e}).") from None
        sources.append((str(f.relative_to(path)) if path.is_dir() else str(f),
                        decode_text(str(f), data, errors)))
    return sources


def decode_text(name, data, errors="strict"):
    """Bytes of a text file -> str, or one clear error for empty, binary or non-UTF-8 data."""
    if not data.strip():
        raise GPT2npError(f"{name} is empty{'' if not data else ' (only whitespace)'}: give a text "
                          "of at least two tokens.")
    if b"\0" in data:
        raise GPT2npError(f"{name} looks like binary data (a NUL byte at offset {data.index(0)}), "
                          "not text: give a UTF-8 text file.")
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise GPT2npError(f"{name} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                          f"{e.start}. Save it as UTF-8, or pass --errors replace to read such "
                          "bytes as U+FFFD.") from None


@dataclass
class Corpus:
    """Token ids of every document and the windows cut from them (document, first, end token)."""
    names: list            # one per source text
    documents: list        # (source index, document index in the source, ids int32 [n])
    windows: list          # (document index, start, end): text tokens start..end-1
    bos_id: int | None     # prepended to every window when not None
    skipped: int           # windows of fewer than 2 tokens (statistics need 2)

    def ids(self, k):
        """The token ids of window k as the model sees them ([<|endoftext|>] + text). -> int64 [T]"""
        d, a, b = self.windows[k]
        text = self.documents[d][2][a:b].astype(np.int64)
        return text if self.bos_id is None else np.concatenate([[self.bos_id], text])

    def fingerprint(self, extra):
        """sha256 of `extra` (model, settings) and every window's ids: the same means the same run."""
        h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
        for k in range(len(self.windows)):
            h.update(np.int64(k).tobytes() + self.ids(k).tobytes())
        return h.hexdigest()


def split(model, texts, window, stride=None, bos=False):
    """Texts -> Corpus. texts: strings or (name, string) pairs. Each window has `window` tokens,
    <|endoftext|> included with bos; the next starts `stride` text tokens later (default: where
    the last one ended); the last window of a document ends with it and may be shorter."""
    if model.tokenizer is None:
        raise GPT2npError(f"{model.info.name} has no tokenizer, and corpus mode reads text: use a "
                          "model directory with tokenizer.json.")
    n_ctx = model.config.n_positions
    if window > n_ctx:
        raise GPT2npError(f"--window {window} is longer than {model.info.name}'s context of "
                          f"{n_ctx} tokens: give --window {n_ctx} or less.")
    if window < 2 + bos:
        raise GPT2npError(f"--window {window} is too short: the statistics need 2 tokens per "
                          f"window{' besides <|endoftext|>' if bos else ''}.")
    per_window = window - bos
    stride = per_window if stride is None else stride
    if stride < 1:
        raise GPT2npError(f"--stride {stride} must be at least 1 token.")
    names, documents, windows, skipped = [], [], [], 0
    for s, item in enumerate(texts):
        name, text = item if isinstance(item, tuple) else (f"text {s}", item)
        names.append(name)
        pieces = [p for p in text.split(ENDOFTEXT) if p.strip()]
        for j, piece in enumerate(pieces):
            ids = np.asarray(model.encode(piece), dtype=np.int32)
            d = len(documents)
            documents.append((s, j, ids))
            start = 0
            while True:
                end = min(start + per_window, len(ids))
                if end - start + bos >= 2:
                    windows.append((d, start, end))
                else:
                    skipped += 1
                if end >= len(ids):
                    break
                start += stride
    if not windows:
        raise GPT2npError("The input has no window of at least 2 tokens: give more text.")
    return Corpus(names, documents, windows, model.bos_id() if bos else None, skipped)


# -- one window ----------------------------------------------------------------------------------
def bin_edges(window):
    """Fixed histogram bins for each statistic: N_BINS equal bins over its range."""
    return {s: np.linspace(0.0, math.log2(window) if s == "entropy" else 1.0, N_BINS + 1)
            for s in STATISTICS}


ONE_WORKER = cpu_engine.CPUKernels(workers=1)     # windows are the parallel work, not a window's parts


def measure_window(model, ids, context, workspace=None):
    """`window_stats` on one thread: the fast engine's kernels on one worker and BLAS held to one
    thread while it runs (windows are the parallel work), so that a window's numbers are the same
    bits wherever it is computed. workspace: the trace is computed in it and given back after."""
    with cpu_engine.one_blas_thread():
        trace = model.run(ids, workspace=workspace, kernels=ONE_WORKER)
        try:
            return window_stats(model, trace, context)
        finally:
            if workspace is not None:
                workspace.give_back(trace)


def window_stats(model, trace, context):
    """Everything the corpus keeps of one window, from the trace of one forward pass.

    context: {"induction": [L, H] scores of the probe, "top_k": k, "window": the window size}.
    -> {"values": [S, L, H] window means, "histogram": [S, L, H, N_BINS] query counts,
        "top_value"/"top_position": [S, L, H, k'] its largest queries, "types": [L, H] indices
        into analysis.HEAD_TYPES, "verdicts": {id: verdict}, "detail": per-prediction numbers}
    """
    cfg, k = model.config, context["top_k"]
    T = trace.n_tokens
    values = np.empty((len(STATISTICS), cfg.n_layer, cfg.n_head))
    per_query = np.empty((len(STATISTICS), cfg.n_layer, cfg.n_head, T - 1))
    types = np.empty((cfg.n_layer, cfg.n_head), dtype=np.int64)
    for L in range(cfg.n_layer):
        pattern = trace.pattern(L).astype(np.float64)                       # [H, T, T]
        vw = findings.value_weighted(model, trace, L)                       # [H, T, T]
        queries = {"entropy": analysis.row_entropy(pattern)[:, 1:],
                   "sink": analysis.sink_per_query(pattern),
                   "previous": analysis.previous_per_query(pattern),
                   "self": analysis.self_per_query(pattern),
                   "vw_sink_share": analysis.value_weighted_sink_per_query(vw)}  # each [H, T-1]
        stats = analysis.layer_stats(pattern)        # window means + what classify_head needs
        stats["vw_sink_share"] = queries["vw_sink_share"].mean(axis=-1)
        for s, name in enumerate(STATISTICS):
            per_query[s, L] = queries[name]
            values[s, L] = stats[name]
        for h in range(cfg.n_head):
            head = {name: stat[h] for name, stat in stats.items()}
            head["induction"] = context["induction"][L][h]
            types[L, h] = analysis.HEAD_TYPES.index(analysis.classify_head(head))

    histogram = np.stack([query_histogram(per_query[s], edges)
                          for s, edges in enumerate(bin_edges(context["window"]).values())])
    order = np.lexsort((np.broadcast_to(np.arange(1, T), per_query.shape), -per_query), axis=-1)
    top = order[..., :k]                                                    # [S, L, H, k']
    patterns = [trace.pattern(L) for L in range(cfg.n_layer)]
    v1, worst = findings.check_upper_triangle(patterns)
    v2, first, first_entropy = findings.check_first_token(patterns)
    v3, sink_heads = findings.check_sink_heads(values[STATISTICS.index("sink")])
    v5, distinct = findings.check_specialization(
        [[analysis.HEAD_TYPES[t] for t in row] for row in types])
    return {"n_tokens": T, "values": values, "histogram": histogram, "types": types,
            "top_value": np.take_along_axis(per_query, top, axis=-1), "top_position": top + 1,
            "verdicts": {1: v1, 2: v2, 3: v3, 5: v5},
            "detail": {"above_diagonal": worst, "first_weight": first,
                       "first_entropy": first_entropy, "sink_heads": sink_heads,
                       "distinct_types": distinct}}


def query_histogram(values, edges):
    """Counts of values [..., n] in bins [edges[i], edges[i+1]) (the last bin closed), values
    outside the range counted in the end bins. -> [..., N_BINS] int64"""
    n_bins = len(edges) - 1
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1)   # [..., n]
    return (bins[..., None] == np.arange(n_bins)).sum(axis=-2)                        # [..., N_BINS]


# -- the streaming sums --------------------------------------------------------------------------
def merge_top(a, b, k):
    """The k best of two top lists (value, window, position) [..., n] each: largest value first;
    ties: earlier window, then earlier position. -> the same three arrays [..., k]"""
    value, window, position = (np.concatenate([x, y], axis=-1) for x, y in zip(a, b))
    order = np.lexsort((position, window, -value), axis=-1)[..., :k]
    return tuple(np.take_along_axis(x, order, axis=-1) for x in (value, window, position))


def empty_top(shape, k):
    return (np.full((*shape, k), -np.inf), np.full((*shape, k), -1, dtype=np.int64),
            np.full((*shape, k), -1, dtype=np.int64))


class Totals:
    """Everything a run keeps, folded window by window in window order; `state()` is JSON (floats
    as Python writes them, which read back to the same bits) and `from_state` reads it back."""

    def __init__(self, n_layer, n_head, top_k):
        shape = (len(STATISTICS), n_layer, n_head)
        self.top_k, self.windows = top_k, 0
        self.mean, self.m2 = np.zeros(shape), np.zeros(shape)     # Welford over window means
        self.histogram = np.zeros((*shape, N_BINS), dtype=np.int64)
        self.top_windows, self.top_positions = empty_top(shape, top_k), empty_top(shape, top_k)
        self.types = np.zeros((n_layer, n_head, len(analysis.HEAD_TYPES)), dtype=np.int64)
        self.verdicts = {i: {HOLDS: 0, findings.FAILS: 0, NOT_APPLICABLE: 0} for i in PREDICTIONS}
        self.detail = {"above_diagonal": 0.0, "first_weight": 1.0, "first_entropy": 0.0,
                       "sink_heads": np.zeros(n_layer, dtype=np.int64),
                       "distinct_types": np.zeros(n_layer, dtype=np.int64)}

    def add(self, index, r):
        """Fold in window `index`'s result (measure_window); windows must come in order."""
        if index != self.windows:
            raise ValueError(f"window {index} folded after {self.windows} windows")
        self.windows += 1
        delta = r["values"] - self.mean
        self.mean += delta / self.windows
        self.m2 += delta * (r["values"] - self.mean)
        self.histogram += r["histogram"]
        shape = r["values"].shape
        this = lambda n: np.full((*shape, n), index, dtype=np.int64)  # noqa: E731 - this window
        no_position = np.full((*shape, 1), -1, dtype=np.int64)
        self.top_windows = merge_top(self.top_windows, (r["values"][..., None], this(1), no_position),
                                     self.top_k)
        self.top_positions = merge_top(self.top_positions, (
            r["top_value"], this(r["top_value"].shape[-1]), r["top_position"]), self.top_k)
        layer, head = np.indices(r["types"].shape)
        self.types[layer, head, r["types"]] += 1
        for i, verdict in r["verdicts"].items():
            self.verdicts[i][verdict] += 1
        d, new = self.detail, r["detail"]
        d["above_diagonal"] = max(d["above_diagonal"], new["above_diagonal"])
        d["first_weight"] = min(d["first_weight"], new["first_weight"])
        d["first_entropy"] = max(d["first_entropy"], new["first_entropy"])
        for L, c in new["sink_heads"].items():
            d["sink_heads"][L] += c
        for L, c in new["distinct_types"].items():
            d["distinct_types"][L] += c

    def sd(self):
        """Standard deviation of the window means (n - 1 in the denominator). [S, L, H]"""
        return np.sqrt(self.m2 / max(self.windows - 1, 1))

    def state(self):
        def tops(top):                        # empty slots (window -1) hold -inf: written as 0
            value, window, position = top
            return [np.where(window >= 0, value, 0.0).tolist(), window.tolist(), position.tolist()]
        return {"windows": self.windows, "top_k": self.top_k, "mean": self.mean.tolist(),
                "m2": self.m2.tolist(), "histogram": self.histogram.tolist(),
                "top_windows": tops(self.top_windows), "top_positions": tops(self.top_positions),
                "types": self.types.tolist(),
                "verdicts": {str(i): v for i, v in self.verdicts.items()},
                "detail": {k: v.tolist() if isinstance(v, np.ndarray) else v
                           for k, v in self.detail.items()}}

    @classmethod
    def from_state(cls, state):
        mean = np.array(state["mean"], dtype=np.float64)
        t = cls(mean.shape[1], mean.shape[2], state["top_k"])
        t.windows, t.mean, t.m2 = state["windows"], mean, np.array(state["m2"], dtype=np.float64)
        t.histogram = np.array(state["histogram"], dtype=np.int64)

        def tops(saved):
            value, window, position = (np.array(x) for x in saved)
            return np.where(window >= 0, value, -np.inf).astype(np.float64), window, position
        t.top_windows, t.top_positions = tops(state["top_windows"]), tops(state["top_positions"])
        t.types = np.array(state["types"], dtype=np.int64)
        t.verdicts = {int(i): v for i, v in state["verdicts"].items()}
        t.detail = {k: np.array(v, dtype=np.int64) if isinstance(v, list) else v
                    for k, v in state["detail"].items()}
        return t


# -- the report ----------------------------------------------------------------------------------
def report(model, corpus, settings, totals, fingerprint, spec=None):
    """The results as a JSON-ready dict: what `--out` holds (plus "state", "run": see `measure`)."""
    cfg, n = model.config, totals.windows
    sd = totals.sd()
    edges = bin_edges(settings["window"])
    used = set()

    def top_list(top, s, L, h, with_position):
        rows = []
        for value, window, position in zip(*(x[s, L, h] for x in top)):
            if window < 0:
                continue
            used.add(int(window))
            row = {"window": int(window), "value": float(value)}
            if with_position:
                row["position"] = int(position)
            rows.append(row)
        return rows

    heads = []
    for L in range(cfg.n_layer):
        for h in range(cfg.n_head):
            counts = totals.types[L, h]
            row = {"head": f"{L}.{h}", "layer": L, "index": h,
                   "type": analysis.HEAD_TYPES[int(counts.argmax())] if n else None,
                   "types": {t: int(c) for t, c in zip(analysis.HEAD_TYPES, counts) if c},
                   "stats": {}, "top_windows": {}, "top_positions": {}}
            for s, name in enumerate(STATISTICS):
                mean, dev = float(totals.mean[s, L, h]), float(sd[s, L, h])
                row["stats"][name] = {"mean": mean if n else None, "sd": dev if n > 1 else None,
                                      "interval": mean_interval(mean, dev, n),
                                      "histogram": totals.histogram[s, L, h].tolist()}
                row["top_windows"][name] = top_list(totals.top_windows, s, L, h, False)
                row["top_positions"][name] = top_list(totals.top_positions, s, L, h, True)
            heads.append(row)

    return {
        "format": FORMAT, "version": VERSION,
        "complete": n == len(corpus.windows),
        "model": {"name": model.info.name, "origin": model.info.origin, "spec": spec,
                  "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_positions": cfg.n_positions,
                  "engine": model.engine},
        "settings": settings,
        "input": {"sources": [{"name": name,
                               "documents": sum(1 for d in corpus.documents if d[0] == s),
                               "tokens": int(sum(len(d[2]) for d in corpus.documents if d[0] == s))}
                              for s, name in enumerate(corpus.names)],
                  "documents": len(corpus.documents),
                  "tokens": int(sum(len(d[2]) for d in corpus.documents)),
                  "windows": len(corpus.windows), "skipped_windows": corpus.skipped,
                  "fingerprint": fingerprint},
        "windows_measured": n,
        "statistics": [{"name": s, "about": ABOUT[s], "range": [e[0], e[-1]],
                        "unit": "bits" if s == "entropy" else "share", "bins": N_BINS}
                       for s, e in edges.items()],
        "intervals": {"mean": MEAN_INTERVAL, "share": SHARE_INTERVAL},
        "predictions": prediction_rows(totals, cfg),
        "heads": heads,
        "published_roles": published_roles(cfg, heads),
        "windows": {str(k): window_view(model, corpus, k) for k in sorted(used)},
    }


def prediction_rows(totals, cfg):
    rows, d, n = [], totals.detail, totals.windows

    def per_layer(counts, layers):
        return {str(L): float(counts[L] / n) for L in layers if n}
    measured = {
        1: {"max_above_diagonal": d["above_diagonal"]},
        2: {"min_first_weight": d["first_weight"], "max_first_entropy_bits": d["first_entropy"]},
        3: {"mean_heads_with_sink_per_layer": per_layer(
            d["sink_heads"], [L for L in SINK_LAYERS if L < cfg.n_layer])},
        5: {"mean_distinct_types_per_layer": per_layer(
            d["distinct_types"], range(min(SPECIALIZED_BY + 1, cfg.n_layer)))},
    }
    for i, text in PREDICTIONS.items():
        v = totals.verdicts[i]
        holds, applies = v[HOLDS], v[HOLDS] + v[findings.FAILS]
        rows.append({"id": i, "prediction": text, "windows": applies, "holds": holds,
                     "share": holds / applies if applies else None,
                     "interval": wilson_interval(holds, applies),
                     "not_applicable": v[NOT_APPLICABLE], "measured": measured[i]})
    return rows


def published_roles(cfg, heads):
    """For GPT-2 small: the published roles' heads with their corpus figures, to compare with."""
    if not findings.is_gpt2_small(cfg):
        return {"applicable": False, "note": "not GPT-2 small's shape: no published roles to compare",
                "roles": []}
    by_name = {h["head"]: h for h in heads}
    return {"applicable": True,
            "note": "heads named in the literature for GPT-2 small, with what this corpus measured; "
                    "induction and IOI roles are measured by their own probes (gpt2np findings)",
            "roles": [{"role": role, "source": source, "measure": measure,
                       "heads": [{"head": name, "type": by_name[name]["type"],
                                  **{s: by_name[name]["stats"][s]["mean"] for s in STATISTICS}}
                                 for name in names]}
                      for role, names, measure, source in findings.PUBLISHED_ROLES]}


def window_view(model, corpus, k):
    """What the report shows of window k: where it comes from, its tokens, and the text the viewer
    reruns to show it. When that text tokenizes differently, `view_positions` maps each window
    position to the viewer's position (by character offset; null where none matches)."""
    ids = corpus.ids(k).tolist()
    d, start, _ = corpus.windows[k]
    source, doc = corpus.documents[d][:2]
    bos = corpus.bos_id is not None
    text_ids = ids[1:] if bos else ids
    text = model.tokenizer.decode(text_ids)
    view = {"source": corpus.names[source], "document": doc, "start": start, "bos": bos,
            "tokens": model.token_strings(ids), "text": text}
    again = model.tokenizer.encode(text)
    if again != text_ids:
        def ends(seq):                                   # character offset where each token ends
            return [len(model.tokenizer.decode(seq[:j + 1])) for j in range(len(seq))]
        mine, theirs = ends(text_ids), ends(again)
        mapped = [theirs.index(e) + bos if e in theirs else None for e in mine]
        view["view_positions"] = ([0] if bos else []) + mapped
    return view


# -- running the windows -------------------------------------------------------------------------
_WORKER = {}     # in a worker process: the model, its spec and the context of the run


def _start_worker(spec, engine, context):
    """Initializer of a local worker process: Ctrl+C is the parent's to handle; one thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_model(spec, engine)
    _WORKER["context"] = context


def _worker_model(spec, engine):
    """The model of this worker process, loaded once (memory-mapped)."""
    if _WORKER.get("key") != (str(spec), engine):
        model = spec if isinstance(spec, Model) else load(spec, allow_download=False, engine=engine)
        _WORKER.update(key=(str(spec), engine), model=model, workspace=cpu_engine.Workspace())
    return _WORKER["model"]


def _local_task(ids):
    return measure_window(_WORKER["model"], ids, _WORKER["context"], _WORKER["workspace"])


def dask_task(spec, engine, context, ids):
    """One window on a Dask worker (the model and a workspace made once per worker process)."""
    return measure_window(_worker_model(spec, engine), ids, context, _WORKER["workspace"])


class LocalWorkers:
    """`workers` processes on this machine (spawned: each imports gpt2np and loads the model)."""

    def __init__(self, spec, engine, context, workers):
        self.size = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                        initializer=_start_worker, initargs=(spec, engine, context))

    def submit(self, ids):
        return self.pool.submit(_local_task, ids)

    def wait(self, futures, timeout):
        return wait_first(futures, timeout, return_when=FIRST_COMPLETED).done

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskWorkers:
    """The workers of a Dask distributed cluster, reached through its scheduler's address."""

    def __init__(self, spec, engine, context, address):
        try:
            import distributed
        except ImportError:
            raise GPT2npError("--scheduler needs Dask's `distributed`: pip install 'gpt2np[scale]' "
                              "(or pip install distributed).") from None
        if isinstance(spec, Model):
            raise GPT2npError("On a Dask cluster every worker loads the model itself: give it by "
                              "name or directory, not as a loaded Model.")
        self.distributed, self.args = distributed, (spec, engine, context)
        try:
            self.client = distributed.Client(address, timeout="10s")
        except (OSError, TimeoutError, ValueError) as e:
            raise GPT2npError(f"Cannot reach the Dask scheduler at {address} ({e}). Start one "
                              "(`dask scheduler`, then `dask worker ADDRESS`), or leave out "
                              "--scheduler to run on this machine.") from None
        self.size = max(1, sum(self.client.nthreads().values()))

    def submit(self, ids):
        return self.client.submit(dask_task, *self.args, ids, pure=False)

    def wait(self, futures, timeout):
        try:
            return self.distributed.wait(list(futures), timeout, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return set()

    def close(self):
        self.client.close()


class InProcess:
    """Windows computed here, one by one (no worker processes)."""
    size = 1

    def __init__(self, model, context):
        self.model, self.context, self.workspace = model, context, cpu_engine.Workspace()

    def submit(self, ids):
        f = Future()
        f.set_result(measure_window(self.model, ids, self.context, self.workspace))
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
    identity = {"format": FORMAT, "version": VERSION, "settings": settings, "engine": engine,
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
        return result(run)
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
    """A results file written by `measure`, checked to be one. -> dict"""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise GPT2npError(f"{path}: cannot read it ({e.strerror or e}).") from None
    except ValueError:
        raise GPT2npError(f"{path} is not JSON: give a file written by `gpt2np corpus --out`.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GPT2npError(f"{path} is not a gpt2np corpus file: give one written by "
                          "`gpt2np corpus --out`.")
    return data
