"""Properties of the forward pass and the Trace that need no reference implementation."""

import numpy as np
import pytest

import gpt2np
from gpt2np import ops
from gpt2np.model import causal_mask

EXPECTED_BLOCK_NAMES = [
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
    "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]


@pytest.fixture(scope="module")
def small(small_model_dir):
    return gpt2np.load(small_model_dir)


@pytest.fixture(scope="module")
def trace(small):
    return small.run(np.random.default_rng(0).integers(0, 100, 20).tolist())


def test_names_in_forward_order(small, trace):
    L = small.config.n_layer
    expected = ["hook_embed", "hook_pos_embed"]
    for i in range(L):
        expected += [f"blocks.{i}.{n}" for n in EXPECTED_BLOCK_NAMES]
    expected += ["ln_final.hook_scale", "ln_final.hook_normalized", "logits"]
    assert trace.names() == expected


def test_shapes(small, trace):
    T, d, H, dh, V = 20, 48, 3, 16, 100
    shapes = {"hook_embed": (T, d), "blocks.1.attn.hook_q": (T, H, dh),
              "blocks.1.attn.hook_attn_scores": (H, T, T), "blocks.1.attn.hook_pattern": (H, T, T),
              "blocks.1.attn.hook_z": (T, H, dh), "blocks.1.mlp.hook_pre": (T, 4 * d),
              "ln_final.hook_normalized": (T, d), "logits": (T, V),
              "blocks.1.ln1.hook_scale": (T, 1), "ln_final.hook_scale": (T, 1)}
    for name, shape in shapes.items():
        assert trace[name].shape == shape, name
        assert trace[name].dtype == np.float32, name
    assert trace.ids.dtype == np.int64 and trace.ids.shape == (T,)


def test_pattern_invariants(trace):
    """Rows sum to 1, the upper triangle is exactly 0.0, the first token attends 1.0 to itself."""
    for layer in range(trace.n_layer):
        p = trace.pattern(layer)
        assert np.abs(p.sum(-1) - 1).max() < 1e-6
        assert np.all(p[:, np.triu_indices(p.shape[-1], 1)[0], np.triu_indices(p.shape[-1], 1)[1]] == 0.0)
        assert np.all(p[:, 0, 0] == 1.0)
        scores = trace[f"blocks.{layer}.attn.hook_attn_scores"]
        upper = np.triu(np.ones(scores.shape[-2:], bool), 1)
        assert np.all(np.isneginf(scores[:, upper])) and np.all(np.isfinite(scores[:, ~upper]))


def test_scores_are_q_dot_k_over_sqrt_dh(trace):
    q, k = trace["blocks.0.attn.hook_q"], trace["blocks.0.attn.hook_k"]   # [T, H, dh]
    scores = trace["blocks.0.attn.hook_attn_scores"]
    i, j, h = 7, 3, 2
    assert abs(float(q[i, h] @ k[j, h]) / 4.0 - float(scores[h, i, j])) < 1e-5


def test_residual_stream_adds_up(trace):
    np.testing.assert_allclose(trace["blocks.0.hook_resid_pre"],
                               trace["hook_embed"] + trace["hook_pos_embed"], atol=0)
    for i in range(trace.n_layer):
        b = f"blocks.{i}."
        np.testing.assert_allclose(trace[b + "hook_resid_mid"],
                                   trace[b + "hook_resid_pre"] + trace[b + "hook_attn_out"], atol=1e-6)
        np.testing.assert_allclose(trace[b + "hook_resid_post"],
                                   trace[b + "hook_resid_mid"] + trace[b + "hook_mlp_out"], atol=1e-6)


def test_causality(small):
    """Changing a later token changes nothing at earlier positions."""
    a = small.run([5, 6, 7, 8, 9])
    b = small.run([5, 6, 7, 8, 42])
    np.testing.assert_array_equal(a.logits[:4], b.logits[:4])
    assert np.abs(a.logits[4] - b.logits[4]).max() > 1e-4


def test_trace_is_read_only(trace):
    for name in ("blocks.0.attn.hook_pattern", "blocks.0.attn.hook_q", "logits", "hook_pos_embed"):
        with pytest.raises(ValueError):
            trace[name][0] = 1.0
    with pytest.raises(ValueError):
        trace.ids[0] = 1
    with pytest.raises(KeyError, match="trace.names"):
        trace["blocks.0.attn.pattern"]


def test_trace_save_load_roundtrip(trace, tmp_path):
    path = tmp_path / "t.npz"
    trace.save(path)
    loaded = gpt2np.Trace.load(path)
    assert loaded.names() == trace.names()
    assert loaded.tokens == trace.tokens and loaded.model_name == trace.model_name
    np.testing.assert_array_equal(loaded.ids, trace.ids)
    for name in trace.names():
        np.testing.assert_array_equal(loaded[name], trace[name])


def test_zero_ablation_zeroes_z_and_changes_output(small):
    ids = [1, 2, 3, 4, 5, 6]
    clean = small.run(ids)
    ablated = small.run(ids, z_ablation={(1, 2): 0.0})
    assert np.all(ablated["blocks.1.attn.hook_z"][:, 2] == 0.0)
    np.testing.assert_array_equal(ablated["blocks.1.attn.hook_z"][:, :2], clean["blocks.1.attn.hook_z"][:, :2])
    np.testing.assert_array_equal(ablated["blocks.1.hook_resid_pre"], clean["blocks.1.hook_resid_pre"])
    assert np.abs(ablated.logits - clean.logits).max() > 1e-5


def test_ops_known_values():
    x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    y, scale = ops.layer_norm(x, np.ones(4, np.float32), np.zeros(4, np.float32), 1e-5)
    np.testing.assert_allclose(y, [[-1.3416355, -0.4472118, 0.4472118, 1.3416355]], rtol=1e-5)
    np.testing.assert_allclose(scale, [[np.sqrt(1.25 + 1e-5)]], rtol=1e-6)      # var of 1, 2, 3, 4 is 1.25
    g = ops.gelu_new(np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32))
    np.testing.assert_allclose(g, [-0.00363739, -0.15880801, 0.0, 0.84119199, 2.99636261], atol=1e-6)
    s = ops.softmax(np.array([[0.0, np.log(3.0), -np.inf]], dtype=np.float32))
    np.testing.assert_allclose(s, [[0.25, 0.75, 0.0]], rtol=1e-6)
    assert s[0, 2] == 0.0
    assert causal_mask(3).tolist() == [[0, -np.inf, -np.inf], [0, 0, -np.inf], [0, 0, 0]]


def test_float32_throughout(small, trace):
    for name in trace.names():
        assert trace[name].dtype == np.float32, name


def test_text_input_needs_a_tokenizer(small):
    with pytest.raises(gpt2np.GPT2npError, match="no tokenizer"):
        small.run("hello")


@pytest.mark.parametrize("bad, message", [
    ([], "non-empty"), ([[1, 2]], "1-D"), ([1.5, 2.0], "integers"),
    ([100], "out of range"), ([-1], "out of range"), (list(range(65)), "Too many tokens: 65"),
])
def test_bad_ids(small, bad, message):
    with pytest.raises(gpt2np.GPT2npError, match=message):
        small.run(bad)
