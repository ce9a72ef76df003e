"""The GPT-2 forward pass, one code path that returns every intermediate.

Read top to bottom: `embed` -> `attention` -> `mlp` -> `block` -> `forward`. Attention is computed
in `attention` below, explicitly: Q, K, V, the scores q·k/√d_head, the causal mask, the softmax
pattern, and the weighted sum of values. Nothing is fused away: every array a learner may want to
look at is returned under its TransformerLens name (see the README's glossary).

Follows OpenAI's GPT-2 (`gpt-2/src/model.py`) and Hugging Face's `modeling_gpt2.py` (eager
attention): pre-LayerNorm blocks, Conv1D weights stored [in, out], scores scaled by 1/√d_head,
tanh GELU, final LayerNorm, and an LM head tied to the token embedding.

Parameters are a plain dict keyed exactly as in the checkpoint (`h.3.attn.c_attn.weight`).
Shapes: T tokens, d = n_embd, H = n_head, dh = d_head = d / H, V = vocab_size.
"""

from functools import lru_cache

import numpy as np

from .ops import gelu_new, layer_norm, softmax
from .parallel import by_rows, linear, one_blas_thread, over_groups


def embed(params, ids):
    """Token embedding plus position embedding. ids [T] -> ([T, d], [T, d])"""
    tok = params["wte.weight"][ids]                  # [V, d] rows -> [T, d]
    pos = params["wpe.weight"][: len(ids)]           # [T, d]
    return tok, pos


@lru_cache(maxsize=8)
def causal_mask(T):
    """Additive mask: 0 where query i may see key j (j ≤ i), -inf above the diagonal. -> [T, T]"""
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), k=1)
    mask.flags.writeable = False
    return mask


# Queries per block in `head_attention`: a block's scores (heads × 128 rows × keys) are scaled,
# masked and softmaxed while they are still in the CPU cache, instead of in passes over all [H,T,T].
QUERY_BLOCK = 128


def head_attention(q, k, v, scores, pattern, z):
    """Scaled dot-product attention for a group of h heads, written into the given arrays.

    q, k, v [h, T, dh] -> scores, pattern [h, T, T], z [h, T, dh]

    The queries are taken in blocks of rows [a, b). Keys from b on come after every query of the
    block, so their scores are -inf and their weights 0, exactly; they are written as such rather
    than computed (at 1,024 tokens that skips almost half of the q·k products and of the softmax).
    Inside the block the causal mask is applied as usual; only the square of keys a..b-1 can hold
    a key later than its query, so only that square needs it.
    """
    T, dh = q.shape[1], q.shape[2]
    for a in range(0, T, QUERY_BLOCK):
        b = min(a + QUERY_BLOCK, T)
        s = scores[:, a:b, :b]                                       # [h, rows, b]: keys 0..b-1
        np.matmul(q[:, a:b], k[:, :b].transpose(0, 2, 1), out=s)    # [h,rows,dh] @ [h,dh,b]: q·k
        s /= np.float32(np.sqrt(dh))                                 # q·k / √dh
        s[:, :, a:] += causal_mask(b - a)                            # -inf where key j > query i
        scores[:, a:b, b:] = -np.inf                                 # keys after the whole block
        p = softmax(s, axis=-1, out=pattern[:, a:b, :b])             # rows sum to 1; masked → 0
        pattern[:, a:b, b:] = 0.0
        np.matmul(p, v[:, :b], out=z[:, a:b])                        # [h,rows,b] @ [h,b,dh] -> [h,rows,dh]


def attention(x, c_attn_w, c_attn_b, c_proj_w, c_proj_b, n_head, z_ablation=None):
    """Causal multi-head self-attention, every step kept.

    x [T, d] (the LayerNormed residual stream) -> dict of
      q, k, v  [T, H, dh]   queries, keys, values
      scores   [H, T, T]    q·k / √dh, with -inf where a query would see a later key
      pattern  [H, T, T]    softmax of scores along the key axis; the upper triangle is exactly 0
      z        [T, H, dh]   pattern-weighted sum of values, per head
      out      [T, d]       heads concatenated and projected back into the residual stream
    z_ablation: optional {head: value} replacing z[:, head] (0.0 to zero-ablate a head, a [dh] or
      [T, dh] array to mean-ablate it) before the output projection.
    """
    T, d = x.shape
    dh = d // n_head
    qkv = linear(x, c_attn_w, c_attn_b)                          # [T, d] -> [T, 3d]
    q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(T, n_head, dh)  # [T, 3d] -> 3 × [T, H, dh]
               for i in range(3))

    # The heads are independent: each group of heads is computed by `head_attention` into its
    # own slice of these arrays, one group per CPU core at the same time (see parallel.py).
    scores = np.empty((n_head, T, T), dtype=np.float32)
    pattern = np.empty((n_head, T, T), dtype=np.float32)
    z_heads = np.empty((n_head, T, dh), dtype=np.float32)
    over_groups(lambda h: head_attention(                          # h: a slice of heads
        q[:, h].transpose(1, 0, 2), k[:, h].transpose(1, 0, 2), v[:, h].transpose(1, 0, 2),
        scores[h], pattern[h], z_heads[h]), n_head)

    z = np.ascontiguousarray(z_heads.transpose(1, 0, 2))         # [H,T,dh] -> [T,H,dh]
    for head, value in (z_ablation or {}).items():
        z[:, head, :] = value
    out = linear(z.reshape(T, d), c_proj_w, c_proj_b)            # [T, H·dh] -> [T, d]
    return {"q": q, "k": k, "v": v, "scores": scores, "pattern": pattern, "z": z, "out": out}


def mlp(x, c_fc_w, c_fc_b, c_proj_w, c_proj_b):
    """Position-wise feed-forward network. x [T, d] -> dict of pre, post [T, d_mlp] and out [T, d]"""
    pre = linear(x, c_fc_w, c_fc_b)          # [T, d] -> [T, d_mlp]
    post = by_rows(gelu_new, pre)            # [T, d_mlp]  (rows split across cores)
    out = linear(post, c_proj_w, c_proj_b)   # [T, d_mlp] -> [T, d]
    return {"pre": pre, "post": post, "out": out}


def block(params, i, resid_pre, config, z_ablation=None):
    """Transformer block i: x + attn(ln_1(x)), then + mlp(ln_2(·)).

    resid_pre [T, d] -> dict of every intermediate, named as in TransformerLens under `blocks.i.`
    """
    p = lambda name: params[f"h.{i}.{name}"]  # noqa: E731 - checkpoint name inside this block
    eps = config.layer_norm_epsilon

    ln1 = by_rows(layer_norm, resid_pre, p("ln_1.weight"), p("ln_1.bias"), eps)  # rows split across cores
    attn = attention(ln1, p("attn.c_attn.weight"), p("attn.c_attn.bias"),
                     p("attn.c_proj.weight"), p("attn.c_proj.bias"), config.n_head, z_ablation)
    resid_mid = resid_pre + attn["out"]                                   # [T, d]

    ln2 = by_rows(layer_norm, resid_mid, p("ln_2.weight"), p("ln_2.bias"), eps)
    m = mlp(ln2, p("mlp.c_fc.weight"), p("mlp.c_fc.bias"), p("mlp.c_proj.weight"),
            p("mlp.c_proj.bias"))
    resid_post = resid_mid + m["out"]                                     # [T, d]

    return {
        "hook_resid_pre": resid_pre,
        "ln1.hook_normalized": ln1,
        "attn.hook_q": attn["q"],
        "attn.hook_k": attn["k"],
        "attn.hook_v": attn["v"],
        "attn.hook_attn_scores": attn["scores"],
        "attn.hook_pattern": attn["pattern"],
        "attn.hook_z": attn["z"],
        "hook_attn_out": attn["out"],
        "hook_resid_mid": resid_mid,
        "ln2.hook_normalized": ln2,
        "mlp.hook_pre": m["pre"],
        "mlp.hook_post": m["post"],
        "hook_mlp_out": m["out"],
        "hook_resid_post": resid_post,
    }


def forward(params, config, ids, z_ablation=None):
    """Run GPT-2 on token ids and return every intermediate, in forward order.

    ids [T] int -> dict name -> array, names as in TransformerLens (no batch axis), ending with
    `ln_final.hook_normalized` [T, d] and `logits` [T, V] for every position.
    z_ablation: optional {(layer, head): value} that replaces that head's `hook_z` (see `attention`).
    """
    ids = np.asarray(ids, dtype=np.int64)
    by_layer = {}
    for (layer, head), value in (z_ablation or {}).items():
        by_layer.setdefault(layer, {})[head] = value

    acts = {}
    with one_blas_thread():           # BLAS on one thread: gpt2np splits the work across cores itself
        tok, pos = embed(params, ids)
        acts["hook_embed"], acts["hook_pos_embed"] = tok, pos
        x = tok + pos                                                      # [T, d]
        for i in range(config.n_layer):
            for name, value in block(params, i, x, config, by_layer.get(i)).items():
                acts[f"blocks.{i}.{name}"] = value
            x = acts[f"blocks.{i}.hook_resid_post"]

        final = by_rows(layer_norm, x, params["ln_f.weight"], params["ln_f.bias"],
                        config.layer_norm_epsilon)
        acts["ln_final.hook_normalized"] = final
        acts["logits"] = linear(final, params["wte.weight"].T)  # [T, d] @ [d, V] -> [T, V], tied LM head
    return acts
