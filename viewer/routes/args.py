"""Reading a request's arguments, the one place for it: whole and real numbers (from the URL or a
JSON body), what the views ask for by name (layer and head, a token position, how many tokens to
list, a token as text or id), flags, the JSON body.

Every bad value is an `ApiError` (a 400, or 415 for a body that is not JSON) whose message says
what was sent and what to send instead; nothing long is echoed back.
"""

import json
import math
import re

from flask import current_app, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from gpt2np import GPT2npError
from gpt2np.analysis import interventions
from gpt2np.analysis.examples import token_hint

from ..answers.panels import LIST_K
from .errors import ApiError

MAX_NUMBER_CHARS = 20            # longer URL text is not a number we take (nor echoed back)
MAX_K = 20                       # most tokens per list: the lens, the ablation, the attribution
MAX_TOKEN_CHARS = 100            # a "token" longer than this is not echoed back
ABSENT = object()


# -- what the views ask for ------------------------------------------------------------------------
def layer_head(config):
    """?layer= and ?head=, both required, checked on the model's config -> (layer, head)."""
    return (whole_number("layer", 0, config.n_layer - 1, "layer"),
            whole_number("head", 0, config.n_head - 1, "head"))


def position(run, name="position", body=None, last_by_default=False):
    """A token position of `run`, 0..n_tokens-1, as ?name= (or "name" in `body`): required, or
    the last position when absent with `last_by_default`. name: "position", "query" or "key"."""
    what = "position" if name == "position" else f"{name} position"
    default = run.n_tokens - 1 if last_by_default else ABSENT
    return whole_number(name, 0, run.n_tokens - 1, what, body, default)


def layer_head_query(run, config):
    """?layer=, ?head= and ?query= -> (layer, head, query)."""
    return (*layer_head(config), position(run, "query"))


def tokens_to_list(body=None):
    """?k= (or "k" in `body`): how many tokens a list shows, 1..MAX_K, answers.panels.LIST_K (5)
    when absent (as a saved file's lens and attribution hold them)."""
    return whole_number("k", 1, MAX_K, "number of tokens to list", body, default=LIST_K)


def token_arg(model, token):
    """A token to follow, given as text (exactly one token) or an id -> its id, or None."""
    if token is None or token == "":
        return None
    if isinstance(token, bool) or not isinstance(token, (int, str)):
        raise ApiError(f'"token" must be text (one token{token_hint(model)}) or a token id.')
    if isinstance(token, str) and len(token) > MAX_TOKEN_CHARS:
        raise ApiError(f"The token is {len(token):,} characters long: give one token "
                       f'(often with its leading space{token_hint(model)}) or its id.')
    return interventions.token_id(model, token)     # not one token, or out of range: a 400


def url_token(model, name):
    """A token from the URL, as ?name= (text, exactly one token) or ?name_id= (an id) -> its id,
    or None when neither is given. Errors name the field."""
    text = request.args.get(name) or None
    if f"{name}_id" in request.args:
        if text is not None:
            raise ApiError(f"Give ?{name}= (a token as text) or ?{name}_id= (its id), not both.")
        return whole_number(f"{name}_id", 0, model.config.vocab_size - 1, "token id")
    try:
        return token_arg(model, text)
    except (ApiError, GPT2npError) as e:
        raise ApiError(f"?{name}=: {e}") from None


# -- numbers ---------------------------------------------------------------------------------------


def whole_number(name, low, high, what, body=None, default=ABSENT):
    """The request's number `name` as an int in low..high, else a 400 that says the range.

    Read from the URL (?name=, text) or, with `body`, from that JSON object (a JSON integer; "3"
    and 3.0 are refused). Absent: `default`, or a 400 when there is none. `what` names the
    number in messages ("layer", "query position").
    """
    give = f"give the {what}, a whole number from {low} to {high}"
    label, value = read_number(name, body, give, "a whole number", r"-?\d+", int, (int,))
    if value is None:
        return missing(label, give, default)
    if not low <= value <= high:
        shown = value if abs(value) < 10 ** MAX_NUMBER_CHARS else "(a number that large)"
        raise ApiError(f"{label}{shown} is out of range: {give}.")
    return value


def real_number(name, low, high, what, body=None, default=ABSENT, above_low=False):
    """The request's number `name` as a finite float in low..high (above low, with `above_low`),
    else a 400 that says the range.

    Read from the URL (?name=, decimal text such as 0.8 or 1e-3) or, with `body`, from that JSON
    object (a JSON number; "0.8" and true are refused). Absent: `default`, or a 400.
    """
    give = (f"give the {what}, a number above {low:g} and at most {high:g}" if above_low
            else f"give the {what}, a number from {low:g} to {high:g}")
    label, value = read_number(name, body, give, "a number", r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", float,
                               (int, float))
    if value is None:
        return missing(label, give, default)
    value = float(value) if abs(value) < 10 ** MAX_NUMBER_CHARS else float("inf")
    if not (math.isfinite(value) and (low < value if above_low else low <= value) and value <= high):
        shown = f"{value:g}" if math.isfinite(value) else "(not a finite number)"
        raise ApiError(f"{label}{shown} is out of range: {give}.")
    return value


def read_number(name, body, give, noun, pattern, parse, json_types):
    """(label, value) of number `name`: from the URL (text matching `pattern`, then `parse`d) or,
    with `body`, from that JSON object (a value of one of `json_types`; bool is refused). None when
    absent; a 400 naming the field for anything else."""
    if body is None:
        label, value = f"?{name}=", request.args.get(name)
        if value is not None:
            if len(value) > MAX_NUMBER_CHARS:
                raise ApiError(f"{label} is {len(value):,} characters long: {give}.")
            if not re.fullmatch(pattern, value):
                raise ApiError(f"{label}{value!r} is not {noun}: {give}.")
            value = parse(value)
    else:
        label, value = f'"{name}": ', body.get(name)
        if value is not None and type(value) not in json_types:
            shown = json.dumps(value)
            shown = shown if len(shown) <= MAX_NUMBER_CHARS else f"(a {type(value).__name__})"
            raise ApiError(f"{label}{shown} is not {noun}: {give}.")
    return label, value


def missing(label, give, default):
    """`default` for an absent number, or a 400 when it is required."""
    if default is ABSENT:
        raise ApiError(f"Missing {label.strip()}: {give}.")
    return default


def flag_arg(name):
    return request.args.get(name, "0").lower() in ("1", "true", "yes", "on")


def json_object(example='{"text": "a sentence"} or {"ids": [464, 318]}'):
    """The body of a POST that makes the model run, as a dict; `example` goes into the messages."""
    # Only application/json: a web page on another site cannot send that without a CORS
    # preflight, which this server never answers, so it cannot make the viewer run the model.
    if not request.is_json:
        raise ApiError("Send the body as JSON with the header Content-Type: application/json.", 415)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is None and len(request.get_data()) >= limit:
        raise RequestEntityTooLarge()                  # chunked: Werkzeug cuts it at the limit
    try:
        body = request.get_json()
    except BadRequest as e:                            # not JSON, or not UTF-8
        cause = e.__cause__                            # Flask keeps the decoder's words here
        why = str(getattr(cause, "description", None) or cause or e.description)[:200]
        raise ApiError(f"The body is not valid JSON ({why}). Send a JSON object: {example}.") from None
    except RecursionError:                             # [[[[… nested deeper than Python's stack
        raise ApiError(f"The JSON body is nested too deeply. Send a JSON object: {example}.") from None
    if not isinstance(body, dict):
        raise ApiError(f"The body must be a JSON object: {example}.")
    return body


def refuse_unknown_fields(body, fields, send):
    """Refuse a JSON body with keys other than `fields`; `send` says what to send instead."""
    unknown = [ascii(k)[:40] for k in body if k not in fields]
    if unknown:
        raise ApiError(f"Unknown field{'s' * (len(unknown) > 1)} {', '.join(unknown[:5])}: send {send}.")
