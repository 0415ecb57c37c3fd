"""Engines against the PyTorch reference on whole images: the `polygraphy run` of this model.

Each image is cut into the same LR tiles for every engine; per engine and image we report the
fraction of tiles whose tokens equal the reference's at every scale, token agreement per scale,
and PSNR / SSIM on Y of the stitched 4x image against the reference's stitched image.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np

from alignvar_edge.errors import BackendUnavailableError, InputError
from alignvar_edge.export.parity import psnr, psnr_y, ssim_y, token_agreement
from alignvar_edge.manifest import db_text
from alignvar_edge.name_text import line_text
from alignvar_edge.runtimes import tiling
from alignvar_edge.runtimes.base import Engine

__all__ = ["EngineResult", "ImageResult", "compare_engines", "format_summary", "format_table"]


@dataclass
class ImageResult:
    image: str
    size: tuple[int, int]
    tiles: int
    tiles_identical: float            # fraction of tiles with every token equal
    tokens_per_scale: list[float]
    tokens_overall: float
    psnr_db: float
    psnr_y_db: float
    ssim_y: float
    seam_ratio_vs_bicubic: float      # `tiling.seam_ratio` over an untiled bicubic's (1 = no seam)


@dataclass
class EngineResult:
    engine: str
    backend: str
    precision: str
    device: str
    images: list[ImageResult] = field(default_factory=list)
    ms_per_tile: float = 0.0
    unavailable: str | None = None    # why it could not run here (Core ML off macOS): no numbers
    reference: str = "PyTorch"        # what its figures are against: the model as the engine runs it

    @property
    def tiles_identical(self) -> float:
        n = sum(r.tiles for r in self.images)
        return sum(r.tiles_identical * r.tiles for r in self.images) / n if n else 1.0

    @property
    def tokens_overall(self) -> float:
        """Token agreement over every tile of every image (what a quantization target is stated in)."""
        n = sum(r.tiles for r in self.images)
        return sum(r.tokens_overall * r.tiles for r in self.images) / n if n else 1.0

    @property
    def min_psnr_db(self) -> float:
        return min((r.psnr_db for r in self.images), default=math.inf)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.unavailable:                 # nothing ran: no figures, not perfect ones
            d.update(tiles_identical=None, tokens_overall=None, min_psnr_db=None, ms_per_tile=None)
            return d
        d["tiles_identical"] = self.tiles_identical
        d["tokens_overall"] = self.tokens_overall
        d["min_psnr_db"] = round(self.min_psnr_db, 3)
        for r in d["images"]:
            for k in ("psnr_db", "psnr_y_db", "ssim_y"):
                r[k] = round(r[k], 3 if k != "ssim_y" else 5)
        return d


def _run_timed(engine: Engine, tiles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], float]:
    t0 = time.perf_counter()
    sr, tok = engine.run(tiles)
    return sr, tok, (time.perf_counter() - t0) * 1e3


NO_REFINER = "PyTorch without the refiner (the engine's graph was exported with --no-refine)"


def _reference_for(e: Engine, label: str, references: Sequence[Engine]) -> Engine:
    """The reference that runs the model as `e` does: with VARSR's refiner or, for an export made
    with --no-refine, without it (as that export's own parity check ran it)."""
    for ref in references:
        if ref.refines == e.refines:
            return ref
    runs = "with" if e.refines else "without"
    raise InputError(f"engine {label} runs the model {runs} VARSR's refiner and no reference does: pass a torch "
                     f"reference loaded with refine={e.refines}")


def _warn_other_weights(engines: Sequence[tuple[str, Engine]], refs: Sequence[Engine]) -> None:
    """Once where a reference runs other weights than an engine compared with it records: every
    figure would compare other weights (the bundled model against a fine-tune of it, say)."""
    from alignvar_edge.runtimes.artifacts import warn_other_weights
    for ref in {id(r): r for r in refs}.values():
        weights = ref.weights_sha256()
        if weights is None:
            continue
        theirs = [(label, e.metadata) for (label, e), r in zip(engines, refs) if r is ref]
        if warn_other_weights(f"the reference ({ref.metadata.model.source.describe()})", weights, theirs):
            return


def compare_engines(engines: Sequence[tuple[str, Engine]], reference: Engine | Sequence[Engine],
                    images: Sequence[tuple[str, np.ndarray]], overlap: int | None = None,
                    progress: Callable[[str], None] | None = None) -> list[EngineResult]:
    """Every engine against `reference` on every image (HxWx3 float in [0, 1]). Several references
    (the model with and without VARSR's refiner): each engine against the one that runs as it does."""
    references: list[Engine] = list(reference) if isinstance(reference, (list, tuple)) else [cast(Engine, reference)]
    first = references[0]
    t = first.tile_size

    def model(e: Engine) -> str:       # what must match for tiles and tokens to be compared at all
        return f"x{e.scale}, tile {e.tile_size}, scales {tuple(e.config.patch_nums)}"
    for label, e in engines:
        if model(e) != model(first):
            raise InputError(f"engine {label} runs a different model ({model(e)}) than the reference "
                             f"({model(first)}); compare engines built from the same model, or pass "
                             "its checkpoint as --reference")
    refs = [_reference_for(e, label, references) for label, e in engines]
    _warn_other_weights(engines, refs)
    results = [EngineResult(label, e.backend, str(e.metadata.precision), e.device,
                            reference="PyTorch" if ref.refines or not ref.config.has_refiner else NO_REFINER)
               for (label, e), ref in zip(engines, refs)]
    total_ms = [0.0] * len(engines)
    total_tiles = 0
    for name, img in images:
        running = [idx for idx, r in enumerate(results) if not r.unavailable]
        if not running:                            # no engine left to compare: no reference to run
            break
        tiles, ys, xs = tiling.extract_tiles(img, t, overlap)
        H, W = img.shape[:2]
        used = {id(refs[idx]): refs[idx] for idx in running}     # each reference runs once per image
        ref_out = {key: _reference_image(ref, tiles, ys, xs, (H, W)) for key, ref in used.items()}
        # the seam figure's reference, as eval's: an untiled upscale of the same LR, once for every engine
        untiled_seams = tiling.bicubic_seam_figure(img, ys, xs, t, first.scale)
        total_tiles += len(tiles)
        for idx in running:
            label, e = engines[idx]
            if progress:
                progress(f"{label}: {name} ({len(tiles)} tiles)")
            try:
                sr, tok, ms = _run_timed(e, tiles)
            except BackendUnavailableError as err:      # the other engines still compare
                results[idx].unavailable = str(err)
                continue
            total_ms[idx] += ms
            out = tiling.blend_tiles(sr, ys, xs, (H, W), t, e.scale)
            ref_tok, ref_img = ref_out[id(refs[idx])]
            agree = token_agreement(ref_tok, tok)
            a, b = ref_img.transpose(2, 0, 1), out.transpose(2, 0, 1)
            results[idx].images.append(ImageResult(
                image=name, size=(H, W), tiles=len(tiles), tiles_identical=agree["identical_samples"],
                tokens_per_scale=agree["per_scale"], tokens_overall=agree["overall"],
                psnr_db=psnr(a, b), psnr_y_db=psnr_y(a, b, border=e.scale),
                ssim_y=ssim_y(a, b, border=e.scale),
                seam_ratio_vs_bicubic=tiling.seam_ratio(out, ys, xs, t, e.scale, reference=untiled_seams)))
    for idx, r in enumerate(results):
        r.ms_per_tile = total_ms[idx] / max(1, total_tiles) if not r.unavailable else math.nan
    return results


def _reference_image(ref: Engine, tiles: np.ndarray, ys: list[int], xs: list[int], size: tuple[int, int]
                     ) -> tuple[list[np.ndarray], np.ndarray]:
    """(tokens per scale, stitched SR image) of the reference on an image's tiles."""
    sr, tok, _ = _run_timed(ref, tiles)
    return tok, tiling.blend_tiles(sr, ys, xs, size, ref.tile_size, ref.scale)


def format_table(results: Sequence[EngineResult]) -> str:
    """A plain-text table: one row per engine and image."""
    head = ("engine", "image", "tiles", "tiles identical", "tokens", "PSNR dB", "PSNR-Y dB", "SSIM-Y", "seams")
    rows: list[tuple[str, ...]] = [head]
    for r in results:
        if r.unavailable:
            rows.append((f"{line_text(r.engine)} [{r.backend} {r.precision}]", "unavailable here",
                         *[""] * (len(head) - 2)))
        for im in r.images:
            rows.append((f"{line_text(r.engine)} [{r.backend} {r.precision}]",
                         f"{line_text(im.image)} {im.size[1]}x{im.size[0]}",
                         str(im.tiles), f"{im.tiles_identical:.1%}", f"{im.tokens_overall:.2%}",
                         db_text(im.psnr_db), db_text(im.psnr_y_db),
                         "n/a" if math.isnan(im.ssim_y) else f"{im.ssim_y:.4f}", f"{im.seam_ratio_vs_bicubic:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_summary(r: EngineResult) -> str:
    """One line per engine over all its images: tokens, identical tiles, worst PSNR, speed."""
    if r.unavailable:
        return f"{line_text(r.engine)}: unavailable here: {r.unavailable}"
    against = "" if r.reference == "PyTorch" else f" (against {r.reference})"
    return (f"{line_text(r.engine)}: tiles identical {r.tiles_identical:.1%}, tokens {r.tokens_overall:.2%} agree, "
            f"min PSNR {db_text(r.min_psnr_db)} dB, {r.ms_per_tile:.1f} ms/tile{against}")
