"""The GPT-2 forward pass as the plain math, every intermediate kept under its name.

Read top to bottom: `embed` -> `attention` -> `mlp` -> `block` -> `forward`, then `kv_cache` for
generation. Attention is three lines in `attend`, with the heads as a batch axis:

    scores  = q @ kᵀ / √d_head + mask        [H, T, T]
    pattern = softmax(scores)                [H, T, T]
    z       = pattern @ v                    [H, T, d_head]

Every array a learner may want to look at is returned under its TransformerLens name (see the
README's glossary).

Follows OpenAI's GPT-2 (`gpt-2/src/model.py`) and Hugging Face's `modeling_gpt2.py` (eager
attention): pre-LayerNorm blocks, Conv1D weights stored [in, out], scores scaled by 1/√d_head,
tanh GELU, final LayerNorm, and an LM head tied to the token embedding.

Parameters are a plain dict keyed exactly as in the checkpoint (`h.3.attn.c_attn.weight`).
Shapes: T tokens, d = n_embd, H = n_head, dh = d_head = d / H, V = vocab_size.

The four heavy computations (linear layers, LayerNorm, GELU, `attend`) are passed in as `kernels`;
the defaults below are the plain math. `engine.py` supplies faster kernels for the CPU that compute
the same arrays; the tests hold the two equal.

Every intermediate passes through one step, `edit(name, array)`, before the pass goes on with it:
by default (`keep`) it returns the array as computed. An edit that returns another array replaces
that activation for everything computed after it; this is how head ablation and activation
patching change a run (`replacing`). The trace holds the arrays the pass went on with.
"""

import numpy as np

from .ops import gelu_new, layer_norm, linear, softmax


def keep(name, array):
    """The default `edit`: every activation as computed."""
    return array


def replacing(changes):
    """An `edit` that replaces parts of named activations: changes {name: [(index, value), ...]}
    gives that activation with array[index] = value for each pair (a copy: the array computed is
    not written). E.g. {"blocks.5.attn.hook_z": [((slice(None), 1), 0.0)]} zero-ablates head 5.1."""
    def edit(name, array):
        if name not in changes:
            return array
        array = array.copy()
        for index, value in changes[name]:
            array[index] = value
        return array
    return edit


def embed(params, ids, start=0):
    """Token embedding plus position embedding of ids at positions start, start+1, ...

    ids [T] -> ([T, d], [T, d])
    """
    tok = params["wte.weight"][ids]                        # [V, d] rows -> [T, d]
    pos = params["wpe.weight"][start: start + len(ids)]    # [T, d]
    return tok, pos


def causal_mask(T, n_keys=None):
    """Additive mask: 0 where query i may see key j (j ≤ i), -inf where the key comes later.
    -> [T, n_keys]. The T queries are the last T of the n_keys positions (all of them by default;
    with a KV cache one query, the newest position, which sees every key)."""
    n_keys = T if n_keys is None else n_keys
    return np.triu(np.full((T, n_keys), -np.inf, dtype=np.float32), k=n_keys - T + 1)


def attend(q, k, v):
    """Scaled dot-product attention with the causal mask, heads as a batch axis.

    q, k, v [H, T, dh] -> scores [H, T, T] (-inf where a key comes after its query),
                          pattern [H, T, T] (rows sum to 1; exactly 0 above the diagonal),
                          z [H, T, dh] (each query's pattern-weighted sum of values)
    With a KV cache k and v hold more positions than q: scores and pattern are then [H, T, n_keys].
    """
    T, n_keys, dh = q.shape[1], k.shape[1], q.shape[2]
    scores = q @ k.transpose(0, 2, 1) / dh ** 0.5 + causal_mask(T, n_keys)   # [H,T,dh] @ [H,dh,T] -> [H,T,T]
    pattern = softmax(scores, axis=-1)                                       # [H, T, T]
    z = pattern @ v                                                          # [H,T,T] @ [H,T,dh] -> [H,T,dh]
    return scores, pattern, z


class Kernels:
    """The heavy computations of the forward pass; the defaults are the plain functions above and
    in ops.py. Each takes and returns the same arrays as its default."""

    def __init__(self, linear=linear, layer_norm=layer_norm, gelu=gelu_new, attend=attend):
        self.linear, self.layer_norm, self.gelu, self.attend = linear, layer_norm, gelu, attend


PLAIN = Kernels()


def attention(x, c_attn_w, c_attn_b, c_proj_w, c_proj_b, n_head, edit=keep, kernels=PLAIN, cached=None):
    """Causal multi-head self-attention, every step kept.

    x [T, d] (the LayerNormed residual stream) -> dict of
      q, k, v  [T, H, dh]   queries, keys, values
      scores   [H, T, T]    q·k / √dh, with -inf where a query would see a later key
      pattern  [H, T, T]    softmax of scores along the key axis
      z        [T, H, dh]   pattern-weighted sum of values, per head
      out      [T, d]       heads concatenated and projected back into the residual stream
    edit: called on each of them by its name in the block (`attn.hook_z`, ...), see `keep`.
      A replaced score is softmaxed again, a replaced pattern weighs the values again.
    cached: optional (k, v) [t, H, dh] of the t positions before x's (the KV cache, see `kv_cache`):
      the queries of x then attend over those keys and values followed by their own, and the k, v
      returned hold all t + T positions.
    """
    T, d = x.shape
    qkv = kernels.linear(x, c_attn_w, c_attn_b)                  # [T, d] -> [T, 3d]
    q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(T, n_head, d // n_head)   # 3 × [T, H, dh]
               for i in range(3))
    if cached is not None:                                       # earlier positions: reused, not recomputed
        k = np.concatenate([cached[0], k])                       # [t, H, dh] + [T, H, dh] -> [t+T, H, dh]
        v = np.concatenate([cached[1], v])
    q, k, v = edit("attn.hook_q", q), edit("attn.hook_k", k), edit("attn.hook_v", v)

    heads = lambda a: a.transpose(1, 0, 2)                       # noqa: E731  [T,H,dh] <-> [H,T,dh]
    scores, pattern, z_heads = kernels.attend(heads(q), heads(k), heads(v))
    if (edited := edit("attn.hook_attn_scores", scores)) is not scores:    # attend's steps after an
        scores, pattern = edited, softmax(edited, axis=-1)                 # edit are done again
    if (edited := edit("attn.hook_pattern", pattern)) is not pattern:
        pattern, z_heads = edited, edited @ heads(v)                       # [H,T,T] @ [H,T,dh]
    z = edit("attn.hook_z", np.ascontiguousarray(heads(z_heads)))          # [H, T, dh] -> [T, H, dh]

    out = edit("hook_attn_out", kernels.linear(z.reshape(T, d), c_proj_w, c_proj_b))   # [T, H·dh] -> [T, d]
    return {"q": q, "k": k, "v": v, "scores": scores, "pattern": pattern, "z": z, "out": out}


def head_results(z, c_proj_w):
    """What each head writes into the residual stream (TransformerLens's `attn.hook_result`):
    z_h · W_O^h, where W_O^h is rows h·dh … (h+1)·dh − 1 of c_proj's weight. Their sum over the
    heads plus c_proj's bias is `attention`'s out, which computes that sum as one product.

    z [T, H, dh], c_proj_w [H·dh, d] -> [T, H, d]
    """
    T, H, dh = z.shape
    w_o = c_proj_w.reshape(H, dh, -1)                                  # [H·dh, d] -> [H, dh, d]
    return (z.transpose(1, 0, 2) @ w_o).transpose(1, 0, 2)            # [H,T,dh] @ [H,dh,d] -> [T, H, d]


def mlp(x, c_fc_w, c_fc_b, c_proj_w, c_proj_b, edit=keep, kernels=PLAIN):
    """Position-wise feed-forward network. x [T, d] -> dict of pre, post [T, d_mlp] and out [T, d]"""
    pre = edit("mlp.hook_pre", kernels.linear(x, c_fc_w, c_fc_b))           # [T, d] -> [T, d_mlp]
    post = edit("mlp.hook_post", kernels.gelu(pre))                         # [T, d_mlp]
    out = edit("hook_mlp_out", kernels.linear(post, c_proj_w, c_proj_b))    # [T, d_mlp] -> [T, d]
    return {"pre": pre, "post": post, "out": out}


def normalize(x, weight, bias, eps, name, edit=keep, kernels=PLAIN):
    """LayerNorm `name` (ln1, ln2, ln_final) with its two named steps, as in TransformerLens:
    hook_scale [T, 1] = √(var + eps) of each row, hook_normalized [T, d] = (x − mean) / scale ·
    weight + bias. -> (scale, normalized). A replaced scale divides the centered rows again."""
    normalized, scale = kernels.layer_norm(x, weight, bias, eps)                   # [T, d], [T, 1]
    if (edited := edit(f"{name}.hook_scale", scale)) is not scale:
        scale, normalized = edited, (x - x.mean(axis=-1, keepdims=True)) / edited * weight + bias
    return scale, edit(f"{name}.hook_normalized", normalized)


def block(params, i, resid_pre, config, edit=keep, kernels=PLAIN, cached=None):
    """Transformer block i: x + attn(ln_1(x)), then + mlp(ln_2(·)).

    resid_pre [T, d] -> dict of every intermediate, named as in TransformerLens under `blocks.i.`
    edit: called on each intermediate with its full name (`blocks.i.attn.hook_z`), see `keep`.
    cached: this layer's (k, v) of earlier positions, passed to `attention`.
    """
    p = lambda name: params[f"h.{i}.{name}"]                # noqa: E731 - checkpoint name inside this block
    named = lambda name, a: edit(f"blocks.{i}.{name}", a)   # noqa: E731 - this block's activation names
    eps = config.layer_norm_epsilon

    resid_pre = named("hook_resid_pre", resid_pre)                                              # [T, d]
    scale1, ln1 = normalize(resid_pre, p("ln_1.weight"), p("ln_1.bias"), eps, "ln1", named, kernels)  # [T, 1], [T, d]
    attn = attention(ln1, p("attn.c_attn.weight"), p("attn.c_attn.bias"),
                     p("attn.c_proj.weight"), p("attn.c_proj.bias"), config.n_head, named, kernels, cached)
    resid_mid = named("hook_resid_mid", resid_pre + attn["out"])                                # [T, d]

    scale2, ln2 = normalize(resid_mid, p("ln_2.weight"), p("ln_2.bias"), eps, "ln2", named, kernels)
    m = mlp(ln2, p("mlp.c_fc.weight"), p("mlp.c_fc.bias"), p("mlp.c_proj.weight"),
            p("mlp.c_proj.bias"), named, kernels)
    resid_post = named("hook_resid_post", resid_mid + m["out"])                                 # [T, d]

    return {
        "hook_resid_pre": resid_pre,
        "ln1.hook_scale": scale1,
        "ln1.hook_normalized": ln1,
        "attn.hook_q": attn["q"],
        "attn.hook_k": attn["k"],
        "attn.hook_v": attn["v"],
        "attn.hook_attn_scores": attn["scores"],
        "attn.hook_pattern": attn["pattern"],
        "attn.hook_z": attn["z"],
        "hook_attn_out": attn["out"],
        "hook_resid_mid": resid_mid,
        "ln2.hook_scale": scale2,
        "ln2.hook_normalized": ln2,
        "mlp.hook_pre": m["pre"],
        "mlp.hook_post": m["post"],
        "hook_mlp_out": m["out"],
        "hook_resid_post": resid_post,
    }


def blocks_from(params, config, layer, resid_pre, edit=keep, kernels=PLAIN, cache=None):
    """Blocks `layer`, layer + 1, ..., n_layer − 1 on the residual stream entering `layer`.

    resid_pre [T, d] -> dict of their intermediates (names `blocks.i.…`), the last block's
    `hook_resid_post` being the final residual stream. `forward` runs them from layer 0; activation
    patching runs them from the first layer a patch changes (the earlier ones cannot change).
    cache: the KV cache of earlier positions (see `forward`).
    """
    acts, x = {}, resid_pre
    for i in range(layer, config.n_layer):
        out = block(params, i, x, config, edit, kernels, None if cache is None else cache[i])
        for name, value in out.items():
            acts[f"blocks.{i}.{name}"] = value
        x = out["hook_resid_post"]                                         # [T, d]
    return acts


def forward(params, config, ids, edit=keep, kernels=PLAIN, cache=None):
    """Run GPT-2 on token ids and return every intermediate, in forward order.

    ids [T] int -> dict name -> array, names as in TransformerLens (no batch axis), ending with
    `ln_final.hook_scale` [T, 1], `ln_final.hook_normalized` [T, d] and `logits` [T, V] for every
    position.
    edit: called on every intermediate with its name before the pass goes on with it (see `keep`,
      `replacing`); the default changes nothing.
    cache: the KV cache of the t tokens before `ids` (`kv_cache` of their forward pass): ids are
      then positions t, t+1, ...; everything is computed for them alone, except `attn.hook_k` and
      `attn.hook_v`, which hold all t + T positions (the next cache), and the scores and pattern,
      [H, T, t + T].
    """
    ids = np.asarray(ids, dtype=np.int64)
    acts = {}
    tok, pos = embed(params, ids, start=0 if cache is None else len(cache[0][0]))
    acts["hook_embed"], acts["hook_pos_embed"] = edit("hook_embed", tok), edit("hook_pos_embed", pos)
    x = acts["hook_embed"] + acts["hook_pos_embed"]                        # [T, d]
    acts.update(blocks_from(params, config, 0, x, edit, kernels, cache))
    x = acts[f"blocks.{config.n_layer - 1}.hook_resid_post"]               # [T, d]

    acts["ln_final.hook_scale"], acts["ln_final.hook_normalized"] = normalize(
        x, params["ln_f.weight"], params["ln_f.bias"], config.layer_norm_epsilon, "ln_final", edit, kernels)
    final = acts["ln_final.hook_normalized"]                               # [T, d]
    logits = unembed(params, final, kernels)                               # [T, d] -> [T, V], tied LM head
    acts["logits"] = edit("logits", logits)
    return acts


def unembed(params, final, kernels=PLAIN):
    """The LM head, tied to the token embedding: logits = ln_final @ wteᵀ. [T, d] -> [T, V]"""
    return kernels.linear(final, params["wte.weight"].T)                   # [T, d] @ [d, V] -> [T, V]


def kv_cache(acts, config):
    """The KV cache: per layer, the keys and values of every position a forward pass has seen.

    acts: what `forward` returned -> [(k, v) per layer], each [T, H, dh] (`blocks.i.attn.hook_k`,
    `blocks.i.attn.hook_v`). Pass it as `forward(..., cache=)` with the next token's id.

    Why reusing them is allowed: attention is causal, so no position ever looks at a later one.
    Everything computed at position j — its residual stream in every layer, hence its k and v —
    depends on tokens 0…j alone, and a new token changes none of it: earlier rows are never
    revisited. A generation step therefore computes q, k, v for the new token only, appends its k
    and v to the cache, and lets its one query attend over all of them (no mask is needed: every
    key is at or before it). Its logits equal those of a full forward pass over the whole sequence.
    """
    return [(acts[f"blocks.{i}.attn.hook_k"], acts[f"blocks.{i}.attn.hook_v"])
            for i in range(config.n_layer)]


def forward_step(params, config, cache, token, kernels=PLAIN):
    """One generation step with the KV cache: the new token's every intermediate (its logits
    [1, V] under `logits`) and the cache grown by its keys and values."""
    acts = forward(params, config, [token], kernels=kernels, cache=cache)   # one query; t + 1 keys
    return acts, kv_cache(acts, config)
