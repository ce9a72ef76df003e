"""Support for the browser tests: the viewer as a server, pages in Chromium and what they log.

A server is `python -m viewer` on a free port (its log in test-artifacts/server-<name>.log);
a page is a fresh Playwright context with a `Watch` as `page.watch`, which collects console
errors, failed requests, requests to any host but the server, and dialogs, and whose `check()`
asserts there were none. The `browser` fixture is in conftest.py; the `server` and
`demo_server` fixtures here are imported by the test modules that use them.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("GPT2NP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
HOSTILE = 'Say <script>alert(1)</script> and "><img src=x onerror=alert(1)> then\tstop.\nNext'

# An init script for pages that must prove nothing executed: records every canvas fillText in
# window.__drawn, and every script-capable element the page's scripts create in window.__created.
WATCH_SCRIPT = """
window.__drawn = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  window.__drawn.push(String(text));
  return fillText.call(this, text, ...rest);
};
window.__created = [];
const observer = new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes)
    if (n.nodeType === 1) for (const e of [n, ...n.querySelectorAll('*')])
      if (/^(script|img|iframe|svg|object|embed|style|link|form|meta|base)$/i.test(e.tagName))
        window.__created.push(e.outerHTML.slice(0, 200));
});
// From the end of the HTML parse on: what the page's scripts create (the markup of the page
// itself, head and body, is the server's template).
document.addEventListener("DOMContentLoaded", () => observer.observe(document, { childList: true, subtree: true }));
"""


# -- the server -----------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, name, *options):
    """`python -m viewer` on a free port; returns (process, base URL) once /api/model answers."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    log = open(ARTIFACTS / f"server-{name}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "viewer", "--model", str(model_dir), "--port", str(port),
                             *options],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the viewer exited early; see {log.name}")
        try:
            urllib.request.urlopen(base + "/api/model", timeout=2).read()
            return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the viewer did not answer within 120 s; see {log.name}")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def serving(model_dir, name, *options):
    """For a server fixture (`yield from serving(...)`): yields the base URL, then stops the server."""
    proc, base = start_server(model_dir, name, *options)
    yield base
    stop_server(proc)


def api_get(base, path):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.loads(r.read())


def api_post(base, path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(gpt2_layout_dir):
    """GPT-2 small's layout with random weights and the real tokenizer."""
    yield from serving(gpt2_layout_dir, "gpt2-layout")


@pytest.fixture(scope="module")
def demo_server():
    """The bundled demo model (gpt2np/demo), as `python -m viewer` serves it by default."""
    yield from serving("demo", "demo")


# -- pages ----------------------------------------------------------------------------------------------
class Watch:
    """Everything a page logs or requests, checked at the end of each test."""

    def __init__(self, page, base):
        self.base = urlparse(base)
        self.console_errors, self.failed, self.foreign, self.dialogs = [], [], [], []
        self.downloads = set()
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure)))
        page.on("request", self.on_request)
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def on_request(self, request):
        url = urlparse(request.url)
        if url.scheme in ("blob", "data"):
            return
        if (url.scheme, url.hostname, url.port) != (self.base.scheme, self.base.hostname, self.base.port):
            self.foreign.append(request.url)

    def check(self):
        failed = [(u, f) for u, f in self.failed if not (u in self.downloads and "ERR_ABORTED" in str(f))]
        assert self.console_errors == [], self.console_errors
        assert failed == [], failed
        assert self.foreign == [], self.foreign
        assert self.dialogs == [], self.dialogs


def new_page(browser, base, width=1500, height=1000, timeout=60_000, init_script=None, **context_options):
    """A page in a fresh context on `base`, watched (`page.watch`): returns (context, page).
    `timeout=None` keeps Playwright's default; `context_options` go to browser.new_context."""
    context = browser.new_context(viewport={"width": width, "height": height}, **context_options)
    if init_script is not None:
        context.add_init_script(init_script)
    page = context.new_page()
    if timeout is not None:
        page.set_default_timeout(timeout)
    page.watch = Watch(page, base)
    return context, page


def watched_page(browser, base, **options):
    """For a page fixture (`yield from watched_page(...)`): yields a new_page, then checks its
    Watch and closes its context."""
    context, page = new_page(browser, base, **options)
    yield page
    try:
        page.watch.check()
    finally:
        context.close()


# -- in the page ----------------------------------------------------------------------------------------
def open_viewer(page, base, query=""):
    page.goto(base + "/" + query)
    page.wait_for_selector("body[data-ready='1']")


def run_sentence(page, text):
    page.get_by_test_id("sentence").fill(text)
    page.get_by_test_id("run").click()
    page.wait_for_function("""(t) => document.querySelector('#tokens .chip') &&
        window.__viewer.state.run && window.__viewer.state.inputView.text === t &&
        document.getElementById('heatmap').dataset.handle === window.__viewer.state.run.handle""", arg=text)
    return page.get_by_test_id("heatmap").get_attribute("data-handle")


def wait_head(page, layer, head):
    """Until the heatmap shows (layer, head) of the current run."""
    page.wait_for_function("""([layer, head]) => {
        const c = document.getElementById('heatmap').dataset, run = window.__viewer.state.run;
        return run && c.handle === run.handle && c.layer === String(layer) && c.head === String(head);
    }""", arg=[layer, head])


def cell_pixel(page, i, j):
    """[r, g, b, a] drawn at the centre of cell (query i, key j), and the colour its code should have."""
    return page.evaluate("""async ([i, j]) => {
        const { LUTS } = await import('/static/colors.js');
        const h = window.__viewer.heatmap, c = h.canvas;
        const { x, y } = h.cellCenter(i, j), dpr = c.width / parseFloat(c.style.width);
        const d = c.getContext('2d').getImageData(Math.floor(x * dpr), Math.floor(y * dpr), 1, 1).data;
        const v = LUTS[h.scale][h.code(i, j)];
        return { drawn: [d[0], d[1], d[2], d[3]], expected: [v & 255, (v >> 8) & 255, (v >> 16) & 255, 255],
                 code: h.code(i, j) };
    }""", [i, j])


def assert_heatmap_shows(page, pattern):
    """The heatmap holds the codes of `pattern` [T, T] (a head computed in the test's own process):
    round(254·√p) of its lower triangle, row by row, each within 1 of the float64 value."""
    codes = np.array(page.evaluate("Array.from(window.__viewer.heatmap.data.codes)"), dtype=np.int64)
    rows, cols = np.tril_indices(pattern.shape[0])
    expected = np.rint(np.sqrt(pattern[rows, cols].astype(np.float64)) * 254)
    assert codes.shape == expected.shape, (codes.shape, expected.shape)
    assert np.abs(codes - expected).max() <= 1


def cell_point(page, i, j):
    page.get_by_test_id("heatmap").scroll_into_view_if_needed()
    return page.evaluate("""([i, j]) => {
        const h = window.__viewer.heatmap, r = h.canvas.getBoundingClientRect(), c = h.cellCenter(i, j);
        return [r.left + c.x, r.top + c.y];
    }""", [i, j])


def visible(token):
    """A token as the page shows it in chips and lists: whitespace stand-ins (text.js)."""
    return "".join({" ": "␣", "\t": "⇥", "\n": "↵", "\r": "␍"}.get(c, c) for c in token)


def shot(page, name):
    """A full-page screenshot, test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def element_shot(locator, name):
    ARTIFACTS.mkdir(exist_ok=True)
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(ARTIFACTS / f"{name}.png"))

