"""The analysis panels' endpoints, a blueprint of their own (registered by `create_app`).

    GET  /api/runs/<h>/heads                             every head's statistics and type
    GET  /api/runs/<h>/findings                          the findings report on this run's text
    GET  /api/runs/<h>/lens?position&k&target|target_id  logit lens: top-k after every layer
    POST /api/runs/<h>/ablate  {"heads", "mode", "position", "token", "k"}   ablate heads
    POST /api/runs/<h>/pair    {"text"|"ids"}            minimal pair: heads ranked by change
    GET  /api/runs/<h>/pair/<h_b>/diff?layer&head        |A − B| of one head on aligned tokens, bytes

Every number comes from gpt2np.analysis.findings and gpt2np.analysis.interventions, called on the arrays the run
kept (`Run.trace()`: no second forward pass) or, for ablation and the findings, on fresh forward
passes of the same model. Results are kept per run as JSON (`Run.memo`), so asking again is free;
the induction probe, which does not depend on the sentence, runs once per model when the app is
created (`answers.panels.induction_probe`). The answers of the heads table and the lens are made
in viewer/answers/panels.py, as an exported file's are.
"""

import json

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from gpt2np import GPT2npError
from gpt2np.analysis import findings, interventions
from gpt2np.analysis.examples import examples_for
from gpt2np.heads import parse_heads

from ..answers.describe import next_tokens
from ..answers.panels import heads_answer, lens_answer
from ..answers.runs import finite, trace_bytes
from ..answers.wire import ENCODING, lower_triangle_bytes
from . import args
from .api import binary, get_run, model, model_slot, parse_run_body, run_input
from .args import json_object, refuse_unknown_fields
from .errors import ApiError

bp = Blueprint("analysis", __name__)

ABLATE_FIELDS = ("heads", "mode", "position", "token", "k")


def ablate_example():
    """An ablation request body for the model in use, from its own examples (gpt2np.examples)."""
    ex = examples_for(model())
    body = {"heads": " ".join(ex["ablate"]) or "0.0", "mode": "zero"}
    if ex["follow"]:
        body["token"] = ex["follow"]["token"]
    return json.dumps(body)


def json_bytes(data):
    return current_app.response_class(data, mimetype="application/json")


def gated_memo(handle, key, work_bytes, what, compute):
    """compute(run) as JSON, kept in the run's memo: a memo hit answers at once; otherwise it waits
    for the model (`api.model_slot`, holding work_bytes) and looks the run up only then."""
    data = get_run(handle).memo_get(key)
    if data is None:
        with model_slot(work_bytes, what, handle):
            run = get_run(handle)
            data = run.memo(key, lambda: compute(run))
    return json_bytes(data)


def heads_bytes(config, n_tokens):
    """float64 [H, T, T] of one layer, twice: the value-weighted attention and its temporaries."""
    return 2 * 8 * config.n_head * n_tokens ** 2


def head_list(heads):
    """"5.1 5.5", "5.1, 5.5" or ["5.1", "5.5"] -> sorted [(layer, head)], checked on the model."""
    if not (isinstance(heads, str) or (isinstance(heads, list) and all(isinstance(p, str) for p in heads))):
        raise ApiError('"heads" must be text such as "5.1 5.5" or a list such as ["5.1", "5.5"].')
    return parse_heads(heads, model().config)      # its errors name the valid layers and heads


def run_text(run):
    """The run's input for findings.report: its text (without <|endoftext|>, added back by
    bos=True) when encoding that text gives the same ids, else the ids themselves."""
    m = model()
    ids = [int(i) for i in run.ids[1 if run.bos else 0:]]
    if m.tokenizer is None:
        return ids
    text = m.tokenizer.decode(ids)
    try:
        return text if text and m.encode(text) == ids else ids
    except GPT2npError:
        return ids


# -- heads table ----------------------------------------------------------------------------------
@bp.get("/api/runs/<handle>/heads")
def api_heads(handle):
    probe = current_app.extensions["gpt2np.induction"]
    n = get_run(handle).n_tokens

    def compute(run):                                 # value-weighted attention: [H, T, T] per layer
        return heads_answer(model(), run, probe)
    return gated_memo(handle, ("heads",), heads_bytes(model().config, n), "The heads table", compute)


# -- findings -------------------------------------------------------------------------------------
@bp.get("/api/runs/<handle>/findings")
def api_findings(handle):
    n = get_run(handle).n_tokens

    def compute(run):                                 # several forward passes: probe, sentences
        return {"handle": run.handle, **findings.report(model(), sentence=run_text(run), bos=run.bos)}
    work = 2 * trace_bytes(model().config, n)         # the sentence and a pass beside it
    return gated_memo(handle, ("findings",), work, "The findings report", compute)


# -- logit lens -----------------------------------------------------------------------------------
@bp.get("/api/runs/<handle>/lens")
def api_lens(handle):
    run = get_run(handle)
    m = model()
    position, k = args.position(run, last_by_default=True), args.tokens_to_list()
    return jsonify(finite(lens_answer(m, run, position, k, args.url_token(m, "target"))))


# -- ablation -------------------------------------------------------------------------------------
@bp.post("/api/runs/<handle>/ablate")
def api_ablate(handle):
    body = json_object(ablate_example())
    run = get_run(handle)
    refuse_unknown_fields(body, ABLATE_FIELDS, f"{', '.join(ABLATE_FIELDS)}, e.g. {ablate_example()}")
    if "heads" not in body:
        raise ApiError(f'Give "heads", the heads to ablate as LAYER.HEAD: {ablate_example()}.')
    heads = head_list(body["heads"])
    mode = body.get("mode", "zero")
    if mode not in ("zero", "mean"):
        shown = repr(mode) if len(repr(mode)) <= 20 else type(mode).__name__
        raise ApiError(f'"mode" {shown} is unknown: use "zero" (replace the heads\' hook_z by 0) '
                       'or "mean" (by its mean over this input\'s positions).')
    position, k = args.position(run, body=body, last_by_default=True), args.tokens_to_list(body)
    token = args.token_arg(model(), body.get("token"))
    n = run.n_tokens
    del run                                           # not kept while waiting for the model

    def compute(run):                                 # two forward passes: as is, and ablated
        return {"handle": run.handle, **interventions.ablate(model(), run.ids, heads, mode, token=token,
                                                               k=k, position=position)}
    key = ("ablate", tuple(heads), mode, position, k, token)
    return gated_memo(handle, key, 2 * trace_bytes(model().config, n), "The ablation", compute)


# -- minimal pairs --------------------------------------------------------------------------------
def pair_side(run):
    return {"handle": run.handle, "tokens": run.tokens, "ids": [int(i) for i in run.ids],
            "next": next_tokens(run, run.n_tokens - 1, model())["top"]}


@bp.post("/api/runs/<handle>/pair")
def api_pair(handle):
    text_or_ids, bos = parse_run_body()
    run_a = get_run(handle)
    if text_or_ids in ("", []):
        raise ApiError("Sentence B is empty: type the sentence to compare with A, e.g. the same "
                       "sentence with one word changed.")
    if "bos" in request.get_json() and bos != run_a.bos:
        raise ApiError(f'"bos" must match sentence A\'s ({str(run_a.bos).lower()}): the two '
                       "sentences are compared token by token.")
    bos, n_a = run_a.bos, run_a.n_tokens
    del run_a                                         # not kept while waiting for the model
    run_b, _ = run_input(text_or_ids, bos)
    handle_b, n = run_b.handle, max(n_a, run_b.n_tokens)
    del run_b

    def compute(run_a):                               # [H, Q, K] float64 per layer
        run_b = get_run(handle_b)
        return {"a": pair_side(run_a), "b": pair_side(run_b),
                **interventions.attention_changes(run_a.trace(), run_b.trace())}
    return gated_memo(handle, ("pair", handle_b), heads_bytes(model().config, n), "The comparison", compute)


@bp.get("/api/runs/<handle>/pair/<handle_b>/diff")
def api_pair_diff(handle, handle_b):
    run_a, run_b = get_run(handle), get_run(handle_b)
    layer, head = args.layer_head(model().config)
    pairs, mode = interventions.align_tokens(run_a.ids, run_b.ids)
    if not pairs:
        raise ApiError("The two sentences share no token, so no cell of A lines up with one of B.")
    ia, ib = (np.array(x, dtype=np.int64) for x in zip(*pairs))          # [N], [N]
    a = run_a.patterns[layer][head][np.ix_(ia, ia)]                     # [N, N]
    b = run_b.patterns[layer][head][np.ix_(ib, ib)]                     # [N, N]
    return binary(lower_triangle_bytes(np.abs(a - b)), tokens=len(pairs), encoding=ENCODING,
                  layer=layer, head=head, alignment=mode)
