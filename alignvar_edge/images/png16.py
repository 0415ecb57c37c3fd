"""16-bit gray+alpha, RGB and RGBA PNGs, which Pillow cannot write (it writes 16-bit gray alone).

The rows are filtered here and compressed a strip at a time, so memory stays a few MB whatever the
image size; the caller hands the metadata chunks in (`write.py` takes them from Pillow, so that
metadata is written one way whatever the pixels).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# chunks that describe the pixels, which `write` writes itself
PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"sBIT", b"bKGD", b"IDAT", b"IEND")
# colour type of a 16-bit PNG by samples a pixel: gray+alpha, RGB, RGBA
_COLOUR_TYPES = {2: 4, 3: 2, 4: 6}
# raw bytes filtered and compressed at a time: memory stays a few times this, whatever the image
STRIP_BYTES = 1 << 20


def write(f: BinaryIO, size: tuple[int, int, int], strip: Callable[[int, int], np.ndarray],
          metadata: bytes = b"") -> None:
    """A 16-bit PNG of `size` = (height, width, samples per pixel: 2, 3 or 4, alpha last), whose
    rows y0..y1 are `strip(y0, y1)` as uint16 (rows, width, samples); `metadata`: whole chunks
    to write after IHDR."""
    height, width, channels = size
    ihdr = struct.pack(">IIBBBBB", width, height, 16, _COLOUR_TYPES[channels], 0, 0, 0)
    f.write(SIGNATURE + chunk(b"IHDR", ihdr) + metadata)
    bpp = 2 * channels
    rows = max(1, STRIP_BYTES // (width * bpp))
    prior = np.zeros(width * bpp, np.uint8)
    compressor = zlib.compressobj()
    for y in range(0, height, rows):
        raw = _row_bytes(strip(y, min(y + rows, height)))
        data = compressor.compress(_filtered(raw, prior, bpp))
        prior = raw[-1]
        if data:
            f.write(chunk(b"IDAT", data))
    f.write(chunk(b"IDAT", compressor.flush()) + chunk(b"IEND", b""))


def _row_bytes(samples: np.ndarray) -> np.ndarray:
    """One row of bytes per image row: each pixel's samples, 16-bit big-endian."""
    big = samples.astype(">u2")
    return big.view(np.uint8).reshape(big.shape[0], -1)


def _filtered(raw: np.ndarray, prior: np.ndarray, bpp: int) -> bytes:
    """PNG's rows (a filter-type byte, then the filtered bytes) of the byte rows `raw`, `prior`
    being the row above them. Each row takes the filter whose bytes, read as signed, sum smallest
    (libpng's choice). Filtering needs the raw bytes alone, unlike unfiltering, so all five
    filters are whole-array operations (uint8 arithmetic: modulo 256, as the filters are)."""
    up = np.vstack([prior[None], raw[:-1]])
    left, up_left = np.zeros_like(raw), np.zeros_like(raw)
    left[:, bpp:], up_left[:, bpp:] = raw[:, :-bpp], up[:, :-bpp]
    average = (left >> 1) + (up >> 1) + (left & up & 1)           # floor((left + up) / 2) in 8 bits
    candidates = np.stack([raw, raw - left, raw - up, raw - average, raw - _paeth(left, up, up_left)])
    cost = np.minimum(candidates, -candidates).sum(axis=2, dtype=np.uint64)
    best = cost.argmin(axis=0)
    rows = candidates[best, np.arange(len(raw))]
    return np.concatenate([best.astype(np.uint8)[:, None], rows], axis=1).tobytes()


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """PNG's Paeth predictor of each byte from its left (a), upper (b) and upper-left (c) ones."""
    a16, b16, c16 = (x.astype(np.int16) for x in (a, b, c))
    pa, pb, pc = np.abs(b16 - c16), np.abs(a16 - c16), np.abs(a16 + b16 - 2 * c16)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, the whole chunk) of each chunk of a PNG file's bytes."""
    pos = len(SIGNATURE)
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        yield kind, png[pos:pos + 12 + length]
        pos += 12 + length


def header_chunk(f: IO[bytes], kind: bytes) -> bytes | None:
    """The data of `f`'s first chunk of `kind` before its pixels (the first IDAT), read chunk header
    by chunk header, the pixels never read; None where there is none or `f` is no PNG."""
    if f.read(len(SIGNATURE)) != SIGNATURE:
        return None
    while len(head := f.read(8)) == 8:
        length, found = struct.unpack(">I4s", head)
        if found == b"IDAT":
            return None
        if found == kind:
            data = f.read(length)
            return data if len(data) == length else None
        f.seek(length + 4, 1)          # its data and CRC
    return None


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
