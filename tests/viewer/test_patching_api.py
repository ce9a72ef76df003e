"""POST /api/runs/<h>/patch (viewer/routes/patching.py) through Flask's test client and through a
real socket: the streamed result equals gpt2np.analysis.patching.patch on the same ids (the demo
model, the pair its card names), every bad field is a JSON 400 naming it, a pair of different
token counts is a 400 with both tokenizations, and a sweep stops when it is cancelled or its
client goes away."""

import json
import socket
import threading

import numpy as np
import pytest
from apierrors import error_of
from demofacts import CARD, card_head, head_name
from werkzeug.serving import make_server

from gpt2np.analysis import patching as library
from gpt2np.analysis.patching import SITES, PatchingCancelled
from viewer.routes import patching as route

PAIR = CARD["examples"]["pair"]
SENTENCE = PAIR["clean"]
HEAD = head_name(*card_head("best_prev_token"))


def events(response):
    assert response.status_code == 200, response.data[:300]
    assert response.mimetype == "application/x-ndjson"
    return [json.loads(line) for line in response.get_data().splitlines()]


def body(**change):
    return {**{"corrupted": PAIR["corrupted"], "answer": PAIR["answer"], "versus": PAIR["versus"]}, **change}


def test_result_equals_the_library_on_the_cards_pair(client, demo, ran):
    handle, _ = ran
    lines = events(client.post(f"/api/runs/{handle}/patch", json=body(head=HEAD)))
    start, progress, result = lines[0], lines[1:-1], lines[-1]
    expected = library.patch(demo, SENTENCE, PAIR["corrupted"], PAIR["answer"], PAIR["versus"], head=HEAD)

    assert start["event"] == "start" and result["event"] == "result"
    assert start["clean_tokens"] == expected.clean_tokens and start["corrupted_tokens"] == expected.corrupted_tokens
    assert start["differ"] == [t for t, (a, b) in enumerate(zip(demo.encode(SENTENCE), demo.encode(PAIR["corrupted"])))
                               if a != b] != []
    assert result["ld_clean"] == expected.ld_clean and result["ld_corrupted"] == expected.ld_corrupted
    assert list(result["grids"]) == [*SITES, "z_position"] == list(expected.grids)
    for site, grid in expected.grids.items():
        got = result["grids"][site]
        assert got["rows"] == grid.rows and got["columns"] == grid.columns, site
        np.testing.assert_array_equal(np.array(got["ld"]), grid.ld, err_msg=site)
        np.testing.assert_array_equal(np.array(got["normalized"]), grid.normalized, err_msg=site)
    assert result["grids"]["z_position"]["rows"] == [HEAD]
    # progress lines count the patched runs up to the total (the latest count: some may be skipped)
    total = sum(g.ld.size for g in expected.grids.values())
    counted = [p["done"] for p in progress if p["total"] is not None]
    assert counted[-1] == total and counted == sorted(counted) and len(counted) > 1
    assert all(p["event"] == "progress" and p["total"] in (None, total) for p in progress)


def test_sites_position_and_token_ids(client, demo, ran):
    handle, _ = ran
    a, v = demo.encode(PAIR["answer"])[0], demo.encode(PAIR["versus"])[0]
    clean, corrupted = demo.encode(SENTENCE), demo.encode(PAIR["corrupted"])
    position = next(t for t, (x, y) in enumerate(zip(clean, corrupted)) if x != y)   # the first that differs
    lines = events(client.post(f"/api/runs/{handle}/patch",
                               json=body(answer=a, versus=v, sites="mlp_out z", position=position)))
    expected = library.patch(demo, SENTENCE, PAIR["corrupted"], a, v, sites=["mlp_out", "z"],
                             position=position - len(clean))           # the same position, from the end
    result = lines[-1]
    assert list(result["grids"]) == ["mlp_out", "z"]
    assert result["position"] == expected.position == position
    for site in ("mlp_out", "z"):
        np.testing.assert_array_equal(np.array(result["grids"][site]["ld"]), expected.grids[site].ld)


def test_different_token_counts_show_both_tokenizations(client, demo, ran):
    handle, _ = ran
    longer = PAIR["corrupted"] + " and then"
    response = client.post(f"/api/runs/{handle}/patch", json=body(corrupted=longer))
    message = error_of(response)
    data = response.get_json()
    assert data["clean_tokens"] == demo.token_strings(demo.encode(SENTENCE))
    assert data["corrupted_tokens"] == demo.token_strings(demo.encode(longer))
    n, m = len(data["clean_tokens"]), len(data["corrupted_tokens"])
    assert n != m and f"has {m} tokens" in message and f"{n}" in message
    assert all(repr(t) in message for t in data["corrupted_tokens"])


@pytest.mark.parametrize("change, words", [
    ({"colour": 1}, "Unknown field 'colour'"),
    ({"corrupted": None}, '"corrupted"'),
    ({"corrupted": "   "}, '"corrupted" is empty'),
    ({"corrupted": 7}, '"corrupted"'),
    ({"answer": None}, 'Give "answer"'),
    ({"versus": " she and he"}, '"versus":'),
    ({"answer": ["he"]}, '"answer":'),
    ({"versus": PAIR["answer"]}, "the same token"),
    ({"sites": ["resid_pre", "bogus"]}, "\"sites\": Unknown patching site 'bogus'"),
    ({"sites": 3}, '"sites" must be a list'),
    ({"sites": []}, '"sites": No patching site given'),
    ({"sites": ["z_position"]}, "say which head"),
    ({"head": "99.0"}, '"head": '),
    ({"head": "0.0 0.1"}, '"head": Give one head'),
    ({"head": 5}, '"head" must be text'),
    ({"position": 999}, '"position": 999 is out of range'),
    ({"position": "1"}, '"position": "1" is not a whole number'),
])
def test_every_bad_field_is_a_400_that_names_it(client, ran, change, words):
    handle, _ = ran
    message = error_of(client.post(f"/api/runs/{handle}/patch",
                                   json={k: v for k, v in body(**change).items() if v is not None}))
    assert words in message


def test_not_json_unknown_run_and_get(client, ran):
    handle, _ = ran
    assert "JSON" in error_of(client.post(f"/api/runs/{handle}/patch", data="corrupted=x"), 415)
    assert "Unknown or expired run" in error_of(client.post("/api/runs/nope/patch", json=body()), 404)
    error_of(client.get(f"/api/runs/{handle}/patch"), 405)


@pytest.fixture()
def held_after_first_run(monkeypatch):
    """The route's `patch`, wrapped: after its first patched run it waits (up to 60 s) until
    `cancel()` says stop, so the test decides when; it records how it ended."""
    seen = {"done": [], "ended": threading.Event()}

    def wrapped(*a, progress, cancel, **kw):
        def watch(done, total):
            progress(done, total)
            seen["done"].append(done)
            seen["total"] = total
            if done == 1:
                for _ in range(6000):
                    if cancel():
                        break
                    threading.Event().wait(0.01)
        try:
            return library.patch(*a, progress=watch, cancel=cancel, **kw)
        except PatchingCancelled as e:
            seen["cancelled"] = e
            raise
        finally:
            seen["ended"].set()
    monkeypatch.setattr(route, "patch", wrapped)
    return seen


def test_closing_the_response_stops_the_sweep(demo_app, client, ran, held_after_first_run):
    handle, _ = ran
    response = client.post(f"/api/runs/{handle}/patch", json=body(), buffered=False)
    stream = iter(response.response)
    first = json.loads(next(stream))
    assert first["event"] == "start"
    while json.loads(next(stream))["done"] < 1:
        pass
    response.close()                                     # what Werkzeug does when the client is gone
    seen = held_after_first_run
    assert seen["ended"].is_set() and "cancelled" in seen
    assert seen["done"] == [1] and seen["total"] > 1    # not one patched run after the cancel
    assert demo_app.extensions["gpt2np.gate"].load() == (0, 0)       # the model's slot given back


def test_a_client_that_goes_away_stops_the_sweep(demo_app, ran, held_after_first_run):
    handle, _ = ran
    server = make_server("127.0.0.1", 0, demo_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        payload = json.dumps(body()).encode()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(f"POST /api/runs/{handle}/patch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        reader = sock.makefile("rb")
        assert reader.readline().split()[1] == b"200"
        lines = (line for line in reader if line.strip().startswith(b"{"))   # past the headers and chunk sizes
        assert json.loads(next(lines))["event"] == "start"
        while json.loads(next(lines))["done"] < 1:
            pass
        reader.close()
        sock.close()                                     # the client goes away mid-sweep
        seen = held_after_first_run
        assert seen["ended"].wait(30), "the sweep did not stop after its client went away"
        assert "cancelled" in seen and seen["done"] == [1]
        for _ in range(100):                             # the stream ends, then the slot is free
            if demo_app.extensions["gpt2np.gate"].load() == (0, 0):
                break
            threading.Event().wait(0.05)
        assert demo_app.extensions["gpt2np.gate"].load() == (0, 0)
    finally:
        server.shutdown()


def test_z_position_of_one_head_as_the_page_asks(client, demo, ran):
    handle, _ = ran
    asked = body(sites=["attn_out", "z_position"], head=HEAD)
    result = events(client.post(f"/api/runs/{handle}/patch", json=asked))[-1]
    expected = library.patch(demo, SENTENCE, PAIR["corrupted"], PAIR["answer"], PAIR["versus"],
                             sites=["attn_out", "z_position"], head=HEAD)
    assert list(result["grids"]) == ["attn_out", "z_position"] and result["grids"]["z_position"]["rows"] == [HEAD]
    np.testing.assert_array_equal(np.array(result["grids"]["z_position"]["ld"]), expected.grids["z_position"].ld)


def test_busy_model_is_a_503_before_anything_runs(demo_app, client, ran, monkeypatch):
    handle, _ = ran
    monkeypatch.setattr(demo_app.extensions["gpt2np.gate"], "max_waiting", 0)
    with demo_app.extensions["gpt2np.gate"].slot():                   # another request has the model
        assert "busy" in error_of(client.post(f"/api/runs/{handle}/patch", json=body()), 503)
