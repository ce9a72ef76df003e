"""gpt2np.analysis.interventions.logit_attribution: the parts sum to the model's logit, and each part equals the
one computed from transformers' own tensors.

The reference decomposition is built here, in float64, from `tests/support/reference.py`'s `hf_trace` (every
tensor taken from transformers' modules) and the weights as transformers loaded them: a head's write
is its slice of the c_proj *input* (hook_z) with the other heads zeroed, times the whole c_proj
weight — no reshaping into heads — and the final LayerNorm's scale is 1/√(var + ε) of transformers'
last block output at that position. Models: a small one with GPT-2's tokenizer (fast), the demo
model, and GPT-2 small's layout with random weights (548 MB, `slow`).
"""

import json

import numpy as np
import pytest
from reference import hf_model, hf_trace

import gpt2np
from gpt2np.analysis import interventions
from gpt2np.errors import GPT2npError

SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
SUM_BOUND = 1e-4            # |Σ parts − logit| / the largest |logit| involved
PART_BOUND = 1e-4           # |part − transformers' part| / the same scale


def reference_parts(hf, ids, position, token, other=None):
    """{part name: its share of logit(token) [− logit(other)]} and transformers' logit, float64."""
    t, cfg = hf.transformer, hf.config
    ref = hf_trace(hf, ids)
    f64 = lambda x: x.detach().numpy().astype(np.float64)  # noqa: E731
    L, H, d = cfg.n_layer, cfg.n_head, cfg.n_embd
    dh = d // H
    vectors = {"embed": ref["hook_embed"][position], "pos_embed": ref["hook_pos_embed"][position]}
    for layer in range(L):
        c_proj = f64(t.h[layer].attn.c_proj.weight)                       # [d, d], Conv1D [in, out]
        z = ref[f"blocks.{layer}.attn.hook_z"][position].astype(np.float64).reshape(d)   # c_proj's input
        for h in range(H):
            alone = np.zeros(d)
            alone[h * dh:(h + 1) * dh] = z[h * dh:(h + 1) * dh]
            vectors[f"{layer}.{h}"] = alone @ c_proj
        vectors[f"mlp {layer}"] = ref[f"blocks.{layer}.hook_mlp_out"][position]
    vectors["attn biases"] = sum(f64(t.h[layer].attn.c_proj.bias) for layer in range(L))
    final = ref[f"blocks.{L - 1}.hook_resid_post"][position].astype(np.float64)
    scale = 1 / np.sqrt(final.var() + cfg.layer_norm_epsilon)
    wte, gamma, beta = f64(t.wte.weight), f64(t.ln_f.weight), f64(t.ln_f.bias)
    direction = wte[token] - (wte[other] if other is not None else 0.0)
    parts = {name: scale * ((v - v.mean()) * gamma) @ direction
             for name, v in ((n, np.asarray(v, dtype=np.float64)) for n, v in vectors.items())}
    parts["ln_final bias"] = beta @ direction
    logits = ref["logits"][position].astype(np.float64)
    logit = logits[token] - (logits[other] if other is not None else 0.0)
    scale_of_logits = max(abs(logits[token]), abs(logits[other]) if other is not None else 0.0)
    return parts, logit, scale_of_logits


def check_against_transformers(model, hf, ids, position, token, other, record, label):
    ours = interventions.logit_attribution(model, model.run(ids), position, token, other)
    parts, logit, scale = reference_parts(hf, ids, position, ours["target"]["id"],
                                          None if other is None else ours["versus"]["id"])
    names = [p["name"] for p in ours["parts"]]
    assert names == list(parts), (names, list(parts))
    part_delta = max(abs(p["value"] - parts[p["name"]]) for p in ours["parts"]) / scale
    ref_sum_delta = abs(sum(parts.values()) - logit) / scale
    our_sum_delta = abs(ours["sum"] - logit) / scale
    record("attribution parts vs transformers", part_delta, PART_BOUND, label)
    record("attribution Σ parts (transformers) vs its logit", ref_sum_delta, SUM_BOUND, label)
    record("attribution Σ parts (gpt2np) vs transformers' logit", our_sum_delta, SUM_BOUND, label)
    assert part_delta <= PART_BOUND and ref_sum_delta <= SUM_BOUND and our_sum_delta <= SUM_BOUND, (
        part_delta, ref_sum_delta, our_sum_delta)
    return ours


@pytest.fixture(scope="module")
def small_text(small_text_model_dir):
    return gpt2np.load(small_text_model_dir), hf_model(small_text_model_dir)


def test_attribution_matches_transformers_small(small_text, parity_record):
    model, hf = small_text
    ids = model.encode(SENTENCE)
    for position in (0, 5, len(ids) - 1):
        check_against_transformers(model, hf, ids, position, None, None, parity_record, f"small pos {position}")
    ours = check_against_transformers(model, hf, ids, len(ids) - 1, " trophy", " suitcase", parity_record, "small pair")
    assert ours["target"]["token"] == " trophy" and ours["versus"]["token"] == " suitcase"


@pytest.mark.slow
def test_attribution_matches_transformers_gpt2_layout(gpt2_layout_dir, parity_record):
    model, hf = gpt2np.load(gpt2_layout_dir), hf_model(gpt2_layout_dir)
    ids = model.encode(SENTENCE)
    last = len(ids) - 1
    ours = check_against_transformers(model, hf, ids, last, None, None, parity_record, "gpt2-layout top-1")
    assert len(ours["parts"]) == 2 + 12 * 12 + 12 + 2
    check_against_transformers(model, hf, ids, last, " trophy", " suitcase", parity_record, "gpt2-layout pair")
    check_against_transformers(model, hf, ids, 3, " big", " small", parity_record, "gpt2-layout pos 3")


def test_parts_sum_to_the_models_logits_on_the_demo(parity_record):
    """The demo model (learned weights): every position, its top-1 and a pair, against trace.logits."""
    model = gpt2np.load("demo")
    trace = model.run(SENTENCE)
    worst = 0.0
    for position in range(trace.n_tokens):
        row = trace.logits[position].astype(np.float64)
        first, second = np.argsort(-row, kind="stable")[:2]
        for token, other in ((None, None), (int(second), int(first))):
            a = interventions.logit_attribution(model, trace, position, token, other)
            assert a["target"]["id"] == (first if token is None else second)
            logit = row[a["target"]["id"]] - (row[a["versus"]["id"]] if other is not None else 0.0)
            scale = max(abs(row[a["target"]["id"]]), abs(row[first]))
            worst = max(worst, abs(sum(p["value"] for p in a["parts"]) - logit) / scale)
            assert abs(a["sum"] - sum(p["value"] for p in a["parts"])) <= 1e-9 * scale
            assert a["residual_relative"] <= 1e-5 and a["relative"] <= SUM_BOUND
    parity_record("attribution Σ parts vs trace.logits (demo)", worst, SUM_BOUND, "every position")
    assert worst <= SUM_BOUND


def test_each_part_pushes_the_tokens_its_own_effect_ranks_first(small_text):
    """"up"/"down" of a head: the tokens whose logits its write alone, through the frozen final
    LayerNorm, raises and lowers most — checked by ranking the full effect row in float64 here."""
    model, _ = small_text
    trace = model.run(SENTENCE)
    position = 4
    a = interventions.logit_attribution(model, trace, position, k=3)
    final = trace[f"blocks.{model.config.n_layer - 1}.hook_resid_post"][position].astype(np.float64)
    scale = 1 / np.sqrt(final.var() + model.config.layer_norm_epsilon)
    gamma, wte = model.params["ln_f.weight"].astype(np.float64), model.params["wte.weight"].astype(np.float64)
    d, H = model.config.n_embd, model.config.n_head
    dh = d // H
    z = trace["blocks.1.attn.hook_z"][position].astype(np.float64).reshape(d)
    alone = np.zeros(d)
    alone[2 * dh:3 * dh] = z[2 * dh:3 * dh]
    write = alone @ model.params["h.1.attn.c_proj.weight"].astype(np.float64)
    effect = (scale * (write - write.mean()) * gamma) @ wte.T                   # [V]
    head = next(p for p in a["parts"] if p["name"] == "1.2")
    assert [t["id"] for t in head["up"]] == list(np.argsort(-effect, kind="stable")[:3])
    assert [t["id"] for t in head["down"]] == list(np.argsort(effect, kind="stable")[:3])
    assert np.allclose([t["effect"] for t in head["up"]], np.sort(effect)[::-1][:3], rtol=1e-4, atol=1e-6)


def test_attribution_errors_say_what_to_do(small_text):
    model, _ = small_text
    trace = model.run(SENTENCE)
    with pytest.raises(GPT2npError, match="not one"):
        interventions.logit_attribution(model, trace, -1, " suitcases are")
    with pytest.raises(GPT2npError, match="two different tokens"):
        interventions.logit_attribution(model, trace, -1, " big", " big")
    with pytest.raises(GPT2npError, match="out of range"):
        interventions.logit_attribution(model, trace, trace.n_tokens, " big")


def test_attribution_from_the_command_line(small_text_model_dir, small_text, capsys):
    from gpt2np import cli
    model, _ = small_text
    m = ["findings", "--model", str(small_text_model_dir)]
    assert cli.main(m + ["--attribute", SENTENCE, "--token", " big", "--versus", " small", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(
        interventions.logit_attribution(model, model.run(SENTENCE), -1, " big", " small")))
    assert cli.main(m + ["--attribute", SENTENCE, "--token", " big", "--versus", " small", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert 'logit(" big") − logit(" small")' in out and f"the model's logit {printed['logit']:+.6f}" in out
    largest = max(printed["parts"], key=lambda p: abs(p["value"]))
    assert f"  {largest['name']:<14} {largest['value']:+9.4f}   up: " in out
    for argv, message in [(["--versus", " small"], "--versus goes with --attribute"),
                          (["--attribute", SENTENCE, "--token", " big", "--versus", " big"], "two different tokens"),
                          (["--attribute", SENTENCE, "--versus", " suitcases are"], "not one")]:
        assert cli.main(m + argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("gpt2np: error: ") and message in err and err.count("\n") == 1
