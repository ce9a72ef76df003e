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
from ..answers.runs import finite
from ..answers.wire import ENCODING, lower_triangle_bytes
from . import args
from .api import binary, forward_lock, get_run, model, parse_run_body, run_input
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
    run = get_run(handle)
    probe = current_app.extensions["gpt2np.induction"]

    def compute():
        with forward_lock():                          # value-weighted attention: [H, T, T] per layer
            return heads_answer(model(), run, probe)
    return json_bytes(run.memo(("heads",), compute))


# -- findings -------------------------------------------------------------------------------------
@bp.get("/api/runs/<handle>/findings")
def api_findings(handle):
    run = get_run(handle)

    def compute():
        sentence = run_text(run)
        with forward_lock():                          # several forward passes: probe, sentences
            report = findings.report(model(), sentence=sentence, bos=run.bos)
        return {"handle": run.handle, **report}
    return json_bytes(run.memo(("findings",), compute))


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

    def compute():
        with forward_lock():                          # two forward passes: as is, and ablated
            result = interventions.ablate(model(), run.ids, heads, mode, token=token, k=k,
                                          position=position)
        return {"handle": run.handle, **result}
    key = ("ablate", tuple(heads), mode, position, k, token)
    return json_bytes(run.memo(key, compute))


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
    run_b, _ = run_input(text_or_ids, run_a.bos)

    def compute():
        with forward_lock():                          # [H, Q, K] float64 per layer
            changes = interventions.attention_changes(run_a.trace(), run_b.trace())
        return {"a": pair_side(run_a), "b": pair_side(run_b), **changes}
    return json_bytes(run_a.memo(("pair", run_b.handle), compute))


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
