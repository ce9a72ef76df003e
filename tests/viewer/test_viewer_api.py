"""The viewer's JSON API through Flask's test_client: every endpoint, every error, the wire sizes.

Models: `small_model_dir` (2 layers × 3 heads, no tokenizer: ids only) and `small_tok_dir`, a small
model with the real GPT-2 tokenizer and a 1,024-token context (both in conftest.py; cheap: 48 dims).
"""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from apierrors import error_of
from demofacts import CARD, is_name

import gpt2np
from viewer import create_app
from viewer.answers.runs import trace_bytes
from viewer.answers.wire import quantize
from viewer.cli import main as cli_main

SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
STATIC = Path(__file__).resolve().parents[2] / "viewer" / "static"


@pytest.fixture(scope="module")
def app(small_tok_dir):
    return create_app({"MODEL": str(small_tok_dir)})


@pytest.fixture(scope="module")
def model(app):
    return app.extensions["gpt2np.model"]


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def ids_app(small_model_dir):
    return create_app({"MODEL": str(small_model_dir)})


@pytest.fixture(scope="module")
def ran(app):
    """A run of SENTENCE: (response JSON, the trace gpt2np gives for the same text)."""
    body = app.test_client().post("/api/run", json={"text": SENTENCE}).get_json()
    return body, app.extensions["gpt2np.model"].run(SENTENCE)


# -- page and model ---------------------------------------------------------------------------------
def test_page_shows_the_model_and_loads_only_local_files(client, model):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert 'data-testid="model-info"' in html and model.info.name in html
    assert f"{model.info.n_params / 1e6:.1f}M parameters" in html and model.info.origin in html
    for testid in ("sentence", "run", "layer", "head", "heatmap", "topk", "qk-panel", "ledger",
                   "overview", "next-token", "model-info"):
        assert f'data-testid="{testid}"' in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    # No URL to another host anywhere in the page or its static files (SVG's xmlns is a name).
    texts = [html] + [p.read_text() for p in STATIC.iterdir()]
    for text in texts:
        for url in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text):
            assert url == "http://www.w3.org/2000/svg", url
    for name in ("app.js", "viewer.css", "icon.svg", "heatmap.js"):
        assert client.get(f"/static/{name}").status_code == 200


def test_model_endpoint(client, model):
    info = client.get("/api/model").get_json()
    assert info["name"] == model.info.name and info["origin"] == model.info.origin
    assert info["n_params"] == model.info.n_params and info["describe"] == model.info.describe()
    assert (info["n_layer"], info["n_head"], info["d_head"], info["n_positions"]) == (2, 3, 16, 1024)
    assert info["has_tokenizer"] is True and info["kind"] == "local"


# -- runs ---------------------------------------------------------------------------------------------
def test_run_returns_tokens_ids_shapes_and_a_handle(client, ran):
    body, trace = ran
    T = len(trace.ids)
    assert body["tokens"] == trace.tokens and body["ids"] == trace.ids.tolist()
    assert body["tokens"][1] == " trophy"                      # leading space kept
    assert body["n_tokens"] == T and body["shapes"]["hook_pattern"] == [3, T, T]
    assert body["shapes"]["hook_q"] == [T, 3, 16]
    assert re.fullmatch(r"[0-9a-f]{20}", body["handle"])
    assert len(body["next_token"]["top"]) == 5 and body["next_token"]["position"] == T - 1
    again = client.post("/api/run", json={"text": SENTENCE}).get_json()
    assert again["handle"] == body["handle"] and again["cached"] is True
    assert client.get(f"/api/runs/{body['handle']}").get_json()["tokens"] == trace.tokens


def test_run_with_bos_and_with_ids(client, model):
    body = client.post("/api/run", json={"text": "Hello world", "bos": True}).get_json()
    assert body["tokens"][0] == "<|endoftext|>" and body["ids"][0] == 50256 and body["bos"] is True
    by_ids = client.post("/api/run", json={"ids": body["ids"][1:], "bos": True}).get_json()
    assert by_ids["handle"] == body["handle"]


def test_ids_only_model(ids_app):
    c = ids_app.test_client()
    body = c.post("/api/run", json={"ids": [5, 17, 42, 5, 17]}).get_json()
    assert body["tokens"] == ["<5>", "<17>", "<42>", "<5>", "<17>"]
    assert c.get("/api/model").get_json()["has_tokenizer"] is False
    msg = error_of(c.post("/api/run", json={"text": "hello"}), 400)
    assert "no tokenizer" in msg and "token ids" in msg


# -- one head, compact ----------------------------------------------------------------------------------
def lower_triangle(codes, T):
    """Decode the wire format into a [T, T] array of codes, 255 above the diagonal."""
    out = np.full((T, T), 255, dtype=np.uint8)
    out[np.tril_indices(T)] = np.frombuffer(codes, dtype=np.uint8)
    return out


def test_pattern_bytes_are_the_quantized_lower_triangle(client, ran):
    body, trace = ran
    T = body["n_tokens"]
    r = client.get(f"/api/runs/{body['handle']}/pattern?layer=1&head=2")
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    assert len(r.data) == T * (T + 1) // 2
    assert r.headers["X-Gpt2np-Tokens"] == str(T)
    assert r.headers["X-Gpt2np-Encoding"] == "u8-sqrt254-lower-triangle"
    codes = lower_triangle(r.data, T)
    p = trace["blocks.1.attn.hook_pattern"][2]
    rows, cols = np.tril_indices(T)
    assert np.array_equal(codes[rows, cols], quantize(p[rows, cols]))
    approx = (codes[rows, cols] / 254.0) ** 2
    assert np.max(np.abs(approx - p[rows, cols])) <= 2 / 254 + 1e-6


def test_one_head_at_1024_tokens_is_under_a_megabyte(client, model, record_property):
    ids = (np.arange(1024) * 37 % 50000).tolist()
    body = client.post("/api/run", json={"ids": ids}).get_json()
    assert body["n_tokens"] == 1024
    r = client.get(f"/api/runs/{body['handle']}/pattern?layer=0&head=0")
    n = len(r.data)
    record_property("bytes_per_head_at_1024", n)
    print(f"\nbytes per head at 1,024 tokens: {n:,}")
    assert n == 1024 * 1025 // 2 == 524_800 and n <= 1_000_000
    assert len(client.get(f"/api/runs/{body['handle']}/overview").data) == 2 * 3 * 32 * 32


def test_overview_is_every_head_in_one_request(client, ran):
    body, trace = ran
    T = body["n_tokens"]
    r = client.get(f"/api/runs/{body['handle']}/overview")
    S = int(r.headers["X-Gpt2np-Size"])
    assert S == min(T, 32) and r.headers["X-Gpt2np-Layers"] == "2" and r.headers["X-Gpt2np-Heads"] == "3"
    codes = np.frombuffer(r.data, dtype=np.uint8).reshape(2, 3, S, S)
    p = trace["blocks.1.attn.hook_pattern"]
    assert S == T                                           # short sentence: one cell per token
    masked = np.triu(np.ones((T, T), bool), 1)
    assert (codes[1][:, masked] == 255).all()
    assert np.array_equal(codes[1][:, ~masked], quantize(p[:, ~masked]))


# -- numbers from the trace --------------------------------------------------------------------------
def f32(text):
    return np.float32(text)


def test_query_panel_top5_and_qk_numbers_come_from_the_trace(client, ran):
    body, trace = ran
    h, layer, head, query = body["handle"], 1, 0, 9
    data = client.get(f"/api/runs/{h}/query?layer={layer}&head={head}&query={query}").get_json()
    p = trace[f"blocks.{layer}.attn.hook_pattern"][head, query]
    q = trace[f"blocks.{layer}.attn.hook_q"][query, head]
    k = trace[f"blocks.{layer}.attn.hook_k"][:, head]
    s = trace[f"blocks.{layer}.attn.hook_attn_scores"][head, query]
    expected = sorted(range(query + 1), key=lambda j: (-p[j], j))[:5]
    assert [e["position"] for e in data["keys"]] == expected
    assert data["query"] == {"position": 9, "token": " it", "id": int(trace.ids[9])}
    assert [f32(v) for v in data["q"]] == list(q)
    for e in data["keys"]:
        j = e["position"]
        assert e["token"] == trace.tokens[j]
        assert f32(e["p"]) == p[j] and f32(e["score"]) == s[j]   # exact float32
        assert [f32(v) for v in e["k"]] == list(k[j])
        assert f32(e["qk"]) == np.dot(q, k[j])
        assert abs(f32(e["scaled"]) - s[j]) <= 1e-5 * max(1, abs(s[j])) and e["mask"] == "0"
    sink = client.get(f"/api/runs/{h}/query?layer={layer}&head={head}&query={query}&ignore_sink=1").get_json()
    assert 0 not in [e["position"] for e in sink["keys"]]
    assert [e["position"] for e in sink["keys"]] == sorted(range(1, query + 1), key=lambda j: (-p[j], j))[:5]
    assert f32(sink["sink_p"]) == p[0]
    first = client.get(f"/api/runs/{h}/query?layer=0&head=0&query=0&ignore_sink=1").get_json()
    assert [e["position"] for e in first["keys"]] == [0] and first["keys"][0]["p"] == "1.0"


def test_query_panel_lists_only_keys_up_to_the_query(client, ran):
    """Query 0 has one key, query 2 three: the list holds exactly those, ranked by weight, with
    n_keys and a note saying there are fewer than 5; query 9 has 5 of its 10 and no note."""
    body, trace = ran
    h, layer, head = body["handle"], 1, 2
    p = trace[f"blocks.{layer}.attn.hook_pattern"][head]
    for query, ignore_sink, first_key in [(0, 0, 0), (0, 1, 0), (2, 0, 0), (2, 1, 1), (9, 0, 0), (9, 1, 1)]:
        data = client.get(f"/api/runs/{h}/query?layer={layer}&head={head}&query={query}"
                          f"&ignore_sink={ignore_sink}").get_json()
        visible = range(first_key, query + 1)
        assert data["k"] == 5 and data["n_keys"] == len(visible), (query, ignore_sink)
        assert [e["position"] for e in data["keys"]] == sorted(visible, key=lambda j: (-p[query, j], j))[:5]
        if len(visible) < 5:
            assert data["note"].startswith(f"only {len(visible)} key") and f"query {query}" in data["note"]
        else:
            assert data["note"] is None
    one = client.get(f"/api/runs/{h}/query?layer=0&head=0&query=0").get_json()
    assert [e["position"] for e in one["keys"]] == [0] and one["n_keys"] == 1
    assert one["note"] == "only 1 key precedes or equals query 0: the causal mask hides later ones"


def test_row_is_exact_float32(client, ran):
    body, trace = ran
    row = client.get(f"/api/runs/{body['handle']}/row?layer=0&head=1&query=6").get_json()
    assert [f32(v) for v in row["p"]] == list(trace["blocks.0.attn.hook_pattern"][1, 6, :7])


def test_ledger_walks_from_qk_to_the_heatmap_value(client, ran):
    body, trace = ran
    h, layer, head, query, key = body["handle"], 1, 2, 12, 3
    led = client.get(f"/api/runs/{h}/ledger?layer={layer}&head={head}&query={query}&key={key}").get_json()
    p = trace[f"blocks.{layer}.attn.hook_pattern"][head, query]
    s = trace[f"blocks.{layer}.attn.hook_attn_scores"][head, query]
    assert [st["op"] for st in led["steps"]] == ["q·k", "÷ √d_head", "+ mask", "− row max", "exp", "÷ row sum"]
    values = [f32(st["value"]) for st in led["steps"]]
    assert values[1] == values[0] / np.float32(4.0)              # √16
    mask_step = led["steps"][2]
    assert mask_step["operand"] == "0.0" and f32(mask_step["trace"]) == s[key]
    assert abs(values[2] - s[key]) <= 1e-5 * max(1, abs(s[key])) and led["scores_agree"]
    row_max = s.max()
    assert f32(led["steps"][3]["operand"]) == row_max and values[3] == s[key] - row_max
    assert values[4] == np.exp(s[key] - row_max)
    assert f32(led["steps"][5]["operand"]) == np.exp(s - row_max).sum()
    assert f32(led["p"]) == p[key] and f32(led["p_from_steps"]) == p[key] and led["p_equal"] is True
    row = client.get(f"/api/runs/{h}/row?layer={layer}&head={head}&query={query}").get_json()
    assert row["p"][key] == led["p"]                             # the same text the hover shows
    masked = client.get(f"/api/runs/{h}/ledger?layer={layer}&head={head}&query=2&key=7").get_json()
    assert masked["steps"][2]["operand"] == "-inf" and masked["steps"][2]["value"] == "-inf"
    assert masked["p"] == "0.0" and masked["p_equal"] is True


def test_next_token_top5_matches_the_logits(client, ran, model):
    body, trace = ran
    data = client.get(f"/api/runs/{body['handle']}/next?position=4").get_json()
    z = trace.logits[4].astype(np.float64)
    probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()        # float64, shown as float32
    top = np.argsort(-probs, kind="stable")[:5]
    assert [t["id"] for t in data["top"]] == top.tolist()
    assert [f32(t["p"]) for t in data["top"]] == list(probs[top].astype(np.float32))
    assert [t["token"] for t in data["top"]] == model.token_strings(top)
    assert data["position"] == 4 and data["token"] == trace.tokens[4]


def test_trace_npz_is_the_whole_trace(client, ran):
    body, trace = ran
    r = client.get(f"/api/runs/{body['handle']}/trace.npz")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    loaded = gpt2np.Trace.load(io.BytesIO(r.data))
    assert loaded.names() == trace.names() and loaded.tokens == trace.tokens
    for name in trace.names():
        assert np.array_equal(loaded[name], trace[name]), name


# -- errors ---------------------------------------------------------------------------------------------
def test_input_errors_are_json_400(client, model):
    assert "empty" in error_of(client.post("/api/run", json={"text": ""}), 400)
    msg = error_of(client.post("/api/run", json={"text": "a " * 1100}), 400)
    assert "Too many tokens" in msg and "1024" in msg
    assert "out of range" in error_of(client.post("/api/run", json={"ids": [1, 50257]}), 400)
    assert "non-empty" in error_of(client.post("/api/run", json={"ids": []}), 400)
    assert "whole numbers" in error_of(client.post("/api/run", json={"ids": [1, "2"]}), 400)
    assert "whole numbers" in error_of(client.post("/api/run", json={"ids": [True]}), 400)
    assert "string" in error_of(client.post("/api/run", json={"text": 5}), 400)
    assert "bos" in error_of(client.post("/api/run", json={"text": "a", "bos": "yes"}), 400)
    assert "JSON object" in error_of(client.post("/api/run", data="{not json",
                                                 content_type="application/json"), 400)
    assert "JSON object" in error_of(client.post("/api/run", json=["a list"]), 400)
    assert 'Give "text"' in error_of(client.post("/api/run", json={}), 400)
    assert "Content-Type: application/json" in error_of(
        client.post("/api/run", data='{"text": "a"}', content_type="text/plain"), 415)


def test_index_errors_say_the_valid_range(client, ran):
    h = ran[0]["handle"]
    T = ran[0]["n_tokens"]
    assert "layer, a whole number from 0 to 1" in error_of(client.get(f"/api/runs/{h}/pattern?layer=2&head=0"), 400)
    assert "head, a whole number from 0 to 2" in error_of(client.get(f"/api/runs/{h}/pattern?layer=0&head=-1"), 400)
    assert "Missing ?head=" in error_of(client.get(f"/api/runs/{h}/pattern?layer=0"), 400)
    assert "not a whole number" in error_of(client.get(f"/api/runs/{h}/pattern?layer=x&head=0"), 400)
    assert f"query position, a whole number from 0 to {T - 1}" in error_of(
        client.get(f"/api/runs/{h}/query?layer=0&head=0&query={T}"), 400)
    assert "?key=99 is out of range" in error_of(client.get(f"/api/runs/{h}/ledger?layer=0&head=0&query=1&key=99"), 400)
    assert "?position=-3 is out of range" in error_of(client.get(f"/api/runs/{h}/next?position=-3"), 400)
    assert "Missing ?query=" in error_of(client.get(f"/api/runs/{h}/row?layer=0&head=0"), 400)


def test_unknown_handle_route_method_and_size_errors(app, client):
    for what in ("", "/pattern?layer=0&head=0", "/overview", "/row?layer=0&head=0&query=0",
                 "/ledger?layer=0&head=0&query=0&key=0", "/next?position=0", "/trace.npz"):
        assert "Unknown or expired run" in error_of(client.get(f"/api/runs/0123456789abcdef0123{what}"), 404)
    assert "Not found" in error_of(client.get("/api/nothing"), 404)
    msg = error_of(client.get("/api/run"), 405)
    assert "POST" in msg
    error_of(client.delete("/api/model"), 405)
    big = json.dumps({"text": "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)})
    assert "too large" in error_of(client.post("/api/run", data=big, content_type="application/json"), 413)


def test_unexpected_errors_are_a_plain_json_500(app, client, ran, monkeypatch):
    import viewer.routes.api
    def boom(*a, **k):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(viewer.routes.api, "query_panel", boom)
    msg = error_of(client.get(f"/api/runs/{ran[0]['handle']}/query?layer=0&head=0&query=0"), 500)
    assert "secret internals" not in msg and "RuntimeError" in msg


# -- cache, factory, command line ----------------------------------------------------------------------
def test_cache_is_bounded_and_keeps_the_newest(small_tok_dir):
    app = create_app({"MODEL": str(small_tok_dir)})
    c = app.test_client()
    cache = app.extensions["gpt2np.runs"]
    first = c.post("/api/run", json={"text": "One sentence."}).get_json()["handle"]
    m = app.extensions["gpt2np.model"]          # room for the second's forward pass, not beside the first
    cache.max_bytes = trace_bytes(m.config, len(m.encode("Another sentence.")))
    second = c.post("/api/run", json={"text": "Another sentence."}).get_json()["handle"]
    assert len(cache) == 1 and second in cache and first not in cache
    assert c.get(f"/api/runs/{second}/overview").status_code == 200
    assert "Run the sentence again" in error_of(c.get(f"/api/runs/{first}/overview"), 404)
    roomy = create_app({"MODEL": str(small_tok_dir)})
    rc = roomy.test_client()
    cache = roomy.extensions["gpt2np.runs"]
    one = rc.post("/api/run", json={"text": "Sentence number 0 is here."}).get_json()["cache"]["bytes"]
    m = roomy.extensions["gpt2np.model"]       # a pass of such a sentence and about 3.5 runs beside it
    cache.max_bytes = trace_bytes(m.config, len(m.encode("Sentence number 10 is here."))) + int(one * 3.5)
    for n in range(1, 30):
        rc.post("/api/run", json={"text": f"Sentence number {n} is here."})
    assert 2 <= len(cache) <= 4 and cache.nbytes() <= cache.max_bytes


def test_create_app_defaults_and_env(monkeypatch, small_model_dir):
    monkeypatch.setenv("GPT2NP_MODEL", str(small_model_dir))
    app = create_app()
    assert app.config["MODEL"] == str(small_model_dir) and not app.debug
    assert app.config["MAX_CONTENT_LENGTH"] == 256 * 1024
    assert set(app.blueprints) == {"viewer", "analysis", "values", "corpus", "generation", "patching"}
    monkeypatch.delenv("GPT2NP_MODEL")
    from viewer import DEFAULTS
    assert DEFAULTS["MODEL"] == "demo"
    with pytest.raises(gpt2np.GPT2npError, match="Unknown model"):
        create_app({"MODEL": "no-such-model"})


def test_command_line(capsys, small_model_dir):
    app = cli_main(["--model", str(small_model_dir), "--port", "9123"], serve=False)
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:9123/" in out and small_model_dir.name in out and err == ""
    assert not app.debug
    cli_main(["--model", str(small_model_dir), "--host", "0.0.0.0"], serve=False)
    out, err = capsys.readouterr()
    assert "warning" in err and "0.0.0.0" in err and "http://0.0.0.0:8765/" in out
    with pytest.raises(SystemExit) as e:
        cli_main(["--model", "no-such-model"], serve=False)
    assert e.value.code == 2 and "Unknown model" in capsys.readouterr().err


def test_flask_cli_finds_the_app(small_model_dir):
    env = {"GPT2NP_MODEL": str(small_model_dir), "PATH": ""}
    r = subprocess.run([sys.executable, "-m", "flask", "--app", "viewer", "routes"], env=env,
                       capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr
    assert "/api/run" in r.stdout and "/api/runs/<handle>/ledger" in r.stdout


# -- the bundled demo model (gpt2np/demo) -------------------------------------------------------------
DEMO_SENTENCE = ("Mr. Darcy and Miss Bingley were walking in the garden when Elizabeth came in, "
                 "and her sister followed.")


def test_demo_model_is_labelled_not_gpt2(demo_app):
    c = demo_app.test_client()
    html = c.get("/").get_data(as_text=True)
    assert "demo model — not GPT-2" in html and f"{CARD['parameters'] / 1e6:.1f}M parameters" in html
    info = c.get("/api/model").get_json()
    assert info["name"] == "demo" and info["kind"] == "demo" and "not GPT-2" in info["origin"]
    m = CARD["model"]
    assert (info["n_layer"], info["n_head"], info["n_positions"]) == (m["n_layer"], m["n_head"], m["n_positions"])


def test_demo_next_token_knows_names_follow_a_title(demo_app):
    """Learned structure in the next-token panel: after 'Miss' the model expects a name (every
    one of its top 5 is a capitalised word), after 'the' it does not (none of its top 5 is)."""
    c = demo_app.test_client()
    body = c.post("/api/run", json={"text": "Mr. Darcy and Miss"}).get_json()
    top = [t["token"] for t in body["next_token"]["top"]]
    assert len(top) == 5 and all(map(is_name, top)), top
    assert c.get(f"/api/runs/{body['handle']}/next?position={body['n_tokens'] - 1}").get_json() == body["next_token"]
    control = c.post("/api/run", json={"text": "She walked into the"}).get_json()
    top = [t["token"] for t in control["next_token"]["top"]]
    assert len(top) == 5 and not any(map(is_name, top)), top


def test_demo_previous_token_head_shows_in_the_viewer(demo_app):
    """The model card's previous-token head is, in the viewer's exact rows, the head that puts the
    most weight on the previous token in an Austen sentence."""
    best = CARD["attention"]["best_prev_token"]
    c = demo_app.test_client()
    body = c.post("/api/run", json={"text": DEMO_SENTENCE}).get_json()
    h, T = body["handle"], body["n_tokens"]
    n_layer, n_head = CARD["model"]["n_layer"], CARD["model"]["n_head"]
    mass = np.zeros((n_layer, n_head))
    for layer in range(n_layer):
        for head in range(n_head):
            rows = [c.get(f"/api/runs/{h}/row?layer={layer}&head={head}&query={i}").get_json()["p"]
                    for i in range(1, T)]
            mass[layer, head] = np.mean([float(r[-2]) for r in rows])       # p[i, i-1]
    assert np.unravel_index(np.argmax(mass), mass.shape) == (best["layer"], best["index"])
    assert mass.max() > 1.5 * np.median(mass)
