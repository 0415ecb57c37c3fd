"""Writing a report's files: JSON first (the result), then the plot, then Markdown linking it.

Each file is written to a temporary sibling and renamed into place, so a reader (or a crash) never
sees half a file.
"""
from __future__ import annotations

import os
from typing import Any

from alignvar_edge.bench.render import plot_report, report_markdown
from alignvar_edge.bench.schema import write_json
from alignvar_edge.fsmodes import write_text

__all__ = ["write_outputs"]


def write_outputs(report: dict[str, Any], out: str | None, md: str | None, plot: str | None) -> None:
    if out:
        write_json(out, report)
    if plot:
        plot_report(report, plot)
    if md:
        rel = os.path.relpath(plot, os.path.dirname(os.path.abspath(md))) if plot else None
        write_text(md, report_markdown(report, rel))
