"""An exported file opened from disk (issue 20, §4, §5): what one forward pass gives is in the file
and shown — the heads table, the logit lens and the attribution at the opening token, the
sampling ledger (default and greedy), the walk at the opening head and token (§2.2), the √d
what-if of the Q·K panel (§5) — and what
needs the live server (ablation, the minimal pair, the findings, Generate, another token to
follow) is a quiet note with the command, its inputs disabled: no red error box anywhere, no
request, no console error. Screenshots: test-artifacts/export-live-only*.png (docs/images/)."""

import numpy as np
import pytest
from browser import element_shot, shot, wait_head
from test_export import open_file

import gpt2np
from gpt2np.html import save_html

pytestmark = pytest.mark.browser

SENTENCE = "Mr. Darcy and Miss Bennet walked to the door."
COMMAND = "`python -m viewer --model demo`"


@pytest.fixture(scope="module")
def saved_file(tmp_path_factory):
    m = gpt2np.load("demo")
    trace = m.run(SENTENCE)
    path = tmp_path_factory.mktemp("liveonly") / "darcy.html"
    save_html(trace, path, text=SENTENCE, layer=2, head=0)
    return path, trace, m


def visible_errors(page):
    return page.evaluate("""() => [...document.querySelectorAll('.error')]
        .filter((e) => e.offsetParent !== null && e.textContent.trim()).map((e) => e.textContent)""")


def scroll_everything(page):
    """Bring every lazy panel into view (the lens, the heads table, the walk, the attribution)."""
    for testid in ("walk", "logit-lens", "attribution", "heads-table", "pair", "findings"):
        page.get_by_test_id(testid).scroll_into_view_if_needed()
        page.wait_for_timeout(100)


def test_what_one_pass_gives_is_shown_and_the_rest_is_a_quiet_note(browser, saved_file):
    path, trace, m = saved_file
    T, cfg = trace.n_tokens, m.config
    context, page, watch = open_file(browser, path)
    wait_head(page, 2, 0)
    scroll_everything(page)
    # The panels of the opening view, from the file.
    page.wait_for_selector("[data-testid^=heads-row-]")
    assert page.locator("[data-testid^=heads-row-]").count() == cfg.n_layer * cfg.n_head
    page.wait_for_selector("[data-testid=lens-table]")
    assert page.locator("#lens-card").get_attribute("data-position") == str(T - 1)
    page.wait_for_selector("[data-testid=attr-table]")
    assert page.locator("[data-testid^=attr-row-]").count() > 0
    page.wait_for_selector("#sample-ledger table")
    page.wait_for_function("() => /step 1 of \\d+/.test(document.getElementById('walk-count').textContent)")
    page.get_by_test_id("walk-next").click()
    assert page.get_by_test_id("walk-count").inner_text().startswith("step 2 of ")
    element_shot(page.get_by_test_id("generate-panel"), "export-live-only-generate")
    page.get_by_test_id("greedy").check()                            # saved too: the greedy ledger
    page.wait_for_function("() => JSON.parse(document.getElementById('sample-ledger').dataset.settings || '{}')"
                           ".greedy === true")

    # §5 in the file: the √d what-if of the opening query, against float64 from the trace's q and k.
    q = trace["blocks.2.attn.hook_q"][T - 1, 0].astype(np.float64)
    k = trace["blocks.2.attn.hook_k"][:, 0].astype(np.float64)
    for side, scores in (("real", k @ q / np.sqrt(cfg.d_head)), ("unscaled", k @ q)):
        p = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        entropy = -(p[p > 0] * np.log2(p[p > 0])).sum()
        shown = float(page.get_by_test_id(f"whatif-{side}-entropy").inner_text())
        assert abs(shown - entropy) <= 0.0005 + 1e-6, (side, shown, entropy)
        assert page.locator(f"[data-testid=whatif-{side}] .whatif-cells i").count() == T

    # What needs the server: disabled, with a quiet note that gives the command.
    for testid in ("ablate-heads", "ablate-token", "ablate-run", "ablate-zero", "ablate-mean", "pair-b", "pair-run",
                   "findings-run", "generate", "generate-n", "lens-target", "attr-token", "attr-versus"):
        assert page.get_by_test_id(testid).is_disabled(), testid
    for kind in ("ablate", "pair", "findings", "generate", "lens", "attribution"):
        note = page.get_by_test_id(f"live-only-{kind}")
        assert note.is_visible() and COMMAND in note.inner_text(), kind
    assert visible_errors(page) == []                                # no red box
    element_shot(page.get_by_test_id("ablation"), "export-live-only-ablation")
    shot(page, "export-live-only")

    # Another token: the lens, the attribution and the walk there are the live server's, said quietly.
    page.get_by_test_id("token-3").click()
    scroll_everything(page)
    for body in ("#lens-body", "#attr-body", "#walk-body"):
        page.wait_for_selector(f"{body} [data-testid=live-only]")
        assert COMMAND in page.locator(f"{body} [data-testid=live-only]").inner_text()
    assert visible_errors(page) == []
    watch.check(path.as_uri())
    context.close()
