"""Image loading/saving: modes, orientation, damaged files, size limits, atomic writes."""
from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignvar_edge.errors import InputError, OutputExistsError
from alignvar_edge.images import (as_float_image, bits_per_sample, file_metadata, from_tensor, list_images, load_image,
                                 save_image, to_tensor)


def _read(path: Path) -> Image.Image:
    """Open, decode and close (tests must not leak file handles)."""
    with Image.open(path) as im:
        im.load()
        return im


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height but whose pixel data is garbage."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"garbage") + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


# Adam7's passes: (first column, first row, column step, row step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


# PNG colour type of 16-bit samples by samples a pixel: gray+alpha, RGB, RGBA
_COLOUR_TYPES = {2: 4, 3: 2, 4: 6}


def _paeth(a: int, b: int, c: int) -> int:
    """The PNG specification's Paeth predictor (section 9.4), as it is written there."""
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _predictor(kind: int, a: int, b: int, c: int) -> int:
    """Filter type `kind`'s prediction of a byte from its left (a), upper (b), upper-left (c) bytes."""
    return (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]


def _png16(path: Path, samples: np.ndarray, interlaced: bool = False, icc: bytes = b"",
           filters: tuple[int, ...] = (0,), chunks: bytes = b"") -> None:
    """A 16-bit PNG of HxWxC `samples` (C: 2 gray+alpha, 3 RGB, 4 RGBA) written here byte by byte
    by the specification (Pillow cannot write one): row n filtered with filters[n % len], Adam7
    passes when interlaced, `chunks` (already framed) before the pixels."""
    s = np.asarray(samples).astype(">u2")
    bpp = 2 * s.shape[2]
    passes = [s[y0::dy, x0::dx] for x0, y0, dx, dy in _ADAM7] if interlaced else [s]
    rows = []
    for p in (p for p in passes if p.size):
        prior = bytes(p.shape[1] * bpp)                         # each pass starts from a zero row
        for row in p:
            kind, line = filters[len(rows) % len(filters)], row.tobytes()
            rows.append(bytes([kind]) + bytes(
                (x - _predictor(kind, line[i - bpp] if i >= bpp else 0, prior[i],
                                prior[i - bpp] if i >= bpp else 0)) & 255 for i, x in enumerate(line)))
            prior = line
    ihdr = struct.pack(">IIBBBBB", s.shape[1], s.shape[0], 16, _COLOUR_TYPES[s.shape[2]], 0, 0, int(interlaced))
    iccp = _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)) if icc else b""
    body = (_png_chunk(b"IHDR", ihdr) + iccp + chunks + _png_chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + _png_chunk(b"IEND", b""))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _png_la16(path: Path, gray: np.ndarray, alpha: np.ndarray, interlaced: bool = False, icc: bytes = b"") -> None:
    """A 16-bit gray+alpha PNG (`_png16`)."""
    _png16(path, np.stack([gray, alpha], axis=2), interlaced, icc)


def _png16_samples(path: Path) -> tuple[tuple[int, int], np.ndarray]:
    """((bit depth, colour type), HxWxC samples) of a non-interlaced 16-bit PNG, decoded here
    (every filter, CRCs checked) so that a file's validity does not rest on the code under test."""
    data, pos, idat = path.read_bytes(), 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(data[pos + 4:pos + 8 + n])
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[pos + 8:pos + 21])
        idat += data[pos + 8:pos + 8 + n] if kind == b"IDAT" else b""
        pos += 12 + n
    assert interlace == 0
    if depth != 16 or colour not in _COLOUR_TYPES.values():
        return (depth, colour), np.zeros(0)
    channels = {v: k for k, v in _COLOUR_TYPES.items()}[colour]
    raw, bpp = zlib.decompress(idat), 2 * channels
    stride = width * bpp
    prev, out = [0] * stride, []
    for y in range(height):
        kind, line, cur = raw[y * (stride + 1)], raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], [0] * stride
        for i in range(stride):
            a, b, c = (cur[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
            cur[i] = (line[i] + _predictor(kind, a, b, c)) & 255
        out.append(cur)
        prev = cur
    return (depth, colour), np.array(out, np.uint8).view(">u2").reshape(height, width, channels)


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    Image.fromarray(u8).save(tmp_path / "a.png")
    rgb, alpha = load_image(tmp_path / "a.png")
    assert rgb.dtype == np.float32 and rgb.shape == (17, 23, 3) and alpha is None
    np.testing.assert_array_equal(np.round(rgb * 255).astype(np.uint8), u8)

    out = save_image(tmp_path / "b.png", rgb)
    np.testing.assert_array_equal(np.asarray(_read(out)), u8)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Landscape 80x40 with a white block at the top-left; orientation 6 = rotate 90 deg clockwise.
    u8 = np.zeros((40, 80, 3), np.uint8)
    u8[:10, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(u8).save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert _read(tmp_path / "r.jpg").getexif()[0x0112] == 6

    rgb, _ = load_image(tmp_path / "r.jpg")
    assert rgb.shape == (80, 40, 3)  # now portrait
    assert rgb[:10, -10:].mean() > 0.95  # block moved to the top-right
    assert rgb[:10, :10].mean() < 0.05


def _phone_photo(path: Path) -> None:
    """A phone's photo held as its sensor reads (landscape 8x4, white block top-left) with EXIF
    orientation 6 (turn 90 degrees clockwise to show it: portrait), its camera, date, GPS, width
    and height, at 72 DPI."""
    u8 = np.zeros((4, 8, 3), np.uint8)
    u8[:2, :2] = 255
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Phone"
    exif[0x8769] = {0x9003: "2024:05:06 07:08:09", 0xA002: 8, 0xA003: 4}     # date taken, width, height
    exif[0x8825] = {1: "N"}                                                   # GPS latitude ref
    Image.fromarray(u8).save(path, exif=exif.tobytes(), dpi=(72, 72))


def _check_upright_with_exif_and_dpi(path: Path, dpi: float) -> None:
    """`path` is the phone photo x4, shown upright as stored, with the photo's EXIF, `dpi` DPI."""
    with Image.open(path) as im:
        exif = im.getexif()
        assert im.size == (16, 32) and exif.get(0x0112, 1) == 1         # portrait, nothing to turn
        assert exif[0x010F] == "Phone" and exif.get_ifd(0x8825) == {1: "N"}
        assert exif.get_ifd(0x8769) == {0x9003: "2024:05:06 07:08:09"}  # not the input's size
        assert 0x0111 not in exif or im.format == "TIFF"                  # nor a TIFF's strip offsets
        assert float(exif[282]) == pytest.approx(dpi, rel=1e-4) and exif[296] == 2
        if im.format != "WEBP":                                          # WebP's DPI is its EXIF's
            assert im.info["dpi"] == pytest.approx((dpi, dpi), rel=1e-4)
    px = load_image(path)[0]
    assert px[:8, -8:].mean() > px[:8, :8].mean() + 0.5 and px[:8, :8].mean() < 0.2   # the block is top-right


def test_exif_and_dpi_are_carried_with_the_orientation_applied(tmp_path: Path) -> None:
    """`load_image` turns the pixels upright, so the EXIF written drops the orientation (else a
    viewer turns the photo again); it keeps the camera, date and GPS, not the input's size or
    TIFF layout; the DPI is 4x: 4x the pixels over the same print size."""
    for src in (tmp_path / "phone.jpg", tmp_path / "phone.tif"):
        _phone_photo(src)
        rgb, _ = load_image(src)
        big = np.repeat(np.repeat(rgb, 4, axis=0), 4, axis=1)
        meta = file_metadata(src, 4)
        for ext in ("png", "jpg", "tif", "webp"):
            _check_upright_with_exif_and_dpi(save_image(tmp_path / f"{src.stem}-{src.suffix[1:]}.{ext}", big, **meta),
                                             288.0)


def test_phone_photos_as_pil_images_in_one_upscale_many_call_are_warned_about_once(tmp_path: Path,
                                                                                    one_torch_thread) -> None:
    """PIL images whose EXIF says to turn them are taken as held, with one line saying how to turn
    them: it came once per image, so a folder of 500 phone photos printed 500 lines. A batch says it
    once, whatever orientations its photos have, and under "always" too: warnings' own once per text
    and line is not what gives one line."""
    from alignvar_edge import runtimes
    _phone_photo(tmp_path / "six.jpg")
    with Image.open(tmp_path / "six.jpg") as six:
        exif = six.getexif()
        exif[0x0112] = 8
        six.save(tmp_path / "eight.jpg", exif=exif.tobytes())
    with runtimes.load("alignvar-tiny") as engine, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        photos = [Image.open(tmp_path / name) for name in ("six.jpg", "six.jpg", "eight.jpg")]
        assert [im.size for im in engine.upscale_many(photos)] == [(32, 16)] * 3     # as held
        for im in photos:
            im.close()
    assert [str(w.message).split(",")[0] for w in said] == ["this PIL image has EXIF orientation 6"]


def test_16_bit_and_cmyk_pil_images_in_one_upscale_many_call_are_warned_about_once(tmp_path: Path,
                                                                                    one_torch_thread) -> None:
    """A PIL image of a 16-bit colour PNG or TIFF (8 bits a sample in PIL) or a CMYK one with an
    unusable profile is said once per batch, as the orientation is, under "always" too: each line came
    once per image. The 16-bit line names no one format: it stands for the PNGs and TIFFs alike."""
    from alignvar_edge import runtimes
    _png16(tmp_path / "c16.png", np.full((4, 4, 3), 1000, np.uint16))
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "c16.tif", np.full((4, 4, 3), 1000, np.uint16), photometric="rgb")
    Image.new("CMYK", (4, 4), (20, 200, 30, 10)).save(tmp_path / "cmyk.jpg", icc_profile=bytes(16) + b"CMYK" + bytes(108))
    with runtimes.load("alignvar-tiny") as engine, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        images = [Image.open(tmp_path / name) for name in ("c16.png", "cmyk.jpg", "c16.tif") * 2]
        assert len(list(engine.upscale_many(images))) == 6
        for im in images:
            im.close()
    assert sorted(str(w.message).split(" holds")[0].split(" colour profile")[0] for w in said) == \
        ["a PIL image of a 16-bit colour or gray+alpha file", "this CMYK PIL image's"]


def test_an_adobe_rgb_photos_interoperability_index_is_kept_in_every_format(tmp_path: Path) -> None:
    """A camera's Adobe RGB JPEG says so with ColorSpace 'uncalibrated' and the Interoperability
    index 'R03', without an ICC profile. A TIFF output kept the first and lost the second: Pillow's
    TIFF writer wrote the pointer to its directory as a number that pointed at other bytes."""
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    exif[0x8769] = {0xA001: 0xFFFF, 0xA005: {1: "R03"}}        # ColorSpace uncalibrated; its Interop directory
    Image.new("RGB", (3, 2)).save(tmp_path / "in.jpg", exif=exif)
    meta = file_metadata(tmp_path / "in.jpg", 4)
    for ext in ("tif", "jpg", "png", "webp"):
        with Image.open(save_image(tmp_path / f"out.{ext}", np.zeros((8, 12, 3)), **meta)) as out:
            written = out.getexif()
            assert written.get_ifd(0x8769).get(0xA001) == 0xFFFF, ext
            assert written.get_ifd(0xA005) == {1: "R03"}, ext


def test_a_tiff_without_a_resolution_gets_none_not_4_dpi(tmp_path: Path) -> None:
    """Pillow reports (1, 1) DPI for a TIFF with no resolution tags: its x4 result said 4 DPI, a
    print 4 times the size of its input's on a 72 DPI default. A TIFF that gives one keeps it x4."""
    Image.new("RGB", (3, 2)).save(tmp_path / "none.tif")
    Image.new("RGB", (3, 2)).save(tmp_path / "given.tif", dpi=(300, 300))
    assert file_metadata(tmp_path / "none.tif", 4)["dpi"] is None
    assert file_metadata(tmp_path / "given.tif", 4)["dpi"] == pytest.approx((1200.0, 1200.0))
    save_image(tmp_path / "out.tif", np.zeros((8, 12, 3)), **file_metadata(tmp_path / "none.tif", 4))
    with Image.open(tmp_path / "out.tif") as out:
        assert 282 not in out.tag_v2                                  # XResolution: none written


@pytest.mark.parametrize(("resolution", "dpi"), [({282: 1.0, 283: 1.0, 296: 1}, None), ({282: 300.0, 283: 300.0}, 1200.0),
                                               ({282: 100.0, 283: 100.0, 296: 3}, 1016.0), ({0x010F: "Cam"}, None)],
                         ids=["unit-1-none", "no-unit-inch", "centimetre", "no-resolution"])
def test_a_jpegs_dpi_is_its_exifs_by_the_exif_units(tmp_path: Path, resolution: dict[int, object],
                                                   dpi: float | None) -> None:
    """Pillow's DPI of a JPEG whose JFIF header gives none is made from its EXIF: ResolutionUnit 1
    (no unit, an aspect ratio) was taken for inches, 4 DPI written to the x4 JPEG and PNG; an EXIF
    without a unit or a resolution gave 72, so 288 written. Now no DPI where the EXIF gives none,
    as for a TIFF; inches where it gives no unit (the EXIF default)."""
    exif = Image.Exif()
    exif.update(resolution)
    Image.new("RGB", (3, 2)).save(tmp_path / "in.jpg", exif=exif)
    meta = file_metadata(tmp_path / "in.jpg", 4)
    assert meta["dpi"] == (None if dpi is None else pytest.approx((dpi, dpi)))
    with Image.open(save_image(tmp_path / "out.png", np.zeros((8, 12, 3)), **meta)) as out:
        assert out.info.get("dpi") == (None if dpi is None else pytest.approx((dpi, dpi), rel=1e-4))
    with Image.open(save_image(tmp_path / "out.jpg", np.zeros((8, 12, 3)), **meta)) as out:
        # the JFIF header's (Pillow reads the EXIF's too, and makes 72 of none)
        assert out.info["jfif_unit"] == (0 if dpi is None else 1)
        assert out.info["jfif_density"] == ((1, 1) if dpi is None else (round(dpi), round(dpi)))


def test_a_resolution_tag_that_is_not_a_number_is_no_dpi(tmp_path: Path) -> None:
    """EXIF resolution tags holding text (a damaged or odd file whose pixels are fine) raised
    ValueError from float(), a traceback that ended a folder run."""
    def entry(tag: int) -> bytes:
        return struct.pack("<HHI4s", tag, 2, 4, b"abc\x00")                   # type 2: ASCII
    exif = b"II*\x00" + struct.pack("<IH", 8, 2) + entry(282) + entry(283) + struct.pack("<I", 0)
    Image.new("RGB", (3, 2)).save(tmp_path / "a.png", exif=exif)
    assert file_metadata(tmp_path / "a.png", 4)["dpi"] is None


@pytest.mark.parametrize(("ext", "dpi"), [("jpg", 80000.0), ("png", 2e8), ("bmp", 2e8)])
def test_a_dpi_past_what_the_format_holds_is_left_out_with_a_warning(tmp_path: Path, ext: str, dpi: float) -> None:
    """x4 of a microscope's or film scanner's resolution: JPEG wrote 80000 DPI as 14464 (16 bits),
    PNG and BMP raised OverflowError once the work was done."""
    with pytest.warns(UserWarning, match=rf"out\.{ext}: \w+ holds at most \d+ DPI, not {dpi:.0f}: it is written "
                                         r"without one \(save it as \.tif to keep it\)"):
        save_image(tmp_path / f"out.{ext}", np.zeros((2, 3, 3)), dpi=(dpi, dpi))
    written = file_metadata(tmp_path / f"out.{ext}")["dpi"]
    assert written is None if ext != "bmp" else written == pytest.approx((96.0, 96.0), rel=1e-3)  # BMP: Pillow's
    save_image(tmp_path / "out.tif", np.zeros((2, 3, 3)), dpi=(dpi, dpi))
    assert file_metadata(tmp_path / "out.tif")["dpi"] == pytest.approx((dpi, dpi))


def test_a_tiffs_layout_description_is_not_carried_and_a_picture_one_is(tmp_path: Path) -> None:
    """ImageDescription holding the input's layout (tifffile's shape, ImageJ's page count) was
    carried, so tifffile warned the result's "shaped series shape does not match page shape"."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "shaped.tif", np.zeros((2, 3, 3), np.uint8), photometric="rgb")
    Image.new("RGB", (3, 2)).save(tmp_path / "imagej.tif", description="ImageJ=1.54f\nimages=5\nslices=5\n")
    Image.new("RGB", (3, 2)).save(tmp_path / "sunset.tif", description="Sunset over the bay")
    assert file_metadata(tmp_path / "imagej.tif", 4)["exif"] is None
    for name, want in (("shaped.tif", {305: "tifffile.py"}), ("sunset.tif", {270: "Sunset over the bay"})):
        exif = Image.Exif()
        exif.load(file_metadata(tmp_path / name, 4)["exif"])
        assert dict(exif) == want, name                              # Software is the picture's


def test_exif_without_an_exif_directory_gets_none_and_no_warning_in_a_16_bit_tiff(tmp_path: Path) -> None:
    """The Exif directory's width and height were removed through get_ifd, which adds an empty
    directory where there is none: every result carried one, and a 16-bit TIFF warned that its
    (empty) camera settings were left out."""
    pytest.importorskip("tifffile")
    import warnings
    exif = Image.Exif()
    exif[0x010F] = "a camera"
    Image.new("RGB", (3, 2)).save(tmp_path / "a.jpg", exif=exif.tobytes())
    carried = Image.Exif()
    carried.load(file_metadata(tmp_path / "a.jpg", 4)["exif"])
    assert dict(carried) == {0x010F: "a camera"}                    # no Exif directory pointer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_image(tmp_path / "out.tif", np.zeros((8, 12, 3)), bits=16, **file_metadata(tmp_path / "a.jpg", 4))


def test_a_bmp_keeps_its_dpi_x4(tmp_path: Path) -> None:
    """A BMP result was written at Pillow's 96 DPI whatever the input's: a print 4 times as big."""
    Image.new("RGB", (3, 2)).save(tmp_path / "in.bmp", dpi=(150, 150))
    save_image(tmp_path / "out.bmp", np.zeros((8, 12, 3)), **file_metadata(tmp_path / "in.bmp", 4))
    with Image.open(tmp_path / "out.bmp") as out:
        assert out.info["dpi"] == pytest.approx((600.0, 600.0), rel=1e-3)   # whole dots a metre


def test_a_16_bit_gray_alpha_png_keeps_its_gray_profile(tmp_path: Path) -> None:
    """The profile is read from the header: Pillow's getexif decodes a PNG without EXIF first,
    and then the file looks like the 8-bit RGBA Pillow makes of it, which a gray profile does
    not describe."""
    from PIL import ImageCms
    rgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gray_icc = rgb_icc[:16] + b"GRAY" + rgb_icc[20:]             # the header says what it describes
    _png_la16(tmp_path / "la16.png", *np.zeros((2, 3, 4), np.uint16), icc=gray_icc)
    assert file_metadata(tmp_path / "la16.png")["icc_profile"] == gray_icc


def test_exif_pillow_cannot_write_back_is_dropped_with_a_warning(tmp_path: Path, monkeypatch) -> None:
    _phone_photo(tmp_path / "phone.jpg")

    def fails(self, offset=8):
        raise struct.error("bad maker note")
    monkeypatch.setattr(Image.Exif, "tobytes", fails)
    with pytest.warns(UserWarning, match=r"phone\.jpg: its EXIF cannot be copied \(bad maker note\)"):
        meta = file_metadata(tmp_path / "phone.jpg", 4)
    assert meta["exif"] is None and meta["dpi"] == (288.0, 288.0)


def test_16bit_gray_png_keeps_precision(tmp_path: Path) -> None:
    values = np.array([[0, 1, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert _read(tmp_path / "g16.png").mode.startswith("I;16")
    rgb, alpha = load_image(tmp_path / "g16.png")
    assert alpha is None and rgb.shape == (1, 4, 3)
    np.testing.assert_allclose(rgb[0, :, 0], values[0] / 65535.0, rtol=0, atol=1e-7)
    assert rgb[0, 1, 0] > 0  # a 1/65535 step survives (8-bit would round it to 0)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_save_16_bit_gray_png_and_tiff_8_bit_elsewhere(tmp_path: Path) -> None:
    gray = np.array([[0.0, 1 / 65535, 0.5, 1.0]], np.float32)
    for name in ("g.png", "g.tif"):
        save_image(tmp_path / name, gray, bits=16)
        np.testing.assert_array_equal(np.asarray(_read(tmp_path / name)), [[0, 1, 32768, 65535]])
    with pytest.warns(UserWarning, match=r"^JPEG holds 8 bits a sample: .*g\.jpg is written with 8 of its 16"):
        save_image(tmp_path / "g.jpg", gray, bits=16)               # JPEG: 8 bits, said
    assert _read(tmp_path / "g.jpg").mode == "L"
    save_image(tmp_path / "rgb.png", np.stack([gray] * 3, axis=2), bits=16)   # 16-bit RGB: written here
    kind, samples = _png16_samples(tmp_path / "rgb.png")
    assert kind == (16, 2) and samples[0, :, 2].tolist() == [0, 1, 32768, 65535]
    with pytest.raises(InputError, match="bits must be 8 or 16"):
        save_image(tmp_path / "x.png", gray, bits=12)
    assert bits_per_sample(tmp_path / "g.png") == 16 and bits_per_sample(tmp_path / "g.jpg") == 8


@pytest.mark.parametrize("interlaced", [False, True])
def test_a_16_bit_gray_alpha_png_keeps_16_bits_in_and_out(tmp_path: Path, interlaced: bool) -> None:
    """Pillow has no 16-bit gray+alpha mode: it read such a PNG as 8-bit RGBA, and `upscale` wrote
    8-bit RGBA back. Read and written as 16-bit gray+alpha now; TIFF, which Pillow cannot write
    so, is 8-bit with a one-line warning."""
    rng = np.random.default_rng(3)
    gray, alpha = (rng.integers(0, 65536, (9, 11)).astype(np.uint16) for _ in range(2))
    gray[0, :2], alpha[0, :2] = (0, 1), (65535, 1)                # a 1/65535 step: lost in 8 bits
    _png_la16(tmp_path / "la16.png", gray, alpha, interlaced)
    assert bits_per_sample(tmp_path / "la16.png") == 16
    rgb, a = load_image(tmp_path / "la16.png")
    np.testing.assert_array_equal(np.round(rgb * 65535), np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(np.round(a * 65535), alpha)

    save_image(tmp_path / "out.png", rgb[..., 0], a, bits=16)
    kind, samples = _png16_samples(tmp_path / "out.png")
    assert kind == (16, 4)                                        # 16-bit gray+alpha, not 8-bit RGBA
    np.testing.assert_array_equal(samples, np.stack([gray, alpha], axis=2))
    with pytest.warns(UserWarning, match=r"cannot write 16-bit gray\+alpha TIFF: .*out\.tif .*as \.png"):
        save_image(tmp_path / "out.tif", rgb[..., 0], a, bits=16)
    assert _read(tmp_path / "out.tif").mode == "LA"


_FILTERS = [(0,), (1,), (2,), (3,), (4,), (4, 3, 2, 1, 0)]    # none, Sub, Up, Average, Paeth, all


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("filters", _FILTERS, ids=["none", "sub", "up", "average", "paeth", "mixed"])
def test_a_16_bit_colour_png_keeps_every_bit_whatever_its_filters(tmp_path: Path, channels: int,
                                                                   filters: tuple[int, ...]) -> None:
    """Pillow read 16-bit RGB(A) PNGs with 8 bits, and `upscale` wrote 8 bits back, silently. The
    file is written here by the specification, every row with the filter under test; what is
    read must be the samples written. No other reader installed reads 16-bit colour PNGs
    (imageio and scikit-image go through Pillow), so Pillow's own 8-bit reading checks the high
    bytes, and this file's decoder the file."""
    rng = np.random.default_rng(channels * 10 + len(filters) + filters[0])
    samples = rng.integers(0, 65536, (9, 11, channels)).astype(np.uint16)
    samples[0, 0, :3], samples[0, 1, :3] = 0, 1                     # a 1/65535 step: lost in 8 bits
    _png16(tmp_path / "c16.png", samples, filters=filters)
    assert _png16_samples(tmp_path / "c16.png")[1].tolist() == samples.tolist()   # the helpers agree
    assert bits_per_sample(tmp_path / "c16.png") == 16
    rgb, alpha = load_image(tmp_path / "c16.png")
    got = np.round(np.dstack([rgb] + ([alpha] if alpha is not None else [])) * 65535)
    np.testing.assert_array_equal(got, samples)
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "c16.png")), samples >> 8)


@pytest.mark.parametrize("channels", [3, 4])
def test_an_interlaced_16_bit_colour_png_keeps_every_bit(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    samples = rng.integers(0, 65536, (13, 10, channels)).astype(np.uint16)
    _png16(tmp_path / "c16.png", samples, interlaced=True, filters=(4, 3, 2, 1, 0))
    rgb, alpha = load_image(tmp_path / "c16.png")
    got = np.round(np.dstack([rgb] + ([alpha] if alpha is not None else [])) * 65535)
    np.testing.assert_array_equal(got, samples)


def test_a_16_bit_rgb_png_keeps_its_colour_key_and_is_turned_upright(tmp_path: Path) -> None:
    """A tRNS chunk's 16-bit colour key made nothing transparent (Pillow compared 8-bit pixels with
    it); EXIF orientation turns the 16-bit pixels as it turns 8-bit ones."""
    rng = np.random.default_rng(7)
    samples = rng.integers(0, 65536, (5, 8, 3)).astype(np.uint16)
    samples[1, 2] = samples[4, 7] = key = np.array([1000, 1001, 1002], np.uint16)
    samples[3, 3] = [1000, 1001, 1003]                              # one bit off the key: opaque
    exif = Image.Exif()
    exif[0x0112] = 6                                                # turn 90 degrees clockwise
    chunks = _png_chunk(b"tRNS", key.astype(">u2").tobytes()) + _png_chunk(b"eXIf", exif.tobytes()[6:])
    _png16(tmp_path / "key.png", samples, filters=(4,), chunks=chunks)
    rgb, alpha = load_image(tmp_path / "key.png")
    upright = np.rot90(samples, k=-1)
    np.testing.assert_array_equal(np.round(rgb * 65535), upright)
    assert alpha is not None
    np.testing.assert_array_equal(alpha == 0, (upright == key).all(axis=2))
    assert alpha.sum() == alpha.size - 2


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_is_written_as_a_16_bit_png_with_its_metadata(tmp_path: Path, monkeypatch,
                                                                     channels: int) -> None:
    """Pillow cannot write 48- or 64-bit PNGs: they were written 8-bit. Strips of two rows here,
    so that a strip's first row is filtered against the row above it."""
    from PIL import ImageCms

    from alignvar_edge.images import png16
    monkeypatch.setattr(png16, "STRIP_BYTES", 2 * 11 * 2 * channels)
    rng = np.random.default_rng(channels)
    yy, xx = np.mgrid[0:9, 0:11]
    smooth = np.stack([xx * 5000 + yy * 7 + c for c in range(channels)], axis=2)   # Sub, Up, Paeth pay
    samples = np.where(rng.random((9, 11, 1)) < 0.5, smooth, rng.integers(0, 65536, smooth.shape)).astype(np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "a camera"                                       # Make
    rgb, alpha = samples[..., :3] / 65535, samples[..., 3] / 65535 if channels == 4 else None
    save_image(tmp_path / "out.png", rgb, alpha, bits=16, icc_profile=icc, exif=exif.tobytes(), dpi=(288.0, 288.0))
    kind, written = _png16_samples(tmp_path / "out.png")
    assert kind == (16, 2 if channels == 3 else 6)
    np.testing.assert_array_equal(written, samples)
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "out.png")), samples >> 8)   # Pillow agrees
    meta = file_metadata(tmp_path / "out.png")
    assert meta["icc_profile"] == icc and meta["dpi"] == pytest.approx((288.0, 288.0), abs=0.05)  # dots a metre
    carried = Image.Exif()
    carried.load(meta["exif"])
    assert carried[0x010F] == "a camera"


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_is_written_as_a_16_bit_tiff_with_its_icc_and_dpi(tmp_path: Path, monkeypatch,
                                                                       channels: int) -> None:
    """It was written 8-bit with a warning naming .png. tifffile itself reads the file back; strips
    of two rows here, so that the rows come from several strips."""
    tifffile = pytest.importorskip("tifffile")
    from PIL import ImageCms

    from alignvar_edge.images import png16
    monkeypatch.setattr(png16, "STRIP_BYTES", 2 * 11 * 2 * channels)
    samples = np.random.default_rng(channels).integers(0, 65536, (9, 11, channels)).astype(np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "a camera"                                       # Make: the first directory's
    exif.get_ifd(0x8769)[0x829A] = 0.5                              # ExposureTime: the Exif directory's
    rgb, alpha = samples[..., :3] / 65535, samples[..., 3] / 65535 if channels == 4 else None
    with pytest.warns(UserWarning, match=r"out\.tif: .* no Exif or GPS directory, .*save it as \.png"):
        save_image(tmp_path / "out.tif", rgb, alpha, bits=16, icc_profile=icc, exif=exif.tobytes(), dpi=(288.0, 288.0))
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages[0]
        np.testing.assert_array_equal(page.asarray(), samples)
        assert page.dtype == np.uint16 and page.photometric == 2 and len(page.dataoffsets) == 5
        assert tuple(page.extrasamples) == ((2,) if channels == 4 else ())    # unassociated alpha
        assert page.tags["InterColorProfile"].value == icc and page.tags["Make"].value == "a camera"
        assert page.tags["XResolution"].value == (288, 1) and page.tags["ResolutionUnit"].value == 2
        assert page.compression == 8 and page.predictor == 2               # Deflate, horizontal differencing
    with Image.open(tmp_path / "out.tif") as img:                          # libtiff decodes it too (8 bits kept)
        np.testing.assert_array_equal(np.asarray(img), samples >> 8)
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]           # no temporary file left


def test_a_16_bit_tiffs_text_tags_outside_ascii_become_question_marks(tmp_path: Path) -> None:
    """EXIF text in UTF-8 ("©" in a copyright) made tifffile raise "TIFF strings must be 7-bit
    ASCII" once the work was done; Pillow's 8-bit TIFFs write "?" for each byte past ASCII."""
    tifffile = pytest.importorskip("tifffile")
    text = "© 2024 Jürgen".encode() + b"\x00"
    exif = (b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 33432, 2, len(text), 26)
            + struct.pack("<I", 0) + text)                          # Copyright, its UTF-8 bytes
    save_image(tmp_path / "out.tif", np.zeros((2, 3, 3)), bits=16, exif=exif)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.pages[0].tags["Copyright"].value == "?? 2024 J??rgen"


def test_16_bit_colour_tiff_without_tifffile_is_8_bit_with_a_warning_naming_the_fix(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    from alignvar_edge.images import sixteen_bit
    monkeypatch.setattr(sixteen_bit, "is_installed", lambda name: name != "tifffile")
    rgb = np.random.default_rng(3).random((5, 6, 3))
    with pytest.warns(UserWarning, match=r"^tifffile is not installed, so \S*out\.tif is written with 8 bits a "
                                         r"sample; install it \(`pip install 'tifffile>=[0-9.]+'`\) or save it as \.png"):
        save_image(tmp_path / "out.tif", rgb, bits=16)
    out = _read(tmp_path / "out.tif")
    assert out.mode == "RGB" and bits_per_sample(tmp_path / "out.tif") == 8
    np.testing.assert_array_equal(np.asarray(out), np.round(rgb * 255))


def test_16_bit_colour_tiff_with_a_tifffile_too_old_is_8_bit_with_a_warning_naming_the_upgrade(
        tmp_path: Path, monkeypatch) -> None:
    # tifffile before 2024.5.22 has no `iccprofile` argument: the write crashed with a TypeError
    from alignvar_edge.images import sixteen_bit
    monkeypatch.setattr(sixteen_bit, "older_than_required", lambda name: name == "tifffile")
    rgb = np.random.default_rng(3).random((5, 6, 3))
    with pytest.warns(UserWarning, match=r"^tifffile \S+ is older than tifffile>=[0-9.]+, so \S*out\.tif is written "
                                         r"with 8 bits a sample; install it \(`pip install --upgrade 'tifffile>="):
        save_image(tmp_path / "out.tif", rgb, bits=16)
    assert bits_per_sample(tmp_path / "out.tif") == 8


def test_a_16_bit_colour_tiff_keeps_every_bit_with_tifffile_and_is_refused_without(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """Pillow read 16-bit RGB(A) TIFFs with 8 bits (a planar one as noise): tifffile reads them;
    without it they are refused, since Pillow would lose half of each sample."""
    tifffile = pytest.importorskip("tifffile")
    from alignvar_edge.images import sixteen_bit
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    rgba = rng.integers(1, 65536, (5, 7, 4)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "le.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "be.tif", rgb, photometric="rgb", byteorder=">", compression="zlib")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, 2, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    for name, want in [("le.tif", rgb), ("be.tif", rgb), ("planar.tif", rgb), ("rgba.tif", rgba)]:
        assert bits_per_sample(tmp_path / name) == 16
        got, alpha = load_image(tmp_path / name)
        np.testing.assert_array_equal(np.round(np.dstack([got] + ([alpha] if alpha is not None else [])) * 65535),
                                      want, err_msg=name)
    rgba[..., 3] |= 0x8000                                          # alpha >= 1/2: rounding at most doubles
    premultiplied = np.round(rgba[..., :3] * (rgba[..., 3:] / 65535)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "pre.tif", np.dstack([premultiplied, rgba[..., 3]]), photometric="rgb",
                     extrasamples=["assocalpha"])
    got, alpha = load_image(tmp_path / "pre.tif")
    assert np.abs(got * 65535 - rgba[..., :3]).max() <= 1.01 and alpha is not None
    np.testing.assert_array_equal(np.round(alpha * 65535), rgba[..., 3])
    monkeypatch.setattr(sixteen_bit, "is_installed", lambda name: name != "tifffile")
    with pytest.raises(InputError, match=r"^\S*le\.tif: a 16-bit colour TIFF, which Pillow reads with 8 bits, "
                                         r"and tifffile is not installed: install it \(`pip install 'tifffile>=[0-9.]+'`\)"):
        load_image(tmp_path / "le.tif")


@pytest.mark.parametrize("channels", [2, 3])
def test_a_pil_image_of_a_16_bit_colour_or_gray_and_alpha_png_warns_that_it_holds_8_bits(
        tmp_path: Path, channels: int) -> None:
    """Pillow opens a 16-bit gray+alpha PNG as 8-bit RGBA: its upscale came back 8-bit without a
    word, where the file's own upscale keeps 16 bits, as for 16-bit colour."""
    _png16(tmp_path / "16.png", np.full((2, 3, channels), 1000, np.uint16))
    with Image.open(tmp_path / "16.png") as img, pytest.warns(UserWarning) as said:
        as_float_image(img)
    assert [str(w.message) for w in said] == [
        "a PIL image of a 16-bit colour or gray+alpha file holds 8 bits a sample, as Pillow reads it, so its "
        "result does too; pass load_image(path)'s float array to keep 16"]


def test_grayscale_and_la(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgb, alpha = load_image(tmp_path / "g.png")
    assert alpha is None
    for c in range(3):
        np.testing.assert_allclose(rgb[..., c], gray / 255.0, atol=1e-7)

    la = np.stack([gray, np.full_like(gray, 128)], axis=2)
    Image.fromarray(la).save(tmp_path / "la.png")
    rgb, alpha = load_image(tmp_path / "la.png")
    assert alpha is not None and alpha.shape == (3, 4)
    np.testing.assert_allclose(alpha, 128 / 255.0, atol=1e-7)


def test_rgba_alpha_round_trip(tmp_path: Path) -> None:
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(6, dtype=np.uint8) * 50
    Image.fromarray(rgba).save(tmp_path / "a.png")
    rgb, alpha = load_image(tmp_path / "a.png")
    assert alpha is not None
    np.testing.assert_allclose(alpha[0], np.arange(6) * 50 / 255.0, atol=1e-7)
    save_image(tmp_path / "b.png", rgb, alpha)
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "b.png")), rgba)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    img.putdata([0, 0, 1, 1, 0, 1, 0, 1])
    img.save(tmp_path / "p.png")
    rgb, alpha = load_image(tmp_path / "p.png")
    assert alpha is None
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])
    np.testing.assert_allclose(rgb[0, 2], [0, 0, 1])

    img.save(tmp_path / "pt.png", transparency=1)
    rgb, alpha = load_image(tmp_path / "pt.png")
    assert alpha is not None
    np.testing.assert_array_equal(alpha[0], [1, 1, 0, 0])


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    u8 = np.full((16, 16, 3), (200, 50, 30), np.uint8)
    Image.fromarray(u8).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert _read(tmp_path / "c.jpg").mode == "CMYK"
    rgb, alpha = load_image(tmp_path / "c.jpg")
    assert rgb.shape == (16, 16, 3) and alpha is None
    np.testing.assert_allclose(rgb.mean(axis=(0, 1)) * 255, [200, 50, 30], atol=3)


def test_truncated_png_is_input_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.png.*(truncated|corrupt)"):
        load_image(tmp_path / "cut.png")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_a_tiff_whose_next_directory_is_damaged_is_input_error(tmp_path: Path) -> None:
    """Counting a TIFF's frames reads every directory: a damaged second one raised Pillow's
    TypeError ("Missing dimensions"), a traceback that ended a folder run."""
    Image.new("RGB", (6, 6), (200, 10, 10)).save(tmp_path / "a.tif")
    data = bytearray((tmp_path / "a.tif").read_bytes())
    first = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[first:first + 2])[0]
    with Image.open(tmp_path / "a.tif") as im:
        pixels = im.tag_v2[273][0]                                  # StripOffsets
    data[first + 2 + 12 * entries:first + 6 + 12 * entries] = struct.pack("<I", pixels)   # next directory: the pixels
    (tmp_path / "a.tif").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"^\S*a\.tif is truncated or corrupt \(.*\); re-download or re-export"):
        load_image(tmp_path / "a.tif")


def test_text_file_named_png_is_input_error(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(InputError, match=r"notes\.png.*not an image"):
        load_image(tmp_path / "notes.png")


def test_empty_zero_pixel_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "empty.png")
    _png_header_only(tmp_path / "zero.png", 0, 8)  # Pillow itself rejects a 0-wide PNG header
    with pytest.raises(InputError, match=r"zero\.png"):
        load_image(tmp_path / "zero.png")
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


def test_megapixel_limit_checked_before_decoding(tmp_path: Path) -> None:
    # Header says 8000x8000 but the pixel data is garbage: if the loader decoded before checking
    # the size it would report corruption instead of the size.
    _png_header_only(tmp_path / "big.png", 8000, 8000)
    with pytest.raises(InputError, match=r"8000x8000 \(64\.0 MP\).*over the 25 MP limit"):
        load_image(tmp_path / "big.png")
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(tmp_path / "big.png", max_megapixels=100)
    Image.new("RGB", (2000, 1000)).save(tmp_path / "2mp.png")
    with pytest.raises(InputError, match="over the 1.5 MP limit"):
        load_image(tmp_path / "2mp.png", max_megapixels=1.5)
    assert load_image(tmp_path / "2mp.png", max_megapixels=None)[0].shape == (1000, 2000, 3)
    Image.new("RGB", (128, 96)).save(tmp_path / "small.png")      # 0.012 MP, not "0.0 MP"
    with pytest.raises(InputError, match=r"128x96 \(0\.012 MP\), over the 0\.01 MP limit"):
        load_image(tmp_path / "small.png", max_megapixels=0.01)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1, "24", True])
def test_every_reader_refuses_a_megapixel_limit_that_is_no_limit(tmp_path: Path, bad: object) -> None:
    """nan compared false with every size: load_image read a 25 MP file under max_megapixels=nan, and a
    folder's reader skipped each of its files for the limit's fault."""
    from alignvar_edge.images.arrays import as_samples
    from alignvar_edge.images.folders import read_images, usable_images
    from alignvar_edge.quantize.calibration.sets import CalibrationSet
    from alignvar_edge.train.data import ImageFolderDataset
    _png_header_only(tmp_path / "big.png", 5000, 5000)
    said = rf"^max_megapixels must be a number of megapixels > 0, or None for no limit; got {re.escape(repr(bad))}$"
    with pytest.raises(InputError, match=said):
        load_image(tmp_path / "big.png", max_megapixels=bad)
    with pytest.raises(InputError, match=said):
        as_samples(np.zeros((2, 2), np.uint8), max_megapixels=bad)
    skipped: list[tuple[str, str]] = []
    with pytest.raises(InputError, match=said):
        next(read_images(tmp_path, skipped, max_megapixels=bad))
    assert skipped == []
    with pytest.raises(InputError, match=said):
        usable_images(tmp_path, "--images", max_megapixels=bad)
    with pytest.raises(InputError, match=said):
        ImageFolderDataset(tmp_path, crop=16, max_megapixels=bad)
    with pytest.raises(InputError, match=said):
        CalibrationSet.from_folder(tmp_path, {}, max_megapixels=bad)


def test_save_is_atomic_and_refuses_overwrite(tmp_path: Path) -> None:
    rgb = np.full((4, 4, 3), 0.5, np.float32)
    target = save_image(tmp_path / "out.png", rgb)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temp file left behind
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode

    before = target.read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        save_image(target, np.zeros_like(rgb))
    assert target.read_bytes() == before

    save_image(target, np.zeros_like(rgb), overwrite=True)
    assert np.asarray(_read(target)).max() == 0
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


@pytest.mark.parametrize("name", ["out.gif", "out.ico", "out.xbm", "out.pdf", "out", "out.txt"])
def test_an_output_in_another_format_is_refused_before_any_work(tmp_path: Path, name: str) -> None:
    """Pillow's other formats were written: GIF cut the result to 256 colours, ICO shrank an
    8000x32 result to 32x1, XBM failed once the model had run; all silently but the last."""
    from alignvar_edge.images import output_format
    with pytest.raises(InputError, match=rf"^cannot write .*{name}: its extension is none of the formats results "
                                         r"are written in; use one of \.png, \.jpg, .*\.tiff$"):
        output_format(tmp_path / name)
    with pytest.raises(InputError, match="none of the formats"):
        save_image(tmp_path / name, np.zeros((2, 3, 3)))
    assert list(tmp_path.iterdir()) == []


def _no_model_work(engine, images, *args, **kwargs):
    """A stand-in for tiling.upscale_images where every image must be refused before any work."""
    for _ in images:
        raise AssertionError("the model ran")
    yield from ()


def test_a_result_wider_than_webp_or_jpeg_hold_is_refused_before_any_work(tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:
    """A 4097 px wide photo upscaled to .webp ran the model, then failed with libwebp's ValueError
    (a traceback, which ended a folder run); JPEG's 65500 px, with "broken data stream"."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes import tiling
    monkeypatch.setattr(tiling, "upscale_images", _no_model_work)
    for name, width, limit in (("a.webp", 16384, 16383), ("a.jpg", 65501, 65500)):
        with pytest.raises(InputError, match=rf"^.*{name} would be {width}x1 pixels, over the {limit} a side "
                                             r"that \w+ holds; save it as \.png or \.tif, or crop the input$"):
            save_image(tmp_path / name, np.zeros((1, width, 3)))
    save_image(tmp_path / "a.webp", np.zeros((1, 16383, 3)))                   # at the limit: written
    Image.new("RGB", (4097, 1)).save(tmp_path / "wide.png")
    assert main(["upscale", str(tmp_path / "wide.png"), str(tmp_path / "wide.webp"), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"alignvar-edge upscale: error: {tmp_path / 'wide.webp'} would be 16388x4 "
                                       "pixels, over the 16383 a side that WEBP holds; save it as .png or .tif, "
                                       "or crop the input\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.webp", "wide.png"]


def test_a_folder_run_says_how_to_choose_another_format_for_a_result_wider_than_webp_holds(
        tmp_path: Path, monkeypatch, capsys) -> None:
    """A folder run writes each image in its input's format and has no option to choose another: its
    skip line said "save it as .png or .tif", which nobody can do there. It names the single-file
    command, whose output name chooses the format."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes import tiling
    monkeypatch.setattr(tiling, "upscale_images", _no_model_work)
    inp, out = tmp_path / "in photos", tmp_path / "out"
    inp.mkdir()
    Image.new("RGB", (4100, 4)).save(inp / "wide.webp")
    assert main(["upscale", str(inp), str(out), "--quiet"]) == 2
    skipped = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("skipping: "))
    assert skipped == (f"skipping: {out / 'wide.webp'} would be 16400x16 pixels, over the 16383 a side that WEBP "
                       "holds; a folder run writes each image in its input's format: upscale this one on its own "
                       f"into a .png or .tif (alignvar-edge upscale '{inp / 'wide.webp'}' {out / 'wide.png'}; add this "
                       "run's other options), or crop the input"), skipped


def test_a_folder_runs_advice_for_another_format_carries_its_engine_flag(tmp_path: Path) -> None:
    """The advised command said "with this run's other options" and left out even --engine: run as
    printed, it upscaled with the default model."""
    from alignvar_edge.images import FormatCannotHold, output_format
    with pytest.raises(FormatCannotHold) as e:
        output_format(tmp_path / "out" / "wide.webp", size=(16400, 16), from_input=tmp_path / "wide.webp",
                      engine="my engine")
    assert f"(alignvar-edge upscale {tmp_path / 'wide.webp'} {tmp_path / 'out' / 'wide.png'} --engine 'my engine'; " \
           "add this run's other options)" in str(e.value), e.value


def test_a_folder_rerun_counts_an_image_upscaled_as_advised_as_done(tmp_path: Path, monkeypatch, capsys) -> None:
    """After the user ran the advised command for a .webp too wide for WebP, the folder rerun skipped
    it again, repeated the advice and exited 4: its result in the advised format is the result."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes import tiling
    monkeypatch.setattr(tiling, "upscale_images", _no_model_work)
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    Image.new("RGB", (4100, 4)).save(inp / "wide.webp")
    Image.new("RGB", (16400, 16)).save(out / "wide.png")        # what the advised command wrote
    assert main(["upscale", str(inp), str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{inp / 'wide.webp'}: done as {out / 'wide.png'}, its format holds the result" in err, err
    assert "skipping" not in err, err


def test_a_tiff_or_bmp_past_4_gib_is_refused_before_any_work(tmp_path: Path, monkeypatch, capsys) -> None:
    """A 90 MP photo upscaled to .tif (--max-megapixels raised) ran the model for hours, then failed
    with struct.error: a classic TIFF and a BMP address 4 GiB, and Pillow writes no BigTIFF past
    them. What the file would hold is known from the size and layout, before the work."""
    from alignvar_edge.images import sixteen_bit
    from alignvar_edge.cli import main
    from alignvar_edge.images import output_format
    from alignvar_edge.runtimes import tiling
    big = (40000, 36000)                                         # 1.44 G pixels: 4.0 GiB of 8-bit RGB
    for name, gib, kw in (("a.tif", "4.0", {}), ("a.bmp", "4.0", {}), ("a.tif", "5.4", {"alpha": True})):
        with pytest.raises(InputError, match=rf"^.*{name} would be 40000x36000 pixels, {gib} GiB uncompressed, over "
                                             rf"the 4 GiB a (TIFF|BMP) file holds; save it as \.png, or crop the input$"):
            output_format(tmp_path / name, size=big, **kw)       # type: ignore[arg-type]
    assert output_format(tmp_path / "a.tif", size=big, gray=True, bits=16) == "TIFF"     # 2.7 GiB: written
    # 16-bit gray+alpha is written as 8-bit to TIFF (with a warning): 2.7 GiB, written
    assert output_format(tmp_path / "a.tif", True, big, gray=True, bits=16) == "TIFF"
    assert output_format(tmp_path / "a.png", size=big, bits=16) == "PNG"                 # no limit
    assert output_format(tmp_path / "a.tif", size=big, bits=16) == "TIFF"       # tifffile writes BigTIFF
    monkeypatch.setattr(sixteen_bit, "can_write_rgb16_tiff", lambda: False)    # then written 8-bit: 4.0 GiB
    with pytest.raises(InputError, match=r"4\.0 GiB uncompressed, over the 4 GiB a TIFF file holds; save it as "
                                         r"\.png, or install tifffile \(`pip install (--upgrade )?'tifffile>=[0-9.]+'`\), which writes it as "
                                         r"BigTIFF, or crop the input$"):
        output_format(tmp_path / "a.tif", size=big, bits=16)

    # upscale refuses from the file's layout before the model runs: at a limit of 2000 bytes, a
    # 10x10 input's 40x40 result fits as 8-bit gray (1600), not as 16-bit gray (3200) or RGB (4800)
    monkeypatch.setattr("alignvar_edge.images.write._MAX_FILE_BYTES", 2000)
    Image.fromarray(np.full((10, 10), 120, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.full((10, 10), 30000, np.uint16)).save(tmp_path / "gray16.png")
    Image.new("RGB", (10, 10)).save(tmp_path / "rgb.png")
    real = tiling.upscale_images

    def no_work(engine, images, *args, **kwargs):
        for _ in images:
            raise AssertionError("the model ran")
        yield
    monkeypatch.setattr(tiling, "upscale_images", no_work)
    for src in ("gray16", "rgb"):
        assert main(["upscale", str(tmp_path / f"{src}.png"), str(tmp_path / f"{src}.tif"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"alignvar-edge upscale: error: {tmp_path / f'{src}.tif'} would be 40x40 pixels, ")
        assert err.endswith("over the 4 GiB a TIFF file holds; save it as .png, or crop the input\n")
    monkeypatch.setattr(tiling, "upscale_images", real)
    assert main(["upscale", str(tmp_path / "gray.png"), str(tmp_path / "gray.tif"), "--quiet"]) == 0
    assert _read(tmp_path / "gray.tif").size == (40, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.png", "gray.tif", "gray16.png", "rgb.png"]


def test_upscale_of_a_16_bit_gray_image_to_jpeg_or_webp_says_it_keeps_8_bits(tmp_path: Path, capsys) -> None:
    """A 16-bit gray PNG upscaled to .jpg or .webp was written with 8 bits (WebP's as RGB) and
    only "upscaled 1 image(s)" said: the CLI hands save_image floats there, which it let pass.
    Now the line save_image warns with for uint16 samples, once; nothing where 16 bits are kept."""
    from alignvar_edge.cli import main
    Image.fromarray(np.tile(np.linspace(0, 65535, 12), (10, 1)).round().astype(np.uint16)).save(tmp_path / "g16.png")
    said = {"jpg": "JPEG holds 8 bits a sample: {}", "webp": "WEBP holds 8 bits a sample and no gray: {}"}
    for ext, start in said.items():
        dst = tmp_path / f"g16.{ext}"
        assert main(["upscale", str(tmp_path / "g16.png"), str(dst), "--quiet"]) == 0
        warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
        assert warned == [f"alignvar-edge upscale: warning: {start.format(dst)} is written with 8 of its 16"
                          f"{', as colour' if ext == 'webp' else ''}; save it as .png to keep 16"]
        assert bits_per_sample(dst) == 8 and _read(dst).mode == ("L" if ext == "jpg" else "RGB")
    assert main(["upscale", str(tmp_path / "g16.png"), str(tmp_path / "out.png"), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err and bits_per_sample(tmp_path / "out.png") == 16


def test_an_input_past_pillows_89_mp_warns_of_no_decompression_bomb(tmp_path: Path, monkeypatch) -> None:
    """With --max-megapixels raised for a 90 MP photo, upscale printed Pillow's "could be
    decompression bomb DOS attack" warning, from reading the file's layout and metadata: our own
    limit was applied, and the user raised it. (A verb's reads, as `command_line` marks them.)"""
    import warnings

    from alignvar_edge.caller import command_line
    from alignvar_edge.images import file_layout, file_profile
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)         # a 12x10 image is past it
    Image.new("RGB", (12, 10)).save(tmp_path / "a.png")
    with command_line(), warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(tmp_path / "a.png", max_megapixels=None)
        assert file_layout(tmp_path / "a.png") == (False, 8) and file_profile(tmp_path / "a.png") is None
        assert file_metadata(tmp_path / "a.png", 4)["dpi"] is None


def test_a_python_callers_filters_judge_pillows_decompression_bomb_warning(tmp_path: Path, monkeypatch) -> None:
    """A service's `warnings.simplefilter("error", DecompressionBombWarning)` was overridden inside
    load_image and file_layout, which opened the image anyway: in Python the caller's filters are
    theirs. Under the default filters Pillow's warning is shown, and the image read."""
    import warnings

    from alignvar_edge.images import file_layout
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)         # a 12x10 image is past it
    Image.new("RGB", (12, 10)).save(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for read in (lambda: load_image(tmp_path / "a.png", max_megapixels=None),
                     lambda: file_layout(tmp_path / "a.png")):
            with pytest.raises(Image.DecompressionBombWarning, match="could be decompression bomb"):
                read()
    with pytest.warns(Image.DecompressionBombWarning):
        assert load_image(tmp_path / "a.png", max_megapixels=None)[0].shape == (10, 12, 3)


def test_save_onto_a_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    """With overwrite=True it wrote the temporary file, then failed on it: "….tmp: Is a directory"."""
    (tmp_path / "out.png").mkdir()
    with pytest.raises(InputError, match=r"^output path \S*out\.png is a folder; move it away"):
        save_image(tmp_path / "out.png", np.zeros((2, 3, 3)), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"] and not any((tmp_path / "out.png").iterdir())


def test_a_path_or_load_images_pair_is_refused_in_one_line_naming_what_to_pass(tmp_path: Path) -> None:
    """`engine.upscale(load_image(p))` raised numpy's "inhomogeneous shape" ValueError, and a path
    "got dtype <U10"."""
    Image.new("RGBA", (3, 2)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match=r"^got load_image's \(rgb, alpha\) pair, not an image; pass its rgb "
                                         r"array, .*np\.dstack\(\[rgb, alpha\]\)$"):
        as_float_image(load_image(tmp_path / "a.png"))
    for path in (tmp_path / "a.png", str(tmp_path / "a.png")):
        with pytest.raises(InputError, match=r"^got the path '\S*a\.png', not an image; load it first: "
                                             r"load_image\(path\)\[0\] .* or PIL\.Image\.open\(path\)$"):
            as_float_image(path)


def test_failed_save_leaves_no_temp_file(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        save_image(tmp_path / "a.jpg", np.zeros((4, 4, 3)), alpha=np.ones((4, 4)))
    with pytest.raises(InputError):
        save_image(tmp_path / "nan.png", np.full((4, 4, 3), np.nan))
    assert os.listdir(tmp_path) == []


def test_save_refuses_its_own_input(tmp_path: Path) -> None:
    src = save_image(tmp_path / "in.png", np.zeros((4, 4, 3)))
    for force in (False, True):
        with pytest.raises(InputError, match="own input"):
            save_image(tmp_path / "sub" / ".." / "in.png", np.ones((4, 4, 3)), overwrite=force,
                       input_path=src)
    with pytest.raises(InputError, match="format"):
        save_image(tmp_path / "x.unknown", np.zeros((4, 4, 3)))


def test_list_images_recursive_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ["z.PNG", "a.jpg", "b/c.webp", "b/d.tif", ".hidden/e.png", ".tmp.png", "n.txt"]:
        (tmp_path / rel).write_bytes(b"")
    got = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert got == ["a.jpg", "b/c.webp", "b/d.tif", "z.PNG"]
    with pytest.raises(InputError, match="not a folder"):
        list_images(tmp_path / "a.jpg")


def test_tensor_round_trip() -> None:
    rgb = np.random.default_rng(2).random((5, 7, 3), dtype=np.float32)
    t = to_tensor(rgb)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    np.testing.assert_array_equal(from_tensor(t), rgb)
    np.testing.assert_array_equal(from_tensor(t[0]), rgb)
    assert from_tensor(t * 2 - 0.5).max() == 1.0
    assert from_tensor(t * 2, clip=False).max() > 1.0
    with pytest.raises(InputError):
        to_tensor(rgb[..., 0])
    with pytest.raises(InputError):
        from_tensor(torch.zeros(2, 3, 4, 4))


def test_a_camera_jpeg_with_extra_frames_is_one_photo_and_an_animation_is_refused(tmp_path: Path) -> None:
    """Phones write MPO JPEGs (the photo plus a gain map or preview): the first frame is the photo.
    An animation's or a multi-page file's frames are content: refused, not cut to the first."""
    a = Image.fromarray(np.full((6, 7, 3), 40, np.uint8))
    b = Image.fromarray(np.full((6, 7, 3), 200, np.uint8))
    a.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[b])
    with Image.open(tmp_path / "phone.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    rgb, _ = load_image(tmp_path / "phone.jpg")
    assert rgb.shape == (6, 7, 3) and abs(float(rgb.mean()) - 40 / 255) < 0.02
    a.save(tmp_path / "anim.gif", save_all=True, append_images=[b])
    with pytest.raises(InputError, match="anim.gif holds 2 frames"):
        load_image(tmp_path / "anim.gif")


@pytest.mark.parametrize("mode", ["I;16B", "I;16L", "I;16N"])
def test_a_sixteen_bit_pil_image_keeps_its_values_and_mode(mode: str) -> None:
    """A big-endian 16-bit TIFF opens as I;16B: its values are 16-bit, not 8-bit ones to clip at
    255 (which made the image white); so are native-order ones (I;16N, from Image.frombuffer of a
    camera's buffer). (Mode I holds 32-bit integers: refused as int32 arrays are,
    `tests/test_images_real_files.py`.)"""
    g = np.array([[0, 257, 30000], [40000, 65535, 1234]], np.uint16)
    img = Image.frombytes(mode, (3, 2), g.astype({"I;16B": ">u2", "I;16L": "<u2", "I;16N": "=u2"}[mode]).tobytes())
    assert img.mode == mode
    x, back = as_float_image(img)
    assert x.shape == (2, 3)                                 # gray stays one plane
    np.testing.assert_allclose(x, g / 65535.0, atol=1e-7)
    out = back(x)
    assert isinstance(out, Image.Image) and out.mode == mode and out.size == (3, 2)
    np.testing.assert_array_equal(np.asarray(out).astype(np.int64), g)


def test_a_full_disk_is_reported_on_the_output_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    """A full disk raises ENOSPC with no file name (and the temporary file's name means nothing
    to the user): the error names the output, so the CLI's one line says where and what to do."""
    import errno

    from alignvar_edge.cli import _os_error_line
    from alignvar_edge.images import write

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(write.os, "fsync", full)
    out = tmp_path / "x.png"
    with pytest.raises(OSError) as info:
        save_image(out, np.zeros((4, 5, 3), np.float32))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
    assert _os_error_line(info.value) == (f"no space left on the device writing {out}; "
                                          "free some space or choose another output")
    assert list(tmp_path.iterdir()) == []                 # no output, no temporary file


@pytest.fixture(scope="module")
def upscaled(tmp_path_factory, one_torch_thread) -> tuple[Path, Path]:
    """(inputs, outputs) of one `upscale` run of the bundled model over small odd files."""
    from alignvar_edge.cli import main
    src, dst = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out") / "x4"
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 2, (6, 7), dtype=np.uint8) * 255).convert("1").save(src / "bilevel.png")
    _png_la16(src / "gray-alpha16.png", *(rng.integers(0, 65536, (6, 7)).astype(np.uint16) for _ in range(2)))
    for name, channels in _COLOUR16:
        _png16(src / name, _colour16(channels), filters=(4, 3, 1, 2, 0))
    if _has_tifffile():
        import tifffile
        tifffile.imwrite(src / "rgba16.tif", _colour16(4), photometric="rgb", extrasamples=["unassalpha"])
    _phone_photo(src / "phone.jpg")
    Image.fromarray(_smooth_rgb8()).quantize(64).save(src / "palette.gif")
    Image.fromarray((_colour16(1)[..., 0] / 65535).astype(np.float32), mode="F").save(src / "float.tif")
    assert main(["upscale", str(src), str(dst), "--engine", "alignvar-tiny", "--quiet"]) == 0
    return src, dst


def _smooth_rgb8() -> np.ndarray:
    """A smooth 6x7 8-bit colour picture."""
    return (_colour16(3) >> 8).astype(np.uint8)


def test_a_bilevel_image_comes_back_8_bit_gray_from_the_api_and_the_cli_alike(upscaled) -> None:
    """Mode "1" is one rule (`_plain_mode`): the x4 result's edges are grays, so both give "L";
    the API gave RGB, the CLI L."""
    from alignvar_edge import runtimes
    src, dst = upscaled
    with Image.open(src / "bilevel.png") as img:
        assert img.mode == "1"
        x, _ = as_float_image(img)
        assert x.ndim == 2                                   # runs as gray, as the CLI runs it
        with runtimes.load("alignvar-tiny") as engine:
            api = engine.upscale(img)
    cli = _read(dst / "bilevel.png")
    assert api.mode == cli.mode == "L" and api.size == cli.size == (28, 24)
    assert np.abs(np.asarray(api, np.int16) - np.asarray(cli, np.int16)).max() <= 1


def test_upscale_writes_16_bit_gray_alpha_back_as_16_bit_gray_alpha(upscaled) -> None:
    """It wrote 8-bit RGBA: Pillow reads the file as that."""
    kind, samples = _png16_samples(upscaled[1] / "gray-alpha16.png")
    assert kind == (16, 4) and samples.shape == (24, 28, 2)
    assert (samples % 257 != 0).mean() > 0.5                    # finer steps than 8 bits carry


_COLOUR16 = [("rgb16.png", 3), ("rgba16.png", 4)]


def _colour16(channels: int) -> np.ndarray:
    """A smooth 6x7 16-bit picture, so that the x4 result's finer steps are the model's, not noise."""
    yy, xx = np.mgrid[0:6, 0:7]
    return np.stack([xx * 6000 + yy * 3001 + c * 997 for c in range(channels)], axis=2).astype(np.uint16)


@pytest.mark.parametrize(("name", "channels"), _COLOUR16)
def test_upscale_writes_16_bit_colour_back_as_16_bit_colour(upscaled, name: str, channels: int) -> None:
    """It wrote 8-bit RGB(A), silently. The result must be the model's on the float image, to a
    few 65535ths: an 8-bit file is up to 128 of them away."""
    from alignvar_edge import runtimes
    from alignvar_edge.runtimes.tiling import upscale_plane_bicubic
    src, dst = upscaled
    kind, samples = _png16_samples(dst / name)
    assert kind == (16, 2 if channels == 3 else 6) and samples.shape == (24, 28, channels)
    source = _colour16(channels) / 65535.0
    with runtimes.load("alignvar-tiny") as engine:
        want = np.round(engine.upscale(source[..., :3].astype(np.float32)) * 65535)
        api = engine.upscale(load_image(src / name)[0])        # the path the CLI takes
    assert np.abs(samples[..., :3] - want).max() <= 4
    np.testing.assert_array_equal(np.round(api * 65535), want)
    if channels == 4:
        alpha = np.round(np.clip(upscale_plane_bicubic(source[..., 3].astype(np.float32), 4), 0, 1) * 65535)
        assert np.abs(samples[..., 3] - alpha).max() <= 1
    assert (samples % 257 != 0).mean() > 0.5                    # finer steps than 8 bits carry


def test_upscale_into_a_folder_whose_output_path_is_a_folder_is_refused_before_any_work(
        tmp_path: Path, monkeypatch, capsys) -> None:
    """`upscale a.png out/` where out/a.png is a folder: it said the output exists and to pass
    --force, and with --force it ran the model, then failed naming its temporary file."""
    from alignvar_edge.cli import main
    Image.new("RGB", (3, 2)).save(tmp_path / "a.png")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    _no_engine(monkeypatch)
    for force in ([], ["--force"]):
        assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "out"), "--quiet", *force]) == 2
        err = capsys.readouterr().err
        assert err == f"alignvar-edge upscale: error: output path {tmp_path / 'out' / 'a.png'} is a folder; move it away\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"] and (tmp_path / "out" / "a.png").is_dir()


def _has_tifffile() -> bool:
    from alignvar_edge.extras import is_installed
    return is_installed("tifffile")


def test_upscale_writes_a_16_bit_colour_tiff_back_as_16_bit_tiff(upscaled) -> None:
    """It wrote 8 bits a sample and a warning: the TIFF result holds the samples of the PNG
    result of the same picture, each read by its own reader (tifffile; the test's decoder)."""
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(upscaled[1] / "rgba16.tif") as tif:
        samples = tif.pages[0].asarray()
        assert tuple(tif.pages[0].extrasamples) == (2,)
    np.testing.assert_array_equal(samples, _png16_samples(upscaled[1] / "rgba16.png")[1])


def test_upscale_writes_a_phone_photo_upright_with_its_exif_and_4x_dpi(upscaled) -> None:
    """It wrote the pixels upright and no EXIF or DPI at all."""
    _check_upright_with_exif_and_dpi(upscaled[1] / "phone.jpg", 288.0)


def _jpeg_like_pillows(path: Path, quality: int, subsampling: str) -> None:
    """`path` is a JPEG encoded as Pillow encodes at `quality` with `subsampling`."""
    from PIL import JpegImagePlugin
    with Image.open(path) as im, Image.open(_pillow_jpeg(im.size, quality)) as ref:
        assert im.format == "JPEG" and im.quantization == ref.quantization
        assert JpegImagePlugin.get_sampling(im) == {"4:4:4": 0, "4:2:0": 2}[subsampling]


def _pillow_jpeg(size: tuple[int, int], quality: int) -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return buf


def test_jpeg_is_written_at_quality_95_with_full_resolution_colour_and_takes_a_quality(tmp_path: Path) -> None:
    """It was written at 95 with colour at half resolution both ways (Pillow's 4:2:0), which
    blurs the colour detail an x4 result is for; and no quality could be chosen on the command line."""
    rgb = np.random.default_rng(3).random((16, 16, 3), dtype=np.float32)
    save_image(tmp_path / "a.jpg", rgb)
    _jpeg_like_pillows(tmp_path / "a.jpg", 95, "4:4:4")
    save_image(tmp_path / "b.jpg", rgb, quality=90)
    _jpeg_like_pillows(tmp_path / "b.jpg", 90, "4:4:4")
    save_image(tmp_path / "c.jpeg", rgb, quality="70")
    _jpeg_like_pillows(tmp_path / "c.jpeg", 70, "4:2:0")           # a small file is what is asked for


def test_webp_takes_a_quality_and_lossless(tmp_path: Path) -> None:
    rgb = np.random.default_rng(4).random((16, 16, 3), dtype=np.float32)
    save_image(tmp_path / "lossless.webp", rgb, quality="lossless")
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "lossless.webp")), np.round(rgb * 255))
    assert b"VP8L" in (tmp_path / "lossless.webp").read_bytes()[:64]         # libwebp's lossless bitstream
    alpha = np.zeros((16, 16), np.float32)
    alpha[:8] = 1.0                             # libwebp replaced the colour under alpha 0 unless told
    save_image(tmp_path / "rgba.webp", rgb, alpha, quality="lossless")
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "rgba.webp")),
                                  np.round(np.dstack([rgb, alpha]) * 255))
    save_image(tmp_path / "q20.webp", rgb, quality=20)
    save_image(tmp_path / "default.webp", rgb)
    assert b"VP8 " in (tmp_path / "default.webp").read_bytes()[:64]
    assert (tmp_path / "q20.webp").stat().st_size < (tmp_path / "default.webp").stat().st_size


@pytest.mark.parametrize(("name", "quality", "message"), [
    ("a.png", 80, r"^\S*a\.png would be PNG, which is lossless: quality applies to \.jpg and \.webp outputs alone; "
                  r"leave it out$"),
    ("a.tif", "lossless", "would be TIFF, which is lossless"),
    ("a.bmp", 95, "would be BMP, which is lossless"),
    ("a.jpg", "lossless", r"^\S*a\.jpg would be JPEG, which has no lossless mode: write \.png or \.webp, or give "
                          r"quality a number from 1 to 100$"),
    ("a.jpg", 0, r"^quality must be an integer from 1 to 100, or 'lossless' \(WebP\), got 0$"),
    ("a.webp", 101, "got 101"), ("a.webp", "best", "got 'best'"), ("a.jpg", 95.5, "got 95.5"),
])
def test_a_quality_that_means_nothing_for_the_output_is_refused(tmp_path: Path, name: str, quality: object,
                                                                message: str) -> None:
    """Pillow took a quality for a PNG without a word, and wrote a JPEG at quality 0 or 101."""
    with pytest.raises(InputError, match=message):
        save_image(tmp_path / name, np.zeros((2, 3, 3)), quality=quality)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def _no_engine(monkeypatch) -> None:
    """`runtimes.load` fails the test: what is refused must be refused before any work."""
    from alignvar_edge import runtimes

    def no_work(*args, **kwargs):
        raise AssertionError("the engine was loaded")
    monkeypatch.setattr(runtimes, "load", no_work)


def test_upscale_quality_is_refused_before_any_work_where_no_output_takes_it(tmp_path: Path, monkeypatch,
                                                                            capsys) -> None:
    from alignvar_edge.cli import main
    _no_engine(monkeypatch)
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.tif"):
        Image.new("RGB", (3, 2)).save(tmp_path / "in" / name)
    runs = [
        (["in/a.png", "out.png", "--quality", "80"],
         f"{tmp_path / 'out.png'} would be PNG, which is lossless: --quality applies to .jpg and .webp outputs "
         "alone; leave it out"),
        (["in/a.png", "out.jpg", "--quality", "lossless"],
         f"{tmp_path / 'out.jpg'} would be JPEG, which has no lossless mode: write .png or .webp, or give "
         "--quality a number from 1 to 100"),
        (["in", "out", "--quality", "90"],
         f"the outputs in {tmp_path / 'out'} would be PNG/TIFF, which is lossless: --quality applies to .jpg and .webp "
         "outputs alone; leave it out"),
        (["in/a.png", "out.jpg", "--quality", "0"],
         "argument --quality: must be an integer from 1 to 100, or 'lossless' (WebP), got '0'; "
         "see `alignvar-edge upscale --help`"),
    ]
    for argv, line in runs:
        argv = [str(tmp_path / a) if i < 2 else a for i, a in enumerate(argv)]
        assert main(["upscale", *argv, "--quiet"]) == 2
        assert capsys.readouterr().err == f"alignvar-edge upscale: error: {line}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_upscale_writes_jpeg_and_webp_at_the_quality_asked_and_a_folders_pngs_as_pngs(tmp_path: Path,
                                                                                      one_torch_thread) -> None:
    """--quality applies to a folder's JPEG and WebP outputs; its PNGs stay PNGs."""
    from alignvar_edge.cli import main
    src = tmp_path / "in"
    src.mkdir()
    u8 = _smooth_rgb8()
    for name in ("a.jpg", "b.png", "c.webp"):
        Image.fromarray(u8).save(src / name)
    assert main(["upscale", str(src), str(tmp_path / "out"), "--quality", "70", "--quiet"]) == 0
    _jpeg_like_pillows(tmp_path / "out" / "a.jpg", 70, "4:2:0")
    assert _read(tmp_path / "out" / "b.png").format == "PNG"
    assert main(["upscale", str(src / "c.webp"), str(tmp_path / "c.webp"), "--quality", "lossless", "--quiet"]) == 0
    assert b"VP8L" in (tmp_path / "c.webp").read_bytes()[:64]
    assert main(["upscale", str(src / "a.jpg"), str(tmp_path / "d.jpg"), "--quiet"]) == 0
    _jpeg_like_pillows(tmp_path / "d.jpg", 95, "4:4:4")


def test_exif_too_long_for_a_jpeg_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """A PNG or TIFF with a long EXIF (a maker note, a description) upscaled to .jpg ran the model,
    then failed with Pillow's "EXIF data is too long", a traceback."""
    exif = Image.Exif()
    exif[270], exif[271] = "x" * 70000, "Camera"
    with pytest.warns(UserWarning, match=r"a\.jpg: its EXIF is \d+ bytes, over the 65533 a JPEG holds: it is "
                                         r"written without it \(save it as \.png or \.tif to keep it\)"):
        save_image(tmp_path / "a.jpg", np.zeros((4, 4, 3)), exif=exif.tobytes(), dpi=(288.0, 288.0))
    with Image.open(tmp_path / "a.jpg") as im:
        assert 270 not in im.getexif() and im.info["dpi"] == pytest.approx((288, 288))
    save_image(tmp_path / "a.png", np.zeros((4, 4, 3)), exif=exif.tobytes())            # a PNG holds it
    assert _read(tmp_path / "a.png").getexif()[271] == "Camera"


_XMP_PACKET = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
               'xmlns:exif="http://ns.adobe.com/exif/1.0/" tiff:Orientation="6" exif:PixelXDimension="3">'
               '<dc:rights>© 2026 Jane Doe</dc:rights><tiff:ImageLength>2</tiff:ImageLength>'
               '</rdf:Description></rdf:RDF></x:xmpmeta>')


def _xmp_of(path: Path) -> str:
    with Image.open(path) as im:
        xmp = im.info.get("xmp") or im.getexif().get(700)      # a TIFF's: its tag
    assert isinstance(xmp, bytes), path
    return xmp.decode()


def test_png_text_and_xmp_are_carried_where_the_output_holds_them(tmp_path: Path) -> None:
    """A PNG's Author, Copyright and Description texts and its XMP (a photographer's copyright)
    were dropped from every output, while its ICC, DPI and EXIF were kept. The text goes to PNG
    outputs, the XMP to every format Pillow writes it to, less what described the input's pixels
    (orientation, size), as for the EXIF; ImageMagick's copies of profiles are not carried."""
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    info.add_text("Copyright", "© 2026 Jane Doe, all rights reserved " * 40, zip=True)     # iTXt, compressed
    info.add_itxt("Description", "Café at dusk", lang="en", tkey="Beschreibung")
    info.add_text("Raw profile type icc", "\nicc\n       4\n00000000\n")
    info.add_itxt("XML:com.adobe.xmp", _XMP_PACKET)
    Image.new("RGB", (3, 2)).save(tmp_path / "in.png", pnginfo=info)
    meta = file_metadata(tmp_path / "in.png", 4)
    pixels = np.zeros((8, 12, 3))
    for name, bits in (("out.png", 8), ("out16.png", 16), ("out.jpg", 8), ("out.webp", 8), ("out.tif", 8)):
        save_image(tmp_path / name, pixels, bits=bits, **meta)
        xmp = _xmp_of(tmp_path / name)
        assert "<dc:rights>© 2026 Jane Doe</dc:rights>" in xmp, name
        assert "Orientation" not in xmp and "PixelXDimension" not in xmp and "ImageLength" not in xmp, name
    for name in ("out.png", "out16.png"):
        with Image.open(tmp_path / name) as im:
            text = im.text                                                          # type: ignore[attr-defined]
        assert text["Author"] == "Jane Doe" and text["Copyright"].startswith("© 2026 Jane Doe, all rights")
        assert (text["Description"], text["Description"].lang, text["Description"].tkey) == \
            ("Café at dusk", "en", "Beschreibung")
        assert "Raw profile type icc" not in text
    # a JPEG's XMP (camera and editor write it there) goes on to a PNG output
    save_image(tmp_path / "from-jpeg.png", pixels, **file_metadata(tmp_path / "out.jpg"))
    assert "Jane Doe</dc:rights>" in _xmp_of(tmp_path / "from-jpeg.png")
    # what a format cannot hold is left out with a warning, once the work is done: not a failure
    with pytest.warns(UserWarning, match=r"a\.jpg: its XMP is \d+ bytes, over the 65504 a JPEG holds"):
        save_image(tmp_path / "a.jpg", pixels, xmp=b"<x:xmpmeta>" + b" " * 70000 + b"</x:xmpmeta>")
    with pytest.warns(UserWarning, match=r"out16\.tif: a 16-bit TIFF is written by tifffile, which writes no XMP, "
                                         r"so it leaves out the input's XMP; save it as \.png"):
        save_image(tmp_path / "out16.tif", pixels, bits=16, **meta)


def _png_with_chunks(path: Path, chunks: bytes, icc: bytes | None = None) -> Path:
    """A 3x2 RGB PNG with `chunks` (whole chunks) right after its header."""
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (90, 120, 200)).save(buf, format="PNG", icc_profile=icc)
    path.write_bytes(buf.getvalue()[:33] + chunks + buf.getvalue()[33:])
    return path


# a linear PNG (gamma 1.0) with wide primaries (white point, red, green, blue x and y, times 100000)
_LINEAR = (_png_chunk(b"gAMA", struct.pack(">I", 100000))
           + _png_chunk(b"cHRM", struct.pack(">8I", 34570, 35850, 73470, 26530, 15960, 84040, 3660, 100)))
_SRGB = _png_chunk(b"sRGB", b"\0") + _png_chunk(b"gAMA", struct.pack(">I", 45455))


def test_a_pngs_gamma_primaries_and_srgb_chunks_go_on_to_png_outputs(tmp_path: Path) -> None:
    """A PNG's gAMA, cHRM and sRGB chunks (how its samples code colours, where no ICC profile says)
    were dropped: a linear PNG's x4 PNG was shown as sRGB, far too dark."""
    for name, chunks in (("linear.png", _LINEAR), ("srgb.png", _SRGB)):
        src = _png_with_chunks(tmp_path / name, chunks)
        with Image.open(src) as im:
            want = {k: im.info.get(k) for k in ("gamma", "chromaticity", "srgb")}
        assert want["gamma"] is not None
        meta = file_metadata(src, 4)
        for bits in (8, 16):                                  # Pillow's writer, and the 16-bit one's chunks
            out = save_image(tmp_path / f"{bits}-{name}", np.full((8, 12, 3), 0.5), bits=bits, **meta)
            with Image.open(out) as im:
                assert {k: im.info.get(k) for k in want} == want, (out, im.info)


def test_a_pngs_colour_chunks_left_out_by_another_format_are_named_where_they_say_more_than_srgb(
        tmp_path: Path) -> None:
    linear = file_metadata(_png_with_chunks(tmp_path / "linear.png", _LINEAR), 4)
    for ext, fmt in (("jpg", "JPEG"), ("tif", "TIFF"), ("webp", "WEBP"), ("bmp", "BMP")):
        with pytest.warns(UserWarning, match=rf"^{re.escape(str(tmp_path))}/out\.{ext}: its PNG gAMA \(gamma 1\) and "
                                             r"cHRM \(primaries other than sRGB's\), which say how its colours are "
                                             rf"coded, are left out: {fmt} cannot hold them \(save it as \.png to keep "
                                             r"them\)$"):
            save_image(tmp_path / f"out.{ext}", np.zeros((8, 12, 3)), **linear)
    # sRGB (what the other formats assume), or an ICC profile that goes along, which overrides them
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    quiet = [_png_with_chunks(tmp_path / "srgb.png", _SRGB), _png_with_chunks(tmp_path / "icc.png", _LINEAR, icc)]
    for src in quiet:
        meta = file_metadata(src, 4)
        assert meta["png_colour"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            save_image(tmp_path / f"{src.stem}.jpg", np.zeros((8, 12, 3)), **meta)


def _chunk_data(path: Path, kind: bytes) -> list[bytes]:
    """The data of each chunk of `kind` in a PNG file, read by the PNG's own layout."""
    data, at, found = path.read_bytes(), 8, []
    while at < len(data):
        length, found_kind = struct.unpack(">I4s", data[at:at + 8])
        if found_kind == kind:
            found.append(data[at + 8:at + 8 + length])
        at += 12 + length
    return found


# an HDR photo's cICP: BT.2020 primaries (9), PQ transfer (16), RGB (0), full range (1)
_PQ = bytes([9, 16, 0, 1])


def test_a_pngs_cicp_goes_on_to_png_outputs_and_is_named_where_another_format_drops_it(tmp_path: Path) -> None:
    """A PNG's cICP chunk (its colour space as video codes it: an HDR photo's PQ or HLG, Display P3;
    it overrides the ICC profile) was dropped, Pillow reading none: an HDR PNG's x4 was shown as
    sRGB. It is read from the file, written to PNG outputs (and by --strip-metadata, as colour),
    and named where another format leaves it out; sRGB's own cICP is not."""
    from PIL import ImageCms

    from alignvar_edge.images.metadata import image_metadata
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = _png_with_chunks(tmp_path / "hdr.png", _png_chunk(b"cICP", _PQ), icc)
    meta = file_metadata(src, 4)
    for bits in (8, 16):                                  # Pillow's writer, and the 16-bit one's chunks
        out = save_image(tmp_path / f"{bits}.png", np.full((8, 12, 3), 0.5), bits=bits, **meta)
        assert _chunk_data(out, b"cICP") == [_PQ], out
    with Image.open(src) as im:
        stripped = image_metadata(im, src, False, 4, stripped_for="PNG")
    assert _chunk_data(save_image(tmp_path / "stripped.png", np.zeros((8, 12, 3)), **stripped), b"cICP") == [_PQ]
    with pytest.warns(UserWarning, match=r"out\.jpg: its PNG cICP \(primaries 9, transfer 16\), which says how "
                                         r"its colours are coded, is left out: JPEG cannot hold it"):
        save_image(tmp_path / "out.jpg", np.zeros((8, 12, 3)), **meta)
    srgb = file_metadata(_png_with_chunks(tmp_path / "srgb.png", _png_chunk(b"cICP", bytes([1, 13, 0, 1]))), 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_image(tmp_path / "srgb.jpg", np.zeros((8, 12, 3)), **srgb)
    assert file_metadata(_png_with_chunks(tmp_path / "none.png", b""), 4)["png_colour"] is None


def test_a_png_text_over_pillows_text_chunk_limit_is_written_so_that_the_output_opens(tmp_path: Path) -> None:
    """A PNG with a 2 MB Author text (uncompressed tEXt, which Pillow reads) was upscaled to a PNG
    whose text was compressed: Pillow refuses to decompress more than MAX_TEXT_CHUNK (1 MiB), so
    neither Pillow nor alignvar-edge could open the result ("Decompressed data too large"). The
    text is written as it can be read again; a long one under the limit is still compressed."""
    from PIL import PngImagePlugin
    big, long = "A" * 2_000_000, "B" * 5000
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", big)
    info.add_text("Comment", long)
    Image.new("RGB", (3, 2)).save(tmp_path / "in.png", pnginfo=info)
    meta = file_metadata(tmp_path / "in.png", 4)
    for name, bits in (("out.png", 8), ("out16.png", 16)):
        save_image(tmp_path / name, np.zeros((8, 12, 3)), bits=bits, **meta)
        with Image.open(tmp_path / name) as im:
            assert (im.text["Author"], im.text["Comment"]) == (big, long)      # type: ignore[attr-defined]
        assert load_image(tmp_path / name)[0].shape == (8, 12, 3)
        chunks = dict(_chunk_kinds(tmp_path / name))
        assert (chunks[b"Author"], chunks[b"Comment"]) == (b"tEXt", b"zTXt"), name


def _chunk_kinds(path: Path) -> list[tuple[bytes, bytes]]:
    """(keyword, chunk type) of each text chunk of a PNG file."""
    data, at, found = path.read_bytes(), 8, []
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            found.append((data[at + 8:at + 8 + length].split(b"\0", 1)[0], kind))
        at += 12 + length
    return found


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_a_damaged_exif_is_said_once_naming_its_file(tmp_path: Path, capsys, one_torch_thread, ext) -> None:
    """A PNG whose EXIF block is damaged (`MM\\0*garbage`) gave Pillow's "Corrupt EXIF data" twice per
    file in an upscale run (the EXIF was read when the pixels were and again for what the result
    carries), naming no file: in a folder of hundreds the user could not find it. It is one line
    naming the file, the EXIF read once; the image is still upscaled. One whose damaged EXIF still
    holds an orientation (6: a quarter turn) is turned, said once too (Pillow read it again on the
    turned copy and repeated its warning bare), and not said to be taken as upright. A JPEG's
    EXIF is read by Pillow inside Image.open: its warnings came out bare, and the line naming the
    file never did."""
    from alignvar_edge.cli import main
    (tmp_path / "in").mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (6, 5), (200, 40, 10)).save(buf, format="PNG")
    png = buf.getvalue()
    # big-endian TIFF header, one IFD of 2 entries: Orientation 6, and an ImageDescription of 100
    # bytes stored at 0xFFF0, past the end of the block
    turned = (b"MM\0*" + struct.pack(">IH", 8, 2) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)
              + struct.pack(">HHII", 0x010E, 2, 100, 0xFFF0) + struct.pack(">I", 0))
    for name, exif in ((f"bad.{ext}", b"MM\0*garbage"), (f"turned.{ext}", turned)):
        if ext == "png":
            (tmp_path / "in" / name).write_bytes(png[:33] + _png_chunk(b"eXIf", exif) + png[33:])
        else:
            Image.new("RGB", (6, 5), (200, 40, 10)).save(tmp_path / "in" / name, exif=b"Exif\0\0" + exif)
    Image.new("RGB", (6, 5)).save(tmp_path / "in" / f"good.{ext}")
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", "--threads", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    fix = "save the file again from an image editor to repair it"
    said = {name: [line for line in err if name in line] for name in (f"bad.{ext}", f"turned.{ext}")}
    for name, lines in said.items():
        assert len(lines) == 1, err
        assert lines[0].startswith(f"alignvar-edge upscale: warning: {tmp_path / 'in' / name}: its EXIF is "
                                   "damaged ("), err
        assert lines[0].endswith(fix), err
    assert "without an orientation the picture is taken as upright" in said[f"bad.{ext}"][0]
    assert "upright" not in said[f"turned.{ext}"][0]
    assert len([line for line in err if "warning" in line]) == 2, err          # no bare Pillow warning
    assert _read(tmp_path / "out" / f"bad.{ext}").size == (24, 20)
    assert _read(tmp_path / "out" / f"turned.{ext}").size == (20, 24)
    # resumed: the finished results are only looked at (their size, by the EXIF turn), not read
    # again, and their inputs' EXIF was said when they were: nothing more to say
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", "--threads", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert not [line for line in err if "EXIF" in line] and any("skipping 3 finished" in line for line in err), err
    for name in (f"bad.{ext}", f"turned.{ext}"):
        with pytest.warns(UserWarning) as warned:
            load_image(tmp_path / "in" / name)
        assert [str(w.message).split(":")[0] for w in warned] == [str(tmp_path / "in" / name)]


def test_png_author_copyright_and_description_go_to_the_exif_of_other_formats(tmp_path: Path) -> None:
    """A PNG upscaled to JPEG, WebP or TIFF lost its Author, Copyright and Description texts (only a
    PNG output holds text chunks). They now go to EXIF's Artist, Copyright and ImageDescription
    (a Title where no Description is), and a tag the input's own EXIF has is kept, not replaced."""
    pytest.importorskip("tifffile")
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    for key, value in (("Author", "Jane Doe"), ("Copyright", "(c) 2026 Jane Doe"), ("Title", "Dusk"),
                       ("Software", "an editor")):
        info.add_text(key, value)
    exif = Image.Exif()
    exif[0x8298] = "(c) the agency"                                    # Copyright of its own
    Image.new("RGB", (3, 2)).save(tmp_path / "in.png", pnginfo=info, exif=exif.tobytes())
    meta = file_metadata(tmp_path / "in.png", 4)
    pixels = np.zeros((8, 12, 3))
    for name, bits in (("out.jpg", 8), ("out.webp", 8), ("out.tif", 8), ("out16.tif", 16)):
        save_image(tmp_path / name, pixels, bits=bits, **meta)
        with Image.open(tmp_path / name) as im:
            tags = im.getexif()
        assert (tags.get(0x013B), tags.get(0x8298), tags.get(0x010E)) == \
            ("Jane Doe", "(c) the agency", "Dusk"), (name, dict(tags))
    save_image(tmp_path / "plain.jpg", pixels)                          # no text, no EXIF: none made
    with Image.open(tmp_path / "plain.jpg") as im:
        assert not im.getexif()


def test_a_gif_is_read_by_a_folder_run_as_by_a_file_run_and_written_as_png(upscaled, tmp_path: Path,
                                                                         capsys) -> None:
    """A file run upscaled a .gif; a folder run left it out as a file "of other kinds", and a file
    run into a folder refused to write out/a.gif. Both now read it and write a .png, and the
    summary names that file (it said "-> out/", leaving the user to find the name)."""
    from alignvar_edge.cli import main
    src, dst = upscaled
    folder_result = load_image(dst / "palette.png")[0]
    assert folder_result.shape == (24, 28, 3) and not (dst / "palette.gif").exists()
    (tmp_path / "out").mkdir()
    for out in (tmp_path / "out", f"{tmp_path / 'new'}/"):
        assert main(["upscale", str(src / "palette.gif"), str(out), "--engine", "alignvar-tiny", "--quiet"]) == 0
        summary = capsys.readouterr().err.splitlines()[-1]
        assert summary.startswith("upscaled 1 image(s)") and summary.endswith(
            f" -> {Path(out) / 'palette.png'}"), summary
    for written in (tmp_path / "out" / "palette.png", tmp_path / "new" / "palette.png"):
        np.testing.assert_array_equal(load_image(written)[0], folder_result)


def test_a_folders_gif_and_png_of_one_name_are_refused_before_any_work(tmp_path: Path, monkeypatch,
                                                                      capsys) -> None:
    from alignvar_edge.cli import main
    _no_engine(monkeypatch)
    (tmp_path / "in").mkdir()
    for name in ("a.gif", "a.png"):
        Image.new("RGB", (3, 2)).save(tmp_path / "in" / name)
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"alignvar-edge upscale: error: {tmp_path / 'in' / 'a.gif'} and "
                                       f"{tmp_path / 'in' / 'a.png'} would both be written to "
                                       f"{tmp_path / 'out' / 'a.png'}; rename one of them\n")
    assert not (tmp_path / "out").exists()


def test_a_folders_inputs_whose_outputs_differ_in_case_alone_are_refused_before_any_work(
        tmp_path: Path, monkeypatch, capsys) -> None:
    """`A.png` and `a.gif` were written to out/A.png and out/a.png: on macOS and Windows (or a
    card or a copy there) one file, the second replacing the first, or skipped as finished."""
    from alignvar_edge.cli import main
    _no_engine(monkeypatch)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("A.png", "sub/b.png", "a.gif"):
        Image.new("RGB", (3, 2)).save(tmp_path / "in" / name)
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"alignvar-edge upscale: error: {tmp_path / 'in' / 'A.png'} and "
                                       f"{tmp_path / 'in' / 'a.gif'} would both be written to "
                                       f"{tmp_path / 'out' / 'A.png'} and {tmp_path / 'out' / 'a.png'}, one file "
                                       "where case is not told apart; rename one of them\n")
    assert not (tmp_path / "out").exists()


def test_every_output_clash_of_a_folder_is_named_in_the_one_refusal(tmp_path: Path, monkeypatch, capsys) -> None:
    """The first clash alone was refused: renaming one pair, the next run refused the next pair."""
    from alignvar_edge.cli import main
    _no_engine(monkeypatch)
    (tmp_path / "in").mkdir()
    names = ("IMG.JPG", "IMG.jpg", "a.gif", "a.png", "b.png", "c.gif", "c.png", "d.gif", "d.png", "e.gif", "e.png")
    for name in names:
        Image.new("RGB", (3, 2)).save(tmp_path / "in" / name, format="PNG")
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"]) == 2
    src, out = tmp_path / "in", tmp_path / "out"
    assert capsys.readouterr().err == (
        f"alignvar-edge upscale: error: {src / 'IMG.JPG'} and {src / 'IMG.jpg'} would both be written to "
        f"{out / 'IMG.JPG'} and {out / 'IMG.jpg'}, one file where case is not told apart; {src / 'a.gif'} and "
        f"{src / 'a.png'} would both be written to {out / 'a.png'}; {src / 'c.gif'} and {src / 'c.png'} would both "
        f"be written to {out / 'c.png'}; and 2 more such output(s); rename them so that no two share an output\n")
    assert not out.exists()


def test_an_animated_gif_is_refused_by_a_file_run_and_named_by_a_folder_run(tmp_path: Path, capsys,
                                                                            one_torch_thread) -> None:
    from alignvar_edge.cli import main
    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.fromarray(np.full((6, 7, 3), v, np.uint8)) for v in (40, 200)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "still.png")
    assert main(["upscale", str(src / "anim.gif"), str(tmp_path / "anim.png"), "--quiet"]) == 2
    assert "anim.gif holds 2 frames" in capsys.readouterr().err
    assert main(["upscale", str(src), str(tmp_path / "out"), "--quiet"]) == 4      # still.png done
    err = capsys.readouterr().err
    assert f"skipping: {src / 'anim.gif'} holds 2 frames" in err and "1 file(s) could not be upscaled" in err
    from alignvar_edge.runtimes.upscale_record import RECORD_NAME
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != RECORD_NAME) == ["still.png"]


def test_upscale_writes_a_float_gray_tiff_back_with_16_bits_not_8(upscaled) -> None:
    """A 32-bit float gray TIFF (a scientific camera's, a depth map) came back 8-bit gray: every
    value beyond 256 steps lost, silently."""
    with Image.open(upscaled[1] / "float.tif") as im:
        assert im.format == "TIFF" and im.mode == "I;16" and im.size == (28, 24)
        samples = np.asarray(im).astype(np.int64)
    assert (samples % 257 != 0).mean() > 0.5                    # finer steps than 8 bits carry


def test_an_image_past_pillows_own_ceiling_says_that_the_flag_cannot_raise_it(tmp_path: Path) -> None:
    """A 400 MP PNG with --max-megapixels 1000 was "too large to open safely" without saying that
    no value of the flag opens it: Pillow refuses past twice its MAX_IMAGE_PIXELS (~179 MP)."""
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(InputError, match=r"Pillow opens at most 179 MP \(max_megapixels= "
                                         r"cannot raise it\); downscale it or split it into tiles$"):
        load_image(tmp_path / "bomb.png", max_megapixels=1000)


def test_a_float_colour_tiff_is_refused_by_what_it_is_not_as_damaged(tmp_path: Path) -> None:
    """tifffile reads a float32 RGB TIFF, which Pillow cannot open: it was called "not an image
    Pillow can read, or its header is damaged", sending its user to look for damage."""
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "rgbf.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((24, 30, 3)).astype(np.float32), photometric="rgb")
    with pytest.raises(InputError) as e:
        load_image(path)
    assert str(e.value) == (f"{path} is a 32-bit float RGB TIFF (3 samples a pixel), which is not supported; "
                            "save it as a PNG (8 or 16 bits: gray, gray+alpha, RGB or RGBA) or a TIFF of 16-bit "
                            "gray, RGB or RGBA")
    # a 16-bit gray+alpha TIFF is told the layouts that are read, not "a 16-bit TIFF", which it is
    tifffile.imwrite(tmp_path / "ga16.tif", np.zeros((4, 5, 2), np.uint16), photometric="minisblack",
                     extrasamples=["unassalpha"])
    with pytest.raises(InputError, match=r"ga16\.tif is a 16-bit unsigned integer gray TIFF \(2 samples a pixel\), "
                                         r"which is not supported; save it as a PNG \(8 or 16 bits: gray, gray\+alpha"):
        load_image(tmp_path / "ga16.tif")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00 not really")       # still damaged: said so
    with pytest.raises(InputError, match="header is damaged"):
        load_image(tmp_path / "junk.tif")


def test_a_float_file_outside_0_1_says_how_to_save_it_not_to_divide_it(tmp_path) -> None:
    """A CLI user cannot "divide it by its full-scale value" (the array API's advice): a float TIFF
    of 0..255 samples is told how float files are read and what to save instead, and that works."""
    samples = np.arange(35, dtype=np.float32).reshape(5, 7) * 7
    Image.fromarray(samples, mode="F").save(tmp_path / "f255.tif")
    with pytest.raises(InputError) as err:
        load_image(tmp_path / "f255.tif")
    assert str(err.value) == (f"{tmp_path / 'f255.tif'}: floating-point image with values from 0 to 238, outside "
                              "[0, 1]; float samples are read as 0 (black) to 1 (white): save it as an 8- or 16-bit "
                              "PNG or TIFF (or as float scaled to [0, 1])")
    Image.fromarray(samples.astype(np.uint8)).save(tmp_path / "f255.png")          # the advice, taken
    rgb, _ = load_image(tmp_path / "f255.png")
    np.testing.assert_allclose(rgb[..., 0], samples / 255, atol=1e-6)
    with pytest.raises(InputError, match="divide it by its full-scale value"):      # an array's caller divides
        as_float_image(samples)


@pytest.mark.parametrize("stem", ["M" * 251, "é" * 125])          # 255 and 254 bytes with ".png"
def test_any_output_name_the_file_system_takes_is_written(tmp_path: Path, stem: str) -> None:
    """A 242-255 byte output name failed with 'File name too long': the hidden temporary file
    beside it (`.NAME.xxxxxxxx.tmp`) is 14 bytes longer than NAME."""
    from alignvar_edge.fsmodes import write_text
    from alignvar_edge.images import save_image
    from alignvar_edge.outputs import artifact_dir

    out = tmp_path / f"{stem}.png"
    assert len(os.fsencode(out.name)) >= 254
    save_image(out, np.zeros((4, 5, 3), np.float32))
    save_image(out, np.ones((4, 5, 3), np.float32), overwrite=True)
    assert np.asarray(Image.open(out)).min() == 255
    write_text(tmp_path / f"{stem}.txt", "x")
    for force in (False, True):              # with force, the old one is set aside, then removed
        with artifact_dir(tmp_path / stem, force=force) as tmp:
            (tmp / "manifest.json").write_text('{"schema_version": 1, "kind": "onnx", "files": {}}')
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, f"{stem}.txt", stem])


def test_an_image_another_run_wrote_meanwhile_is_kept_and_named_so(tmp_path: Path) -> None:
    """Two folder upscales into one folder: the loser was told '{out} already exists; pass --force
    (overwrite=True)', as if it had been there before; it appeared while this run wrote it."""
    from alignvar_edge.errors import OutputExistsError
    from alignvar_edge.images import write

    out, tmp = tmp_path / "p0.png", tmp_path / ".p0.png.x.tmp"
    tmp.write_bytes(b"ours")
    out.write_bytes(b"theirs")                      # published by the other run after our check
    with pytest.raises(OutputExistsError, match=r"p0.png appeared while this run was writing it \(another run "
                                                r"wrote it\); kept that one"):
        write._publish(tmp, out, overwrite=False)
    assert out.read_bytes() == b"theirs"


def test_an_array_of_another_integer_dtype_is_told_the_conversion_that_keeps_its_values() -> None:
    """int32 / int64 arrays were told `.astype(np.uint8)` whatever they held, which wraps a 16-bit
    image's values around; the advice follows the values."""
    for values, says in ((np.full((2, 2, 3), 200, np.int32),
                          r"fit in 8 bits: convert with np\.asarray\(x, np\.uint8\)"),
                         (np.full((2, 2, 3), 40000, np.int64),
                          r"fit in 16 bits: convert with np\.asarray\(x, np\.uint16\)"),
                         (np.full((2, 2, 3), -5, np.int16), r"span -5\.\.-5: scale them to floats in \[0, 1\]")):
        with pytest.raises(InputError, match=f"got dtype {values.dtype}; its values {says}"):
            as_float_image(values)


def test_save_image_scales_uint16_and_uint8_from_their_own_full_scale(tmp_path: Path) -> None:
    """uint16 arrays (what `upscale` returns for uint16 input) were read as floats in [0, 1] and
    written all white; a uint8 array at bits=16 was written all 65535."""
    rng = np.random.default_rng(5)
    u16 = rng.integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    save_image(tmp_path / "a.png", u16, bits=8)
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "a.png")), np.round(u16 / 257.0))
    save_image(tmp_path / "g.png", u16[..., 0].astype(">u2"), bits=8)     # big-endian gray too
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "g.png")), np.round(u16[..., 0] / 257.0))
    save_image(tmp_path / "a16.png", u16, bits=16)
    assert _png16_samples(tmp_path / "a16.png")[1].tolist() == u16.tolist()
    u8 = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
    save_image(tmp_path / "b16.png", u8, u16[..., 0], bits=16)
    np.testing.assert_array_equal(_png16_samples(tmp_path / "b16.png")[1],
                                  np.dstack([u8.astype(np.int64) * 257, u16[..., 0]]))


def test_save_image_keeps_a_uint16_arrays_16_bits_and_warns_where_the_format_cannot(tmp_path: Path) -> None:
    """`save_image(path, rgb)` of a uint16 array (`Engine.upscale` of a 16-bit image) wrote an 8-bit
    PNG without a word unless bits=16 was passed, where `upscale` keeps 16 bits for the same file."""
    import warnings
    rng = np.random.default_rng(8)
    u16 = rng.integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    u16[0, 0] = (0, 1, 65534)                                    # steps that 8 bits round away
    with warnings.catch_warnings():
        warnings.simplefilter("error")                            # where 16 bits are kept: no warning
        save_image(tmp_path / "a.png", u16)
        save_image(tmp_path / "a.tif", u16)
        save_image(tmp_path / "g.tif", u16[..., 0].astype(">u2"))
        save_image(tmp_path / "la.png", u16[..., 0], u16[..., 1])
        save_image(tmp_path / "a8.png", u16, bits=8)              # 8 asked for: no warning either
        save_image(tmp_path / "f.png", u16 / 65535.0)             # floats: 8 bits unless told, as before
    kind, samples = _png16_samples(tmp_path / "a.png")
    assert kind == (16, 2) and samples.tolist() == u16.tolist()     # 16-bit RGB, every sample
    assert _png16_samples(tmp_path / "la.png")[1].tolist() == np.stack([u16[..., 0], u16[..., 1]], axis=2).tolist()
    np.testing.assert_array_equal(np.round(load_image(tmp_path / "a.tif")[0] * 65535), u16)
    np.testing.assert_array_equal(np.asarray(_read(tmp_path / "g.tif")), u16[..., 0])
    assert bits_per_sample(tmp_path / "a8.png") == 8 and bits_per_sample(tmp_path / "f.png") == 8
    for name in ("a.jpg", "a.webp", "a.bmp"):
        with pytest.warns(UserWarning) as said:
            save_image(tmp_path / name, u16)
        assert [str(w.message) for w in said] == [f"{Image.registered_extensions()['.' + name[2:]]} holds 8 bits "
                                                  f"a sample: {tmp_path / name} is written with 8 of its 16; save "
                                                  "it as .png to keep 16"]
        assert bits_per_sample(tmp_path / name) == 8


def test_save_image_refuses_other_dtypes_and_floats_outside_0_1_naming_the_argument(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^save_image's rgb for .*c\.png: floating-point data with values from "
                                         r".* outside \[0, 1\]; divide it by its full-scale value"):
        save_image(tmp_path / "c.png", np.full((4, 4, 3), 2.5))
    with pytest.raises(InputError, match=r"^save_image's rgb for .*d\.png must be uint8, uint16 or floats in "
                                         r"\[0, 1\], got dtype int32; its values fit in 8 bits: convert with "
                                         r"np\.asarray\(x, np\.uint8\)$"):
        save_image(tmp_path / "d.png", np.zeros((4, 4, 3), np.int32))
    with pytest.raises(InputError, match=r"^save_image's alpha .* got dtype int64; .* np\.asarray\(x, np\.uint16\)$"):
        save_image(tmp_path / "e.png", np.zeros((2, 2, 3)), [[300, 0], [0, 0]])    # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_relative_output_in_a_working_folder_deeper_than_path_max_is_written(tmp_path, monkeypatch):
    """mkstemp made the temporary file's name absolute, which no call opens past PATH_MAX: a relative
    output in a very deep working folder failed with a raw 'File name too long' and a 4 kB path."""
    from alignvar_edge.fsmodes import unwritable_folder, write_text
    from alignvar_edge.images import save_image
    monkeypatch.chdir(tmp_path)
    level = "d" * 40
    for _ in range(110):                      # 4.5 kB below tmp_path
        os.mkdir(level)
        os.chdir(level)
    assert len(os.getcwd()) > os.pathconf("/", "PC_PATH_MAX")
    assert unwritable_folder("out.png") is None and unwritable_folder("new/out.png") is None  # upscale's check
    rgb = np.full((6, 5, 3), 0.5, np.float32)
    save_image("out.png", rgb)
    write_text("note.json", "{}")
    assert sorted(os.listdir(".")) == ["note.json", "out.png"]      # and no temporary file left
    with open("out.png", "rb") as f:
        assert Image.open(f).size == (5, 6)


def test_a_tifffile_older_than_the_writers_floor_still_reads_16_bit_colour_tiffs(tmp_path: Path, monkeypatch) -> None:
    # the floor is imwrite's (its iccprofile argument); reading uses calls every release has
    tifffile = pytest.importorskip("tifffile")
    from alignvar_edge.images import sixteen_bit
    rgb = np.random.default_rng(5).integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    monkeypatch.setattr(sixteen_bit, "older_than_required", lambda name: name == "tifffile")
    got, _ = load_image(tmp_path / "c.tif")
    np.testing.assert_array_equal(np.round(got * 65535), rgb)
