"""The colour under fully transparent pixels, filled from the visible ones before the model sees
it: editors leave black there, and the model, whose result near an edge depends on the pixels
across it, bled it into the visible edge (a dark fringe). Engine READMEs' "Whole images" step 1
states the arithmetic (runtimes/readme.py), and a test follows those words."""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["fill_transparent"]


def fill_transparent(samples: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`samples` (HxW or HxWxC, in their own dtype) with the colour of each pixel whose `alpha` is 0
    replaced by that of the visible pixels around it, so that what editors leave under transparency
    (black, most often) does not reach the model, whose result near an edge depends on the pixels
    across it. A pull-push fill: each 2x2 block's mean of its visible pixels, level by level, then
    from the coarsest level back each hidden pixel takes its level's bilinear 2x upsampling of the
    next. O(pixels). Memory besides the copy returned: a mask of the hidden pixels (1 byte a pixel)
    and the float32 levels of the windows filled (`_fill_windows`): where the hidden pixels lie in
    a few groups, of the pixels around each group alone (a few small holes: next to nothing), else
    of the whole image, the first a quarter of its pixels (the bytes of an 8-bit image, half those
    of a 16-bit one) and the rest a third of that. Measured peaks, the copy included, in an 8-bit
    RGB image's bytes: 1.33x with a few small holes, 2.8x-2.9x with hidden pixels all over it.
    An image with no pixel of alpha 0 (or no visible one) is `samples` itself, bit for bit."""
    hidden = np.asarray(alpha) == 0
    if not hidden.any() or hidden.all():
        return samples
    out = np.array(samples)                 # a copy, writable, in the samples' dtype
    planes = out if out.ndim == 3 else out[..., None]
    for r0, r1, c0, c1 in _fill_windows(hidden):
        _fill(planes[r0:r1, c0:c1], hidden[r0:r1, c0:c1])
    return out


def _fill(level: np.ndarray, hidden: np.ndarray) -> None:
    """Fill `level`'s (HxWxC) `hidden` pixels in place (`fill_transparent`)."""
    coarse, coarse_hidden = _pulled(level, hidden)
    if coarse_hidden.any():
        _fill(coarse, coarse_hidden)
    for dy, dx in itertools.product((0, 1), (0, 1)):
        where, phase = hidden[dy::2, dx::2], level[dy::2, dx::2]
        for r0 in range(0, where.shape[0], _FILL_ROWS):      # a strip at a time: no level-sized floats
            strip = where[r0:r0 + _FILL_ROWS]
            if strip.any():
                up = _upsampled_rows(coarse, r0, r0 + len(strip), dy, dx)[:, :strip.shape[1]]
                phase[r0:r0 + len(strip)][strip] = _as_dtype(up[strip], level.dtype)


_FILL_ROWS = 64


def _pulled(level: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each 2x2 block's mean of its visible pixels as float32, the blocks with none), the last
    row or column of an odd side a block of its own. The sums are added in float32 a channel at a
    time, skipping hidden pixels, and divided in place: no other level-sized array is made."""
    h2, w2 = -(-hidden.shape[0] // 2), -(-hidden.shape[1] // 2)
    sums = np.zeros((h2, w2, level.shape[2]), np.float32)
    counts = np.zeros((h2, w2), np.uint8)
    for dy, dx in itertools.product((0, 1), (0, 1)):
        seen = ~hidden[dy::2, dx::2]
        h, w = seen.shape
        for c in range(level.shape[2]):
            np.add(sums[:h, :w, c], level[dy::2, dx::2, c], out=sums[:h, :w, c], where=seen)
        counts[:h, :w] += seen
    np.maximum(counts, 1, out=counts)
    sums /= counts[..., None]
    return sums, _halved(hidden)


def _halved(hidden: np.ndarray) -> np.ndarray:
    """The next level's hidden pixels: the 2x2 blocks (on an odd side's end, 1 px across) with no
    visible pixel."""
    out = hidden[::2, ::2].copy()
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        part = hidden[dy::2, dx::2]
        out[:part.shape[0], :part.shape[1]] &= part
    return out


# (first row, end row, first column, end column) of a part of an image
_Box = tuple[int, int, int, int]

# more groups of hidden pixels than this: the whole image is filled at once
_WINDOW_GROUPS = 64


def _fill_windows(hidden: np.ndarray) -> list[_Box]:
    """Windows that, each filled alone, give their hidden pixels exactly what filling the whole
    image gives: one around each group of hidden pixels, reaching past it, for a fill of L levels,
    2^(L-1) px (so that no hidden pixel of any level is on an edge of it that the image does not
    have, where the upsampling would take the edge pixel again) to multiples of 2^L px (so that its
    blocks at every level are the image's), and apart from every other window (so that it holds no
    other group's pixels): groups whose windows meet become one. The whole image where that is
    what is left, or where the groups are too many to be few."""
    whole = [(0, hidden.shape[0], 0, hidden.shape[1])]
    boxes = _hidden_groups(hidden)
    if boxes is None:
        return whole
    windows = [_window(hidden, box) for box in boxes]
    while (pair := _meeting(windows)) is not None:
        one, other = (boxes[k] for k in pair)
        joined = (min(one[0], other[0]), max(one[1], other[1]), min(one[2], other[2]), max(one[3], other[3]))
        boxes = [box for k, box in enumerate(boxes) if k not in pair] + [joined]
        windows = [w for k, w in enumerate(windows) if k not in pair] + [_window(hidden, joined)]
    return windows


def _hidden_groups(hidden: np.ndarray) -> list[_Box] | None:
    """Boxes around the groups of hidden pixels that rows or columns with none of them part (the
    image cut along every such band, then each part again), or None past _WINDOW_GROUPS of them."""
    todo, boxes = [(0, hidden.shape[0], 0, hidden.shape[1])], []
    while todo:
        y0, y1, x0, x1 = todo.pop()
        part = hidden[y0:y1, x0:x1]
        rows, cols = _bands(np.any(part, axis=1)), _bands(np.any(part, axis=0))
        if len(rows) > 1:
            todo += [(y0 + a, y0 + b, x0, x1) for a, b in rows]
        elif len(cols) > 1:
            todo += [(y0, y1, x0 + a, x0 + b) for a, b in cols]
        else:
            boxes.append((y0 + rows[0][0], y0 + rows[0][1], x0 + cols[0][0], x0 + cols[0][1]))
        if len(todo) + len(boxes) > _WINDOW_GROUPS:
            return None
    return boxes


def _bands(used: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in `used` (at least one)."""
    i = np.flatnonzero(used)
    gaps = np.flatnonzero(np.diff(i) > 1)
    return list(zip([int(i[0]), *(i[gaps + 1].tolist())], [*(i[gaps] + 1).tolist(), int(i[-1]) + 1]))


def _window(hidden: np.ndarray, box: _Box) -> _Box:
    """`_fill_windows`' window around the hidden pixels in `box`: the fill of its part of the image
    is L levels deep where the part's level L has no hidden pixel."""
    levels = 1
    while True:
        (r0, r1), (c0, c1) = (_widened(box[k], box[k + 1], levels, hidden.shape[k // 2]) for k in (0, 2))
        part = hidden[r0:r1, c0:c1]
        if part.shape == hidden.shape or not _coarsened(part, levels).any():
            return r0, r1, c0, c1
        levels += 1


def _coarsened(hidden: np.ndarray, levels: int) -> np.ndarray:
    """The hidden pixels `levels` levels up (`_halved` so many times)."""
    for _ in range(levels):
        hidden = _halved(hidden)
    return hidden


def _widened(start: int, end: int, levels: int, n: int) -> tuple[int, int]:
    """[start, end) widened by 2^(levels - 1) on each side, then out to multiples of 2^levels, within [0, n)."""
    unit = 1 << levels
    return max(0, (start - unit // 2) // unit * unit), min(n, -(-(end + unit // 2) // unit) * unit)


def _meeting(windows: list[_Box]) -> tuple[int, int] | None:
    """The first two windows that share a pixel, or None."""
    for i, j in itertools.combinations(range(len(windows)), 2):
        a, b = windows[i], windows[j]
        if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
            return i, j
    return None


def _upsampled_rows(coarse: np.ndarray, r0: int, r1: int, dy: int, dx: int) -> np.ndarray:
    """Rows r0:r1 of the pixels (dy::2, dx::2) of `coarse` upsampled 2x bilinearly: 3/4 of the
    nearest coarse pixel and 1/4 of the next nearest, along each axis (the edge one past the edge)."""
    rows = 0.75 * coarse[r0:r1] + 0.25 * coarse[_nearest_after(np.arange(r0, r1), dy, len(coarse))]
    return 0.75 * rows + 0.25 * rows[:, _nearest_after(np.arange(rows.shape[1]), dx, rows.shape[1])]


def _nearest_after(i: np.ndarray, d: int, n: int) -> np.ndarray:
    """The coarse index second nearest to fine pixel 2i + d: the one before (d = 0) or after, kept in [0, n)."""
    return np.clip(i + (1 if d else -1), 0, n - 1)


def _as_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float values as `dtype`: integers rounded (each is a mean of samples, so in range)."""
    return np.rint(values).astype(dtype) if dtype.kind in "ui" else values.astype(dtype)
