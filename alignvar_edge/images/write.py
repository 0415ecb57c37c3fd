"""Writing float RGB (or gray) in [0, 1], with an optional alpha plane, to an image file:
atomically, never over an existing file unless told, and never over its own input. The format
follows the extension (`output_format`, which refuses what it cannot hold before any work is done);
16 bits stay 16 where the output format holds them (gray: PNG, TIFF; gray+alpha: PNG; RGB(A): PNG,
and TIFF where tifffile is installed; written by `_write_png16` and `_write_tiff16`). JPEG and WebP
are written at `DEFAULT_QUALITY` unless told (`quality_setting`, `check_quality`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from alignvar_edge import safe_stop
from alignvar_edge.caller import option, python_call, warn_caller
from alignvar_edge.errors import InputError, OutputExistsError
from alignvar_edge.fsmodes import publish_mode, same_file, temp_file_beside, write_error
from alignvar_edge.images import png16, sixteen_bit
from alignvar_edge.images.arrays import checked_full_scale, colour_and_alpha, full_scale, rescaled
from alignvar_edge.images.formats import IMAGE_EXTENSIONS
from alignvar_edge.images.metadata import (METADATA_FORMATS, exif_with_png_text, fit_to_format, keep_undefined_types,
                                           metadata_params, png_metadata_chunks, tiff16_exif)
from alignvar_edge.name_text import PathArg, path_text, shell_word

# formats Pillow writes 16-bit grayscale to; 16-bit gray+alpha and RGB(A) go to PNG alone (`_write_png16`)
_SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")


@python_call(force="overwrite")
def save_image(
    path: PathArg,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    overwrite: bool = False,
    input_path: PathArg | None = None,
    quality: int | str | None = None,
    bits: int | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    xmp: bytes | None = None,
    text: dict[str, str] | None = None,
    png_colour: dict[str, bytes] | None = None,
) -> Path:
    """Write RGB HxWx3 (or gray HxW, and an HxW `alpha`), atomically; returns the path. RGBA HxWx4
    and gray+alpha HxWx2, as `Engine.upscale` returns them, are written as with their last channel
    given as `alpha`.

    Samples are uint8, uint16 or floats in [0, 1], as `Engine.upscale` returns them (each scaled
    from its own full scale: 255, 65535 or 1); any other dtype, or floats outside [0, 1], is one
    InputError naming the conversion.
    The format follows the extension. ``bits`` (8 or 16; default 16 for uint16 samples, 8 for
    uint8 and floats) writes 16 bits a sample where the format holds them: gray to PNG and TIFF;
    gray+alpha to PNG; RGB and RGBA to PNG, and to TIFF through tifffile (a TIFF of these is 8-bit,
    with a warning, where Pillow alone writes it: gray+alpha, or colour without tifffile);
    everything else is 8-bit, with a warning where 16 bits were asked for (uint16 samples, or
    ``bits=16``). WebP has no gray: gray is written to it as RGB (RGBA with alpha). ``icc_profile``,
    ``exif`` (bytes, as ``Image.Exif.tobytes`` gives) and ``dpi`` are written where the format
    holds them (PNG, JPEG, WebP, TIFF; WebP's DPI in its EXIF; BMP's DPI alone), and so is ``xmp``
    (bytes; not by tifffile, nor to a JPEG past its 65504 bytes, with a warning); ``text`` ({key:
    value}: a PNG's text chunks, `file_metadata`) to PNG, and its author, copyright and description
    to the EXIF of the other formats that hold one; ``png_colour`` (a PNG's gAMA, cHRM, sRGB and cICP
    chunks, `file_metadata`) to PNG alone, with a warning where another format leaves out what
    they say beyond sRGB. ``input_path`` is the image the
    data came from: writing onto it is refused even with ``overwrite=True``, since a failed run
    would destroy the source. ``quality`` (JPEG and WebP alone, `quality_setting`): 1 to 100, or
    "lossless" for WebP; default `DEFAULT_QUALITY`. JPEG keeps full-resolution colour (4:4:4) from
    quality 90 up, halves it both ways (4:2:0) below. Either path may be bytes, as os.listdir(b'...')
    gives a name in another encoding (`path_text`).
    """
    if bits not in (None, 8, 16):
        raise InputError(f"bits must be 8 or 16, got {bits!r}")
    path = Path(path_text(path))
    rgb, alpha = _alpha_apart(rgb, alpha, path)
    fmt = output_format(path, alpha is not None)
    encoder = _encoder_params(fmt, quality, str(path))
    if input_path is not None and same_file(path, path_text(input_path)):
        raise InputError(
            f"refusing to write the result onto its own input {path}; choose another output path"
        )
    if path.is_dir():                    # os.replace would fail once the work is done, naming the temp file
        raise InputError(f"output path {path} is a folder; move it away or choose an image file path")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass {option('force', True)} to replace it")
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist; create it first")

    rgb = _checked(rgb, alpha, path)
    # uint16 samples are 16 bits the caller has (`Engine.upscale` of a 16-bit image): kept unless told
    uint16 = full_scale(rgb.dtype) == np.iinfo(np.uint16).max
    bits = bits if bits is not None else 16 if uint16 else 8
    output_format(path, alpha is not None, (rgb.shape[1], rgb.shape[0]), gray=rgb.ndim == 2, bits=bits)
    writer = _writer(fmt, bits, rgb.ndim == 2, alpha is not None)
    # 16 bits asked for (uint16 samples, or bits=16 as `upscale` asks for a 16-bit input) and 8 written
    if bits == 16 and writer == "pillow8":
        warn_caller(_eight_bits_only(path, fmt, rgb.ndim == 2))
    sixteen, own, tiff16 = writer != "pillow8", writer in ("png16", "tiff16"), writer == "tiff16"
    if text and fmt in METADATA_FORMATS and fmt != "PNG":
        exif = exif_with_png_text(exif, text)
    exif_tags = tiff16_exif(exif, xmp, path) if tiff16 else None
    img = None if own else _to_pil(rgb, alpha, sixteen)
    dpi, exif, xmp = fit_to_format(fmt, path, dpi, exif, xmp, icc_profile, text, png_colour)
    params = {**metadata_params(fmt, icc_profile, exif, dpi, xmp, text, png_colour), **encoder}
    try:
        fd, tmp = temp_file_beside(path)
    except OSError as e:
        raise write_error(e, path) from e
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
        if fmt == "TIFF" and not tiff16 and params.get("exif"):
            with open(tmp, "r+b") as f:           # Pillow's TIFF writer retypes them
                keep_undefined_types(f)
        # the temporary file is made 0600; give it the mode a normal open() would have.
        publish_mode(tmp)
        safe_stop.publishing(tmp, path)       # an interrupted verb then names it, if it is in place
        _publish(tmp, path, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _eight_bits_only(path: Path, fmt: str, gray: bool) -> str:
    """Why 16-bit samples asked for are written to `path` with 8 bits, and how to keep 16."""
    if fmt not in _SIXTEEN_BIT_FORMATS:
        colour = gray and fmt == "WEBP"         # libwebp has no gray: Pillow writes gray as RGB
        return (f"{fmt} holds 8 bits a sample{' and no gray' if colour else ''}: {path} is written with 8 of its "
                f"16{', as colour' if colour else ''}; save it as .png to keep 16")
    if not gray:
        return (f"{sixteen_bit.tifffile_missing()}, so {path} is written with 8 bits a sample; "
                f"install it ({sixteen_bit.install_tifffile()}) or save it as .png to keep 16")
    return f"Pillow cannot write 16-bit gray+alpha {fmt}: {path} is written with 8 bits; save it as .png to keep 16"


def output_format(path: PathArg, alpha: bool = False, size: tuple[int, int] | None = None,
                  *, gray: bool = False, bits: int = 8, from_input: PathArg | None = None,
                  engine: str | None = None) -> str:
    """The Pillow format an output path's extension asks for, refused where it cannot hold the
    image (alpha in JPEG or BMP; a `size` = (width, height) past its limit, `_MAX_SIDE`, or, of
    `gray` or colour samples of `bits` as `save_image` writes them, past the 4 GiB that a BMP
    or a classic TIFF holds, `_file_bytes`): known before any work is done on the image. Only the formats
    of `IMAGE_EXTENSIONS`: Pillow's others change the result (GIF: 256 colours; ICO: at most
    256 px a side) or refuse it once it is made (XBM: 1 bit). `path` may be bytes (`path_text`).
    `from_input`: the input whose format `path` took (a folder run's output, which the user did not
    name), for a refusal's advice (`_save_as`), with the run's `engine` flag where one was given; that
    refusal is a `FormatCannotHold`."""
    path = Path(path_text(path))
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if path.suffix.lower() not in IMAGE_EXTENSIONS or fmt is None or fmt not in Image.SAVE:
        raise InputError(
            f"cannot write {path}: its extension is none of the formats results are written in; "
            f"use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    if alpha and fmt in _NO_ALPHA_FORMATS:
        raise FormatCannotHold(f"{path.name}: {fmt} cannot store transparency; "
                               f"{_save_as(path, ('.png', '.webp'), from_input, engine)}", path, ('.png', '.webp'))
    if size is not None and max(size) > _MAX_SIDE.get(fmt, max(size)):
        raise FormatCannotHold(f"{path} would be {size[0]}x{size[1]} pixels, over the {_MAX_SIDE[fmt]} a side "
                               f"that {fmt} holds; {_save_as(path, ('.png', '.tif'), from_input, engine)}, or crop the "
                               "input", path, ('.png', '.tif'))
    if size is not None and (n := _file_bytes(fmt, size, alpha, gray, bits)) > _MAX_FILE_BYTES:
        bigtiff = (f" or install tifffile ({sixteen_bit.install_tifffile()}), which writes it as BigTIFF,"
                   if fmt == "TIFF" and bits == 16 and not gray else "")
        raise FormatCannotHold(f"{path} would be {size[0]}x{size[1]} pixels, {n / 2**30:.1f} GiB uncompressed, "
                               f"over the 4 GiB a {fmt} file holds; {_save_as(path, ('.png',), from_input, engine)},"
                               f"{bigtiff} or crop the input", path, ('.png',))
    return fmt


class FormatCannotHold(InputError):
    """An output format that cannot hold the result; `advised` are the outputs of the formats that can
    (the same name), where a folder run's advice has the user write it."""

    def __init__(self, message: str, path: Path, extensions: tuple[str, ...]) -> None:
        super().__init__(message)
        self.advised = tuple(path.with_suffix(ext) for ext in extensions)


def _save_as(path: Path, extensions: tuple[str, ...], from_input: PathArg | None, engine: str | None) -> str:
    """The advice of a refusal that another format avoids: to name the output so, where the user
    named it; where a folder run named it after its input (`from_input`), with no option to choose
    another format, to upscale that input alone, whose output name chooses it."""
    formats = " or ".join(extensions)
    if from_input is None:
        return f"save it as {formats}"
    engine_flag = f" --engine {shell_word(engine)}" if engine else ""
    command = (f"alignvar-edge upscale {shell_word(path_text(from_input))} "
               f"{shell_word(path.with_suffix(extensions[0]))}{engine_flag}")
    return (f"a folder run writes each image in its input's format: upscale this one on its own into a {formats} "
            f"({command}; add this run's other options)")


def written_bits(path: str | os.PathLike[str], bits: int, gray: bool = False, alpha: bool = False) -> int:
    """The bits a sample `save_image` writes to `path` for samples of `bits`: 8 where the format, or
    what is installed, has no 16-bit writer for the layout (`gray`, with `alpha`)."""
    return 8 if _writer(output_format(path, alpha), bits, gray, alpha) == "pillow8" else 16


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
# pixels a side the encoders write (libjpeg, libwebp); past them they fail once the work is done
_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}
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


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    # link() fails if the target appeared since our check, so no file is clobbered by a race.
    try:
        os.link(tmp, path)
    except FileExistsError as e:
        raise OutputExistsError(_appeared(path)) from e
    except OSError:
        # Filesystems without hard links (FAT, some network mounts): best effort.
        if path.exists():
            raise OutputExistsError(_appeared(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _appeared(path: Path) -> str:
    # checked absent before the image was encoded: another run (a second `upscale` into the same
    # folder) wrote it since, and its image is kept
    return (f"{path} appeared while this run was writing it (another run wrote it); kept that one: replace it "
            f"with {option('force', True)}")


def _squeezed(rgb: np.ndarray) -> np.ndarray:
    """HxWx1 gray as HxW."""
    rgb = np.asarray(rgb)
    return rgb[..., 0] if rgb.ndim == 3 and rgb.shape[2] == 1 else rgb


def _alpha_apart(samples: np.ndarray, alpha: np.ndarray | None, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """HxWx2 (gray and alpha) and HxWx4 (RGBA) samples as their colour and `alpha` (`colour_and_alpha`);
    refused where `alpha` is given besides, which of the two is meant being unknown."""
    x = np.asarray(samples)
    if x.ndim != 3 or x.shape[2] not in (2, 4):
        return samples, alpha
    if alpha is not None:
        raise InputError(f"image data for {path} has an alpha channel of its own (shape {x.shape}), and alpha= "
                         f"is given too; pass one: the colour channels x[..., :-1] with alpha=, or x alone")
    return colour_and_alpha(x)


def _checked(rgb: np.ndarray, alpha: np.ndarray | None, path: Path) -> np.ndarray:
    """`rgb` as HxW or HxWx3, refused where it, or its alpha, cannot be written: a shape, a dtype
    or values that `rescaled` would turn into other pixels (a uint16 result read as floats was
    written all white)."""
    rgb = _squeezed(rgb)
    if not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise InputError(f"image data for {path} must be HxW, HxWx1, HxWx2 (gray and alpha), HxWx3 or HxWx4, got "
                         f"shape {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"image data for {path} has no pixels (shape {rgb.shape})")
    if not np.isfinite(rgb).all():
        raise InputError(f"image data for {path} contains NaN or infinite values")
    if alpha is not None and np.shape(alpha) != rgb.shape[:2]:
        raise InputError(f"alpha shape {np.shape(alpha)} does not match image shape {rgb.shape[:2]}")
    for name, plane in (("rgb", rgb), ("alpha", alpha)):
        if plane is not None:
            checked_full_scale(np.asarray(plane), f"save_image's {name} for {path} must be uint8, uint16 or "
                               "floats in [0, 1]", f"save_image's {name} for {path}: floating-point data")
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
    png16.write(f, *_uint16_strips(rgb, alpha), png_metadata_chunks(params))


def _write_tiff16(f: BinaryIO, rgb: np.ndarray, alpha: np.ndarray | None, icc_profile: bytes | None,
                  dpi: tuple[float, float] | None, exif: Image.Exif | None) -> None:
    """A 16-bit RGB or RGBA TIFF (`sixteen_bit.write_rgb16_tiff`), in strips of about
    `png16.STRIP_BYTES` as the PNGs are."""
    size, strip = _uint16_strips(rgb, alpha)
    rows = max(1, png16.STRIP_BYTES // (size[1] * 2 * size[2]))
    sixteen_bit.write_rgb16_tiff(f, size, strip, rows, icc_profile, dpi, exif)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return rescaled(x, np.dtype(np.uint8))            # `_checked` refused dtypes without a full scale


def _to_uint16(x: np.ndarray) -> np.ndarray:
    return rescaled(x, np.dtype(np.uint16))
