"""The four numerical building blocks of GPT-2, as small pure NumPy functions.

Each follows Hugging Face `transformers` (`modeling_gpt2.py`) exactly: LayerNorm with the biased
variance, the tanh approximation of GELU ("gelu_new"), a numerically stable softmax, and the
Conv1D linear layer whose weight is stored [in, out] (so `y = x @ W + b`, no transpose).

Everything stays float32: NumPy would silently promote to float64 if a Python float array or
a float64 scalar array slipped in, doubling the time and changing the rounding.
"""

import numpy as np

SQRT_2_OVER_PI = np.float32(np.sqrt(2.0 / np.pi))


def layer_norm(x, weight, bias, eps, out=None):
    """Normalise each row of x to mean 0, variance 1, then scale and shift.

    x [T, d], weight [d], bias [d] -> normalized [T, d], scale [T, 1] = √(var + eps), the divisor
    (TransformerLens's `hook_scale`); written into out=(normalized, scale) when given.
    """
    out_normalized, out_scale = (None, None) if out is None else out
    mean = x.mean(axis=-1, keepdims=True)                       # [T, 1]
    y = np.subtract(x, mean, out=out_normalized)                # [T, d]  centered
    var = np.mean(y * y, axis=-1, keepdims=True)                # [T, 1]  biased variance
    scale = np.sqrt(var + np.float32(eps), out=out_scale)       # [T, 1]
    y /= scale                                                  # [T, d]  normalized, in place
    y *= weight
    y += bias
    return y, scale


def gelu_new(x, out=None):
    """GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).

    Any shape -> same shape (written into `out` when given). In-place steps on one buffer;
    `x*x*x` rather than `x**3` because NumPy's power is far slower than two multiplications.
    """
    inner = np.multiply(x, x, out=out)  # x²
    inner *= x                          # x³
    inner *= np.float32(0.044715)
    inner += x                          # x + 0.044715·x³
    inner *= SQRT_2_OVER_PI
    np.tanh(inner, out=inner)
    inner += np.float32(1.0)
    inner *= x
    inner *= np.float32(0.5)
    return inner


def softmax(x, axis=-1, out=None):
    """exp(x - max) / sum(exp(x - max)) along `axis`. -inf entries become exactly 0.0.

    Any shape -> same shape (written into `out` when given).
    """
    shifted = np.subtract(x, x.max(axis=axis, keepdims=True), out=out)  # largest entry 0: no overflow
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def linear(x, weight, bias=None, out=None):
    """Conv1D layer as GPT-2 stores it: y = x @ W + b.

    x [T, n_in], weight [n_in, n_out], bias [n_out] or None -> [T, n_out] (into `out` if given)
    """
    y = np.matmul(x, weight, out=out)   # [T, n_in] @ [n_in, n_out] -> [T, n_out]
    if bias is not None:
        y += bias
    return y
