"""The findings report as data: the original demo's predictions about attention, measured on a
loaded model, every head's type, and GPT-2 small's published head roles.

Every piece returns a JSON-ready dict or list (the command line prints them: `gpt2np/cli/findings.py`;
the viewer sends them):
    head_table(model, text_or_trace)      every head's statistics and type (see gpt2np.analysis)
    induction_scores(model)               the induction probe: scores [n_layer, n_head] and its trace
    value_weighted(model, trace, layer)   ‖α_ij · v_j W_O^h‖ per head, [H, T, T]
    report(model, ...)                    the whole report, as printed by `findings --json`
Pass `induction=induction_scores(model)[0]` to `head_table` to run the probe once per model.
The predictions are small pure functions over arrays (`check_*`), tested on constructed input.
"""

import json
import re

import numpy as np

from .. import analysis
from ..errors import GPT2npError
from ..files.hub import DEMO_DIR
from ..files.tokenizer import quoted
from ..heads import head_name
from .stats import THRESHOLDS, common_prefix

SENTENCE = ("The trophy doesn't fit in the suitcase because it is too big. When Mary and John "
            "went to the store, John gave a drink to Mary. The quick brown fox jumps over the "
            "lazy dog.")
COREF_SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
FLIP_SENTENCE = "The trophy doesn't fit in the suitcase because it is too small."
PRONOUN, CANDIDATES = "it", ("trophy", "suitcase")      # the referent in COREF_SENTENCE, in FLIP_SENTENCE
IOI_SENTENCE = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"   # the answer flips
IOI_NAMES = ("Mary", "John")                            # indirect object, subject
PROBE_LENGTH, PROBE_SEED = 30, 0
SINK_SHARE = 0.3                # prediction 3: "≥ 30% mass on column 0"
SINK_LAYERS = range(4, 9)       # prediction 3: layers 4–8
SPECIALIZED_BY = 4              # prediction 5: by layer 4
MIN_TYPES = 3                   # prediction 5: at least 3 distinct head types in a layer
REFERENT_SHARE = 0.75           # prediction 4 holds when ≥ 3/4 of the heads follow the sentence,
                                # and does not hold when ≤ 1/4 do; in between it is undecided
REFERENT_MARGIN = 0.05          # ... and the weight margin (referent − other) must reach this to decide

HOLDS, FAILS, NOT_APPLICABLE = "holds", "does not hold", "not applicable"
UNDECIDED = "undecided"

WANG = "Wang et al. 2022, Interpretability in the Wild (IOI), arXiv 2211.00593"
MCDOUGALL = "McDougall et al. 2023, Copy Suppression, arXiv 2310.04625"
PUBLISHED_ROLES = (
    # role, heads, how it is measured here, source
    ("previous-token", ("4.11", "2.2"), "previous", WANG),
    ("induction", ("5.1", "5.5", "6.9", "7.2", "7.10"), "induction",
     f"{WANG} (5.5, 6.9); 5.1, 7.2, 7.10: the other top scorers of the same repeated-random-"
     "token induction score (Olsson et al. 2022 method), as listed in gpt2np issue 5"),
    ("name mover", ("9.9", "9.6", "10.0"), "ioi", WANG),
    ("copy suppression", ("10.7", "11.10"), "ioi",
     f"{MCDOUGALL}; {WANG} (negative name movers)"),
)


# -- measuring heads -----------------------------------------------------------------------------
def induction_scores(model, length=PROBE_LENGTH, seed=PROBE_SEED, bos=True, pool=None):
    """Run the induction probe (`analysis.induction_probe_ids`) and score every head; its random
    tokens come from pool (default: `distinguishable(model)`).

    -> (scores [n_layer, n_head], probe trace, {"length", "seed", "bos", "ids"})
    """
    cfg = model.config
    start = 1 if bos else 0
    length = min(length, (cfg.n_positions - start) // 2, cfg.vocab_size - 1)
    if length < 2:
        raise GPT2npError(f"{model.info.name}'s context ({cfg.n_positions}) is too short for the "
                          "induction probe (two copies of at least 2 tokens).")
    ids = analysis.induction_probe_ids(cfg.vocab_size, length, seed,
                                       bos_id=model.bos_id() if bos else None,
                                       pool=distinguishable(model) if pool is None else pool)
    trace = model.run(ids)
    scores = np.stack([analysis.induction_score(trace.pattern(L), length, start)
                       for L in range(cfg.n_layer)])                       # [L, H]
    return scores, trace, {"length": length, "seed": seed, "bos": bos, "ids": ids.tolist()}


def distinguishable(model):
    """The ids the induction probe draws from, computed once per model: those with an embedding
    row of their own (`analysis.distinguishable_ids`); for the demo model, those of them its
    training drew repeated random spans from (its card's `attention.induction.random_pool_ids`:
    the most frequent tokens of its training text, the only ones it learned to copy)."""
    if getattr(model, "_distinguishable_ids", None) is None:
        ids = analysis.distinguishable_ids(model.params["wte.weight"])
        pool = demo_probe_pool() if model.info.kind == "demo" else None
        model._distinguishable_ids = ids if pool is None else np.intersect1d(ids, pool)
    return model._distinguishable_ids


def demo_probe_pool(card=DEMO_DIR / "training.json"):
    """The ids the demo model's card says its random repeats came from, or None."""
    try:
        pool = json.loads(card.read_text())["attention"]["induction"]["random_pool_ids"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return np.asarray(pool, dtype=np.int64)


def head_table(model, text_or_trace, bos=False, induction=None, thresholds=THRESHOLDS):
    """Every head's statistics on one input, with its type: one JSON-ready row per head.

    text_or_trace: a sentence, token ids or a Trace already computed by `model.run`.
    induction: scores [n_layer, n_head] from `induction_scores` (computed here if None).
    -> [{"head": "L.H", "layer", "index", "type", "entropy", "entropy_norm", "sink",
         "previous", "self", "top_column", "top_column_token", "top_column_share",
         "vw_sink_share", "induction"}], layer by layer. Statistics: gpt2np.analysis.
    """
    trace = text_or_trace if hasattr(text_or_trace, "pattern") else model.run(text_or_trace, bos=bos)
    if trace.n_tokens < 2:
        raise GPT2npError("Head statistics average over query positions 1…T-1: give a text of "
                          "at least 2 tokens.")
    if induction is None:
        induction = induction_scores(model)[0]
    rows = []
    for L in range(trace.n_layer):
        stats = analysis.layer_stats(trace.pattern(L), trace[f"blocks.{L}.attn.hook_v"],
                                     output_weights(model, L))
        stats["induction"] = induction[L]
        for h in range(model.config.n_head):
            row = {"head": head_name(L, h), "layer": L, "index": h}
            row.update({k: (int(v[h]) if k == "top_column" else float(v[h])) for k, v in stats.items()})
            row["top_column_token"] = trace.tokens[row["top_column"]]
            row["type"] = analysis.classify_head(row, thresholds)
            rows.append(row)
    return rows


def output_weights(model, layer):
    """Each head's slice W_O^h of one layer's attention output projection. -> [H, dh, d]"""
    return analysis.head_output_weights(model.params[f"h.{layer}.attn.c_proj.weight"], model.config.n_head)


def value_weighted(model, trace, layer):
    """‖α_ij · v_j W_O^h‖ for every head of one layer (analysis.value_weighted_pattern). -> [H, T, T]

    Rows do not sum to 1: a row's total is how much that head moves into the query; divide by
    it to draw the value-weighted pattern on the same scale as the attention pattern.
    """
    return analysis.value_weighted_pattern(trace.pattern(layer), trace[f"blocks.{layer}.attn.hook_v"],
                                           output_weights(model, layer))


def word_tokens(model, trace, word, occurrence=0):
    """Token positions that make up the `occurrence`-th whole-word match of `word` in the text."""
    ids = trace.ids.tolist()
    text = model.tokenizer.decode(ids)
    starts = [len(model.tokenizer.decode(ids[:k])) for k in range(len(ids) + 1)]   # char offsets
    matches = list(re.finditer(rf"\b{re.escape(word)}\b", text))
    if len(matches) <= occurrence:
        raise GPT2npError(f"The word {word!r} is not in {text!r}: give a sentence that contains "
                          "it, or change the word.")
    a, b = matches[occurrence].span()
    return [k for k in range(len(ids)) if starts[k] < b and starts[k + 1] > a]


# -- the predictions: pure checks over arrays ----------------------------------------------------
def check_upper_triangle(patterns):
    """Prediction 1. patterns: list of [H, T, T] (any T) -> (verdict, largest weight above the diagonal)"""
    worst = max(float(np.triu(p, k=1).max()) if p.shape[-1] > 1 else 0.0 for p in patterns)
    return (HOLDS if worst == 0.0 else FAILS), worst


def check_first_token(patterns):
    """Prediction 2. -> (verdict, smallest α[0,0], largest entropy of row 0 in bits)"""
    first = min(float(p[:, 0, 0].min()) for p in patterns)
    entropy = max(float(analysis.row_entropy(p)[:, 0].max()) for p in patterns)
    return (HOLDS if first == 1.0 and entropy == 0.0 else FAILS), first, entropy


def check_sink_heads(sink, layers=SINK_LAYERS, share=SINK_SHARE, allowed=(1, 2)):
    """Prediction 3. sink [n_layer, n_head] -> (verdict, {layer: count of heads with sink ≥ share})

    Only layers the model has are checked; with none of them the verdict is "not applicable".
    """
    sink = np.asarray(sink)
    counts = {L: int((sink[L] >= share).sum()) for L in layers if L < sink.shape[0]}
    if not counts:
        return NOT_APPLICABLE, counts
    return (HOLDS if all(c in allowed for c in counts.values()) else FAILS), counts


def check_referent(tops, margins, share=REFERENT_SHARE, margin=REFERENT_MARGIN):
    """Prediction 4: from the pronoun, each last-layer head's top key is the sentence's referent,
    and it changes with the sentence ("too big" -> trophy, "too small" -> suitcase).

    tops [S, H]: per sentence and head, what the top key is: 0 = the sentence's referent, 1 = the
    other candidate, -1 = another word. margins [S, H]: weight on the referent − on the other.
    A head *follows the sentence* when its top key is the referent in every sentence. With F of H
    heads following and m the smaller of the sentences' mean margins:
      holds           F ≥ ⌈share·H⌉ and m ≥ margin
      does not hold   F ≤ ⌊(1 − share)·H⌋, or m ≤ −margin
      undecided       anything else (a 4–4 split of 8 heads; a 0.003 difference)
    -> (verdict, {"follow", "heads", "needs", "at_most", "margin", "min_margin", "decided_by"})
    """
    tops, margins = np.atleast_2d(tops), np.atleast_2d(np.asarray(margins, dtype=np.float64))
    H = tops.shape[1]
    follow = int(np.all(tops == 0, axis=0).sum())
    needs, at_most = int(np.ceil(share * H)), int(np.floor((1 - share) * H))
    m = float(margins.mean(axis=1).min())
    counts = f"{follow} of {H} heads follow the sentence"
    if follow >= needs and m >= margin:
        verdict, why = HOLDS, f"{counts} (holds needs ≥ {needs}) and the smaller mean margin {m:+.3f} ≥ {margin}"
    elif follow <= at_most:
        verdict, why = FAILS, f"{counts} (does not hold at ≤ {at_most})"
    elif m <= -margin:
        verdict, why = FAILS, f"the smaller mean margin {m:+.3f} ≤ −{margin}: the other word gets more weight"
    elif follow < needs:
        verdict, why = UNDECIDED, f"{counts}: between {at_most} and {needs}, which decide"
    else:
        verdict, why = UNDECIDED, f"{counts}, but the smaller mean margin {m:+.3f} is below {margin}"
    return verdict, {"follow": follow, "heads": H, "needs": needs, "at_most": at_most,
                     "margin": m, "min_margin": margin, "decided_by": why}


def check_specialization(types, by_layer=SPECIALIZED_BY, at_least=MIN_TYPES):
    """Prediction 5. types: per layer, the list of its heads' types.
    -> (verdict: holds when some layer 0..by_layer has ≥ at_least distinct types,
        {layer: number of distinct types})"""
    counts = {L: len(set(t)) for L, t in enumerate(types) if L <= by_layer}
    return (HOLDS if any(c >= at_least for c in counts.values()) else FAILS), counts


# -- the report ----------------------------------------------------------------------------------
def is_gpt2_small(config):
    return (config.n_layer, config.n_head, config.n_embd) == (12, 12, 768)


def referent_table(model, trace, pronoun, candidates):
    """Prediction 4's measurements on the last layer of one sentence: one row per head.
    candidates: (this sentence's referent, the other word). A head's top key is taken with
    position 0 left out (the sink, where heads put weight that means "nothing here")."""
    L = trace.n_layer - 1
    query = word_tokens(model, trace, pronoun)[-1]               # the pronoun's last token
    spans = [word_tokens(model, trace, c) for c in candidates]
    rows = []
    for h, pattern in enumerate(trace.pattern(L)):               # [H, T, T] -> [T, T]
        row = pattern[query]                                      # [T]
        (j0, w0), = analysis.top_keys(pattern, query, 1)
        (j1, w1), = analysis.top_keys(pattern, query, 1, skip_first=True)
        on = [float(row[s].sum()) for s in spans]
        top = next((c for c, s in enumerate(spans) if j1 in s), -1)   # 0 referent, 1 other, -1 neither
        rows.append({"head": head_name(L, h), "top_key": j0, "top_key_token": trace.tokens[j0],
                     "top_weight": w0, "top_key_no0": j1, "top_key_no0_token": trace.tokens[j1],
                     "top_weight_no0": w1, "candidates": on, "margin": on[0] - on[1],
                     "top_is": candidates[top] if top >= 0 else None,
                     "winner": candidates[int(np.argmax(on))] if on[0] != on[1] else None})
    return {"layer": L, "query": query, "query_token": trace.tokens[query], "text": None,
            "referent": candidates[0], "other": candidates[1],
            "candidate_tokens": [[trace.tokens[k] for k in s] for s in spans], "heads": rows,
            "mean_margin": float(np.mean([r["margin"] for r in rows]))}


def referent_prediction(model, sentences, pronoun, candidates, bos=False):
    """Prediction 4 on one sentence whose referent is candidates[0] and, optionally, a second one
    whose referent is candidates[1]. -> (verdict, measured dict, summary line)"""
    tables = []
    for k, text in enumerate(sentences):
        trace = model.run(text, bos=bos)
        cands = candidates if k == 0 else candidates[::-1]
        table = referent_table(model, trace, pronoun, cands)
        table["text"] = text
        tables.append((trace, table))
    split = [(t["text"], c, toks) for _, t in tables for c, toks in zip((t["referent"], t["other"]),
                                                                       t["candidate_tokens"]) if len(toks) > 1]
    measured = {"layer": tables[0][1]["layer"], "sentences": [t for _, t in tables]}
    if split:
        _, word, toks = split[0]
        why = (f"{word!r} is {len(toks)} tokens for this model's tokenizer ({' '.join(map(quoted, toks))}): "
               "the claim is about one key per word")
        return NOT_APPLICABLE, {**measured, "decided_by": why}, f"not measured: {why}"
    tops = [[{t["referent"]: 0, t["other"]: 1}.get(h["top_is"], -1) for h in t["heads"]] for _, t in tables]
    margins = [[h["margin"] for h in t["heads"]] for _, t in tables]
    verdict, decided = check_referent(tops, margins)
    summary = (f"layer {measured['layer']}, top key of {pronoun!r} per head (position 0 left out): "
               + "; ".join(f"{t['referent']!r} in {sum(h['top_is'] == t['referent'] for h in t['heads'])}, "
                           f"{t['other']!r} in {sum(h['top_is'] == t['other'] for h in t['heads'])} "
                           f"of {len(t['heads'])} heads (mean margin {t['mean_margin']:+.3f}) when the "
                           f"referent is {t['referent']!r}" for _, t in tables)
               + f" — {decided['decided_by']}")
    if len(tables) == 2:
        (ta, a), (tb, b) = tables
        if a["query"] == b["query"] and common_prefix(ta.ids, tb.ids) > a["query"]:
            summary += (f". The two sentences are the same up to {pronoun!r} (position {a['query']}): "
                        f"attention is causal, so {pronoun!r} has the same row in both and no head "
                        "can follow the sentence from there")
            decided["same_row"] = True
    else:
        summary += " (one sentence: the flip is not measured)"
    return verdict, {**measured, **decided}, summary


def published_roles(model, rows, ioi):
    """GPT-2 small's published head roles, each measured here; skipped for other shapes."""
    if not is_gpt2_small(model.config):
        return {"applicable": False, "note": "not GPT-2 small: skipped", "roles": []}
    by_name = {r["head"]: r for r in rows}
    roles = []
    for role, heads, measure, source in PUBLISHED_ROLES:
        measured = []
        for name in heads:
            r = by_name[name]
            entry = {"head": name, "type": r["type"], "sink": r["sink"], "previous": r["previous"],
                     "induction": r["induction"]}
            if measure == "previous":
                entry["value"], ok = r["previous"], r["previous"] >= THRESHOLDS["previous"]
                entry["measure"] = "mean weight on the previous token"
            elif measure == "induction":
                entry["value"], ok = r["induction"], r["induction"] >= THRESHOLDS["induction"]
                entry["measure"] = "induction score"
            else:
                io, s = ioi["weights"][name]
                entry.update(value=io, subject=s, measure=f"weight from the last token on "
                             f"{IOI_NAMES[0]!r} (vs {IOI_NAMES[1]!r})")
                ok = io > s
            entry["verdict"] = HOLDS if ok else FAILS
            measured.append(entry)
        roles.append({"role": role, "source": source, "heads": measured})
    return {"applicable": True, "note": "GPT-2 small's shape: published roles measured",
            "ioi_sentence": ioi["text"], "roles": roles}


def ioi_weights(model, bos=False):
    """From the last token of IOI_SENTENCE: every head's weight on the indirect object's and the
    subject's tokens (all their occurrences)."""
    trace = model.run(IOI_SENTENCE, bos=bos)
    io = word_tokens(model, trace, IOI_NAMES[0])
    s = word_tokens(model, trace, IOI_NAMES[1]) + word_tokens(model, trace, IOI_NAMES[1], 1)
    weights = {}
    for L in range(trace.n_layer):
        last = trace.pattern(L)[:, -1]                           # [H, T]
        for h in range(last.shape[0]):
            weights[head_name(L, h)] = (float(last[h, io].sum()), float(last[h, s].sum()))
    return {"text": IOI_SENTENCE, "weights": weights}


def report(model, sentence=SENTENCE, coref_sentence=COREF_SENTENCE, pronoun=PRONOUN,
           candidates=CANDIDATES, bos=False, probe_length=PROBE_LENGTH, seed=PROBE_SEED,
           flip_sentence=FLIP_SENTENCE):
    """The whole findings report as a JSON-ready dict (what `--json` prints).

    Prediction 4 runs on coref_sentence (referent candidates[0]) and flip_sentence (referent
    candidates[1]); flip_sentence=None measures the first one alone."""
    if model.tokenizer is None:
        raise GPT2npError(f"{model.info.name} has no tokenizer, and the findings report runs "
                          "sentences: use a model directory with tokenizer.json.")
    cfg = model.config
    induction, probe, probe_info = induction_scores(model, probe_length, seed)
    trace = model.run(sentence, bos=bos)
    coref = model.run(coref_sentence, bos=bos)
    rows = head_table(model, trace, induction=induction)
    grid = lambda key: np.array([[r[key] for r in rows if r["layer"] == L]  # noqa: E731
                                 for L in range(cfg.n_layer)])
    types = [[r["type"] for r in rows if r["layer"] == L] for L in range(cfg.n_layer)]
    all_patterns = [t.pattern(L) for t in (trace, coref, probe) for L in range(cfg.n_layer)]
    last = cfg.n_layer - 1

    v1, worst = check_upper_triangle(all_patterns)
    v2, first, ent0 = check_first_token(all_patterns)
    v3, counts3 = check_sink_heads(grid("sink"))
    all3 = [int((row >= SINK_SHARE).sum()) for row in grid("sink")]          # every layer
    sentences4 = [coref_sentence] + ([flip_sentence] if flip_sentence is not None else [])
    v4, measured4, summary4 = referent_prediction(model, sentences4, pronoun, candidates, bos)
    ref = measured4["sentences"][0]
    v5, counts5 = check_specialization(types)
    runs = f"{cfg.n_layer} layers × {cfg.n_head} heads × 3 inputs (sentence, coreference sentence, probe)"
    layers5 = f"layers 0–{min(SPECIALIZED_BY, last)}"
    predictions = [
        {"id": 1, "prediction": "the upper triangle of every attention pattern is exactly 0",
         "verdict": v1, "measured": {"max_above_diagonal": worst},
         "summary": f"largest weight above the diagonal: {worst:g} over {runs}"},
        {"id": 2, "prediction": "the first token attends 1.0 to itself, with entropy 0",
         "verdict": v2, "measured": {"min_first_weight": first, "max_first_entropy_bits": ent0},
         "summary": f"smallest α[0,0] = {first:.9g}, largest entropy of row 0 = {ent0:g} bits"},
        {"id": 3, "prediction": f"in layers 4–8, 1–2 heads per layer put ≥ {SINK_SHARE:.0%} of "
                                "their weight on position 0",
         "verdict": v3, "measured": {"heads_per_layer": {str(k): c for k, c in counts3.items()},
                                     "all_layers": all3},
         "summary": ("heads with ≥ 30% on position 0: " + ", ".join(
             f"layer {k}: {c}" for k, c in counts3.items())) if counts3 else
            (f"the model has layers 0–{last} only; for reference, per layer: "
             + ", ".join(f"{L}: {c}" for L, c in enumerate(all3)))},
        {"id": 4, "prediction": f"at the last layer, the top key of {pronoun!r} is {candidates[0]!r} or "
                                f"{candidates[1]!r} (not a nearby word), and which one follows the "
                                "sentence" + (f" ({candidates[0]!r} in the first, {candidates[1]!r} in "
                                              "the second)" if len(sentences4) == 2 else ""),
         "verdict": v4, "measured": measured4, "summary": summary4},
        {"id": 5, "prediction": f"by layer {SPECIALIZED_BY}, some layer has ≥ {MIN_TYPES} distinct "
                                "head types",
         "verdict": v5, "measured": {"distinct_types": {str(k): c for k, c in counts5.items()}},
         "summary": f"distinct types per layer in {layers5}: " + ", ".join(
             f"{k}: {c}" for k, c in counts5.items())},
    ]
    needs_ioi = is_gpt2_small(cfg)
    return {
        "model": {"name": model.info.name, "origin": model.info.origin,
                  "n_params": model.info.n_params, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                  "engine": model.engine},
        "inputs": {"sentence": {"text": sentence, "tokens": trace.tokens},
                   "coref": {"text": coref_sentence, "flip": flip_sentence, "tokens": coref.tokens,
                             "pronoun": pronoun,
                             "candidates": list(candidates),
                             "candidate_tokens": ref["candidate_tokens"],
                             "query": ref["query"]},
                   "probe": probe_info, "bos": bos},
        "thresholds": {**THRESHOLDS, "sink_finding": SINK_SHARE},
        "type_rules": {t: analysis.type_rule(t) for t in analysis.HEAD_TYPES},
        "predictions": predictions,
        "types_by_layer": [{"layer": L, "types": types[L]} for L in range(cfg.n_layer)],
        "heads": rows,
        "published_roles": published_roles(model, rows, ioi_weights(model, bos) if needs_ioi else None),
    }
