"""What the tests know of the bundled demo model, read from its own files at test time: its shape
(config.json), the heads its training record names (training.json), and inputs chosen with its
tokenizer. Nothing here is written down from today's demo, so that retraining it breaks no test."""

import json

import numpy as np

from gpt2np.files.hub import DEMO_DIR

CARD = json.loads((DEMO_DIR / "training.json").read_text())
CONFIG = json.loads((DEMO_DIR / "config.json").read_text())
EXAMPLES = CARD["examples"]                # the model's own example sentences, pair, follow, ablate


def card_head(key):
    """(layer, index) of the head the card names for `key`: "best_prev_token",
    "best_first_position" or "induction"."""
    best = CARD["attention"][key]
    return best["layer"], best["index"]


def head_name(layer, index):
    return f"{layer}.{index}"


def is_word(token):
    """A token that is a word of two letters or more after a space: ' Word'."""
    return token[:1] == " " and len(token) > 2 and token[1:].isalpha()


def is_name(token):
    """A token that looks like a proper name: a capitalised word after a space."""
    return is_word(token) and token[1].isupper()


def multi_token_word(model, text):
    """A word of `text`, with its leading space, that the model's tokenizer splits into more than
    one token."""
    for word in text.split()[1:]:
        word = " " + word.strip(".,;:!?\"'")
        if len(model.encode(word)) > 1:
            return word
    raise AssertionError(f"every word of {text!r} is one token for {model.info.name}")


def single_token(model, text):
    """A word token of `text` (position ≥ 1) whose own string encodes to exactly its id:
    (string, id)."""
    ids = model.encode(text)
    for k in range(1, len(ids)):
        token = model.tokenizer.token_string(ids[k])
        if is_word(token) and model.encode(token) == [ids[k]]:
            return token, ids[k]
    raise AssertionError(f"no token of {text!r} encodes to itself alone")


def one_token_swap(model, text):
    """(text B, position k): B has as many tokens as `text` and differs from it at position k only.
    k is the first word token of `text` after position 0; it is replaced by the word token the
    model itself finds likeliest there (capitalised as the original is, and whose text
    round-trips through the tokenizer)."""
    ids = model.encode(text)
    logits = model.run(ids).logits
    for k in range(1, len(ids)):
        token = model.tokenizer.token_string(ids[k])
        if not is_word(token):
            continue
        for t in map(int, np.argsort(-logits[k - 1], kind="stable")):
            other = model.tokenizer.token_string(t)
            if t == ids[k] or not is_word(other) or other[1].isupper() != token[1].isupper():
                continue
            swapped = ids[:k] + [t] + ids[k + 1:]
            b = model.tokenizer.decode(swapped)
            if model.encode(b) == swapped:
                return b, k
    raise AssertionError(f"no one-token variant of {text!r} found")


def distinct_token_ids(model):
    """Ids whose embedding rows the model can tell apart: every token except those sharing the
    row that the most tokens hold (the demo's never-seen tokens share one row, see the card's
    "unseen_tokens"). For a model with all rows distinct: every id."""
    rows, inverse, counts = np.unique(model.params["wte.weight"], axis=0, return_inverse=True,
                                      return_counts=True)
    shared = int(np.argmax(counts))
    ids = np.arange(len(inverse))
    return ids if counts[shared] == 1 else ids[inverse.ravel() != shared]
