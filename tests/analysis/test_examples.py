"""gpt2np.analysis.examples: every model gets examples that run on it — GPT-2 small's from the original
demo's sentences and the published roles, the demo's from its card (read here, not written down),
any other model's derived and checked; the card's examples measured on the demo model."""

import dataclasses

import numpy as np
import pytest
from demofacts import CARD

import gpt2np
from gpt2np.analysis import examples as E
from gpt2np.analysis import findings as F
from gpt2np.analysis import interventions as I
from gpt2np.analysis import probabilities
from gpt2np.api import Model, ModelInfo
from gpt2np.config import GPT2Config
from gpt2np.files.tokenizer import Tokenizer


def fits(model, ex):
    """Every example of `ex` runs on `model`: checked with the model's own tokenizer and shape."""
    n = model.config.n_positions
    for s in ex["sentences"]:
        assert 0 < len(model.encode(s["text"])) <= n, s["label"]
    if ex["pair"]:
        p = ex["pair"]
        assert len(model.encode(p["clean"])) == len(model.encode(p["corrupted"])) <= n
        assert len(model.encode(p["answer"])) == len(model.encode(p["versus"])) == 1
    if ex["follow"]:
        assert len(model.encode(ex["follow"]["text"])) <= n and len(model.encode(ex["follow"]["token"])) == 1
    for h in ex["ablate"]:
        L, H = map(int, h.split("."))
        assert L < model.config.n_layer and H < model.config.n_head
    if ex["induction_text"]:
        assert len(model.encode(ex["induction_text"])) <= n


# -- the demo: its card ---------------------------------------------------------------------------
def test_the_demo_examples_are_its_cards(demo):
    ex = E.examples_for(demo)
    assert "card" in ex["source"] and ex["dropped"] == []
    card = CARD["examples"]
    assert ex["sentences"] == card["sentences"] and ex["pair"] == card["pair"]
    assert ex["follow"] == card["follow"] and ex["induction_text"] == card["induction_text"]
    assert ex["ablate"] == sorted(card["ablate"], key=lambda h: tuple(map(int, h.split("."))))
    fits(demo, ex)
    long = [s for s in ex["sentences"] if len(demo.encode(s["text"])) > 100]
    assert long, "a long preset that still fits the demo's context"


def test_the_cards_examples_do_what_they_are_for(demo):
    """Measured here on the demo model: the pair's answer beats versus on the clean side and less
    so on the corrupted one; the followed token is the model's top-1; ablating the card's heads
    lowers its probability (each number computed from the logits, not read from the card)."""
    ex = E.examples_for(demo)
    pair = ex["pair"]
    a, v = (demo.encode(pair[k])[0] for k in ("answer", "versus"))
    ld = {k: float(demo.run(pair[k]).logits[-1, a] - demo.run(pair[k]).logits[-1, v])
          for k in ("clean", "corrupted")}
    assert ld["clean"] > 0 and ld["clean"] > ld["corrupted"]
    assert I.measure_examples(demo)["pair"]["logit_difference"] == pytest.approx(ld, abs=1e-5)
    follow = ex["follow"]
    t = demo.encode(follow["token"])[0]
    p = probabilities(demo.run(follow["text"]).logits[-1])
    measured = CARD["examples_measured"]["follow"]
    assert p[t] == pytest.approx(measured["p"], abs=1e-3)
    assert (int(np.argmax(p)) == t) == measured["top1"]
    after = I.ablate(demo, follow["text"], ex["ablate"], token=t)["token"]
    assert after["p_after"] < p[t]


def test_a_card_without_examples_gets_derived_ones(demo, monkeypatch):
    monkeypatch.setattr(E, "card_examples", lambda: None)
    ex = E.examples_for(demo)
    assert "kept where they fit" in ex["source"]
    fits(demo, ex)
    labels = {s["label"] for s in ex["sentences"]}
    for s in E.gpt2_examples()["sentences"]:            # each GPT-2 sentence: kept, or dropped with why
        assert (s["label"] in labels) != any(d.startswith(f"sentence {s['label']!r}") for d in ex["dropped"])


# -- GPT-2 small: the original demo's sentences and the published roles ---------------------------
@pytest.fixture(scope="module")
def gpt2_tokenizer(gpt2_files):
    return Tokenizer.from_dir(gpt2_files)


def shaped(config, tokenizer, name, kind):
    """A model with a shape, a tokenizer and a name, and no weights: all the examples look at."""
    return Model(config, {}, tokenizer, ModelInfo(name, "test", 0, kind))


def test_gpt2_small_gets_the_original_examples(gpt2_files, gpt2_tokenizer):
    cfg = GPT2Config.from_file(gpt2_files / "config.json")
    for name in E.GPT2_NAMES:
        model = shaped(cfg, gpt2_tokenizer, name, "official")
        ex = E.examples_for(model)
        assert ex["dropped"] == [] and "GPT-2 small" in ex["source"]
        fits(model, ex)
        texts = [s["text"] for s in ex["sentences"]]
        assert F.COREF_SENTENCE in texts and F.FLIP_SENTENCE in texts and F.IOI_SENTENCE in texts
        roles = dict((r, h) for r, h, _, _ in F.PUBLISHED_ROLES)
        assert ex["ablate"] == ["4.11", "5.1"] == [roles["previous-token"][0], roles["induction"][0]]
        assert ex["pair"]["clean"] == F.IOI_SENTENCE and ex["pair"]["answer"] == " Mary"
        assert ex["follow"] == {"text": "The quick brown fox jumps over the lazy", "token": " dog"}


def split_word(model):
    """A word (with its leading space) that the model's tokenizer splits into several tokens."""
    return next(w for w in (" big", " trophy", " suitcases", " antidisestablishmentarianism")
                if len(model.encode(w)) > 1)


def test_other_models_get_what_fits(gpt2_files, gpt2_tokenizer, demo, monkeypatch):
    cfg = GPT2Config.from_file(gpt2_files / "config.json")
    # GPT-2's tokenizer, another shape: every sentence fits; no published heads for this shape.
    small = shaped(dataclasses.replace(cfg, n_layer=2, n_head=3, n_embd=48), gpt2_tokenizer, "mine", "local")
    ex = E.examples_for(small)
    assert ex["ablate"] == [] and ex["pair"] and ex["follow"] and len(ex["sentences"]) == 5
    fits(small, ex)
    # The demo's tokenizer and a context of 64: what does not fit is left out, and said.
    short = shaped(dataclasses.replace(demo.config, n_positions=64), demo.tokenizer, "short", "local")
    ex = E.examples_for(short)
    fits(short, ex)
    assert any("more than the context of 64" in d for d in ex["dropped"])
    assert ex["follow"] == E.gpt2_examples()["follow"]
    # A follow token that is two tokens for this tokenizer: left out, and said.
    split = split_word(demo)
    original = E.gpt2_examples
    monkeypatch.setattr(E, "gpt2_examples", lambda: dict(original(), follow={"text": "A", "token": split}))
    ex = E.examples_for(short)
    assert ex["follow"] is None and any(d.startswith(f"follow: {split!r} is") for d in ex["dropped"])
    # No tokenizer: no text examples at all (the viewer offers token ids instead).
    none = shaped(cfg, None, "gpt2", "official")
    ex = E.examples_for(none)
    assert ex["sentences"] == [] and ex["pair"] is None and ex["follow"] is None


# -- hints -----------------------------------------------------------------------------------------
def test_error_hints_use_the_models_own_tokens(demo):
    ex = E.examples_for(demo)
    split = split_word(demo)
    with pytest.raises(gpt2np.GPT2npError) as e:
        I.token_id(demo, split)
    assert f"e.g. {ex['follow']['token']!r}" in str(e.value)
    assert E.pair_hint(demo) == f"--token {ex['pair']['answer']!r} --versus {ex['pair']['versus']!r}"


def test_card_shape():
    """The card's "examples" key has exactly the documented shape."""
    card = CARD["examples"]
    assert set(card) == {"sentences", "pair", "follow", "ablate", "induction_text"}
    assert all(set(s) == {"label", "text"} for s in card["sentences"])
    assert set(card["pair"]) == {"clean", "corrupted", "answer", "versus"}
    assert set(card["follow"]) == {"text", "token"} and isinstance(card["induction_text"], str)
