"""The viewer under load (issue 24): a full queue answers 503 with Retry-After, a client that left
gets no work, work and runs share one memory bound (an oversize run is a 413 naming the
--cache-mb that fits), and the .npz download leaves no file behind, even after kill -9."""

import os
import signal
import socket
import tempfile
import threading
import time
import urllib.request

import numpy as np
import pytest
from browser import start_server, stop_server
from werkzeug.serving import make_server

from gpt2np import Trace
from viewer import create_app
from viewer.answers.runs import run_bytes, trace_bytes
from viewer.gate import Busy, ModelGate, client_gone

IDS = [5, 17, 3, 42, 8, 9, 23]


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == status
    return body["error"]


def counting_runs(app):
    """Count the forward passes of the app's model: a list that grows by one per Model.run."""
    m, calls = app.extensions["gpt2np.model"], []
    original = m.run

    def run(*args, **kwargs):
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)
    m.run = run
    return calls


@pytest.fixture()
def small_app(small_model_dir):
    return create_app({"MODEL": str(small_model_dir), "MAX_WAITING": 0})


# -- admission: the gate and the 503 --------------------------------------------------------------
def test_gate_lets_one_run_max_waiting_wait_and_refuses_the_next():
    gate, started, release = ModelGate(max_waiting=1), threading.Event(), threading.Event()
    order = []

    def holder():
        with gate.slot():
            started.set()
            release.wait(10)
            order.append("first")

    def waiter():
        with gate.slot():
            order.append("second")
    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert started.wait(10)
    threads.append(threading.Thread(target=waiter))
    threads[1].start()
    deadline = time.time() + 10
    while gate.load() != (1, 1) and time.time() < deadline:
        time.sleep(0.01)
    assert gate.load() == (1, 1)
    with pytest.raises(Busy) as e:                    # one runs, one waits: full
        with gate.slot():
            pass
    assert e.value.ahead == 2 and str(e.value) == "busy: 2 requests ahead"
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["first", "second"] and gate.load() == (0, 0)


def test_the_gate_serves_in_order_of_arrival():
    gate, order, threads = ModelGate(max_waiting=4), [], []

    def waiter(n):
        with gate.slot():
            order.append(n)
    with gate.slot():
        for n in range(4):
            threads.append(threading.Thread(target=waiter, args=(n,)))
            threads[-1].start()
            deadline = time.time() + 10
            while gate.load() != (1, n + 1) and time.time() < deadline:
                time.sleep(0.005)
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3] and gate.load() == (0, 0)


def test_a_full_queue_is_a_503_with_retry_after_and_cheap_answers_still_come(small_app):
    c = small_app.test_client()
    handle = c.post("/api/run", json={"ids": IDS}).get_json()["handle"]
    with small_app.extensions["gpt2np.gate"].slot():   # the model is busy; MAX_WAITING 0: none may wait
        r = c.post("/api/run", json={"ids": IDS[::-1]})
        assert error_of(r, 503).startswith("busy: 1 request ahead for the model")
        assert int(r.headers["Retry-After"]) >= 1
        assert error_of(c.post(f"/api/runs/{handle}/ablate", json={"heads": "0.1"}), 503).startswith("busy")
        # what needs no forward pass answers at once
        for url in ("/api/model", "", "/value?layer=1&head=2&query=4", "/lens", "/sample",
                    "/walk?layer=1&head=0&query=6", "/pattern?layer=0&head=0"):
            url = url if url.startswith("/api") else f"/api/runs/{handle}{url}"
            assert c.get(url).status_code == 200, url
    assert c.post("/api/run", json={"ids": IDS[::-1]}).status_code == 200


def test_the_walk_runs_no_forward_pass(small_app):
    c = small_app.test_client()
    handle = c.post("/api/run", json={"ids": IDS}).get_json()["handle"]
    calls = counting_runs(small_app)
    for layer, query in ((0, 0), (1, 6), (1, 3)):
        assert c.get(f"/api/runs/{handle}/walk?layer={layer}&head=1&query={query}").status_code == 200
    assert calls == []


# -- memory: one bound for runs and work ----------------------------------------------------------
def test_run_bytes_is_what_a_run_keeps(small_app):
    c, m = small_app.test_client(), small_app.extensions["gpt2np.model"]
    handle = c.post("/api/run", json={"ids": IDS}).get_json()["handle"]
    run = small_app.extensions["gpt2np.runs"].get(handle)
    assert run.nbytes() == run_bytes(m.config, len(IDS))           # before any memo or overview
    trace = m.run(IDS)
    assert sum(trace[n].nbytes for n in trace.names()) == trace_bytes(m.config, len(IDS))   # logits too


def test_a_run_larger_than_the_whole_bound_is_a_413_naming_the_cache_mb_that_fits(small_model_dir):
    app = create_app({"MODEL": str(small_model_dir)})
    m = app.extensions["gpt2np.model"]
    app.extensions["gpt2np.runs"].max_bytes = run_bytes(m.config, 20) # 20 tokens fit, 40 do not
    c = app.test_client()
    assert c.post("/api/run", json={"ids": IDS}).status_code == 200
    calls = counting_runs(app)
    message = error_of(c.post("/api/run", json={"ids": list(range(40))}), 413)
    assert "A run of 40 tokens needs about" in message and "--cache-mb" in message
    fits = float(message.split("--cache-mb ")[-1].split()[0])
    assert fits * 2**20 >= trace_bytes(m.config, 40) > app.extensions["gpt2np.runs"].max_bytes
    assert calls == []                                              # refused before computing
    assert len(app.extensions["gpt2np.runs"]) == 1                  # nothing evicted for it


def test_work_is_held_against_the_bound_evicting_old_runs_first(small_model_dir):
    app = create_app({"MODEL": str(small_model_dir)})
    cache, c = app.extensions["gpt2np.runs"], app.test_client()
    handles = [c.post("/api/run", json={"ids": [i, *IDS]}).get_json()["handle"] for i in range(3)]
    one = cache.nbytes() // 3                        # (get() would make handles[0] the most recent)
    cache.max_bytes = 3 * one + one // 2
    with cache.reserve(one + 1):                      # room for work: the oldest run goes
        assert [h in cache for h in handles] == [False, True, True]
    with pytest.raises(Exception, match="--cache-mb"):
        with cache.reserve(cache.max_bytes + 1):
            pass


# -- a client that left gets no work --------------------------------------------------------------
def raw_post(port, path, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = body.encode()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def test_a_request_whose_client_left_is_dropped_before_any_work(small_model_dir):
    app = create_app({"MODEL": str(small_model_dir), "MAX_WAITING": 8})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port, gate = server.server_port, app.extensions["gpt2np.gate"]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        calls = counting_runs(app)
        with gate.slot():                             # the model is busy: the requests wait
            clients = [raw_post(port, "/api/run", f'{{"ids": [{i}, 1, 2, 3]}}') for i in range(3)]
            deadline = time.time() + 10
            while gate.load() != (1, 3) and time.time() < deadline:
                time.sleep(0.01)
            assert gate.load() == (1, 3)
            for s in clients:                         # the clients leave while waiting
                s.close()
            while gate.load() != (1, 0) and time.time() < deadline:
                time.sleep(0.01)
            assert gate.load() == (1, 0)              # they left the queue while the model was busy
        deadline = time.time() + 10
        while gate.load() != (0, 0) and time.time() < deadline:
            time.sleep(0.01)
        assert gate.load() == (0, 0) and calls == []  # not one forward pass for them
        live = raw_post(port, "/api/run", '{"ids": [9, 1, 2, 3]}')
        assert live.recv(100).startswith(b"HTTP/1.1 200")
        live.close()
        assert len(calls) == 1
    finally:
        server.shutdown()


def test_client_gone_without_a_socket_is_connected():
    assert client_gone({}) is False


# -- the download leaves no file ------------------------------------------------------------------
def test_the_trace_download_never_names_a_file(small_app, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen, save = [], Trace.save

    def spying_save(self, f):
        seen.append(sorted(os.listdir(tmp_path)))    # while the server writes the file
        return save(self, f)
    monkeypatch.setattr(Trace, "save", spying_save)
    c = small_app.test_client()
    handle = c.post("/api/run", json={"ids": IDS}).get_json()["handle"]
    r = c.get(f"/api/runs/{handle}/trace.npz")
    assert r.status_code == 200 and seen == [[]]
    with np.load(__import__("io").BytesIO(r.data)) as f:
        assert f["__ids__"].tolist() == IDS
    r.close()
    assert os.listdir(tmp_path) == []


def test_kill_9_during_a_download_leaves_no_file(small_tok_dir, tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    proc, base = start_server(small_tok_dir, "kill9-download")
    try:
        text = " ".join(["the cat sat on the mat"] * 150)            # ~900 tokens: a trace of MBs
        request = urllib.request.Request(base + "/api/run", data=f'{{"text": "{text}"}}'.encode(),
                                         headers={"Content-Type": "application/json"})
        handle = __import__("json").loads(urllib.request.urlopen(request, timeout=120).read())["handle"]
        response = urllib.request.urlopen(f"{base}/api/runs/{handle}/trace.npz", timeout=120)
        assert response.read(1000)[:2] == b"PK"                       # the download is under way
        open_files = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
        assert not any(name.startswith(str(tmp)) and not name.endswith("(deleted)") for name in open_files)
        assert os.listdir(tmp) == []
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        response.close()
        assert os.listdir(tmp) == []
    finally:
        stop_server(proc)
