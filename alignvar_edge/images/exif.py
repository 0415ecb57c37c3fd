"""A file's EXIF as Pillow reads it, with the file named where the block is damaged: Pillow's
own warning names none."""
from __future__ import annotations

import os
import warnings
from typing import IO

from PIL import ExifTags, Image, ImageOps, TiffImagePlugin

from alignvar_edge.caller import warn_caller


def open_image(fp: str | os.PathLike[str] | IO[bytes], path: str | os.PathLike[str], say: bool = True) -> Image.Image:
    """`Image.open(fp)` of the file `path` (`fp`: it, or the file opened), its EXIF said damaged as
    `image_exif` says it (`say` as there). Pillow's JPEG loader reads the EXIF inside Image.open
    (for a DPI the JFIF header does not give), so its warnings came out raw, naming no file, before
    the tool read the file, and `image_exif` then found the EXIF read already and said nothing.
    Other warnings of the opening go on as they came."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = Image.open(fp)
    exif_read = not isinstance(img, TiffImagePlugin.TiffImageFile)   # a TIFF's own tags are no EXIF block
    damaged = [w for w in caught if exif_read and _from_exif_reader(w)]
    for w in caught:
        if w not in damaged:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if damaged and say:
        _say_damaged(path, damaged, img.getexif())
    return img


def _from_exif_reader(w: warnings.WarningMessage) -> bool:
    """Whether Pillow's EXIF reader raised `w`: it reads EXIF as a TIFF directory, in every format."""
    return os.path.basename(w.filename) == os.path.basename(TiffImagePlugin.__file__)


def image_exif(img: Image.Image, path: str | os.PathLike[str], say: bool = True) -> Image.Exif:
    """The EXIF of the opened file `path`, read once per opened image (Pillow keeps it: its
    `ImageOps.exif_transpose` gets the same). A damaged block is read as far as it goes, and
    Pillow's warnings about it, which name no file ("Corrupt EXIF data"), are said as one line
    naming `path` (`say`: False where the file is not being read for its picture, but looked at:
    said when it was, not again on each resumed run): in a folder of hundreds the user could not
    tell which file it was. A JPEG's EXIF is read when it is opened: `open_image` says it then."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exif = img.getexif()
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # said above, naming the file
        return ImageOps.exif_transpose(img)


# EXIF orientations other than upright (1), as `ImageOps.exif_transpose` turns them
_TURNS = range(2, 9)
