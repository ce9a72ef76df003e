"""Tools that connect attention to the output: logit lens, head ablation, minimal pairs,
direct logit attribution.

    logit_lens(model, trace)              top-k next tokens read from every layer's residual stream
    ablate(model, text, ["4.11"], ...)    rerun with heads' hook_z zeroed or mean-replaced; the change
                                          in the top-5 next tokens and in one chosen token
    minimal_pair(model, text_a, text_b)   heads ranked by how much their attention changes between
                                          two sentences that differ in a word or two
    logit_attribution(model, trace, position, token, other=None)
                                          one logit (or a difference of two) split into what the
                                          embeddings, every head, every MLP and the biases wrote

Everything returns JSON-ready dicts (str, int, float, lists), for the command line and the viewer
alike. Ablation is not a second implementation of the model: it passes `z_ablation` to the same
forward pass (`Model.run`), which replaces the heads' `hook_z` before the output projection.

The logit lens follows nostalgebraist (2020, "interpreting GPT: the logit lens"): the residual
stream after layer L is put through the final LayerNorm `ln_f` and the tied unembedding `wte`ᵀ,
exactly as the last layer's is. After the last layer this gives the model's own logits.

Direct logit attribution follows TransformerLens (`ActivationCache.decompose_resid`,
`apply_ln_to_stack`): the final residual stream at a position is a sum of parts (token and
position embedding, each head's write z_h·W_O^h, each layer's attention bias b_O, each MLP's
output); the final LayerNorm is linear once its scale 1/√(var + ε) at that position is frozen, so
each part's share of a logit is  scale · ((part − mean(part)) ⊙ ln_f.weight) · wte[token], and
ln_f.bias · wte[token] is the last part. The parts sum to the logit.
"""

from difflib import SequenceMatcher

import numpy as np

from ..errors import GPT2npError
from ..generate import largest, probabilities, rank_of
from ..heads import head_name, parse_heads
from ..model import unembed
from ..ops import layer_norm
from ..trace import residual_stream_names
from .examples import examples_for, token_hint
from .stats import common_prefix, head_output_weights, next_token_top_k


# -- small shared helpers ------------------------------------------------------------------------
def top_tokens(model, logits, k=5):
    """The k most probable next tokens from one logit row: [{"token", "id", "p"}], best first."""
    ids, probs = next_token_top_k(logits, k)
    return [{"token": s, "id": int(i), "p": float(p)}
            for s, i, p in zip(model.token_strings(ids), ids, probs)]


def token_id(model, token):
    """A token given as an id or as text that is exactly one token -> id (Model.token_id), with
    the model's own example in the message when it is not one token."""
    return model.token_id(token, hint=token_hint(model))


def check_position(trace, position):
    """A position (negative: from the end) -> its index, checked (Trace.check_position)."""
    return trace.check_position(position)


# -- logit lens ----------------------------------------------------------------------------------
def lens_logits(resid, ln_f_weight, ln_f_bias, wte, eps):
    """Read logits off a residual stream: ln_f, then the tied unembedding. [..., d] -> [..., V]"""
    return layer_norm(resid, ln_f_weight, ln_f_bias, eps)[0] @ wte.T    # [..., d] @ [d, V]


def logit_lens(model, trace, position=-1, k=5, target=None):
    """Top-k next tokens after `position`, read from the residual stream at every depth.

    Streams: the embeddings (`blocks.0.hook_resid_pre`), then `blocks.L.hook_resid_post` for every
    layer; the last one gives the model's own prediction. `target` (a token or id; default the
    model's final top-1 token) is followed through the layers with its probability and rank.
    -> {"position", "token", "target": {"token", "id"}, "streams": [{"name", "label", "layer",
        "top": [{"token", "id", "p"}], "target_p", "target_rank"}]}
    """
    p = model.params
    position = check_position(trace, position)
    eps = model.config.layer_norm_epsilon
    names = residual_stream_names(trace.n_layer)
    resid = np.stack([trace[n][position] for n in names])                              # [L+1, d]
    logits = lens_logits(resid, p["ln_f.weight"], p["ln_f.bias"], p["wte.weight"], eps)  # [L+1, V]
    probs = probabilities(logits)                                                      # [L+1, V]
    target_id = int(np.argmax(probs[-1])) if target is None else token_id(model, target)
    streams = []
    for depth, (name, row, pr) in enumerate(zip(names, logits, probs)):
        streams.append({
            "name": name, "layer": depth - 1,
            "label": "embeddings" if depth == 0 else f"after layer {depth - 1}",
            "top": top_tokens(model, row, k),
            "target_p": float(pr[target_id]), "target_rank": rank_of(pr, target_id)})
    return {"position": position, "token": trace.tokens[position],
            "target": {"token": model.token_strings([target_id])[0], "id": target_id},
            "streams": streams}


# -- head ablation -------------------------------------------------------------------------------
def mean_z(traces, layer, head):
    """A head's hook_z averaged over every position of one or more traces. -> [dh]"""
    traces = traces if isinstance(traces, (list, tuple)) else [traces]
    z = np.concatenate([t[f"blocks.{layer}.attn.hook_z"][:, head, :] for t in traces])  # [ΣT, dh]
    return z.mean(axis=0)


def ablate(model, text_or_ids, heads, mode="zero", token=None, k=5, position=-1, bos=False,
           reference=None):
    """Rerun with heads ablated and report how the next-token prediction changes.

    heads: "4.11", ["4.11", "5.1"], [(4, 11)], ... mode: "zero" replaces the heads' hook_z by 0;
    "mean" by their mean hook_z over every position of `reference` (texts or traces; default the
    same input), a [d_head] vector. token: a token (text or id) whose probability to follow.
    -> {"heads", "mode", "position", "after_token", "before", "after" (top-k lists),
        "changes": [{"token", "id", "p_before", "p_after", "delta", "rank_before", "rank_after"}]
        for every token in either top-k, "token": same for the chosen token (or None),
        "top1_changed": bool}
    """
    if mode not in ("zero", "mean"):
        raise GPT2npError(f"Ablation mode {mode!r} is unknown: use 'zero' or 'mean'.")
    heads = parse_heads(heads, model.config)
    base = model.run(text_or_ids, bos=bos)
    position = check_position(base, position)
    if mode == "zero":
        values = {h: 0.0 for h in heads}
    else:
        refs = [base] if reference is None else [
            r if hasattr(r, "pattern") else model.run(r, bos=bos)
            for r in (reference if isinstance(reference, (list, tuple)) else [reference])]
        values = {(L, H): mean_z(refs, L, H) for L, H in heads}
    ablated = model.run(base.ids, z_ablation=values)

    logits0, logits1 = base.logits[position], ablated.logits[position]         # [V] each
    p0, p1 = probabilities(logits0), probabilities(logits1)
    before, after = top_tokens(model, logits0, k), top_tokens(model, logits1, k)

    def change(i):
        return {"token": model.token_strings([i])[0], "id": int(i),
                "p_before": float(p0[i]), "p_after": float(p1[i]), "delta": float(p1[i] - p0[i]),
                "rank_before": rank_of(p0, i), "rank_after": rank_of(p1, i)}

    union = list(dict.fromkeys([t["id"] for t in before] + [t["id"] for t in after]))
    return {"heads": [head_name(L, H) for L, H in heads], "mode": mode, "position": position,
            "after_token": base.tokens[position], "tokens": base.tokens,
            "before": before, "after": after, "changes": [change(i) for i in union],
            "token": None if token is None else change(token_id(model, token)),
            "top1_changed": before[0]["id"] != after[0]["id"]}


# -- minimal pairs -------------------------------------------------------------------------------
def align_tokens(ids_a, ids_b):
    """Pair up the positions of two token sequences.

    Same length: position by position ("positional"), differing tokens included.
    Different lengths: only the tokens they share, in order ("shared", difflib's longest matching
    blocks). -> (list of (i_a, i_b), mode)
    """
    ids_a, ids_b = list(map(int, ids_a)), list(map(int, ids_b))
    if len(ids_a) == len(ids_b):
        return [(i, i) for i in range(len(ids_a))], "positional"
    matcher = SequenceMatcher(a=ids_a, b=ids_b, autojunk=False)
    pairs = [(blk.a + n, blk.b + n) for blk in matcher.get_matching_blocks() for n in range(blk.size)]
    return pairs, "shared"


def row_changes(pattern_a, pattern_b, queries, keys=None):
    """Total variation distance between the attention rows of aligned queries.

    Aligned keys count as the same outcome; weight on keys without a partner counts as different,
    so TV = ½ (Σ_aligned |α_a - α_b| + unaligned weight in a + unaligned weight in b), in 0…1.
    pattern_a [H, Ta, Ta], pattern_b [H, Tb, Tb], queries [(i_a, i_b)] * Q, keys [(j_a, j_b)] * K
    (default: the queries) -> [H, Q]
    """
    qa, qb = (np.array(x, dtype=np.int64) for x in zip(*queries))             # [Q], [Q]
    ka, kb = (np.array(x, dtype=np.int64) for x in zip(*(keys or queries)))   # [K], [K]
    a = pattern_a[:, qa][:, :, ka].astype(np.float64)                  # [H, Q, K]
    b = pattern_b[:, qb][:, :, kb].astype(np.float64)
    unaligned = (1 - a.sum(-1)) + (1 - b.sum(-1))                      # [H, Q]
    return 0.5 * (np.abs(a - b).sum(-1) + np.clip(unaligned, 0, None))


def attention_changes(trace_a, trace_b):
    """Every head's attention change between two runs, ranked, from their traces.

    Queries before the first difference see identical inputs and cannot change (causal
    attention), so each head's score is the mean TV distance (`row_changes`) over the aligned
    queries from the first difference on; its largest change and where it happens are reported.
    -> {"alignment": {"mode", "pairs", "n_aligned", "first_difference", "note",
                      "unaligned_a", "unaligned_b" (positions without a partner)},
        "heads": [{"head", "layer", "index", "mean_change", "max_change",
                   "max_query_a", "max_query_b", "max_query_token"}] sorted by mean_change}
    """
    pairs, mode = align_tokens(trace_a.ids, trace_b.ids)
    start = common_prefix(trace_a.ids, trace_b.ids)
    scored = [(ia, ib) for ia, ib in pairs if ia >= start]
    Ta, Tb = trace_a.n_tokens, trace_b.n_tokens
    if mode == "positional":
        note = f"same number of tokens ({Ta}): compared position by position"
    else:
        note = (f"the two sentences tokenize to different lengths ({Ta} and {Tb} tokens): they are "
                f"compared on the {len(pairs)} tokens they share, in order; weight on unshared tokens "
                "counts as changed, and a position's change may come from the shift alone")
    if start == Ta == Tb:
        note += "; the two inputs are identical"
    heads = []
    for layer in range(trace_a.n_layer):
        if scored:
            tv = row_changes(trace_a.pattern(layer), trace_b.pattern(layer), scored, pairs)  # [H, Q]
        else:
            tv = np.zeros((trace_a.pattern(layer).shape[0], 1))
        for h in range(tv.shape[0]):
            q = int(tv[h].argmax())
            qa, qb = scored[q] if scored else (Ta - 1, Tb - 1)
            heads.append({"head": head_name(layer, h), "layer": layer, "index": h,
                          "mean_change": float(tv[h].mean()), "max_change": float(tv[h].max()),
                          "max_query_a": qa, "max_query_b": qb,
                          "max_query_token": trace_a.tokens[qa]})
    heads.sort(key=lambda r: (-r["mean_change"], r["layer"], r["index"]))
    aligned_a, aligned_b = {ia for ia, _ in pairs}, {ib for _, ib in pairs}
    return {"alignment": {"mode": mode, "pairs": [list(p) for p in pairs], "n_aligned": len(pairs),
                          "first_difference": start, "note": note,
                          "unaligned_a": [i for i in range(Ta) if i not in aligned_a],
                          "unaligned_b": [i for i in range(Tb) if i not in aligned_b]},
            "heads": heads}


def minimal_pair(model, text_a, text_b, bos=False, k=5):
    """Run two sentences and rank heads by how much their attention changes between them.

    -> {"a": {"text", "tokens", "next"}, "b": {...}, "alignment": {...}, "heads": [...]}
    (see `attention_changes`; "next" is the top-k next tokens after the last position).
    """
    ta, tb = model.run(text_a, bos=bos), model.run(text_b, bos=bos)
    result = attention_changes(ta, tb)
    side = lambda text, t: {"text": text if isinstance(text, str) else None,  # noqa: E731
                            "tokens": t.tokens, "ids": t.ids.tolist(),
                            "next": top_tokens(model, t.logits[-1], k)}
    return {"a": side(text_a, ta), "b": side(text_b, tb), **result}


# -- direct logit attribution --------------------------------------------------------------------
def head_writes(model, trace, layer, position):
    """What each head of `layer` writes into the residual stream at `position`: z_h · W_O^h, with
    W_O^h rows h·d_head … (h+1)·d_head − 1 of `c_proj.weight`. The layer's c_proj bias belongs to
    no head. -> [H, d] float64 (from the trace's float32 hook_z)"""
    z = trace[f"blocks.{layer}.attn.hook_z"][position].astype(np.float64)          # [H, dh]
    w_o = head_output_weights(model.params[f"h.{layer}.attn.c_proj.weight"], model.config.n_head)
    return np.einsum("hk,hkd->hd", z, w_o.astype(np.float64))                         # [H, dh] · [H, dh, d] -> [H, d]


def residual_parts(model, trace, position):
    """The final residual stream at `position` as the sum of what wrote it, in forward order:
    hook_embed, hook_pos_embed, then per layer every head's write and the MLP's hook_mlp_out, and
    last the attention biases b_O of every layer together.
    -> (parts [{"name", "kind", "layer", "head"}], vectors [P, d] float64)"""
    n_layer, n_head = model.config.n_layer, model.config.n_head
    parts = [{"name": "embed", "kind": "embed", "layer": None, "head": None},
             {"name": "pos_embed", "kind": "pos_embed", "layer": None, "head": None}]
    vectors = [trace["hook_embed"][position], trace["hook_pos_embed"][position]]
    for layer in range(n_layer):
        parts += [{"name": head_name(layer, h), "kind": "head", "layer": layer, "head": h} for h in range(n_head)]
        vectors += list(head_writes(model, trace, layer, position))
        parts.append({"name": f"mlp {layer}", "kind": "mlp", "layer": layer, "head": None})
        vectors.append(trace[f"blocks.{layer}.hook_mlp_out"][position])
    parts.append({"name": "attn biases", "kind": "bias", "layer": None, "head": None})
    vectors.append(sum(model.params[f"h.{layer}.attn.c_proj.bias"].astype(np.float64) for layer in range(n_layer)))
    return parts, np.array(vectors, dtype=np.float64)                                  # [P, d]


def frozen_ln_final(model, trace, position):
    """The final LayerNorm at `position` as a linear map, its scale frozen as TransformerLens does:
    x -> scale · (x − mean(x)) ⊙ ln_f.weight, with scale = 1/√(var + ε) of the final residual
    stream there (ln_f.bias is added once, not per part). -> (scale, function of [..., d])"""
    resid = trace[residual_stream_names(trace.n_layer)[-1]][position].astype(np.float64)   # [d]
    scale = 1.0 / np.sqrt(resid.var() + model.config.layer_norm_epsilon)
    gamma = model.params["ln_f.weight"].astype(np.float64)
    return scale, lambda x: scale * (x - x.mean(axis=-1, keepdims=True)) * gamma


def pushed_tokens(model, effects, k=5):
    """The k tokens a row of logit effects [V] raises most and lowers most.
    -> {"up": [{"token", "id", "effect"}] (largest first), "down": [...] (most negative first)}"""
    up, down = largest(effects, k), largest(-effects, k)                 # ties: the lower id first
    listed = lambda ids: [{"token": s, "id": int(i), "effect": float(effects[i])}  # noqa: E731
                          for s, i in zip(model.token_strings(ids), ids)]
    return {"up": listed(up), "down": listed(down)}


def direct_effects(model, trace, position, vectors, k=5):
    """The tokens whose logits each vector, written into the final residual stream at `position`,
    pushes up and down most: through the frozen final LayerNorm and wteᵀ (float32).
    vectors [P, d] -> [pushed_tokens] * P"""
    _, ln = frozen_ln_final(model, trace, position)
    effects = ln(np.asarray(vectors, dtype=np.float64)).astype(np.float32) @ model.params["wte.weight"].T  # [P, V]
    return [pushed_tokens(model, row, k) for row in effects]


def logit_attribution(model, trace, position, token=None, other=None, k=5):
    """One next-token logit at `position` (or the difference logit(token) − logit(other)) split
    into the parts of the final residual stream (`residual_parts`) plus ln_f.bias, through the
    frozen final LayerNorm (`frozen_ln_final`) and wteᵀ; with, for every part, the k tokens it
    pushes up and down most.

    token: text (one token) or id; default the model's top-1 at `position`. The logit it is
    checked against is the model's own ln_final.hook_normalized[position] · wte[token] (float64
    of the float32 trace; `trace.logits` holds the same product in float32).
    -> {"position", "token", "target": {"token", "id"}, "versus": {…} or None, "logit", "sum",
        "abs_diff", "relative" (|sum − logit| / the largest |logit| involved), "residual_relative"
        (max|Σ parts − final residual| / max|final residual|), "ln_final_scale",
        "parts": [{"name", "kind", "layer", "head", "value", "up", "down"}] in forward order}
    """
    position = check_position(trace, position)
    wte, lnf = model.params["wte.weight"], trace["ln_final.hook_normalized"][position].astype(np.float64)
    if token is None:
        final = trace["ln_final.hook_normalized"][position:position + 1]                # [1, d]
        target = int(np.argmax(unembed(model.params, final)[0]))                         # the model's top-1
    else:
        target = token_id(model, token)
    versus = None if other is None else token_id(model, other)
    if versus == target:
        raise GPT2npError(f"Both tokens are {model.token_strings([target])[0]!r} (id {target}): a logit "
                          "difference needs two different tokens.")
    direction = wte[target].astype(np.float64)                                           # [d]
    logits = [float(lnf @ direction)]
    if versus is not None:
        logits.append(float(lnf @ wte[versus].astype(np.float64)))
        direction = direction - wte[versus].astype(np.float64)
    logit = logits[0] - (logits[1] if versus is not None else 0.0)

    parts, vectors = residual_parts(model, trace, position)                                # [P, d]
    final = trace[residual_stream_names(trace.n_layer)[-1]][position].astype(np.float64)
    scale, ln = frozen_ln_final(model, trace, position)
    values = list(ln(vectors) @ direction)                                                # [P]
    parts.append({"name": "ln_final bias", "kind": "bias", "layer": None, "head": None})
    values.append(float(model.params["ln_f.bias"].astype(np.float64) @ direction))
    effects = direct_effects(model, trace, position, vectors, k)
    bias_row = model.params["ln_f.bias"] @ wte.T                               # [V]: the same at every position
    effects.append(pushed_tokens(model, bias_row, k))
    total = float(np.sum(values))
    name = lambda i: {"token": model.token_strings([i])[0], "id": int(i)}  # noqa: E731
    return {"position": position, "token": trace.tokens[position],
            "target": name(target), "versus": None if versus is None else name(versus),
            "logit": logit, "sum": total, "abs_diff": abs(total - logit),
            "relative": abs(total - logit) / max(max(map(abs, logits)), 1e-30),
            "residual_relative": float(np.abs(vectors.sum(0) - final).max() / max(np.abs(final).max(), 1e-30)),
            "ln_final_scale": float(scale),
            "parts": [{**part, "value": float(v), **e} for part, v, e in zip(parts, values, effects)]}


# -- why the model's examples are good ones -----------------------------------------------------
def measure_examples(model, examples=None):
    """The numbers behind the examples, measured on `model`:
    pair: logit(answer) − logit(versus) at the last token of each side (clean should be larger);
    follow: the token's probability and rank after the text, and after zero-ablating `ablate`."""
    ex = examples_for(model) if examples is None else examples
    out = {}
    pair = ex.get("pair")
    if pair:
        a, v = token_id(model, pair["answer"]), token_id(model, pair["versus"])
        ld = {}
        for side in ("clean", "corrupted"):
            logits = model.run(pair[side]).logits[-1]
            ld[side] = float(logits[a] - logits[v])
        out["pair"] = {"tokens": len(model.encode(pair["clean"])), "logit_difference": ld,
                       "margin": ld["clean"] - ld["corrupted"]}
    follow = ex.get("follow")
    if follow:
        t = token_id(model, follow["token"])
        p = probabilities(model.run(follow["text"]).logits[-1])
        out["follow"] = {"p": float(p[t]), "rank": rank_of(p, t)}
        if ex.get("ablate"):
            after = ablate(model, follow["text"], ex["ablate"], token=t)["token"]
            out["follow"].update(ablated=ex["ablate"], p_ablated=after["p_after"],
                                 rank_ablated=after["rank_after"])
    return out
