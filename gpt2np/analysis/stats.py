"""Statistics of attention patterns, a classification of heads, and the next-token top-k: pure
NumPy over a Trace's arrays.

Every statistic takes patterns [..., T, T] (rows = queries, columns = keys, rows sum to 1, upper
triangle 0) and averages over query positions 1..T-1: position 0 can only attend to itself, so
including it would add a trivial 1.0 to every "sink" and "self" statistic. They need T ≥ 2.

    statistic          what it measures (mean over queries i = 1..T-1)              range
    entropy            -Σ_j α_ij log2 α_ij of the row, in bits                      0 … log2(T)
    entropy_norm       entropy / log2(i+1): 0 = one key, 1 = uniform over keys 0..i   0 … 1
    sink               α_i0, the weight on position 0                                 0 … 1
    previous           α_i,i-1, the weight on the previous token                      0 … 1
    self               α_ii, the weight on the query itself (the diagonal)            0 … 1
    top_column         the key j that receives the most weight over all queries 1..T-1,
    top_column_share   and its share of that weight: mean_i α_ij ("vertical bar")     0 … 1
    induction          on a probe of random tokens repeated twice: the weight from each token
                       of the second copy onto the token right after its first occurrence
    vw_sink_share      value-weighted: the share of ‖α_ij · v_j W_O‖ coming from position 0

Value-weighted attention (Kobayashi et al. 2020, "Attention is not only a weight", arXiv
2004.10102): head h moves α_ij · v_j W_O^h from key j into query i, where W_O^h is its [d_head, d]
slice of `c_proj.weight`. A sink head puts much weight on position 0 but that position's value is
small, so little is moved: its `sink` is high and its `vw_sink_share` low.

Head types (`classify_head`, thresholds in `THRESHOLDS`), decided in this order:
    induction       induction ≥ 0.4 (on the repeated-random-token probe)
    then, among the positional types whose statistic reaches its threshold, the one whose
    statistic is largest:
    previous-token  previous ≥ 0.5
    self            self ≥ 0.5 (the diagonal)
    sink            sink ≥ 0.5 (position 0)
    broadcast       top_column ≠ 0 and top_column_share ≥ 0.4 (one later key that most
                    queries read: a "vertical bar", e.g. a full stop or a comma)
    diffuse         none of the above and entropy_norm ≥ 0.7 (spread over many keys)
    mixed           none of the above: attends sharply but by content (to a related word,
                    say), which these positional statistics do not name

The next-token predictions (`next_token_top_k`, with `probabilities` and `largest` from
gpt2np/generate.py, their one home) read the logits in float64, for the command line, the logit
lens, ablation and the viewer alike.
"""

import numpy as np

from ..generate import largest, probabilities

THRESHOLDS = {
    "induction": 0.4,       # induction score on the probe
    "previous": 0.5,        # mean weight on the previous token
    "self": 0.5,            # mean weight on the diagonal
    "sink": 0.5,            # mean weight on position 0
    "broadcast": 0.4,       # share of all weight taken by one column other than 0
    "diffuse": 0.7,         # entropy_norm at or above which a head with no pattern is "diffuse"
}

HEAD_TYPES = ("induction", "previous-token", "self", "sink", "broadcast", "diffuse", "mixed")

# The positional types: (type, the statistic it is judged by, its key in THRESHOLDS).
POSITIONAL_TYPES = (("previous-token", "previous", "previous"), ("self", "self", "self"),
                    ("sink", "sink", "sink"), ("broadcast", "top_column_share", "broadcast"))


# -- next-token predictions ---------------------------------------------------------------------
def next_token_top_k(logits, k=5, block=64):
    """The k most probable next tokens after every position, best first; ties: the lower id first.

    logits [..., V] -> (ids [..., k] int64, probs [..., k] float64). `probabilities` and `largest`
    (gpt2np/generate.py) on rows done `block` at a time, so 1,024 positions of GPT-2's vocabulary
    never need a [1024, V] float64 array.
    """
    logits = np.asarray(logits)
    V = logits.shape[-1]
    k = min(k, V)
    rows = logits.reshape(-1, V)                                      # [N, V]
    ids = np.empty((len(rows), k), dtype=np.int64)
    probs = np.empty((len(rows), k), dtype=np.float64)
    for start in range(0, len(rows), block):
        p = probabilities(rows[start:start + block])                  # [B, V]
        ids[start:start + len(p)] = [largest(row, k) for row in p]    # [B, k]
        probs[start:start + len(p)] = np.take_along_axis(p, ids[start:start + len(p)], axis=-1)
    return ids.reshape(*logits.shape[:-1], k), probs.reshape(*logits.shape[:-1], k)


# -- the original three (used by cli/run.py; top_keys also by the viewer and findings) --------------
def sink_mass(pattern):
    """Mean attention on key position 0 over queries 1..T-1. [..., T, T] -> [...]"""
    return sink_per_query(pattern).mean(axis=-1)


def sink_per_query(pattern):
    """Attention of each query 1..T-1 on key position 0. [..., T, T] -> [..., T-1]"""
    return pattern[..., 1:, 0]


def previous_token_mass(pattern):
    """Mean attention on the previous token (key i-1 for query i), queries 1..T-1. [..., T, T] -> [...]"""
    return previous_per_query(pattern).mean(axis=-1)


def previous_per_query(pattern):
    """Attention of each query i = 1..T-1 on key i-1. [..., T, T] -> [..., T-1]"""
    return np.diagonal(pattern, offset=-1, axis1=-2, axis2=-1)


def candidate_keys(query, skip_first=False):
    """The keys query `query` can attend to: 0..query, the causal mask hides the rest. skip_first
    drops key 0, except for query 0, whose only key it is. -> [n] key indices"""
    return np.arange(1 if skip_first and query > 0 else 0, query + 1)


def top_keys(pattern, query, k=5, skip_first=False):
    """The k keys query `query` attends to most, in one head's pattern [T, T] -> [(key, weight)].

    Only keys 0..query are ranked (later keys are masked: weight 0, never a real key), so a query
    with fewer than k keys gets fewer (`fewer_keys_note` says so). Ties: earlier key first.
    """
    row = np.asarray(pattern[query, : query + 1], dtype=np.float64)    # [T] -> [query + 1]
    keys = candidate_keys(query, skip_first)
    best = keys[largest(row[keys], k)]
    return [(int(j), float(row[j])) for j in best]


def fewer_keys_note(query, k, skip_first=False):
    """None when query `query` has at least k keys to rank, else a sentence saying how many."""
    n = len(candidate_keys(query, skip_first))
    if n >= k:
        return None
    besides = " besides position 0" if skip_first and query > 0 else ""
    verb = "precedes or equals" if n == 1 else "precede or equal"
    return (f"only {n} key{'s' * (n != 1)}{besides} {verb} query {query}: "
            "the causal mask hides later ones")


# -- more statistics of one pattern -------------------------------------------------------------
def row_entropy(pattern):
    """Entropy of every attention row, in bits (0·log 0 = 0). [..., T, T] -> [..., T]"""
    p = np.asarray(pattern, dtype=np.float64)
    logp = np.log2(np.where(p > 0, p, 1.0))          # log2 of 1 = 0 where p = 0
    return 0.0 - (p * logp).sum(axis=-1)             # 0.0 - x: no "-0.0" for a one-hot row


def mean_entropy(pattern):
    """Mean row entropy in bits over queries 1..T-1. [..., T, T] -> [...]"""
    return row_entropy(pattern)[..., 1:].mean(axis=-1)


def normalized_entropy(pattern):
    """Mean over queries i = 1..T-1 of entropy_i / log2(i+1), the most query i can have.

    0: every row on one key; 1: every row uniform over the keys it can see. [..., T, T] -> [...]
    """
    T = pattern.shape[-1]
    most = np.log2(np.arange(2, T + 1))              # [T-1]: log2(i+1) for i = 1..T-1
    return (row_entropy(pattern)[..., 1:] / most).mean(axis=-1)


def self_mass(pattern):
    """Mean attention of each query on itself (the diagonal), queries 1..T-1. [..., T, T] -> [...]"""
    return self_per_query(pattern).mean(axis=-1)


def self_per_query(pattern):
    """Attention of each query 1..T-1 on itself. [..., T, T] -> [..., T-1]"""
    return np.diagonal(pattern, axis1=-2, axis2=-1)[..., 1:]


def column_share(pattern):
    """Share of all the weight of queries 1..T-1 that each key receives. [..., T, T] -> [..., T]

    Sums to 1 over keys. A "vertical bar" (one key that every query reads) has one large entry.
    """
    return pattern[..., 1:, :].mean(axis=-2)


def top_column(pattern):
    """The key receiving the most weight from queries 1..T-1, and its share. [..., T, T] -> ([...], [...])"""
    shares = column_share(pattern)                   # [..., T]
    j = shares.argmax(axis=-1)
    return j, np.take_along_axis(shares, j[..., None], axis=-1)[..., 0]


# -- induction -----------------------------------------------------------------------------------
def induction_probe_ids(vocab_size, length=30, seed=0, bos_id=None, pool=None):
    """A probe for induction heads: `length` distinct random token ids, then the same ids again.

    With bos_id, that id comes first (and is never drawn). pool: the ids to draw from (default
    all of 0..vocab_size-1; see `distinguishable_ids`). Returns ids [start + 2·length] with
    start = 1 if bos_id is given, else 0. Distinct ids make each token's earlier occurrence unique.
    """
    pool = np.arange(vocab_size) if pool is None else np.asarray(pool)
    pool = np.setdiff1d(pool, [] if bos_id is None else [bos_id])
    if length > pool.size:
        raise ValueError(f"cannot draw {length} distinct ids from a vocabulary of {pool.size}")
    seq = np.random.default_rng(seed).choice(pool, size=length, replace=False)   # [n]
    head = [] if bos_id is None else [bos_id]
    return np.concatenate([np.asarray(head, dtype=np.int64), seq, seq]).astype(np.int64)


def distinguishable_ids(wte):
    """Ids whose embedding rows differ from every other row's: all ids when every row is its own,
    else every id except those holding a row that several ids share (the demo model's tokens that
    never occur in its training text share one row; a probe of them could not tell them apart).
    wte [V, d] -> [n] sorted ids"""
    keys = np.array([hash(row.tobytes()) for row in wte])                  # [V] (fast, not exact)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    own = counts[inverse] == 1                                              # [V]
    for key in np.unique(keys[~own]):                                       # exact within a group
        group = np.flatnonzero(keys == key)
        _, g_inverse, g_counts = np.unique(wte[group], axis=0, return_inverse=True, return_counts=True)
        own[group] = g_counts[g_inverse.ravel()] == 1
    return np.flatnonzero(own)


def induction_score(pattern, length, start=0):
    """Mean weight from each token of the second copy onto the token after its first occurrence.

    For ids = [prefix (start tokens), s_0..s_{n-1}, s_0..s_{n-1}] with n = length, query
    start+n+k (the second s_k) is scored on key start+k+1 (the token after the first s_k), for
    k = 0..n-1. [..., T, T] with T = start + 2n -> [...]
    """
    n = length
    T = pattern.shape[-1]
    if T != start + 2 * n:
        raise ValueError(f"pattern has {T} positions, the probe {start} + 2·{n}")
    queries = start + n + np.arange(n)               # [n] the second copy
    keys = queries - n + 1                           # [n] token after the first occurrence
    return pattern[..., queries, keys].mean(axis=-1)


# -- value-weighted attention --------------------------------------------------------------------
def head_output_weights(c_proj_weight, n_head):
    """Split an attention output projection into its per-head slices W_O^h.

    c_proj_weight [d, d] stored [in, out]; head h owns input rows h·dh:(h+1)·dh. -> [H, dh, d]
    """
    d = c_proj_weight.shape[0]
    return c_proj_weight.reshape(n_head, d // n_head, c_proj_weight.shape[1])  # [d, d] -> [H, dh, d]


def value_norms(v, w_o):
    """‖v_j W_O^h‖ for every head and key: what head h would write if it attended only to j.

    v [T, H, dh] (hook_v), w_o [H, dh, d] -> [H, T]
    """
    out = np.matmul(v.astype(np.float64).transpose(1, 0, 2), w_o.astype(np.float64))  # [H,T,dh] @ [H,dh,d] -> [H,T,d]
    return np.linalg.norm(out, axis=-1)                                             # [H, T]


def value_weighted_pattern(pattern, v, w_o):
    """‖α_ij · v_j W_O^h‖ = α_ij · ‖v_j W_O^h‖ (α ≥ 0) for every head, query and key.

    pattern [H, T, T], v [T, H, dh], w_o [H, dh, d] -> [H, T, T]
    """
    return pattern * value_norms(v, w_o)[:, None, :]          # [H, T, T] * [H, 1, T]


def value_weighted_sink_share(vw):
    """Mean over queries 1..T-1 of the share of a row's value-weighted attention on position 0.

    vw [..., T, T] (value_weighted_pattern) -> [...]
    """
    return value_weighted_sink_per_query(vw).mean(axis=-1)


def value_weighted_sink_per_query(vw):
    """Each query's share (1..T-1) of its value-weighted attention on position 0 (0 when the row
    moves nothing). vw [..., T, T] -> [..., T-1]"""
    rows = vw[..., 1:, :]                                     # [..., T-1, T]
    total = rows.sum(axis=-1)
    return np.divide(rows[..., 0], total, out=np.zeros_like(total), where=total > 0)


# -- one layer, every head -----------------------------------------------------------------------
def layer_stats(pattern, v=None, w_o=None):
    """Every statistic for every head of one layer.

    pattern [H, T, T]; optional v [T, H, dh] and w_o [H, dh, d] add vw_sink_share.
    -> dict of name -> [H] arrays (entropy, entropy_norm, sink, previous, self, top_column,
    top_column_share[, vw_sink_share]).
    """
    if pattern.shape[-1] < 2:
        raise ValueError("statistics over queries 1..T-1 need at least 2 tokens")
    top_j, top_share = top_column(pattern)
    stats = {
        "entropy": mean_entropy(pattern),
        "entropy_norm": normalized_entropy(pattern),
        "sink": sink_mass(pattern),
        "previous": previous_token_mass(pattern),
        "self": self_mass(pattern),
        "top_column": top_j,
        "top_column_share": top_share,
    }
    if v is not None and w_o is not None:
        stats["vw_sink_share"] = value_weighted_sink_share(value_weighted_pattern(pattern, v, w_o))
    return stats


# -- head types ----------------------------------------------------------------------------------
def classify_head(stats, thresholds=THRESHOLDS):
    """The type of one head from its statistics (a mapping with the names of `layer_stats`, and
    optionally "induction"). Rules and thresholds: see the module docstring. -> str in HEAD_TYPES
    """
    t = thresholds
    induction = stats.get("induction")
    if induction is not None and induction >= t["induction"]:
        return "induction"
    candidates = []
    for order, (name, stat, threshold) in enumerate(POSITIONAL_TYPES):
        if name == "broadcast" and int(stats["top_column"]) == 0:
            continue                                  # column 0 is the sink, not a bar
        if stats[stat] >= t[threshold]:
            candidates.append((stats[stat], -order, name))
    if candidates:
        return max(candidates)[2]                     # largest statistic; ties: earlier type
    if stats["entropy_norm"] >= t["diffuse"]:
        return "diffuse"
    return "mixed"


def type_rule(head_type, thresholds=THRESHOLDS):
    """One line saying what a head type means and its threshold, for tables and reports."""
    t = thresholds
    return {
        "induction": f"induction score ≥ {t['induction']} on repeated random tokens",
        "previous-token": f"≥ {t['previous']} of its weight on the previous token",
        "self": f"≥ {t['self']} of its weight on the query itself",
        "sink": f"≥ {t['sink']} of its weight on position 0",
        "broadcast": f"one key other than 0 takes ≥ {t['broadcast']} of all weight",
        "diffuse": f"no pattern above; normalized entropy ≥ {t['diffuse']}",
        "mixed": f"no pattern above; normalized entropy < {t['diffuse']} (attends by content)",
    }[head_type]


def common_prefix(ids_a, ids_b):
    """How many leading tokens two sequences share."""
    n = 0
    for a, b in zip(ids_a, ids_b):
        if a != b:
            break
        n += 1
    return n
