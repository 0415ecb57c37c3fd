"""The image helpers called from several threads at once, as a multi-threaded service calls them:
Python 3.11 keeps the warnings filters and display hook for the whole process, so the package's
catch_warnings blocks must leave them as they found them, and lose no warning that is not theirs."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from _fork_wait import WAIT_FOR_CHILD
from alignvar_edge.caller import warn_caller
from alignvar_edge.images import as_float_image, file_layout, file_metadata, file_profile, load_image

WAIT_S = 0.5        # how long a thread waits for another that, with the fix, cannot come meanwhile


@pytest.fixture
def users_filters() -> Iterator[list[warnings.WarningMessage]]:
    """The user's warnings state for a test: every warning shown kept, once per text and line, and
    a service's guard that refuses a decompression bomb; the warnings shown."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield shown


def _state() -> tuple[object, ...]:
    """What a catch_warnings block swaps and must put back: the filters (the list itself and its
    entries) and the display hooks (`_showwarnmsg_impl` is a list's append inside a record block)."""
    hook = warnings._showwarnmsg_impl       # type: ignore[attr-defined]
    return warnings.filters, list(warnings.filters), warnings.showwarning, hook


def _damaged_exif_png(path: Path) -> Path:
    """A small PNG whose EXIF block is damaged: reading it warns, inside the helpers' blocks."""
    Image.new("RGB", (6, 5), (200, 40, 10)).save(path, exif=b"MM\0*garbage")
    return path


def _texts(shown: list[warnings.WarningMessage], part: str) -> list[str]:
    return [str(w.message) for w in shown if part in str(w.message)]


def _assert_state_kept(before: tuple[object, ...], shown: list[warnings.WarningMessage], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is as before the threads ran, a warning after them is shown, and the service's
    "error" filter still refuses a bomb opened by Pillow directly."""
    after = _state()
    assert after[0] is before[0] and after[1:] == before[1:]
    warnings.warn("a warning of yours after the batch")
    assert _texts(shown, "of yours after the batch") == ["a warning of yours after the batch"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("RGB", (12, 10)).save(tmp_path / "bomb.png")          # 120 pixels: past the limit
    with pytest.raises(Image.DecompressionBombWarning):
        Image.open(tmp_path / "bomb.png")


def _in_thread(name: str, work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, name=name)
    thread.start()
    return thread


def test_two_reads_whose_blocks_overlap_leave_the_warnings_state_as_they_found_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users_filters: list[warnings.WarningMessage]) -> None:
    """Two load_image calls whose catch_warnings blocks overlapped and ended in the order they began
    (not the reverse) put back each other's temporary state: every later warning of the process
    went to a hidden list, and a service's "error" filter for decompression bombs was gone. The
    second read is made to open its file while the first is still inside its block."""
    path = _damaged_exif_png(tmp_path / "a.png")
    real_open = Image.open
    first_in, second_in, first_done = threading.Event(), threading.Event(), threading.Event()

    def open_in_turn(fp, *args, **kwargs):      # type: ignore[no-untyped-def]
        img = real_open(fp, *args, **kwargs)
        if threading.current_thread().name == "first":
            first_in.set()
            second_in.wait(WAIT_S)          # the second opens meanwhile, unless it waits for this block
        else:
            second_in.set()
            first_done.wait(WAIT_S)         # and ends after the first
        return img

    def read() -> None:
        load_image(path)

    def first() -> None:
        read()
        first_done.set()

    monkeypatch.setattr(Image, "open", open_in_turn)
    before = _state()
    one = _in_thread("first", first)
    assert first_in.wait(10)
    two = _in_thread("second", read)
    one.join()
    two.join()
    monkeypatch.setattr(Image, "open", real_open)
    assert len(_texts(users_filters, "its EXIF is damaged")) == 1          # the same line: said once
    _assert_state_kept(before, users_filters, tmp_path, monkeypatch)


def test_every_image_helper_in_four_threads_leaves_the_warnings_state_as_it_found_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users_filters: list[warnings.WarningMessage]) -> None:
    """The reviewer's batch, small: load_image, file_profile, file_metadata, file_layout and a PIL
    image turned by its EXIF (as Engine.upscale reads it) on four threads left the filters
    ('always', Warning) and ('ignore', DecompressionBombWarning) on top and the display hook a list's
    append: 10 000 warnings later, 10 002 entries held and none shown."""
    path = _damaged_exif_png(tmp_path / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (6, 5)).save(tmp_path / "six.jpg", exif=exif)
    jobs: list[Callable[[], object]] = [
        lambda: load_image(path), lambda: file_profile(path), lambda: file_metadata(path, 4),
        lambda: file_layout(path), lambda: as_float_image(Image.open(tmp_path / "six.jpg"))]
    before = _state()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: jobs[i % len(jobs)](), range(2000)))
    _assert_state_kept(before, users_filters, tmp_path, monkeypatch)


def _say() -> None:
    warn_caller("the same text, at the same line")


def test_a_warning_is_said_once_though_another_thread_reads_an_image_meanwhile(
        tmp_path: Path, users_filters: list[warnings.WarningMessage], monkeypatch: pytest.MonkeyPatch) -> None:
    """warn_caller judged its text by the filters of another thread's block (Pillow's EXIF read):
    "always", so it was said again, and its memory of what was said was forgotten, so it was said
    once more after the block. An orientation warning came 1, 3 and 1 times in three runs."""
    path = _damaged_exif_png(tmp_path / "a.png")
    real_open = Image.open
    inside, said = threading.Event(), threading.Event()

    def open_and_wait(fp, *args, **kwargs):     # type: ignore[no-untyped-def]
        img = real_open(fp, *args, **kwargs)
        inside.set()
        said.wait(WAIT_S)                   # the main thread says its text while this block runs
        return img

    _say()
    monkeypatch.setattr(Image, "open", open_and_wait)
    reader = _in_thread("reader", lambda: load_image(path))
    assert inside.wait(10)
    _say()
    said.set()
    reader.join()
    _say()
    assert len(_texts(users_filters, "the same text")) == 1


def test_a_warning_is_said_once_by_two_threads_saying_it_at_once(
        users_filters: list[warnings.WarningMessage], monkeypatch: pytest.MonkeyPatch) -> None:
    """warn_caller looked up whether a text was said, then said it and noted it: two threads between
    the look and the note both said it (a display hook that takes its time, a log handler, widens the
    gap). The second thread says it while the first's display hook runs, and the hook waits for it to
    be done: noted before the display, the second returns at once, without saying it again."""
    show = warnings.showwarning
    waited: list[bool] = []

    def show_while_another_says_it(*args, **kwargs):        # type: ignore[no-untyped-def]
        show(*args, **kwargs)
        second = _in_thread("second sayer", _say)
        second.join(10)
        waited.append(not second.is_alive())

    monkeypatch.setattr(warnings, "showwarning", show_while_another_says_it)
    _in_thread("first sayer", _say).join()
    assert waited == [True]                 # the hook ran once, and the second sayer did not wait for it
    assert len(_texts(users_filters, "the same text")) == 1


def test_a_display_hook_that_waits_for_a_thread_reading_an_image_is_not_waited_for(
        tmp_path: Path, users_filters: list[warnings.WarningMessage], monkeypatch: pytest.MonkeyPatch) -> None:
    """A GUI's display hook hands the warning to its UI thread and waits for it; that thread reads a
    thumbnail meanwhile. warn_caller ran the hook holding the lock the read waits for: the hook
    waited for the thread, the thread for the hook."""
    damaged, thumbnail = _damaged_exif_png(tmp_path / "a.png"), tmp_path / "thumb.png"
    Image.new("RGB", (6, 5)).save(thumbnail)
    read_in_ui: list[bool] = []

    def hand_to_ui_thread(*args, **kwargs):         # type: ignore[no-untyped-def]
        ui = _in_thread("ui", lambda: load_image(thumbnail))
        ui.join(10)
        read_in_ui.append(not ui.is_alive())

    monkeypatch.setattr(warnings, "showwarning", hand_to_ui_thread)
    load_image(damaged)
    assert read_in_ui == [True]


def test_a_display_hook_that_raises_leaves_the_text_unsaid(
        users_filters: list[warnings.WarningMessage], monkeypatch: pytest.MonkeyPatch) -> None:
    """Noted as said before the display, a text whose display failed would never be said again."""
    show = warnings.showwarning

    def fail(*args, **kwargs):          # type: ignore[no-untyped-def]
        raise OSError("the log is on a full disk")

    monkeypatch.setattr(warnings, "showwarning", fail)
    with pytest.raises(OSError, match="full disk"):
        _say()
    monkeypatch.setattr(warnings, "showwarning", show)
    _say()
    assert len(_texts(users_filters, "the same text")) == 1


def _during_a_read(path: Path, monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], object]) -> None:
    """load_image(path) in a thread of its own, `meanwhile` called in this one while that read is
    inside its Pillow call (reading the EXIF)."""
    real_getexif = Image.Image.getexif
    inside, done = threading.Event(), threading.Event()

    def getexif_and_wait(img: Image.Image) -> Image.Exif:
        exif = real_getexif(img)
        inside.set()
        done.wait(10)
        return exif

    monkeypatch.setattr(Image.Image, "getexif", getexif_and_wait)
    reader = _in_thread("reader", lambda: load_image(path))
    assert inside.wait(10)
    try:
        meanwhile()
    finally:
        done.set()
        reader.join()
    monkeypatch.setattr(Image.Image, "getexif", real_getexif)


def test_another_threads_warning_during_an_exif_read_is_shown_as_it_came(
        tmp_path: Path, users_filters: list[warnings.WarningMessage], monkeypatch: pytest.MonkeyPatch) -> None:
    """A warning the service raised in one thread while another read an image's EXIF went to that
    read's block: it was said as the file's damaged EXIF ("its EXIF is damaged (a warning of
    yours)"), or dropped where the read turned the image. It is shown as it came; the file's own
    damaged EXIF is said naming it, as before."""
    path = _damaged_exif_png(tmp_path / "a.png")
    _during_a_read(path, monkeypatch, lambda: warnings.warn("a warning of yours", RuntimeWarning))
    assert [w.category for w in users_filters if str(w.message) == "a warning of yours"] == [RuntimeWarning]
    damaged = _texts(users_filters, "its EXIF is damaged")
    assert len(damaged) == 1 and damaged[0].startswith(f"{path}: its EXIF is damaged (Corrupt EXIF data")


def test_another_threads_pillow_warning_during_a_read_is_not_said_as_the_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread's own Image.open of an image past Pillow's limit, while load_image read a
    sound file: the read took Pillow's decompression-bomb warning for its file's, and said
    "ok.png: its EXIF is damaged (Image size ... could be decompression bomb ...)". It is that
    thread's: shown as Pillow gave it, and nothing is said of the file read."""
    path = tmp_path / "ok.png"
    Image.new("RGB", (6, 5)).save(path)
    Image.new("RGB", (12, 10)).save(tmp_path / "bomb.png")

    def open_a_bomb() -> None:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)      # 120 pixels: past it
        Image.open(tmp_path / "bomb.png").close()

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        _during_a_read(path, monkeypatch, open_a_bomb)
    assert [(w.category, os.path.basename(w.filename)) for w in shown] == [
        (Image.DecompressionBombWarning, "Image.py")]


def test_other_libraries_warnings_keep_the_users_filters_during_a_read(
        tmp_path: Path, users_filters: list[warnings.WarningMessage], monkeypatch: pytest.MonkeyPatch) -> None:
    """While a read's Pillow call ran, every warning of the process was shown ("always"): a
    service's "error" filter for another library's warning, raised in another thread meanwhile, did
    not raise. Only Pillow's own modules are "always" during the call."""
    warnings.simplefilter("error", RuntimeWarning)
    path = _damaged_exif_png(tmp_path / "a.png")
    raised: list[type[BaseException]] = []

    def warn_as_another_library() -> None:
        try:
            warnings.warn("a library's warning", RuntimeWarning)
        except RuntimeWarning as e:
            raised.append(type(e))

    _during_a_read(path, monkeypatch, warn_as_another_library)
    assert raised == [RuntimeWarning]
    assert len(_texts(users_filters, "its EXIF is damaged")) == 1


_FORK_SCRIPT = """
import logging, os, sys, threading, time, warnings
from PIL import Image
from alignvar_edge import caller, muted
from alignvar_edge.caller import warn_caller
from alignvar_edge.images import load_image

path = sys.argv[1]
Image.new("RGB", (6, 5)).save(path)
inside = threading.Event()

def hold():     # a thread of the parent inside a read's and a mute's moment of holding the locks
    with caller._WARNINGS_STATE, muted._SWAPPING:
        inside.set()
        time.sleep(60)

def in_a_block():  # a thread of the parent inside a block of the package (a read's, a build's)
    with caller.warnings_changed(caller.WarningFilter("ignore"), record=True):
        block_in.set()
        time.sleep(60)

before = list(warnings.filters), warnings.showwarning
block_in = threading.Event()
threading.Thread(target=in_a_block, daemon=True).start()
block_in.wait()
threading.Thread(target=hold, daemon=True).start()
inside.wait()
pid = os.fork()
if pid == 0:
    print("child's warnings as before the block:", (list(warnings.filters), warnings.showwarning) == before,
          flush=True)
    load_image(path)
    warn_caller("said in the child")
    with muted.quieted(("x",), logging.ERROR, "nothing"), muted.muted("stdout"):
        pass
    print("child read", flush=True)
    os._exit(0)
limit = float(sys.argv[2])
""" + WAIT_FOR_CHILD


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_child_forked_while_another_thread_holds_the_locks_reads_images(tmp_path: Path) -> None:
    """A fork pool's worker forked while a thread of the parent was reading an image (or muting a
    build's output) inherited the lock held, by a thread it does not have: its first load_image,
    warn_caller or muted block waited for ever. A block of the package another thread was in
    never ends in the child: its filter and display hook are taken out there."""
    script = tmp_path / "fork_case.py"
    script.write_text(_FORK_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "a.png"), "20"],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.splitlines() == [
        "child's warnings as before the block: True", "child read", "child exit 0"], run.stderr


def test_pillows_warning_said_again_by_reads_is_shown_once_as_plain_pillow_shows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five load_image (or file_profile) of one image past Pillow's limit showed its
    decompression-bomb warning five times under the "default" filter, where Image.open shows it once:
    each read's block made Python forget what it had shown at Pillow's line."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)         # a 12x10 image is past it
    Image.new("RGB", (12, 10)).save(tmp_path / "bomb.png")
    for read in (lambda: load_image(tmp_path / "bomb.png", max_megapixels=None),
                 lambda: file_profile(tmp_path / "bomb.png")):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("default")
            for _ in range(5):
                read()
        assert [w.category for w in shown] == [Image.DecompressionBombWarning]


def test_a_read_is_refused_by_the_users_error_filter_while_another_thread_reads(
        tmp_path: Path, users_filters: list[warnings.WarningMessage], monkeypatch: pytest.MonkeyPatch) -> None:
    """A read's Pillow warnings are said again after its call through the user's filters, not the
    entry that another thread's read has put first meanwhile ("always" for Pillow): a service's
    "error" filter for decompression bombs refuses its image whatever other threads read."""
    Image.new("RGB", (12, 10)).save(tmp_path / "bomb.png")
    refused: list[str] = []

    def read_a_bomb() -> None:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)      # 120 pixels: past it
        with pytest.raises(Image.DecompressionBombWarning) as e:
            load_image(tmp_path / "bomb.png", max_megapixels=None)
        refused.append(str(e.value))

    _during_a_read(_damaged_exif_png(tmp_path / "a.png"), monkeypatch, read_a_bomb)
    assert len(refused) == 1 and "could be decompression bomb" in refused[0]
