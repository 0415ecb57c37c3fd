"""In-memory images: numpy arrays (uint8, uint16, float in [0, 1]) and PIL images as the float
planes engines take, and back in the caller's kind (`as_float_image`); torch tensors
(`to_tensor`, `from_tensor`)."""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

import numpy as np
from PIL import Image

from alignvar_edge.caller import on_command_line, option, warn_caller
from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError, damaged_image_error
from alignvar_edge.images import sixteen_bit
from alignvar_edge.images.exif import exif_turn
from alignvar_edge.images.formats import (converted, holds_32_bit_integers, integer_samples, plain_mode,
                                          stored_as_negative, unusable_cmyk_profile)
from alignvar_edge.lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:              # torch on first use: image I/O alone should not pay its import time
    torch = lazy_import("torch")

# integer dtypes an in-memory image may use, and the value that means "full intensity"
_INT_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


# how far float pixels may stray outside [0, 1] and be clipped: the overshoot of a resampled
# image; anything beyond is a mistake (a 0..255 float image, most often) and is refused
_RANGE_SLACK = 1.0 / 255.0


def check_unit_range(x: np.ndarray, fix: str = "divide it by its full-scale value (255 for 8-bit data) first",
                     what: str = "floating-point image") -> None:
    """Refuse a float image whose finite values lie outside [0, 1] beyond rounding slack; `fix` is
    what to do (an array's caller divides it; a file's user saves it again), `what` names the data."""
    finite = x[np.isfinite(x)]
    if finite.size and (finite.min() < -_RANGE_SLACK or finite.max() > 1.0 + _RANGE_SLACK):
        raise InputError(f"{what} with values from {finite.min():g} to {finite.max():g}, "
                         f"outside [0, 1]; {fix}")


def full_scale(dtype: np.dtype) -> float | None:
    """The sample value that means full intensity in an image array of `dtype`: 255 (uint8), 65535
    (uint16, either byte order) or 1.0 (floats); None for a dtype images may not use."""
    dt = np.dtype(dtype)
    native = dt.newbyteorder("=") if dt.kind == "u" else dt
    if native in _INT_FULL_SCALE:
        return _INT_FULL_SCALE[native]
    return 1.0 if dt.kind == "f" else None


def checked_full_scale(x: np.ndarray, takes: str, floats: str = "floating-point image") -> float:
    """`full_scale` of an image array, refused in one line where it has none (`takes`: which dtypes
    the caller takes, followed by the conversion that keeps the values) or where its floats (named
    `floats`) lie outside [0, 1]."""
    full = full_scale(x.dtype)
    if full is None:
        raise InputError(f"{takes}, got dtype {x.dtype}; {_conversion_for(x)}")
    if full == 1.0:
        check_unit_range(x, what=floats)
    return full


def checked_megapixels_limit(limit: object) -> float | None:
    """A size limit in megapixels (named `max_megapixels`, or its flag where a verb runs): a finite
    number > 0, or None for none; nan compared false and switched the limit off, a string failed at
    the first image."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not math.isfinite(limit) or limit <= 0:
        said = option("max_megapixels") if on_command_line() else "max_megapixels"
        raise InputError(f"{said} must be a number of megapixels > 0, or None for no limit; got {limit!r}")
    return float(limit)


def refuse_over_megapixels(name: str, width: int, height: int, max_megapixels: float | None,
                           raise_limit: str | None) -> None:
    """An image (`name`: its file, or "the image") of width x height pixels over `max_megapixels`
    (None: no limit), refused in one line before any of it is decoded or allocated; `raise_limit`
    names how the caller's user raises the limit (None: they cannot). The limit is checked here, where
    every reader applies it (`checked_megapixels_limit`)."""
    max_megapixels = checked_megapixels_limit(max_megapixels)
    megapixels = width * height / 1e6
    if max_megapixels is not None and megapixels > max_megapixels:
        shown = _shown_over(megapixels, max_megapixels)
        how = f", or raise the limit ({raise_limit})" if raise_limit else ""
        raise InputError(f"{name} is {width}x{height} ({shown} MP), over the {max_megapixels:g} MP "
                         f"limit; downscale or crop it{how}")


def _shown_over(megapixels: float, limit: float) -> str:
    """`megapixels` as a refusal shows it: one decimal, two significant digits below 1 MP (a 0.012
    MP image over a 0.01 MP limit is not "0.0 MP"), and more where those would not show it over
    `limit` (4899x4899 is "24.0002 MP", not "24.0 MP, over the 24 MP limit")."""
    shown = f"{megapixels:.1f}" if megapixels >= 1 else f"{megapixels:.2g}"
    digits = 3
    while float(shown) <= limit and digits < 17:
        shown, digits = f"{megapixels:.{digits}g}", digits + 1
    return shown


def as_float_image(image: object) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """An in-memory image -> (float32 HxW / HxWx1 (gray), HxWx2 (gray and alpha), HxWx3 (RGB) or
    HxWx4 (RGBA) in [0, 1], `back`), where `back(result)` turns a float result of the same layout
    into the caller's kind. The floats are a new native float32 array, never the caller's own
    (writing into them leaves the image as it was), checked as `upscale` checks an image: its
    layout (`colour_and_alpha`), finite values and range (`checked_full_scale`; floats within its
    rounding slack outside [0, 1] are clipped, as `upscale` clips them).

    numpy uint8 (/255) and uint16 (/65535, either byte order) come back in their dtype (rounded, clipped); float
    arrays (in [0, 1]) come back in their float dtype; a PIL image comes back as a PIL image of
    its mode (L, RGB, RGBA, LA, I;16 in either byte order, I of a 16-bit PNG, F), or of the mode
    `upscale` writes its file back in (`plain_mode`: bilevel "1" as L, palette, CMYK and other
    modes as RGB or RGBA). A MinIsWhite TIFF's 16-bit or float gray is taken as it is displayed
    (inverted), and its result is plain gray. `as_samples` is the same without whole-image floats.
    """
    s = as_samples(image)
    floats = np.array(s.to_float(s.samples), np.float32)     # a copy in any case: the caller's floats kept
    colour, alpha = colour_and_alpha(floats)
    refuse_non_finite(colour, "the image")
    if alpha is not None:
        refuse_non_finite(alpha, "the image's alpha channel")
    return np.clip(floats, 0.0, 1.0, out=floats), lambda r: s.finish(s.from_float(r))


@dataclass(frozen=True)
class Samples:
    """An in-memory image as its own samples and the conversions `as_float_image` makes of the
    whole of it, applied block by block instead (each is elementwise, so blocks give the same
    values): tiling reads tiles and writes the result in strips, and no image-sized float copy
    is made."""

    samples: np.ndarray                                # uint8, uint16 or float; HxW, HxWx1, x2, x3 or x4
    to_float: Callable[[np.ndarray], np.ndarray]       # a block of them -> floats in [0, 1]
    dtype: np.dtype                                    # the result's samples
    from_float: Callable[[np.ndarray], np.ndarray]     # a float result block -> samples of `dtype`
    finish: Callable[[np.ndarray], object]             # the whole result's samples -> the caller's kind
    # the colour under alpha 0 is not the image's (coverage: filled before the model, `fill_transparent`);
    # False where the alpha is data (a mask, a packed texture) and that colour is kept
    alpha_is_coverage: bool = True


def as_samples(image: object, max_megapixels: float | None = None, raise_limit: str | None = None,
               batch_said: set[str] | None = None) -> Samples:
    """`as_float_image`'s image as its `Samples` (the same refusals, the same results); one over
    `max_megapixels` is refused before its pixels are decoded or converted
    (`refuse_over_megapixels`). `batch_said`: one set for all the images of one batch
    (`upscale_many`), so that what is said of an image of it is said once for the batch."""
    if isinstance(image, Image.Image):
        refuse_over_megapixels("the image", image.width, image.height, max_megapixels, raise_limit)
        return _pil_samples(image, set() if batch_said is None else batch_said)
    _refuse_not_pixels(image)
    x = _as_array(image)
    if x.ndim >= 2:                         # other shapes are refused by the layout's check
        refuse_over_megapixels("the image", x.shape[1], x.shape[0], max_megapixels, raise_limit)
    # in any byte order (FITS, some TIFF readers, np.frombuffer of network data give big-endian);
    # the result comes back in the input's
    checked_full_scale(x, "images must be uint8, uint16 or float in [0, 1] numpy arrays or PIL images")
    return Samples(x, unit_floats, x.dtype, _from_float(x.dtype), lambda r: r)


def _as_array(image: object) -> np.ndarray:
    """np.asarray of an image that is no PIL image (a numpy array, a CPU torch tensor: any object
    with `__array__`), a failed conversion refused as one InputError that says what the object was:
    a tensor of a dtype numpy lacks (bfloat16), requiring grad, or on another device raised torch's
    own TypeError or RuntimeError, which cannot be named here without importing torch."""
    try:
        return np.asarray(image)
    except MemoryError:
        raise
    except Exception as e:
        cause = (str(e).splitlines() or [type(e).__name__])[0].rstrip(".")
        fix = ("pass x.detach().cpu(), with .float() for a dtype numpy lacks (bfloat16)" if hasattr(image, "detach")
               else "pass a numpy array or a PIL image")
        raise InputError(f"{_described(image)} cannot be read as a numpy array ({cause}); {fix}") from e


def _described(obj: object) -> str:
    """An object by its class and, where it has them, a tensor's dtype, device and grad."""
    kind = type(obj)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    facts = [f"{what} {getattr(obj, attr)}" for attr, what in (("dtype", "of dtype"), ("device", "on device"))
             if getattr(obj, attr, None) is not None]
    if getattr(obj, "requires_grad", False) is True:
        facts.append("requiring grad")
    return " ".join([f"a {name}", *facts])


def colour_and_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """An image's colour samples (HxW, HxWx1 or HxWx3) and its alpha's (HxW, None where it has none)
    for each layout an image may have: HxW or HxWx1 (gray), HxWx2 (gray and alpha), HxWx3 (RGB),
    HxWx4 (RGBA); any other is refused in one line."""
    x = np.asarray(image)
    channels = x.shape[2] if x.ndim == 3 else 1 if x.ndim == 2 else 0
    if channels not in (1, 2, 3, 4):
        raise InputError(f"expected an image HxW, HxWx1, HxWx2 (gray and alpha), HxWx3 or HxWx4, got shape "
                         f"{x.shape}{_layout_fix(x)}")
    return (x, None) if channels in (1, 3) else (x[..., :-1], x[..., -1])


def _layout_fix(x: np.ndarray) -> str:
    """The fix for a tensor's layout: channels first (CHW), one image in a batch (1xCxHxW,
    1xHxWxC), a stack of images (NxHxWxC), else ''. Named through np.asarray: a torch tensor's
    transpose takes two dimensions."""
    batched = x.ndim == 4 and x.shape[0] == 1
    one = x[0] if batched else x
    if one.ndim == 3 and one.shape[0] in (1, 2, 3, 4) and one.shape[2] > 4:
        where = "one image in a batch, its channels first" if batched else "its channels come first"
        return f"; {where}: pass np.asarray(x){'[0]' if batched else ''}.transpose(1, 2, 0) (HxWx{one.shape[0]})"
    if batched and one.ndim == 3 and one.shape[2] in (1, 2, 3, 4):
        return "; one image in a batch: pass x[0]"
    if x.ndim == 4 and x.shape[3] in (1, 2, 3, 4):
        return f"; a stack of {x.shape[0]} images: pass it itself to upscale_many, which takes each in turn"
    return ""


def refuse_non_finite(x: np.ndarray, what: str) -> None:
    """Refuse NaN or Inf samples of an image (`what`: the image, or its alpha channel)."""
    if not np.isfinite(x).all():
        raise InputError(f"{what} contains NaN or Inf values")


def unit_floats(x: np.ndarray) -> np.ndarray:
    """Samples (uint8, uint16 in either byte order, or floats) as floats in [0, 1]: integers as
    float32 k / full scale, computed in float32 (what a file's reader and tiling's blocks give, bit
    for bit); floats as they are (tiling takes any float dtype)."""
    x = np.asarray(x)
    full = full_scale(x.dtype)
    if full is None or full == 1.0:
        return x
    floats = x.astype(np.float32)
    floats /= np.float32(full)              # in place: one float copy, not two
    return floats


def _from_float(dt: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    if dt.kind == "f":
        return lambda r: np.asarray(r).astype(dt, copy=False)
    return lambda r: rescaled(np.asarray(r), dt)


def rescaled(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Samples (uint8, uint16 or floats in [0, 1]) as `dtype`'s integers (uint8, or uint16 in either
    byte order), full scale to full scale (uint8 255 is uint16 65535): computed in float32 for 8 bits,
    in float64 for 16 (float32 rounds x * 65535 to the other side of a half in 0.1% of samples). An
    integer result and `save_image` of a float one are the same samples."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return np.ascontiguousarray(x)
    work = np.float32 if dtype.itemsize == 1 else np.float64
    full = full_scale(x.dtype) or 1.0
    # one working copy (called per strip of every integer result), never the caller's array
    scaled = x / work(full) if full != 1.0 else x.astype(work)
    scaled = np.clip(scaled, 0.0, 1.0, out=scaled)
    scaled *= work(np.iinfo(dtype).max)
    return np.ascontiguousarray(np.round(scaled, out=scaled), dtype)


def fitting_bits(x: np.ndarray) -> int | None:
    """8 or 16 where every value of a non-empty integer image fits unsigned integers of those bits
    (the conversion that keeps them; a blanket .astype(np.uint8) wraps a 16-bit image's values
    around), else None. Integers of other widths (int32 arrays, PIL mode I, int32 TIFFs) have no
    full scale to divide by: they are refused, with this conversion."""
    lo, hi = int(x.min()), int(x.max())
    return None if lo < 0 or hi > 65535 else 8 if hi <= 255 else 16


def _conversion_for(x: np.ndarray) -> str:
    """The conversion that keeps every value of an array of another dtype (`fitting_bits`), in a
    form that takes whatever was passed (a list has no .astype), an image or its alpha."""
    if np.issubdtype(x.dtype, np.integer) and x.size:
        if bits := fitting_bits(x):
            return f"its values fit in {bits} bits: convert with np.asarray(x, np.uint{bits})"
        return (f"its values span {int(x.min())}..{int(x.max())}: scale them to floats in [0, 1] "
                "(subtract the black level, divide by the full-scale value)")
    return "convert it to uint8 or uint16, or to floats in [0, 1] divided by its full-scale value"


# the most characters of a path a refusal quotes: a service's upload taken for one was megabytes
_PATH_SHOWN = 200


def _refuse_not_pixels(image: object) -> None:
    """A path, an encoded file's bytes or the open file, or `load_image`'s (rgb, alpha) pair, where
    pixels are due: numpy made a string array of the first, a 1-D array of the bytes (of a bytearray
    or memoryview), a 0-d object array of the file and raised about an "inhomogeneous shape" on the
    last."""
    if image is None:
        raise InputError("got None, not an image; pass a numpy array or a PIL image")
    if _is_bytes(image):
        raise InputError(f"got {memoryview(image).nbytes} bytes, not an image; decode them first: "
                         "PIL.Image.open(io.BytesIO(data))")
    if callable(getattr(image, "read", None)):      # numpy made a 0-d object array of it
        raise InputError(f"got a file object ({type(image).__name__}), not an image; decode it first: "
                         "PIL.Image.open(f)")
    if isinstance(image, (str, os.PathLike)):
        path = os.fsdecode(image)
        shown = repr(path) if len(path) <= _PATH_SHOWN else f"{path[:_PATH_SHOWN]!r}... ({len(path)} characters)"
        raise InputError(f"got the path {shown}, not an image; load it first: "
                         "load_image(path)[0] (every bit kept) or PIL.Image.open(path)")
    if _is_load_image_pair(image):
        raise InputError("got load_image's (rgb, alpha) pair, not an image; pass its rgb array, with "
                         "the alpha as a 4th channel where there is one: np.dstack([rgb, alpha])")


def _is_bytes(image: object) -> TypeGuard[bytes | bytearray | memoryview]:
    """bytes, a bytearray, or a memoryview of bytes (an HTTP body, a file's contents); not a
    memoryview of an array's pixels, which numpy reads with its shape and type."""
    if isinstance(image, memoryview):
        return image.ndim <= 1 and image.format in ("B", "b", "c")
    return isinstance(image, (bytes, bytearray))


def _is_load_image_pair(image: object) -> bool:
    return isinstance(image, tuple) and len(image) == 2 and isinstance(image[0], np.ndarray) \
        and image[0].ndim == 3 and (image[1] is None or isinstance(image[1], np.ndarray))


def refuse_one_image(images: object, where: str) -> None:
    """One image (an array, a PIL image, a path or `load_image`'s pair) where an iterable of images
    is due (`where`, e.g. "upscale_many"): iterating it would run each row, or each character of a
    path, as an image of its own. An array of four dimensions, numpy's or another's (a torch
    tensor), is a stack of images (N x H x W x C: video frames, a memmap of them), iterated along
    its first axis; one of fewer is one image, whichever library made it."""
    one_array = _is_array(images) and getattr(images, "ndim") < 4
    if one_array or isinstance(images, (Image.Image, str, bytes, os.PathLike)) or _is_load_image_pair(images):
        kind = type(images).__name__ if not isinstance(images, tuple) else "load_image's (rgb, alpha) pair"
        raise InputError(f"{where} takes an iterable of images, got one image ({kind}); pass a list, "
                         f"{where}([image]), or call upscale(image)")


def _is_array(obj: object) -> bool:
    """A numpy array, or an object numpy converts as one (`__array__`) that has its dimensions."""
    return (isinstance(obj, np.ndarray) or hasattr(type(obj), "__array__")) and \
        isinstance(getattr(obj, "ndim", None), int)


def _decode(img: Image.Image) -> None:
    """Pillow decodes an opened file's pixels on first use, so here: a truncated upload or a file
    closed before its pixels were read is one InputError (Pillow raised OSError, or a bare
    AssertionError for the closed file)."""
    name = getattr(img, "filename", "") or "the PIL image"
    if getattr(img, "tile", None) and getattr(img, "fp", True) is None:
        raise InputError(f"{name}: its file was closed before its pixels were read; call .load() on the "
                         "image inside its `with Image.open(...)` block, or pass it before the block ends")
    try:
        img.load()
    except IMAGE_DECODE_ERRORS as e:
        raise damaged_image_error(name, e) from e


def _pil_samples(img: Image.Image, batch_said: set[str]) -> Samples:
    # a PIL image cannot hold the other 8 bits: say so, not lose them silently (one line for a batch
    # of PNGs and TIFFs alike)
    if sixteen_bit.is_rgb16(img) or sixteen_bit.is_la16(img):
        _say_once_a_batch(batch_said, "16-bit", "a PIL image of a 16-bit colour or gray+alpha file holds 8 bits a "
                          "sample, as Pillow reads it, so its result does too; pass load_image(path)'s float array "
                          "to keep 16")
    if unusable_cmyk_profile(img):
        _say_once_a_batch(batch_said, "cmyk", "this CMYK PIL image's colour profile cannot be used, so it is "
                          "converted to RGB by a plain formula and its colours may shift; pass it converted to "
                          "RGB by the editor that made it to keep them")
    negative = stored_as_negative(img)     # a MinIsWhite TIFF's 16-bit or float samples: shown inverted
    _decode(img)                           # after is_rgb16 and is_la16, which read the undecoded tile
    _say_turn_not_applied(img, batch_said)
    s = _pil_sixteen_samples(img) if img.mode in _PIL_SIXTEEN_BIT else _pil_plain_samples(img)
    if not negative:
        return s
    return Samples(np.float32(1.0) - s.to_float(s.samples), np.asarray, s.dtype, s.from_float, s.finish)


def _say_turn_not_applied(img: Image.Image, batch_said: set[str]) -> None:
    """A PIL image whose EXIF says to turn it (a phone photo straight from `Image.open`) is taken
    as held, as documented: its result came back sideways without a word. Said once a batch,
    whatever orientations its images have."""
    turn = exif_turn(img, getattr(img, "filename", "") or "the PIL image")    # a damaged EXIF said for each
    if turn is not None:
        _say_once_a_batch(batch_said, "turn", f"this PIL image has EXIF orientation {turn}, which viewers apply and "
                          "upscale does not: its result is the pixels as held, not as shown; pass "
                          "PIL.ImageOps.exif_transpose(image), or alignvar_edge.images.load_image(path)'s array, "
                          "to have it upright")


def _say_once_a_batch(batch_said: set[str], what: str, line: str) -> None:
    """`line` said for the first image of a batch it concerns (`as_samples`): the advice is the same
    for each, so a folder of 500 photos gets one line whatever the filters ("always" too) and
    whatever its images' orientations (each a text of its own to warnings' once per text)."""
    if what not in batch_said:
        batch_said.add(what)
        warn_caller(line)


def _pil_plain_samples(img: Image.Image) -> Samples:
    plain = plain_mode(img)
    # premultiplied La converts to LA alone in Pillow (RGBa converts to RGBA itself), so it goes
    # through LA first; gray+alpha runs as an array's HxWx2 does (gray the mean of the result's RGB)
    work = converted(img.convert("LA") if img.mode == "La" else img, plain)
    s = as_samples(np.asarray(work))

    def to_pil(r: np.ndarray) -> Image.Image:
        return converted(Image.fromarray(r), plain)
    return Samples(s.samples, s.to_float, s.dtype, s.from_float, to_pil)


# 16-bit gray in other byte orders, and "I" of a 16-bit PNG (as some Pillow versions open it):
# Pillow's convert("RGB") clips these at 255, a white image. The numpy type each comes back in.
_PIL_SIXTEEN_BIT = {"I;16B": ">u2", "I;16L": "<u2", "I;16N": "=u2", "I": "=i4"}


def _pil_sixteen_samples(img: Image.Image) -> Samples:
    raw = np.asarray(img)
    if holds_32_bit_integers(img):         # as an int32 array is
        raise InputError(f"this PIL image of mode I holds {integer_samples(img)} integers, which have no full "
                         f"scale to divide by; pass np.asarray(image) converted: {_conversion_for(raw)}")
    s = as_samples(raw.astype(np.uint16))

    def to_pil(r: np.ndarray) -> Image.Image:
        out = r.astype(_PIL_SIXTEEN_BIT[img.mode])
        return Image.frombytes(img.mode, (out.shape[1], out.shape[0]), out.tobytes())
    return Samples(s.samples, s.to_float, s.dtype, s.from_float, to_pil)


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
