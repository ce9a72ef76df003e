"""The value side's endpoints (viewer/routes/values.py) through Flask's test_client: the value ledger, the
walk through one block and the logit attribution, on the bundled demo model.

Every number is checked against the trace gpt2np gives in this process for the same text: values
read from the trace are compared as float32 text (the same float32, to the bit); values the server
computes (a head's write, the sums) against a formula written here in float64 — a head's write as
its slice of the concatenated z, the other heads zeroed, times the whole c_proj weight.
"""

import json
from urllib.parse import quote

import numpy as np
from apierrors import error_of
from demofacts import multi_token_word, single_token

from gpt2np.analysis import interventions
from viewer.routes.args import MAX_K

SENTENCE = "Mr. Darcy and Miss Bennet walked in the garden."
COREF = "The trophy doesn't fit in the suitcase because it is too big."


def f32_text(values):
    """float32 values as the shortest text that reads back to them."""
    return [str(v) for v in np.asarray(values, dtype=np.float32).ravel()]


def write_of(model, trace, layer, head, query):
    """z_h · W_O^h in float64: head `head`'s part of the concatenated z, the others zeroed, times
    the whole c_proj weight."""
    d, H = model.config.n_embd, model.config.n_head
    dh = d // H
    z = trace[f"blocks.{layer}.attn.hook_z"][query].astype(np.float64).reshape(d)
    alone = np.zeros(d)
    alone[head * dh:(head + 1) * dh] = z[head * dh:(head + 1) * dh]
    return alone @ model.params[f"h.{layer}.attn.c_proj.weight"].astype(np.float64)


# -- value ledger ---------------------------------------------------------------------------------
def test_value_ledger_numbers_are_the_traces(client, ran, demo):
    handle, trace = ran
    L, H = demo.config.n_layer, demo.config.n_head
    for layer, head, query in [(0, 0, 0), (1, H - 1, 4), (L - 1, 2, trace.n_tokens - 1)]:
        d = client.get(f"/api/runs/{handle}/value?layer={layer}&head={head}&query={query}").get_json()
        pattern = trace[f"blocks.{layer}.attn.hook_pattern"][head, query]
        v = trace[f"blocks.{layer}.attn.hook_v"][:, head]
        z = trace[f"blocks.{layer}.attn.hook_z"][query, head]
        assert d["z"] == f32_text(z)                                      # the trace's z, to the bit
        top = np.argsort(-pattern[: query + 1].astype(np.float64), kind="stable")[:5]
        assert [k["position"] for k in d["keys"]] == list(top)
        for k in d["keys"]:
            j = k["position"]
            assert k["p"] == str(pattern[j]) and k["v"] == f32_text(v[j])
            assert k["pv"] == f32_text(np.float64(pattern[j]) * v[j].astype(np.float64))
        others = 1 - sum(float(pattern[j]) for j in top)
        assert abs(float(d["others"]["p"]) - others) <= 1e-6 and d["others"]["n"] == query + 1 - len(top)
        # Σ_k p_k·v_k over every key, in float64 here, is hook_z to float32 rounding.
        z_sum = (pattern[: query + 1, None].astype(np.float64) * v[: query + 1]).sum(0)
        assert np.abs(z_sum - z).max() <= 1e-6 * np.abs(z).max() + 1e-7
        assert d["z_sum"] == f32_text(z_sum) and d["z_within_rounding"]
        assert d["z_identical"] == int((np.float32(z_sum) == z).sum())
        # The head's write, and every head's write plus b_O against hook_attn_out.
        write = write_of(demo, trace, layer, head, query)
        assert d["write"] == f32_text(write)
        writes = [write_of(demo, trace, layer, h, query) for h in range(H)]
        assert np.allclose(np.float32(d["head_norms"]), [np.linalg.norm(w) for w in writes], rtol=1e-6)
        attn_out = trace[f"blocks.{layer}.hook_attn_out"][query]
        total = sum(writes) + demo.params[f"h.{layer}.attn.c_proj.bias"]
        relative = np.abs(total - attn_out).max() / np.abs(attn_out).max()
        assert relative <= 1e-5 and d["attn_out"]["ok"] and float(d["attn_out"]["relative"]) <= 1e-5
        assert d["attn_out"]["values"] == f32_text(attn_out)
        dh = demo.config.d_head
        assert d["w_o"] == f"rows {head * dh}…{(head + 1) * dh - 1} of h.{layer}.attn.c_proj.weight"


def test_value_pushes_are_the_writes_effect(client, ran, demo):
    handle, trace = ran
    layer, head, query = 2, 1, 6
    d = client.get(f"/api/runs/{handle}/value?layer={layer}&head={head}&query={query}").get_json()
    write = write_of(demo, trace, layer, head, query)
    final = trace[f"blocks.{demo.config.n_layer - 1}.hook_resid_post"][query].astype(np.float64)
    scale = 1 / np.sqrt(final.var() + demo.config.layer_norm_epsilon)
    wte = demo.params["wte.weight"].astype(np.float64)
    effect = (scale * (write - write.mean()) * demo.params["ln_f.weight"]) @ wte.T
    # Compared by value: tokens that share an embedding row (the demo's never-seen tokens) tie
    # exactly, and any five of a tie are right.
    assert [effect[t["id"]] for t in d["pushes"]["up"]] == list(np.sort(effect)[::-1][:5])
    assert [effect[t["id"]] for t in d["pushes"]["down"]] == list(np.sort(effect)[:5])


def test_value_errors_name_the_field(client, ran, demo):
    handle, trace = ran
    url = f"/api/runs/{handle}/value"
    L, H, T = demo.config.n_layer, demo.config.n_head, trace.n_tokens
    assert "Missing ?query=" in error_of(client.get(url + "?layer=0&head=0"), 400)
    assert f"?layer={L} is out of range" in error_of(client.get(url + f"?layer={L}&head=0&query=0"), 400)
    assert f"?head={H} is out of range" in error_of(client.get(url + f"?layer=0&head={H}&query=0"), 400)
    assert f"?query={T} is out of range" in error_of(client.get(url + f"?layer=0&head=0&query={T}"), 400)
    assert "not a whole number" in error_of(client.get(url + "?layer=0&head=0&query=1.5"), 400)
    assert "Unknown or expired run" in error_of(client.get("/api/runs/nope/value?layer=0&head=0&query=0"), 404)


# -- walk -----------------------------------------------------------------------------------------
STEPS = ["resid_pre", "ln_1", "qkv", "scores", "softmax", "pv", "z", "w_o", "resid_mid", "ln_2", "mlp", "resid_post"]


def test_walk_values_are_the_traces(client, ran, demo):
    handle, trace = ran
    layer, head, query = 1, 3, 7
    d = client.get(f"/api/runs/{handle}/walk?layer={layer}&head={head}&query={query}").get_json()
    assert [s["id"] for s in d["steps"]] == STEPS
    b = f"blocks.{layer}."
    expected = {   # every vector the walk shows that is a trace entry, as the trace holds it
        "resid_pre": [trace[b + "hook_resid_pre"][query]],
        "ln_1": [trace[b + "ln1.hook_normalized"][query]],
        "qkv": [trace[b + f"attn.hook_{n}"][query, head] for n in "qkv"],
        "scores": [trace[b + "attn.hook_attn_scores"][head, query, : query + 1]],
        "softmax": [trace[b + "attn.hook_pattern"][head, query, : query + 1]],
        "resid_mid": [trace[b + "hook_resid_mid"][query]],
        "ln_2": [trace[b + "ln2.hook_normalized"][query]],
        "mlp": [trace[b + n][query] for n in ("mlp.hook_pre", "mlp.hook_post", "hook_mlp_out")],
        "resid_post": [trace[b + "hook_resid_post"][query]],
    }
    value = client.get(f"/api/runs/{handle}/value?layer={layer}&head={head}&query={query}").get_json()
    expected["z"] = [trace[b + "attn.hook_z"][query, head], np.float32(value["z_sum"])]
    expected["w_o"] = [np.float32(value["write"]), trace[b + "hook_attn_out"][query]]
    expected["pv"] = [np.float32(k["pv"]) for k in value["keys"]]
    # x and the value ledger's steps are the run's own arrays: the same float32 text; the rest is
    # the block computed again for the one token (gpt2np.oneblock): the full pass's up to rounding
    exact = ("resid_pre", "pv", "z", "w_o")
    for step in d["steps"]:
        shown = [v["values"] for v in step["vectors"]]
        if step["id"] in exact:
            assert shown == [f32_text(a) for a in expected[step["id"]]], step["id"]
        else:
            assert len(shown) == len(expected[step["id"]]), step["id"]
            for values, a in zip(shown, expected[step["id"]]):
                got = np.array([float(v) for v in values], dtype=np.float64)
                assert np.abs(got - a).max() <= 1e-5 * max(np.abs(a).max(), 1.0), step["id"]
        for c in step["checks"]:                              # each step redone beside the trace
            assert float(c["relative"]) <= 1e-5, (step["id"], c)
    # the residual additions are the same float32 operations as the model's: identical
    additions = [s for s in d["steps"] if s["id"] in ("resid_mid", "resid_post")]
    assert [float(s["checks"][0]["max_abs_diff"]) for s in additions] == [0, 0]
    ln1 = d["steps"][1]["scalars"]
    x = trace[b + "hook_resid_pre"][query].astype(np.float64)
    assert np.isclose(float(ln1[0]["value"]), x.mean(), rtol=1e-6, atol=1e-7)
    assert np.isclose(float(ln1[1]["value"]), np.sqrt(x.var() + demo.config.layer_norm_epsilon), rtol=1e-6)
    assert d["query"] == {"position": query, "token": trace.tokens[query], "id": int(trace.ids[query])}


def test_walk_errors(client, ran, demo):
    handle, trace = ran
    url = f"/api/runs/{handle}/walk"
    assert "Missing ?layer=" in error_of(client.get(url + "?head=0&query=0"), 400)
    assert "?query=-1 is out of range" in error_of(client.get(url + "?layer=0&head=0&query=-1"), 400)
    assert "Unknown or expired run" in error_of(client.get("/api/runs/nope/walk?layer=0&head=0&query=0"), 404)


# -- attribution ----------------------------------------------------------------------------------
def test_attribution_is_interventions_logit_attribution(client, ran, demo):
    handle, trace = ran
    token, token_id = single_token(demo, SENTENCE)
    other, other_id = single_token(demo, "and then she " + SENTENCE.split()[-1])
    without = lambda d: {k: v for k, v in d.items() if k not in ("handle", "k")}  # noqa: E731
    default = client.get(f"/api/runs/{handle}/attribution").get_json()
    direct = interventions.logit_attribution(demo, trace, trace.n_tokens - 1)
    assert without(default) == json.loads(json.dumps(direct))
    assert default["target"]["id"] == int(np.argmax(trace.logits[-1]))
    url = f"/api/runs/{handle}/attribution?position=4"
    by_text = client.get(url + f"&token={quote(token)}&versus={quote(other)}").get_json()
    by_id = client.get(url + f"&token_id={token_id}&versus_id={other_id}").get_json()
    assert by_text == by_id
    assert without(by_text) == json.loads(json.dumps(interventions.logit_attribution(demo, trace, 4, token, other)))
    logit = float(trace.logits[4, token_id]) - float(trace.logits[4, other_id])
    assert abs(by_text["sum"] - logit) <= 1e-4 * float(np.abs(trace.logits[4, [token_id, other_id]]).max())
    three = client.get(f"/api/runs/{handle}/attribution?k=3").get_json()
    assert all(len(p["up"]) == 3 and len(p["down"]) == 3 for p in three["parts"])


def test_attribution_errors_name_the_field(client, ran, demo):
    handle, trace = ran
    url = f"/api/runs/{handle}/attribution"
    split = multi_token_word(demo, COREF)
    token, token_id = single_token(demo, SENTENCE)
    assert error_of(client.get(url + f"?token={quote(split)}"), 400).startswith("?token=:")
    assert error_of(client.get(url + f"?versus={quote(split)}"), 400).startswith("?versus=:")
    assert "not both" in error_of(client.get(url + f"?versus={quote(token)}&versus_id={token_id}"), 400)
    assert "same token" in error_of(client.get(url + f"?token={quote(token)}&versus_id={token_id}"), 400)
    top1 = int(np.argmax(trace.logits[-1]))                  # ?versus= the default ?token= (the top-1)
    assert "two different tokens" in error_of(client.get(url + f"?versus_id={top1}"), 400)
    assert "characters long" in error_of(client.get(url + "?versus=" + "x" * 500), 400)
    V = demo.config.vocab_size
    assert f"0 to {V - 1}" in error_of(client.get(url + f"?token_id={V}"), 400)
    for k in ("0", str(MAX_K + 1), "x"):
        assert f"from 1 to {MAX_K}" in error_of(client.get(url + f"?k={k}"), 400)
    assert "position" in error_of(client.get(url + f"?position={trace.n_tokens}"), 400)


# -- what a run keeps -----------------------------------------------------------------------------
def test_run_keeps_the_value_side_and_counts_it(demo_app, ran):
    handle, trace = ran
    run = demo_app.extensions["gpt2np.runs"].get(handle)
    kept = run.trace()
    for name in ["hook_embed", "hook_pos_embed", "ln_final.hook_normalized"] + [
            f"blocks.{L}.{n}" for L in range(trace.n_layer)
            for n in ("attn.hook_z", "hook_attn_out", "hook_mlp_out")]:
        assert np.array_equal(kept[name], trace[name]), name
    arrays = sum(a.nbytes for a in kept.values()) + run.next_ids.nbytes + run.next_probs.nbytes
    memo = sum(map(len, run._memo.values()))
    overview = len(run._overview[0]) if run._overview else 0
    assert run.nbytes() == arrays + memo + overview
