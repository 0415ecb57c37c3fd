"""Checks of a converted Core ML package on any OS: its interface and program against the model
(`validate_spec`), and known reasons an op leaves the Neural Engine (`ane_lint`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignvar_edge.errors import ArtifactError
# one limit and one wording for the ONNX graph's lint and the package's
from alignvar_edge.export.lint import ANE_MAX_DIM, ANE_MAX_RANK, INT_COMPUTE
from alignvar_edge.graph_names import INPUT, SR, token_names

__all__ = ["ANE_UNITS", "ane_lint", "validate_spec"]


def _ops(spec: Any) -> list[Any]:
    out = []
    for f in spec.mlProgram.functions.values():
        for blk in f.block_specializations.values():
            stack = list(blk.operations)
            while stack:
                op = stack.pop(0)
                out.append(op)
                for b in op.blocks:
                    stack.extend(b.operations)
    return out


def validate_spec(spec: Any, config: Any, batch: int) -> dict[str, Any]:
    """Check the package's interface and program; raise ArtifactError on a mismatch."""
    if spec.WhichOneof("Type") != "mlProgram":
        raise ArtifactError("the Core ML model is not an ML Program")
    ins = {i.name: (list(i.type.multiArrayType.shape) if i.type.WhichOneof("Type") == "multiArrayType" else
                    [batch, 3, int(i.type.imageType.height), int(i.type.imageType.width)])
           for i in spec.description.input}
    outs = [o.name for o in spec.description.output]
    # what an app receives, as the package declares it (Core ML's own types: tokens are int32)
    io = {f.name: {"shape": list(f.type.multiArrayType.shape) if f.type.WhichOneof("Type") == "multiArrayType"
                   else ins.get(f.name), "dtype": _feature_dtype(f)}
          for f in [*spec.description.input, *spec.description.output]}
    want_in = {INPUT: [batch, 3, config.lr_size, config.lr_size]}
    want_out = [SR, *token_names(config.num_scales)]
    problems = []
    if ins != want_in:
        problems.append(f"inputs {ins} != {want_in}")
    if sorted(outs) != sorted(want_out):
        problems.append(f"outputs {outs} != {want_out}")
    ops = _ops(spec)
    if not ops:
        problems.append("the program has no operations")
    if problems:
        raise ArtifactError("Core ML spec validation failed: " + "; ".join(problems))
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.type] = counts.get(op.type, 0) + 1
    return {"valid": True, "specification_version": int(spec.specificationVersion),
            "inputs": ins, "outputs": outs, "io": io, "ops": len(ops),
            "op_types": dict(sorted(counts.items(), key=lambda kv: -kv[1]))}


def _feature_dtype(feature: Any) -> str:
    """A feature's type in the package: float32, float16, int32 (multiarrays) or uint8 (an image)."""
    if feature.type.WhichOneof("Type") == "imageType":
        return "uint8"
    arr = feature.type.multiArrayType
    return str(arr.ArrayDataType.Name(arr.dataType)).lower()


# compute units that ask for the Neural Engine
ANE_UNITS = ("CPU_AND_NE", "ALL")


def ane_lint(spec: Any, compute_units: str = "CPU_AND_NE") -> list[dict[str, Any]]:
    """Known reasons an op leaves the Neural Engine, from alignvar_edge/data/ane-notes.json, for
    a package loaded with `compute_units`.

    Apple publishes no op list; on a Mac, MLComputePlan gives the real placement.
    """
    notes = _ane_notes()

    def source(pattern: str) -> str:
        f: dict[str, Any] = next((n for n in notes.get("known_fallbacks", []) if n.get("pattern", "").startswith(pattern)), {})
        return f"{f.get('source', '?')} (confidence {f.get('confidence', '?')})"

    from coremltools.proto import MIL_pb2          # a MIL tensor's dataType (not the I/O feature codes)

    rank, large, gathers, fp32, dilated, ints = [], [], [], [], [], []
    ops = _ops(spec)
    computing = sum(op.type not in ("const", "cast") for op in ops)
    consts = {o.name: op for op in ops if op.type == "const" for o in op.outputs}
    for op in ops:
        for o in op.outputs:
            tt = o.type.tensorType
            dims = [d.constant.size for d in tt.dimensions if d.WhichOneof("dimension") == "constant"]
            if tt.rank > ANE_MAX_RANK:
                rank.append(_op_text(op, o.name))
            if any(d > ANE_MAX_DIM for d in dims):
                large.append(_op_text(op, o.name))
            if tt.dataType == MIL_pb2.FLOAT32 and op.type not in ("const", "cast"):
                fp32.append(_op_text(op, o.name))
            if tt.dataType in _int_types(MIL_pb2) and _computed(op):
                ints.append(_op_text(op, o.name))
        if op.type.startswith("gather"):
            gathers.append(_op_text(op, op.outputs[0].name if op.outputs else "?"))
        if op.type == "conv" and any(d > 1 for d in _const_ints(op, "dilations", consts)):
            dilated.append(_op_text(op, op.outputs[0].name))
    out = []
    if rank:
        out.append({"level": "error", "rule": "rank>5", "ops": rank[:10], "count": len(rank),
                    "why": "Core ML rejects tensors of rank > 5", "source": source("tensor rank > 5")})
    if large:
        out.append({"level": "warning", "rule": "large-dim", "ops": large[:10], "count": len(large),
                    "why": f"an axis longer than {ANE_MAX_DIM}", "source": source("any axis > 16384")})
    if ints:
        rule, why, note = INT_COMPUTE
        out.append({"level": "warning", "rule": rule, "ops": ints[:10], "count": len(ints), "why": why,
                    "source": source(note)})
    if gathers:
        out.append({"level": "info", "rule": "gather", "ops": gathers[:10], "count": len(gathers),
                    "why": "gathers / embedding lookups were observed on the CPU",
                    "source": source("Gather / embedding")})
    if fp32 and compute_units in ANE_UNITS and len(fp32) * 2 > computing:
        # an fp32 program (--precision fp32): nothing of it is the Neural Engine's
        out.append({"level": "warning", "rule": "fp32", "ops": fp32[:10], "count": len(fp32),
                    "why": f"an fp32 program: the ANE computes in fp16 only, so with {compute_units} it runs on "
                           f"the CPU{' or GPU' if compute_units == 'ALL' else ''}; build fp16 (the default) for "
                           "the ANE, or --device CPU_ONLY / CPU_AND_GPU to say where it runs",
                    "source": source("FP32 compute")})
    elif fp32:
        out.append({"level": "info", "rule": "fp32", "ops": fp32[:10], "count": len(fp32),
                    "why": "fp32 tensors: the ANE computes in fp16, fp32 work goes to CPU/GPU",
                    "source": source("FP32 compute")})
    if dilated:
        out.append({"level": "info", "rule": "dilated-conv", "ops": dilated[:10], "count": len(dilated),
                    "why": "dilated convolutions reported off the ANE", "source": source("dilated")})
    return out


def _op_text(op: Any, output: str) -> str:
    """An op as a user finds it: its output's name and its type, as the MIL text of the program
    writes it (`tokens_0 = reduce_argmax`); an output name alone (`var_1361_cast_fp16_cast_uint16`
    of a gather) can read as another op."""
    return f"{output} = {op.type}"


def _int_types(mil: Any) -> set[int]:
    """MIL's integer tensor types (the token argmax's int32, the casts to uint16 after it)."""
    return {getattr(mil, t) for t in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
            if hasattr(mil, t)}


def _computed(op: Any) -> bool:
    """An op the program runs, not a constant (nor a compressed weight's `constexpr_*` unpacking)."""
    return op.type != "const" and not op.type.startswith("constexpr_")


def _const_ints(op: Any, name: str, consts: dict[str, Any]) -> list[int]:
    """Integer values of a constant op input (inline value or a `const` op's `val`)."""
    if name not in op.inputs:
        return []
    vals: list[int] = []
    for arg in op.inputs[name].arguments:
        v = arg.value if arg.HasField("value") else None
        if v is None and arg.name in consts:
            v = consts[arg.name].attributes.get("val")
        if v is not None and v.HasField("immediateValue"):
            vals += list(v.immediateValue.tensor.ints.values)
    return vals


def _ane_notes() -> dict[str, Any]:
    path = Path(__file__).resolve().parents[2] / "data" / "ane-notes.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}
