"""Hardening of the viewer's API (Flask test_client): hostile text, malformed bodies, a fuzz run.

Every answer must be a 2xx with a correct payload, or a JSON 4xx {"error": readable message,
"status": code}; never a 5xx, never a traceback. Each input is counted (hostile.record) and the
counts are printed at the end of the run ("hardening: hostile inputs and figures").

Models: `small_text_model_dir` (2 layers × 4 heads × 64 dims, context 64, GPT-2's tokenizer).
"""

import json
import threading
from urllib.parse import quote, urlencode, urlparse

import numpy as np
import pytest
from hostile import (
    INVALID_UTF8,
    JSON_LONE_SURROGATES,
    LONE_SURROGATES,
    hostile_texts,
    named_text_cases,
    one_megabyte_text,
    record,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from viewer import create_app
from viewer.answers.runs import RunCache, trace_bytes
from viewer.answers.wire import lower_triangle_bytes

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])



@pytest.fixture(scope="module")
def app(small_text_model_dir):
    return create_app({"MODEL": str(small_text_model_dir)})


@pytest.fixture(scope="module")
def model(app):
    return app.extensions["gpt2np.model"]


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def verdict(r):
    """'ok' for a 2xx/3xx; 'refused' for a well-formed JSON 4xx; raises AssertionError otherwise.
    A 5xx, a non-JSON error, an empty or non-string message, or a traceback fails."""
    text = r.get_data(as_text=True) if r.status_code >= 400 else ""
    assert r.status_code < 500, f"5xx {r.status_code}: {r.data[:300]!r}"
    assert "Traceback" not in text and 'File "' not in text, f"Traceback in the body: {text[:300]}"
    if r.status_code < 400:
        return "ok"
    assert r.is_json, (r.status_code, r.content_type, r.data[:300])
    if r.request.method == "HEAD":                     # headers only
        return "refused"
    body = r.get_json()
    assert set(body) == {"error", "status"} and body["status"] == r.status_code, body
    assert isinstance(body["error"], str) and 10 <= len(body["error"]) <= 600, body
    return "refused"


def tally(channel, category, outcomes):
    """outcomes: list of 'ok' / 'refused' / ('bad', detail). Records, then asserts no 'bad'."""
    bad = [o for o in outcomes if o not in ("ok", "refused")]
    record(channel, category, accepted=outcomes.count("ok"), refused=outcomes.count("refused"),
           failed=len(bad), five_xx=sum(1 for o in bad if "5xx" in str(o)),
           tracebacks=sum(1 for o in bad if "Traceback" in str(o)))
    assert bad == [], bad[:5]
    return len(outcomes)


def outcome(check, *args):
    """Run a check; an AssertionError becomes ('bad', detail) so that the tally still counts it."""
    try:
        return check(*args)
    except AssertionError as e:
        return ("bad", str(e)[:300])


def post_json(client, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/run", data=data, content_type=content_type)


# -- hostile text through POST /api/run -------------------------------------------------------------
def test_hostile_texts_through_the_api(client, model):
    """The ~210 hostile texts of tests/support/hostile.py, with and without <|endoftext|> first: each runs
    (tokens and ids are the tokenizer's, the heatmap bytes are the trace's) or is refused because
    it has more tokens than the context (the message gives the count and the limit)."""
    n_ctx, L, H = model.config.n_positions, model.config.n_layer, model.config.n_head
    outcomes = []

    def check(text, bos):
        r = post_json(client, {"text": text, "bos": bos})
        v = verdict(r)
        ids = model.encode(text, bos=bos)
        if v == "refused":
            msg = r.get_json()["error"]
            assert r.status_code == 400 and len(ids) > n_ctx, (text, msg)
            assert f"Too many tokens: {len(ids)}" in msg and f"context of {n_ctx} tokens" in msg, msg
            return v
        body = r.get_json()
        assert body["ids"] == ids and body["tokens"] == model.token_strings(ids), text
        layer, head = len(ids) % L, len(ids) % H
        pattern = client.get(f"/api/runs/{body['handle']}/pattern?layer={layer}&head={head}")
        assert verdict(pattern) == "ok"
        assert pattern.data == lower_triangle_bytes(model.run(ids).pattern(layer, head)), text
        return v

    for text in hostile_texts():
        for bos in (False, True):
            outcomes.append(outcome(check, text, bos))
    n = tally("api", "hostile texts, POST /api/run", outcomes)
    print(f"\n{n} hostile texts through POST /api/run: {outcomes.count('ok')} ran, "
          f"{outcomes.count('refused')} refused (too many tokens)")
    assert outcomes.count("ok") > 300


def test_lone_surrogates_and_invalid_utf8_are_refused_clearly(client):
    """JSON may carry lone surrogates as \\ud800 escapes; raw bodies may hold bytes that are not
    UTF-8. Both are a 400 that says so, never a 500."""
    outcomes = []

    def refused_saying(body, *phrases, content_type="application/json"):
        r = post_json(client, body, content_type)
        assert verdict(r) == "refused" and r.status_code == 400, r.data
        msg = r.get_json()["error"]
        assert all(any(alt in msg for alt in p.split("|")) for p in phrases), msg
        return "refused"

    for escaped in JSON_LONE_SURROGATES:
        outcomes.append(outcome(refused_saying, f'{{"text": {escaped}}}', "not valid Unicode"))
        outcomes.append(outcome(refused_saying, f'{{"text": {escaped}, "bos": true}}', "not valid Unicode"))
    for text in LONE_SURROGATES:                       # json.dumps writes them as \\udXXX escapes
        outcomes.append(outcome(refused_saying, {"text": text}, "not valid Unicode"))
    for raw in INVALID_UTF8:
        # \xed\xa0\x80 is a surrogate encoded in UTF-8: Python's JSON decoder lets it through as a
        # lone surrogate, which the text check then refuses.
        outcomes.append(outcome(refused_saying, b'{"text": "' + raw + b'"}',
                                "not valid JSON|not valid Unicode", "utf-8|lone surrogate"))
        outcomes.append(outcome(refused_saying, b'{"text": "ok", "bos": false}' + raw, "not valid JSON"))
        outcomes.append(outcome(refused_saying, raw, "not valid JSON"))   # (\xff\xfe reads as UTF-16)
    for raw in (b'{"text": "a\x00b"}', b'{"text": "tab\there"}', b'{"text": "new\nline"}'):
        outcomes.append(outcome(refused_saying, raw, "not valid JSON", "control character"))
    n = tally("api", "lone surrogates, invalid UTF-8 bodies", outcomes)
    # The same characters, correctly escaped, run: a valid pair is fine, NUL is fine.
    for good in ('{"text": "\\ud83d\\ude42"}', '{"text": "a\\u0000b"}', '{"text": "tab\\there"}'):
        r = post_json(client, good)
        assert r.status_code == 200, r.data
    print(f"\n{n} lone-surrogate / invalid-UTF-8 / raw-control bodies: all refused with a 400 that says why")


def test_one_megabyte_and_other_huge_bodies(app, client, model):
    """1 MB of text: 413 (the body limit is 256 KB; documented). Just under the limit: a 400 that
    gives the token count and the context. Deep nesting: a 400, not a RecursionError 500."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    outcomes = []

    def status_saying(body, status, *phrases):
        r = post_json(client, body)
        v = verdict(r)
        assert r.status_code == status, (r.status_code, r.data[:200])
        assert all(p in r.get_json()["error"] for p in phrases), r.get_json()
        return v

    mb = one_megabyte_text()
    outcomes.append(outcome(status_saying, {"text": mb}, 413, "too large", str(limit)))
    outcomes.append(outcome(status_saying, {"ids": [1] * 300_000}, 413, "too large"))
    outcomes.append(outcome(status_saying, b"x" * (limit + 1), 413, "too large"))
    under = mb[: limit - 100]
    n_tokens = len(model.tokenizer.encode(under))
    outcomes.append(outcome(status_saying, {"text": under}, 400, f"Too many tokens: {n_tokens}",
                            f"context of {model.config.n_positions} tokens"))
    for depth in (1_000, 100_000, limit - 10):
        outcomes.append(outcome(status_saying, "[" * depth, 400, "nested too deeply"))
        outcomes.append(outcome(status_saying, '{"ids": ' + "[" * depth, 400))
    outcomes.append(outcome(status_saying, '{"text": "' + "\\ud800" * 40_000 + '"}', 400, "not valid Unicode"))
    outcomes.append(outcome(status_saying, {"text": "word " * 50_000}, 400, "Too many tokens: 50001"))
    outcomes.append(outcome(status_saying, {"ids": list(range(65))}, 400, "Too many tokens: 65", "context of 64"))
    n = tally("api", "1 MB and huge bodies", outcomes)
    print(f"\n{n} huge bodies: 1 MB of text -> 413 (limit {limit:,} bytes); under the limit -> 400 "
          f"'Too many tokens: {n_tokens:,}'")


FIELD_CASES = [                      # (body, phrase of the 400 message)
    ({}, 'Give "text"'), ({"bos": True}, 'Give "text"'), ({"text": None}, '"text" must be a string'),
    ({"text": "hi", "bso": True}, "Unknown field 'bso'"), ({"text": "hi", "extra": 1, "more": 2}, "Unknown fields"),
    ({"Text": "hi"}, "Unknown field 'Text'"), ({"text": "hi", "ids": [1, 2]}, "not both"),
    ({"text": 5}, "must be a string"), ({"text": 1.5}, "must be a string"), ({"text": ["a", "b"]}, "must be a string"),
    ({"text": {"t": "a"}}, "must be a string"), ({"text": True}, "must be a string"),
    ({"ids": "464 318"}, "list of whole numbers"), ({"ids": [464.0]}, "list of whole numbers"),
    ({"ids": [[464]]}, "list of whole numbers"), ({"ids": [None]}, "list of whole numbers"),
    ({"ids": [True, 1]}, "list of whole numbers"), ({"ids": {"0": 464}}, "list of whole numbers"),
    ({"ids": 464}, "list of whole numbers"), ({"ids": ["464"]}, "list of whole numbers"),
    ({"ids": [-1]}, "Token id -1 is out of range"), ({"ids": [50257]}, "Token id 50257 is out of range"),
    ({"ids": [2**63]}, "out of range"), ({"ids": [-2**70]}, "out of range"),
    ({"ids": [10**400]}, "of 1329 bits is out of range"),
    ({"ids": []}, "non-empty"), ({"text": "hi", "bos": "yes"}, '"bos" must be true or false'),
    ({"text": "hi", "bos": 1}, '"bos" must be true or false'),
    ({"text": "hi", "bos": None}, '"bos" must be true or false'),
]


def test_missing_extra_and_wrong_typed_fields(client):
    """Each field missing, misspelt, doubled or of the wrong type: a 400 that names the problem."""
    outcomes = []

    def check(body, phrase):
        r = post_json(client, body)
        assert verdict(r) == "refused" and r.status_code == 400, (body, r.status_code)
        assert phrase in r.get_json()["error"], (body, r.get_json())
        return "refused"

    for body, phrase in FIELD_CASES:
        outcomes.append(outcome(check, body, phrase))
    n = tally("api", "missing, extra and wrong-typed fields", outcomes)
    print(f"\n{n} bodies with missing, extra or wrong-typed fields: all JSON 400 naming the field")


# -- wrong methods, path traversal, long query strings --------------------------------------------
def concrete(rule, handle):
    """A URL for every route of the app, with a real handle and valid arguments."""
    url = rule.rule.replace("<handle>", handle).replace("<path:filename>", "app.js")
    return url + ("?layer=0&head=0&query=0&key=0&position=0" if "<handle>" in rule.rule else "")


def test_wrong_methods_on_every_route(app, client):
    handle = post_json(client, {"text": "A sentence for the methods."}).get_json()["handle"]
    rules = [r for r in app.url_map.iter_rules()]
    assert len(rules) >= 10
    outcomes = []

    def check(method, url, allowed):
        r = client.open(url, method=method)
        assert verdict(r) == "refused" and r.status_code == 405, (method, url, r.status_code)
        msg = r.get_json()["error"]
        assert method in msg and all(m in msg for m in allowed), msg
        assert set(r.headers["Allow"].split(", ")) == set(allowed)
        return "refused"

    for rule in rules:
        allowed = sorted(rule.methods)
        url = concrete(rule, handle)
        assert client.open(url, method=allowed[0] if allowed[0] != "HEAD" else "GET").status_code != 405
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT", "PROPFIND", "BREW"):
            if method not in rule.methods:
                outcomes.append(outcome(check, method, url, allowed))
    # OPTIONS is answered (200, empty) but grants no cross-origin access.
    r = client.options("/api/run", headers={"Origin": "http://evil.example",
                                            "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200 and not any(h.lower().startswith("access-control") for h in r.headers.keys())
    n = tally("api", "wrong methods (every route)", outcomes)
    assert n >= 6 * len(rules)                   # each route allows only one or two of the nine
    print(f"\n{n} wrong methods on {len(rules)} routes: all JSON 405 with an Allow header")


TRAVERSALS = [
    "/api/runs/..%2f..%2fetc%2fpasswd/pattern?layer=0&head=0", "/api/runs/..%2f..%2fetc%2fpasswd",
    "/api/runs/../../etc/passwd", "/api/runs/%2e%2e/overview", "/api/runs/%2e%2e%2f%2e%2e/trace.npz",
    "/api/runs/..%5c..%5cwindows%5cwin.ini/next?position=0", "/api/runs/%00/overview",
    "/api/runs/%c0%ae%c0%ae%c0%af/overview", "/api/runs/%252e%252e%252f/overview",
    "/api/runs/....//....//etc/passwd", "/api/runs/~root/overview", "/api/runs/%ff%fe/row",
    "/static/..%2fapi.py", "/static/../api.py", "/static/%2e%2e/%2e%2e/gpt2np/api.py",
    "/static/..%5capi.py", "/static/....//api.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/C:%5cWindows%5cwin.ini",
    "/static/app.js%00.png", "/static/%c0%ae%c0%ae/api.py", "/static/../../templates/index.html",
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/api/../viewer/api.py", "/api/model/../../etc/passwd",
    "/static/../__init__.py", "/static/.%2e/cli.py",
]


def test_path_traversal_in_every_name(client):
    """Handles and static file names with ../, encoded slashes, NUL, overlong UTF-8: a JSON 404,
    never a file from outside viewer/static."""
    outcomes = []

    def check(url):
        r = client.get(url)
        if r.status_code == 308:                       # Werkzeug merges '//': same-site redirect
            target = urlparse(r.headers["Location"])
            assert target.netloc in ("", "localhost") and target.path.startswith("/static/"), target
            r = client.get(url, follow_redirects=True)
        assert verdict(r) == "refused" and r.status_code in (400, 404), (url, r.status_code)
        text = r.get_data(as_text=True)
        assert "root:" not in text and "import " not in text and "<html" not in text, (url, text[:200])
        return "refused"

    for url in TRAVERSALS:
        outcomes.append(outcome(check, url))
    n = tally("api", "path traversal in handles / file names", outcomes)
    print(f"\n{n} path-traversal URLs: all JSON 404, no file content")


def test_long_query_strings_and_values(client):
    """A URL of 100 KB, a 5,000-digit layer, a 60 KB handle: a short JSON 400/404 that does not
    echo the value back."""
    handle = post_json(client, {"text": "Long query strings."}).get_json()["handle"]
    outcomes = []

    def check(url, status, *phrases):
        r = client.get(url)
        assert verdict(r) == "refused" and r.status_code == status, (url[:80], r.status_code)
        msg = r.get_json()["error"]
        assert len(msg) < 400 and all(p in msg for p in phrases), msg
        return "refused"

    base = f"/api/runs/{handle}"
    for n in (21, 4301, 5000, 60_000):
        outcomes.append(outcome(check, f"{base}/pattern?layer={'9' * n}&head=0", 400, f"{n:,} characters long",
                                "layer, a whole number from 0 to 1"))
        outcomes.append(outcome(check, f"{base}/row?layer=0&head=0&query={'1' * n}", 400, "characters long"))
    outcomes.append(outcome(check, f"{base}/pattern?layer=0&junk={'x' * 100_000}&head=zz", 400, "not a whole number"))
    many = client.get(f"{base}/next?" + "&".join(f"p{i}=1" for i in range(5000)) + "&position=1")
    outcomes.append(outcome(verdict, many))
    assert many.status_code == 200 and many.get_json()["position"] == 1
    outcomes.append(outcome(check, f"/api/runs/{'a' * 60_000}/overview", 404, "Unknown or expired run", "…"))
    n = tally("api", "long query strings and values", outcomes)
    print(f"\n{n} very long URLs / values: short JSON errors that do not echo the value")


# -- fuzz: random bodies for POST /api/run -----------------------------------------------------------
JSON_LEAVES = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
               | st.text(st.characters(), max_size=12))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)
KEYS = st.sampled_from(["text", "ids", "bos", "Text", "IDS", "extra", "", "__proto__", "text "]) | st.text(max_size=8)
ID_ITEMS = (st.integers(-5, 50300) | st.integers(-2**80, 2**80) | st.floats() | st.booleans() | st.none()
            | st.text(max_size=4) | st.lists(st.integers(0, 10), max_size=2))
GOOD_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
ANY_TEXT = st.text(st.characters(), max_size=60)        # includes lone surrogates (sent escaped)
BODIES = st.one_of(
    st.fixed_dictionaries({"text": GOOD_TEXT}, optional={"bos": st.booleans()}),       # must run
    st.fixed_dictionaries({"ids": st.lists(st.integers(0, 50256), min_size=1, max_size=70)},
                          optional={"bos": st.booleans()}),
    st.fixed_dictionaries({"text": ANY_TEXT}, optional={"bos": JSON_VALUES, "ids": JSON_VALUES}),
    st.fixed_dictionaries({"ids": st.lists(ID_ITEMS, max_size=8)}, optional={"bos": JSON_VALUES}),
    st.fixed_dictionaries({}, optional={"text": JSON_VALUES, "ids": JSON_VALUES, "bos": JSON_VALUES}),
    st.dictionaries(KEYS, JSON_VALUES, max_size=4),
    JSON_VALUES,
)
CONTENT_TYPES = st.sampled_from(["application/json"] * 6 + [
    "application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json",
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "",
    "application/jsonx", "text/html", "application/json; charset=latin-1"])
FUZZ_COUNT = {"bodies": 0, "urls": 0, "analysis": 0}


@FUZZ
@given(body=BODIES, ascii_only=st.booleans(), content_type=CONTENT_TYPES,
       raw=st.none() | st.binary(max_size=120) | st.text(max_size=80))
def test_fuzz_run_bodies(client, model, body, ascii_only, content_type, raw):
    """A few hundred random bodies: JSON of every shape and type, raw bytes, text, wrong content
    types. Well-formed requests run and answer the tokenizer's tokens; everything else is a JSON
    4xx that says what to send."""
    try:
        data = json.dumps(body, ensure_ascii=ascii_only) if raw is None else raw
        data = data.encode("utf-8") if isinstance(data, str) else data
    except UnicodeEncodeError:                           # a lone surrogate, ensure_ascii=False
        data = json.dumps(body).encode()
    r = client.post("/api/run", data=data, content_type=content_type)
    FUZZ_COUNT["bodies"] += 1
    v = outcome(verdict, r)
    tally("api", "fuzz: random POST /api/run bodies", [v])
    mime = content_type.split(";")[0].strip().lower()
    is_json = mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))
    if not is_json:
        assert r.status_code == 415
    if r.status_code == 200:
        sent = r.get_json()
        assert isinstance(body, dict) and raw is None
        ids = (model.encode(body["text"], bos=body.get("bos", False)) if "text" in body
               else ([model.bos_id()] if body.get("bos") else []) + body["ids"])
        assert sent["ids"] == ids and sent["tokens"] == model.token_strings(ids)
        assert sent["n_tokens"] == len(ids) <= model.config.n_positions
    elif (raw is None and is_json and isinstance(body, dict)
          and set(body) <= {"text", "bos"} and isinstance(body.get("text"), str)
          and isinstance(body.get("bos", False), bool)
          and all(not 0xD800 <= ord(c) <= 0xDFFF for c in body["text"]) and body["text"]):
        # A well-formed text request is refused only for its length.
        assert "Too many tokens" in r.get_json()["error"], r.get_json()


# -- fuzz: random URLs, handles and query parameters ---------------------------------------------------
@pytest.fixture(scope="module")
def url_app(small_text_model_dir):
    """An app whose cache holds one run: `expired` was evicted by `good`."""
    app = create_app({"MODEL": str(small_text_model_dir)})
    c = app.test_client()
    good_text = "The trophy doesn't fit in the suitcase because it is too big."
    m = app.extensions["gpt2np.model"]
    app.extensions["gpt2np.runs"].max_bytes = trace_bytes(m.config, len(m.encode(good_text)))   # its pass
    expired = post_json(c, {"text": "This run will be evicted."}).get_json()["handle"]
    good = post_json(c, {"text": good_text}).get_json()      # fits alone, not beside the first
    assert expired not in app.extensions["gpt2np.runs"]
    return app, good, expired


PARAM_VALUES = st.one_of(
    st.integers(-3, 20).map(str), st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["", " 1", "1 ", "+1", "-0", "1.5", "1e3", "0x1", "1_0", "nan", "inf", "٣", "０",
                     "9" * 5000, "1" * 30, "\x00", "<script>alert(1)</script>", "%00", "../", "true",
                     "[]", "{}", "null", "1;DROP", "'", '"', "\ud800", "🙂"]),
    st.text(max_size=10))
PARAMS = st.lists(st.tuples(st.sampled_from(["layer", "head", "query", "key", "position", "ignore_sink",
                                             "k", "target", "target_id", "token", "token_id", "versus",
                                             "versus_id", "x", "Layer", "layer[]"]),
                            PARAM_VALUES), max_size=6)
HANDLES = st.sampled_from(["0" * 20, "..", "%2e%2e", "..%2f..%2fetc%2fpasswd", "a" * 3000, "<script>",
                           "%00", "%ff", "%c0%ae", "{{7*7}}", "ü", "\ud800"]) | st.text(max_size=24)


def run_routes(app):
    """Every route under /api/runs/<handle> of the app as it is now (analysis routes included),
    plus a path that is not one."""
    rules = sorted(r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/runs/<handle>"))
    assert len(rules) >= 9
    return [rule.removeprefix("/api/runs/<handle>") for rule in rules] + ["/nothing"]


@FUZZ
@given(which=st.sampled_from(["good", "good", "good", "expired", "random"]), handle=HANDLES,
       which_b=st.sampled_from(["good", "good", "expired", "random"]), handle_b=HANDLES,
       params=PARAMS, method=st.sampled_from(["GET"] * 8 + ["HEAD", "POST", "PUT", "DELETE"]),
       data=st.data())
def test_fuzz_urls_handles_and_params(url_app, which, handle, which_b, handle_b, params, method, data):
    """A few hundred random requests on every run endpoint (the analysis ones too): real, expired
    and random handles; layer/head/query/key/position/k/target negative, huge, fractional, textual,
    repeated or missing. (POSTs carry no body here: the body fuzz is below.)"""
    app, good, expired = url_app
    endpoint = data.draw(st.sampled_from(run_routes(app)), label="endpoint")
    pick = lambda w, raw: {"good": good["handle"], "expired": expired}.get(w) or quote(  # noqa: E731
        raw.encode("utf-8", "surrogatepass"), safe="")
    h = pick(which, handle)
    endpoint = endpoint.replace("<handle_b>", pick(which_b, handle_b))
    query = urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in params])
    url = f"/api/runs/{h}{endpoint}" + (f"?{query}" if query else "")
    r = app.test_client().open(url, method=method)
    FUZZ_COUNT["urls"] += 1
    v = outcome(verdict, r)
    tally("api", "fuzz: random URLs, handles, params", [v])
    if which == "expired" and endpoint != "/nothing" and method in ("GET", "HEAD") and r.status_code != 405:
        assert r.status_code == 404 and (method == "HEAD" or "Unknown or expired run" in r.get_json()["error"])
    if r.status_code == 200 and method == "GET":
        T = good["n_tokens"]
        args = {k: v for k, v in params}
        if endpoint == "/pattern":
            trace = app.extensions["gpt2np.model"].run(good["ids"])
            layer, head = int(args["layer"]), int(args["head"])
            assert r.data == lower_triangle_bytes(trace.pattern(layer, head))
        elif endpoint == "/overview":
            assert len(r.data) == 2 * 4 * min(T, 32) ** 2
        elif endpoint == "/row":
            trace = app.extensions["gpt2np.model"].run(good["ids"])
            layer, head, q = int(args["layer"]), int(args["head"]), int(args["query"])
            assert [np.float32(p) for p in r.get_json()["p"]] == list(trace.pattern(layer, head)[q, :q + 1])
        elif endpoint == "/trace.npz":
            assert r.data[:2] == b"PK"
        elif endpoint.endswith("/diff"):                 # the run against itself: |A - A| = 0
            assert r.data == bytes(T * (T + 1) // 2)
        else:
            assert r.is_json and r.get_json()


HEAD_TEXT = st.sampled_from(["0.0", "1.3", "0.0 1.1", "5.1", "-1.0", "0.4", "a.b", "1.1.1", "0.0,0.1;1.2",
                             "", " ", "1." * 40, "١.٣", "0.0 " * 9]) | st.text(max_size=16)
ABLATE_BODIES = st.one_of(
    st.fixed_dictionaries({"heads": HEAD_TEXT | st.lists(HEAD_TEXT, max_size=4)},
                          optional={"mode": st.sampled_from(["zero", "mean", "ZERO", "", "max"]) | JSON_VALUES,
                                    "position": st.integers(-3, 70) | JSON_VALUES,
                                    "token": (st.sampled_from([" big", "big", " not one", "", "<script>"])
                                              | st.integers(-3, 50300) | JSON_VALUES),
                                    "k": st.integers(-2, 30) | JSON_VALUES}),
    st.dictionaries(KEYS | st.sampled_from(["heads", "mode", "position", "token", "k"]), JSON_VALUES, max_size=4),
    JSON_VALUES)


@FUZZ
@given(route=st.sampled_from(["ablate", "pair"]), ablate=ABLATE_BODIES, pair=BODIES,
       content_type=CONTENT_TYPES, which=st.sampled_from(["good"] * 4 + ["unknown"]))
def test_fuzz_analysis_bodies(app, client, model, route, ablate, pair, content_type, which):
    """Random bodies for the analysis POSTs (ablation, minimal pair): heads as text and lists,
    modes, positions, tokens and k of every type, sentence B of every shape."""
    good = post_json(client, {"text": "The trophy doesn't fit in the suitcase because it is too big."}).get_json()
    h = good["handle"] if which == "good" else "0" * 20
    body = ablate if route == "ablate" else pair
    r = client.post(f"/api/runs/{h}/{route}", data=json.dumps(body), content_type=content_type)
    FUZZ_COUNT["analysis"] += 1
    v = outcome(verdict, r)
    tally("api", "fuzz: random ablate / pair bodies", [v])
    if r.status_code == 200:
        data = r.get_json()
        assert which == "good" and isinstance(body, dict)
        assert data.get("handle") == h if route == "ablate" else data["a"]["handle"] == h


def test_fuzz_counts(client):
    """Runs after the two fuzz tests (file order): report how many random requests they made."""
    n = sum(FUZZ_COUNT.values())
    print(f"\nAPI fuzz: {FUZZ_COUNT['bodies']} random run bodies + {FUZZ_COUNT['urls']} random URLs + "
          f"{FUZZ_COUNT['analysis']} random analysis bodies = {n}")
    assert FUZZ_COUNT["bodies"] >= 250 and FUZZ_COUNT["urls"] >= 250 and FUZZ_COUNT["analysis"] >= 250


# -- the cache under concurrent use --------------------------------------------------------------------
class FakeRun:
    def __init__(self, handle):
        self.handle = handle

    def nbytes(self):
        return 1


def test_cache_size_can_be_read_while_another_request_adds_runs():
    """run_summary() reads the cache's size while other requests put runs in it. Before the fix
    this raised 'OrderedDict mutated during iteration' (a 500) within a few hundred reads."""
    import sys
    cache = RunCache(10**9)
    for i in range(2000):
        cache.put(FakeRun(i))
    stop, errors = threading.Event(), []

    def writer():
        i = 10**6
        while not stop.is_set():
            cache.put(FakeRun(i))
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            try:
                assert cache.nbytes() >= 2000
            except RuntimeError as e:
                errors.append(e)
    finally:
        stop.set()
        t.join(timeout=30)
        sys.setswitchinterval(old)
    assert errors == []


def test_named_text_cases(client, model):
    """Each named hostile text case, through POST /api/run: runs with the tokenizer's tokens, or
    a 400 that gives the reason. 1 MB of text is over the 256 KB body limit: a 413."""
    outcomes, lines = [], []
    for name, (text, phrase) in named_text_cases(model.config.n_positions).items():
        def check():
            r = post_json(client, {"text": text})
            v = verdict(r)
            if name == "1 MB of text":
                assert r.status_code == 413 and "too large" in r.get_json()["error"]
            elif phrase is None:
                ids = model.encode(text)
                assert v == "ok" and r.get_json()["ids"] == ids and r.get_json()["tokens"] == model.token_strings(ids)
            else:
                assert r.status_code == 400 and phrase in r.get_json()["error"], r.get_json()
            if name == "more tokens than the context":
                assert f"Too many tokens: {len(model.encode(text))}," in r.get_json()["error"]
            if name == "the literal <|endoftext|>":
                assert r.get_json()["ids"] == [50256]
            lines.append(f"  {name:<30} {r.status_code}  {r.get_json().get('error', '')[:90]}")
            return v
        outcomes.append(outcome(check))
    print("\nthe named hostile text cases through POST /api/run:\n" + "\n".join(lines))
    tally("api", "the named hostile text cases", outcomes)
