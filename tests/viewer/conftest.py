"""Fixtures of the viewer's tests: one app on the bundled demo model for the whole session, its
model, a client of it, and the test module's SENTENCE run through it. Its cache of recent runs is
shared by every test that uses it."""

import pytest

from viewer import create_app


@pytest.fixture(scope="session")
def demo_app():
    """The viewer on the bundled demo model (gpt2np/demo), loaded once."""
    return create_app({"MODEL": "demo"})


@pytest.fixture()
def client(demo_app):
    """A client of the demo app (a module on another app defines its own `client`)."""
    return demo_app.test_client()


@pytest.fixture(scope="session")
def demo(demo_app):
    """The demo app's own model (gpt2np.Model)."""
    return demo_app.extensions["gpt2np.model"]


@pytest.fixture(scope="module")
def ran(demo_app, request):
    """The test module's SENTENCE run through the demo app: (its handle, the trace gpt2np gives for
    the same text)."""
    text = request.module.SENTENCE
    body = demo_app.test_client().post("/api/run", json={"text": text}).get_json()
    return body["handle"], demo_app.extensions["gpt2np.model"].run(text)
