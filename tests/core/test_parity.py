"""gpt2np against Hugging Face transformers, every named tensor, on the same safetensors file.

The reference is read from transformers' own modules with forward hooks (tests/support/reference.py), so
each name of the Trace — q, k, v, scores, pattern, z, the sublayer outputs, both LayerNorms, the MLP
before and after GELU, every residual stream, ln_final and logits — is held against the tensor
transformers computes at that point. Bounds are relative to the reference's magnitude at each
position (patterns: absolute), and masked scores must be exactly -inf. The worst figure per kind of
tensor is printed at the end of the run. Both engines are held to the reference: the reading path
(model.py) and the CPU schedule (engine.py).
"""

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir
from reference import check, hf_model

import gpt2np
from gpt2np.api import ENGINES

SENTENCES = [
    "The trophy doesn't fit in the suitcase because it is too big.",
    "The quick brown fox jumps over the lazy",
    "When Mary and John went to the store, John gave a drink to",
    ("In 1905, Albert Einstein published four papers that changed physics: on the photoelectric "
     "effect, Brownian motion, special relativity, and the equivalence of mass and energy. Each "
     "one, on its own, would have made a career. 🙂 Ünïcödé, tabs\tand\nnewlines too."),
]

# Lengths on both sides of every internal boundary: one token, the rows-per-core threshold of the
# CPU schedule (64 per core), the query blocks (128), a few blocks, and a full 1,024 context.
BOUNDARY_LENGTHS = (1, 63, 64, 65, 127, 128, 129, 300, 1024)


def random_ids(n, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


@pytest.mark.parametrize("cfg", [
    small_config(n_layer=2, n_head=3, n_embd=48, n_positions=64, vocab_size=100),
    dict(small_config(n_layer=3, n_head=4, n_embd=64, n_positions=32, vocab_size=300), n_inner=100),
    small_config(n_layer=1, n_head=1, n_embd=16, n_positions=8, vocab_size=10),
], ids=["2x3x48-ctx64", "3x4x64-ctx32-inner100", "1x1x16-ctx8"])
@pytest.mark.parametrize("engine", ENGINES)
def test_parity_random_configs(tmp_path, cfg, engine, parity_record):
    directory, _ = write_model_dir(tmp_path / "m", cfg, seed=3)
    model, hf = gpt2np.load(directory), hf_model(directory)
    for T in (1, 5, cfg["n_positions"]):          # one token, a few, the full context
        check(model, hf, random_ids(T, cfg["vocab_size"]), parity_record, engine=engine)


@pytest.fixture(scope="module")
def gpt2_scaled_small_dir(tmp_path_factory):
    """3 layers × 4 heads × 64, context 1,024, with real GPT-2's activation magnitudes: a residual
    stream in the hundreds and a ~3,000 activation at position 0 (modelfiles.scaled_like_gpt2)."""
    cfg = small_config(n_layer=3, n_head=4, n_embd=64, n_positions=1024, vocab_size=128)
    directory, _ = write_model_dir(tmp_path_factory.mktemp("scaled") / "m", cfg, seed=7, gpt2_scale=True)
    return directory


@pytest.mark.parametrize("engine", ENGINES)
def test_parity_gpt2_scaled_activations_all_boundaries(gpt2_scaled_small_dir, engine, parity_record):
    model, hf = gpt2np.load(gpt2_scaled_small_dir), hf_model(gpt2_scaled_small_dir)
    for T in BOUNDARY_LENGTHS:
        trace = check(model, hf, random_ids(T, 128, seed=T), parity_record, engine=engine)
    # The scaling is what makes a relative bound meaningful: check that it is there.
    resid = np.abs(trace["blocks.2.hook_resid_post"])
    assert resid[0].max() > 1000 and resid[1:].max() > 100, (resid[0].max(), resid[1:].max())


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
    check(model, hf_model(directory), list(range(0, 64, 4)), parity_record)


@pytest.mark.slow
def test_parity_gpt2_small_layout(gpt2_layout_dir, parity_record):
    """GPT-2 small's exact shapes and official file layout, real tokenizer, real sentences."""
    model, hf = gpt2np.load(gpt2_layout_dir), hf_model(gpt2_layout_dir)
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (12, 12, 768)
    assert model.info.n_params == 124_439_808        # tests/data/gpt2/README.md: learned parameters
    for text in SENTENCES:
        check(model, hf, model.encode(text), parity_record)


@pytest.mark.slow
def test_parity_gpt2_small_scaled_all_boundaries(tmp_path_factory, gpt2_files, parity_record):
    """GPT-2 small's shapes and official layout, weights scaled to real GPT-2's activation
    magnitudes, at every boundary length up to the full 1,024-token context."""
    directory, _ = write_model_dir(tmp_path_factory.mktemp("gpt2scaled") / "gpt2-scaled", seed=8,
                                   gpt2_scale=True)
    model, hf = gpt2np.load(directory), hf_model(directory)
    for T in BOUNDARY_LENGTHS:
        for engine in ENGINES:
            trace = check(model, hf, random_ids(T, 50257, seed=T), parity_record, label=f"{engine} ", engine=engine)
    resid = np.abs(trace["blocks.11.hook_resid_post"])
    assert resid[0].max() > 1000 and resid[1:].max() > 100, (resid[0].max(), resid[1:].max())


def test_tokenizer_check_values(gpt2_files, tmp_path):
    """tests/data/gpt2/README.md's check values; vocab.json + merges.txt give the same ids as tokenizer.json."""
    import shutil

    from gpt2np.files.tokenizer import Tokenizer
    tok = Tokenizer.from_dir(gpt2_files)
    assert tok.encode("The quick brown fox jumps over the lazy") == [
        464, 2068, 7586, 21831, 18045, 625, 262, 16931]
    assert tok.token_string(3290) == " dog"
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_files / name, tmp_path / name)
    from_bpe_files = Tokenizer.from_dir(tmp_path)
    for text in SENTENCES + ["<|endoftext|>Hello", " leading and  double  spaces "]:
        assert from_bpe_files.encode(text) == tok.encode(text), text
    assert tok.encode("<|endoftext|>") == [50256]
