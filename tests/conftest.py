import os

import pytest

import graphflow as gf

if os.environ.get("GRAPHFLOW_TEST_CUDA") == "emulator":  # see pycuda_shaped.py
    from graphflow.codegen import devices
    from pycuda_shaped import PycudaShaped

    devices._drivers["cuda"] = PycudaShaped()


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
