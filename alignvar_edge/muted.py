"""Output that third-party tools print on our streams, muted: coremltools' tqdm bars on stderr,
NNCF's rich tables and bars on stdout, the exporter's and OpenVINO's PyTorch probe's log lines and
warnings. Streams and logger levels are the process's, not a thread's, so one block at a time: two
at once in two threads each put back what the other had set, and left the process's stream a
StringIO or a logger at CRITICAL. Warning filters go through `caller.warnings_changed`, which
takes out exactly the block's own. Only the named loggers of the tool that talks are quieted, never
the root logger or `logging.disable`: those are every thread's, and a host's records were lost."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Iterator, Sequence

from alignvar_edge.caller import WarningFilter, warnings_changed

__all__ = ["loggers_at", "muted", "quieted"]

_SWAPPING = threading.RLock()


def _renew_lock_in_child() -> None:
    """A child forked while another thread held the lock inherits it held, by a thread the child
    does not have: its first muted block waited for ever. Renewed, as the logging module renews its."""
    global _SWAPPING
    _SWAPPING = threading.RLock()


if hasattr(os, "register_at_fork"):        # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_renew_lock_in_child)


@contextlib.contextmanager
def muted(stream: str) -> Iterator[None]:
    """sys.`stream` ('stdout' or 'stderr') into a sink for the block; a second block, in another
    thread, waits for the first to put the stream back."""
    redirect = {"stdout": contextlib.redirect_stdout, "stderr": contextlib.redirect_stderr}[stream]
    with _SWAPPING, redirect(io.StringIO()):
        yield


@contextlib.contextmanager
def loggers_at(loggers: Sequence[str], level: int) -> Iterator[None]:
    """The named `loggers` (a third-party tool's own, never the root logger) at `level` for the
    block, one block at a time, as `muted`'s. Each gets back the level it had, unless its level was
    set again meanwhile (by the host, or by the tool's import configuring its own logger): that one
    is kept."""
    if not all(loggers):
        raise ValueError("the root logger is every thread's: name the tool's own loggers")
    with _SWAPPING:
        found = [(lg, lg.level) for lg in map(logging.getLogger, loggers)]
        for lg, _ in found:
            lg.setLevel(level)
        try:
            yield
        finally:
            for lg, was in found:
                if lg.level == level:
                    lg.setLevel(was)


@contextlib.contextmanager
def quieted(loggers: Sequence[str], level: int, warning: str | None = None) -> Iterator[None]:
    """`loggers` at `level` (`loggers_at`) and warnings ignored for the block: those whose message
    matches the regular expression `warning` at its start, or every one where it is None."""
    with loggers_at(loggers, level):
        # through the one owner of the warnings state, whose lock is taken after this one
        with warnings_changed(WarningFilter("ignore", message=warning or "")):
            yield
