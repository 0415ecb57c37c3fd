"""What to build: TensorRT builder flags per version and precision (the one place that knows about
TRT 10 vs 11), the equivalent trtexec command and the engine directory's file names. Pure data and
arithmetic: no TensorRT import, so the build kit uses it on a machine without TensorRT.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alignvar_edge import recipes
from alignvar_edge.errors import InputError

__all__ = ["CACHE", "ENGINE", "ONNX", "SCRIPT_FILE", "TRTEXEC_FILE", "network_plan",
           "trt_major", "trtexec_command"]

ENGINE, ONNX, CACHE = "model.engine", "model.onnx", "alignvar-timing.cache"
TRTEXEC_FILE, SCRIPT_FILE = "trtexec.txt", "build_on_device.sh"


def network_plan(trt_major: int, precision: str, artifact_precision: str,
                 f32_layers: Iterable[str] = ()) -> dict[str, Any]:
    """{"strongly_typed": bool, "flags": [builder flag names]} for this TensorRT major version;
    a weakly typed fp16 / int8 plan also carries "f32_layers" (the half policy's f32 groups, by
    ONNX node name, which the ONNX parser gives its layers), built with obeyed precision constraints.
    Strongly typed plans take per-layer precision from the ONNX's own types (the fp16 artifact)."""
    recipe = recipes.recipe("tensorrt", precision)      # an unknown precision: one line naming the known
    if recipe.needs_quantize and artifact_precision != precision:
        raise InputError(f"TensorRT {precision.upper()} uses explicit Q/DQ: build from the output of "
                         f"`{recipe.quantize_command()}`")
    if artifact_precision not in ("fp32", precision):
        # the graph's own Q/DQ or fp16 types would contradict the flags: one precision per engine
        raise InputError(f"this export is {artifact_precision} (its graph carries that precision): build it "
                         f"with --precision {artifact_precision}, or build {precision} from the fp32 export")
    if trt_major >= 11:
        # strongly typed: the graph's own types decide; fp16 must already be in the ONNX
        if precision == "fp16" and artifact_precision != "fp16":
            raise InputError("TensorRT 11 builds strongly typed networks (no FP16 flag): build "
                             "from an fp16 export (`alignvar-edge quantize --precision fp16 "
                             "--target tensorrt`)")
        return {"strongly_typed": True, "flags": []}
    if precision == "fp16" and artifact_precision == "fp16":
        return {"strongly_typed": True, "flags": []}
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
    plan: dict[str, Any] = {"strongly_typed": False, "flags": flags}
    if f32_layers and "FP16" in flags:
        plan["f32_layers"] = sorted(set(f32_layers))
    return plan


def trtexec_command(plan: dict[str, Any], onnx: str = ONNX, engine: str = ENGINE,
                    cache: str = CACHE, workspace_mib: int | None = None, opt_level: int = 3) -> list[str]:
    """The trtexec invocation equivalent to our build."""
    cmd = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--timingCacheFile={cache}",
           f"--builderOptimizationLevel={opt_level}"]
    if plan["strongly_typed"]:
        cmd.append("--stronglyTyped")
    cmd += [f"--{f.lower()}" for f in plan["flags"]]
    if plan.get("f32_layers"):
        cmd += ["--precisionConstraints=obey",
                "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in plan["f32_layers"])]
    if workspace_mib:
        cmd.append(f"--memPoolSize=workspace:{workspace_mib}M")
    return cmd


def trt_major(version: str) -> int:
    return int(version.split(".")[0])
