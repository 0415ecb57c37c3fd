"""How an option is named to whoever called: a flag on the command line (`--force`), a keyword
argument in Python (`force=True`). A message that tells the user what to pass names the option
through `option`, so that one message serves both callers and is written once.

The CLI runs each verb inside `command_line()`; anything else is a Python call. A public function
whose parameter is named otherwise than the option (export's `out_dir`, save_pretrained's
`overwrite`) says so with `python_call`, and the outermost public function called names them: the
one the user called.

A warning is said to whoever called, too: `warn_caller` attributes it to the caller's own line.
The package changes the process's warnings state through `warnings_changed` alone.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, ParamSpec, TypeVar, cast

__all__ = ["WarningFilter", "command_line", "on_command_line", "option", "python_call", "warn_at", "warn_caller",
           "warnings_changed"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class _Caller:
    cli: bool
    names: Mapping[str, str] = field(default_factory=dict)     # option -> the parameter that takes it


# None: no public function or verb has said who called: a Python call, with the options' own names
_caller: ContextVar[_Caller | None] = ContextVar("alignvar_edge_caller", default=None)
_UNSET = object()


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """A verb's run: options are named as its flags."""
    token = _caller.set(_Caller(cli=True))
    try:
        yield
    finally:
        _caller.reset(token)


def on_command_line() -> bool:
    """Whether a verb is running (options are flags), not a Python call: for wording that differs
    beyond the option's own name (where else the flag is given, a keyword's "or None")."""
    caller = _caller.get()
    return caller is not None and caller.cli


def python_call(**names: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a public function: called from Python (not from a verb, nor from another public
    function), its errors name options as its parameters, `names` mapping an option to the
    parameter of another name (`out="out_dir"`)."""
    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def called(*args: P.args, **kwargs: P.kwargs) -> R:
            if _caller.get() is not None:          # a verb, or the public function the user called
                return function(*args, **kwargs)
            token = _caller.set(_Caller(cli=False, names=names))
            try:
                return function(*args, **kwargs)
            finally:
                _caller.reset(token)
        return called
    return decorate


def option(name: str, value: object = _UNSET) -> str:
    """Option `name` (as the Python parameter: "out", "force") with `value`, as the caller passes it:
    "--force" / "force=True", "--no-refine" / "refine=False", "--opset 18" / "opset=18",
    "--out 'E/x'" / "out='E/x'" (a path quoted); without a value the bare "--out" / "out=".
    A True value is the bare flag, False its "--no-" form, as the CLI's switches are named."""
    caller = _caller.get() or _Caller(cli=False)
    if caller.cli:
        flag = "--" + name.replace("_", "-")
        if value is _UNSET or value is True:
            return flag
        if value is False:
            return "--no-" + name.replace("_", "-")
        return f"{flag} '{os.fspath(value)}'" if isinstance(value, os.PathLike) else f"{flag} {value}"
    keyword = caller.names.get(name, name)
    if value is _UNSET:
        return f"{keyword}="
    return f"{keyword}={os.fspath(value)!r}" if isinstance(value, os.PathLike) else f"{keyword}={value!r}"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Warnings already shown, per module they were attributed to: what its __warningregistry__ holds
# for warnings.warn, but bounded, since a text that names a path is new for every file written
_SHOWN_LIMIT = 256
_Key = tuple[str, type[Warning], int]          # a text, its category, its line (0: any line)


@dataclass
class _Shown:
    """The texts shown under one list of filters (in one module, or the whole program for "once"):
    the list itself, held (a `catch_warnings` block puts a copy in its place and the original back),
    and its entries; not Python's version number, which every block bumps on entering and leaving:
    the package enters one to read each image's EXIF, and a notebook's loop over photos was told the
    same thing at the same line for each. So a filter call that leaves the list as it was (a notebook
    cell's `warnings.simplefilter("default")` run again, which removes its entry and puts it back)
    does not make a text said again, where warnings.warn would say it again."""

    filters: Sequence[Any] = ()
    entries: tuple[Any, ...] = ()
    keys: dict[_Key, None] = field(default_factory=dict)

    def under(self, filters: Sequence[Any]) -> None:
        """Forget what was shown where the filters are another list or hold other entries, as
        Python forgets what it has shown when a filter is added or a block entered."""
        # the package's blocks' entries come and go; a list first: tuple() of a generator resizes its
        # tuple as it grows, and the sizes it drops pile up in Python's free lists (bounded, but 300 KB)
        entries = tuple([f for f in filters if id(f) not in _ours])
        if filters is not self.filters or entries != self.entries:
            self.filters, self.entries, self.keys = filters, entries, {}


# Held while the package changes, or reads, the warnings state that Python before 3.14 keeps for
# the whole process, not per thread (its filters, its display hook): by `warnings_changed` as a
# block adds and takes out its entries, by `warn_at` from its look to its note. Never while a
# block runs nor while a warning is displayed. muted.quieted takes it after its own lock.
_WARNINGS_STATE = threading.RLock()


@dataclass(frozen=True)
class WarningFilter:
    """One entry of `warnings.filters`, as `warnings.filterwarnings(action, message, category,
    module)` makes it: `message` matches a warning's text at its start, `module` its module's name."""

    action: str
    message: str = ""
    category: type[Warning] = Warning
    module: str = ""

    def entry(self) -> tuple[Any, ...]:
        """A new entry each time: a block takes out its own by identity."""
        return (self.action, re.compile(self.message, re.I) if self.message else None, self.category,
                re.compile(self.module) if self.module else None, 0)


# The entries the package's blocks have in warnings.filters now, by id: (the block's thread, entry);
# and per thread the lists its recording blocks keep its warnings in (innermost last)
_ours: dict[int, tuple[int, tuple[Any, ...]]] = {}
_recorders: dict[int, list[list[warnings.WarningMessage]]] = {}
_display_before: Any = None        # warnings.showwarning as the first recording block found it


@contextlib.contextmanager
def warnings_changed(*filters: WarningFilter, record: bool = False) -> Iterator[list[warnings.WarningMessage]]:
    """`filters` put first in the process's warnings filters for the block, and with `record` the
    warnings this thread shows meanwhile kept in the list given, not shown. Every block of the
    package that changes the warnings state goes through here.

    A block adds its own entries and takes out exactly those at its end, and records only its own
    thread's warnings (another thread's go where they went before), so blocks overlapping in
    threads compose. catch_warnings puts back the whole list it found, so two overlapping in two
    threads left the first one's entries in force (an image read's "always" over a service's
    "error") and the display hook a hidden list's. The lock is held only to add and take out: held
    for the block, an export's minutes would keep image reads in other threads waiting, and a
    progress thread the export waits for would wait for it. The entries are for the calls in the
    block: the package's own warnings in other threads (`warn_at`) are judged without them, while a
    third party's, judged by Python, meet them too (one set of filters per process before 3.14)."""
    entries = [f.entry() for f in filters]
    caught: list[warnings.WarningMessage] = []
    thread = threading.get_ident()
    with _WARNINGS_STATE:
        into = _filters()
        into[:0] = entries
        _ours.update((id(e), (thread, e)) for e in entries)
        if record:
            _start_recording(thread, caught)
        _filters_mutated()
    try:
        yield caught
    finally:
        with _WARNINGS_STATE:
            _take_out(entries, into)
            if record:
                _stop_recording(thread, caught)


def _take_out(entries: list[tuple[Any, ...]], into: list[Any]) -> None:
    """`entries` out of the list they were put in and of warnings.filters, another list where a
    catch_warnings block began meanwhile (it copied them)."""
    for listed in (into, _filters()):
        listed[:] = [f for f in listed if not any(f is e for e in entries)]
    for e in entries:
        _ours.pop(id(e), None)
    _filters_mutated()


def _filters() -> list[Any]:
    """warnings.filters: the process's list itself, changed in place (typeshed types it a Sequence)."""
    return cast("list[Any]", warnings.filters)


def _filters_mutated() -> None:
    """Forget what Python's registries say was shown, as warnings.filterwarnings does: an entry put
    in the list by hand would not apply to a text already shown at its line."""
    warnings._filters_mutated()     # type: ignore[attr-defined]


def _start_recording(thread: int, caught: list[warnings.WarningMessage]) -> None:
    global _display_before
    if warnings.showwarning is not _show_or_keep:
        _display_before = warnings.showwarning
        warnings.showwarning = _show_or_keep
    _recorders.setdefault(thread, []).append(caught)


def _stop_recording(thread: int, caught: list[warnings.WarningMessage] | None) -> None:
    """`caught` no longer recorded (None: all of `thread`'s lists); the display hook found put back
    when no block records, unless it was replaced meanwhile."""
    lists = _recorders.get(thread, [])
    lists[:] = [kept for kept in lists if caught is not None and kept is not caught]
    if not lists:
        _recorders.pop(thread, None)
    if not _recorders and warnings.showwarning is _show_or_keep:
        warnings.showwarning = _display_before


def _show_or_keep(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """The display hook while a block records: a warning of a recording thread is kept in its
    innermost block's list; another thread's is shown by the hook found before."""
    lists = _recorders.get(threading.get_ident())
    if lists:
        lists[-1].append(warnings.WarningMessage(message, category, filename, lineno, file, line))
    else:
        _display_before(message, category, filename, lineno, file, line)


def _another_threads(entry: tuple[Any, ...]) -> bool:
    """Whether `entry` is one that a block of another thread put in, for the calls in that block."""
    thread, _ = _ours.get(id(entry), (None, None))
    return thread is not None and thread != threading.get_ident()


def _renew_in_child() -> None:
    """A child forked while another thread held the lock inherits it held, by a thread the child
    does not have: its first image read waited for ever. Renewed, as the logging module renews its;
    and the blocks of those threads, which never end here, are ended."""
    global _WARNINGS_STATE
    _WARNINGS_STATE = threading.RLock()
    here = threading.get_ident()
    _take_out([e for thread, e in _ours.values() if thread != here], _filters())
    for thread in [t for t in _recorders if t != here]:
        _stop_recording(thread, None)


if hasattr(os, "register_at_fork"):        # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_renew_in_child)


_shown: dict[str, _Shown] = {}
# what the "once" action has shown: once in the whole program, as Python's once-registry keeps it
# (which every catch_warnings block clears: `-W once` said an orientation for each photo)
_shown_once = _Shown()


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn `message` at the caller's own line: the first frame outside this package, however many
    of the package's frames lie between (a counted stacklevel breaks whenever a call path gains one,
    and python_call's wrapper is one). Filters and catch_warnings apply as to warnings.warn, and
    what was shown is kept as its actions keep it: "default" once per text and line, "module" once per
    text in a module, "once" once per text in the program; but it is forgotten when the filters
    change, not whenever a catch_warnings block is entered (`_Shown`). A text already shown is
    forgotten once _SHOWN_LIMIT newer ones were shown in that module, so a service that warns about
    each file it writes holds no more.
    (3.12's warnings.warn(skip_file_prefixes=) finds the same frame, but records each text in the
    module's __warningregistry__ for good.)"""
    frame = _callers_frame()
    if frame is None:       # no caller's code on this stack: where warnings.warn puts it then
        filename, lineno, module = "sys", 1, "sys"
    else:
        filename, lineno = frame.f_code.co_filename, frame.f_lineno
        module = frame.f_globals.get("__name__", "<string>")
    warn_at(message, category, filename, lineno, module)


def warn_at(message: str | Warning, category: type[Warning], filename: str, lineno: int, module: str) -> None:
    """Warn `message` at `filename`:`lineno` of `module` through the filters (other threads' blocks'
    entries aside), what was shown kept as `warn_caller` keeps it. Whether it was shown is looked up and noted under the lock (two threads
    saying one text at once said it twice); the display hook runs outside it, since a hook that waits
    for another thread (a GUI's, handing the warning to its UI thread) would wait for ever if that
    thread read an image meanwhile. A hook that raises leaves the text unsaid."""
    text = str(message)
    with _WARNINGS_STATE:
        here = _shown.setdefault(module, _Shown())
        for memory in (here, _shown_once):
            memory.under(warnings.filters)
        action = _action(text, category, module, lineno)
        key = _shown_key(action, text, category, lineno)
        memory = _shown_once if action == "once" else here
        if key is not None:
            if key in memory.keys:
                return
            memory.keys[key] = None
            _forget_oldest(memory.keys)
    # acted on as judged here, and shown through the display hook: warnings.warn_explicit would
    # judge it again by every entry, an ignore-all block of a build in another thread included
    warning = message if isinstance(message, Warning) else category(message)
    if action == "ignore":
        return
    if action == "error":
        raise warning
    try:
        warnings.showwarning(warning, category, filename, lineno)
    except BaseException:
        if key is not None:
            with _WARNINGS_STATE:
                memory.keys.pop(key, None)
        raise


def _shown_key(action: str, message: str, category: type[Warning], lineno: int) -> _Key | None:
    """What `action` remembers of a warning it shows: the text and category, with the line for
    "default" (0 for "module" and "once"); None for the actions that remember nothing."""
    if action == "default":
        return message, category, lineno
    return (message, category, 0) if action in ("module", "once") else None


def _action(message: str, category: type[Warning], module: str, lineno: int) -> str:
    """The action of the first of `warnings.filters` that matches, as warnings.warn_explicit picks it;
    the entries of other threads' blocks aside, which are for the calls in those blocks."""
    for entry in warnings.filters:
        action, text, kind, where, line = entry
        if not _another_threads(entry) and (_filter_matches(text, message) and issubclass(category, kind) and _filter_matches(where, module)
                and (line == 0 or line == lineno)):
            return str(action)
    return str(getattr(warnings, "defaultaction", "default"))     # not in typeshed, in every CPython


def _filter_matches(pattern: Any, text: str) -> bool:
    """A filter's message or module against `text`, as CPython's C warnings module compares them
    (`check_matched`): None matches any, a plain str only the same text (Python's own filter of
    DeprecationWarning in `__main__` is one), anything else by its .match()."""
    if pattern is None:
        return True
    if type(pattern) is str:            # exactly str, as PyUnicode_CheckExact: a subclass is matched
        return pattern == text
    return bool(pattern.match(text))


def _forget_oldest(keys: dict[Any, None]) -> None:
    """Keep the newest _SHOWN_LIMIT texts."""
    if len(keys) <= _SHOWN_LIMIT:
        return
    for key in list(keys)[:-_SHOWN_LIMIT]:
        keys.pop(key, None)


def _callers_frame() -> FrameType | None:
    """The innermost frame of code outside this package (and outside importlib's bootstrap, which
    warnings.warn skips too), or None."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _is_ours(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def _is_ours(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) or ("importlib" in filename and "_bootstrap" in filename)
