"""Where the package's warnings point, and what they keep: at the line of the caller's own code,
whichever of the package's functions (python_call's wrapper, an engine's generator) lie between;
and a warning that names a new file each time holds no more memory in a long-lived process."""
from __future__ import annotations

import pathlib
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from alignvar_edge import runtimes
from alignvar_edge.caller import warn_caller
from alignvar_edge.images import as_float_image, save_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EIGHT_BITS_ONLY = "JPEG holds 8 bits a sample"


def _here() -> int:
    """The caller's line: where a warning said to the caller must point."""
    return sys._getframe(1).f_lineno


def test_save_image_warns_at_the_callers_line_not_at_python_calls_wrapper(tmp_path: Path) -> None:
    """save_image is a python_call: its 16-bit-to-JPEG warning pointed at alignvar_edge/caller.py,
    the wrapper's line, where the user can change nothing."""
    with pytest.warns(UserWarning, match=EIGHT_BITS_ONLY) as said:
        line = _here() + 1
        save_image(tmp_path / "x.jpg", np.zeros((8, 8, 3), np.uint16))
    assert [(w.filename, w.lineno) for w in said] == [(__file__, line)]


@pytest.mark.parametrize("call", ["upscale", "upscale_many"])
def test_an_engine_call_warns_at_the_callers_line(tmp_path: Path, call: str) -> None:
    """A PIL image of a 16-bit colour TIFF (8 bits a sample in PIL) warns at the user's call, also
    from upscale_many's generator, which pointed into runtimes/tiling.py."""
    tifffile.imwrite(tmp_path / "c16.tif", np.full((6, 5, 3), 1000, np.uint16), photometric="rgb")
    with runtimes.load("alignvar-tiny", backend="torch") as engine, Image.open(tmp_path / "c16.tif") as img, \
            pytest.warns(UserWarning, match=r"16-bit colour or gray\+alpha file holds 8 bits") as said:
        line = _here() + 1
        engine.upscale(img) if call == "upscale" else list(engine.upscale_many([img]))
    assert [(w.filename, w.lineno) for w in said] == [(__file__, line)]


def _registry_entries() -> int:
    # getattr: sys.modules may hold entries that are no module (None, where an import is blocked)
    return sum(len(getattr(m, "__dict__", {}).get("__warningregistry__", ())) for m in list(sys.modules.values()))


def _save_all(folder: Path, names: range) -> None:
    for i in names:
        save_image(folder / f"{i}.jpg", np.zeros((8, 8, 3), np.uint16), overwrite=True)


def test_a_warning_naming_each_file_written_holds_bounded_memory_and_is_still_said_once(tmp_path: Path) -> None:
    """Under Python's "default" action each distinct text was kept in a module's __warningregistry__
    for good: 4001 entries (about 0.25 KB each) after 4000 files. What a service that writes files
    holds for them stops growing; a repeated warning at one line is still said once."""
    said = {"count": 0}

    def count(message: Warning | str, *_: object, **__: object) -> None:     # counted, not kept
        said["count"] += EIGHT_BITS_ONLY in str(message)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = count
        # not the snapshots themselves, nor the names Path interns (those of `folder / name`)
        others = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, pathlib.__file__)]
        tracemalloc.start()
        try:
            _save_all(tmp_path, range(400))             # past what is kept: memory is at its ceiling
            entries = _registry_entries()
            before = tracemalloc.take_snapshot().filter_traces(others)
            _save_all(tmp_path, range(400, 1200))
            after = tracemalloc.take_snapshot().filter_traces(others)
        finally:
            tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        assert _registry_entries() == entries
        assert grown < 50_000, f"{grown} bytes more after 800 more files"     # unbounded: about 200 KB
        assert said["count"] == 1200
        _save_all(tmp_path, range(1199, 1200))
        assert said["count"] == 1200                    # the same text at the same line: said once


def test_a_warning_is_said_once_at_a_line_though_the_package_enters_catch_warnings_between(tmp_path: Path) -> None:
    """Reading each PIL image's EXIF enters warnings.catch_warnings, which bumps the filters' version
    and made Python forget what it had shown: a notebook's loop over phone photos opened with
    Image.open was told of each one's orientation at the same line. Once per text and line holds
    while the filters hold the same entries; a filter added since, or "always", says it again."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (8, 6)).save(tmp_path / "six.jpg", exif=exif.tobytes())
    with runtimes.load("alignvar-tiny", backend="torch") as engine, Image.open(tmp_path / "six.jpg") as photo:
        def orientation_lines(times: int) -> int:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("default")
                for _ in range(times):
                    engine.upscale(photo)
            return sum("EXIF orientation 6" in str(w.message) for w in said)
        assert orientation_lines(3) == 1
        assert orientation_lines(1) == 1            # new filters: said again, as Python says it
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            for _ in range(2):
                engine.upscale(photo)
        assert sum("EXIF orientation 6" in str(w.message) for w in said) == 2


def _phone_photo(path: Path) -> Path:
    """A JPEG whose EXIF orientation 6 says to turn it: a PIL image of it is warned about."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (8, 6)).save(path, exif=exif.tobytes())
    return path


@pytest.mark.parametrize(("action", "lines"), [("once", 1), ("module", 1), ("default", 2), ("always", 4)])
def test_each_action_says_a_text_as_often_as_python_though_the_package_enters_catch_warnings(
        tmp_path: Path, action: str, lines: int) -> None:
    """Python keeps what "once" has shown in a registry that every catch_warnings block clears, and
    reading a PIL image's EXIF enters one: `python -W once` told a loop over a phone photo its
    orientation each time. Each action says it as Python does where no block lies between: "once"
    and "module" once, "default" once per line, "always" each time."""
    with Image.open(_phone_photo(tmp_path / "six.jpg")) as photo, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter(action)
        for _ in range(2):
            as_float_image(photo)
            as_float_image(photo)               # another line
    assert sum("EXIF orientation 6" in str(w.message) for w in said) == lines


@pytest.mark.parametrize("field", ["message", "module"])
def test_a_filter_of_plain_text_matches_that_text_alone_as_for_warnings_warn(field: str) -> None:
    """CPython's own filters hold a plain str where a pattern goes (its DeprecationWarning filter's
    module, '__main__'), and compares such a str whole: warn_caller called its .match() and raised
    AttributeError. A str message or module now ignores that text alone, not the texts it begins."""
    def shown(plain: str) -> list[str]:        # with an "ignore" filter holding `plain` as its `field`
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            where = {"message": (plain, None), "module": (None, plain)}[field]
            warnings.filters.insert(0, ("ignore", where[0], UserWarning, where[1], 0))
            warn_caller("hush")
            warnings.warn("hush", stacklevel=1)
        return [str(w.message) for w in said]
    ours = "hush" if field == "message" else __name__
    assert shown(ours) == []
    assert shown(ours[:-1]) == ["hush"] * 2          # warn_caller's and warnings.warn's: a regex would match
