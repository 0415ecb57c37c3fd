"""Writing a report's files: JSON first (the result), then the plot, then Markdown linking it.

Each file is written to a temporary sibling and renamed into place, so a reader (or a crash) never
sees half a file. `check_targets` refuses, before any measuring or writing, a target that would
replace something that is not an earlier output of its kind.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from alignvar_edge.bench.render import is_bench_plot, plot_report, report_markdown
from alignvar_edge.bench.schema import is_report, write_json
from alignvar_edge.errors import InputError, OutputExistsError
from alignvar_edge.fsmodes import unwritable_folder, write_text
from alignvar_edge.outputs import check_outside_artifacts

__all__ = ["check_targets", "write_outputs"]

# the first bytes of a Markdown page an earlier bench wrote (both titles, the single report's and
# the merged one's, begin so)
_MD_TITLE = "# alignvar-edge benchmark"


def _head(path: str, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def check_targets(out: str | None, md: str | None, plot: str | None, inputs: Sequence[str] = ()) -> None:
    """--out/--md/--plot replace an earlier bench output of their kind, never another file (a report
    being merged, notes, some other tool's JSON), and no two of them name one file."""
    for flag, p in (("--out", out), ("--md", md), ("--plot", plot)):
        if p == "-":                  # other verbs' `--json -`; here it would be a file named '-'
            raise InputError(f"{flag} - : bench writes its outputs to files, not to stdout; name a file "
                             "(the Markdown table is printed on stdout when --md is left out)")
    if plot and not plot.lower().endswith(".png"):
        raise InputError(f"--plot {plot}: the plot is a PNG; name a file ending in .png")
    targets = [(flag, p) for flag, p in (("--out", out), ("--md", md), ("--plot", plot)) if p]
    seen: dict[str, str] = {}
    for flag, p in targets:
        key = os.path.realpath(p)
        if key in seen:
            raise InputError(f"{flag} {p} is also {seen[key]}: give each output its own file")
        seen[key] = flag
    for flag, p in targets:
        check_outside_artifacts(p, f"{flag} {p}")
        if (folder := unwritable_folder(p)) is not None:        # found now, not after minutes of timing
            raise InputError(f"{flag} {p}: the folder {folder} is not writable; choose another file")
        if not os.path.lexists(p):
            continue
        if any(os.path.exists(i) and os.path.samefile(i, p) for i in inputs):
            raise OutputExistsError(f"{flag} {p} is one of the reports being merged; choose another file")
        if os.path.isdir(p):
            raise OutputExistsError(f"{flag} {p} is a directory; name a file")
        ours = (is_report(p) if flag == "--out" else
                _head(p, len(_MD_TITLE)) == _MD_TITLE.encode() if flag == "--md" else is_bench_plot(p))
        if not ours:
            what = {"--out": "a bench report", "--md": "a bench Markdown report", "--plot": "a plot bench drew"}[flag]
            raise OutputExistsError(f"{flag} {p}: the file exists and is not {what}, so bench does not replace "
                                    "it; choose another file, or remove it yourself")


def write_outputs(report: dict[str, Any], out: str | None, md: str | None, plot: str | None) -> None:
    if out:
        write_json(out, report)
    if plot:
        plot_report(report, plot)
    if md:
        rel = os.path.relpath(plot, os.path.dirname(os.path.abspath(md))) if plot else None
        write_text(md, report_markdown(report, rel))
