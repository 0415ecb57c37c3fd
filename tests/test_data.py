"""Sample images and the image-folder dataset."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignvar_edge.degrade import DegradationConfig, degrade
from alignvar_edge.errors import ConfigError, InputError
from alignvar_edge.samples import SAMPLE_IMAGES, sample_images
from alignvar_edge.train.data import ImageFolderDataset


def test_without_scikit_image_the_samples_say_how_to_get_them() -> None:
    """A device install has no scikit-image; a verb that needs the bundled photographs (the parity
    tiles of `build`, say) must say what to install, not only what is missing."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['skimage'] = None\n"
            "from alignvar_edge.errors import InputError\n"
            "from alignvar_edge.samples import sample_images\n"
            "try:\n    sample_images('heldout')\nexcept InputError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("scikit-image is not installed")
    assert re.search(r"install it: `pip install 'scikit-image>=[\d.]+'`, or pass a folder", out) and "--images" in out


def test_sample_splits_are_fixed_and_disjoint() -> None:
    train = dict(sample_images("train"))
    held = dict(sample_images("heldout"))
    assert list(held) == ["astronaut", "coffee", "rocket"]
    assert len(train) == 8 and not set(train) & set(held)
    assert [n for n, _ in sample_images("all")] == [s.name for s in SAMPLE_IMAGES]
    assert held["astronaut"].shape == (512, 512, 3)
    assert held["coffee"].shape == (400, 600, 3)
    assert held["rocket"].shape == (427, 640, 3)
    for img in [*train.values(), *held.values()]:
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert 0.0 <= img.min() and img.max() <= 1.0
    with pytest.raises(ConfigError):
        sample_images("test")  # type: ignore[arg-type]


def test_samples_are_copies_and_gray_is_replicated() -> None:
    (name, a), = [x for x in sample_images("all") if x[0] == "camera"]
    np.testing.assert_array_equal(a[..., 0], a[..., 2])
    a[:] = 0  # mutating a result must not corrupt the cache
    (_, b), = [x for x in sample_images("all") if x[0] == "camera"]
    assert b.max() > 0


def test_samples_match_skimage() -> None:
    import skimage.data

    ref = skimage.data.coffee().astype(np.float32) / 255.0
    np.testing.assert_array_equal(dict(sample_images("heldout"))["coffee"], ref)


def test_dataset_items_deterministic_per_seed_and_index() -> None:
    images = sample_images("heldout")
    ds = ImageFolderDataset(images, crop=64, scale=4, seed=1)
    assert len(ds) == 3
    item = ds[2]
    assert item["name"] == "rocket"
    hr, lr = item["hr"], item["lr"]
    assert isinstance(hr, torch.Tensor) and isinstance(lr, torch.Tensor)
    assert hr.shape == (3, 64, 64) and lr.shape == (3, 16, 16)
    assert hr.dtype == lr.dtype == torch.float32
    assert 0 <= float(lr.min()) and float(lr.max()) <= 1

    again = ImageFolderDataset(images, crop=64, scale=4, seed=1)[2]
    assert torch.equal(again["hr"], hr) and torch.equal(again["lr"], lr)
    other = ImageFolderDataset(images, crop=64, scale=4, seed=2)[2]
    assert not torch.equal(other["hr"], hr)


def test_dataset_hr_is_a_real_crop_and_lr_matches_degrade() -> None:
    img = sample_images("heldout")[1][1]
    ds = ImageFolderDataset([("c", img)], crop=32, scale=4, flips=False,
                            degradation=DegradationConfig.bicubic_only())
    item = ds[0]
    hr = item["hr"].numpy().transpose(1, 2, 0)
    # Find the crop in the source image: it must be an exact window.
    hits = [(y, x) for y in range(img.shape[0] - 31) for x in range(img.shape[1] - 31)
            if img[y, x, 0] == hr[0, 0, 0] and np.array_equal(img[y:y + 32, x:x + 32], hr)]
    assert hits
    np.testing.assert_array_equal(item["lr"].numpy().transpose(1, 2, 0),
                                  degrade(hr, DegradationConfig.bicubic_only(), 0))


def test_dataset_works_with_dataloader() -> None:
    ds = ImageFolderDataset(sample_images("heldout"), crop=32, samples_per_image=2)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["hr"].shape == (4, 3, 32, 32) and batch["lr"].shape == (4, 3, 8, 8)
    assert batch["name"] == ["astronaut", "coffee", "rocket", "astronaut"]


def _write(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_folder_skips_unreadable_and_small_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", (80, 70))
    _write(tmp_path / "sub" / "b.jpg", (100, 64), seed=1)
    _write(tmp_path / "tiny.png", (20, 20))
    (tmp_path / "broken.png").write_text("not a png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    (tmp_path / "readme.txt").write_text("ignored: not an image extension")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(tmp_path, crop=64)
    assert len([w for w in caught if "skipping 3 image" in str(w.message)]) == 1      # one line, not one per file
    assert [str(w.message) for w in caught if "other kinds" in str(w.message)] == [
        f"{tmp_path}: not reading 1 file(s) of other kinds (readme.txt); images are "
        ".png .jpg .jpeg .bmp .webp .tif .tiff .gif"]                          # named, as every folder run names it
    assert [n for n, _ in ds.images] == ["a.png", "sub/b.jpg"]
    assert sorted(n for n, _ in ds.skipped) == ["broken.png", "cut.png", "tiny.png"]
    reasons = dict(ds.skipped)
    assert "smaller than the 64 px crop" in reasons["tiny.png"]
    assert "not an image" in reasons["broken.png"]
    assert ds[1]["hr"].shape == (3, 64, 64)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no usable images"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="no usable images"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(InputError, match="missing does not exist"):
        ImageFolderDataset(tmp_path / "missing")

    (tmp_path / "bad.png").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="1 skipped"):
            ImageFolderDataset(tmp_path)

    _write(tmp_path / "small.png", (48, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="64 px training crop .* larger than every image.*40 px"):
            ImageFolderDataset(tmp_path, crop=64)


def test_bad_parameters() -> None:
    images = sample_images("heldout")
    with pytest.raises(ConfigError, match="multiple of scale"):
        ImageFolderDataset(images, crop=30, scale=4)
    with pytest.raises(ConfigError, match="differs"):
        ImageFolderDataset(images, crop=32, scale=4, degradation=DegradationConfig(scale=2))
    with pytest.raises(InputError, match="float HxWx3"):
        ImageFolderDataset([np.zeros((64, 64), np.float32)])
