"""What to build: TensorRT builder flags per version and precision (the one place that knows about
TRT 10 vs 11), the equivalent trtexec command, the DLA rule, the engine directory's file names, and
how a kit's or engine's manifest records its plan and layer lists (`plan_record`, `plan_of`).
No TensorRT import, so the build kit uses it on a machine without TensorRT.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alignvar_edge import recipes
from alignvar_edge.errors import InputError
from alignvar_edge.manifest import Manifest

__all__ = ["CACHE", "DLA_CORES", "ENGINE", "FP16_F32", "MAX_ARG", "OBEYS", "ONNX", "SCRIPT_FILE", "TRTEXEC_FILE",
           "base_args", "check_dla_core", "dla_args", "f32_layers_of", "half_layers_of", "network_plan", "plan_of",
           "plan_record", "precision_args", "recorded_f32", "trt_major", "trtexec_command"]

ENGINE, ONNX, CACHE = "model.engine", "model.onnx", "alignvar-timing.cache"
# Linux passes one command-line argument of at most 128 KiB (MAX_ARG_STRLEN), NUL included
MAX_ARG = 128_000
TRTEXEC_FILE, SCRIPT_FILE = "trtexec.txt", "build_on_device.sh"
# the DLA cores a Jetson has (Orin AGX and NX 16GB: 0 and 1; NX 8GB: 0; Orin Nano: none)
DLA_CORES = (0, 1)
DLA_CORE_HELP = "a DLA core number, 0 or 1 (Orin AGX and NX 16GB; NX 8GB has core 0 only, Orin Nano none)"
DLA_PRECISION_ERROR = "DLA runs fp16 and int8 only: add --precision fp16 (or int8)"
# manifest.extra key: {"source": why, "layers": [ONNX node names] an FP16 build keeps in f32,
# "half_layers": [the other float layers]}. The one place a kit or engine manifest keeps these
# lists: its plan says only whether the build obeyed them (OBEYS), and the trtexec command that
# spells them out is trtexec.txt (rebuild) or trtexec.log (what was run), never the manifest.
FP16_F32 = "fp16_f32_layers"
# the plan key, in a manifest, that stands for the plan's "f32_layers" and "half_layers": true
# where the build kept FP16_F32's layers in f32 (--precisionConstraints=obey --layerPrecisions)
OBEYS = "obey_f32_layers"
_LISTS = ("f32_layers", "half_layers")


def check_dla_core(dla_core: int | None, precision: str) -> None:
    """The DLA core an engine is built or run on: one the device can have, at a precision DLA runs
    (build_on_device.sh applies the same rule, from these constants)."""
    if dla_core is None:
        return
    if dla_core not in DLA_CORES:
        raise InputError(f"--dla-core takes {DLA_CORE_HELP}, not '{dla_core}'")
    if precision == "fp32":
        raise InputError(DLA_PRECISION_ERROR)


# the host command that makes the fp16 export a TensorRT 11 fp16 engine is built from
FP16_EXPORT_COMMAND = recipes.recipe("tensorrt", "fp16").quantize_command("EXPORT", out="EXPORT-fp16")


def network_plan(trt_major: int, precision: str, artifact_precision: str,
                 f32_layers: Iterable[str] = (), half_layers: Iterable[str] | None = None) -> dict[str, Any]:
    """{"strongly_typed": bool, "flags": [builder flag names], "tf32": False} for this TensorRT major
    version; a weakly typed fp16 plan also carries "f32_layers" (by ONNX node name, which the ONNX
    parser gives its layers: the half policy's f32 groups, or by default the token path), built
    with obeyed precision constraints. Strongly typed plans take per-layer precision from the
    ONNX's own types (the fp16 artifact).

    TF32 is off in every plan: TensorRT enables it by default on Ampere and later (Jetson Orin),
    where it rounds fp32 matmul and conv inputs to 10 mantissa bits, the precision of fp16, and
    the f32 layers exist to keep the tokens. An int8 plan sets INT8 only: the layers its Q/DQ
    leave in float run in fp32, the precision the int8 search validated them in.

    `half_layers`, the other float layers, lets a command line name the complement where the f32
    list is too long for one argument (precision_args)."""
    recipe = recipes.recipe("tensorrt", precision)      # an unknown precision: one line naming the known
    # the kit's script plans on the device, which has no quantize: the host's command, export unknown
    recipe.check_graph(artifact_precision, recipe.quantize_command())
    if trt_major >= 11:
        # strongly typed: the graph's own types decide; fp16 must already be in the ONNX
        if precision == "fp16" and artifact_precision != "fp16":
            raise InputError("TensorRT 11 builds strongly typed networks (no FP16 flag): build from an fp16 "
                             f"export (`{FP16_EXPORT_COMMAND}`)")
        return {"strongly_typed": True, "flags": [], "tf32": False}
    if precision == "fp16" and artifact_precision == "fp16":
        return {"strongly_typed": True, "flags": [], "tf32": False}
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}[precision]
    plan: dict[str, Any] = {"strongly_typed": False, "flags": flags, "tf32": False}
    if f32_layers and "FP16" in flags:
        plan["f32_layers"] = sorted(set(f32_layers))
        if half_layers is not None:
            plan["half_layers"] = sorted(set(half_layers))
    return plan


def trtexec_command(plan: dict[str, Any], onnx: str = ONNX, engine: str = ENGINE,
                    cache: str = CACHE, workspace_mib: int | None = None, opt_level: int = 3,
                    dla_core: int | None = None) -> list[str]:
    """The trtexec invocation equivalent to our build (on DLA core `dla_core`, GPU fallback on)."""
    cmd = ["trtexec", *base_args(onnx, engine, cache, opt_level, workspace_mib), *precision_args(plan)]
    return cmd if dla_core is None else cmd + dla_args(dla_core)


def base_args(onnx: str, engine: str, cache: str, opt_level: int, workspace_mib: int | None) -> list[str]:
    """trtexec's flags of our build that no precision changes: its files, timing cache, optimisation
    level and workspace; the build kit's script spells its build with them (shell words as `onnx`...)."""
    args = [f"--onnx={onnx}", f"--saveEngine={engine}", f"--timingCacheFile={cache}",
            f"--builderOptimizationLevel={opt_level}"]
    if workspace_mib:
        args.append(f"--memPoolSize=workspace:{workspace_mib}M")
    return args


def dla_args(dla_core: int | str) -> list[str]:
    """trtexec's flags that run on DLA core `dla_core` (a number, or the script's "$DLA"), GPU fallback on."""
    return [f"--useDLACore={dla_core}", "--allowGPUFallback"]


def precision_args(plan: dict[str, Any]) -> list[str]:
    """The trtexec flags that set a plan's precision: the one spelling of a plan on a command line."""
    args = ["--stronglyTyped"] if plan["strongly_typed"] else []
    args += [f"--{f.lower()}" for f in plan["flags"]]
    if not plan.get("tf32", True):
        args.append("--noTF32")
    if plan.get("f32_layers"):
        spec = ",".join(f"{n}:fp32" for n in plan["f32_layers"])
        if len(spec) > MAX_ARG and plan.get("half_layers") is not None:
            # trtexec: "*" sets every layer not named (it skips int, bool and shape layers), later
            # specs override; the half layers are then bound to fp16 rather than free to choose
            spec = "*:fp32" + "".join(f",{n}:fp16" for n in plan["half_layers"])
        args += ["--precisionConstraints=obey", "--layerPrecisions=" + spec]
    return args


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def _stored_plan(manifest: Manifest) -> dict[str, Any]:
    """The plan a kit (`tensorrt_kit.plan`) or engine (`plan`) manifest records, as stored."""
    extra = manifest.extra
    plan = (extra.get("tensorrt_kit") or {}).get("plan") or extra.get("plan")
    return plan if isinstance(plan, dict) else {}


def half_layers_of(manifest: Manifest) -> list[str] | None:
    """The other float layers of a kit or engine (None in manifests written before they were kept)."""
    half = (manifest.extra.get(FP16_F32) or {}).get("half_layers")
    return list(half) if half is not None else None


def f32_layers_of(manifest: Manifest) -> list[str]:
    """The layers a kit's or engine's FP16 builds keep in f32 (see FP16_F32); the oldest manifests
    carry them in their plan only."""
    owner = manifest.extra.get(FP16_F32)
    if isinstance(owner, dict):
        return list(owner.get("layers") or [])
    return list(_stored_plan(manifest).get("f32_layers") or [])


def recorded_f32(manifest: Manifest) -> dict[str, Any] | None:
    """What a kit's or engine's FP16 builds keep in f32, as FP16_F32 holds it ({"source", "layers",
    "half_layers"}: None where older manifests kept no half list); None where the manifest records no
    list (an export's), so the build chooses them."""
    owner = manifest.extra.get(FP16_F32)
    layers = f32_layers_of(manifest)
    if not isinstance(owner, dict) and not layers:
        return None
    source = owner.get("source") if isinstance(owner, dict) else None     # the oldest: the plan's list only
    return {"source": source or "the recorded plan", "layers": sorted(set(layers)),
            "half_layers": half_layers_of(manifest)}


def plan_record(plan: dict[str, Any], f32: dict[str, Any]) -> dict[str, Any]:
    """`plan` (network_plan's) as a manifest records it beside `extra[FP16_F32] = f32`: without its
    layer lists, which FP16_F32 holds, and with OBEYS where it constrains them. A plan whose lists
    are not FP16_F32's could not be recorded that way: refused."""
    record = {k: v for k, v in plan.items() if k not in _LISTS}
    if plan.get("f32_layers"):
        if (list(plan["f32_layers"]) != sorted(set(f32.get("layers") or ()))
                or ("half_layers" in plan and list(plan["half_layers"]) != sorted(set(f32.get("half_layers") or ())))):
            raise ValueError(f"the plan's layer lists are not the manifest's {FP16_F32}: it cannot be recorded")
        record[OBEYS] = True
    return record


def plan_of(manifest: Manifest) -> dict[str, Any] | None:
    """The plan a kit or engine was planned or built with, as `network_plan` returned it (layer
    lists included, from FP16_F32), for `precision_args`, `trtexec_command` or a reader; None where
    the manifest records none. Manifests written before OBEYS kept the lists in the plan itself."""
    stored = _stored_plan(manifest)
    if not stored:
        return None
    plan = {k: v for k, v in stored.items() if k != OBEYS}
    if stored.get(OBEYS):
        plan["f32_layers"] = f32_layers_of(manifest)
        half = half_layers_of(manifest)
        if half is not None:
            plan["half_layers"] = half
    return plan
