"""The numbers behind one attention weight, read from the trace: top keys, the Q·K panel, the ledger;
and what the head then moves: the value ledger.

Everything here starts from arrays the forward pass produced (hook_q, hook_k, hook_attn_scores,
hook_pattern) and only redoes, in float32 and in the model's order, the few steps a learner
should see:

    q·k  ->  ÷ √d_head  ->  + mask  ->  − row max  ->  exp  ->  ÷ row sum  ->  p

q·k is the dot product of the trace's q and k vectors. Its ÷ √d_head is shown beside the
trace's own score (hook_attn_scores): they agree to within float32 rounding, not always to the
last bit, because the model summed the same 64 products in a different order inside a matrix
multiply. The softmax steps start from the trace's score row and end at hook_pattern's value,
which is the p shown in the heatmap; both p's are returned so the page can show they are equal.

The value ledger (`value_ledger`) is the second line of attention, output[q] = A[q]·V, for one
head and query:

    p_k · v_k  ->  z = Σ_k p_k · v_k  ->  z · W_O^h  ->  Σ_h z_h · W_O^h + b_O = hook_attn_out[q]

z is the trace's hook_z (the z shown is that float32, to the bit); the sum is redone beside it
from hook_pattern and hook_v (exact float64 products and sum, rounded once to float32). About
half of its components are the same float32 as hook_z, the others differ in the last bits: the
model summed in float32, in its own order. `z_within_rounding` checks every component against
the bound of float32 summation. The head's write z · W_O^h uses rows h·d_head …
(h+1)·d_head − 1 of c_proj.weight; the writes of all heads plus the c_proj bias are checked
against hook_attn_out.
"""

import numpy as np

from gpt2np import analysis
from gpt2np.analysis import interventions

from .wire import f32, f32_list

TOP_KEYS = 5   # keys listed in the top-5 list, the Q·K panel and the value ledger
ATTN_OUT_BOUND = 1e-5   # Σ heads' writes + b_O against hook_attn_out: max|Δ| / max|hook_attn_out[q]|


def token_ref(run, position):
    return {"position": int(position), "token": run.tokens[position], "id": int(run.ids[position])}


def scaled_dot(run, layer, head, query, key):
    """(q·k, q·k/√d_head) in float32 from the trace's hook_q and hook_k."""
    q = run.q[layer][query, head]                     # [dh]
    k = run.k[layer][key, head]                       # [dh]
    qk = np.dot(q, k)                                 # float32 scalar
    return qk, qk / np.float32(np.sqrt(q.shape[0]))


def key_entry(run, layer, head, query, key):
    qk, scaled = scaled_dot(run, layer, head, query, key)
    score = run.scores[layer][head, query, key]
    return {**token_ref(run, key),
            "k": f32_list(run.k[layer][key, head]),
            "qk": f32(qk), "scaled": f32(scaled), "score": f32(score),
            "mask": "0" if key <= query else "-inf",
            "p": f32(run.patterns[layer][head, query, key])}


def row_summary(run, p):
    """One attention row [n] -> its weights as float32 text, entropy in bits, top key and weight."""
    top = int(np.argmax(p))
    return {"p": f32_list(p), "entropy_bits": float(analysis.row_entropy(p)), "top_key": top,
            "top_token": run.tokens[top], "top_p": f32(p[top])}


def without_sqrt_d(run, layer, head, query):
    """The √d what-if: the query's row as softmax(q·k_j) over keys 0..query WITHOUT ÷ √d_head, in
    float64 from the trace's hook_q and hook_k, beside the model's own row (hook_pattern), each
    with its entropy and top weight. The model never computes this row: it shows what ÷ √d_head
    does (q·k grows like √d_head, and an unscaled softmax saturates toward one key)."""
    q = run.q[layer][query, head].astype(np.float64)                 # [dh]
    k = run.k[layer][: query + 1, head].astype(np.float64)           # [query+1, dh]
    unscaled = analysis.probabilities(k @ q)                         # [query+1]: softmax(q·k), no ÷ √d_head
    return {"real": row_summary(run, run.patterns[layer][head, query, : query + 1]),
            "unscaled": row_summary(run, unscaled), "max_entropy_bits": float(np.log2(query + 1))}


def query_panel(run, layer, head, query, ignore_sink=False, k=TOP_KEYS):
    """Top-k keys of one query with the Q·K numbers of each, for the top-5 list and the Q·K panel.

    The keys are analysis.top_keys's (0..query only); n_keys says how many the query has, and
    note (None unless n_keys < k) says so in words."""
    dh = run.q[layer].shape[-1]
    keys = [j for j, _ in analysis.top_keys(run.patterns[layer][head], query, k, ignore_sink)]
    return {"layer": layer, "head": head, "query": token_ref(run, query),
            "ignore_sink": bool(ignore_sink), "k": k,
            "n_keys": len(analysis.candidate_keys(query, ignore_sink)),
            "note": analysis.fewer_keys_note(query, k, ignore_sink),
            "d_head": dh, "sqrt_d_head": f32(np.sqrt(dh)),
            "q": f32_list(run.q[layer][query, head]),
            "sink_p": f32(run.patterns[layer][head, query, 0]),
            "keys": [key_entry(run, layer, head, query, j) for j in keys],
            "what_if": without_sqrt_d(run, layer, head, query)}


def pattern_row(run, layer, head, query):
    """Exact weights of one heatmap row, keys 0..query."""
    return {"layer": layer, "head": head, "query": int(query),
            "p": f32_list(run.patterns[layer][head, query, : query + 1])}


def ledger(run, layer, head, query, key):
    """Every step from q·k to p for one cell, as float32 text, with the trace's values beside."""
    qk, scaled = scaled_dot(run, layer, head, query, key)
    row = run.scores[layer][head, query]              # [T] trace scores, -inf above the diagonal
    score = row[key]
    mask = np.float32(0.0) if key <= query else np.float32(-np.inf)
    row_max = row.max()
    shifted = row - row_max                           # [T]
    exps = np.exp(shifted)                            # [T], masked keys give exactly 0
    row_sum = exps.sum()
    p_steps = exps[key] / row_sum
    p_trace = run.patterns[layer][head, query, key]
    dh = run.q[layer].shape[-1]
    masked_score = scaled + mask
    steps = [
        {"op": "q·k", "detail": f"sum of the {dh} products q[d]·k[d] (hook_q · hook_k)",
         "value": f32(qk)},
        {"op": "÷ √d_head", "detail": f"÷ √{dh} = ÷ {f32(np.sqrt(dh))}", "operand": f32(np.sqrt(dh)),
         "value": f32(scaled)},
        {"op": "+ mask", "detail": "0: the key is not after the query" if key <= query
         else "−∞: the key comes after the query, so it is hidden", "operand": f32(mask),
         "value": f32(masked_score), "trace": f32(score),
         "trace_name": f"blocks.{layer}.attn.hook_attn_scores",
         "abs_diff": f32(abs(masked_score - score)) if np.isfinite(score) else "0"},
        {"op": "− row max", "detail": f"largest score in row {query} (from the trace)",
         "operand": f32(row_max), "value": f32(shifted[key])},
        {"op": "exp", "detail": "e to the power of the line above", "value": f32(exps[key])},
        {"op": "÷ row sum", "detail": f"sum of exp over keys 0..{query}", "operand": f32(row_sum),
         "value": f32(p_steps)},
    ]
    return {"layer": layer, "head": head, "query": token_ref(run, query), "key": token_ref(run, key),
            "d_head": dh, "steps": steps,
            "p": f32(p_trace), "p_name": f"blocks.{layer}.attn.hook_pattern",
            "p_from_steps": f32(p_steps), "p_equal": bool(p_steps == p_trace),
            "scores_agree": bool(masked_score == score
                                 or np.isclose(masked_score, score, rtol=1e-5, atol=1e-6))}


def value_ledger(model, trace, layer, head, query, k=TOP_KEYS):
    """What head (layer, head) moves into the residual stream at `query`, every number from `trace`
    (a gpt2np Trace, or `Run.trace()`), as float32 text: the top-k keys' v and p·v, z and its
    check, the head's write z · W_O^h, every head's write norm, the check against hook_attn_out,
    and the tokens the write would push up and down most if it went straight to the output."""
    n = query + 1                                                    # keys 0..query
    p = trace.pattern(layer, head)[query, :n]                        # [n]
    v = trace[f"blocks.{layer}.attn.hook_v"][:n, head]              # [n, dh]
    products = p[:, None].astype(np.float64) * v.astype(np.float64)  # [n, dh], exact
    z = trace[f"blocks.{layer}.attn.hook_z"][query, head]            # [dh] float32
    z_sum = products.sum(axis=0).astype(np.float32)                  # [dh] rounded once
    # Float32 summation of n products, in any order, is off by at most about n·2⁻²⁴·Σ|p_k·v_k|.
    rounding = (n + 1) * 2.0 ** -23 * np.abs(products).sum(axis=0)  # [dh]
    keys = [j for j, _ in analysis.top_keys(trace.pattern(layer, head), query, k)]
    listed = sum(float(p[j]) for j in keys)

    writes = interventions.head_writes(model, trace, layer, query)  # [H, d] float64
    bias = model.params[f"h.{layer}.attn.c_proj.bias"]
    attn_out = trace[f"blocks.{layer}.hook_attn_out"][query]        # [d] float32
    total = writes.sum(axis=0) + bias                                # [d] float64
    diff = float(np.abs(total - attn_out).max())
    relative = diff / max(float(np.abs(attn_out).max()), 1e-30)
    dh = z.shape[0]
    push = interventions.direct_effects(model, trace, query, writes[head:head + 1])[0]
    return {
        "layer": layer, "head": head, "query": token_ref(trace, query), "d_head": dh, "n_keys": n,
        "keys": [{**token_ref(trace, j), "p": f32(p[j]), "v": f32_list(v[j]),
                  "pv": f32_list(products[j])} for j in keys],
        "others": {"n": n - len(keys), "p": f32(max(0.0, 1.0 - listed))},
        "z": f32_list(z), "z_name": f"blocks.{layer}.attn.hook_z",
        "z_sum": f32_list(z_sum), "z_identical": int((z_sum == z).sum()),
        "z_equal": bool((z_sum == z).all()), "z_max_abs_diff": f32(np.abs(z_sum - z).max()),
        "z_within_rounding": bool((np.abs(z_sum.astype(np.float64) - z) <= rounding).all()),
        "w_o": f"rows {head * dh}…{(head + 1) * dh - 1} of h.{layer}.attn.c_proj.weight",
        "write": f32_list(writes[head]), "write_norm": f32(np.linalg.norm(writes[head])),
        "head_norms": f32_list(np.linalg.norm(writes, axis=1)),
        "bias_norm": f32(np.linalg.norm(bias)),
        "attn_out": {"name": f"blocks.{layer}.hook_attn_out", "values": f32_list(attn_out),
                     "max_abs_diff": f32(diff), "relative": f32(relative),
                     "bound": f32(ATTN_OUT_BOUND), "ok": bool(relative <= ATTN_OUT_BOUND)},
        "pushes": {side: [{**t, "effect": f32(t["effect"])} for t in push[side]] for side in push},
    }
