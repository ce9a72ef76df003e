"""Benchmark: the resid_pre patching sweep on GPT-2 small's shapes, three ways, each in its own process.

    python benchmarks/bench_patching.py                 # T = 20, 3 timed sweeps each
    python benchmarks/bench_patching.py --tokens 20 --repeats 5 --json patching.json

The sweep: a clean and a corrupted input of T random token ids that differ at one position, and
for every layer L and position t the corrupted run with blocks.L.hook_resid_pre[t] taken from the
clean run; the logit difference at the last position for two fixed tokens. 12 × T patched runs,
plus the clean and corrupted runs themselves. Implementations (`IMPLEMENTATIONS`):

  gpt2np      gpt2np.analysis.patching.patch(sites=["resid_pre"]), engine "fast": each patched
              run computes only the blocks from L on, and the final LayerNorm and two logits at
              the last position (not the whole LM head)
  naive       gpt2np, engine "fast", a full forward pass per site with the same edit (all layers,
              all logits), as TransformerLens's get_act_patch_resid_pre runs the model once per site
  transformers  GPT2LMHeadModel (its default attention), a forward pre-hook on block L replacing
              position t of its input, a full forward per site

No download: a randomly initialised GPT-2 small is saved by transformers to a temporary directory
(gpt2np.bench.save_random_gpt2) and every worker loads that file. Workers run one after the other,
never at once, in rounds (one process per worker and round, the order reversed every other
round); each process does one untimed sweep, then one timed. Needs torch and transformers (the test extra).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IMPLEMENTATIONS = ("gpt2np", "naive", "transformers")
ANSWER, VERSUS = 262, 257            # two token ids; any two do for timing


def inputs(T):
    """(clean, corrupted) token ids [T], differing at position T // 2."""
    clean = np.random.default_rng(T).integers(0, 50257, T)
    corrupted = clean.copy()
    corrupted[T // 2] = (clean[T // 2] + 1) % 50257
    return clean.tolist(), corrupted.tolist()


def sweep_function(impl, directory, T):
    """Load what `impl` needs. -> function that runs the whole sweep and returns its [L, T] LDs."""
    clean, corrupted = inputs(T)
    if impl == "transformers":
        import torch
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel.from_pretrained(directory, dtype=torch.float32).eval()
        blocks = model.transformer.h

        def run(ids, hook=None, layer=None):
            handle = None if hook is None else blocks[layer].register_forward_pre_hook(hook, with_kwargs=True)
            try:
                with torch.no_grad():
                    return model(torch.tensor([ids])).logits[0, -1]
            finally:
                if handle is not None:
                    handle.remove()

        def sweep():
            saved = {}

            def keep(layer):
                def hook(module, args, kwargs):
                    saved[layer] = (args[0] if args else kwargs["hidden_states"])[0].clone()
                return hook
            handles = [blocks[i].register_forward_pre_hook(keep(i), with_kwargs=True) for i in range(len(blocks))]
            with torch.no_grad():
                model(torch.tensor([clean]))
            for h in handles:
                h.remove()
            run(corrupted)
            grid = np.zeros((len(blocks), T))
            for layer in range(len(blocks)):
                for t in range(T):
                    def patch(module, args, kwargs, layer=layer, t=t):
                        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
                        hidden[0, t] = saved[layer][t]
                        return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})
                    logits = run(corrupted, patch, layer)
                    grid[layer, t] = float(logits[ANSWER] - logits[VERSUS])
            return grid
        return sweep

    import gpt2np
    from gpt2np.analysis.patching import patch
    from gpt2np.model import replacing
    model = gpt2np.load(directory, engine="fast")
    if impl == "gpt2np":
        return lambda: patch(model, clean, corrupted, ANSWER, VERSUS, sites=["resid_pre"]).grids["resid_pre"].ld

    def naive():
        clean_run = model.run(clean)
        model.run(corrupted)
        grid = np.zeros((model.config.n_layer, T))
        for layer in range(model.config.n_layer):
            name = f"blocks.{layer}.hook_resid_pre"
            for t in range(T):
                logits = model.run(corrupted, edit=replacing({name: [(t, clean_run[name][t])]})).logits[-1]
                grid[layer, t] = float(logits[ANSWER]) - float(logits[VERSUS])
        return grid
    return naive


def worker(impl, directory, T, repeats, out):
    sweep = sweep_function(impl, directory, T)
    grid = sweep()                                           # untimed: warms caches and libraries
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        sweep()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    Path(out).write_text(json.dumps({"times": times, "cpu": cpu, "grid": np.asarray(grid).tolist()}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "DIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.tokens, args.repeats, args.worker[2])

    from benchmarks.bench import save_random_gpt2
    results = {impl: {"times": [], "cpu": []} for impl in IMPLEMENTATIONS}
    with tempfile.TemporaryDirectory() as tmp:
        save_random_gpt2(tmp)
        for round_ in range(args.repeats):          # one timed sweep per worker and round, the order
            order = IMPLEMENTATIONS if round_ % 2 == 0 else IMPLEMENTATIONS[::-1]   # reversed every other
            for impl in order:
                out = Path(tmp) / f"{impl}.json"
                subprocess.run([sys.executable, __file__, "--worker", impl, tmp, str(out),
                                "--tokens", str(args.tokens), "--repeats", "1"], check=True)
                r = json.loads(out.read_text())
                results[impl]["times"] += r["times"]
                results[impl]["cpu"] += r["cpu"]
                results[impl]["grid"] = r["grid"]
    naive = statistics.median(results["naive"]["times"])
    naive_cpu = statistics.median(results["naive"]["cpu"])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    print(f"machine: {cpu}, {os.cpu_count()} cores; numpy {np.__version__}")
    reference = np.asarray(results["transformers"]["grid"])
    print(f"resid_pre sweep, GPT-2 small shapes (random weights), T = {args.tokens}: "
          f"{12 * args.tokens} patched runs; median of {args.repeats} sweeps after one untimed")
    print("wall: seconds per sweep; CPU: seconds of CPU time of the worker process (all its threads)")
    print(f"{'implementation':<14} {'median s':>9} {'min s':>7} {'max s':>7} {'× naive':>8} "
          f"{'CPU s':>7} {'× naive':>8} {'max |ΔLD| vs transformers':>26}")
    for impl, r in results.items():
        t, c = r["times"], statistics.median(r["cpu"])
        delta = float(np.abs(np.asarray(r["grid"]) - reference).max())
        print(f"{impl:<14} {statistics.median(t):9.2f} {min(t):7.2f} {max(t):7.2f} "
              f"{statistics.median(t) / naive:8.2f} {c:7.2f} {c / naive_cpu:8.2f} {delta:26.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tokens": args.tokens, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
