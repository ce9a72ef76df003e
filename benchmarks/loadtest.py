"""Load test of the viewer (issue 24): `python -m viewer` on 127.0.0.1 under concurrent clients.

    python benchmarks/loadtest.py                                  # every scenario, defaults below
    python benchmarks/loadtest.py --clients 8 --seconds 120 --json load.json
    python benchmarks/loadtest.py --scenarios idle-walk abandoned --model path/to/dir

Run by hand, never in CI: it needs minutes, gigabytes and (to build its model) torch and
transformers. Without --model it saves a randomly initialised GPT-2 small once
(`benchmarks.bench.save_random_gpt2`, transformers' own file layout) under --build-dir and reuses it.
Inputs are token ids (random, `--tokens` of them, 992 by default): each client its own, or one
shared by all (`--shared-text`). Every scenario starts a fresh server on a free port of 127.0.0.1,
with its own TMPDIR (so that the files it leaves can be counted), and stops it at the end.

Scenarios:
  load       --clients threads, each: POST /api/run its ids, then round robin over the expensive
             endpoints (walk, attribution, ablate, generate, value, lens, and run again) with a
             fresh layer/head/position each time (no answer comes from a run's memo), for
             --seconds; an evicted handle (404) is counted and the text run again. Meanwhile
             GET /api/model every 0.5 s (its latency is the "cheap answers" figure) and the
             server's RSS. Then 30 s idle and the RSS again.
  abandoned  one run of --tokens ids, then 20 walk requests whose clients close the connection
             at once, then a new short run (8 ids): its time.
  idle-walk  one run of 1,000 ids, then 3 walks (different layer and query) on the idle server.
  kill9      a run of --tokens ids, GET trace.npz, kill -9 of the server as soon as its temporary
             file appears (during the write) and, in a second server, once the first bytes of
             the download arrived: is a file left in its temporary folder?

Safety: only 127.0.0.1; every scenario is bounded in time (--seconds, request timeouts, a drain
limit) and count (--max-requests); if the server's RSS passes --rss-limit-gb (default 12) or the
machine's available memory falls under --min-available-gb, the load stops at once (every client
connection is closed) and the scenario reports "aborted at X GB after Y s"; if the RSS passes the
limit + --kill-margin-gb even so, the server is killed. The server is always stopped on exit.
Output: a markdown table on stdout, and JSON (--json).
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
ENDPOINTS = ("walk", "attribution", "ablate", "generate", "value", "lens", "run")
GB = 1024 ** 3
RETRY_WAIT = 3               # seconds a client waits after a 503 (busy) before its next request

try:
    import psutil
except ImportError:          # RSS from /proc instead
    psutil = None


# -- memory ---------------------------------------------------------------------------------------
def rss(pid):
    """Resident bytes of process `pid` (None once it is gone)."""
    if psutil is not None:
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_memory():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def gb(n):
    return None if n is None else round(n / GB, 2)


# -- the server -----------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`python -m viewer --model DIR` on a free port of 127.0.0.1, its own TMPDIR, its log in a file."""

    def __init__(self, model_dir, cache_mb, work_dir, extra_env=(), trim_probe=False):
        self.port = free_port()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="tmp-", dir=work_dir))
        env = {**os.environ, "TMPDIR": str(self.tmpdir), **dict(extra_env)}
        start = ["-c", TRIM_PROBE, "viewer"] if trim_probe else ["-m", "viewer"]
        command = [sys.executable, *start, "--model", str(model_dir), "--host", HOST,
                   "--port", str(self.port)] + (["--cache-mb", str(cache_mb)] if cache_mb else [])
        self.log = open(Path(work_dir) / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.command = " ".join(command)

    def wait_ready(self, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}; see {self.log.name}")
            try:
                status, _, _ = request(self.port, "GET", "/api/model", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server did not answer within {timeout} s; see {self.log.name}")

    def rss(self):
        return rss(self.proc.pid) if self.proc.poll() is None else None

    def leftovers(self):
        """Files in the server's TMPDIR: (name, bytes)."""
        return [(p.name, p.stat().st_size) for p in self.tmpdir.iterdir() if p.is_file()]

    def open_in_tmpdir(self):
        """Files the server has open in its TMPDIR (named or not: an unlinked file reads "(deleted)")."""
        try:
            fds = os.listdir(f"/proc/{self.proc.pid}/fd")
        except OSError:
            return []
        links = []
        for fd in fds:
            try:
                links.append(os.readlink(f"/proc/{self.proc.pid}/fd/{fd}"))
            except OSError:
                pass
        return [link for link in links if link.startswith(str(self.tmpdir))]

    def trim(self):
        """Ask a server started with trim_probe to call glibc's malloc_trim(0) (SIGUSR1)."""
        os.kill(self.proc.pid, signal.SIGUSR1)

    def kill9(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()


# For --trim-probe (an investigation aid, issue 24 item 5): `python -m viewer` whose main thread
# calls glibc's malloc_trim(0) on SIGUSR1, to measure what it gives back after the load.
TRIM_PROBE = """import ctypes, signal, sys
signal.signal(signal.SIGUSR1, lambda *_: ctypes.CDLL("libc.so.6").malloc_trim(0))
from viewer.cli import main
main(sys.argv[2:])"""


# -- requests -------------------------------------------------------------------------------------
class Connections:
    """The open client connections, so that an abort can close every one of them at once."""

    def __init__(self):
        self.lock, self.open, self.closed = threading.Lock(), set(), False

    def add(self, conn):
        with self.lock:
            if self.closed:
                raise ConnectionAbortedError("load aborted")
            self.open.add(conn)

    def remove(self, conn):
        with self.lock:
            self.open.discard(conn)

    def close_all(self):
        with self.lock:
            self.closed = True
            for conn in self.open:
                try:
                    conn.sock and conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def request(port, method, path, body=None, timeout=600, connections=None):
    """One request on a new connection -> (status, bytes read, seconds)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    if connections is not None:
        connections.add(conn)
    start = time.perf_counter()
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - start
    finally:
        if connections is not None:
            connections.remove(conn)
        conn.close()


def abandon(port, path, body=None):
    """Send a GET (or a POST of JSON `body`) and close the connection at once, without reading an answer."""
    data = b"" if body is None else json.dumps(body).encode()
    head = (f"{'GET' if body is None else 'POST'} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
            + ("" if body is None else f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"))
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(head.encode() + b"\r\n" + data)


def random_ids(rng, n, vocab):
    return [rng.randrange(vocab) for _ in range(n)]


# -- the load scenario ----------------------------------------------------------------------------
class Guard:
    """Samples RSS, the machine's free memory and GET /api/model every `interval` s; trips (closes
    every client connection) above the limits, kills the server above the hard limit."""

    def __init__(self, server, connections, limit, kill_margin, min_available, interval=0.5):
        self.server, self.connections = server, connections
        self.limit, self.hard = limit, limit + kill_margin
        self.min_available, self.interval = min_available, interval
        self.samples, self.model_latency, self.model_status = [], [], {}
        self.aborted = None           # "aborted at X GB after Y s"
        self.killed = False
        self.stop = threading.Event()
        self.start = time.monotonic()
        self.threads = [threading.Thread(target=self.watch, daemon=True),
                        threading.Thread(target=self.sample_model, daemon=True)]
        for t in self.threads:
            t.start()

    def watch(self):
        """RSS and available memory every 0.25 s: trip, then kill, above the limits."""
        while not self.stop.is_set():
            now = time.monotonic() - self.start
            r, avail = self.server.rss(), available_memory() or 99 * GB
            if r is None:
                return
            self.samples.append((now, r))
            if self.aborted is None and (r > self.limit or avail < self.min_available):
                why = f"RSS over {gb(self.limit)} GB" if r > self.limit else f"available memory {gb(avail)} GB"
                self.aborted = f"aborted at {gb(r)} GB after {now:.0f} s ({why})"
                self.connections.close_all()
            if r > self.hard or avail < self.min_available / 2:
                self.killed = True
                self.server.kill9()
                self.aborted = (self.aborted or "") + f"; server killed at {gb(r)} GB after {now:.0f} s"
                return
            self.stop.wait(0.25)

    def sample_model(self):
        """GET /api/model every `interval` s: the latency of an answer that needs no forward pass."""
        while not self.stop.is_set() and self.server.proc.poll() is None:
            try:
                status, _, seconds = request(self.server.port, "GET", "/api/model", timeout=60)
                self.model_status[status] = self.model_status.get(status, 0) + 1
                self.model_latency.append(seconds)
            except (OSError, http.client.HTTPException) as e:
                self.model_status[type(e).__name__] = self.model_status.get(type(e).__name__, 0) + 1
            self.stop.wait(self.interval)

    def peak(self):
        return max((r for _, r in self.samples), default=None)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def client(k, port, args, ids, deadline, results, counter, connections, layers, heads):
    """One client: run its ids, then the endpoints in turn until the deadline."""
    rng = random.Random(1000 + k)
    T = len(ids)
    handle = None

    def call(endpoint, method, path, body=None):
        with counter["lock"]:
            if counter["n"] >= args.max_requests:
                return None, None
            counter["n"] += 1
        try:
            status, data, seconds = request(port, method, path, body, args.request_timeout, connections)
        except (OSError, http.client.HTTPException) as e:
            results.append((endpoint, "cut by the load test" if connections.closed else type(e).__name__, None))
            return None, None
        results.append((endpoint, status, seconds))
        return status, data

    def run():
        status, data = call("run", "POST", "/api/run", {"ids": ids})
        if status == 503:
            time.sleep(RETRY_WAIT)
        if status != 200:
            return None
        handle = json.loads(data)["handle"]
        counter.setdefault("handles", []).append(handle)
        return handle

    order = list(ENDPOINTS)
    rng.shuffle(order)
    i = 0
    while time.monotonic() < deadline and not connections.closed and counter["n"] < args.max_requests:
        if handle is None:
            handle = run()
            if handle is None:
                time.sleep(0.5)           # refused or failed: do not spin
            continue
        endpoint = order[i % len(order)]
        i += 1
        layer, head, q = rng.randrange(layers), rng.randrange(heads), rng.randrange(T)
        base = f"/api/runs/{handle}"
        if endpoint == "run":
            handle = run()
            continue
        status, _ = {
            "walk": lambda: call("walk", "GET", f"{base}/walk?layer={layer}&head={head}&query={q}"),
            "attribution": lambda: call("attribution", "GET", f"{base}/attribution?position={q}"),
            "ablate": lambda: call("ablate", "POST", f"{base}/ablate",
                                   {"heads": f"{layer}.{head}", "mode": "zero", "position": q}),
            "generate": lambda: call("generate", "POST", f"{base}/generate",
                                     {"tokens": args.generate_tokens, "seed": rng.randrange(2**31)}),
            "value": lambda: call("value", "GET", f"{base}/value?layer={layer}&head={head}&query={q}"),
            "lens": lambda: call("lens", "GET", f"{base}/lens?position={q}"),
        }[endpoint]()
        if status == 404:
            handle = None                 # evicted: run the text again
        elif status == 503:
            time.sleep(RETRY_WAIT)        # busy: wait as the page's user would, then go on
        elif status is None and connections.closed:
            break


def latency_summary(seconds):
    if not seconds:
        return {"median_s": None, "p95_s": None, "max_s": None}
    s = sorted(seconds)
    return {"median_s": round(statistics.median(s), 3), "p95_s": round(s[min(len(s) - 1, int(0.95 * len(s)))], 3),
            "max_s": round(s[-1], 3)}


def cache_bytes(port, handles):
    """The bytes the server's run cache holds, as GET /api/runs/<handle> reports it (any handle
    still cached), or None."""
    for handle in reversed(handles):
        try:
            status, data, _ = request(port, "GET", f"/api/runs/{handle}", timeout=30)
        except (OSError, http.client.HTTPException):
            return None
        if status == 200:
            return json.loads(data)["cache"]["bytes"]
    return None


def scenario_load(args, model_dir, vocab, layers, heads):
    server = Server(model_dir, args.cache_mb, args.work_dir, args.server_env, args.trim_probe)
    try:
        server.wait_ready()
        time.sleep(2)
        idle_before = server.rss()
        connections = Connections()
        guard = Guard(server, connections, args.rss_limit_gb * GB, args.kill_margin_gb * GB,
                      args.min_available_gb * GB)
        rng = random.Random(0)
        shared = random_ids(rng, args.tokens, vocab)
        texts = [shared if args.shared_text else random_ids(rng, args.tokens, vocab) for _ in range(args.clients)]
        results, counter = [], {"n": 0, "lock": threading.Lock()}
        start = time.monotonic()
        deadline = start + args.seconds
        threads = [threading.Thread(target=client, daemon=True,
                                    args=(k, server.port, args, texts[k], deadline, results, counter,
                                          connections, layers, heads)) for k in range(args.clients)]
        for t in threads:
            t.start()
        while time.monotonic() < deadline and not connections.closed and any(t.is_alive() for t in threads):
            time.sleep(0.5)
        load_seconds = time.monotonic() - start
        drain_deadline = time.monotonic() + args.drain_seconds     # answers still under way
        for t in threads:
            t.join(max(0.0, drain_deadline - time.monotonic()))
        connections.close_all()
        for t in threads:
            t.join(10)
        drained = time.monotonic() - start
        time.sleep(args.after_seconds)
        after = server.rss()
        cache_after = cache_bytes(server.port, counter.get("handles", []))
        trimmed = None
        if args.trim_probe and server.proc.poll() is None:
            server.trim()
            time.sleep(5)
            trimmed = server.rss()
        guard.close()
        by_endpoint = {}
        for endpoint, status, seconds in results:
            row = by_endpoint.setdefault(endpoint, {"served": 0, "codes": {}, "seconds": []})
            row["codes"][str(status)] = row["codes"].get(str(status), 0) + 1
            if status == 200:
                row["served"] += 1
            if seconds is not None:
                row["seconds"].append(seconds)
        endpoints = {e: {"served": r["served"], "codes": r["codes"], **latency_summary(r["seconds"])}
                     for e, r in sorted(by_endpoint.items())}
        return {"scenario": "load", "clients": args.clients, "shared_text": args.shared_text,
                "tokens": args.tokens, "seconds": args.seconds, "load_seconds": round(load_seconds, 1),
                "drained_after_s": round(drained, 1), "requests": len(results),
                "aborted": guard.aborted, "server_killed": guard.killed,
                "rss_idle_before_gb": gb(idle_before), "rss_peak_gb": gb(guard.peak()),
                f"rss_{args.after_seconds}s_after_gb": gb(after), "rss_after_malloc_trim_gb": gb(trimmed),
                "cache_after_gb": gb(cache_after),
                "api_model": {"n": len(guard.model_latency), "codes": guard.model_status,
                              **latency_summary(guard.model_latency)},
                "endpoints": endpoints, "leftover_files": server.leftovers(), "server": server.command}
    finally:
        server.stop()


def scenario_abandoned(args, model_dir, vocab, layers, heads, n=20):
    server = Server(model_dir, args.cache_mb, args.work_dir, args.server_env)
    try:
        server.wait_ready()
        rng = random.Random(1)
        status, data, run_s = request(server.port, "POST", "/api/run", {"ids": random_ids(rng, args.tokens, vocab)})
        handle = json.loads(data)["handle"]
        peak = server.rss()
        out = {"scenario": "abandoned", "abandoned_walks": n, "tokens": args.tokens, "first_run_s": round(run_s, 2)}
        for what in ("walk", "generate"):            # generate: work that waits for the model
            for i in range(n):
                if what == "walk":
                    abandon(server.port, f"/api/runs/{handle}/walk?layer={i % layers}&head={i % heads}&query={10 + i}")
                else:
                    abandon(server.port, f"/api/runs/{handle}/generate", {"tokens": args.generate_tokens, "seed": i})
            start = time.perf_counter()
            try:
                status, data, seconds = request(server.port, "POST", "/api/run", {"ids": random_ids(rng, 8, vocab)},
                                                timeout=args.request_timeout)
            except TimeoutError:
                status, seconds = f"timed out after {args.request_timeout:.0f} s", time.perf_counter() - start
            key = "" if what == "walk" else "after_generates_"
            out[f"new_short_run_{key}s"], out[f"new_short_run_{key}status"] = round(seconds, 2), status
            peak = max(peak or 0, server.rss() or 0)
        return {**out, "rss_after_gb": gb(peak), "server": server.command}
    finally:
        server.stop()


def scenario_idle_walk(args, model_dir, vocab, layers, heads, T=1000):
    T = min(T, args.n_positions)
    server = Server(model_dir, args.cache_mb, args.work_dir, args.server_env)
    try:
        server.wait_ready()
        rng = random.Random(2)
        _, data, run_s = request(server.port, "POST", "/api/run", {"ids": random_ids(rng, T, vocab)})
        handle = json.loads(data)["handle"]
        times, codes = [], []
        for layer, query in ((0, T - 1), (layers // 2, T // 2), (layers - 1, 17)):
            path = f"/api/runs/{handle}/walk?layer={layer}&head=0&query={query}"
            status, _, seconds = request(server.port, "GET", path)
            codes.append(status)
            times.append(seconds)
        return {"scenario": "idle-walk", "tokens": T, "run_s": round(run_s, 2),
                "walk_s": [round(t, 3) for t in times], "walk_median_s": round(statistics.median(times), 3),
                "codes": codes, "server": server.command}
    finally:
        server.stop()


def scenario_kill9(args, model_dir, vocab):
    out = {"scenario": "kill9", "tokens": args.tokens, "moments": {}}
    for moment in ("while writing the temporary file", "after the first bytes were sent"):
        server = Server(model_dir, args.cache_mb, args.work_dir, args.server_env)
        try:
            server.wait_ready()
            rng = random.Random(3)
            _, data, _ = request(server.port, "POST", "/api/run", {"ids": random_ids(rng, args.tokens, vocab)})
            handle = json.loads(data)["handle"]
            conn = http.client.HTTPConnection(HOST, server.port, timeout=args.request_timeout)
            conn.request("GET", f"/api/runs/{handle}/trace.npz")
            deadline = time.monotonic() + args.request_timeout
            if moment.startswith("while"):
                while not (any(size for _, size in server.leftovers()) or server.open_in_tmpdir()) \
                        and time.monotonic() < deadline:
                    time.sleep(0.005)                 # until the file is open (or a part of it written)
            else:
                response = conn.getresponse()
                response.read(1 << 20)
            seen = server.leftovers() + [(link, None) for link in server.open_in_tmpdir()]
            server.kill9()
            conn.close()
            left = server.leftovers()
            out["moments"][moment] = {"files_seen_before_kill": seen, "files_left": left,
                                      "bytes_left": sum(size for _, size in left)}
            for name, _ in left:                      # ours: the server ran with this TMPDIR
                (server.tmpdir / name).unlink()
        finally:
            server.stop()
    return out


# -- report ---------------------------------------------------------------------------------------
def markdown(report):
    lines = []
    for s in report["scenarios"]:
        if s["scenario"] == "load":
            text = "shared text" if s["shared_text"] else "own texts"
            lines += [f"### load: {s['clients']} clients, {text}, {s['tokens']} tokens, {s['seconds']} s"
                      + (f" — **{s['aborted']}**" if s["aborted"] else ""), "",
                      "| endpoint | served | codes | median s | p95 s | max s |", "|---|---|---|---|---|---|"]
            for e, r in s["endpoints"].items():
                codes = ", ".join(f"{c}: {n}" for c, n in sorted(r["codes"].items()))
                lines.append(f"| {e} | {r['served']} | {codes} | {r['median_s']} | {r['p95_s']} | {r['max_s']} |")
            m = s["api_model"]
            lines.append(f"| `/api/model` (sampled) | {m['n']} | "
                         f"{', '.join(f'{c}: {n}' for c, n in m['codes'].items())} | {m['median_s']} | "
                         f"{m['p95_s']} | {m['max_s']} |")
            after = next(v for k, v in s.items() if k.startswith("rss_") and k.endswith("s_after_gb"))
            lines += ["", f"RSS idle before {s['rss_idle_before_gb']} GB, peak {s['rss_peak_gb']} GB, "
                          f"after the load (+{report['args']['after_seconds']} s) {after} GB"
                          + (f" (the run cache holding {s['cache_after_gb']} GB of it)"
                             if s.get("cache_after_gb") is not None else "")
                          + (f", after malloc_trim(0) {s['rss_after_malloc_trim_gb']} GB"
                             if s.get("rss_after_malloc_trim_gb") is not None else "") + "; "
                          f"{s['requests']} requests, all answered or closed {s['drained_after_s']} s "
                          "after the start.", ""]
        elif s["scenario"] == "abandoned":
            lines += [f"**{s['abandoned_walks']} abandoned walks, then a new short run**: "
                      f"{s['new_short_run_s']} s (status {s['new_short_run_status']}).", ""]
            if "new_short_run_after_generates_s" in s:
                lines += [f"**{s['abandoned_walks']} abandoned generates, then a new short run**: "
                          f"{s['new_short_run_after_generates_s']} s "
                          f"(status {s['new_short_run_after_generates_status']}).", ""]
        elif s["scenario"] == "idle-walk":
            lines += [f"**walk at {s['tokens']} tokens, idle server**: median {s['walk_median_s']} s "
                      f"({', '.join(map(str, s['walk_s']))}; codes {s['codes']}).", ""]
        elif s["scenario"] == "kill9":
            for moment, r in s["moments"].items():
                left = (f"{len(r['files_left'])} file(s) left, {gb(r['bytes_left'])} GB: "
                        f"{', '.join(n for n, _ in r['files_left'])}") if r["files_left"] else "nothing left"
                lines.append(f"**kill -9 during a trace.npz download, {moment}**: {left}.")
            lines.append("")
    return "\n".join(lines)


def build_model(build_dir):
    directory = Path(build_dir) / "gpt2-random"
    if not (directory / "config.json").exists():
        from benchmarks.bench import save_random_gpt2
        print(f"saving a random GPT-2 small to {directory} (once)", file=sys.stderr)
        save_random_gpt2(directory)
    return directory


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model directory (default: a random GPT-2 small built once in --build-dir)")
    p.add_argument("--build-dir", default=str(Path(tempfile.gettempdir()) / "gpt2np-load"))
    p.add_argument("--work-dir", help="server logs and TMPDIRs (default: a new folder in --build-dir)")
    p.add_argument("--scenarios", nargs="+", default=["load", "abandoned", "idle-walk", "kill9"],
                   choices=["load", "abandoned", "idle-walk", "kill9"])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=120, help="length of the load (default 120)")
    p.add_argument("--tokens", type=int, default=992, help="ids per text (default 992)")
    p.add_argument("--shared-text", action="store_true", help="every client sends the same ids")
    p.add_argument("--generate-tokens", type=int, default=8)
    p.add_argument("--cache-mb", type=int, help="the server's --cache-mb (default: its own)")
    p.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="extra environment of the server, e.g. MALLOC_ARENA_MAX=2")
    p.add_argument("--trim-probe", action="store_true",
                   help="load scenario: after the RSS after the load, have the server call malloc_trim(0) "
                        "(glibc) and measure again")
    p.add_argument("--rss-limit-gb", type=float, default=12.0, help="abort the load above this RSS (default 12)")
    p.add_argument("--kill-margin-gb", type=float, default=3.0,
                   help="kill the server at --rss-limit-gb plus this (default 3)")
    p.add_argument("--min-available-gb", type=float, default=3.0,
                   help="abort when the machine's available memory falls under this (default 3)")
    p.add_argument("--max-requests", type=int, default=5000)
    p.add_argument("--request-timeout", type=float, default=300)
    p.add_argument("--drain-seconds", type=float, default=180, help="wait at most this for answers under way")
    p.add_argument("--after-seconds", type=int, default=30, help="idle time before the RSS after the load")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    args.server_env = [tuple(kv.split("=", 1)) for kv in args.server_env]
    return args


def main(argv=None):
    args = parse_args(argv)
    model_dir = Path(args.model) if args.model else build_model(args.build_dir)
    Path(args.build_dir).mkdir(parents=True, exist_ok=True)
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="run-", dir=args.build_dir)
    config = json.loads((model_dir / "config.json").read_text())
    vocab, layers, heads = config["vocab_size"], config["n_layer"], config["n_head"]
    args.n_positions = config["n_positions"]
    args.tokens = min(args.tokens, args.n_positions - args.generate_tokens)
    report = {"command": " ".join([sys.executable, *sys.argv]), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "model": str(model_dir), "cpus": os.cpu_count(),
              "args": {**{k: v for k, v in vars(args).items() if k != "server_env"},
                       "server_env": dict(args.server_env)},
              "scenarios": []}
    for name in args.scenarios:
        print(f"scenario {name} …", file=sys.stderr, flush=True)
        if name == "load":
            result = scenario_load(args, model_dir, vocab, layers, heads)
        elif name == "abandoned":
            result = scenario_abandoned(args, model_dir, vocab, layers, heads)
        elif name == "idle-walk":
            result = scenario_idle_walk(args, model_dir, vocab, layers, heads)
        else:
            result = scenario_kill9(args, model_dir, vocab)
        report["scenarios"].append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
