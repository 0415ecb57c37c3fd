"""What reading a file for `upscale` holds in memory, and how its size refusal names the option."""
from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.caller import command_line
from alignvar_edge.errors import InputError
from alignvar_edge.images import load_image, save_image
from alignvar_edge.images.arrays import unit_floats
from alignvar_edge.images.read import file_samples, load_image_for_upscale


def _peak_bytes(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bits", [8, 16])
def test_upscale_reads_a_files_own_samples_without_an_image_sized_float_copy(tmp_path: Path, bits: int) -> None:
    """A 96 MP PNG peaked at 3.28 GB while it was read (11x its 8-bit samples): it was decoded to
    float32 RGB (two float copies at once), and `file_samples` made a third before casting back to
    the file's samples. The samples are read as they are: less than one float32 copy besides them."""
    dtype = np.uint8 if bits == 8 else np.uint16
    rng = np.random.default_rng(3)
    samples = rng.integers(0, np.iinfo(dtype).max + 1, (1000, 1500, 3)).astype(dtype)
    path = tmp_path / f"in{bits}.png"
    if bits == 8:
        Image.fromarray(samples).save(path, compress_level=1)
    else:
        save_image(path, samples)
    load_image_for_upscale(path, None, 4)        # once first: the modules it imports are not what it holds

    def load():
        planes, _, (_, file_bits), _ = load_image_for_upscale(path, None, 4)
        return file_samples(planes, file_bits)
    got, peak = _peak_bytes(load)
    assert got.dtype == dtype and np.array_equal(got, samples)
    float_copy = samples.size * 4
    assert peak < samples.nbytes + 0.75 * float_copy, peak / samples.nbytes
    if bits == 8:     # Pillow's pixels copied a few rows at a time: np.asarray's whole-image bytes came to 2.0x
        assert peak < 1.9 * samples.nbytes, peak / samples.nbytes
    # load_image's floats are those samples, bit for bit
    assert np.array_equal(load_image(path)[0], unit_floats(samples))


def test_a_gray_files_samples_are_one_plane(tmp_path: Path) -> None:
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    planes, alpha, (is_gray, bits), _ = load_image_for_upscale(tmp_path / "g.png", None, 4)
    assert (is_gray, bits, alpha) == (True, 8, None) and np.array_equal(planes, gray)
    assert np.array_equal(load_image(tmp_path / "g.png")[0], np.repeat(unit_floats(gray)[..., None], 3, axis=2))


def test_the_size_refusal_names_the_limit_as_the_caller_passes_it(tmp_path: Path) -> None:
    """It said "(max_megapixels / --max-megapixels)" to every caller."""
    Image.new("RGB", (200, 100)).save(tmp_path / "a.png")
    said = r"over the 0\.01 MP limit; downscale or crop it, or raise the limit \({}\)$"
    with pytest.raises(InputError, match=said.format(re.escape("max_megapixels="))):
        load_image(tmp_path / "a.png", max_megapixels=0.01)
    with command_line(), pytest.raises(InputError, match=said.format("--max-megapixels")):
        load_image_for_upscale(tmp_path / "a.png", 0.01, 4)
