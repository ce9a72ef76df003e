"""Every error the viewer returns is JSON: {"error": message, "status": code}, never a traceback.

`ApiError` is raised by the API for bad requests; `GPT2npError` from the core (empty text, too
many tokens, ids out of range) is a 400 with the core's own message; work larger than the whole
memory bound (`runs.TooLarge`) a 413 naming the --cache-mb that fits; a full queue for the model
(`gate.Busy`) a 503 with Retry-After; a client that left (`gate.ClientGone`) a 499 nobody reads;
Werkzeug's HTTP errors (404, 405, 413, ...) keep their status; anything else is logged and
answered with a plain 500.
"""

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from gpt2np import GPT2npError

from ..answers.runs import TooLarge
from ..gate import Busy, ClientGone

RETRY_AFTER_PER_REQUEST = 3      # seconds per request ahead, for Retry-After (a pass of ~1,000 tokens)

HTTP_MESSAGES = {
    404: "Not found: {path}. The page is at / and the API under /api (see the README).",
    405: "Method {method} is not allowed on {path}; allowed: {allowed}.",
    413: "The request body is too large (limit {limit} bytes). Send a shorter text.",
}


class ApiError(Exception):
    """A request the user can fix: message says what to send instead; `fields` go into the JSON
    beside it (e.g. both tokenizations of a pair that does not align)."""

    def __init__(self, message, status=400, **fields):
        super().__init__(message)
        self.message, self.status, self.fields = message, status, fields


def error_response(message, status, **fields):
    response = jsonify(error=message, status=status, **fields)
    response.status_code = status
    return response


def register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(e):
        return error_response(e.message, e.status, **e.fields)

    @app.errorhandler(GPT2npError)
    def core_error(e):
        return error_response(str(e), 400)

    @app.errorhandler(TooLarge)
    def too_large(e):
        return error_response(str(e), 413)

    @app.errorhandler(Busy)
    def busy(e):
        most = current_app.extensions["gpt2np.gate"].max_waiting
        response = error_response(f"{e} for the model (one runs, at most {most} wait): try again in "
                                  "a few seconds.", 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_PER_REQUEST * max(e.ahead, 1))
        return response

    @app.errorhandler(ClientGone)
    def client_gone(e):
        return error_response("The client closed the connection; nothing was computed for it.", 499)

    @app.errorhandler(HTTPException)
    def http_error(e):
        template = HTTP_MESSAGES.get(e.code)
        allowed = ", ".join(sorted(getattr(e, "valid_methods", None) or []))
        message = (template.format(path=request.path, method=request.method, allowed=allowed,
                                   limit=app.config.get("MAX_CONTENT_LENGTH"))
                   if template else f"{e.name}: {e.description}")
        response = error_response(message, e.code or 500)
        if e.code == 405 and allowed:
            response.headers["Allow"] = allowed
        return response

    @app.errorhandler(Exception)
    def unexpected(e):
        app.logger.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(f"Internal error ({type(e).__name__}); the server log has the "
                              "details. Please report it with the sentence you ran.", 500)
