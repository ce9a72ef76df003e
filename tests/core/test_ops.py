"""Unit tests that tell the classic GPT-2 variants apart by orders of magnitude.

Each test picks inputs on which the right formula and a common wrong one differ by far more than
float32 rounding, checks gpt2np against the right one computed independently in float64, and checks
that the wrong one is indeed far away (so the test would fail on it):
tanh GELU vs erf GELU, LayerNorm's eps, biased vs unbiased variance, 1/√d_head vs 1/√d_model,
an exact -inf mask vs a large negative number, Conv1D [in, out] weights vs transposed ones.
"""

import math

import numpy as np
import pytest

import gpt2np
from gpt2np import ops

RNG = np.random.default_rng(0)


def gelu_tanh64(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf64(x):
    return np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in np.asarray(x, np.float64).ravel()])


def layer_norm64(x, w, b, eps, ddof=0):
    x = np.asarray(x, dtype=np.float64)
    centered = x - x.mean(-1, keepdims=True)
    return centered / np.sqrt(centered.var(-1, ddof=ddof, keepdims=True) + eps) * w + b


def far_apart(a, b, more_than):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) > more_than


def test_gelu_is_the_tanh_approximation_not_erf():
    x = np.linspace(-4, 4, 801, dtype=np.float32)
    tanh, erf = gelu_tanh64(x), gelu_erf64(x)
    differ = np.abs(tanh - erf) > 1e-4
    assert differ.sum() > 100                              # the inputs tell the two apart
    ours = ops.gelu_new(x.copy())
    assert np.max(np.abs(ours - tanh)) <= 2e-6             # 50× below the tanh–erf gap
    assert far_apart(ours[differ], erf[differ], 1e-4)


def test_layer_norm_eps_on_rows_of_tiny_variance():
    d = 64
    x = (1e-3 * RNG.standard_normal((4, d)) + 5.0).astype(np.float32)   # variance ~1e-6 « eps 1e-5
    w, b = np.ones(d, np.float32), np.zeros(d, np.float32)
    ours, scale = ops.layer_norm(x, w, b, 1e-5)
    right = layer_norm64(x, w, b, 1e-5)
    assert np.max(np.abs(ours - right)) <= 1e-4 * np.max(np.abs(right))
    right_scale = np.sqrt(x.astype(np.float64).var(-1, keepdims=True) + 1e-5)   # [4, 1], ≈ √eps here
    assert scale.shape == (4, 1) and np.max(np.abs(scale - right_scale) / right_scale) <= 1e-5
    assert far_apart(right, layer_norm64(x, w, b, 1e-12), 0.5)         # a tiny eps changes it by O(1)
    assert far_apart(right, layer_norm64(x, w, b, 1e-3), 0.1)


def test_layer_norm_uses_the_biased_variance():
    d = 4                                                     # n/(n-1) = 4/3: unbiased is 13% smaller
    x = RNG.standard_normal((8, d)).astype(np.float32)
    w = (1 + 0.1 * RNG.standard_normal(d)).astype(np.float32)
    b = (0.1 * RNG.standard_normal(d)).astype(np.float32)
    ours, _ = ops.layer_norm(x, w, b, 1e-5)
    assert np.max(np.abs(ours - layer_norm64(x, w, b, 1e-5))) <= 1e-6
    assert far_apart(ours, layer_norm64(x, w, b, 1e-5, ddof=1), 0.05)


def test_softmax_turns_minus_inf_into_exact_zeros():
    x = np.array([[3.0, 1.0, -np.inf, -np.inf], [-1e4, 0.0, 2.0, -np.inf]], dtype=np.float32)
    p = ops.softmax(x.copy())
    assert p[0, 2] == 0.0 and p[0, 3] == 0.0 and p[1, 3] == 0.0
    e = np.exp(np.array([3.0, 1.0]) - 3.0)
    assert np.max(np.abs(p[0, :2] - e / e.sum())) <= 1e-7


# -- attention, from a one-layer model built in memory and a float64 reference from its weights ----
@pytest.fixture(scope="module")
def one_layer():
    """1 layer, 4 heads of 8 (d_head 8, d_model 32: √d_model = 2·√d_head), random weights whose
    attention scores are of order 1."""
    cfg = gpt2np.GPT2Config(n_layer=1, n_head=4, n_embd=32, n_positions=16, vocab_size=50)
    d, r = cfg.n_embd, np.random.default_rng(1)
    f = lambda *shape, s=0.02: (r.standard_normal(shape) * s).astype(np.float32)  # noqa: E731
    params = {"wte.weight": f(50, d, s=0.5), "wpe.weight": f(16, d, s=0.3),
              "h.0.ln_1.weight": 1 + f(d, s=0.1), "h.0.ln_1.bias": f(d, s=0.1),
              "h.0.attn.c_attn.weight": f(d, 3 * d, s=0.5), "h.0.attn.c_attn.bias": f(3 * d, s=0.1),
              "h.0.attn.c_proj.weight": f(d, d, s=0.3), "h.0.attn.c_proj.bias": f(d, s=0.1),
              "h.0.ln_2.weight": 1 + f(d, s=0.1), "h.0.ln_2.bias": f(d),
              "h.0.mlp.c_fc.weight": f(d, 4 * d, s=0.1), "h.0.mlp.c_fc.bias": f(4 * d),
              "h.0.mlp.c_proj.weight": f(4 * d, d), "h.0.mlp.c_proj.bias": f(d),
              "ln_f.weight": 1 + f(d, s=0.1), "ln_f.bias": f(d)}
    model = gpt2np.Model(cfg, params)
    ids = np.random.default_rng(2).integers(0, 50, 12)
    return model, params, ids, model.run(ids)


def reference_qk(params, ids, n_head):
    """q, k [H, T, dh] in float64, straight from the weights."""
    x = params["wte.weight"][ids].astype(np.float64) + params["wpe.weight"][: len(ids)]
    ln1 = layer_norm64(x, params["h.0.ln_1.weight"], params["h.0.ln_1.bias"], 1e-5)
    qkv = ln1 @ params["h.0.attn.c_attn.weight"].astype(np.float64) + params["h.0.attn.c_attn.bias"]
    T, d = x.shape
    q, k, _ = (qkv[:, i * d:(i + 1) * d].reshape(T, n_head, -1).transpose(1, 0, 2) for i in range(3))
    return q, k


def test_scores_are_scaled_by_sqrt_d_head_not_sqrt_d_model(one_layer):
    model, params, ids, trace = one_layer
    q, k = reference_qk(params, ids, model.config.n_head)
    T = len(ids)
    lower = np.tril(np.ones((T, T), bool))
    right = (q @ k.transpose(0, 2, 1) / math.sqrt(model.config.d_head))[:, lower]
    wrong = (q @ k.transpose(0, 2, 1) / math.sqrt(model.config.n_embd))[:, lower]
    ours = trace["blocks.0.attn.hook_attn_scores"][:, lower]
    scale = np.max(np.abs(right))
    assert scale > 1.0                                      # scores of order 1: the factor 2 shows
    assert np.max(np.abs(ours - right)) <= 1e-5 * scale
    assert far_apart(ours, wrong, 0.3 * scale)


def test_mask_is_exactly_minus_inf_and_weights_exactly_zero(one_layer):
    _, _, ids, trace = one_layer
    upper = np.triu(np.ones((len(ids), len(ids)), bool), k=1)
    scores, pattern = trace["blocks.0.attn.hook_attn_scores"], trace["blocks.0.attn.hook_pattern"]
    assert np.all(np.isneginf(scores[:, upper]))            # not -1e4, -1e9 or finfo.min
    assert np.all(np.isfinite(scores[:, ~upper]))
    assert np.all(pattern[:, upper] == 0.0)
    assert np.all(pattern[:, ~upper] > 0.0)


def test_conv1d_weights_are_in_out_not_transposed(one_layer):
    """hook_attn_out = z @ W_proj + b with W stored [in, out]; the square c_proj would also accept W.T."""
    _, params, _, trace = one_layer
    z = trace["blocks.0.attn.hook_z"].reshape(trace.n_tokens, -1).astype(np.float64)
    w, b = params["h.0.attn.c_proj.weight"].astype(np.float64), params["h.0.attn.c_proj.bias"]
    right, wrong = z @ w + b, z @ w.T + b
    ours = trace["blocks.0.hook_attn_out"]
    assert np.max(np.abs(ours - right)) <= 1e-5 * np.max(np.abs(right))
    assert far_apart(ours, wrong, 0.1 * np.max(np.abs(right)))
