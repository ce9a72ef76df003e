"""The CPU schedule (gpt2np/engine.py) computes the same arrays as the reading path (model.py).

Every named tensor of a run with the engine's kernels is held to the plain math's within 2e-6
of its largest magnitude (bit-identical where the operations are the same), at
lengths on both sides of the schedule's boundaries and with 1, 2, 3 and more workers than heads.
The kernels are also checked on their own against float64 formulas.
"""

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir
from reference import relative_delta, tensor_relative_delta

import gpt2np
from gpt2np import engine, model, ops
from gpt2np.engine import MIN_ROWS_PER_CORE, QUERY_BLOCK, CPUKernels, attend_block_rows

LENGTHS = (1, MIN_ROWS_PER_CORE - 1, MIN_ROWS_PER_CORE, MIN_ROWS_PER_CORE + 1, 2 * MIN_ROWS_PER_CORE + 1,
           QUERY_BLOCK - 1, QUERY_BLOCK, QUERY_BLOCK + 1, 300, 1024)
# max|Δ| / max|ref| per tensor. The two paths round differently (BLAS on one thread vs several,
# output columns in blocks, queries in blocks, softmax sums over fewer zeros): float32 rounding
# carried through the layers. Measured worst: 8.4e-7 (hook_mlp_out, 3 layers); most names ≤ 6e-7.
BOUND = 2e-6
# Names whose arrays come from the same operations on the same inputs in both paths.
IDENTICAL = ("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_normalized")


@pytest.fixture(scope="module", params=["2x3x48", "3x4x64-gpt2-scaled"])
def models(request, tmp_path_factory):
    cfg = (small_config(n_layer=2, n_head=3, n_embd=48, n_positions=1024, vocab_size=100)
           if request.param == "2x3x48" else
           small_config(n_layer=3, n_head=4, n_embd=64, n_positions=1024, vocab_size=128))
    directory, _ = write_model_dir(tmp_path_factory.mktemp("engine") / request.param, cfg, seed=11,
                                   gpt2_scale=request.param.endswith("scaled"))
    return gpt2np.load(directory)


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_engine_equals_reading_path_every_name(models, workers, parity_record):
    m = models
    kernels = CPUKernels(workers)
    rng = np.random.default_rng(workers)
    for T in LENGTHS:
        ids = rng.integers(0, m.config.vocab_size, T)
        plain = model.forward(m.params, m.config, ids)
        fast = engine.forward(m.params, m.config, ids, kernels=kernels)
        assert list(fast) == list(plain)
        for name in plain:
            assert fast[name].shape == plain[name].shape and fast[name].dtype == np.float32, name
            if name.endswith("hook_attn_scores"):
                assert np.array_equal(np.isneginf(fast[name]), np.isneginf(plain[name])), name
            delta = tensor_relative_delta(fast[name], plain[name])
            parity_record(name, delta, BOUND, f"workers={workers} T={T}")
            assert delta <= BOUND, f"{name} at T={T}, {workers} workers: {delta:.2e}"
        for name in IDENTICAL:
            assert np.array_equal(fast[name], plain[name]), name


def test_run_says_which_engine_computed(models):
    ids = list(range(10))
    fast, plain = models.run(ids), models.run(ids, engine="reference")
    assert (fast.engine, plain.engine) == ("fast", "reference")
    assert relative_delta(fast.logits, plain.logits) <= BOUND
    with pytest.raises(gpt2np.GPT2npError, match="Unknown engine 'turbo'"):
        models.run(ids, engine="turbo")


@pytest.mark.parametrize("T", [1, 5, QUERY_BLOCK - 1, QUERY_BLOCK, QUERY_BLOCK + 1, 2 * QUERY_BLOCK + 44])
def test_query_blocks_give_the_plain_formula(T):
    """attend_block_rows works in blocks of queries and skips keys after a block; the result must
    be softmax(q·kᵀ/√dh + mask) of the whole [T, T] square (float64), exact -inf and 0 where masked."""
    rng = np.random.default_rng(T)
    q, k, v = (rng.standard_normal((2, T, 16), dtype=np.float32) for _ in range(3))
    scores, pattern = np.empty((2, 2, T, T), dtype=np.float32)
    z = np.empty((2, T, 16), dtype=np.float32)
    attend_block_rows(q, k, v, scores, pattern, z)

    upper = np.triu(np.ones((T, T), bool), 1)
    plain = q.astype(np.float64) @ k.astype(np.float64).transpose(0, 2, 1) / 4.0
    plain[:, upper] = -np.inf
    weights = np.exp(plain - plain.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    assert np.all(np.isneginf(scores[:, upper])) and np.all(pattern[:, upper] == 0.0)
    np.testing.assert_allclose(scores[:, ~upper], plain[:, ~upper], atol=1e-5)
    np.testing.assert_allclose(pattern, weights, atol=1e-6)
    np.testing.assert_allclose(z, weights @ v, atol=1e-5)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_rows_split_across_workers_give_the_same_numbers(workers):
    """LayerNorm and GELU on long inputs run one block of rows per worker: bit-identical results."""
    kernels = CPUKernels(workers)
    rng = np.random.default_rng(0)
    for T in (1, MIN_ROWS_PER_CORE, 5 * MIN_ROWS_PER_CORE + 3):
        x = rng.standard_normal((T, 48), dtype=np.float32)
        w, b = rng.standard_normal((2, 48), dtype=np.float32)
        for ours, plain in zip(kernels.layer_norm(x, w, b, 1e-5), ops.layer_norm(x, w, b, 1e-5)):
            assert np.array_equal(ours, plain)                       # normalized [T, d], scale [T, 1]
        assert np.array_equal(kernels.gelu(x), ops.gelu_new(x))


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_linear_layers_split_by_columns_or_rows_give_the_product(workers, monkeypatch):
    """CPUKernels.linear on GPT-2 small's shapes, on both sides of the row-split length and for an
    output 65 times wider than its input (the LM head, kept in columns), against float64."""
    kernels = CPUKernels(workers)
    rng = np.random.default_rng(workers)
    row_split = workers * engine.MIN_ROWS_PER_CORE_FOR_ROW_SPLIT              # for the 768-wide inputs
    splits = []
    real_over_groups = engine.over_groups
    monkeypatch.setattr(engine, "over_groups", lambda fn, n, w=engine.N_CORES: (splits.append((n, w)),
                                                                              real_over_groups(fn, n, w)))
    for n_in, n_out in ((768, 2304), (3072, 768), (64, 64 * 65)):
        w = rng.standard_normal((n_in, n_out), dtype=np.float32) / n_in ** 0.5
        b = rng.standard_normal(n_out, dtype=np.float32)
        for T in (1, 16, row_split - 1, row_split, row_split + 1):
            x = rng.standard_normal((T, n_in), dtype=np.float32)
            splits.clear()
            y = kernels.linear(x, w, b)
            ref = x.astype(np.float64) @ w + b
            assert y.shape == (T, n_out) and y.dtype == np.float32
            assert np.abs(y - ref).max() <= 1e-6 * np.abs(ref).max(), (n_in, n_out, T)
            used = min(workers, T * w.size // engine.MIN_PRODUCT_PER_CORE)   # a thread per 4M multiply-adds
            if used <= 1:
                assert splits == [], (n_in, n_out, T, splits)
                continue
            by_rows = (T >= used * engine.MIN_ROWS_PER_CORE_FOR_ROW_SPLIT
                       and n_out <= engine.MAX_WIDENING_FOR_ROW_SPLIT * n_in)
            assert splits == [(T if by_rows else n_out, used)], (n_in, n_out, T, splits)


def test_cli_engine_option(small_text_model_dir):
    """--engine reference runs model.py itself; --json says which engine computed."""
    import json
    import subprocess
    import sys
    out = {}
    for name in ("reference", "fast"):
        r = subprocess.run([sys.executable, "-m", "gpt2np", "--model", str(small_text_model_dir), "--json",
                            "--engine", name, "The quick brown fox"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out[name] = json.loads(r.stdout)
        assert out[name]["engine"] == name
    assert out["reference"]["tokens"] == out["fast"]["tokens"]
    for a, b in zip(out["reference"]["next_token"], out["fast"]["next_token"]):
        assert abs(a["p"] - b["p"]) <= 1e-6 * max(abs(b["p"]), 1e-3)
    r = subprocess.run([sys.executable, "-m", "gpt2np", "--model", str(small_text_model_dir),
                        "--engine", "turbo", "x"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice: 'turbo'" in r.stderr


def test_viewer_runs_the_chosen_engine(small_text_model_dir):
    from viewer import create_app
    client = create_app({"MODEL": str(small_text_model_dir), "ENGINE": "reference"}).test_client()
    assert client.get("/api/model").get_json()["engine"] == "reference"
    assert 'data-testid="engine"' in (page := client.get("/").get_data(as_text=True)) and "engine: reference" in page
    run = client.post("/api/run", json={"text": "The quick brown fox"}).get_json()
    assert run["engine"] == "reference"


def test_passes_in_two_threads_each_get_their_own_arrays(models):
    """The viewer or a caller may run passes from several threads: each gets right numbers.
    (With one workspace shared by the threads: tests/core/test_workspace.py.)"""
    from concurrent.futures import ThreadPoolExecutor
    m = models
    rng = np.random.default_rng(6)
    inputs = [rng.integers(0, m.config.vocab_size, T) for T in (40, 40, 40, 129, 129, 129)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda ids: engine.forward(m.params, m.config, ids), inputs * 2))
    for ids, acts in zip(inputs * 2, results):
        ref = model.forward(m.params, m.config, ids)
        for name in ("blocks.0.attn.hook_pattern", "logits"):
            assert tensor_relative_delta(acts[name], ref[name]) <= BOUND, name
