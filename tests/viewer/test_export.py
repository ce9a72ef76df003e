"""The viewer as one HTML file (viewer/export/, gpt2np/html.py, `python -m gpt2np export`).

Without a browser: the page is one file with a Content-Security-Policy that forbids every request;
its snapshot holds exactly the answers the live API gives for the same run (the Flask test
client, one front end with two data sources); the heatmap bytes and exact numbers agree with the
trace by the test's own NumPy; the options and the size bound decide what goes in and the page
says so; sizes of GPT-2 small's shapes are measured (slow); the command line; the notebook
(executed with nbclient). In Chromium (browser): the file opened from file://, scrubbed and
clicked, its numbers compared with the trace, zero requests and zero console errors; hostile
tokens on a saved page; two notebook views in one page, isolated from the page and each other.
"""

import base64
import gzip
import hashlib
import html
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import ARTIFACTS, WATCH_SCRIPT, assert_heatmap_shows, cell_point, visible, wait_head
from test_viewer_browser_hostile import MODEL_NAME, PAYLOADS, hostile_model_dir  # noqa: F401 - a fixture
from test_viewer_browser_hostile import SENTENCE as HOSTILE_SENTENCE

import gpt2np
from gpt2np.html import NotebookView, save_html
from viewer.export import MB, ExportError, bundle

REPO = Path(__file__).resolve().parents[2]
SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
SIZES = {}                      # tokens -> bytes of GPT-2 small's file, written to test-artifacts


# -- reading a saved page ---------------------------------------------------------------------------
class Page(HTMLParser):
    """Every tag with its attributes, and the text of each <script> and <style>."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self.styles, self._open = [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs), [])

    def handle_data(self, data):
        if self._open:
            self._open[2].append(data)

    def handle_endtag(self, tag):
        if self._open and tag == self._open[0]:
            kind, attrs, parts = self._open
            (self.scripts if kind == "script" else self.styles).append((attrs, "".join(parts)))
            self._open = None

    @property
    def csp(self):
        return next(a["content"] for t, a in self.tags
                    if t == "meta" and a.get("http-equiv", "").lower() == "content-security-policy")

    @property
    def snapshot(self):
        return json.loads(next(text for attrs, text in self.scripts if attrs.get("id") == "gpt2np-snapshot"))


def unpack(snapshot):
    """Every JSON answer of a snapshot, {key: answer}, decoded here (not by the page's code)."""
    answers = {}
    for text in snapshot["packs"].values():
        answers.update(json.loads(gzip.decompress(base64.b64decode(text))))
    return answers


def sha256(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def top_keys(p_row, query, k=5, ignore_sink=False):
    """The test's own top-k: keys 0..query (1..query ignoring the sink), by p (float64) then position."""
    keys = [j for j in range(query + 1) if not (ignore_sink and j == 0 and query > 0)]
    return sorted(keys, key=lambda j: (-float(p_row[j]), j))[:k]


@pytest.fixture(scope="module")
def model(small_text_model_dir):
    return gpt2np.load(small_text_model_dir)


@pytest.fixture(scope="module")
def trace(model):
    return model.run(SENTENCE)


@pytest.fixture(scope="module")
def saved(trace, tmp_path_factory):
    """The small model's page for SENTENCE, opening at head 1.2, every head's exact numbers."""
    path = tmp_path_factory.mktemp("export") / "trophy.html"
    info = save_html(trace, path, text=SENTENCE, layer=1, head=2, qk="all")
    return path, info, Page(path.read_text(encoding="utf-8"))


# -- the file -------------------------------------------------------------------------------------------
def test_one_file_whose_policy_forbids_every_request(saved):
    path, info, page = saved
    assert info["bytes"] == path.stat().st_size
    csp = dict(d.strip().split(" ", 1) for d in page.csp.split(";"))
    assert csp["default-src"] == "'none'"                          # fetch, frames, fonts, media: none
    assert "connect-src" not in csp and "frame-src" not in csp and "font-src" not in csp
    assert csp["img-src"] == "data: blob:" and csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"
    assert "unsafe" not in page.csp and "'self'" not in page.csp and "http" not in page.csp
    # The one inline script and the one inline style are the ones the policy names by hash.
    code = [text for attrs, text in page.scripts if attrs.get("type") == "module"]
    assert len(code) == 1 and csp["script-src"] == sha256(code[0])
    assert len(page.styles) == 1 and csp["style-src"] == sha256(page.styles[0][1])
    # Nothing is loaded from a URL: no src, no stylesheet link, only data: for the icon (and the
    # hidden .npz link points nowhere).
    for tag, attrs in page.tags:
        assert "src" not in attrs, (tag, attrs)
        if "href" in attrs:
            assert (tag == "link" and attrs["href"].startswith("data:image/svg+xml;base64,")
                    or tag == "a" and attrs["href"] == "#" and "hidden" in attrs), (tag, attrs)
    assert "@import" not in page.styles[0][1] and "url(" not in page.styles[0][1]
    assert not re.search(r"\bimport\s*\(|^\s*import\s", code[0], re.M)     # bundled: no module loads
    # The same test ids as the live viewer's page.
    ids = {a.get("data-testid") for _, a in page.tags}
    assert {"heatmap", "layer", "head", "topk", "qk-panel", "overview", "ledger", "tokens"} <= ids


def test_the_snapshot_holds_the_live_apis_own_answers(saved, small_text_model_dir):
    """Every answer in the file equals the live viewer's answer to the same request."""
    import viewer
    _, _, page = saved
    snap = page.snapshot
    client = viewer.create_app({"MODEL": str(small_text_model_dir)}).test_client()
    live_run = client.post("/api/run", json={"text": SENTENCE}).get_json()
    assert live_run["handle"] == snap["handle"]
    answers = unpack(snap)
    volatile = ("cached", "cache", "elapsed_ms", "saved")
    for key, answer in answers.items():
        if key == "run":
            live = live_run
        else:
            response = client.get("/api/" + key)
            assert response.status_code == 200, (key, response.get_json())
            live = response.get_json()
        if isinstance(answer, dict) and "handle" in answer and "tokens" in answer:
            answer = {k: v for k, v in answer.items() if k not in volatile}
            live = {k: v for k, v in live.items() if k not in volatile}
        assert answer == live, key
    kinds = {re.sub(r"\?.*", "", k).split("/")[-1] for k in answers}
    assert {"model", "run", "next", "query", "row", "ledger", "value"} <= kinds
    # the panels at the opening view (1.2, the last token): one forward pass's data, as the API gives it
    assert {"heads", "lens", "attribution", "sample", "walk"} <= kinds
    for key, entry in snap["bytes"].items():
        response = client.get("/api/" + key)
        assert base64.b64decode(entry["data"]) == response.data, key
        assert entry["headers"] == {k: v for k, v in response.headers.items() if k.startswith("X-Gpt2np-")}


def test_heatmaps_and_exact_numbers_agree_with_the_trace(saved, trace):
    _, _, page = saved
    snap, T = page.snapshot, trace.n_tokens
    rows, cols = np.tril_indices(T)
    for L in range(trace.n_layer):
        for h in range(trace["blocks.0.attn.hook_q"].shape[1]):
            p = trace.pattern(L, h).astype(np.float64)
            entry = snap["bytes"][f"runs/{snap['handle']}/pattern?head={h}&layer={L}"]
            codes = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.uint8).astype(np.int64)
            assert np.abs(codes - np.rint(np.sqrt(p[rows, cols]) * 254)).max() <= 1
    answers = unpack(snap)
    L, h = 1, 2
    q, k = trace[f"blocks.{L}.attn.hook_q"][:, h], trace[f"blocks.{L}.attn.hook_k"][:, h]   # [T, dh]
    scores, p = trace[f"blocks.{L}.attn.hook_attn_scores"][h], trace.pattern(L, h)
    for i in range(T):
        for sink in (0, 1):
            panel = answers[f"runs/{snap['handle']}/query?head={h}&ignore_sink={sink}&layer={L}&query={i}"]
            assert [e["position"] for e in panel["keys"]] == top_keys(p[i], i, ignore_sink=bool(sink))
            assert [np.float32(x) for x in panel["q"]] == list(q[i])
            for e in panel["keys"]:
                j = e["position"]
                assert np.float32(e["p"]) == p[i, j] and np.float32(e["score"]) == scores[i, j]
                assert [np.float32(x) for x in e["k"]] == list(k[j])
                exact = float(np.dot(q[i].astype(np.float64), k[j].astype(np.float64)))
                assert abs(float(e["qk"]) - exact) <= 1e-5 * max(1.0, abs(exact))
                led = answers[f"runs/{snap['handle']}/ledger?head={h}&key={j}&layer={L}&query={i}"]
                assert np.float32(led["p"]) == p[i, j] and led["p_equal"]
                row = scores[i, : i + 1].astype(np.float64)
                softmax = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
                assert abs(float(led["steps"][-1]["value"]) - softmax[j]) < 1e-6
        row_answer = answers[f"runs/{snap['handle']}/row?head={h}&layer={L}&query={i}"]
        assert [np.float32(x) for x in row_answer["p"]] == list(p[i, : i + 1])


def test_options_and_the_size_bound_choose_what_goes_in(trace, tmp_path):
    info = save_html(trace, tmp_path / "a.html", layers="1", heads="0,2", qk="1.2")
    assert info["heatmaps"] == ["0.0", "1.0", "1.2"] and info["exact"] == ["1.2"]   # + the opening heatmap
    assert "heatmaps of 0.0 and 1.0 1.2; exact numbers (top-5 keys, Q·K panel, ledgers) of 1.2;" in info["holds"]
    snap = Page((tmp_path / "a.html").read_text()).snapshot
    assert snap["holds"]["heatmaps"] == info["heatmaps"] and info["values"] == ["0.0"]     # the opening head's
    assert set(snap["packs"]) == {"run", "panels", "0.0", "1.2"}
    assert {k.split("?")[0].split("/")[-1] for k in unpack({"packs": {"x": snap["packs"]["0.0"]}})} == {"value"}
    info = save_html(trace, tmp_path / "v.html", qk="none", values="1.1 1.3")
    assert info["exact"] == [] and info["values"] == ["1.1", "1.3"] and "value ledgers of 1.1 1.3;" in info["holds"]
    assert sorted(k.split("?")[1] for k in snap["bytes"] if "/pattern?" in k) == [
        "head=0&layer=0", "head=0&layer=1", "head=2&layer=1"]
    none = save_html(trace, tmp_path / "b.html", qk="none")
    assert none["exact"] == [] and len(none["heatmaps"]) == 8 and "heatmaps of every head (8)" in none["holds"]
    every = save_html(trace, tmp_path / "c.html", qk="all")
    assert len(every["exact"]) == 8
    # Bounds between the two: exact heads go in whole, in order (the opening head first, then
    # layer by layer), more of them the larger the bound, and the file stays within it.
    counts = []
    for share in (0.25, 0.5, 0.75):
        bound = none["bytes"] + share * (every["bytes"] - none["bytes"])
        info = save_html(trace, tmp_path / "d.html", qk="all", max_mb=bound / MB, layer=1, head=1)
        order = ["1.1"] + [f"{L}.{h}" for L in range(2) for h in range(4) if (L, h) != (1, 1)]
        assert sorted(info["exact"]) == sorted(order[: len(info["exact"])]) and info["bytes"] <= bound
        assert len(info["heatmaps"]) == 8
        counts.append(len(info["exact"]))
    assert 1 <= counts[0] < counts[2] < 8 and counts == sorted(counts), counts
    with pytest.raises(ExportError, match="smallest file"):
        save_html(trace, tmp_path / "e.html", max_mb=0.05)
    for bad, match in [({"layers": "5"}, "no layer 5"), ({"heads": "0-9"}, "no head 0-9"),
                       ({"qk": "7.1"}, "no head 7.1"), ({"layer": 2}, "no head 2.0"),
                       ({"query": 99}, "query 99"), ({"max_mb": -1}, "positive"), ({"layers": "x"}, "Cannot read")]:
        with pytest.raises(gpt2np.GPT2npError, match=match):
            save_html(trace, tmp_path / "f.html", **bad)


def test_the_size_bound_leaves_heatmaps_out(small_tok_dir, tmp_path):
    """A long input (300 tokens: 45 kB a heatmap): heatmaps go in layer by layer until the next
    would pass the bound, and the file says which."""
    m = gpt2np.load(small_tok_dir)                                 # 2 layers × 3 heads
    t = m.run((SENTENCE + " ") * 30)
    t = m.run(t.ids[:300].tolist())
    one = save_html(t, tmp_path / "one.html", qk="none", values="none", layers="0", heads="0")
    every = save_html(t, tmp_path / "every.html", qk="none", values="none")
    assert len(every["heatmaps"]) == 6
    per_head = (every["bytes"] - one["bytes"]) / 5
    assert per_head > 50_000
    bound = one["bytes"] + 2.5 * per_head
    info = save_html(t, tmp_path / "cut.html", qk="none", values="none", max_mb=bound / MB)
    assert info["heatmaps"] == ["0.0", "0.1", "0.2"] and info["bytes"] <= bound
    assert "heatmaps of layer 0;" in info["holds"]


def test_a_trace_needs_its_model(trace, model, tmp_path):
    trace.save(tmp_path / "t.npz")
    loaded = gpt2np.Trace.load(tmp_path / "t.npz")
    assert loaded._repr_html_() is None                         # the notebook falls back to repr
    with pytest.raises(ExportError, match="needs the model"):
        loaded.to_html()
    assert Page(loaded.to_html(model=model)).snapshot["handle"] == Page(trace.to_html()).snapshot["handle"]
    other = gpt2np.load("demo")
    with pytest.raises(ExportError, match="not by"):
        loaded.to_html(model=other)


def iframe_of(output):
    """The attributes of the one <iframe> of a notebook output."""
    frames = [attrs for tag, attrs in Page(output).tags if tag == "iframe"]
    assert len(frames) == 1, output[:300]
    return frames[0]


def test_notebook_view_is_an_isolated_iframe(trace):
    frame = trace._repr_html_()
    attrs = iframe_of(frame)
    assert attrs["sandbox"] == "allow-scripts allow-downloads"
    inner = Page(attrs["srcdoc"])                                      # the whole page, unescaped
    assert inner.snapshot["view"] == {"layer": 0, "head": 0, "q": None, "k": None}
    view = NotebookView(trace, layer=1, head=3)
    assert Page(iframe_of(view._repr_html_())["srcdoc"]).snapshot["view"]["head"] == 3
    assert len(frame.encode()) <= 2.5 * MB
    assert "run the cell again" in html.unescape(re.sub(r"<iframe.*", "", frame))     # if a notebook strips it


def test_bundler_refuses_what_it_cannot_rewrite(tmp_path):
    (tmp_path / "a.js").write_text('import { b as c } from "./b.js";\nexport const a = c + 1;\n')
    (tmp_path / "b.js").write_text("export const b = 41;\n")
    code = bundle(tmp_path, "a.js")
    out = subprocess.run(["node", "-e", code + "\nconsole.log(__gpt2np_a.a)"], capture_output=True, text=True)
    assert out.stdout.strip() == "42", out.stderr
    for source, match in [("export default 1;\n", "line 1"), ("import * as x from './b.js';\n", "line 1"),
                          ("const x = 1;\nimport('./b.js');\n", "line 2")]:
        (tmp_path / "a.js").write_text(source)
        with pytest.raises(ExportError, match=match):
            bundle(tmp_path, "a.js")
    (tmp_path / "a.js").write_text('import { b } from "./b.js";\nexport const a = b;\n')
    (tmp_path / "b.js").write_text('import { a } from "./a.js";\nexport const b = 1;\n')
    with pytest.raises(ExportError, match="circular"):
        bundle(tmp_path, "a.js")


def test_hostile_token_strings_stay_text_in_the_file(hostile_model_dir, tmp_path):
    m = gpt2np.load(hostile_model_dir)
    t = m.run(HOSTILE_SENTENCE)
    path = tmp_path / "hostile.html"
    save_html(t, path, text=HOSTILE_SENTENCE, qk="all")
    text = path.read_text()
    page = Page(text)
    # One snapshot, one module script: no payload ended an element or opened one.
    assert text.lower().count("</script") == 2 and len(page.scripts) == 2
    assert [t for t, _ in page.tags].count("img") == 0 and [t for t, _ in page.tags].count("iframe") == 0
    snap = page.snapshot
    assert unpack(snap)["run"]["tokens"] == t.tokens and snap["input"]["text"] == HOSTILE_SENTENCE
    assert page.tags[[t for t, _ in page.tags].index("textarea")][0] == "textarea"
    assert MODEL_NAME in html.unescape(text) and MODEL_NAME not in text      # escaped in the header


# -- sizes ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sizes_of_gpt2_small(gpt2_layout_dir, tmp_path, record_property):
    """GPT-2 small's shapes (random weights, the real tokenizer): with the defaults, 64 tokens
    with every head's heatmap ≤ 2 MB, 1,024 tokens ≤ 50 MB; each file says what it holds."""
    m = gpt2np.load(gpt2_layout_dir)
    ids = m.encode((SENTENCE + " Mary and John went to the store; John gave a drink to Mary. ") * 60)
    rows = []
    for T in (16, 64, 256, 1024):
        t = m.run(ids[:T])
        info = save_html(t, tmp_path / f"{T}.html")
        del t
        SIZES[T] = info
        rows.append(f"{T:5d} tokens  {info['bytes'] / MB:7.2f} MB  heatmaps {len(info['heatmaps']):3d}  "
                    f"exact {len(info['exact']):2d}  {info['holds']}")
        if T <= 64:
            assert len(info["heatmaps"]) == 144
        assert f"{T} tokens" in info["holds"] and len(info["exact"]) >= 1
    assert SIZES[64]["bytes"] <= 2 * MB and SIZES[1024]["bytes"] <= 50 * MB
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "export-sizes.txt").write_text("\n".join(rows) + "\n")
    record_property("export_sizes", {T: i["bytes"] for T, i in SIZES.items()})
    print("\n" + "\n".join(rows))


# -- command line and notebooks ------------------------------------------------------------------------------
def gpt2np_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "gpt2np", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"), **kwargs)


def test_cli_export(small_text_model_dir, trace, tmp_path):
    out = tmp_path / "cli.html"
    r = gpt2np_cli("export", SENTENCE, "--model", str(small_text_model_dir), "--html", str(out),
                   "--layer", "1", "--head", "3", "--query", "4", "--layers", "1", "--qk", "none")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out}: ") and "heatmaps of layer 1; exact numbers" in r.stdout
    snap = Page(out.read_text()).snapshot
    assert snap["view"] == {"layer": 1, "head": 3, "q": 4, "k": None}
    assert snap["input"] == {"text": SENTENCE, "bos": False} and snap["holds"]["exact"] == []
    assert snap["holds"]["heatmaps"] == ["1.0", "1.1", "1.2", "1.3"]
    assert unpack(snap)["run"]["tokens"] == trace.tokens
    r = gpt2np_cli("export", "-", "--model", str(small_text_model_dir), "--html", str(out), input=SENTENCE)
    assert r.returncode == 0 and Page(out.read_text()).snapshot["input"]["text"] == SENTENCE
    for args, message in [(["--html", str(tmp_path / "x.txt")], "ending in .html"),
                          (["--html", str(out), "--qk", "1.9"], "no head 1.9"),
                          (["--html", str(out), "--max-mb", "0.001"], "smallest file"),
                          (["--html", str(tmp_path / "no" / "x.html")], "Cannot write"),
                          ([], "required: --html")]:
        r = gpt2np_cli("export", SENTENCE, "--model", str(small_text_model_dir), *args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        if message != "required: --html":
            assert len(r.stderr.strip().splitlines()) == 1


def test_gpt2np_imports_no_viewer_flask_or_ipython(small_text_model_dir):
    code = f"""
import sys
sys.modules["IPython"] = None                  # as if IPython were not installed
import gpt2np
m = gpt2np.load({str(small_text_model_dir)!r})
t = m.run("A short sentence.")
assert not any(n in sys.modules for n in ("flask", "viewer", "jinja2")), "imported at import time"
html = t._repr_html_()
assert "<iframe srcdoc=" in html
try:
    gpt2np.show(t)
except gpt2np.GPT2npError as e:
    print("show:", e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "show: gpt2np.show displays the view in a notebook" in r.stdout


def test_rendering_a_trace_to_html_imports_no_flask(small_text_model_dir):
    """to_html, save_html and _repr_html_ reach the page builder through gpt2np.html.page_builder
    (viewer.export), which needs jinja2 but never Flask nor the viewer's blueprints."""
    code = f"""
import sys, tempfile, os
import gpt2np
t = gpt2np.load({str(small_text_model_dir)!r}).run("A short sentence.")
html = t.to_html()
gpt2np.save_html(t, os.path.join(tempfile.mkdtemp(), "view.html"))
t._repr_html_()
assert "viewer.export" in sys.modules and "<!doctype html>" in html.lower()
loaded = sorted(n for n in sys.modules if n == "flask" or n.startswith(("flask.", "werkzeug", "viewer.routes")))
print("loaded:", loaded)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "loaded: []" in r.stdout, r.stdout

def test_example_notebook_runs_and_shows_the_viewer(tmp_path, monkeypatch):
    """examples/gpt2np_tour.ipynb, executed by nbclient in a fresh kernel: no errors, and the
    output of gpt2np.show is text/html holding an <iframe srcdoc> with the page."""
    import nbformat
    from nbclient import NotebookClient
    source = REPO / "examples" / "gpt2np_tour.ipynb"
    nb = nbformat.read(source, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    monkeypatch.setenv("PYTHONPATH", str(REPO))          # the kernel imports this checkout's gpt2np
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    frames = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(frames) == 1
    attrs = iframe_of(frames[0])
    assert attrs["sandbox"] == "allow-scripts allow-downloads"
    assert Page(attrs["srcdoc"]).snapshot["view"] == {"layer": 2, "head": 3, "q": None, "k": None}
    assert (tmp_path / "trophy.html").stat().st_size > 0
    ARTIFACTS.mkdir(exist_ok=True)
    nbformat.write(nb, ARTIFACTS / "gpt2np_tour.executed.ipynb")
    (ARTIFACTS / "notebook-view.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>notebook output</title>{frames[0]}")


# -- in Chromium ------------------------------------------------------------------------------------------------
class Requests:
    """Every request, console message of type error and page error of a page."""

    def __init__(self, page):
        self.requests, self.errors = [], []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def check(self, url):
        assert self.requests == [url], self.requests                # the file itself, nothing else
        assert self.errors == [], self.errors


def open_file(browser, path, init_script=None, **options):
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, **options)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch = Requests(page)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return context, page, watch


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.browser
def test_saved_file_from_disk_scrub_click_and_compare(browser, saved, trace):
    path, _, _ = saved
    context, page, watch = open_file(browser, path, accept_downloads=True)
    T = trace.n_tokens
    wait_head(page, 1, 2)                                          # the opening head
    assert_heatmap_shows(page, trace.pattern(1, 2))
    # Its value ledger at the last query: the keys' p as the trace has them.
    page.wait_for_selector("[data-testid=value-z]")
    p_last = trace.pattern(1, 2)[T - 1]
    for r, key in enumerate(top_keys(p_last, T - 1)):
        row = page.get_by_test_id(f"value-key-{r}")
        assert int(row.get_attribute("data-key")) == key
        assert np.float32(row.locator("td.num").inner_text()) == p_last[key]
    assert "saved in this file" in page.get_by_test_id("status").inner_text()
    assert page.get_by_test_id("saved-holds").inner_text().startswith("Saved file, no server: ")
    for i in range(T):
        assert page.get_by_test_id(f"token-{i}").locator(".tok").inner_text() == visible(trace.tokens[i])
    # Scrub: the layer slider, then the keyboard.
    page.get_by_test_id("layer").fill("0")
    wait_head(page, 0, 2)
    assert_heatmap_shows(page, trace.pattern(0, 2))
    page.get_by_test_id("heatmap").focus()
    page.keyboard.press("ArrowRight")
    wait_head(page, 0, 3)
    assert_heatmap_shows(page, trace.pattern(0, 3))
    # Click a token: its top-5 keys and the Q·K panel, against the trace.
    i = 9
    page.get_by_test_id(f"token-{i}").click()
    page.wait_for_selector(f"#topk[data-query='{i}'][data-layer='0'][data-head='3']")
    p = trace.pattern(0, 3)
    keys = top_keys(p[i], i)
    items = page.get_by_test_id("topk").locator("li[data-key]")
    assert [int(items.nth(r).get_attribute("data-key")) for r in range(items.count())] == keys
    assert [np.float32(page.get_by_test_id(f"topk-p-{r}").inner_text()) for r in range(5)] == [p[i, j] for j in keys]
    assert [np.float32(page.get_by_test_id(f"qk-p-{r}").inner_text()) for r in range(5)] == [p[i, j] for j in keys]
    # The ledger of the second key: every step's value, against the test's own float64 softmax.
    page.get_by_test_id("qk-row-1").click()
    j = keys[1]
    page.wait_for_selector(f"#ledger[data-key='{j}'][data-query='{i}']:not([hidden])")
    assert np.float32(page.get_by_test_id("ledger-p").inner_text()) == p[i, j]
    q = trace["blocks.0.attn.hook_q"][i, 3].astype(np.float64)
    k = trace["blocks.0.attn.hook_k"][j, 3].astype(np.float64)
    assert abs(float(page.get_by_test_id("ledger-value-0").inner_text()) - q @ k) <= 1e-5 * max(1, abs(q @ k))
    row = trace["blocks.0.attn.hook_attn_scores"][3, i, : i + 1].astype(np.float64)
    assert abs(float(page.get_by_test_id("ledger-value-5").inner_text()) - np.exp(row[j] - row.max()) /
               np.exp(row - row.max()).sum()) < 1e-6
    assert "the same float32" in page.get_by_test_id("ledger-check").inner_text()
    # The hover readout is the exact float32 of the cell.
    page.mouse.move(*cell_point(page, i, j))
    page.wait_for_selector("[data-testid=tooltip-p]")
    assert np.float32(page.get_by_test_id("tooltip-p").inner_text()) == p[i, j]
    # All heads: one thumbnail each; a click opens that head.
    overview = page.get_by_test_id("overview")
    assert overview.locator("canvas").count() == 8
    overview.locator("canvas").nth(5).click()
    wait_head(page, 1, 1)
    # The PNG export works in the file too.
    with page.expect_download() as d:
        page.get_by_test_id("export-png").click()
    assert Path(d.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    screenshot(page, "export-file-from-disk")
    watch.check(path.as_uri())
    context.close()


@pytest.mark.browser
def test_what_the_file_does_not_hold_says_so(browser, trace, tmp_path):
    path = tmp_path / "partial.html"
    save_html(trace, path, text=SENTENCE, layer=0, head=1, layers="0", qk="0.1")
    context, page, watch = open_file(browser, path)
    wait_head(page, 0, 1)
    page.wait_for_selector("#topk[data-head='1'] li[data-key]")
    assert page.get_by_test_id("topk").locator("li[data-key]").count() == 5     # 0.1: its numbers are in
    page.get_by_test_id("head").fill("2")                          # heatmap in, exact numbers not
    wait_head(page, 0, 2)
    page.wait_for_function("() => document.getElementById('error').textContent.includes('top-5 keys')")
    assert "--qk" in page.get_by_test_id("error").inner_text()
    page.get_by_test_id("layer").fill("1")                         # not even its heatmap
    page.wait_for_function("() => document.getElementById('error').textContent.includes('heatmap of this head')")
    assert "layer 0" in page.get_by_test_id("error").inner_text()
    page.get_by_test_id("heads-table").scroll_into_view_if_needed()
    page.wait_for_selector("[data-testid^=heads-row-]")             # one pass's table: in the file
    assert page.get_by_test_id("findings-run").is_disabled()       # the findings need the server:
    assert "python -m viewer" in page.get_by_test_id("live-only-findings").inner_text()   # a quiet note
    screenshot(page, "export-not-in-this-file")
    watch.check(path.as_uri())
    context.close()


@pytest.mark.browser
def test_hostile_tokens_on_a_saved_page(browser, hostile_model_dir, tmp_path):
    """The viewer's hostile-token checks, on an exported file: every surface shows the exact
    text, nothing executes, no element is created from a token, the CSP reports nothing."""
    m = gpt2np.load(hostile_model_dir)
    t = m.run(HOSTILE_SENTENCE)
    path = tmp_path / "hostile.html"
    save_html(t, path, text=HOSTILE_SENTENCE, qk="all")
    context, page, watch = open_file(browser, path, init_script=WATCH_SCRIPT)
    tokens, T = t.tokens, t.n_tokens
    assert page.locator(".model-name").inner_text() == MODEL_NAME and MODEL_NAME in page.title()
    assert page.get_by_test_id("sentence").input_value() == HOSTILE_SENTENCE
    shown = page.get_by_test_id("tokens").locator(".chip .tok").all_text_contents()
    assert shown == [visible(x) for x in tokens] and visible(PAYLOADS[0]) in shown
    drawn = page.evaluate("window.__drawn")
    assert any(d.startswith("<script>") for d in drawn) and any(d.startswith("<iframe") for d in drawn)
    page.get_by_test_id(f"token-{T - 1}").click()
    page.wait_for_selector(f"#topk[data-query='{T - 1}']")
    nxt = page.get_by_test_id("next-token").locator(".tok").all_text_contents()
    assert nxt[:5] == [visible(x) for x in PAYLOADS[:5]]
    keys = [int(x) for x in page.get_by_test_id("topk").locator("li[data-key]").evaluate_all(
        "els => els.map(e => e.dataset.key)")]
    top = page.get_by_test_id("topk").locator("li[data-key] .tok").all_text_contents()
    assert top == [visible(tokens[j]) for j in keys]
    panel = page.get_by_test_id("qk-panel").locator(".strips .tok, .qk-table .tok").all_text_contents()
    assert panel == [visible(tokens[T - 1])] + [visible(tokens[j]) for j in keys] * 2
    whatif = page.get_by_test_id("qk-whatif").locator(".tok").all_text_contents()     # the two rows' top keys
    assert len(whatif) == 2 and whatif[0] == visible(tokens[keys[0]]) and whatif[1] in map(visible, tokens)
    row = next(r for r, j in enumerate(keys) if tokens[j] in PAYLOADS)
    page.get_by_test_id(f"qk-row-{row}").click()
    page.wait_for_selector(f"#ledger[data-key='{keys[row]}']:not([hidden])")
    title = page.locator("#ledger-title .tok").all_text_contents()
    assert title == [visible(tokens[T - 1]), visible(tokens[keys[row]])]
    i, j = tokens.index(PAYLOADS[6]), tokens.index(PAYLOADS[0])
    page.mouse.move(*cell_point(page, i, j))
    page.wait_for_selector("[data-testid=tooltip-p]")
    tip = page.get_by_test_id("tooltip").locator(".tt-head .tok").all_text_contents()
    assert tip == [visible(PAYLOADS[6]), visible(PAYLOADS[0])]
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("window.__created") == []
    assert page.locator("img, iframe, object, embed, main script, body svg").count() == 0
    screenshot(page, "export-hostile-tokens")
    watch.check(path.as_uri())
    context.close()


NOTEBOOK_CSS = """<style>
/* a notebook's own rules, as broad as they come: none of them reaches into the views */
canvas { display: none !important; } * { font-family: serif !important; color: red !important; }
</style>"""


@pytest.mark.browser
def test_two_notebook_views_are_independent_and_isolated(browser, trace):
    """Two views in one page, as two cells of a notebook show them: each in its sandboxed
    iframe (an opaque origin), each drawing its own head, unaffected by the page's CSS and by
    the other view; no request but the page itself."""
    views = [NotebookView(trace, layer=0, head=1)._repr_html_(), NotebookView(trace, layer=1, head=3)._repr_html_()]
    host = (f"<!doctype html><meta charset=utf-8><title>two views</title>{NOTEBOOK_CSS}"
            f"<h1>cell 1</h1>{views[0]}<h1>cell 2</h1>{views[1]}<script>window.__host = 1;</script>")
    context = browser.new_context(viewport={"width": 1400, "height": 2000})    # both frames on screen
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch = Requests(page)
    # A notebook has an origin of its own (a file:// page would not): served by Playwright itself.
    url = "http://notebook.test/lab"
    page.route(url, lambda route: route.fulfill(body=host, content_type="text/html"))
    page.goto(url)
    frames = [f for f in page.frames if f != page.main_frame]
    assert len(frames) == 2
    for frame, (layer, head) in zip(frames, [(0, 1), (1, 3)]):
        frame.wait_for_selector("body[data-ready='1']")
        frame.wait_for_function(f"() => document.getElementById('heatmap').dataset.head === '{head}'")
        assert frame.evaluate("origin") == "null"                   # sandboxed: no access to the notebook
        assert frame.evaluate("() => { try { return String(parent.__host); } catch (e) { return e.name; } }") \
            == "SecurityError"
        assert frame.locator("#heatmap").is_visible()                # the notebook's `canvas {display: none}`
        assert frame.evaluate("getComputedStyle(document.body).color") != "rgb(255, 0, 0)"
        codes = np.array(frame.evaluate("Array.from(window.__viewer.heatmap.data.codes)"))
        rows, cols = np.tril_indices(trace.n_tokens)
        expected = np.rint(np.sqrt(trace.pattern(layer, head)[rows, cols].astype(np.float64)) * 254)
        assert np.abs(codes - expected).max() <= 1
    frames[0].locator("[data-testid=token-3]").click()
    frames[0].wait_for_selector("#topk[data-query='3']")
    assert frames[1].evaluate("window.__viewer.state.query") == trace.n_tokens - 1     # the other view did not move
    assert frames[1].evaluate("window.__viewer.state.head") == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "export-two-notebook-views.png"), full_page=True)
    assert watch.requests == [url] and watch.errors == [], (watch.requests, watch.errors)
    context.close()

