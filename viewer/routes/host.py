"""The Host check, run before every request of the viewer app."""

from flask import current_app, request

from .errors import ApiError


# -- the Host check ------------------------------------------------------------------------------
# A page on another site can point its own domain name at 127.0.0.1 and then read the viewer as
# if it were that site (DNS rebinding); its requests carry that domain in the Host header. So a
# request is served only when its Host names this machine (ALLOWED_HOSTS, any port), unless the
# viewer was started with --host ADDRESS to serve other machines (ALLOWED_HOSTS None).
def host_name(host):
    """The name part of a Host header, lower case: "LocalHost:8765" -> "localhost",
    "[::1]:8765" -> "[::1]"."""
    host = host.lower()
    return host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]


def refuse_foreign_host():
    """403 for a request whose Host header is not one of ALLOWED_HOSTS (the port is not checked)."""
    allowed = current_app.config["ALLOWED_HOSTS"]
    if allowed is None or host_name(request.host) in allowed:
        return
    port = request.environ.get("SERVER_PORT", "8765")
    raise ApiError(f"Host {request.host or '(missing or invalid)'!r} is not this viewer's address: "
                   f"it answers only {', '.join(allowed)} (a guard against DNS rebinding). Open "
                   f"http://localhost:{port}/ instead, or start the viewer with "
                   "`python -m viewer --host ADDRESS` to serve other machines.", 403)
