"""A stop asked for by Ctrl-C or SIGTERM, honoured at the next safe point of a long loop.

The CLI's signal handler asks `defer` first. Inside a `window` the first signal is only recorded,
and the loop stops at its next safe point (training: after the step in progress, saving the run
there), so nothing it has done is lost; outside a window, or a second Ctrl-C, interrupts at once
as before. Code that installs no handler (the library, tests) sees KeyboardInterrupt as always.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

_on_stop: str | None = None         # inside a window: what happens on a stop, for the handler's line
_asked: int | None = None           # the signal that asked for the stop, since the last window opened


@contextlib.contextmanager
def window(on_stop: str) -> Iterator[None]:
    """While inside, a first SIGINT/SIGTERM asks for a stop at the loop's next safe point instead
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
