"""`--json [FILE]`, the same on every verb that has a result to hand on.

    alignvar-edge VERB ... --json         the result as JSON on stdout, instead of the text
    alignvar-edge VERB ... --json FILE    the text on stdout as usual, and the JSON written to FILE

Progress and notes go to stderr either way, so `--json | jq` always reads one JSON document. FILE is
written atomically (a reader never sees half of it), and before the text: a closed stdout cannot lose it.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from alignvar_edge.bench.schema import is_report
from alignvar_edge.fsmodes import unwritable_folder, write_text
from alignvar_edge.jsonsafe import dumps

__all__ = ["STDOUT", "add_json_option", "emit"]

STDOUT = "-"


def json_target(text: str) -> str:
    """FILE must name a .json file: `info --json alignvar-tiny` would otherwise swallow the checkpoint."""
    if text != STDOUT and not text.lower().endswith(".json"):
        raise argparse.ArgumentTypeError(f"FILE must end in .json, got {text!r} (put positional "
                                         "arguments before a bare --json)")
    if text != STDOUT and os.path.isfile(text) and is_report(text):
        # a benchmark report is the result of minutes of timing on some device: only bench replaces it
        raise argparse.ArgumentTypeError(f"{text} is a benchmark report (alignvar-edge bench), which this verb "
                                         "does not replace; choose another FILE")
    if text != STDOUT and (folder := unwritable_folder(text)) is not None:
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {folder} is not writable; "
                                         "choose another FILE")
    return text


def add_json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", nargs="?", const=STDOUT, default=None, metavar="FILE", type=json_target,
                        help=f"{what} as JSON: alone, on stdout instead of the text; with FILE, "
                             "written there as well as the text on stdout")


def emit(target: str | None, payload: Any, text: str) -> None:
    """Print `text`, or the JSON of `payload` in its place (target '-'); and write it to a FILE target.

    FILE is written before anything is printed: a reader that closes stdout early (`| head -1`)
    ends the printing, and must not cost the user the file they asked for."""
    doc = dumps(payload)
    if target == STDOUT:
        print(doc, end="")
        return
    if target:
        write_text(target, doc)
    print(text)
