"""One block for one token, from a trace that was already run: no second forward pass.

    acts = one_block(model.params, model.config, trace, layer=3, position=9)
    acts["blocks.3.mlp.hook_pre"][0]          # [d_mlp]: the token's MLP hidden layer

A trace kept by a viewer (or any mapping of names to arrays) holds the residual stream entering
every block and every layer's keys and values, but not the block's other intermediates (ln_1,
resid_mid, ln_2, the MLP's hidden layer). They are computed again here for the one token, by
`model.block` itself with `cached=`: the KV-cache path of generation, which computes the q, k
and v of the given positions only and lets their queries attend over the cached keys and values
followed by their own. Given the residual stream at `position` and the keys and values of
positions 0 … position − 1, it is exactly that token's step through the block (attention is
causal: nothing at or before `position` depends on a later token, see `model.kv_cache`). The cost
is one row through one block instead of the whole model over every token (at 1,000 tokens of
GPT-2 small: 0.12 s against 12 s for a pass and the walk, on a busy 2-core machine; docs/load.md).

Its own module because it joins the two sides: `model.py` (the reading path, which knows no
Trace) and `trace.py` (the arrays, which know no math).
"""

from .errors import GPT2npError
from .model import PLAIN, block
from .trace import residual_stream_names


def one_block(params, config, trace, layer, position, kernels=PLAIN):
    """Block `layer`'s every intermediate for the token at `position`, from a run's kept arrays.

    trace: a Trace or any mapping with the residual stream entering the block
      (`blocks.0.hook_resid_pre` or `blocks.{layer-1}.hook_resid_post`, [T, d]) and the layer's
      `blocks.{layer}.attn.hook_k` and `hook_v` ([T, H, dh]); positions after `position` are not read.
    -> {"blocks.{layer}.<name>": array} as `model.block(..., cached=)` returns it: one query, so
       every [T, ...] array is [1, ...] (the token's row), `attn.hook_k` and `attn.hook_v` hold
       positions 0 … position ([position + 1, H, dh]), and `attn.hook_attn_scores` and
       `attn.hook_pattern` are [H, 1, position + 1] (the heatmap row up to the diagonal).
    """
    if not 0 <= layer < config.n_layer:
        raise GPT2npError(f"Layer {layer} does not exist: give 0 … {config.n_layer - 1}.")
    resid = trace[residual_stream_names(config.n_layer)[layer]]                # [T, d]
    if not 0 <= position < len(resid):
        raise GPT2npError(f"Position {position} is not in the run: give 0 … {len(resid) - 1}.")
    k, v = trace[f"blocks.{layer}.attn.hook_k"], trace[f"blocks.{layer}.attn.hook_v"]   # [T, H, dh]
    cached = (k[:position], v[:position])                                      # [position, H, dh] each
    acts = block(params, layer, resid[position:position + 1], config,         # [1, d]: one query
                 kernels=kernels, cached=cached)
    return {f"blocks.{layer}.{name}": value for name, value in acts.items()}
