import pytest

import graphflow as gf


@pytest.fixture(autouse=True)
def fresh_graph():
    """Every test builds into its own default graph."""
    gf.reset_default_graph()
    yield
    gf.reset_default_graph()


@pytest.fixture
def sess():
    with gf.Session(device="reference") as s:
        yield s
