"""16-bit files Pillow reads with 8 bits a sample: gray+alpha and RGB(A) PNGs, RGB(A) TIFFs.

Pillow decodes these layouts (its C codec unfilters PNG rows, interlaced ones too) but keeps one
byte of each sample. The PNGs are decoded again with other raw modes of the same bits a pixel, so
the codec hands over the bytes Pillow would drop; the TIFFs are read, and RGB(A) ones written
(`write_rgb16_tiff`), with tifffile, imported on first use. Writing the PNGs is `png16.py`'s job.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeGuard

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, TiffImagePlugin

from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError
from alignvar_edge.images.exif import exif_turn
from alignvar_edge.extras import installed_version, is_installed, older_than_required, pip_install, requirement_of
from alignvar_edge.lazy import lazy_import

# 16-bit colour TIFFs alone: optional (the `host` extra has it through scikit-image)
tifffile = lazy_import("tifffile")

# Pillow has no 16-bit gray+alpha mode: it decodes such a PNG with this raw mode to 8-bit RGBA
_LA16_RAWMODE = "LA;16B"
# Pillow decodes 16-bit RGB(A) PNGs with these raw modes to 8-bit RGB(A), keeping each sample's
# high byte; the little-endian raw mode of the same size, reading the big-endian samples, keeps
# their low byte instead (`_png_rgb16_samples`)
_RGB16_LOW_BYTE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}
_TIFF_RGB = 2              # PhotometricInterpretation
# TIFF's ASCII tags of the first directory that tifffile writes as they are (`write_rgb16_tiff`)
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432)


def is_la16(img: Image.Image) -> TypeGuard[ImageFile.ImageFile]:
    """A 16-bit gray+alpha PNG, before it is decoded (Pillow makes it 8-bit RGBA)."""
    return (isinstance(img, ImageFile.ImageFile) and img.format == "PNG"
            and [tile[3] for tile in img.tile] == [_LA16_RAWMODE])


def read_la16_raw(img: Image.Image) -> bool:
    """Have a 16-bit gray+alpha PNG decode its samples' bytes unchanged (4 a pixel, as RGBA has)
    for `la16_planes`, instead of Pillow's 8-bit RGBA. True if it is one."""
    if is_la16(img):
        _unpack_as(img, "RGBA")
        return True
    return False


def _unpack_as(img: ImageFile.ImageFile, rawmode: str) -> None:
    """Have Pillow's codec unpack the file's decompressed, unfiltered rows as `rawmode`, of the
    same bits a pixel as the file's own (the unfiltering takes its bytes a pixel from it)."""
    name, extents, offset, _ = img.tile[0]
    # a plain tuple, as Pillow 10's tiles are (later ones unpack it the same)
    img.tile = [(name, extents, offset, rawmode)]  # type: ignore[list-item]


def la16_planes(raw: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """`read_la16_raw`'s RGBA of big-endian gray and alpha samples -> uint16 gray and alpha (native
    byte order: the result comes back in the samples' dtype)."""
    gray_alpha = np.asarray(raw).view(">u2").astype(np.uint16)
    return np.ascontiguousarray(gray_alpha[..., 0]), np.ascontiguousarray(gray_alpha[..., 1])


def is_rgb16(img: Image.Image) -> TypeGuard[ImageFile.ImageFile]:
    """A 16-bit RGB or RGBA PNG (before it is decoded) or TIFF, which Pillow reads with 8 bits."""
    if isinstance(img, TiffImagePlugin.TiffImageFile):
        bits = img.tag_v2.get(TiffImagePlugin.BITSPERSAMPLE)
        return img.mode in ("RGB", "RGBA") and 16 in (bits if isinstance(bits, tuple) else (bits,))
    return (isinstance(img, ImageFile.ImageFile) and img.format == "PNG" and len(img.tile) == 1
            and img.tile[0][3] in _RGB16_LOW_BYTE)


def rgb16_planes(path: Path, img: ImageFile.ImageFile) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit RGB(A) PNG or TIFF -> uint16 RGB and alpha (its own, or its PNG colour key's),
    upright, every bit kept."""
    samples = _png_rgb16_samples(path, img) if img.format == "PNG" else _tiff_rgb16_samples(path, img)
    key_alpha = _key_alpha(samples, img.info.get("transparency"))
    if key_alpha is not None:
        samples = np.concatenate([samples, key_alpha[..., None]], axis=2)
    samples = _upright(img, samples, path)
    if samples.shape[2] == 3:
        return samples, None
    return np.ascontiguousarray(samples[..., :3]), np.ascontiguousarray(samples[..., 3])


def _png_rgb16_samples(path: Path, img: ImageFile.ImageFile) -> np.ndarray:
    """HxWx3 or 4 uint16 samples of a 16-bit RGB(A) PNG. Pillow's codec unfilters the rows (in C,
    interlaced ones too) but keeps one byte of each sample: decoded twice, with the raw mode that
    keeps the high byte and the one that keeps the low, the file gives both."""
    low_mode = _RGB16_LOW_BYTE[str(img.tile[0][3])]
    img.load()
    with Image.open(path) as again:
        if not is_rgb16(again) or again.size != img.size:
            raise InputError("changed while it was read; read it again")
        _unpack_as(again, low_mode)
        again.load()
        low = np.asarray(again)
    samples = np.asarray(img).astype(np.uint16)
    samples <<= 8                   # in place: one uint16 copy of the image, not three
    samples |= low
    return samples


def _tiff_rgb16_samples(path: Path, img: Image.Image) -> np.ndarray:
    """HxWx3 or 4 uint16 samples of a 16-bit RGB(A) TIFF, read with tifffile; Pillow's mode says
    which extra sample is alpha (RGBA) and which are not (RGB)."""
    if not is_installed("tifffile"):        # any release reads them: the floor is imwrite's (`tifffile_missing`)
        raise InputError("a 16-bit colour TIFF, which Pillow reads with 8 bits, and tifffile is not installed: "
                         f"install it ({install_tifffile()}) to read all 16, or convert it to a 16-bit PNG")
    compression = "its"
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            compression = f"its {getattr(page.compression, 'name', page.compression)}"
            samples = page.asarray()
            axes, photometric, extra = page.axes, int(page.photometric), tuple(page.extrasamples)
    # a damaged file; a codec tifffile lacks (LZW, Photoshop's default: KeyError; Zstandard: ImportError)
    except (*IMAGE_DECODE_ERRORS, RuntimeError, ImportError) as e:
        if not is_installed("imagecodecs") and (isinstance(e, ImportError) or "imagecodecs" in str(e)):
            raise InputError(f"{compression} compression needs the imagecodecs package to read this 16-bit colour "
                             "TIFF: install it (pip install imagecodecs), or save it as a 16-bit PNG") from e
        raise InputError(f"tifffile cannot read this 16-bit colour TIFF ({e}); convert it to a 16-bit PNG") from e
    if photometric != _TIFF_RGB or samples.dtype != np.uint16 or sorted(axes) != ["S", "X", "Y"]:
        raise InputError(f"16-bit TIFF of a layout read here as neither RGB nor RGBA (axes {axes}, "
                         f"photometric {photometric}); convert it to a 16-bit RGB PNG")
    samples = np.moveaxis(samples, [axes.index(a) for a in "YXS"], [0, 1, 2])[..., :len(img.mode)]
    associated = len(img.mode) == 4 and extra[:1] == (1,)     # colours premultiplied by alpha
    return _unpremultiplied(samples) if associated else np.ascontiguousarray(samples)


def unreadable_tiff_layout(path: Path) -> str | None:
    """What a TIFF that Pillow cannot open holds, as tifffile reads its first page ("32-bit float
    RGB TIFF"), for a refusal that names it; None where it is no TIFF, or tifffile cannot say."""
    with open(path, "rb") as f:
        if f.read(4) not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return None
    if not is_installed("tifffile"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            dtype, photometric, samples = page.dtype, page.photometric, int(page.samplesperpixel)
    except Exception:         # noqa: BLE001 - tifffile's errors on a damaged file are many (struct.error, ...):
        return None           # it only names the layout; the caller's refusal stands without it
    if dtype is None:
        return None
    dtype = np.dtype(dtype)
    kind = {"f": "float", "i": "signed integer", "u": "unsigned integer"}.get(dtype.kind, str(dtype))
    colour = getattr(photometric, "name", str(photometric)).replace("MINISBLACK", "gray").replace("MINISWHITE", "gray")
    return f"{dtype.itemsize * 8}-bit {kind} {colour} TIFF ({samples} sample{'s' if samples != 1 else ''} a pixel)"


def _unpremultiplied(rgba: np.ndarray) -> np.ndarray:
    """Straight colours of premultiplied 16-bit RGBA (what Pillow makes of 8-bit RGBa)."""
    alpha = rgba[..., 3:].astype(np.float64)
    rgb = rgba[..., :3] * np.divide(65535.0, alpha, out=np.zeros_like(alpha), where=alpha > 0)
    return np.concatenate([np.round(np.clip(rgb, 0, 65535)), alpha], axis=2).astype(np.uint16)


def _key_alpha(rgb16: np.ndarray, key: object) -> np.ndarray | None:
    """A colour key's alpha (a PNG's tRNS chunk, 16-bit here): clear where a pixel is that colour,
    opaque elsewhere. None without a key, or beside an alpha channel."""
    if not (isinstance(key, tuple) and len(key) == 3 and rgb16.shape[2] == 3):
        return None
    clear = (rgb16 == np.asarray(key, np.uint16)).all(axis=2)
    return np.where(clear, 0, 65535).astype(np.uint16)


def _upright(img: Image.Image, samples: np.ndarray, path: Path) -> np.ndarray:
    """HxWxC `samples` of the file `path` turned as `ImageOps.exif_transpose` turns `img`: Pillow's
    rule, applied to an image of the pixels' indices, since Pillow has no 16-bit colour image to turn."""
    orientation = exif_turn(img, path)
    if orientation is None:
        return samples
    height, width, channels = samples.shape
    index = Image.fromarray(np.arange(height * width, dtype=np.int32).reshape(height, width))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    index.info["exif"] = exif.tobytes()
    moved = np.asarray(ImageOps.exif_transpose(index))
    return samples.reshape(-1, channels)[moved]


def can_write_rgb16_tiff() -> bool:
    """Whether `write_rgb16_tiff` can run here: tifffile is optional (Pillow has no 16-bit RGB mode)."""
    return tifffile_missing() is None


def tifffile_missing() -> str | None:
    """Why 16-bit colour TIFFs cannot be written here ('tifffile is not installed', or its release is
    older than the first whose imwrite takes an ICC profile); None where they can (`install_tifffile`)."""
    if not is_installed("tifffile"):
        return "tifffile is not installed"
    if older_than_required("tifffile"):
        return f"tifffile {installed_version('tifffile')[1]} is older than {requirement_of('tifffile')}"
    return None


def install_tifffile() -> str:
    """The pip command that gives the tifffile 16-bit colour TIFFs need."""
    return pip_install([requirement_of("tifffile")], upgrade=is_installed("tifffile"))


def write_rgb16_tiff(f: BinaryIO, size: tuple[int, int, int], strip: Callable[[int, int], np.ndarray],
                     rows: int, icc_profile: bytes | None = None, dpi: tuple[float, float] | None = None,
                     exif: Image.Exif | None = None) -> None:
    """A 16-bit RGB or RGBA TIFF (Deflate with the horizontal predictor, which every TIFF reader
    decodes) of `size` = (height, width, 3 or 4: alpha last, straight), whose rows y0..y1 are
    `strip(y0, y1)` as uint16, written `rows` rows a strip so that no full-size copy is made. `exif`'s text tags of the first
    directory (camera, date, author, ...) are written; tifffile writes no Exif or GPS directory."""
    height, width, channels = size
    tags = exif if exif is not None else Image.Exif()
    # TIFF text is 7-bit ASCII (tifffile raises on more): the rest becomes "?", as Pillow writes it
    text = [(tag, "s", 0, value.encode("ascii", "replace").decode(), True) for tag in _TIFF_TEXT_TAGS
            if isinstance(value := tags.get(tag), str) and value]

    def strips() -> Iterator[bytes]:
        # tifffile compresses whole pages only: each strip is encoded here and written as it is
        for y in range(0, height, rows):
            samples = np.ascontiguousarray(strip(y, min(y + rows, height)), "<u2")
            delta = samples.copy()
            delta[:, 1:] -= samples[:, :-1]          # TIFF predictor 2: each sample less its left one, mod 2^16
            yield zlib.compress(delta.tobytes(), 6)
    # strips from an iterator give tifffile no size to choose BigTIFF by: past 4 GB (uncompressed,
    # the most the strips can take), it is needed
    bigtiff = height * width * channels * 2 > 2**32 - 2**25
    # named: tifffile takes a file's name from it, and one from os.fdopen has its descriptor there
    with tifffile.FileHandle(f, name="result.tif") as handle:
        tifffile.imwrite(handle, strips(), shape=size, dtype="<u2", byteorder="<", bigtiff=bigtiff,
                         photometric="rgb", planarconfig="contig", compression="zlib", predictor=True,
                         extrasamples=["unassalpha"] if channels == 4 else None, rowsperstrip=rows,
                         iccprofile=icc_profile, resolution=dpi, resolutionunit="inch" if dpi else None,
                         metadata=None, software=False, extratags=text)
