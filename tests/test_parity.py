"""gpt2np against Hugging Face transformers, tensor by tensor, on the same safetensors file.

Each test prints max|Δ| for every named tensor (see the table at the end of the pytest run):
hidden_states[i] ↔ blocks.i.hook_resid_pre, hidden_states[-1] ↔ ln_final.hook_normalized,
attentions[i] ↔ blocks.i.attn.hook_pattern, logits ↔ logits.
"""

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir
from reference import hf_model, hf_run, max_abs_delta, paired_tensors

import gpt2np

BOUNDS = {"pattern": 1e-5, "logits": 1e-4, "resid": 1e-4}   # float32, random test models

SENTENCES = [
    "The trophy doesn't fit in the suitcase because it is too big.",
    "The quick brown fox jumps over the lazy",
    "When Mary and John went to the store, John gave a drink to",
    ("In 1905, Albert Einstein published four papers that changed physics: on the photoelectric "
     "effect, Brownian motion, special relativity, and the equivalence of mass and energy. Each "
     "one, on its own, would have made a career. 🙂 Ünïcödé, tabs\tand\nnewlines too."),
]


def bound_for(name):
    if name.endswith("hook_pattern"):
        return BOUNDS["pattern"]
    return BOUNDS["logits"] if name == "logits" else BOUNDS["resid"]


def check_parity(model, hf, ids, record):
    trace = model.run(ids)
    ref = hf_run(hf, ids)
    failures = []
    for name, ours, theirs in paired_tensors(trace, ref):
        assert ours.shape == theirs.shape, name
        delta = max_abs_delta(ours, theirs)
        record(f"T={len(ids)} {name}", delta, bound_for(name))
        if not delta <= bound_for(name):
            failures.append(f"{name}: max|Δ| = {delta:.3e} > {bound_for(name):.0e}")
    assert not failures, "\n".join(failures)
    return trace


@pytest.mark.parametrize("cfg", [
    small_config(n_layer=2, n_head=3, n_embd=48, n_positions=64, vocab_size=100),
    dict(small_config(n_layer=3, n_head=4, n_embd=64, n_positions=32, vocab_size=300), n_inner=100),
    small_config(n_layer=1, n_head=1, n_embd=16, n_positions=8, vocab_size=10),
], ids=["2x3x48-ctx64", "3x4x64-ctx32-inner100", "1x1x16-ctx8"])
def test_parity_random_configs(tmp_path, cfg, parity_record):
    directory, _ = write_model_dir(tmp_path / "m", cfg, seed=3)
    model, hf = gpt2np.load(directory), hf_model(directory)
    rng = np.random.default_rng(0)
    for T in (1, 5, cfg["n_positions"]):          # one token, a few, the full context
        check_parity(model, hf, rng.integers(0, cfg["vocab_size"], T).tolist(), parity_record)


@pytest.mark.parametrize("variant", [
    dict(dtype="F16"), dict(dtype="BF16"),
    dict(prefix="transformer.", lm_head=True, masked_bias=True),
    dict(masks=False),
], ids=["F16", "BF16", "prefix+lm_head+masked_bias", "no-mask-buffers"])
def test_parity_checkpoint_variants(tmp_path, variant, parity_record):
    """Variants found in the wild load to the same float32 numbers transformers computes."""
    cfg = small_config(n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=64)
    directory, params = write_model_dir(tmp_path / "m", cfg, seed=4, **variant)
    model = gpt2np.load(directory)
    assert sorted(model.params) == sorted(params)
    for name, value in model.params.items():
        assert value.dtype == np.float32, name
    ids = list(range(0, 64, 4))
    check_parity(model, hf_model(directory), ids, parity_record)


@pytest.mark.slow
def test_parity_gpt2_small_layout(gpt2_layout_dir, parity_record):
    """GPT-2 small's exact shapes and official file layout, real tokenizer, real sentences,
    and a full 1,024-token context."""
    model, hf = gpt2np.load(gpt2_layout_dir), hf_model(gpt2_layout_dir)
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (12, 12, 768)
    assert model.info.n_params == 124_439_808        # REFERENCE.md: learned parameters
    for text in SENTENCES:
        check_parity(model, hf, model.encode(text), parity_record)
    ids = np.random.default_rng(5).integers(0, 50257, 1024).tolist()
    check_parity(model, hf, ids, parity_record)


def test_tokenizer_check_values(shared_gpt2, tmp_path):
    """REFERENCE.md's check values; vocab.json + merges.txt give the same ids as tokenizer.json."""
    import shutil
    from gpt2np.tokenizer import Tokenizer
    tok = Tokenizer.from_dir(shared_gpt2)
    assert tok.encode("The quick brown fox jumps over the lazy") == [
        464, 2068, 7586, 21831, 18045, 625, 262, 16931]
    assert tok.token_string(3290) == " dog"
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(shared_gpt2 / name, tmp_path / name)
    from_bpe_files = Tokenizer.from_dir(tmp_path)
    for text in SENTENCES + ["<|endoftext|>Hello", " leading and  double  spaces "]:
        assert from_bpe_files.encode(text) == tok.encode(text), text
    assert tok.encode("<|endoftext|>") == [50256]
