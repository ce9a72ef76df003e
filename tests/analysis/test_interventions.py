"""gpt2np.analysis.interventions: head ablation against transformers, logit lens, minimal pairs.

transformers 5.x no longer has `head_mask` on GPT2LMHeadModel (checked below), so the reference
ablation is a torch forward pre-hook on each block's `attn.c_proj` that overwrites the head's
slice of its input (the concatenated heads' z) — the same place gpt2np's `z_ablation` acts.
"""

import inspect

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir

import gpt2np
from gpt2np.analysis import interventions as I
from gpt2np.errors import GPT2npError

IDS = [5, 17, 42, 8, 99, 3, 17, 42, 64, 21, 7, 30]


@pytest.fixture(scope="module")
def small(small_model_dir):
    return gpt2np.load(small_model_dir)


@pytest.fixture(scope="module")
def hf(small_model_dir):
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(small_model_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def texty(tmp_path_factory):
    """A small model with the real GPT-2 tokenizer, so it takes text."""
    cfg = small_config(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=50257)
    path, _ = write_model_dir(tmp_path_factory.mktemp("texty") / "texty", cfg, seed=3)
    return gpt2np.load(path)


def softmax64(logits):
    """Probabilities of one logit row, in float64 (the tests' own softmax)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def hf_logits(hf, ids, ablation=None):
    """transformers logits [T, V] with {(layer, head): value} written into c_proj's input."""
    import torch
    dh = hf.config.n_embd // hf.config.n_head
    handles = []
    for layer in {L for L, _ in ablation or {}}:
        heads = {h: v for (L, h), v in ablation.items() if L == layer}

        def pre_hook(module, args, heads=heads):
            z = args[0].clone()                                    # [1, T, H·dh]
            for h, value in heads.items():
                z[..., h * dh:(h + 1) * dh] = torch.as_tensor(np.asarray(value, dtype=np.float32))
            return (z,)
        handles.append(hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(pre_hook))
    try:
        with torch.no_grad():
            return hf(torch.tensor([ids])).logits[0].numpy()
    finally:
        for h in handles:
            h.remove()


# -- ablation ------------------------------------------------------------------------------------
def test_why_the_reference_ablation_is_a_hook(hf):
    """GPT2LMHeadModel.forward lost `head_mask` in transformers 5.x, hence the hook. Where it is
    still there (4.x), the hook must give what head_mask gives."""
    import torch
    import transformers
    if "head_mask" in inspect.signature(hf.forward).parameters:   # pragma: no cover - 4.x
        mask = torch.ones(hf.config.n_layer, hf.config.n_head)
        mask[1, 2] = 0.0
        with torch.no_grad():
            masked = hf(torch.tensor([IDS]), head_mask=mask).logits[0].numpy()
        assert np.abs(hf_logits(hf, IDS, {(1, 2): 0.0}) - masked).max() <= 1e-5
    else:
        assert int(transformers.__version__.split(".")[0]) >= 5


@pytest.mark.parametrize("heads", [{(0, 1): 0.0}, {(1, 2): 0.0}, {(0, 0): 0.0, (1, 0): 0.0, (1, 2): 0.0}])
def test_zero_ablation_matches_transformers(small, hf, heads):
    ours = small.run(IDS, z_ablation=heads).logits
    ref = hf_logits(hf, IDS, heads)
    assert np.abs(ours - ref).max() <= 1e-4
    assert np.abs(small.run(IDS).logits - ref).max() > 1e-3     # the ablation did something


def test_mean_ablation_matches_transformers(small, hf):
    base = small.run(IDS)
    heads = {(0, 2): I.mean_z(base, 0, 2), (1, 1): I.mean_z(base, 1, 1)}
    assert heads[(0, 2)].shape == (small.config.d_head,)
    for (layer, h), z in heads.items():               # the mean over every position, in float64
        np.testing.assert_allclose(z, base[f"blocks.{layer}.attn.hook_z"][:, h].astype(np.float64).mean(0), atol=1e-7)
    assert np.abs(small.run(IDS, z_ablation=heads).logits - hf_logits(hf, IDS, heads)).max() <= 1e-4


def test_ablation_only_changes_what_comes_after(small):
    base, ablated = small.run(IDS), small.run(IDS, z_ablation={(1, 0): 0.0})
    assert (base["blocks.1.hook_resid_pre"] == ablated["blocks.1.hook_resid_pre"]).all()
    assert (base["blocks.1.attn.hook_pattern"] == ablated["blocks.1.attn.hook_pattern"]).all()
    assert (ablated["blocks.1.attn.hook_z"][:, 0] == 0).all()
    assert (ablated["blocks.1.attn.hook_z"][:, 1:] == base["blocks.1.attn.hook_z"][:, 1:]).all()


def test_ablate_report(small):
    r = I.ablate(small, IDS, ["0.1", "1.2"], token=17, k=5)
    assert r["heads"] == ["0.1", "1.2"] and r["mode"] == "zero" and r["position"] == len(IDS) - 1
    p0 = softmax64(small.run(IDS).logits[-1])
    p1 = softmax64(small.run(IDS, z_ablation={(0, 1): 0.0, (1, 2): 0.0}).logits[-1])
    assert [t["id"] for t in r["before"]] == list(np.argsort(-p0, kind="stable")[:5])
    assert [t["id"] for t in r["after"]] == list(np.argsort(-p1, kind="stable")[:5])
    assert r["token"]["id"] == 17
    assert r["token"]["p_before"] == pytest.approx(p0[17]) and r["token"]["p_after"] == pytest.approx(p1[17])
    assert r["token"]["delta"] == pytest.approx(p1[17] - p0[17])
    assert r["token"]["rank_before"] == 1 + int((p0 > p0[17]).sum())
    ids = {c["id"] for c in r["changes"]}
    assert ids >= {t["id"] for t in r["before"] + r["after"]}
    assert r["top1_changed"] == (r["before"][0]["id"] != r["after"][0]["id"])


def test_ablate_mean_with_reference_and_position(small):
    ref = [IDS[:6], IDS[3:]]
    r = I.ablate(small, IDS, "1.0", mode="mean", reference=ref, position=4)
    z = np.concatenate([small.run(x)["blocks.1.attn.hook_z"][:, 0] for x in ref]).astype(np.float64).mean(0)
    p1 = softmax64(small.run(IDS, z_ablation={(1, 0): z}).logits[4])
    assert r["position"] == 4 and r["after"][0]["p"] == pytest.approx(p1.max())


def test_ablation_errors_say_what_to_do(small, texty):
    for bad, match in [(["9.0"], "no head 9.0.*layers 0–1"), (["x"], "LAYER.HEAD"), ([], "No heads")]:
        with pytest.raises(GPT2npError, match=match):
            I.ablate(small, IDS, bad)
    with pytest.raises(GPT2npError, match="'zero' or 'mean'"):
        I.ablate(small, IDS, "0.0", mode="half")
    with pytest.raises(GPT2npError, match="out of range"):
        I.ablate(small, IDS, "0.0", position=40)
    with pytest.raises(GPT2npError, match="2 tokens .*' trophy', ' case'"):
        I.ablate(texty, "The trophy", "0.0", token=" trophy case")
    assert I.parse_heads(["1.1, 0.2", (0, 1)], small.config) == [(0, 1), (0, 2), (1, 1)]
    assert I.parse_heads("1.1 0.2", small.config) == [(0, 2), (1, 1)]
    assert I.token_id(texty, " dog") == 3290


# -- logit lens ----------------------------------------------------------------------------------
def test_logit_lens_matches_transformers_hidden_states(small, hf):
    import torch
    with torch.no_grad():
        out = hf(torch.tensor([IDS]), output_hidden_states=True)
    p = small.params
    trace = small.run(IDS)
    for layer in range(small.config.n_layer - 1):     # HF's last hidden state is after ln_f already
        ours = I.lens_logits(trace[f"blocks.{layer}.hook_resid_post"], p["ln_f.weight"],
                             p["ln_f.bias"], p["wte.weight"], 1e-5)
        ref = hf.lm_head(hf.transformer.ln_f(out.hidden_states[layer + 1]))[0].detach().numpy()
        assert np.abs(ours - ref).max() <= 1e-4


def test_logit_lens_report(small):
    trace = small.run(IDS)
    lens = I.logit_lens(small, trace, position=-1, k=3)
    assert [s["label"] for s in lens["streams"]] == ["embeddings", "after layer 0", "after layer 1"]
    assert [s["layer"] for s in lens["streams"]] == [-1, 0, 1]
    final = softmax64(trace.logits[-1])
    last = lens["streams"][-1]
    assert [t["id"] for t in last["top"]] == list(np.argsort(-final, kind="stable")[:3])
    assert last["top"][0]["p"] == pytest.approx(final.max(), abs=1e-6)
    assert lens["target"]["id"] == int(final.argmax()) and last["target_rank"] == 1
    lens5 = I.logit_lens(small, trace, position=5, target=42)
    assert lens5["position"] == 5 and lens5["target"]["id"] == 42
    emb = softmax64(I.lens_logits(trace["blocks.0.hook_resid_pre"][5], small.params["ln_f.weight"],
                                        small.params["ln_f.bias"], small.params["wte.weight"], 1e-5))
    assert lens5["streams"][0]["target_p"] == pytest.approx(emb[42])


# -- minimal pairs -------------------------------------------------------------------------------
def test_align_tokens():
    assert I.align_tokens([1, 2, 3], [1, 5, 3]) == ([(0, 0), (1, 1), (2, 2)], "positional")
    assert I.align_tokens([1, 2, 3], [1, 9, 9, 2, 3]) == ([(0, 0), (1, 3), (2, 4)], "shared")
    assert I.align_tokens([7, 1, 2], [1, 2]) == ([(1, 0), (2, 1)], "shared")
    assert I.common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2


def test_row_changes_known_numbers():
    a = np.array([[[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]])
    b = np.array([[[1, 0, 0], [0.5, 0.5, 0], [0.6, 0.3, 0.1]]])
    pairs = [(0, 0), (1, 1), (2, 2)]
    assert I.row_changes(a, b, pairs) == pytest.approx(np.array([[0, 0, 0.4]]))
    # b has one extra token (position 1); a's keys 0, 1 align with b's 0, 2
    b4 = np.array([[[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.5, 0.2, 0.3, 0], [0.1, 0.1, 0.1, 0.7]]])
    pairs = [(0, 0), (1, 2), (2, 3)]
    # query a1 vs b2: |0.5-0.5| + |0.5-0.3| + unshared 0.2 in b -> (0.2 + 0.2) / 2
    # query a2 vs b3: |0.2-0.1| + |0.3-0.1| + |0.5-0.7| + unshared 0.1 -> 0.6 / 2
    assert I.row_changes(a, b4, pairs[1:], pairs) == pytest.approx(np.array([[0.2, 0.3]]))


def test_identical_inputs_change_nothing(small):
    r = I.attention_changes(small.run(IDS), small.run(IDS))
    assert len(r["heads"]) == small.config.n_layer * small.config.n_head
    assert all(h["mean_change"] == 0 and h["max_change"] == 0 for h in r["heads"])
    assert "identical" in r["alignment"]["note"]


def test_minimal_pair_same_length(small):
    b = IDS[:8] + [77] + IDS[9:]
    r = I.minimal_pair(small, IDS, b)
    al = r["alignment"]
    assert al["mode"] == "positional" and al["first_difference"] == 8 and "position by position" in al["note"]
    assert len(r["heads"]) == 6 and r["heads"][0]["mean_change"] >= r["heads"][-1]["mean_change"]
    ta, tb = small.run(IDS), small.run(b)
    # queries before position 8 see the same tokens: their rows are unchanged
    assert np.abs(ta.pattern(1)[:, :8, :8] - tb.pattern(1)[:, :8, :8]).max() <= 1e-6
    top = r["heads"][0]
    L, h = top["layer"], top["index"]
    tv = 0.5 * np.abs(ta.pattern(L)[h, 8:].astype(np.float64) - tb.pattern(L)[h, 8:]).sum(-1)
    assert top["mean_change"] == pytest.approx(tv.mean()) and top["max_change"] == pytest.approx(tv.max())
    assert top["max_query_a"] == 8 + int(tv.argmax())
    assert [x["id"] for x in r["a"]["next"]] == list(np.argsort(-ta.logits[-1], kind="stable")[:5])


def test_minimal_pair_different_lengths_on_text(texty):
    r = I.minimal_pair(texty, "The cat sat on the mat.", "The big black cat sat on the mat.")
    al = r["alignment"]
    assert al["mode"] == "shared" and al["n_aligned"] == 7 and "different lengths (7 and 9 tokens)" in al["note"]
    assert al["pairs"][:2] == [[0, 0], [1, 3]] and al["first_difference"] == 1
    assert al["unaligned_a"] == [] and al["unaligned_b"] == [1, 2]          # " big", " black"
    assert r["a"]["tokens"][1] == " cat" and r["b"]["tokens"][3] == " cat"
    assert all(0 <= h["mean_change"] <= 1 for h in r["heads"])
