"""Benchmark: gpt2np's full-trace forward pass against transformers' eager forward, each in its own process.

    python -m benchmarks.bench                  # T = 16, 64, 256, 1024; about 10 minutes on 2 cores
    python -m benchmarks.bench --tokens 16 64 --repeats 3 --json bench.json

Needs no download: it saves a randomly initialised GPT-2 small (transformers' GPT2LMHeadModel,
124M parameters) to a temporary directory, and every implementation loads that one file.

Every implementation runs in a worker process of its own (`IMPLEMENTATIONS`), kept for the whole
benchmark. The parent sends "run T now" to one worker at a time and waits for its time, pausing
between workers: BLAS and OpenMP worker threads spin for a while after a call, and in a shared
process they would slow the next library's call. Each round runs every worker once, in turn (the
order reversed every other round); after one untimed warm-up per length, medians over the rounds
are reported with the fastest and slowest run. Then the same rounds are repeated for
`BUSY_IMPLEMENTATIONS` while one more process spins on a core (`busy_core`).

Also measured: load time (the first load in a fresh process), the read bandwidth and so the time to
read the weights once, peak memory at T=1024 in a fresh process, and the viewer's time from request
to first heatmap bytes. Timing is for reading, never for pass/fail tests. transformers and torch
are needed here only.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

IMPLEMENTATIONS = {     # worker name -> what it times, at GPT-2 small's shapes
    "fast": "gpt2np, engine \"fast\": full trace, in a workspace the last trace was given back to",
    "reference": "gpt2np, engine \"reference\" (model.py's plain math, NumPy's default BLAS threads): full trace",
    "transformers": "transformers eager forward with output_attentions and output_hidden_states",
    "products_numpy": "the pass's matrix products alone, x @ W + b in NumPy, default BLAS threads",
    "products_engine": "the same products split by engine.CPU.linear, BLAS on one thread",
    "products_torch": "the same products with torch.addmm, torch's default threads",
}
BUSY_IMPLEMENTATIONS = ("fast", "transformers", "products_numpy")
# Seconds between two workers' runs: spinning BLAS/OpenMP threads of the last one go to sleep.
PAUSE = 0.25
# Environment variables that choose OpenBLAS's kernels; unset for the workers so that each
# library picks its kernels for this CPU itself (the workers report which ones run).
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def token_ids(T):
    return np.random.default_rng(T).integers(0, 50257, T)


def save_random_gpt2(directory):
    """A randomly initialised GPT-2 small, saved by transformers (its own file layout)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory)


# --- in a worker process ---------------------------------------------------------------------

def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def setup(impl, directory):
    """Load what `impl` needs. -> (load seconds, function T -> the call to time)"""
    import gpt2np
    if impl in ("fast", "reference"):
        model, load_s = timed(lambda: gpt2np.load(directory, engine=impl))
        workspace = gpt2np.Workspace()        # each trace given back: the next run writes its arrays

        def for_length(T):
            ids = token_ids(T)
            return lambda: workspace.give_back(model.run(ids, workspace=workspace))
        return load_s, for_length
    if impl == "transformers":
        import torch
        from transformers import GPT2LMHeadModel
        model, load_s = timed(lambda: GPT2LMHeadModel.from_pretrained(
            directory, attn_implementation="eager", dtype=torch.float32).eval())

        def for_length(T):
            ids = torch.tensor([token_ids(T).tolist()])

            def run():
                with torch.no_grad():
                    model(ids, output_attentions=True, output_hidden_states=True)
            return run
        return load_s, for_length
    model, load_s = timed(lambda: gpt2np.load(directory))
    return load_s, matrix_products(model.params, model.config, impl.removeprefix("products_"))


def matrix_products(params, config, library):
    """The forward pass's matrix products alone, on the same shapes: per layer Q/K/V, the attention
    output projection and the MLP's two layers, then the LM head. -> function T -> the call.
    library: "numpy" (x @ W + b), "engine" (engine.CPU.linear) or "torch" (torch.addmm)."""
    layers = [(params[f"h.{i}.{name}.weight"], params[f"h.{i}.{name}.bias"])
              for i in range(config.n_layer)
              for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    head = params["wte.weight"].T                                          # [d, V]
    if library == "torch":
        import torch
        layers = [(torch.tensor(np.asarray(w)), torch.tensor(np.asarray(b))) for w, b in layers]
        head = torch.tensor(np.asarray(head.T)).T

    def for_length(T):
        rng = np.random.default_rng(T)
        inputs = {n: rng.standard_normal((T, n), dtype=np.float32) for n in {w.shape[0] for w, _ in layers}}
        if library == "numpy":
            def run():
                for w, b in layers:
                    inputs[w.shape[0]] @ w + b
                inputs[head.shape[0]] @ head
        elif library == "engine":
            from gpt2np.engine import CPU, one_blas_thread

            def run():
                with one_blas_thread():
                    for w, b in layers:
                        CPU.linear(inputs[w.shape[0]], w, b)
                    CPU.linear(inputs[head.shape[0]], head)
        else:
            import torch
            t_inputs = {n: torch.tensor(x) for n, x in inputs.items()}

            def run():
                with torch.no_grad():
                    for w, b in layers:
                        torch.addmm(b, t_inputs[w.shape[0]], w)
                    t_inputs[head.shape[0]] @ head
        return run
    return for_length


def thread_pools():
    """The BLAS and OpenMP libraries loaded in this process, as short strings."""
    from threadpoolctl import threadpool_info
    return [" ".join(filter(None, [p["internal_api"], p.get("version")]))
            + (f" ({p['architecture']} kernels)" if p.get("architecture") else "")
            + f", {p['num_threads']} threads" for p in threadpool_info()]


def worker(impl, directory):
    """Answer one JSON line per command read from stdin: {"T": n} -> {"s": seconds of one run};
    {"T": n, "warm": true} prepares length n and runs it once untimed. Ends at end of input."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                       # whatever the libraries print goes to stderr, not into the replies
    load_s, for_length = setup(impl, directory)
    reply.write(json.dumps({"load_s": load_s, "pools": thread_pools()}) + "\n")
    run = None
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("warm"):
            run = None                  # drop the previous length's inputs first
            run = for_length(command["T"])
            run()
            reply.write(json.dumps({"ok": True}) + "\n")
        else:
            reply.write(json.dumps({"s": timed(run)[1]}) + "\n")
    return 0


# --- in the parent process -------------------------------------------------------------------

class Worker:
    """One implementation in a process of its own, answering commands over a pipe."""

    def __init__(self, impl, directory, env):
        self.impl = impl
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench", "--worker", impl, str(directory)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self.receive()

    def receive(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"The benchmark's {self.impl!r} worker stopped (exit code "
                               f"{self.proc.wait()}); its error is printed above.")
        return json.loads(line)

    def ask(self, **command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def worker_env():
    """The environment for worker processes: this one, with gpt2np importable from where this
    copy lives, and without OpenBLAS kernel overrides."""
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    return env


@contextmanager
def busy_core(seconds=1800):
    """One more process spinning on a core while the block runs (ended after it, or after
    `seconds`, or when this process is gone)."""
    loop = (f"import os, time\nparent, end = os.getppid(), time.monotonic() + {seconds}\n"
            "while time.monotonic() < end and os.getppid() == parent:\n    pass\n")
    proc = subprocess.Popen([sys.executable, "-c", loop])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def cpu_ticks(pids):
    """(CPU ticks the whole machine has spent busy, ticks spent by the processes `pids`, ticks
    stolen: taken by the hypervisor for other virtual machines), read from /proc (Linux; None
    elsewhere). Stolen ticks count as busy."""
    try:
        machine = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        ours = 0
        for pid in pids:   # utime and stime: fields 14 and 15, counted after the ")" that ends the name
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ours += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return sum(machine) - machine[3] - machine[4], ours, machine[7]    # busy: all but idle and iowait


def others_share(before, after, seconds):
    """Fractions of the machine's CPU time that (processes other than the benchmark's, and of
    those the hypervisor's steal) used."""
    if before is None or after is None:
        return None, None
    per_tick = 1 / os.sysconf("SC_CLK_TCK") / (seconds * os.cpu_count())
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others * per_tick), max(0.0, (after[2] - before[2]) * per_tick)


def rounds(workers, tokens, repeats):
    """Seconds per implementation and length: {impl: {T: [one run per round]}}. Each round asks
    every worker for one run, one worker at a time, the order reversed every other round."""
    times = {w.impl: {T: [] for T in tokens} for w in workers}
    for T in tokens:
        for w in workers:
            w.ask(T=T, warm=True)
            time.sleep(PAUSE)
        t0 = time.monotonic()
        for r in range(repeats):
            for w in (workers if r % 2 == 0 else workers[::-1]):
                times[w.impl][T].append(w.ask(T=T)["s"])
                time.sleep(PAUSE)
        print(f"  T = {T}: {repeats} rounds in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return times


def summary(runs):
    return {"median_s": float(np.median(runs)), "min_s": float(min(runs)), "max_s": float(max(runs)),
            "runs_s": [float(s) for s in runs]}


def read_bandwidth(n_bytes=1 << 30, repeats=5):
    """Bytes per second a NumPy reduction reads from memory (best of several passes)."""
    a = np.ones(n_bytes // 4, dtype=np.float32)
    return n_bytes / min(timed(a.sum)[1] for _ in range(repeats))


def peak_memory_child(directory, T, env):
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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def viewer_timing(directory, repeats):
    """Warm viewer server (Flask test client, in this process): request to first heatmap bytes for
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


def machine(pools):
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    import transformers
    return {"cpu": f"{cpu}, {os.cpu_count()} cores", "date": datetime.date.today().isoformat(),
            "versions": f"Python {platform.python_version()}, NumPy {np.__version__}, torch "
                        f"{torch.__version__}" + (" with MKL" if torch.backends.mkl.is_available() else "")
                        + f", transformers {transformers.__version__}",
            "pools": pools}


def ms(s):
    return f"{s * 1e3:,.1f}"


def print_table(results, phase):
    title = {"quiet": "quiet", "busy": "with one more process spinning on a core"}[phase]
    print(f"\n{title}: median ms of {results['repeats']} rounds (fastest–slowest run)")
    print(f"{'':>16} " + " ".join(f"{'T = ' + str(row['T']):>24}" for row in results["forward"]))
    for impl in results["forward"][0][phase]:
        cells = [f"{ms(c['median_s'])} ({ms(c['min_s'])}–{ms(c['max_s'])})"
                 for c in (row[phase][impl] for row in results["forward"])]
        print(f"{impl:>16} " + " ".join(f"{c:>24}" for c in cells), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--repeats", type=int, default=7,
                   help="timed rounds per length (each runs every implementation once)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(*args.worker)

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print("The benchmark needs the test extra: pip install -e \".[test]\"", file=sys.stderr)
        return 2
    import gpt2np

    env = worker_env()
    unset = [k for k in OPENBLAS_OVERRIDES if k in os.environ]
    results = {"repeats": args.repeats, "pause_s": PAUSE, "implementations": IMPLEMENTATIONS,
               "unset_for_workers": unset, "forward": [{"T": T, "quiet": {}, "busy": {}} for T in args.tokens]}
    with tempfile.TemporaryDirectory() as tmp:
        print("saving a random GPT-2 small (124M) ...", flush=True)
        save_random_gpt2(tmp)
        file_mb = (Path(tmp) / "model.safetensors").stat().st_size / 1e6
        workers = [Worker(impl, tmp, env) for impl in IMPLEMENTATIONS]
        try:
            results["machine"] = machine({w.impl: w.info["pools"] for w in workers})
            print("\n".join([results["machine"]["cpu"], results["machine"]["versions"]]
                            + [f"  {w.impl}: {'; '.join(w.info['pools'])}" for w in workers]))
            if unset:
                print(f"  ({', '.join(unset)} unset for the worker processes)")
            load = {w.impl: w.info["load_s"] for w in workers}
            results["load"] = {"file_mb": file_mb, "gpt2np_s": load["fast"], "transformers_s": load["transformers"]}
            print(f"\nload {file_mb:.0f} MB, first load in a fresh process: gpt2np {ms(load['fast'])} ms, "
                  f"transformers from_pretrained {ms(load['transformers'])} ms")
            print("\n".join(f"  {impl:>16}: {text}" for impl, text in IMPLEMENTATIONS.items()))

            busy = [w for w in workers if w.impl in BUSY_IMPLEMENTATIONS]
            for phase, chosen in (("quiet", workers), ("busy", busy)):
                with busy_core() if phase == "busy" else nullcontext() as spinner:
                    pids = [os.getpid()] + [w.proc.pid for w in workers] + ([spinner.pid] if spinner else [])
                    t0, before = time.monotonic(), cpu_ticks(pids)
                    times = rounds(chosen, args.tokens, args.repeats)
                    results[f"others_cpu_{phase}"], results[f"steal_{phase}"] = others_share(
                        before, cpu_ticks(pids), time.monotonic() - t0)
                for row in results["forward"]:
                    row[phase] = {impl: summary(by_T[row["T"]]) for impl, by_T in times.items()}
                print_table(results, phase)
        finally:
            for w in workers:
                w.close()

        def med(row, phase, impl):
            return row[phase][impl]["median_s"]

        print("\nratios of medians:")
        print(f"{'T':>6} {'fast ÷ transformers':>20} {'fast ÷ NumPy products':>22} "
              f"{'reference ÷ fast':>17} {'busy ÷ quiet: fast':>19} {'transformers':>13} {'NumPy products':>15}")
        for row in results["forward"]:
            row["ratios"] = {
                "fast/transformers": med(row, "quiet", "fast") / med(row, "quiet", "transformers"),
                "fast/products_numpy": med(row, "quiet", "fast") / med(row, "quiet", "products_numpy"),
                "reference/fast": med(row, "quiet", "reference") / med(row, "quiet", "fast"),
                "fast busy/quiet": med(row, "busy", "fast") / med(row, "quiet", "fast"),
                "transformers busy/quiet": med(row, "busy", "transformers") / med(row, "quiet", "transformers"),
                "products_numpy busy/quiet": med(row, "busy", "products_numpy") / med(row, "quiet", "products_numpy"),
            }
            r = row["ratios"]
            print(f"{row['T']:>6} {r['fast/transformers']:>19.2f}× {r['fast/products_numpy']:>21.2f}× "
                  f"{r['reference/fast']:>16.2f}× {r['fast busy/quiet']:>18.2f}× "
                  f"{r['transformers busy/quiet']:>12.2f}× "
                  f"{r['products_numpy busy/quiet']:>14.2f}×")
        if results["others_cpu_quiet"] is not None:
            print("CPU time used by other processes on this machine while timing: "
                  + ", ".join(f"{results[f'others_cpu_{phase}']:.0%} ({phase}; stolen by the hypervisor: "
                              f"{results[f'steal_{phase}']:.0%})" for phase in ("quiet", "busy")))

        bw = read_bandwidth()
        weight_bytes = sum(p.nbytes for p in gpt2np.load(tmp).params.values())
        floor = weight_bytes / bw
        results["bandwidth"] = {"read_GBps": bw / 1e9, "weights_MB": weight_bytes / 1e6, "floor_s": floor}
        t16 = next((row["quiet"]["fast"]["median_s"] for row in results["forward"] if row["T"] == 16), None)
        print(f"\nread bandwidth {bw / 1e9:.1f} GB/s; reading the {weight_bytes / 1e6:.0f} MB of "
              f"weights once takes {floor * 1e3:.0f} ms (the floor)"
              + (f"; T=16 fast forward is {t16 / floor:.1f}× the floor" if t16 else ""))

        view = viewer_timing(tmp, args.repeats)
        if view:
            results["viewer"] = view
            print(f"viewer (warm, in process): request to first heatmap for an unseen 45-token "
                  f"sentence {ms(view['first_heatmap_s'])} ms; one head at 1,024 tokens "
                  f"{view['head_bytes_1024'] / 1e6:.2f} MB on the wire")

        if 1024 in args.tokens:
            mem = peak_memory_child(tmp, 1024, env)
            results["memory"] = mem
            print(f"peak memory at T=1024 (fresh process, load + forward): "
                  f"{mem['peak_growth'] / 1e6:.0f} MB = {mem['peak_growth'] / (mem['weights'] + mem['trace']):.2f} × "
                  f"(weights {mem['weights'] / 1e6:.0f} MB + trace {mem['trace'] / 1e6:.0f} MB)")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stop the workers, remove the saved model
    sys.exit(main())
