"""Each prediction's checker (gpt2np.analysis.findings.check_*) on hand-made input built to pass it and on
input built to fail it by the smallest step: a weight just above the diagonal, a first row that
is not 1.0, a sink head at 0.29 instead of 0.31, two head types instead of three, a 4–4 split."""

import numpy as np
import pytest
from patterns import one_key, uniform

import gpt2np
from gpt2np.analysis import findings as F


def heads(*patterns):
    """[T, T] patterns -> one layer's [H, T, T]."""
    return np.stack(patterns).astype(np.float32)


# -- prediction 1: the upper triangle is exactly 0 -----------------------------------------------
def test_upper_triangle_passes_on_causal_patterns():
    layer = heads(uniform(6), one_key(6, lambda i: i), one_key(6, lambda i: 0))
    assert F.check_upper_triangle([layer, heads(uniform(1))]) == ("holds", 0.0)


@pytest.mark.parametrize("query, key", [(2, 3), (0, 1), (4, 5), (0, 5)])
def test_upper_triangle_fails_on_one_weight_above_the_diagonal(query, key):
    p = uniform(6)
    p[query, key] = np.float32(1e-7)          # just above the diagonal (or far from it)
    verdict, worst = F.check_upper_triangle([heads(uniform(6)), heads(uniform(6), p)])
    assert verdict == "does not hold" and worst == pytest.approx(1e-7)


# -- prediction 2: the first token attends 1.0 to itself -----------------------------------------
def test_first_token_passes_when_row_0_is_one_key():
    assert F.check_first_token([heads(uniform(4), one_key(4, lambda i: 0))]) == ("holds", 1.0, 0.0)


@pytest.mark.parametrize("first", [0.5, 0.999, np.nextafter(np.float32(1), np.float32(0))])
def test_first_token_fails_when_row_0_is_not_1(first):
    p = uniform(4)
    p[0, :2] = [first, 1 - first]
    verdict, smallest, entropy = F.check_first_token([heads(uniform(4)), heads(p)])
    assert verdict == "does not hold" and smallest == pytest.approx(float(np.float32(first)))
    q = -np.array([first, 1 - first], dtype=np.float64)
    assert entropy == pytest.approx(float((q * np.log2(-q)).sum()), rel=1e-3)


# -- prediction 3: 1–2 heads per layer of 4–8 with ≥ 30 % on position 0 ---------------------------
def sinks(value, n=1, n_layer=9, n_head=4):
    grid = np.full((n_layer, n_head), 0.05)
    grid[4:9, :n] = value
    return grid


def test_sink_heads_pass_at_0_31():
    assert F.check_sink_heads(sinks(0.31)) == ("holds", {4: 1, 5: 1, 6: 1, 7: 1, 8: 1})
    assert F.check_sink_heads(sinks(0.31, n=2))[0] == "holds"


def test_sink_heads_fail_at_0_29_and_with_three_heads():
    grid = sinks(0.31)
    grid[6, 0] = 0.29                          # one layer's sink head just under 30 %
    assert F.check_sink_heads(grid) == ("does not hold", {4: 1, 5: 1, 6: 0, 7: 1, 8: 1})
    assert F.check_sink_heads(sinks(0.31, n=3))[0] == "does not hold"


# -- prediction 4: the top key of the pronoun is the referent, and follows the sentence ----------
def referent(tops, margin):
    """Two sentences of 8 heads: tops per sentence, a constant margin per head."""
    tops = np.array(tops)
    return F.check_referent(tops, np.full(tops.shape, margin))


def test_referent_holds_when_most_heads_follow_with_a_margin():
    verdict, d = referent([[0] * 8, [0] * 8], 0.2)
    assert verdict == "holds" and d["follow"] == 8 and d["margin"] == pytest.approx(0.2)
    assert referent([[0] * 6 + [1, -1], [0] * 8], 0.06)[0] == "holds"       # 6 of 8 = 3/4


def test_referent_is_undecided_on_a_4_4_split_or_a_tiny_margin():
    verdict, d = referent([[0] * 4 + [1] * 4, [0] * 8], 0.2)
    assert verdict == "undecided" and d["follow"] == 4 and "between 2 and 6" in d["decided_by"]
    verdict, d = referent([[0] * 8, [0] * 8], 0.003)
    assert verdict == "undecided" and "0.003" in d["decided_by"]
    assert referent([[0] * 5 + [1] * 3, [0] * 8], 0.2)[0] == "undecided"  # 5 of 8: not 3/4


def test_referent_fails_when_heads_do_not_follow():
    # Every head on the first candidate in both sentences: no flip (the causal case).
    verdict, d = referent([[0] * 8, [1] * 8], 0.0)
    assert verdict == "does not hold" and d["follow"] == 0
    assert referent([[-1] * 8, [-1] * 8], 0.0)[0] == "does not hold"       # nearby words win
    assert referent([[1] * 8, [1] * 8], -0.3)[0] == "does not hold"        # the other word wins
    # A majority that follows, but the weights say the opposite: decided by the margin.
    verdict, d = referent([[0] * 7 + [1], [0] * 7 + [1]], -0.06)
    assert verdict == "does not hold" and "−0.05" in d["decided_by"]


def test_referent_on_one_sentence():
    assert F.check_referent([[0, 0, 0, 0]], [[0.1, 0.1, 0.2, 0.0]])[0] == "holds"
    assert F.check_referent([[0, 0, 1, 1]], [[0.1, 0.1, 0.2, 0.0]])[0] == "undecided"


def test_referent_on_a_causal_model_cannot_follow_the_sentence(small_text_model_dir):
    """The default pair differs after "it": a causal model gives "it" the same attention row in
    both, so no head can follow the sentence — measured on the model's own traces here."""
    model = gpt2np.load(small_text_model_dir)
    r = F.report(model, sentence=F.COREF_SENTENCE, probe_length=4)
    p4 = r["predictions"][3]
    a, b = (model.run(t) for t in (F.COREF_SENTENCE, F.FLIP_SENTENCE))
    q = [s["query"] for s in p4["measured"]["sentences"]]
    assert q[0] == q[1] == a.tokens.index(" it")
    last = model.config.n_layer - 1
    assert np.array_equal(a.pattern(last)[:, q[0]], b.pattern(last)[:, q[1]])
    assert p4["verdict"] == "does not hold" and p4["measured"]["follow"] == 0
    assert p4["measured"]["same_row"] and "same row in both" in p4["summary"]
    tops = [[h["top_is"] for h in s["heads"]] for s in p4["measured"]["sentences"]]
    assert all(x == y for x, y in zip(*tops))      # the same top key in both sentences, per head


def test_referent_does_not_apply_to_words_split_into_tokens(demo):
    """A candidate of several tokens (read from the model's tokenizer) -> not applicable, with why."""
    split = [w for w in F.CANDIDATES if len(demo.encode(" " + w)) > 1]
    r = F.report(demo, probe_length=4)
    p4 = r["predictions"][3]
    if split:
        assert p4["verdict"] == "not applicable" and f"{split[0]!r} is" in p4["summary"]
    else:
        assert p4["verdict"] in ("holds", "does not hold", "undecided")


# -- prediction 5: some layer 0–4 has ≥ 3 distinct head types -----------------------------------
def test_specialization_passes_with_three_types():
    types = [["sink", "sink"], ["sink", "previous-token", "diffuse"]]
    assert F.check_specialization(types) == ("holds", {0: 1, 1: 3})


def test_specialization_fails_with_two_types_or_three_too_late():
    assert F.check_specialization([["sink", "sink"], ["sink", "diffuse", "diffuse"]]) == \
        ("does not hold", {0: 1, 1: 2})
    late = [["sink", "self"]] * 5 + [["sink", "self", "induction"]]        # layer 5: after layer 4
    assert F.check_specialization(late)[0] == "does not hold"
