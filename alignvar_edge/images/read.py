"""Reading an image file as float32 HxWx3 RGB in [0, 1] plus an optional alpha plane (`load_image`),
or as the file's own 8- or 16-bit samples (`load_image_for_upscale`), decoded without an image-sized
float copy.

Loading is defensive because users point the tool at arbitrary folders: the size is checked from
the header before any pixel is decoded, EXIF orientation is applied (the pixels are turned upright,
and `metadata.file_metadata` drops the orientation from the EXIF written back), and every mode
Pillow can produce ends up as RGB. 16-bit files keep their 16 bits where Pillow holds only 8 of
them: gray+alpha and RGB(A) PNGs are decoded by Pillow's codec with other raw modes
(`sixteen_bit.py`), RGB(A) TIFFs by tifffile.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from alignvar_edge.argtypes import DEFAULT_MAX_MEGAPIXELS
from alignvar_edge.caller import option, warn_caller
from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError, damaged_image_error
from alignvar_edge.fsmodes import broken_link, special_kind
from alignvar_edge.images import sixteen_bit
from alignvar_edge.images.arrays import check_unit_range, fitting_bits, full_scale, refuse_over_megapixels, unit_floats
from alignvar_edge.images.exif import exif_upright, open_image
from alignvar_edge.images.formats import (SIXTEEN_BIT_MODES, converted, holds_32_bit_integers, image_layout,
                                          integer_samples, plain_mode, stored_as_negative, unusable_cmyk_profile)
from alignvar_edge.images.metadata import Metadata, image_metadata
from alignvar_edge.name_text import PathArg, path_text


# `raise_limit`'s default: the caller's own option, named when a refusal is made (`_how_to_raise`)
RAISE_LIMIT = "<the caller's max_megapixels option>"


def load_image(
    path: PathArg, max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    raise_limit: str | None = RAISE_LIMIT,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image file as (rgb float32 HxWx3 in [0,1], alpha float32 HxW or None).

    ``max_megapixels=None`` lifts our size limit (Pillow's decompression-bomb guard still applies:
    its warning past 89 MP goes through the caller's warning filters, an "error" filter refuses).
    ``raise_limit`` names how the caller's user raises it (None: they cannot, the refusal says so).
    16-bit files keep their full precision: grayscale, gray+alpha and RGB(A) PNGs, and RGB(A)
    TIFFs where tifffile is installed (refused without it: Pillow would read 8 of their bits).
    ``path`` may be bytes, as os.listdir(b'...') gives a name in another encoding (`path_text`).
    """
    path = Path(path_text(path))
    with _opened(path, raise_limit) as img:
        planes, alpha = _decode(path, img, max_megapixels, raise_limit)
    rgb = unit_floats(planes)
    return (_gray_to_rgb(rgb) if rgb.ndim == 2 else rgb), _alpha_floats(alpha)


def load_image_for_upscale(path: Path, max_megapixels: float | None, scale: int, stripped_for: str | None = None,
                           made_by: str = "") -> tuple[np.ndarray, np.ndarray | None, tuple[bool, int], Metadata]:
    """The file's own samples (HxW gray or HxWx3 RGB: uint8 or uint16, floats for a float or
    negative file; `unit_floats` gives `load_image`'s floats of them), its alpha as `load_image`
    gives it, its layout (`image_layout`) and what its result carries beside its pixels
    (`image_metadata`, `scale` times its size; `stripped_for` and `made_by` as there), from one
    opening of the file: its EXIF is read once, and a damaged one said once. No image-sized float
    copy is made (a float32 one is 4x the 8-bit samples)."""
    with _opened(path, RAISE_LIMIT) as img:
        layout = image_layout(img)          # from the header: decoding changes what it reads
        planes, alpha = _decode(path, img, max_megapixels, RAISE_LIMIT)
        meta = image_metadata(img, path, layout[0], scale, stripped_for, made_by)
        return planes, _alpha_floats(alpha), layout, meta


def _alpha_floats(alpha: np.ndarray | None) -> np.ndarray | None:
    return None if alpha is None else unit_floats(alpha)


def _how_to_raise(raise_limit: str | None) -> str | None:
    """How the user raises the size limit: `raise_limit`, or the caller's own option for
    `RAISE_LIMIT` (`--max-megapixels` where a verb runs, `max_megapixels=` in Python)."""
    return option("max_megapixels") if raise_limit == RAISE_LIMIT else raise_limit


@contextmanager
def _opened(path: Path, raise_limit: str | None) -> Iterator[Image.Image]:
    """The image file `path` opened by Pillow (its header read, no pixels decoded), or refused in
    one line naming it and the fix."""
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file; pass an image file path")
    if (broken := broken_link(path)) is not None:
        raise InputError(f"{broken}; fix or remove the link")
    if (kind := special_kind(path)) is not None:
        raise InputError(f"{path} is {kind}, not an image file; pass a regular file")
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    # Opened as a file, not by name: Pillow maps a named, uncompressed gray TIFF into memory at its
    # turned size where it has orientation 5 to 8, which scrambles its pixels (Pillow 13).
    try:
        f = open(path, "rb")
    except OSError as e:                  # unreadable (permissions): Pillow would have raised the same
        raise InputError(f"{path} cannot be opened as an image ({e}); check that it can be read") from e
    with f:
        try:
            img = open_image(f, path)
        except Image.DecompressionBombError as e:
            # Pillow's own ceiling (twice its MAX_IMAGE_PIXELS), which our limit only lowers
            ceiling = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
            raising = f" ({how} cannot raise it)" if (how := _how_to_raise(raise_limit)) else ""
            raise InputError(
                f"{path} is too large to open safely ({e}): Pillow opens at most {ceiling:.0f} MP{raising}; "
                "downscale it or split it into tiles"
            ) from e
        except Image.UnidentifiedImageError as e:
            if path.stat().st_size == 0:
                raise InputError(f"{path} is empty (0 bytes); re-export or remove it") from e
            if (layout := sixteen_bit.unreadable_tiff_layout(path)) is not None:
                raise InputError(f"{path} is a {layout}, which is not supported; save it as a PNG (8 or 16 bits: "
                                 "gray, gray+alpha, RGB or RGBA) or a TIFF of 16-bit gray, RGB or RGBA") from e
            raise InputError(
                f"{path} is not an image Pillow can read, or its header is damaged "
                "(zero size, unknown format); convert it to PNG or JPEG"
            ) from e
        except IMAGE_DECODE_ERRORS as e:
            raise InputError(f"{path} cannot be opened as an image ({e}); re-export the file") from e
        with img:
            yield img


def _decode(
    path: Path, img: Image.Image, max_megapixels: float | None, raise_limit: str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The file's samples and alpha, as `_planes` gives them, or refused in one line naming it."""
    # Image.open only parsed the header: size is known, pixels are not decoded yet (and must not
    # be: a PNG's getexif, and so `upright_size`, may decode them)
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputError(f"{path} has no pixels ({width}x{height}); it is empty or damaged")
    refuse_over_megapixels(str(path), width, height, max_megapixels, _how_to_raise(raise_limit))
    try:                # counting frames reads every directory of a TIFF
        frames = int(getattr(img, "n_frames", 1) or 1)
    except _DAMAGED as e:
        raise damaged_image_error(path, e) from e
    # animations and multi-page files; not a camera JPEG's MPF extras (MPO: the first frame is the photo)
    if frames > 1 and img.format in _MULTI_FRAME_FORMATS:
        # only the first would be read, silently: refuse rather than lose the others
        raise InputError(f"{path} holds {frames} frames (an animation or a multi-page file); save the "
                         "frame you want as a PNG and pass that")
    try:
        planes, alpha = sixteen_bit.rgb16_planes(path, img) if sixteen_bit.is_rgb16(img) else _planes(path, img)
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    except _DAMAGED as e:
        raise damaged_image_error(path, e) from e
    if planes.dtype.kind == "f" and not np.isfinite(planes).all():
        raise InputError(f"{path} contains NaN or infinite pixel values; fix the source image")
    if unusable_cmyk_profile(img):
        warn_caller(f"{path}: its CMYK colour profile cannot be used, so its colours are converted to RGB by "
                    "a plain formula and may shift; export it as RGB from the editor that made it to keep them")
    return planes, alpha


def file_samples(x: np.ndarray, bits: int) -> np.ndarray:
    """`load_image_for_upscale`'s planes of a file of `bits`-bit samples as those samples, uint8 or
    uint16, which `Engine.upscale` turns into a result of the same kind strip by strip: integers as
    they are, floats that are k / full scale in float32 as k; other floats (a float TIFF's) as they are."""
    if x.dtype.kind != "f":
        return x
    dtype = np.dtype(np.uint8 if bits == 8 else np.uint16)
    full = np.float32(np.iinfo(dtype).max)
    samples = x * full
    np.rint(samples, out=samples)
    # the engine converts them back with the same division: exactly the floats it was given before
    # (checked a few rows at a time: no second image-sized float copy)
    rows = _CHECKED_ROWS
    if not all(np.array_equal(samples[y:y + rows] / full, x[y:y + rows]) for y in range(0, len(x), rows)):
        return x
    return samples.astype(dtype)


_CHECKED_ROWS = 64      # rows of `file_samples`' round-trip check at once


# what decoding damaged data raises: Pillow's TIFF reader adds TypeError (a directory without a size)
_DAMAGED = (*IMAGE_DECODE_ERRORS, TypeError)


def _planes(path: Path, img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow's pixels, upright and as displayed, as the file's samples: HxW gray or HxWx3 RGB, and
    alpha HxW (`_samples`; 16-bit gray+alpha kept 16-bit); a negative's turned positive."""
    la16 = sixteen_bit.read_la16_raw(img)
    negative, wide = stored_as_negative(img), holds_32_bit_integers(img)
    img.load()
    if wide:
        _refuse_wide_integers(np.asarray(img), integer_samples(img))
    img = exif_upright(img, path)
    if la16:
        return sixteen_bit.la16_planes(img)
    planes, alpha = _samples(img)
    if negative:            # in the samples' own kind: a 16-bit negative stays 16-bit, no float copy
        planes = planes.dtype.type(full_scale(planes.dtype)) - planes
    return planes, alpha


_MULTI_FRAME_FORMATS = ("GIF", "PNG", "WEBP", "TIFF")


def _refuse_wide_integers(samples: np.ndarray, kind: str) -> None:
    """A file of `kind` integer samples (Pillow's mode I), refused as an int32 array is
    (`fitting_bits`): read as 16-bit, 8-bit values came out near black."""
    bits = fitting_bits(samples)
    fix = (f"its values fit in {bits} bits: save it with {bits} bits a sample (PNG or TIFF)" if bits else
           f"its values span {int(samples.min())}..{int(samples.max())}: scale them to 0..65535 and save it "
           "as a 16-bit PNG or TIFF")
    raise InputError(f"{kind} integer samples, which have no full scale to divide by; {fix}")


def _samples(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> HxW gray or HxWx3 RGB and optional alpha HxW: uint8, uint16 (16-bit gray)
    or float32 in [0, 1] (float gray)."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        # 16-bit grayscale (PNG/TIFF; mode I of a PNG, `holds_32_bit_integers` refused the others),
        # in native byte order: the result comes back in the samples' dtype
        return np.asarray(img).astype(np.uint16), None
    if mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        # a file's user cannot divide its samples: they save it again in a form that is read as is
        check_unit_range(gray, "float samples are read as 0 (black) to 1 (white): save it as an 8- or 16-bit "
                               "PNG or TIFF (or as float scaled to [0, 1])")
        return np.clip(gray, 0.0, 1.0), None
    # P, CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, HSV, RGBX, RGBa ...: RGB(A)
    target = plain_mode(img)
    arr = _pixels(converted(img, target))
    if target in ("L", "RGB"):
        return arr, None
    if target == "LA":
        return np.ascontiguousarray(arr[..., 0]), np.ascontiguousarray(arr[..., 1])
    return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])


def _pixels(img: Image.Image) -> np.ndarray:
    """`np.asarray(img)`, copied a few rows at a time: Pillow hands numpy the whole image's bytes,
    joined from a list of its chunks (twice the samples at once, beside the Pillow image)."""
    def rows(y: int) -> np.ndarray:
        return np.asarray(img.crop((0, y, img.width, min(y + _PIXEL_ROWS, img.height))))
    first = rows(0)
    out = np.empty((img.height, *first.shape[1:]), first.dtype)
    out[:_PIXEL_ROWS] = first
    for y in range(_PIXEL_ROWS, img.height, _PIXEL_ROWS):
        out[y:y + _PIXEL_ROWS] = rows(y)
    return out


_PIXEL_ROWS = 256       # rows of `_pixels`' copies


def _gray_to_rgb(gray_HW: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray_HW[..., None], 3, axis=2), dtype=np.float32)
