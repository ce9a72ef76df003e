"""The value side and the output, a blueprint of their own (registered by `create_app`): what a
head moves, one token's walk through a block, and the direct logit attribution.

    GET /api/runs/<h>/value?layer&head&query        the value ledger (ledger.value_ledger)
    GET /api/runs/<h>/walk?layer&head&query         one token through one block, step by step (walk.walk)
    GET /api/runs/<h>/attribution?position&token|token_id&versus|versus_id&k
                                                    interventions.logit_attribution

All three read the arrays the run kept (`Run.trace()`); the walk computes the one block again for
the one token from them (`gpt2np.oneblock.one_block`: no forward pass), so it never waits for the
model. The attribution's [parts, d] @ [d, vocab] product is a forward pass's worth of work: it
takes its turn (`api.model_slot`). The walk and the attribution are kept per run as JSON (`Run.memo`).
"""

from urllib.parse import quote

from flask import Blueprint, jsonify

from gpt2np import GPT2npError
from gpt2np.analysis.examples import examples_for

from ..answers.ledger import value_ledger
from ..answers.panels import attribution_answer, walk_answer
from . import args
from .analysis import gated_memo, json_bytes
from .api import get_run, model, stop_if_gone
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

    def compute():                                    # one block for one token, from the kept arrays
        stop_if_gone()                                # (not for a client that left)
        return walk_answer(model(), run, run.trace(), layer, head, query)
    return json_bytes(run.memo(("walk", layer, head, query), compute))


def attribution_bytes(config):
    """float64 [parts, V] twice: every part of the residual stream (embeddings, heads, MLPs) times wteᵀ."""
    return 2 * 8 * (config.n_layer * (config.n_head + 1) + 3) * config.vocab_size


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

    del run                                           # not kept while waiting for the model

    def compute(run):
        try:                                          # [parts, d] @ [d, vocab]
            return attribution_answer(model(), run, position, token, versus, k)
        except GPT2npError as e:                      # ?versus= is the model's top-1 (the default ?token=)
            raise ApiError(f"?versus=: {e}") from None
    return gated_memo(handle, ("attribution", position, token, versus, k), attribution_bytes(model().config),
                      "The attribution", compute)
