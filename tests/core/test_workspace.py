"""Memory reuse through a Workspace (gpt2np/engine.py): owned by the caller, never by guesswork.

A trace someone holds is never written by a later pass through the same workspace; a trace given
back refuses every read and no longer reaches its arrays; given-back arrays are written by the next
pass (the same memory, seen through weak references); a run without a workspace keeps nothing;
passes in several threads sharing one workspace run at the same time on arrays of their own and
give the reading path's numbers; corpus mode computes its windows with kernels of its own and
leaves `engine.CPU` as it is. Every pass's numbers are held to the reading path (model.py).
"""

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir
from reference import tensor_relative_delta

import gpt2np
from gpt2np import engine, model
from gpt2np.analysis import corpus
from gpt2np.analysis.corpus import backends
from gpt2np.errors import GPT2npError

# As in test_engine.py: max|Δ| / max|ref| of the fast engine against the reading path.
BOUND = 2e-6


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    cfg = small_config(n_layer=2, n_head=3, n_embd=48, n_positions=256, vocab_size=100)
    directory, _ = write_model_dir(tmp_path_factory.mktemp("workspace") / "2x3x48", cfg, seed=3)
    return gpt2np.load(directory, engine="fast")


def ids_of(m, seed, T):
    return np.random.default_rng(seed).integers(0, m.config.vocab_size, T)


def assert_reading_path(m, trace, ids):
    plain = model.forward(m.params, m.config, ids)
    assert trace.names() == list(plain)
    for name, ref in plain.items():
        assert tensor_relative_delta(trace[name], ref) <= BOUND, name


def written(m, trace):
    """The trace's arrays a pass wrote: all but views of the weights (hook_pos_embed is rows of
    wpe.weight in every trace)."""
    return [a for a in trace.values() if not any(np.shares_memory(a, w) for w in m.params.values())]


def memory_of(trace):
    """Weak references to the workspace memory under each of the trace's arrays (a workspace
    array is a view through a memoryview of it: `.base.obj`)."""
    return {name: weakref.ref(a.base.obj) for name, a in trace.items()
            if isinstance(a.base, memoryview)}


def test_a_held_trace_is_never_written_by_later_passes(m):
    ws = gpt2np.Workspace()
    T = 70
    held = m.run(ids_of(m, 0, T), workspace=ws)
    frozen = {name: a.copy() for name, a in held.items()}
    other = m.run(ids_of(m, 1, T), workspace=ws)
    view = other["blocks.1.attn.hook_pattern"][2].T        # a view kept of a trace given back
    q = other["blocks.0.attn.hook_q"]                      # itself a view of the q, k, v array
    view_frozen, q_frozen = view.copy(), q.copy()
    ws.give_back(other)
    for seed in range(2, 7):                               # same shapes: every array could be reused
        ids = ids_of(m, seed, T)
        trace = m.run(ids, workspace=ws)
        assert_reading_path(m, trace, ids)
        for name, a in held.items():
            assert np.array_equal(a, frozen[name]), name
        for a in [*written(m, held), view, q]:
            assert not any(np.shares_memory(a, b) for b in written(m, trace))
        assert np.array_equal(view, view_frozen) and np.array_equal(q, q_frozen)
        ws.give_back(trace)


def test_a_given_back_trace_refuses_every_read(m, tmp_path):
    ws = gpt2np.Workspace()
    trace = m.run(ids_of(m, 0, 20), workspace=ws)
    name = "blocks.0.attn.hook_pattern"
    arrays = [weakref.ref(a) for a in trace.values()]
    ws.give_back(trace)
    assert all(ref() is None for ref in arrays)            # the trace no longer reaches them
    reads = {"item": lambda: trace[name], "names": trace.names, "logits": lambda: trace.logits,
             "len": lambda: len(trace), "iter": lambda: list(trace), "in": lambda: name in trace,
             "get": lambda: trace.get(name), "items": lambda: dict(trace.items()),
             "pattern": lambda: trace.pattern(0), "n_layer": lambda: trace.n_layer,
             "nbytes": trace.nbytes, "save": lambda: trace.save(tmp_path / "t.npz"),
             "to_html": trace.to_html, "equal": lambda: trace == trace}
    for read in reads.values():
        with pytest.raises(GPT2npError, match=r"given back to its workspace \(ws\.give_back\).*"
                                              r"Copy what you need"):
            read()
    assert not (tmp_path / "t.npz").exists()
    assert "given back" in repr(trace) and trace._repr_html_() is None
    with pytest.raises(GPT2npError, match="already given back"):
        ws.give_back(trace)


def test_only_a_trace_of_this_workspace_can_be_given_back(m, tmp_path):
    ws, other = gpt2np.Workspace(), gpt2np.Workspace()
    mine = m.run(ids_of(m, 0, 10), workspace=ws)
    plain = m.run(ids_of(m, 0, 10))
    plain.save(tmp_path / "t.npz")
    for trace in (plain, gpt2np.Trace.load(tmp_path / "t.npz")):
        with pytest.raises(GPT2npError, match="not computed with this workspace"):
            ws.give_back(trace)
    with pytest.raises(GPT2npError, match="not computed with this workspace"):
        other.give_back(mine)
    assert mine.names() and plain.names()                  # refused: both still readable
    reference = m.run(ids_of(m, 0, 10), workspace=ws, engine="reference")
    ws.give_back(reference)                                # the reference engine: nothing to reuse
    with pytest.raises(GPT2npError, match="given back"):
        reference.names()


def test_given_back_arrays_are_written_by_the_next_pass(m):
    ws = gpt2np.Workspace()
    T = 40
    first = m.run(ids_of(m, 0, T), workspace=ws)
    memory = memory_of(first)
    assert len(memory) >= 8 * m.config.n_layer             # every linear, LayerNorm, GELU, attention output
    logits_memory = memory["logits"]
    ws.give_back(first)
    ids = ids_of(m, 1, T)
    second = m.run(ids, workspace=ws)
    assert_reading_path(m, second, ids)
    again = {id(ref()) for ref in memory.values() if ref() is not None}
    under_second = {id(a.base.obj) for a in second.values() if isinstance(a.base, memoryview)}
    assert len(again) == len(memory) and again == under_second   # the same memory, every array
    assert second.logits.base.obj is logits_memory()       # the one [T, V] array (others: any of a shape)

    ws.give_back(second)                                   # another length: nothing of that shape
    third = m.run(ids_of(m, 2, T + 1), workspace=ws)
    assert all(ref() is None for ref in memory.values())   # the arrays it could not use are let go
    ws.give_back(third)
    waiting = [weakref.ref(a) for arrays in ws._free.values() for a in arrays]
    assert len(waiting) >= 8 * m.config.n_layer            # third's arrays wait for the next pass
    ws.clear()
    gc.collect()
    assert all(ref() is None for ref in waiting)           # until clear() lets them go


def test_an_array_still_reached_through_a_view_is_not_reused(m):
    ws = gpt2np.Workspace()
    first = m.run(ids_of(m, 0, 30), workspace=ws)
    row = first["blocks.0.attn.hook_pattern"][1, 5]        # a view of a view
    row_frozen = row.copy()
    pattern_memory = weakref.ref(first["blocks.0.attn.hook_pattern"].base.obj)
    ws.give_back(first)
    second = m.run(ids_of(m, 1, 30), workspace=ws)
    assert np.array_equal(row, row_frozen)
    assert all(a.base.obj is not pattern_memory() for a in second.values() if isinstance(a.base, memoryview))
    assert pattern_memory() is not None                    # the view keeps it: it is the caller's
    ws.give_back(second)
    del row
    gc.collect()
    assert pattern_memory() is None                        # not kept by the workspace either


def test_a_run_without_a_workspace_keeps_nothing(m):
    trace = m.run(ids_of(m, 0, 50))
    arrays = [weakref.ref(a) for a in written(m, trace)]
    owners = [weakref.ref(a.base) for a in written(m, trace) if a.base is not None]
    assert len(arrays) == len(trace) - 1 and owners        # all but hook_pos_embed; q, k, v's array
    del trace
    gc.collect()
    assert all(ref() is None for ref in arrays + owners)


def test_passes_in_threads_sharing_a_workspace_get_arrays_of_their_own(m):
    """Passes run at the same time (not one after another); a given-back array goes to one of
    them only. Each pass's numbers are the reading path's."""
    ws = gpt2np.Workspace()
    T, n = 70, 4
    inputs = [ids_of(m, seed, T) for seed in range(n)]
    for round_ in range(3):                                # then twice with n traces given back
        start = threading.Barrier(n)

        def one(ids):
            start.wait()
            return m.run(ids, workspace=ws)
        with ThreadPoolExecutor(n) as pool:
            traces = list(pool.map(one, inputs))
        for i, (ids, trace) in enumerate(zip(inputs, traces)):
            assert_reading_path(m, trace, ids)
            for other in traces[i + 1:]:
                for a in written(m, trace):
                    assert not any(np.shares_memory(a, b) for b in written(m, other)), round_
        for trace in traces:
            ws.give_back(trace)


def test_corpus_mode_leaves_the_shared_kernels_alone(small_text_model_dir, monkeypatch):
    """Each window runs on kernels of its own with one worker, in a workspace it gives every
    window's trace back to; engine.CPU is frozen here and not one kernel call splits its work."""
    class Frozen(engine.CPUKernels):
        def __setattr__(self, name, value):
            if hasattr(self, name):
                raise AssertionError(f"engine.CPU.{name} changed at run time")
            super().__setattr__(name, value)
    monkeypatch.setattr(engine, "CPU", Frozen())
    splits, given_back, inside = [], [], []               # workers of every split inside a window
    real_over_groups, real_give_back = engine.over_groups, engine.Workspace.give_back
    real_measure_window = backends.measure_window

    def measure_window(*args):
        inside.append(True)
        try:
            return real_measure_window(*args)
        finally:
            inside.pop()
    monkeypatch.setattr(backends, "measure_window", measure_window)   # what the backends call
    monkeypatch.setattr(engine, "over_groups",
                        lambda fn, n, w=1: (inside and splits.append(w), real_over_groups(fn, n, w)))
    monkeypatch.setattr(engine.Workspace, "give_back",
                        lambda ws, trace: (given_back.append(trace.n_tokens), real_give_back(ws, trace)))
    texts = ["The cat sat on the mat. " * 6, "A dog ran in the park and then it ran home again."]
    stats = corpus.measure(small_text_model_dir, texts, window=12, stride=9, workers=0)
    assert splits and max(splits) <= 1
    assert len(given_back) == stats["run"]["windows"] > 1
