"""CLI verbs of the model area: `info`, `demo` and `import`."""
from __future__ import annotations

import argparse
from pathlib import Path

from alignvar_edge.argtypes import int_at_least, nonneg_float
from alignvar_edge.cli_json import add_json_option, no_stale_result
from alignvar_edge.errors import InputError
from alignvar_edge.model.bundled import CHECKPOINT_HELP, DEFAULT_CHECKPOINT
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.progress import stage


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("info", help="model config, scale schedule, parameters and FLOPs per tile",
                       description="Show a model's config, scale schedule, sequence length, parameter "
                                   "counts per component and FLOPs per tile.")
    p.add_argument("checkpoint", nargs="?", help=CHECKPOINT_HELP)
    p.add_argument("--preset", help="describe a preset instead (random weights are never allocated)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    add_json_option(p, "the model summary")
    p.set_defaults(func=run_info)

    d = sub.add_parser("demo", help="super-resolve a bundled sample photograph with the bundled model",
                       description="Degrade a held-out sample photograph, upscale it x4 with the bundled "
                                   "model and compare with bicubic (PSNR-Y / SSIM-Y).")
    d.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    d.add_argument("--image", default="coffee", help="held-out sample: astronaut, coffee or rocket (default %(default)s)")
    d.add_argument("--size", type=int, default=256, help="HR crop side in pixels (default 256)")
    d.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=f"the model that upscales it: {CHECKPOINT_HELP}")
    d.add_argument("--force", action="store_true", help="replace files in --out")
    d.set_defaults(func=run_demo_cmd, stdout_is_a_summary=True)

    i = sub.add_parser("import", help="convert an upstream VARSR or VAR checkpoint into a checkpoint directory",
                       description="Read VARSR's or VAR's .pth files as upstream saves them (no code in them is "
                                   "run), infer the network's sizes from the tensors' shapes, and write "
                                   "config.json + model.safetensors that every other verb accepts.")
    i.add_argument("kind", choices=("varsr", "var"), help="which upstream layout the files have")
    i.add_argument("--var", type=Path, help="transformer checkpoint (VARSR: required; VAR: optional)")
    i.add_argument("--vae", type=Path, required=True, help="VQ-VAE checkpoint")
    i.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    i.add_argument("--patch-nums", type=_patch_nums, help="scale schedule, e.g. 1,2,3,4,6,9,13,18,24,32, "
                                                           "when the files do not tell it")
    # None: not given, so that `import var` (no refiner) refuses it even at VARSR's value
    i.add_argument("--refiner-steps", type=int_at_least(1),
                   help=f"varsr only: its diffusion refiner's sampling steps (default {AlignVARConfig.refiner_steps}, "
                        "as VARSR samples)")
    i.add_argument("--cfg", type=nonneg_float, help="image CFG weight at the last scale (VARSR's test script: 6.0)")
    i.add_argument("--force", action="store_true", help="replace an existing checkpoint directory")
    i.set_defaults(func=run_import, stdout_is_a_summary=True)


def _patch_nums(text: str) -> tuple[int, ...]:
    try:
        pns = tuple(int(p) for p in text.replace("_", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--patch-nums takes comma-separated integers, got {text!r}") from None
    if not pns or list(pns) != sorted(set(pns)) or pns[0] < 1:
        raise argparse.ArgumentTypeError(f"--patch-nums must be strictly increasing positive integers, got {text!r}")
    return pns


# the config fields import's flags set, by flag: a value the config refuses is named by its flag
IMPORT_FLAGS = {"refiner_steps": "--refiner-steps", "cfg": "--cfg"}


def run_import(args: argparse.Namespace) -> int:
    from alignvar_edge.model.checkpoint import LoadReport, check_checkpoint_out, save_pretrained
    from alignvar_edge.model.config import named_by_flags
    from alignvar_edge.model.upstream import CONSTANT_BUFFERS, import_var, import_varsr, refuse_unfit

    out: Path = args.out
    if args.kind == "var" and args.refiner_steps is not None:
        raise InputError("--refiner-steps applies to `import varsr` only: VAR has no refiner; drop --refiner-steps")
    check_checkpoint_out(out, args.force, "--force")        # before the (long) read of the files
    overrides = {"refiner_steps": args.refiner_steps} if args.refiner_steps is not None else {}
    if args.cfg is not None:
        overrides["cfg"] = args.cfg
    if args.kind == "varsr" and args.var is None:
        raise InputError("import varsr needs --var (the transformer checkpoint) as well as --vae")
    with stage(f"reading the upstream {args.kind} checkpoint"), named_by_flags(overrides, IMPORT_FLAGS):
        if args.kind == "varsr":
            model, report = import_varsr(args.var, args.vae, args.patch_nums, **overrides)
        else:
            model, report = import_var(args.var, args.vae, args.patch_nums, **overrides)
    refuse_unfit(report, args.kind, args.var, args.vae)
    source = {"kind": args.kind, "var": str(args.var.resolve()) if args.var else None, "vae": str(args.vae.resolve())}
    with stage(f"writing {out}"):
        save_pretrained(model, out, extra={"imported_from": source}, overwrite=True)
    c = model.config
    constants = [n for n in report.dropped if CONSTANT_BUFFERS.match(n)]
    print(f"imported {args.kind}: depth {c.depth}, width {c.width}, heads {c.heads}, "
          f"{c.num_scales} scales {list(c.patch_nums)}, {c.hr_size} px; "
          f"{len(report.missing)} missing, {len(report.unexpected)} unexpected, "
          f"{len(report.mismatched)} mismatched, {len(constants)} constant buffers dropped")
    if report.missing:
        print("not in the upstream files (left at initialisation, fine-tune before use): "
              f"{LoadReport(missing=report.missing).summary()}")
    for name in report.dropped:
        if name not in constants:
            print(f"trained in the upstream file but not imported (no counterpart here): {name}")
    print(f"wrote {out}")
    return 0


def run_demo_cmd(args: argparse.Namespace) -> int:
    from alignvar_edge.demo import format_demo, run_demo

    result = run_demo(args.out, args.image, args.size, args.force, args.checkpoint)
    print(format_demo(result, args.out))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.model.checkpoint import chosen_checkpoint
    from alignvar_edge.model.config import AlignVARConfig
    from alignvar_edge.model.info import format_info, meta_model, model_info

    with no_stale_result(args.json, {"info": str(args.preset or args.checkpoint or DEFAULT_CHECKPOINT)}) as result:
        checkpoint = chosen_checkpoint(args.checkpoint, args.preset)
        if args.preset:         # its shapes alone: no weights are drawn
            model = meta_model(AlignVARConfig.from_preset(args.preset))
        else:
            model = load_pretrained(checkpoint)
        info = model_info(model, with_flops=not args.no_flops, name=None if args.preset else checkpoint)
        result.emit(info, format_info(info))
    return 0
