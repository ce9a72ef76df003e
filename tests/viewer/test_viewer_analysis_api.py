"""The analysis panels' endpoints (viewer/routes/analysis.py) through Flask's test_client: every number is
checked against a direct call of the gpt2np function the endpoint wraps, and every error is JSON.

Models: the bundled demo model (learned attention, its own tokenizer; its shape, heads and
inputs come from its files through demofacts.py), the GPT-2-layout model (12 × 12, random
weights) for the 144-row table and the published roles of GPT-2 small, a model without
tokenizer, and one too short for the probe.
"""

import json
from urllib.parse import quote

import numpy as np
import pytest
from apierrors import error_of
from demofacts import card_head, head_name, multi_token_word, one_token_swap, single_token
from modelfiles import small_config, write_model_dir

from gpt2np.analysis import findings, interventions
from viewer import create_app
from viewer.answers.runs import MEMO_ENTRIES, run_handle
from viewer.answers.wire import quantize
from viewer.routes.args import MAX_K

SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
# The same sentence with a last word of more tokens (" unwieldy" is three under GPT-2's tokenizer,
# which the demo uses), so that the pair has different lengths.
SMALL = "The trophy doesn't fit in the suitcase because it is too unwieldy."
DARCY = "Mr. Darcy and Miss Bennet walked in the garden."


def as_json(data):
    """What a dict of Python values looks like after a trip through JSON (tuples -> lists)."""
    return json.loads(json.dumps(data))


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


@pytest.fixture(scope="module")
def induction(demo):
    return findings.induction_scores(demo)[0]


# -- heads table ----------------------------------------------------------------------------------
def test_heads_table_is_findings_head_table(demo_app, client, ran, demo, induction):
    handle, trace = ran
    r = client.get(f"/api/runs/{handle}/heads")
    assert r.status_code == 200 and r.is_json
    data = r.get_json()
    assert data["heads"] == as_json(findings.head_table(demo, trace, induction=induction))
    n_heads = demo.config.n_layer * demo.config.n_head
    assert len(data["heads"]) == n_heads and data["n_tokens"] == len(trace.ids) == len(demo.encode(SENTENCE))
    row = data["heads"][0]
    assert set(row) == {"head", "layer", "index", "type", "entropy", "entropy_norm", "sink", "previous",
                        "self", "top_column", "top_column_token", "top_column_share", "vw_sink_share",
                        "induction"}
    assert sum(data["type_counts"].values()) == n_heads
    assert data["type_counts"] == {t: sum(h["type"] == t for h in data["heads"]) for t in data["types"]}
    assert set(data["type_rules"]) == set(data["types"]) and "induction" in data["type_rules"]["induction"]
    assert data["probe"] == {"length": 30, "seed": 0, "bos": True} and data["probe_error"] is None
    # The probe ran once, when the app was made: its scores are the table's induction column.
    probe = demo_app.extensions["gpt2np.induction"]["scores"]
    assert np.array_equal(probe, induction)
    assert [h["induction"] for h in data["heads"]] == probe.ravel().tolist()


def test_heads_table_is_computed_once_per_run(client, ran, monkeypatch):
    handle, _ = ran
    first = client.get(f"/api/runs/{handle}/heads").data
    monkeypatch.setattr(findings, "head_table", lambda *a, **k: pytest.fail("computed again"))
    assert client.get(f"/api/runs/{handle}/heads").data == first


@pytest.mark.slow
def test_heads_table_of_a_gpt2_layout_model_has_144_rows(gpt2_layout_dir):
    app = create_app({"MODEL": str(gpt2_layout_dir)})
    model = app.extensions["gpt2np.model"]
    c = app.test_client()
    handle = c.post("/api/run", json={"text": SENTENCE}).get_json()["handle"]
    data = c.get(f"/api/runs/{handle}/heads").get_json()
    assert len(data["heads"]) == 144 and data["heads"][-1]["head"] == "11.11"
    direct = findings.head_table(model, model.run(SENTENCE), induction=app.extensions["gpt2np.induction"]["scores"])
    assert data["heads"] == as_json(direct)
    # The published roles of GPT-2 small are measured on this shape, each with its source.
    report = c.get(f"/api/runs/{handle}/findings").get_json()
    roles = report["published_roles"]
    assert roles["applicable"] is True and [r["role"] for r in roles["roles"]] == [
        "previous-token", "induction", "name mover", "copy suppression"]
    assert "arXiv 2211.00593" in roles["roles"][0]["source"] and "arXiv 2310.04625" in roles["roles"][3]["source"]
    by_head = {h["head"]: h for h in data["heads"]}
    assert sum(len(role["heads"]) for role in roles["roles"]) == 12
    # Name movers and copy suppression: the last token's weight on " Mary" and on " John" (GPT-2's
    # tokens), read here from the model's own pattern.
    ioi = model.run(roles["ioi_sentence"])
    def on(name, layer, h):
        return float(ioi.pattern(layer, h)[-1, [k for k, t in enumerate(ioi.tokens) if t == name]].sum())

    for role in roles["roles"]:
        stat = {"previous-token": "previous", "induction": "induction"}.get(role["role"], "ioi")
        for h in role["heads"]:
            assert h["type"] == by_head[h["head"]]["type"] and h["verdict"] in ("holds", "does not hold")
            if stat == "ioi":
                layer, index = map(int, h["head"].split("."))
                assert h["value"] == pytest.approx(on(" Mary", layer, index), abs=1e-6)
                assert h["subject"] == pytest.approx(on(" John", layer, index), abs=1e-6)
            else:
                assert h["value"] == by_head[h["head"]][stat]
    assert report["heads"] == data["heads"]                   # the report's table is the same table


def test_a_context_too_short_for_the_probe_leaves_induction_empty(tmp_path):
    path, _ = write_model_dir(tmp_path / "tiny-ctx", small_config(n_positions=4), seed=4)
    app = create_app({"MODEL": str(path)})
    c = app.test_client()
    handle = c.post("/api/run", json={"ids": [5, 17, 42]}).get_json()["handle"]
    data = c.get(f"/api/runs/{handle}/heads").get_json()
    assert "too short for the induction probe" in data["probe_error"] and data["probe"] is None
    assert all(h["induction"] is None for h in data["heads"]) and len(data["heads"]) == 6
    one = c.post("/api/run", json={"ids": [5]}).get_json()["handle"]
    assert "at least 2 tokens" in error_of(c.get(f"/api/runs/{one}/heads"), 400)


# -- findings -------------------------------------------------------------------------------------
def test_findings_is_the_report_on_the_run_sentence(client, ran, demo):
    handle, _ = ran
    data = client.get(f"/api/runs/{handle}/findings").get_json()
    assert data["handle"] == handle
    assert without(data, "handle") == as_json(findings.report(demo, sentence=SENTENCE))
    assert data["inputs"]["sentence"]["text"] == SENTENCE
    verdicts = [p["verdict"] for p in data["predictions"]]
    assert len(verdicts) == 5 and verdicts[:2] == ["holds", "holds"]     # causal masking: any model
    # Prediction 3 is about layers 4–8: not applicable to a model that has none.
    assert (verdicts[2] == "not applicable") == (demo.config.n_layer <= 4)
    assert set(verdicts[2:]) <= {"holds", "does not hold", "not applicable"}
    assert data["published_roles"] == {"applicable": False, "note": "not GPT-2 small: skipped", "roles": []}
    # With <|endoftext|> first, the report runs the sentence with it too.
    bos = client.post("/api/run", json={"text": SENTENCE, "bos": True}).get_json()
    data = client.get(f"/api/runs/{bos['handle']}/findings").get_json()
    assert without(data, "handle") == as_json(findings.report(demo, sentence=SENTENCE, bos=True))
    assert data["inputs"]["sentence"]["tokens"][0] == "<|endoftext|>"


def test_findings_errors(client, small_model_dir):
    assert "Unknown or expired run" in error_of(client.get("/api/runs/0123456789abcdef0123/findings"), 404)
    one = client.post("/api/run", json={"text": "Mr"}).get_json()["handle"]
    assert "at least 2 tokens" in error_of(client.get(f"/api/runs/{one}/findings"), 400)
    c = create_app({"MODEL": str(small_model_dir)}).test_client()
    handle = c.post("/api/run", json={"ids": [5, 17, 42, 5, 17]}).get_json()["handle"]
    assert "no tokenizer" in error_of(c.get(f"/api/runs/{handle}/findings"), 400)
    assert error_of(c.post(f"/api/runs/{handle}/findings"), 405)


# -- logit lens -----------------------------------------------------------------------------------
def test_lens_is_interventions_logit_lens(client, ran, demo):
    handle, trace = ran
    L, T = demo.config.n_layer, len(trace.ids)
    data = client.get(f"/api/runs/{handle}/lens?position=9&k=3").get_json()
    assert without(data, "handle", "k") == as_json(interventions.logit_lens(demo, trace, 9, 3))
    assert data["k"] == 3 and len(data["streams"]) == L + 1 and len(data["streams"][0]["top"]) == 3
    assert data["streams"][0]["label"] == "embeddings"
    assert data["streams"][-1]["name"] == f"blocks.{L - 1}.hook_resid_post"
    # The last depth is the model's own prediction: its top-1 is the next-token panel's top-1.
    nxt = client.get(f"/api/runs/{handle}/next?position=9").get_json()
    assert data["streams"][-1]["top"][0]["id"] == nxt["top"][0]["id"] == data["target"]["id"]
    default = client.get(f"/api/runs/{handle}/lens").get_json()
    assert default["position"] == T - 1 and default["k"] == 5
    assert without(default, "handle", "k") == as_json(interventions.logit_lens(demo, trace, -1, 5))
    token, token_id = single_token(demo, SENTENCE)                  # a word that is one token
    by_text = client.get(f"/api/runs/{handle}/lens?position=9&target={quote(token)}").get_json()
    by_id = client.get(f"/api/runs/{handle}/lens?position=9&target_id={token_id}").get_json()
    assert by_text == by_id and by_text["target"] == {"token": token, "id": token_id}
    assert without(by_text, "handle", "k") == as_json(interventions.logit_lens(demo, trace, 9, 5, token))


def test_lens_errors(client, ran, demo):
    handle, trace = ran
    url = f"/api/runs/{handle}/lens"
    V, T = demo.config.vocab_size, len(trace.ids)
    split = multi_token_word(demo, SENTENCE)                         # a word of two tokens or more
    assert "not one" in error_of(client.get(url + f"?target={quote(split)}"), 400)
    assert f"0 to {V - 1}" in error_of(client.get(url + f"?target_id={V}"), 400)
    token, token_id = single_token(demo, SENTENCE)
    assert "not both" in error_of(client.get(url + f"?target={quote(token)}&target_id={token_id}"), 400)
    assert "characters long" in error_of(client.get(url + "?target=" + "x" * 500), 400)
    for k in ("0", str(MAX_K + 1), "x", "1.5"):
        assert f"from 1 to {MAX_K}" in error_of(client.get(url + f"?k={k}"), 400)
    assert f"position, a whole number from 0 to {T - 1}" in error_of(client.get(url + f"?position={T}"), 400)
    assert "Unknown or expired run" in error_of(client.get("/api/runs/nope/lens"), 404)


# -- ablation -------------------------------------------------------------------------------------
def test_ablate_is_interventions_ablate(client, ran, demo):
    handle, trace = ran
    L, T = demo.config.n_layer, len(trace.ids)
    # The two heads the card names, given in reverse order: the answer lists them sorted.
    heads = sorted([card_head("best_first_position"), card_head("best_prev_token")])
    names = [head_name(*h) for h in heads]
    token, token_id = single_token(demo, SENTENCE)
    body = {"heads": " ".join(reversed(names)), "mode": "mean", "position": 9, "token": token}
    data = client.post(f"/api/runs/{handle}/ablate", json=body).get_json()
    direct = interventions.ablate(demo, SENTENCE, names, "mean", token=token, position=9)
    assert without(data, "handle") == as_json(direct)
    assert data["heads"] == names and data["after_token"] == trace.tokens[9] and data["position"] == 9
    t = data["token"]
    assert t["id"] == token_id and t["delta"] == t["p_after"] - t["p_before"]
    # The top-5 before is the next-token panel's top-5 at that position (float64 vs float32).
    nxt = client.get(f"/api/runs/{handle}/next?position=9").get_json()
    assert [x["id"] for x in data["before"]] == [x["id"] for x in nxt["top"]]
    assert all(abs(x["p"] - float(y["p"])) < 1e-6 for x, y in zip(data["before"], nxt["top"]))
    # The same ablation asked differently (a list, an id, commas) is the same result.
    again = client.post(f"/api/runs/{handle}/ablate", json={**body, "heads": names, "token": token_id})
    assert again.get_json() == data
    last = f"{L - 1}.0,{L - 1}.1"                                      # two heads of the last layer
    zero = client.post(f"/api/runs/{handle}/ablate", json={"heads": last}).get_json()
    direct = interventions.ablate(demo, SENTENCE, last, "zero")
    assert without(zero, "handle") == as_json(direct) and zero["position"] == T - 1 and zero["token"] is None


def test_ablate_errors(client, ran, demo):
    handle, trace = ran
    url = f"/api/runs/{handle}/ablate"
    post = lambda body: client.post(url, json=body)  # noqa: E731
    L, H, V, T = demo.config.n_layer, demo.config.n_head, demo.config.vocab_size, len(trace.ids)
    assert f"There is no head {L}.0" in error_of(post({"heads": f"{L}.0"}), 400)
    assert f"layers 0–{L - 1} and heads 0–{H - 1}" in error_of(post({"heads": f"1.{H}"}), 400)
    assert "Cannot read the head 'x'" in error_of(post({"heads": "x"}), 400)
    assert "Cannot read the head '5'" in error_of(post({"heads": "5"}), 400)
    assert "No heads given" in error_of(post({"heads": " "}), 400)
    assert "No heads given" in error_of(post({"heads": []}), 400)
    assert '"heads" must be text' in error_of(post({"heads": 5}), 400)
    assert "LAYER.HEAD" in error_of(post({"heads": "1." + "1" * 500}), 400)
    assert 'Give "heads"' in error_of(post({"mode": "zero"}), 400)
    assert '"mode"' in error_of(post({"heads": "1.1", "mode": "half"}), 400)
    assert f"from 0 to {T - 1}" in error_of(post({"heads": "1.1", "position": T}), 400)
    assert f"from 0 to {T - 1}" in error_of(post({"heads": "1.1", "position": "3"}), 400)
    assert f"from 1 to {MAX_K}" in error_of(post({"heads": "1.1", "k": 0}), 400)
    assert "not one" in error_of(post({"heads": "1.1", "token": multi_token_word(demo, SENTENCE)}), 400)
    assert "out of range" in error_of(post({"heads": "1.1", "token": V}), 400)
    assert "characters long" in error_of(post({"heads": "1.1", "token": "y" * 1000}), 400)
    assert '"token" must be text' in error_of(post({"heads": "1.1", "token": True}), 400)
    assert "Unknown field 'layer'" in error_of(post({"heads": "1.1", "layer": 1}), 400)
    assert "not valid JSON" in error_of(client.post(url, data="{", content_type="application/json"), 400)
    assert "JSON object" in error_of(client.post(url, json=["1.1"]), 400)
    assert "Content-Type: application/json" in error_of(
        client.post(url, data='{"heads": "1.1"}', content_type="text/plain"), 415)
    assert "Unknown or expired run" in error_of(client.post("/api/runs/nope/ablate", json={"heads": "1.1"}), 404)
    assert "POST" in error_of(client.get(url), 405)


def test_results_are_kept_per_run_within_a_bound(demo_app, client, monkeypatch):
    import viewer.answers.runs
    assert MEMO_ENTRIES == 16
    monkeypatch.setattr(viewer.answers.runs, "MEMO_ENTRIES", 3)
    handle = client.post("/api/run", json={"text": DARCY}).get_json()["handle"]
    run = demo_app.extensions["gpt2np.runs"].get(handle)
    arrays = run.nbytes()
    for position in range(5):
        assert client.post(f"/api/runs/{handle}/ablate", json={"heads": "0.0", "position": position}).status_code == 200
    assert [key[3] for key in run._memo] == [2, 3, 4]                # the last three ablations
    assert run.nbytes() == arrays + sum(map(len, run._memo.values()))  # counted in the cache's bound


# -- minimal pairs --------------------------------------------------------------------------------
def decode_triangle(data, n):
    out = np.full((n, n), 255, dtype=np.uint8)
    out[np.tril_indices(n)] = np.frombuffer(data, dtype=np.uint8)
    return out


def test_pair_is_interventions_minimal_pair_positional(client, demo):
    other, k = one_token_swap(demo, DARCY)                 # as many tokens, one differs (at k)
    T = len(demo.encode(DARCY))
    a = client.post("/api/run", json={"text": DARCY}).get_json()
    data = client.post(f"/api/runs/{a['handle']}/pair", json={"text": other}).get_json()
    direct = interventions.minimal_pair(demo, DARCY, other)
    assert data["heads"] == as_json(direct["heads"]) and data["alignment"] == as_json(direct["alignment"])
    assert data["alignment"]["mode"] == "positional" and data["alignment"]["first_difference"] == k
    assert data["alignment"]["note"].startswith(f"same number of tokens ({T})")
    assert data["a"]["handle"] == a["handle"] and data["a"]["tokens"] == direct["a"]["tokens"]
    assert data["b"]["tokens"] == direct["b"]["tokens"] == demo.run(other).tokens
    assert data["b"]["handle"] == run_handle(demo, direct["b"]["ids"], False)
    assert [t["id"] for t in data["b"]["next"]] == [t["id"] for t in direct["b"]["next"]]
    assert client.get(f"/api/runs/{data['b']['handle']}").status_code == 200    # B is a run too
    # |A − B| of the top head: the aligned cells of both patterns, quantized like a heatmap.
    top = data["heads"][0]
    r = client.get(f"/api/runs/{a['handle']}/pair/{data['b']['handle']}/diff?layer={top['layer']}&head={top['index']}")
    assert r.status_code == 200 and r.headers["X-Gpt2np-Alignment"] == "positional"
    assert r.headers["X-Gpt2np-Tokens"] == str(T) and len(r.data) == T * (T + 1) // 2
    pa = demo.run(DARCY).pattern(top["layer"], top["index"])
    pb = demo.run(other).pattern(top["layer"], top["index"])
    rows, cols = np.tril_indices(T)
    expected = np.rint(np.sqrt(np.abs(pa.astype(np.float64) - pb)[rows, cols]) * 254)   # round(254·√|Δ|)
    assert np.abs(decode_triangle(r.data, T)[rows, cols] - expected).max() <= 1
    assert np.array_equal(decode_triangle(r.data, T)[rows, cols], quantize(np.abs(pa - pb)[rows, cols]))
    assert (decode_triangle(r.data, T)[:k][np.tril_indices(k)] == 0).all()     # before the change
    assert decode_triangle(r.data, T)[k:][:, :k + 1].max() > 0                 # from the change on


def test_pair_with_different_lengths_compares_shared_tokens(client, ran, demo):
    handle, trace = ran
    data = client.post(f"/api/runs/{handle}/pair", json={"text": SMALL}).get_json()
    direct = interventions.minimal_pair(demo, SENTENCE, SMALL)
    assert data["heads"] == as_json(direct["heads"]) and data["alignment"] == as_json(direct["alignment"])
    al = data["alignment"]
    # The sentences differ in their last word only: the tokens they share are the common start
    # and the common end, counted here from the two token lists.
    a, b = demo.encode(SENTENCE), demo.encode(SMALL)
    assert len(a) != len(b)
    start = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    end = next(i for i, (x, y) in enumerate(zip(a[::-1], b[::-1])) if x != y)
    pairs = [[i, i] for i in range(start)] + [[len(a) - end + i, len(b) - end + i] for i in range(end)]
    n = len(pairs)
    assert al["mode"] == "shared" and al["pairs"] == pairs and al["n_aligned"] == n
    assert f"the {n} tokens they share" in al["note"]
    ranked = [h["mean_change"] for h in data["heads"]]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == demo.config.n_layer * demo.config.n_head
    top = data["heads"][0]
    r = client.get(f"/api/runs/{handle}/pair/{data['b']['handle']}/diff?layer={top['layer']}&head={top['index']}")
    assert r.headers["X-Gpt2np-Alignment"] == "shared" and r.headers["X-Gpt2np-Tokens"] == str(n)
    ia, ib = (np.array(x) for x in zip(*pairs))
    pa = trace.pattern(top["layer"], top["index"])[np.ix_(ia, ia)]
    pb = demo.run(SMALL).pattern(top["layer"], top["index"])[np.ix_(ib, ib)]
    rows, cols = np.tril_indices(n)
    assert np.array_equal(decode_triangle(r.data, n)[rows, cols], quantize(np.abs(pa - pb)[rows, cols]))
    # Queries before the first difference see the same tokens: nothing changes there.
    assert (decode_triangle(r.data, n)[:start][np.tril_indices(start)] == 0).all()


def test_pair_errors(client, ran, demo):
    handle, _ = ran
    L = demo.config.n_layer
    url = f"/api/runs/{handle}/pair"
    assert "Sentence B is empty" in error_of(client.post(url, json={"text": ""}), 400)
    assert "Sentence B is empty" in error_of(client.post(url, json={"ids": []}), 400)
    assert "must match sentence A" in error_of(client.post(url, json={"text": SMALL, "bos": True}), 400)
    assert "Too many tokens" in error_of(client.post(url, json={"text": "a " * (demo.config.n_positions + 1)}), 400)
    assert "Unknown field" in error_of(client.post(url, json={"text": SMALL, "b": 1}), 400)
    assert "Content-Type: application/json" in error_of(
        client.post(url, data='{"text": "x"}', content_type="text/plain"), 415)
    assert "Unknown or expired run" in error_of(client.post("/api/runs/nope/pair", json={"text": SMALL}), 404)
    b = client.post(url, json={"text": SMALL}).get_json()["b"]["handle"]
    diff = f"/api/runs/{handle}/pair/{b}/diff"
    assert "Unknown or expired run" in error_of(client.get(f"/api/runs/{handle}/pair/nope/diff?layer=0&head=0"), 404)
    assert f"layer, a whole number from 0 to {L - 1}" in error_of(client.get(diff + f"?layer={L}&head=0"), 400)
    assert "Missing ?head=" in error_of(client.get(diff + "?layer=0"), 400)
    assert "POST" in error_of(client.get(url), 405)


def test_page_has_the_analysis_panels(client):
    html = client.get("/").get_data(as_text=True)
    for testid in ("heads-table", "findings", "ablation", "logit-lens", "pair", "ablate-heads", "ablate-run",
                   "lens-target", "pair-b", "pair-run", "findings-run"):
        assert f'data-testid="{testid}"' in html, testid
    for name in ("analysis.js", "headstable.js", "findings.js", "ablation.js", "lens.js", "pair.js"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "innerHTML" not in r.get_data(as_text=True)
