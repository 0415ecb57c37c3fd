"""The GEMM peak at a thread count counts only the libraries whose threads it can set."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from alignvar_edge.bench import peak
from alignvar_edge.bench.render import report_markdown
from alignvar_edge.bench.schema import read_report

ROOT = Path(__file__).resolve().parent.parent
CANNOT_SET = "its BLAS threads cannot be set here (threadpoolctl controls none it loaded)"


def test_a_blas_whose_threads_cannot_be_set_is_left_out_of_a_one_thread_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Mac numpy's BLAS (Accelerate) has no threadpoolctl controller: its GEMM ran on every core
    and the matrix unit, labelled `numpy/1t`, and set the report's one-thread roof."""
    monkeypatch.setattr(peak, "_libraries", lambda: ["numpy"])
    monkeypatch.setattr(peak, "_blas_threads_unsettable", lambda: None)
    assert list(peak.measure_peak(n=64, repeats=1, threads=1)["by_config"]) == ["numpy/1t"]
    monkeypatch.setattr(peak, "_libraries", lambda: ["numpy", "torch"])
    monkeypatch.setattr(peak, "_blas_threads_unsettable", lambda: CANNOT_SET)
    result = peak.measure_peak(n=64, repeats=1, threads=1)
    assert list(result["by_config"]) == ["torch/1t"] and result["library"] == "torch"
    assert result["left_out"] == {"numpy": CANNOT_SET} and result["numpy_gflops"] is None
    assert "(torch)" in result["method"]
    # without a thread count nothing is claimed about threads, and numpy counts as it runs
    assert "numpy/defaultt" in peak.measure_peak(n=64, repeats=1)["by_config"]


def test_without_threadpoolctl_numpy_is_left_out_for_that_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host install had no threadpoolctl (only NNCF's scikit-learn brought it), and every
    `bench --threads N` said numpy's BLAS had no controller: the fix was to install it."""
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)          # `import threadpoolctl` fails
    monkeypatch.setattr(peak, "_libraries", lambda: ["numpy", "torch"])
    why = peak.measure_peak(n=64, repeats=1, threads=1)["left_out"]["numpy"]
    assert why.startswith("threadpoolctl is not installed: `pip install ") and "threadpoolctl" in why[30:], why


def test_the_markdown_peak_line_says_what_was_left_out_and_why() -> None:
    report = read_report(ROOT / "docs" / "results" / "epyc-2core" / "d16.json")
    method = report["peak"]["method"]
    assert "left out" not in report_markdown(report)
    report["peak"]["left_out"] = {"numpy": CANNOT_SET}
    line = next(ln for ln in report_markdown(report).splitlines() if ln.startswith("- peak:"))
    assert f"{method}); numpy left out: {CANNOT_SET}" in line, line


def test_the_host_extra_installs_threadpoolctl_at_a_version_the_constraints_pin() -> None:
    # bench runs on a host installed with `alignvar-edge[host]`: without threadpoolctl there, no
    # thread-counted peak of that install counted numpy
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = [Requirement(r) for r in extras["host"] if Requirement(r).name == "threadpoolctl"]
    assert len(wanted) == 1, extras["host"]
    pins = [Requirement(ln) for ln in (ROOT / "constraints.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    pinned = next(str(next(iter(r.specifier)).version) for r in pins if r.name == "threadpoolctl")
    assert wanted[0].specifier.contains(pinned), (wanted, pinned)
