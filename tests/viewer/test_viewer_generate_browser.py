"""The Generate panel in a real Chromium, on the bundled demo model (`python -m viewer`,
browser.py's demo_server): the sampling ledger as the API gives it, Generate 3 with a seed
appending the tokens `model.generate` draws with that seed, every new position an ordinary token of
the run, and the permalink restoring text and settings. Zero console errors, failed requests or
requests to another host (browser.py's Watch). A screenshot goes to test-artifacts/.
"""

import json

import pytest
from browser import (  # noqa: F401 - demo_server is a fixture
    api_get,
    demo_server,
    element_shot,
    open_viewer,
    run_sentence,
    watched_page,
)

pytestmark = pytest.mark.browser

SENTENCE = "Once upon a time there was"
SETTINGS = {"temperature": "0.8", "top_k": "40", "top_p": "0.9", "seed": "7"}
INPUTS = {"temperature": "temperature", "top_k": "top-k", "top_p": "top-p", "seed": "seed"}


@pytest.fixture()
def page(browser, demo_server):
    yield from watched_page(browser, demo_server, timeout=90_000)


def wait_ledger(page, handle, settings):
    page.wait_for_function("""([handle, settings]) => {
        const d = document.getElementById('sample-ledger').dataset;
        return d.handle === handle && d.settings === settings;
    }""", arg=[handle, json.dumps(settings, separators=(",", ":"))])


def ledger_settings(settings):
    """The settings as the server echoes them (numbers, greedy false), in its key order."""
    return {"temperature": float(settings["temperature"]), "top_k": int(settings["top_k"]),
            "top_p": float(settings["top_p"]), "seed": int(settings["seed"]), "greedy": False}


def test_generate_three_tokens_with_a_seed(page, demo_server, demo):
    open_viewer(page, demo_server)
    handle = run_sentence(page, SENTENCE)
    T = len(api_get(demo_server, f"/api/runs/{handle}")["ids"])
    for name, value in SETTINGS.items():
        page.get_by_test_id(INPUTS[name]).fill(value)
    wait_ledger(page, handle, ledger_settings(SETTINGS))

    # The ledger's top row is the API's.
    query = "&".join(f"{k}={v}" for k, v in SETTINGS.items())
    expected = api_get(demo_server, f"/api/runs/{handle}/sample?{query}")
    top = expected["candidates"][0]
    row = page.get_by_test_id("sample-ledger").get_by_test_id("sample-row-0")
    assert row.get_attribute("data-id") == str(top["id"])
    cells = row.locator("td").all_text_contents()
    assert cells[0] == "1" and cells[2] == f"{top['logit']:.3f}" and cells[4] == f"{top['p_temperature']:.4f}"
    assert cells[8] == f"{top['p_draw']:.4f}"
    drawn = page.get_by_test_id("sample-ledger").locator("tr.drawn")
    assert drawn.get_attribute("data-id") == str(expected["chosen"]["id"])
    element_shot(page.get_by_test_id("generate-panel"), "generate-panel")

    # Generate 3: three more tokens, those model.generate draws with the same settings and seed.
    page.get_by_test_id("gen-n").fill("3")
    page.get_by_test_id("generate-n").click()
    page.wait_for_function("(T) => window.__viewer.state.run.n_tokens === T && "
                           "document.getElementById('heatmap').dataset.handle === window.__viewer.state.run.handle",
                           arg=T + 3)
    g = demo.generate(SENTENCE, max_new_tokens=3, temperature=0.8, top_k=40, top_p=0.9, seed=7)
    state = page.evaluate("window.__viewer.state.run")
    assert state["ids"] == g.ids.tolist()
    assert page.get_by_test_id("tokens").locator(".chip").count() == T + 3
    assert page.get_by_test_id("heatmap").get_attribute("data-tokens") == str(T + 3)
    # The new last position is an ordinary query: the top-5 keys list is for it.
    page.wait_for_function("(q) => document.getElementById('topk').dataset.query === String(q)", arg=T + 2)
    # The ledger now reads the new run; its seeded draw is what the API says for it.
    new = state["handle"]
    wait_ledger(page, new, ledger_settings(SETTINGS))
    again = api_get(demo_server, f"/api/runs/{new}/sample?{query}")
    assert page.get_by_test_id("sample-ledger").get_by_test_id("sample-row-0").get_attribute("data-id") == \
        str(again["candidates"][0]["id"])

    # The permalink holds the text and the settings; opening it restores both.
    url = page.url
    context2 = page.context.new_page()
    try:
        context2.goto(url)
        context2.wait_for_selector("body[data-ready='1']")
        assert context2.get_by_test_id("sentence").input_value() == g.text
        for name, value in SETTINGS.items():
            assert context2.get_by_test_id(INPUTS[name]).input_value() == value
        assert context2.evaluate("window.__viewer.state.run.ids") == g.ids.tolist()
    finally:
        context2.close()


def test_bad_setting_shows_the_servers_message(page, demo_server):
    open_viewer(page, demo_server)
    run_sentence(page, SENTENCE)
    page.get_by_test_id("top-p").fill("1.5")
    error = page.get_by_test_id("sample-ledger").locator(".error")
    error.wait_for()
    assert "?top_p=" in error.text_content()
    # The 400 is the answer asked for: Chromium logs it as a failed resource, nothing else may be logged.
    page.watch.console_errors[:] = [e for e in page.watch.console_errors if "status of 400" not in e]
