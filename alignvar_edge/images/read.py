"""Reading an image file as float32 HxWx3 RGB in [0, 1] plus an optional alpha plane.

Loading is defensive because users point the tool at arbitrary folders: the size is checked from
the header before any pixel is decoded, EXIF orientation is applied (the pixels are turned upright,
and `metadata.file_metadata` drops the orientation from the EXIF written back), and every mode
Pillow can produce ends up as RGB. 16-bit files keep their 16 bits where Pillow holds only 8 of
them: gray+alpha and RGB(A) PNGs are decoded by Pillow's codec with other raw modes
(`sixteen_bit.py`), RGB(A) TIFFs by tifffile.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from alignvar_edge.argtypes import DEFAULT_MAX_MEGAPIXELS
from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError, damaged_image_error
from alignvar_edge.fsmodes import broken_link, special_kind
from alignvar_edge.images import sixteen_bit
from alignvar_edge.images.arrays import check_unit_range, fitting_bits, refuse_over_megapixels
from alignvar_edge.images.exif import exif_upright
from alignvar_edge.images.formats import (SIXTEEN_BIT_MODES, converted, holds_32_bit_integers, image_layout,
                                          integer_samples, plain_mode, stored_as_negative, unusable_cmyk_profile)
from alignvar_edge.images.metadata import Metadata, image_metadata


# how a user raises the limit, where the caller gives no other way (the API's keyword, the CLI's flag)
RAISE_LIMIT = "max_megapixels / --max-megapixels"


def load_image(
    path: str | os.PathLike[str], max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    raise_limit: str | None = RAISE_LIMIT,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image file as (rgb float32 HxWx3 in [0,1], alpha float32 HxW or None).

    ``max_megapixels=None`` lifts our size limit (Pillow's decompression-bomb guard still applies).
    ``raise_limit`` names how the caller's user raises it (None: they cannot, the refusal says so).
    16-bit files keep their full precision: grayscale, gray+alpha and RGB(A) PNGs, and RGB(A)
    TIFFs where tifffile is installed (refused without it: Pillow would read 8 of their bits).
    """
    path = Path(path)
    with _opened(path, raise_limit) as img:
        return _decode(path, img, max_megapixels, raise_limit)


def load_image_for_upscale(path: Path, max_megapixels: float | None, scale: int
                           ) -> tuple[np.ndarray, np.ndarray | None, tuple[bool, int], Metadata]:
    """`load_image`'s planes, the file's layout (`image_layout`) and what its result carries beside
    its pixels (`image_metadata`, `scale` times its size), from one opening of the file: its EXIF
    is read once, and a damaged one said once."""
    with _opened(path, RAISE_LIMIT) as img:
        layout = image_layout(img)          # from the header: decoding changes what it reads
        rgb, alpha = _decode(path, img, max_megapixels, RAISE_LIMIT)
        return rgb, alpha, layout, image_metadata(img, path, layout[0], scale)


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
    with warnings.catch_warnings(), f:
        # We enforce our own limit below; Pillow's warning would only duplicate it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(f)
        except Image.DecompressionBombError as e:
            # Pillow's own ceiling (twice its MAX_IMAGE_PIXELS), which our limit only lowers
            ceiling = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
            raising = f" ({raise_limit} cannot raise it)" if raise_limit else ""
            raise InputError(
                f"{path} is too large to open safely ({e}): Pillow opens at most {ceiling:.0f} MP{raising}; "
                "downscale it or split it into tiles"
            ) from e
        except Image.UnidentifiedImageError as e:
            if path.stat().st_size == 0:
                raise InputError(f"{path} is empty (0 bytes); re-export or remove it") from e
            if (layout := sixteen_bit.unreadable_tiff_layout(path)) is not None:
                raise InputError(f"{path} is a {layout}, which is not supported; save it as a 16-bit TIFF or PNG") from e
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
    # Image.open only parsed the header: size is known, pixels are not decoded yet (and must not
    # be: a PNG's getexif, and so `upright_size`, may decode them)
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputError(f"{path} has no pixels ({width}x{height}); it is empty or damaged")
    refuse_over_megapixels(str(path), width, height, max_megapixels, raise_limit)
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
        rgb, alpha = sixteen_bit.rgb16_planes(path, img) if sixteen_bit.is_rgb16(img) else _planes(path, img)
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    except _DAMAGED as e:
        raise damaged_image_error(path, e) from e
    if not np.isfinite(rgb).all():
        raise InputError(f"{path} contains NaN or infinite pixel values; fix the source image")
    if unusable_cmyk_profile(img):
        warnings.warn(f"{path}: its CMYK colour profile cannot be used, so its colours are converted to RGB by "
                      "a plain formula and may shift; export it as RGB from the editor that made it to keep them",
                      stacklevel=3)
    return rgb, alpha


def file_samples(x: np.ndarray, bits: int) -> np.ndarray:
    """`load_image`'s floats of a file of `bits`-bit samples as those samples, uint8 or uint16 (k / full
    scale in float32 rounds back to k), which `Engine.upscale` turns into a result of the same kind
    strip by strip; floats that are not such samples (a float TIFF's, a 16-bit negative's) as they are."""
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
    """Pillow's pixels, upright and as displayed, as float32 RGB and alpha (16-bit gray+alpha kept
    16-bit)."""
    la16 = sixteen_bit.read_la16_raw(img)
    negative, wide = stored_as_negative(img), holds_32_bit_integers(img)
    img.load()
    if wide:
        _refuse_wide_integers(np.asarray(img), integer_samples(img))
    img = exif_upright(img, path)
    if la16:
        gray, gray_alpha = sixteen_bit.la16_planes(img)
        return _gray_to_rgb(gray), gray_alpha
    rgb, alpha = _to_float_planes(img)
    return (np.float32(1.0) - rgb if negative else rgb), alpha


_MULTI_FRAME_FORMATS = ("GIF", "PNG", "WEBP", "TIFF")


def _refuse_wide_integers(samples: np.ndarray, kind: str) -> None:
    """A file of `kind` integer samples (Pillow's mode I), refused as an int32 array is
    (`fitting_bits`): read as 16-bit, 8-bit values came out near black."""
    bits = fitting_bits(samples)
    fix = (f"its values fit in {bits} bits: save it with {bits} bits a sample (PNG or TIFF)" if bits else
           f"its values span {int(samples.min())}..{int(samples.max())}: scale them to 0..65535 and save it "
           "as a 16-bit PNG or TIFF")
    raise InputError(f"{kind} integer samples, which have no full scale to divide by; {fix}")


def _to_float_planes(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> float32 RGB HxWx3 and optional alpha HxW, both in [0, 1]."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        # 16-bit grayscale (PNG/TIFF; mode I of a PNG, `holds_32_bit_integers` refused the others)
        gray = np.asarray(img).astype(np.float32)
        return _gray_to_rgb(gray / 65535.0), None
    if mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        # a file's user cannot divide its samples: they save it again in a form that is read as is
        check_unit_range(gray, "float samples are read as 0 (black) to 1 (white): save it as an 8- or 16-bit "
                               "PNG or TIFF (or as float scaled to [0, 1])")
        return _gray_to_rgb(np.clip(gray, 0.0, 1.0)), None
    # P, CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, HSV, RGBX, RGBa ...: RGB(A)
    target = plain_mode(img)
    arr = np.asarray(converted(img, target), dtype=np.float32) / 255.0
    if target == "L":
        return _gray_to_rgb(arr), None
    if target == "LA":
        return _gray_to_rgb(arr[..., 0]), np.ascontiguousarray(arr[..., 1])
    if target == "RGB":
        return np.ascontiguousarray(arr), None
    return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])


def _gray_to_rgb(gray_HW: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray_HW[..., None], 3, axis=2), dtype=np.float32)
