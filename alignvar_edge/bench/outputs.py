"""Writing a report's files: JSON first (the result), then the plot, then Markdown linking it.

Each file is written to a temporary sibling and renamed into place, so a reader (or a crash) never
sees half a file. `check_targets` refuses, before any measuring or writing, a target that would
replace something that is not an earlier output of its kind, or (without --force) a report that
may be the only copy of another machine's figures; `rechecked` asks it again when the outputs are
written, before any of them and as each is renamed in (a file written there meanwhile is kept).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from alignvar_edge.bench.host import fingerprint, machine_differences
from alignvar_edge.bench.render import is_bench_plot, plot_report, report_markdown
from alignvar_edge.bench.schema import existing_report, write_json
from alignvar_edge.caller import option
from alignvar_edge.errors import InputError, OutputExistsError
from alignvar_edge.fsmodes import starts_with, unwritable_folder, write_text, written_meanwhile
from alignvar_edge.name_text import readable_texts
from alignvar_edge.outputs import check_outside_artifacts

__all__ = ["check_same_machine", "check_targets", "rechecked", "write_outputs"]

# the first bytes of a Markdown page an earlier bench wrote (both titles, the single report's and
# the merged one's, begin so)
_MD_TITLE = "# alignvar-edge benchmark"


def check_targets(out: str | None, md: str | None, plot: str | None, inputs: Sequence[str] = (),
                  force: bool = False) -> None:
    """--out/--md/--plot replace an earlier bench output of their kind, never another file (a report
    being merged, notes, some other tool's JSON), and no two of them name one file. Without `force`,
    a bench's --out replaces no merged report and a merge's no report of one run (`_check_kind`);
    which machine a report is of, `check_same_machine` decides. `inputs`: the reports a `bench merge`
    reads (none for a bench)."""
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
        if (folder := unwritable_folder(p, f"{flag} {p}")) is not None:     # found now, not after minutes of timing
            raise InputError(f"{flag} {p}: the folder {folder} is not writable; choose another file")
        if not os.path.lexists(p):
            continue
        if any(os.path.exists(i) and os.path.samefile(i, p) for i in inputs):
            raise OutputExistsError(f"{flag} {p} is one of the reports being merged; choose another file")
        if os.path.isdir(p):
            raise OutputExistsError(f"{flag} {p} is a directory; name a file")
        report = existing_report(p) if flag == "--out" else None
        ours = (report is not None if flag == "--out" else
                starts_with(p, _MD_TITLE.encode()) if flag == "--md" else is_bench_plot(p))
        if not ours:
            what = {"--out": "a bench report", "--md": "a bench Markdown report", "--plot": "a plot bench drew"}[flag]
            raise OutputExistsError(f"{flag} {p}: the file exists and is not {what}, so bench does not replace "
                                    "it; choose another file, or remove it yourself")
        if report is not None and not force:
            _check_kind(p, report, merging=bool(inputs))


def _replace_or_choose() -> str:
    return f"pass {option('force', True)} to replace it, or choose another file"


def _check_kind(path: str, report: dict[str, Any], merging: bool) -> None:
    """A merge replaces only a merged report (its reports make it again), never a report of one run,
    which may be the only copy of a device's figures; a bench never replaces a merged report."""
    merged = report.get("kind") == "merged"
    if merging and not merged:
        raise OutputExistsError(f"--out {path} is a report of one run, not a merged report: merging over it would "
                                f"lose its measurements; {_replace_or_choose()}")
    if merged and not merging:
        raise OutputExistsError(f"--out {path} is a merged report (`bench merge`'s), not an earlier report of a "
                                f"bench; {_replace_or_choose()}")


def check_same_machine(out: str, force: bool, host: dict[str, Any] | None = None) -> None:
    """Without `force`, refuse an --out holding a report of one run timed on another machine than
    `host`, the one the report being written is of (None: this machine; `bench trtexec`'s: its log's
    device, known once the log is read): perhaps the only copy of that machine's figures. A report
    of the same machine (`machine_differences` finds nothing: a kernel or C library update is not
    another machine) is replaced as an earlier output."""
    # not a file, or not a report: check_targets has said what else it may be
    report = existing_report(out) if not force and os.path.isfile(out) else None
    theirs = (report or {}).get("host")
    if report is None or report.get("kind") == "merged" or not isinstance(theirs, dict):
        return
    differ = machine_differences(theirs, host if host is not None else fingerprint(with_backends=False), "this run")
    if differ:
        raise OutputExistsError(f"--out {out} is a report timed on another machine ('{report.get('label')}': "
                                f"{'; '.join(differ)}), perhaps the only copy of its figures; {_replace_or_choose()}")


def rechecked(out: str | None, md: str | None, plot: str | None, inputs: Sequence[str] = (), force: bool = False,
              host: dict[str, Any] | None = None) -> Callable[[], None]:
    """`check_targets` (and for a report of one run `check_same_machine`, `host` as there) asked again
    when the outputs are written: a target written while this run worked (a user's notes, a merged
    report, another machine's report) is kept, refused in one line saying so."""
    def recheck() -> None:
        try:
            check_targets(out, md, plot, inputs, force)
            if out and not inputs:
                check_same_machine(out, force, host)
        except OutputExistsError as e:
            raise written_meanwhile(str(e)) from None
    return recheck


def write_outputs(report: dict[str, Any], out: str | None, md: str | None, plot: str | None,
                  recheck: Callable[[], None] | None = None) -> None:
    """`recheck` (`rechecked`): asked before any file is written, so a target taken meanwhile leaves
    none written, and again as each file is renamed into place. The files hold the report's names
    and labels as text (`readable_texts`): a label or path that is no UTF-8 made a Markdown page
    and a plot fail, after the timing, and a strict JSON reader shows it as U+FFFD."""
    if recheck is not None:
        recheck()
    report = readable_texts(report)
    if out:
        write_json(out, report, recheck)
    if plot:
        plot_report(report, plot, recheck)
    if md:
        rel = os.path.relpath(plot, os.path.dirname(os.path.abspath(md))) if plot else None
        write_text(md, report_markdown(report, rel), recheck)
