"""The `alignvar-edge` command.

Each area of the package registers its own verbs in a `commands.py` module (a function
`register(subparsers)` that adds parsers whose default `func(args) -> int` runs the verb), so the
CLI grows without every verb living in one file. Errors the user can fix are printed as one line
on stderr with a non-zero exit code; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from alignvar_edge import __version__, caller, console_text, progress, safe_stop
from alignvar_edge.errors import AlignVAREdgeError, HostToolsError, host_tools_error, out_of_memory
from alignvar_edge.extras import is_installed
from alignvar_edge.fsmodes import NO_SPACE, NoRoomError, byte_text, is_temp_folder, name_too_long
from alignvar_edge.lazy import host_package
from alignvar_edge.name_text import line_text

# modules with a `register(subparsers)` function, in the order their verbs are listed, with the verbs
# each registers
COMMAND_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alignvar_edge.model.commands", ("info", "demo", "import")),
    ("alignvar_edge.train.commands", ("train", "eval")),
    ("alignvar_edge.export.commands", ("export", "inspect")),
    ("alignvar_edge.quantize.commands", ("quantize",)),
    ("alignvar_edge.runtimes.commands", ("build", "upscale", "compare", "doctor", "adopt", "selftest")),
    ("alignvar_edge.bench.commands", ("bench", "deploy")),
)
# the verbs that need PyTorch wherever they run (the `host` extra): a device install, where no torch is
# installed, neither lists nor parses them, and one called there says so in one line (exit 3)
HOST_VERBS = ("info", "demo", "import", "train", "eval", "export", "quantize", "compare", "deploy")
# verbs a device install runs with a runtime of its own, listed there where that runtime is installed:
# `build` makes a TensorRT engine from a kit on the device. Elsewhere on a device it is left unlisted,
# and runs, its own checks naming what it needs
DEVICE_VERB_NEEDS = {"build": "tensorrt"}
VERSION_LINE = f"alignvar-edge {__version__}"


class _StdoutFailed(Exception):
    """A help or version text that stdout did not take (`OneLineParser._print_message`)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class OneLineParser(argparse.ArgumentParser):
    """argparse held to the CLI's error contract: one stderr line `alignvar-edge VERB: error: ...`
    (the flag, what it must be, what was given) and exit code 2, instead of usage + error."""

    # the verbs' own parsers (build_parser fills it): an argument no verb reads is reported by its verb's
    verb_parsers: Mapping[str, argparse.ArgumentParser] = {}
    # the arguments being parsed (parse_args sets them on the class, which every verb's parser is), for
    # `error`'s advice
    parsing: Sequence[str] = ()

    def _print_message(self, message: str, file: Any = None) -> None:
        """argparse's, except that a help or version stdout does not take is not lost with exit 0
        (argparse drops the error): it goes on to `_stdout_failed`. stderr's is dropped, as argparse's."""
        file = sys.stderr if file is None else file
        try:
            file.write(message)
            if file is sys.stdout:
                file.flush()
        except OSError as e:
            if file is sys.stdout:
                raise _StdoutFailed(e) from e

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{self._files_read_as_options()}; see `{self.prog} --help`\n")

    def _files_read_as_options(self) -> str:
        """Advice where an argument read as an option names a file (`upscale -dash.png out.png` says
        'the following arguments are required: output'): the ways to pass it, for every verb."""
        before_end = self.parsing[:self.parsing.index("--")] if "--" in self.parsing else self.parsing
        files = [a for a in before_end if a.startswith("-") and a != "-" and a.split("=")[0] not in
                 self._option_string_actions and os.path.lexists(a)]
        if not files:
            return ""
        return (f" ({files[0]} is a file, read as an option because it starts with '-': write it as "
                f"./{files[0]}, or put -- after the options and before the file names)")

    def parse_args(self, args: Sequence[str] | None = None,      # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """argparse's, except that arguments left over after a verb are the verb's error (`alignvar-edge
        VERB: error: unrecognized arguments: ...; see `alignvar-edge VERB --help``), not the top level's."""
        OneLineParser.parsing = list(sys.argv[1:] if args is None else args)     # every verb's parser reads it
        parsed, unread = self.parse_known_args(args, namespace)
        if "--debug" in unread:             # the top-level flag, typed after the verb as often as before it
            unread = [a for a in unread if a != "--debug"]
            parsed.debug = True
        if unread:
            self.verb_parsers.get(getattr(parsed, "verb", None) or "", self).error(
                f"unrecognized arguments: {' '.join(unread)}")
        return parsed


def build_parser() -> OneLineParser:
    """The command's parser: on a device install, without the verbs it cannot run (`unlisted_verbs`);
    a module none of whose verbs it runs is not imported."""
    parser = OneLineParser(
        prog="alignvar-edge",
        description="AlignVAR super-resolution from PyTorch to the edge: export, quantize, build, run, bench.")
    parser.add_argument("--version", action="version", version=VERSION_LINE)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    parser.verb_parsers = sub.choices
    refused, unlisted = host_verbs_refused(), unlisted_verbs()
    for name, verbs in COMMAND_MODULES:
        if set(verbs) <= refused:
            continue
        try:
            importlib.import_module(name).register(sub)
        except ModuleNotFoundError as e:
            if e.name == name:          # that area has no verbs yet
                continue
            if host_package(e):             # a device install (no host extra): no host verbs
                continue
            raise
    for verb in refused:
        sub.choices.pop(verb, None)
    # argparse keeps the help lines of the verb list apart from the verbs' parsers
    sub._choices_actions = [a for a in sub._choices_actions if a.dest not in unlisted]
    for verb_parser in sub.choices.values():
        _positionals_named_as_shown(verb_parser)
    return parser


def host_verbs_refused() -> set[str]:
    """The verbs refused before their arguments are read: HOST_VERBS on a device install (no torch
    installed: looked up, not imported), none elsewhere."""
    return set() if is_installed("torch") else set(HOST_VERBS)


def unlisted_verbs() -> set[str]:
    """The verbs `--help` leaves out here: those refused, and on a device install each of
    DEVICE_VERB_NEEDS whose runtime is not installed."""
    refused = host_verbs_refused()
    if not refused:
        return refused
    return refused | {verb for verb, runtime in DEVICE_VERB_NEEDS.items() if not is_installed(runtime)}


def _positionals_named_as_shown(parser: argparse.ArgumentParser) -> None:
    """argparse's errors name a positional of choices by its dest ('required: kind') where its usage and
    help show the choices ('{varsr,var}'): they become its metavar, so errors name it as the help does."""
    for action in parser._actions:
        if not action.option_strings and action.choices and action.metavar is None:
            action.metavar = "{" + ",".join(map(str, action.choices)) + "}"


def main(argv: Sequence[str] | None = None) -> int:
    stdout_closed = "stdout" in _closed_streams_to_devnull()
    argv = list(sys.argv[1:] if argv is None else argv)
    empty = _empty_argument(argv)
    if empty:
        print(empty, file=sys.stderr)
        return 2
    interrupted: list[int] = []
    # watched before the parser is built: that imports every verb's module (tenths of a second), and
    # a Ctrl-C then is the same one line as a Ctrl-C later
    previous = _watch_signals(interrupted, _verb_in(argv))
    try:
        return _parse_and_run(argv, interrupted, stdout_closed)
    except KeyboardInterrupt:       # before the verb ran (its own stops are _parse_and_run's): nothing to keep
        return _interrupted(argparse.Namespace(verb=_verb_in(argv)), interrupted)
    finally:
        _nothing_left_for_exit()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _closed_streams_to_devnull() -> list[str]:
    """A stream the caller closed (`2>&-`, `>&-`: cron, daemons) is None in sys, and writing to it
    failed (tqdm, flush) or went to stdout (print's fallback): it is os.devnull instead, on its own
    descriptor, so no file opened later takes fd 1 or 2 and C libraries' messages with it. stderr's
    messages go nowhere; stdout's is opened read-only, so that a result printed there fails as a
    write to the closed descriptor does (EBADF), and `_stdout_failed` says so: it was lost with exit 0
    (a verb's summary goes nowhere instead, `_summary_to_nowhere`). Returns the names of those closed."""
    closed = []
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        closed.append(name)
        null = os.open(os.devnull, os.O_RDONLY if fd == 1 else os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, open(fd, "w", encoding="utf-8", errors="surrogateescape", closefd=False))
    return closed


def _asks_version(argv: Sequence[str]) -> bool:
    """Whether argparse would print the version for `argv`: `--version` before anything but `--debug`
    (after a verb it is the verb's; `-h` before it prints the help; an abbreviation is parsed)."""
    for arg in argv:
        if arg != "--debug":
            return arg == "--version"
    return False


def _verb_in(argv: Sequence[str]) -> str:
    """The verb `argv` names (its first argument that is no option; no top-level option takes a
    value), or '' where it names none."""
    return next((a for a in argv if not a.startswith("-")), "")


def _parse_and_run(argv: list[str], interrupted: list[int], stdout_closed: bool) -> int:
    if _asks_version(argv):         # without the parser, which imports every verb's module
        try:
            print(VERSION_LINE, flush=True)
        except OSError as e:
            return _stdout_failed("alignvar-edge", e)
        return 0
    if (verb := _verb_in(argv)) in host_verbs_refused():
        print(f"alignvar-edge {verb}: error: {host_tools_error('this verb', 'torch')}", file=sys.stderr)
        return HostToolsError.exit_code
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as e:             # --help / --version (0) or a bad argument (2, one line)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except _StdoutFailed as e:          # a help stdout did not take
        return _stdout_failed(_who(argparse.Namespace(verb=_verb_in(argv))), e.error)
    except Exception:
        if interrupted:     # a Ctrl-C inside an import that wraps it in its own error (numpy's ImportError)
            raise KeyboardInterrupt from None
        raise
    debug = args.debug or os.environ.get("ALIGNVAR_EDGE_DEBUG") == "1"
    if args.verb in parser.verb_parsers:        # a nested verb (`bench merge`) has renamed its parser
        args.who = parser.verb_parsers[args.verb].prog
    if not getattr(args, "func", None):         # a usage error: stdout stays empty for a script's reader
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: choose a verb ({parser.prog} --help lists them)", file=sys.stderr)
        return 2
    if stdout_closed:
        _summary_to_nowhere(args)
    show = warnings.showwarning
    if not debug:           # a warning is one line naming the verb, not a source excerpt
        warnings.showwarning = lambda message, *_a, **_k: progress.note(
            f"{_who(args)}: warning: {message}")
    # an interrupted verb names the outputs it had already published (_interrupted); its errors name
    # options as its flags (caller.option)
    with safe_stop.recording(), caller.command_line():
        try:
            code = int(args.func(args) or 0)
            # printed text still in the buffer meets a closed pipe or a full disk here, where it is
            # said, not at the interpreter's exit (a traceback-like message and exit status 120)
            try:
                sys.stdout.flush()
            except OSError as e:
                return _stdout_failed(_who(args), e)
            return code
        except KeyboardInterrupt:
            return _interrupted(args, interrupted)
        except BrokenPipeError as e:
            return _stdout_failed(_who(args), e)
        except Exception as e:
            # Ctrl-C inside a library that wraps the KeyboardInterrupt in its own error (torch.onnx.export
            # turns it into TorchExportError): still an interruption, not a crash.
            if interrupted and not debug:
                return _interrupted(args, interrupted)
            # a verb's last line after a hangup meets the terminal that is gone (EIO): the stop it is
            if isinstance(e, OSError) and _hung_up(e) is not None:
                return _stdout_failed(_who(args), e)
            if isinstance(e, AlignVAREdgeError):
                if debug:
                    raise
                _error(args, str(e))
                return e.exit_code
            if isinstance(e, ModuleNotFoundError) and not debug and (package := host_package(e)):
                missing = host_tools_error("this verb", package)
                _error(args, str(missing))
                return missing.exit_code
            # a runtime's allocation failure too; a verb that holds more than tiles says what helps it
            if (memory := out_of_memory(e, advice=_verb_says(args, "memory_advice"))) is not None:
                if debug:
                    raise
                _error(args, _with_what_was_kept(args, str(memory)))
                _drop_torch_exit_log()
                return 1
            if isinstance(e, OSError) or _no_temporary_folder(e):
                if debug:
                    raise
                _error(args, _with_what_was_kept(args, _os_error_line(e)))
                # the run failed (a full disk, an I/O error): a path the user named that cannot be
                # written is bad input, refused with 2 before any work (fsmodes.unwritable_folder),
                # as is a name no file can have, wherever it is met, and a host with no writable temp folder
                misnamed = isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG
                return 2 if misnamed or _no_temporary_folder(e) else 1
            raise
        finally:
            warnings.showwarning = show


def _drop_torch_exit_log() -> None:
    """PyTorch's exit hook tabulates its compile times for a log line nobody is shown; after running
    out of memory its import of tabulate fails too, a traceback under the one error line."""
    torch_utils = sys.modules.get("torch._dynamo.utils")
    if torch_utils is not None and hasattr(torch_utils, "dump_compile_times"):
        atexit.unregister(torch_utils.dump_compile_times)


def _empty_argument(argv: list[str]) -> str | None:
    """The error line for an empty argument, or None. No flag or operand takes '' and a path of ''
    means the working directory: `upscale "$IN" out` with IN unset would upscale every image
    below it, so an empty argument is refused before anything runs."""
    if "" not in argv:
        return None
    i = argv.index("")
    verb = _verb_in(argv[:i])
    where = f"after '{argv[i - 1]}'" if i else "first"
    return (f"alignvar-edge{' ' + verb if verb else ''}: error: argument {i + 1} ({where}) is empty, "
            "perhaps an unset shell variable; give the path or value")


def _who(args: argparse.Namespace) -> str:
    """The command that speaks in messages: its parser's name after parsing (`alignvar-edge bench
    merge`), else the verb typed."""
    return getattr(args, "who", None) or ("alignvar-edge " + args.verb if args.verb else "alignvar-edge")


def _error(args: argparse.Namespace, text: str) -> None:
    """A verb's error, one line on stderr: a file name in it with a newline, a byte that is no UTF-8
    or an ESC as escapes (`line_text`), as in every progress line."""
    with contextlib.suppress(OSError):      # a hung-up terminal (EIO) takes no line; the status still says it
        print(line_text(f"{_who(args)}: error: {text}"), file=sys.stderr)


def _interrupted(args: Any, signals: list[int]) -> int:
    # a verb whose finished outputs survive (a folder upscale, training) says how to continue
    kept = _verb_says(args, "on_interrupt") or _kept_line(safe_stop.kept(), safe_stop.error_records())
    # a kill or a hangup (SIGTERM, SIGHUP) is named; Ctrl-C is the user's own
    signum = next((s for s in signals if s != signal.SIGINT), signal.SIGINT)
    said = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    with contextlib.suppress(OSError):      # a hung-up terminal (EIO) takes no line; the status still says it
        print(line_text(f"{_who(args)}: {said}; {kept}"), file=sys.stderr)
    return 128 + signum


def _verb_says(args: Any, name: str) -> str | None:
    """What the verb says of a stop (`on_interrupt`) or of a failure of the system (`on_failure`) in
    its own words: text, or a callable that says it as the run stands (a folder upscale's counts)."""
    said = getattr(args, name, None)
    return said() if callable(said) else said


def _with_what_was_kept(args: Any, error: str) -> str:
    """The error line of a failure of the system (a full disk, out of memory), with what the verb
    kept and how to go on where it says so (a folder upscale's finished images)."""
    after = _verb_says(args, "on_failure")
    return f"{error}; {after}" if after else error


def _kept_line(published: list[str], error_records: list[str]) -> str:
    """What an interrupted verb kept: the outputs it had published in full (the signal came after
    their rename, before the verb said so), and that nothing partial is left; and the result files
    that now record the run as stopped (`--json FILE`)."""
    line = "no partial output was kept"
    if published:
        names = ", ".join(f"'{p}'" for p in published)
        was, are = ("was", "is") if len(published) == 1 else ("were", "are")
        line = f"{names} {was} complete before the interrupt and {are} kept; {line}"
    if error_records:
        names = ", ".join(f"'{p}'" for p in error_records)
        line += f"; {names} now record{'s' if len(error_records) == 1 else ''} this run as interrupted"
    return line


def _stdout_failed(who: str, e: OSError) -> int:
    """The exit status of a run whose printed output stdout did not take, every verb's and the
    help's and version's alike: its reader went away (`_reader_gone`), or it cannot be written (a
    full disk, a stdout the caller closed: `>&-`), one line on stderr and 1; where its terminal hung
    up on a stopped run (`_hung_up`), the stop's status and no line."""
    if isinstance(e, BrokenPipeError):
        return _reader_gone()
    _stdout_to_nowhere()
    if (signum := _hung_up(e)) is not None:       # nobody is left to read a line; the status says it
        return 128 + signum
    why = "it is closed" if e.errno == errno.EBADF else e.strerror or str(e)
    print(f"{who}: error: cannot write the output to stdout ({why}); redirect it to a file that can take it, "
          "or to /dev/null", file=sys.stderr)
    return 1


def _hung_up(e: OSError) -> int | None:
    """The stop asked of this run where `e` is the terminal it hung up (EIO after SIGHUP or
    another stop), else None."""
    return safe_stop.asked() if e.errno == errno.EIO else None


def _reader_gone() -> int:
    """The reader of stdout went away (`... | head`): stop quietly, as other tools do, with the
    status a shell reports for a process that SIGPIPE ended."""
    _stdout_to_nowhere()
    return 128 + signal.SIGPIPE


def _summary_to_nowhere(args: argparse.Namespace) -> None:
    """A stdout the caller closed takes a verb's summary of work whose result is a file (build's
    engine, upscale's images: `stdout_is_a_summary`, True or a function of the arguments) quietly,
    and the exit status is the work's; where stdout carries the result (info, inspect, doctor, a
    bare --json) it stays closed, and the result's loss fails the run (`_stdout_failed`)."""
    from alignvar_edge.cli_json import STDOUT
    said = getattr(args, "stdout_is_a_summary", False)
    if getattr(args, "json", None) != STDOUT and (said(args) if callable(said) else said):
        _stdout_to_nowhere()


def _nothing_left_for_exit() -> None:
    """stdout's buffered text is written now, or goes nowhere where stdout cannot take it (an ERROR
    document after a failed run on a closed stdout): the interpreter's exit flush would fail again,
    "Exception ignored ... Bad file descriptor" and status 120 in place of the run's own. Whether
    that loss fails the run is `_stdout_failed`'s, said before."""
    try:
        sys.stdout.flush()
    except OSError:
        _stdout_to_nowhere()


def _stdout_to_nowhere() -> None:
    """What stdout still buffers goes to os.devnull: no second error at the interpreter's exit."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, sys.stdout.fileno())
    except OSError:
        pass
    finally:
        os.close(null)


def _os_error_line(e: BaseException) -> str:
    """One line for an error of the file system: the path, what is wrong, and what to do."""
    if (missing := _no_temporary_folder(e)) is not None:
        return (f"no writable temporary folder, which PyTorch and the builds need ({missing.strerror or missing}); "
                "set TMPDIR to a writable folder (`TMPDIR=DIR alignvar-edge ...`)")
    if not isinstance(e, OSError) or not e.filename:
        return str(e)
    where = e.filename
    if e.filename2:
        # a copy or a move (shutil.copy2, os.replace): the first path is the source; a full or
        # read-only disk or an existing target is the destination's; anything else names the pair
        where = (e.filename2 if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EEXIST)
                 else f"{e.filename} -> {e.filename2}")
    if e.errno == errno.ENAMETOOLONG:
        named = (name_too_long(p) for p in (e.filename2, e.filename) if p)
        return next((line for line in named if line), f"{where}: {e.strerror}; choose a shorter path")
    if e.errno == errno.ENOTDIR:
        return f"{where}: part of this path is a file, not a folder; choose another output path"
    if e.errno == errno.EEXIST:
        what = "is a file, where a folder is needed" if os.path.isfile(where) else "already exists"
        return f"{where} {what}; choose another output path"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write or read {where} ({e.strerror}); choose another path or fix its permissions"
    if e.errno in NO_SPACE:
        if is_temp_folder(where):      # scratch copies (quantize's, a split build's): another TMPDIR helps
            return (f"no space left on the device of the temporary folder {where} ($TMPDIR); free some space "
                    "there or set TMPDIR to a folder on a disk with room (`TMPDIR=DIR alignvar-edge ...`)")
        needed = f" (it needs about {byte_text(e.needed)})" if isinstance(e, NoRoomError) else ""
        return f"no space left on the device writing {where}{needed}; free some space or choose another output"
    return f"{where}: {e.strerror or e}"


def _no_temporary_folder(e: BaseException | None) -> FileNotFoundError | None:
    """Python's tempfile's error where it found no folder it can write in ($TMPDIR, /tmp, ... all
    read-only: a container's read-only root), raised or the cause of what was (torch.onnx.export wraps
    it in its own error), else None. It names the candidates in a message, not as a filename."""
    while e is not None:
        if isinstance(e, FileNotFoundError) and not e.filename and "No usable temporary directory" in str(e):
            return e
        e = e.__cause__ or e.__context__
    return None


def _watch_signals(flag: list[int], verb: str) -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP (`safe_stop.STOP_SIGNALS`) raise KeyboardInterrupt (so every
    temporary folder and file is cleaned up on the way out) and are recorded in `flag`; returns the
    handlers to put back. Inside a loop's `safe_stop.window` (training) the first one only asks the
    loop to stop at its next safe point.

    Only in the main thread, and only where the default handler is installed (Python's for
    SIGINT, the OS's for the others): an embedding program's own handlers are left alone, and an
    ignored SIGHUP (`nohup`) stays ignored. A second SIGTERM or SIGHUP while cleaning up is
    ignored, so the cleanup finishes."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _quiet_forked_children()
    previous: dict[int, Any] = {}
    for sig, default in safe_stop.STOP_SIGNALS.items():
        if signal.getsignal(sig) is not default:
            continue

        def on_signal(signum: int, frame: object) -> None:
            if signum != signal.SIGINT:
                signal.signal(signum, signal.SIG_IGN)
            then = safe_stop.defer(signum)
            if then is not None:
                # os.write, not print: a signal that lands inside a print to stderr (the progress
                # bar) would make print raise "reentrant call"
                with contextlib.suppress(OSError):      # a hung-up terminal (EIO): the stop is still asked
                    os.write(2, f"\nalignvar-edge {verb}: {signal.Signals(signum).name} received: {then}; "
                                "Ctrl-C again stops at once\n".encode())
                return
            flag.append(signum)
            raise KeyboardInterrupt(signal.Signals(signum).name)      # named in a --json FILE's ERROR record
        _OURS.add(on_signal)
        previous[sig] = signal.signal(sig, on_signal)
    return previous


_OURS: set[Any] = set()          # the handlers _watch_signals installed


def _quiet_forked_children() -> None:
    """A process forked while the verb runs (OpenVINO's telemetry sends each event from one, and
    kills it when the send hangs on a host without a network) gets the OS's handlers back: it dies
    on SIGINT, SIGTERM or SIGHUP as any program does, not with our KeyboardInterrupt's traceback."""
    global _FORK_HOOKED
    if _FORK_HOOKED:
        return

    def in_child() -> None:
        for sig in safe_stop.STOP_SIGNALS:
            if signal.getsignal(sig) in _OURS:
                signal.signal(sig, signal.SIG_DFL)
    os.register_at_fork(after_in_child=in_child)
    _FORK_HOOKED = True


_FORK_HOOKED = False


def run_as_program() -> NoReturn:
    """The `alignvar-edge` command and `python -m alignvar_edge` (how the TensorRT kit runs the CLI):
    main(), then exit with its status.

    An interrupted verb leaves by os._exit, after it has cleaned up and said its line: the
    interpreter's shutdown runs libraries' exit hooks (PyTorch's among them) with Python's own
    SIGINT handler back, so the second press of a double Ctrl-C printed a traceback from one; and
    CPython's `-m` runner kills the process with SIGINT at its exit when a KeyboardInterrupt ever
    ended code that exec() or eval() ran from a string (dataclasses and namedtuple make their
    methods so, and an export imports many lazily), caught or not, so a SIGTERM's status 143 (a
    SIGHUP's 129) would read as "killed by SIGINT".

    Its output is written whatever the console's encoding (`console_text`): a file name as the file
    system holds it (stderr wrote a name's odd bytes as '\\udcc3' escapes nobody can paste back), and
    a report's '–' under a legacy locale (it raised after the work was done)."""
    console_text.tolerant(sys.stdout)
    console_text.tolerant(sys.stderr)
    safe_stop.ignored_at_exit()      # before main(): a stop in the shutdown after a finished verb changes nothing
    code = main()
    if code in {128 + sig for sig in safe_stop.STOP_SIGNALS}:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):      # a reader that went away, a closed stream
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run_as_program()
