"""Core ML: an ML Program package (.mlpackage) for Apple devices, aimed at the Neural Engine.

Core ML converts from PyTorch, not ONNX: `build` takes a checkpoint (or an export whose manifest
names its checkpoint) and converts the export-friendly rollout (`torch.jit.trace`, or
`torch.export` + `run_decompositions({})` with an identity converter for `aten.alias`, which
torch 2.13 emits and coremltools 9.0 does not know). mlprogram, FP16 compute by default, compute
units configurable (default CPU_AND_NE), a minimum deployment target (default iOS17/macOS14).
Weight compression: `int8-weights` (`linear_quantize_weights`, symmetric per-channel)
and `paletteN` (k-means palettization to N bits, N in 2/4/6/8).

Core ML rejects tensors of rank > 5. The model's KV cache is (depth, 2, B, H, L, hd), so the
converted module is `CoreMLRollout` on a copy of the model: the model's own rollout with the
per-layer cache layout (model/rollout.py, `PER_LAYER`). A test checks that it gives exactly the
model's tokens and image.

coremltools' `reduce_transposes` pass fails on the 1x1 first scale (a matmul of (1,1,9) by its
transpose); the pass is removed from the pipeline (a layout optimisation, not a correctness one).

On Linux: conversion, saving, spec validation, weight compression and the ANE lint work; loading
for prediction needs macOS (MLModel.predict raises elsewhere), so `infer`/`upscale` raise a
BackendUnavailableError saying so. The build records a Linux fidelity *proxy* for fp16: the torch
module run in float16 against float32 (the real figure comes from `selftest` on a Mac).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import sys
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.caller import WarningFilter, warnings_changed
from alignvar_edge.errors import BackendUnavailableError, ConfigError, InputError
from alignvar_edge import recipes
from alignvar_edge.export.batch import default_batch
from alignvar_edge.export.parity import compare
from alignvar_edge.graph_names import ENGINE_GRAPH, INPUT, SR, token_name
from alignvar_edge.lazy import lazy_import
from alignvar_edge.outputs import artifact_dir as staging_dir
from alignvar_edge.manifest import (MANIFEST_FILE, Manifest, ModelInfo, ModelSource, listed_file, load_verified,
                                    new_manifest, prune_text, read_manifest, recorded_path, write_manifest)
from alignvar_edge.model.checkpoint import checkpoint_source, weights_sha256
from alignvar_edge.name_text import shell_word
from alignvar_edge.runtimes.artifacts import checkpoint_and_export, model_difference, model_name, validation_tiles
from alignvar_edge.runtimes.base import Backend, Engine, TensorSpec, config_from_manifest
from alignvar_edge.runtimes.coreml.compress import compress
from alignvar_edge.runtimes.coreml.ct import import_ct, quiet
from alignvar_edge.runtimes.coreml.lint import ane_lint, validate_spec
from alignvar_edge.runtimes.coreml.readme import package_readme
from alignvar_edge.runtimes.readme import README_FILE, WHOLE_IMAGES, write_readme
from alignvar_edge.runtimes.golden import copy_golden

PACKAGE = "model.mlpackage"
COMPUTE_UNITS = ("CPU_AND_NE", "ALL", "CPU_ONLY", "CPU_AND_GPU")
TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")


def compute_units_named(name: str) -> str:
    """`--device` for Core ML: one of COMPUTE_UNITS, any case; one line naming them otherwise."""
    units = {u.lower(): u for u in COMPUTE_UNITS}.get(str(name).lower())
    if units is None:
        raise InputError(f"--device for Core ML is the compute units: {', '.join(COMPUTE_UNITS)}; got '{name}'")
    return units


def target_named(name: str) -> str:
    """`--target-os`: one of TARGETS, any case (ios17 is iOS17); one line naming them otherwise."""
    target = {t.lower(): t for t in TARGETS}.get(str(name).lower())
    if target is None:
        raise InputError(f"--target-os must be one of {', '.join(TARGETS)}, got '{name}'")
    return target


NEEDS_MACOS = "Core ML runs models on macOS only (MLModel.predict is unavailable on {os})"

torch = lazy_import("torch")      # conversion and the Linux fidelity proxy run the PyTorch model


def rollout_module(model: Any) -> Any:
    """The AlignVAR rollout as a module Core ML accepts (see the module docstring)."""
    import copy

    import torch
    from torch import nn

    from alignvar_edge.model.rollout import PER_LAYER

    class CoreMLRollout(nn.Module):
        """model.forward with the KV cache held per layer: (keys, values) of rank 4 per block."""

        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
            sr, tokens, _ = self.m.rollout(lr, layout=PER_LAYER)
            return (sr, *tokens)

    return CoreMLRollout(copy.deepcopy(model)).eval()


def _register_alias() -> None:
    """Identity converter for aten.alias (torch.export in torch 2.13 emits it)."""
    from coremltools.converters.mil.frontend.torch import ops as torch_ops
    from coremltools.converters.mil.frontend.torch.torch_op_registry import (_TORCH_OPS_REGISTRY,
                                                                           register_torch_op)
    if "alias" in _TORCH_OPS_REGISTRY:
        return

    @register_torch_op
    def alias(context: Any, node: Any) -> None:
        x = torch_ops._get_inputs(context, node, expected=1)[0]
        context.add(x, node.name)


# half-policy group -> MIL op types kept fp32 when the policy keeps the group f32. A traced
# rollout has no module scopes, so groups are told apart by op type (the logits head: the linear
# feeding the token argmax); the SCA bias is elementwise arithmetic no op type isolates, so it
# follows the package's precision. The Neural Engine computes fp16 only: fp32 ops run on the CPU
# or GPU, a graph split the ANE lint (export/lint.py) and Xcode's performance report show.
MIL_GROUP_OPS: dict[str, tuple[str, ...]] = {
    "decoder_convs": ("conv",),
    "transformer_matmuls": ("linear",),
    "attention": ("softmax", "matmul"),
    "norms": ("layer_norm", "instance_norm", "batch_norm", "reduce_mean", "reduce_l2_norm",
              "reduce_sum_square", "pow", "sqrt", "rsqrt"),
    "logits_head": (),
    "sca_bias": (),
}


def _feeds_argmax(op: Any, hops: int = 3) -> bool:
    outs = list(getattr(op, "outputs", []))
    for _ in range(hops):
        children = [c for o in outs for c in getattr(o, "child_ops", [])]
        if any(c.op_type == "reduce_argmax" for c in children):
            return True
        outs = [o for c in children if c.op_type in ("reshape", "add", "transpose", "squeeze") for o in c.outputs]
    return False


def fp16_op_selector(f32_groups: frozenset[str]) -> Callable[[Any], bool]:
    """coremltools op selector (True: compute fp16) keeping the f32 groups' ops in fp32."""
    f32_types = {t for g in f32_groups for t in MIL_GROUP_OPS.get(g, ())}
    head = "logits_head" in f32_groups

    def select(op: Any) -> bool:
        if op.op_type in f32_types:
            return False
        # the argmax too, as in the ONNX half policy (ArgMax always f32): an fp16 argmax would
        # compare the fp32 logits rounded to fp16 (a cast between them), where near-ties flip
        return not (head and (op.op_type == "reduce_argmax" or op.op_type == "linear" and _feeds_argmax(op)))
    return select


def model_groups(config: Any) -> frozenset[str]:
    """The half-policy groups a model has parts in: all but `sca_bias` in a model without SCA, the
    groups its ONNX graph has nodes in (half_policy.graph_groups, which reads a graph, not a model)."""
    from alignvar_edge.quantize.half_policy import HALF_GROUPS
    return frozenset(g for g in HALF_GROUPS if config.sca or g != "sca_bias")


def group_precision(precision: str, f32_groups: frozenset[str], groups: frozenset[str]) -> dict[str, str]:
    """What each half-policy group of the model (`groups`: `model_groups`) computes in, in a package
    converted with `fp16_op_selector`."""
    from alignvar_edge.quantize.half_policy import HALF_GROUPS
    half = "fp32" if precision == "fp32" else "fp16"
    return {g: ("fp32" if g in f32_groups and (MIL_GROUP_OPS[g] or g == "logits_head") else half)
            for g in HALF_GROUPS if g in groups}


def convert(model: Any, precision: str = "fp16", compute_units: str = "CPU_AND_NE",
            target: str = "iOS17", method: str = "trace", batch: int = 1, image_input: bool = False,
            f32_groups: frozenset[str] = frozenset()) -> Any:
    """torch AlignVAR -> ct.models.MLModel (mlprogram).

    image_input: the `lr` input is an RGB image (CVPixelBuffer / CGImage in Swift, a PIL image in
    Python) of one tile, scaled by 1/255 inside the model, instead of a float array in [0, 1]."""
    ct = import_ct()
    compute_units, target = compute_units_named(compute_units), target_named(target)
    c = model.config
    if c.prefix != "quality" or c.has_refiner:
        # not converted and checked here yet: VARSR's joint prefix block, and the refiner's noise input
        raise ConfigError(f"Core ML conversion supports the AlignVAR layout only; '{c.name}' uses VARSR's "
                          "layout (prefix 'varsr' / refiner): build it for onnxruntime or openvino instead")
    module = rollout_module(model.float().eval())
    lr = torch.rand(batch, 3, c.lr_size, c.lr_size, generator=torch.Generator().manual_seed(0))
    # the tracer warns about Python ints taken from shapes: static by design (fixed tile); torch 2.13
    # deprecates jit.trace, which still converts faster here than torch.export (45 s vs ~100 s for
    # `micro`), and method="export" is the way forward
    with torch.no_grad(), warnings_changed(WarningFilter("ignore", category=torch.jit.TracerWarning),
                                           WarningFilter("ignore", category=DeprecationWarning)):
        if method == "trace":
            src: Any = torch.jit.trace(module, (lr,), check_trace=False)
        elif method == "export":
            _register_alias()
            src = torch.export.export(module, (lr,), strict=False).run_decompositions({})
        else:
            raise InputError(f"conversion method must be 'trace' or 'export', got '{method}'")
    pipeline = ct.PassPipeline.DEFAULT
    pipeline.remove_passes(["common::reduce_transposes"])
    # sr as float32 like the input (an ML Program's outputs default to fp16 from iOS16: a Swift
    # reader of Float would read garbage); the cast is one op at the end
    outputs = [ct.TensorType(name=SR, dtype=np.float32)] + [ct.TensorType(name=token_name(k))
                                                            for k in range(c.num_scales)]
    lr_input = (ct.ImageType(name=INPUT, shape=tuple(lr.shape), scale=1 / 255.0, color_layout=ct.colorlayout.RGB)
                if image_input else ct.TensorType(name=INPUT, shape=tuple(lr.shape), dtype=np.float32))
    # the converted package goes into a folder of ours: coremltools' own temporary one, made in $TMPDIR
    # before its clean-up at exit was registered, outlived a stop during its saving. Removed on an
    # error or a stop here, and otherwise with the model (or at exit)
    scratch = tempfile.TemporaryDirectory(prefix="alignvar-coreml-")
    try:
        with quiet():
            ml = ct.convert(
                src, inputs=[lr_input],
                outputs=outputs, convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT32 if precision == "fp32" else (
                    ct.transform.FP16ComputePrecision(op_selector=fp16_op_selector(f32_groups)) if f32_groups
                    else ct.precision.FLOAT16),
                compute_units=getattr(ct.ComputeUnit, compute_units),
                minimum_deployment_target=getattr(ct.target, target), pass_pipeline=pipeline,
                package_dir=os.path.join(scratch.name, "converted.mlpackage"))
    except BaseException:
        scratch.cleanup()
        raise
    weakref.finalize(ml, scratch.cleanup)
    return ml


METADATA_PREFIX = "com.alignvar-edge."


def package_io(checks: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The manifest's graph inputs and outputs as the package declares them (`validate_spec`'s
    `io`): Core ML's types, so tokens are int32 there (the Engine widens them to int64)."""
    io = checks["io"]
    entry = {name: {"name": name, **f} for name, f in io.items()}
    return {"inputs": [entry[n] for n in checks["inputs"]], "outputs": [entry[n] for n in checks["outputs"]]}


def package_contract(config: Any, batch: int, image_input: bool) -> dict[str, Any]:
    """The package's own input contract: the float planes of every export, or with `image_input`
    one 8-bit RGB image that the model scales to [0, 1] itself."""
    from alignvar_edge.manifest import contract
    c = contract(config.lr_size, config.scale, batch)
    if not image_input:
        return {**c, "input": "multiarray"}
    return {**c, "input": "image", "dtype": "uint8", "range": [0, 255],
            "layout": "image (CVPixelBuffer / CGImage in Swift, PIL image in Python)"}


def describe(ml: Any, config: Any, precision: str, compute_units: str, image_input: bool,
             batch: int, per_group: dict[str, str], model: ModelInfo) -> dict[str, str]:
    """What Xcode shows for the package: a description of the model, of every input and output,
    and user-defined metadata (the input contract: tile, overlap, scale, colour order, range, and
    the compute units it was built for; `per_group`: what each group computes in, `group_precision`'s;
    which weights these are: `model`, the manifest's entry, its name as given and weights' SHA-256).
    Returns the metadata written."""
    from alignvar_edge import __version__
    c = package_contract(config, batch, image_input)
    t, s = config.lr_size, config.hr_size
    kept = sorted(g for g, p in per_group.items() if p == "fp32") if precision != "fp32" else []
    shown = precision + (f", {', '.join(kept)} in fp32" if kept else "")
    ml.short_description = (f"AlignVAR x{config.scale} super-resolution ({config.name}, {shown}) on "
                            f"{t}x{t} RGB tiles; tile larger images with {c['overlap']} px overlap and blend as "
                            f"{README_FILE}, shipped beside this package, says in \"{WHOLE_IMAGES}\"")
    # the converter, not the weights' maker (unknown here); the version field names the weights, whose
    # version the tool's is not; the licence is left to the weights' owners
    ml.author = "alignvar-edge (the converter; the weights are those com.alignvar-edge.checkpoint names)"
    weights = model.weights_sha256 or "unknown"
    ml.version = f"weights {weights[:12]}"
    ml.input_description[INPUT] = (
        f"one {t}x{t} RGB tile (8-bit image, scaled to [0, 1] inside the model)" if image_input else
        f"one LR tile, float32 (1, 3, {t}, {t}), NCHW, RGB planes in [0, 1]" if batch == 1 else
        f"{batch} LR tile(s), float32 ({batch}, 3, {t}, {t}), NCHW, RGB planes in [0, 1] (pad the last "
        "batch of an image by repeating a tile)")
    ml.output_description[SR] = (f"SR tiles, float32 ({batch}, 3, {s}, {s}), NCHW, RGB in [0, 1] (clip before "
                                 "converting to 8 bits)")
    for k, p in enumerate(config.patch_nums):
        ml.output_description[token_name(k)] = (f"token indices of scale {k + 1}/{config.num_scales} "
                                                f"({p}x{p}), for checks against golden outputs")
    # the checkpoint's name, not its path: the metadata ships inside every app (the manifest keeps the path)
    meta = {"model": str(config.name), "checkpoint": Path(model.display_name).name, "weights_sha256": weights,
            "version": str(__version__), "precision": precision, "compute_units": compute_units,
            "tile": str(t), "overlap": str(c["overlap"]), "scale": str(config.scale),
            "sr_tile": str(s), "batch": str(batch), "color_order": "RGB",
            "range": f"{c['range'][0]:g}..{c['range'][1]:g}", "layout": "image" if image_input else "NCHW",
            "input": c["input"], "input_contract": json.dumps({**c, "images": None}, sort_keys=True)}
    if kept:
        meta["fp32_groups"] = ",".join(kept)
    for key, value in meta.items():
        ml.user_defined_metadata[METADATA_PREFIX + key] = value
    return meta


# the package's spec, where coremltools writes it (its utils' `_get_model_spec_path`)
SPEC_FILE = "Data/com.apple.CoreML/model.mlmodel"
# the metadata key coremltools sets to the day of the conversion
CONVERSION_DATE = "com.github.apple.coremltools.conversion_date"


def save_package(ml: Any, package: Path) -> None:
    """`ml` saved as the .mlpackage `package`, its spec the same bytes for the same build: coremltools
    writes the spec's maps (the user-defined metadata, the program's functions and op arguments) in
    an order that differs from one process to the next, and the day of the conversion. The spec is
    rewritten with its maps in key order and without that date: the manifest's `created` says when
    the package was made, so two builds on two days still hash alike (`files_sha256`)."""
    ml.save(str(package))
    spec_file = package / SPEC_FILE
    spec = import_ct().proto.Model_pb2.Model()
    spec.ParseFromString(spec_file.read_bytes())
    spec.description.metadata.userDefined.pop(CONVERSION_DATE, None)
    spec_file.write_bytes(spec.SerializeToString(deterministic=True))


def _keep_f32(module: Any, f32_groups: frozenset[str], x: Any) -> list[str]:
    """In a float16 copy of the model, run the modules of the half policy's f32 groups in float32
    (their inputs widened, their outputs narrowed back but the logits head's, which the package's
    argmax compares in fp32), as the package's op selector keeps those
    ops fp32. Module-level: functional ops (attention's matmuls, q/k norms) and modules whose
    weights are used without calling them (the fused q/k/v projection) follow the surroundings.
    Returns the groups that mapped to modules."""
    nn = torch.nn
    by_group = {"transformer_matmuls": (nn.Linear,), "decoder_convs": (nn.Conv2d,),
                "norms": (nn.LayerNorm, nn.GroupNorm)}
    kinds = tuple(t for g in f32_groups for t in by_group.get(g, ()))
    head = module.head if "logits_head" in f32_groups else None

    def widen(_m: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def narrow(_m: Any, _args: Any, out: Any) -> Any:
        return out.half() if torch.is_tensor(out) and out.is_floating_point() else out
    candidates: list[Any] = [m for m in module.modules() if (kinds and isinstance(m, kinds)) or m is head]
    called: set[int] = set()
    probes = [m.register_forward_pre_hook(lambda m, _a: called.add(id(m))) for m in candidates]
    with torch.inference_mode():
        module(x[:1])                      # which of them run through their forward
    for p in probes:
        p.remove()
    for m in candidates:
        if id(m) in called:
            m.float()
            m.register_forward_pre_hook(widen)
            if m is not head:       # the package's argmax compares the head's fp32 logits (fp16_op_selector)
                m.register_forward_hook(narrow)
    return sorted(g for g in f32_groups if g in by_group or g == "logits_head")


# coremltools' palettize_weights and linear_quantize_weights leave weights of this many elements
# or fewer alone (OpPalettizerConfig's and OpLinearQuantizerConfig's weight_threshold default)
COMPRESS_WEIGHT_THRESHOLD = 2048


def palettize_like_coreml(model: Any, nbits: int) -> None:
    """`model`'s weights, in place, as `compress(ml, f"palette{nbits}")` leaves them: one k-means
    look-up table of 2**nbits values per weight tensor over COMPRESS_WEIGHT_THRESHOLD elements, by
    coremltools' own post-training palettizer on the torch modules (the same clustering; its
    initialisation may differ from the converted package's)."""
    # compress() leaves the VQ codebook (an Embedding, palettized by default here) alone too
    small = {name: None for name, m in model.named_modules()
             if isinstance(getattr(m, "weight", None), torch.Tensor)
             and (m.weight.numel() <= COMPRESS_WEIGHT_THRESHOLD or isinstance(m, torch.nn.Embedding))}
    with quiet():           # its import prints, and sets its k-means logger's level (to INFO) ...
        from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig
    with quiet():           # ... at which its k-means workers log every step: quieted once it is set
        config = PostTrainingPalettizerConfig.from_dict({
            "global_config": {"n_bits": nbits, "granularity": "per_tensor"}, "module_name_configs": small})
        PostTrainingPalettizer(model, config).compress(inplace=True)


def fidelity_proxy(model: Any, tiles: np.ndarray, precision: str,
                   f32_groups: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """Linux stand-in for Core ML fidelity: the torch module in float16 (with int8 per-channel
    fake-quantized weights for int8-weights, k-means palettes for paletteN; the modules of
    `f32_groups` in float32) vs float32."""
    x = torch.from_numpy(tiles)
    test = copy.deepcopy(model).float()
    if precision.startswith("palette"):
        palettize_like_coreml(test, int(precision[len("palette"):]))
    elif precision == "int8-weights":
        with torch.no_grad():
            for mod in test.modules():      # the weights compress() quantizes (WEIGHT_OPS), as large
                if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and mod.weight.numel() > COMPRESS_WEIGHT_THRESHOLD:
                    w = mod.weight
                    s = w.abs().flatten(1).amax(1).clamp_min(1e-12) / 127
                    s = s.view(-1, *([1] * (w.dim() - 1)))
                    w.copy_(torch.round(w / s).clamp(-127, 127) * s)
    test = test.half()
    kept = _keep_f32(test, f32_groups, x.half()) if f32_groups else []
    with torch.inference_mode():
        sr32, *t32 = model.float()(x)
        sr16, *t16 = test(x.half())
    rep = compare(sr32.numpy(), [t.numpy() for t in t32], sr16.float().numpy(), [t.numpy() for t in t16],
                  scale=model.config.scale).to_json()
    rep.pop("thresholds", None)
    rep.pop("passed", None)
    weights = {"int8-weights": " with int8 per-channel weights"}.get(
        precision, f" with {precision[len('palette'):]}-bit k-means palettes" if precision.startswith("palette") else "")
    what = ("float16" + weights
            + (f" ({', '.join(kept)} modules in float32)" if kept else ""))
    rep["reference"] = (f"proxy: torch {what} vs float32 on CPU, not Core ML itself "
                        "(measure on a Mac with `alignvar-edge selftest --engine DIR`)")
    return rep


class CoreMLEngine(Engine):
    backend = "coreml"

    def __init__(self, package: Path, metadata: Manifest, compute_units: str,
                 engine_dir: Path | None = None):
        config = config_from_manifest(metadata)
        super().__init__(metadata, config, compute_units, engine_dir)
        batch = int(metadata.extra.get("batch", 1))
        self._spec: dict[str, TensorSpec] = {
            INPUT: ((batch, 3, config.lr_size, config.lr_size), np.dtype(np.float32))}
        self.model: Any = None
        if sys.platform == "darwin":
            ct = import_ct()
            self.model = ct.models.MLModel(str(package), compute_units=getattr(ct.ComputeUnit, compute_units))

    @property
    def input_spec(self) -> dict[str, TensorSpec]:
        return self._spec

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.model is None:
            raise BackendUnavailableError(NEEDS_MACOS.format(os=platform.system() or sys.platform) +
                                          "; this package was built and validated here: copy the engine "
                                          f"dir to a Mac and run `alignvar-edge selftest --engine "
                                          f"{shell_word(self.engine_dir or 'ENGINE_DIR')}`")
        x: Any = feeds[INPUT]
        if self.metadata.extra.get("image_input"):      # one 8-bit RGB tile
            from PIL import Image
            x = Image.fromarray(np.round(np.clip(x[0], 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0))
        res = self.model.predict({INPUT: x})
        out = {SR: np.asarray(res[SR], np.float32)}
        out.update({token_name(k): np.asarray(res[token_name(k)]).astype(np.int64)
                    for k in range(self.config.num_scales)})
        return out

    def _release(self) -> None:
        self.model = None


def _model_info(model: Any, artifact_dir: Path, src: Path | None) -> ModelInfo:
    """The package's `model` entry: the checkpoint `src` converted, named as given; or, for a model
    handed in (deploy) with an export of its very config and weights, that export's record (its
    checkpoint and the checkpoint's SHA-256s), as every engine built from the export names it; else
    an in-memory model."""
    own = ModelInfo(name=model.config.name, config=model.config.to_dict(), source=ModelSource.memory(),
                    parameters=model.parameter_report(), weights_sha256=weights_sha256(model))
    if src is not None:
        return dataclasses.replace(own, name=model_name(artifact_dir), source=checkpoint_source(src))
    export = _export_of(model, artifact_dir)
    return own if export is None else dataclasses.replace(own, name=export.model.name, source=export.model.source)


def _export_of(model: Any, artifact_dir: Path) -> Manifest | None:
    """The manifest of `artifact_dir` where it is an export of the handed-in `model`'s very config and
    weights (deploy hands in the model it exported); None otherwise."""
    if not (Path(artifact_dir) / MANIFEST_FILE).is_file():
        return None
    export = read_manifest(artifact_dir)
    return export if model_difference(export, model.config, weights_sha256(model)) is None else None


def _golden(model: Any, artifact_dir: Path, src: Path | None, dest: Path) -> dict[str, Any] | None:
    """The golden outputs of the package's rollout, put into `dest` (`copy_golden`): the checkpoint
    `src`'s, or for a handed-in model (deploy) those of the checkpoint its export came from. Core ML
    converts the checkpoint's PyTorch rollout, unpruned and with its refiner, whatever the export left
    out; None for a model with no checkpoint behind it."""
    if src is not None:
        return copy_golden(None, src, dest)
    export = _export_of(model, artifact_dir)
    return None if export is None else copy_golden(export, Path(artifact_dir), dest, prune=(), refine=True)


def _refuse_pruned(artifact_dir: Path, m: Manifest | None) -> None:
    """A pruned export (`m`, its verified manifest; None for a checkpoint) is refused: Core ML converts
    the checkpoint's PyTorch rollout, and its conversion does not carry token pruning (its per-sample
    TopK selection and scatter back have not been converted nor checked against the pruned rollout),
    so the engine would compute the unpruned model unannounced."""
    if m is not None and m.graph_facts.get("prune"):
        raise InputError(f"'{artifact_dir}' is pruned ({prune_text(m.graph_facts['prune'])}), but Core ML converts the checkpoint's PyTorch "
                         "rollout, whose conversion does not carry token pruning: `export --prune` is for the "
                         "ONNX backends (onnxruntime, openvino, tensorrt) and torch; build Core ML from the "
                         "checkpoint or from an export without --prune")


class CoreMLBackend(Backend):
    name = "coreml"
    module = "coremltools"
    distribution = "coremltools"
    extra = "coreml"

    def import_module(self) -> Any:
        try:
            return import_ct()
        except Exception as e:    # noqa: BLE001 - broken install reads as unavailable
            raise BackendUnavailableError(f"{self.name} is not usable here: {self.missing_reason(e)}") from e

    def is_available(self) -> tuple[bool, str]:
        ok, why = super().is_available()
        if not ok:
            return ok, why
        if sys.platform != "darwin":
            return False, (f"coremltools {self.version()} builds, validates and compresses .mlpackage here, "
                           f"but running it needs macOS (this is {platform.system()})")
        return True, ""

    def can_build(self) -> tuple[bool, str]:
        return Backend.is_available(self)

    def can_load(self) -> tuple[bool, str]:
        # loading works everywhere (metadata, spec); predictions raise off macOS with the reason
        return Backend.is_available(self)

    def devices(self) -> list[str]:
        return list(COMPUTE_UNITS) if sys.platform == "darwin" else []

    def describe(self, manifest: Manifest) -> list[str]:
        """Its deployment target, spec check and ANE lint, as recorded at build."""
        from alignvar_edge.export.lint import package_finding_text
        extra = manifest.extra
        spec = extra.get("spec") or {}
        return [f"deployment target {extra.get('deployment_target')}, ML Program spec "
                f"{'valid' if spec.get('valid') else 'NOT valid'} ({spec.get('ops')} ops)",
                *(package_finding_text(f) for f in extra.get("ane_lint") or [])]

    def build(self, artifact_dir: Path, out: Path, precision: str = "fp16",
              calibration: Any = None, device: str | None = None, force: bool = False,
              **opts: Any) -> Path:
        """Convert the checkpoint's rollout to an .mlpackage with validation and an ANE lint."""
        from alignvar_edge.model.alignvar import load_pretrained
        recipes.recipe(self.name, precision)     # an unknown precision: one line naming the known
        if Path(out).suffix.lower() in (".mlpackage", ".mlmodel", ".mlmodelc"):
            # Xcode would take the folder for a package and reject it: the package is inside
            raise InputError(f"--out '{out}' is the engine directory, which holds {PACKAGE}, manifest.json, "
                             f"README.md and the golden outputs; give it a plain folder name (e.g. coreml/tiny) "
                             f"and rename {PACKAGE} when adding it to Xcode")
        compute_units = compute_units_named(device or opts.pop("compute_units", "CPU_AND_NE"))
        image_input = bool(opts.pop("image_input", False))
        # tiles per prediction (None: the model's default, see export/batch.py); an image input
        # holds one tile
        batch = opts.pop("batch", 1 if image_input else None)
        if batch is not None and int(batch) < 1:
            raise InputError(f"coreml batch must be >= 1, got {batch}")
        if image_input and batch is not None and int(batch) != 1:
            # refused before loading and tracing: the image type is one CVPixelBuffer per prediction
            raise InputError(f"--batch {batch} with --image-input: an image input holds one tile per prediction; "
                             "drop --batch (or --image-input for a float input of several tiles)")
        target = target_named(opts.pop("target_os", "iOS17"))      # both checked before any loading
        method = opts.pop("method", "trace")
        proxy = opts.pop("proxy", True)
        model = opts.pop("model", None)      # an in-memory AlignVAR (tests, deploy)
        half = opts.pop("half_policy", None)  # a HalfPolicy dict: its f32 groups stay fp32
        if opts:
            raise InputError(f"unknown coreml build options {sorted(opts)}; "
                             "known: batch, compute_units, image_input, target_os, method, proxy, half_policy")
        f32_groups = frozenset((half or {}).get("f32_groups") or ())
        src, export = None, None
        if model is None:
            src, export = checkpoint_and_export(artifact_dir, self.name)
            _refuse_pruned(artifact_dir, export)
            model = load_pretrained(src)
        config = model.config
        if batch is None:       # an export's batch is what its user chose; else the model's default
            batch = export.static_batch if export else default_batch(config)
        batch = int(batch)
        ml = convert(model, "fp32" if precision == "fp32" else "fp16", compute_units, target, method,
                     batch=batch, image_input=image_input, f32_groups=f32_groups)
        ml, recipe = compress(ml, precision)
        per_group = group_precision(precision, f32_groups, model_groups(config))
        info = _model_info(model, artifact_dir, src)
        described = describe(ml, config, precision, compute_units, image_input, batch, per_group, info)
        spec = ml.get_spec()
        checks = validate_spec(spec, config, batch)
        lint = ane_lint(spec, compute_units)
        with staging_dir(out, force=force) as tmp:
            save_package(ml, tmp / PACKAGE)
            extra = {"files": {"engine": PACKAGE}, "compute_units": compute_units,
                     "deployment_target": target, "conversion": method, "batch": batch,
                     "compute_precision": "fp32" if precision == "fp32" else "fp16",
                     "compute_precision_per_group": per_group,
                     "spec": checks, "ane_lint": lint, "image_input": image_input,
                     "user_defined_metadata": described,
                     "source": {"path": recorded_path(src) if src else info.source.path or "in-memory model"},
                     "removed_passes": ["common::reduce_transposes"]}
            m = new_manifest("engine", self.name, "single", precision, info,
                             graphs={ENGINE_GRAPH: {"file": PACKAGE, **package_io(checks)}},
                             quantization=recipe, extra=extra)
            if proxy and precision != "fp32":
                m.parity = par = fidelity_proxy(model, validation_tiles(config), precision, f32_groups)
                gate = recipes.recipe(self.name, precision)
                if par is not None and gate.misses(par["tokens"]["overall"], par["psnr_db"]):
                    # the proxy already misses what `selftest` holds this package to on a Mac: say so
                    # now, not after it is shipped (palette4 of alignvar-tiny keeps ~79% of the tokens)
                    par["short_of_gate"] = gate.gate_words
            extra["golden"] = _golden(model, artifact_dir, src, tmp)
            m.input_contract = package_contract(config, batch, image_input)
            write_readme(tmp, package_readme(m, checks["io"], PACKAGE))
            write_manifest(tmp, m)
        return out

    def open(self, engine_dir: Path, device: str | None = None, **opts: Any) -> CoreMLEngine:
        m = load_verified(engine_dir)         # a Core ML engine: Backend.load refused any other
        units = compute_units_named(device or m.extra.get("compute_units", "CPU_AND_NE"))
        return CoreMLEngine(listed_file(engine_dir, m, m.engine_file), m, units, Path(engine_dir))

    def inspect(self, engine_dir: Path) -> dict[str, Any]:
        """Re-read a built package's spec (works on Linux): validation + ANE lint."""
        m = load_verified(engine_dir)
        ct = import_ct()
        with quiet():
            ml = ct.models.MLModel(str(Path(engine_dir) / PACKAGE), skip_model_load=True)
        spec = ml.get_spec()
        batch = int(m.extra.get("batch", 1))
        return {"spec": validate_spec(spec, config_from_manifest(m), batch),
                "ane_lint": ane_lint(spec, m.extra.get("compute_units", "CPU_AND_NE"))}


BACKEND = CoreMLBackend()
