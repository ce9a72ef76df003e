"""Fixtures of the viewer's tests: one app on the bundled demo model for the whole session, and a
client of it. Its cache of recent runs is shared by every test that uses it."""

import pytest

from viewer import create_app


@pytest.fixture(scope="session")
def demo_app():
    """The viewer on the bundled demo model (gpt2np/demo), loaded once."""
    return create_app({"MODEL": "demo"})


@pytest.fixture()
def demo_client(demo_app):
    return demo_app.test_client()
