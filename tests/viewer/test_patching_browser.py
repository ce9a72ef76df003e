"""The "Where is it decided?" panel (patching.js) in a real Chromium on the bundled demo model, with
the pair its card names: the grids appear with token labels, a hovered cell shows the numbers the
API gives for it, a click opens its layer, head and query in the main view, a corrupted sentence of
another token count shows both tokenizations and nothing else, and Cancel stops a sweep.
Same servers, browser and checks as the other browser tests (tests/support/browser.py)."""

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import ARTIFACTS, demo_server, open_viewer, run_sentence, visible, wait_head, watched_page  # noqa: F401
from demofacts import CARD, one_token_swap

pytestmark = pytest.mark.browser

PAIR = CARD["examples"]["pair"]
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def patch_api(base, handle, body):
    """POST .../patch as the page does; the stream's lines -> the result line."""
    request = urllib.request.Request(f"{base}/api/runs/{handle}/patch", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as r:
        lines = [json.loads(line) for line in r.read().splitlines()]
    assert lines[-1]["event"] == "result", lines[-1]
    return lines[-1]


@pytest.fixture()
def demo_page(browser, demo_server):
    yield from watched_page(browser, demo_server, timeout=120_000)


def run_example(page):
    page.get_by_test_id("patch-example").click()
    page.wait_for_selector("[data-testid=patch-grid-pattern] td.cell")
    return page.get_by_test_id("heatmap").get_attribute("data-handle")


def test_the_example_pair_hover_and_click(demo_page, demo_server):
    page = demo_page
    open_viewer(page, demo_server)
    handle = run_example(page)
    assert page.get_by_test_id("sentence").input_value() == PAIR["clean"]
    result = patch_api(demo_server, handle, {"corrupted": PAIR["corrupted"], "answer": PAIR["answer"],
                                             "versus": PAIR["versus"]})

    # the two sentences token by token, the differing positions marked
    tokens = page.get_by_test_id("patch-tokens")
    differ = [int(t) for t, (a, b) in enumerate(zip(result["clean_tokens"], result["corrupted_tokens"])) if a != b]
    marked = tokens.locator("td.differ")
    assert marked.count() == 2 * len(differ) > 0
    assert [c.inner_text() for c in tokens.locator("tr").nth(2).locator("td").all()] == \
        [visible(t) for t in result["corrupted_tokens"]]

    # every site's grid, its position axis labelled with the tokens
    for site, grid in result["grids"].items():
        figure = page.get_by_test_id(f"patch-grid-{site}")
        assert figure.locator("td.cell").count() == np.array(grid["ld"]).size
    labels = page.get_by_test_id("patch-grid-resid_pre").locator("th.col").all()
    for t, (th, clean, corrupted) in enumerate(zip(labels, result["clean_tokens"], result["corrupted_tokens"])):
        text = th.inner_text().replace("\n", "")
        assert text.startswith(str(t)) and visible(clean)[:7] in text, (t, text)
        assert (corrupted != clean) == ("differ" in th.get_attribute("class"))

    # hover: the exact numbers the API gives for that cell
    g = result["grids"]["resid_pre"]
    norm = np.array(g["normalized"])
    r, c = np.unravel_index(np.argmax(norm), norm.shape)
    page.get_by_test_id(f"patch-cell-resid_pre-{r}-{c}").hover()
    assert float(page.get_by_test_id("patch-tip-normalized").inner_text()) == g["normalized"][r][c]
    assert float(page.get_by_test_id("patch-tip-ld").inner_text()) == g["ld"][r][c]
    assert "layer × position" in page.get_by_test_id("patch-grid-resid_pre").inner_text()
    # the scale: 0 white, 1 red, and past either end a colour of its own (never a clamped 1 or −1)
    colours = page.evaluate("""async (v) => {
        const { patchRgb } = await import('/static/colors.js');
        const cell = document.querySelector(`[data-testid=patch-cell-resid_pre-${v.r}-${v.c}]`);
        return { at: [0, 1, 1.0001, 7, -1, -1.0001].map(patchRgb), cell: getComputedStyle(cell).backgroundColor,
                 expected: `rgb(${patchRgb(v.value).join(', ')})` };
    }""", {"r": int(r), "c": int(c), "value": g["normalized"][r][c]})
    white, red, over, over7, blue, under = colours["at"]
    assert white == [255, 255, 255] and red != white and blue != white and over == over7
    assert len({tuple(x) for x in (red, over, blue, under)}) == 4
    assert colours["cell"] == colours["expected"]
    page.get_by_test_id("patching").screenshot(path=str(ARTIFACTS / "patching-panel.png"))
    IMAGES.mkdir(exist_ok=True)
    shutil.copy(ARTIFACTS / "patching-panel.png", IMAGES / "patching-panel.png")

    # click a head's cell: that layer and head open above, at the position the metric reads
    z = np.array(result["grids"]["z"]["normalized"])
    layer, head = (int(x) for x in np.unravel_index(np.argmax(z), z.shape))
    head = (head + 1) % z.shape[1] if (layer, head) == (0, 0) else head       # not the page's start
    page.get_by_test_id(f"patch-cell-z-{layer}-{head}").click()
    wait_head(page, layer, head)
    assert page.evaluate("window.__viewer.state.query") == result["position"]
    assert page.locator("#tokens .chip.selected").get_attribute("data-position") == str(result["position"])
    # a position cell: its layer, the same head, that token as the query
    page.get_by_test_id(f"patch-cell-resid_pre-{r}-{c}").click()
    wait_head(page, int(r), head)
    page.wait_for_function("(c) => window.__viewer.state.query === c", arg=int(c))


def test_a_corrupted_sentence_of_another_length_shows_both_tokenizations(demo_page, demo_server, demo):
    page = demo_page
    open_viewer(page, demo_server)
    run_sentence(page, PAIR["clean"])
    longer = PAIR["corrupted"] + " then"
    page.get_by_test_id("patch-corrupted").fill(longer)
    page.get_by_test_id("patch-run").click()
    page.wait_for_selector("[data-testid=patch-error]:not([hidden])")
    for name, text in (("clean", PAIR["clean"]), ("corrupted", longer)):
        tokens = demo.token_strings(demo.encode(text))
        side = page.get_by_test_id(f"patch-mismatch-{name}")
        assert side.locator(".tok").count() == len(tokens)
        assert [t.inner_text() for t in side.locator(".tok").all()] == [visible(t) for t in tokens]
        assert f"({len(tokens)} tokens)" in side.inner_text()
    assert "tokens" in page.get_by_test_id("patch-error").inner_text()
    assert page.get_by_test_id("patch-grids").locator("td").count() == 0
    page.get_by_test_id("patching").screenshot(path=str(ARTIFACTS / "patching-mismatch.png"))
    shutil.copy(ARTIFACTS / "patching-mismatch.png", IMAGES / "patching-mismatch.png")
    assert len(page.watch.console_errors) == 1 and "400" in page.watch.console_errors[0]   # the refused POST
    page.watch.console_errors.clear()


def test_cancel_stops_the_sweep(demo_page, demo_server, demo):
    page = demo_page
    open_viewer(page, demo_server)
    text = " ".join([PAIR["clean"]] * 8)                  # long enough for a sweep of many seconds
    other, _ = one_token_swap(demo, text)
    run_sentence(page, text)
    page.get_by_test_id("patch-corrupted").fill(other)
    page.get_by_test_id("patch-run").click()
    page.wait_for_selector("[data-testid=patch-progress]:not([hidden])")
    page.get_by_test_id("patch-cancel").click()
    status = page.get_by_test_id("patch-status")
    assert status.inner_text().startswith("Cancelled after")
    assert page.get_by_test_id("patch-grids").locator("td").count() == 0
    # the server is free again: the example pair runs to the end
    run_example(page)
    page.watch.failed = [(u, f) for u, f in page.watch.failed if not (u.endswith("/patch") and "ABORTED" in str(f))]
