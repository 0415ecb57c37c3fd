"""What an output carries beside its pixels: read from the input (`file_metadata`: the ICC
profile, the EXIF and XMP that describe the picture, the DPI, a PNG's text; for
`upscale --strip-metadata`, the colour profile and print size alone) and written in the fields each output format has for
them (`metadata_params`), or left out with a warning where the format cannot hold them
(`fit_to_format`)."""
from __future__ import annotations

import base64
import binascii
import codecs
import functools
import io
import os
import re
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypedDict
from xml.dom import minidom
from xml.parsers import expat

from PIL import ExifTags, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from alignvar_edge.caller import warn_caller
from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError
from alignvar_edge.images import png16
from alignvar_edge.images.exif import image_exif
from alignvar_edge.images.formats import image_layout, open_quietly
from alignvar_edge.manifest import sha256_file
from alignvar_edge.name_text import PathArg, path_text


def file_profile(path: PathArg) -> bytes | None:
    """The file's ICC colour profile where it describes what `upscale` writes back (an RGB
    profile on a colour image, a gray one on gray), else None. The pixels are kept as the file
    holds them, so without it a Display P3 or Adobe RGB photo would be shown as sRGB, its colours
    dulled; a CMYK profile no longer applies to the RGB result and is dropped. `path` may be bytes
    (`path_text`)."""
    with open_quietly(path_text(path)) as img:
        return _profile_for(img, image_layout(img)[0])


def _profile_for(img: Image.Image, gray: bool) -> bytes | None:
    icc = img.info.get("icc_profile")
    # bytes 16-19 of an ICC header: the colour space of the data it describes
    if not isinstance(icc, bytes) or len(icc) < 20 or icc[16:20] != (b"GRAY" if gray else b"RGB "):
        return None
    return icc


class Metadata(TypedDict):
    """`save_image`'s keywords for what an output carries beside its pixels (`file_metadata`)."""
    icc_profile: bytes | None
    exif: bytes | None
    dpi: tuple[float, float] | None
    xmp: bytes | None
    text: dict[str, str] | None
    png_colour: dict[str, bytes] | None


def file_metadata(path: PathArg, scale: int = 1) -> Metadata:
    """What `upscale` writes beside the pixels of `path`'s result, `scale` times its size: the
    ICC profile (`file_profile`), the EXIF and the XMP that describe the picture (`_carried_exif`,
    `_carried_xmp`: not its orientation, since `load_image` turned the pixels upright, nor its
    previews: the EXIF's thumbnail and maker note, the XMP's thumbnails), the DPI
    times `scale`, so that the result prints at the input's size, and a PNG's text (`_carried_text`:
    author, copyright, description, ...) and its colour chunks (`png_colour`: gamma, primaries, sRGB).
    `path` may be bytes (`path_text`)."""
    path = path_text(path)
    with open_quietly(path, say=True) as img:
        return image_metadata(img, path, image_layout(img)[0], scale)


def image_metadata(img: Image.Image, path: str | os.PathLike[str], gray: bool, scale: int,
                   stripped_for: str | None = None, made_by: str = "") -> Metadata:
    """`file_metadata` of the opened file `path`, whose layout is `gray` or not (`image_layout`,
    read from its header: decoding the pixels may change what it reads). `stripped_for`: the
    output format of `upscale --strip-metadata`, whose result carries the colour profile and print
    size alone: the EXIF, XMP and text it drops are not parsed for copying,
    so a damaged one is not said, nor can it stop the run. `made_by`: what makes the result beside
    the input and `scale` (the engine and its options), which the XMP's new InstanceID is derived
    from (`_instance_id`)."""
    exif = image_exif(img, path)          # read anyway: the orientation; a PNG's EXIF may follow its pixels
    dpi = _dpi(img, exif)
    kept: Metadata = {"icc_profile": _profile_for(img, gray), "png_colour": png_colour(img, path),
                      "dpi": (dpi[0] * scale, dpi[1] * scale) if dpi else None, "exif": None, "xmp": None,
                      "text": None}
    if stripped_for is not None:
        # nothing that says who made the picture, where, with what or from what (EXIF, XMP, PNG
        # text); the DPI where the format has a field of its own for it (WebP's is its EXIF's)
        return {**kept, "dpi": None if stripped_for in _DPI_IN_EXIF_ALONE else kept["dpi"]}
    try:
        carried = _carried_exif(exif)
    except (*IMAGE_DECODE_ERRORS, struct.error, TypeError) as e:   # a maker's tag Pillow cannot write back
        warn_caller(f"{path}: its EXIF cannot be copied ({e}); the result is written without it")
        carried = None
    # a PNG's text may follow its pixels too; its XMP is one of its texts
    text = dict(img.text) if isinstance(img, PngImagePlugin.PngImageFile) else {}
    xmp = img.info.get("xmp") or text.get(_PNG_XMP, "").encode()
    return {**kept, "exif": carried, "xmp": _carried_xmp(xmp, path, f"x{scale} {made_by}"),
            "text": _carried_text(text)}


def png_colour(img: Image.Image, path: str | os.PathLike[str]) -> dict[str, bytes] | None:
    """A PNG's gAMA, cHRM and sRGB chunks ({type: data}), which say how its samples code colours
    where no ICC profile does (a linear PNG's gamma 1.0, say), from what Pillow reads of them; and
    its cICP, which overrides them and the profile (an HDR photo's PQ or HLG transfer, Display P3),
    from the file at `path` (Pillow writes one but does not read it)."""
    if not isinstance(img, PngImagePlugin.PngImageFile):
        return None
    info, chunks = img.info, {}
    cicp = _header_chunk(img, path, b"cICP")
    if cicp is not None and len(cicp) == _CICP_BYTES:
        chunks["cICP"] = cicp
    if "gamma" in info:
        chunks["gAMA"] = struct.pack(">I", round(info["gamma"] * _PNG_UNIT))
    if "chromaticity" in info:
        chunks["cHRM"] = struct.pack(">8I", *(round(v * _PNG_UNIT) for v in info["chromaticity"]))
    if "srgb" in info:
        chunks["sRGB"] = bytes([info["srgb"]])
    return chunks or None


def _header_chunk(img: PngImagePlugin.PngImageFile, path: str | os.PathLike[str], kind: bytes) -> bytes | None:
    """`png16.header_chunk` of the file `img` was opened from: its own open file while Pillow holds
    it (the same file whatever happened to the name since), else the file at `path`."""
    f = img.fp
    if f is not None and f.seekable():
        at = f.tell()
        try:
            f.seek(0)
            return png16.header_chunk(f, kind)
        finally:
            f.seek(at)
    try:
        with open(path, "rb") as named:
            return png16.header_chunk(named, kind)
    except OSError as e:
        raise InputError(f"{path} cannot be read again for its colour chunks ({e.strerror or e}); check that "
                         "it can be read") from e


# a PNG's gamma and chromaticities are stored times 100000; sRGB's, as the PNG specification gives
# them beside its sRGB chunk (gamma 1/2.2; white point, red, green, blue x and y)
_PNG_UNIT = 100_000
_SRGB_GAMMA = 45455
_SRGB_CHROMATICITY = (31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
# a cICP chunk: colour primaries, transfer function, matrix (0: RGB) and full range, as ITU-T H.273
# codes them; sRGB's is primaries 1 (BT.709) with transfer 13 (IEC 61966-2-1), in full range
_CICP_BYTES = 4
_SRGB_CICP = bytes([1, 13, 0, 1])


def _png_colour_lost(chunks: dict[str, bytes] | None, icc_profile: bytes | None) -> list[str]:
    """The colour chunks (`png_colour`) a format without them loses, each with what it says: a cICP
    other than sRGB's, which overrides everything else; else none where an ICC profile, which
    overrides them, goes along, where the sRGB chunk says the colours are sRGB (what the other
    formats assume), or where they are sRGB's own values."""
    if not chunks:
        return []
    if "cICP" in chunks and chunks["cICP"] != _SRGB_CICP:     # it overrides the profile and the others
        primaries, transfer = chunks["cICP"][:2]
        return [f"cICP (primaries {primaries}, transfer {transfer})"]
    if icc_profile or "sRGB" in chunks:
        return []
    lost = []
    if "gAMA" in chunks and abs((gamma := struct.unpack(">I", chunks["gAMA"])[0]) - _SRGB_GAMMA) > _PNG_UNIT // 1000:
        lost.append(f"gAMA (gamma {gamma / _PNG_UNIT:g})")
    if "cHRM" in chunks and any(abs(a - b) > _PNG_UNIT // 1000
                                for a, b in zip(struct.unpack(">8I", chunks["cHRM"]), _SRGB_CHROMATICITY)):
        lost.append("cHRM (primaries other than sRGB's)")
    return lost


# The PNG text key of XMP; and ImageMagick's copies of profiles as PNG text: EXIF (read as the
# EXIF), the ICC profile and XMP are carried in their own fields, and their copies would hold what
# those leave out (the orientation, a CMYK profile).
_PNG_XMP = "XML:com.adobe.xmp"
_PROFILE_TEXT = re.compile(r"Raw profile type (exif|APP1|icc|icm|xmp)$", re.IGNORECASE)


def _carried_text(text: dict[str, str]) -> dict[str, str] | None:
    carried = {k: v for k, v in text.items() if k != _PNG_XMP and not _PROFILE_TEXT.match(k)}
    return carried or None


# XMP namespaces (`xap` is the older prefix of the first, and the same namespace)
_XMP_BASIC = "http://ns.adobe.com/xap/1.0/"
_XMP_IMAGE = "http://ns.adobe.com/xap/1.0/g/img/"
_XMP_MEDIA = "http://ns.adobe.com/xap/1.0/mm/"
_XMP_TIFF = "http://ns.adobe.com/tiff/1.0/"
_XMP_EXIF = "http://ns.adobe.com/exif/1.0/"
# XMP properties an output does not carry: those that describe the input's pixels, as
# `_carried_exif` leaves their EXIF tags out (the orientation, the width and height, the
# resolution: the output has its own), and its previews (xmp:Thumbnails, whose xmpGImg:image is
# a JPEG of the input, perhaps before it was edited), as the EXIF's thumbnail is left out
_XMP_DROPPED = {
    *((_XMP_TIFF, name) for name in ("Orientation", "ImageWidth", "ImageLength", "XResolution", "YResolution",
                                     "ResolutionUnit")),
    (_XMP_EXIF, "PixelXDimension"), (_XMP_EXIF, "PixelYDimension"),
    (_XMP_BASIC, "Thumbnails"), (_XMP_IMAGE, "image")}
_XMP_INSTANCE_ID = (_XMP_MEDIA, "InstanceID")


def _carried_xmp(xmp: object, path: str | os.PathLike[str], made_by: str) -> bytes | None:
    """The XMP packet `xmp` of the file `path` as its result carries it, in UTF-8: less
    `_XMP_DROPPED` and any other image it embeds (`_embedded_image`), as attributes
    (tiff:Orientation="6") or elements, by their namespace whatever their prefix, and with a new
    xmpMM:InstanceID (`_instance_id` of `path` and `made_by`): the result is a new instance of the
    same document (its DocumentID and History kept), as an editor's save makes one. A packet that
    is not well-formed XML, or past `_XMP_MAX_BYTES`, `_XMP_MAX_DEPTH` or `_XMP_MAX_ELEMENTS`,
    cannot be read for what it embeds: it is left out, with a warning."""
    packet = _xmp_bytes(xmp)
    if packet is None:
        return None
    try:
        text = _xmp_text(packet)
        if not text:                                    # padding alone
            return None
        doc = _xmp_document(text)
    except (expat.ExpatError, ValueError) as e:         # UnicodeDecodeError is a ValueError
        warn_caller(f"{path}: its XMP cannot be copied ({e}); the result is written without it (save the file "
                    "again from an image editor to repair it)")
        return None
    # the input is hashed once, where the packet has an InstanceID to renew
    _carry_xmp_properties(doc, functools.cache(lambda: _instance_id(path, made_by)))
    # no XML declaration; minidom writes the tree by recursion, which `_XMP_MAX_DEPTH` bounds
    return "".join(node.toxml() for node in doc.childNodes).encode("utf-8")


def _xmp_bytes(xmp: object) -> bytes | None:
    """`xmp` as the packet's bytes, as Pillow gives them by format; None where there is none."""
    if isinstance(xmp, tuple) and len(xmp) == 1:      # a TIFF's tag, as some Pillow versions give it
        xmp = xmp[0]
    if isinstance(xmp, str):
        xmp = xmp.encode()
    return xmp if isinstance(xmp, bytes) and xmp else None


def _xmp_text(packet: bytes) -> str:
    """`packet` decoded in its encoding (`_xmp_encoding`), less the padding around it (a TIFF's
    tag may end in NULs, an odd one past a UTF-16 packet's last character), and refused
    (ValueError) past `_XMP_MAX_BYTES`. Padding is cut in whole characters: a UTF-16LE packet
    ends in the NUL of its last ">"."""
    if len(packet) > _XMP_MAX_BYTES:
        raise ValueError(f"it is {len(packet)} bytes, over the {_XMP_MAX_BYTES} that are read")
    codec, unit = _xmp_encoding(packet)
    if not any(tail := packet[len(packet) - len(packet) % unit:]):
        packet = packet[:len(packet) - len(tail)]
    return packet.decode(codec).strip("\0 \t\r\n")


def _xmp_encoding(packet: bytes) -> tuple[str, int]:
    """The codec of `packet` and the bytes of its code unit: by its byte-order mark, else by where
    the zero bytes of its first characters fall ('<' is 3C 00 in UTF-16LE, 00 3C in UTF-16BE), as
    XML 1.0 (appendix F) tells it; UTF-8 otherwise. An XMP packet may be UTF-8, UTF-16 or UTF-32."""
    for bom, codec, unit in _XMP_BOMS:
        if packet.startswith(bom):
            return codec, unit
    return _XMP_ZERO_BYTES.get(tuple(byte == 0 for byte in packet[:4]), ("utf-8", 1))


# byte-order marks and the codecs that read them (UTF-32LE's starts with UTF-16LE's: first)
_XMP_BOMS = ((codecs.BOM_UTF32_LE, "utf-32", 4), (codecs.BOM_UTF32_BE, "utf-32", 4),
             (codecs.BOM_UTF8, "utf-8-sig", 1), (codecs.BOM_UTF16_LE, "utf-16", 2), (codecs.BOM_UTF16_BE, "utf-16", 2))
# which of the first four bytes are zero, by encoding, where no byte-order mark says
_XMP_ZERO_BYTES: dict[tuple[bool, ...], tuple[str, int]] = {
    (True, True, True, False): ("utf-32-be", 4), (False, True, True, True): ("utf-32-le", 4),
    (True, False, True, False): ("utf-16-be", 2), (False, True, False, True): ("utf-16-le", 2)}
# What of a packet is parsed: real ones nest a dozen elements deep, and a long one (Photoshop's
# DocumentAncestors) holds thousands; past these it is left out. A packet nested 2000 deep
# stopped `upscale` (RecursionError), and one of 1 MB took seconds and 100 MB to parse.
_XMP_MAX_BYTES = 1 << 20
_XMP_MAX_DEPTH = 64
_XMP_MAX_ELEMENTS = 20_000


def _xmp_document(text: str) -> minidom.Document:
    """`text` parsed, its prefixes and layout kept for writing it back; refused (ValueError)
    where it declares a document type (XMP has none, and its entities would be expanded) or nests
    or holds more elements than `_XMP_MAX_DEPTH` and `_XMP_MAX_ELEMENTS`, which expat, whose
    stack is not Python's, tells before the tree is built."""
    def refuse(*_: object) -> None:
        raise ValueError("it declares a document type, which XMP does not use")
    depth = elements = 0

    def start(*_: object) -> None:
        nonlocal depth, elements
        depth, elements = depth + 1, elements + 1
        if depth > _XMP_MAX_DEPTH:
            raise ValueError(f"it nests elements more than {_XMP_MAX_DEPTH} deep")
        if elements > _XMP_MAX_ELEMENTS:
            raise ValueError(f"it holds more than {_XMP_MAX_ELEMENTS} elements")

    def end(*_: object) -> None:
        nonlocal depth
        depth -= 1
    check = expat.ParserCreate()
    check.StartDoctypeDeclHandler = refuse
    check.StartElementHandler, check.EndElementHandler = start, end
    check.Parse(text, True)               # as text: an encoding it declares was its bytes', and is read
    return minidom.parseString(text)


def _carry_xmp_properties(doc: minidom.Document, instance_id: Callable[[], str]) -> None:
    """Drop `_XMP_DROPPED` and embedded images from the elements of `doc`, and renew its
    xmpMM:InstanceID (to `instance_id()`), in place; element by element, without recursion."""
    elements = [node for node in doc.childNodes if isinstance(node, minidom.Element)]   # between <?xpacket?>s
    while elements:
        element = elements.pop()
        for attr in list(element.attributes.values()):
            name = (attr.namespaceURI, attr.localName)
            if name in _XMP_DROPPED or _embedded_image(attr.value):
                element.removeAttributeNode(attr)
            elif name == _XMP_INSTANCE_ID:
                attr.value = instance_id()
        for child in list(element.childNodes):
            if not isinstance(child, minidom.Element):
                continue
            name = (child.namespaceURI, child.localName)
            if name in _XMP_DROPPED or _embedded_image(_own_text(child)):
                element.removeChild(child)
            elif name == _XMP_INSTANCE_ID:
                for text in list(child.childNodes):
                    child.removeChild(text)
                child.appendChild(doc.createTextNode(instance_id()))
            else:
                elements.append(child)


def _instance_id(path: str | os.PathLike[str], made_by: str) -> str:
    """The result's xmpMM:InstanceID, as Adobe's applications write one: a UUID derived from the
    input file's content and `made_by`, so that the same command writes the same bytes (a random
    one broke reproducible outputs and content-hash caches), while another input, engine or
    option gives another."""
    return f"xmp.iid:{uuid.uuid5(_INSTANCE_NAMESPACE, f'{sha256_file(Path(path), remember=False)} {made_by}')}"


# the namespace of `_instance_id`'s UUIDs: a fixed one of alignvar-edge's own (another changes every ID)
_INSTANCE_NAMESPACE = uuid.UUID("5b0f3c8e-2a71-4d0e-9a63-0c7b1f4e8d25")


def _own_text(element: minidom.Element) -> str:
    """The text directly inside `element` (not inside its child elements)."""
    return "".join(node.data for node in element.childNodes if isinstance(node, minidom.Text))


# The first bytes of the image (and video) files an XMP property may hold in base64: JPEG, PNG,
# GIF, TIFF, WebP, JPEG 2000, JPEG XL, Photoshop; and ISO media's "ftyp" at byte 4 (HEIF, AVIF,
# MP4). Google's cameras keep the photo before its portrait blur (GImage:Data) and a depth map
# (GDepth:Data) so.
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\0", b"MM\0*", b"\0\0\0\x0cjP  ", b"\xff\x0a",
                     b"\0\0\0\x0cJXL ", b"8BPS")
# base64 characters decoded to tell: 12 bytes
_BASE64_HEAD = 16


def _embedded_image(value: str) -> bool:
    """Whether `value` is base64 of an image file, told by the file's own first bytes (a preview
    of the input, which an output must not carry: it shows other pixels than the output's), or a
    data URI of one ("data:image/jpeg;base64,...")."""
    if value.lstrip().startswith("data:"):
        value = value.partition(",")[2]
    head = "".join(value[:4 * _BASE64_HEAD].split())[:_BASE64_HEAD]    # XMP breaks base64 into lines
    if len(head) < _BASE64_HEAD:
        return False
    try:
        data = base64.b64decode(head, validate=True)
    except binascii.Error:
        return False
    return data.startswith(_IMAGE_SIGNATURES) or data[4:8] == b"ftyp" or (data[:4], data[8:]) == (b"RIFF", b"WEBP")


# EXIF resolution tags and their unit (2: inch, the default; 3: centimetre; 1: none, an aspect
# ratio alone, so no DPI)
_X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 282, 283, 296
_PER_INCH = {2: 1.0, 3: 2.54}
# a JPEG's JFIF density units that are a resolution (1: inch, 2: centimetre; 0: an aspect ratio)
_JFIF_RESOLUTION_UNITS = (1, 2)


def _dpi(img: Image.Image, exif: Image.Exif) -> tuple[float, float] | None:
    """Pillow's DPI of the file (PNG, JPEG, TIFF, BMP), else its EXIF resolution (WebP's only one)."""
    dpi = img.info.get("dpi")
    if isinstance(img, TiffImagePlugin.TiffImageFile) and _X_RESOLUTION not in img.tag_v2:
        dpi = None                        # Pillow's (1, 1) for a TIFF that gives none: 4 DPI written
    if isinstance(img, JpegImagePlugin.JpegImageFile) and img.info.get("jfif_unit") not in _JFIF_RESOLUTION_UNITS:
        # Pillow's from the EXIF: its unit 1 (none) taken for inches, 4 DPI written for 1:1, and 72
        # where the EXIF has no resolution or no unit; the EXIF is read below, by its own rules
        dpi = None
    try:
        if dpi is None and _X_RESOLUTION in exif and _Y_RESOLUTION in exif:
            per_inch = _PER_INCH.get(exif.get(_RESOLUTION_UNIT, 2), 0.0)
            dpi = (float(exif[_X_RESOLUTION]) * per_inch, float(exif[_Y_RESOLUTION]) * per_inch)
        if dpi is None or not all(float(d) > 0 for d in dpi):     # 0, or a 0/0 rational: none given
            return None
        return _whole_dpi(float(dpi[0])), _whole_dpi(float(dpi[1]))
    except (TypeError, ValueError, ZeroDivisionError):   # a damaged resolution tag: text, not a number
        return None


def _whole_dpi(dpi: float) -> float:
    """`dpi`, the whole number it stands for where a field of whole pixels a metre (PNG, BMP)
    cannot hold it: 300 DPI is stored as 11811 px/m, read back as 299.9994, which x4 wrote
    1199.9976 DPI beside the JPEG's 1200. A step of that field is 0.0254 DPI."""
    whole = round(dpi)
    return float(whole) if abs(dpi - whole) <= _DPI_PER_PX_PER_M / 2 else dpi


_DPI_PER_PX_PER_M = 0.0254


# The EXIF tags of the first directory that describe the picture and still hold for the result:
# description, camera, software, date, author, copyright, and the Exif (exposure, lens, ...) and
# GPS directories. The others describe the input's pixels (a TIFF's are its strips and sample
# layout; orientation, resolution), which the output has its own of.
_PICTURE_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432, ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)
# the Exif directory's record of the input's width and height
_PIXEL_DIMENSIONS = (0xA002, 0xA003)
# The camera maker's own block: no output carries it. It holds previews of the input (a Nikon's
# JPEG preview, a Pentax's), serial numbers and shutter counts; and most makers' (Canon, Sony,
# Olympus, Panasonic) point at their values by offsets into the input's EXIF, which Pillow lays out
# anew (less the orientation, the thumbnail): copied, they point at other bytes. The camera
# settings every reader shows (exposure, ISO, lens, focal length) are in the Exif directory.
_MAKER_NOTE = 0x927C


def _carried_exif(exif: Image.Exif) -> bytes | None:
    for tag in [t for t in exif if t not in _PICTURE_TAGS]:
        del exif[tag]
    if _LAYOUT_DESCRIPTION.match(str(exif.get(_DESCRIPTION, ""))):
        del exif[_DESCRIPTION]
    if ExifTags.IFD.Exif in exif:         # get_ifd adds an empty one where there is none
        for tag in (*_PIXEL_DIMENSIONS, _MAKER_NOTE):
            exif.get_ifd(ExifTags.IFD.Exif).pop(tag, None)
    return exif_bytes(exif) if len(exif) else None


# A TIFF's ImageDescription that is its layout, written by imaging software (tifffile's JSON
# shape, ImageJ's "images=N slices=...", OME-XML): the result's readers would take its shape
# and page count for the result's, which has its own.
_DESCRIPTION = 270
_LAYOUT_DESCRIPTION = re.compile(r'\s*(\{\s*"shape"|ImageJ=|<\?xml|<OME)')


# the most DPI a format's field holds: JPEG's JFIF density is 16 bits (Pillow writes it modulo
# 65536), PNG's and BMP's pixels a metre 32 bits (Pillow raises OverflowError); a microscope's
# TIFF (pixels a micron) x4 passes them
_MAX_DPI = {"JPEG": 65535.0, "PNG": (2**32 - 1) * 0.0254, "BMP": (2**32 - 1) * 0.0254}
# the EXIF bytes one JPEG APP1 segment holds (Pillow raises ValueError past them, after the work),
# and the XMP bytes (less its namespace)
_JPEG_MAX_EXIF = 65533
_JPEG_MAX_XMP = _JPEG_MAX_EXIF - len(b"http://ns.adobe.com/xap/1.0/\0")


def fit_to_format(fmt: str, path: Path, dpi: tuple[float, float] | None, exif: bytes | None, xmp: bytes | None,
                  icc_profile: bytes | None = None, text: dict[str, str] | None = None,
                  png_colour: dict[str, bytes] | None = None
                  ) -> tuple[tuple[float, float] | None, bytes | None, bytes | None]:
    """(dpi, exif, xmp) with each one `fmt` cannot hold left out (None), named in a warning for
    `path` that says which format keeps it: an encoder would fail on it once the work is done, or
    (a BMP, which holds its DPI alone) leave it out silently, a wide-gamut photo's colour profile
    with it. The warnings point at `save_image`'s caller. A PNG's colour chunks that say more than
    sRGB (`_png_colour_lost`) are named where `fmt` is not PNG, the one format that holds them."""
    if fmt != "PNG" and (lost_colour := _png_colour_lost(png_colour, icc_profile)):
        them = "it" if len(lost_colour) == 1 else "them"
        one = len(lost_colour) == 1
        warn_caller(f"{path}: its PNG {' and '.join(lost_colour)}, which {'says' if one else 'say'} how its colours "
                    f"are coded, {'is' if one else 'are'} left out: {fmt} cannot hold {them} (save it as .png to keep "
                    f"{them})")
    if fmt not in METADATA_FORMATS:
        lost = [what for what, value in (("ICC profile", icc_profile), ("EXIF", exif), ("XMP", xmp), ("text", text))
                if value]
        if lost:
            them = "it" if len(lost) == 1 else "them"
            warn_caller(f"{path}: its {', '.join(lost)} {'is' if len(lost) == 1 else 'are'} left out: {fmt} cannot "
                        f"hold {them} (save it as .png or .tif to keep {them})")
        exif = xmp = None
    if dpi and max(dpi) > _MAX_DPI.get(fmt, max(dpi)):
        warn_caller(f"{path}: {fmt} holds at most {_MAX_DPI[fmt]:.0f} DPI, not {max(dpi):.0f}: it is written "
                    "without one (save it as .tif to keep it)")
        dpi = None
    if fmt == "JPEG" and exif and len(exif) > _JPEG_MAX_EXIF:
        warn_caller(f"{path}: its EXIF is {len(exif)} bytes, over the {_JPEG_MAX_EXIF} a JPEG holds: it is written "
                    "without it (save it as .png or .tif to keep it)")
        exif = None
    if fmt == "JPEG" and xmp and len(xmp) > _JPEG_MAX_XMP:
        warn_caller(f"{path}: its XMP is {len(xmp)} bytes, over the {_JPEG_MAX_XMP} a JPEG holds: it is written "
                    "without it (save it as .png, .tif or .webp to keep it)")
        xmp = None
    return dpi, exif, xmp


# formats Pillow writes an ICC profile, EXIF and DPI to (WebP's DPI: in its EXIF alone)
METADATA_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
_DPI_IN_EXIF_ALONE = ("WEBP",)


def metadata_params(fmt: str, icc_profile: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None,
                    xmp: bytes | None = None, text: dict[str, str] | None = None,
                    png_colour: dict[str, bytes] | None = None) -> dict[str, object]:
    """Pillow's save keywords that write this metadata in the fields `fmt` has for it."""
    if fmt == "BMP":                      # its print size alone (else Pillow's 96 DPI is written)
        return {"dpi": dpi} if dpi else {}
    if fmt not in METADATA_FORMATS:
        return {}
    tags = {_XMP: xmp} if xmp and fmt == "TIFF" else {}      # a TIFF's XMP is a tag of its directory
    written = _with_resolution(exif, dpi, tags) if exif or tags or (dpi and fmt in _DPI_IN_EXIF_ALONE) else None
    params = {"icc_profile": icc_profile, "dpi": dpi,
              "exif": _with_interop_nested(written) if written and fmt == "TIFF" else written,
              "xmp": xmp if fmt in ("JPEG", "WEBP") else None,
              "pnginfo": _png_info(text, xmp, png_colour) if fmt == "PNG" else None}
    return {k: v for k, v in params.items() if v}


_XMP = 700


def _png_info(text: dict[str, str] | None, xmp: bytes | None,
              png_colour: dict[str, bytes] | None = None) -> PngImagePlugin.PngInfo | None:
    """`text` (international text, iTXt, kept so with its language) and `xmp` as PNG text chunks,
    and the colour chunks (`png_colour`; Pillow writes them before the palette and the pixels, and
    no sRGB where it writes an ICC profile, which the PNG specification says overrides it)."""
    if not text and not xmp and not png_colour:
        return None
    info = PngImagePlugin.PngInfo()
    for kind, data in (png_colour or {}).items():
        info.add(kind.encode("ascii"), data)
    for key, value in (text or {}).items():
        info.add_text(key, value, zip=_compressible_text(value))
    if xmp:
        info.add_itxt(_PNG_XMP, xmp.decode("utf-8", "replace"))
    return info


def _compressible_text(value: str) -> bool:
    """Whether a PNG text is written compressed (zTXt or iTXt): a long one, but none past Pillow's
    MAX_TEXT_CHUNK (1 MiB), which it refuses to decompress on reading (the output would not open
    again); it reads such a text uncompressed, as the input held it. Counted in UTF-8, at least
    the bytes of the chunk's own encoding."""
    return 1024 < len(value.encode("utf-8", "surrogatepass")) <= PngImagePlugin.MAX_TEXT_CHUNK


# A PNG's keywords that name the picture's author, rights and subject, and their EXIF tags (as
# exiftool maps them): a PNG upscaled to JPEG, WebP or TIFF keeps them there. Description before Title:
# both would be the one ImageDescription.
_PNG_TEXT_AS_EXIF = (("Author", 0x013B), ("Copyright", 0x8298), ("Description", 0x010E), ("Title", 0x010E))


def exif_with_png_text(exif: bytes | None, text: dict[str, str]) -> bytes | None:
    """`exif` with a PNG's Author, Copyright and Description (or Title) where it has no such tag
    of its own: a format without PNG text chunks carries them there."""
    out = Image.Exif()
    if exif:
        out.load(exif)
    added = False
    for key, tag in _PNG_TEXT_AS_EXIF:
        if text.get(key) and not out.get(tag):
            out[tag], added = text[key], True
    return exif_bytes(out) if added else exif


def _with_resolution(exif: bytes | None, dpi: tuple[float, float] | None, tags: dict[int, bytes]) -> bytes:
    """The EXIF to write, its resolution the DPI written (a JPEG holds both, and must agree), with
    `tags` added to its first directory."""
    out = Image.Exif()
    if exif:
        out.load(exif)
    if dpi:
        out[_X_RESOLUTION], out[_Y_RESOLUTION], out[_RESOLUTION_UNIT] = dpi[0], dpi[1], 2
    out.update(tags)
    return exif_bytes(out)


def _with_interop_nested(exif: bytes) -> Image.Exif:
    """`exif` for Pillow's TIFF writer, its Interoperability directory (an Adobe RGB photo's index
    'R03', which says its colours are Adobe RGB where no ICC profile does) held inside the Exif
    directory: the writer writes that directory from its values, and wrote the pointer to the
    Interoperability one as a number, an offset into the EXIF block, which in the TIFF points at
    other bytes."""
    out = Image.Exif()
    out.load(exif)
    if ExifTags.IFD.Exif in out and ExifTags.IFD.Interop in (inner := out.get_ifd(ExifTags.IFD.Exif)):
        inner[ExifTags.IFD.Interop] = out.get_ifd(ExifTags.IFD.Interop)
    return out


def exif_bytes(exif: Image.Exif) -> bytes:
    """`exif` as bytes to write, its tags of the EXIF type UNDEFINED kept so (`keep_undefined_types`)."""
    data = io.BytesIO(exif.tobytes())
    keep_undefined_types(data, 6 if data.getvalue().startswith(b"Exif\0\0") else 0)
    return data.getvalue()


def keep_undefined_types(f: BinaryIO, start: int = 0) -> None:
    """Give the tags of the Exif and GPS directories that the EXIF standard types UNDEFINED their
    type back, in the TIFF structure at `start` of `f` (an EXIF block, or a TIFF file Pillow wrote):
    Pillow writes those directories again from their values alone, and types bytes BYTE, which
    breaks the standard for a maker note or a user comment (readers skip them, or cannot parse the
    maker note). Both types are a byte a unit, so the type field alone changes."""
    f.seek(start)
    order = "<" if f.read(2) == b"II" else ">"

    def read(fmt: str, at: int) -> tuple[int, ...]:
        f.seek(start + at)
        return struct.unpack(order + fmt, f.read(struct.calcsize(order + fmt)))

    def entries(ifd: int) -> list[tuple[int, int, int]]:
        """(tag, type, offset of the entry) of each entry of the directory at `ifd`."""
        found = []
        for at in range(ifd + 2, ifd + 2 + 12 * read("H", ifd)[0], 12):
            tag, kind = read("HH", at)
            found.append((tag, kind, at))
        return found

    for tag, _, at in entries(read("L", 4)[0]):
        for inner, kind, inner_at in entries(read("L", at + 8)[0]) if tag in _UNDEFINED_TAGS else []:
            if kind == _BYTE and inner in _UNDEFINED_TAGS[tag]:
                f.seek(start + inner_at + 2)
                f.write(struct.pack(order + "H", _UNDEFINED))


_BYTE, _UNDEFINED = 1, 7
# the tags the EXIF standard (2.32) types UNDEFINED, by the directory that holds them: Exif
# (versions, components, MakerNote, UserComment, OECF, spatial frequency response, file source,
# scene type, CFA pattern, device settings), GPS (processing method, area information)
_UNDEFINED_TAGS: dict[int, tuple[int, ...]] = {
    ExifTags.IFD.Exif: (0x9000, 0xA000, 0x9101, 0x927C, 0x9286, 0x8828, 0xA20C, 0xA300, 0xA301, 0xA302, 0xA40B),
    ExifTags.IFD.GPSInfo: (0x001B, 0x001C)}


def tiff16_exif(exif: bytes | None, xmp: bytes | None, path: Path) -> Image.Exif | None:
    """`exif` for a 16-bit colour TIFF: tifffile writes its first directory's text tags alone, so
    a warning names what is left out (the Exif and GPS directories, the XMP)."""
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    lost = [("Exif or GPS directory", "camera settings and location")] \
        if tags.get_ifd(ExifTags.IFD.Exif) or tags.get_ifd(ExifTags.IFD.GPSInfo) else []
    lost += [("XMP", "XMP")] if xmp else []
    if lost:
        warn_caller(f"{path}: a 16-bit TIFF is written by tifffile, which writes no {' or '.join(a for a, _ in lost)}, "
                    f"so it leaves out the input's {' and '.join(b for _, b in lost)}; save it as .png to keep them")
    return tags if exif else None


def png_metadata_chunks(params: dict[str, object]) -> bytes:
    """The chunks Pillow writes for `params` (ICC profile, EXIF, DPI: `metadata_params`), taken
    from a 1x1 PNG of its own, so that metadata is written one way whatever the pixels."""
    if not params:
        return b""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG", **params)
    return b"".join(chunk for kind, chunk in png16.chunks(buf.getvalue()) if kind not in png16.PIXEL_CHUNKS)
