"""Hostile token strings in a real Chromium: they show literally everywhere and nothing executes.

The model is built so that markup arrives *whole*: its tokenizer (GPT-2's, plus seven added
tokens) turns each payload below into one token, its weights put those tokens first in every
next-token prediction, and its directory name is itself markup, so the model name in the header,
the title and the exports is hostile too. A page script that parsed any of it as HTML (or as a
template) would run `window.__xss = n`; the test checks that no payload ran, that no element was
created from it (a MutationObserver in the page), that no dialog opened, that the CSP reported
nothing (console), and that every surface shows the exact text: token chips, heatmap labels
(recorded from the canvas's fillText), top-5 keys, next-token list, logit lens, Q·K panel, ledger, tooltip,
SVG and PNG exports, the permalink, the model header and the page title.
"""

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from browser import ARTIFACTS, WATCH_SCRIPT, cell_point, open_viewer, run_sentence, serving, shot, visible, watched_page
from hostile import FIGURES, record
from modelfiles import GPT2_FILES, random_params, small_config, write_model_dir

pytestmark = pytest.mark.browser

PAYLOADS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror=window.__xss=2>',
    "{{7*7}}",
    "<svg onload=window.__xss=4>",
    "{{constructor.constructor('window.__xss=5')()}}",
    "${7*7}<b>bold</b>",
    '<iframe srcdoc="<script>parent.__xss=7</script>">',
]
MODEL_NAME = 'm"><img src=x onerror=window.__xss=9>{{7*7}}<b>x'
SENTENCE = "Say " + "".join(PAYLOADS) + " end"


@pytest.fixture(scope="module")
def hostile_model_dir(tmp_path_factory):
    """2 layers × 3 heads × 48 dims, context 1,024; the payloads are tokens 50257…; ln_f is a
    constant so that every position predicts the payload tokens first."""
    from tokenizers import AddedToken, Tokenizer
    cfg = small_config(vocab_size=50257 + len(PAYLOADS), n_positions=1024)
    params = random_params(cfg, seed=21)
    rng = np.random.default_rng(21)
    bias = rng.standard_normal(cfg["n_embd"]).astype(np.float32)
    params["ln_f.weight"][:] = 0.0
    params["ln_f.bias"][:] = bias
    for r in range(len(PAYLOADS)):
        params["wte.weight"][50257 + r] = bias * (3.0 - 0.2 * r) / float(bias @ bias) * 10
    path, _ = write_model_dir(tmp_path_factory.mktemp("hostile-browser") / MODEL_NAME, cfg,
                              params=params, tokenizer="none")
    tok = Tokenizer.from_file(str(GPT2_FILES / "tokenizer.json"))
    tok.add_tokens([AddedToken(p, normalized=False) for p in PAYLOADS])
    tok.save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def server(hostile_model_dir):
    yield from serving(hostile_model_dir, "hostile-tokens")


@pytest.fixture()
def page(browser, server):
    yield from watched_page(browser, server, accept_downloads=True, init_script=WATCH_SCRIPT)


def nothing_ran(page):
    assert page.evaluate("window.__xss") is None, "a payload executed"
    assert page.evaluate("window.__created") == [], page.evaluate("window.__created")
    assert page.locator("img, iframe, object, embed, main script, body svg").count() == 0
    assert page.locator("b", has_text="bold").count() == 0       # the page's own <b>s hold numbers


CHECKS, DONE = [], set()


def check(surface, condition, detail=""):
    CHECKS.append(surface)
    assert condition, f"{surface}: {detail}"


def test_hostile_tokens_show_literally_and_nothing_executes(page, server, tmp_path):
    open_viewer(page, server)
    # The model's name, from a directory named with markup: header and title.
    header = page.locator(".model-name").inner_text()
    check("model header", header == MODEL_NAME, header)
    check("page title", MODEL_NAME in page.title(), page.title())

    run_sentence(page, SENTENCE)
    tokens = page.evaluate("window.__viewer.state.run.tokens")
    for p in PAYLOADS:
        check("tokenizer", p in tokens, f"{p!r} is not one token: {tokens}")
    T = len(tokens)

    # Token chips.
    shown = page.get_by_test_id("tokens").locator(".chip .tok").all_text_contents()
    check("token chips", shown == [visible(t) for t in tokens], shown)

    # Heatmap labels: drawn on the canvas as text (tokenLabel, ≤ 14 characters), both axes.
    labels = page.evaluate("""async (tokens) => {
        const { tokenLabel } = await import('/static/text.js');
        return tokens.map((t) => tokenLabel(t, 14));
    }""", tokens)
    drawn = page.evaluate("window.__drawn")
    for label in labels:
        check("heatmap labels", drawn.count(label) >= 2, f"{label!r} not drawn on both axes")
    check("heatmap labels", any(label.startswith("<script>") for label in labels))

    # Next-token list: the payload tokens are the model's top predictions.
    page.get_by_test_id(f"token-{T - 1}").click()
    page.wait_for_selector(f"#topk[data-query='{T - 1}']")
    page.wait_for_selector("#next-token li")
    nxt = page.get_by_test_id("next-token").locator(".tok").all_text_contents()
    check("next-token list", nxt[:5] == [visible(p) for p in PAYLOADS[:5]], nxt)

    # Logit lens (loads when scrolled into view): every depth's top tokens, the payloads included.
    handle = page.evaluate("window.__viewer.state.run.handle")
    page.get_by_test_id("logit-lens").scroll_into_view_if_needed()
    page.wait_for_selector(f"#lens-card[data-position='{T - 1}'][data-handle='{handle}']")
    lens = json.loads(page.evaluate(f"fetch('/api/runs/{handle}/lens?position={T - 1}&k=5').then(r => r.text())"))
    last = len(lens["streams"]) - 1
    cells = [page.get_by_test_id(f"lens-cell-{last}-{r}").locator(".tok").inner_text() for r in range(5)]
    check("logit lens", cells == [visible(t["token"]) for t in lens["streams"][last]["top"]]
          and cells[0] == visible(PAYLOADS[0]), cells)
    page.get_by_test_id("tokens").scroll_into_view_if_needed()

    # Top-5 keys of the last query: tokens as text, each equal to the API's.
    url = f"/api/runs/{handle}/query?layer=0&head=0&query={T - 1}"
    api = json.loads(page.evaluate(f"fetch('{url}').then(r => r.text())"))
    top = page.get_by_test_id("topk").locator("li[data-key] .tok").all_text_contents()
    check("top-5 keys", top == [visible(k["token"]) for k in api["keys"]], top)
    check("top-5 keys", any(t in map(visible, PAYLOADS) for t in top), top)

    # Q·K panel: strip labels and table rows.
    panel = page.get_by_test_id("qk-panel").locator(".strips .tok, .qk-table .tok").all_text_contents()
    check("Q·K panel", [visible(tokens[T - 1])] + [visible(k["token"]) for k in api["keys"]] * 2 == panel, panel)
    whatif = page.get_by_test_id("qk-whatif").locator(".tok").all_text_contents()      # the √d what-if's top keys
    check("Q·K panel", whatif == [visible(api["what_if"][s]["top_token"]) for s in ("real", "unscaled")], whatif)

    # Ledger of a cell whose key is a payload.
    row = next(r for r, k in enumerate(api["keys"]) if k["token"] in PAYLOADS)
    page.get_by_test_id(f"qk-row-{row}").click()
    page.wait_for_selector(f"#ledger[data-key='{api['keys'][row]['position']}']:not([hidden])")
    title = page.locator("#ledger-title .tok").all_text_contents()
    check("ledger", title == [visible(tokens[T - 1]), visible(api["keys"][row]["token"])], title)

    # Tooltip over the cell (query <iframe…>, key <script>…).
    i, j = tokens.index(PAYLOADS[6]), tokens.index(PAYLOADS[0])
    page.mouse.move(*cell_point(page, i, j))
    page.wait_for_selector("[data-testid=tooltip-p]")
    tip = page.get_by_test_id("tooltip").locator(".tt-head .tok").all_text_contents()
    check("tooltip", tip == [visible(PAYLOADS[6]), visible(PAYLOADS[0])], tip)

    # SVG export: well-formed, no script or event handler, labels as text.
    with page.expect_download() as d:
        page.get_by_test_id("export-svg").click()
    svg = Path(d.value.path()).read_text()
    (ARTIFACTS / "hardening-hostile-tokens.svg").write_text(svg)
    root = ET.fromstring(svg)
    elements = list(root.iter())
    check("SVG export", not any(e.tag.endswith(("script", "image", "foreignObject")) for e in elements))
    check("SVG export", not any(a.lower().startswith("on") for e in elements for a in e.attrib))
    texts = [e.text for e in elements if e.tag.endswith("text")]
    check("SVG export", all(label in texts for label in labels), texts)
    check("SVG export", any(MODEL_NAME in (e.text or "") for e in elements if e.tag.endswith("title")))

    # PNG export: its title is drawn as text on a canvas.
    page.evaluate("window.__drawn = []")
    with page.expect_download():
        page.get_by_test_id("export-png").click()
    check("PNG export", any(MODEL_NAME in t for t in page.evaluate("window.__drawn")))

    shot(page, "hardening-hostile-tokens")
    nothing_ran(page)
    DONE.add("main")


def test_hostile_permalink(page, server):
    """A link whose ?text= is the hostile sentence: the page restores it as text and runs it."""
    open_viewer(page, server, f"?text={quote(SENTENCE)}&layer=1&head=2")
    page.wait_for_function("(t) => window.__viewer.state.run && window.__viewer.state.inputView.text === t",
                           arg=SENTENCE)
    check("permalink", page.get_by_test_id("sentence").input_value() == SENTENCE)
    tokens = page.evaluate("window.__viewer.state.run.tokens")
    shown = page.get_by_test_id("tokens").locator(".chip .tok").all_text_contents()
    check("permalink", shown == [visible(t) for t in tokens] and visible(PAYLOADS[1]) in shown, shown)
    nothing_ran(page)
    DONE.add("permalink")


def test_summary_of_browser_checks():
    """Runs last in this file: how many checks, on how many surfaces, with how many payloads."""
    surfaces = sorted(set(CHECKS))
    FIGURES["browser_xss"] = {"payloads": len(PAYLOADS) + 1, "surfaces": len(surfaces), "checks": len(CHECKS),
                              "executions": 0, "surfaces_checked": surfaces}
    ok = DONE == {"main", "permalink"}                 # (their page fixture also checked the console)
    record("browser", "hostile tokens and model name in Chromium", accepted=(len(PAYLOADS) + 1) * ok,
           failed=(len(PAYLOADS) + 1) * (not ok))
    print(f"\nbrowser: {len(PAYLOADS) + 1} payloads, {len(CHECKS)} checks on {len(surfaces)} surfaces, 0 executions")
    assert ok and len(surfaces) >= 13
