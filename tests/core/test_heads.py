"""gpt2np.heads: heads written as "L.H", read back and checked against a model's shape."""

import pytest

from gpt2np import GPT2Config, GPT2npError
from gpt2np.heads import check_head, head_name, parse_heads
from gpt2np.trace import residual_stream_names

CFG = GPT2Config(n_layer=3, n_head=4, n_embd=16, n_positions=8, vocab_size=10)   # heads 0.0 … 2.3


def test_head_names_read_back():
    assert head_name(2, 3) == "2.3"
    assert parse_heads("2.3", CFG) == [(2, 3)]
    assert parse_heads("2.3, 0.1;1.0  0.1", CFG) == [(0, 1), (1, 0), (2, 3)]   # sorted, once each
    assert parse_heads(["2.3", "0.0,1.1"], CFG) == [(0, 0), (1, 1), (2, 3)]
    assert parse_heads((1, 2), CFG) == [(1, 2)] and parse_heads([(1, 2), "0.3"], CFG) == [(0, 3), (1, 2)]


@pytest.mark.parametrize("spec, phrase", [
    ("3.0", "There is no head 3.0: this model has layers 0–2 and heads 0–3."),
    ("0.4", "There is no head 0.4"), ("-1.0", "There is no head -1.0"),
    ("x", "Cannot read the head 'x'"), ("5", "Cannot read the head '5'"), ("1.2.3", "Cannot read"),
    ("1." + "1" * 40, "Cannot read the head '1.1111111111'…"),
    (" , ", "No heads given"), ([], "No heads given"),
    ("0.0 " * 13, "13 heads given, but the model has 12"),
])
def test_bad_heads_say_what_to_write(spec, phrase):
    with pytest.raises(GPT2npError) as info:
        parse_heads(spec, CFG)
    assert phrase in str(info.value)


def test_check_head_bounds():
    assert check_head(CFG, 0, 0) == (0, 0) and check_head(CFG, 2, 3) == (2, 3)
    for layer, head in [(3, 0), (0, 4), (-1, 0), (0, -1)]:
        with pytest.raises(GPT2npError, match=f"no head {layer}.{head}"):
            check_head(CFG, layer, head)


def test_residual_stream_names():
    assert residual_stream_names(2) == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post",
                                        "blocks.1.hook_resid_post"]
