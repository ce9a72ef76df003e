"""The answers of the panels that read one run (no Flask): the heads table, the logit lens, the
direct logit attribution, the sampling ledger and the walk through a block. The API's routes
(viewer/routes/analysis.py, values.py, generation.py) call them per request; an exported file
holds them at its opening view (viewer/export/snapshot.py), made by the same functions, so the
page shows the same numbers with or without a server."""

import numpy as np

from gpt2np import GPT2npError, analysis
from gpt2np.analysis import findings, interventions
from gpt2np.generate import choose
from gpt2np.model import unembed

from .walk import walk

# The sampling ledger's settings when the request names none (temperature 1, nothing cut, no seed).
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": None, "top_p": None, "seed": None, "greedy": False}
LIST_K = 5                       # tokens per list in the lens and the attribution, by default


def induction_probe(m):
    """findings.induction_scores once for the model: {"scores" [L, H] or None, "info", "error"}."""
    try:
        scores, _, info = findings.induction_scores(m)
    except GPT2npError as e:                     # a context too short for the probe
        return {"scores": None, "info": None, "error": str(e)}
    return {"scores": scores, "info": {k: v for k, v in info.items() if k != "ids"}, "error": None}


def heads_answer(m, run, probe):
    """Every head's statistics and type on this run (findings.head_table), with the rules."""
    cfg = m.config
    induction = probe["scores"]
    if induction is None:
        induction = np.full((cfg.n_layer, cfg.n_head), np.nan)
    rows = findings.head_table(m, run.trace(), induction=induction)   # value-weighted: [H, T, T] per layer
    counts = {t: sum(r["type"] == t for r in rows) for t in analysis.HEAD_TYPES}
    return {"handle": run.handle, "n_tokens": run.n_tokens, "n_layer": cfg.n_layer,
            "n_head": cfg.n_head, "heads": rows, "types": list(analysis.HEAD_TYPES),
            "type_counts": counts,
            "type_rules": {t: analysis.type_rule(t) for t in analysis.HEAD_TYPES},
            "thresholds": analysis.THRESHOLDS,
            "probe": probe["info"], "probe_error": probe["error"]}


def lens_answer(m, run, position, k=LIST_K, target=None):
    """The logit lens at `position`: the top-k after every layer, one token followed."""
    return {"handle": run.handle, "k": k, **interventions.logit_lens(m, run.trace(), position, k, target)}


def attribution_answer(m, run, position, token=None, versus=None, k=LIST_K):
    """The direct logit attribution at `position` (GPT2npError when `versus` is the top-1)."""
    result = interventions.logit_attribution(m, run.trace(), position, token, versus, k)
    return {"handle": run.handle, "k": k, **result}


def logits_row(m, run, position):
    """The logits [V] after `position`: the model's LM head (`model.unembed`) on the run's ln_final row."""
    final = run.ends["ln_final.hook_normalized"][position:position + 1]      # [1, d]
    return unembed(m.params, final)[0]                                        # [1, V] -> [V]


def candidate_row(c, temperature):
    return {**c.__dict__, "logit_t": c.logit / temperature}


def sample_answer(m, run, position, s):
    """The sampling ledger of the token after `position` with settings `s` (SAMPLING_DEFAULTS'
    keys): gpt2np.generate.choose on the logits row; with a seed (or greedy) the token drawn."""
    temperature = 1.0 if s["greedy"] else s["temperature"]
    # Without a seed nothing is drawn: choose() draws with a throwaway generator, and the draw is dropped.
    rng = np.random.default_rng(0 if s["seed"] is None else s["seed"])
    step = choose(logits_row(m, run, position), rng, position + 1, m.token_strings,
                  s["temperature"], s["top_k"], s["top_p"], s["greedy"])
    drawn = s["greedy"] or s["seed"] is not None
    return {"handle": run.handle, "position": position, "token": run.tokens[position],
            "settings": s, "vocab_size": m.config.vocab_size, "n_kept": step.n_kept,
            "candidates": [candidate_row(c, temperature) for c in step.candidates],
            "chosen": candidate_row(step.chosen, temperature) if drawn else None}


def walk_answer(m, run, trace, layer, head, query):
    """One token through one block (walk.py), from the run's kept arrays (`run.trace()`) or its full trace."""
    return {"handle": run.handle, **walk(m, trace, layer, head, query)}
