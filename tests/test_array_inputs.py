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


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ">f4"])
def test_as_float_image_is_a_new_native_float32_array_whatever_float_it_is_given(dtype) -> None:
    """A float image came back as the caller's own array in its own dtype: writing into the
    "converted" image changed the caller's source."""
    from alignvar_edge.images import as_float_image
    source = (_image() / 255).astype(dtype)
    kept = source.copy()
    x, _ = as_float_image(source)
    assert x.dtype == np.dtype(np.float32) and x.dtype.isnative
    x[...] = 0.5
    assert np.array_equal(source, kept)


def test_as_float_image_clips_values_upscale_takes_within_its_slack_to_0_1() -> None:
    from alignvar_edge.images import as_float_image
    source = (_image() / 255).astype(np.float32)
    source[0, 0] = [1.003, -0.003, 0.5]                  # within 1/255 of [0, 1]: taken, and clipped
    x, _ = as_float_image(source)
    assert x[0, 0].tolist() == [1.0, 0.0, 0.5]


def _layouts_upscale_refuses() -> list[tuple[np.ndarray, str]]:
    f = (_image() / 255).astype(np.float32)
    nan, alpha_inf = f.copy(), np.dstack([f, np.ones(f.shape[:2], np.float32)])
    nan[3, 4, 1] = np.nan
    alpha_inf[1, 1, 3] = np.inf
    return [(nan, r"^the image contains NaN or Inf values$"),
            (alpha_inf, r"^the image's alpha channel contains NaN or Inf values$"),
            (np.ascontiguousarray(f.transpose(2, 0, 1)), r"got shape \(3, 20, 16\); its channels come first"),
            (np.stack([f, f]), r"got shape \(2, 20, 16, 3\); a stack of 2 images")]


@pytest.mark.parametrize("case", range(4), ids=["nan", "alpha-inf", "chw", "4-d"])
def test_as_float_image_refuses_what_upscale_refuses_in_its_words(engine, case) -> None:
    from alignvar_edge.images import as_float_image
    image, said = _layouts_upscale_refuses()[case]
    with pytest.raises(InputError, match=said):
        engine.upscale(image)
    with pytest.raises(InputError, match=said):
        as_float_image(image)


def test_upscale_many_takes_a_4_d_array_as_a_stack_whichever_library_made_it(engine, tmp_path) -> None:
    """A numpy stack (or a memmap of frames) was refused as "one image", and the hint it gave,
    upscale_many([stack]), was refused in turn; the same frames as a torch tensor were iterated."""
    stack = np.stack([_image(12, 10, seed) for seed in range(3)])
    singles = [engine.upscale(frame) for frame in stack]
    frames = np.memmap(tmp_path / "frames.u8", np.uint8, "w+", shape=stack.shape)
    frames[:] = stack
    for source in (stack, frames):
        results = list(engine.upscale_many(source))
        assert len(results) == 3 and all(np.array_equal(r, s) for r, s in zip(results, singles))
    with pytest.raises(InputError, match=r"got shape \(3, 12, 10, 3\); a stack of 3 images: pass it itself to "
                                         r"upscale_many, which takes each in turn$"):
        list(engine.upscale_many([stack]))


def test_upscale_many_refuses_one_image_as_a_tensor_as_it_refuses_one_numpy_image(engine) -> None:
    """A 3-D torch tensor was iterated row by row, each row upscaled as a gray image of its own."""
    torch = pytest.importorskip("torch")
    with pytest.raises(InputError, match=r"^upscale_many takes an iterable of images, got one image \(Tensor\)"):
        engine.upscale_many(torch.from_numpy(_image()))


def test_an_open_file_is_refused_saying_to_decode_it_as_its_bytes_are(engine, tmp_path) -> None:
    """An io.BytesIO of a PNG said "images must be uint8, uint16 or float ... got dtype object"."""
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(_image()).save(buffer, "PNG")
    (tmp_path / "a.png").write_bytes(buffer.getvalue())
    with open(tmp_path / "a.png", "rb") as f:
        for opened, kind in ((io.BytesIO(buffer.getvalue()), "BytesIO"), (f, "BufferedReader")):
            with pytest.raises(InputError, match=rf"^got a file object \({kind}\), not an image; decode it first: "
                                                 r"PIL\.Image\.open\(f\)$"):
                engine.upscale(opened)


@pytest.mark.parametrize("channels, dtype", [(4, np.uint8), (2, np.uint16)])
def test_save_image_writes_upscales_own_alpha_results_as_with_alpha_given(engine, tmp_path, channels, dtype) -> None:
    """`Engine.upscale`'s HxWx4 and HxWx2 results were refused ("must be HxWx3 or HxW")."""
    from alignvar_edge.images import load_image, save_image
    full = np.iinfo(dtype).max
    colour = (_image()[..., :channels - 1].astype(np.float64) / 255 * full).astype(dtype)
    alpha = np.full(colour.shape[:2], full, dtype)
    alpha[:4, :4] = 0
    up = engine.upscale(np.dstack([colour, alpha]))
    save_image(tmp_path / "whole.png", up)
    save_image(tmp_path / "apart.png", up[..., :-1] if channels == 4 else up[..., 0], alpha=up[..., -1])
    (rgb, read_alpha), (rgb_apart, alpha_apart) = (load_image(tmp_path / name) for name in ("whole.png", "apart.png"))
    assert np.array_equal(rgb, rgb_apart) and np.array_equal(read_alpha, alpha_apart)
    assert np.array_equal(np.round(read_alpha.astype(np.float64) * full), up[..., -1])     # every bit kept
    with pytest.raises(InputError, match=r"whole\.png has an alpha channel of its own \(shape \(80, 64, "
                                         rf"{channels}\)\), and alpha= is given too; pass one"):
        save_image(tmp_path / "whole.png", up, alpha=up[..., -1], overwrite=True)
