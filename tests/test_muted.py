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


def _warnings_state() -> tuple[object, ...]:
    """What a block changes and must leave as it found it: the filters (the list itself and its
    entries) and the display hooks."""
    import warnings

    hook = warnings._showwarnmsg_impl       # type: ignore[attr-defined]
    return warnings.filters, list(warnings.filters), warnings.showwarning, hook


@pytest.mark.parametrize("read_first", [True, False])
def test_a_build_mute_and_an_image_read_overlapping_in_two_threads_leave_the_warnings_state_as_it_was(
        read_first: bool) -> None:
    """An OpenVINO build's mute (`quieted`) took its own lock, an image read the warnings lock:
    overlapping in two threads, the first to end put back what it had found, and the second then put
    back the first's state, so ('always', Warning) stayed on top of the filters (a service's "error"
    for decompression bombs no longer raised) and every later warning went to a hidden list."""
    import logging
    import warnings

    from PIL import Image

    from alignvar_edge.caller import WarningFilter, warnings_changed
    from alignvar_edge.muted import quieted

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        before = _warnings_state()
        read = lambda: warnings_changed(WarningFilter("always", module=r"PIL\."), record=True)  # noqa: E731
        mute = lambda: quieted(("torch.export",), logging.CRITICAL, r"`torch\.jit\.load` is deprecated")  # noqa: E731
        blocks = iter([read, mute] if read_first else [mute, read])
        lock = threading.Lock()

        def next_block() -> AbstractContextManager[object]:
            with lock:
                return next(blocks)()
        _overlapping(next_block)
        after = _warnings_state()
        assert after[0] is before[0] and after[1:] == before[1:]


def test_the_packages_warning_is_shown_while_another_thread_mutes_a_build() -> None:
    """A build's mute of every warning (Core ML's) in one thread swallowed the warnings the package
    says to the user in another (a damaged EXIF, a 16-bit JPEG written with 8 bits)."""
    import logging
    import warnings

    from alignvar_edge.caller import warn_caller
    from alignvar_edge.muted import quieted

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _overlapping(lambda: quieted((), logging.ERROR), meanwhile=lambda: warn_caller("yours, said meanwhile"))
    assert [str(w.message) for w in shown] == ["yours, said meanwhile"]
