"""The analysis panels in a real Chromium: heads table, ablation, logit lens, minimal pair, findings.

Same servers, browser and checks as tests/viewer/test_viewer_browser.py (from tests/support/browser.py): the bundled
demo model where learned structure matters, the GPT-2-layout model (12 × 12) for the 144-row
table and GPT-2 small's published roles. Each test compares what the page shows with the API's
numbers and ends with zero console errors, zero failed requests, no request to another host.
Screenshots go to test-artifacts/.
"""

import urllib.request

import pytest
from browser import (  # noqa: F401 - demo_server and server are fixtures
    HOSTILE,
    api_get,
    api_post,
    demo_server,
    element_shot,
    open_viewer,
    run_sentence,
    server,
    shot,
    visible,
    wait_head,
    watched_page,
)
from demofacts import CONFIG, card_head, head_name, one_token_swap

pytestmark = pytest.mark.browser

SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
DARCY = "Mr. Darcy and Miss Bennet walked in the garden."


@pytest.fixture()
def demo_page(browser, demo_server):
    yield from watched_page(browser, demo_server, timeout=90_000)


@pytest.fixture()
def gpt2_page(browser, server):
    yield from watched_page(browser, server, timeout=90_000)


def wait_heads_table(page):
    """Until the heads table shows the current run (it loads once on screen); returns the handle."""
    page.get_by_test_id("heads-table").scroll_into_view_if_needed()
    page.wait_for_function("""() => {
        const card = document.getElementById('heads-card'), run = window.__viewer.state.run;
        return run && card.dataset.handle === run.handle && card.querySelector('tbody tr');
    }""")
    return page.evaluate("window.__viewer.state.run.handle")


def table_order(page):
    return page.eval_on_selector_all("#heads-card tbody tr",
                                     "rows => rows.map(r => `${r.dataset.layer}.${r.dataset.head}`)")


# -- heads table (GPT-2 layout: 144 heads) --------------------------------------------------------
def test_heads_table_sorts_and_opens_a_head(gpt2_page, server):
    page = gpt2_page
    open_viewer(page, server)
    handle = run_sentence(page, SENTENCE)
    assert wait_heads_table(page) == handle
    api = api_get(server, f"/api/runs/{handle}/heads")
    assert len(api["heads"]) == 144 and page.locator("#heads-card tbody tr").count() == 144
    assert table_order(page) == [h["head"] for h in api["heads"]]            # layer by layer

    by_sink = sorted(api["heads"], key=lambda h: (-h["sink"], h["layer"], h["index"]))
    page.get_by_test_id("heads-sort-sink").click()
    assert table_order(page) == [h["head"] for h in by_sink]
    assert page.get_by_test_id("heads-table").get_attribute("data-sort") == "sink:desc"
    assert page.locator("#heads-card th[aria-sort='descending']").inner_text().startswith("sink")
    first = page.locator("#heads-card tbody tr").first
    assert first.locator("td").nth(3).inner_text() == f"{by_sink[0]['sink']:.3f}"
    page.get_by_test_id("heads-sort-sink").click()                            # again: ascending
    def ordered(key):
        return [h["head"] for h in sorted(api["heads"], key=lambda h: (key(h), h["layer"], h["index"]))]

    assert table_order(page) == ordered(lambda h: h["sink"])
    page.get_by_test_id("heads-sort-entropy").click()
    assert table_order(page) == ordered(lambda h: -h["entropy"])
    page.get_by_test_id("heads-sort-type").click()
    assert table_order(page) == ordered(lambda h: h["type"])

    # A row opens its head in the heatmap, and the row follows the heatmap.
    page.get_by_test_id("heads-sort-induction").click()
    top = sorted(api["heads"], key=lambda h: (-h["induction"], h["layer"], h["index"]))[0]
    row = page.get_by_test_id(f"heads-row-{top['layer']}-{top['index']}")
    assert table_order(page)[0] == top["head"]
    row.click()
    wait_head(page, top["layer"], top["index"])
    title = f"blocks.{top['layer']}.attn.hook_pattern[{top['index']}]"
    assert page.get_by_test_id("heatmap-title").inner_text() == title
    assert "current" in row.get_attribute("class")
    page.get_by_test_id("heads-row-7-3").click()
    wait_head(page, 7, 3)
    assert "current" in page.get_by_test_id("heads-row-7-3").get_attribute("class")
    assert "current" not in row.get_attribute("class")
    cells = page.get_by_test_id("heads-row-7-3").locator("td")
    h73 = next(h for h in api["heads"] if h["head"] == "7.3")
    assert cells.nth(1).inner_text() == h73["type"] and cells.nth(4).inner_text() == f"{h73['previous']:.3f}"
    page.get_by_test_id("heads-sort-head").click()
    element_shot(page.get_by_test_id("heads-table"), "analysis-heads-table-gpt2-layout")

    # The findings of GPT-2 small's shape: the same verdicts as the API, and the published roles.
    page.get_by_test_id("findings-run").click()
    page.wait_for_selector(f"#findings-card[data-handle='{handle}'] [data-testid=finding-5]", timeout=120_000)
    report = api_get(server, f"/api/runs/{handle}/findings")
    shown = [page.get_by_test_id(f"finding-{p['id']}").get_attribute("data-verdict") for p in report["predictions"]]
    assert shown == [p["verdict"] for p in report["predictions"]]
    roles = page.get_by_test_id("findings-roles").inner_text()
    for name in ("previous-token", "induction", "name mover", "copy suppression", "arXiv 2211.00593",
                 "arXiv 2310.04625", "4.11", "10.7"):
        assert name in roles
    element_shot(page.get_by_test_id("findings"), "analysis-findings-gpt2-layout")


# -- ablation, lens, findings (demo model) ----------------------------------------------------------
def test_ablation_shows_the_api_numbers(demo_page, demo_server):
    page = demo_page
    (layer, head), other = card_head("best_first_position"), head_name(*card_head("best_prev_token"))
    shown_head = head_name(layer, head)
    names = sorted([shown_head, other])
    open_viewer(page, demo_server)
    handle = run_sentence(page, SENTENCE)
    wait_heads_table(page)
    page.get_by_test_id(f"heads-row-{layer}-{head}").click()       # the card's first-position head
    wait_head(page, layer, head)
    page.get_by_test_id("token-9").click()
    page.wait_for_selector(f"#topk[data-query='9'][data-layer='{layer}'][data-head='{head}']")   # lists of query 9
    page.get_by_test_id("ablate-current").click()
    assert page.get_by_test_id("ablate-heads").input_value() == shown_head
    page.get_by_test_id("ablate-heads").press("End")
    page.get_by_test_id("ablate-heads").press_sequentially(f" {other}")   # and its previous-token head
    page.get_by_test_id("ablate-mean").click()
    follow = int(page.get_by_test_id("next-item-1").get_attribute("data-id"))
    page.get_by_test_id("next-item-1").click()                    # follow that token
    assert page.get_by_test_id("ablate-token").input_value() == f"#{follow}"
    page.get_by_test_id("ablate-run").click()
    page.wait_for_selector("#ablation[data-position='9'] [data-testid=ablate-token-change]")

    api = api_post(demo_server, f"/api/runs/{handle}/ablate",
                   {"heads": f"{shown_head} {other}", "mode": "mean", "position": 9, "token": follow})
    assert api["heads"] == names and api["mode"] == "mean"
    for side in ("before", "after"):
        items = page.get_by_test_id(f"ablate-{side}").locator("li")
        assert items.count() == 5
        for i, t in enumerate(api[side]):
            item = page.get_by_test_id(f"ablate-{side}-{i}")
            assert int(item.get_attribute("data-id")) == t["id"] and float(item.get_attribute("data-p")) == t["p"]
            assert abs(float(item.locator(".num").inner_text()) - t["p"]) <= 5e-5
    change = page.get_by_test_id("ablate-token-change")
    t = api["token"]
    assert int(change.get_attribute("data-id")) == follow == t["id"]
    assert float(change.get_attribute("data-p-before")) == t["p_before"]
    assert float(change.get_attribute("data-p-after")) == t["p_after"]
    assert float(change.get_attribute("data-delta")) == t["delta"]
    assert f"rank {t['rank_before']} → {t['rank_after']}" in change.inner_text()
    summary = page.locator("#ablate-body .abl-summary").inner_text()
    assert f"mean-ablation of {', '.join(names)}" in summary and "position 9" in summary
    assert ("top-1 changed" if api["top1_changed"] else "top-1 unchanged") in summary
    element_shot(page.locator("aside.side section").first, "analysis-ablation-demo")

    # A head the model does not have: the server's message, in the panel.
    model = api_get(demo_server, "/api/model")
    page.get_by_test_id("ablate-heads").fill(f"{model['n_layer']}.0")
    page.get_by_test_id("ablate-run").click()
    page.wait_for_selector("[data-testid=ablate-error]:not([hidden])")
    assert page.get_by_test_id("ablate-error").inner_text() == (f"There is no head {model['n_layer']}.0: this "
        f"model has layers 0–{model['n_layer'] - 1} and heads 0–{model['n_head'] - 1}.")
    assert len(page.watch.console_errors) == 1 and "400" in page.watch.console_errors[0]
    page.watch.console_errors.clear()
    # Moving the query drops the result: it was for position 9.
    page.get_by_test_id("token-4").click()
    page.wait_for_function("() => !document.querySelector('#ablate-body').children.length")


def test_logit_lens_follows_the_selected_token(demo_page, demo_server):
    page = demo_page
    open_viewer(page, demo_server)
    handle = run_sentence(page, DARCY)
    page.get_by_test_id("token-3").click()
    page.get_by_test_id("logit-lens").scroll_into_view_if_needed()   # it loads once on screen
    page.wait_for_selector(f"#lens-card[data-position='3'][data-handle='{handle}']")
    api = api_get(demo_server, f"/api/runs/{handle}/lens?position=3&k=5")
    assert page.get_by_test_id("lens-table").locator("thead th").all_inner_texts() == [
        "rank", "embed", *(f"L{layer}" for layer in range(CONFIG["n_layer"]))]
    for depth, stream in enumerate(api["streams"]):
        for r, t in enumerate(stream["top"]):
            cell = page.get_by_test_id(f"lens-cell-{depth}-{r}")
            assert int(cell.get_attribute("data-id")) == t["id"] and float(cell.get_attribute("data-p")) == t["p"]
    # The last depth is the model's own prediction: the next-token panel's top-1, followed by default.
    page.wait_for_selector("#topk[data-query='3']")
    top1 = int(page.get_by_test_id("next-item-0").get_attribute("data-id"))
    assert api["streams"][-1]["top"][0]["id"] == top1 == api["target"]["id"]
    assert page.get_by_test_id("logit-lens").get_attribute("data-target") == str(top1)
    # Click another next token: the lens follows it through every depth.
    other = int(page.get_by_test_id("next-item-2").get_attribute("data-id"))
    page.get_by_test_id("next-item-2").click()
    page.get_by_test_id("logit-lens").scroll_into_view_if_needed()
    page.wait_for_selector(f"#lens-card[data-target='{other}']")
    api = api_get(demo_server, f"/api/runs/{handle}/lens?position=3&k=5&target_id={other}")
    for depth, stream in enumerate(api["streams"]):
        cell = page.get_by_test_id(f"lens-target-{depth}")
        assert float(cell.get_attribute("data-p")) == stream["target_p"]
        assert int(cell.get_attribute("data-rank")) == stream["target_rank"]
    assert api["streams"][-1]["target_rank"] == 3
    element_shot(page.get_by_test_id("logit-lens"), "analysis-logit-lens-demo")
    page.get_by_test_id("lens-reset").click()
    page.wait_for_selector(f"#lens-card[data-target='{top1}']")


def test_pair_view_ranks_heads_as_the_api_does(demo_page, demo_server, demo):
    page = demo_page
    open_viewer(page, demo_server)
    run_sentence(page, SENTENCE)
    other = SENTENCE.replace(" is too big", " is far too big")     # a token more, in any tokenizer
    assert len(demo.encode(other)) > len(demo.encode(SENTENCE))
    page.get_by_test_id("pair-b").fill(other)
    page.get_by_test_id("pair-run").click()
    page.wait_for_selector("#pair-maps:not([hidden])")
    a = page.evaluate("window.__viewer.state.run.handle")
    api = api_post(demo_server, f"/api/runs/{a}/pair", {"text": other})
    items = page.get_by_test_id("pair-ranking").locator("li[data-head]")
    assert items.count() == 12
    assert [(items.nth(i).get_attribute("data-head"), float(items.nth(i).get_attribute("data-mean")))
            for i in range(12)] == [(h["head"], h["mean_change"]) for h in api["heads"][:12]]
    assert page.get_by_test_id("pair-mode").inner_text() == "shared tokens"
    assert page.get_by_test_id("pair-note-text").inner_text() == api["alignment"]["note"]
    # Different lengths: both tokenizations, the unshared tokens marked, the alignment listed.
    for side in ("a", "b"):
        chips = page.get_by_test_id(f"pair-tokens-{side}").locator(".pair-tok")
        assert chips.count() == len(api[side]["tokens"])
        marked = [i for i in range(chips.count()) if "unaligned" in chips.nth(i).get_attribute("class")]
        assert marked == api["alignment"][f"unaligned_{side}"]
    assert api["alignment"]["unaligned_b"]                   # B's extra token is marked
    shown = page.get_by_test_id("pair-alignment").inner_text()
    assert all(f"{i}↔{j}" in shown for i, j in api["alignment"]["pairs"])
    element_shot(page.get_by_test_id("pair"), "pair-different-lengths")      # docs/images/ (viewer.md)
    page.get_by_test_id("pair-show-all").click()
    model = api_get(demo_server, "/api/model")
    assert items.count() == len(api["heads"]) == model["n_layer"] * model["n_head"]

    # A ranked head: A, B and |A − B| drawn from the server's bytes for that head.
    pick = api["heads"][2]
    page.get_by_test_id("pair-rank-2").click()
    page.wait_for_selector(f"#pair-maps[data-layer='{pick['layer']}'][data-head='{pick['index']}']")
    assert "selected" in page.get_by_test_id("pair-rank-2").get_attribute("class")
    b = api["b"]["handle"]
    assert page.get_by_test_id("pair").get_attribute("data-b") == b
    sizes = page.evaluate("window.__viewer.analysis.pair.maps.map((m) => m.data.T)")
    n_a, n_b = len(demo.encode(SENTENCE)), len(demo.encode(other))
    assert sizes == [n_a, n_b, api["alignment"]["n_aligned"]] and n_a != n_b
    assert api["alignment"]["n_aligned"] == len(api["alignment"]["pairs"]) <= min(n_a, n_b) < max(n_a, n_b)
    url = f"{demo_server}/api/runs/{a}/pair/{b}/diff?layer={pick['layer']}&head={pick['index']}"
    diff = urllib.request.urlopen(url).read()
    drawn = page.evaluate("Array.from(window.__viewer.analysis.pair.maps[2].data.codes)")
    assert bytes(drawn) == diff
    assert page.get_by_test_id("pair-map-diff").bounding_box()["width"] > 150
    element_shot(page.get_by_test_id("pair"), "analysis-pair-demo")

    # Same length: compared position by position.
    other, _ = one_token_swap(demo, DARCY)          # as many tokens as DARCY, one of them different
    run_sentence(page, DARCY)
    assert "Sentence A changed" in page.get_by_test_id("pair-note").inner_text()
    page.get_by_test_id("pair-b").fill(other)
    page.get_by_test_id("pair-run").click()
    page.wait_for_selector("[data-testid=pair-mode]")
    assert page.get_by_test_id("pair-mode").inner_text() == "positional"
    a = page.evaluate("window.__viewer.state.run.handle")
    api = api_post(demo_server, f"/api/runs/{a}/pair", {"text": other})
    page.wait_for_selector(f"#pair-maps[data-handle='{a}']")
    assert [items.nth(i).get_attribute("data-head") for i in range(12)] == [h["head"] for h in api["heads"][:12]]


def test_findings_and_the_whole_page_on_the_demo(demo_page, demo_server):
    page = demo_page
    open_viewer(page, demo_server)
    handle = run_sentence(page, SENTENCE)
    wait_heads_table(page)
    page.get_by_test_id("findings-run").click()
    page.wait_for_selector(f"#findings-card[data-handle='{handle}'] [data-testid=finding-5]")
    report = api_get(demo_server, f"/api/runs/{handle}/findings")
    assert [p["id"] for p in report["predictions"]] == [1, 2, 3, 4, 5]
    for p in report["predictions"]:
        item = page.get_by_test_id(f"finding-{p['id']}")
        assert item.get_attribute("data-verdict") == p["verdict"]
        assert p["summary"] in item.inner_text()
    assert "not GPT-2 small: skipped" in page.get_by_test_id("findings-roles").inner_text()
    page.locator("details.finding-details summary").click()
    n_head = api_get(demo_server, "/api/model")["n_head"]
    sentences = report["predictions"][3]["measured"]["sentences"]                # prediction 4: both sentences
    assert page.locator("details.finding-details tbody tr").count() == n_head * len(sentences) == n_head * 2
    # A new sentence: the report was for the old one.
    run_sentence(page, DARCY)
    assert page.locator("[data-testid=finding-1]").count() == 0
    run_sentence(page, SENTENCE)
    page.get_by_test_id("findings-run").click()                  # kept by the server: instant
    page.wait_for_selector(f"#findings-card[data-handle='{handle}'] [data-testid=finding-5]")
    q = page.evaluate("window.__viewer.state.run.n_tokens") - 2      # the last word's query
    page.get_by_test_id(f"token-{q}").click()
    page.get_by_test_id("logit-lens").scroll_into_view_if_needed()
    page.wait_for_selector(f"#lens-card[data-position='{q}']")
    page.wait_for_selector(f"#topk[data-query='{q}']")
    page.get_by_test_id("ablate-run").click()                    # no heads typed: the head on screen
    page.wait_for_selector(f"#ablation[data-position='{q}'] [data-testid=ablate-after]")
    assert page.get_by_test_id("ablate-heads").input_value() == "0.0"
    page.get_by_test_id("pair-preset").select_option(index=1)     # the model's own pair
    page.get_by_test_id("pair-use-a").click()                    # A is not the sentence above: asked
    page.wait_for_selector("#pair-maps:not([hidden])")
    page.wait_for_load_state("networkidle")
    shot(page, "analysis-page-demo")


def test_hostile_tokens_are_text_in_the_analysis_panels(gpt2_page, server):
    page = gpt2_page
    open_viewer(page, server)
    handle = run_sentence(page, HOSTILE)
    wait_heads_table(page)
    api = api_get(server, f"/api/runs/{handle}/heads")
    shown = page.eval_on_selector_all("#heads-card tbody .topcol .tok", "els => els.map(e => e.textContent)")
    assert shown == [visible(h["top_column_token"]) for h in api["heads"]]
    assert any("<" in t for t in shown)
    page.get_by_test_id("pair-b").fill(HOSTILE.replace("then", "and then"))
    page.get_by_test_id("pair-run").click()
    page.wait_for_selector(f"#pair-maps[data-handle='{handle}']")
    tokens = page.evaluate("window.__viewer.state.run.tokens")
    shown = page.eval_on_selector_all("#pair-a .tok", "els => els.map(e => e.textContent)")
    assert shown == [visible(t) for t in tokens]
    q = next(i for i, t in enumerate(tokens) if "<" in t)            # a token with markup in it
    page.get_by_test_id(f"token-{q}").click()
    page.get_by_test_id("logit-lens").scroll_into_view_if_needed()
    page.wait_for_selector(f"#lens-card[data-position='{q}']")
    assert page.eval_on_selector("#lens-title .tok", "e => e.textContent") == visible(tokens[q])
    for panel in ("heads-table", "logit-lens", "pair", "ablation"):
        assert page.get_by_test_id(panel).locator("img, script, iframe, svg").count() == 0
    assert page.evaluate("document.querySelectorAll('img').length") == 0
