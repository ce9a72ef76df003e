"""The corpus page's summary counts in English: a results file of one source and one document says
"1 source, 1 document", not "1 documents" (corpus.js, text.js count). Same browser checks as the
other browser tests (tests/browser.py)."""

import json

import pytest
from browser import serving, watched_page

from gpt2np.analysis import corpus

pytestmark = pytest.mark.browser

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. However little known the feelings or views of such a man may be.")


@pytest.fixture(scope="module")
def one_document(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus-one") / "one.json"
    corpus.measure("demo", [("one.txt", TEXT)], window=16, top_k=2, workers=0, out=path)
    return path, json.loads(path.read_text())


@pytest.fixture(scope="module")
def one_server(one_document):
    yield from serving("demo", "corpus-one", "--corpus", str(one_document[0]))


@pytest.fixture()
def page(browser, one_server):
    yield from watched_page(browser, one_server, timeout=90_000)


def test_summary_says_one_source_one_document(page, one_server, one_document):
    _, r = one_document
    assert len(r["input"]["sources"]) == 1 and r["input"]["documents"] == 1
    page.goto(one_server + "/corpus")
    page.wait_for_selector("body[data-ready='1']")
    summary = page.get_by_test_id("corpus-summary").inner_text()
    assert "1 source, 1 document, " in summary and "1 documents" not in summary
    assert f"{r['input']['tokens']} tokens" in summary
    n = r["input"]["windows"]
    assert f"of {n} window{'s' * (n != 1)} of " in summary
