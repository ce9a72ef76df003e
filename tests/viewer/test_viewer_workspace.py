"""The viewer's passes write into the app's Workspace: a cached run's arrays are never written by
later passes (of the same length, so every array could be), the others are, and evicting a run
leaves the next runs' numbers right (held to the reading path, model.py)."""

import numpy as np
from reference import tensor_relative_delta

from gpt2np import model as reading_path
from viewer import create_app
from viewer.answers.runs import trace_bytes


def test_cached_runs_keep_their_numbers_while_the_workspace_is_reused(small_model_dir):
    app = create_app({"MODEL": str(small_model_dir)})
    client, runs, ws = app.test_client(), app.extensions["gpt2np.runs"], app.extensions["gpt2np.workspace"]
    m = app.extensions["gpt2np.model"]
    runs.max_bytes = trace_bytes(m.config, 40)         # one pass of 40 tokens: only the newest run is kept
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, m.config.vocab_size, 40).tolist() for _ in range(4)]
    first = runs.get(client.post("/api/run", json={"ids": inputs[0]}).get_json()["handle"])
    kept = {name: [a.copy() for a in getattr(first, name)] for name in ("q", "scores", "patterns", "z")}
    for ids in inputs[1:]:
        handle = client.post("/api/run", json={"ids": ids}).get_json()["handle"]
        assert sum(map(len, ws._free.values())) > 0   # given back: the arrays no Run keeps
        run = runs.get(handle)
        ref = reading_path.forward(m.params, m.config, ids)
        for L, pattern in enumerate(run.patterns):
            assert tensor_relative_delta(pattern, ref[f"blocks.{L}.attn.hook_pattern"]) <= 2e-6
        for name, arrays in kept.items():             # `first` is evicted, but still held here
            for a, b, later in zip(getattr(first, name), arrays, getattr(run, name)):
                assert np.array_equal(a, b) and not np.shares_memory(a, later), name
