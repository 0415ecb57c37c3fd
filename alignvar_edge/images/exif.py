"""A file's EXIF as Pillow reads it, with the file named where the block is damaged: Pillow's
own warning names none. Every call into Pillow whose warnings the package says itself or drops
goes through `pillow_call`."""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import IO, TypeVar

from PIL import ExifTags, Image, ImageOps, TiffImagePlugin

from alignvar_edge.caller import WarningFilter, on_command_line, warn_at, warn_caller, warnings_changed

T = TypeVar("T")
# each of Pillow's warnings caught, though a filter had said it once already; only Pillow's, so that
# other libraries' warnings keep the user's filters
_PILLOW_ALWAYS = WarningFilter("always", module=r"PIL\.")


def pillow_call(call: Callable[[], T],
                ours: Callable[[warnings.WarningMessage], bool]) -> tuple[T, list[warnings.WarningMessage]]:
    """`call()`, a call into Pillow in this thread, and those of the warnings it raised that `ours`
    takes (the caller says them naming the file, or drops them). This thread's other warnings of
    the call are warned again after it, as they came, through the filters then in force; another
    thread's warnings meanwhile are not this call's, and are shown as they came (`warnings_changed`
    records this thread's only). Pillow's own warnings are all caught ("always" for its modules,
    though a filter had said one once already); other libraries' keep the user's filters. Where
    `call` raises, its `ours` are dropped (the file is refused) and the others warned before the
    error goes on."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings_changed(_PILLOW_ALWAYS, record=True) as caught:
            result = call()
    except BaseException:
        _warn_again(w for w in caught if not ours(w))
        raise
    taken = [w for w in caught if ours(w)]
    try:
        _warn_again(w for w in caught if w not in taken)
    except BaseException:       # a warning the filters make an error: the image opened is not left open
        if isinstance(result, Image.Image):
            result.close()
        raise
    return result, taken


def _warn_again(caught: Iterable[warnings.WarningMessage]) -> None:
    """Warn each of `caught` as warnings.warn first gave it: at its file and line, in its module (a
    filter by module matches it), what was shown kept as `warn_at` keeps it: with the module's
    registry, which each read's block clears (Python forgets what it showed whenever a filter is
    added), five reads of one image past 89 MP showed Pillow's warning five times under "default"."""
    for w in caught:
        module = _module_of(w.filename)
        name = module.__name__ if module is not None else w.filename.removesuffix(".py")   # as Python names it
        warn_at(w.message, w.category, w.filename, w.lineno, name)


def _module_of(filename: str) -> ModuleType | None:
    """The imported module whose source is `filename`, or None (a warning of no module's code)."""
    return next((m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == filename), None)


def _judged_bomb(w: warnings.WarningMessage) -> bool:
    """Pillow's decompression-bomb warning (an image past its 89 MP), on the command line, whose
    --max-megapixels judges every image it reads: the user raised it. A Python call leaves it to
    the caller's filters (a service's "error" for it refuses the image)."""
    return issubclass(w.category, Image.DecompressionBombWarning) and on_command_line()


def open_image(fp: str | os.PathLike[str] | IO[bytes], path: str | os.PathLike[str], say: bool = True) -> Image.Image:
    """`Image.open(fp)` of the file `path` (`fp`: it, or the file opened), its EXIF said damaged as
    `image_exif` says it (`say` as there). Pillow's JPEG loader reads the EXIF inside Image.open
    (for a DPI the JFIF header does not give), so its warnings came out raw, naming no file, before
    the tool read the file, and `image_exif` then found the EXIF read already and said nothing.
    Pillow's decompression-bomb warning is dropped where our limit judges the image (`_judged_bomb`);
    other warnings of the opening go on as they came (`pillow_call`)."""
    img, taken = pillow_call(lambda: Image.open(fp), lambda w: _from_exif_reader(w) or _judged_bomb(w))
    damaged = [w for w in taken if _from_exif_reader(w)]
    if isinstance(img, TiffImagePlugin.TiffImageFile):     # a TIFF's own tags are no EXIF block
        _warn_again(damaged)
        damaged = []
    if damaged and say:
        _say_damaged(path, damaged, image_exif(img, path, say=False))
    return img


def _from_exif_reader(w: warnings.WarningMessage) -> bool:
    """Whether Pillow's EXIF reader raised `w`: it reads EXIF as a TIFF directory, in every format."""
    return os.path.basename(w.filename) == os.path.basename(TiffImagePlugin.__file__)


def _from_pillow(w: warnings.WarningMessage) -> bool:
    """Whether one of Pillow's modules raised `w`."""
    return os.path.dirname(w.filename) == _PILLOW_DIR


_PILLOW_DIR = os.path.dirname(Image.__file__)


def image_exif(img: Image.Image, path: str | os.PathLike[str], say: bool = True) -> Image.Exif:
    """The EXIF of the opened file `path`, read once per opened image (Pillow keeps it: its
    `ImageOps.exif_transpose` gets the same). A damaged block is read as far as it goes, and
    Pillow's warnings about it, which name no file ("Corrupt EXIF data"), are said as one line
    naming `path` (`say`: False where the file is not being read for its picture, but looked at:
    said when it was, not again on each resumed run): in a folder of hundreds the user could not
    tell which file it was. A JPEG's EXIF is read when it is opened: `open_image` says it then."""
    exif, caught = pillow_call(img.getexif, _from_pillow)
    if caught and say:
        _say_damaged(path, caught, exif)
    return exif


def _say_damaged(path: str | os.PathLike[str], caught: list[warnings.WarningMessage], exif: Image.Exif) -> None:
    why = " ".join(str(caught[0].message).split())
    upright = ("" if ExifTags.Base.Orientation in exif else
               ": without an orientation the picture is taken as upright")
    warn_caller(f"{path}: its EXIF is damaged ({why}) and is read only as far as it goes{upright}; save "
                "the file again from an image editor to repair it")


def exif_turn(img: Image.Image, path: str | os.PathLike[str]) -> int | None:
    """The EXIF orientation that turns or flips `img` to show it (2 to 8, as
    `ImageOps.exif_transpose` applies them), None where it is shown as held (none, 1, or a value
    no viewer applies)."""
    orientation = image_exif(img, path).get(ExifTags.Base.Orientation, 1)
    return orientation if orientation in _TURNS else None


def exif_upright(img: Image.Image, path: str | os.PathLike[str]) -> Image.Image:
    """`img` turned upright by its EXIF orientation (`ImageOps.exif_transpose`), a damaged EXIF
    said once (`image_exif`): Pillow reads the EXIF again on the turned copy, and would repeat its
    warnings, naming no file. An upright image is `img` itself: Pillow would copy it whole."""
    if exif_turn(img, path) is None:
        return img
    # Pillow's warnings dropped: said above, naming the file
    return pillow_call(lambda: ImageOps.exif_transpose(img), _from_pillow)[0]


# EXIF orientations other than upright (1), as `ImageOps.exif_transpose` turns them
_TURNS = range(2, 9)
