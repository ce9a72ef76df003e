"""The viewer's main blueprint: the page, its static files, and the JSON API of runs and heads.

    GET  /                                   the page
    GET  /api/model                          model name, origin, parameters, shapes, its examples
    POST /api/run        {"text"|"ids", "bos"}  run a sentence -> handle, tokens, ids, shapes
    GET  /api/runs/<handle>                  the same summary again (404 once evicted)
    GET  /api/runs/<handle>/pattern?layer&head          one head's heatmap, compact bytes
    GET  /api/runs/<handle>/overview                    thumbnails of every head, bytes
    GET  /api/runs/<handle>/row?layer&head&query        one heatmap row, exact float32
    GET  /api/runs/<handle>/query?layer&head&query&ignore_sink   top-5 keys + Q·K panel
    GET  /api/runs/<handle>/ledger?layer&head&query&key q·k -> ... -> p for one cell
    GET  /api/runs/<handle>/next?position               next-token top-5
    GET  /api/runs/<handle>/trace.npz                   the whole trace

Views only parse arguments (args.py) and pick numbers; the numbers come from viewer/answers/
(Flask-free, shared with the exported file). The analysis panels' endpoints are the second
blueprint, analysis.py.
"""

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, g, jsonify, render_template, request, send_file

from ..answers.describe import describe_run, model_summary, next_tokens, overview_bytes, pattern_bytes, wire_headers
from ..answers.ledger import ledger, pattern_row, query_panel
from ..answers.runs import Run, run_bytes, run_handle, trace_bytes
from ..gate import ClientGone, client_gone, give_back_memory
from . import args
from .args import flag_arg, json_object, refuse_unknown_fields
from .errors import ApiError

VIEWER_DIR = str(Path(__file__).resolve().parent.parent)     # static/ and templates/ are there

bp = Blueprint("viewer", __name__, static_folder="static", static_url_path="/static",
               template_folder="templates", root_path=VIEWER_DIR)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def model():
    return current_app.extensions["gpt2np.model"]


def runs():
    return current_app.extensions["gpt2np.runs"]


def workspace():
    """The app's gpt2np.Workspace: a run's trace is given back to it once its Run has taken the
    arrays the page reads (those stay the Run's; the rest are written again by the next pass of the
    same length: at most trace_bytes − run_bytes of the last pass are held between passes)."""
    return current_app.extensions["gpt2np.workspace"]


def gate():
    return current_app.extensions["gpt2np.gate"]


@contextmanager
def model_slot(work_bytes=0, what="This request", handle=None):
    """The model for this request: every forward pass and analysis of the app runs inside, one at a
    time (a 1,024-token trace of GPT-2 small is ~2 GB). Busy (503) when too many wait (gate.py);
    a client that left meanwhile is dropped here, before any work; `work_bytes` are held against the
    cache's bound while the work runs (RunCache.reserve; the run `handle` the work reads is kept
    and counted with it). Look the run up inside, not before: a waiting request keeps no run alive.
    Yields the Reservation."""
    runs().check(what, work_bytes)                    # refuse before waiting for nothing
    environ = request.environ
    with gate().slot(gone=lambda: client_gone(environ)):
        g.expensive = True
        with runs().reserve(work_bytes, what, keep=handle) as reservation:
            yield reservation


@bp.teardown_app_request
def give_back_after_work(_error):
    """After an expensive request, once no other runs or waits: return freed memory to the system
    (a pass's arrays are freed by now, with the view's locals)."""
    if g.pop("expensive", False) and gate().load() == (0, 0):
        give_back_memory()


def stop_if_gone(_step=None):
    """For long work, at each of its steps: stop (ClientGone) when the client has left."""
    if client_gone(request.environ):
        raise ClientGone()


@bp.after_app_request
def security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def get_run(handle):
    run = runs().get(handle)
    if run is None:
        shown = handle if len(handle) <= 40 else handle[:40] + "…"
        raise ApiError(f"Unknown or expired run {shown!r}: recent runs are kept in a cache of "
                       "limited size. Run the sentence again (POST /api/run).", 404)
    return run


# -- page and model -------------------------------------------------------------------------------
@bp.get("/")
def index():
    return render_template("index.html", model=model_summary(model()))


@bp.get("/api/model")
def api_model():
    return jsonify(model_summary(model()))


# -- runs -----------------------------------------------------------------------------------------
def parse_run_body():
    body = json_object()
    refuse_unknown_fields(body, ("text", "ids", "bos"),
                          '"text" (a sentence) or "ids" (token ids), and optionally "bos": true')
    if body.get("text") is not None and body.get("ids") is not None:
        raise ApiError('Give "text" or "ids", not both.')
    bos = body.get("bos", False)
    if not isinstance(bos, bool):
        raise ApiError('"bos" must be true or false.')
    if "ids" in body and body["ids"] is not None:
        ids = body["ids"]
        if not isinstance(ids, list) or not all(type(i) is int for i in ids):
            raise ApiError('"ids" must be a list of whole numbers, e.g. [464, 318, 257].')
        return ids, bos
    if "text" not in body:
        raise ApiError('Give "text" (a sentence) or "ids" (a list of token ids).')
    if not isinstance(body["text"], str):
        raise ApiError('"text" must be a string.')
    return body["text"], bos


def run_summary(run, cached):
    return {**describe_run(run, model(), model().engine), "cached": cached,
            "cache": {"runs": len(runs()), "bytes": runs().nbytes(), "max_bytes": runs().max_bytes}}


def run_input(text_or_ids, bos):
    """A sentence or ids -> (its Run, True if it came from the cache); runs the model if needed."""
    m = model()
    ids = m.check_ids(m.encode(text_or_ids, bos=bos) if isinstance(text_or_ids, str)
                      else ([m.bos_id()] if bos else []) + text_or_ids)
    handle = run_handle(m, ids, bos)
    run = runs().get(handle)
    if run is not None:
        return run, True
    runs().check(f"A run of {len(ids):,} tokens", run_bytes(m.config, len(ids)))
    with model_slot(trace_bytes(m.config, len(ids)), f"The forward pass of {len(ids):,} tokens") as reservation:
        run = runs().get(handle)                       # the same sentence may have just run
        if run is not None:
            return run, True
        start = time.perf_counter()
        trace = m.run(ids, workspace=workspace())
        run = Run(handle, trace, bos, 0.0)
        run.elapsed = time.perf_counter() - start
        workspace().give_back(trace)                   # Run's arrays stay Run's; the others are reused
        reservation.release()                          # the pass is over: its run takes the room
        runs().put(run)
    return run, False


@bp.post("/api/run")
def api_run():
    run, cached = run_input(*parse_run_body())
    return jsonify(run_summary(run, cached=cached))


@bp.get("/api/runs/<handle>")
def api_run_summary(handle):
    return jsonify(run_summary(get_run(handle), cached=True))


def binary(data, headers=None, **named):
    """A binary answer; its headers given as made by wire_headers, or by name (tokens=T, ...)."""
    response = current_app.response_class(data, mimetype="application/octet-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers.update({**(headers or {}), **wire_headers(**named)})
    return response


@bp.get("/api/runs/<handle>/pattern")
def api_pattern(handle):
    run = get_run(handle)
    layer, head = args.layer_head(model().config)
    return binary(*pattern_bytes(run, layer, head))


@bp.get("/api/runs/<handle>/overview")
def api_overview(handle):
    return binary(*overview_bytes(get_run(handle)))


@bp.get("/api/runs/<handle>/row")
def api_row(handle):
    run = get_run(handle)
    layer, head = args.layer_head(model().config)
    query = args.position(run, "query")
    return jsonify(pattern_row(run, layer, head, query))


@bp.get("/api/runs/<handle>/query")
def api_query(handle):
    run = get_run(handle)
    layer, head = args.layer_head(model().config)
    query = args.position(run, "query")
    return jsonify(query_panel(run, layer, head, query, flag_arg("ignore_sink")))


@bp.get("/api/runs/<handle>/ledger")
def api_ledger(handle):
    run = get_run(handle)
    layer, head = args.layer_head(model().config)
    query, key = args.position(run, "query"), args.position(run, "key")
    return jsonify(ledger(run, layer, head, query, key))


@bp.get("/api/runs/<handle>/next")
def api_next(handle):
    run = get_run(handle)
    return jsonify(next_tokens(run, args.position(run), model()))


@bp.get("/api/runs/<handle>/trace.npz")
def api_trace(handle):
    """The full trace. The viewer keeps only part of it in memory, so the same ids are run again
    through the same model (the forward pass is deterministic; checked against the cached pattern),
    and written to a temporary file without a name (tempfile.TemporaryFile: O_TMPFILE, or unlinked
    at once), so that a server killed at any moment leaves no file behind."""
    n = get_run(handle).n_tokens
    with model_slot(trace_bytes(model().config, n), f"The trace of {n:,} tokens", handle):
        run = get_run(handle)
        trace = model().run(run.ids)
        if not all(np.array_equal(trace.pattern(i), p) for i, p in enumerate(run.patterns)):
            raise ApiError("The re-run of this sentence differs from the cached run; not using it.", 500)
        f = tempfile.TemporaryFile(suffix=".npz", prefix="gpt2np-trace-")
        try:
            trace.save(f)
        except BaseException:
            f.close()
            raise
        del trace                                      # (not the workspace's: all of it is freed now)
    f.seek(0)
    name = f"gpt2np-{model().info.name}-{n}tok-{handle[:8]}.npz"
    return send_file(f, mimetype="application/octet-stream", as_attachment=True, download_name=name)
