"""Progress on stderr for the CLI: bars for counted loops, a ticking clock for steps of unknown
length (an OpenVINO int8 build, a Core ML conversion), so nothing sits silent for a minute.

On a terminal both redraw in place; in a log (stderr not a TTY) a stage writes one line when it
starts and one when it ends, and bars stay quiet. stdout is left alone (`--json` keeps it clean).
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

__all__ = ["bar", "stage"]

TICK_S = 0.5


def bar(it: Iterable[Any] | None = None, **kw: Any) -> Any:
    """tqdm on stderr, off when stderr is not a terminal (`disable=None`)."""
    kw.setdefault("leave", False)
    kw.setdefault("disable", None)
    return tqdm(it, file=sys.stderr, dynamic_ncols=True, **kw)


@contextmanager
def stage(label: str) -> Iterator[None]:
    """`with stage("building openvino int8"):` shows `building openvino int8: 00:41` while it runs,
    then `building openvino int8: done in 76.2 s` (or `failed after ...`)."""
    t0 = time.perf_counter()
    clock = tqdm(total=None, desc=label, bar_format="{desc}: {elapsed}", file=sys.stderr, disable=None)
    stop = threading.Event()
    ticker = threading.Thread(target=_tick, args=(clock, stop), daemon=True)
    if clock.disable:
        print(f"{label} ...", file=sys.stderr, flush=True)
    else:
        ticker.start()
    outcome = "failed after"
    try:
        yield
        outcome = "done in"
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        clock.close()
        print(f"{label}: {outcome} {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def _tick(clock: Any, stop: threading.Event) -> None:
    while not stop.wait(TICK_S):
        clock.refresh()
