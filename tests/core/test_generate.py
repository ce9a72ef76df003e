"""Generation: the KV-cached step, sampling, the loop, and `python -m gpt2np generate`.

Held equal: every cached step against a full forward pass of the same prefix (every named tensor,
≤ 1e-5 of its largest magnitude); greedy decoding against transformers' `generate(do_sample=False)`,
token for token, on a random GPT-2-layout model and on the demo model; the sampling distribution
against transformers' logits warpers; top-p, top-k and the draws against hand-made distributions
whose answer is known. Seeds reproduce across processes.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from modelfiles import random_params, small_config, write_model_dir
from reference import hf_model, tensor_relative_delta

import gpt2np
from gpt2np import GPT2Config, GPT2npError, model
from gpt2np.files.hub import DEMO_DIR
from gpt2np.generate import check_sampling, choose, distribution, largest, rank_of

BOUND = 1e-5       # max|Δ| / max|ref| per tensor, cached step vs full forward pass
PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory, gpt2_files):
    """2 layers × 4 heads × 64 dims, context 128, GPT-2's vocabulary and tokenizer, weights scaled
    to GPT-2's activation magnitudes: its greedy continuations vary (unscaled random weights repeat
    one token), and the top-2 logit gap stays far above float32 rounding."""
    cfg = small_config(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=50257)
    path, _ = write_model_dir(tmp_path_factory.mktemp("generate") / "gen-2x4x64", cfg, seed=1,
                              gpt2_scale=True)
    return path


@pytest.fixture(scope="module")
def gen_model(gen_dir):
    return gpt2np.load(gen_dir)


@pytest.fixture(scope="module", params=["random 2x4x64", "demo"])
def any_model(request, gen_dir):
    """(directory, model): the random model above and the bundled demo model."""
    directory = gen_dir if request.param.startswith("random") else DEMO_DIR
    return directory, gpt2np.load(directory)


def softmax64(x):
    e = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    return e / e.sum()


# -- the KV cache (model.py) ---------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_cached_steps_equal_a_full_forward_pass(any_model, engine, parity_record):
    """Prefill 8 tokens, then 32 cached steps (model.py's plain kernels, or the engine's). Each
    step's every tensor equals the last row of a plain full forward pass over the whole prefix;
    the grown cache equals its hook_k / hook_v."""
    _, m = any_model
    ids = np.random.default_rng(0).integers(0, m.config.vocab_size, 40)
    cache = model.kv_cache(model.forward(m.params, m.config, ids[:8]), m.config)
    for t in range(8, len(ids)):
        step, cache = m.forward_step(cache, ids[t], engine=engine)
        full = model.forward(m.params, m.config, ids[:t + 1])
        assert list(step) == list(full)
        for name, ref in full.items():
            if name.endswith(("attn.hook_k", "attn.hook_v")):     # the cache: every position
                ours = step[name]
            elif name.endswith(("hook_attn_scores", "hook_pattern")):
                ours, ref = step[name][:, 0], ref[:, -1]          # the new query's row, every key
            else:
                ours, ref = step[name][0], ref[-1]                # the new position's row
            assert ours.shape == ref.shape, f"{name} at position {t}: {ours.shape} vs {ref.shape}"
            delta = tensor_relative_delta(ours, ref)
            parity_record(name, delta, BOUND, f"{engine} position {t}")
            assert delta <= BOUND, f"{name} at position {t}: {delta:.2e}"
        for i in range(m.config.n_layer):
            assert cache[i][0] is step[f"blocks.{i}.attn.hook_k"] and len(cache[i][1]) == t + 1


def test_generation_steps_are_the_full_forward_pass(any_model, parity_record):
    """The loop (prompt through the model's engine, then cached steps): every step's recorded
    logits and p are those of model.run(ids) at that position, computed in float64 here."""
    _, m = any_model
    prompt = np.random.default_rng(1).integers(0, m.config.vocab_size, 6).tolist()
    g = m.generate(prompt, max_new_tokens=30, temperature=0.9, top_k=50, seed=5, stop_at_eos=False)
    assert len(g.steps) == len(g.new_ids) == 30 and g.ids[:6].tolist() == prompt
    full = m.run(g.ids, engine="reference")
    for step in g.steps:
        logits = full.logits[step.position - 1].astype(np.float64)     # predicts this position
        top = np.sort(logits)[::-1][:10]
        ours = np.array([c.logit for c in step.candidates])
        delta = float(np.abs(ours - top).max() / np.abs(logits).max())
        parity_record("step logits (top 10)", delta, BOUND, f"position {step.position}")
        assert delta <= BOUND
        assert all(abs(logits[c.id] - c.logit) <= BOUND * np.abs(logits).max() for c in step.candidates)
        p = softmax64(logits)
        assert all(abs(p[c.id] - c.p) <= 1e-5 * p.max() for c in step.candidates)
        assert step.chosen.id == g.ids[step.position]
    trace = g.trace()
    assert trace.ids.tolist() == g.ids.tolist() and g.tokens == trace.tokens
    again = m.run(g.ids)
    assert all(np.array_equal(trace[name], again[name]) for name in again)


@pytest.mark.parametrize("which", ["random 2x4x64", "demo"])
def test_greedy_equals_transformers(which, gen_dir):
    """40 greedy tokens, token for token, against transformers' generate (its own KV cache); the
    recorded logits against its scores at every step. The prompt keeps the top-2 logit gap of
    every step far above float32 rounding (1.8e-2 and 2.3e-2 when written, against a rounding
    of about 1e-6): a near-tie would make either choice right."""
    import torch
    directory = gen_dir if which.startswith("random") else DEMO_DIR
    m, hf = gpt2np.load(directory), hf_model(directory)
    prompt = np.random.default_rng(1).integers(0, m.config.vocab_size, 8).tolist()
    g = m.generate(prompt, max_new_tokens=40, greedy=True, stop_at_eos=False)
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                          eos_token_id=None, pad_token_id=0, output_scores=True,
                          return_dict_in_generate=True)
    theirs = out.sequences[0].tolist()
    scores = [s[0].double().numpy() for s in out.scores]
    gaps = [np.diff(np.sort(s)[-2:])[0] for s in scores]
    assert g.ids.tolist() == theirs, f"smallest top-2 logit gap in transformers' scores: {min(gaps):.2e}"
    assert len(theirs) == 48 and len(set(g.new_ids.tolist())) >= 5      # not one token repeated
    for step, s in zip(g.steps, scores):
        assert all(abs(c.logit - s[c.id]) <= BOUND * np.abs(s).max() for c in step.candidates)


# -- sampling (generate.py) ----------------------------------------------------------------------

def test_top_p_is_computed_over_the_whole_vocabulary():
    """100 tokens: id 37 with p = 0.3, the 99 others with about 0.7/99 each (apart by a millionth,
    the higher id the likelier). top_p = 0.6 needs id 37 and 43 more (0.3 + 42·0.7/99 = 0.597 < 0.6
    ≤ 0.604): 44 kept. Over the 50 most likely only, renormalised (as after top_k=50), id 37 has
    0.464 and the others 0.0109 each: 14 kept."""
    others = [i for i in range(100) if i != 37]
    p = np.empty(100)
    p[37] = 0.3
    p[others] = 0.7 / 99 * (1 + 1e-6 * (np.arange(99) - 49))          # sums to 0.7
    d = distribution(np.log(p), top_p=0.6)
    kept = np.flatnonzero(d["top_p"])
    assert sorted(kept) == sorted([37, *others[-43:]])
    np.testing.assert_allclose(d["p_draw"][kept], p[kept] / p[kept].sum(), rtol=1e-12)
    assert d["p_draw"].sum() == pytest.approx(1.0, abs=1e-12) and np.all(d["p_draw"][d["top_p"] == 0] == 0)
    assert sorted(np.flatnonzero(distribution(np.log(p), top_k=50, top_p=0.6)["top_p"])) == sorted([37, *others[-13:]])
    assert np.flatnonzero(distribution(np.log(p), top_p=0.3)["top_p"]).tolist() == [37]    # 0.3 reaches 0.3
    # 0.3 + 84·0.7/99 = 0.894 < 0.9 ≤ 0.901: id 37 and 85 more, far beyond the 50 most likely
    assert sorted(np.flatnonzero(distribution(np.log(p), top_p=0.9)["top_p"])) == sorted([37, *others[-85:]])
    assert distribution(np.log(p), top_p=1.0)["top_p"].all()


def test_ties():
    """Equal logits: top-k keeps every token tied with the k-th (as transformers does); top-p and
    the table rank them by the lower id first; greedy takes the lowest id."""
    logits = np.array([0.0, 2.0, 2.0, 2.0, 2.0])          # p = 0.033, then 0.242 four times
    assert distribution(logits, top_k=2)["top_k"].tolist() == [False, True, True, True, True]
    assert distribution(logits, top_p=0.4)["top_p"].tolist() == [False, True, True, False, False]
    step = choose(logits, None, 0, lambda ids: [str(i) for i in ids], greedy=True)
    assert step.chosen.id == 1 and [c.id for c in step.candidates] == [1, 2, 3, 4, 0]
    assert [c.rank for c in step.candidates] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("temperature, top_k, top_p", [
    (1.0, None, None), (0.7, None, 0.9), (1.5, 20, None), (0.8, 40, 0.75), (1.0, 5, 0.3), (0.5, None, 0.05),
    (4.0, None, 0.97), (10.0, 250, 0.99)])
def test_distribution_equals_transformers_warpers(temperature, top_k, top_p):
    """p_draw = softmax of what transformers' temperature, top-k and top-p warpers leave."""
    import torch
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    logits = np.random.default_rng(3).standard_normal(300) * 3
    scores = torch.tensor(logits[None])
    scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None:
        scores = TopPLogitsWarper(top_p)(None, scores)
    theirs = torch.softmax(scores, -1)[0].numpy()
    d = distribution(logits, temperature, top_k, top_p)
    assert np.array_equal(d["top_p"], theirs > 0), (d["top_p"].sum(), (theirs > 0).sum())
    np.testing.assert_allclose(d["p_draw"], theirs, atol=1e-12)
    np.testing.assert_allclose(d["p_temperature"], softmax64(logits / temperature), rtol=1e-12)


def test_draws_follow_the_distribution():
    """p = (0.5, 0.3, 0.15, 0.05), temperature 2, top_k 3: drawn with √p of the first three,
    renormalised. 20,000 draws (seed 0) land within 4 standard deviations of it."""
    p = np.array([0.5, 0.3, 0.15, 0.05])
    expected = np.sqrt(p[:3]) / np.sqrt(p[:3]).sum()
    rng, n = np.random.default_rng(0), 20_000
    names = lambda ids: [str(i) for i in ids]    # noqa: E731
    counts = np.bincount([choose(np.log(p), rng, 0, names, 2.0, 3).chosen.id for _ in range(n)], minlength=4)
    assert counts[3] == 0
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(counts[:3] / n - expected) <= 4 * sigma), counts / n
    step = choose(np.log(p), np.random.default_rng(0), 7, names, 2.0, 3)
    assert step.position == 7 and step.n_kept == 3
    assert step.chosen.p_draw == pytest.approx(expected[step.chosen.id], rel=1e-12)
    assert [c.rank for c in step.candidates] == [1, 2, 3, 4]
    assert [c.running_sum for c in step.candidates] == pytest.approx([*np.cumsum(expected), 1.0], rel=1e-12)


def test_top_k_1_is_greedy(gen_model):
    greedy = gen_model.generate(PROMPT, max_new_tokens=40, greedy=True, stop_at_eos=False)
    top1 = gen_model.generate(PROMPT, max_new_tokens=40, top_k=1, temperature=5.0, seed=3, stop_at_eos=False)
    assert top1.ids.tolist() == greedy.ids.tolist()
    assert all(s.chosen.rank == 1 and s.n_kept == 1 for s in greedy.steps + top1.steps)


def test_a_seed_gives_the_same_tokens_in_another_process(gen_dir, gen_model):
    """The same seed twice in two fresh processes (the command line) and once here: the same ids.
    Another seed: other ids."""
    def cli(seed):
        r = subprocess.run([sys.executable, "-m", "gpt2np", "generate", PROMPT, "--model", str(gen_dir),
                            "--tokens", "30", "--seed", str(seed), "--temperature", "1.2", "--json"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["ids"]
    first, second = cli(11), cli(11)
    here = gen_model.generate(PROMPT, max_new_tokens=30, temperature=1.2, seed=11)
    assert first == second == here.ids.tolist() and len(first) == 4 + 30
    assert cli(12) != first


def test_without_a_seed_the_seed_used_is_reported(gen_model):
    g = gen_model.generate(PROMPT, max_new_tokens=8)
    again = gen_model.generate(PROMPT, max_new_tokens=8, seed=g.settings["seed"])
    assert again.ids.tolist() == g.ids.tolist()


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0}, "greedy=True"), ({"temperature": -0.5}, "greedy"),
    ({"temperature": float("nan")}, "above 0"), ({"top_p": 0}, r"\(0, 1\]"), ({"top_p": 1.5}, r"\(0, 1\]"),
    ({"top_k": 0}, "at least 1"), ({"top_k": 2.5}, "whole number"), ({"max_new_tokens": 0}, "at least 1"),
    ({"seed": -1}, "seed must be a whole number of at least 0"), ({"seed": 1.5}, "seed must")])
def test_bad_settings_are_refused(gen_model, kwargs, message):
    with pytest.raises(GPT2npError, match=message):
        gen_model.generate(PROMPT, **kwargs)


# Each setting's edges, by hand: (accepted, refused). The command line and the viewer read the same
# ranges (gpt2np.generate.SAMPLING_RANGES); their own tests send the refused ones.
EDGES = {"temperature": ([1e-9, 1, 100.0, np.float32(0.5)], [0, -1e-9, float("inf"), float("nan"), 10**400, True, "1"]),
         "top_k": ([1, np.int64(50257), 10**30], [0, -1, 2.5, True]),
         "top_p": ([1e-9, 0.5, 1, 1.0], [0, 1.0000001, -0.5, float("nan")]),
         "seed": ([0, 2**64], [-1, 1.0, False])}


@pytest.mark.parametrize("name", EDGES)
def test_sampling_ranges_at_their_edges(name):
    accepted, refused = EDGES[name]
    for value in accepted:
        check_sampling({name: value})
    for value in refused:
        with pytest.raises(GPT2npError, match=f"^{name} must be "):
            check_sampling({name: value})


def test_largest_ranks_ties_to_the_lower_id():
    values = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 0.5])
    assert largest(values, 2).tolist() == [1, 2]
    assert largest(values, 4).tolist() == [1, 2, 4, 3]
    assert largest(values, 99).tolist() == [1, 2, 4, 3, 0, 5]
    assert largest(-values, 2).tolist() == [5, 0]
    assert [rank_of(values, i) for i in range(6)] == [5, 1, 2, 4, 3, 6]
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 5, 300)                          # many ties: against a full stable sort
    assert largest(ints, 40).tolist() == sorted(range(300), key=lambda i: (-ints[i], i))[:40]


def test_greedy_ignores_the_sampling_settings(gen_model):
    g = gen_model.generate(PROMPT, max_new_tokens=5, greedy=True, temperature=0)
    assert len(g.new_ids) == 5 and "temperature" not in g.settings


def test_the_context_length_stops_generation_with_a_note(gen_model):
    n_ctx = gen_model.config.n_positions
    ids = np.random.default_rng(2).integers(0, 50257, n_ctx - 4).tolist()
    g = gen_model.generate(ids, max_new_tokens=10, seed=0, stop_at_eos=False)
    assert len(g.new_ids) == 4 and len(g.ids) == n_ctx and g.stop == "context"
    assert f"context of {gen_model.info.name} ({n_ctx} tokens)" in g.note and "window" in g.note
    assert g.trace().n_tokens == n_ctx
    assert len(gen_model.generate(ids + [5, 6, 7], max_new_tokens=10, stop_at_eos=False).new_ids) == 1
    with pytest.raises(GPT2npError, match="fills the context .* no position is left"):
        gen_model.generate(ids + [5, 6, 7, 8], max_new_tokens=1)


def test_stops_at_endoftext():
    """A model made to predict <|endoftext|> (the last id, no tokenizer) everywhere: ln_f's bias
    points along its embedding."""
    cfg = small_config()
    params = random_params(cfg, seed=4)
    eos_row = params["wte.weight"][-1]
    params["ln_f.bias"] = params["ln_f.bias"] + 100 * eos_row / np.linalg.norm(eos_row)
    m = gpt2np.Model(GPT2Config(**{k: cfg[k] for k in ("n_layer", "n_head", "n_embd", "n_positions",
                                                       "vocab_size")}), params)
    g = m.generate([1, 2, 3], max_new_tokens=5, seed=0)
    assert g.new_ids.tolist() == [99] and g.stop == "eos" and "<|endoftext|>" in g.note
    assert g.tokens[-1] == "<99>" and g.text == "<1><2><3><99>"
    assert m.generate([1, 2, 3], max_new_tokens=5, greedy=True, stop_at_eos=False).new_ids.tolist() == [99] * 5
    with pytest.raises(GPT2npError, match="no tokenizer"):
        m.generate("text")


def test_on_step_sees_every_step_as_it_is_made(gen_model):
    seen = []
    g = gen_model.generate(PROMPT, max_new_tokens=6, seed=1, on_step=lambda s: seen.append((s, len(seen))))
    assert [s for s, _ in seen] == g.steps and [s.position for s in g.steps] == list(range(4, 10))
    d = g.to_dict()
    assert json.loads(json.dumps(d))["steps"][0]["chosen"]["id"] == g.new_ids[0]


# -- the command line ----------------------------------------------------------------------------

def run(*args):
    return subprocess.run([sys.executable, "-m", "gpt2np", "generate", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def test_cli_prints_the_continuation(gen_dir, gen_model):
    r = run(PROMPT, "--model", str(gen_dir), "--tokens", "15", "--seed", "4", "--top-p", "0.9")
    assert r.returncode == 0, r.stderr
    g = gen_model.generate(PROMPT, max_new_tokens=15, seed=4, top_p=0.9)
    header, sampling, text = r.stdout.rstrip("\n").split("\n", 2)
    assert header == f"model: {gen_model.info.describe()} — engine: fast"
    assert sampling == "sampling: temperature 1, top-k off, top-p 0.9, seed 4"
    assert text == g.text
    r = run(PROMPT, "--model", str(gen_dir), "--tokens", "15", "--greedy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[2] == gen_model.generate(PROMPT, 15, greedy=True).text


def test_cli_show_steps_and_json(gen_dir, gen_model):
    g = gen_model.generate(PROMPT, max_new_tokens=5, seed=2, top_k=40, temperature=0.8)
    r = run(PROMPT, "--model", str(gen_dir), "--tokens", "5", "--seed", "2", "--top-k", "40",
            "--temperature", "0.8", "--show-steps")
    assert r.returncode == 0, r.stderr
    chosen = [line for line in r.stdout.splitlines() if line.startswith("  → ")]
    assert [int(line.split("(id ")[1].split(",")[0]) for line in chosen] == g.new_ids.tolist()
    assert "running Σ" in r.stdout and "from 40 kept tokens" in r.stdout
    assert r.stdout.rstrip("\n").endswith(g.text)
    r = run(PROMPT, "--model", str(gen_dir), "--tokens", "5", "--seed", "2", "--top-k", "40",
            "--temperature", "0.8", "--json")
    data = json.loads(r.stdout)
    assert data["ids"] == g.ids.tolist() and data["new_text"] == g.new_text and data["stop"] == "max_new_tokens"
    assert data["settings"]["seed"] == 2 and data["model"]["name"] == gen_model.info.name
    assert [s["chosen"]["id"] for s in data["steps"]] == g.new_ids.tolist()
    assert len(data["steps"][0]["candidates"]) == 10


@pytest.mark.parametrize("args, message", [
    (["--tokens", "0"], "--tokens must be at least 1"),
    (["--temperature", "0"], ("--temperature must be a number above 0, got 0.0. For the most likely "
                              "token at every step use --greedy.")),
    (["--temperature", "-1"], "--greedy"), (["--temperature", "inf"], "above 0"),
    (["--seed", "-1"], "--seed must be a whole number of at least 0, got -1."),
    (["--top-p", "0"], ("--top-p must be a number in (0, 1], got 0.0: the share of probability mass the "
                        "kept tokens must reach.")),
    (["--top-p", "1.01"], "--top-p must be a number in (0, 1], got 1.01"),
    (["--top-k", "0"], "--top-k must be a whole number of at least 1, got 0."),
    (["--seed", "1", "--greedy"], "--seed does not apply"),
    (["--bos", "word" + " word" * 200], "Too many tokens"),
    (["--bos", "word" + " word" * 126], "fills the context of gen-2x4x64 (128 tokens)"),
])
def test_cli_bad_values_exit_2_with_one_line(gen_dir, args, message):
    text = [] if any(a.startswith("word") for a in args) else [PROMPT]
    r = run(*text, "--model", str(gen_dir), *args)
    assert r.returncode == 2
    assert r.stderr.startswith("gpt2np: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr and r.stdout == ""


@pytest.mark.slow
def test_generation_benchmark_runs_and_reports(tmp_path, capsys):
    """benchmarks/bench_generate.py end to end on GPT-2 small's shapes; no timing is judged."""
    from benchmarks import bench_generate
    out = tmp_path / "bench.json"
    assert bench_generate.main(["--context", "16", "--new", "3", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["step_over_forward"] == pytest.approx(result["cached_step_s"] / result["full_forward_s"])
    for which in ("gpt2np", "transformers"):
        assert result[which]["tokens_per_s"] == pytest.approx(3 / result[which]["seconds"])
    assert "one cached step" in capsys.readouterr().out
