"""The top-5 keys list in Chromium: only keys up to the query, and a note when there are fewer than 5.

The bundled demo model through `python -m viewer` (browser.py's demo_server); the page's list is
compared with the API's answer and with the rule itself (keys 0..query), not with facts of the model.
"""

import pytest
from browser import api_get, demo_server, element_shot, open_viewer, run_sentence, watched_page  # noqa: F401

pytestmark = pytest.mark.browser

SENTENCE = "Mr. Darcy and Miss Bennet walked"


@pytest.fixture()
def page(browser, demo_server):
    yield from watched_page(browser, demo_server)


def shown_keys(page, query, ignore_sink):
    page.wait_for_selector(f"#topk[data-query='{query}'][data-ignore-sink='{int(ignore_sink)}']")
    items = page.get_by_test_id("topk").locator("li[data-key]")
    return [int(items.nth(r).get_attribute("data-key")) for r in range(items.count())]


def test_topk_lists_only_keys_up_to_the_query_and_says_when_fewer(page, demo_server):
    open_viewer(page, demo_server)
    handle = run_sentence(page, SENTENCE)
    n_tokens = api_get(demo_server, f"/api/runs/{handle}")["n_tokens"]
    assert n_tokens >= 6
    for ignore_sink in (False, True):
        if ignore_sink:
            page.get_by_test_id("ignore-sink").check()
        for query in (0, 2, n_tokens - 1):
            page.get_by_test_id(f"token-{query}").click()
            keys = shown_keys(page, query, ignore_sink)
            layer, head = (page.get_by_test_id("topk").get_attribute(f"data-{a}") for a in ("layer", "head"))
            api = api_get(demo_server, f"/api/runs/{handle}/query?layer={layer}&head={head}&query={query}"
                                       f"&ignore_sink={int(ignore_sink)}")
            visible = range(1 if ignore_sink and query > 0 else 0, query + 1)
            assert keys == [k["position"] for k in api["keys"]], (query, ignore_sink, keys)
            assert set(keys) <= set(visible) and len(keys) == min(5, len(visible)), (query, ignore_sink, keys)
            note = page.get_by_test_id("topk-note")
            if len(visible) < 5:
                assert note.inner_text() == api["note"]
                assert note.inner_text().startswith(f"only {len(visible)} key")
                if query == 2 and not ignore_sink:
                    element_shot(page.get_by_test_id("topk"), "topk-fewer-keys")
            else:
                assert note.count() == 0 and api["note"] is None
