"""`alignvar-edge demo`: super-resolve a bundled sample photograph with the bundled model.

A held-out photograph (never seen in training) is degraded to LR with the model's own recipe,
upscaled x4 by the bundled default model (`DEFAULT_CHECKPOINT`; PyTorch reference engine,
tiled), and compared with bicubic against the original. Writes lr.png, sr.png, bicubic.png and hr.png.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.errors import InputError, OutputExistsError
from alignvar_edge.fsmodes import unwritable_folder
from alignvar_edge.model.bundled import DEFAULT_CHECKPOINT


# the smallest HR crop the scores take: SSIM-Y's 11 px Gaussian window inside a 4 px border on
# each side, on the x4 grid
MIN_SIZE = 20


def run_demo(out: Path, image: str = "coffee", size: int = 256, force: bool = False,
             checkpoint: str = DEFAULT_CHECKPOINT) -> dict[str, Any]:
    from alignvar_edge.export.parity import psnr_y, ssim_y
    from alignvar_edge.images import save_image
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.runtimes.torch_backend import TorchEngine
    from alignvar_edge.samples import sample_images
    from alignvar_edge.degrade import degrade, image_seed
    from alignvar_edge.model.matrices import bicubic_upscale

    names = dict(sample_images("heldout"))
    if image not in names:
        raise InputError(f"unknown sample '{image}'; choose one of {sorted(names)}")
    if size < MIN_SIZE:
        raise InputError(f"--size {size} is too small to score; pass at least {MIN_SIZE} (HR pixels)")
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"'{out}' already holds files; pass --force or choose another --out")
    if (folder := unwritable_folder(out / "sr.png", f"into --out {out}")) is not None:
        raise InputError(f"cannot write into --out {out}: {folder} is not writable; choose another --out")

    model = load_pretrained(checkpoint)
    c = model.config
    hr = names[image]
    s = min(size, hr.shape[0], hr.shape[1]) // c.scale * c.scale
    top, left = (hr.shape[0] - s) // 2, (hr.shape[1] - s) // 2
    hr = np.ascontiguousarray(hr[top:top + s, left:left + s], dtype=np.float32)
    deg = c.lr_degradation()
    lr = degrade(hr, deg, image_seed(0, image))      # the LR `eval` scores this photograph on (seed 0)

    with TorchEngine.from_model(model, batch=16) as engine:
        t0 = time.perf_counter()
        sr = engine.upscale(lr)
        seconds = time.perf_counter() - t0
    bic = bicubic_upscale(lr, c.scale)
    ref = hr.transpose(2, 0, 1)
    result = {
        "image": image, "lr_size": list(lr.shape[:2]), "sr_size": list(sr.shape[:2]),
        "seconds": seconds, "model": checkpoint,          # as the user names it, not its preset
        "psnr_y": {"alignvar": psnr_y(ref, sr.transpose(2, 0, 1), c.scale),
                   "bicubic": psnr_y(ref, bic.transpose(2, 0, 1), c.scale)},
        "ssim_y": {"alignvar": ssim_y(ref, sr.transpose(2, 0, 1), c.scale),
                   "bicubic": ssim_y(ref, bic.transpose(2, 0, 1), c.scale)},
    }
    out.mkdir(parents=True, exist_ok=True)         # only once there is something to write
    for name, img in (("lr", lr), ("sr", sr), ("bicubic", bic), ("hr", hr)):
        save_image(out / f"{name}.png", img, overwrite=True)
    return result


def format_demo(r: dict[str, Any], out: Path) -> str:
    return (f"super-resolved the held-out sample '{r['image']}': LR {r['lr_size'][1]}x{r['lr_size'][0]} -> "
            f"SR {r['sr_size'][1]}x{r['sr_size'][0]} with {r['model']} (PyTorch, tiled) in {r['seconds']:.2f} s\n"
            f"  PSNR-Y  alignvar {r['psnr_y']['alignvar']:.2f} dB   bicubic {r['psnr_y']['bicubic']:.2f} dB\n"
            f"  SSIM-Y  alignvar {r['ssim_y']['alignvar']:.4f}     bicubic {r['ssim_y']['bicubic']:.4f}\n"
            f"  wrote {out}/lr.png, sr.png, bicubic.png, hr.png")
