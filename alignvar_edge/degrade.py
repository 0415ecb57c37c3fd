"""Seeded HR -> LR degradation for x4 SR pairs: blur, downsample, noise, JPEG (Real-ESRGAN-like).

One pass of a Real-ESRGAN-style pipeline, light enough to run in a data loader and reused by
calibration so engines are calibrated on the same kind of LR they will see. Only numpy and Pillow.

Determinism: each stage draws from its own child of ``SeedSequence(seed)``, so the same seed
gives bit-identical output, and switching one stage off does not reshuffle the others.
"""
from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, overload

import numpy as np
from PIL import Image

from alignvar_edge.errors import ConfigError, InputError
from alignvar_edge.name_text import name_bytes

__all__ = [
    "DOWNSAMPLE_MODES",
    "DegradationConfig",
    "degrade",
    "degrade_batch",
    "drawn",
    "gaussian_kernel",
    "image_seed",
    "item_seed",
    "low_quality",
]

# Pillow's resize filters are antialiased (support widened by the scale factor), like MATLAB
# imresize, which is how classic bicubic SR benchmarks make LR images.
_PIL_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
}
DOWNSAMPLE_MODES = tuple(_PIL_FILTERS)


@dataclass(frozen=True)
class DegradationConfig:
    """Parameters of the HR -> LR degradation. Ranges are inclusive (low, high)."""

    scale: int = 4
    blur_sigma: tuple[float, float] = (0.2, 2.0)  # Gaussian sigma in HR pixels
    blur_prob: float = 0.7
    downsample_modes: tuple[str, ...] = DOWNSAMPLE_MODES
    noise_sigma: tuple[float, float] = (1.0, 15.0)  # in 0..255 units, applied at LR size
    noise_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 95)
    jpeg_prob: float = 0.6

    def __post_init__(self) -> None:
        # Accept lists (from JSON) but store tuples so the config stays hashable and frozen.
        for name in ("blur_sigma", "noise_sigma", "jpeg_quality", "downsample_modes"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):     # a config.json is input: `"jpeg_quality": 5`
                raise ConfigError(f"{name} must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not isinstance(self.scale, int) or isinstance(self.scale, bool) or self.scale < 1:
            raise ConfigError(f"scale must be a positive integer, got {self.scale!r}")
        _check_range("blur_sigma", self.blur_sigma, 0.0, 50.0)
        _check_range("noise_sigma", self.noise_sigma, 0.0, 255.0)
        _check_range("jpeg_quality", self.jpeg_quality, 1, 100)
        if any(not float(q).is_integer() for q in self.jpeg_quality):
            raise ConfigError(f"jpeg_quality must be integers, got {self.jpeg_quality}")
        object.__setattr__(self, "jpeg_quality", tuple(int(q) for q in self.jpeg_quality))
        for name in ("blur_prob", "noise_prob", "jpeg_prob"):
            p = getattr(self, name)
            if not _is_number(p) or not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {p!r}")
        unknown = [m for m in self.downsample_modes if not isinstance(m, str) or m not in _PIL_FILTERS]
        if not self.downsample_modes or unknown:
            raise ConfigError(
                f"downsample_modes must be a non-empty subset of {DOWNSAMPLE_MODES}, "
                f"got {self.downsample_modes}"
            )

    @classmethod
    def bicubic_only(cls, scale: int = 4) -> DegradationConfig:
        """No random degradation: plain (antialiased) bicubic downsampling, the classic setting."""
        return cls(
            scale=scale,
            blur_prob=0.0,
            downsample_modes=("bicubic",),
            noise_prob=0.0,
            jpeg_prob=0.0,
        )

    @classmethod
    def none(cls, scale: int = 4) -> DegradationConfig:
        """Alias of :meth:`bicubic_only`: LR is still HR // scale, so something must downsample."""
        return cls.bicubic_only(scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DegradationConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown degradation setting(s) {unknown}; known: {sorted(known)}"
            )
        return cls(**data)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_range(name: str, r: tuple[Any, ...], lo: float, hi: float) -> None:
    if len(r) != 2 or not all(_is_number(v) for v in r):
        raise ConfigError(f"{name} must be a (low, high) pair of numbers, got {r!r}")
    if not lo <= r[0] <= r[1] <= hi:
        raise ConfigError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {r!r}")


def item_seed(seed: int, index: int) -> int:
    """Seed of item ``index`` in a batch or dataset seeded with ``seed`` (stable across runs)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0])


def image_seed(seed: int, name: str) -> int:
    """Seed of the image called ``name`` in a run seeded with ``seed``: its own, whatever else the
    run scores (a folder's other files, their order, the ones skipped), so one photograph gets the
    same LR in every folder, in `eval` as in `demo`."""
    digest = int.from_bytes(hashlib.sha256(name_bytes(name)).digest()[:8], "little")
    return item_seed(seed, digest)


def _draws(config: DegradationConfig, seed: int) -> tuple[dict[str, Any], np.random.Generator]:
    """What `degrade` draws for ``seed``: each stage's setting (None where the stage is off), and
    the generator the noise itself is drawn from."""
    rng_blur, rng_down, rng_noise, rng_jpeg = (
        np.random.default_rng(child) for child in np.random.SeedSequence(int(seed)).spawn(4)
    )
    blur = float(rng_blur.uniform(*config.blur_sigma)) if rng_blur.random() < config.blur_prob else None
    mode = config.downsample_modes[int(rng_down.integers(len(config.downsample_modes)))]
    noise = float(rng_noise.uniform(*config.noise_sigma)) if rng_noise.random() < config.noise_prob else None
    lo, hi = config.jpeg_quality
    jpeg = int(rng_jpeg.integers(lo, hi + 1)) if rng_jpeg.random() < config.jpeg_prob else None
    return {"blur_sigma": blur, "downsample": mode, "noise_sigma": noise, "jpeg_quality": jpeg}, rng_noise


def drawn(config: DegradationConfig, seed: int) -> dict[str, Any]:
    """The degradation ``degrade(hr, config, seed)`` applies: blur sigma (px), downsampling mode,
    noise sigma (of 255) and JPEG quality, None for a stage the draw left out."""
    return _draws(config, seed)[0]


def degrade(hr_HWC: np.ndarray, config: DegradationConfig, seed: int) -> np.ndarray:
    """HR float HxWx3 in [0,1] -> LR float32 (H//s)x(W//s)x3 in [0,1], deterministic per seed.

    HR sizes that do not divide by the scale use their top-left (H//s*s)x(W//s*s) part, so the
    LR pixel grid stays aligned with the HR crop a caller pairs it with.
    """
    hr = _check_hr(hr_HWC, config.scale)
    s = config.scale
    h, w = hr.shape[0] // s, hr.shape[1] // s
    hr = hr[: h * s, : w * s]
    draw, rng_noise = _draws(config, seed)

    x = hr
    if draw["blur_sigma"] is not None:
        x = _gaussian_blur(x, draw["blur_sigma"])
    x = _resize(x, (h, w), draw["downsample"])
    if draw["noise_sigma"] is not None:
        sigma = draw["noise_sigma"] / 255.0
        x = x + rng_noise.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
        x = np.clip(x, 0.0, 1.0)
    if draw["jpeg_quality"] is not None:
        x = _jpeg(x, draw["jpeg_quality"])

    return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)


def low_quality(hr_HWC: np.ndarray, config: DegradationConfig, seed: int) -> np.ndarray:
    """A genuinely low-quality version of an HR image at its own size: degrade(hr) (blur, resize,
    noise, JPEG) brought back up with Pillow's bicubic. Image CFG's negative targets (trainer)."""
    lq = degrade(hr_HWC, config, seed)
    h, w = lq.shape[0] * config.scale, lq.shape[1] * config.scale
    return np.ascontiguousarray(_resize(lq, (h, w), "bicubic"), dtype=np.float32)


@overload
def degrade_batch(hr: np.ndarray, config: DegradationConfig, seed: int) -> np.ndarray: ...
@overload
def degrade_batch(
    hr: Sequence[np.ndarray], config: DegradationConfig, seed: int
) -> list[np.ndarray]: ...


def degrade_batch(
    hr: np.ndarray | Sequence[np.ndarray], config: DegradationConfig, seed: int
) -> np.ndarray | list[np.ndarray]:
    """Degrade NxHxWx3 (array in, array out) or a list of HxWx3 (list out).

    Item i equals ``degrade(hr[i], config, item_seed(seed, i))``.
    """
    if isinstance(hr, np.ndarray):
        if hr.ndim != 4:
            raise InputError(f"expected an NxHxWx3 batch, got shape {hr.shape}")
        if hr.shape[0] == 0:
            s = config.scale
            return np.zeros((0, hr.shape[1] // s, hr.shape[2] // s, 3), np.float32)
        return np.stack([degrade(x, config, item_seed(seed, i)) for i, x in enumerate(hr)])
    return [degrade(x, config, item_seed(seed, i)) for i, x in enumerate(hr)]


def _check_hr(hr_HWC: np.ndarray, scale: int) -> np.ndarray:
    hr = np.asarray(hr_HWC)
    if hr.ndim != 3 or hr.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB image, got shape {hr.shape}")
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise InputError(
            f"image {hr.shape[1]}x{hr.shape[0]} is smaller than the scale factor {scale}"
        )
    if not np.issubdtype(hr.dtype, np.floating):
        raise InputError(f"expected float pixels in [0, 1], got dtype {hr.dtype}")
    return hr.astype(np.float32, copy=False)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps, radius ceil(3 sigma)."""
    radius = max(1, math.ceil(3.0 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _gaussian_blur(x_HWC: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflect padding (no edge darkening)."""
    if sigma <= 0.0:
        return x_HWC
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    for axis in (0, 1):
        n = x_HWC.shape[axis]
        # Reflect padding needs r < n; small images fall back to edge replication.
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        p = np.pad(x_HWC, pad, mode="reflect") if r < n else np.pad(x_HWC, pad, mode="edge")
        out = np.zeros_like(x_HWC)
        for i, wgt in enumerate(k):
            out += wgt * (p[i : i + n] if axis == 0 else p[:, i : i + n])
        x_HWC = out
    return x_HWC


def _resize(x_HWC: np.ndarray, size_hw: tuple[int, int], mode: str) -> np.ndarray:
    """Per-channel float32 resize with Pillow ("F" mode keeps full precision)."""
    h, w = size_hw
    if x_HWC.shape[:2] == (h, w):
        return x_HWC
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(x_HWC[..., c], dtype=np.float32)).resize(
                (w, h), _PIL_FILTERS[mode]
            )
        )
        for c in range(x_HWC.shape[2])
    ]
    # Bicubic overshoots at edges; clip so the next stages see valid pixels.
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0)


def _jpeg(x_HWC: np.ndarray, quality: int) -> np.ndarray:
    u8 = np.round(np.clip(x_HWC, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
