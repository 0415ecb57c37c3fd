"""Fixtures shared by the test modules (pytest finds them here; no imports needed)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One PyTorch thread for a module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`):
    on two cores shared with other jobs, PyTorch's spinning threads slowed eager runs ~20x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
