"""Image files in and out: float32 HWC RGB in [0, 1], plus an optional alpha plane.

Loading is defensive because users point the tool at arbitrary folders: the size is checked from
the header before any pixel is decoded, EXIF orientation is applied (the pixels are turned upright,
and `file_metadata` drops the orientation from the EXIF written back), and every mode Pillow can
produce ends up as RGB. 16-bit files keep their 16 bits where Pillow holds only 8 of them: gray+alpha
and RGB(A) PNGs are decoded by Pillow's codec with other raw modes (`sixteen_bit.py`),
RGB(A) TIFFs by tifffile. Saving is atomic and never clobbers a file
silently; 16 bits stay 16 where the output format holds them (gray: PNG, TIFF; gray+alpha: PNG;
RGB(A): PNG, and TIFF where tifffile is installed; written by `_write_png16` and `_write_tiff16`).
JPEG and WebP are written at `DEFAULT_QUALITY` unless told (`quality_setting`, `check_quality`).
"""
from __future__ import annotations

import io
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypedDict

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, TiffImagePlugin

from alignvar_edge import png16, sixteen_bit
from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError, OutputExistsError
from alignvar_edge.fsmodes import publish_mode, write_error
from alignvar_edge.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:              # torch on first use: image I/O alone should not pay its import time
    torch = lazy_import("torch")

__all__ = [
    "DEFAULT_MAX_MEGAPIXELS",
    "DEFAULT_QUALITY",
    "IMAGE_EXTENSIONS",
    "Metadata",
    "QUALITY_FORMATS",
    "READ_EXTENSIONS",
    "as_float_image",
    "bits_per_sample",
    "check_quality",
    "check_unit_range",
    "file_layout",
    "file_metadata",
    "file_profile",
    "from_tensor",
    "list_images",
    "list_other_files",
    "load_image",
    "output_format",
    "quality_setting",
    "result_path",
    "save_image",
    "to_tensor",
]

# x4 SR multiplies the pixel count by 16: 24 MP in is 384 MP (~4.6 GB as float32 RGB) out.
DEFAULT_MAX_MEGAPIXELS = 24.0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# what `upscale` reads: those, and GIF (one frame), whose result is written as PNG (`result_path`)
READ_EXTENSIONS = (*IMAGE_EXTENSIONS, ".gif")


def load_image(
    path: str | os.PathLike[str], max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    raise_limit: str | None = "max_megapixels / --max-megapixels",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image file as (rgb float32 HxWx3 in [0,1], alpha float32 HxW or None).

    ``max_megapixels=None`` lifts our size limit (Pillow's decompression-bomb guard still applies).
    ``raise_limit`` names how the caller's user raises it (None: they cannot, the refusal says so).
    16-bit files keep their full precision: grayscale, gray+alpha and RGB(A) PNGs, and RGB(A)
    TIFFs where tifffile is installed (refused without it: Pillow would read 8 of their bits).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file; pass an image file path")
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    with warnings.catch_warnings():
        # We enforce our own limit below; Pillow's warning would only duplicate it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except Image.DecompressionBombError as e:
            raise InputError(
                f"{path} is too large to open safely ({e}); downscale it or split it into tiles"
            ) from e
        except Image.UnidentifiedImageError as e:
            if path.stat().st_size == 0:
                raise InputError(f"{path} is empty (0 bytes); re-export or remove it") from e
            raise InputError(
                f"{path} is not an image Pillow can read, or its header is damaged "
                "(zero size, unknown format); convert it to PNG or JPEG"
            ) from e
        except IMAGE_DECODE_ERRORS as e:
            raise InputError(f"{path} cannot be opened as an image ({e}); re-export the file") from e
        with img:
            return _decode(path, img, max_megapixels, raise_limit)


def _decode(
    path: Path, img: Image.Image, max_megapixels: float | None, raise_limit: str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    # Image.open only parsed the header: size is known, pixels are not decoded yet.
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputError(f"{path} has no pixels ({width}x{height}); it is empty or damaged")
    megapixels = width * height / 1e6
    if max_megapixels is not None and megapixels > max_megapixels:
        # two significant digits below 1 MP: a 0.012 MP image over a 0.01 MP limit is not "0.0 MP"
        shown = f"{megapixels:.1f}" if megapixels >= 1 else f"{megapixels:.2g}"
        how = f", or raise the limit ({raise_limit})" if raise_limit else ""
        raise InputError(f"{path} is {width}x{height} ({shown} MP), over the {max_megapixels:g} MP "
                         f"limit; downscale or crop it{how}")
    try:                # counting frames reads every directory of a TIFF
        frames = int(getattr(img, "n_frames", 1) or 1)
    except _DAMAGED as e:
        raise _damaged(path, e) from e
    # animations and multi-page files; not a camera JPEG's MPF extras (MPO: the first frame is the photo)
    if frames > 1 and img.format in _MULTI_FRAME_FORMATS:
        # only the first would be read, silently: refuse rather than lose the others
        raise InputError(f"{path} holds {frames} frames (an animation or a multi-page file); save the "
                         "frame you want as a PNG and pass that")
    try:
        rgb, alpha = sixteen_bit.rgb16_planes(path, img) if sixteen_bit.is_rgb16(img) else _planes(img)
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    except _DAMAGED as e:
        raise _damaged(path, e) from e
    if not np.isfinite(rgb).all():
        raise InputError(f"{path} contains NaN or infinite pixel values; fix the source image")
    return rgb, alpha


# what decoding damaged data raises: Pillow's TIFF reader adds TypeError (a directory without a size)
_DAMAGED = (*IMAGE_DECODE_ERRORS, TypeError)


def _damaged(path: Path, e: Exception) -> InputError:
    return InputError(f"{path} is truncated or corrupt ({e}); re-download or re-export the file")


def _planes(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow's pixels, upright, as float32 RGB and alpha (16-bit gray+alpha kept 16-bit)."""
    la16 = sixteen_bit.read_la16_raw(img)
    img.load()
    img = ImageOps.exif_transpose(img)
    if la16:
        gray, alpha = sixteen_bit.la16_planes(img)
        return _gray_to_rgb(gray), alpha
    return _to_float_planes(img)


# Pillow modes of 16-bit grayscale files ("I" is how some Pillow versions open 16-bit PNGs)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
# formats Pillow writes 16-bit grayscale to; 16-bit gray+alpha and RGB(A) go to PNG alone (`_write_png16`)
_SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")


_MULTI_FRAME_FORMATS = ("GIF", "PNG", "WEBP", "TIFF")

# gray modes an image is upscaled in (`_plain_mode`): `upscale` writes these back gray
_GRAY_MODES = ("L", "LA", "F", *_SIXTEEN_BIT_MODES)


def _plain_mode(img: Image.Image) -> str:
    """The mode an image is upscaled in and comes back as, a file (`upscale`) and a PIL image
    (`Engine.upscale`) alike: gray stays gray, alpha (or a transparent colour) stays alpha, any
    other mode becomes RGB(A). Bilevel "1" becomes 8-bit "L": the x4 result's edges are grays
    that one bit would throw away."""
    mode = img.mode
    if mode in (*_SIXTEEN_BIT_MODES, "F"):          # one plane each: Pillow has no alpha beside them
        return mode
    alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info
    gray = mode in ("1", "L", "LA", "La")
    return ("LA" if gray else "RGBA") if alpha else ("L" if gray else "RGB")


def _open_quietly(path: str | os.PathLike[str]) -> Image.Image:
    """`Image.open`, without Pillow's decompression-bomb warning ("could be decompression bomb DOS
    attack") for an input between its 89 MP and the --max-megapixels the user raised: `load_image`
    has applied our own limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def file_layout(path: str | os.PathLike[str]) -> tuple[bool, int]:
    """(gray, bits per sample) of an image file, from its header alone: what `upscale` writes back.
    Gray is the file's layout (an RGB file whose channels happen to be equal is RGB); bits are 16
    for a 16-bit file `load_image` keeps 16-bit (gray, gray+alpha, RGB, RGBA) and for a float
    gray one (a 32-bit float TIFF: 8 bits would throw away what it holds beyond them), else 8."""
    with _open_quietly(path) as img:
        return _layout(img)


def _layout(img: Image.Image) -> tuple[bool, int]:
    if sixteen_bit.is_la16(img):
        return True, 16
    if sixteen_bit.is_rgb16(img):
        return False, 16
    return _plain_mode(img) in _GRAY_MODES, 16 if img.mode in (*_SIXTEEN_BIT_MODES, "F") else 8


def file_profile(path: str | os.PathLike[str]) -> bytes | None:
    """The file's ICC colour profile where it describes what `upscale` writes back (an RGB
    profile on a colour image, a gray one on gray), else None. The pixels are kept as the file
    holds them, so without it a Display P3 or Adobe RGB photo would be shown as sRGB, its colours
    dulled; a CMYK profile no longer applies to the RGB result and is dropped."""
    with _open_quietly(path) as img:
        return _profile(img)


def _profile(img: Image.Image) -> bytes | None:
    icc = img.info.get("icc_profile")
    # bytes 16-19 of an ICC header: the colour space of the data it describes
    if not isinstance(icc, bytes) or len(icc) < 20 or icc[16:20] != (b"GRAY" if _layout(img)[0] else b"RGB "):
        return None
    return icc


class Metadata(TypedDict):
    """`save_image`'s keywords for what an output carries beside its pixels (`file_metadata`)."""
    icc_profile: bytes | None
    exif: bytes | None
    dpi: tuple[float, float] | None
    xmp: bytes | None
    text: dict[str, str] | None


def file_metadata(path: str | os.PathLike[str], scale: int = 1) -> Metadata:
    """What `upscale` writes beside the pixels of `path`'s result, `scale` times its size: the
    ICC profile (`file_profile`), the EXIF and the XMP that describe the picture (`_carried_exif`,
    `_carried_xmp`: not its orientation, since `load_image` turned the pixels upright), the DPI
    times `scale`, so that the result prints at the input's size, and a PNG's text (`_carried_text`:
    author, copyright, description, ...)."""
    with _open_quietly(path) as img:
        icc = _profile(img)               # from the header: getexif may decode the pixels
        exif = img.getexif()              # (a PNG's EXIF may follow them)
        dpi = _dpi(img, exif)
        try:
            carried = _carried_exif(exif)
        except (*IMAGE_DECODE_ERRORS, struct.error, TypeError) as e:   # a maker's tag Pillow cannot write back
            warnings.warn(f"{path}: its EXIF cannot be copied ({e}); the result is written without it",
                          stacklevel=2)
            carried = None
        # a PNG's text may follow its pixels too; its XMP is one of its texts
        text = dict(img.text) if isinstance(img, PngImagePlugin.PngImageFile) else {}
        xmp = img.info.get("xmp") or text.get(_PNG_XMP, "").encode()
    return {"icc_profile": icc, "exif": carried, "dpi": (dpi[0] * scale, dpi[1] * scale) if dpi else None,
            "xmp": _carried_xmp(xmp), "text": _carried_text(text)}


# The PNG text key of XMP; and ImageMagick's copies of profiles as PNG text: EXIF (read as the
# EXIF), the ICC profile and XMP are carried in their own fields, and their copies would hold what
# those leave out (the orientation, a CMYK profile).
_PNG_XMP = "XML:com.adobe.xmp"
_PROFILE_TEXT = re.compile(r"Raw profile type (exif|APP1|icc|icm|xmp)$", re.IGNORECASE)


def _carried_text(text: dict[str, str]) -> dict[str, str] | None:
    carried = {k: v for k, v in text.items() if k != _PNG_XMP and not _PROFILE_TEXT.match(k)}
    return carried or None


# XMP properties that describe the input's pixels, as `_carried_exif` leaves their EXIF tags out:
# the orientation, the width and height, the resolution (the output has its own); as attributes
# (tiff:Orientation="6") or elements (<tiff:Orientation>6</tiff:Orientation>)
_XMP_LAYOUT = (rb"(?:tiff:(?:Orientation|ImageWidth|ImageLength|XResolution|YResolution|ResolutionUnit)"
               rb"|exif:(?:PixelXDimension|PixelYDimension))")
_XMP_LAYOUT_ATTRIBUTE = re.compile(rb"\s" + _XMP_LAYOUT + rb"\s*=\s*(?:\"[^\"]*\"|'[^']*')")
_XMP_LAYOUT_ELEMENT = re.compile(rb"<(" + _XMP_LAYOUT + rb")\s*>[^<]*</\1\s*>")


def _carried_xmp(xmp: object) -> bytes | None:
    if isinstance(xmp, tuple) and len(xmp) == 1:      # a TIFF's tag, as some Pillow versions give it
        xmp = xmp[0]
    if isinstance(xmp, str):
        xmp = xmp.encode()
    if not isinstance(xmp, bytes) or not xmp.strip(b"\0 \t\r\n"):
        return None
    return _XMP_LAYOUT_ELEMENT.sub(b"", _XMP_LAYOUT_ATTRIBUTE.sub(b"", xmp))


# EXIF resolution tags and their unit (2: inch, the default; 3: centimetre)
_X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 282, 283, 296
_PER_INCH = {2: 1.0, 3: 2.54}


def _dpi(img: Image.Image, exif: Image.Exif) -> tuple[float, float] | None:
    """Pillow's DPI of the file (PNG, JPEG, TIFF, BMP), else its EXIF resolution (WebP's only one)."""
    dpi = img.info.get("dpi")
    if isinstance(img, TiffImagePlugin.TiffImageFile) and _X_RESOLUTION not in img.tag_v2:
        dpi = None                        # Pillow's (1, 1) for a TIFF that gives none: 4 DPI written
    try:
        if dpi is None and _X_RESOLUTION in exif and _Y_RESOLUTION in exif:
            per_inch = _PER_INCH.get(exif.get(_RESOLUTION_UNIT, 2), 0.0)
            dpi = (float(exif[_X_RESOLUTION]) * per_inch, float(exif[_Y_RESOLUTION]) * per_inch)
        if dpi is None or not all(float(d) > 0 for d in dpi):     # 0, or a 0/0 rational: none given
            return None
        return float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, ZeroDivisionError):   # a damaged resolution tag: text, not a number
        return None


# The EXIF tags of the first directory that describe the picture and still hold for the result:
# description, camera, software, date, author, copyright, and the Exif (exposure, lens, ...) and
# GPS directories. The others describe the input's pixels (a TIFF's are its strips and sample
# layout; orientation, resolution), which the output has its own of.
_PICTURE_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432, ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)
# the Exif directory's record of the input's width and height
_PIXEL_DIMENSIONS = (0xA002, 0xA003)


def _carried_exif(exif: Image.Exif) -> bytes | None:
    for tag in [t for t in exif if t not in _PICTURE_TAGS]:
        del exif[tag]
    if _LAYOUT_DESCRIPTION.match(str(exif.get(_DESCRIPTION, ""))):
        del exif[_DESCRIPTION]
    if ExifTags.IFD.Exif in exif:         # get_ifd adds an empty one where there is none
        for tag in _PIXEL_DIMENSIONS:
            exif.get_ifd(ExifTags.IFD.Exif).pop(tag, None)
    return exif.tobytes() if len(exif) else None


# A TIFF's ImageDescription that is its layout, written by imaging software (tifffile's JSON
# shape, ImageJ's "images=N slices=...", OME-XML): the result's readers would take its shape
# and page count for the result's, which has its own.
_DESCRIPTION = 270
_LAYOUT_DESCRIPTION = re.compile(r'\s*(\{\s*"shape"|ImageJ=|<\?xml|<OME)')


def bits_per_sample(path: str | os.PathLike[str]) -> int:
    """16 for a 16-bit file `load_image` keeps 16-bit, else 8 (`file_layout`)."""
    return file_layout(path)[1]


def _to_float_planes(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> float32 RGB HxWx3 and optional alpha HxW, both in [0, 1]."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit grayscale (PNG/TIFF). Mode "I" is int32 and may hold anything: accept 16-bit range.
        gray = np.asarray(img).astype(np.float32)
        if gray.size and (gray.min() < 0 or gray.max() > 65535):
            raise InputError(
                f"32-bit integer image with values outside 0..65535 (mode {mode}); "
                "convert it to 8- or 16-bit first"
            )
        return _gray_to_rgb(gray / 65535.0), None
    if mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        check_unit_range(gray)
        return _gray_to_rgb(np.clip(gray, 0.0, 1.0)), None
    # P, CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, HSV, RGBX, RGBa ...: RGB(A)
    target = _plain_mode(img)
    arr = np.asarray(_converted(img, target), dtype=np.float32) / 255.0
    if target == "L":
        return _gray_to_rgb(arr), None
    if target == "LA":
        return _gray_to_rgb(arr[..., 0]), np.ascontiguousarray(arr[..., 1])
    if target == "RGB":
        return np.ascontiguousarray(arr), None
    return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])


def _converted(img: Image.Image, mode: str) -> Image.Image:
    try:
        return img if img.mode == mode else img.convert(mode)
    except ValueError as e:
        raise InputError(f"unsupported image mode {img.mode}; convert it to RGB first") from e


def _gray_to_rgb(gray_HW: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray_HW[..., None], 3, axis=2), dtype=np.float32)


def save_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    overwrite: bool = False,
    input_path: str | os.PathLike[str] | None = None,
    quality: int | str | None = None,
    bits: int = 8,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    xmp: bytes | None = None,
    text: dict[str, str] | None = None,
) -> Path:
    """Write float RGB HxWx3 (or gray HxW) in [0,1], atomically; returns the path.

    The format follows the extension. ``bits=16`` writes 16 bits a sample where the format holds
    them: gray to PNG and TIFF; gray+alpha to PNG; RGB and RGBA to PNG, and to TIFF through
    tifffile (a TIFF of these is 8-bit, with a warning, where Pillow alone writes it: gray+alpha,
    or colour without tifffile); everything else is 8-bit. ``icc_profile``,
    ``exif`` (bytes, as ``Image.Exif.tobytes`` gives) and ``dpi`` are written where the format
    holds them (PNG, JPEG, WebP, TIFF; WebP's DPI in its EXIF; BMP's DPI alone), and so is ``xmp``
    (bytes; not by tifffile, nor to a JPEG past its 65504 bytes, with a warning); ``text`` ({key:
    value}: a PNG's text chunks, `file_metadata`) to PNG, and its author, copyright and description
    to the EXIF of the other formats that hold one. ``input_path`` is the image the
    data came from: writing onto it is refused even with ``overwrite=True``, since a failed run
    would destroy the source. ``quality`` (JPEG and WebP alone, `quality_setting`): 1 to 100, or
    "lossless" for WebP; default `DEFAULT_QUALITY`. JPEG keeps full-resolution colour (4:4:4) from
    quality 90 up, halves it both ways (4:2:0) below.
    """
    if bits not in (8, 16):
        raise InputError(f"bits must be 8 or 16, got {bits!r}")
    path = Path(path)
    fmt = output_format(path, alpha is not None)
    encoder = _encoder_params(fmt, quality, str(path))
    if input_path is not None and _same_file(path, Path(input_path)):
        raise InputError(
            f"refusing to write the result onto its own input {path}; choose another output path"
        )
    if path.is_dir():                    # os.replace would fail once the work is done, naming the temp file
        raise InputError(f"output path {path} is a folder; move it away or choose an image file path")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --force (overwrite=True) to replace it")
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist; create it first")

    rgb = _checked(rgb, alpha, path)
    output_format(path, alpha is not None, (rgb.shape[1], rgb.shape[0]), gray=rgb.ndim == 2, bits=bits)
    writer = _writer(fmt, bits, rgb.ndim == 2, alpha is not None)
    if bits == 16 and fmt in _SIXTEEN_BIT_FORMATS and writer == "pillow8":
        warnings.warn(f"tifffile is not installed, so {path} is written with 8 bits a sample; install "
                      "tifffile (pip install tifffile) or save it as .png to keep 16" if rgb.ndim == 3 else
                      f"Pillow cannot write 16-bit gray+alpha {fmt}: {path} is written with 8 bits; "
                      "save it as .png to keep 16", stacklevel=2)
    sixteen, own, tiff16 = writer != "pillow8", writer in ("png16", "tiff16"), writer == "tiff16"
    if text and fmt in _METADATA_FORMATS and fmt != "PNG":
        exif = _exif_with_png_text(exif, text)
    exif_tags = _tiff16_exif(exif, xmp, path) if tiff16 else None
    img = None if own else _to_pil(rgb, alpha, sixteen)
    if dpi and max(dpi) > _MAX_DPI.get(fmt, max(dpi)):
        warnings.warn(f"{path}: {fmt} holds at most {_MAX_DPI[fmt]:.0f} DPI, not {max(dpi):.0f}: it is written "
                      "without one (save it as .tif to keep it)", stacklevel=2)
        dpi = None
    if fmt == "JPEG" and exif and len(exif) > _JPEG_MAX_EXIF:
        warnings.warn(f"{path}: its EXIF is {len(exif)} bytes, over the {_JPEG_MAX_EXIF} a JPEG holds: it is written "
                      "without it (save it as .png or .tif to keep it)", stacklevel=2)
        exif = None
    if fmt == "JPEG" and xmp and len(xmp) > _JPEG_MAX_XMP:
        warnings.warn(f"{path}: its XMP is {len(xmp)} bytes, over the {_JPEG_MAX_XMP} a JPEG holds: it is written "
                      "without it (save it as .png, .tif or .webp to keep it)", stacklevel=2)
        xmp = None
    params = {**_metadata_params(fmt, icc_profile, exif, dpi, xmp, text), **encoder}
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(e, path) from e
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                if tiff16:
                    _write_tiff16(f, rgb, alpha, icc_profile, dpi, exif_tags)
                elif img is None:
                    _write_png16(f, rgb, alpha, params)
                else:
                    img.save(f, format=fmt, **params)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise write_error(e, path) from e
        # mkstemp creates the file 0600; give it the mode a normal open() would have.
        publish_mode(tmp)
        _publish(tmp, path, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def output_format(path: str | os.PathLike[str], alpha: bool = False, size: tuple[int, int] | None = None,
                  *, gray: bool = False, bits: int = 8) -> str:
    """The Pillow format an output path's extension asks for, refused where it cannot hold the
    image (alpha in JPEG or BMP; a `size` = (width, height) past its limit, `_MAX_SIDE`, or, of
    `gray` or colour samples of `bits` as `save_image` writes them, past the 4 GiB that a BMP
    or a classic TIFF holds, `_file_bytes`): known before any work is done on the image. Only the formats
    of `IMAGE_EXTENSIONS`: Pillow's others change the result (GIF: 256 colours; ICO: at most
    256 px a side) or refuse it once it is made (XBM: 1 bit)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if path.suffix.lower() not in IMAGE_EXTENSIONS or fmt is None or fmt not in Image.SAVE:
        raise InputError(
            f"cannot write {path}: its extension is none of the formats results are written in; "
            f"use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    if alpha and fmt in _NO_ALPHA_FORMATS:
        raise InputError(f"{fmt} cannot store transparency; save {path.name} as .png or .webp")
    if size is not None and max(size) > _MAX_SIDE.get(fmt, max(size)):
        raise InputError(f"{path} would be {size[0]}x{size[1]} pixels, over the {_MAX_SIDE[fmt]} a side that "
                         f"{fmt} holds; save it as .png or .tif, or crop the input")
    if size is not None and (n := _file_bytes(fmt, size, alpha, gray, bits)) > _MAX_FILE_BYTES:
        bigtiff = (" or install tifffile (pip install tifffile), which writes it as BigTIFF,"
                   if fmt == "TIFF" and bits == 16 and not gray else "")
        raise InputError(f"{path} would be {size[0]}x{size[1]} pixels, {n / 2**30:.1f} GiB uncompressed, over the "
                         f"4 GiB a {fmt} file holds; save it as .png,{bigtiff} or crop the input")
    return fmt


def _writer(fmt: str, bits: int, gray: bool, alpha: bool) -> str:
    """Who writes an image of `bits` to `fmt`: "pillow8" or "pillow16" (16-bit gray, the one 16-bit
    layout Pillow has a mode for), `_write_png16` ("png16": 16-bit gray+alpha and colour) or
    `_write_tiff16` ("tiff16": 16-bit colour, with tifffile). 16 bits go to 8 where the format, or
    what is installed, has no 16-bit writer for the layout."""
    if bits != 16 or fmt not in _SIXTEEN_BIT_FORMATS:
        return "pillow8"
    if gray and not alpha:
        return "pillow16"
    if fmt == "PNG":
        return "png16"
    return "tiff16" if not gray and sixteen_bit.can_write_rgb16_tiff() else "pillow8"


def _file_bytes(fmt: str, size: tuple[int, int], alpha: bool, gray: bool, bits: int) -> int:
    """The pixel bytes of a BMP or a classic TIFF of `size` uncompressed: 0 for the other
    formats, and for the TIFFs tifffile writes (as BigTIFF past the limit)."""
    writer = _writer(fmt, bits, gray, alpha)
    if fmt not in ("BMP", "TIFF") or writer == "tiff16":
        return 0
    width, height = size
    row = width * ((1 if gray else 3) + alpha) * (2 if writer == "pillow16" else 1)
    return height * (-(-row // 4) * 4 if fmt == "BMP" else row)     # a BMP's rows are padded to 4 bytes


_NO_ALPHA_FORMATS = ("JPEG", "BMP")
# the most DPI a format's field holds: JPEG's JFIF density is 16 bits (Pillow writes it modulo
# 65536), PNG's and BMP's pixels a metre 32 bits (Pillow raises OverflowError); a microscope's
# TIFF (pixels a micron) x4 passes them
_MAX_DPI = {"JPEG": 65535.0, "PNG": (2**32 - 1) * 0.0254, "BMP": (2**32 - 1) * 0.0254}
# pixels a side the encoders write (libjpeg, libwebp); past them they fail once the work is done
_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}
# the EXIF bytes one JPEG APP1 segment holds (Pillow raises ValueError past them, after the work),
# and the XMP bytes (less its namespace)
_JPEG_MAX_EXIF = 65533
_JPEG_MAX_XMP = _JPEG_MAX_EXIF - len(b"http://ns.adobe.com/xap/1.0/\0")
# A BMP and a classic TIFF address their bytes in 32 bits (Pillow's writers raise struct.error past
# them, once the work is done); less room for the header, tags and strip tables. Pillow writes no
# BigTIFF past 4 GiB (its big_tiff option fails there too), tifffile does (`_write_tiff16`).
# 8-bit TIFFs are written uncompressed, as Pillow's own writer writes them: its compressed one
# (libtiff; Deflate with a predictor made a 6 MP photo result 37% of its size) cannot write the
# EXIF's Exif and GPS directories, a photo's camera settings and location. PNG is the small
# lossless output. 16-bit colour ones (tifffile, which writes neither directory) are compressed.
_MAX_FILE_BYTES = 2**32 - 2**25

# formats `quality` applies to; "lossless" is WebP's alone
QUALITY_FORMATS = ("JPEG", "WEBP")
# an SR result's detail is what it is for: Pillow's 75 visibly blurs and blocks it
DEFAULT_QUALITY = 95
# from here up JPEG keeps full-resolution colour (4:4:4): SR detail lives in the chroma too, and
# 4:2:0 halves it both ways; below, the file is meant small and 4:2:0 is what keeps it so
_FULL_CHROMA_FROM = 90


def quality_setting(value: object) -> int | str:
    """`value` (an int, its text, or "lossless") as `save_image`'s quality, refused in one line
    where it is none of 1 to 100 and "lossless"."""
    if isinstance(value, str) and value.strip().lower() == "lossless":
        return "lossless"
    try:
        q = int(str(value).strip()) if not isinstance(value, (bool, float)) else None
    except ValueError:
        q = None
    if q is None or not 1 <= q <= 100:
        raise InputError(f"quality must be an integer from 1 to 100, or 'lossless' (WebP), got {value!r}")
    return q


def check_quality(quality: int | str, formats: Iterable[str], outputs: str, what: str = "quality") -> None:
    """Refuse a quality (`what`: the name the caller gave it) that means nothing for every one of
    `formats`, those of `outputs` (named in the message): lossless formats, or "lossless" where
    one is JPEG, which has no lossless mode."""
    formats = set(formats)
    if not formats & set(QUALITY_FORMATS):
        raise InputError(f"{outputs} would be {'/'.join(sorted(formats))}, which is lossless: {what} applies to "
                         ".jpg and .webp outputs alone; leave it out")
    if quality == "lossless" and "JPEG" in formats:
        raise InputError(f"{outputs} would be JPEG, which has no lossless mode: write .png or .webp, or give "
                         f"{what} a number from 1 to 100")


def _encoder_params(fmt: str, quality: object, outputs: str) -> dict[str, object]:
    """Pillow's encoder keywords for `quality` (None: `DEFAULT_QUALITY`) in `fmt`."""
    if quality is None:
        if fmt not in QUALITY_FORMATS:
            return {}
        quality = DEFAULT_QUALITY
    q = quality_setting(quality)
    check_quality(q, [fmt], outputs)
    if isinstance(q, str):                # "lossless": every pixel kept, the colour of transparent ones too
        return {"lossless": True, "exact": True}
    if fmt == "JPEG":
        return {"quality": q, "subsampling": 0 if q >= _FULL_CHROMA_FROM else 2}
    return {"quality": q, "method": _WEBP_METHOD}


# libwebp's effort, 0 to 6 (Pillow's default for one image, named so that it stays): on 4 and 6 MP
# photo results at quality 95, 4 is 3% smaller than 0 and 0.5 dB closer in PSNR (at 80: 21% smaller)
# for 0.2 to 0.5 s more; 6 saves another 1.5% in twice the time of 4
_WEBP_METHOD = 4


# formats Pillow writes an ICC profile, EXIF and DPI to (WebP's DPI: in its EXIF alone)
_METADATA_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")


def _metadata_params(fmt: str, icc_profile: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None,
                     xmp: bytes | None = None, text: dict[str, str] | None = None) -> dict[str, object]:
    if fmt == "BMP":                      # its print size alone (else Pillow's 96 DPI is written)
        return {"dpi": dpi} if dpi else {}
    if fmt not in _METADATA_FORMATS:
        return {}
    tags = {_XMP: xmp} if xmp and fmt == "TIFF" else {}      # a TIFF's XMP is a tag of its directory
    params = {"icc_profile": icc_profile, "dpi": dpi,
              "exif": _with_resolution(exif, dpi, tags) if exif or tags or (dpi and fmt == "WEBP") else None,
              "xmp": xmp if fmt in ("JPEG", "WEBP") else None,
              "pnginfo": _png_info(text, xmp) if fmt == "PNG" else None}
    return {k: v for k, v in params.items() if v}


_XMP = 700


def _png_info(text: dict[str, str] | None, xmp: bytes | None) -> PngImagePlugin.PngInfo | None:
    """`text` (international text, iTXt, kept so with its language) and `xmp` as PNG text chunks."""
    if not text and not xmp:
        return None
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value, zip=len(value) > 1024)     # long text compressed, as zTXt or iTXt
    if xmp:
        info.add_itxt(_PNG_XMP, xmp.decode("utf-8", "replace"))
    return info


# A PNG's keywords that name the picture's author, rights and subject, and their EXIF tags (as
# exiftool maps them): a PNG upscaled to JPEG, WebP or TIFF keeps them there. Description before Title:
# both would be the one ImageDescription.
_PNG_TEXT_AS_EXIF = (("Author", 0x013B), ("Copyright", 0x8298), ("Description", 0x010E), ("Title", 0x010E))


def _exif_with_png_text(exif: bytes | None, text: dict[str, str]) -> bytes | None:
    """`exif` with a PNG's Author, Copyright and Description (or Title) where it has no such tag
    of its own: a format without PNG text chunks carries them there."""
    out = Image.Exif()
    if exif:
        out.load(exif)
    added = False
    for key, tag in _PNG_TEXT_AS_EXIF:
        if text.get(key) and not out.get(tag):
            out[tag], added = text[key], True
    return out.tobytes() if added else exif


def _with_resolution(exif: bytes | None, dpi: tuple[float, float] | None, tags: dict[int, bytes]) -> bytes:
    """The EXIF to write, its resolution the DPI written (a JPEG holds both, and must agree), with
    `tags` added to its first directory."""
    out = Image.Exif()
    if exif:
        out.load(exif)
    if dpi:
        out[_X_RESOLUTION], out[_Y_RESOLUTION], out[_RESOLUTION_UNIT] = dpi[0], dpi[1], 2
    out.update(tags)
    return out.tobytes()


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    # link() fails if the target appeared since our check, so no file is clobbered by a race.
    try:
        os.link(tmp, path)
    except FileExistsError as e:
        raise OutputExistsError(
            f"{path} already exists; pass --force (overwrite=True) to replace it"
        ) from e
    except OSError:
        # Filesystems without hard links (FAT, some network mounts): best effort.
        if path.exists():
            raise OutputExistsError(
                f"{path} already exists; pass --force (overwrite=True) to replace it"
            ) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _squeezed(rgb: np.ndarray) -> np.ndarray:
    """HxWx1 gray as HxW."""
    rgb = np.asarray(rgb)
    return rgb[..., 0] if rgb.ndim == 3 and rgb.shape[2] == 1 else rgb


def _checked(rgb: np.ndarray, alpha: np.ndarray | None, path: Path) -> np.ndarray:
    """`rgb` as HxW or HxWx3, refused where it, or its alpha, cannot be written."""
    rgb = _squeezed(rgb)
    if not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise InputError(f"image data for {path} must be HxWx3 or HxW, got shape {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"image data for {path} has no pixels (shape {rgb.shape})")
    if not np.isfinite(rgb).all():
        raise InputError(f"image data for {path} contains NaN or infinite values")
    if alpha is not None and np.shape(alpha) != rgb.shape[:2]:
        raise InputError(f"alpha shape {np.shape(alpha)} does not match image shape {rgb.shape[:2]}")
    return rgb


def _to_pil(rgb: np.ndarray, alpha: np.ndarray | None, sixteen: bool = False) -> Image.Image:
    if sixteen:                             # gray alone: the one 16-bit layout Pillow has a mode for
        return Image.fromarray(_to_uint16(rgb))
    planes = _to_uint8(rgb)
    if alpha is None:
        return Image.fromarray(planes)
    a8 = _to_uint8(np.asarray(alpha))
    if planes.ndim == 2:
        return Image.fromarray(np.stack([planes, a8], axis=2))
    return Image.fromarray(np.concatenate([planes, a8[..., None]], axis=2))


def _uint16_strips(rgb: np.ndarray, alpha: np.ndarray | None
                   ) -> tuple[tuple[int, int, int], Callable[[int, int], np.ndarray]]:
    """((height, width, samples a pixel), rows y0..y1 as uint16 samples, alpha last): what the
    16-bit writers take, converted a strip at a time so that no full-size copy is made."""
    planes = [rgb if rgb.ndim == 3 else rgb[..., None]] + ([] if alpha is None else [np.asarray(alpha)[..., None]])
    size = (rgb.shape[0], rgb.shape[1], sum(p.shape[2] for p in planes))
    return size, lambda y0, y1: np.concatenate([_to_uint16(p[y0:y1]) for p in planes], axis=2)


def _write_png16(f: BinaryIO, rgb: np.ndarray, alpha: np.ndarray | None, params: dict[str, object]) -> None:
    """A 16-bit gray+alpha, RGB or RGBA PNG (`png16.write`)."""
    png16.write(f, *_uint16_strips(rgb, alpha), _png_metadata_chunks(params))


def _write_tiff16(f: BinaryIO, rgb: np.ndarray, alpha: np.ndarray | None, icc_profile: bytes | None,
                  dpi: tuple[float, float] | None, exif: Image.Exif | None) -> None:
    """A 16-bit RGB or RGBA TIFF (`sixteen_bit.write_rgb16_tiff`), in strips of about
    `png16.STRIP_BYTES` as the PNGs are."""
    size, strip = _uint16_strips(rgb, alpha)
    rows = max(1, png16.STRIP_BYTES // (size[1] * 2 * size[2]))
    sixteen_bit.write_rgb16_tiff(f, size, strip, rows, icc_profile, dpi, exif)


def _tiff16_exif(exif: bytes | None, xmp: bytes | None, path: Path) -> Image.Exif | None:
    """`exif` for a 16-bit colour TIFF: tifffile writes its first directory's text tags alone, so
    a warning names what is left out (the Exif and GPS directories, the XMP)."""
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    lost = [("Exif or GPS directory", "camera settings and location")] \
        if tags.get_ifd(ExifTags.IFD.Exif) or tags.get_ifd(ExifTags.IFD.GPSInfo) else []
    lost += [("XMP", "XMP")] if xmp else []
    if lost:
        warnings.warn(f"{path}: a 16-bit TIFF is written by tifffile, which writes no {' or '.join(a for a, _ in lost)}, "
                      f"so it leaves out the input's {' and '.join(b for _, b in lost)}; save it as .png to keep them",
                      stacklevel=3)
    return tags if exif else None


def _png_metadata_chunks(params: dict[str, object]) -> bytes:
    """The chunks Pillow writes for `params` (ICC profile, EXIF, DPI: `_metadata_params`), taken
    from a 1x1 PNG of its own, so that metadata is written one way whatever the pixels."""
    if not params:
        return b""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG", **params)
    return b"".join(chunk for kind, chunk in png16.chunks(buf.getvalue()) if kind not in png16.PIXEL_CHUNKS)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(np.round(np.clip(x.astype(np.float32), 0.0, 1.0) * 255.0), np.uint8)


def _to_uint16(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint16:
        return np.ascontiguousarray(x)
    scaled = np.round(np.clip(x.astype(np.float64), 0.0, 1.0) * 65535.0)
    return np.ascontiguousarray(scaled, np.uint16)


# integer dtypes an in-memory image may use, and the value that means "full intensity"
_INT_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


# how far float pixels may stray outside [0, 1] and be clipped: the overshoot of a resampled
# image; anything beyond is a mistake (a 0..255 float image, most often) and is refused
_RANGE_SLACK = 1.0 / 255.0


def check_unit_range(x: np.ndarray) -> None:
    """Refuse a float image whose finite values lie outside [0, 1] beyond rounding slack."""
    finite = x[np.isfinite(x)]
    if finite.size and (finite.min() < -_RANGE_SLACK or finite.max() > 1.0 + _RANGE_SLACK):
        raise InputError(f"floating-point image with values from {finite.min():g} to {finite.max():g}, "
                         "outside [0, 1]; divide it by its full-scale value (255 for 8-bit data) first")


def as_float_image(image: object) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """An in-memory image -> (float32 HxW / HxWx1 / HxWx3 / HxWx4 in [0, 1], `back`), where
    `back(result)` turns a float result of the same layout into the caller's kind.

    numpy uint8 (/255) and uint16 (/65535) come back in their dtype (rounded, clipped); float
    arrays (in [0, 1]) come back in their float dtype; a PIL image comes back as a PIL image of
    its mode (L, RGB, RGBA, LA, I;16 in either byte order, I with 16-bit values, F), or of the mode
    `upscale` writes its file back in (`_plain_mode`: bilevel "1" as L, palette, CMYK and other
    modes as RGB or RGBA).
    """
    if isinstance(image, Image.Image):
        return _pil_as_float(image)
    _refuse_not_pixels(image)
    x = np.asarray(image)
    if x.dtype in _INT_FULL_SCALE:
        full = _INT_FULL_SCALE[x.dtype]
        dt = x.dtype

        def to_int(r: np.ndarray) -> np.ndarray:
            return np.round(np.clip(np.asarray(r, np.float32), 0.0, 1.0) * full).astype(dt)
        return x.astype(np.float32) / np.float32(full), to_int
    if np.issubdtype(x.dtype, np.floating):
        check_unit_range(x)
        fdt = x.dtype
        return x, lambda r: np.asarray(r).astype(fdt, copy=False)
    raise InputError(f"images must be uint8, uint16 or float in [0, 1] numpy arrays or PIL images, "
                     f"got dtype {x.dtype}; convert with .astype(np.uint8) or divide by the full-scale value")


def _refuse_not_pixels(image: object) -> None:
    """A path, or `load_image`'s (rgb, alpha) pair, where pixels are due: numpy made a string
    array of the one and raised about an "inhomogeneous shape" on the other."""
    if isinstance(image, (str, bytes, os.PathLike)):
        raise InputError(f"got the path {os.fsdecode(image)!r}, not an image; load it first: "
                         "load_image(path)[0] (every bit kept) or PIL.Image.open(path)")
    if isinstance(image, tuple) and len(image) == 2 and isinstance(image[0], np.ndarray) and image[0].ndim == 3 \
            and (image[1] is None or isinstance(image[1], np.ndarray)):
        raise InputError("got load_image's (rgb, alpha) pair, not an image; pass its rgb array, with "
                         "the alpha as a 4th channel where there is one: np.dstack([rgb, alpha])")


def _pil_as_float(img: Image.Image) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    if sixteen_bit.is_rgb16(img):          # a PIL image cannot hold the other 8 bits: say so, not lose them silently
        warnings.warn(f"this PIL image of a 16-bit colour {img.format} holds 8 bits a sample, so its result "
                      "does too; pass load_image(path)'s float array to keep 16", stacklevel=4)
    if img.mode in _PIL_SIXTEEN_BIT:
        return _pil_sixteen_as_float(img)
    plain = _plain_mode(img)
    # gray+alpha runs as RGBA (the engine takes gray, RGB or RGBA) and comes back as LA
    work = _converted(img, "RGBA" if plain == "LA" else plain)
    x, back = as_float_image(np.asarray(work))

    def to_pil(r: np.ndarray) -> Image.Image:
        out = Image.fromarray(np.asarray(back(r)))
        return _converted(out, plain)
    return x, to_pil


# 16-bit gray in other byte orders, and "I" holding 16-bit values (as `load_image` reads it):
# Pillow's convert("RGB") clips these at 255, a white image. The numpy type each comes back in.
_PIL_SIXTEEN_BIT = {"I;16B": ">u2", "I;16L": "<u2", "I": "=i4"}


def _pil_sixteen_as_float(img: Image.Image) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    raw = np.asarray(img)
    if raw.size and (raw.min() < 0 or raw.max() > 65535):
        raise InputError(f"32-bit integer image with values outside 0..65535 (mode {img.mode}); "
                         "convert it to 8- or 16-bit first")
    x, back = as_float_image(raw.astype(np.uint16))

    def to_pil(r: np.ndarray) -> Image.Image:
        out = np.asarray(back(r)).astype(_PIL_SIXTEEN_BIT[img.mode])
        return Image.frombytes(img.mode, (out.shape[1], out.shape[0]), out.tobytes())
    return x, to_pil


def list_images(folder: str | os.PathLike[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``folder`` (recursive, by extension, hidden files skipped), sorted.
    ``extensions``: `upscale` passes `READ_EXTENSIONS`."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; pass a folder of images")
    found = [p for p in _walk(root) if p.suffix.lower() in extensions]
    # Sort by path relative to root so the order does not depend on where the folder lives.
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def list_other_files(folder: str | os.PathLike[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """The files under ``folder`` that `list_images` leaves out (not hidden, another extension)."""
    return sorted(p for p in _walk(Path(folder)) if p.suffix.lower() not in extensions)


def result_path(path: Path) -> Path:
    """Where `upscale` writes the result of the input `path` when it names no output file: the
    same name, as .png where results are not written in its format (GIF: 256 colours)."""
    return path if path.suffix.lower() in IMAGE_EXTENSIONS else path.with_suffix(".png")


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden entries include our own in-progress temp files (".name.xxxx.tmp").
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def to_tensor(rgb_HWC: np.ndarray) -> torch.Tensor:
    """HxWx3 numpy -> 1x3xHxW float32 torch tensor (a copy)."""
    arr = np.asarray(rgb_HWC)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"expected an HxWx3 image array, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float32)).unsqueeze(0)


def from_tensor(x: torch.Tensor, clip: bool = True) -> np.ndarray:
    """1x3xHxW or 3xHxW torch tensor -> HxWx3 float32 numpy (clipped to [0,1] by default)."""
    t = x.detach()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise InputError(f"expected one image (batch 1), got batch {t.shape[0]}")
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise InputError(f"expected a 3xHxW or 1x3xHxW tensor, got shape {tuple(x.shape)}")
    arr = t.to(device="cpu", dtype=torch.float32).numpy().transpose(1, 2, 0)
    if clip:
        arr = np.clip(arr, 0.0, 1.0)
    return np.ascontiguousarray(arr, dtype=np.float32)
