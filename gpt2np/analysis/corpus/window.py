"""One window's statistics: one forward pass, every head's five statistics per query, their
histograms and the original demo's predictions for that window."""

import math

import numpy as np

from ... import analysis
from ... import engine as cpu_engine
from .. import findings
from ..findings import MIN_TYPES, SINK_LAYERS, SINK_SHARE, SPECIALIZED_BY

STATISTICS = ("entropy", "sink", "previous", "self", "vw_sink_share")
N_BINS = 20
PREDICTIONS = {       # the original demo's predictions that apply to any text, numbered as in findings
    1: "the upper triangle of every attention pattern is exactly 0",
    2: "the first token attends 1.0 to itself, with entropy 0",
    3: f"in layers {SINK_LAYERS.start}–{SINK_LAYERS.stop - 1}, 1–2 heads per layer put "
       f"≥ {SINK_SHARE:.0%} of their weight on position 0",
    5: f"by layer {SPECIALIZED_BY}, some layer has ≥ {MIN_TYPES} distinct head types",
}


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
