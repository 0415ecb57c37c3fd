"""A FIFO for tests of code that must never open one: where the code does open it, a writer feeds
it a few bytes that are no image, so the test fails on what the code then says instead of hanging."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def fifo_fed_if_opened(path: Path) -> Iterator[Path]:
    os.mkfifo(path)

    def feed() -> None:
        with open(path, "wb") as w:       # waits for a reader: the code under test, or the release below
            w.write(b"not an image")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        release = os.open(path, os.O_RDONLY | os.O_NONBLOCK)      # lets the writer's open return
        writer.join(timeout=10)
        os.close(release)
