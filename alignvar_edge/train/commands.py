"""CLI verbs of the training area: `train` and `eval`."""
from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any

from alignvar_edge import safe_stop
from alignvar_edge.argtypes import (DEFAULT_MAX_MEGAPIXELS, nonneg_float, nonneg_int, positive_float, positive_int,
                                 random_seed)
from alignvar_edge.caller import option
from alignvar_edge.cli_json import add_json_option, no_stale_result
from alignvar_edge.errors import InputError, out_of_memory
from alignvar_edge.fsmodes import not_a_folder
from alignvar_edge.model.bundled import CHECKPOINT_HELP, DEFAULT_CHECKPOINT
from alignvar_edge.progress import note, stage


# what `train STAGE --help` says the stage does
STAGE_DESCRIPTIONS = {
    "vqvae": "Train the VQ-VAE stage (the tokenizer and decoder): a new model of --preset (default tiny), or "
             "the checkpoint --init names. The loss flags of the transformer stage given here go into the "
             "model's config, for the transformer stage that starts from this run.",
    "transformer": "Train the transformer on the frozen tokens of a VQ-VAE run (--init RUN/final), with "
                   "per-scale cross-entropy + HCC, and SCA on.",
    "decoder": "Fine-tune the VQ decoder on the latents the trained transformer (--init RUN/final) builds, "
               "or on a zero latent (--latent zero: the equal-budget control).",
    "joint": "Train the transformer and the decoder together on the L1 of the image the model's own greedy "
             "rollout decodes to (--init RUN/final).",
}
# what the loss flags default to: the trained model's own config
_CONFIG_DEFAULT = "default: the model config's, --init's or --preset's"
# flags only some stages take (the others refuse them): `train STAGE --help` lists them only there
STAGE_FLAGS = {"--preset": ("vqvae",), "--latent": ("decoder",),
               **{f: ("vqvae", "transformer") for f in ("--hcc-weight", "--hcc-rollout", "--hcc-tau", "--cfg-negative")}}


class _StageHelp(argparse.Action):
    """-h/--help after a stage (`train decoder --help`): that stage's description and only the flags
    it takes; before one, every flag."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        stage = getattr(namespace, "stage", None)
        if stage in STAGE_DESCRIPTIONS:
            parser.description = STAGE_DESCRIPTIONS[stage]
            for action in parser._actions:
                if any(stage not in STAGE_FLAGS.get(flag, (stage,)) for flag in action.option_strings):
                    action.help = argparse.SUPPRESS
        parser.print_help()
        parser.exit()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train", help="train the VQ-VAE, the transformer, the decoder or the joint stage (CPU or CUDA)",
                       add_help=False,
                       description="Train one stage. The VQ-VAE stage first; then the transformer on "
                                   "its frozen tokens (--init RUN/final), with CE + HCC and SCA on; then, "
                                   "optionally, the VQ decoder on the latents the trained transformer "
                                   "builds, or (joint) the transformer and the decoder together on the "
                                   "L1 of the image its own greedy rollout decodes to (--init RUN/final). "
                                   "`train STAGE --help` lists the flags of one stage.")
    p.add_argument("-h", "--help", action=_StageHelp, help="show this help (after STAGE: that stage's) and exit")
    p.add_argument("stage", choices=tuple(STAGE_DESCRIPTIONS),
                   help="the stage to train, in this order: vqvae, transformer, then decoder or joint")
    p.add_argument("--preset", help="model preset for a new VQ-VAE run (default: tiny); with --init the "
                                    "checkpoint's own config is trained")
    p.add_argument("--init", help="checkpoint to start from (required for every stage after vqvae)")
    p.add_argument("--images", help="folder of training images (default: the built-in sample photographs)")
    p.add_argument("--max-megapixels", type=positive_float, default=DEFAULT_MAX_MEGAPIXELS,
                   help=f"skip larger files in --images (default {DEFAULT_MAX_MEGAPIXELS:g}; every image is held in "
                        "memory for the run, 3 bytes a pixel for 8-bit files)")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--steps", required=True, type=positive_int,
                   help="optimizer steps of the whole run (the learning-rate schedule spans them)")
    p.add_argument("--batch", type=positive_int, default=12, help="training crops per step (default %(default)s)")
    p.add_argument("--lr", type=positive_float, default=1e-3,
                   help="peak learning rate, reached after --warmup, then cosine decay (default %(default)g)")
    p.add_argument("--warmup", type=nonneg_int, default=100, help="learning-rate warm-up steps (default 100)")
    p.add_argument("--seed", type=random_seed, default=0,
                   help="seed of the run's random draws: initialisation, crops, degradations (default %(default)s)")
    p.add_argument("--hcc-weight", type=nonneg_float,
                   help=f"HCC weight lambda (0 turns HCC off; {_CONFIG_DEFAULT})")
    p.add_argument("--no-sca", action="store_true", help="train without SCA (ablation)")
    p.add_argument("--hcc-rollout", choices=("teacher", "gumbel"),
                   help="HCC on teacher-forced predictions or on a free-running Gumbel rollout (docs/model.md; "
                        f"{_CONFIG_DEFAULT})")
    p.add_argument("--hcc-tau", type=positive_float,
                   help=f"Gumbel-softmax temperature of --hcc-rollout gumbel ({_CONFIG_DEFAULT})")
    p.add_argument("--cfg-negative", choices=("dropout", "degraded"),
                   help="image CFG's negative label: random condition dropout, or trained on degraded images "
                        f"({_CONFIG_DEFAULT})")
    p.add_argument("--latent", choices=("model", "zero"),
                   help="decoder stage: decode the transformer's own latent (default), or a zero latent "
                        "(the equal-budget control that says what the tokens are worth)")
    p.add_argument("--save-every", type=positive_int, default=200,
                   help="steps between saves of the resumable state and RUN/latest, the EMA weights as a "
                        "checkpoint that eval reads while the run trains (default 200)")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda or cuda:N (default auto: CUDA where this torch has it, else the CPU)")
    p.add_argument("--workers", type=nonneg_int, default=0,
                   help="threads that prepare the next batches while the device trains (default %(default)s: the "
                        "training thread makes them; a GPU wants 4-8)")
    p.add_argument("--max-minutes", type=positive_float,
                   help="stop after the step that passes this much wall time, saving the run (--resume goes on; "
                        "the learning-rate schedule still follows --steps)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    # an interrupt before train() starts (importing torch takes a while) has touched nothing
    p.set_defaults(func=run_train, stdout_is_a_summary=True, on_interrupt="--out is as it was before; run the same command again",
                   memory_advice=lambda: (f"train with a smaller {option('batch')}, fewer {option('workers')} or a "
                                          f"smaller {option('max_megapixels')} (every image is held in memory)"))

    e = sub.add_parser("eval", help="PSNR-Y / SSIM-Y of a checkpoint vs bicubic and the VQ ceiling",
                       description="Evaluate on held-out photographs: the model, bicubic and the VQ-VAE's "
                                   "own reconstruction (the token ceiling), PSNR-Y and SSIM-Y.")
    e.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT, help=CHECKPOINT_HELP)
    e.add_argument("--images", default="builtin",
                   help="folder of HR images, or 'builtin' (the held-out samples; the default)")
    e.add_argument("--seed", type=random_seed, default=0,
                   help="draws each photograph's degradation, with its name (default %(default)s)")
    e.add_argument("--max-side", type=positive_int,
                   help="score at most this many HR pixels per side of each photograph's centre, in whole HR tiles "
                        "(default: the whole photograph; compare's --max-size counts LR pixels)")
    e.add_argument("--max-megapixels", type=positive_float,
                   help=f"skip larger files in --images (default {DEFAULT_MAX_MEGAPIXELS:g}; each is read whole before "
                        "--max-side crops it)")
    e.add_argument("--ablations", action="store_true",
                   help="also score tokens_off (decoder on a zero latent) and sca_off (alpha = 0) on the "
                        "same tiles; --json then gives {\"variants\": {...}, ...}")
    e.add_argument("--prune", metavar="R[,R...]", default="",
                   help="also run the model with token pruning (the share of tokens each of the last "
                        "scales leaves out, finest last, e.g. 0.5,0.75) and score it against the HR "
                        "and against the unpruned output")
    e.add_argument("--overlap", type=nonneg_int,
                   help="tile overlap in LR pixels for every tiled variant (default: a quarter tile, "
                        "as upscale); fewer overlapping tiles make whole images faster")
    add_json_option(e, "the results")
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from alignvar_edge.model.checkpoint import TRAINING_FILE
    from alignvar_edge.train.trainer import TrainOptions, out_taken, train

    if args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    if args.resume and args.force:
        raise InputError("--resume continues the run in --out, --force replaces it: pass one of them")
    if args.latent is not None and args.stage != "decoder":
        raise InputError(f"--latent chooses what the decoder stage decodes; the {args.stage} stage has no such "
                         "choice: drop --latent, or train the decoder stage")
    transformer_only = [f for f, v in (("--hcc-weight", args.hcc_weight), ("--hcc-rollout", args.hcc_rollout),
                                       ("--hcc-tau", args.hcc_tau), ("--cfg-negative", args.cfg_negative))
                        if v is not None]
    if transformer_only and args.stage in ("decoder", "joint"):
        # the stage's loss has no HCC and no CFG negatives: the flags would only be copied into its config
        raise InputError(f"{', '.join(transformer_only)} shape the transformer stage's loss; the {args.stage} stage "
                         f"does not use them: drop {', '.join(transformer_only)}, or train the transformer stage")
    if args.preset is not None and args.init:
        # the model (and so its preset) comes from --init: a preset given too would be silently ignored
        raise InputError(f"--preset {args.preset} with --init {args.init}: the run trains the checkpoint's own "
                         "config; drop --preset (a preset is chosen when the VQ-VAE stage starts without --init)")
    overrides = {k: v for k, v in (("hcc_rollout", args.hcc_rollout), ("hcc_tau", args.hcc_tau),
                                   ("cfg_negative", args.cfg_negative)) if v is not None}
    opts = TrainOptions(stage=args.stage, out=args.out, steps=args.steps, preset=args.preset or "tiny", init=args.init,
                        images=args.images, batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed,
                        hcc_weight=args.hcc_weight, sca=False if args.no_sca else None,
                        save_every=args.save_every, resume=args.resume, force=args.force, overrides=overrides,
                        decoder_latent=args.latent or "model", device=args.device, workers=args.workers,
                        max_minutes=args.max_minutes,
                        max_megapixels=args.max_megapixels)
    replacing = args.force and out_taken(args.out)
    try:
        final = train(opts)
    except KeyboardInterrupt:
        args.on_interrupt = _after_interrupt(args.out, replacing, args.resume)
        raise
    except Exception as e:
        args.on_failure = _after_failure(args.out, replacing, args.resume,     # said after a full disk's line
                                         memory=out_of_memory(e) is not None)
        raise
    made = json.loads((final / TRAINING_FILE).read_text())
    # a run that replaces another stops at once on a signal (train() puts the old run back), so a
    # signal seen here is an earlier run's in this process
    signum = None if replacing else safe_stop.asked()
    if made["steps"] < args.steps:
        why = "--max-minutes" if signum is None else signal.Signals(signum).name
        print(f"stopped by {why} at step {made['steps']} of {args.steps}: {final} holds that point; "
              "continue with the same command and --resume" + (" instead of --force" if args.force else ""))
    else:
        print(f"done: {final} (loss curve: {args.out / 'log.csv'})")
    # asked to stop, even where the last step then finished the run: a calling script stops too
    return 0 if signum is None else 128 + signum


# train() puts back the run a --force run was replacing, whatever stopped the new one
_PUT_BACK = "the run --force was replacing is back in --out as it was"


def _after_failure(out: Path, replacing: bool, resume: bool, memory: bool = False) -> str | None:
    """What a `train` the system failed (a full disk, out of memory) kept in --out, and the command
    that goes on from there; None where it kept nothing (the same command starts over). `memory`:
    it ran out of memory, and --batch and --max-megapixels are part of the run (--resume refuses
    them changed): only fewer --workers goes on from the saved step."""
    from alignvar_edge.train.state import saved_step

    if replacing:
        return f"{_PUT_BACK}; once that is fixed, the same command starts the new run over"
    step = saved_step(out)
    if step is None:
        return None
    if memory:
        return (f"step {step} is saved in {option('out')}: continue it with the same command"
                + ("" if resume else f", {option('resume')}") + f" and fewer {option('workers')}; a smaller "
                f"{option('batch')} or {option('max_megapixels')} starts a new run")
    return (f"step {step} is saved in {option('out')}: once that is fixed, continue with the same command"
            + ("" if resume else f" and {option('resume')}"))


def _after_interrupt(out: Path, replacing: bool, resume: bool) -> str:
    """What an interrupted `train` left in --out, and the command that goes on from there."""
    from alignvar_edge.train.state import has_state

    if replacing:
        return f"{_PUT_BACK}; the same command starts the new run over"
    if has_state(out):
        return "what the run has saved is kept in --out; continue with the same command" + ("" if resume else
                                                                                            " and --resume")
    return "the run had saved no training state yet, so --out is as it was before; run the same command again"


def load_eval_images(spec: str, max_megapixels: float | None = None
                     ) -> tuple[list[tuple[str, object]], list[tuple[str, str]]]:
    """The HR photographs of `--images`, and the (name, reason) of each file that cannot be read:
    those are skipped with one warning naming them (`image_folder.usable_images`, the rule of every
    folder run)."""
    from alignvar_edge.images.folders import usable_images
    from alignvar_edge.samples import sample_images

    if spec == "builtin":
        return list(sample_images("heldout")), []
    if (why := not_a_folder(spec)) is not None:
        raise InputError(f"--images {spec} {why}; pass a folder of PNG/JPEG files or 'builtin'")
    images, unreadable = usable_images(spec, "--images", max_megapixels=max_megapixels or DEFAULT_MAX_MEGAPIXELS)
    return list(images), unreadable


def run_eval(args: argparse.Namespace) -> int:
    with no_stale_result(args.json, {"eval": str(args.checkpoint)}) as result:
        payload, text = _evaluated(args)
        result.emit(payload, text)
    return 0


def _evaluated(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The eval verb's result and its text."""
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.bench.evaluate import ablation_report, check_max_side, evaluate, format_eval, scored_model
    from alignvar_edge.images.folders import check_megapixels_flag
    from alignvar_edge.model.checkpoint import load_config, resolve_checkpoint_dir, training_lineage
    from alignvar_edge.model.pruning import parse_prune
    from alignvar_edge.runtimes.tiling import check_overlap_flag
    from alignvar_edge.runtimes.torch_backend import torch_record

    prune = parse_prune(args.prune)
    check_megapixels_flag(args.images, args.max_megapixels)
    config = load_config(resolve_checkpoint_dir(args.checkpoint))
    check_max_side(config, args.max_side)                            # before any loading
    check_overlap_flag(args.overlap, config.lr_size, "this model's")
    model = load_pretrained(args.checkpoint)
    # which step of a run this is (RUN/latest moves on while the run trains), and what every stage
    # under it trained for and on: a figure means little without its budget and data
    trained = training_lineage(args.checkpoint)
    with stage(f"evaluating {args.checkpoint}" + (" with ablations" if args.ablations else "")):
        images, unreadable = load_eval_images(args.images, args.max_megapixels)
        result = evaluate(model, images, seed=args.seed,
                          max_side=args.max_side, ablations=args.ablations, prune=prune, overlap=args.overlap,
                          log=note, name=str(args.checkpoint))
    # a bare --json prints no warning text to its reader: the report itself names what it left out
    result["skipped_unreadable"] = [{"name": name, "reason": why} for name, why in unreadable]
    text = format_eval(result)
    if args.ablations and model.sca_guidance is None:
        text += "\nsca_off: n/a (this model has no SCA)"
    payload = ablation_report(result, str(args.checkpoint)) if args.ablations else result
    payload["model"] = scored_model(model, str(args.checkpoint))        # which weights, in both forms
    payload.update(torch_record())           # and which code, versions and thread count computed them
    if trained:
        payload["trained"] = trained
        text = describe_lineage(str(args.checkpoint), trained) + "\n" + text
    return payload, text


def describe_lineage(checkpoint: str, trained: dict[str, Any]) -> str:
    """`training_lineage` as lines: the checkpoint's stage, then each stage it was started from."""
    lines = [f"{checkpoint}: {describe_stage(trained)}"]
    while "init" in trained:
        trained = trained["init"]
        lines.append(f"  from {trained['checkpoint']}: " + (describe_stage(trained) if "stage" in trained else
                     "its training record was not found (moved, not shipped with a bundled model, or not made "
                     "by `train`)"))
    return "\n".join(lines)


def describe_stage(stage: dict[str, Any]) -> str:
    from alignvar_edge.model.checkpoint import BUILTIN_IMAGES

    of = f" of {stage['planned_steps']}" if "planned_steps" in stage else ""
    latent = f" (--latent {stage['latent']})" if "latent" in stage else ""
    batch = f", batch {stage['batch']}" if "batch" in stage else ""
    data = "the built-in sample photographs" if stage["images"] == BUILTIN_IMAGES else f"--images {stage['images']}"
    return f"{stage['stage']} stage{latent} at step {stage['steps']}{of}{batch}, on {data}"
