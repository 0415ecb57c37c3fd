"""The faint grid tiling leaves in a result: how large, on which photographs, at which overlap.

    PYTHONPATH=. python scripts/tile_grid.py [ENGINE] [--folder DIR] [--lr-side 128] [--overlaps 4,6,2] [--out grid.json]

ENGINE is an engine or export directory, or a checkpoint (default: the bundled model). Each
photograph (the bundled held-out ones, and every image in --folder), resized (bicubic) to an LR
square of --lr-side, is upscaled at each overlap; the result less a bicubic upscale of the same LR,
averaged over colour and along each row (and each column), is folded at the tile stride
((tile - overlap) x scale output px) and at the stride -/+ 4 px as a control. Per photograph,
overlap and direction it prints the folded profile's peak to peak and rms in levels of 255, over
the whole image and in the worst band of BAND output px (the rows' profile of each column band, the
columns' of each row band), each beside its controls: a grid shows as a stride figure above them.
The last lines give the range over the photographs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from alignvar_edge.cpuinfo import host_info, host_line
from alignvar_edge.runtimes import load
from alignvar_edge.samples import sample_images

CONTROL_SHIFT = 4          # output px either side of the stride: no grid there
BAND = 128                 # output px of a band: a grid that shows on a smooth part of the image only


def _fold(profile: np.ndarray, period: int) -> tuple[float, float]:
    """Peak to peak and rms of `profile` averaged over whole periods, its mean removed."""
    n = len(profile) // period * period
    folded = profile[:n].reshape(-1, period).mean(axis=0)
    folded -= folded.mean()
    return float(np.ptp(folded)), float(np.sqrt((folded ** 2).mean()))


def _figures(profiles: list[np.ndarray], stride: int) -> dict:
    """The stride's fold of the profile among `profiles` where it is largest, and its controls'."""
    ptps = [_fold(p, stride) for p in profiles]
    worst = int(np.argmax([ptp for ptp, _ in ptps]))
    controls = [max(_fold(p, stride + d)[0] for p in profiles) for d in (-CONTROL_SHIFT, CONTROL_SHIFT)]
    return {"peak_to_peak": round(ptps[worst][0], 2), "rms": round(ptps[worst][1], 2),
            "control_peak_to_peak": [round(c, 2) for c in controls]}


def photographs(folder: str | None) -> list[tuple[str, Image.Image]]:
    """The bundled held-out photographs, then the images of `folder` (sorted by name)."""
    out = [(name, Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)).convert("RGB"))
           for name, x in sample_images("heldout")]
    if folder:
        for path in sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
            with Image.open(path) as im:
                out.append((path.name, im.convert("RGB")))
    return out


def grid_of(engine, photo: Image.Image, lr_side: int, overlap: int) -> list[dict]:
    """Rows and columns figures of one photograph at one overlap."""
    lr = photo.resize((lr_side, lr_side), Image.Resampling.BICUBIC)
    side = lr_side * engine.scale
    bicubic = np.asarray(lr.resize((side, side), Image.Resampling.BICUBIC), np.float64)
    diff = (np.asarray(engine.upscale(np.asarray(lr), overlap=overlap), np.float64) - bicubic).mean(axis=2)
    stride = (engine.tile_size - overlap) * engine.scale
    bands = range(0, side - BAND + 1, BAND)
    rows = []
    for direction, whole, banded in (
            ("rows", diff.mean(axis=1), [diff[:, b:b + BAND].mean(axis=1) for b in bands]),
            ("columns", diff.mean(axis=0), [diff[b:b + BAND].mean(axis=0) for b in bands])):
        rows.append({"overlap": overlap, "stride_px": stride, "direction": direction,
                     **_figures([whole], stride), "worst_band": _figures(banded, stride)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", nargs="?", default="alignvar-tiny")
    ap.add_argument("--folder", help="more photographs (PNG, JPEG) besides the bundled held-out ones")
    ap.add_argument("--lr-side", type=int, default=128)
    ap.add_argument("--overlaps", default="4,6,2", help="LR px; the first is the engine's default")
    ap.add_argument("--out")
    a = ap.parse_args()
    photos = photographs(a.folder)
    grid = []
    with load(a.engine, threads=1) as engine:
        for name, photo in photos:
            for overlap in (int(o) for o in a.overlaps.split(",")):
                for r in grid_of(engine, photo, a.lr_side, overlap):
                    grid.append({"image": name, **r})
                    b = r["worst_band"]
                    print(f"{name[:24]:24s} overlap {overlap} (grid {r['stride_px']} px), {r['direction']:7s}: "
                          f"peak to peak {r['peak_to_peak']:.2f} levels (rms {r['rms']:.2f}), at "
                          f"{r['stride_px'] - CONTROL_SHIFT}/{r['stride_px'] + CONTROL_SHIFT} px "
                          "{:.2f}/{:.2f}".format(*r["control_peak_to_peak"])
                          + f"; worst {BAND} px band {b['peak_to_peak']:.2f} (controls "
                          "{:.2f}/{:.2f})".format(*b["control_peak_to_peak"]), flush=True)
        backend = engine.backend
    summary = _summary(grid)
    for s in summary:
        print("over {photos} photographs, overlap {overlap}, {direction}: peak to peak {peak_to_peak[0]:.2f}-"
              "{peak_to_peak[1]:.2f} (rms {rms[0]:.2f}-{rms[1]:.2f}), controls {controls[0]:.2f}-{controls[1]:.2f}; "
              "worst band {band[0]:.2f}-{band[1]:.2f} (controls {band_controls[0]:.2f}-{band_controls[1]:.2f})"
              .format(**s))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"engine": a.engine, "backend": backend, "images": [n for n, _ in photos],
                       "folder": a.folder, "lr_side": a.lr_side, "band_px": BAND,
                       "host": host_line(host_info()), "summary": summary, "grid": grid}, f, indent=1)
            f.write("\n")


def _summary(grid: list[dict]) -> list[dict]:
    """(min, max) over the photographs of each figure, per overlap and direction."""
    out = []
    for key in dict.fromkeys((r["overlap"], r["direction"]) for r in grid):
        rs = [r for r in grid if (r["overlap"], r["direction"]) == key]

        def span(values: list[float]) -> list[float]:
            return [min(values), max(values)]
        out.append({"overlap": key[0], "direction": key[1], "photos": len(rs),
                    "peak_to_peak": span([r["peak_to_peak"] for r in rs]), "rms": span([r["rms"] for r in rs]),
                    "controls": span([c for r in rs for c in r["control_peak_to_peak"]]),
                    "band": span([r["worst_band"]["peak_to_peak"] for r in rs]),
                    "band_controls": span([c for r in rs for c in r["worst_band"]["control_peak_to_peak"]])})
    return out


if __name__ == "__main__":
    main()
