"""A stop asked for by Ctrl-C, SIGTERM or SIGHUP, honoured at the next safe point of a long loop.

The CLI's signal handler asks `defer` first. Inside a `window` the first signal is only recorded,
and the loop stops at its next safe point (training: after the step in progress, saving the run
there), so nothing it has done is lost; outside a window, or a second Ctrl-C, interrupts at once
as before. Code that installs no handler (the library, tests) sees KeyboardInterrupt as always.

What a stopped verb kept: while the CLI `records` a verb, every output it publishes (an artifact
folder or a file, renamed into place) is noted just before the rename, so the interrupted line can
name the ones that are in place, however close to the rename the signal came.

A step that must not be cut in two (a replace: the old output moved aside, the new one moved in)
runs `held`: SIGINT, SIGTERM and SIGHUP wait until it is done.

Once the verb has ended, what is left is Python's own exit (`ignored_at_exit`): a stop then changes
nothing, and is ignored.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

_on_stop: str | None = None         # inside a window: what happens on a stop, for the handler's line
_asked: int | None = None           # the signal that asked for the stop, since the last window opened
# while the CLI records a verb: each output it publishes -> the (device, inode) of what is renamed there
_published: dict[str, tuple[int, int]] | None = None
_error_records: list[str] = []      # result files that now say the stopped run failed (`error_record`)


@contextlib.contextmanager
def window(on_stop: str) -> Iterator[None]:
    """While inside, a first SIGINT/SIGTERM/SIGHUP asks for a stop at the loop's next safe point instead
    of raising. `on_stop` says what happens then, for the line the handler prints."""
    global _on_stop, _asked
    _asked, _on_stop = None, on_stop
    try:
        yield
    finally:
        _on_stop = None


def defer(signum: int) -> str | None:
    """For the signal handler: where the stop can wait for a safe point (inside a window, and no
    stop asked yet), record it and return what will happen; None means interrupt now."""
    global _asked
    if _on_stop is None or _asked is not None:
        return None
    _asked = signum
    return _on_stop


def asked() -> int | None:
    """The signal that asked the current (or last) window's loop to stop, or None."""
    return _asked


# the stops the CLI turns into a clean exit, each with the handler it has where nobody set one
# (Python's for SIGINT, the OS's for the others): Ctrl-C, a polite kill, and where the platform has
# it (not Windows) a hangup, a closed terminal or a dropped ssh session
STOP_SIGNALS: dict[signal.Signals, Any] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
    **({signal.SIGHUP: signal.SIG_DFL} if hasattr(signal, "SIGHUP") else {}),
}
# the stops `held` postpones (SIGKILL cannot be held by anyone)
HELD_SIGNALS = tuple(STOP_SIGNALS)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """The stops (`HELD_SIGNALS`) that come during the block are acted on after it (their handlers then run,
    as they would have), so its steps all happen or none (unless one raises). Python runs handlers
    on the main thread only, whichever thread the signal reached, so there the handlers are swapped
    for one that notes the signal: a signal mask holds it from the calling thread only, and a
    process with other threads (ONNX Runtime's, PyTorch's) still got it. On another thread no stop
    can land inside the block; nothing is swapped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    before: dict[signal.Signals, Any] = {}
    try:
        for sig in HELD_SIGNALS:
            handler = signal.getsignal(sig)
            if handler not in (signal.SIG_IGN, None):      # ignored stays ignored; None: not Python's to swap
                before[sig] = signal.signal(sig, lambda signum, _frame: came.append(signum))
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)                    # its own handler runs now, the block done


def ignored_at_exit() -> None:
    """From the interpreter's exit on, SIGINT is ignored: the verb has ended and said what it did,
    and what is left is Python tearing itself down, after it has put the OS's default handlers back.
    After a `deploy` that takes 2 s (garbage collection of PyTorch's and the runtimes' objects), and
    a Ctrl-C there ended the process with 130 and no line, its outputs complete. SIGTERM (and SIGHUP)
    keeps its default: a supervisor's (timeout, systemd, docker stop) still ends a teardown that hangs in a
    library's destructor, as Ctrl-\\ does at a terminal. The command registers this before the verb
    runs: atexit runs the last registered first, so it runs after what libraries register while the
    verb runs (multiprocessing joining its workers), where a stop still works."""
    global _exit_hooked
    if not _exit_hooked:
        _exit_hooked = True
        atexit.register(_ignore_stops)


_exit_hooked = False


def _ignore_stops() -> None:
    # SIG_IGN, which Python's exit keeps, where a handler of Python's is put back to the default
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """While inside (the CLI, around one verb), `publishing` notes each output for `kept`."""
    global _published
    _published = {}
    _error_records.clear()
    try:
        yield
    finally:
        _published = None


def publishing(staged: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Called just before `staged` (a finished file or folder) is renamed to `out`. A rename keeps
    the inode, so `kept` knows whether it happened without being told again after it: a signal
    right after the rename cannot fall between the rename and its record."""
    if _published is not None:
        st = os.stat(staged)
        _published[os.fspath(out)] = (st.st_dev, st.st_ino)


def error_record(out: str | os.PathLike[str]) -> None:
    """`out`, a result file, was just replaced by a record that the run failed (`--json FILE` of a
    stopped run): not an output the verb kept, though it was published like one."""
    if _published is not None:
        _published.pop(os.fspath(out), None)
        _error_records.append(os.fspath(out))


def error_records() -> list[str]:
    """The result files `error_record` noted since the CLI began recording this verb."""
    return list(_error_records)


def kept() -> list[str]:
    """The outputs this verb published that are in place now, as named when published."""
    found = []
    for out, inode in (_published or {}).items():
        try:
            st = os.stat(out)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == inode:
            found.append(out)
    return found
