"""The one-block walk (gpt2np/oneblock.py): one token through one block from a run's kept arrays.

Held equal to the full forward pass of the whole sequence, computed by model.py's plain math and
by the engine (the viewer's default): every name of the block, at the first, a middle and the last
position, in every layer, ≤ 1e-5 of the tensor's largest magnitude (float32 rounding: one row
through BLAS sums in another order than many). The kept arrays it is given hold only the residual
stream and the keys and values, and every position after the token is NaN: reading one would show.
"""

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir
from reference import tensor_relative_delta

import gpt2np
from gpt2np import GPT2npError
from gpt2np.oneblock import one_block
from gpt2np.trace import residual_stream_names

BOUND = 1e-5       # max|Δ| / max|ref| per tensor, as for the KV-cached generation step


@pytest.fixture(scope="module", params=["random 3x4x64", "demo"])
def any_model(request, tmp_path_factory):
    """The bundled demo model, and a random model whose activations have GPT-2's magnitudes."""
    if request.param == "demo":
        return gpt2np.load("demo")
    cfg = small_config(n_layer=3, n_head=4, n_embd=64, n_positions=128, vocab_size=100)
    path, _ = write_model_dir(tmp_path_factory.mktemp("oneblock") / "m", cfg, seed=5, gpt2_scale=True)
    return gpt2np.load(path)


def kept_arrays(full, n_layer, position):
    """What a viewer's run keeps that the walk may read (the residual stream at every depth, every
    layer's keys and values), with every row after `position` set to NaN."""
    names = residual_stream_names(n_layer) + [f"blocks.{i}.attn.hook_{x}" for i in range(n_layer) for x in "kv"]
    kept = {}
    for name in names:
        a = full[name].copy()
        a[position + 1:] = np.nan
        kept[name] = a
    return kept


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_one_block_equals_the_full_pass(any_model, engine, parity_record):
    m, T = any_model, 60
    ids = np.random.default_rng(2).integers(0, m.config.vocab_size, T)
    full = m.run(ids, engine=engine)
    H = m.config.n_head
    for position in (0, T // 2, T - 1):
        kept = kept_arrays(full, m.config.n_layer, position)
        for layer in range(m.config.n_layer):
            ours = one_block(m.params, m.config, kept, layer, position)
            prefix = f"blocks.{layer}."
            assert sorted(ours) == sorted(n for n in full.names() if n.startswith(prefix))
            for name, got in ours.items():
                ref = full[name]
                if name.endswith(("attn.hook_k", "attn.hook_v")):          # the keys 0 … position
                    ref = ref[:position + 1]
                elif name.endswith(("hook_attn_scores", "hook_pattern")):  # the heatmap row, keys 0 … position
                    assert got.shape == (H, 1, position + 1), name
                    got, ref = got[:, 0], ref[:, position, :position + 1]
                else:                                                      # the token's row
                    got, ref = got[0], ref[position]
                assert got.shape == ref.shape, f"{name} at {position}: {got.shape} vs {ref.shape}"
                delta = tensor_relative_delta(got, ref)
                parity_record(name, delta, BOUND, f"one block, {engine} full pass, position {position}")
                assert delta <= BOUND, f"{name} at position {position}: {delta:.2e}"


def test_one_block_refuses_a_layer_or_position_outside_the_run(any_model):
    m = any_model
    full = m.run(list(range(5)))
    with pytest.raises(GPT2npError, match="Position 5"):
        one_block(m.params, m.config, full, 0, 5)
    with pytest.raises(GPT2npError, match=f"Layer {m.config.n_layer}"):
        one_block(m.params, m.config, full, m.config.n_layer, 0)
