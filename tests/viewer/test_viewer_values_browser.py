"""The value side in a real Chromium: the value ledger, play, the walk through one block and the
logit attribution, on the bundled demo model (`python -m viewer`, browser.py's demo_server).

What the page shows is compared with the API's answer as text (the float32 text the server sent)
and, for the trace's own arrays, with the trace this process computes for the same sentence. Each
test ends with zero console errors, zero failed requests and no request to another host
(browser.py's Watch). Screenshots go to test-artifacts/.
"""

import numpy as np
import pytest
from browser import (  # noqa: F401 - demo_server is a fixture
    api_get,
    demo_server,
    element_shot,
    new_page,
    open_viewer,
    run_sentence,
    wait_head,
    watched_page,
)
from demofacts import single_token

pytestmark = pytest.mark.browser

SENTENCE = "Mr. Darcy and Miss Bennet walked in the garden."


@pytest.fixture()
def page(browser, demo_server):
    yield from watched_page(browser, demo_server, timeout=90_000)


def f32_text(values):
    return [str(v) for v in np.asarray(values, dtype=np.float32).ravel()]


def numbers(page, testid):
    """The float32 texts a vector view lists (shown or folded)."""
    return page.get_by_test_id(f"{testid}-numbers").text_content().split()


def wait_value_panel(page, handle, query):
    page.wait_for_function("""([handle, query]) => {
        const d = document.getElementById('value-panel').dataset, S = window.__viewer.state;
        return d.handle === handle && d.query === String(query) && d.layer === String(S.layer)
            && d.head === String(S.head);
    }""", arg=[handle, query])
    d = page.get_by_test_id("value-panel")
    return int(d.get_attribute("data-layer")), int(d.get_attribute("data-head"))


# -- value ledger ---------------------------------------------------------------------------------
def test_value_ledger_shows_the_apis_numbers(page, demo_server, demo):
    open_viewer(page, demo_server)
    handle = run_sentence(page, SENTENCE)
    trace = demo.run(SENTENCE)
    query = 5
    page.get_by_test_id(f"token-{query}").click()
    page.keyboard.press("ArrowDown")                   # layer 1
    page.keyboard.press("ArrowRight")                  # head 1
    wait_head(page, 1, 1)
    layer, head = wait_value_panel(page, handle, query)
    assert (layer, head) == (1, 1)
    api = api_get(demo_server, f"/api/runs/{handle}/value?layer={layer}&head={head}&query={query}")
    assert numbers(page, "value-z") == api["z"] == f32_text(trace[f"blocks.{layer}.attn.hook_z"][query, head])
    assert numbers(page, "value-write") == api["write"]
    rows = page.locator("[data-testid^=value-key-]")
    assert rows.count() == len(api["keys"])
    for r, key in enumerate(api["keys"]):
        assert rows.nth(r).get_attribute("data-key") == str(key["position"])
        assert rows.nth(r).locator("td").nth(1).inner_text() == key["p"]
    assert api["z_max_abs_diff"] in page.get_by_test_id("value-z-check").inner_text()
    assert api["attn_out"]["relative"] in page.get_by_test_id("value-attn-check").inner_text()
    element_shot(page.get_by_test_id("value-panel"), "value-ledger")
    # a head's bar opens that head, and the ledger follows it
    other = (head + 2) % demo.config.n_head
    page.get_by_test_id(f"value-head-norm-{other}").click()
    wait_head(page, layer, other)
    assert wait_value_panel(page, handle, query) == (layer, other)
    api = api_get(demo_server, f"/api/runs/{handle}/value?layer={layer}&head={other}&query={query}")
    assert numbers(page, "value-z") == api["z"]


# -- play -----------------------------------------------------------------------------------------
WATCH_LAYER = """() => {
    window.__layers = [];
    const slider = document.getElementById('layer');
    new MutationObserver(() => {
        const v = slider.value;
        if (window.__layers[window.__layers.length - 1] !== v) window.__layers.push(v);
    }).observe(document.getElementById('layer-value'), { childList: true, characterData: true, subtree: true });
}"""


def test_play_steps_the_layer_slider_and_stops_on_a_key_or_click(page, demo_server):
    open_viewer(page, demo_server)
    run_sentence(page, SENTENCE)
    page.get_by_test_id("play-speed").select_option("300")
    page.evaluate(WATCH_LAYER)
    play = page.get_by_test_id("play")
    play.click()
    assert play.get_attribute("data-playing") == "1"
    page.wait_for_function("() => window.__layers.length >= 3")
    L = page.evaluate("window.__viewer.state.model.n_layer")
    moves = page.evaluate("window.__layers")
    for a, b in zip(moves, moves[1:]):
        assert int(b) == (int(a) + 1) % L, moves                # one layer per step, wrapping
    page.keyboard.press("x")                                    # any key
    assert play.get_attribute("data-playing") == "0"
    stopped = page.evaluate("[window.__layers.length, document.getElementById('layer').value]")
    page.wait_for_timeout(1200)                                 # four steps' worth: nothing moves
    assert page.evaluate("[window.__layers.length, document.getElementById('layer').value]") == stopped
    layer = page.get_by_test_id("layer").input_value()
    wait_head(page, int(layer), page.evaluate("window.__viewer.state.head"))
    assert f"layer={layer}" in page.url                         # the URL followed
    # a click elsewhere stops it too; so does the button
    play.click()
    page.wait_for_function("() => window.__layers.length >= 6")
    page.get_by_test_id("tokens").click(position={"x": 5, "y": 5})
    assert play.get_attribute("data-playing") == "0"
    play.click()
    assert play.get_attribute("data-playing") == "1"
    play.click()
    assert play.get_attribute("data-playing") == "0" and play.inner_text() == "▶ Play"


def test_reduced_motion_starts_slow(browser, demo_server):
    context, page = new_page(browser, demo_server, reduced_motion="reduce")
    try:
        open_viewer(page, demo_server)
        assert page.get_by_test_id("play-speed").input_value() == "1600"
        page.watch.check()
    finally:
        context.close()


# -- walk -----------------------------------------------------------------------------------------
def test_walk_steps_show_the_apis_values(page, demo_server, demo):
    open_viewer(page, demo_server)
    handle = run_sentence(page, SENTENCE)
    trace = demo.run(SENTENCE)
    query = 6
    page.get_by_test_id(f"token-{query}").click()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    layer, head = 2, page.evaluate("window.__viewer.state.head")
    wait_head(page, layer, head)
    page.get_by_test_id("walk").scroll_into_view_if_needed()
    body = page.get_by_test_id("walk-step")
    page.wait_for_function("""([h, l, q]) => { const d = document.getElementById('walk-body').dataset;
        return d.handle === h && d.layer === String(l) && d.query === String(q) && d.step === '0'; }""",
                           arg=[handle, layer, query])
    api = api_get(demo_server, f"/api/runs/{handle}/walk?layer={layer}&head={head}&query={query}")
    steps = api["steps"]
    assert len(steps) == 12
    for i, step in enumerate(steps):
        assert body.get_attribute("data-step") == str(i) and body.get_attribute("data-id") == step["id"]
        assert page.evaluate("document.body.dataset.walkFocus") == step["id"]
        assert page.get_by_test_id(f"walk-chip-{i}").get_attribute("class").endswith(" on")
        for j, vector in enumerate(step["vectors"]):
            assert numbers(page, f"walk-vector-{j}") == vector["values"], (step["id"], j)
        for j, s in enumerate(step["scalars"]):
            assert page.get_by_test_id(f"walk-scalar-{j}").inner_text() == s["value"]
        if step["id"] == "z":
            # the z the walk shows is the trace's, and the value ledger it highlights shows the same
            assert numbers(page, "walk-vector-0") == f32_text(trace[f"blocks.{layer}.attn.hook_z"][query, head])
            outline = "getComputedStyle(document.querySelector('[data-testid=value-z]')).outlineStyle"
            assert page.evaluate(outline) == "solid"
            assert numbers(page, "value-z") == step["vectors"][0]["values"]
        if step["id"] == "pv":
            element_shot(page.get_by_test_id("walk"), "walk-step")
        if i < len(steps) - 1:
            page.get_by_test_id("walk-next").click()
            page.wait_for_selector(f"#walk-body[data-step='{i + 1}']")
    assert page.get_by_test_id("walk-next").is_disabled()
    # the block computed again for the one token (gpt2np.oneblock): the full pass's up to rounding
    shown = np.array([float(v) for v in numbers(page, "walk-vector-0")])
    expected = trace[f"blocks.{layer}.hook_resid_post"][query]
    assert np.abs(shown - expected).max() <= 1e-5 * max(np.abs(expected).max(), 1.0)
    page.get_by_test_id("walk-back").click()
    page.wait_for_selector(f"#walk-body[data-step='{len(steps) - 2}']")
    # autoplay from the start; a key stops it
    page.get_by_test_id("walk-chip-0").click()
    page.get_by_test_id("walk-play").click()
    page.wait_for_selector("#walk-body[data-step='1']")
    page.keyboard.press("x")
    assert page.get_by_test_id("walk-play").get_attribute("data-playing") == "0"
    at = body.get_attribute("data-step")
    page.wait_for_timeout(2500)
    assert body.get_attribute("data-step") == at


# -- attribution ----------------------------------------------------------------------------------
def test_attribution_table_sorts_opens_heads_and_takes_a_pair(page, demo_server, demo):
    open_viewer(page, demo_server)
    handle = run_sentence(page, SENTENCE)
    T = page.evaluate("window.__viewer.state.run.n_tokens")
    card = page.get_by_test_id("attribution")
    card.scroll_into_view_if_needed()
    page.wait_for_selector(f"#attribution-card[data-handle='{handle}'][data-position='{T - 1}']")
    api = api_get(demo_server, f"/api/runs/{handle}/attribution?position={T - 1}")
    page.get_by_test_id("attr-show-all").click()                # the table opens at the 12 largest
    rows = page.locator("[data-testid=attr-table] tbody tr[data-name]")

    def shown():
        return [(rows.nth(i).get_attribute("data-name"), float(rows.nth(i).get_attribute("data-value")))
                for i in range(rows.count())]
    by_name = {p["name"]: p["value"] for p in api["parts"]}
    assert sorted(shown()) == sorted(by_name.items())          # every part, its value as the API's
    assert [abs(v) for _, v in shown()] == sorted((abs(v) for v in by_name.values()), reverse=True)
    assert page.get_by_test_id("attr-logit").inner_text() == f"{api['logit']:.6f}"
    assert page.get_by_test_id("attr-parts-sum").inner_text() == f"{api['sum']:.6f}"
    page.get_by_test_id("attr-sort-value").click()
    assert [v for _, v in shown()] == sorted(by_name.values(), reverse=True)
    page.get_by_test_id("attr-sort-value").click()
    assert [v for _, v in shown()] == sorted(by_name.values())
    page.get_by_test_id("attr-sort-order").click()
    assert [n for n, _ in shown()] == [p["name"] for p in api["parts"]]
    element_shot(card, "attribution")
    # a head's row opens it
    top_head = max((p for p in api["parts"] if p["kind"] == "head"), key=lambda p: abs(p["value"]))
    page.get_by_test_id(f"attr-row-{top_head['name']}").click()
    wait_head(page, top_head["layer"], top_head["head"])
    # a pair: logit(token) − logit(versus)
    token, token_id = single_token(demo, SENTENCE)
    other, other_id = single_token(demo, "And then the garden.")
    assert other_id != token_id
    card.scroll_into_view_if_needed()
    page.get_by_test_id("attr-token").fill(token)
    page.get_by_test_id("attr-versus").fill(other)
    page.get_by_test_id("attr-versus").press("Enter")          # commits the field: a change event
    page.wait_for_selector(f"#attribution-card[data-target='{token_id}'][data-versus='{other_id}']")
    pair = api_get(demo_server, f"/api/runs/{handle}/attribution?position={T - 1}"
                                f"&token_id={token_id}&versus_id={other_id}")
    by_name = {p["name"]: p["value"] for p in pair["parts"]}
    assert sorted(shown()) == sorted(by_name.items())
    trace = demo.run(SENTENCE)
    logit = float(trace.logits[-1, token_id]) - float(trace.logits[-1, other_id])
    assert abs(sum(by_name.values()) - logit) <= 1e-4 * float(np.abs(trace.logits[-1, [token_id, other_id]]).max())
