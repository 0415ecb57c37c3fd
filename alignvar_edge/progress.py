"""Progress on stderr for the CLI: bars for counted loops, a ticking clock for steps of unknown
length (an OpenVINO int8 build, a Core ML conversion), so nothing sits silent for a minute.

On a terminal both redraw in place; in a log (stderr not a TTY) a stage writes one line when it
starts and one when it ends, and bars stay quiet: counted work that may run for long (an image's
tiles) says how far it has got there with `Pace`, a line at most every LOG_EVERY_S. stdout is left
alone (`--json` keeps it clean).
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

from alignvar_edge.name_text import line_text

__all__ = ["Pace", "bar", "duration", "in_log", "note", "stage"]

TICK_S = 0.5
START_AFTER_S = 2.0      # a log hears of a step once it has taken this long
LOG_EVERY_S = 60.0       # ... and of counted work at most this often


def note(msg: str) -> None:
    """A line for the user: on stderr, as every note and progress line (stdout carries results only),
    flushed so that it stands in order with the bars and with stdout in a shared log. Through tqdm,
    which clears a bar or a stage's clock on the terminal first and redraws it below: a plain print
    landed after the clock's text (`evaluating X: 00:01coffee.png`). A note is one line: a file name
    in it with a newline, a byte that is no UTF-8 or an ESC shows as escapes (`line_text`)."""
    tqdm.write(line_text(msg), file=sys.stderr)
    sys.stderr.flush()


def bar(it: Iterable[Any] | None = None, **kw: Any) -> Any:
    """tqdm on stderr, off when stderr is not a terminal (`disable=None`)."""
    kw.setdefault("leave", False)
    kw.setdefault("disable", None)
    return tqdm(it, file=sys.stderr, dynamic_ncols=True, **kw)


@contextmanager
def stage(label: str) -> Iterator[None]:
    """`with stage("building openvino int8"):` shows `building openvino int8: 00:41` while it runs,
    then `building openvino int8: done in 76.2 s`. In a log the start line appears only once the step
    has run for START_AFTER_S. A failure adds nothing: the error's own line says it (one line)."""
    label = line_text(label)            # the clock's line on a terminal, as a note's
    t0 = time.perf_counter()
    clock = tqdm(total=None, desc=label, bar_format="{desc}: {elapsed}", file=sys.stderr, disable=None,
                 leave=False)
    stop = threading.Event()
    if clock.disable:
        watcher = threading.Thread(target=_announce, args=(label, stop), daemon=True)
    else:
        watcher = threading.Thread(target=_tick, args=(clock, stop), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        clock.close()
    note(f"{label}: done in {time.perf_counter() - t0:.1f} s")


def _announce(label: str, stop: threading.Event) -> None:
    if not stop.wait(START_AFTER_S):
        note(f"{label} ...")


def _tick(clock: Any, stop: threading.Event) -> None:
    while not stop.wait(TICK_S):
        clock.refresh()


def in_log() -> bool:
    """stderr is not a terminal (a file or a pipe: a script, nohup, cron, CI), where bars stay quiet."""
    return not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def duration(seconds: float) -> str:
    """An estimate's size in the unit that reads best: `42 s`, `12 min`, `3.4 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Pace:
    """How far counted work has got, in a log: `update(done)` as it goes writes
    `big.jpg: 4,160/166,800 tiles, 2 min in, about 80 min left` at most every LOG_EVERY_S (the time
    left at the rate measured so far), never at the end (the caller's own line says that). On a
    terminal (`log` False) the bar says it and this writes nothing."""

    def __init__(self, label: str, total: int, unit: str, log: bool) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.log = log
        self.t0 = self._said = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.log or done <= 0 or done >= self.total or now - self._said < LOG_EVERY_S:
            return
        self._said = now
        elapsed = now - self.t0
        left = elapsed / done * (self.total - done)
        note(f"{self.label}: {done:,}/{self.total:,} {self.unit}, {duration(elapsed)} in, about {duration(left)} left")
