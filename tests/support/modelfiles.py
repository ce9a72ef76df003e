"""Build model directories for the tests: random GPT-2 weights in the layouts found in the wild.

`write_model_dir` writes config.json + model.safetensors (+ the real GPT-2 tokenizer, copied from
tests/data/gpt2 into the temporary directory, when the vocabulary is GPT-2's). The default layout is
exactly the official checkpoint's: no `transformer.` prefix, no lm_head, the twelve `h.N.attn.bias`
causal-mask buffers [1, 1, n_positions, n_positions], F32. Options produce the other variants.
"""

import json
import shutil
from pathlib import Path

import numpy as np

GPT2_FILES = Path(__file__).resolve().parents[1] / "data" / "gpt2"     # GPT-2's tokenizer and config (MIT, OpenAI)
GPT2_VOCAB = 50257


def small_config(n_layer=2, n_head=3, n_embd=48, n_positions=64, vocab_size=100):
    """A Hugging Face style GPT-2 config dict."""
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
            "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd, "n_ctx": n_positions,
            "n_positions": n_positions, "vocab_size": vocab_size,
            "bos_token_id": vocab_size - 1, "eos_token_id": vocab_size - 1}


# The good file that the weight-loading tests copy and then break (conftest's good_weights_dir).
GOOD_WEIGHTS_CONFIG = small_config(n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=64)


def gpt2_small_config():
    return json.loads((GPT2_FILES / "config.json").read_text())


def random_params(cfg, seed=0):
    """Random learned tensors, checkpoint names and [in, out] layout, float32.

    Attention weights have std 1/√d (larger than GPT-2's init, 0.02) so that q·k/√d_head is of
    order 1 whatever the width: patterns far from uniform, yet not so peaked that float32
    rounding is amplified from layer to layer.
    """
    rng = np.random.default_rng(seed)
    d, V, P, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"], cfg["n_layer"]
    m = cfg.get("n_inner") or 4 * d
    f = lambda *shape, s=0.02: (rng.standard_normal(shape, dtype=np.float32) * s)  # noqa: E731
    ln = lambda: (1 + f(d, s=0.1), f(d))  # noqa: E731
    p = {"wte.weight": f(V, d, s=0.1), "wpe.weight": f(P, d, s=0.05)}
    for i in range(L):
        p[f"h.{i}.ln_1.weight"], p[f"h.{i}.ln_1.bias"] = ln()
        p[f"h.{i}.attn.c_attn.weight"] = f(d, 3 * d, s=float(d) ** -0.5)
        p[f"h.{i}.attn.c_attn.bias"] = f(3 * d)
        p[f"h.{i}.attn.c_proj.weight"] = f(d, d)
        p[f"h.{i}.attn.c_proj.bias"] = f(d)
        p[f"h.{i}.ln_2.weight"], p[f"h.{i}.ln_2.bias"] = ln()
        p[f"h.{i}.mlp.c_fc.weight"] = f(d, m, s=0.05)
        p[f"h.{i}.mlp.c_fc.bias"] = f(m)
        p[f"h.{i}.mlp.c_proj.weight"] = f(m, d)
        p[f"h.{i}.mlp.c_proj.bias"] = f(d)
    p["ln_f.weight"], p["ln_f.bias"] = ln()
    return p


def scaled_like_gpt2(params, cfg, mlp_write=80.0, massive=3000.0):
    """Random weights rescaled so that activations have real GPT-2's magnitudes (tests/data/gpt2/README.md):
    each MLP writes values of order `mlp_write` into the residual stream, so that it grows into the
    hundreds, and position 0 carries one very large activation (`massive`, in dimension 0) from the
    position embedding on. A bound relative to the reference's magnitude then means what it would
    on the real model. Returns a new dict."""
    params = {name: value.copy() for name, value in params.items()}
    m = cfg.get("n_inner") or 4 * cfg["n_embd"]
    for i in range(cfg["n_layer"]):
        # c_proj entries have std 0.02 and its inputs (GELU of ~unit values) an rms of about 0.8
        params[f"h.{i}.mlp.c_proj.weight"] *= np.float32(mlp_write / (0.02 * 0.8 * m ** 0.5))
    params["wpe.weight"][0, 0] = massive
    return params


def save_tensors(tensors, path, dtype="F32"):
    """Write a safetensors file with the `safetensors` library; F16/BF16 go through torch."""
    if dtype == "F32":
        from safetensors.numpy import save_file
        save_file(tensors, str(path), metadata={"format": "pt"})
        return
    import torch
    from safetensors.torch import save_file
    torch_dtype = {"F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)).to(torch_dtype)
               if v.dtype == np.float32 else torch.from_numpy(v) for k, v in tensors.items()},
              str(path), metadata={"format": "pt"})


def write_model_dir(path, cfg=None, seed=0, dtype="F32", prefix="", masks=True,
                    lm_head=False, masked_bias=False, tokenizer=None, params=None, gpt2_scale=False):
    """Write a model directory; returns (path, params as float32 in checkpoint names).

    tokenizer: None -> the real GPT-2 files from tests/data/gpt2 when vocab_size is 50257.
    gpt2_scale: rescale the random weights to real GPT-2's activation magnitudes (scaled_like_gpt2).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = cfg or gpt2_small_config()
    params = params if params is not None else random_params(cfg, seed)
    if gpt2_scale:
        params = scaled_like_gpt2(params, cfg)
    tensors = {prefix + k: v for k, v in params.items()}
    n_pos = cfg["n_positions"]
    for i in range(cfg["n_layer"]):
        if masks:
            tensors[f"{prefix}h.{i}.attn.bias"] = np.tril(
                np.ones((n_pos, n_pos), dtype=np.float32))[None, None]
        if masked_bias:
            tensors[f"{prefix}h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    if lm_head:
        tensors["lm_head.weight"] = params["wte.weight"].copy()
    save_tensors(tensors, path / "model.safetensors", dtype)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    if tokenizer is None and cfg["vocab_size"] == GPT2_VOCAB:
        tokenizer = "tokenizer.json"
    for name in {"tokenizer.json": ["tokenizer.json"], "bpe": ["vocab.json", "merges.txt"]}.get(tokenizer, []):
        shutil.copy(GPT2_FILES / name, path / name)
    return path, params
