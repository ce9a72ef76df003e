"""One token through one transformer block, step by step: the numbers of the viewer's walk.

    x = resid_pre[q] -> ln_1 -> q, k, v -> scores -> softmax -> p·V -> z -> W_O -> + residual
      -> ln_2 -> MLP -> + residual = resid_post[q]

The run's kept arrays hold the residual stream entering the block and every position's keys and
values, but not the block's other intermediates (ln_1, resid_mid, ln_2, the MLP's hidden layer):
the block is computed again for the one token by `gpt2np.oneblock.one_block` (model.block with the
run's keys and values as its cache: no second forward pass), and every vector of the walk is that
computation's, sent as float32 text; x is the run's own. The p·V, z and W_O steps are the value
ledger's (`ledger.value_ledger`, the run's arrays, as the value panel shows them). Beside each
step's value the step is redone in float64 from its input, and the largest difference is given
(float32 rounding; the two additions to the residual stream are redone in float32 and are the same
float32). The recomputed values are the full pass's up to float32 rounding (model.py's kernels,
where the run may have used the engine's).
"""

import numpy as np

from gpt2np.oneblock import one_block
from gpt2np.trace import residual_stream_names

from .ledger import token_ref, value_ledger
from .wire import f32, f32_list


def vector(label, name, values):
    return {"label": label, "name": name, "values": f32_list(values)}


def scalar(label, value):
    return {"label": label, "value": f32(value)}


def check(what, redone, trace_value):
    """max|redone − trace| over a vector, absolute and relative to max|trace|."""
    diff = float(np.abs(np.asarray(redone, dtype=np.float64) - trace_value).max())
    return {"what": what, "max_abs_diff": f32(diff),
            "relative": f32(diff / max(float(np.abs(trace_value).max()), 1e-30))}


def layer_norm64(x, weight, bias, eps):
    """LayerNorm of one vector in float64: (x − mean) / √(var + ε) · weight + bias. -> (y, mean, std)"""
    x = x.astype(np.float64)
    mean, var = x.mean(), x.var()
    std = np.sqrt(var + eps)
    return (x - mean) / std * weight + bias, mean, std


def gelu64(x):
    """gelu_new in float64: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def ln_step(ln_name, x, y, label, layer, params, eps, source):
    """The step of LayerNorm `ln_name` (ln_1 or ln_2) of block `layer`: x [d] -> the trace's y [d]."""
    w, b = params[f"h.{layer}.{ln_name}.weight"], params[f"h.{layer}.{ln_name}.bias"]
    redone, mean, std = layer_norm64(x, w, b, eps)
    name = f"blocks.{layer}.{ln_name.replace('_', '')}.hook_normalized"
    return {"id": ln_name, "op": ln_name,
            "formula": "x̂ = (x − mean(x)) / √(var(x) + ε) · γ + β",
            "detail": f"LayerNorm {ln_name} of {source}: γ, β = h.{layer}.{ln_name}.weight, .bias; ε = {eps}",
            "scalars": [scalar("mean(x)", mean), scalar("√(var(x) + ε)", std)],
            "vectors": [vector(label, name, y)],
            "checks": [check(f"LayerNorm redone in float64 vs {name}", redone, y)]}


def walk(model, trace, layer, head, query):
    """The twelve steps of block `layer` for token `query`, head `head` in the attention steps.
    trace: the run's kept arrays (`Run.trace()`) or a whole Trace: the residual stream, every layer's
    q, k, v, scores, pattern, z and attn_out are read; the block is computed again for the token.
    -> {"layer", "head", "query", "d_head", "steps": [{"id", "op", "formula", "detail",
        "scalars": [{"label", "value"}], "vectors": [{"label", "name", "values"}] (p·V's both also "token"),
        "checks": [{"what", "max_abs_diff", "relative"}]}]}"""
    params, eps, b = model.params, model.config.layer_norm_epsilon, f"blocks.{layer}."
    acts = one_block(params, model.config, trace, layer, query)        # [1, ...]: the token's rows
    a = {name[len(b):]: value for name, value in acts.items()}
    x = trace[residual_stream_names(model.config.n_layer)[layer]][query]   # [d]: the run's own
    assert np.array_equal(x, a["hook_resid_pre"][0])
    ln1, mid, ln2 = a["ln1.hook_normalized"][0], a["hook_resid_mid"][0], a["ln2.hook_normalized"][0]
    mlp_out, post = a["hook_mlp_out"][0], a["hook_resid_post"][0]
    q, keys = a["attn.hook_q"][0, head], a["attn.hook_k"][:, head]   # [dh]; [query+1, dh]
    scores, pattern = a["attn.hook_attn_scores"][head, 0], a["attn.hook_pattern"][head, 0]   # [query+1]
    value = value_ledger(model, trace, layer, head, query)
    steps = [
        resid_pre_step(b, layer, query, x),
        ln_step("ln_1", x, ln1, "x̂", layer, params, eps, "x"),
        qkv_step(b, params, layer, head, ln1, [q, keys[query], a["attn.hook_v"][query, head]]),
        scores_step(b, query, keys, q, scores),
        softmax_step(b, query, scores, pattern),
        pv_step(b, query, value),
        z_step(head, query, value),
        w_o_step(head, value),
        add_step("resid_mid", "x_mid = x + attn_out", "attention's output is added to the residual stream",
                 "x_mid", b + "hook_resid_mid", x, a["hook_attn_out"][0], mid, "x + attn_out"),
        ln_step("ln_2", mid, ln2, "x̂₂", layer, params, eps, "x_mid"),
        mlp_step(b, params, layer, ln2, a["mlp.hook_pre"][0], a["mlp.hook_post"][0], mlp_out),
        add_step("resid_post", "x_out = x_mid + m", f"the residual stream leaving block {layer}",
                 "x_out", b + "hook_resid_post", mid, mlp_out, post, "x_mid + m"),
    ]
    return {"layer": layer, "head": head, "query": token_ref(trace, query), "d_head": len(a["attn.hook_z"][0, head]),
            "steps": steps}


def resid_pre_step(b, layer, query, x):
    return {"id": "resid_pre", "op": "residual stream in", "formula": f"x = {b}hook_resid_pre[{query}]",
            "detail": f"the residual stream entering block {layer} at this token: the embeddings plus "
                      "everything the earlier blocks wrote", "scalars": [scalar("‖x‖", np.linalg.norm(x))],
            "vectors": [vector("x", b + "hook_resid_pre", x)], "checks": []}


def qkv_step(b, params, layer, head, ln1, qkv):
    """x̂ [d] -> the head's q, k, v [dh] each (columns of each third of c_attn's output)."""
    d, dh = ln1.shape[0], qkv[0].shape[0]
    redone = ln1.astype(np.float64) @ params[f"h.{layer}.attn.c_attn.weight"] + params[f"h.{layer}.attn.c_attn.bias"]
    cols = lambda third: slice(third * d + head * dh, third * d + (head + 1) * dh)  # noqa: E731 - the head's
    return {"id": "qkv", "op": "q, k, v", "formula": "[q | k | v] = x̂ · W_attn + b_attn",
            "detail": f"c_attn ({d} → 3·{d}); head {head} takes columns {head * dh}…{(head + 1) * dh - 1} "
                      "of each third", "scalars": [],
            "vectors": [vector(n, b + f"attn.hook_{n}", v) for n, v in zip("qkv", qkv)],
            "checks": [check(f"x̂ · W_attn + b redone in float64 vs hook_{n}", redone[cols(i)], v)
                       for i, (n, v) in enumerate(zip("qkv", qkv))]}


def scores_step(b, query, keys, q, scores):
    """q [dh] against keys [query+1, dh] -> scores [query+1]."""
    dh = q.shape[0]
    redone = keys.astype(np.float64) @ q.astype(np.float64) / np.sqrt(dh)
    return {"id": "scores", "op": "scores", "formula": "s_j = q · k_j / √d_head",
            "detail": f"the query's q against the k of every key it can see (keys 0…{query}); later keys "
                      "are masked to −∞", "scalars": [scalar("√d_head", np.sqrt(dh))],
            "vectors": [vector(f"s (keys 0…{query})", b + "attn.hook_attn_scores", scores)],
            "checks": [check("q·k/√d_head redone in float64 vs hook_attn_scores", redone, scores)]}


def softmax_step(b, query, scores, pattern):
    s64 = scores.astype(np.float64)
    redone = np.exp(s64 - s64.max()) / np.exp(s64 - s64.max()).sum()
    return {"id": "softmax", "op": "softmax", "formula": "p_j = exp(s_j − max s) / Σ_i exp(s_i − max s)",
            "detail": f"the weights of the heatmap row of query {query}; they sum to 1",
            "scalars": [scalar("max s", s64.max()), scalar("Σ p", pattern.astype(np.float64).sum())],
            "vectors": [vector(f"p (keys 0…{query})", b + "attn.hook_pattern", pattern)],
            "checks": [check("softmax redone in float64 vs hook_pattern", redone, pattern)]}


def pv_step(b, query, value):
    pv = [{"label": f"p·v  key {k['position']}", "token": k["token"], "name": f"{b}attn.hook_pattern × hook_v",
           "values": k["pv"]} for k in value["keys"]]
    return {"id": "pv", "op": "p · V", "formula": "p_j · v_j",
            "detail": f"each key's value vector scaled by its weight: the top {len(pv)} of the {query + 1} keys "
                      f"(the other {value['others']['n']} hold p = {value['others']['p']} together)",
            "scalars": [{**scalar(f"p  key {k['position']}", np.float32(k["p"])), "token": k["token"]}
                        for k in value["keys"]],
            "vectors": pv, "checks": []}


def z_step(head, query, value):
    z_max = max(float(np.abs(np.float32(value["z"])).max()), 1e-30)
    return {"id": "z", "op": "z", "formula": "z = Σ_j p_j · v_j",
            "detail": f"summed over all {query + 1} keys: what head {head} reads at this token",
            "scalars": [], "vectors": [{"label": "z", "name": value["z_name"], "values": value["z"]},
                                       {"label": "Σ p·v redone", "name": "float64 sum, rounded to float32",
                                        "values": value["z_sum"]}],
            "checks": [{"what": f"Σ p·v vs hook_z: {value['z_identical']} of {value['d_head']} identical as float32",
                        "max_abs_diff": value["z_max_abs_diff"],
                        "relative": f32(float(value["z_max_abs_diff"]) / z_max)}]}


def w_o_step(head, value):
    attn_out = value["attn_out"]
    return {"id": "w_o", "op": "W_O", "formula": "write = z · W_O^h;   attn_out = Σ_h z_h · W_O^h + b_O",
            "detail": f"W_O^h = {value['w_o']}; every head's write plus the c_proj bias is the attention output",
            "scalars": [{"label": "‖write‖", "value": value["write_norm"]}],
            "vectors": [{"label": f"write of head {head}", "name": "z · W_O^h", "values": value["write"]},
                        {"label": "attn_out", "name": attn_out["name"], "values": attn_out["values"]}],
            "checks": [{"what": "Σ heads' writes + b_O vs hook_attn_out",
                        "max_abs_diff": attn_out["max_abs_diff"], "relative": attn_out["relative"]}]}


def add_step(step_id, formula, detail, label, name, x, added, result, what):
    """An addition to the residual stream: x + added = result, redone in float32."""
    return {"id": step_id, "op": "+ residual", "formula": formula, "detail": detail,
            "scalars": [scalar(f"‖{label}‖", np.linalg.norm(result))] if step_id == "resid_post" else [],
            "vectors": [vector(label, name, result)],
            "checks": [check(f"{what} in float32 vs {name.rsplit('.', 1)[-1]}", x + added, result)]}


def mlp_step(b, params, layer, ln2, pre, post, out):
    """x̂₂ [d] -> h [d_mlp] -> g = gelu(h) -> m [d]."""
    p = lambda name: params[f"h.{layer}.mlp.{name}"]  # noqa: E731 - checkpoint name inside the MLP
    d, d_mlp = ln2.shape[0], pre.shape[0]
    fc = ln2.astype(np.float64) @ p("c_fc.weight") + p("c_fc.bias")
    proj = post.astype(np.float64) @ p("c_proj.weight") + p("c_proj.bias")
    return {"id": "mlp", "op": "MLP", "formula": "h = x̂₂ · W_fc + b_fc;   g = gelu(h);   m = g · W_proj + b_proj",
            "detail": f"c_fc ({d} → {d_mlp}), GELU (tanh approximation), c_proj ({d_mlp} → {d})",
            "scalars": [scalar("‖m‖", np.linalg.norm(out))],
            "vectors": [vector("h", b + "mlp.hook_pre", pre), vector("g", b + "mlp.hook_post", post),
                        vector("m", b + "hook_mlp_out", out)],
            "checks": [check("x̂₂ · W_fc + b_fc redone in float64 vs mlp.hook_pre", fc, pre),
                       check("gelu redone in float64 vs mlp.hook_post", gelu64(pre.astype(np.float64)), post),
                       check("g · W_proj + b_proj redone in float64 vs hook_mlp_out", proj, out)]}
