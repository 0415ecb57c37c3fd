"""Benchmarks: latency, memory, FLOPs/roofline and fidelity of engines, in reports that merge
across devices.

    >>> from alignvar_edge.bench import BenchOptions, run_bench
    >>> report = run_bench(["exports/tiny", "openvino:exports/tiny"], options=BenchOptions(runs=10))

`alignvar-edge bench` and `alignvar-edge deploy` are the command-line faces (bench/commands.py,
alignvar_edge/deploy.py); the report format is documented in bench/schema.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alignvar_edge.bench.schema import SCHEMA_VERSION, read_report

if TYPE_CHECKING:       # what the lazy names below are, for type checkers (the package ships py.typed)
    from alignvar_edge.bench.merge import merge_reports
    from alignvar_edge.bench.runner import BenchOptions, run_bench

__all__ = ["SCHEMA_VERSION", "BenchOptions", "merge_reports", "read_report", "run_bench"]


def __getattr__(name: str) -> Any:
    # the runner pulls in torch and the runtimes: import it only when asked
    if name in ("BenchOptions", "run_bench"):
        from alignvar_edge.bench import runner
        return getattr(runner, name)
    if name == "merge_reports":
        from alignvar_edge.bench.merge import merge_reports
        return merge_reports
    raise AttributeError(name)
