"""`--json [FILE]`, the same on every verb that has a result to hand on.

    alignvar-edge VERB ... --json         the result as JSON on stdout, instead of the text
    alignvar-edge VERB ... --json FILE    the text on stdout as usual, and the JSON written to FILE

Progress and notes go to stderr either way, so `--json | jq` reads one JSON document from any run
that starts: the result, or where the run fails the ERROR result a FILE gets (a usage error the
argument parser refuses prints nothing on stdout). FILE is
written atomically (a reader never sees half of it), and before the text: a closed stdout cannot lose it.
Every result names the version that wrote it (`"alignvar_edge"`), and an existing FILE is replaced
only when it is such a result (or empty): `--json model/config.json` must not cost a checkpoint its
config, nor `--json report.json` a device's benchmark run. That is asked when the option is read and
again as FILE is renamed into place: a file written there while the verb ran is kept.
"""
from __future__ import annotations

import argparse
import os
from contextlib import contextmanager, suppress
from typing import Any, Iterator

from alignvar_edge import __version__, safe_stop
from alignvar_edge.caller import option
from alignvar_edge.bench.schema import is_report
from alignvar_edge.errors import InputError, OutputExistsError, out_of_memory
from alignvar_edge.fsmodes import unwritable_folder, write_text, written_meanwhile
from alignvar_edge.jsonsafe import dumps, loads
from alignvar_edge.name_text import readable_texts
from alignvar_edge.outputs import check_outside_artifacts

__all__ = ["STDOUT", "Result", "add_json_option", "is_own_result", "no_stale_result", "write_result"]

STDOUT = "-"
OWNER_KEY = "alignvar_edge"                # a result's first key: the version that wrote it
# eval wrote its results without OWNER_KEY before every verb had it; these keys mark them
EVAL_RESULT_KEYS = ("images", "seed", "degradation")


def _stamped(payload: Any) -> Any:
    return {OWNER_KEY: __version__, **payload} if isinstance(payload, dict) and OWNER_KEY not in payload else payload


def _document(payload: Any) -> str:
    """A result's JSON text: stamped, and each file name in it as text (`readable_texts`), as every
    JSON reader shows it (jq and browsers read a lone surrogate escape as U+FFFD: two files in one)."""
    return dumps(readable_texts(_stamped(payload)))


def write_result(target: str, payload: Any) -> None:
    """A verb's JSON result into FILE, atomically, with the version that wrote it."""
    write_text(target, _document(payload))


def _not_replaced(path: str) -> str | None:
    """Why FILE `path` is not a file a result may replace, as what follows its name, with what to do
    ('is a benchmark report ...'); None where it is none (missing, empty, or an earlier result)."""
    if not os.path.isfile(path):
        return None
    if is_report(path):
        # a benchmark report is the result of minutes of timing on some device: only bench replaces it
        return "is a benchmark report (alignvar-edge bench), which this verb does not replace; choose another FILE"
    if not is_own_result(path):
        return ("exists and is not a result alignvar-edge wrote, so it is not replaced; choose another FILE, or "
                "remove it first")
    return None


def _still_replaceable(path: str) -> None:
    """`_not_replaced` asked again as FILE is renamed into place (`write_text`'s recheck)."""
    if (why := _not_replaced(path)) is not None:
        raise written_meanwhile(f"{option('json', path)} {why}")


def is_own_result(path: str) -> bool:
    """An empty file, or a JSON object a verb wrote (OWNER_KEY, or an earlier eval's keys)."""
    try:
        if os.path.getsize(path) == 0:
            return True
        with open(path, "rb") as fh:
            data = loads(fh.read())          # someone's file: a deep nesting is a ValueError too
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (OWNER_KEY in data or all(k in data for k in EVAL_RESULT_KEYS))


class Result:
    """Where a verb's result goes: printed as text or JSON, and written to a FILE target."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.written: str | None = None      # the JSON this run puts in FILE, once it starts writing it
        self.printed = False                 # the result's JSON went to stdout (target '-'), or began to

    def emit(self, payload: Any, text: str) -> None:
        """Print `text`, or the JSON of `payload` in its place (target '-'); and write it to a FILE target.

        FILE is written before anything is printed: a reader that closes stdout early (`| head -1`)
        ends the printing, and must not cost the user the file they asked for."""
        if self.target == STDOUT:
            self.printed = True
            print(_document(payload), end="")
            return
        if (target := self.target):
            self.written = _document(payload)
            try:
                write_text(target, self.written, recheck=lambda: _still_replaceable(target))
            except OutputExistsError:
                print(text)          # the result, though FILE was taken meanwhile: the error line says so
                raise
        print(text)

    def in_file(self) -> bool:
        """FILE holds this run's result (its write finished, whatever came after it)."""
        if self.written is None or not self.target:
            return False
        try:
            with open(self.target, encoding="utf-8") as fh:
                return fh.read() == self.written
        except (OSError, ValueError):
            return False


@contextmanager
def no_stale_result(target: str | None, what: dict[str, Any]) -> Iterator[Result]:
    """A run that ends in an error replaces the result FILE (`--json FILE`) an earlier run left with
    an ERROR result (`what` and the reason), so a stale verdict never outlives a failed re-run: CI
    steps and scripts (the TensorRT kit's) read that file as this run's. Every verb with --json runs
    inside this and hands its result on through the `Result` it yields, so a failed write of FILE
    (a full disk) counts as a failed run too; a FILE that holds this run's result is kept. A bare
    `--json` prints that ERROR result on stdout instead, unless the result was printed: its reader
    (`--json | jq`) always gets one JSON document."""
    result = Result(target)
    try:
        yield result
    except BaseException as e:
        error = {**what, "result": "ERROR", "reason": _failure(e)}
        if target == STDOUT and not result.printed:
            with suppress(OSError, ValueError):      # a stdout that takes nothing: the error line still says why
                print(_document(error), end="", flush=True)
        elif (target and target != STDOUT and not result.in_file()
                and (not os.path.exists(target) or is_own_result(target))):
            try:
                write_result(target, error)
                safe_stop.error_record(target)
            except OSError:                          # cannot write it: at least no stale verdict
                with suppress(OSError):
                    os.unlink(target)
        raise


def _failure(e: BaseException) -> str:
    """Why the run failed, for its ERROR record: a stop names its signal where the CLI's handler
    said which (SIGINT, SIGTERM, SIGHUP)."""
    if isinstance(e, KeyboardInterrupt):
        return f"interrupted ({e})" if str(e) else "interrupted"
    return str(out_of_memory(e) or e) or type(e).__name__


def json_target(text: str) -> str:
    """FILE must name a .json file: `info --json alignvar-tiny` would otherwise swallow the checkpoint."""
    if text == STDOUT:
        return text
    if not text.lower().endswith(".json"):
        raise argparse.ArgumentTypeError(f"FILE must end in .json, got {text!r} (put positional "
                                         "arguments before a bare --json)")
    try:
        check_outside_artifacts(text, text)
    except OutputExistsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if (why := _not_replaced(text)) is not None:
        raise argparse.ArgumentTypeError(f"{text} {why}")
    try:
        folder = unwritable_folder(text)
    except InputError as e:             # a name too long: argparse would drop a ValueError's words
        raise argparse.ArgumentTypeError(str(e)) from None
    if folder is not None:
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {folder} is not writable; "
                                         "choose another FILE")
    return text


def add_json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", nargs="?", const=STDOUT, default=None, metavar="FILE", type=json_target,
                        help=f"{what} as JSON: alone, on stdout instead of the text; with FILE, "
                             "written there as well as the text on stdout")
