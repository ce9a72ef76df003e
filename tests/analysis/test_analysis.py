"""gpt2np.analysis: every statistic on hand-made patterns with known answers, and the classifier
on constructed heads."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from patterns import one_key, uniform

from gpt2np import analysis as A

SINK = lambda T: one_key(T, lambda i: 0)                    # noqa: E731
PREV = lambda T: one_key(T, lambda i: max(i - 1, 0))        # noqa: E731
SELF = lambda T: one_key(T, lambda i: i)                    # noqa: E731
BAR2 = lambda T: one_key(T, lambda i: 2 if i >= 2 else i)   # noqa: E731 - a vertical bar at key 2


def test_uniform_pattern_known_numbers():
    p = uniform(4)   # rows 1..3 put 1/2, 1/3, 1/4 on each visible key
    assert A.sink_mass(p) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    assert A.previous_token_mass(p) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    assert A.self_mass(p) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    assert A.row_entropy(p) == pytest.approx([0, 1, math.log2(3), 2])
    assert A.mean_entropy(p) == pytest.approx((1 + math.log2(3) + 2) / 3)
    assert A.normalized_entropy(p) == pytest.approx(1.0)
    # key 0 gets 1/2+1/3+1/4 of 3 rows' weight, key 3 only 1/4
    assert A.column_share(p) == pytest.approx(np.array([13 / 12, 13 / 12, 7 / 12, 3 / 12]) / 3)
    j, share = A.top_column(p)                # keys 0 and 1 tie: the first wins
    assert (j, share) == (0, pytest.approx(13 / 36))


@pytest.mark.parametrize("make, sink, prev, self_, top, share", [
    (SINK, 1.0, 1 / 9, 0.0, 0, 1.0),         # query 1's previous token is position 0
    (PREV, 1 / 9, 1.0, 0.0, 0, 1 / 9),       # every column gets one query's weight
    (SELF, 0.0, 0.0, 1.0, 1, 1 / 9),
    (BAR2, 0.0, 1 / 9, 2 / 9, 2, 8 / 9),     # query 1 on itself, queries 2..9 on key 2
])
def test_one_key_patterns(make, sink, prev, self_, top, share):
    p = make(10)
    assert A.sink_mass(p) == pytest.approx(sink)
    assert A.previous_token_mass(p) == pytest.approx(prev)
    assert A.self_mass(p) == pytest.approx(self_)
    assert A.mean_entropy(p) == 0.0 and A.normalized_entropy(p) == 0.0
    j, s = A.top_column(p)
    assert int(j) == top and s == pytest.approx(share)


def test_statistics_broadcast_over_heads():
    p = np.stack([SINK(6), PREV(6), SELF(6)])                                 # [3, 6, 6]
    assert A.sink_mass(p) == pytest.approx([1, 0.2, 0])
    assert A.previous_token_mass(p) == pytest.approx([0.2, 1, 0])
    assert A.self_mass(p) == pytest.approx([0, 0, 1])
    assert A.mean_entropy(p).shape == (3,)


def test_half_and_half_entropy_is_one_bit():
    p = np.zeros((5, 5))
    p[0, 0] = 1
    for i in range(1, 5):
        p[i, 0] = p[i, i] = 0.5
    assert A.mean_entropy(p) == pytest.approx(1.0)
    assert A.sink_mass(p) == pytest.approx(0.5) and A.self_mass(p) == pytest.approx(0.5)
    # entropy_norm: 1 bit out of log2(i+1) possible, for i = 1..4
    assert A.normalized_entropy(p) == pytest.approx(np.mean([1 / math.log2(i + 1) for i in range(1, 5)]))


def test_top_keys_with_and_without_position_0():
    p = uniform(4)
    p[3] = [0.5, 0.1, 0.3, 0.1]
    assert A.top_keys(p, 3, 2) == [(0, 0.5), (2, pytest.approx(0.3))]
    assert A.top_keys(p, 3, 2, skip_first=True) == [(2, pytest.approx(0.3)), (1, pytest.approx(0.1))]


def test_top_keys_are_only_keys_up_to_the_query():
    """Row 3 of a 6-token pattern: ties (earlier key first) and zeros after the query, which are
    masked keys, never listed; row 2 carries weight after the query that must be ignored too."""
    p = np.zeros((6, 6))
    p[3] = [0.3, 0.2, 0.2, 0.3, 0.0, 0.0]
    p[2] = [0.25, 0.25, 0.0, 0.5, 0.0, 0.0]          # key 3 is after query 2: not a key of it
    p[0, 0] = 1.0
    assert A.top_keys(p, 3, 5) == [(0, 0.3), (3, 0.3), (1, 0.2), (2, 0.2)]
    assert A.top_keys(p, 3, 2) == [(0, 0.3), (3, 0.3)]
    assert A.top_keys(p, 3, 5, skip_first=True) == [(3, 0.3), (1, 0.2), (2, 0.2)]
    assert A.top_keys(p, 2, 5) == [(0, 0.25), (1, 0.25), (2, 0.0)]
    assert A.top_keys(p, 0, 5) == [(0, 1.0)]
    assert A.top_keys(p, 0, 5, skip_first=True) == [(0, 1.0)]      # query 0's only key is 0
    assert A.candidate_keys(3).tolist() == [0, 1, 2, 3]
    assert A.candidate_keys(3, skip_first=True).tolist() == [1, 2, 3]
    assert A.candidate_keys(0, skip_first=True).tolist() == [0]


def test_fewer_keys_note():
    assert A.fewer_keys_note(3, 5) == "only 4 keys precede or equal query 3: the causal mask hides later ones"
    assert A.fewer_keys_note(0, 5).startswith("only 1 key precedes or equals query 0")
    assert A.fewer_keys_note(3, 5, skip_first=True).startswith("only 3 keys besides position 0 precede")
    assert A.fewer_keys_note(3, 4) is None and A.fewer_keys_note(9, 5) is None
    assert A.fewer_keys_note(3, 4, skip_first=True).startswith("only 3 keys")


# -- induction -----------------------------------------------------------------------------------
def test_induction_probe_ids():
    ids = A.induction_probe_ids(100, length=20, seed=3, bos_id=99)
    assert ids.shape == (41,) and ids[0] == 99
    assert (ids[1:21] == ids[21:]).all()
    assert len(set(ids[1:21].tolist())) == 20 and 99 not in ids[1:].tolist()
    assert (A.induction_probe_ids(100, 20, seed=3, bos_id=99) == ids).all()       # seeded
    assert A.induction_probe_ids(50, length=5).shape == (10,)                     # no BOS
    with pytest.raises(ValueError):
        A.induction_probe_ids(10, length=11)
    pool = np.arange(0, 100, 3)                                                   # draw from these only
    ids = A.induction_probe_ids(100, length=20, seed=3, bos_id=99, pool=pool)
    assert set(ids[1:].tolist()) <= set(pool.tolist()) and ids[0] == 99
    assert (A.induction_probe_ids(100, 20, seed=3, bos_id=99, pool=np.arange(100))
            == A.induction_probe_ids(100, 20, seed=3, bos_id=99)).all()            # full pool = default


def test_distinguishable_ids():
    """Rows shared by several ids are left out; every row of its own is kept."""
    wte = np.arange(24, dtype=np.float32).reshape(8, 3)              # 8 distinct rows
    assert A.distinguishable_ids(wte).tolist() == list(range(8))
    wte[[2, 5, 7]] = wte[0]                                          # ids 0, 2, 5, 7 share one row
    wte[4] = wte[3]                                                  # ids 3, 4 share another
    assert A.distinguishable_ids(wte).tolist() == [1, 6]


@pytest.mark.parametrize("start", [0, 1])
def test_induction_score_on_constructed_heads(start):
    n = 5
    T = start + 2 * n
    # a perfect induction head: query start+n+k -> key start+k+1; other queries on themselves
    induction = one_key(T, lambda i: i - n + 1 if i >= start + n else i)
    assert A.induction_score(induction, n, start) == 1.0
    assert A.induction_score(PREV(T), n, start) == 0.0
    # a duplicate-token head (onto the earlier occurrence itself) is not an induction head
    duplicate = one_key(T, lambda i: i - n if i >= start + n else i)
    assert A.induction_score(duplicate, n, start) == 0.0
    # half the weight on the target, for queries of the second copy
    half = (induction + SELF(T)) / 2
    assert A.induction_score(half, n, start) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        A.induction_score(induction[:-1, :-1], n, start)


# -- value-weighted attention --------------------------------------------------------------------
def test_head_output_weights_are_the_c_proj_slices():
    rng = np.random.default_rng(0)
    H, dh, d, T = 3, 4, 12, 5
    w = rng.standard_normal((d, d))
    z = rng.standard_normal((T, H, dh))
    w_o = A.head_output_weights(w, H)
    assert w_o.shape == (H, dh, d) and (w_o[1] == w[4:8]).all()
    per_head = sum(z[:, h] @ w_o[h] for h in range(H))                    # Σ_h z_h W_O^h
    assert np.abs(per_head - z.reshape(T, d) @ w).max() < 1e-12


def test_value_weighted_pattern_known_numbers():
    # one head, dh = 2, d = 2, W_O = 2·identity: ‖v_j W_O‖ = 2‖v_j‖
    v = np.array([[0.1, 0.0], [3.0, 4.0], [0.0, 1.0]])[:, None, :]     # [T=3, H=1, dh=2]
    w_o = 2 * np.eye(2)[None]                                           # [1, 2, 2]
    assert A.value_norms(v, w_o) == pytest.approx(np.array([[0.2, 10.0, 2.0]]))
    p = np.array([[[1, 0, 0], [0.8, 0.2, 0], [0.5, 0.25, 0.25]]])        # [1, 3, 3]
    vw = A.value_weighted_pattern(p, v, w_o)
    assert vw[0] == pytest.approx(np.array([[0.2, 0, 0], [0.16, 2.0, 0], [0.1, 2.5, 0.5]]))
    # a sink: 0.8 and 0.5 of the weight on position 0, but little of what is moved comes from it
    assert A.sink_mass(p) == pytest.approx([0.65])
    shares = [0.16 / 2.16, 0.1 / 3.1]
    assert A.value_weighted_sink_share(vw) == pytest.approx([np.mean(shares)])


def test_layer_stats_shapes_and_too_short():
    rng = np.random.default_rng(1)
    p = np.stack([SINK(7), PREV(7)])
    stats = A.layer_stats(p, rng.standard_normal((7, 2, 3)), rng.standard_normal((2, 3, 6)))
    assert set(stats) == {"entropy", "entropy_norm", "sink", "previous", "self", "top_column",
                          "top_column_share", "vw_sink_share"}
    assert all(v.shape == (2,) for v in stats.values())
    assert "vw_sink_share" not in A.layer_stats(p)
    with pytest.raises(ValueError):
        A.layer_stats(np.ones((2, 1, 1)))


# -- classification ------------------------------------------------------------------------------
def classify_pattern(p, induction=None):
    stats = {k: v[0] for k, v in A.layer_stats(p[None]).items()}
    stats["induction"] = induction
    return A.classify_head(stats)


@pytest.mark.parametrize("make, expected", [
    (SINK, "sink"), (PREV, "previous-token"), (SELF, "self"), (BAR2, "broadcast"),
    (uniform, "diffuse"),
])
def test_classifier_on_constructed_heads(make, expected):
    assert classify_pattern(make(12)) == expected


def test_classifier_induction_comes_first_and_mixed_is_the_rest():
    assert classify_pattern(SINK(12), induction=0.9) == "induction"
    assert classify_pattern(SINK(12), induction=0.39) == "sink"
    # sharp but not positional: each query on a "content" key that moves around
    content = one_key(12, lambda i: [0, 0, 1, 0, 2, 3, 1, 4, 6, 2, 5, 9][i])
    assert classify_pattern(content) == "mixed"


def stats(**kw):
    base = dict(entropy=1.0, entropy_norm=0.3, sink=0.0, previous=0.0, self=0.0, top_column=3,
                top_column_share=0.1, induction=0.0)
    return {**base, **kw}


def test_classifier_thresholds_are_inclusive():
    t = A.THRESHOLDS
    assert A.classify_head(stats(induction=t["induction"])) == "induction"
    assert A.classify_head(stats(previous=t["previous"])) == "previous-token"
    assert A.classify_head(stats(previous=t["previous"] - 1e-9)) == "mixed"
    assert A.classify_head(stats(self=t["self"])) == "self"
    assert A.classify_head(stats(sink=t["sink"], top_column=0, top_column_share=0.5)) == "sink"
    assert A.classify_head(stats(top_column_share=t["broadcast"])) == "broadcast"
    assert A.classify_head(stats(top_column_share=t["broadcast"] - 1e-9)) == "mixed"
    assert A.classify_head(stats(entropy_norm=t["diffuse"])) == "diffuse"
    assert A.classify_head(stats(induction=None, entropy_norm=0.1)) == "mixed"


def test_classifier_picks_the_largest_positional_statistic():
    assert A.classify_head(stats(sink=0.55, previous=0.6, top_column=0)) == "previous-token"
    assert A.classify_head(stats(sink=0.9, previous=0.6, top_column=0, top_column_share=0.9)) == "sink"
    # a bar on column 0 is the sink, never "broadcast"
    assert A.classify_head(stats(top_column=0, top_column_share=0.45, sink=0.45)) == "mixed"
    # custom thresholds
    assert A.classify_head(stats(sink=0.35), {**A.THRESHOLDS, "sink": 0.3}) == "sink"


def test_every_type_has_a_rule():
    assert all(A.type_rule(t) for t in A.HEAD_TYPES)
    assert "0.7" in A.type_rule("mixed") and "0.5" in A.type_rule("sink")


# -- properties on random causal patterns ---------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 12), H=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_statistics_stay_in_range(T, H, seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((H, T, T)) * rng.uniform(0.1, 10)
    scores += np.triu(np.full((T, T), -np.inf), k=1)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    for name in ("sink", "previous", "self", "entropy_norm", "top_column_share"):
        value = A.layer_stats(p)[name]
        assert ((value >= -1e-12) & (value <= 1 + 1e-9)).all(), name
    assert (A.mean_entropy(p) <= math.log2(T) + 1e-9).all()
    assert A.column_share(p).sum(-1) == pytest.approx(np.ones(H))
    # sink + previous + self can double count only query 1 (whose previous token is position 0)
    assert (A.sink_mass(p) + A.previous_token_mass(p) + A.self_mass(p) <= 1 + 1 / (T - 1) + 1e-9).all()


def test_next_token_top_k_on_known_logits():
    """Logits with known probabilities: log(p) for p = [0.1, 0.4, 0.2, 0.2, 0.1] gives back p; the
    tie between ids 2 and 3 goes to the lower id, and a tie at the cut (ids 0 and 4) too."""
    p = np.array([0.1, 0.4, 0.2, 0.2, 0.1])
    ids, probs = A.next_token_top_k(np.log(p), k=4)
    assert ids.tolist() == [1, 2, 3, 0]
    np.testing.assert_allclose(probs, [0.4, 0.2, 0.2, 0.1], rtol=1e-12)
    assert probs.dtype == np.float64
    ids, _ = A.next_token_top_k(np.log(p), k=9)                    # k beyond the vocabulary: all
    assert ids.tolist() == [1, 2, 3, 0, 4]


def test_next_token_top_k_over_many_rows_matches_a_stable_sort():
    """[3, 70, V] logits in blocks of 16 rows, with ties planted: every row equals a stable argsort
    of its own float64 softmax, computed here with the textbook formula."""
    rng = np.random.default_rng(0)
    logits = rng.integers(-3, 4, size=(3, 70, 50)).astype(np.float32)    # many equal logits
    ids, probs = A.next_token_top_k(logits, k=6, block=16)
    assert ids.shape == probs.shape == (3, 70, 6)
    for row, got_ids, got_p in zip(logits.reshape(-1, 50), ids.reshape(-1, 6), probs.reshape(-1, 6)):
        e = np.exp(row.astype(np.float64) - row.max())
        want = np.argsort(-(e / e.sum()), kind="stable")[:6]
        assert got_ids.tolist() == want.tolist()
        np.testing.assert_allclose(got_p, (e / e.sum())[want], rtol=1e-12)
