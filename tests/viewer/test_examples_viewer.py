"""The viewer shows the loaded model's own examples (gpt2np.analysis.examples): /api/model carries them,
the page's placeholders and hints name them, the presets are built from them and each one runs
(the "Long paragraph" fits the context: issue 20 §2.1), and the pair preset never replaces the
sentence above by itself."""

import html
import json

import pytest
from browser import (  # noqa: F401 - demo_server is a fixture
    api_get,
    demo_server,
    open_viewer,
    run_sentence,
    watched_page,
)

from gpt2np.analysis.examples import examples_for
from viewer import create_app


@pytest.fixture(scope="module")
def demo_app():
    return create_app({"MODEL": "demo"})


def test_api_model_carries_the_examples(demo_app):
    m = demo_app.extensions["gpt2np.model"]
    body = demo_app.test_client().get("/api/model").get_json()
    assert body["examples"] == json.loads(json.dumps(examples_for(m)))
    assert body["examples"]["sentences"] and body["examples"]["dropped"] == []


def test_placeholders_and_hints_are_the_models(demo_app):
    m = demo_app.extensions["gpt2np.model"]
    ex = examples_for(m)
    page = html.unescape(demo_app.test_client().get("/").get_data(as_text=True))
    assert f'placeholder="heads, e.g. {" ".join(ex["ablate"])}"' in page
    assert f'token to follow: {json.dumps(ex["follow"]["token"])} or #id' in page
    assert f'e.g. {json.dumps(ex["pair"]["versus"])}' in page
    assert page.count("5.1 5.5") == " ".join(ex["ablate"]).count("5.1 5.5")    # GPT-2's heads: only if the model's
    c = demo_app.test_client()
    handle = c.post("/api/run", json={"text": ex["follow"]["text"]}).get_json()["handle"]
    split = next(w for w in (" big", " trophy", " suitcases", " antidisestablishmentarianism")
                 if len(m.encode(w)) > 1)
    r = c.post(f"/api/runs/{handle}/ablate", json={"heads": ex["ablate"], "token": split})
    assert r.status_code == 400 and f"e.g. {ex['follow']['token']!r}" in r.get_json()["error"]
    r = c.post(f"/api/runs/{handle}/ablate", json={"mode": "zero"})
    assert r.status_code == 400 and json.dumps(ex["follow"]["token"]) in r.get_json()["error"]


@pytest.fixture()
def demo_page(browser, demo_server):
    yield from watched_page(browser, demo_server, timeout=90_000)


@pytest.mark.browser
def test_every_preset_runs_and_the_pair_preset_asks(demo_page, demo_server):
    page = demo_page
    open_viewer(page, demo_server)
    model = api_get(demo_server, "/api/model")
    ex = model["examples"]
    labels = page.eval_on_selector_all("#preset option[value]:not([value=''])", "os => os.map((o) => o.textContent)")
    assert labels == [s["label"] for s in ex["sentences"]]
    assert max(len(s["text"].split()) for s in ex["sentences"]) > 100        # a long paragraph among them
    for s in ex["sentences"]:                          # each preset runs: tokens, no error
        page.get_by_test_id("preset").select_option(label=s["label"])
        page.wait_for_function("(t) => window.__viewer.state.inputView && window.__viewer.state.inputView.text === t "
                               "&& document.querySelector('#tokens .chip')", arg=s["text"])
        assert page.get_by_test_id("error").is_hidden(), s["label"]
        assert page.evaluate("window.__viewer.state.run.n_tokens") <= model["n_positions"]

    # The pair preset with another sentence above: it fills B, says so, and waits to be asked.
    mine = ex["sentences"][0]["text"]
    assert mine != ex["pair"]["clean"]
    run_sentence(page, mine)
    page.get_by_test_id("pair-preset").select_option(index=1)
    page.wait_for_selector("[data-testid=pair-preset-note]")
    assert page.get_by_test_id("sentence").input_value() == mine
    assert page.get_by_test_id("pair-b").input_value() == ex["pair"]["corrupted"]
    assert ex["pair"]["clean"] in page.get_by_test_id("pair-preset-note").inner_text()
    page.get_by_test_id("pair-use-a").click()
    page.wait_for_selector("#pair-maps:not([hidden])")
    assert page.get_by_test_id("sentence").input_value() == ex["pair"]["clean"]
    assert page.get_by_test_id("pair-mode").inner_text() == "positional"   # the model's pair: same length
    # With A already above, the preset compares at once.
    page.get_by_test_id("pair-preset").select_option(index=1)
    page.wait_for_selector("#pair-maps:not([hidden])")
    assert page.locator("[data-testid=pair-preset-note]").count() == 0
