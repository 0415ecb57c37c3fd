"""The file formats and Pillow modes images are read and written in: which extensions, which
mode an image is upscaled in (gray stays gray, alpha stays alpha), and a file's layout from its
header alone (`file_layout`: what `upscale` writes back)."""
from __future__ import annotations

import io
import os
from typing import Any

from PIL import ExifTags, Image, TiffImagePlugin

from alignvar_edge.errors import InputError
from alignvar_edge.images import sixteen_bit
from alignvar_edge.images.exif import image_exif, open_image
from alignvar_edge.name_text import PathArg, path_text

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# what `upscale` reads: those, and GIF (one frame), whose result is written as PNG (`result_path`)
READ_EXTENSIONS = (*IMAGE_EXTENSIONS, ".gif")


# Pillow modes of 16-bit grayscale files ("I" is how some Pillow versions open 16-bit PNGs;
# `holds_32_bit_integers` tells other I images apart)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


# gray modes an image is upscaled in (`plain_mode`): `upscale` writes these back gray
_GRAY_MODES = ("L", "LA", "F", *SIXTEEN_BIT_MODES)


def plain_mode(img: Image.Image) -> str:
    """The mode an image is upscaled in and comes back as, a file (`upscale`) and a PIL image
    (`Engine.upscale`) alike: gray stays gray, alpha (or a transparent colour) stays alpha, any
    other mode becomes RGB(A). Bilevel "1" becomes 8-bit "L": the x4 result's edges are grays
    that one bit would throw away."""
    mode = img.mode
    if mode in (*SIXTEEN_BIT_MODES, "F"):          # one plane each: Pillow has no alpha beside them
        return mode
    alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info
    gray = mode in ("1", "L", "LA", "La")
    return ("LA" if gray else "RGBA") if alpha else ("L" if gray else "RGB")


def stored_as_negative(img: Image.Image) -> bool:
    """A MinIsWhite TIFF (0 is white) of 16-bit or float gray samples, which Pillow hands over as
    they are stored: the picture is their negative (Pillow inverts the 1- to 8-bit ones itself).
    Asked before the image is turned upright: a turned copy has no TIFF tags."""
    return (isinstance(img, TiffImagePlugin.TiffImageFile) and img.tag_v2.get(TiffImagePlugin.PHOTOMETRIC_INTERPRETATION) == 0
            and img.mode in (*SIXTEEN_BIT_MODES, "F"))


def holds_32_bit_integers(img: Image.Image) -> bool:
    """Mode I of anything but a PNG (an int32 TIFF, a signed 16-bit one, a PIL image converted to I):
    integers Pillow holds in 32 bits, with no full scale to divide by (`integer_samples` says which). A PNG holds 16 bits at most: some Pillow versions open a
    16-bit gray one as I. Asked before the image is turned upright: a turned copy has no format."""
    return img.mode == "I" and img.format != "PNG"


def integer_samples(img: Image.Image) -> str:
    """The file's integer samples in words ("16-bit signed", "32-bit"), from its TIFF tags where it
    has them: Pillow opens signed 16-bit samples as mode I, 32-bit, too."""
    tags = getattr(img, "tag_v2", {})
    bits, kind = tags.get(TiffImagePlugin.BITSPERSAMPLE, (32,)), tags.get(TiffImagePlugin.SAMPLEFORMAT, 1)
    bits = bits[0] if isinstance(bits, tuple) else bits
    kind = kind[0] if isinstance(kind, tuple) else kind
    return f"{bits}-bit signed" if kind == _SIGNED_INTEGERS else f"{bits}-bit"


_SIGNED_INTEGERS = 2        # TIFF SampleFormat


def unusable_cmyk_profile(img: Image.Image) -> bool:
    """A CMYK image with a CMYK colour profile of its own that Little CMS cannot read or convert
    from (damaged, or not a profile), so `converted` turns it to RGB by Pillow's plain formula: the
    caller warns that its colours may shift."""
    return _cmyk_icc(img) is not None and _cmyk_to_srgb(img) is None


def _cmyk_icc(img: Image.Image) -> bytes | None:
    icc = img.info.get("icc_profile")
    # bytes 16-19 of an ICC header: the colour space of the data it describes
    return icc if img.mode == "CMYK" and isinstance(icc, bytes) and icc[16:20] == b"CMYK" else None


def _cmyk_to_srgb(img: Image.Image) -> Any:
    """The transform from a CMYK image's own profile to sRGB (an ImageCms.ImageCmsTransform), as an
    editor converts (relative colorimetric with black point compensation, Photoshop's default): a
    print file's CMYK numbers mean the colours its profile gives them, which Pillow's plain formula
    does not know. sRGB is what an untagged result is taken to be. None without a usable profile."""
    icc = _cmyk_icc(img)
    if icc is None:
        return None
    try:
        # imported here: a Pillow built without Little CMS still reads every other image
        from PIL import ImageCms
    except ImportError:
        return None
    try:
        return ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                                       "CMYK", "RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                       flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
    except (OSError, ValueError, ImageCms.PyCMSError):   # "cannot open profile", "cannot build transform"
        return None


def open_quietly(path: str | os.PathLike[str], say: bool = False) -> Image.Image:
    """`Image.open` of the file `path` as `open_image` opens it: on the command line without Pillow's
    decompression-bomb warning ("could be decompression bomb DOS attack") for an input between its
    89 MP and the --max-megapixels the user raised, since `load_image` applies our own limit. A
    damaged EXIF it reads is said naming `path` where `say` (a look at the file, not a read of its
    picture, says nothing)."""
    return open_image(path, path, say)


def upright_size(img: Image.Image, path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an opened image once `load_image` has turned it upright by its EXIF
    orientation (a damaged EXIF is said where it is read, not here): the size its results have, divided by the scale (a PNG's EXIF may follow its
    pixels, which are then decoded). A TIFF's stored size is its tags' (recent Pillow versions
    report a TIFF's turned size already, and turn its pixels on load; other formats' size is the
    stored one)."""
    stored = img.size
    if isinstance(img, TiffImagePlugin.TiffImageFile):
        stored = (img.tag_v2.get(_TIFF_WIDTH, stored[0]), img.tag_v2.get(_TIFF_LENGTH, stored[1]))
    turned = image_exif(img, path, say=False).get(ExifTags.Base.Orientation, 1) in _TURNED     # a look, not a read
    return (stored[1], stored[0]) if turned else (stored[0], stored[1])


_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
# EXIF orientations that turn an image by a quarter: width and height trade places
_TURNED = (5, 6, 7, 8)


def file_layout(path: PathArg) -> tuple[bool, int]:
    """(gray, bits per sample) of an image file, from its header alone: what `upscale` writes back.
    Gray is the file's layout (an RGB file whose channels happen to be equal is RGB); bits are 16
    for a 16-bit file `load_image` keeps 16-bit (gray, gray+alpha, RGB, RGBA) and for a float
    gray one (a 32-bit float TIFF: 8 bits would throw away what it holds beyond them), else 8.
    `path` may be bytes (`path_text`)."""
    with open_quietly(path_text(path)) as img:
        return image_layout(img)


def image_layout(img: Image.Image) -> tuple[bool, int]:
    """`file_layout` of an open image."""
    if sixteen_bit.is_la16(img):
        return True, 16
    if sixteen_bit.is_rgb16(img):
        return False, 16
    return plain_mode(img) in _GRAY_MODES, 16 if img.mode in (*SIXTEEN_BIT_MODES, "F") else 8


def bits_per_sample(path: PathArg) -> int:
    """16 for a 16-bit file `load_image` keeps 16-bit, else 8 (`file_layout`)."""
    return file_layout(path)[1]


def converted(img: Image.Image, mode: str) -> Image.Image:
    """`img` in `mode`, refused in one line where Pillow has no conversion to it; a CMYK image with
    its own profile becomes RGB(A) through that profile."""
    if mode in ("RGB", "RGBA") and (to_srgb := _cmyk_to_srgb(img)) is not None:
        img = to_srgb.apply(img)
    try:
        return img if img.mode == mode else img.convert(mode)
    except ValueError as e:
        raise InputError(f"unsupported image mode {img.mode}; convert it to RGB first") from e
