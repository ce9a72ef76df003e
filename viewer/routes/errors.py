"""Every error the viewer returns is JSON: {"error": message, "status": code}, never a traceback.

`ApiError` is raised by the API for bad requests; `GPT2npError` from the core (empty text, too
many tokens, ids out of range) is a 400 with the core's own message; Werkzeug's HTTP errors
(404, 405, 413, ...) keep their status; anything else is logged and answered with a plain 500.
"""

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

from gpt2np import GPT2npError

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
