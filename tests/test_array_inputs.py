"""In-memory images from numpy, torch and file objects, as `Engine.upscale`, `upscale_many`,
`images.as_float_image` and `save_image` take them (or refuse them, in one line), on a real ONNX
Runtime engine of the `micro` model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alignvar_edge import runtimes
from alignvar_edge.errors import InputError


@pytest.fixture(scope="module")
def engine(micro_export: Path):
    with runtimes.load(micro_export, threads=1) as e:
        yield e


def _image(h: int = 20, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _torch_unreadable() -> list[tuple[object, str]]:
    """Tensors numpy cannot convert, and what the refusal says of each."""
    torch = pytest.importorskip("torch")
    f = torch.from_numpy((_image() / 255).astype(np.float32))
    return [(f.bfloat16(), r"of dtype torch\.bfloat16 on device cpu"),
            (f.clone().requires_grad_(True), r"of dtype torch\.float32 on device cpu requiring grad"),
            (torch.empty(20, 16, 3, device="meta"), r"of dtype torch\.float32 on device meta")]


def test_a_tensor_numpy_cannot_convert_is_one_input_error_naming_it_and_the_fix(engine) -> None:
    """torch's own TypeError ("Got unsupported ScalarType BFloat16") or RuntimeError ("Can't call
    numpy() on Tensor that requires grad") escaped, and in upscale_many without the image's index."""
    for tensor, said in _torch_unreadable():
        refusal = (rf"a torch\.Tensor {said} cannot be read as a numpy array \(.+\); pass x\.detach\(\)\.cpu\(\), "
                   r"with \.float\(\) for a dtype numpy lacks \(bfloat16\)$")
        with pytest.raises(InputError, match="^" + refusal):
            engine.upscale(tensor)
        results = []
        with pytest.raises(InputError, match=r"^image 1 \(from 0\) of upscale_many: " + refusal):
            for r in engine.upscale_many([_image(), tensor]):
                results.append(r)
        assert len(results) == 1


class _Unconvertible:
    """Any object whose `__array__` fails: the refusal names it without knowing its library."""

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        raise RuntimeError("device lost\nsecond line")


def test_any_object_whose_array_conversion_fails_is_named_by_its_class(engine) -> None:
    with pytest.raises(InputError, match=r"^a test_array_inputs\._Unconvertible cannot be read as a numpy array "
                                         r"\(device lost\); pass a numpy array or a PIL image$"):
        engine.upscale(_Unconvertible())
