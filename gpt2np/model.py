"""The GPT-2 forward pass as the plain math, every intermediate kept under its name.

Read top to bottom: `embed` -> `attention` -> `mlp` -> `block` -> `forward`. Attention is three
lines in `attend`, with the heads as a batch axis:

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
"""

import numpy as np

from .ops import gelu_new, layer_norm, linear, softmax


def embed(params, ids):
    """Token embedding plus position embedding. ids [T] -> ([T, d], [T, d])"""
    tok = params["wte.weight"][ids]                  # [V, d] rows -> [T, d]
    pos = params["wpe.weight"][: len(ids)]           # [T, d]
    return tok, pos


def causal_mask(T):
    """Additive mask: 0 where query i may see key j (j ≤ i), -inf above the diagonal. -> [T, T]"""
    return np.triu(np.full((T, T), -np.inf, dtype=np.float32), k=1)


def attend(q, k, v):
    """Scaled dot-product attention with the causal mask, heads as a batch axis.

    q, k, v [H, T, dh] -> scores [H, T, T] (-inf where a key comes after its query),
                          pattern [H, T, T] (rows sum to 1; exactly 0 above the diagonal),
                          z [H, T, dh] (each query's pattern-weighted sum of values)
    """
    T, dh = q.shape[1], q.shape[2]
    scores = q @ k.transpose(0, 2, 1) / dh ** 0.5 + causal_mask(T)   # [H,T,dh] @ [H,dh,T] -> [H,T,T]
    pattern = softmax(scores, axis=-1)                               # [H, T, T]
    z = pattern @ v                                                  # [H,T,T] @ [H,T,dh] -> [H,T,dh]
    return scores, pattern, z


class Kernels:
    """The heavy computations of the forward pass; the defaults are the plain functions above and
    in ops.py. Each takes and returns the same arrays as its default."""

    def __init__(self, linear=linear, layer_norm=layer_norm, gelu=gelu_new, attend=attend):
        self.linear, self.layer_norm, self.gelu, self.attend = linear, layer_norm, gelu, attend


PLAIN = Kernels()


def attention(x, c_attn_w, c_attn_b, c_proj_w, c_proj_b, n_head, z_ablation=None, kernels=PLAIN):
    """Causal multi-head self-attention, every step kept.

    x [T, d] (the LayerNormed residual stream) -> dict of
      q, k, v  [T, H, dh]   queries, keys, values
      scores   [H, T, T]    q·k / √dh, with -inf where a query would see a later key
      pattern  [H, T, T]    softmax of scores along the key axis
      z        [T, H, dh]   pattern-weighted sum of values, per head
      out      [T, d]       heads concatenated and projected back into the residual stream
    z_ablation: optional {head: value} replacing z[:, head] (0.0 to zero-ablate a head, a [dh] or
      [T, dh] array to mean-ablate it) before the output projection.
    """
    T, d = x.shape
    qkv = kernels.linear(x, c_attn_w, c_attn_b)                  # [T, d] -> [T, 3d]
    q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(T, n_head, d // n_head)   # 3 × [T, H, dh]
               for i in range(3))

    heads = lambda a: a.transpose(1, 0, 2)                       # noqa: E731  [T,H,dh] <-> [H,T,dh]
    scores, pattern, z_heads = kernels.attend(heads(q), heads(k), heads(v))
    z = np.ascontiguousarray(heads(z_heads))                     # [H, T, dh] -> [T, H, dh]

    for head, value in (z_ablation or {}).items():
        z[:, head, :] = value
    out = kernels.linear(z.reshape(T, d), c_proj_w, c_proj_b)    # [T, H·dh] -> [T, d]
    return {"q": q, "k": k, "v": v, "scores": scores, "pattern": pattern, "z": z, "out": out}


def mlp(x, c_fc_w, c_fc_b, c_proj_w, c_proj_b, kernels=PLAIN):
    """Position-wise feed-forward network. x [T, d] -> dict of pre, post [T, d_mlp] and out [T, d]"""
    pre = kernels.linear(x, c_fc_w, c_fc_b)           # [T, d] -> [T, d_mlp]
    post = kernels.gelu(pre)                          # [T, d_mlp]
    out = kernels.linear(post, c_proj_w, c_proj_b)    # [T, d_mlp] -> [T, d]
    return {"pre": pre, "post": post, "out": out}


def block(params, i, resid_pre, config, z_ablation=None, kernels=PLAIN):
    """Transformer block i: x + attn(ln_1(x)), then + mlp(ln_2(·)).

    resid_pre [T, d] -> dict of every intermediate, named as in TransformerLens under `blocks.i.`
    """
    p = lambda name: params[f"h.{i}.{name}"]  # noqa: E731 - checkpoint name inside this block
    eps = config.layer_norm_epsilon

    ln1 = kernels.layer_norm(resid_pre, p("ln_1.weight"), p("ln_1.bias"), eps)   # [T, d]
    attn = attention(ln1, p("attn.c_attn.weight"), p("attn.c_attn.bias"),
                     p("attn.c_proj.weight"), p("attn.c_proj.bias"), config.n_head, z_ablation, kernels)
    resid_mid = resid_pre + attn["out"]                                          # [T, d]

    ln2 = kernels.layer_norm(resid_mid, p("ln_2.weight"), p("ln_2.bias"), eps)   # [T, d]
    m = mlp(ln2, p("mlp.c_fc.weight"), p("mlp.c_fc.bias"), p("mlp.c_proj.weight"),
            p("mlp.c_proj.bias"), kernels)
    resid_post = resid_mid + m["out"]                                            # [T, d]

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


def forward(params, config, ids, z_ablation=None, kernels=PLAIN):
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
    tok, pos = embed(params, ids)
    acts["hook_embed"], acts["hook_pos_embed"] = tok, pos
    x = tok + pos                                                          # [T, d]
    for i in range(config.n_layer):
        for name, value in block(params, i, x, config, by_layer.get(i), kernels).items():
            acts[f"blocks.{i}.{name}"] = value
        x = acts[f"blocks.{i}.hook_resid_post"]                            # [T, d]

    final = kernels.layer_norm(x, params["ln_f.weight"], params["ln_f.bias"], config.layer_norm_epsilon)
    acts["ln_final.hook_normalized"] = final                               # [T, d]
    acts["logits"] = kernels.linear(final, params["wte.weight"].T)         # [T, d] @ [d, V] -> [T, V], tied LM head
    return acts
