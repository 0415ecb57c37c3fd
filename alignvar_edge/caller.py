"""How an option is named to whoever called: a flag on the command line (`--force`), a keyword
argument in Python (`force=True`). A message that tells the user what to pass names the option
through `option`, so that one message serves both callers and is written once.

The CLI runs each verb inside `command_line()`; anything else is a Python call. A public function
whose parameter is named otherwise than the option (export's `out_dir`, save_pretrained's
`overwrite`) says so with `python_call`, and the outermost public function called names them: the
one the user called.

A warning is said to whoever called, too: `warn_caller` attributes it to the caller's own line.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, ParamSpec, TypeVar

__all__ = ["command_line", "on_command_line", "option", "python_call", "warn_caller"]

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
_shown: dict[str, dict[Any, Any]] = {}


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn `message` at the caller's own line: the first frame outside this package, however many
    of the package's frames lie between (a counted stacklevel breaks whenever a call path gains one,
    and python_call's wrapper is one). Filters, catch_warnings and the "default" action's once per
    text and line behave as for warnings.warn; a text already shown is forgotten once
    _SHOWN_LIMIT newer ones were shown in that module, so a service that warns about each file it
    writes holds no more. (3.12's warnings.warn(skip_file_prefixes=) finds the same frame, but
    records each text in the module's __warningregistry__ for good.)"""
    frame = _callers_frame()
    if frame is None:       # no caller's code on this stack: where warnings.warn puts it then
        filename, lineno, module = "sys", 1, "sys"
    else:
        filename, lineno = frame.f_code.co_filename, frame.f_lineno
        module = frame.f_globals.get("__name__", "<string>")
    shown = _shown.setdefault(module, {})
    # no module_globals, as warnings.warn passes none: `python -c`'s loader has no source to give
    warnings.warn_explicit(message, category, filename, lineno, module=module, registry=shown)
    _forget_oldest(shown)


def _forget_oldest(shown: dict[Any, Any]) -> None:
    """Keep the newest _SHOWN_LIMIT texts, and "version" (the filters' that they were shown under).
    The keys are copied at once and popped, since another thread may be warning here too."""
    if len(shown) <= _SHOWN_LIMIT + 1:
        return
    older = [key for key in list(shown) if key != "version"][:-_SHOWN_LIMIT]
    for key in older:
        shown.pop(key, None)


def _callers_frame() -> FrameType | None:
    """The innermost frame of code outside this package (and outside importlib's bootstrap, which
    warnings.warn skips too), or None."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _is_ours(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def _is_ours(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) or ("importlib" in filename and "_bootstrap" in filename)
