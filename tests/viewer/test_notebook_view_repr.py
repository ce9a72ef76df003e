"""A notebook view's text/plain form (NotebookView.__repr__, gpt2np/html.py): what a notebook shows
where HTML is not displayed says what the object is — the model, the number of tokens and the head
and query the view opens at — instead of `<gpt2np.html.NotebookView at 0x…>`."""

import pytest

from gpt2np.html import NotebookView


@pytest.fixture(scope="module")
def trace(demo):
    return demo.run("Mr. Darcy and Miss Bennet walked in the garden.")


def test_repr_names_model_tokens_and_opening_head(trace, demo):
    view = NotebookView(trace, demo, layer=1, head=2, query=3)
    text = repr(view)
    assert text.startswith("<gpt2np viewer page: ") and " at 0x" not in text
    assert f"{demo.info.name}, {trace.n_tokens} tokens" in text
    assert "opening at head 1.2, query 3" in text
    assert ".save(" in text


def test_repr_default_opens_at_the_last_token(trace, demo):
    text = repr(NotebookView(trace, demo))
    assert f"opening at head 0.0, query {trace.n_tokens - 1}" in text


def test_repr_of_one_token_is_singular(demo):
    one = demo.run([int(demo.encode(" garden")[0])])
    assert one.n_tokens == 1
    assert ", 1 token, " in repr(NotebookView(one, demo))
