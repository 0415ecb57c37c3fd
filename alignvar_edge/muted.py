"""Output that third-party tools print on our streams, muted: coremltools' tqdm bars on stderr,
NNCF's rich tables and bars on stdout. The streams are the process's, not a thread's, so one mute
at a time: two at once in two threads each put back what the other had swapped in, and the
process's stream was left a StringIO."""
from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator

__all__ = ["muted"]

_SWAPPING = threading.RLock()


@contextlib.contextmanager
def muted(stream: str) -> Iterator[None]:
    """sys.`stream` ('stdout' or 'stderr') into a sink for the block; a second block, in another
    thread, waits for the first to put the stream back."""
    redirect = {"stdout": contextlib.redirect_stdout, "stderr": contextlib.redirect_stderr}[stream]
    with _SWAPPING, redirect(io.StringIO()):
        yield
