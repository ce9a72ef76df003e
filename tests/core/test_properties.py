"""Property-based tests (Hypothesis): the tokenizer round trip and the forward pass invariants."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gpt2np
from gpt2np.files.tokenizer import Tokenizer

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tokenizer(gpt2_files):
    return Tokenizer.from_dir(gpt2_files)


@pytest.fixture(scope="module")
def model(small_model_dir):
    return gpt2np.load(small_model_dir)


TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)
STRAY_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")     # how token_strings shows part of a character


@SETTINGS
@given(text=TEXT)
def test_tokenizer_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < 50257 for i in ids)


@SETTINGS
@example(text="🙂 family, 中文字符测试")                 # characters split across tokens
@example(text="tab\tNUL\x00 e\u0301 \\ backslash")   # whole characters, unprintable ones too
@given(text=TEXT.filter(lambda t: not STRAY_BYTE.search(t)))
def test_token_strings_show_the_text(tokenizer, text):
    """The token strings, joined, are the text: tokens that hold whole characters show them as
    they are, and a byte of a character split across tokens shows as \\xNN (≥ 0x80); read back
    as bytes, they are the text's UTF-8. (Texts that contain such an escape themselves are left
    out: they could not be told apart.)"""
    shown = "".join(tokenizer.token_strings(tokenizer.encode(text)))
    parts = STRAY_BYTE.split(shown)      # text, byte, text, byte, ..., text
    data = b"".join(bytes([int(p, 16)]) if k % 2 else p.encode() for k, p in enumerate(parts))
    assert data == text.encode()
    assert (shown == text) == (len(parts) == 1)     # escapes exactly when a character is split


@SETTINGS
@given(ids=st.lists(st.integers(0, 99), min_size=1, max_size=64))
def test_forward_invariants(model, ids):
    trace = model.run(ids)
    T = len(ids)
    upper = np.triu(np.ones((T, T), bool), 1)
    for layer in range(trace.n_layer):
        p = trace.pattern(layer)
        assert np.abs(p.sum(-1) - 1).max() < 1e-5
        assert np.all(p[:, upper] == 0.0)
        assert np.all(p[:, 0, 0] == 1.0)
        assert np.all(p >= 0)
    assert np.all(np.isfinite(trace.logits))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(0, 99), min_size=2, max_size=40), cut=st.integers(1, 39))
def test_prefix_does_not_see_the_future(model, ids, cut):
    cut = min(cut, len(ids) - 1)
    full, prefix = model.run(ids), model.run(ids[:cut])
    np.testing.assert_allclose(full.logits[:cut], prefix.logits, atol=1e-5)
    np.testing.assert_allclose(full.pattern(1)[:, :cut, :cut], prefix.pattern(1), atol=1e-6)
