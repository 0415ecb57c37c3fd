"""Third-party output muted one block at a time: NNCF's stdout (OpenVINO int8 builds) and
coremltools' stderr, each entered by two threads at once, leave the process's stream as it was."""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest


def _overlapping(block: Callable[[], AbstractContextManager[object]], meanwhile: Callable[[], object] = lambda: None
                 ) -> None:
    """Two threads in `block`, the second entering while the first is inside and leaving after it
    (where the second has to wait for the first, the waits time out, as they should); the second
    calls `meanwhile` once the first is inside, before its own block."""
    first_inside, second_entering, second_inside, first_left = (threading.Event() for _ in range(4))

    def first() -> None:
        with block():
            first_inside.set()
            second_entering.wait()          # on a loaded machine too: the second is at its block's door
            second_inside.wait(0.5)
        first_left.set()

    def second() -> None:
        first_inside.wait()
        meanwhile()
        second_entering.set()
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


def test_quiet_coremltools_leaves_other_threads_stdout_and_sys_stderr_as_they_were(capsys) -> None:
    """The second block put back the first's StringIO as sys.stderr, which swallowed every later
    line; and a line another thread prints while coremltools is quiet reaches stdout."""
    from alignvar_edge.runtimes.coreml.ct import quiet

    stderr = sys.stderr
    _overlapping(quiet, meanwhile=lambda: print("heartbeat"))
    assert sys.stderr is stderr
    assert capsys.readouterr().out == "heartbeat\n"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_muted_blocks_in_two_threads_put_the_stream_back(stream: str) -> None:
    from alignvar_edge.muted import muted

    before = getattr(sys, stream)
    _overlapping(lambda: muted(stream))
    assert getattr(sys, stream) is before


def test_an_export_and_an_openvino_conversion_at_once_leave_loggers_and_warnings_as_they_were() -> None:
    # the exporter's quiet and the OpenVINO probe's each set torch.export's level and the warning
    # filters under their own lock or none: overlapping, one put back the other's, and every warning
    # in the process stayed ignored (the tool's own UserWarnings with them)
    import logging
    import warnings

    from alignvar_edge.export.onnx_export import _quiet_exporter
    from alignvar_edge.runtimes.openvino.backend import _pytorch_probe_unsaid

    probe_log = logging.getLogger("torch.export")
    level, filters = probe_log.level, list(warnings.filters)
    blocks = iter([_quiet_exporter, _pytorch_probe_unsaid])
    lock = threading.Lock()

    def next_block() -> AbstractContextManager[object]:
        with lock:
            return next(blocks)()
    _overlapping(next_block)
    assert probe_log.level == level and warnings.filters == filters
