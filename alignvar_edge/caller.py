"""How an option is named to whoever called: a flag on the command line (`--force`), a keyword
argument in Python (`force=True`). A message that tells the user what to pass names the option
through `option`, so that one message serves both callers and is written once.

The CLI runs each verb inside `command_line()`; anything else is a Python call. A public function
whose parameter is named otherwise than the option (export's `out_dir`, save_pretrained's
`overwrite`) says so with `python_call`, and the outermost public function called names them: the
one the user called.

A warning is said to whoever called, too: `warn_caller` attributes it to the caller's own line.
The process's warnings state is changed by one of the package's blocks at a time (`warnings_held`).
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
from typing import Any, ParamSpec, TypeVar

__all__ = ["WarningFilter", "command_line", "on_command_line", "option", "python_call", "warn_at", "warn_caller",
           "warnings_changed", "warnings_held"]

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


# Held by whoever changes or reads the warnings state that Python 3.11 keeps for the whole process,
# not per thread (its filters, the display hook `catch_warnings(record=True)` puts in): two
# catch_warnings blocks that overlap in two threads each put back what the other had set, and left
# the process ignoring, or hiding in a list, every warning after them. Re-entrant: `warn_caller`
# may be called inside a block.
_WARNINGS_STATE = threading.RLock()


def _renew_lock_in_child() -> None:
    """A child forked while another thread held the lock inherits it held, by a thread the child
    does not have: its first image read waited for ever. Renewed, as the logging module renews its."""
    global _WARNINGS_STATE
    _WARNINGS_STATE = threading.RLock()


if hasattr(os, "register_at_fork"):        # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_renew_lock_in_child)


@contextlib.contextmanager
def warnings_held() -> Iterator[None]:
    """The process's warnings state held by this thread for the block: the package's own
    catch_warnings blocks and `warn_caller` wait for each other, so each block puts back what it
    found and no warning is judged by another thread's block's filters."""
    with _WARNINGS_STATE:
        yield


@dataclass(frozen=True)
class WarningFilter:
    """One entry of `warnings.filters`, as `warnings.filterwarnings(action, message, category,
    module)` makes it: `message` matches a warning's text at its start, `module` its module's name."""

    action: str
    message: str = ""
    category: type[Warning] = Warning
    module: str = ""

    def entry(self) -> tuple[Any, ...]:
        """A new entry each time: a block removes its own by identity."""
        return (self.action, re.compile(self.message, re.I) if self.message else None, self.category,
                re.compile(self.module) if self.module else None, 0)


# The package's blocks' entries now in warnings.filters (by id), and per thread the lists its
# recording blocks keep its warnings in (innermost last)
_ours: dict[int, tuple[Any, ...]] = {}
_recorders: dict[int, list[list[warnings.WarningMessage]]] = {}
_display_before: Any = None        # warnings.showwarning as the first recording block found it


@contextlib.contextmanager
def warnings_changed(*filters: WarningFilter, record: bool = False) -> Iterator[list[warnings.WarningMessage]]:
    """`filters` put first in the process's warnings filters for the block, and with `record` the
    warnings this thread shows meanwhile kept in the list given, not shown. A block adds its own
    entries and takes exactly those out at its end, and records only its own thread's warnings
    (another thread's go where they went before), so blocks overlapping in threads compose. The
    lock is held only while entries are added and removed, not for the block: a long one (an
    export) would keep image reads in other threads waiting, and a progress thread it waits for
    would wait for it. (catch_warnings puts back the whole list it found, and so took away what a
    block of another thread that began inside it had added: both were left in force.)"""
    entries = [f.entry() for f in filters]
    caught: list[warnings.WarningMessage] = []
    thread = threading.get_ident()
    with _WARNINGS_STATE:
        into = warnings.filters
        into[:0] = entries
        _ours.update((id(e), e) for e in entries)
        if record:
            _start_recording(thread, caught)
        _filters_mutated()
    try:
        yield caught
    finally:
        with _WARNINGS_STATE:
            for listed in (into, warnings.filters):     # another list where a catch_warnings began meanwhile
                listed[:] = [f for f in listed if not any(f is e for e in entries)]
            for e in entries:
                del _ours[id(e)]
            if record:
                _stop_recording(thread, caught)
            _filters_mutated()


def _filters_mutated() -> None:
    """Forget what Python's registries say was shown, as a filter added by warnings.filterwarnings
    does: an entry added to the list by hand would not apply to a text already shown at its line."""
    warnings._filters_mutated()     # type: ignore[attr-defined]


def _start_recording(thread: int, caught: list[warnings.WarningMessage]) -> None:
    global _display_before
    if warnings.showwarning is not _show_or_keep:
        _display_before = warnings.showwarning
        warnings.showwarning = _show_or_keep
    _recorders.setdefault(thread, []).append(caught)


def _stop_recording(thread: int, caught: list[warnings.WarningMessage]) -> None:
    lists = _recorders[thread]
    del lists[next(i for i, kept in enumerate(lists) if kept is caught)]
    if not lists:
        del _recorders[thread]
    if not _recorders and warnings.showwarning is _show_or_keep:   # else replaced meanwhile: left as it is
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
    """Warn `message` at `filename`:`lineno` of `module` through the filters, what was shown kept as
    `warn_caller` keeps it. Whether it was shown is looked up and noted under the lock (two threads
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
    # acted on here, as judged: a block of another thread may have put an entry of its own first
    if action == "ignore":
        return
    if action == "error":
        raise message if isinstance(message, Warning) else category(message)
    try:
        # no module_globals, as warnings.warn passes none: `python -c`'s loader has no source to give;
        # no registry: what was shown is kept above
        warnings.warn_explicit(message, category, filename, lineno, module=module, registry=None)
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
    the entries of the package's blocks aside, which are for the third-party calls in them."""
    for entry in warnings.filters:
        action, text, kind, where, line = entry
        if id(entry) not in _ours and (_filter_matches(text, message) and issubclass(category, kind) and _filter_matches(where, module)
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
