"""The public functions that take a path take bytes too, as Python's `open` does: bytes are what
os.listdir(b'...') gives, the one lossless form of a name in another encoding (a Latin-1
`caf\\xe9.png`). `load` refused them with an InputError while `load_image`, `save_image`,
`quantize_artifact` and others raised pathlib's bare TypeError ("argument should be a str object or
an os.PathLike object returning str, not <class 'bytes'>"); now every one reads `os.fsdecode(path)`,
the same file (`name_text.path_text`)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from alignvar_edge import AlignVAR, build, load
from alignvar_edge.bench import merge_reports, read_report
from alignvar_edge.errors import CheckpointError, OutputExistsError
from alignvar_edge.export import StagedRunner, export_onnx
from alignvar_edge.model.checkpoint import weights_sha256
from alignvar_edge.images import (bits_per_sample, file_layout, file_metadata, file_profile, list_images, load_image,
                                  output_format, save_image)
from alignvar_edge.quantize import QuantizeOptions, quantize_artifact

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOC_REPORT = Path(__file__).resolve().parents[1] / "docs" / "results" / "epyc-2core" / "tiny-t1.json"


def _latin1(folder: Path, name: bytes) -> bytes:
    """`folder`/`name` as bytes, a name in Latin-1 (no UTF-8); the test is skipped where the file
    system refuses such a name."""
    path = os.path.join(os.fsencode(folder), name)
    try:
        open(path, "wb").close()
        os.remove(path)
    except OSError as e:            # APFS, for one, refuses a name that is not UTF-8
        pytest.skip(f"this file system refuses the name {name!r}: {e}")
    return path


@pytest.fixture()
def photo(tmp_path: Path) -> bytes:
    """A 12x10 RGB PNG named caf\\xe9.png, with an sRGB profile and a DPI to carry over."""
    path = _latin1(tmp_path, b"caf\xe9.png")
    pixels = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(os.fsdecode(path), icc_profile=icc, dpi=(150, 150))
    return path


def test_the_image_functions_read_a_latin1_file_named_by_bytes(photo: bytes) -> None:
    text = os.fsdecode(photo)
    rgb, alpha = load_image(photo)
    want, _ = load_image(text)
    assert alpha is None and rgb.shape == (10, 12, 3) and np.array_equal(rgb, want)
    assert file_profile(photo) == file_profile(text) is not None
    assert file_metadata(photo, 4) == file_metadata(text, 4) and file_metadata(photo, 4)["dpi"] == (600, 600)
    assert file_layout(photo) == (False, 8) and bits_per_sample(photo) == 8
    assert output_format(photo) == "PNG"
    assert list_images(os.path.dirname(photo)) == [Path(text)]


def test_save_image_writes_the_latin1_name_given_as_bytes_and_never_over_its_input(photo: bytes) -> None:
    out = photo.replace(b".png", b" x4\xe9.png")
    rgb, _ = load_image(photo)
    assert save_image(out, rgb, input_path=photo) == Path(os.fsdecode(out))
    assert os.path.isfile(out) and np.array_equal(load_image(out)[0], rgb)
    with pytest.raises(OutputExistsError, match=r"x4\udce9.png already exists"):
        save_image(out, rgb)
    with pytest.raises(Exception, match="onto its own input"):
        save_image(photo, rgb, overwrite=True, input_path=photo)


def test_build_load_and_quantize_take_latin1_folders_as_bytes(tmp_path: Path, micro_export: Path) -> None:
    """ONNX Runtime opens artifacts in such folders (native_paths): the bytes name the same folder."""
    export = _latin1(tmp_path, b"caf\xe9 exp")
    shutil.copytree(micro_export, os.fsdecode(export))
    engine = build(export, "onnxruntime", out=export + b" ort")
    assert engine == Path(os.fsdecode(export + b" ort")) and os.path.isfile(export + b" ort/manifest.json")
    with load(export + b" ort") as e:
        assert e.metadata.backend == "onnxruntime"
    half = quantize_artifact(export, export + b" fp16", QuantizeOptions(precision="fp16", target="onnxruntime"))
    assert half == Path(os.fsdecode(export + b" fp16")) and os.path.isfile(export + b" fp16/manifest.json")


def test_a_checkpoint_saves_and_loads_by_bytes(tmp_path: Path) -> None:
    """By a UTF-8 name's bytes: safetensors opens files by UTF-8 names, so a checkpoint in a folder
    named in Latin-1 fails to load whichever way it is named."""
    model = AlignVAR.from_pretrained(b"alignvar-tiny")
    ck = os.path.join(os.fsencode(tmp_path), "Büro ck".encode())
    model.save_pretrained(ck)
    again = AlignVAR.from_pretrained(ck)
    assert again.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    # what `export` records of it: the folder as text, as JSON holds it
    assert again.pretrained_checkpoint(weights_sha256(again)) == (os.fsdecode(ck), os.fsdecode(ck))
    with pytest.raises(CheckpointError, match=r"no checkpoint directory at '.*/caf\udce9'"):
        AlignVAR.from_pretrained(_latin1(tmp_path, b"caf\xe9"))


def test_export_names_its_latin1_output_folder_given_as_bytes(tmp_path: Path) -> None:
    """Refused before any tracing, the folder named as text: the bytes reached the output checks."""
    out = _latin1(tmp_path, b"caf\xe9 out")
    os.mkdir(out)
    open(os.path.join(out, b"mine.txt"), "w").close()
    with pytest.raises(OutputExistsError, match=r"caf\udce9 out"):
        export_onnx(b"alignvar-tiny", out)
    with pytest.raises(FileNotFoundError, match=r"caf\\udce9 staged"):
        StagedRunner(_latin1(tmp_path, b"caf\xe9 staged"), num_scales=4)


def test_bench_reports_are_read_and_merged_by_bytes(tmp_path: Path) -> None:
    report = _latin1(tmp_path, b"caf\xe9.json")
    shutil.copy(DOC_REPORT, os.fsdecode(report))
    assert read_report(report) == read_report(DOC_REPORT)
    assert merge_reports([report])["rows"] == merge_reports([DOC_REPORT])["rows"]
