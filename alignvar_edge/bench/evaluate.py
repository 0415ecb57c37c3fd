"""Evaluate an AlignVAR checkpoint on held-out photographs, as SR papers report it.

For each HR photograph (cropped to whole tiles), the LR input is made by the checkpoint's own
degradation, drawn from the run's seed and the image's name (`degrade.image_seed`: one photograph
gets the same LR whatever else is scored beside it), and the draw is recorded per image. Three
reconstructions are scored with PSNR-Y and SSIM-Y (BT.601 luma, border of `scale` pixels cropped;
scikit-image metrics):
  - the model's super-resolution (greedy rollout; overlapping tiles blended, as `upscale` does),
  - bicubic upsampling of the same LR,
  - the VQ-VAE's reconstruction of the HR from its own tokens: the ceiling a token model can reach.
With `ablations=True` the model's components are also scored on the same tiles (tokens_off,
sca_off; see train/ablations.py) and `ablation_report` gives the `eval --ablations --json` form.
With `prune` ratios the model is also run with token pruning (model/pruning.py): `pruned` is scored
against the HR like the others, and `pruned_vs_model` is its PSNR-Y against the unpruned output.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from alignvar_edge.caller import option
from alignvar_edge.degrade import degrade, drawn, image_seed
from alignvar_edge.errors import InputError
from alignvar_edge.export.parity import psnr_y, ssim_y
from alignvar_edge.model.alignvar import AlignVAR
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.model.matrices import bicubic_upscale
from alignvar_edge.runtimes.torch_backend import DEFAULT_BATCH, TorchEngine
from alignvar_edge.model.pruning import effective_prune
from alignvar_edge.manifest import default_overlap
from alignvar_edge.name_text import line_text
from alignvar_edge.images.arrays import colour_and_alpha
from alignvar_edge.runtimes.tiling import bicubic_seam_figure, seam_ratio, tile_starts
from alignvar_edge.train.ablations import NOT_APPLICABLE, VARIANTS, variant_models

KINDS = (*VARIANTS, "pruned", "pruned_vs_model")     # what a result may score, in table order


@dataclass
class ImageScore:
    name: str
    size: tuple[int, int]
    psnr: dict[str, float]
    ssim: dict[str, float]
    seam_ratio_vs_bicubic: float     # the model's SR: see evaluate's "mean_seam_ratio_vs_bicubic"
    degradation: dict[str, Any]      # what made its LR (`degrade.drawn`)
    source_size: tuple[int, int]     # (W, H) of the photograph, whose centre `size` is scored


def _tiles(x_CHW: torch.Tensor, t: int) -> torch.Tensor:
    """(C, H, W) with H, W multiples of t -> (N, C, t, t) in row-major tile order."""
    C, H, W = x_CHW.shape
    return x_CHW.reshape(C, H // t, t, W // t, t).permute(1, 3, 0, 2, 4).reshape(-1, C, t, t)


def _untile(x_NCtt: torch.Tensor, H: int, W: int) -> torch.Tensor:
    N, C, t, _ = x_NCtt.shape
    return x_NCtt.reshape(H // t, W // t, C, t, t).permute(2, 0, 3, 1, 4).reshape(C, H, W)


@torch.no_grad()
def vq_reconstruct(model: AlignVAR, lr_NC: torch.Tensor, hr_NC: torch.Tensor,
                   batch: int = DEFAULT_BATCH) -> torch.Tensor:
    """The VQ-VAE's reconstruction of HR tiles from their own tokens (the token ceiling)."""
    outs = []
    for i in range(0, lr_NC.shape[0], batch):
        lr, hr = lr_NC[i:i + batch], hr_NC[i:i + batch]
        _, f_hat, _ = model.vae.quantize.quantize(model.vae.encode(hr, lr))
        outs.append(model.vae.decode(f_hat, lr))
    return torch.cat(outs)


def _float_rgb(name: str, image: object) -> np.ndarray:
    """An image as `upscale` takes it (uint8, uint16 or float in [0, 1]; gray, gray and alpha, RGB
    or RGBA; a PIL image) -> the float RGB that is scored: gray as three equal channels, alpha left
    out (the model never sees it). A uint8 array read as float would score -40 dB, not fail."""
    from alignvar_edge.images import as_float_image
    try:
        x, _ = as_float_image(image)
        colour, _ = colour_and_alpha(x)
    except InputError as e:
        raise InputError(f"image {name!r}: {e}") from e
    colour = colour.reshape(*colour.shape[:2], -1)          # gray HxW as HxWx1
    return np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour


def check_max_side(config: AlignVARConfig, max_side: int | None) -> None:
    """Images are scored on whole HR tiles: a crop below one tile leaves nothing to score."""
    if max_side is not None and max_side < config.hr_size:
        raise InputError(f"--max-side {max_side} is below the model's {config.hr_size} px HR tile; "
                         f"pass at least {config.hr_size}")


# more whole HR tiles than this get a hint about max_side before the work: 256 take the bundled model
# (the `tiny` preset) under half a minute at one thread (a 1024x1024 photograph: 21 s on a 2-core Xeon),
# larger models longer
MANY_TILES = 256
TIMED_PRESET = "tiny"


def _many_tiles_hint(config: AlignVARConfig, name: str, total: int, images: int) -> str:
    """The line before a long evaluation: its tiles, what 256 of them cost, and how to score fewer. The
    cost was measured on the `tiny` preset; another model is named with its preset, not given tiny's time."""
    cost = (f"{MANY_TILES} take {name} under half a minute at one thread" if config.name == TIMED_PRESET else
            f"{MANY_TILES} take alignvar-tiny under half a minute at one thread; {name} is a '{config.name}' model")
    side = 4 * config.hr_size
    return (f"{total} tiles of {config.hr_size} px to score in {images} image(s) ({cost}); "
            f"{option('max_side', side)} scores the centre {side}x{side} px of each")


def _scored_size(hw: tuple[int, ...], max_side: int | None, t_hr: int) -> tuple[int, int]:
    """(H, W) of an image's centre crop that is scored: whole HR tiles, at most max_side a side."""
    H, W = (side if max_side is None else min(side, max_side) for side in hw[:2])
    return H // t_hr * t_hr, W // t_hr * t_hr


def scored_pair(config: AlignVARConfig, name: str, hr: np.ndarray, seed: int, max_side: int | None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(HR, LR, the draw that made it) of one float photograph as `evaluate` scores it: its centre in
    whole HR tiles, at most `max_side` a side, degraded by the model's recipe with the photograph's
    own draw (its name's, not its place among the others)."""
    H, W = _scored_size(hr.shape, max_side, config.hr_size)
    top, left = (hr.shape[0] - H) // 2, (hr.shape[1] - W) // 2
    hr = np.ascontiguousarray(hr[top:top + H, left:left + W], dtype=np.float32)
    deg, draw = config.lr_degradation(), image_seed(seed, name)
    return hr, degrade(hr, deg, draw), drawn(deg, draw)


def evaluate(model: AlignVAR, images: list[tuple[str, Any]], seed: int = 0,
             max_side: int | None = None, ablations: bool = False, prune: tuple[float, ...] = (),
             overlap: int | None = None, log: Callable[[str], None] | None = None,
             name: str = "this model") -> dict[str, Any]:
    """Score (name, HR image) pairs; an image is what `upscale` takes (`_float_rgb`). `log` hears
    a line per image as its work starts (and a hint, naming the model as `name`, where the images are large)."""
    say = log or (lambda _msg: None)
    c = model.config
    check_max_side(c, max_side)
    # every image is checked before any work; each is held as float only while it is scored (a
    # folder of 100 2K photographs is 3.3 GB as float32, 0.8 GB as the 8-bit codes it was read as)
    sizes = [_float_rgb(name, im).shape[:2] for name, im in images]
    deg = c.lr_degradation()
    t_hr, t_lr = c.hr_size, c.lr_size
    tiled = variant_models(model) if ablations else {"model": model}
    prune = effective_prune(c.patch_nums, prune)  # export's rule: every ratio leaves a token out
    if prune:
        pruned = copy.copy(model)                 # the same weights; only the rollout's setting differs
        pruned.prune = tuple(prune)
        tiled["pruned"] = pruned
    # upscale's own batch: a batch's size changes the last bit of some convolutions, so this is what
    # `upscale` returns to the bit (and small batches run faster on a CPU than 16)
    engines = {k: TorchEngine.from_model(m) for k, m in tiled.items() if m is not None}
    n_tiles = 0
    ov = default_overlap(t_lr) if overlap is None else overlap
    # scored on whole HR tiles (the VQ ceiling's grid): smaller images are skipped and named
    small = {i for i, hw in enumerate(sizes) if min(hw) < t_hr}
    skipped = [images[i][0] for i in sorted(small)]
    if len(small) == len(images):
        raise InputError(f"no image is at least {t_hr}x{t_hr} px, the model's HR tile "
                         f"({', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}); use larger images")
    scored = {i: _scored_size(hw, max_side, t_hr) for i, hw in enumerate(sizes) if i not in small}
    total = sum(H // t_hr * (W // t_hr) for H, W in scored.values())
    if max_side is None and total > MANY_TILES:
        say(_many_tiles_hint(c, name, total, len(scored)))
    scores: list[ImageScore] = []
    for k, (i, (H, W)) in enumerate(scored.items(), 1):
        image_name, image = images[i]
        say(f"{image_name} ({k}/{len(scored)}): {W}x{H} px, {H // t_hr * (W // t_hr)} tiles")
        hr, lr, image_draw = scored_pair(c, image_name, _float_rgb(image_name, image), seed, max_side)
        hr_t = torch.from_numpy(hr).permute(2, 0, 1)
        lr_t = torch.from_numpy(lr).permute(2, 0, 1)
        lr_tiles, hr_tiles = _tiles(lr_t, t_lr), _tiles(hr_t, t_hr)
        n_tiles += lr_tiles.shape[0]
        # what users get: overlapping tiles, blended (runtimes/tiling.py); every variant alike
        recon = {k: e.upscale(lr, overlap=ov) for k, e in engines.items()}
        recon["vq_ceiling"] = _untile(vq_reconstruct(model, lr_tiles, hr_tiles), H, W).permute(1, 2, 0).numpy()
        recon["bicubic"] = bicubic_upscale(lr, c.scale)
        ref = hr.transpose(2, 0, 1)                       # the metrics take (3, H, W)
        psnr = {k: psnr_y(ref, v.transpose(2, 0, 1), border=c.scale) for k, v in recon.items()}
        if prune:
            psnr["pruned_vs_model"] = psnr_y(recon["model"].transpose(2, 0, 1), recon["pruned"].transpose(2, 0, 1),
                                             border=c.scale)
        ys, xs = tile_starts(lr.shape[0], t_lr, ov), tile_starts(lr.shape[1], t_lr, ov)
        # over the bicubic's figure, an untiled upscale of the same LR: its content on the borders is
        # the model's, so what is left is what tiling adds. The HR's figure, the earlier reference,
        # holds detail the LR lost: on 32 px LR crops it took an untiled bicubic from 0.2 to 3.8.
        # compare's reference, made the same way (Pillow's kernel, not the baseline's above)
        seams = seam_ratio(recon["model"], ys, xs, t_lr, c.scale,
                           reference=bicubic_seam_figure(lr, ys, xs, t_lr, c.scale))
        scores.append(ImageScore(
            image_name, (W, H), psnr,
            {k: ssim_y(ref, v.transpose(2, 0, 1), border=c.scale) for k, v in recon.items()}, seams,
            image_draw, (sizes[i][1], sizes[i][0])))
    kinds = [k for k in KINDS if k in scores[0].psnr]
    averaged, left_out = _averaged(scores)
    return {
        "images": [s.__dict__ for s in scores],
        "mean_psnr_y": {k: float(np.mean([s.psnr[k] for s in averaged])) for k in kinds},
        "mean_ssim_y": {k: float(np.mean([s.ssim[k] for s in averaged])) for k in kinds if k in scores[0].ssim},
        "left_out_of_means": left_out,      # identical to the HR in some column: `_averaged`
        "prune": list(prune),
        "overlap": ov,
        # gradient energy across the tile borders over the interior's at the same phase, for the
        # model's SR relative to the bicubic's at the same borders: 1.0 means tiling leaves no trace
        "mean_seam_ratio_vs_bicubic": float(np.mean([s.seam_ratio_vs_bicubic for s in scores])),
        "tiles": n_tiles,                  # whole HR tiles of the crops (the VQ ceiling's grid)
        "skipped_smaller_than_tile": skipped,
        "seed": seed,
        "degradation": deg.to_dict(),
    }


def _averaged(scores: list[ImageScore]) -> tuple[list[ImageScore], list[str]]:
    """The images the means are taken over, and the names of those left out: an image that some
    column reproduces exactly (a flat LR's bicubic is the flat HR) has an infinite PSNR there, which
    made that column's mean infinite and hid every other image. Such an image is left out of every
    column's means alike, so the columns stay compared on the same images; where every image is
    such, none is left out (the infinite mean is then the truth). `pruned_vs_model` compares two
    outputs, not an output with the HR: it leaves nothing out."""
    exact = [s for s in scores if any(math.isinf(v) for k, v in s.psnr.items() if k != "pruned_vs_model")]
    if len(exact) == len(scores):
        return scores, []
    return [s for s in scores if s not in exact], [s.name for s in exact]


def ablation_report(result: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    """`evaluate(..., ablations=True)` as {"variants": {name: {"psnr_y", "ssim_y"}}, metadata}.

    A variant the model cannot have (sca_off without SCA) is "n/a" in both fields.
    """
    m, ss = result["mean_psnr_y"], result["mean_ssim_y"]
    variants = {k: {"psnr_y": m[k], "ssim_y": ss[k]} if k in m
                else {"psnr_y": NOT_APPLICABLE, "ssim_y": NOT_APPLICABLE} for k in VARIANTS}
    if "pruned" in m:
        variants["pruned"] = {"psnr_y": m["pruned"], "ssim_y": ss["pruned"],
                              "psnr_y_vs_model": m["pruned_vs_model"], "prune": result["prune"]}
    return {"variants": variants, "checkpoint": checkpoint,
            "images": [{"name": s["name"], "size": s["size"]} for s in result["images"]],
            "tiles": result["tiles"], "overlap": result["overlap"],
            # a bare --json prints no text: without this, an image left out would go unmentioned
            "skipped_smaller_than_tile": result["skipped_smaller_than_tile"],
            "skipped_unreadable": result.get("skipped_unreadable", []),     # set by `eval --images`
            "left_out_of_means": result["left_out_of_means"],
            "tiling": "every tiled variant through the same overlapping, blended tiles as upscale",
            "seed": result["seed"], "degradation": result["degradation"],
            "per_image": result["images"]}


def scored_model(model: AlignVAR, checkpoint: str) -> dict[str, Any]:
    """The `model` of eval's JSON: the checkpoint as typed, where its weights were loaded from (its
    path, or `(bundled)`) and their state-dict hash, as a bench report names its reference."""
    from alignvar_edge.bench.schema import reference_model_block
    from alignvar_edge.model.checkpoint import checkpoint_source
    return reference_model_block(model, checkpoint, checkpoint_source(checkpoint, hashed=False).describe())


def format_eval(result: dict[str, Any]) -> str:
    kinds = [k for k in KINDS if k in result["mean_ssim_y"]]
    images = result["images"]
    names = [line_text(s["name"]) for s in images]      # one row each, whatever a name holds
    # the columns fit the longest name and size, so a long file name does not push its row out of line
    nw = max([12, *(len(n) for n in names)]) + 2
    ww = max([5, *(len(str(s["size"][0])) for s in images)])
    hw = max([4, *(len(str(s["size"][1])) for s in images)])
    lines = [f"{'image':<{nw}}{'size':>{ww + 1 + hw}}  " + "".join(f"{k:>14}" for k in kinds)
             + "   (PSNR-Y dB / SSIM-Y)"]
    for s, name in zip(images, names):
        cells = "".join(f"{s['psnr'][k]:>8.2f}/{s['ssim'][k]:.3f}" for k in kinds)
        whole = tuple(s["source_size"])
        of = "" if whole == tuple(s["size"]) else f"   (the centre of {whole[0]}x{whole[1]})"
        lines.append(f"{name:<{nw}}{s['size'][0]:>{ww}}x{s['size'][1]:<{hw}}  {cells}{of}")
    m, ss = result["mean_psnr_y"], result["mean_ssim_y"]
    lines.append(f"{'mean':<{nw}}{'':>{ww + 1 + hw}}  " + "".join(f"{m[k]:>8.2f}/{ss[k]:.3f}" for k in kinds))
    left_out = result.get("left_out_of_means") or []
    if left_out:
        lines.append(f"the means leave out {len(left_out)} of {len(images)} image(s) that a column reproduces "
                     f"exactly (infinite PSNR-Y): {', '.join(map(line_text, left_out))}")
    if "pruned_vs_model" in m:
        lines.append(f"pruned {result['prune']} vs the unpruned model: {m['pruned_vs_model']:.2f} dB PSNR-Y")
    lines.append(f"tiled variants: overlapping tiles blended as upscale does, overlap {result['overlap']} LR px; "
                 f"seams (border/interior gradient energy, model over bicubic; 1 = none) "
                 f"{result['mean_seam_ratio_vs_bicubic']:.3f}")
    skipped = result.get("skipped_smaller_than_tile") or []
    if skipped:
        lines.append(f"skipped {len(skipped)} image(s) smaller than the HR tile: {', '.join(map(line_text, skipped))}")
    return "\n".join(lines)
