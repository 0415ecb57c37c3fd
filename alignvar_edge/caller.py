"""How an option is named to whoever called: a flag on the command line (`--force`), a keyword
argument in Python (`force=True`). A message that tells the user what to pass names the option
through `option`, so that one message serves both callers and is written once.

The CLI runs each verb inside `command_line()`; anything else is a Python call. A public function
whose parameter is named otherwise than the option (export's `out_dir`, save_pretrained's
`overwrite`) says so with `python_call`, and the outermost public function called names them: the
one the user called.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

__all__ = ["command_line", "on_command_line", "option", "python_call"]

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
