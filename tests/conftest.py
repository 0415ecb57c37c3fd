"""Fixtures shared by the test modules (pytest finds them here; no imports needed)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from _runtime_fixtures import cache_root, export_dir, sharp_model

# Under `pytest -n` every worker is one of several processes sharing the cores: one thread each, here
# and in the CLI subprocesses the tests start, or PyTorch's spinning threads stall the other workers.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One PyTorch thread for a module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`):
    on two cores shared with other jobs, PyTorch's spinning threads slowed eager runs ~20x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def micro_export(pytestconfig: pytest.Config) -> Path:
    """The sharpened `micro` model's single-graph ONNX export (cached on disk between runs)."""
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))
