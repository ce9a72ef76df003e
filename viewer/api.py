"""The viewer's main blueprint: the page, its static files, and the JSON API of runs and heads.

    GET  /                                   the page
    GET  /api/model                          model name, origin, parameters, shapes
    POST /api/run        {"text"|"ids", "bos"}  run a sentence -> handle, tokens, ids, shapes
    GET  /api/runs/<handle>                  the same summary again (404 once evicted)
    GET  /api/runs/<handle>/pattern?layer&head          one head's heatmap, compact bytes
    GET  /api/runs/<handle>/overview                    thumbnails of every head, bytes
    GET  /api/runs/<handle>/row?layer&head&query        one heatmap row, exact float32
    GET  /api/runs/<handle>/query?layer&head&query&ignore_sink   top-5 keys + Q·K panel
    GET  /api/runs/<handle>/ledger?layer&head&query&key q·k -> ... -> p for one cell
    GET  /api/runs/<handle>/next?position               next-token top-5
    GET  /api/runs/<handle>/trace.npz                   the whole trace

Views only parse arguments (args.py) and pick numbers; the numbers come from runs.py and
ledger.py. The analysis panels' endpoints are the second blueprint, analysis.py.
"""

import os
import tempfile
import time

import numpy as np
from flask import Blueprint, current_app, jsonify, render_template, send_file

from .args import flag_arg, json_object, refuse_unknown_fields, whole_number
from .errors import ApiError
from .ledger import ledger, pattern_row, query_panel, token_ref
from .runs import Run, run_handle
from .wire import ENCODING, THUMB_ENCODING, f32, lower_triangle_bytes

bp = Blueprint("viewer", __name__, static_folder="static", static_url_path="/static",
               template_folder="templates")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def model():
    return current_app.extensions["gpt2np.model"]


def runs():
    return current_app.extensions["gpt2np.runs"]


def workspace():
    """The app's gpt2np.Workspace: a run's trace is given back to it once its Run has taken the
    arrays the page reads (those stay the Run's; the rest are written again by the next pass)."""
    return current_app.extensions["gpt2np.workspace"]


def forward_lock():
    """Held around every forward pass and analysis of the app: one at a time, as a 1,024-token
    trace of GPT-2 small is ~2 GB."""
    return current_app.extensions["gpt2np.forward_lock"]


@bp.after_app_request
def security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


# -- arguments ------------------------------------------------------------------------------------
def layer_head():
    cfg = model().config
    return (whole_number("layer", 0, cfg.n_layer - 1, "layer"),
            whole_number("head", 0, cfg.n_head - 1, "head"))


def get_run(handle):
    run = runs().get(handle)
    if run is None:
        shown = handle if len(handle) <= 40 else handle[:40] + "…"
        raise ApiError(f"Unknown or expired run {shown!r}: recent runs are kept in a cache of "
                       "limited size. Run the sentence again (POST /api/run).", 404)
    return run


# -- page and model -------------------------------------------------------------------------------
ENGINE_ABOUT = {"fast": "the CPU schedule of gpt2np/engine.py: the forward pass of model.py with faster kernels",
                "reference": "gpt2np/model.py's plain math itself: set a breakpoint there to see these numbers"}


def model_summary(m=None, engine=None):
    """The model as the page's header and GET /api/model describe it: the app's model, or `m`
    (a saved file, export.py), with the engine that computed its runs (default: its own)."""
    m = model() if m is None else m
    engine = m.engine if engine is None else engine
    cfg = m.config
    return {"name": m.info.name, "origin": m.info.origin, "n_params": m.info.n_params,
            "describe": m.info.describe(), "kind": m.info.kind, "engine": engine,
            "engine_about": ENGINE_ABOUT[engine],
            "has_tokenizer": m.tokenizer is not None,
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "d_head": cfg.d_head, "n_embd": cfg.n_embd,
            "n_positions": cfg.n_positions, "vocab_size": cfg.vocab_size}


@bp.get("/")
def index():
    return render_template("index.html", model=model_summary())


@bp.get("/api/model")
def api_model():
    return jsonify(model_summary())


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


def describe_run(run, m, engine):
    """What the page is told of a run: tokens, ids, shapes, the next-token top-5 at the last
    position. run_summary adds the cache's state; a saved file (export.py) says it is one."""
    cfg = m.config
    T, last = run.n_tokens, run.n_tokens - 1
    return {"handle": run.handle, "model": m.info.name, "n_tokens": T,
            "tokens": run.tokens, "ids": [int(i) for i in run.ids], "bos": run.bos,
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "d_head": cfg.d_head,
            "shapes": {"hook_pattern": [cfg.n_head, T, T], "hook_attn_scores": [cfg.n_head, T, T],
                       "hook_q": [T, cfg.n_head, cfg.d_head], "hook_k": [T, cfg.n_head, cfg.d_head],
                       "logits": [T, cfg.vocab_size]},
            "next_token": next_tokens(run, last, m), "elapsed_ms": round(run.elapsed * 1000, 1),
            "engine": engine, "encoding": ENCODING}


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
    with forward_lock():
        run = runs().get(handle)                       # the same sentence may have just run
        if run is not None:
            return run, True
        start = time.perf_counter()
        trace = m.run(ids, workspace=workspace())
        run = Run(handle, trace, bos, 0.0)
        run.elapsed = time.perf_counter() - start
        workspace().give_back(trace)                   # Run's arrays stay Run's; the others are reused
    runs().put(run)
    return run, False


@bp.post("/api/run")
def api_run():
    run, cached = run_input(*parse_run_body())
    return jsonify(run_summary(run, cached=cached))


@bp.get("/api/runs/<handle>")
def api_run_summary(handle):
    return jsonify(run_summary(get_run(handle), cached=True))


def wire_headers(**headers):
    """The headers that describe a binary answer: X-Gpt2np-Tokens, X-Gpt2np-Encoding, ..."""
    return {"X-Gpt2np-" + name.replace("_", "-").title(): str(value) for name, value in headers.items()}


def binary(data, headers=None, **named):
    """A binary answer; its headers given as made by wire_headers, or by name (tokens=T, ...)."""
    response = current_app.response_class(data, mimetype="application/octet-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers.update({**(headers or {}), **wire_headers(**named)})
    return response


def pattern_bytes(run, layer, head):
    """One head's heatmap: (bytes, headers) as GET .../pattern sends them."""
    return lower_triangle_bytes(run.patterns[layer][head]), wire_headers(
        tokens=run.n_tokens, encoding=ENCODING, layer=layer, head=head)


def overview_bytes(run):
    """Every head's thumbnail: (bytes, headers) as GET .../overview sends them."""
    data, size = run.overview()
    return data, wire_headers(tokens=run.n_tokens, encoding=THUMB_ENCODING, size=size,
                              layers=len(run.patterns), heads=run.patterns[0].shape[0])


@bp.get("/api/runs/<handle>/pattern")
def api_pattern(handle):
    run = get_run(handle)
    layer, head = layer_head()
    return binary(*pattern_bytes(run, layer, head))


@bp.get("/api/runs/<handle>/overview")
def api_overview(handle):
    return binary(*overview_bytes(get_run(handle)))


@bp.get("/api/runs/<handle>/row")
def api_row(handle):
    run = get_run(handle)
    layer, head = layer_head()
    query = whole_number("query", 0, run.n_tokens - 1, "query position")
    return jsonify(pattern_row(run, layer, head, query))


@bp.get("/api/runs/<handle>/query")
def api_query(handle):
    run = get_run(handle)
    layer, head = layer_head()
    query = whole_number("query", 0, run.n_tokens - 1, "query position")
    return jsonify(query_panel(run, layer, head, query, flag_arg("ignore_sink")))


@bp.get("/api/runs/<handle>/ledger")
def api_ledger(handle):
    run = get_run(handle)
    layer, head = layer_head()
    query = whole_number("query", 0, run.n_tokens - 1, "query position")
    key = whole_number("key", 0, run.n_tokens - 1, "key position")
    return jsonify(ledger(run, layer, head, query, key))


def next_tokens(run, position, m=None):
    """The next-token top-5 at `position`, with the token strings of the app's model (or `m`)."""
    m = model() if m is None else m
    ids = run.next_ids[position]
    strings = m.token_strings(ids)
    return {**token_ref(run, position),
            "top": [{"id": int(i), "token": s, "p": f32(p)}
                    for i, s, p in zip(ids, strings, run.next_probs[position])]}


@bp.get("/api/runs/<handle>/next")
def api_next(handle):
    run = get_run(handle)
    return jsonify(next_tokens(run, whole_number("position", 0, run.n_tokens - 1, "position")))


def rerun(run):
    """The full trace of a cached run. The viewer keeps only part of it in memory, so the same ids
    are run again through the same model (the forward pass is deterministic; checked against the
    cached pattern). Give it back to `workspace()` when done."""
    with forward_lock():
        trace = model().run(run.ids, workspace=workspace())
    if not all(np.array_equal(trace.pattern(i), p) for i, p in enumerate(run.patterns)):
        raise ApiError("The re-run of this sentence differs from the cached run; not using it.", 500)
    return trace


@bp.get("/api/runs/<handle>/trace.npz")
def api_trace(handle):
    """The full trace (`rerun`)."""
    run = get_run(handle)
    trace = rerun(run)
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="gpt2np-trace-")
    try:
        with os.fdopen(fd, "wb") as f:
            trace.save(f)
        workspace().give_back(trace)
        f = open(path, "rb")
    finally:
        os.unlink(path)                                # the open handle keeps the data readable
    name = f"gpt2np-{model().info.name}-{run.n_tokens}tok-{handle[:8]}.npz"
    return send_file(f, mimetype="application/octet-stream", as_attachment=True, download_name=name)
