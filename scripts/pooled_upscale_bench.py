"""A folder of small images through one engine: `upscale` one image at a time against
`upscale_many` (small images share calls), interleaved rounds, one thread, medians; JSON on stdout.

    python scripts/pooled_upscale_bench.py ENGINE_DIR LR_SIDE COUNT ROUNDS

The images are COUNT uint8 LR crops (LR_SIDE x LR_SIDE, seeded) of the bundled held-out
photographs, the folder `bench --folder-images COUNT --folder-size LR_SIDE` times. Also checks
that both ways give the same bytes.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from alignvar_edge import runtimes
from alignvar_edge.bench.image import folder_lrs
from alignvar_edge.cpuinfo import cpu_info


def crops(side: int, count: int) -> list[np.ndarray]:
    """The folder `bench --folder-images` times, as the uint8 images a folder of files gives."""
    return [np.round(lr * 255).astype(np.uint8) for lr in folder_lrs(side, count)]


def main(engine_dir: str, side: int, count: int, rounds: int) -> dict:
    images = crops(side, count)
    times: dict[str, list[float]] = {"one_at_a_time": [], "pooled": []}
    with runtimes.load(engine_dir, threads=1) as e:
        ways = {"one_at_a_time": lambda: [e.upscale(im) for im in images],
                "pooled": lambda: list(e.upscale_many(images))}
        for way in ways.values():            # warm-up
            way()
        for r in range(rounds):
            for name in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
                t0 = time.perf_counter()
                ways[name]()
                times[name].append(time.perf_counter() - t0)
        same = all(np.array_equal(a, b) for a, b in zip(ways["one_at_a_time"](), ways["pooled"]()))
        backend, batch = e.backend, e.batch
    mp = count * (side * 4) ** 2 / 1e6
    med = {k: float(np.median(v)) for k, v in times.items()}
    host = cpu_info()
    return {"engine": engine_dir, "backend": backend, "batch": batch, "images": count, "lr_side": side,
            "rounds": rounds, "threads": 1, "seconds": times, "median_s": med,
            "mp_per_s": {k: mp / v for k, v in med.items()},
            "speedup": med["one_at_a_time"] / med["pooled"], "identical_outputs": same,
            "host": {k: host.get(k) for k in ("model", "isa", "usable_cores")}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine_dir", help="an engine directory (build / deploy output)")
    ap.add_argument("lr_side", type=int, help="side of each LR crop, in pixels")
    ap.add_argument("count", type=int, help="how many images")
    ap.add_argument("rounds", type=int, help="timed rounds of each way, interleaved")
    a = ap.parse_args()
    print(json.dumps(main(a.engine_dir, a.lr_side, a.count, a.rounds), indent=1))
