"""CLI verbs of the model area: `info` and `demo`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignvar_edge.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("info", help="model config, scale schedule, parameters and FLOPs per tile",
                       description="Show a model's config, scale schedule, sequence length, parameter "
                                   "counts per component and FLOPs per tile.")
    p.add_argument("checkpoint", nargs="?", help="checkpoint directory or bundled name (default: alignvar-tiny)")
    p.add_argument("--preset", help="describe a preset instead (random weights are never allocated)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)

    d = sub.add_parser("demo", help="super-resolve a bundled sample photograph with the bundled model",
                       description="Degrade a held-out sample photograph, upscale it x4 with the bundled "
                                   "model and compare with bicubic (PSNR-Y / SSIM-Y).")
    d.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    d.add_argument("--image", default="coffee", help="held-out sample: astronaut, coffee or rocket")
    d.add_argument("--size", type=int, default=256, help="HR crop side in pixels (default 256)")
    d.add_argument("--checkpoint", default="alignvar-tiny")
    d.add_argument("--force", action="store_true", help="replace files in --out")
    d.set_defaults(func=run_demo_cmd)


def run_demo_cmd(args: argparse.Namespace) -> int:
    from alignvar_edge.demo import format_demo, run_demo

    result = run_demo(args.out, args.image, args.size, args.force, args.checkpoint)
    print(format_demo(result, args.out))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from alignvar_edge.model.checkpoint import load_pretrained
    from alignvar_edge.model.config import AlignVARConfig
    from alignvar_edge.model.info import format_info, meta_model, model_info

    if args.preset and args.checkpoint:
        raise InputError("give either a checkpoint or --preset, not both")
    if args.preset:
        model = meta_model(AlignVARConfig.from_preset(args.preset))
    else:
        model = load_pretrained(args.checkpoint or "alignvar-tiny")
    info = model_info(model, with_flops=not args.no_flops)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
