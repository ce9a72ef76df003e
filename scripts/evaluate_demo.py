"""The demo model's evaluation, examples and model card (called by train_demo_model.py at the end).

Everything is measured on the F16 file as saved: losses with `transformers` (the full 50,257-token
softmax), attention with gpt2np itself (`gpt2np.load(out)`, statistics and head types from
`gpt2np.analysis` / `gpt2np.analysis.findings`, ablation from `gpt2np.analysis.interventions`). The results go into
`training.json` (the card every test and doc reads) and `README.md`.
"""

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import train_demo_model as tdm

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))

from gpt2np import analysis  # noqa: E402
from gpt2np.analysis import findings, interventions  # noqa: E402

N_PROBES, PROBE_LENGTH = 10, 50          # the induction probe: 10 sequences of 50 random tokens, twice
LONG_WINDOWS = 40                        # held-out windows of the full context, for "long windows"
ORIGINAL_SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."
INDUCTION_TEXT = ("Anne walked slowly to the window and looked out at the garden. "
                  "Anne walked slowly to the window and looked out at the garden.")
IOI_SENTENCE = "When Mary and John went to the store, John gave a drink to Mary."
# Candidates for the examples; the script keeps those the model handles best (measured below).
FOLLOW_CANDIDATES = [
    ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
     "must be in want of a", " wife"),
    ("She was very much obliged to him, and said that she would be very", " happy"),
    ("Mr. Darcy and Miss", " Bennet"),
    ("Sir Thomas and Lady", " Bertram"),
    ("Colonel", " Brandon"),
    ("I do not know what you", " mean"),
    ("Anne walked slowly to the window and looked out at the garden. Anne walked slowly to the",
     " window"),
]
PAIR_NAMES = [" Darcy", " Bingley", " Elton", " Knightley", " Wickham", " Collins", " Elliot",
              " Crawford", " Weston", " Bennet", " Willoughby", " Ferrars", " Tilney", " Bertram"]
# Pairs that differ in one token, where the answer is the model's own top token on each side.
PAIR_CANDIDATES = [("It was an", "It was a"), ("He was", "They were"), ("Mr. Darcy and Miss", "Mr. Darcy and Mrs"),
                   ("She could not", "She could never"), ("I am sure", "I was sure"),
                   ("Sir Thomas and Lady", "Sir Thomas and Mr"), ("\"My dear", "\"Her dear")]
PAIR_TEMPLATES = [
    "When Mr.{a} came into the room, Emma looked at Mr.",
    "Mr.{a} was at the door, and she said to Mr.",
    "Mr.{a} came in. Then Mr.",
    "She had not seen Mr.{a} since the ball; but Mr.",
]


def log(msg=""):
    print(msg, flush=True)


# -- losses ---------------------------------------------------------------------------------------
def reload(out):
    """The saved model, loaded back by transformers (F16 values widened to float32)."""
    import torch
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(str(out), dtype=torch.float32,
                                           attn_implementation="eager").eval()


def full_losses(hf, wins, unseen, batch=2):
    """Mean next-token loss (nats/token) of the full-vocabulary model over windows, and the mean
    probability all never-seen tokens get together at each position."""
    import torch
    total, mass, count = 0.0, 0.0, 0
    unseen = torch.from_numpy(unseen)
    with torch.no_grad():
        for i in range(0, len(wins), batch):
            x = torch.from_numpy(np.ascontiguousarray(wins[i:i + batch]))
            logp = torch.log_softmax(hf(input_ids=x).logits[:, :-1].double(), -1)   # [b, T-1, V]
            total += -logp.gather(-1, x[:, 1:, None]).sum().item()
            mass += logp[..., unseen].exp().sum(-1).sum().item() if len(unseen) else 0.0
            count += x.size(0) * (x.size(1) - 1)
    return total / count, mass / count


def unigram_loss(train_ids, heldout_ids, vocab_size):
    """Held-out tokens under the train unigram distribution over all 50,257 tokens, add-one."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    return float(-np.log(counts / counts.sum())[heldout_ids].mean())


# -- attention --------------------------------------------------------------------------------------
def best(a):
    layer, head = np.unravel_index(np.argmax(a), a.shape)
    return {"head": f"{layer}.{head}", "layer": int(layer), "index": int(head),
            "value": round(float(a[layer, head]), 4)}


def mean_stat(traces, statistic):
    """[n_layer, n_head] mean over traces of statistic(pattern) -> [H] per layer."""
    return np.mean([[statistic(t.pattern(L)) for L in range(t.n_layer)] for t in traces], axis=0)


def induction_probes(g, vocab, pool, n=N_PROBES, length=PROBE_LENGTH):
    """TransformerLens's induction measurement on the demo: [<|endoftext|>, s, s] with s `length`
    distinct random tokens drawn from pool (GPT-2 ids: the tokens the training's random spans
    came from; tokens never seen in training share one embedding row and cannot be told apart),
    n seeds. -> (scores [L, H], loss first copy, loss second copy) - the losses over tokens
    2..length of each copy."""
    eot = vocab.vocab_size - 1
    scores, first, second = [], [], []
    for seed in range(n):
        seq = np.random.default_rng(seed).choice(pool, size=length, replace=False)
        ids = [eot, *seq.tolist(), *seq.tolist()]
        t = g.run(ids)
        scores.append([analysis.induction_score(t.pattern(L), length, start=1) for L in range(t.n_layer)])
        logp = t.logits - np.logaddexp.reduce(t.logits.astype(np.float64), axis=-1, keepdims=True)
        nll = -logp[np.arange(len(ids) - 1), ids[1:]]            # [T-1]: nll[p] predicts ids[p+1]
        first.append(nll[1:length].mean())                       # ids[2..length]
        second.append(nll[length + 1:2 * length].mean())         # ids[length+2..2·length]
    return np.mean(scores, axis=0), float(np.mean(first)), float(np.mean(second))


def long_window_sink(g, held_ids, head, n=LONG_WINDOWS):
    """On n held-out windows of the full context: every head's mean weight on position 0, and the
    named head's by query position (1-15, 16-63, 64-T)."""
    T = g.config.n_positions
    wins = tdm.windows(held_ids, T)
    wins = wins[np.linspace(0, len(wins) - 1, min(n, len(wins))).astype(int)]
    traces = [g.run(w.tolist()) for w in wins]
    sink = mean_stat(traces, analysis.sink_mass)
    L, H = head
    per_query = np.mean([analysis.sink_per_query(t.pattern(L))[H] for t in traces], axis=0)   # [T-1]
    bands = {"queries 1-15": per_query[:15], "queries 16-63": per_query[15:63],
             f"queries 64-{T - 1}": per_query[63:]}
    return sink, {k: round(float(v.mean()), 4) for k, v in bands.items()}, len(wins)


def head_types(g, traces, induction):
    """Every head's type on each trace (gpt2np.analysis.findings.head_table, the types of gpt2np.analysis),
    its most frequent type, and the share of traces where some layer has >= 3 distinct types.
    -> (types [n_layer][n_head], share)"""
    from collections import Counter
    tables = [findings.head_table(g, t, induction=induction) for t in traces]
    n_layer, n_head = g.config.n_layer, g.config.n_head
    types = [[Counter(t[L * n_head + h]["type"] for t in tables).most_common(1)[0][0]
              for h in range(n_head)] for L in range(n_layer)]
    three = [max(len({r["type"] for r in t if r["layer"] == L}) for L in range(n_layer)) >= 3
             for t in tables]
    return types, float(np.mean(three))


# -- examples ---------------------------------------------------------------------------------------
def single(g, token):
    ids = g.encode(token)
    return ids[0] if len(ids) == 1 else None


def choose_pair(g):
    """The minimal pair (equal token counts) with the largest margin on both sides: names to copy
    (an induction head's job), else pairs whose answers are the model's own top tokens."""
    found = []
    for template in PAIR_TEMPLATES:
        for a in PAIR_NAMES:
            for b in PAIR_NAMES:
                ia, ib = single(g, a), single(g, b)
                if a == b or ia is None or ib is None:
                    continue
                clean, corrupted = template.format(a=a), template.format(a=b)
                if len(g.encode(clean)) != len(g.encode(corrupted)):
                    continue
                lc, lx = g.run(clean).logits[-1], g.run(corrupted).logits[-1]
                margin_clean, margin_corrupted = float(lc[ia] - lc[ib]), float(lx[ib] - lx[ia])
                found.append((min(margin_clean, margin_corrupted), clean, corrupted, a, b,
                              margin_clean, margin_corrupted))
    for clean, corrupted in PAIR_CANDIDATES:          # the model's own top tokens on each side
        ic, ix = g.encode(clean), g.encode(corrupted)
        if len(ic) != len(ix):
            continue
        lc, lx = g.run(ic).logits[-1], g.run(ix).logits[-1]
        ia, ib = int(np.argmax(lc)), int(np.argmax(lx))
        if ia == ib:
            continue
        a, b = g.token_strings([ia])[0], g.token_strings([ib])[0]
        if single(g, a) != ia or single(g, b) != ib or not (a[1:].isalpha() and b[1:].isalpha()):
            continue                                 # two words, each one token
        margin_clean, margin_corrupted = float(lc[ia] - lc[ib]), float(lx[ib] - lx[ia])
        found.append((min(margin_clean, margin_corrupted), clean, corrupted, a, b,
                      margin_clean, margin_corrupted))
    m, clean, corrupted, a, b, mc, mx = max(found)
    return ({"clean": clean, "corrupted": corrupted, "answer": a, "versus": b},
            {"logit_difference_clean": round(mc, 3), "logit_difference_corrupted": round(mx, 3),
             "margin": round(m, 3), "candidates_tried": len(found)})


def choose_follow(g):
    """The candidate prompt whose expected next token the model gives the highest probability,
    among those where that token is the model's first choice (if none is, among all)."""
    scored = []
    for text, token in FOLLOW_CANDIDATES:
        i = single(g, token)
        if i is None:
            continue
        p = analysis.probabilities(g.run(text).logits[-1])
        scored.append((int(np.argmax(p)) == i, float(p[i]), text, token))
    top1, p, text, token = max(scored)
    return {"text": text, "token": token}, {"p": round(p, 4), "top1": top1,
                                            "candidates_tried": len(scored)}


def choose_ablate(g, follow, k=3):
    """The heads whose zero-ablation (one at a time) lowers the follow token's probability most."""
    deltas = {}
    for L in range(g.config.n_layer):
        for h in range(g.config.n_head):
            r = interventions.ablate(g, follow["text"], f"{L}.{h}", token=follow["token"])
            deltas[f"{L}.{h}"] = r["token"]["delta"]
    worst = [name for name in sorted(deltas, key=lambda name: deltas[name]) if deltas[name] < 0][:k]
    return worst, {name: round(deltas[name], 4) for name in worst}


def choose_sentences(g, held_sentences, held_texts, long_tokens=(120, 240)):
    """3-5 labelled sentences that exercise the heads, each within the context: one of them a
    held-out paragraph long enough to show what heads do away from the start."""
    austen = next(s for s in held_sentences if len(g.encode(s)) >= 20)
    paragraphs = [" ".join(p.split()) for t in held_texts for p in t.split("\n\n")]
    long = next(p for p in paragraphs
                if long_tokens[0] <= len(g.encode(p)) <= min(long_tokens[1], g.config.n_positions))
    return [{"label": "the original demo's sentence", "text": ORIGINAL_SENTENCE},
            {"label": "a held-out Austen sentence", "text": austen},
            {"label": "a held-out Austen paragraph (long)", "text": long},
            {"label": "a sentence repeated (induction)", "text": INDUCTION_TEXT},
            {"label": "two names (IOI)", "text": IOI_SENTENCE}]


# -- the card ---------------------------------------------------------------------------------------
def repeats_text(hp):
    """The repeats put into each step's windows, in words."""
    long_part = (f"in {hp['long_random']} long window(s) a random-token span of 8 to "
                 f"{hp['long'][0] // hp.get('long_span', 4)} tokens is repeated right after itself")
    if hp.get("repeat_spans", "half") == "half":
        return (f"in {hp['repeat_text']} short windows the second half repeats the first (text); in "
                f"{hp['repeat_random']} more a half of random training tokens is repeated; {long_part}; "
                "the first copy of random tokens is not scored")
    return (f"in {hp['repeat_text']} short windows a span of the text (8 to {hp['short'][0] // 2} "
            f"tokens, at a random place) is repeated right after itself; in {hp['repeat_random']} more "
            f"a span of random tokens among the {hp['random_pool']:,} most frequent is; {long_part}. "
            "Lengths and places are random, so the earlier copy is a different distance back in "
            "every window and only attention by content can find it; the first copy of random "
            "tokens is not scored" + (f"; the first {hp['synthetic_steps']} steps had a repeated "
                                      "random span in every window" if hp.get("synthetic_steps") else "")
            + (f"; {hp['sentence_starts']}% of the windows begin at a sentence or paragraph start"
               if hp.get("sentence_starts") else ""))


def earlier_phases(settings):
    """The runs this one started from (--init-from, earliest first): each one's settings, steps
    and times; [] for a run from scratch."""
    parent = settings.get("init_from")
    if not parent:
        return []
    rec, ps = parent["record"], parent["settings"]
    return earlier_phases(ps) + [{
        "steps": rec["step"], "cpu_time_s": rec["cpu_s"], "wall_time_s": rec["wall_s"],
        "sittings": rec["sittings"], "lr": ps["hp"]["lr"], "steps_planned": ps["hp"]["steps"],
        "random_pool": ps["hp"].get("random_pool"), "synthetic_steps": ps["hp"].get("synthetic_steps", 0),
        "repeats": repeats_text(ps["hp"]), "weight_decay": ps["hp"]["weight_decay"],
        "probes": rec.get("probes", []),
        "note": "the next phase started from this run's weights at this step, with a new AdamW "
                "state and learning-rate schedule and its own settings"}]


def finish(model, vocab, tok, out, *, args, shape, hp, record, corpus, train_ids, held_ids, settings,
           held_texts, sentences, n_params, t_start):
    import safetensors
    import tokenizers
    import torch
    import transformers

    import gpt2np
    out = Path(out)
    keys = tdm.save_model(model, vocab, out)
    hf = reload(out)
    g = gpt2np.load(str(out))
    log(f"\nevaluating the saved file {out / 'model.safetensors'} ...")

    unseen = np.setdiff1d(np.arange(vocab.vocab_size), vocab.seen)
    held_wins = tdm.windows(held_ids, shape["n_positions"])
    rng = np.random.default_rng(args.seed)
    train_wins = tdm.windows(train_ids, shape["n_positions"])
    train_wins = train_wins[np.sort(rng.choice(len(train_wins), min(len(train_wins), len(held_wins)),
                                               replace=False))]
    held_loss, held_unseen = full_losses(hf, held_wins, unseen)
    train_loss, _ = full_losses(hf, train_wins, unseen)
    losses = {"train": train_loss, "heldout": held_loss,
              "unigram_baseline": unigram_loss(train_ids, held_ids, vocab.vocab_size)}
    losses = {k: round(v, 4) for k, v in losses.items()}
    log(f"loss (nats/token): {losses}; never-seen tokens together: {held_unseen:.2e} of the "
        "probability on held-out text")

    traces = [g.run(s) for s in sentences]
    prev = mean_stat(traces, analysis.previous_token_mass)
    first = mean_stat(traces, analysis.sink_mass)
    best_prev, best_first = best(prev), best(first)
    pool = vocab.seen[tdm.random_pool(vocab, hp)]                  # GPT-2 ids
    induction, loss_first, loss_second = induction_probes(g, vocab, pool)
    best_ind = best(induction)
    # an induction head with no earlier copy to find may rest on position 0: the strongest sink
    # among the heads that are not induction heads, said beside the best
    not_induction = np.where(induction < analysis.THRESHOLDS["induction"], first, -1.0)
    any_seen = np.setdiff1d(vocab.seen, [vocab.vocab_size - 1])
    induction_any, loss_first_any, loss_second_any = induction_probes(g, vocab, any_seen)
    # the viewer's own probe as it runs on the bundled demo (findings.distinguishable: the card's pool)
    viewer_induction = findings.induction_scores(
        g, pool=np.intersect1d(analysis.distinguishable_ids(g.params["wte.weight"]), pool))[0]
    long_sink, bands, n_long = long_window_sink(g, held_ids, (best_first["layer"], best_first["index"]))
    types, share_three = head_types(g, traces, induction)
    most = max(range(len(types)), key=lambda L: (len(set(types[L])), -L))
    log(f"previous-token {best_prev}, position 0 {best_first}, induction {best_ind} "
        f"(loss first copy {loss_first:.3f}, second {loss_second:.3f}); "
        f"long windows: head {best_first['head']} {long_sink[best_first['layer'], best_first['index']]:.3f} "
        f"{bands}; types per layer {types}")

    sentence_examples = choose_sentences(g, sentences, held_texts)
    pair, pair_measured = choose_pair(g)
    follow, follow_measured = choose_follow(g)
    ablate, ablate_deltas = choose_ablate(g, follow)
    examples = {"sentences": sentence_examples, "pair": pair, "follow": follow, "ablate": ablate,
                "induction_text": INDUCTION_TEXT}
    log(f"examples: {json.dumps(examples)}")
    text = tdm_sample(hf, tok, "It is a truth universally acknowledged", seed=args.seed)
    cmd = " ".join(["python", "scripts/train_demo_model.py", *(sys.argv[1:])])
    t = record
    phases = earlier_phases(settings)
    card = {
        "what": "gpt2np demo model - NOT GPT-2: a small GPT-2-shaped model trained from scratch",
        "command": cmd,
        "corpus": corpus,
        "tokenizer": {"type": "GPT-2's own byte-level BPE (tokenizer.json as in "
                              "openai-community/gpt2; MIT, OpenAI)",
                      "vocab_size": vocab.vocab_size, "endoftext_id": vocab.vocab_size - 1,
                      "tokens_in_training_text": vocab.n_seen, "tokens_never_seen": vocab.n_unseen},
        "model": dict(shape, activation_function="gelu_new", dropout=0.0, tied_lm_head=True),
        "parameters": int(sum(v.size for v in tdm.full_vocab_state(model, vocab).values())),
        "parameters_while_training": n_params,
        "unseen_tokens": {
            "rows": f"the {vocab.n_unseen:,} tokens that never occur in the training chapters "
                    "all hold one shared embedding row, trained as a single softmax entry whose "
                    f"logit got + log({vocab.n_unseen}) (so the training loss is the full "
                    "model's loss)",
            "effect": "every never-seen token gets the same logit and the same probability, "
                      "1/{n} of the probability the shared entry was trained to take; as inputs "
                      "they are indistinguishable".replace("{n}", f"{vocab.n_unseen:,}"),
            "heldout_probability_all_unseen_together": float(f"{held_unseen:.3g}")},
        "weights": {"file": "model.safetensors", "dtype": "F16", "keys": len(keys),
                    "bytes": (out / "model.safetensors").stat().st_size,
                    "layout": "official GPT-2: no transformer. prefix, no lm_head.weight, "
                              "Conv1D weights [in, out]"},
        "training": {
            "seed": args.seed, "steps": t["step"], "steps_planned": hp["steps"],
            "lr_at_last_step": round(tdm.lr_at(t["step"] - 1, hp), 6),
            "tokens_per_step": hp["short"][0] * hp["short"][1] + hp["long"][0] * hp["long"][1],
            "windows": f"{hp['short'][1]} windows of {hp['short'][0]} + {hp['long'][1]} windows "
                       f"of {hp['long'][0]} per step",
            "repeats": repeats_text(hp),
            "why_repeats": "induction heads form much faster when batches contain sequences that "
                           "repeat; the demo's induction head was trained with them on purpose",
            "softmax": f"restricted to the {vocab.n_seen:,} tokens of the training text plus one "
                       "shared row for the rest (see unseen_tokens)",
            "optimizer": "AdamW", "lr": hp["lr"], "min_lr": hp["min_lr"],
            "lr_schedule": f"linear warm-up {hp['warmup']} steps, cosine decay to min_lr",
            "weight_decay": hp["weight_decay"], "betas": list(hp["betas"]),
            "grad_clip": hp["grad_clip"],
            "weight_decay_on": "weight matrices (not wte, wpe, biases, LayerNorm)",
            "wpe_init": "sinusoids from pi to one cycle per context, std 0.08",
            "tokens_seen": t["step"] * (hp["short"][0] * hp["short"][1] + hp["long"][0] * hp["long"][1]),
            "plan_changes": t.get("plan_changes", []),
            "wall_time_s": t["wall_s"], "cpu_time_s": t["cpu_s"], "sittings": t["sittings"],
            "earlier_phases": phases,
            "cpu_time_s_all_phases": round(t["cpu_s"] + sum(p["cpu_time_s"] for p in phases), 1),
            "threads": args.threads,
            "machine": "2 shared CPU cores, nice 19, other work running beside it",
            "probes": t["probes"],
        },
        "losses": dict(losses, unit="nats/token",
                       heldout_windows=len(held_wins), window=shape["n_positions"],
                       note="the saved F16 file with the full 50,257-token softmax; train: a sample "
                            "of train windows as many as the held-out ones; unigram: train "
                            "frequencies over all 50,257 tokens, add-one"),
        "attention": {
            "measured_on": f"{len(sentences)} held-out sentences (12-60 tokens each, the first "
                           "token at position 0), gpt2np on the saved file, mean over query "
                           "positions i >= 1",
            "best_prev_token": best_prev, "best_first_position": best_first,
            "best_first_position_not_induction": dict(best(not_induction), note=(
                "the strongest head on position 0 among those whose induction score is below "
                f"{analysis.THRESHOLDS['induction']} (gpt2np's induction type)")),
            "targets": tdm.TARGETS,
            "prev_token": np.round(prev, 4).tolist(), "first_position": np.round(first, 4).tolist(),
            "induction": dict(best_ind, best_head=best_ind["head"], best_value=best_ind["value"],
                              measured_on=f"{N_PROBES} sequences: <|endoftext|> then "
                                          f"{PROBE_LENGTH} distinct random tokens among the "
                                          f"{len(pool):,} most frequent of the training text "
                                          "(the pool training's random spans came from), twice "
                                          "(TransformerLens's induction score: mean weight from "
                                          "each token of the second copy on the token after its "
                                          "first occurrence)",
                              per_head=np.round(induction, 4).tolist(),
                              loss_first_copy=round(loss_first, 3),
                              loss_second_copy=round(loss_second, 3),
                              random_pool=len(pool), random_pool_ids=pool.tolist(),
                              any_seen_token=dict(best(induction_any),
                                                  per_head=np.round(induction_any, 4).tolist(),
                                                  loss_first_copy=round(loss_first_any, 3),
                                                  loss_second_copy=round(loss_second_any, 3),
                                                  measured_on=(
                                  f"the same, with random tokens among all {len(any_seen):,} "
                                  "tokens of the training text (rare ones included)")),
                              findings_probe=dict(best(viewer_induction), measured_on=(
                                  "gpt2np findings' own probe, as the viewer runs it on the bundled demo: 30 "
                                  "tokens of the pool above, seed 0, twice")),
                              ),
            "long_windows": {
                "measured_on": f"{n_long} held-out windows of {shape['n_positions']} tokens "
                               "(as corpus mode sees text)",
                "head": best_first["head"],
                "value": round(float(long_sink[best_first['layer'], best_first['index']]), 4),
                "by_query_position": bands,
                "best": best(long_sink),
                "first_position": np.round(long_sink, 4).tolist()},
            "head_types": {"measured_on": "each head's most frequent type over the held-out "
                                          "sentences (gpt2np.analysis.findings.head_table with the "
                                          "induction scores above)",
                           "by_layer": types, "layer_with_most_types": most,
                           "types_in_that_layer": sorted(set(types[most])),
                           "sentences_with_a_layer_of_3_types": round(share_three, 3)},
        },
        "examples": examples,
        "examples_measured": {"pair": pair_measured, "follow": follow_measured,
                              "ablate_delta_p": ablate_deltas},
        "sample": text,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "safetensors": safetensors.__version__, "numpy": np.__version__},
    }
    card["targets_met"] = {
        "prev_token_head": best_prev["value"] >= tdm.TARGETS["prev_token"],
        "first_position_head": best_first["value"] >= tdm.TARGETS["first_position"],
        "induction_head": best_ind["value"] >= tdm.TARGETS["induction"],
        "second_copy_predicted_better": loss_second < loss_first,
        "three_head_types_in_a_layer": len(set(types[most])) >= 3,
        "heldout_below_unigram_by_1_nat": losses["heldout"] < losses["unigram_baseline"] - 1.0,
        "weights_at_most_20_MB": card["weights"]["bytes"] <= tdm.MAX_WEIGHTS}
    card["total_wall_time_s_this_sitting"] = round(time.time() - t_start, 1)
    (out / "training.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    write_model_card(out, card)
    for name, good in card["targets_met"].items():
        log(f"  {'ok  ' if good else 'MISS'} {name}")
    log("wrote " + ", ".join(f"{f.name} {f.stat().st_size / 1e6:.2f} MB" for f in sorted(out.iterdir())))
    return card


def tdm_sample(hf, tok, prompt, n_tokens=40, seed=0, top_k=20):
    """A short top-k sample, for the card."""
    import torch
    torch.manual_seed(seed)
    ids = torch.tensor([tok.encode(prompt).ids])
    with torch.no_grad():
        for _ in range(n_tokens):
            logits = hf(input_ids=ids[:, -256:]).logits[0, -1]
            v, i = torch.topk(logits, top_k)
            ids = torch.cat([ids, i[torch.multinomial(torch.softmax(v, -1), 1)].view(1, 1)], 1)
    return tok.decode(ids[0].tolist())


def phases_note(t):
    """The earlier phases of a run started with --init-from, in a few words ('' for none)."""
    phases = t.get("earlier_phases") or []
    if not phases:
        return ""
    before = "; ".join(f"{p['steps']:,} steps, {p['cpu_time_s'] / 60:.0f} min CPU" for p in phases)
    return (f"; started from the weights of an earlier run ({before}): "
            f"{t['cpu_time_s_all_phases'] / 60:.0f} min CPU in all")


def sink_note(a):
    """When the best head on position 0 is the induction head: the strongest other one, in words."""
    other = a.get("best_first_position_not_induction")
    if not other or other["head"] == a["best_first_position"]["head"]:
        return ""
    return (f" (the induction head: where nothing repeats it rests on position 0); the strongest "
            f"other head: {other['head']} {other['value']:.2f}")


def write_model_card(out, card):
    L, m, c, t, a = card["losses"], card["model"], card["corpus"], card["training"], card["attention"]
    ind, lw, ht = a["induction"], a["long_windows"], a["head_types"]
    mb = card["weights"]["bytes"] / 1e6
    books = ", ".join(c.get("books", []))
    sentences = f"{a['measured_on'].split(' (')[0]}, each from its first word"
    rows = [
        ("previous-token", a["best_prev_token"]["head"], f"{a['best_prev_token']['value']:.2f} of its attention on the token before", sentences),  # noqa: E501
        ("induction", ind["head"], f"induction score {ind['value']:.2f}; loss {ind['loss_first_copy']:.2f} on the first copy, {ind['loss_second_copy']:.2f} on the second", f"random tokens among the {ind['random_pool']:,} most frequent of the training text, shown twice (10 sequences of 50); among all its tokens: {ind['any_seen_token']['head']} {ind['any_seen_token']['value']:.2f}"),  # noqa: E501
        ("sink (position 0), sentence starts", a["best_first_position"]["head"], f"{a['best_first_position']['value']:.2f} of its attention on position 0" + sink_note(a), sentences),  # noqa: E501
        ("sink over long windows", lw["head"], f"{lw['value']:.2f} on position 0 (" + ", ".join(f"{k}: {v:.2f}" for k, v in lw["by_query_position"].items()) + f"); strongest there {lw['best']['head']} {lw['best']['value']:.2f}", lw["measured_on"]),  # noqa: E501
        (f"head types in layer {ht['layer_with_most_types']}", "-", ", ".join(ht["types_in_that_layer"]), f"held-out sentences ({ht['sentences_with_a_layer_of_3_types']:.0%} of them have a layer with 3 or more types)"),  # noqa: E501
        ("held-out loss", "-", f"{L['heldout']:.3f} nats/token against {L['unigram_baseline']:.3f} for a unigram model (train {L['train']:.3f})", f"{L['heldout_windows']} held-out windows of {L['window']} tokens"),  # noqa: E501
    ]
    table = "\n".join(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows)
    text = f"""# gpt2np demo model — not GPT-2

A small GPT-2-shaped language model bundled with gpt2np so that everything works without a
download. It has GPT-2's architecture and GPT-2's own tokenizer (same code path, same file layout
as the official `openai-community/gpt2` checkpoint, same tokens for any sentence) but about
{card['parameters'] / 1e6:.1f} M parameters instead of 124 M, most of them the embedding, and it knows only
Jane Austen: expect Regency-flavoured, often ungrammatical text. Use it to see how a transformer
works and what attention heads learn, not for its answers.

| | |
|---|---|
| architecture | GPT-2: {m['n_layer']} layers, {m['n_head']} heads, n_embd {m['n_embd']}, context {m['n_positions']}, gelu_new, tied LM head |
| tokenizer | GPT-2's byte-level BPE, {card['tokenizer']['vocab_size']:,} tokens, `<|endoftext|>` = {card['tokenizer']['endoftext_id']}: `tokenizer.json` is OpenAI's GPT-2 tokenizer (MIT licence, Copyright (c) 2019 OpenAI) |
| weights | `model.safetensors`, F16, {mb:.1f} MB, official GPT-2 key names (no `transformer.` prefix, no `lm_head.weight`) |
| never-seen tokens | {card['tokenizer']['tokens_never_seen']:,} of the {card['tokenizer']['vocab_size']:,} tokens never occur in the training text; their rows all hold one shared row, so they get one and the same (small) probability: together {card['unseen_tokens']['heldout_probability_all_unseen_together']:.1e} on held-out text |
| corpus | {c.get('name', '')} ({books}) |
| corpus source | `{c.get('package', '')}` {c.get('package_version', '')} ({c.get('package_license', '')}) |
| corpus licence | {c.get('text_license', '')} |
| training | {t['steps']:,} steps x {t['tokens_per_step']:,} tokens ({t['windows']}) = {t['tokens_seen']:,} tokens, seed {t['seed']}; {t['wall_time_s'] / 60:.0f} min wall, {t['cpu_time_s'] / 60:.0f} min CPU, {t['threads']} thread, {t['sittings']} sitting(s), 2 shared cores{phases_note(t)} |
| repeats on purpose | {t['repeats']}: induction heads form much faster that way |

## What it learned (measured on held-out text, from `training.json`)

| mechanism | head | value | held-out set |
|---|---|---|---|
{table}

Targets not met (`targets_met` in `training.json`): {', '.join(k for k, v in card['targets_met'].items() if not v) or 'none'}.

Sample (top-k 20): *{card['sample']}*

Rebuild it with `python scripts/train_demo_model.py` (see `training.json` for every setting and
measurement, and `docs/demo-model.md`). Weights and this card: same licence as gpt2np (MIT); the
training text is in the public domain; the tokenizer is OpenAI's (MIT).
"""  # noqa: E501 - a markdown table row is one line of the card
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    sys.exit("run scripts/train_demo_model.py (it calls this module at the end)")
