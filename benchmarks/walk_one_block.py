"""The walk's cost at 1,000 tokens: the path before issue 24 (a whole forward pass, then the steps read from
its trace) against `gpt2np.oneblock.one_block` (one token through one block from the kept arrays).

    python benchmarks/walk_one_block.py [--model DIR] [--tokens 1000] [--repeats 5]

Each implementation runs in a process of its own, after one forward pass that stands for the
viewer's cached run (only its residual stream, keys and values are kept for one_block). Without
--model it uses the random GPT-2 small that benchmarks/loadtest.py builds. Timing for reading only.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = """
import json, statistics, sys, time
import numpy as np
import gpt2np
from gpt2np.oneblock import one_block
from gpt2np.trace import residual_stream_names
impl, directory, T, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = gpt2np.load(directory)
ids = np.random.default_rng(0).integers(0, m.config.vocab_size, T)
L = m.config.n_layer
first = m.run(ids)
kept = {n: first[n] for n in residual_stream_names(L) + [f"blocks.{i}.attn.hook_{x}" for i in range(L) for x in "kv"]}
del first
times = []
for r in range(repeats):
    layer, q = r % L, (T - 1 - 37 * r) % T
    t0 = time.perf_counter()
    if impl == "full pass + walk":                   # what GET .../walk did before issue 24 (a pass, then the walk)
        from viewer.answers.walk import walk
        trace = m.run(ids)
        walk(m, trace, layer, 0, q)
        del trace
    else:
        one_block(m.params, m.config, kept, layer, q)
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(Path(tempfile.gettempdir()) / "gpt2np-load" / "gpt2-random"))
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    results = {}
    for impl in ("full pass + walk", "one_block"):
        out = subprocess.run([sys.executable, "-c", WORKER, impl, args.model, str(args.tokens), str(args.repeats)],
                             capture_output=True, text=True, check=True)
        results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"| walk at {args.tokens} tokens ({time.strftime('%Y-%m-%d')}) | median s | min s | max s |")
    print("|---|---|---|---|")
    for impl, r in results.items():
        print(f"| {impl} | {r['median_s']:.4f} | {r['min_s']:.4f} | {r['max_s']:.4f} |")
    ratio = results["full pass + walk"]["median_s"] / results["one_block"]["median_s"]
    print(f"\nratio of medians: {ratio:.0f}×")
    return results


if __name__ == "__main__":
    main()
