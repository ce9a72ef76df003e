"""How every refused request of the viewer's JSON API must look (docs/hardening.md)."""


def error_of(response, status=400):
    """The message of a refused request, after checking it is one: the given status, a JSON body
    {"error": a non-empty message without a traceback, "status": the same status}."""
    assert response.status_code == status, response.data[:300]
    assert response.is_json, response.data[:300]
    body = response.get_json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    return body["error"]
