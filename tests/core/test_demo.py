"""The bundled demo model (gpt2np/demo): present, small, labelled, equal to transformers, and
showing the learned attention its model card (training.json) reports."""

import os
import subprocess
import sys

import numpy as np
from demofacts import CARD
from reference import check, hf_model

import gpt2np
from gpt2np import analysis
from gpt2np.files.hub import DEMO_DIR

# Public-domain sentences in Austen's style (not from the training split's wording).
SENTENCES = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Mr. Darcy walked towards the window, "
    "and Elizabeth could not help observing how frequently his eyes were fixed on her.",
    "The family of Dashwood had long been settled in Sussex, and their estate was large.",
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, "
    "seemed to unite some of the best blessings of existence.",
    "Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who, for his own amusement, "
    "never took up any book but the Baronetage.",
    "No one who had ever seen Catherine Morland in her infancy would have supposed her born to be an heroine.",
    "She was convinced that her sister had been mistaken, and that the letter must have been written by another hand.",
    "Her mother was a woman of useful plain sense, with a good temper, and, what is more remarkable, "
    "with a good constitution.",
    "\"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard that Netherfield Park is let at last?\"",
    "They walked on in silence for some time, till Anne, looking up, "
    "saw that the captain had stopped and was watching her.",
]


def test_files_and_size():
    names = {p.name for p in DEMO_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json", "README.md"} <= names
    total = sum(p.stat().st_size for p in DEMO_DIR.iterdir())
    assert total <= 10 * 1024 * 1024, f"{total / 2**20:.1f} MiB"


def test_labelled_not_gpt2(demo):
    assert demo.info.name == "demo" and "not GPT-2" in demo.info.origin
    r = subprocess.run([sys.executable, "-m", "gpt2np", "--model", "demo", "Mr. Darcy and Miss"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0 and "not GPT-2" in r.stdout.splitlines()[0]


def test_card_losses():
    losses = CARD["losses"]
    assert losses["heldout"] < losses["unigram_baseline"] - 1.0     # well below the unigram model
    assert CARD["parameters"] == gpt2np.load("demo").info.n_params


def test_parity_with_transformers(demo, parity_record):
    """The F16 demo file, upcast to float32 by both, gives the same numbers, every named tensor."""
    hf = hf_model(DEMO_DIR)
    for text in SENTENCES[:4]:
        check(demo, hf, demo.encode(text), parity_record)


def head_means(demo, statistic):
    """[n_layer, n_head] mean of a statistic over SENTENCES."""
    traces = [demo.run(s) for s in SENTENCES]
    return np.mean([[statistic(t.pattern(layer)) for layer in range(t.n_layer)] for t in traces], axis=0)


def test_learned_attention_matches_the_card(demo):
    """Re-measured here on other sentences, the head the card names for each statistic is among
    the three strongest here, and the best value is within 0.1 of the card's."""
    for key, statistic in (("prev_token", analysis.previous_token_mass),
                           ("first_position", analysis.sink_mass)):
        ours = head_means(demo, statistic)                       # [n_layer, n_head]
        best = CARD["attention"][f"best_{key}"]
        top3 = [divmod(int(i), ours.shape[1]) for i in np.argsort(-ours.ravel())[:3]]
        print(f"\ndemo {key}: strongest heads here {top3} (best {ours.max():.3f}); "
              f"card: {best['head']} {best['value']:.3f}, here {ours[best['layer'], best['index']]:.3f}")
        assert (best["layer"], best["index"]) in top3, key
        assert abs(ours.max() - best["value"]) < 0.1, key
        assert abs(ours[best["layer"], best["index"]] - best["value"]) < 0.1, key      # that head's own value
