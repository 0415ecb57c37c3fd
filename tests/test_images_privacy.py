"""What an `upscale` output must not carry of its input: previews of other pixels (XMP thumbnails,
images embedded in the XMP, a maker note's preview), and with --strip-metadata anything personal
(EXIF, XMP, PNG text), while its colour profile and print size stay. Inputs are built with Pillow
here, as cameras and editors lay them out."""
from __future__ import annotations

import base64
import io
import struct
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from alignvar_edge.images import file_metadata, save_image

# what the inputs hold that says who made them, where, with what and from what
_SECRETS = (b"Jane Doe", b"SN-0123456789", b"janes-macbook", b"1 Main St", b"witness.CR3", b"ORIGINAL-DOC",
            b"patient 12345")
_XMP_NS = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
           "dc": "http://purl.org/dc/elements/1.1/", "stEvt": "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"}
_EDITED_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#" '
    'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'photoshop:History="Redacted a face; original at /Users/jane/witness.CR3" '
    'xmpMM:InstanceID="xmp.iid:INPUT-INSTANCE">'
    '<dc:creator><rdf:Seq><rdf:li>Jane Doe</rdf:li></rdf:Seq></dc:creator>'
    '<xmpMM:DocumentID>xmp.did:ORIGINAL-DOC-1234</xmpMM:DocumentID>'
    '<xmpMM:History><rdf:Seq><rdf:li stEvt:action="saved" stEvt:instanceID="xmp.iid:abc"/></rdf:Seq></xmpMM:History>'
    '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def _personal_exif() -> Image.Exif:
    """A camera's and an editor's EXIF: author, computer, body serial, user comment, GPS, a maker note."""
    exif = Image.Exif()
    exif[0x010F], exif[0x013B], exif[0x013C] = "Canon", "Jane Doe", "janes-macbook.local"
    exif[0x8769] = {0xA431: "SN-0123456789", 0x9286: b"ASCII\0\0\0home: 1 Main St", 0x927C: b"Canon\0SN-0123456789"}
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}
    return exif


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _personal_inputs(folder: Path) -> None:
    """a.jpg, b.png, c.webp, d.tif at 72 DPI with an ICC profile, `_personal_exif` and `_EDITED_XMP`;
    the PNG with text chunks and a gamma of 1.0 too."""
    pixels = Image.fromarray(np.linspace(0, 255, 6 * 8 * 3).reshape(6, 8, 3).astype(np.uint8))
    exif, xmp, icc = _personal_exif(), _EDITED_XMP.encode(), _srgb_profile()
    pixels.save(folder / "a.jpg", exif=exif.tobytes(), xmp=xmp, icc_profile=icc, dpi=(72, 72), quality=95)
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    info.add_text("Comment", "patient 12345")
    info.add_itxt("XML:com.adobe.xmp", _EDITED_XMP)
    info.add(b"gAMA", struct.pack(">I", 100000))
    pixels.save(folder / "b.png", exif=exif.tobytes(), pnginfo=info, icc_profile=icc, dpi=(72, 72))
    pixels.save(folder / "c.webp", exif=exif.tobytes(), xmp=xmp, icc_profile=icc, lossless=True)
    exif[700] = xmp                                               # a TIFF's XMP is a tag of its directory
    pixels.save(folder / "d.tif", exif=exif.tobytes(), icc_profile=icc, dpi=(72, 72))


def test_upscale_strip_metadata_writes_the_colour_profile_and_print_size_alone(tmp_path: Path,
                                                                               one_torch_thread) -> None:
    """A server had no way to write results without the input's GPS, serial numbers, author,
    computer name, edit history and PNG comments: `upscale` kept them all. --strip-metadata keeps
    the ICC profile, a PNG's gamma and the DPI x4 in the format's own field (WebP has none: its
    DPI would be EXIF), and writes no EXIF, XMP or text."""
    from alignvar_edge.cli import main
    (tmp_path / "in").mkdir()
    _personal_inputs(tmp_path / "in")
    for name in ("a.jpg", "b.png", "c.webp", "d.tif"):                   # the inputs hold every secret
        held = (tmp_path / "in" / name).read_bytes()
        assert all(secret in held for secret in _SECRETS if name == "b.png" or secret != b"patient 12345"), name
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--engine", "alignvar-tiny",
                 "--strip-metadata", "--quiet"]) == 0
    for name in ("a.jpg", "b.png", "c.webp", "d.tif"):
        written = (tmp_path / "out" / name).read_bytes()
        assert [s for s in _SECRETS if s in written] == [], name
        with Image.open(tmp_path / "in" / name) as im:
            icc = im.info["icc_profile"]
        with Image.open(tmp_path / "out" / name) as im:
            assert im.size == (32, 24) and im.info["icc_profile"] == icc, name
            assert "xmp" not in im.info and 700 not in im.getexif(), name
            if im.format == "TIFF":               # its own tags: layout and resolution, no EXIF directory
                assert not {0x8769, 0x8825, 0x010F, 0x013B, 0x013C} & set(im.getexif()), name
            else:
                assert "exif" not in im.info, name
            assert im.info.get("dpi") == (None if im.format == "WEBP" else pytest.approx((288, 288), rel=1e-4)), name
            if im.format == "PNG":
                assert im.info["gamma"] == 1.0 and im.text == {}              # type: ignore[attr-defined]


def _image_base64(fmt: str, lines: bool = False) -> str:
    """A small picture as `fmt`, in base64 (broken into lines of 76, as XMP writers break it)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format=fmt)
    text = base64.b64encode(buf.getvalue()).decode()
    return "\n".join(text[i:i + 76] for i in range(0, len(text), 76)) if lines else text


def _written_xmp(path: Path) -> ET.Element:
    with Image.open(path) as im:
        return ET.fromstring(im.info["xmp"])


def test_previews_in_the_xmp_are_not_carried(tmp_path: Path) -> None:
    """The XMP's thumbnail (a JPEG of the input before it was edited) went into every output,
    as did other images the XMP embeds (a phone's photo before its portrait blur, its depth map,
    a data URI),
    though the EXIF's thumbnail is left out. The packet is parsed: the old `xap` prefixes are the
    same namespaces, and so is a tiff namespace under another prefix, whose orientation went on."""
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xap="http://ns.adobe.com/xap/1.0/" '
        'xmlns:xapGImg="http://ns.adobe.com/xap/1.0/g/img/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:GImage="http://ns.google.com/photos/1.0/image/" xmlns:GDepth="http://ns.google.com/photos/1.0/depthmap/" '
        'xmlns:t="http://ns.adobe.com/tiff/1.0/" t:Orientation="6" xmlns:ex="http://example.com/ns/" '
        f'ex:Preview="data:image/png;base64,{_image_base64("PNG")}" '
        f'GImage:Mime="image/jpeg" GImage:Data="{_image_base64("JPEG")}">'
        '<xap:Thumbnails><rdf:Alt><rdf:li rdf:parseType="Resource"><xapGImg:format>JPEG</xapGImg:format>'
        f'<xapGImg:image>{_image_base64("JPEG", lines=True)}</xapGImg:image></rdf:li></rdf:Alt></xap:Thumbnails>'
        f'<GDepth:Data>{_image_base64("PNG", lines=True)}</GDepth:Data>'
        '<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">© Jane Doe</rdf:li></rdf:Alt></dc:rights>'
        '</rdf:Description></rdf:RDF></x:xmpmeta>')
    Image.new("RGB", (4, 4)).save(tmp_path / "in.jpg", xmp=xmp.encode())
    save_image(tmp_path / "out.jpg", np.zeros((16, 16, 3)), **file_metadata(tmp_path / "in.jpg", 4))
    description = _written_xmp(tmp_path / "out.jpg").find(".//rdf:Description", _XMP_NS)
    assert description is not None
    assert description.attrib == {"{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about": "",
                                  "{http://ns.google.com/photos/1.0/image/}Mime": "image/jpeg"}
    assert [child.tag for child in description] == ["{http://purl.org/dc/elements/1.1/}rights"]
    assert "© Jane Doe" in "".join(description.itertext())
    written = (tmp_path / "out.jpg").read_bytes()
    assert b"/9j/" not in written and b"iVBORw0KGgo" not in written     # no JPEG or PNG in base64 anywhere


def test_xmp_of_a_result_is_a_new_instance_of_the_same_document(tmp_path: Path) -> None:
    """The result claimed to be the input's very instance (its xmpMM:InstanceID unchanged), though
    it is another file with other pixels: it gets a new InstanceID, as an editor's save gives one,
    as an attribute or an element; its DocumentID and History stay the input's."""
    as_element = _EDITED_XMP.replace(' xmpMM:InstanceID="xmp.iid:INPUT-INSTANCE">',
                                     '><xmpMM:InstanceID>xmp.iid:INPUT-INSTANCE</xmpMM:InstanceID>')
    for name, packet in (("attribute.png", _EDITED_XMP), ("element.png", as_element)):
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", packet)
        Image.new("RGB", (4, 4)).save(tmp_path / name, pnginfo=info)
        out = save_image(tmp_path / f"x4-{name}", np.zeros((16, 16, 3)), **file_metadata(tmp_path / name, 4))
        description = _written_xmp(out).find(".//rdf:Description", _XMP_NS)
        assert description is not None
        instance = description.get(f"{{{_XMP_NS['xmpMM']}}}InstanceID") or \
            description.findtext("xmpMM:InstanceID", namespaces=_XMP_NS)
        assert instance and instance.startswith("xmp.iid:") and instance != "xmp.iid:INPUT-INSTANCE", name
        assert description.findtext("xmpMM:DocumentID", namespaces=_XMP_NS) == "xmp.did:ORIGINAL-DOC-1234"
        events = description.findall("xmpMM:History/rdf:Seq/rdf:li", _XMP_NS)
        assert [e.get(f"{{{_XMP_NS['stEvt']}}}instanceID") for e in events] == ["xmp.iid:abc"]


@pytest.mark.parametrize(("packet", "why"), [
    (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
     "no element found"),                                                       # cut off
    (b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>',
     "it declares a document type, which XMP does not use")], ids=["cut-off", "doctype"])
def test_xmp_that_cannot_be_parsed_is_left_out_with_a_warning(tmp_path: Path, packet: bytes, why: str) -> None:
    """An XMP packet that is not XML (or declares entities to expand) cannot be searched for the
    previews it holds: it was copied as it was; it is left out, in one line naming the file."""
    Image.new("RGB", (4, 4)).save(tmp_path / "in.jpg", xmp=packet)
    with pytest.warns(UserWarning, match=rf"in\.jpg: its XMP cannot be copied \({why}.*\); the result is written "
                                         r"without it \(save the file again from an image editor to repair it\)"):
        meta = file_metadata(tmp_path / "in.jpg", 4)
    assert meta["xmp"] is None


def test_a_maker_note_and_its_preview_are_not_carried(tmp_path: Path) -> None:
    """A camera's maker note (here a Nikon's, holding its JPEG preview of the shot) was copied byte
    for byte into every output: a picture of other pixels than the output's, beside serial numbers.
    The Exif directory's camera settings stay."""
    preview = io.BytesIO()
    Image.new("RGB", (16, 16), (250, 0, 0)).save(preview, format="JPEG")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "NIKON CORPORATION", "NIKON Z 6"
    exif[0x8769] = {0x829A: 0.004, 0x927C: b"Nikon\0\x02\x10\0\0" + preview.getvalue()}
    Image.new("RGB", (4, 4)).save(tmp_path / "in.jpg", exif=exif.tobytes())
    assert preview.getvalue() in (tmp_path / "in.jpg").read_bytes()
    out = save_image(tmp_path / "out.png", np.zeros((16, 16, 3)), **file_metadata(tmp_path / "in.jpg", 4))
    assert preview.getvalue()[:64] not in out.read_bytes()
    with Image.open(out) as im:
        written = im.getexif()
    assert (written[0x010F], written[0x0110]) == ("NIKON CORPORATION", "NIKON Z 6")
    assert written.get_ifd(0x8769) == {0x829A: pytest.approx(0.004)}


def _xmp_with_title(title: str) -> bytes:
    """An XMP packet whose dc:title holds `title` (XML)."""
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            f'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></rdf:Description></rdf:RDF>'
            '</x:xmpmeta><?xpacket end="w"?>').encode()


_XMP_LEFT_OUT = "its XMP cannot be copied"


def test_a_deeply_nested_xmp_is_left_out_and_the_file_upscaled(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               one_torch_thread) -> None:
    """A 15 KB JPEG whose dc:title nests 2000 elements stopped `upscale` with a RecursionError
    traceback, exit 1 (a folder run stopped there, and again on resume): its XMP is left out in
    the one-line warning that names the file, and the picture upscaled."""
    from alignvar_edge.cli import main
    Image.new("RGB", (8, 8)).save(tmp_path / "deep.jpg", xmp=_xmp_with_title("<a>" * 2000 + "x" + "</a>" * 2000))
    assert main(["upscale", str(tmp_path / "deep.jpg"), str(tmp_path / "out.jpg"), "--engine", "alignvar-tiny",
                 "--quiet"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [f"alignvar-edge upscale: warning: {tmp_path / 'deep.jpg'}: {_XMP_LEFT_OUT} (it nests elements "
                      "more than 64 deep); the result is written without it (save the file again from an image "
                      "editor to repair it)"]
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (32, 32) and "xmp" not in im.info


@pytest.mark.parametrize(("title", "why"), [
    ("<a/>" * 25_000, "it holds more than 20000 elements"),
    ("x" * 1_100_000, r"it is \d+ bytes, over the 1048576 that are read")], ids=["elements", "bytes"])
def test_an_xmp_past_the_bounds_is_left_out_with_a_warning(tmp_path: Path, title: str, why: str) -> None:
    """Parsing a packet of 1 MB took seconds and 100 MB of memory, for each file of a folder: one
    of more elements or bytes than a real XMP holds is left out before it is parsed into a tree."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _xmp_with_title(title).decode())
    Image.new("RGB", (4, 4)).save(tmp_path / "in.png", pnginfo=info)
    with pytest.warns(UserWarning, match=rf"in\.png: {_XMP_LEFT_OUT} \({why}\); the result is written without it"):
        assert file_metadata(tmp_path / "in.png", 4)["xmp"] is None


def test_a_long_xmp_within_the_bounds_is_carried(tmp_path: Path) -> None:
    """The bounds leave real packets alone: Photoshop's DocumentAncestors grows to thousands of
    entries, nested a few elements deep."""
    ancestors = "".join(f"<rdf:li>xmp.did:{i:032x}</rdf:li>" for i in range(5000))
    packet = _xmp_with_title(f"<rdf:Bag>{ancestors}</rdf:Bag>")
    assert len(packet) > 200_000
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode())
    Image.new("RGB", (4, 4)).save(tmp_path / "in.png", pnginfo=info)
    carried = file_metadata(tmp_path / "in.png", 4)["xmp"]
    assert carried is not None and len(ET.fromstring(carried).findall(".//rdf:li", _XMP_NS)) == 5000


def test_strip_metadata_does_not_read_what_it_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    one_torch_thread) -> None:
    """--strip-metadata dropped the XMP only after reading it: a cut-off XMP was said to be left
    out ('save the file again to repair it') from files whose XMP the user asked to drop, and a
    deeply nested one stopped the run. Neither is parsed now, nor said; the colour profile stays."""
    from alignvar_edge.cli import main
    (tmp_path / "in").mkdir()
    icc = _srgb_profile()
    cut_off = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "cut.jpg", xmp=cut_off, icc_profile=icc)
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "deep.jpg", icc_profile=icc,
                                  xmp=_xmp_with_title("<a>" * 2000 + "x" + "</a>" * 2000))
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--engine", "alignvar-tiny", "--quiet",
                 "--strip-metadata"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "XMP" not in err, err
    for name in ("cut.jpg", "deep.jpg"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.info["icc_profile"] == icc and "xmp" not in im.info, name


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_utf16_or_utf32_xmp_is_carried(tmp_path: Path, codec: str) -> None:
    """XMP may be UTF-16 or UTF-32 (with or without a byte-order mark): trimming NULs as padding
    cut a UTF-16LE packet's last '>' in half, and every one was left out as 'unclosed token'. It
    is carried, written in UTF-8, as a TIFF tag padded with a NUL too."""
    packet = _EDITED_XMP.encode(codec)
    Image.new("RGB", (4, 4)).save(tmp_path / "in.jpg", xmp=packet)
    exif = Image.Exif()
    exif[700] = packet + b"\0"
    Image.new("RGB", (4, 4)).save(tmp_path / "in.tif", exif=exif.tobytes())
    for name in ("in.jpg", "in.tif"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            carried = file_metadata(tmp_path / name, 4)["xmp"]
        assert carried is not None, name
        assert ET.fromstring(carried).findtext(".//xmpMM:DocumentID", namespaces=_XMP_NS) == \
            "xmp.did:ORIGINAL-DOC-1234", name


def _instance_id(path: Path) -> str | None:
    description = _written_xmp(path).find(".//rdf:Description", _XMP_NS)
    assert description is not None
    return description.get(f"{{{_XMP_NS['xmpMM']}}}InstanceID")


def test_the_same_command_writes_the_same_bytes(tmp_path: Path, one_torch_thread,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The result's new InstanceID was random: the same command wrote other bytes on each run
    (reproducible outputs and content-hash caches broke). It is derived from the input and what
    made the result: the same again, another for another input, engine or option."""
    from _runtime_fixtures import nano_model
    from alignvar_edge import manifest
    from alignvar_edge.cli import main
    # files written just now are remembered at once: the inputs would be, were they hashed to be
    monkeypatch.setattr(manifest, "_SETTLED_NS", 0)
    (tmp_path / "in").mkdir()
    for name, grey in (("a.jpg", 40), ("b.jpg", 200)):                  # the same XMP, other pixels
        Image.new("RGB", (8, 8), (grey,) * 3).save(tmp_path / "in" / name, xmp=_EDITED_XMP.encode())
    nano_model(seed=3).save_pretrained(tmp_path / "other-weights")
    runs = {"out1": [], "out2": [], "overlap": ["--overlap", "1"], "quality": ["--quality", "80"],
            "color-fix": ["--color-fix"], "alpha-is-data": ["--alpha-is-data"],
            "engine": ["--engine", str(tmp_path / "other-weights")]}
    for out, extra in runs.items():
        engine = [] if "--engine" in extra else ["--engine", "alignvar-tiny"]
        assert main(["upscale", str(tmp_path / "in"), str(tmp_path / out), *engine, "--quiet", *extra]) == 0, out
    assert (tmp_path / "out1" / "a.jpg").read_bytes() == (tmp_path / "out2" / "a.jpg").read_bytes()
    ids = {out: {_instance_id(tmp_path / out / name) for name in ("a.jpg", "b.jpg")} for out in runs}
    assert ids["out1"] == ids["out2"] and len(ids["out1"]) == 2, ids           # per input, the same again
    made = [i for out, got in ids.items() if out != "out2" for i in got]
    assert len(set(made)) == len(made) and "xmp.iid:INPUT-INSTANCE" not in made, ids
    # the inputs' hashes are not kept in the artifacts' hash cache: a service's photos would pile up there
    inputs = {manifest.sha256_file(tmp_path / "in" / name, remember=False) for name in ("a.jpg", "b.jpg")}
    assert inputs.isdisjoint(read.sha256 for read in manifest._READS.values())
