"""Import upstream checkpoints: VARSR (qyp2000/VARSR) and VAR (FoundationVision/VAR).

The files are read as upstream saves them, without unpickling code (model/torch_files.py):
    VARSR  --var: {'trainer': {'var_wo_ddp': state dict, ...}, 'args': ..., ...}
           --vae: {'trainer': {'vae_local': state dict}, ...}
    VAR    --var: a raw state dict (var_d16.pth); --vae: a raw state dict (vae_ch160v4096z32.pth); or both
           its trainer's ar-ckpt-*.pth: {'trainer': {'var_wo_ddp': ..., 'vae_local': ..., ...}, ...}
    either, wrapped as training frameworks save them: {'model': sd}, {'state_dict': sd, ...}, 'module.' keys
The network's sizes are read from the tensors' shapes; the scale schedule from the levels its
constant buffers lay out (lvl_1L, attn_bias_for_masking), else from its `args.pn`, else from
`patch_nums=`; it is never guessed.

Key mapping (everything else keeps upstream's name):
    class_emb.weight (VARSR: 2 rows, high / low quality)   -> quality_emb.weight
    VQ-VAE keys                                            -> vae.<key>
    VAR's shared / non-shared φ: quantize.quant_resi.qresi.* / .<i>.* -> quantize.quant_resi.qresi_ls.0.* / .<i>.*
    constant buffers attn_bias_for_masking, lvl_1L, *.zero_k_bias, ema_vocab_hit_SV -> dropped
    VAR's class_emb (1000 ImageNet classes + null)         -> dropped (no counterpart), listed apart
"""
from __future__ import annotations

import math
import os
import re
from typing import Any

import torch

from alignvar_edge.errors import CheckpointError, InputError
from alignvar_edge.model.alignvar import AlignVAR
from alignvar_edge.model.checkpoint import LoadReport, check_finite, match_state_dict
from alignvar_edge.model.config import PATCH_NUMS_256, PATCH_NUMS_512, VAR_VQ_BETA, VARSR_SWITCHES, AlignVARConfig
from alignvar_edge.model.torch_files import Skipped, read_torch_file

KNOWN_SCHEDULES = (PATCH_NUMS_256, PATCH_NUMS_512)
CONSTANT_BUFFERS = re.compile(r"^(attn_bias_for_masking|lvl_1L|blocks\.\d+\.attn\.zero_k_bias|"
                              r"vae\.quantize\.ema_vocab_hit_SV)$")
VQ_NORM_GROUPS = 32        # VAR's Normalize() is GroupNorm(32)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if not _is_state_dict(obj):
        raise CheckpointError(f"{where} is not a state dict of tensors (it holds other objects); pass the "
                              "checkpoint file as the upstream code saves it")
    return {k: v.float() if v.is_floating_point() else v for k, v in obj.items()}


# VARSR's training checkpoint keeps each network under ckpt['trainer'][key]: (what it is, its flag)
TRAINER_PARTS = {"var_wo_ddp": ("transformer", "--var"), "vae_local": ("VQ-VAE", "--vae")}
# a key each network's state dict holds under any wrapper: how a file is told to be one or the other
ANCHORS = {"var_wo_ddp": "word_embed.weight", "vae_local": "encoder.conv_in.weight"}


def _prefixes(sd: dict[str, torch.Tensor], anchor: str) -> list[str]:
    """The key prefixes under which `sd` holds a network with `anchor` ('' for none)."""
    return sorted({k[: len(k) - len(anchor)] for k in sd if k == anchor or k.endswith("." + anchor)})


def _unprefixed(sd: dict[str, torch.Tensor], key: str, where: str) -> dict[str, torch.Tensor]:
    """`sd` without the prefix a training wrapper put on every key ('module.' of DistributedDataParallel,
    '_orig_mod.' of torch.compile, 'model.' of Lightning); refused where the prefix is not one network's."""
    what, flag = TRAINER_PARTS[key]
    found = _prefixes(sd, ANCHORS[key])
    if found == [""]:
        return sd
    if len(found) > 1:              # a model beside its EMA copy, say: which one is meant is the user's call
        raise CheckpointError(f"{where} holds {len(found)} copies of the {what} (key prefixes "
                              f"{', '.join(repr(p) for p in found)}; a model and its EMA?): save the one to "
                              f"import as a state dict of its own, without the prefix, and pass that as {flag}")
    if found and all(k.startswith(found[0]) for k in sd):
        return {k[len(found[0]):]: v for k, v in sd.items()}
    other = next(k for k in TRAINER_PARTS if k != key)
    if not found and _prefixes(sd, ANCHORS[other]):     # bare state dicts given the other way round
        o_what, o_flag = TRAINER_PARTS[other]
        raise CheckpointError(f"{where} is a {o_what} state dict, not the {what}: pass it as {o_flag} and the "
                              f"{what} checkpoint as {flag}")
    return sd                       # the layout checks that follow name what is missing


def _copies_error(path: str | os.PathLike[str], entries: list[str], key: str, in_trainer: bool) -> CheckpointError:
    """`path` holds several state dicts (`entries` of ckpt, or of ckpt['trainer']) where one `key` network
    was expected."""
    parent = "ckpt['trainer']" if in_trainer else "ckpt"
    return CheckpointError(f"'{path}' holds {len(entries)} state dicts ({', '.join(map(repr, entries))}"
                           f"{' in its trainer' if in_trainer else ''}; a model and its EMA?): save the one to import "
                           f"on its own (torch.save({parent}[{entries[0]!r}], 'net.pth')) and pass that as "
                           f"{TRAINER_PARTS[key][1]}")


def network_state_dict(tree: Any, key: str, path: str | os.PathLike[str], kind: str = "VARSR"
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """The `key` network (TRAINER_PARTS) of a `kind` (VARSR or VAR) checkpoint as upstream or a
    training framework saves it, with how errors should name it: the training checkpoint's
    ckpt['trainer'][key] (VAR's trainer writes both networks into each file, VARSR's one); a bare
    state dict (one saved from `var_wo_ddp.state_dict()`, or VAR's published files); the one state
    dict in a dict entry ({'model': ...}, {'state_dict': ..., 'optimizer': ...}); each with its keys
    maybe under a wrapper's prefix."""
    trainer = tree.get("trainer") if isinstance(tree, dict) else None
    nested = {k: v for k, v in tree.items() if _is_state_dict(v)} if isinstance(tree, dict) else {}
    if _is_state_dict(tree):
        sd, where = tree, f"'{path}'"
    elif isinstance(trainer, dict) and key in trainer:
        # an EMA kept beside var_wo_ddp: which copy is meant is the user's call, as for two top-level copies
        copies = [k for k, v in trainer.items() if k == key or (_is_state_dict(v) and _prefixes(v, ANCHORS[key]))]
        if len(copies) > 1:
            raise _copies_error(path, copies, key, in_trainer=True)
        sd, where = trainer[key], f"'{path}' (trainer.{key})"
    elif len(nested) == 1 and trainer is None:
        (entry, sd), = nested.items()
        where = f"'{path}' ({entry!r} entry)"
    elif nested and trainer is None:
        raise _copies_error(path, list(nested), key, in_trainer=False)
    else:
        what, flag = TRAINER_PARTS[key]
        other = next((k for k in TRAINER_PARTS if k != key and isinstance(trainer, dict) and k in trainer), None)
        if other is not None:           # the two files given the other way round
            raise CheckpointError(f"'{path}' holds {kind}'s {TRAINER_PARTS[other][0]} (trainer.{other}), not its "
                                  f"{what}: pass it as {TRAINER_PARTS[other][1]} and the {what} checkpoint as {flag}")
        raise CheckpointError(f"'{path}' is not a {kind} checkpoint (no ckpt['trainer']['{key}'] and not a state "
                              f"dict of tensors): pass {kind}'s {what} checkpoint as {flag}")
    net = _unprefixed(_state_dict(sd, where), key, where)
    if key == "vae_local":
        net = _phi_partially_shared(net)
    # a NaN written into a trained tensor would be refused by every verb that loads it: refuse it here,
    # naming the upstream file and tensor. The constant buffers are dropped unread (the causal mask
    # attn_bias_for_masking is -inf above its block diagonal in every file upstream saves).
    check_finite({k: v for k, v in net.items() if not CONSTANT_BUFFERS.match(k)}, where)
    return net, where


# VAR's VectorQuantizer2 keeps its φ convs in one of three layouts (its share_quant_resi 1, 0, else n):
# PhiShared `quant_resi.qresi.*`, PhiNonShared `quant_resi.<i>.*` and PhiPartiallyShared
# `quant_resi.qresi_ls.<i>.*`. All three pick a conv by the same ticks and argmin over their count,
# so the first two are the third with 1 conv, or with one per tick.
PHI_SHARED_OR_NOT = re.compile(r"^quantize\.quant_resi\.(?:qresi|(\d+))\.")


def _phi_partially_shared(vae_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`vae_sd` with VAR's shared or non-shared φ renamed to the partially shared layout."""
    return {PHI_SHARED_OR_NOT.sub(lambda m: f"quantize.quant_resi.qresi_ls.{m.group(1) or 0}.", k): v
            for k, v in vae_sd.items()}


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def vq_sizes(vae_sd: dict[str, torch.Tensor], where: str = "the VQ-VAE state dict") -> dict[str, Any]:
    """VQ-VAE config entries read from a VAR-layout state dict's shapes."""
    try:
        ch = vae_sd["encoder.conv_in.weight"].shape[0]
        levels = _count(vae_sd, r"encoder\.down\.(\d+)\.")
        mult = tuple(vae_sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
        vocab, cvae = vae_sd["quantize.embedding.weight"].shape
        phis = _count(vae_sd, r"quantize\.quant_resi\.qresi_ls\.(\d+)\.")
        if not phis:
            raise CheckpointError(f"{where} has no phi convs (quantize.quant_resi.*: a VQ-VAE built with "
                                  "quant_resi=0), which alignvar-edge does not model; pass a VQ-VAE trained with "
                                  "phi (VAR's and VARSR's published ones are)")
        return dict(vq_ch=ch, vq_ch_mult=mult, vq_num_res_blocks=_count(vae_sd, r"encoder\.down\.0\.block\.(\d+)\."),
                    vq_norm_groups=VQ_NORM_GROUPS, vq_using_sa="encoder.mid.attn_1.qkv.weight" in vae_sd,
                    vq_vocab=vocab, vq_cvae=cvae, vq_phi_count=phis,
                    residual_to_bicubic=False, decoder_lr=False)
    except KeyError as e:
        raise CheckpointError(f"{where} lacks {e}: not VAR's VQ-VAE layout; pass the VQ-VAE checkpoint "
                              "as --vae") from e


def _csv(pns: tuple[int, ...]) -> str:
    return ",".join(map(str, pns))


def _args_pn(args: Any) -> tuple[int, ...] | None:
    """The schedule a checkpoint's args.pn states; None where it has none, or VAR's resolution
    shorthand ('256', '512'), which names no schedule."""
    pn = args.get("pn") if isinstance(args, (dict, Skipped)) else None
    if isinstance(pn, str) and re.fullmatch(r"\d+([_-]\d+)+", pn):
        return tuple(int(p) for p in re.split(r"[_-]", pn))
    return None


def _level_sizes(var_sd: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """Tokens per level of the sequence, as each constant buffer upstream saves (VAR's and VARSR's
    __init__) lays it out: lvl_1L holds each position's level; attn_bias_for_masking lets a
    position see exactly the positions of its own level and below, so the distinct counts of what
    the rows see are the levels' ends."""
    sizes: dict[str, list[int]] = {}
    lvl = var_sd.get("lvl_1L")
    if lvl is not None:
        flat = lvl.reshape(-1).long()
        steps = flat.diff()
        contiguous = flat.numel() > 0 and int(flat[0]) == 0 and bool(((steps == 0) | (steps == 1)).all())
        sizes["lvl_1L"] = torch.bincount(flat).tolist() if contiguous else []
    mask = var_sd.get("attn_bias_for_masking")
    if mask is not None and mask.numel():
        ends = torch.unique(torch.isfinite(mask.reshape(-1, mask.shape[-1])).sum(1))
        sizes["attn_bias_for_masking"] = torch.diff(ends, prepend=ends.new_zeros(1)).tolist()
    return sizes


def laid_out(var_sd: dict[str, torch.Tensor], prefix: int, where: str) -> tuple[int, ...] | None:
    """The scale schedule the checkpoint's constant buffers lay out (level 0 holds `prefix` tokens
    besides scale 0: VARSR's P*P LR tokens), or None where it has neither buffer."""
    found = {}
    for name, sizes in _level_sizes(var_sd).items():
        counts = [sizes[0] - prefix, *sizes[1:]] if sizes else []
        pns = tuple(math.isqrt(max(n, 0)) for n in counts)
        if not pns or any(p < 1 or p * p != n for p, n in zip(pns, counts)) or list(pns) != sorted(set(pns)):
            raise CheckpointError(f"{where}: its {name} lays out no scale schedule (levels of {sizes[:12]} tokens): "
                                  "the file is damaged or edited; pass the checkpoint as upstream saved it")
        found[name] = pns
    if len(set(found.values())) > 1:
        raise CheckpointError(f"{where}: its lvl_1L and attn_bias_for_masking lay out different schedules "
                              f"({' vs '.join(map(_csv, found.values()))}): the file is damaged or edited; pass the "
                              "checkpoint as upstream saved it")
    return next(iter(found.values()), None)


def schedule(where: str, scales: int, laid: tuple[int, ...] | None, args: Any, flag: tuple[int, ...] | None = None,
             last: int | None = None, tokens: int | None = None) -> tuple[int, ...]:
    """The scale schedule of a checkpoint, never guessed: the one its constant buffers lay out
    (`laid`; upstream saves them in every file), else its args.pn; --patch-nums (`flag`) where it
    fits the tensors. `scales`, `last` and `tokens` are what its other tensors fix (the level
    embedding's rows, the last scale's side, the number of positions)."""
    shapes = f"{scales} scales" + (f" ending at {last}" if last else "") + (f", {tokens} tokens" if tokens else "")

    def fits(pns: tuple[int, ...]) -> bool:
        return (len(pns) == scales and last in (None, pns[-1]) and tokens in (None, sum(p * p for p in pns))
                and laid in (None, pns))

    pn = _args_pn(args)
    if flag is not None:
        if fits(flag):
            return flag
        own = laid or (pn if pn is not None and fits(pn) else None)
        told = (f"its tensors lay out {_csv(laid)}" if laid else f"its args.pn is {_csv(own)}" if own
                else f"its tensors fix {shapes}")
        raise InputError(f"--patch-nums {_csv(flag)} does not fit {where} ({told}): "
                         + ("drop --patch-nums" if own else f"pass {shapes} as --patch-nums"))
    if laid is not None:
        if not fits(laid):
            raise CheckpointError(f"{where}: its level buffers lay out the schedule {_csv(laid)}, but its other "
                                  f"tensors fix {shapes}: the file is damaged or edited; pass the checkpoint as "
                                  "upstream saved it")
        if pn is not None and pn != laid:
            raise CheckpointError(f"{where}: its args.pn {_csv(pn)} is not the schedule its lvl_1L and "
                                  f"attn_bias_for_masking lay out ({_csv(laid)}); to import by the tensors, pass "
                                  f"--patch-nums {_csv(laid)}")
        return laid
    if pn is not None and fits(pn):
        return pn
    said = f"its args.pn {_csv(pn)} does not fit its tensors ({shapes})" if pn else f"no args.pn schedule ({shapes})"
    known = next((p for p in KNOWN_SCHEDULES if fits(p)), None)
    example = f", e.g. --patch-nums {_csv(known)}" if known else ""
    raise CheckpointError(f"cannot tell the scale schedule of {where}: it has no lvl_1L or attn_bias_for_masking "
                          f"(upstream saves both) and {said}; pass the schedule it was trained on as --patch-nums"
                          f"{example}")


def _transformer_sizes(var_sd: dict[str, torch.Tensor], where: str = "the transformer state dict"
                       ) -> tuple[dict[str, Any], int]:
    """Config entries read from the transformer's shapes, and its number of scales (the level
    embedding's rows)."""
    try:
        width, cvae = var_sd["word_embed.weight"].shape
        heads = var_sd["blocks.0.attn.scale_mul_1H11"].shape[1]
        return dict(width=width, heads=heads, depth=_count(var_sd, r"blocks\.(\d+)\."),
                    mlp_ratio=var_sd["blocks.0.ffn.fc1.weight"].shape[0] / width), var_sd["lvl_embed.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"{where} lacks {e}: not VAR/VARSR's transformer layout; pass the transformer "
                              "checkpoint as --var") from e


def varsr_config(var_sd: dict[str, torch.Tensor], vae_sd: dict[str, torch.Tensor], args: Any = None,
                 patch_nums: tuple[int, ...] | None = None, where: tuple[str, str] = ("the VARSR state dict",
                 "the VQ-VAE state dict"), **overrides: Any) -> AlignVARConfig:
    """The config of a VARSR checkpoint, from its shapes (and its schedule, see schedule()); `where`
    names the transformer's and the VQ-VAE's files in errors."""
    vq = vq_sizes(vae_sd, where[1])
    tf, scales = _transformer_sizes(var_sd, where[0])
    try:
        P = int(round((var_sd["pos_start"].shape[1] - 1) ** 0.5))
        # blocks alternate a same-width conv and a strided one that sets the next width
        n_blocks = _count(var_sd, r"con_embedding\.blocks\.(\d+)\.")
        enc = (var_sd["con_embedding.conv_in.weight"].shape[0],) + tuple(
            var_sd[f"con_embedding.blocks.{i}.weight"].shape[0] for i in range(1, n_blocks, 2))
        refiner = dict(refiner_width=var_sd["diffloss.net.input_proj.weight"].shape[0],
                       refiner_depth=_count(var_sd, r"diffloss\.net\.res_blocks\.(\d+)\."))
    except KeyError as e:
        raise CheckpointError(f"{where[0]} lacks {e}: not VARSR's layout (a VAR checkpoint? use "
                              "`alignvar-edge import var`)") from e
    pns = schedule(where[0], scales, laid_out(var_sd, P * P, where[0]), args, patch_nums, last=P)
    downsample = 2 ** (len(vq["vq_ch_mult"]) - 1)
    cfg = dict(VARSR_SWITCHES, **vq, **tf, **refiner, lr_encoder_channels=enc, patch_nums=pns,
               hr_size=pns[-1] * downsample, name="varsr-import")
    cfg.update(overrides)
    return AlignVARConfig(**cfg)


def _merge(var_sd: dict[str, torch.Tensor], vae_sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    merged = {("quality_emb.weight" if k == "class_emb.weight" else k): v for k, v in var_sd.items()}
    merged.update({f"vae.{k}": v for k, v in vae_sd.items()})
    dropped = sorted(k for k in merged if CONSTANT_BUFFERS.match(k))
    return {k: v for k, v in merged.items() if k not in dropped}, dropped


def _build(config: AlignVARConfig, var_sd: dict[str, torch.Tensor], vae_sd: dict[str, torch.Tensor]
           ) -> tuple[AlignVAR, LoadReport]:
    model = AlignVAR(config)
    merged, dropped = _merge(var_sd, vae_sd)
    kept, report = match_state_dict(model, merged)
    report.dropped = dropped + report.dropped
    model.load_state_dict(kept, strict=False)
    return model.eval(), report


def import_varsr(var_path: str | os.PathLike[str], vae_path: str | os.PathLike[str],
                 patch_nums: tuple[int, ...] | None = None, **overrides: Any) -> tuple[AlignVAR, LoadReport]:
    """An AlignVAR that is VARSR: its config from the files' shapes, every tensor loaded."""
    var_tree, vae_tree = read_torch_file(var_path), read_torch_file(vae_path)
    var_sd, var_where = network_state_dict(var_tree, "var_wo_ddp", var_path)
    vae_sd, vae_where = network_state_dict(vae_tree, "vae_local", vae_path)
    args = var_tree.get("args") if isinstance(var_tree, dict) else None
    where = (var_where, vae_where)
    return _build(varsr_config(var_sd, vae_sd, args, patch_nums, where, **overrides), var_sd, vae_sd)


def refuse_unfit(report: LoadReport, kind: str, var_path: str | os.PathLike[str] | None,
                 vae_path: str | os.PathLike[str]) -> None:
    """One line naming the file whose tensors do not fit the architecture its shapes describe. VARSR
    must load whole; VAR has no LR input or quality labels, so only those may be missing."""
    if not (report.unexpected or report.mismatched or (kind == "varsr" and report.missing)):
        return
    # only what is refused: VAR's expected gaps and the dropped constants would bury the cause
    unfit = LoadReport(missing=report.missing if kind == "varsr" else [], unexpected=report.unexpected,
                       mismatched=report.mismatched)
    names = unfit.missing + unfit.unexpected + unfit.mismatched
    file = vae_path if var_path is None or all(n.startswith("vae.") for n in names) else var_path
    pair = "" if var_path is None else "; or --var and --vae come from different models"
    raise CheckpointError(f"'{file}' does not load as {kind.upper()} (another architecture{pair}): "
                          f"{unfit.summary()}; pass {kind.upper()}'s own checkpoint files")


def var_vae_config(vae_sd: dict[str, torch.Tensor], patch_nums: tuple[int, ...], where: str = "the VQ-VAE state dict",
                   **overrides: Any) -> AlignVARConfig:
    """A config whose VQ-VAE is VAR's (sizes from its shapes) on the given schedule."""
    vq = vq_sizes(vae_sd, where)
    downsample = 2 ** (len(vq["vq_ch_mult"]) - 1)
    base = dict(vq, patch_nums=patch_nums, hr_size=patch_nums[-1] * downsample, scale=4, sca=False,
                rope="none", abs_pos=True, vq_beta=VAR_VQ_BETA, name="var-import")
    base.update(overrides)
    return AlignVARConfig(**base)


def import_var(var_path: str | os.PathLike[str] | None, vae_path: str | os.PathLike[str],
               patch_nums: tuple[int, ...] | None = None, **overrides: Any) -> tuple[AlignVAR, LoadReport]:
    """VAR's VQ-VAE (and, given --var, its transformer blocks) inside an AlignVAR.

    VAR is class-conditional and has no LR input: the LR embedding and quality embedding have no
    counterpart and are reported missing, VAR's class embedding is reported dropped; the VQ-VAE
    reproduces VAR's tokens exactly.
    """
    vae_sd, _ = network_state_dict(read_torch_file(vae_path), "vae_local", vae_path, "VAR")
    var_sd: dict[str, torch.Tensor] = {}
    sizes: dict[str, Any] = {}
    classes: torch.Tensor | None = None
    if var_path is not None:
        var_tree = read_torch_file(var_path)
        var_sd, where = network_state_dict(var_tree, "var_wo_ddp", var_path, "VAR")
        sizes, scales = _transformer_sizes(var_sd, where)
        classes = var_sd.pop("class_emb.weight", None)
        if "pos_1LC" not in var_sd:
            raise CheckpointError(f"{where} has no pos_1LC (VAR's learned positions), so it is not VAR's "
                                  "transformer; a VARSR one? use `alignvar-edge import varsr`")
        args = var_tree.get("args") if isinstance(var_tree, dict) else None
        patch_nums = schedule(where, scales, laid_out(var_sd, 0, where), args, patch_nums,
                              tokens=var_sd["pos_1LC"].shape[1])
    if patch_nums is None:
        raise CheckpointError("VAR's VQ-VAE alone does not name its scale schedule; pass --patch-nums "
                              "(VAR 256 px: 1,2,3,4,5,6,8,10,13,16)")
    config = var_vae_config(vae_sd, patch_nums, f"'{vae_path}'", **sizes, **overrides)
    model, report = _build(config, var_sd, vae_sd)
    if classes is not None:         # a trained tensor of the user's file, so named apart from the constants
        report.dropped.append(f"class_emb.weight ({classes.shape[0]} rows: VAR's classes + null; AlignVAR has "
                              "no class input)")
    return model, report
