"""The corpus page in a real Chromium (`python -m viewer --corpus FILE`): the predictions' shares
and every head's means with their intervals as the results file holds them, a head's top examples,
one of which opens the normal view at that head and query position; the load button.
Same servers, browser and checks as the other browser tests (tests/support/browser.py)."""

import json

import pytest
from browser import serving, shot, wait_head, watched_page

from gpt2np.analysis import corpus

pytestmark = pytest.mark.browser

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. However little known the feelings or views of such a man may be "
        "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
        "surrounding families, that he is considered the rightful property of some one or other of "
        "their daughters. \"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard "
        "that Netherfield Park is let at last?\" Mr. Bennet replied that he had not.")


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "demo-stats.json"
    corpus.measure("demo", [("pride.txt", TEXT * 4)], window=32, bos=True, top_k=3, workers=0, out=path)
    return path, json.loads(path.read_text())


@pytest.fixture(scope="module")
def corpus_server(stats):
    yield from serving("demo", "corpus", "--corpus", str(stats[0]))


@pytest.fixture()
def page(browser, corpus_server):
    yield from watched_page(browser, corpus_server, timeout=90_000)


def pct(x):
    return f"{100 * x:.1f}%"


def test_tables_show_the_file_and_an_example_opens_the_normal_view(page, corpus_server, stats):
    _, r = stats
    page.goto(corpus_server + "/corpus")
    page.wait_for_selector("body[data-ready='1']")
    assert page.get_by_test_id("model-note").is_hidden()          # the file's model is the viewer's
    for p in r["predictions"]:
        row = page.locator(f"tr[data-prediction='{p['id']}']")
        assert row.locator(".share").inner_text() == (pct(p["share"]) if p["windows"] else "—")
        shown = f"[{pct(p['interval'][0])}, {pct(p['interval'][1])}]" if p["interval"] else "[—]"
        assert row.locator(".interval").inner_text() == shown
    n_stats = len(r["statistics"])
    assert page.locator("#heads canvas.hist").count() == len(r["heads"]) * n_stats
    head = max(r["heads"], key=lambda h: h["stats"]["previous"]["mean"])
    cell = page.locator(f"tr[data-head='{head['head']}'] td[data-stat='previous']")
    st = head["stats"]["previous"]
    assert cell.inner_text().split() == [f"{st['mean']:.3f}", f"[{st['interval'][0]:.3f},",
                                         f"{st['interval'][1]:.3f}]"]

    page.locator(f"tr[data-head='{head['head']}']").click()
    examples = page.get_by_test_id("top-positions").locator("li")
    expected = head["top_positions"]["previous"]
    assert examples.count() == len(expected) > 0
    assert [(int(examples.nth(i).get_attribute("data-window")), int(examples.nth(i).get_attribute("data-position")))
            for i in range(len(expected))] == [(e["window"], e["position"]) for e in expected]
    shot(page, "corpus-page")
    # An example whose text the viewer tokenizes as the window was: same tokens, same position.
    pick = next(i for i, e in enumerate(expected) if "view_positions" not in r["windows"][str(e["window"])])
    example, window = expected[pick], r["windows"][str(expected[pick]["window"])]
    examples.nth(pick).get_by_test_id("example-link").click()
    page.wait_for_selector("body[data-ready='1']")
    wait_head(page, head["layer"], head["index"])
    state = page.evaluate("({q: window.__viewer.state.query, tokens: window.__viewer.state.run.tokens, "
                          "bos: document.getElementById('bos').checked, url: location.search})")
    assert state["q"] == example["position"]
    assert state["tokens"] == window["tokens"] and state["bos"] is window["bos"] is True
    assert f"layer={head['layer']}&head={head['index']}&q={example['position']}" in state["url"]


def test_load_button_reads_another_file(page, corpus_server, small_text_model_dir, tmp_path):
    other = tmp_path / "small.json"
    corpus.measure(small_text_model_dir, [TEXT], window=16, top_k=2, workers=0, out=other)
    r = json.loads(other.read_text())
    page.goto(corpus_server + "/corpus")
    page.wait_for_selector("body[data-ready='1']")
    page.get_by_test_id("corpus-load").set_input_files(str(other))
    page.wait_for_function("(n) => document.querySelectorAll('#heads tbody tr').length === n",
                           arg=len(r["heads"]))
    assert f"model {r['model']['name']}" in page.get_by_test_id("corpus-summary").inner_text()
    note = page.get_by_test_id("model-note")
    assert note.is_visible() and r["model"]["name"] in note.inner_text() and "demo" in note.inner_text()
    p1 = r["predictions"][0]
    assert page.locator("tr[data-prediction='1'] .share").inner_text() == pct(p1["share"])

    (tmp_path / "other.json").write_text('{"format": "something else"}')
    page.get_by_test_id("corpus-load").set_input_files(str(tmp_path / "other.json"))
    error = page.get_by_test_id("corpus-error")
    error.wait_for(state="visible")
    assert "other.json is not a results file" in error.inner_text()

    # A file of version 1 (normal intervals that could leave 0–1): refused, saying what to do.
    r["version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(r))
    page.get_by_test_id("corpus-load").set_input_files(str(tmp_path / "old.json"))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('old.json')")
    text = error.inner_text()
    assert "earlier gpt2np" in text and "python -m viewer --corpus old.json" in text


def test_the_page_names_the_interval_method(page, corpus_server, stats):
    page.goto(corpus_server + "/corpus")
    page.wait_for_selector("body[data-ready='1']")
    assert "logit scale" in page.locator("#mean-method").inner_text()
