"""The analysis panels' endpoints (viewer/analysis.py) through Flask's test_client: every number is
checked against a direct call of the gpt2np function the endpoint wraps, and every error is JSON.

Models: the bundled demo model (learned attention, 4 layers × 6 heads, its own 4,096-token
tokenizer), the GPT-2-layout model (12 × 12, random weights) for the 144-row table and the
published roles of GPT-2 small, a model without tokenizer, and one too short for the probe.
"""

import json

import numpy as np
import pytest

from gpt2np import findings, interventions
from modelfiles import small_config, write_model_dir
from viewer import create_app
from viewer.runs import MEMO_ENTRIES, run_handle
from viewer.wire import quantize

SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
SMALL = "The trophy doesn't fit in the suitcase because it is too small."
DARCY = "Mr. Darcy and Miss Bennet walked in the garden."          # 11 tokens each in the
BINGLEY = "Mr. Bingley and Miss Bennet walked in the garden."      # demo's tokenizer


def error_of(response, status):
    assert response.status_code == status, response.data[:300]
    assert response.is_json, response.data[:300]
    body = response.get_json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    return body["error"]


def as_json(data):
    """What a dict of Python values looks like after a trip through JSON (tuples -> lists)."""
    return json.loads(json.dumps(data))


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


@pytest.fixture(scope="module")
def demo_app():
    return create_app({"MODEL": "demo"})


@pytest.fixture(scope="module")
def demo(demo_app):
    return demo_app.extensions["gpt2np.model"]


@pytest.fixture()
def client(demo_app):
    return demo_app.test_client()


@pytest.fixture(scope="module")
def ran(demo_app):
    """SENTENCE run through the viewer: (its handle, the trace gpt2np gives for the same text)."""
    body = demo_app.test_client().post("/api/run", json={"text": SENTENCE}).get_json()
    return body["handle"], demo_app.extensions["gpt2np.model"].run(SENTENCE)


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
    assert len(data["heads"]) == n_heads and data["n_tokens"] == len(trace.ids) == 21
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
    for role in roles["roles"]:
        for h in role["heads"]:
            assert h["type"] == by_head[h["head"]]["type"] and h["verdict"] in ("holds", "does not hold")
            if role["role"] == "previous-token":
                assert h["value"] == by_head[h["head"]]["previous"]
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
    assert [p["verdict"] for p in data["predictions"]] == [
        "holds", "holds", "not applicable", "holds", "holds"]
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
    data = client.get(f"/api/runs/{handle}/lens?position=9&k=3").get_json()
    assert without(data, "handle", "k") == as_json(interventions.logit_lens(demo, trace, 9, 3))
    assert data["k"] == 3 and len(data["streams"]) == 4 + 1 and len(data["streams"][0]["top"]) == 3
    assert data["streams"][0]["label"] == "embeddings" and data["streams"][-1]["name"] == "blocks.3.hook_resid_post"
    # The last depth is the model's own prediction: its top-1 is the next-token panel's top-1.
    nxt = client.get(f"/api/runs/{handle}/next?position=9").get_json()
    assert data["streams"][-1]["top"][0]["id"] == nxt["top"][0]["id"] == data["target"]["id"]
    default = client.get(f"/api/runs/{handle}/lens").get_json()
    assert default["position"] == 20 and default["k"] == 5
    assert without(default, "handle", "k") == as_json(interventions.logit_lens(demo, trace, -1, 5))
    by_text = client.get(f"/api/runs/{handle}/lens?position=9&target=%20the").get_json()
    by_id = client.get(f"/api/runs/{handle}/lens?position=9&target_id=266").get_json()
    assert by_text == by_id and by_text["target"] == {"token": " the", "id": 266}
    assert without(by_text, "handle", "k") == as_json(interventions.logit_lens(demo, trace, 9, 5, " the"))


def test_lens_errors(client, ran):
    handle, _ = ran
    url = f"/api/runs/{handle}/lens"
    assert "not one" in error_of(client.get(url + "?target=%20big"), 400)      # ' b' + 'ig' in the demo
    assert "0 to 4095" in error_of(client.get(url + "?target_id=4096"), 400)
    assert "not both" in error_of(client.get(url + "?target=%20the&target_id=266"), 400)
    assert "characters long" in error_of(client.get(url + "?target=" + "x" * 500), 400)
    for k in ("0", "21", "x", "1.5"):
        assert "from 1 to 20" in error_of(client.get(url + f"?k={k}"), 400)
    assert "position, a whole number from 0 to 20" in error_of(client.get(url + "?position=21"), 400)
    assert "Unknown or expired run" in error_of(client.get("/api/runs/nope/lens"), 404)


# -- ablation -------------------------------------------------------------------------------------
def test_ablate_is_interventions_ablate(client, ran, demo):
    handle, _ = ran
    body = {"heads": "2.5 1.1", "mode": "mean", "position": 9, "token": " the"}
    data = client.post(f"/api/runs/{handle}/ablate", json=body).get_json()
    direct = interventions.ablate(demo, SENTENCE, ["1.1", "2.5"], "mean", token=" the", position=9)
    assert without(data, "handle") == as_json(direct)
    assert data["heads"] == ["1.1", "2.5"] and data["after_token"] == " in" and data["position"] == 9
    t = data["token"]
    assert t["id"] == 266 and t["delta"] == t["p_after"] - t["p_before"]
    # The top-5 before is the next-token panel's top-5 at that position (float64 vs float32).
    nxt = client.get(f"/api/runs/{handle}/next?position=9").get_json()
    assert [x["id"] for x in data["before"]] == [x["id"] for x in nxt["top"]]
    assert all(abs(x["p"] - float(y["p"])) < 1e-6 for x, y in zip(data["before"], nxt["top"]))
    # The same ablation asked differently (a list, an id, commas) is the same result.
    again = client.post(f"/api/runs/{handle}/ablate", json={**body, "heads": ["1.1", "2.5"], "token": 266})
    assert again.get_json() == data
    zero = client.post(f"/api/runs/{handle}/ablate", json={"heads": "3.0,3.1"}).get_json()
    direct = interventions.ablate(demo, SENTENCE, "3.0,3.1", "zero")
    assert without(zero, "handle") == as_json(direct) and zero["position"] == 20 and zero["token"] is None


def test_ablate_errors(client, ran, demo):
    handle, _ = ran
    url = f"/api/runs/{handle}/ablate"
    post = lambda body: client.post(url, json=body)  # noqa: E731
    L, H = demo.config.n_layer, demo.config.n_head
    assert "There is no head 13.2" in error_of(post({"heads": "13.2"}), 400)
    assert f"layers 0–{L - 1} and heads 0–{H - 1}" in error_of(post({"heads": f"1.{H}"}), 400)
    assert "Cannot read the head 'x'" in error_of(post({"heads": "x"}), 400)
    assert "Cannot read the head '5'" in error_of(post({"heads": "5"}), 400)
    assert "No heads given" in error_of(post({"heads": " "}), 400)
    assert "No heads given" in error_of(post({"heads": []}), 400)
    assert '"heads" must be text' in error_of(post({"heads": 5}), 400)
    assert "LAYER.HEAD" in error_of(post({"heads": "1." + "1" * 500}), 400)
    assert 'Give "heads"' in error_of(post({"mode": "zero"}), 400)
    assert '"mode"' in error_of(post({"heads": "1.1", "mode": "half"}), 400)
    assert "from 0 to 20" in error_of(post({"heads": "1.1", "position": 21}), 400)
    assert "from 0 to 20" in error_of(post({"heads": "1.1", "position": "3"}), 400)
    assert "from 1 to 20" in error_of(post({"heads": "1.1", "k": 0}), 400)
    assert "not one" in error_of(post({"heads": "1.1", "token": " big"}), 400)
    assert "out of range" in error_of(post({"heads": "1.1", "token": 4096}), 400)
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
    import viewer.runs
    assert MEMO_ENTRIES == 16
    monkeypatch.setattr(viewer.runs, "MEMO_ENTRIES", 3)
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
    a = client.post("/api/run", json={"text": DARCY}).get_json()
    data = client.post(f"/api/runs/{a['handle']}/pair", json={"text": BINGLEY}).get_json()
    direct = interventions.minimal_pair(demo, DARCY, BINGLEY)
    assert data["heads"] == as_json(direct["heads"]) and data["alignment"] == as_json(direct["alignment"])
    assert data["alignment"]["mode"] == "positional" and data["alignment"]["first_difference"] == 2
    assert data["alignment"]["note"].startswith("same number of tokens (11)")
    assert data["a"]["handle"] == a["handle"] and data["a"]["tokens"] == direct["a"]["tokens"]
    assert data["b"]["tokens"] == direct["b"]["tokens"] and data["b"]["tokens"][2] == " Bingley"
    assert data["b"]["handle"] == run_handle(demo, direct["b"]["ids"], False)
    assert [t["id"] for t in data["b"]["next"]] == [t["id"] for t in direct["b"]["next"]]
    assert client.get(f"/api/runs/{data['b']['handle']}").status_code == 200    # B is a run too
    # |A − B| of the top head: the aligned cells of both patterns, quantized like a heatmap.
    top = data["heads"][0]
    r = client.get(f"/api/runs/{a['handle']}/pair/{data['b']['handle']}/diff?layer={top['layer']}&head={top['index']}")
    assert r.status_code == 200 and r.headers["X-Gpt2np-Alignment"] == "positional"
    assert r.headers["X-Gpt2np-Tokens"] == "11" and len(r.data) == 11 * 12 // 2
    pa = demo.run(DARCY).pattern(top["layer"], top["index"])
    pb = demo.run(BINGLEY).pattern(top["layer"], top["index"])
    rows, cols = np.tril_indices(11)
    assert np.array_equal(decode_triangle(r.data, 11)[rows, cols], quantize(np.abs(pa - pb)[rows, cols]))
    assert (decode_triangle(r.data, 11)[:2][np.tril_indices(2)] == 0).all()     # before the change


def test_pair_with_different_lengths_compares_shared_tokens(client, ran, demo):
    handle, trace = ran
    data = client.post(f"/api/runs/{handle}/pair", json={"text": SMALL}).get_json()
    direct = interventions.minimal_pair(demo, SENTENCE, SMALL)
    assert data["heads"] == as_json(direct["heads"]) and data["alignment"] == as_json(direct["alignment"])
    al = data["alignment"]
    assert al["mode"] == "shared" and al["n_aligned"] == 19 and "the 19 tokens they share" in al["note"]
    ranked = [h["mean_change"] for h in data["heads"]]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == demo.config.n_layer * demo.config.n_head
    top = data["heads"][0]
    r = client.get(f"/api/runs/{handle}/pair/{data['b']['handle']}/diff?layer={top['layer']}&head={top['index']}")
    assert r.headers["X-Gpt2np-Alignment"] == "shared" and r.headers["X-Gpt2np-Tokens"] == "19"
    ia, ib = (np.array(x) for x in zip(*al["pairs"]))
    pa = trace.pattern(top["layer"], top["index"])[np.ix_(ia, ia)]
    pb = demo.run(SMALL).pattern(top["layer"], top["index"])[np.ix_(ib, ib)]
    rows, cols = np.tril_indices(19)
    assert np.array_equal(decode_triangle(r.data, 19)[rows, cols], quantize(np.abs(pa - pb)[rows, cols]))
    # Queries before the first difference see the same tokens: nothing changes there.
    assert (decode_triangle(r.data, 19)[:18][np.tril_indices(18)] == 0).all()


def test_pair_errors(client, ran):
    handle, _ = ran
    url = f"/api/runs/{handle}/pair"
    assert "Sentence B is empty" in error_of(client.post(url, json={"text": ""}), 400)
    assert "Sentence B is empty" in error_of(client.post(url, json={"ids": []}), 400)
    assert "must match sentence A" in error_of(client.post(url, json={"text": SMALL, "bos": True}), 400)
    assert "Too many tokens" in error_of(client.post(url, json={"text": "a " * 300}), 400)
    assert "Unknown field" in error_of(client.post(url, json={"text": SMALL, "b": 1}), 400)
    assert "Content-Type: application/json" in error_of(
        client.post(url, data='{"text": "x"}', content_type="text/plain"), 415)
    assert "Unknown or expired run" in error_of(client.post("/api/runs/nope/pair", json={"text": SMALL}), 404)
    b = client.post(url, json={"text": SMALL}).get_json()["b"]["handle"]
    diff = f"/api/runs/{handle}/pair/{b}/diff"
    assert "Unknown or expired run" in error_of(client.get(f"/api/runs/{handle}/pair/nope/diff?layer=0&head=0"), 404)
    assert "layer, a whole number from 0 to 3" in error_of(client.get(diff + "?layer=4&head=0"), 400)
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
