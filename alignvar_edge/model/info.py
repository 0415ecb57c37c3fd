"""Static facts about a model: schedule, sequence length, parameters and FLOPs per tile."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from alignvar_edge.model.alignvar import AlignVAR
from alignvar_edge.model.config import PRESETS, AlignVARConfig
from alignvar_edge.model.rollout import ModelStages, run


def meta_model(config: AlignVARConfig) -> AlignVAR:
    """The network with shapes only (no memory, no init cost): for counting, not running."""
    with torch.device("meta"):
        model = AlignVAR(config)
    return model.to("meta").eval()


def stage_flops(config: AlignVARConfig, prune: Sequence[float] = ()) -> dict[str, int]:
    """FLOPs per stage of one tile's rollout (batch 1): `conditioning` (LR embedding, guidance,
    prefix), `scale_k` for each scale, `decoder`; counted by PyTorch's FlopCounterMode on a meta
    model. Matmuls and convolutions only (2 FLOPs per multiply-add); elementwise ops are not counted.
    With `prune` ratios (an export's `extra.prune`) the pruned rollout is counted: a pruned scale
    forwards only its budget of tokens, which attend to fewer keys.
    """
    meta = meta_model(config)
    meta.prune = tuple(prune)
    c = config
    lr = torch.empty(1, 3, c.lr_size, c.lr_size, device="meta")
    out: dict[str, int] = {}

    @contextlib.contextmanager
    def counted(stage: str) -> Iterator[None]:
        with FlopCounterMode(display=False) as fc:
            yield
        out[stage] = int(fc.get_total_flops())

    with torch.no_grad():
        run(ModelStages(meta), lr, around=counted)
    return out


def flop_groups(stages: dict[str, int]) -> dict[str, int]:
    """`stage_flops` grouped: conditioning, all scales, decoder and the total."""
    out = {"conditioning": stages["conditioning"],
           "scales": sum(v for k, v in stages.items() if k.startswith("scale_")),
           "decoder": stages["decoder"]}
    out["total"] = sum(out.values())
    return out


def flops_per_tile(model: AlignVAR) -> dict[str, int]:
    """FLOPs of one tile's whole rollout: conditioning, all scales, decoder and the total."""
    return flop_groups(stage_flops(model.config))


def model_info(model: AlignVAR, with_flops: bool = True, name: str | None = None) -> dict[str, Any]:
    """What `info` shows: `name` is the model as the user named it (a bundled name or a checkpoint
    path, as export and deploy record it), `config_name` the name its config carries, and `preset`
    that name where it is a preset (`info --preset` takes it), else None: an import's 'varsr-import'
    or a Python-made 'custom' config is no preset."""
    c = model.config
    info: dict[str, Any] = {
        "name": name or c.name,
        "config_name": c.name,
        "preset": c.name if c.name in PRESETS else None,
        "tile": {"lr": c.lr_size, "hr": c.hr_size, "scale": c.scale},
        "patch_nums": list(c.patch_nums),
        "latent": {"P": c.latent_size, "downsample": c.vq_downsample, "cvae": c.vq_cvae, "vocab": c.vq_vocab},
        "sequence": {"prefix": c.prefix_len, "tokens": c.tokens_len, "total": c.seq_len},
        "transformer": {"depth": c.depth, "width": c.width, "heads": c.heads, "sca": c.sca, "cfg": c.cfg},
        "conditioning": {"lr_encoder": c.lr_encoder, "lr_encoder_channels": list(c.lr_encoder_channels),
                         "prefix": c.prefix, "rope": c.rope, "rope_base": c.rope_base},
        # VARSR's diffusion refiner on the last scale (None: the model has none)
        "refiner": {"width": c.refiner_width, "depth": c.refiner_depth, "steps": c.refiner_steps}
                   if c.has_refiner else None,
        "color_fix": c.color_fix,           # what `upscale` adds by default
        "residual_to_bicubic": c.residual_to_bicubic,
        "parameters": model.parameter_report(),
    }
    if with_flops:
        info["flops_per_tile"] = flops_per_tile(model)
    return info


# what each LR encoder and RoPE layout is (config.py's switches), in the words `info` prints
_LR_ENCODERS = {"strided": "strided convs on the LR tile",
                "controlnet": "VARSR's ControlNet conv stack on the LR resized to the output size (Pillow bicubic)"}
_ROPES = {"scale": "2-D, scale-aligned centre positions", "varsr": "VARSR's 2-D grid", "none": "none"}


def _architecture_lines(info: dict[str, Any]) -> list[str]:
    """The LR encoder, RoPE, refiner and colour fix lines of `format_info`."""
    cond = info["conditioning"]
    widths = f" (widths {', '.join(map(str, cond['lr_encoder_channels']))})" if cond["lr_encoder_channels"] else ""
    rope = _ROPES[cond["rope"]] + (f", base {cond['rope_base']:g}" if cond["rope"] != "none" else "")
    ref = info["refiner"]
    return [f"LR encoder    {cond['lr_encoder']}: {_LR_ENCODERS[cond['lr_encoder']]}{widths}; prefix {cond['prefix']}",
            f"RoPE          {cond['rope']}: {rope}",
            "refiner       " + (f"on: diffusion MLP (width {ref['width']}, depth {ref['depth']}) adds a residual at the "
                                f"last scale in {ref['steps']} sampling steps (`export --no-refine` leaves it out)"
                                if ref else "none"),
            "colour fix    " + ("on by default: `upscale` matches each SR image's colour to the LR's "
                                "(`--no-color-fix` turns it off)" if info["color_fix"] else "none")]


def format_info(info: dict[str, Any]) -> str:
    config_name = info.get("config_name", info["name"])
    preset = ("" if config_name == info["name"] else f" (preset {config_name})" if info.get("preset") else
              f" (config '{config_name}', not a preset)")
    lines = [f"model         {info['name']}{preset}",
             f"tile          LR {info['tile']['lr']} px -> SR {info['tile']['hr']} px (x{info['tile']['scale']})",
             f"scales        {info['patch_nums']}  (latent {info['latent']['P']}x{info['latent']['P']}, "
             f"/{info['latent']['downsample']}, V={info['latent']['vocab']}, Cvae={info['latent']['cvae']})",
             f"sequence      {info['sequence']['total']} = prefix {info['sequence']['prefix']} + tokens "
             f"{info['sequence']['tokens']}",
             "transformer   depth {depth}, width {width}, heads {heads}, SCA {sca}, cfg {cfg}".format(
                 **info["transformer"]),
             *_architecture_lines(info),
             "parameters"]
    for k, v in info["parameters"].items():
        lines.append(f"  {k:<20}{v:>16,}")
    if "flops_per_tile" in info:
        lines.append("FLOPs per tile (matmul + conv, batch 1)")
        for k, v in info["flops_per_tile"].items():
            lines.append(f"  {k:<20}{v / 1e9:>13.3f} G")
    return "\n".join(lines)
