"""The forward pass's one `edit(name, array)` step (gpt2np/model.py), and the names added for
TransformerLens users: LayerNorm's hook_scale in every trace, each head's hook_result on request.

Every intermediate passes through the edit once, by its trace name, in forward order; a replaced
activation is what everything after it is computed from (checked against float64 formulas on the
replaced arrays, and for z against transformers with a hook); z_ablation is one use of it.
"""

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir
from reference import hf_model, hf_patched_logits, hf_trace

import gpt2np
from gpt2np.api import ENGINES
from gpt2np.model import replacing

IDS = [5, 17, 3, 42, 8, 99, 23, 61]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    cfg = small_config(n_layer=2, n_head=4, n_embd=64, n_positions=32, vocab_size=128)
    directory, _ = write_model_dir(tmp_path_factory.mktemp("edits") / "m", cfg, seed=9, gpt2_scale=True)
    return directory, gpt2np.load(directory)


@pytest.mark.parametrize("engine", ENGINES)
def test_edit_sees_every_name_once_in_forward_order(scaled, engine):
    _, model = scaled
    seen = []
    trace = model.run(IDS, engine=engine, edit=lambda name, array: seen.append(name) or array)
    assert seen == trace.names()
    plain = model.run(IDS, engine=engine)
    for name in trace.names():
        assert np.array_equal(trace[name], plain[name]), name


@pytest.mark.parametrize("engine", ENGINES)
def test_replaced_pattern_scores_and_scale_are_what_follows_from(scaled, engine):
    _, model = scaled
    base = model.run(IDS, engine=engine)
    T = len(IDS)
    uniform = np.tril(np.ones((T, T), np.float32)) / np.arange(1, T + 1, dtype=np.float32)[:, None]
    t = model.run(IDS, engine=engine, edit=replacing({"blocks.1.attn.hook_pattern": [(2, uniform)]}))
    v = t["blocks.1.attn.hook_v"][:, 2].astype(np.float64)                        # [T, dh]
    assert np.array_equal(t["blocks.1.attn.hook_pattern"][2], uniform)
    np.testing.assert_allclose(t["blocks.1.attn.hook_z"][:, 2], uniform.astype(np.float64) @ v, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(t["blocks.1.attn.hook_z"][:, 1], base["blocks.1.attn.hook_z"][:, 1])

    flat = np.where(np.isneginf(base["blocks.0.attn.hook_attn_scores"][0]), -np.inf, 0.0).astype(np.float32)
    t = model.run(IDS, engine=engine, edit=replacing({"blocks.0.attn.hook_attn_scores": [(0, flat)]}))
    np.testing.assert_allclose(t["blocks.0.attn.hook_pattern"][0], uniform, atol=1e-7)   # softmax of equal scores

    scale = np.full((T, 1), 2.0, np.float32)
    t = model.run(IDS, engine=engine, edit=replacing({"blocks.1.ln2.hook_scale": [(slice(None), scale)]}))
    x = t["blocks.1.hook_resid_mid"].astype(np.float64)
    p = model.params
    expected = (x - x.mean(-1, keepdims=True)) / 2.0 * p["h.1.ln_2.weight"] + p["h.1.ln_2.bias"]
    np.testing.assert_allclose(t["blocks.1.ln2.hook_normalized"], expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("engine", ENGINES)
def test_z_ablation_is_an_edit_and_matches_transformers(scaled, engine):
    directory, model = scaled
    mean = model.run(IDS[::-1])["blocks.0.attn.hook_z"][:, 3].mean(0)                  # [dh]
    ablated = model.run(IDS, engine=engine, z_ablation={(1, 2): 0.0, (0, 3): mean})
    edited = model.run(IDS, engine=engine, edit=replacing({
        "blocks.1.attn.hook_z": [((slice(None), 2), 0.0)], "blocks.0.attn.hook_z": [((slice(None), 3), mean)]}))
    for name in ablated.names():
        assert np.array_equal(ablated[name], edited[name]), name
    hf = hf_model(directory)
    fake_clean = {"blocks.1.attn.hook_z": np.zeros((len(IDS), 4, 16), np.float32)}    # z := 0 through the hook
    theirs = hf_patched_logits(hf, IDS, "z", 1, 2, fake_clean)
    only_1_2 = model.run(IDS, engine=engine, z_ablation={(1, 2): 0.0}).logits
    assert np.abs(only_1_2 - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_hook_result_is_each_heads_write(scaled):
    """trace.result(L) [T, H, d] against float64 z_h · W_O^h from transformers' own z (the input of
    its c_proj); summed over heads plus c_proj's bias it is hook_attn_out."""
    directory, model = scaled
    trace, ref = model.run(IDS), hf_trace(hf_model(directory), IDS)
    H, d = model.config.n_head, model.config.n_embd
    for layer in range(model.config.n_layer):
        w = model.params[f"h.{layer}.attn.c_proj.weight"].astype(np.float64).reshape(H, d // H, d)
        expected = np.einsum("thk,hkd->thd", ref[f"blocks.{layer}.attn.hook_z"].astype(np.float64), w)
        ours = trace.result(layer)
        assert ours.shape == (len(IDS), H, d) and ours.dtype == np.float32
        assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max(), layer
        total = ours.sum(1) + model.params[f"h.{layer}.attn.c_proj.bias"]
        attn_out = trace[f"blocks.{layer}.hook_attn_out"]
        assert np.abs(total - attn_out).max() <= 1e-5 * np.abs(attn_out).max(), layer
    assert "blocks.0.attn.hook_result" not in trace           # on request, not stored


def test_hook_result_of_a_loaded_trace_needs_the_model(scaled, tmp_path):
    _, model = scaled
    model.run(IDS).save(tmp_path / "t.npz")
    loaded = gpt2np.Trace.load(tmp_path / "t.npz")
    with pytest.raises(gpt2np.GPT2npError, match="pass the model"):
        loaded.result(0)
    np.testing.assert_array_equal(loaded.result(1, model), model.run(IDS).result(1))


def test_hook_scale_in_every_trace(scaled):
    _, model = scaled
    trace = model.run(IDS)
    for name in ["ln_final.hook_scale"] + [f"blocks.{i}.ln{n}.hook_scale" for i in range(2) for n in (1, 2)]:
        assert trace[name].shape == (len(IDS), 1) and trace[name].dtype == np.float32, name
    x = trace["blocks.1.hook_resid_post"].astype(np.float64)
    np.testing.assert_allclose(trace["ln_final.hook_scale"], np.sqrt(x.var(-1, keepdims=True) + 1e-5), rtol=1e-6)
