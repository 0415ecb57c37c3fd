"""Image files as cameras, scanners and editors write them: orientation of TIFFs and JPEGs,
MinIsWhite gray, 32-bit integer samples, EXIF tag types, colour profiles, print resolution."""
from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.errors import InputError
from alignvar_edge.images import as_float_image, file_metadata, load_image, save_image
from alignvar_edge.images.folders import not_a_result
from alignvar_edge.extras import is_installed

tifffile = pytest.importorskip("tifffile")

_ORIENTATION = 274
# the EXIF orientations as numpy turns of the stored samples: what a viewer shows
_TURN = {1: lambda x: x, 5: lambda x: x.swapaxes(0, 1), 6: lambda x: np.rot90(x, -1),
         7: lambda x: np.rot90(x, 2).swapaxes(0, 1), 8: lambda x: np.rot90(x, 1)}


def _stored(width: int, height: int, channels: int, bits: int) -> np.ndarray:
    """HxWxC (or HxW) samples of `bits` with a gradient, so that a turn shows in them."""
    full = 255 if bits == 8 else 65535
    ramp = np.linspace(0, full, width * height).reshape(height, width)
    samples = np.round(ramp).astype(np.uint8 if bits == 8 else np.uint16)
    return samples if channels == 1 else np.repeat(samples[..., None], channels, axis=2)


def _oriented_file(tmp_path: Path, kind: str, orientation: int, width: int = 12, height: int = 7) -> Path:
    """A `kind` file ("jpeg", "tiff8", "tiff16-rgb", "tiff16-gray") stored width x height with
    an EXIF (TIFF: its own tag) orientation."""
    path = tmp_path / f"{kind}-{orientation}.{'jpg' if kind == 'jpeg' else 'tif'}"
    if kind in ("jpeg", "tiff8"):
        exif = Image.Exif()
        exif[_ORIENTATION] = orientation
        Image.fromarray(_stored(width, height, 3, 8)).save(path, exif=exif)
    else:
        rgb = kind == "tiff16-rgb"
        tifffile.imwrite(path, _stored(width, height, 3 if rgb else 1, 16),
                         photometric="rgb" if rgb else "minisblack",
                         extratags=[(_ORIENTATION, "H", 1, orientation, True)])
    return path


@pytest.mark.parametrize("kind", ["jpeg", "tiff8", "tiff16-rgb", "tiff16-gray"])
@pytest.mark.parametrize("orientation", [1, 5, 6, 7, 8])
def test_a_finished_result_of_a_turned_image_is_recognised_as_one(tmp_path: Path, kind: str,
                                                                  orientation: int) -> None:
    """A TIFF with orientation 5 to 8 was turned twice by the resume check (recent Pillow
    versions report a TIFF's turned size already), so a folder run's rerun called its own finished
    result "not a result" and stopped. The reader and the check now take the size one way."""
    src = _oriented_file(tmp_path, kind, orientation)
    upright = (7, 12) if orientation >= 5 else (12, 7)         # stored 12x7; 5 to 8 trade the sides
    rgb, _ = load_image(src)
    assert (rgb.shape[1], rgb.shape[0]) == upright
    # and turned right (a gray TIFF's pixels were scrambled by Pillow's memory map of the file)
    bits = 16 if kind.startswith("tiff16") else 8
    want = _TURN[orientation](_stored(12, 7, 1, bits)) / (65535.0 if bits == 16 else 255.0)
    np.testing.assert_allclose(rgb[..., 1], want, atol=0.03 if kind == "jpeg" else 1e-6)
    result = tmp_path / "result.png"
    Image.new("RGB", (upright[0] * 4, upright[1] * 4)).save(result)
    assert not_a_result(src, result, 4) is None
    Image.new("RGB", (upright[1] * 4, upright[0] * 4)).save(result)
    assert not_a_result(src, result, 4) == (f"{upright[1] * 4}x{upright[0] * 4}, not the "
                                            f"{upright[0] * 4}x{upright[1] * 4} result")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_min_is_white_gray_tiff_is_read_as_it_is_displayed(tmp_path: Path, dtype: type) -> None:
    """A 16-bit MinIsWhite TIFF (scanners, film and X-ray scans) was read as stored, so its
    result was the picture's negative (Pillow inverts 8-bit ones itself, not 16-bit or float
    ones). The file, and a PIL image of it, are read as displayed now; the result is plain gray."""
    shown = np.linspace(0, 1, 9 * 13).reshape(9, 13)             # what a viewer shows
    full = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[dtype]
    stored = (full - np.round(shown * full) if full > 1 else 1 - shown).astype(dtype)
    tifffile.imwrite(tmp_path / "neg.tif", stored, photometric="miniswhite")
    rgb, _ = load_image(tmp_path / "neg.tif")
    np.testing.assert_allclose(rgb, np.repeat(shown[..., None], 3, axis=2), atol=0.5 / full + 1e-6)
    with Image.open(tmp_path / "neg.tif") as img:
        x, back = as_float_image(img)
    np.testing.assert_allclose(np.squeeze(x), shown, atol=0.5 / full + 1e-6)
    result = back(x)                                        # plain gray: Pillow writes it as MinIsBlack
    assert isinstance(result, Image.Image)
    np.testing.assert_allclose(np.asarray(result, np.float64) / full, shown, atol=0.5 / full + 1e-6)


@pytest.mark.parametrize("values, says", [
    ((29, 239), r"its values fit in 8 bits: save it with 8 bits a sample \(PNG or TIFF\)"),
    ((0, 40000), r"its values fit in 16 bits: save it with 16 bits a sample"),
    ((-3, 70000), r"its values span -3\.\.70000: scale them to 0\.\.65535 and save it as a 16-bit PNG or TIFF")])
def test_32_bit_integer_images_are_refused_as_int32_arrays_are(tmp_path: Path, values: tuple[int, int],
                                                              says: str) -> None:
    """An int32 TIFF (or PIL mode I) of 8-bit values was read as 16-bit, divided by 65535: a near-black
    result with no warning, where the same values as an int32 array are refused naming the
    conversion. Both are refused now, by the values they hold, with the fix where the user is."""
    samples = np.linspace(*values, 5 * 6).round().astype(np.int32).reshape(5, 6)
    Image.fromarray(samples).save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i32.tif") as img:
        assert img.mode == "I"
    with pytest.raises(InputError, match=f"i32.tif: 32-bit signed integer samples, which have no full scale to divide "
                                         f"by; {says}"):
        load_image(tmp_path / "i32.tif")
    numpy_says = _ARRAY_CONVERSION[values]
    with pytest.raises(InputError, match=f"got dtype int32; {numpy_says}"):
        as_float_image(samples)
    with pytest.raises(InputError, match=fr"mode I holds 32-bit integers.*pass np\.asarray\(image\) converted: "
                                         f"{numpy_says}"):
        as_float_image(Image.fromarray(samples))


def test_a_signed_16_bit_tiff_is_refused_as_what_it_holds(tmp_path: Path) -> None:
    """A TIFF of signed 16-bit samples (Pillow opens it as mode I, as a 32-bit one) was refused as
    "32-bit integer samples": the user looked for 32-bit samples the file does not have; opened with
    Pillow and handed to the API, it is named the same way."""
    tifffile.imwrite(tmp_path / "i16.tif", np.linspace(-32640, 32639, 5 * 6).astype(np.int16).reshape(5, 6))
    with pytest.raises(InputError, match=r"i16\.tif: 16-bit signed integer samples, which have no full scale to "
                                         r"divide by; its values span -32640\.\.32639: scale them to 0\.\.65535"):
        load_image(tmp_path / "i16.tif")
    with Image.open(tmp_path / "i16.tif") as img, pytest.raises(InputError, match="mode I holds 16-bit signed "
                                                                                   "integers, which have no full"):
        as_float_image(img)


_ARRAY_CONVERSION = {(29, 239): r"its values fit in 8 bits: convert with np\.asarray\(x, np\.uint8\)",
                     (0, 40000): r"its values fit in 16 bits: convert with np\.asarray\(x, np\.uint16\)",
                     (-3, 70000): r"its values span -3\.\.70000: scale them to floats in \[0, 1\]"}


def test_a_16_bit_gray_png_is_still_read_as_16_bit() -> None:
    """Some Pillow versions open a 16-bit gray PNG as mode I: a PNG holds 16 bits at most."""
    img = Image.fromarray(np.array([[0, 40000]], np.int32))
    img.format = "PNG"
    x, back = as_float_image(img)
    np.testing.assert_allclose(x, [[0, 40000 / 65535]], atol=1e-7)
    assert np.asarray(back(x)).tolist() == [[0, 40000]]


_DATA = Path(__file__).parent / "data" / "images"


@pytest.mark.parametrize("name, compression", [("rgb16-lzw.tif", "LZW"), ("rgb16-zstd.tif", "ZSTD")])
def test_a_16_bit_tiff_whose_compression_needs_imagecodecs_names_it_or_is_read(name: str, compression: str) -> None:
    """Photoshop writes 16-bit TIFFs with LZW, which tifffile decodes through imagecodecs alone:
    the refusal quoted tifffile and named no fix (a Zstandard one raised a bare ImportError). The
    files were written by tifffile with imagecodecs (compression='lzw', predictor=True; 'zstd')."""
    samples = (np.arange(5 * 6 * 3, dtype=np.uint64).reshape(5, 6, 3) * 719 % 65536).astype(np.uint16)
    if is_installed("imagecodecs"):
        rgb, _ = load_image(_DATA / name)
        np.testing.assert_array_equal(np.round(rgb * 65535), samples)
        return
    with pytest.raises(InputError, match=fr"{name}: its {compression} compression needs the imagecodecs package to "
                                         r"read this 16-bit colour TIFF: install it \(pip install imagecodecs\), "
                                         "or save it as a 16-bit PNG"):
        load_image(_DATA / name)


def _tiff_entries(data: bytes, ifd: int) -> dict[int, tuple[int, int]]:
    """{tag: (type, value or offset)} of the TIFF directory at `ifd` of `data` (a TIFF file, or an
    EXIF block less its "Exif\\0\\0"), read by the TIFF specification here."""
    order = "<" if data[:2] == b"II" else ">"
    (count,) = struct.unpack_from(order + "H", data, ifd)
    entries = [struct.unpack_from(order + "HHLL", data, ifd + 2 + 12 * i) for i in range(count)]
    return {tag: (kind, value) for tag, kind, _, value in entries}


def _exif_ifd_types(data: bytes) -> dict[int, int]:
    """{tag: type} of the Exif directory of a TIFF structure."""
    first = _tiff_entries(data, struct.unpack_from("<L" if data[:2] == b"II" else ">L", data, 4)[0])
    return {tag: kind for tag, (kind, _) in _tiff_entries(data, first[0x8769][1]).items()}


def _camera_exif() -> bytes:
    """An EXIF block as cameras write it: Make, and an Exif directory holding a MakerNote and a
    UserComment of type UNDEFINED (7) and an exposure time, laid out here byte by byte."""
    maker, comment = b"CANON\0" + bytes(range(30)), b"ASCII\0\0\0hello"
    exif_ifd = 8 + 2 + 12 * 2 + 4 + 6                  # after IFD0 and its "Canon\0"
    data_at = exif_ifd + 2 + 12 * 3 + 4
    ifd0 = struct.pack("<H", 2) + struct.pack("<HHLL", 0x010F, 2, 6, 8 + 2 + 24 + 4) \
        + struct.pack("<HHLL", 0x8769, 4, 1, exif_ifd) + struct.pack("<L", 0) + b"Canon\0"
    inner = struct.pack("<H", 3) + struct.pack("<HHLL", 0x829A, 5, 1, data_at) \
        + struct.pack("<HHLL", 0x927C, 7, len(maker), data_at + 8) \
        + struct.pack("<HHLL", 0x9286, 7, len(comment), data_at + 8 + len(maker)) + struct.pack("<L", 0)
    return b"Exif\0\0II*\0" + struct.pack("<L", 8) + ifd0 + inner + struct.pack("<LL", 1, 250) + maker + comment


def _written_exif(out: Path) -> bytes:
    """The EXIF `out` holds, as a TIFF structure (a TIFF's: the file itself)."""
    with Image.open(out) as img:
        written = out.read_bytes() if img.format == "TIFF" else img.info["exif"]
    return written[6:] if written.startswith(b"Exif\0\0") else written


@pytest.mark.parametrize("ext", ["jpg", "webp", "png", "tif"])
def test_a_maker_note_and_user_comment_keep_their_exif_type(tmp_path: Path, ext: str) -> None:
    """Pillow writes the Exif directory again from its values, typing bytes BYTE: a MakerNote and
    a UserComment became BYTE (the EXIF standard types them UNDEFINED), so readers skipped them.
    A result carries the UserComment (a maker note it leaves out: tests/test_images_privacy.py);
    an EXIF given to save_image keeps both."""
    exif = _camera_exif()
    assert _exif_ifd_types(exif[6:])[0x927C] == 7                  # the input is as cameras write it
    Image.new("RGB", (6, 4), (90, 120, 200)).save(tmp_path / "camera.jpg", exif=exif)
    rgb, _ = load_image(tmp_path / "camera.jpg")
    carried = _exif_ifd_types(_written_exif(save_image(tmp_path / f"out.{ext}", rgb,
                                                       **file_metadata(tmp_path / "camera.jpg", 1))))
    assert 0x927C not in carried and (carried[0x9286], carried[0x829A]) == (7, 5)     # UNDEFINED, RATIONAL
    given = _exif_ifd_types(_written_exif(save_image(tmp_path / f"given.{ext}", rgb, exif=exif)))
    assert (given[0x927C], given[0x9286], given[0x829A]) == (7, 7, 5)


@pytest.mark.parametrize("ext", ["jpg", "tif", "webp", "png"])
def test_300_dpi_of_a_png_is_1200_dpi_x4_exactly(tmp_path: Path, ext: str) -> None:
    """A PNG holds 300 DPI as 11811 px/m (299.9994 DPI): x4 wrote 1199.9976 to the EXIF, beside the
    JPEG's 1200 in its JFIF. A DPI within half a px/m step of a whole number is that number."""
    Image.new("RGB", (6, 4)).save(tmp_path / "scan.png", dpi=(300, 300))
    with Image.open(tmp_path / "scan.png") as img:
        assert abs(img.info["dpi"][0] - 299.9994) < 1e-3        # as the file holds it
    rgb, _ = load_image(tmp_path / "scan.png")
    meta = file_metadata(tmp_path / "scan.png", 4)
    out = save_image(tmp_path / f"out.{ext}", rgb, **{**meta, "text": {"Author": "Ana"}})
    with Image.open(out) as img:
        if ext in ("jpg", "tif"):
            assert tuple(img.info["dpi"]) == (1200, 1200)
        if ext == "png":                                        # its own whole px/m nearest 1200 DPI
            assert tuple(img.info["dpi"]) == pytest.approx((round(1200 / 0.0254) * 0.0254,) * 2, abs=1e-9)
        if ext != "png":
            exif = img.getexif()
            assert (exif[282], exif[283]) == (1200, 1200)
            assert exif[282].denominator == 1


def test_a_size_just_over_the_limit_is_shown_over_it(tmp_path: Path) -> None:
    """4899x4899 is 24,000,201 pixels: the refusal said "24.0 MP, over the 24 MP limit"."""
    _png_header(tmp_path / "b24.png", 4899, 4899)
    with pytest.raises(InputError, match=r"b24\.png is 4899x4899 \(24\.0002 MP\), over the 24 MP limit"):
        load_image(tmp_path / "b24.png", max_megapixels=24)
    _png_header(tmp_path / "b30.png", 6000, 5000)                     # plainly over: one decimal
    with pytest.raises(InputError, match=r"\(30\.0 MP\), over the 25 MP limit"):
        load_image(tmp_path / "b30.png")


@pytest.mark.parametrize("width, height", [(6000, 4000), (6016, 4016), (6048, 4024)])
def test_the_default_limit_takes_a_photo_of_a_camera_sold_as_24_mp(tmp_path: Path, width: int, height: int) -> None:
    """A "24 MP" camera's photo is 24.0 to 24.3 MP (6048x4024: a Nikon Z6; 6016x4016): the default
    limit of 24 MP refused it. The header alone is there, so a file under the limit is read and
    found cut short."""
    _png_header(tmp_path / "photo.png", width, height)
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(tmp_path / "photo.png")


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height, its pixels garbage: the limit is checked before
    any pixel is read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"garbage") + chunk(b"IEND", b""))


def test_a_bmp_result_says_what_it_leaves_out(tmp_path: Path) -> None:
    """A BMP holds its DPI alone: a Display P3 photo's profile (and its EXIF) were dropped in
    silence, and the wide-gamut pixels are then shown as sRGB."""
    rgb = np.full((4, 6, 3), 0.5, np.float32)
    icc = bytes(16) + b"RGB " + bytes(108)
    with pytest.warns(UserWarning, match=r"out\.bmp: its ICC profile, EXIF are left out: BMP cannot hold them "
                                         r"\(save it as \.png or \.tif to keep them\)"):
        save_image(tmp_path / "out.bmp", rgb, icc_profile=icc, exif=_camera_exif(), dpi=(300.0, 300.0))
    with Image.open(tmp_path / "out.bmp") as img:
        assert "icc_profile" not in img.info and round(img.info["dpi"][0]) == 300     # its DPI is kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # nothing to leave out: no warning
        save_image(tmp_path / "plain.bmp", rgb, dpi=(300.0, 300.0))


def _k_only_cmyk_profile() -> bytes:
    """An ICC v2 CMYK output profile (CMYK -> Lab through an 8-bit table) whose colours follow K
    alone: K 0 is white, K 255 black, L* linear in K between, and C, M, Y change nothing. Pillow's
    plain formula would give C, M and Y their own colours."""
    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))
    identity = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    ramp = bytes(range(256))
    # a 2-point grid over C, M, Y, K (K varies fastest); Lab as lut8 encodes it: L* 0..100 -> 0..255, a*, b* 0 -> 128
    grid = b"".join(bytes((0 if k else 255, 128, 128)) for _ in range(8) for k in (0, 1))
    a2b0 = b"mft1" + bytes(4) + bytes((4, 3, 2, 0)) + identity + ramp * 4 + grid + ramp * 3
    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    name = b"K only\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(4 + 4 + 2 + 1 + 67)
    tags = [(b"A2B0", a2b0), (b"wtpt", b"XYZ " + bytes(4) + d50), (b"desc", desc)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + bytes(4) + bytes((2, 0x10, 0, 0)) + b"prtrCMYKLab "
              + bytes(12) + b"acsp" + bytes(28) + d50 + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def _srgb_of_lightness(lightness: float) -> float:
    """The sRGB level (0..255) of a neutral of CIE lightness L* (a gray keeps its luminance Y from
    D50 to D65): the CIE L* inverse, then the sRGB transfer curve."""
    y = ((lightness + 16) / 116) ** 3 if lightness > 8 else lightness / 903.3
    return 255 * (12.92 * y if y <= 0.0031308 else 1.055 * y ** (1 / 2.4) - 0.055)


def test_a_cmyk_image_becomes_rgb_through_its_own_profile(tmp_path: Path) -> None:
    """A CMYK file's embedded CMYK profile was dropped and its colours converted by Pillow's plain
    formula (with a warning): a print file's numbers mean what its profile says."""
    inks = [(200, 30, 10, 0), (0, 0, 0, 128), (255, 255, 255, 255), (0, 200, 0, 64)]
    cmyk = Image.new("CMYK", (4, 1))
    cmyk.putdata(inks)
    cmyk.save(tmp_path / "profiled.tif", icc_profile=_k_only_cmyk_profile())
    expected = [_srgb_of_lightness(100 * (1 - k / 255)) for *_, k in inks]     # 255, 118.4, 0, 184.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # applied: nothing to warn about
        rgb, alpha = load_image(tmp_path / "profiled.tif")
        with Image.open(tmp_path / "profiled.tif") as img:
            from_pil, _ = as_float_image(img)
    assert alpha is None
    for got in (rgb, from_pil):
        np.testing.assert_allclose(got[0] * 255, np.repeat(np.array(expected)[:, None], 3, axis=1), atol=1.5)
    # without the profile the same inks are colours (the plain formula): the profile made the difference
    cmyk.save(tmp_path / "plain.tif")
    plain, _ = load_image(tmp_path / "plain.tif")
    assert np.ptp(plain[0, 0] * 255) > 100


def test_a_cmyk_image_with_an_unusable_profile_is_said_to_be_converted_without_it(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (6, 4), (20, 200, 30, 10))
    cmyk.save(tmp_path / "profiled.jpg", icc_profile=bytes(16) + b"CMYK" + bytes(108))     # a header, no profile
    cmyk.save(tmp_path / "plain.jpg")
    with pytest.warns(UserWarning, match=r"profiled\.jpg: its CMYK colour profile cannot be used, so its colours "
                                         "are converted to RGB by a plain formula"):
        load_image(tmp_path / "profiled.jpg")
    # a profile Little CMS reads but cannot convert from (an sRGB one whose header says CMYK): the same
    from PIL import ImageCms
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk.save(tmp_path / "relabelled.jpg", icc_profile=srgb[:16] + b"CMYK" + srgb[20:])
    with pytest.warns(UserWarning, match=r"relabelled\.jpg: its CMYK colour profile cannot be used"):
        rgb, _ = load_image(tmp_path / "relabelled.jpg")
    np.testing.assert_array_equal(rgb, load_image(tmp_path / "plain.jpg")[0])
    with Image.open(tmp_path / "profiled.jpg") as img, \
            pytest.warns(UserWarning, match="this CMYK PIL image's colour profile cannot be used"):
        as_float_image(img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(tmp_path / "plain.jpg")

def test_a_16_bit_negative_reaches_upscale_as_its_16_bit_samples(tmp_path: Path) -> None:
    """upscale hands the engine a file's own samples, but a 16-bit MinIsWhite TIFF was turned positive
    in float32: an image-sized float copy, and a float result where the file's samples are uint16."""
    from alignvar_edge.images.read import load_image_for_upscale
    stored = np.arange(9 * 13, dtype=np.uint16).reshape(9, 13) * 500
    tifffile.imwrite(tmp_path / "neg.tif", stored, photometric="miniswhite")
    planes, alpha, (gray, bits), _ = load_image_for_upscale(tmp_path / "neg.tif", None, 4)
    assert (gray, bits, alpha) == (True, 16, None)
    assert planes.dtype == np.uint16 and np.array_equal(planes, 65535 - stored)
