"""Hardening of the real server (`python -m viewer` in a subprocess, 127.0.0.1 only): concurrent
users, memory, binding, debug, and what the HTTP layer answers before Flask sees a request.

Concurrency: 8 client threads × 50 requests of mixed sentences (runs, heads, top keys, next
tokens, rows, overviews) against the bundled demo model with a 4 MB run cache. Every answer is
compared with the same computation done here, in this process, after the fact; p50/p95 latency
and the server's memory (VmRSS before/after, VmHWM) are printed and recorded.
"""

import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from demofacts import CONFIG as DEMO
from hostile import FIGURES, record

import gpt2np
from viewer.answers.ledger import pattern_row, query_panel
from viewer.answers.runs import MB, Run, run_handle, trace_bytes
from viewer.answers.wire import f32, lower_triangle_bytes

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
HOST = "127.0.0.1"
CLIENTS, REQUESTS = 8, 50
# Small enough that the load overflows it (older runs evicted), large enough for one forward pass
# of the longest sentence here (32 tokens at most) with the viewer's margin of 1.25.
CACHE_MB = max(4, -(-int(trace_bytes(gpt2np.load("demo").config, 32) * 1.25) // MB))

SUBJECTS = ["Mr. Darcy", "Elizabeth", "Miss Bingley", "The trophy", "Her sister", "Emma",
            "Captain Wentworth", "The carriage"]
VERBS = ["walked into", "looked at", "spoke of", "did not fit in", "waited for"]
OBJECTS = ["the garden.", "the suitcase because it is too big.", "the letter from her mother.",
           "Pemberley.", "the ball at Netherfield, and then laughed."]
SENTENCES = [f"{s} {v} {o}" for s in SUBJECTS for v in VERBS for o in OBJECTS]     # 200



def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`python -m viewer ...` on a free port; stdout and stderr kept in files; stopped by PID."""

    def __init__(self, name, *options, host=None, wait=True):
        ARTIFACTS.mkdir(exist_ok=True)
        self.port = free_port()
        self.out = ARTIFACTS / f"hardening-server-{name}.out"
        self.err = ARTIFACTS / f"hardening-server-{name}.err"
        args = [sys.executable, "-m", "viewer", "--port", str(self.port), *options]
        if host:
            args += ["--host", host]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=err)
        self.base = f"http://{HOST}:{self.port}"
        if wait:
            self.wait_for(lambda: self.listening() is not None, f"{name} did not start")

    def wait_for(self, ready, what, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what}: exited {self.proc.returncode}; {self.err.read_text()[-2000:]}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} within {timeout} s")

    def listening(self):
        """The address this server's port listens on, from /proc/net/tcp (no traffic sent)."""
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                address, port = local.split(":")
                if int(port, 16) == self.port and state == "0A":          # LISTEN
                    return address
        return None

    def rss_kb(self, field="VmRSS"):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server():
    s = Server("demo", "--model", "demo", "--cache-mb", str(CACHE_MB), host=HOST)
    yield s
    s.stop()


def http(base, method, path, body=None, headers=None, timeout=120):
    """(status, headers, body bytes, seconds) — errors are answers too."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if isinstance(body, (dict, list)):
        req.add_header("Content-Type", "application/json")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read(), time.perf_counter() - start
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read(), time.perf_counter() - start


def raw_request(port, data, read=65536, timeout=60):
    """Send raw bytes on one connection, then end it as a client does; the reply's status code,
    head and body. A reply without a status line (http.server answers a request line it cannot
    parse as HTTP/0.9 would: body only) has status None."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        try:
            while chunk := s.recv(read):
                reply += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    if not reply.startswith(b"HTTP/"):
        return None, b"", reply
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


# -- concurrency -----------------------------------------------------------------------------------------
def client(base, seed, log, errors):
    """One user: run a sentence, then look at it (heads, top keys, next tokens, rows), 50 requests."""
    rng = random.Random(seed)
    n, run, current = 0, None, None
    while n < REQUESTS:
        if run is None or rng.random() < 0.2:
            text = rng.choice(SENTENCES)
            status, _, body, dt = http(base, "POST", "/api/run", {"text": text})
            n += 1
            log.append(("run", text, None, status, body, dt))
            if status != 200:
                errors.append(("run", text, status, body[:300]))
                run = None
                continue
            run, current = json.loads(body), text
            continue
        T, h = run["n_tokens"], run["handle"]
        layer, head, q = rng.randrange(DEMO["n_layer"]), rng.randrange(DEMO["n_head"]), rng.randrange(T)
        kind = rng.choice(["pattern", "pattern", "query", "next", "row", "overview"])
        path = {"pattern": f"/api/runs/{h}/pattern?layer={layer}&head={head}",
                "query": f"/api/runs/{h}/query?layer={layer}&head={head}&query={q}&ignore_sink={q % 2}",
                "next": f"/api/runs/{h}/next?position={q}",
                "row": f"/api/runs/{h}/row?layer={layer}&head={head}&query={q}",
                "overview": f"/api/runs/{h}/overview"}[kind]
        status, _, body, dt = http(base, "GET", path)
        n += 1
        args = (layer, head, q)
        log.append((kind, current, args, status, body, dt))
        if status == 404 and b"Unknown or expired run" in body:
            log[-1] = (kind + " (expired)", None, args, status, body, dt)
            run = None                               # evicted by other users' runs: run it again
        elif status != 200:
            errors.append((kind, path, status, body[:300]))


def percentile(values, p):
    return float(np.percentile(np.asarray(values) * 1000, p))


def wave(base, seeds):
    """CLIENTS threads at once, one per seed: (logs, errors, wall seconds)."""
    logs, errors = [[] for _ in seeds], []
    threads = [threading.Thread(target=client, args=(base, seed, log, errors)) for seed, log in zip(seeds, logs)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "clients still running after 300 s"
    return logs, errors, time.perf_counter() - start


def test_eight_clients_fifty_requests_each(server, demo):
    # Warm up (imports, first forward pass), then measure memory before the load.
    assert http(server.base, "POST", "/api/run", {"text": SENTENCES[0]})[0] == 200
    rss_before = server.rss_kb()
    logs, errors, wall = wave(server.base, range(CLIENTS))
    rss_after = server.rss_kb()
    # A second wave of other users: memory must level off (no growth per request).
    logs2, errors2, _ = wave(server.base, range(CLIENTS, 2 * CLIENTS))
    rss_after2, hwm = server.rss_kb(), server.rss_kb("VmHWM")

    # Every answer, checked against the same computation done here, afterwards, alone.
    expected, checked = {}, 0

    def reference(text):
        if text not in expected:
            trace = demo.run(text)
            expected[text] = (trace, Run(run_handle(demo, trace.ids, False), trace, False, 0.0))
        return expected[text]

    wrong = []
    for log in logs + logs2:
        for kind, text, args, status, body, _dt in log:
            if status != 200:
                continue
            trace, run = reference(text)
            if kind == "run":
                data = json.loads(body)
                got = (data["tokens"], data["ids"], data["handle"],
                       [(t["id"], t["p"]) for t in data["next_token"]["top"]])
                want = (trace.tokens, trace.ids.tolist(), run.handle,
                        [(int(i), f32(p)) for i, p in zip(run.next_ids[-1], run.next_probs[-1])])
            elif kind == "pattern":
                got, want = body, lower_triangle_bytes(trace.pattern(args[0], args[1]))
            elif kind == "query":
                got, want = json.loads(body), json.loads(json.dumps(query_panel(run, *args, args[2] % 2 == 1)))
            elif kind == "next":
                q = args[2]
                got = [(t["id"], t["p"]) for t in json.loads(body)["top"]]
                want = [(int(i), f32(p)) for i, p in zip(run.next_ids[q], run.next_probs[q])]
            elif kind == "row":
                got, want = json.loads(body), json.loads(json.dumps(pattern_row(run, *args)))
            else:                                            # overview
                got, want = body, run.overview()[0]
            checked += 1
            if got != want:
                wrong.append((kind, text, args))

    cache = json.loads(http(server.base, "POST", "/api/run", {"text": SENTENCES[1]})[2])["cache"]
    entries = [e for log in logs for e in log]
    runs = [e[5] for e in entries if e[0] == "run"]
    gets = [e[5] for e in entries if e[0] != "run"]
    expired = sum(1 for e in entries if e[0].endswith("(expired)"))
    figures = {
        "clients": CLIENTS, "requests": len(entries), "errors": len(errors), "wrong_answers": len(wrong),
        "answers_checked_both_waves": checked, "distinct_sentences": len(expected), "expired_then_rerun": expired,
        "wall_s": round(wall, 1),
        "latency_ms": {"p50": round(percentile([e[5] for e in entries], 50), 1),
                       "p95": round(percentile([e[5] for e in entries], 95), 1),
                       "run_p50": round(percentile(runs, 50), 1), "run_p95": round(percentile(runs, 95), 1),
                       "get_p50": round(percentile(gets, 50), 1), "get_p95": round(percentile(gets, 95), 1)},
        "server_rss_mb": {"before": round(rss_before / 1024, 1), "after": round(rss_after / 1024, 1),
                          "after_second_wave": round(rss_after2 / 1024, 1), "peak": round(hwm / 1024, 1)},
        "cache": {"limit_mb": CACHE_MB, "runs_kept": cache["runs"], "mb_kept": round(cache["bytes"] / 2**20, 2)},
    }
    FIGURES["concurrency"] = figures
    print(f"\nconcurrency: {json.dumps(figures)}")
    n_all = len(entries) + sum(len(log) for log in logs2)
    record("load", "concurrent requests (2 waves, 8 clients x 50)", accepted=n_all - len(errors + errors2),
           failed=len(errors + errors2) + len(wrong),
           five_xx=sum(1 for e in errors + errors2 if str(e[2]).startswith("5")))

    assert len(entries) == CLIENTS * REQUESTS and n_all == 2 * CLIENTS * REQUESTS
    assert errors == [] and errors2 == [], (errors + errors2)[:5]
    assert wrong == [], wrong[:5]
    expired_all = sum(1 for log in logs + logs2 for e in log if e[0].endswith("(expired)"))
    assert checked == n_all - expired_all
    # Memory bounded: the run cache holds at most CACHE_MB (plus the newest run) and the load
    # overflows it (older runs evicted); what else requests allocate is freed. The first wave's
    # bound leaves room for the allocator's per-thread arenas; the second wave must level off.
    assert cache["max_bytes"] == CACHE_MB << 20 and cache["bytes"] <= cache["max_bytes"]
    assert cache["runs"] < len(expected), "the load should overflow the cache"
    assert rss_after - rss_before < 120 * 1024, (rss_before, rss_after)
    assert rss_after2 - rss_after < 40 * 1024, (rss_after, rss_after2)


def test_the_server_is_threaded(server):
    """A client that opens a connection and stops in the middle of its request does not block
    others: another request is answered while it waits, and then it is answered too (so it was
    still waiting, not dropped). A server that handled one connection at a time would never
    answer the second request (the timeout only ends the test)."""
    with socket.create_connection((HOST, server.port), timeout=120) as stalled:
        stalled.sendall(b"GET /api/model HTTP/1.1\r\nHost: localhost\r\n")   # headers not ended yet
        status, _, body, _ = http(server.base, "GET", "/api/model", timeout=120)
        assert status == 200 and json.loads(body)["name"] == "demo"
        stalled.sendall(b"Connection: close\r\n\r\n")                    # now end them
        reply = b""
        while chunk := stalled.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200" and json.loads(body)["name"] == "demo", reply[:300]


# -- what the HTTP layer answers ---------------------------------------------------------------------------
def test_protocol_level_errors_are_json_too(server):
    """Before Flask sees a request, Werkzeug/http.server can refuse it (URL over 64 KB, header
    limits, a malformed request line, a body over the limit): JSON with a readable message."""
    p = server.port
    # Host: localhost, as a browser on this machine sends it (other names get a 403, tested below).
    host = b"Host: localhost\r\n"
    post_json = b"POST /api/run HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
    chunks = [b'{"text": "'] + [b"x" * 65536] * 16 + [b'"}']
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    cases = [
        ("URL of 70 KB", b"GET /api/runs/x/pattern?layer=" + b"1" * 70_000 + b" HTTP/1.1\r\n" + host + b"\r\n",
         414, "Too Long"),
        ("header line of 70 KB", b"GET /api/model HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
         431, "Line too long"),
        ("120 headers", b"GET /api/model HTTP/1.1\r\n" + host + b"".join(b"X-%d: a\r\n" % i for i in range(120))
         + b"\r\n", 431, "Too many headers"),
        ("garbage request line", b"GARBAGE\r\n\r\n", None, "Bad request syntax"),
        ("request line with spaces", b"GET /a b c d HTTP/1.1\r\n\r\n", 400, "Bad request"),
        ("1 MB body with Content-Length", post_json + b"Content-Length: 1048586\r\n\r\n{\"text\": \""
         + b"x" * (1 << 20) + b"\"}", 413, "too large"),
        ("Content-Length that lies", post_json + b"Content-Length: 999999999\r\n\r\n{\"text\": \"hi\"}",
         413, "too large"),
        ("chunked body of 1 MB", post_json + b"Transfer-Encoding: chunked\r\n\r\n" + chunked, 413, "too large"),
        ("raw ../ in the path", b"GET /static/../../gpt2np/api.py HTTP/1.1\r\n" + host + b"\r\n", 404, "Not found"),
        ("encoded ../ in a handle",
         b"GET /api/runs/..%2f..%2fetc%2fpasswd/pattern?layer=0&head=0 HTTP/1.1\r\n" + host + b"\r\n",
         404, "Not found"),
        ("absolute URL to another host", b"GET http://example.com/api/model HTTP/1.1\r\nHost: example.com\r\n\r\n",
         403, "--host"),
        ("NUL in the path", b"GET /api/runs/\x00/overview HTTP/1.1\r\n" + host + b"\r\n", 404, ""),
    ]
    outcomes = []
    for name, data, status, phrase in cases:
        got, head, body = raw_request(p, data)
        try:
            assert got == status, (name, got, head[:200])
            assert b"Traceback" not in body and b"<html" not in body.lower(), (name, body[:200])
            parsed = json.loads(body)
            if status is None:                       # HTTP/0.9 style: no head, the body is JSON
                assert parsed["status"] == 400 and phrase in parsed["error"], (name, parsed)
            elif status >= 400:
                assert b"application/json" in head.lower(), (name, head)
                assert parsed["status"] == status and phrase in parsed["error"], (name, parsed)
            else:                                    # answered as the path, on this server
                assert parsed["name"] == "demo", (name, parsed)
            outcomes.append("ok" if status == 200 else "refused")
        except (AssertionError, ValueError) as e:
            outcomes.append(("bad", str(e)[:300]))
    bad = [o for o in outcomes if o not in ("ok", "refused")]
    record("api", "real server: HTTP-layer limits, raw requests", accepted=outcomes.count("ok"),
           refused=outcomes.count("refused"), failed=len(bad))
    assert bad == []
    # HTTP/9.9 is answered 505 (a protocol error, not an API answer), in JSON as well.
    got, head, body = raw_request(p, b"GET / HTTP/9.9\r\n\r\n")
    assert json.loads(body)["status"] == 505


def test_the_real_server_refuses_foreign_host_names(server):
    """DNS rebinding: a request naming another host gets a JSON 403 saying what to do; this
    machine's names are served with or without the port."""
    p = server.port
    for host in (f"localhost:{p}", f"127.0.0.1:{p}", "localhost", "127.0.0.1"):
        got, head, body = raw_request(p, f"GET /api/model HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert got == 200 and json.loads(body)["name"] == "demo", (host, got, body[:200])
    for host in (f"rebind.example:{p}", "rebind.example", f"localhost.rebind.example:{p}"):
        for path in ("/", "/api/model"):
            got, head, body = raw_request(p, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            error = json.loads(body)
            assert got == 403 and b"application/json" in head.lower(), (host, path, got, head[:200])
            assert error["status"] == 403 and repr(host) in error["error"]
            assert f"http://localhost:{p}/" in error["error"] and "--host" in error["error"]
    status, _, body, _ = http(server.base, "POST", "/api/run", {"text": "Emma walked."},
                              headers={"Host": f"rebind.example:{p}"})
    assert status == 403 and "DNS rebinding" in json.loads(body)["error"]


# -- binding and debug ------------------------------------------------------------------------------------
def test_binds_127_0_0_1_by_default_with_debug_off(server):
    assert server.listening() == "0100007F"                           # 127.0.0.1, this machine only
    assert "warning: binding to" not in server.err.read_text()
    assert "Debug mode: off" in server.out.read_text() and "Debugger is active" not in server.err.read_text()
    status, _, body, _ = http(server.base, "GET", "/console")         # Werkzeug's debugger console
    assert status == 404 and json.loads(body)["status"] == 404


def test_default_command_binds_127_0_0_1(tmp_path):
    """`python -m viewer` with no --host at all."""
    s = Server("default-host", "--model", "demo")
    try:
        assert s.listening() == "0100007F"
        assert "warning: binding to" not in s.err.read_text()
    finally:
        s.stop()


def test_warns_when_bound_elsewhere():
    """--host 0.0.0.0: a warning on stderr before it serves. No request is sent to it: the test
    only reads the server's own output and the kernel's table of listening sockets."""
    s = Server("all-interfaces", "--model", "demo", host="0.0.0.0")
    try:
        assert s.listening() == "00000000"
        err = s.err.read_text()
        assert "warning: binding to 0.0.0.0" in err and "--host 127.0.0.1" in err
        assert "Debug mode: off" in s.out.read_text()
    finally:
        s.stop()
    assert s.proc.returncode is not None


def test_run_options(monkeypatch, small_model_dir):
    """What `python -m viewer` passes to the server: threaded, debug and reloader off unless
    --debug, the JSON error handler, 127.0.0.1 unless --host."""
    import flask

    from viewer.cli import JsonErrorRequestHandler, main
    seen = {}
    monkeypatch.setattr(flask.Flask, "run", lambda self, **kw: seen.update(kw))
    main(["--model", str(small_model_dir)])
    assert seen["host"] == "127.0.0.1" and seen["threaded"] is True
    assert seen["debug"] is False and seen["use_reloader"] is False
    assert seen["request_handler"] is JsonErrorRequestHandler
    main(["--model", str(small_model_dir), "--debug", "--host", "::1"])
    assert seen["debug"] is True and seen["host"] == "::1"
