"""The GEMM peak at a thread count counts only the libraries whose threads it can set."""
from __future__ import annotations

import pytest

from alignvar_edge.bench import peak


def test_a_blas_whose_threads_cannot_be_set_is_left_out_of_a_one_thread_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Mac numpy's BLAS (Accelerate) has no threadpoolctl controller: its GEMM ran on every core
    and the matrix unit, labelled `numpy/1t`, and set the report's one-thread roof."""
    monkeypatch.setattr(peak, "_libraries", lambda: ["numpy"])
    monkeypatch.setattr(peak, "_blas_limitable", lambda: True)
    assert list(peak.measure_peak(n=64, repeats=1, threads=1)["by_config"]) == ["numpy/1t"]
    monkeypatch.setattr(peak, "_libraries", lambda: ["numpy", "torch"])
    monkeypatch.setattr(peak, "_blas_limitable", lambda: False)
    result = peak.measure_peak(n=64, repeats=1, threads=1)
    assert list(result["by_config"]) == ["torch/1t"] and result["library"] == "torch"
    assert "numpy" in result["left_out"] and result["numpy_gflops"] is None
    assert "(torch)" in result["method"]
    # without a thread count nothing is claimed about threads, and numpy counts as it runs
    assert "numpy/defaultt" in peak.measure_peak(n=64, repeats=1)["by_config"]


def test_threadpoolctl_controls_the_blas_numpy_loaded_here() -> None:
    """This CI's numpy (OpenBLAS) is limitable: the peak in its reports includes numpy."""
    pytest.importorskip("threadpoolctl")
    assert peak._blas_limitable()
