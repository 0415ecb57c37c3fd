"""The Python API an embedding service calls: what `Engine.upscale`, `upscale_many`, `close` and
`load` refuse, and in which exception class, on a real ONNX Runtime engine of the `micro` model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import runtimes
from alignvar_edge.errors import InputError


@pytest.fixture(scope="module")
def engine(micro_export: Path):
    with runtimes.load(micro_export, threads=1) as e:
        yield e


@pytest.mark.parametrize("one", [np.zeros((20, 24, 3), np.uint8), Image.new("RGB", (6, 5)), "photo.png",
                                 Path("photo.png"), (np.zeros((4, 4, 3)), None)],
                         ids=["array", "pil", "str", "path", "load_image-pair"])
def test_upscale_many_of_one_image_is_refused_at_the_call_naming_the_list_to_pass(engine, one) -> None:
    """An array was iterated row by row (20 gray results for one HxWx3 image), a path character by
    character ("got the path 'p'"), a PIL image raised a bare TypeError."""
    with pytest.raises(InputError, match=r"^upscale_many takes an iterable of images, got one image \(.*\); "
                                         r"pass a list, upscale_many\(\[image\]\), or call upscale\(image\)$"):
        engine.upscale_many(one)         # at the call, before any result is asked for


def test_upscale_many_of_a_list_of_one_image_is_that_image_upscaled(engine) -> None:
    img = (np.random.default_rng(0).random((5, 6, 3)) * 255).astype(np.uint8)
    (out,) = engine.upscale_many([img])
    assert np.array_equal(out, engine.upscale(img))
