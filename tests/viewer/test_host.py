"""The viewer's Host check (a guard against DNS rebinding), through Flask's test_client.

A page on another site can point its own domain at 127.0.0.1; the browser then sends that domain
in the Host header. The viewer serves only Host names of this machine (any port) unless it was
started with --host on another address. The same check against the real server process is in
test_viewer_server.py.
"""

import pytest

from viewer import create_app
from viewer.cli import main as cli_main

FOREIGN = ["evil.example", "evil.example:8765", "localhost.evil.example:8765", "127.0.0.1.nip.io",
           "192.168.1.20:8765", "[::2]:8765"]
LOCAL = ["localhost", "localhost:8765", "127.0.0.1", "127.0.0.1:8765", "[::1]:8765", "LocalHost:9000"]
ROUTES = ["/", "/api/model", "/static/app.js"]


@pytest.fixture(scope="module")
def app(small_model_dir):
    return create_app({"MODEL": str(small_model_dir)})


def get(app, path, host):
    return app.test_client().get(path, headers={"Host": host})


@pytest.mark.parametrize("host", FOREIGN)
def test_foreign_host_is_refused_on_the_page_and_the_api(app, host):
    for path in ROUTES:
        r = get(app, path, host)
        assert r.status_code == 403 and r.is_json, (path, host, r.status_code)
        body = r.get_json()
        assert body["status"] == 403
        assert repr(host.lower()) in body["error"] and "DNS rebinding" in body["error"]
        assert "http://localhost:" in body["error"] and "--host" in body["error"]
    r = app.test_client().post("/api/run", json={"ids": [1, 2, 3]}, headers={"Host": host})
    assert r.status_code == 403


@pytest.mark.parametrize("host", LOCAL)
def test_this_machine_is_served_with_or_without_the_port(app, host):
    for path in ROUTES:
        assert get(app, path, host).status_code == 200, (path, host)
    r = app.test_client().post("/api/run", json={"ids": [1, 2, 3]}, headers={"Host": host})
    assert r.status_code == 200 and r.get_json()["n_tokens"] == 3


def test_default_test_client_host_is_served(app):
    """Flask's test client sends Host: localhost: every other API test runs through the check."""
    assert app.test_client().get("/api/model").status_code == 200


def test_explicit_host_on_another_address_accepts_any_host_name(capsys, small_model_dir):
    exposed = cli_main(["--model", str(small_model_dir), "--host", "0.0.0.0"], serve=False)
    assert exposed.config["ALLOWED_HOSTS"] is None
    for host in FOREIGN:
        assert get(exposed, "/api/model", host).status_code == 200, host
        assert get(exposed, "/", host).status_code == 200, host
    # A loopback address given explicitly exposes nothing: the check stays.
    for address in ("127.0.0.1", "localhost", "::1"):
        local = cli_main(["--model", str(small_model_dir), "--host", address], serve=False)
        assert get(local, "/api/model", "evil.example:8765").status_code == 403, address
        assert get(local, "/api/model", "localhost:8765").status_code == 200, address
    default = cli_main(["--model", str(small_model_dir)], serve=False)
    assert get(default, "/api/model", "evil.example").status_code == 403
    capsys.readouterr()


def test_create_app_takes_the_allowed_names(small_model_dir):
    app = create_app({"MODEL": str(small_model_dir), "ALLOWED_HOSTS": ("viewer.lan",)})
    assert get(app, "/api/model", "viewer.lan:8765").status_code == 200
    assert get(app, "/api/model", "localhost:8765").status_code == 403
    anyone = create_app({"MODEL": str(small_model_dir), "ALLOWED_HOSTS": None})
    assert get(anyone, "/api/model", "evil.example").status_code == 200
