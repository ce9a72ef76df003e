"""The loaded model's own examples: sentences to start from, a minimal pair, a token to follow,
heads to ablate and a repeated text — one home for every example the viewer, the command line
and the docs show, so that each one runs on the model in use.

    examples_for(model)   -> {"source", "sentences": [{"label", "text"}], "pair": {"clean",
                              "corrupted", "answer", "versus"} | None, "follow": {"text", "token"}
                              | None, "ablate": ["L.H", ...], "induction_text": str | None,
                              "dropped": [why each left-out example does not fit]}
    (interventions.measure_examples(model) measures why they are good examples: pair margins,
    the follow token's probability, what ablating the heads does to it)

Where they come from:
- GPT-2 small (`gpt2`, `openai-community/gpt2`): the original demo's sentences (gpt2np.analysis.findings),
  the indirect-object pair of Wang et al. 2022 and the published head roles (findings.PUBLISHED_ROLES).
- The bundled demo model: its card, `gpt2np/demo/training.json`, key "examples" (written by the
  script that trains it: Austen sentences chosen and measured on that model).
- Any other model: GPT-2 small's, each kept only if it fits this model (its context, its
  tokenizer: the pair's sides the same number of tokens, answer, versus and the followed token
  one token each; the heads only for GPT-2 small's shape, where those roles were published).
Every example, whatever its source, is checked on the model here: one that does not fit is left
out and `dropped` says why — an example never fails on the model it is shown for.
"""

import json

from ..files.hub import DEMO_DIR
from ..heads import parse_heads
from .findings import (
    COREF_SENTENCE,
    FLIP_SENTENCE,
    IOI_CORRUPTED,
    IOI_NAMES,
    IOI_SENTENCE,
    PUBLISHED_ROLES,
    is_gpt2_small,
)

GPT2_NAMES = ("gpt2", "openai-community/gpt2")
DEMO_CARD = DEMO_DIR / "training.json"

FOLLOW_TEXT, FOLLOW_TOKEN = "The quick brown fox jumps over the lazy", " dog"
INDUCTION_TEXT = ("kite orbit lemon velvet seven harbor quartz fig. "
                  "kite orbit lemon velvet seven harbor quartz fig.")
LONG_PARAGRAPH = (
    "The lighthouse keeper had kept the same routine for thirty years. Every evening she climbed the "
    "hundred and twelve steps, wound the clockwork that turned the lens, trimmed the wick and wrote "
    "the weather in a leather book. Ships passed in the night without knowing her name, but they knew "
    "her light: two long flashes and a short one, every twenty seconds, as steady as a heartbeat. When "
    "the harbour board decided to replace the lamp with an automatic beacon, they sent a young engineer "
    "to study the old machinery. He expected rust and guesswork. Instead he found notebooks full of "
    "careful drawings, each gear measured, each repair dated, and a small note on the last page: the "
    "light does not belong to the keeper; the keeper belongs to the light. He stayed for a week, then "
    "a month, and when the beacon was finally installed he asked to keep the notebooks. They are still "
    "on his desk, next to a photograph of the tower at dusk, its beam crossing the water.")


def gpt2_examples():
    """GPT-2 small's examples: the original demo's sentences, Wang et al.'s indirect-object pair,
    the first published previous-token and induction heads."""
    role_heads = {role: heads for role, heads, _, _ in PUBLISHED_ROLES}
    return {
        "sentences": [
            {"label": "Coreference: … too big.", "text": COREF_SENTENCE},
            {"label": "Coreference: … too small.", "text": FLIP_SENTENCE},
            {"label": "Indirect object: Mary and John", "text": IOI_SENTENCE},
            {"label": "Repeated sequence (induction)", "text": INDUCTION_TEXT},
            {"label": "Long paragraph", "text": LONG_PARAGRAPH},
        ],
        "pair": {"clean": IOI_SENTENCE, "corrupted": IOI_CORRUPTED,
                 "answer": " " + IOI_NAMES[0], "versus": " " + IOI_NAMES[1]},
        "follow": {"text": FOLLOW_TEXT, "token": FOLLOW_TOKEN},
        "ablate": [role_heads["previous-token"][0], role_heads["induction"][0]],
        "induction_text": INDUCTION_TEXT,
    }


def card_examples(path=DEMO_CARD):
    """The demo model's examples from its card (None when the card has none)."""
    try:
        return json.loads(path.read_text()).get("examples")
    except (OSError, ValueError):
        return None


def examples_for(model):
    """The examples that fit `model` (see the module's docstring), each checked on it."""
    name, kind = model.info.name, model.info.kind
    card = card_examples() if kind == "demo" else None
    if card is not None:
        source = "the demo model's card (gpt2np/demo/training.json)"
        examples = card
    elif name in GPT2_NAMES and is_gpt2_small(model.config):
        source = "GPT-2 small: the original demo's sentences and the published head roles"
        examples = gpt2_examples()
    else:
        source = "GPT-2 small's examples, kept where they fit this model"
        examples = gpt2_examples()
        if not is_gpt2_small(model.config):
            examples["ablate"] = []      # roles published for GPT-2 small's heads, not this shape's
    return {"source": source, **fitted(model, examples)}


# -- checking examples on a model ----------------------------------------------------------------
def n_tokens(model, text):
    """The token count of `text`, or why it cannot be run on `model` (a str)."""
    if model.tokenizer is None:
        return "the model has no tokenizer"
    if not isinstance(text, str) or not text:
        return "no text"
    n = len(model.encode(text))
    if n > model.config.n_positions:
        return f"{n} tokens, more than the context of {model.config.n_positions}"
    return n


def one_token(model, token):
    """None when `token` is exactly one token of the model, else why not."""
    if model.tokenizer is None:
        return "the model has no tokenizer"
    if not isinstance(token, str) or not token:
        return "no token"
    ids = model.encode(token)
    return None if len(ids) == 1 else f"{token!r} is {len(ids)} tokens"


def fitted(model, examples):
    """Keep the examples that run on `model`; say why each other one was left out."""
    dropped, out = [], {"sentences": [], "pair": None, "follow": None, "ablate": [],
                        "induction_text": None}
    for s in examples.get("sentences") or []:
        n = n_tokens(model, s.get("text"))
        if isinstance(n, str):
            dropped.append(f"sentence {s.get('label')!r}: {n}")
        else:
            out["sentences"].append({"label": s["label"], "text": s["text"]})
    pair = examples.get("pair")
    if pair:
        a, b = n_tokens(model, pair.get("clean")), n_tokens(model, pair.get("corrupted"))
        why = next((w for w in (a, b) if isinstance(w, str)), None)
        if why is None and a != b:
            why = f"its sides are {a} and {b} tokens"
        why = why or one_token(model, pair.get("answer")) or one_token(model, pair.get("versus"))
        if why is None and pair["answer"] == pair["versus"]:
            why = "answer and versus are the same token"
        if why:
            dropped.append(f"pair: {why}")
        else:
            out["pair"] = {k: pair[k] for k in ("clean", "corrupted", "answer", "versus")}
    follow = examples.get("follow")
    if follow:
        n = n_tokens(model, follow.get("text"))
        why = n if isinstance(n, str) else one_token(model, follow.get("token"))
        if why:
            dropped.append(f"follow: {why}")
        else:
            out["follow"] = {"text": follow["text"], "token": follow["token"]}
    try:
        out["ablate"] = [f"{L}.{H}" for L, H in parse_heads(examples.get("ablate") or [], model.config)] \
            if examples.get("ablate") else []
    except Exception as e:                      # a GPT2npError: a head the model does not have
        dropped.append(f"ablate: {e}")
    text = examples.get("induction_text")
    if text:
        n = n_tokens(model, text)
        if isinstance(n, str):
            dropped.append(f"induction text: {n}")
        else:
            out["induction_text"] = text
    return {**out, "dropped": dropped}


# -- hints: the examples in one-line suggestions -------------------------------------------------
def token_hint(model):
    """", e.g. ' Brandon'" — the model's own token to follow, for error messages ("" if none)."""
    try:
        follow = examples_for(model)["follow"]
    except Exception:                            # a hint never hides the error it decorates
        return ""
    return f", e.g. {follow['token']!r}" if follow else ""


def pair_hint(model):
    """"--token ' he' --versus ' she'" from the model's pair, or a generic form."""
    pair = examples_for(model)["pair"]
    if not pair:
        return "--token TOKEN --versus OTHER"
    return f"--token {pair['answer']!r} --versus {pair['versus']!r}"
