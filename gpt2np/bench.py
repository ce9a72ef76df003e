"""Benchmark: gpt2np's full-trace forward pass against transformers' eager forward, side by side.

    python -m gpt2np.bench                  # T = 16, 64, 256, 1024; about 3 minutes on 2 cores
    python -m gpt2np.bench --tokens 16 64 --repeats 3

Needs no download: it saves a randomly initialised GPT-2 small (transformers' GPT2LMHeadModel,
124M parameters) to a temporary directory, then loads that one file into both implementations.
Both produce the full trace: gpt2np always does; transformers is asked for
`output_attentions=True, output_hidden_states=True` with `attn_implementation="eager"`.
Runs are interleaved (ours, theirs, ours, ...) in one process so that both see the same machine
state, and medians are reported. Also measured: load time of the same file, read bandwidth and the
memory-bandwidth floor at T=16, and peak memory at T=1024 in a fresh process.
For each T it also times the pass's matrix products alone (the 4 linear layers of every block and
the LM head, same shapes) with NumPy's BLAS and with torch: a forward pass cannot take less time
than its products, so this shows how far below transformers' time gpt2np can possibly go.

Timing is for reading, never for pass/fail tests. transformers and torch are needed here only.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def save_random_gpt2(directory):
    """A randomly initialised GPT-2 small, saved by transformers (its own file layout)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory)


def read_bandwidth(n_bytes=1 << 30, repeats=5):
    """Bytes per second a NumPy reduction reads from memory (best of several passes)."""
    a = np.ones(n_bytes // 4, dtype=np.float32)
    best = min(median_time(lambda: a.sum(), 1) for _ in range(repeats))
    return n_bytes / best


def peak_memory_child(directory, T):
    """Run in a fresh process: peak resident memory growth from load + one forward at T tokens.

    Reads VmHWM/VmRSS from /proc (Linux): getrusage's ru_maxrss would carry over this parent's
    peak through fork + exec.
    """
    code = f"""
import json, numpy as np, gpt2np
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
model = gpt2np.load({str(directory)!r})
trace = model.run(np.arange({T}) % model.config.vocab_size)
weights = sum(p.nbytes for p in model.params.values())
print(json.dumps({{"peak_growth": status("VmHWM") - before, "weights": weights, "trace": trace.nbytes()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def viewer_timing(directory, repeats):
    """Warm viewer server (Flask test client, in process): request to first heatmap bytes for
    unseen ≤ 64-token sentences, and the bytes of one head at 1,024 tokens."""
    try:
        from viewer import create_app
    except ImportError:   # the viewer is not installed with this copy of gpt2np
        return None
    client = create_app({"MODEL": str(directory)}).test_client()
    client.post("/api/run", json={"ids": [1, 2, 3]})
    times = []
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        ids = rng.integers(0, 50257, 45).tolist()          # a new sentence: not in the cache
        t0 = time.perf_counter()
        handle = client.post("/api/run", json={"ids": ids}).get_json()["handle"]
        data = client.get(f"/api/runs/{handle}/pattern?layer=0&head=0").data
        times.append(time.perf_counter() - t0)
        assert data
    handle = client.post("/api/run", json={"ids": list(range(1024))}).get_json()["handle"]
    head_bytes = len(client.get(f"/api/runs/{handle}/pattern?layer=11&head=11").data)
    return {"first_heatmap_s": float(np.median(times)), "head_bytes_1024": head_bytes}


def matrix_products(params, config):
    """The forward pass's matrix products alone, on the same shapes: per layer Q/K/V, the attention
    output projection and the MLP's two layers, then the LM head. Returns a function T -> two
    callables (gpt2np's split `linear` on NumPy's BLAS, and torch.addmm), so both libraries'
    products can be compared with their whole forward passes. The weights are copied for torch
    once, here, not once per length."""
    import torch

    from .engine import CPU, one_blas_thread
    layers = [(params[f"h.{i}.{name}.weight"], params[f"h.{i}.{name}.bias"])
              for i in range(config.n_layer)
              for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    wte = params["wte.weight"]
    t_layers = [(torch.tensor(np.asarray(w)), torch.tensor(np.asarray(b))) for w, b in layers]
    t_wte = torch.tensor(np.asarray(wte))

    def for_length(T):
        rng = np.random.default_rng(T)
        inputs = {n: rng.standard_normal((T, n), dtype=np.float32) for n in {w.shape[0] for w, _ in layers}}
        t_inputs = {n: torch.tensor(x) for n, x in inputs.items()}

        def ours():
            with one_blas_thread():
                for w, b in layers:
                    CPU.linear(inputs[w.shape[0]], w, b)
                CPU.linear(inputs[wte.shape[1]], wte.T)

        def theirs():
            with torch.no_grad():
                for w, b in t_layers:
                    torch.addmm(b, t_inputs[w.shape[0]], w)
                t_inputs[t_wte.shape[1]] @ t_wte.T
        return ours, theirs
    return for_length


def machine_line():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, NumPy "
            f"{np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gpt2np.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per implementation and length")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)

    try:
        import torch
        from transformers import GPT2LMHeadModel
    except ImportError:
        print("The benchmark needs the test extra: pip install -e \".[test]\"", file=sys.stderr)
        return 2
    import gpt2np

    results = {"machine": machine_line(), "forward": []}
    print(results["machine"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        print("saving a random GPT-2 small (124M) ...", flush=True)
        save_random_gpt2(tmp)
        file_mb = (Path(tmp) / "model.safetensors").stat().st_size / 1e6

        load_ours = median_time(lambda: gpt2np.load(tmp), 3)
        load_theirs = median_time(lambda: GPT2LMHeadModel.from_pretrained(
            tmp, attn_implementation="eager", dtype=torch.float32), 3)
        results["load"] = {"file_mb": file_mb, "gpt2np_s": load_ours, "transformers_s": load_theirs}
        print(f"\nload {file_mb:.0f} MB: gpt2np {load_ours * 1e3:.0f} ms, "
              f"transformers from_pretrained {load_theirs * 1e3:.0f} ms", flush=True)

        ours = gpt2np.load(tmp)
        theirs = GPT2LMHeadModel.from_pretrained(tmp, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
        products = matrix_products(ours.params, ours.config)
        print(f"\nfull-trace forward, median of {args.repeats} interleaved runs; then the same pass's "
              "matrix products alone (no attention, no elementwise work), NumPy's BLAS vs torch's:")
        print(f"{'T':>6} {'gpt2np':>10} {'transformers':>13} {'ratio':>7}   {'products':>10} "
              f"{'torch':>8} {'÷ their forward':>8}")
        for T in args.tokens:
            ids = np.random.default_rng(T).integers(0, 50257, T)
            tids = torch.tensor([ids.tolist()])

            def run_theirs():
                with torch.no_grad():
                    theirs(tids, output_attentions=True, output_hidden_states=True)
            run_ours = lambda: ours.run(ids)  # noqa: E731
            run_ours(), run_theirs()                       # warm-up: page in weights, allocators
            a, b = [], []
            for _ in range(args.repeats):
                a.append(median_time(run_ours, 1))
                b.append(median_time(run_theirs, 1))
            row = {"T": T, "gpt2np_s": float(np.median(a)), "transformers_s": float(np.median(b))}
            row["ratio"] = row["gpt2np_s"] / row["transformers_s"]
            prod_ours, prod_theirs = products(T)
            prod_ours(), prod_theirs()
            c, d = [], []
            for _ in range(args.repeats):
                c.append(median_time(prod_ours, 1))
                d.append(median_time(prod_theirs, 1))
            row["products_gpt2np_s"], row["products_torch_s"] = float(np.median(c)), float(np.median(d))
            results["forward"].append(row)
            print(f"{T:>6} {row['gpt2np_s'] * 1e3:>8.1f}ms {row['transformers_s'] * 1e3:>11.1f}ms "
                  f"{row['ratio']:>6.2f}×   {row['products_gpt2np_s'] * 1e3:>8.1f}ms "
                  f"{row['products_torch_s'] * 1e3:>8.1f}ms {row['products_gpt2np_s'] / row['transformers_s']:>8.2f}×",
                  flush=True)

        bw = read_bandwidth()
        weight_bytes = sum(p.nbytes for p in ours.params.values())
        floor = weight_bytes / bw
        results["bandwidth"] = {"read_GBps": bw / 1e9, "weights_MB": weight_bytes / 1e6, "floor_s": floor}
        t16 = next((r["gpt2np_s"] for r in results["forward"] if r["T"] == 16), None)
        print(f"\nread bandwidth {bw / 1e9:.1f} GB/s; reading the {weight_bytes / 1e6:.0f} MB of "
              f"weights once takes {floor * 1e3:.0f} ms (the floor)"
              + (f"; T=16 forward is {t16 / floor:.1f}× the floor" if t16 else ""))

        view = viewer_timing(tmp, args.repeats)
        if view:
            results["viewer"] = view
            print(f"viewer (warm, in process): request to first heatmap for an unseen 45-token "
                  f"sentence {view['first_heatmap_s'] * 1e3:.0f} ms; one head at 1,024 tokens "
                  f"{view['head_bytes_1024'] / 1e6:.2f} MB on the wire")

        if 1024 in args.tokens:
            mem = peak_memory_child(tmp, 1024)
            budget = mem["weights"] + mem["trace"]
            results["memory"] = mem
            print(f"peak memory at T=1024 (fresh process, load + forward): "
                  f"{mem['peak_growth'] / 1e6:.0f} MB = {mem['peak_growth'] / budget:.2f} × "
                  f"(weights {mem['weights'] / 1e6:.0f} MB + trace {mem['trace'] / 1e6:.0f} MB)")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
