"""The value side and the output, a blueprint of their own (registered by `create_app`): what a
head moves, one token's walk through a block, and the direct logit attribution.

    GET /api/runs/<h>/value?layer&head&query        the value ledger (ledger.value_ledger)
    GET /api/runs/<h>/walk?layer&head&query         one token through one block, step by step (walk.walk)
    GET /api/runs/<h>/attribution?position&token|token_id&versus|versus_id&k
                                                    interventions.logit_attribution

The value ledger and the attribution read the arrays the run kept (`Run.trace()`); the walk needs
what a run does not keep (ln_1, ln_2, resid_mid, the MLP's hidden layer), so it runs the same ids
again (`api.rerun`). The walk and the attribution are kept per run as JSON (`Run.memo`).
"""

from urllib.parse import quote

from flask import Blueprint, jsonify

from gpt2np import GPT2npError
from gpt2np.analysis.examples import examples_for

from ..answers.ledger import value_ledger
from ..answers.panels import attribution_answer, walk_answer
from . import args
from .analysis import json_bytes
from .api import forward_lock, get_run, model, rerun, workspace
from .errors import ApiError

bp = Blueprint("values", __name__)


@bp.get("/api/runs/<handle>/value")
def api_value(handle):
    run = get_run(handle)
    layer, head, query = args.layer_head_query(run, model().config)
    return jsonify(value_ledger(model(), run.trace(), layer, head, query))


@bp.get("/api/runs/<handle>/walk")
def api_walk(handle):
    run = get_run(handle)
    layer, head, query = args.layer_head_query(run, model().config)

    def compute():
        trace = rerun(run)                            # a forward pass, under the forward lock
        answer = walk_answer(model(), run, trace, layer, head, query)
        workspace().give_back(trace)                  # what the answer still holds of it is not reused
        return answer
    return json_bytes(run.memo(("walk", layer, head, query), compute))


@bp.get("/api/runs/<handle>/attribution")
def api_attribution(handle):
    run = get_run(handle)
    position, k = args.position(run, last_by_default=True), args.tokens_to_list()
    token, versus = args.url_token(model(), "token"), args.url_token(model(), "versus")
    if versus is not None and versus == token:
        pair = examples_for(model())["pair"]
        e_g = (f"e.g. ?token={quote(pair['answer'])}&versus={quote(pair['versus'])}, " if pair else "")
        raise ApiError(f"?versus= is the same token as ?token=: give two different tokens, {e_g}"
                       "or leave out ?versus= for one logit.")

    def compute():
        try:
            with forward_lock():                      # [parts, d] @ [d, vocab]
                return attribution_answer(model(), run, position, token, versus, k)
        except GPT2npError as e:                      # ?versus= is the model's top-1 (the default ?token=)
            raise ApiError(f"?versus=: {e}") from None
    return json_bytes(run.memo(("attribution", position, token, versus, k), compute))
