"""The √d what-if in the Q·K panel's answer (GET /api/runs/<h>/query, ledger.without_sqrt_d): the
query's row had the scores not been divided by √d_head, beside the model's own row, through
Flask's test_client on the bundled demo model.

The expectation is a float64 formula written here from the trace's hook_q and hook_k (this
process's own run of the same text): softmax over keys 0..query of q·k_j, entropy −Σ p log2 p,
top weight and key; the model's row from hook_pattern. And the claim the panel makes: without
÷ √d_head the row is never flatter (entropy not higher, top weight not lower).
"""

import numpy as np
import pytest

SENTENCE = "Mr. Darcy and Miss Bennet walked in the garden."


def entropy_bits(p):
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def expected_unscaled(trace, layer, head, query):
    q = trace[f"blocks.{layer}.attn.hook_q"][query, head].astype(np.float64)        # [dh]
    k = trace[f"blocks.{layer}.attn.hook_k"][: query + 1, head].astype(np.float64)  # [query+1, dh]
    s = np.array([np.dot(q, kj) for kj in k])                                       # q·k_j, no ÷ √d_head
    e = np.exp(s - s.max())
    return e / e.sum()


def test_the_row_without_sqrt_d_is_softmax_of_q_dot_k(client, ran):
    handle, trace = ran
    T, n_layer, n_head = trace.n_tokens, trace.n_layer, trace["blocks.0.attn.hook_q"].shape[1]
    checked = 0
    for layer in range(n_layer):
        for head in range(n_head):
            for query in (1, T // 2, T - 1):
                body = client.get(f"/api/runs/{handle}/query?layer={layer}&head={head}&query={query}").get_json()
                w = body["what_if"]
                p = expected_unscaled(trace, layer, head, query)
                got = np.array([float(x) for x in w["unscaled"]["p"]])
                assert got.shape == (query + 1,)
                assert np.abs(got - p).max() <= 1e-6 * max(1.0, p.max())
                assert w["unscaled"]["entropy_bits"] == pytest.approx(entropy_bits(p), abs=1e-9)
                assert w["unscaled"]["top_key"] == int(np.argmax(p))
                assert float(w["unscaled"]["top_p"]) == pytest.approx(p.max(), rel=1e-6)
                real = trace.pattern(layer)[head, query, : query + 1]
                assert w["real"]["p"] == [str(x) for x in real]            # the trace's float32, as text
                real = real.astype(np.float64)
                assert w["real"]["entropy_bits"] == pytest.approx(entropy_bits(real), abs=1e-9)
                assert w["real"]["top_key"] == int(np.argmax(real))
                assert w["max_entropy_bits"] == pytest.approx(np.log2(query + 1))
                # The claim the panel states: undivided, the softmax is never flatter.
                assert w["unscaled"]["entropy_bits"] <= w["real"]["entropy_bits"] + 1e-9
                assert float(w["unscaled"]["top_p"]) >= float(w["real"]["top_p"]) - 1e-7
                checked += 1
    assert checked == n_layer * n_head * 3


def test_the_model_row_is_the_scaled_one(ran, client):
    """Against a mix-up of the two rows: the model's row is softmax(q·k ÷ √d_head), not the other."""
    handle, trace = ran
    layer, head, query = trace.n_layer - 1, 0, trace.n_tokens - 1
    w = client.get(f"/api/runs/{handle}/query?layer={layer}&head={head}&query={query}").get_json()["what_if"]
    q = trace[f"blocks.{layer}.attn.hook_q"][query, head].astype(np.float64)
    k = trace[f"blocks.{layer}.attn.hook_k"][: query + 1, head].astype(np.float64)
    s = k @ q / np.sqrt(q.shape[0])
    scaled = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    assert np.abs(np.array([float(x) for x in w["real"]["p"]]) - scaled).max() < 1e-5
    assert np.abs(np.array([float(x) for x in w["unscaled"]["p"]]) - scaled).max() > 1e-3
