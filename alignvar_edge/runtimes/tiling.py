"""Any image on a fixed-tile engine: overlapping tiles, raised-cosine blending, streamed by rows.

The image is cut into LR tiles of the engine's size that overlap by `overlap` pixels; the last
tile of a row/column is aligned to the image edge, so no tile hangs over it. Images smaller than
one tile are mirror-padded up to a tile and the result is cropped. Each SR tile is weighted by a
window that is 1 in its interior and falls as a raised cosine across the region it shares with a
neighbour (1 on the image's own edges), so overlapping tiles cross-fade and every output pixel is
a normalised weighted mean: no seams, no darkening.

Memory: tiles are cut, converted to float32 and consumed in raster order in batches of the
engine's batch; the blend accumulator holds one tile-row strip (tile height x output width). A
strip is finished as soon as the next tile row starts below it and is written into the result in
the result's own dtype (`upscale_samples`), so nothing image-sized is held besides the input and
the result (a result in float is only made whole where the colour fix needs its statistics: float32,
4x an 8-bit result, which the fix then converts strip by strip).
Grayscale images run as RGB and come back gray; an alpha plane is upscaled separately (bicubic)
and never fed to the model. The colour under fully transparent pixels is replaced first by that of
the visible pixels around them (`fill_transparent`): editors leave black there, and the model,
which sees each tile's neighbourhood, bled it into the visible edge as a dark fringe.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from alignvar_edge.errors import InputError
# an image's layouts, and its samples' finite values: the rules every image taken is checked by
from alignvar_edge.images.arrays import colour_and_alpha, refuse_non_finite
from alignvar_edge.images.transparency import fill_transparent
from alignvar_edge.manifest import default_overlap   # the overlap every input contract states
from alignvar_edge.argtypes import is_integer

if TYPE_CHECKING:
    from alignvar_edge.images.arrays import Samples

__all__ = ["PAD_MODE", "RAMP_OFFSET", "ImagesProgress", "TileProgress", "TileRunner", "default_overlap",
           "tile_starts", "blend_window", "upscale_image",
           "upscale_samples", "upscale_images", "upscale_plane_bicubic", "extract_tiles", "seam_ratio",
           "bicubic_seam_figure", "blend_tiles",
           "check_overlap_flag", "checked_overlap", "overlap_cost", "count_tiles", "tiles_per_call"]

# progress callbacks: what they return is ignored (typeshed's convention), so that a progress bar's
# `update`, which returns something, can be passed as it is
TileProgress = Callable[[int, int], object]             # (tiles done, tiles of the image)
ImagesProgress = Callable[[int, int, int], object]      # (index of the image, tiles done, its tiles)


def check_overlap_flag(overlap: int | None, tile: int, whose: str) -> None:
    """A user's --overlap, checked before any work: below the tile (`whose`: "this engine's"), so that
    every tile steps forward."""
    if overlap is not None and overlap >= tile:
        raise InputError(f"--overlap {overlap} is not below {whose} tile of {tile} LR pixels; pass --overlap 0 to "
                         f"{tile - 1}, or leave it out")


def overlap_cost(size_hw: tuple[int, int], tile: int, overlap: int) -> str | None:
    """The line that says what a user's --overlap costs an image of `size_hw` (LR pixels), where it
    takes at least `_COSTLY_OVERLAP` times the tiles of the default overlap, else None: a stride of
    1 px took a 48x32 image 561 tiles, not 12 (minutes, not half a second), without a word."""
    default = default_overlap(tile)
    tiles, usual = count_tiles(size_hw, tile, overlap), count_tiles(size_hw, tile, default)
    if tiles < _COSTLY_OVERLAP * usual:
        return None
    return (f"--overlap {overlap} leaves a stride of {tile - overlap} px of this engine's {tile} px tile: "
            f"{tiles} tiles, {tiles / usual:.0f}x the {usual} of the default overlap ({default}) and as much "
            "longer; a smaller --overlap, or none, takes fewer")


_COSTLY_OVERLAP = 4


def count_tiles(size_hw: tuple[int, int], tile: int, overlap: int | None) -> int:
    """The tiles an image of `size_hw` (LR pixels) is cut into, as `upscale` cuts them (None: the
    default overlap): what its run will take, said before the work."""
    ov = checked_overlap(overlap, tile)
    return len(tile_starts(size_hw[0], tile, ov)) * len(tile_starts(size_hw[1], tile, ov))


class TileRunner(Protocol):
    """What tiling needs from an engine (Engine satisfies it)."""

    @property
    def tile_size(self) -> int: ...

    @property
    def scale(self) -> int: ...

    @property
    def batch(self) -> int: ...

    @property
    def parallel_requests(self) -> int: ...

    def run(self, lr_tiles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]: ...


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` overlapping by >= `overlap`."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def blend_window(starts: list[int], tile: int, index: int, scale: int) -> np.ndarray:
    """1-D weights (tile*scale) of tile `index`: raised-cosine ramps where it overlaps a neighbour."""
    n = tile * scale
    w = np.ones(n, np.float64)
    if index > 0:
        ov = (starts[index - 1] + tile - starts[index]) * scale
        if ov > 0:
            w[:ov] = _ramp(ov)
    if index < len(starts) - 1:
        ov = (starts[index] + tile - starts[index + 1]) * scale
        if ov > 0:
            w[n - ov:] = np.minimum(w[n - ov:], _ramp(ov)[::-1])
    return w


# where a ramp of n weights samples sin^2: at (i + RAMP_OFFSET) / n, half a pixel in, so no weight
# is exactly 0 and the ramps of two tiles that share the same overlap sum to exactly 1 (engine
# READMEs state it: runtimes/readme.py)
RAMP_OFFSET: Final = 0.5


def _ramp(n: int) -> np.ndarray:
    # sin^2 rising from ~0 to ~1
    x = (np.arange(n) + RAMP_OFFSET) / n
    return np.sin(0.5 * np.pi * x) ** 2


def _check_rgb(image: np.ndarray, integers: bool = False) -> np.ndarray:
    """An RGB image, checked and not copied: floats, or `integers` too (samples that `Samples.to_float`
    converts tile by tile, `_float_tiles`)."""
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB image, got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(f"the image has no pixels (shape {x.shape})")
    if not integers and not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"expected a float image in [0, 1], got dtype {x.dtype}; divide by 255 first")
    if np.issubdtype(x.dtype, np.floating):
        refuse_non_finite(x, "the image")
    return x


# a block of an image's samples -> floats in [0, 1] (`images.arrays.Samples.to_float`)
FloatOf = Callable[[np.ndarray], np.ndarray]


def _float_tiles(samples: np.ndarray, to_float: FloatOf) -> np.ndarray:
    """Tiles cut from an image's samples, as the engine takes them: float32 clipped to [0, 1]."""
    # to_float's result is a new array (of a new stack of tiles): clipped where it lies
    f = np.asarray(to_float(samples)).astype(np.float32, copy=False)
    return np.clip(f, 0.0, 1.0, out=f)


def checked_overlap(overlap: object, tile: int) -> int:
    """The LR pixels neighbouring tiles share: `overlap`, or `default_overlap` for None; an integer,
    not int() of one (1.9 ran as 1, and '2' and True were taken), below the tile."""
    ov = default_overlap(tile) if overlap is None else overlap
    if not is_integer(ov) or not 0 <= ov < tile:
        raise InputError(f"overlap must be an integer in [0, {tile - 1}] LR pixels for tile {tile} (or None: "
                         f"{default_overlap(tile)}), got {overlap!r}")
    return int(ov)


def _prepare(image: np.ndarray, tile: int, overlap: int | None, integers: bool = False
             ) -> tuple[np.ndarray, int, list[int], list[int]]:
    """(padded image, overlap, row starts, column starts) for an RGB image, its samples kept."""
    img = _check_rgb(image, integers)
    ov = checked_overlap(overlap, tile)
    # mirror-pad dimensions smaller than one tile (results are cropped back)
    ph, pw = max(0, tile - img.shape[0]), max(0, tile - img.shape[1])
    if ph or pw:
        img = _mirror_pad(img, ph, pw)
    return img, ov, tile_starts(img.shape[0], tile, ov), tile_starts(img.shape[1], tile, ov)


def extract_tiles(image: np.ndarray, tile: int, overlap: int | None = None
                  ) -> tuple[np.ndarray, list[int], list[int]]:
    """All LR tiles (N, 3, tile, tile) in raster order, exactly as `upscale` cuts them."""
    img, _, ys, xs = _prepare(image, tile, overlap)
    return _cut(img, ys, xs, tile, np.asarray), ys, xs


def _cut(img: np.ndarray, ys: list[int], xs: list[int], tile: int, to_float: FloatOf) -> np.ndarray:
    tiles = [img[y:y + tile, x:x + tile].transpose(2, 0, 1) for y in ys for x in xs]
    return _float_tiles(np.stack(tiles), to_float)


def seam_ratio(sr: np.ndarray, ys: list[int], xs: list[int], tile: int, scale: int,
               reference: np.ndarray | float | None = None) -> float:
    """Gradient energy across tile borders / across the interior pixel pairs of the same phase
    (1.0: no seam); over `reference`'s where given.

    Borders are the HR positions where a tile starts or ends inside the image (where a hard
    stitch would cut); energy is the mean squared difference between the two pixels across them.
    Borders always fall on multiples of `scale`, where any x`scale` upscaler (bicubic included) has
    a pattern of its own: they are compared only with the interior pairs at the same position
    modulo `scale`, so an image upscaled without tiles scores about 1. Which content lies on the
    borders still moves the figure where few pairs straddle one (a small image): a `reference`, an
    untiled upscale of the same LR, has that content at the same pairs, and the ratio over its
    ratio leaves what tiling adds (docs/runtimes.md has figures). `reference` may be that figure
    already made: eval and compare pass `bicubic_seam_figure`'s, made once per image.

    Images (HxW or HxWxC) are floats in [0, 1] or uint8/uint16 samples, which are divided by 255 or
    65535 first: one image scores the same in any of these dtypes.
    """
    ratio = _seam_figure(_unit_planes(sr), ys, xs, tile, scale)
    if reference is None:
        return ratio
    if np.ndim(reference) == 0:
        return ratio / float(reference)
    return ratio / _seam_figure(_unit_planes(np.asarray(reference)), ys, xs, tile, scale)


def bicubic_seam_figure(lr: np.ndarray, ys: list[int], xs: list[int], tile: int, scale: int) -> float:
    """The seam figure of an untiled bicubic x`scale` of `lr` (the dtypes `seam_ratio` takes): the
    reference that eval and compare divide an SR's figure by. Pillow's kernel on float planes, one
    channel at a time (`upscale_plane_bicubic`), never a whole float64 HR image: the model's own
    kernel (`model.matrices.bicubic_upscale`) multiplies dense matrices, 2.6 s and 245 MB for a
    512 px LR, growing faster than its pixels; the two kernels' figures differ by a few hundredths."""
    return _seam_figure((upscale_plane_bicubic(p, scale) for p in _unit_planes(lr)), ys, xs, tile, scale)


# squared differences below a tenth of a 16-bit level count as flat: a flat image scores 1 and a
# flat reference (a bicubic of a flat LR) leaves the SR's own figure, not a division by nearly nothing.
# A tenth of a level of 255 hid a seam of 10 levels of 65535 on smooth 16-bit content
_FLAT_ENERGY: Final = (0.1 / 65535) ** 2


def _seam_figure(planes: Iterable[np.ndarray], ys: list[int], xs: list[int], tile: int, scale: int) -> float:
    """Border energy over like-phase interior energy of an image given as its channel planes."""
    dx, dy = _pair_energies(planes)
    edge: list[float] = []
    inner: list[float] = []
    for starts, energy in ((xs, dx), (ys, dy)):
        border = _borders(starts, tile, scale, len(energy) + 1)
        phases = {c % scale for c in border}
        edge += [energy[c - 1] for c in border]
        inner += [energy[c - 1] for c in range(1, len(energy) + 1) if c % scale in phases and c not in border]
    if not edge or not inner:
        return 1.0
    return max(float(np.mean(edge)), _FLAT_ENERGY) / max(float(np.mean(inner)), _FLAT_ENERGY)


def _pair_energies(planes: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy): the mean squared difference across each column pair (c - 1, c), at dx[c - 1], and
    each row pair, over the planes; a plane at a time, so only one plane's differences are held in float64."""
    per_plane = [(_squared_steps(p, axis=1), _squared_steps(p, axis=0)) for p in planes]
    return np.mean([x for x, _ in per_plane], axis=0), np.mean([y for _, y in per_plane], axis=0)


def _squared_steps(plane: np.ndarray, axis: int) -> np.ndarray:
    """Mean squared difference between neighbours along `axis`, per pair position (in float64,
    without a float64 copy of the plane)."""
    a = np.asarray(plane)
    ahead, behind = (a[:, 1:], a[:, :-1]) if axis == 1 else (a[1:], a[:-1])
    d = np.subtract(ahead, behind, dtype=np.float64)
    d *= d
    return d.mean(axis=1 - axis)


def _unit_planes(image: np.ndarray) -> Iterator[np.ndarray]:
    """An image's channel planes in [0, 1]: uint8/uint16 over their full scale, floats as they are."""
    from alignvar_edge.images.arrays import full_scale
    x = np.asarray(image)
    full = full_scale(x.dtype)
    if full is None:
        raise InputError(f"seam_ratio takes uint8, uint16 or float images in [0, 1], got dtype {x.dtype}")
    x = x[..., None] if x.ndim == 2 else x
    for c in range(x.shape[2]):
        yield x[..., c] if full == 1.0 else x[..., c] / full


def _borders(starts: list[int], tile: int, scale: int, n: int) -> set[int]:
    """HR positions c in (0, n) where a tile starts or ends: the pair (c - 1, c) straddles it."""
    b = {st * scale for st in starts[1:]} | {(st + tile) * scale for st in starts[:-1]}
    return {c for c in b if 0 < c < n}


def _stream(engine: TileRunner, img: np.ndarray, ys: list[int], xs: list[int], size_hw: tuple[int, int],
            progress: TileProgress | None, to_float: FloatOf) -> Iterator[tuple[int, np.ndarray]]:
    """(y0, rows) strips of a prepared image's result: tiles run in batches and blended in turn."""
    yield from _blend(_run_tiles(engine, img, ys, xs, to_float), ys, xs, size_hw, engine.tile_size, engine.scale,
                      progress)


def blend_tiles(sr_tiles: np.ndarray, ys: list[int], xs: list[int], size_hw: tuple[int, int],
                tile: int, scale: int) -> np.ndarray:
    """Stitch SR tiles already computed (raster order, from `extract_tiles`) into the 4x image."""
    coords = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    return _collect(_blend(zip(coords, sr_tiles), ys, xs, size_hw, tile, scale, None), size_hw, scale)


def _collect(strips: Iterable[tuple[int, np.ndarray]], size_hw: tuple[int, int], scale: int) -> np.ndarray:
    """The whole result from its (y0, rows) strips."""
    out = np.empty((size_hw[0] * scale, size_hw[1] * scale, 3), np.float32)
    for y0, rows in strips:
        out[y0:y0 + rows.shape[0]] = rows
    return out


def _blend(results: Iterable[tuple[tuple[int, int], np.ndarray]], ys: list[int], xs: list[int],
           size_hw: tuple[int, int], t: int, s: int,
           progress: TileProgress | None) -> Iterator[tuple[int, np.ndarray]]:
    """Weighted accumulation of SR tiles (raster order) into finished row strips."""
    # the last tile ends at the (mirror-padded) image's edge
    (H, W), (Hp, Wp) = size_hw, (ys[-1] + t, xs[-1] + t)
    wy = [blend_window(ys, t, i, s) for i in range(len(ys))]
    wx = [blend_window(xs, t, j, s) for j in range(len(xs))]
    total = len(ys) * len(xs)

    acc = np.zeros((t * s, Wp * s, 3), np.float64)      # one tile-row strip
    wsum = np.zeros((t * s, Wp * s), np.float64)
    origin = 0                                           # output row of acc[0]
    out_rows = H * s

    def flush(upto: int) -> Iterator[tuple[int, np.ndarray]]:
        nonlocal origin
        n = upto - origin
        if n <= 0:
            return
        rows = (acc[:n] / wsum[:n, :, None]).astype(np.float32)
        # shift the strip up by n rows in place (the rest belongs to tiles still to come): a new
        # strip each time held two at once
        for a in (acc, wsum):
            a[:len(a) - n] = a[n:]
            a[len(a) - n:] = 0
        y0 = origin
        origin = upto
        if y0 < out_rows:
            kept = rows[:min(n, out_rows - y0), :W * s]
            yield y0, np.clip(kept, 0.0, 1.0, out=kept)

    done = 0
    row_prev = 0
    for (i, j), sr in results:
        if i != row_prev:
            # every tile of rows < i is blended: output above this row's start is final
            yield from flush(ys[i] * s)
            row_prev = i
        y0, x0 = ys[i] * s - origin, xs[j] * s
        w2 = wy[i][:, None] * wx[j][None, :]
        acc[y0:y0 + t * s, x0:x0 + t * s] += np.asarray(sr).transpose(1, 2, 0) * w2[..., None]
        wsum[y0:y0 + t * s, x0:x0 + t * s] += w2
        done += 1
        if progress is not None:
            progress(done, total)
    yield from flush(Hp * s)


def _run_tiles(engine: TileRunner, img: np.ndarray, ys: list[int], xs: list[int], to_float: FloatOf
               ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """Tiles in raster order, run in batches of the engine's batch (as many batches per call as it
    keeps in flight); yields ((i, j), SR tile)."""
    t = engine.tile_size
    coords = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    b = tiles_per_call(engine)
    for k in range(0, len(coords), b):
        chunk = coords[k:k + b]
        lr = np.stack([img[ys[i]:ys[i] + t, xs[j]:xs[j] + t].transpose(2, 0, 1) for i, j in chunk])
        sr, _ = engine.run(_float_tiles(lr, to_float))
        yield from zip(chunk, sr)


def tiles_per_call(engine: TileRunner) -> int:
    """Tiles handed to `engine.run` at once: its batch times the batches it keeps in flight."""
    return max(1, engine.batch) * max(1, getattr(engine, "parallel_requests", 1))


def upscale_plane_bicubic(plane: np.ndarray, scale: int) -> np.ndarray:
    """HxW float plane (e.g. alpha) -> bicubic x`scale`, clipped to [0, 1]. Pillow's kernel (a = -0.5),
    as image tools and VARSR's conditioning resize (`model.resample.PILBicubicResize`); not the PyTorch
    kernel (a = -0.75) of `model.matrices.bicubic_upscale`, the bench's baseline, which must be the
    model's own. Alpha rides beside the model's RGB and is never scored against it; the kernels'
    outputs differ, so sharing one would change what either returns. The seam figure's untiled
    reference is made with it too (`bicubic_seam_figure`): a ratio of energies, which either kernel
    gives within a few hundredths."""
    from PIL import Image
    p = np.asarray(plane, np.float32)
    big = Image.fromarray(p).resize((p.shape[1] * scale, p.shape[0] * scale), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(big, np.float32), 0.0, 1.0)


def upscale_image(engine: TileRunner, image: np.ndarray, overlap: int | None = None,
                  progress: TileProgress | None = None, color_fix: bool = False) -> np.ndarray:
    """HxW / HxWx1 (gray), HxWx2 (gray and alpha), HxWx3 (RGB) or HxWx4 (RGBA) float in [0, 1] ->
    4x float32, same layout.

    Gray runs as RGB and returns the mean of the three output channels; alpha is bicubic.
    """
    return upscale_samples(engine, _float_samples(image), overlap, progress, color_fix)


def upscale_samples(engine: TileRunner, image: Samples, overlap: int | None = None,
                    progress: TileProgress | None = None, color_fix: bool = False) -> np.ndarray:
    """`upscale_image` of an image's samples (`images.arrays.as_samples`: uint8, uint16 or float),
    as samples of its result's dtype. Tiles are converted to float as they are cut and each
    finished strip is converted into the result, so the working set besides the input and the
    result is the tile batch and a strip (`_upscaled`)."""
    return _upscaled(engine, _prepared(image, engine.scale, engine.tile_size, overlap), progress, color_fix)


def _upscaled(engine: TileRunner, prep: _Prepared, progress: TileProgress | None,
              color_fix: bool) -> np.ndarray:
    strips = _stream(engine, prep.padded, prep.ys, prep.xs, prep.size_hw, progress, prep.image.to_float)
    if color_fix:           # the fix needs the whole result's statistics: it is held as float32 first
        return prep.finish(lambda: _collect(strips, prep.size_hw, engine.scale), color_fix)
    return prep.fill(strips)


def _float_samples(image: np.ndarray) -> Samples:
    """A float image in [0, 1] as `Samples` whose result is float32 (the float functions here)."""
    from alignvar_edge.images.arrays import Samples
    return Samples(np.asarray(image), np.asarray, np.dtype(np.float32), lambda r: np.asarray(r, np.float32),
                   lambda r: r)


@dataclass(frozen=True)
class _Layout:
    """The input's layout, which its result takes: gray is the mean of the model's three output
    channels (HxW, or HxWx1 where `keep_dim`, HxWx2 with alpha); alpha (float32 HxW in [0, 1]) is
    upscaled on its own, the last channel."""

    gray: bool = False
    keep_dim: bool = False
    alpha: np.ndarray | None = None

    def shape(self, h: int, w: int) -> tuple[int, ...]:
        channels = (1 if self.gray else 3) + (self.alpha is not None)
        return (h, w) if channels == 1 and not self.keep_dim else (h, w, channels)

    def rows(self, rgb: np.ndarray) -> np.ndarray:
        """Rows of the model's RGB result in this layout, alpha apart."""
        if not self.gray:
            return rgb
        out = rgb.mean(axis=2)
        return out[..., None] if self.keep_dim else out


def _as_rgb(image: np.ndarray, to_float: FloatOf, alpha_is_coverage: bool) -> tuple[np.ndarray, _Layout]:
    """(the RGB samples the model sees, the layout its result takes)."""
    x = np.asarray(image)
    colour, alpha_samples = colour_and_alpha(x)
    alpha = None if alpha_samples is None else _alpha_plane(alpha_samples, to_float)
    if alpha is not None and alpha_is_coverage:
        colour = fill_transparent(colour, alpha)
    if colour.ndim == 2 or colour.shape[2] == 1:
        g = colour.reshape(x.shape[0], x.shape[1])
        # the one plane seen three times, not copied
        return np.broadcast_to(g[..., None], (*g.shape, 3)), _Layout(gray=True, keep_dim=x.ndim == 3, alpha=alpha)
    return colour, _Layout(alpha=alpha)


def _alpha_plane(samples: np.ndarray, to_float: FloatOf) -> np.ndarray:
    """An image's alpha channel as float32 in [0, 1] (its colour is checked with every image's, where
    it is prepared: `_prepare`)."""
    if samples.dtype.kind == "f":
        # NaN alpha came back a transparent hole, Inf alpha pushed its neighbours to opaque
        refuse_non_finite(samples, "the image's alpha channel")
    return np.clip(np.asarray(to_float(samples), np.float32), 0.0, 1.0)


@dataclass(frozen=True)
class _Prepared:
    """An image ready to cut: its samples and their conversions, the RGB the model sees (and
    padded, with its tile starts), and the layout its result takes."""

    image: Samples
    rgb: np.ndarray
    layout: _Layout
    padded: np.ndarray
    ys: list[int]
    xs: list[int]
    scale: int

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]

    def fill(self, strips: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
        """The result, in its samples' dtype, each (y0, rows) strip of the SR RGB converted into it
        as it comes."""
        (h, w), s = self.size_hw, self.scale
        out = np.empty(self.layout.shape(h * s, w * s), self.image.dtype)
        body = out if self.layout.alpha is None else out[..., :-1]
        for y0, rows in strips:
            body[y0:y0 + rows.shape[0]] = self.image.from_float(self.layout.rows(rows))
        if self.layout.alpha is not None:
            out[..., -1] = self.image.from_float(upscale_plane_bicubic(self.layout.alpha, s))
        return out

    def finish(self, sr: Callable[[], np.ndarray], color_fix: bool) -> np.ndarray:
        """The result from the whole SR RGB (float) that `sr()` makes, with the colour fix where
        asked (its strips converted into the result as they come)."""
        if not color_fix:
            return self.fill([(0, sr())])
        from alignvar_edge.images.color_fix import fixed_strips, reference_stats
        # the reference's statistics before the SR exists: its resized reference never overlaps it
        # (the input as floats, whole, only here)
        reference = reference_stats(self.image.to_float(self.rgb), self.scale)
        return self.fill(fixed_strips(sr(), reference))


def _prepared(image: Samples, scale: int, tile: int, overlap: int | None) -> _Prepared:
    # an integer result is made from integer samples (`as_samples`); a float one from floats only
    integers = image.dtype.kind in "ui"
    rgb, layout = _as_rgb(image.samples, image.to_float, image.alpha_is_coverage)
    padded, _, ys, xs = _prepare(rgb, tile, overlap, integers)
    return _Prepared(image, rgb, layout, padded, ys, xs, scale)


# Images of at most this many calls' tiles are pooled by `upscale_images`; larger ones stream.
POOL_CALLS = 4


def upscale_images(engine: TileRunner, images: Iterable[Any], overlap: int | None = None,
                   progress: ImagesProgress | None = None,
                   color_fix: bool = False, convert: Callable[[Any], Samples] = _float_samples,
                   name_item: Callable[[int], str] | None = None) -> Iterator[np.ndarray]:
    """Each image's 4x result (layouts as `upscale_image`), in order, as soon as it is final.

    A static-batch engine pads an image's last call, so a folder of small images would pay a
    mostly padded call each (a 32 x 32 LR image is 9 tiles of 16 px; at batch 16, 7 of 16 are padding).
    Images of up to POOL_CALLS calls' tiles are pooled instead: their tiles run in full calls
    shared with the next images, and only the pool's last call is padded. Larger images stream
    as `upscale_samples` does. Results are the same as one image at a time: each tile is computed
    alone by the model. `progress(index, done, total)`: tiles of image `index` done.
    `convert(item)`: an item of `images` as `Samples` (default: a float image, float32 results);
    results are samples of its dtype. With `name_item(index)`, an InputError
    about an item (its conversion, its layout) starts with that name (an error `images` itself
    raises, such as a reader's naming its file, is as it says).
    """
    s, t = engine.scale, engine.tile_size
    b = tiles_per_call(engine)
    waiting: list[_Pooled] = []             # images whose tiles are queued or partly run, in order
    queue: list[np.ndarray] = []            # their LR tiles not yet run, in order

    def run(final: bool) -> Iterator[np.ndarray]:
        n = len(queue) if final else len(queue) // b * b
        if n:
            sr = np.concatenate([engine.run(np.stack(queue[i:i + b]))[0] for i in range(0, n, b)])
            del queue[:n]
            k = 0
            for p in waiting:
                take = min(p.n - len(p.sr), n - k)
                p.sr.extend(sr[k:k + take])
                k += take
        while waiting and len(waiting[0].sr) == waiting[0].n:
            p = waiting.pop(0)
            if progress is not None:
                progress(p.index, p.n, p.n)
            prep = p.prep
            yield prep.finish(lambda: blend_tiles(np.stack(p.sr), prep.ys, prep.xs, prep.size_hw, t, s), color_fix)

    source = iter(images)
    for index in itertools.count():
        try:
            image = next(source, _END)
            if image is _END:
                break
            prep = _named(index, name_item, lambda: _prepared(convert(image), s, t, overlap))
        except Exception:
            # an image that cannot be read or used: the pooled images before it are finished
            # first, so a folder run keeps (and on resume skips) everything read so far
            yield from run(final=True)
            raise
        n = len(prep.ys) * len(prep.xs)
        if n > POOL_CALLS * b:
            yield from run(final=True)
            tick = None if progress is None else (lambda d, k, i=index: progress(i, d, k))
            yield _upscaled(engine, prep, tick, color_fix)
            continue
        waiting.append(_Pooled(index, prep, n))
        queue.extend(_cut(prep.padded, prep.ys, prep.xs, t, prep.image.to_float))
        yield from run(final=False)
    yield from run(final=True)


_END = object()      # the end of `upscale_images`' source (a None *in* it is an unusable image: an error)


def _named(index: int, name_item: Callable[[int], str] | None, work: Callable[[], Any]) -> Any:
    """`work()`, its InputError about item `index` starting with the caller's name for the item."""
    try:
        return work()
    except InputError as e:
        if name_item is None:
            raise
        raise InputError(f"{name_item(index)}: {e}") from e


@dataclass
class _Pooled:
    """An image in `upscale_images`' pool: where its tiles go and the SR tiles it has so far."""

    index: int
    prep: _Prepared
    n: int
    sr: list[np.ndarray] = field(default_factory=list)


# how a side shorter than a tile is padded (bottom and right only), as numpy's np.pad names it:
# 'symmetric' repeats the edge pixel then mirrors; numpy tiles it for pads larger than the image
# (a 1x1 image becomes a constant tile). Engine READMEs state it (runtimes/readme.py)
PAD_MODE: Final = "symmetric"


def _mirror_pad(img: np.ndarray, ph: int, pw: int) -> np.ndarray:
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=PAD_MODE)
