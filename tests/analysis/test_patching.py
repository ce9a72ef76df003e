"""gpt2np.analysis.patching: identities that must hold to float32 rounding, and every patched run
against the same patch done in transformers with forward hooks (tests/reference.py,
hf_patched_logits), on a random model scaled to GPT-2's activation sizes and on the demo model.

The identities (normalised effect, 0 = corrupted, 1 = clean):
  - every position of resid_pre patched at layer 0: the whole clean run, 1;
  - nothing patched (an edit that keeps everything, from layer 0): 0;
  - the last layer's resid_post at the answer position: the clean final stream there, 1;
  - every head's z in a layer = that layer's attn_out at every position (c_proj is linear);
  - a cell whose clean and corrupted activations are equal (before the first differing token): 0.
Figures are printed with the parity table at the end of the run.
"""

import numpy as np
import pytest
from demofacts import multi_token_word, one_token_swap
from modelfiles import small_config, write_model_dir
from reference import hf_model, hf_patched_logits, hf_trace

import gpt2np
from gpt2np.analysis import patching
from gpt2np.analysis.patching import ALL_SITES, PatchingCancelled, patch
from gpt2np.api import ENGINES
from gpt2np.model import keep, replacing

ROUNDING = 1e-5      # |normalised − expected| for the identities (measured: see the end-of-run table)
HF_BOUND = 1e-4      # |LD − LD_transformers| / max |logit| of the two tokens in transformers' patched run


def pick_tokens(model, clean_ids, corrupted_ids):
    """answer, versus: the tokens whose logits at the end the corruption lowers and raises most, so
    that LD_clean − LD_corrupted, the denominator of the normalised effect, is as large as it gets."""
    change = model.run(clean_ids).logits[-1] - model.run(corrupted_ids).logits[-1]
    return int(np.argmax(change)), int(np.argmin(change))


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """3 layers × 4 heads × 64, GPT-2's activation magnitudes (modelfiles.scaled_like_gpt2)."""
    cfg = small_config(n_layer=3, n_head=4, n_embd=64, n_positions=32, vocab_size=128)
    directory, _ = write_model_dir(tmp_path_factory.mktemp("patch") / "m", cfg, seed=21, gpt2_scale=True)
    model = gpt2np.load(directory)
    clean = np.random.default_rng(3).integers(0, 128, 9).tolist()
    corrupted = list(clean)
    corrupted[4] = (clean[4] + 17) % 128            # one token differs, at position 4
    return directory, model, clean, corrupted, *pick_tokens(model, clean, corrupted)


TEXT = "The little girl went into the garden and she"


@pytest.fixture(scope="module")
def demo_pair(demo):
    other, k = one_token_swap(demo, TEXT)
    clean, corrupted = demo.encode(TEXT), demo.encode(other)
    return demo, clean, corrupted, k, *pick_tokens(demo, clean, corrupted)


@pytest.mark.parametrize("engine", ENGINES)
def test_identities_hold_to_float32_rounding(scaled, engine, parity_record):
    _, model, clean, corrupted, answer, versus = scaled
    c, x = model.run(clean, engine=engine), model.run(corrupted, engine=engine)
    L, T = model.config.n_layer, len(clean)
    ld = lambda resid: patching.logit_difference(model, resid, T - 1, answer, versus)  # noqa: E731
    final = f"blocks.{L - 1}.hook_resid_post"
    ld_clean, ld_corrupted = ld(c[final]), ld(x[final])
    assert abs(ld_clean - ld_corrupted) > 0.5, (ld_clean, ld_corrupted)       # a well-posed ratio
    norm = lambda v: (v - ld_corrupted) / (ld_clean - ld_corrupted)  # noqa: E731
    run = lambda layer, edit: norm(ld(patching.patched_final(model, x, layer, edit, engine)))  # noqa: E731

    every_position = replacing({"blocks.0.hook_resid_pre": [(slice(None), c["blocks.0.hook_resid_pre"])]})
    checks = {"resid_pre, layer 0, every position -> 1": (run(0, every_position), 1.0),
              "nothing patched -> 0": (run(0, keep), 0.0)}
    result = patch(model, clean, corrupted, answer, versus, sites=["resid_post", "resid_pre"], engine=engine)
    checks["resid_post, last layer, answer position -> 1"] = (result.grids["resid_post"].normalized[L - 1, T - 1], 1.0)
    before = result.grids["resid_pre"].normalized[:, :4]         # positions 0–3: clean == corrupted there
    checks["resid_pre before the first difference -> 0"] = (before.flat[np.argmax(np.abs(before))], 0.0)
    for layer in range(L):
        z = f"blocks.{layer}.attn.hook_z"
        heads = run(layer, replacing({z: [(slice(None), c[z])]}))
        out = f"blocks.{layer}.hook_attn_out"
        attn_out = run(layer, replacing({out: [(slice(None), c[out])]}))
        checks[f"every head's z = attn_out, layer {layer}"] = (heads, attn_out)
    failures = []
    for what, (got, expected) in checks.items():
        parity_record(f"{engine}: {what}", abs(got - expected), ROUNDING)
        if not abs(got - expected) <= ROUNDING:
            failures.append(f"{what}: {got!r} vs {expected!r}")
    assert not failures, failures


def check_against_transformers(model, hf, clean, corrupted, answer, versus, engine, record, label):
    z = patch(model, clean, corrupted, answer, versus, sites="z", engine=engine).grids["z"].normalized
    head = np.unravel_index(np.argmax(np.abs(z[:-1])), z[:-1].shape)    # the head that matters most, not last layer
    head = (int(head[0]), int(head[1]))
    result = patch(model, clean, corrupted, answer, versus, sites=ALL_SITES, head=head, engine=engine)
    ref_clean = hf_trace(hf, clean)
    T, failures = len(clean), []
    for site, grid in result.grids.items():
        worst = 0.0
        for r in range(len(grid.rows)):
            for col in range(len(grid.columns)):
                layer, index = (head[0], (col, head[1])) if site == "z_position" else (r, col)
                logits = hf_patched_logits(hf, corrupted, site, layer, index, ref_clean)[T - 1]
                theirs = float(logits[answer]) - float(logits[versus])
                delta = abs(grid.ld[r, col] - theirs) / max(abs(float(logits[answer])), abs(float(logits[versus])))
                worst = max(worst, delta)
        record(f"{label} {engine}: {site} LD vs transformers", worst, HF_BOUND)
        assert np.abs(grid.normalized).max() > 0.01, site          # the patches do change the output
        if not worst <= HF_BOUND:
            failures.append(f"{site}: {worst:.2e}")
    assert not failures, failures
    return result


@pytest.mark.parametrize("engine", ENGINES)
def test_every_site_agrees_with_transformers_hooks_gpt2_scaled(scaled, engine, parity_record):
    directory, model, clean, corrupted, answer, versus = scaled
    check_against_transformers(model, hf_model(directory), clean, corrupted, answer, versus, engine,
                               parity_record, "scaled")


def test_every_site_agrees_with_transformers_hooks_demo(demo_pair, parity_record):
    from gpt2np.files.hub import DEMO_DIR
    model, clean, corrupted, k, answer, versus = demo_pair
    result = check_against_transformers(model, hf_model(DEMO_DIR), clean, corrupted, answer, versus, "fast",
                                        parity_record, "demo")
    assert np.all(result.grids["resid_pre"].normalized[:, :k] == 0.0)     # before the swapped token: nothing differs


def test_result_shapes_labels_and_json(scaled):
    _, model, clean, corrupted, answer, versus = scaled
    seen = []
    result = patch(model, clean, corrupted, answer, versus, head="1.2", progress=lambda d, n: seen.append((d, n)))
    L, H, T = model.config.n_layer, model.config.n_head, len(clean)
    assert list(result.grids) == ["resid_pre", "attn_out", "mlp_out", "z", "pattern", "z_position"]
    shapes = {"resid_pre": (L, T), "attn_out": (L, T), "mlp_out": (L, T), "z": (L, H), "pattern": (L, H),
              "z_position": (1, T)}
    for site, grid in result.grids.items():
        assert grid.ld.shape == grid.normalized.shape == shapes[site], site
        assert (len(grid.rows), len(grid.columns)) == shapes[site], site
    assert result.grids["z_position"].rows == ["1.2"] and result.grids["z"].columns[2] == "head 2"
    assert "→" in result.grids["resid_pre"].columns[4] and "→" not in result.grids["resid_pre"].columns[3]
    total = sum(L * T for _ in range(3)) + 2 * L * H + T
    assert seen == [(d, total) for d in range(1, total + 1)]
    data = result.to_dict()
    import json
    assert json.loads(json.dumps(data))["grids"]["z"]["normalized"][0][0] == result.grids["z"].normalized[0, 0]
    top = result.top(10)
    assert len(top) == 10 and top == sorted(top, key=lambda cell: -cell["normalized"])


def test_cancel_stops_between_runs(scaled):
    _, model, clean, corrupted, answer, versus = scaled
    calls = []
    with pytest.raises(PatchingCancelled, match="after 5 of"):
        patch(model, clean, corrupted, answer, versus, cancel=lambda: len(calls) >= 5,
              progress=lambda d, n: calls.append(d))
    assert calls == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("change, message", [
    (lambda a: dict(corrupted=a["clean"] + " said"), "same number of tokens"),
    (lambda a: dict(answer=a["multi"]), "not one"),
    (lambda a: dict(versus=a["answer"]), "two different tokens"),
    (lambda a: dict(sites=["resid_pre", "embed"]), "Unknown patching site 'embed'"),
    (lambda a: dict(sites=["z_position"]), "say which head"),
    (lambda a: dict(head="1.1 2.2"), "Give one head"),
    (lambda a: dict(head=f"{a['L']}.0"), "There is no head"),
    (lambda a: dict(position=99), "Position 99 is out of range"),
    (lambda a: dict(corrupted=a["clean"]), "nothing to restore"),
])
def test_bad_requests_say_what_to_do(demo_pair, change, message):
    model, clean, corrupted, _, answer, versus = demo_pair
    args = dict(clean=TEXT, corrupted=model.tokenizer.decode(corrupted), answer=answer, versus=versus)
    facts = {**args, "multi": multi_token_word(model, "The elephantine gentleman was extraordinarily obliging"),
             "L": model.config.n_layer}
    args.update(change(facts))
    with pytest.raises(gpt2np.GPT2npError, match=message):
        patch(model, **args)


def test_different_lengths_show_both_tokenizations(demo):
    longer = TEXT + " said"
    with pytest.raises(gpt2np.GPT2npError) as error:
        patch(demo, TEXT, longer, 0, 1)
    for text in (TEXT, longer):
        tokens = demo.token_strings(demo.encode(text))
        assert f"has {len(tokens)} (" + " | ".join(repr(t) for t in tokens) + ")" in str(error.value)
