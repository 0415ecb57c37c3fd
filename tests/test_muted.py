"""Third-party output muted one block at a time: NNCF's stdout (OpenVINO int8 builds) and
coremltools' stderr, each entered by two threads at once, leave the process's stream as it was."""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest


def _overlapping(block: Callable[[], AbstractContextManager[object]]) -> None:
    """Two threads in `block`, the second entering while the first is inside and leaving after it
    (where the second has to wait for the first, the waits time out, as they should)."""
    first_inside, second_inside, first_left = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with block():
            first_inside.set()
            second_inside.wait(0.5)
        first_left.set()

    def second() -> None:
        first_inside.wait()
        with block():
            second_inside.set()
            first_left.wait(0.5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_two_openvino_int8_quantizations_at_once_leave_stdout_as_it_was() -> None:
    pytest.importorskip("nncf", reason="NNCF (the openvino-int8 extra) is not installed")
    from alignvar_edge.runtimes.openvino.nncf import _quiet_nncf

    stdout = sys.stdout
    _overlapping(_quiet_nncf)
    assert sys.stdout is stdout


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_muted_blocks_in_two_threads_put_the_stream_back(stream: str) -> None:
    from alignvar_edge.muted import muted

    before = getattr(sys, stream)
    _overlapping(lambda: muted(stream))
    assert getattr(sys, stream) is before
