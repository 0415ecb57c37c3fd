"""Fidelity metrics shared by export, quantization, runtimes and benchmarks.

An autoregressive model is judged first by its choices: `token_agreement` compares the token maps
of every scale with a reference (one flipped coarse token changes every finer scale). Images are
compared with PSNR on RGB and PSNR/SSIM on the BT.601 luma (Y) with a border of `scale` pixels
cropped, the usual SR benchmark convention. Images are float arrays in [0, 1], (N, 3, H, W) or
(3, H, W).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from alignvar_edge.errors import ParityError
from alignvar_edge.manifest import db_text, token_share

__all__ = ["MIN_PSNR_DB", "REQUIRED_TOKEN_AGREEMENT", "ParityReport", "check_parity", "compare",
           "psnr", "psnr_y", "rgb_to_y", "ssim_y", "token_agreement"]

# The export gate: fp32 graphs must choose exactly PyTorch's tokens and reproduce its
# image to >= 60 dB. Module constants so tests can tighten them to simulate a failure.
REQUIRED_TOKEN_AGREEMENT = 1.0
MIN_PSNR_DB = 60.0


def token_agreement(ref: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per-scale and overall fraction of equal tokens, and the fraction of samples equal everywhere.

    ref/test: one (N, p_k^2) integer array per scale.
    """
    if len(ref) != len(test):
        raise ValueError(f"{len(ref)} reference scales vs {len(test)} tested scales")
    per_scale, equal, total = [], 0, 0
    same_sample: np.ndarray | None = None
    for r, t in zip(ref, test):
        r, t = np.asarray(r), np.asarray(t)
        if r.shape != t.shape:
            raise ValueError(f"token map shapes differ: {r.shape} vs {t.shape}")
        eq = r == t
        per_scale.append(float(eq.mean()))
        equal += int(eq.sum())
        total += eq.size
        row = eq.reshape(eq.shape[0], -1).all(axis=1)
        same_sample = row if same_sample is None else same_sample & row
    return {"per_scale": per_scale, "overall": equal / total if total else 1.0,
            "identical_samples": float(same_sample.mean()) if same_sample is not None else 1.0}


def psnr(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB over all values; +inf for identical inputs."""
    mse = float(np.mean((np.asarray(ref, np.float64) - np.asarray(test, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


def rgb_to_y(img_3HW: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB in [0, 1], scaled to [16, 235]/255 as in the MATLAB SR convention."""
    r, g, b = (np.asarray(img_3HW, np.float64)[..., c, :, :] for c in range(3))
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


# skimage's Gaussian window at sigma 1.5 (truncated at 3.5 sigma): SSIM is undefined on smaller sides
SSIM_WINDOW = 11


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[..., border:-border, border:-border] if border > 0 else y


def psnr_y(ref: np.ndarray, test: np.ndarray, border: int = 4) -> float:
    """PSNR of the Y channel, `border` pixels cropped (use the SR scale); nan when nothing is left."""
    a, b = _crop(rgb_to_y(ref), border), _crop(rgb_to_y(test), border)
    return psnr(a, b) if a.size else math.nan


def ssim_y(ref: np.ndarray, test: np.ndarray, border: int = 4) -> float:
    """Mean SSIM of the Y channel over the batch, `border` pixels cropped (skimage, Gaussian 11x11);
    nan when the cropped image is smaller than the window."""
    from skimage.metrics import structural_similarity

    a = _crop(rgb_to_y(ref), border)
    b = _crop(rgb_to_y(test), border)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        return math.nan
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    vals = [structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False) for x, y in zip(a, b)]
    return float(np.mean(vals))


@dataclass
class ParityReport:
    """What an exported graph's outputs look like next to PyTorch's, on the same LR tiles."""

    tiles: int
    tokens: dict[str, Any]
    psnr_db: float
    psnr_y_db: float
    max_abs_diff: float
    extra: dict[str, Any] = field(default_factory=dict)

    def passed(self) -> bool:
        return (min(self.tokens["per_scale"]) >= REQUIRED_TOKEN_AGREEMENT
                and self.psnr_db >= MIN_PSNR_DB)

    def summary(self) -> str:
        scales = ", ".join(f"k{k}={token_share(a)}" for k, a in enumerate(self.tokens["per_scale"]))
        return (f"{self.tiles} tiles: token agreement per scale [{scales}], overall "
                f"{self.tokens['overall']:.2%}, identical samples {self.tokens['identical_samples']:.0%}; "
                f"SR PSNR {db_text(self.psnr_db)} dB (Y {db_text(self.psnr_y_db)} dB), max |diff| "
                f"{self.max_abs_diff:.2e}")

    def to_json(self) -> dict[str, Any]:
        """The report as a dict (written through `jsonsafe`, infinite PSNR becomes "inf")."""
        d = asdict(self)
        for k in ("psnr_db", "psnr_y_db"):
            d[k] = round(d[k], 3)
        d["thresholds"] = {"token_agreement": REQUIRED_TOKEN_AGREEMENT, "min_psnr_db": MIN_PSNR_DB}
        d["passed"] = self.passed()
        return d


def compare(ref_sr: np.ndarray, ref_tokens: Sequence[np.ndarray], sr: np.ndarray,
            tokens: Sequence[np.ndarray], scale: int = 4, **extra: Any) -> ParityReport:
    return ParityReport(
        tiles=int(np.asarray(ref_sr).shape[0]), tokens=token_agreement(ref_tokens, tokens),
        psnr_db=psnr(ref_sr, sr), psnr_y_db=psnr_y(ref_sr, sr, border=scale),
        max_abs_diff=float(np.max(np.abs(np.asarray(ref_sr, np.float64) - sr))), extra=dict(extra))


def check_parity(report: ParityReport, what: str) -> None:
    """Raise ParityError with the per-scale report unless the export gate holds."""
    if not report.passed():
        raise ParityError(
            f"{what} does not match PyTorch (needs {REQUIRED_TOKEN_AGREEMENT:.0%} tokens at every "
            f"scale and >= {MIN_PSNR_DB:.0f} dB): {report.summary()}; nothing was written. Check "
            "the opset/simplification settings; with random weights, logit margins may be too small")
