"""Benchmark of generation: one KV-cached step against a full forward pass, and tokens per second
against transformers' `generate`.

    python -m benchmarks.bench_generate                     # about 3 minutes on 2 cores
    python -m benchmarks.bench_generate --context 200 --new 50 --repeats 3 --json out.json

Needs no download: a randomly initialised GPT-2 small (124M parameters) is saved by transformers
to a temporary directory and loaded from there. Measured:
  1. in one process, interleaved, medians: gpt2np's full forward pass over `--context` tokens
     (`Model.run`, the fast engine) and one cached step at that context (`Model.forward_step`: the
     new token's q, k, v and its attention over the cache of `--context` positions), with the fast
     engine's kernels and with model.py's plain ones;
  2. tokens per second of greedy generation (`--new` tokens after a `--context`-token prompt,
     prompt included in the time), gpt2np's `Model.generate` and transformers' `generate` with its
     KV cache, each in a fresh process of its own (one warm-up run, then one timed run), the two
     alternating `--repeats` times so that both see the same machine state; medians.
Timing is for reading, never for pass/fail tests. transformers and torch are needed here only.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .bench import machine, save_random_gpt2, thread_pools, timed


def prompt_ids(n, vocab_size=50257):
    return np.random.default_rng(n).integers(0, vocab_size, n).tolist()


def step_versus_forward(directory, context, repeats):
    """Median seconds of a full forward pass over `context` tokens (fast engine) and of one cached
    step after them (fast engine, and model.py's plain kernels), measured in turn in this process."""
    import gpt2np
    from gpt2np import model
    m = gpt2np.load(directory)
    ids = prompt_ids(context)
    cache = model.kv_cache(m.run(ids), m.config)
    runs = {"full": lambda: m.run(ids), "step": lambda: m.forward_step(cache, 0),
            "step_reference": lambda: m.forward_step(cache, 0, engine="reference")}
    times = {name: [] for name in runs}
    for fn in runs.values():                                               # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn)[1])
    return {name: float(np.median(t)) for name, t in times.items()}


def generation_child(which, directory, context, new):
    """In a fresh process: seconds to generate `new` greedy tokens after a `context`-token prompt
    (after one warm-up run)."""
    prompt = prompt_ids(context)
    if which == "gpt2np":
        import gpt2np
        m = gpt2np.load(directory)

        def run(n):
            g = m.generate(prompt, max_new_tokens=n, greedy=True, stop_at_eos=False)
            assert len(g.new_ids) == n
    else:
        import torch
        from transformers import GPT2LMHeadModel
        m = GPT2LMHeadModel.from_pretrained(directory, dtype=torch.float32).eval()
        ids = torch.tensor([prompt])

        def run(n):
            with torch.no_grad():
                out = m.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 use_cache=True, pad_token_id=0)
            assert out.shape[1] == len(prompt) + n
    run(2)
    return timed(lambda: run(new))[1]


def in_own_process(which, directory, args):
    code = (f"from benchmarks.bench_generate import generation_child; print(generation_child("
            f"{which!r}, {str(directory)!r}, {args.context}, {args.new}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--context", type=int, default=200, help="tokens already seen (default 200)")
    p.add_argument("--new", type=int, default=50, help="tokens generated per timed run (default 50)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each measure (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print("The benchmark needs the test extra: pip install -e \".[test]\"", file=sys.stderr)
        return 2

    results = {"machine": machine({"this process": thread_pools()}), "context": args.context,
               "new": args.new, "load_average_before": os.getloadavg()}
    print(f"{results['machine']['cpu']}; {results['machine']['versions']}; load average "
          f"{results['load_average_before'][0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        print("saving a random GPT-2 small (124M) ...", flush=True)
        save_random_gpt2(tmp)
        t = step_versus_forward(tmp, args.context, args.repeats)
        full, step = t["full"], t["step"]
        results.update(full_forward_s=full, cached_step_s=step, step_over_forward=step / full,
                       cached_step_reference_s=t["step_reference"])
        print(f"\nat {args.context} tokens of context, median of {args.repeats}: full forward pass "
              f"{full * 1e3:.0f} ms, one cached step {step * 1e3:.1f} ms = {step / full:.3f} × "
              f"(1/{full / step:.0f}); the step with model.py's plain kernels (BLAS's own threads) "
              f"{t['step_reference'] * 1e3:.1f} ms", flush=True)
        runs = {"gpt2np": [], "transformers": []}
        for _ in range(args.repeats):
            for which, times in runs.items():
                times.append(in_own_process(which, tmp, args))
        for which, times in runs.items():
            seconds = float(np.median(times))
            results[which] = {"seconds": seconds, "tokens_per_s": args.new / seconds}
            print(f"{which:>12}: {args.new} greedy tokens after a {args.context}-token prompt in "
                  f"{seconds:.2f} s = {args.new / seconds:.1f} tokens/s (median of {args.repeats} "
                  f"fresh processes; each: {', '.join(f'{t:.2f}' for t in times)} s)", flush=True)
    ratio = results["gpt2np"]["tokens_per_s"] / results["transformers"]["tokens_per_s"]
    results["tokens_per_s_ratio"] = ratio
    results["load_average_after"] = os.getloadavg()
    print(f"gpt2np generates at {ratio:.2f} × transformers' speed; load average now "
          f"{results['load_average_after'][0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
