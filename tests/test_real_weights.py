"""The official GPT-2 small checkpoint, when it is in the weights folder.

The development and CI machines cannot reach the Hugging Face Hub, so these tests skip there
(with that reason). On a machine with the file (python -m gpt2np download gpt2) they check the
known values of REFERENCE.md and parity against transformers with the real-weight tolerances.
"""

import numpy as np
import pytest
from reference import hf_model, hf_run, max_abs_delta

import gpt2np
from gpt2np import hub

REAL = hub.weights_dir() / "gpt2"
pytestmark = pytest.mark.skipif(
    not (REAL / "model.safetensors").is_file(),
    reason=f"the official GPT-2 checkpoint is not in {REAL} (no Hub access here; "
           "run `python -m gpt2np download gpt2` where there is)")


@pytest.fixture(scope="module")
def model():
    return gpt2np.load("gpt2", allow_download=False)


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


def test_real_weight_parity(model, parity_record):
    """Residual stream relative to its magnitude ≤ 1e-5, log-softmax logits ≤ 1e-3, patterns ≤ 1e-4."""
    hf = hf_model(REAL)
    ids = model.encode("The trophy doesn't fit in the suitcase because it is too big.")
    trace, ref = model.run(ids), hf_run(hf, ids)
    for i in range(model.config.n_layer):
        ours, theirs = trace[f"blocks.{i}.hook_resid_pre"], ref["hidden_states"][i]
        rel = max_abs_delta(ours, theirs) / float(np.abs(theirs).max())
        parity_record(f"blocks.{i}.hook_resid_pre (relative)", rel, 1e-5)
        assert rel <= 1e-5
        d = max_abs_delta(trace[f"blocks.{i}.attn.hook_pattern"], ref["attentions"][i])
        parity_record(f"blocks.{i}.attn.hook_pattern", d, 1e-4)
        assert d <= 1e-4
    log_softmax = lambda x: x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)  # noqa: E731
    d = max_abs_delta(log_softmax(trace.logits.astype(np.float64)), log_softmax(ref["logits"].astype(np.float64)))
    parity_record("log_softmax(logits)", d, 1e-3)
    assert d <= 1e-3
