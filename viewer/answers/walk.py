"""One token through one transformer block, step by step: the numbers of the viewer's walk.

    x = resid_pre[q] -> ln_1 -> q, k, v -> scores -> softmax -> p·V -> z -> W_O -> + residual
      -> ln_2 -> MLP -> + residual = resid_post[q]

Every vector is read from a full gpt2np Trace of the run (the viewer runs the same ids again for
it: a Run does not keep ln1, ln2, resid_mid or the MLP's hidden layer) and sent as float32 text;
the p·V, z and W_O steps are the value ledger's (`ledger.value_ledger`). Beside each step's trace
value the step is redone in float64 from the trace's input to it, and the largest difference is
given (float32 rounding; the two additions to the residual stream are redone in float32 and are
the same float32).
"""

import numpy as np

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
    -> {"layer", "head", "query", "d_head", "steps": [{"id", "op", "formula", "detail",
        "scalars": [{"label", "value"}], "vectors": [{"label", "name", "values"}] (p·V's both also "token"),
        "checks": [{"what", "max_abs_diff", "relative"}]}]}"""
    cfg, params = model.config, model.params
    d, dh, eps, q = cfg.n_embd, cfg.d_head, cfg.layer_norm_epsilon, query
    b = f"blocks.{layer}."
    t = lambda name: trace[b + name]  # noqa: E731 - one block's trace entry
    cols = lambda third: slice(third * d + head * dh, third * d + (head + 1) * dh)  # noqa: E731 - head's columns
    x, ln1 = t("hook_resid_pre")[q], t("ln1.hook_normalized")[q]                  # [d] each
    value = value_ledger(model, trace, layer, head, q)

    qkv = ln1.astype(np.float64) @ params[f"h.{layer}.attn.c_attn.weight"] + params[f"h.{layer}.attn.c_attn.bias"]
    qv, kv, vv = (t(f"attn.hook_{n}")[q, head] for n in "qkv")                      # [dh] each
    z = t("attn.hook_z")[q, head]                                                    # [dh]
    keys = t("attn.hook_k")[: q + 1, head].astype(np.float64)                       # [q+1, dh]
    scores = t("attn.hook_attn_scores")[head, q, : q + 1]                            # [q+1]
    pattern = t("attn.hook_pattern")[head, q, : q + 1]                               # [q+1]
    s64 = scores.astype(np.float64)
    softmax64 = np.exp(s64 - s64.max()) / np.exp(s64 - s64.max()).sum()
    mid = t("hook_resid_mid")[q]
    attn_out = t("hook_attn_out")[q]
    ln2 = t("ln2.hook_normalized")[q]
    pre, post, out = t("mlp.hook_pre")[q], t("mlp.hook_post")[q], t("hook_mlp_out")[q]
    fc = ln2.astype(np.float64) @ params[f"h.{layer}.mlp.c_fc.weight"] + params[f"h.{layer}.mlp.c_fc.bias"]
    proj = post.astype(np.float64) @ params[f"h.{layer}.mlp.c_proj.weight"] + params[f"h.{layer}.mlp.c_proj.bias"]
    resid_post = t("hook_resid_post")[q]
    keys_text = f"keys 0…{q}"
    pv = [{"label": f"p·v  key {k['position']}", "token": k["token"], "name": f"{b}attn.hook_pattern × hook_v",
           "values": k["pv"]} for k in value["keys"]]

    steps = [
        {"id": "resid_pre", "op": "residual stream in",
         "formula": f"x = {b}hook_resid_pre[{q}]",
         "detail": f"the residual stream entering block {layer} at this token: the embeddings plus "
                   "everything the earlier blocks wrote", "scalars": [scalar("‖x‖", np.linalg.norm(x))],
         "vectors": [vector("x", b + "hook_resid_pre", x)], "checks": []},
        ln_step("ln_1", x, ln1, "x̂", layer, params, eps, "x"),
        {"id": "qkv", "op": "q, k, v",
         "formula": "[q | k | v] = x̂ · W_attn + b_attn",
         "detail": f"c_attn ({d} → 3·{d}); head {head} takes columns {head * dh}…{(head + 1) * dh - 1} "
                   "of each third", "scalars": [],
         "vectors": [vector("q", b + "attn.hook_q", qv), vector("k", b + "attn.hook_k", kv),
                     vector("v", b + "attn.hook_v", vv)],
         "checks": [check(f"x̂ · W_attn + b redone in float64 vs hook_{n}", qkv[cols(i)], a)
                    for i, (n, a) in enumerate(zip("qkv", (qv, kv, vv)))]},
        {"id": "scores", "op": "scores",
         "formula": "s_j = q · k_j / √d_head",
         "detail": f"the query's q against the k of every key it can see ({keys_text}); later keys are "
                   "masked to −∞", "scalars": [scalar("√d_head", np.sqrt(dh))],
         "vectors": [vector(f"s ({keys_text})", b + "attn.hook_attn_scores", scores)],
         "checks": [check("q·k/√d_head redone in float64 vs hook_attn_scores",
                          keys @ qv.astype(np.float64) / np.sqrt(dh), scores)]},
        {"id": "softmax", "op": "softmax",
         "formula": "p_j = exp(s_j − max s) / Σ_i exp(s_i − max s)",
         "detail": f"the weights of the heatmap row of query {q}; they sum to 1",
         "scalars": [scalar("max s", s64.max()), scalar("Σ p", pattern.astype(np.float64).sum())],
         "vectors": [vector(f"p ({keys_text})", b + "attn.hook_pattern", pattern)],
         "checks": [check("softmax redone in float64 vs hook_pattern", softmax64, pattern)]},
        {"id": "pv", "op": "p · V",
         "formula": "p_j · v_j",
         "detail": f"each key's value vector scaled by its weight: the top {len(pv)} of the {q + 1} keys "
                   f"(the other {value['others']['n']} hold p = {value['others']['p']} together)",
         "scalars": [{**scalar(f"p  key {k['position']}", np.float32(k["p"])), "token": k["token"]}
                     for k in value["keys"]],
         "vectors": pv, "checks": []},
        {"id": "z", "op": "z",
         "formula": "z = Σ_j p_j · v_j",
         "detail": f"summed over all {q + 1} keys: what head {head} reads at this token",
         "scalars": [], "vectors": [{"label": "z", "name": value["z_name"], "values": value["z"]},
                                    {"label": "Σ p·v redone", "name": "float64 sum, rounded to float32",
                                     "values": value["z_sum"]}],
         "checks": [{"what": f"Σ p·v vs hook_z: {value['z_identical']} of {dh} identical as float32",
                     "max_abs_diff": value["z_max_abs_diff"],
                     "relative": f32(float(value["z_max_abs_diff"]) / max(np.abs(z).max(), 1e-30))}]},
        {"id": "w_o", "op": "W_O",
         "formula": "write = z · W_O^h;   attn_out = Σ_h z_h · W_O^h + b_O",
         "detail": f"W_O^h = {value['w_o']}; every head's write plus the c_proj bias is the attention output",
         "scalars": [{"label": "‖write‖", "value": value["write_norm"]}],
         "vectors": [{"label": f"write of head {head}", "name": "z · W_O^h", "values": value["write"]},
                     {"label": "attn_out", "name": value["attn_out"]["name"], "values": value["attn_out"]["values"]}],
         "checks": [{"what": "Σ heads' writes + b_O vs hook_attn_out",
                     "max_abs_diff": value["attn_out"]["max_abs_diff"], "relative": value["attn_out"]["relative"]}]},
        {"id": "resid_mid", "op": "+ residual",
         "formula": "x_mid = x + attn_out", "detail": "attention's output is added to the residual stream",
         "scalars": [], "vectors": [vector("x_mid", b + "hook_resid_mid", mid)],
         "checks": [check("x + attn_out in float32 vs hook_resid_mid", x + attn_out, mid)]},
        ln_step("ln_2", mid, ln2, "x̂₂", layer, params, eps, "x_mid"),
        {"id": "mlp", "op": "MLP",
         "formula": "h = x̂₂ · W_fc + b_fc;   g = gelu(h);   m = g · W_proj + b_proj",
         "detail": f"c_fc ({d} → {pre.shape[0]}), GELU (tanh approximation), c_proj ({pre.shape[0]} → {d})",
         "scalars": [scalar("‖m‖", np.linalg.norm(out))],
         "vectors": [vector("h", b + "mlp.hook_pre", pre), vector("g", b + "mlp.hook_post", post),
                     vector("m", b + "hook_mlp_out", out)],
         "checks": [check("x̂₂ · W_fc + b_fc redone in float64 vs mlp.hook_pre", fc, pre),
                    check("gelu redone in float64 vs mlp.hook_post", gelu64(pre.astype(np.float64)), post),
                    check("g · W_proj + b_proj redone in float64 vs hook_mlp_out", proj, out)]},
        {"id": "resid_post", "op": "+ residual",
         "formula": "x_out = x_mid + m", "detail": f"the residual stream leaving block {layer}",
         "scalars": [scalar("‖x_out‖", np.linalg.norm(resid_post))],
         "vectors": [vector("x_out", b + "hook_resid_post", resid_post)],
         "checks": [check("x_mid + m in float32 vs hook_resid_post", mid + out, resid_post)]},
    ]
    return {"layer": layer, "head": head, "query": token_ref(trace, q), "d_head": dh, "steps": steps}
