"""Writing a report's files: JSON first (the result), then the plot, then Markdown linking it.

Each file is written to a temporary sibling and renamed into place, so a reader (or a crash) never
sees half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_outputs", "write_text"]


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_outputs(report: dict[str, Any], out: str | None, md: str | None, plot: str | None) -> None:
    from alignvar_edge.bench.render import plot_report, report_markdown
    from alignvar_edge.bench.schema import write_json
    if out:
        write_json(out, report)
    if plot:
        plot_report(report, plot)
    if md:
        rel = os.path.relpath(plot, os.path.dirname(os.path.abspath(md))) if plot else None
        write_text(md, report_markdown(report, rel))
