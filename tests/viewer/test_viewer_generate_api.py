"""Generation in the viewer (viewer/routes/generation.py) through Flask's test_client, on the bundled demo
model: the sampling ledger and Generate.

The ledger's numbers are checked against `gpt2np.generate.distribution` applied here to the logits
of a full forward pass (`demo.run(ids).logits`, in float64), not to the row the server recomputes
from ln_final; the running sum and the ranks are summed here from a sort of those logits. Generate's
new run is checked against `demo.generate` with the same settings and seed.
"""

import numpy as np
import pytest
from apierrors import error_of

from gpt2np.generate import distribution

SENTENCE = "It is a truth universally acknowledged that a single man"
SETTINGS = [dict(temperature=1.0), dict(temperature=0.7, top_k=5), dict(temperature=1.3, top_p=0.6),
            dict(temperature=0.8, top_k=40, top_p=0.9)]


@pytest.fixture(scope="module")
def run(demo_app):
    return demo_app.test_client().post("/api/run", json={"text": SENTENCE}).get_json()


def query(settings):
    return "&".join(f"{k}={v}" for k, v in settings.items())


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("where", ["last", 3])
def test_ledger_equals_distribution_of_full_logits(client, run, demo, settings, where):
    position = run["n_tokens"] - 1 if where == "last" else where
    got = client.get(f"/api/runs/{run['handle']}/sample?position={position}&{query(settings)}").get_json()
    logits = demo.run(run["ids"]).logits[position].astype(np.float64)            # [V]
    d = distribution(logits, settings["temperature"], settings.get("top_k"), settings.get("top_p"))
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))              # most likely first
    running = np.cumsum(d["after_k"][order])
    assert got["position"] == position and got["token"] == run["tokens"][position]
    assert got["chosen"] is None                                                   # no seed, no draw
    assert got["n_kept"] == int(d["top_p"].sum())
    assert [c["id"] for c in got["candidates"]] == order[:10]
    for rank, c in enumerate(got["candidates"]):
        i = c["id"]
        assert c["rank"] == rank + 1
        assert abs(c["logit"] - logits[i]) < 1e-4
        assert abs(c["logit_t"] - logits[i] / settings["temperature"]) < 1e-4
        for name in ("p", "p_temperature", "p_draw"):
            assert abs(c[name] - d[name][i]) <= 1e-5 * d[name][i] + 1e-9, (name, c[name], d[name][i])
        # a sum of the p above, so held to their relative bound (an absolute 1e-6 failed at 0.387)
        assert abs(c["running_sum"] - running[rank]) <= 1e-5 * running[rank] + 1e-9
        assert c["top_k"] == bool(d["top_k"][i]) and c["top_p"] == bool(d["top_p"][i])


@pytest.mark.parametrize("seed", [0, 1, 7, 123456789])
def test_seeded_ledger_draws_what_the_seed_draws(client, run, demo, seed):
    settings = dict(temperature=1.2, top_k=50, top_p=0.95)
    got = client.get(f"/api/runs/{run['handle']}/sample?{query(settings)}&seed={seed}").get_json()
    d = distribution(demo.run(run["ids"]).logits[-1].astype(np.float64), **settings)
    expected = int(np.random.default_rng(seed).choice(len(d["p_draw"]), p=d["p_draw"]))
    assert got["chosen"]["id"] == expected
    assert got["settings"] == {**settings, "seed": seed, "greedy": False}


def test_greedy_ledger_takes_the_largest_logit(client, run, demo):
    got = client.get(f"/api/runs/{run['handle']}/sample?greedy=1&temperature=3").get_json()
    logits = demo.run(run["ids"]).logits[-1]
    assert got["chosen"]["id"] == int(np.argmax(logits)) == got["candidates"][0]["id"]
    assert got["n_kept"] == 1 and [c["top_k"] for c in got["candidates"]] == [True] + [False] * 9


@pytest.mark.parametrize("settings", [dict(temperature=0.9, top_k=20, seed=3),
                                      dict(temperature=1.5, top_p=0.8, seed=11), dict(greedy=True)])
@pytest.mark.parametrize("bos", [False, True])
def test_generate_equals_model_generate(client, demo, settings, bos):
    start = client.post("/api/run", json={"text": SENTENCE, "bos": bos}).get_json()
    got = client.post(f"/api/runs/{start['handle']}/generate", json={"tokens": 4, **settings})
    assert got.status_code == 200, got.data[:300]
    got = got.get_json()
    g = demo.generate(SENTENCE, max_new_tokens=4, bos=bos, **settings)
    assert got["ids"] == g.ids.tolist() and got["tokens"] == g.tokens
    assert got["n_tokens"] == len(g.ids) and got["bos"] is bos
    assert got["handle"] != start["handle"]
    assert got["text"] == demo.tokenizer.decode(g.ids[int(bos):])
    assert [s["chosen"]["id"] for s in got["generation"]["steps"]] == g.new_ids.tolist()
    assert got["generation"]["settings"] == g.settings and got["generation"]["stop"] == g.stop
    # The new run is an ordinary run: its summary, heatmap and next-token list answer.
    h, T = got["handle"], got["n_tokens"]
    assert client.get(f"/api/runs/{h}").get_json()["ids"] == g.ids.tolist()
    assert client.get(f"/api/runs/{h}/query?layer=0&head=0&query={T - 1}").status_code == 200
    pattern = client.get(f"/api/runs/{h}/pattern?layer=0&head=0")
    assert int(pattern.headers["X-Gpt2np-Tokens"]) == T


def test_generate_without_seed_reports_the_seed_it_drew(client, run, demo):
    got = client.post(f"/api/runs/{run['handle']}/generate", json={"tokens": 2}).get_json()
    seed = got["generation"]["settings"]["seed"]
    assert isinstance(seed, int)
    assert got["ids"] == demo.generate(SENTENCE, max_new_tokens=2, seed=seed).ids.tolist()


URL_BAD = [("temperature", "0"), ("temperature", "-1"), ("temperature", "nan"), ("temperature", "inf"),
           ("temperature", "1e999"), ("temperature", "abc"), ("temperature", "101"), ("temperature", "9" * 30),
           ("top_k", "0"), ("top_k", "1.5"), ("top_k", "99999999"), ("top_k", "-3"),
           ("top_p", "0"), ("top_p", "1.01"), ("top_p", "-0.5"), ("top_p", "x"),
           ("seed", "-1"), ("seed", "1.5"), ("seed", "99999999999999999999"), ("position", "999"),
           ("position", "-1")]


@pytest.mark.parametrize("name,value", URL_BAD)
def test_sample_refuses_bad_values_naming_the_field(client, run, name, value):
    message = error_of(client.get(f"/api/runs/{run['handle']}/sample?{name}={value}"))
    assert f"?{name}=" in message


BODY_BAD = [("tokens", 0), ("tokens", 65), ("tokens", "3"), ("tokens", 2.0), ("tokens", None),
            ("tokens", [3]), ("temperature", 0), ("temperature", -0.5), ("temperature", "0.8"),
            ("temperature", True), ("temperature", 1e300), ("top_k", 0), ("top_k", 3.5), ("top_k", 10**30),
            ("top_p", 0), ("top_p", 2), ("top_p", "all"), ("top_p", {}), ("seed", -1), ("seed", 1.0),
            ("seed", 2**64), ("seed", "7"), ("greedy", 1), ("greedy", "yes")]


@pytest.mark.parametrize("name,value", BODY_BAD)
def test_generate_refuses_bad_values_naming_the_field(client, run, name, value):
    body = {"tokens": 2, name: value}
    message = error_of(client.post(f"/api/runs/{run['handle']}/generate", json=body))
    assert f'"{name}"' in message


def test_generate_refuses_bad_bodies(client, run):
    url = f"/api/runs/{run['handle']}/generate"
    assert "unknown" in error_of(client.post(url, json={"tokens": 2, "temp": 1})).lower()
    assert "temp" in error_of(client.post(url, json={"tokens": 2, "temp": 1}))
    assert "not valid JSON" in error_of(client.post(url, data="{", content_type="application/json"))
    assert "JSON object" in error_of(client.post(url, json=[1, 2]))
    error_of(client.post(url, data="tokens=2"), 415)
    for body in ('{"tokens": 2, "temperature": NaN}', '{"tokens": 2, "top_p": Infinity}'):
        assert "not a finite number" in error_of(client.post(url, data=body, content_type="application/json"))
    error_of(client.post("/api/runs/nope/generate", json={"tokens": 2}), 404)
    error_of(client.get("/api/runs/nope/sample"), 404)


def test_generate_on_a_full_context_is_a_400(client, demo):
    n = demo.config.n_positions
    full = client.post("/api/run", json={"ids": [7] * n}).get_json()
    message = error_of(client.post(f"/api/runs/{full['handle']}/generate", json={"tokens": 1}))
    assert "context" in message
