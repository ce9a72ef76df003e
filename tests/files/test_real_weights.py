"""The official GPT-2 small checkpoint, when it is in the weights folder.

The development and CI machines cannot reach the Hugging Face Hub, so these tests skip there
(with that reason). On a machine with the file (python -m gpt2np download gpt2) they check the
known values of tests/data/gpt2/README.md and every named tensor against transformers with the real-weight
tolerances of tests/data/gpt2/README.md: the real model's residual stream reaches thousands at position 0, so
bounds are relative to each position's magnitude.
"""

import numpy as np
import pytest
from reference import REAL_BOUNDS, check, hf_model, hf_trace, max_abs_delta

import gpt2np
from gpt2np.files import hub

REAL = hub.weights_dir() / "gpt2"
pytestmark = pytest.mark.skipif(
    not (REAL / "model.safetensors").is_file(),
    reason=f"the official GPT-2 checkpoint is not in {REAL} (no Hub access here; "
           "run `python -m gpt2np download gpt2` where there is)")


@pytest.fixture(scope="module")
def model():
    return gpt2np.load("gpt2", allow_download=False)


@pytest.fixture(scope="module")
def hf():
    return hf_model(REAL)


def test_known_values(model):
    p = model.params
    np.testing.assert_allclose(p["wte.weight"][0, :3], [-0.1101, -0.0393, 0.0331], atol=1e-4)
    np.testing.assert_allclose(p["wte.weight"][-1, :3], [0.1860, 0.0167, 0.0461], atol=1e-4)
    np.testing.assert_allclose(p["wpe.weight"].ravel()[:4], [-0.0188, -0.1974, 0.0040, 0.0113], atol=1e-4)
    assert model.info.n_params == 124_439_808


def test_predicts_dog(model):
    trace = model.run("The quick brown fox jumps over the lazy")
    assert trace.ids.tolist() == [464, 2068, 7586, 21831, 18045, 625, 262, 16931]
    assert int(trace.logits[-1].argmax()) == 3290


SHORT = "The trophy doesn't fit in the suitcase because it is too big."
LONG = ("In 1905, Albert Einstein published four papers that changed physics: on the photoelectric "
        "effect, Brownian motion, special relativity, and the equivalence of mass and energy. ") * 5


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.mark.parametrize("text", [SHORT, LONG], ids=["short", "over-128-tokens"])
def test_real_weight_parity_every_name(model, hf, text, parity_record):
    """Every named tensor, per position relative to that position's magnitude (REAL_BOUNDS);
    logits also through log-softmax (≤ 1e-3 absolute)."""
    ids = model.encode(text)
    assert len(ids) > (128 if text is LONG else 1)
    trace = check(model, hf, ids, parity_record, bounds=REAL_BOUNDS)
    ref_logits = hf_trace(hf, ids)["logits"]
    d = max_abs_delta(log_softmax(trace.logits), log_softmax(ref_logits))
    parity_record("log_softmax(logits)", d, 1e-3, f"T={len(ids)}")
    assert d <= 1e-3
