"""`alignvar-edge inspect DIR`: what an exported artifact holds, whether it is intact, where it runs.

Hashes are verified first (a truncated or edited file raises ArtifactError); then each graph is
parsed for its op histogram, I/O, parameter count and size on disk, and linted per target.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from alignvar_edge.errors import ArtifactError
from alignvar_edge.export.lint import TARGETS, Finding, lint_model
from alignvar_edge.extras import pip_install, requirement_of
from alignvar_edge.manifest import (MANIFEST_FILE, Manifest, db_text, input_contract, listed_bytes, listed_file,
                                    load_verified_parts, prune_text, token_share, tools_text, unverified_caution)
from alignvar_edge.name_text import shell_word
from alignvar_edge.recipes import BACKENDS
from alignvar_edge.runtimes.tensorrt.plan import FP16_F32, plan_of

__all__ = ["format_inspection", "inspect_artifact"]


def _graph_summary(root: Path, m: Manifest, entry: dict[str, Any]) -> dict[str, Any]:
    path = listed_file(root, m, entry["file"])
    size = sum(p.stat().st_size for p in root.iterdir() if p.name.startswith(entry["file"]))
    try:
        import onnx
    except ModuleNotFoundError:
        # a device install (a Jetson given a TensorRT kit): the files are verified and the manifest
        # says the I/O; only the parse and the lints need the ONNX tool chain
        return {"file": entry["file"], "inputs": entry["inputs"], "outputs": entry["outputs"], "nodes": None,
                "ops": None, "initializer_values": None, "bytes_on_disk": size, "opset": None, "lint": None,
                "note": f"ops and lints need the onnx package: {pip_install([requirement_of('onnx')])}"}
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ArtifactError(f"{path} cannot be parsed as ONNX ({e}); re-export") from e
    g = model.graph
    params = 0
    for t in g.initializer:
        n = 1
        for d in t.dims:
            n *= d
        params += n
    try:
        findings = lint_model(model, base_dir=path.parent)
    except Exception as e:  # noqa: BLE001 - external data whose offsets/lengths do not fit its file
        raise ArtifactError(f"{path} cannot be read with its external data ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); re-export") from e
    return {
        "file": entry["file"], "inputs": entry["inputs"], "outputs": entry["outputs"],
        "nodes": len(g.node), "ops": dict(Counter(n.op_type for n in g.node).most_common()),
        "initializer_values": params, "bytes_on_disk": size,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "lint": [f.to_json() for f in findings],
    }


def inspect_artifact(artifact: str | os.PathLike[str]) -> dict[str, Any]:
    """Verified summary of an exported ONNX artifact directory (raises ArtifactError if broken)."""
    root = Path(artifact)
    m, parts = load_verified_parts(root)
    if m.kind == "engine":
        return _engine_info(root, m)
    if m.kind == "deploy":
        return _deploy_info(root, m, parts)
    if m.kind != "onnx":
        raise ArtifactError(f"'{root}' is an artifact of kind '{m.kind}'; inspect reads exports, engines and "
                            "deploy outputs")
    graphs = {name: _graph_summary(root, m, entry) for name, entry in m.graphs.items()}
    return {
        "verdict": f"OK: {len(m.files)} file(s) listed in the manifest, each inside the artifact directory and "
                   "matching its SHA-256; no unlisted file, every graph and external-data file listed"
                   + _unhashed_clause(root),
        **_common_info(root, m), "batch": m.extra.get("batch"), "graphs": graphs,
        # a TensorRT build kit: the engine it builds on the device has its own precision
        "kit": {"backend": "tensorrt", "precision": m.tensorrt_kit.get("precision")} if m.tensorrt_kit else None,
    }


def _unhashed_clause(root: Path) -> str:
    """What the verdict must add where the manifest records no content hash: a hand edit that also
    drops the hash cannot be told from an older manifest, so it vouches for the files only."""
    caution = unverified_caution(root)
    return f"; but {caution}" if caution else ""


def _deploy_info(root: Path, m: Manifest, parts: dict[str, Manifest]) -> dict[str, Any]:
    """A `deploy` output verified whole (`load_verified_parts`: every file it lists, report.json
    included, and each artifact inside it against its own manifest, `parts`, by path inside `root`):
    what it holds and what its bench found."""
    unverified = [rel for rel in parts if unverified_caution(root / rel)]
    # the artifacts inside are made by the deploy, which makes them again
    caution = unverified_caution(root / unverified[0], deploy=root) if unverified else None
    # the bench labels each engine by its step's name; its folder is the step's path
    steps = [s for s in m.extra.get("steps") or [] if isinstance(s, dict)]
    label = {s["path"]: _step_name(s) for s in steps if s.get("path")}
    return {
        "verdict": f"{_deploy_outcome(steps)}: deploy output, every file listed in {MANIFEST_FILE} matching its "
                   f"SHA-256 (report.json included), and each of the {len(parts)} artifact(s) inside it against its own {MANIFEST_FILE} "
                   "(its content hash and files)"
                   + _unhashed_clause(root) + (f"; but in {', '.join(unverified)}, {caution}" if caution else ""),
        "kind": "deploy", "path": str(root), "precision": m.precision, "model": _model_info(m),
        "created": m.created, "tools": m.tools, "files_verified": len(m.files), "bytes_on_disk": listed_bytes(root, m),
        "artifacts": {rel: _part_info(pm, (m.parity or {}).get(label.get(rel, "")), rel in unverified)
                      for rel, pm in parts.items()},
        "steps": steps,
    }


def _step_name(step: dict[str, Any]) -> str:
    """A deploy step's name, as its engine folder and the bench label it: `onnxruntime-fp32`."""
    return f"{step.get('target')}-{step.get('built_precision')}"


def _deploy_outcome(steps: list[dict[str, Any]]) -> str:
    """The verdict's first word: OK, or INCOMPLETE where steps failed (the deploy exited 1): its
    files may be intact, but it lacks engines that were asked for."""
    failed = [_step_name(s) for s in steps if s.get("status") == "failed"]
    if not failed:
        return "OK"
    which = "1 step" if len(failed) == 1 else f"{len(failed)} steps"
    return (f"INCOMPLETE: {which} of the deploy failed ({', '.join(failed)}, "
            f"{'its reason' if len(failed) == 1 else 'their reasons'} below); what it holds is intact")


def _part_info(m: Manifest, bench: Any, unverified: bool) -> dict[str, Any]:
    """One artifact of a deploy output: what it is, and for an engine what the deploy's bench found."""
    kit = m.tensorrt_kit
    return {"kind": m.kind, "backend": m.backend, "graph": m.graph,
            "precision": kit.get("precision") if kit else m.precision, "tensorrt_kit": bool(kit),
            "bench": bench if isinstance(bench, dict) else None, "manifest_unverified": unverified}


def _engine_info(root: Path, m: Manifest) -> dict[str, Any]:
    """An engine directory: what it was built from and checked against, what it computes in."""
    from alignvar_edge.runtimes import get_backend         # its module, not its runtime
    from alignvar_edge.runtimes.openvino.backend import half_checked_in_f32
    extra = m.extra
    return {
        "verdict": f"OK: engine ({m.backend}), every file listed in manifest.json matching its SHA-256"
                   + _unhashed_clause(root),
        **_common_info(root, m), "kind": "engine", "backend": m.backend,
        "device": extra.get("device") or extra.get("compute_units"),      # Core ML: its compute units
        # an engine of any batch (torch eager) says so and how many tiles it runs per call
        "batch": (f"any ({extra['tiles_per_call']} tiles per call by default)" if extra.get("tiles_per_call")
                  else m.static_batch),
        "engine_files": dict(extra.get("files") or {}),
        "built_from": (extra.get("source") or {}).get("path"),
        "split": extra.get("split"), "half_ladder": extra.get("half_ladder"), "tried": tried_rungs(m),
        "half_checked_in_f32": half_checked_in_f32(m),
        "ir_rewrites": extra.get("ir_rewrites"),
        # what it was made for and what was checked: each backend's own words
        "target": get_backend(m.backend).describe(m) if m.backend in BACKENDS else [],
        "graphs": {},
    }


def _model_info(m: Manifest) -> dict[str, Any]:
    return {"name": m.model.name, "source": m.source.describe(),
            # the record that proves which checkpoint it was (path and file hashes) and the
            # hash of the weights themselves: the sentence alone names a path, not its content
            "provenance": m.source.to_json(), "weights_sha256": m.model.weights_sha256,
            "scale_schedule": list(m.model.scale_schedule) if m.model.scale_schedule else None,
            "redacted": m.redacted}


def _common_info(root: Path, m: Manifest) -> dict[str, Any]:
    """What exports and engines both show: the model, parity, files, input contract, precision."""
    return {
        "path": str(root), "graph": m.graph, "precision": m.precision, "opset": m.opset,
        "model": _model_info(m),
        "parameters": (m.model.parameters or {}).get("inference"), "parity": m.parity, "tools": m.tools,
        "created": m.created, "files_verified": len(m.files),
        "bytes_on_disk": listed_bytes(root, m),
        "input_contract": input_contract(m), "compute_precision": compute_precision(m),
        "graph_facts": m.graph_facts, "calibration": m.calibration, "quantization": m.quantization,
    }


def tried_rungs(m: Manifest) -> list[str]:
    """One line per rung a build tried (half precision or int8 ladder), the kept one last."""
    half, int8 = m.extra.get("half_ladder") or [], (m.quantization or {}).get("ladder") or []
    lines = [f"{r['rung']}: tokens {r['token_agreement']:.2%}, SR PSNR {db_text(r['psnr_db'])} dB"
             + (f"; not kept: {r['refused']}" if r.get("refused") else "") for r in half]
    # an int8 ladder moves on only while a rung misses the token or the image target
    lines += [f"{r['rung']}: tokens {r['token_agreement']:.2%}, SR PSNR {db_text(r['psnr_db'])} dB"
              + ("; not kept: below the token or image target" if i < len(int8) - 1 else "; kept")
              + (f", short of the selftest gate ({r['short_of_gate']}): selftest will fail it; build fp16 "
                 "or fp32 for a faithful image" if r.get("short_of_gate") else "")
              for i, r in enumerate(int8)]
    return lines


def compute_precision(m: Manifest) -> dict[str, Any] | None:
    """The compute precision per half-policy group an artifact or engine records: an fp16 search's
    policy, a half engine's measured per-group precision, or a TensorRT plan's f32 layers."""
    extra = m.extra
    policy = (m.quantization or {}).get("half_policy")
    if policy:
        return dict(policy.get("per_group") or {})
    for key in ("compute_precision", "compute_precision_per_group"):
        if isinstance(extra.get(key), dict):
            return dict(extra[key])
    plan = plan_of(m) or {}             # its layer lists from extra.fp16_f32_layers (or an older plan's own)
    if plan.get("f32_layers"):
        why = (extra.get(FP16_F32) or {}).get("source")
        return {"f32 layers under FP16 (--layerPrecisions)": f"{len(plan['f32_layers'])}" + (f": {why}" if why else ""),
                "TF32": "off" if plan.get("tf32") is False else "TensorRT's default (on from Ampere)"}
    return None


def _parity_line(p: Any, quantization: Any = None) -> str | None:
    """One line for either parity record: an export's (vs PyTorch, per scale) or a quantize
    output's (vs the fp32 engine, on the validation split)."""
    if not isinstance(p, dict):
        return None
    tokens = p.get("tokens")
    if isinstance(tokens, dict) and "per_scale" in tokens:
        per = " ".join(token_share(a) for a in tokens["per_scale"])
        # which photographs: a user's own --images folder or the bundled held-out samples
        where = f" of {p['tiles_source']} (seed {p.get('tiles_seed', 0)})" if p.get("tiles_source") else ""
        return (f"{p.get('tiles')} tiles{where} vs {p.get('reference', 'PyTorch')}: tokens per scale [{per}], "
                f"SR PSNR {db_text(p.get('psnr_db'))} dB, "
                f"max |diff| {p.get('max_abs_diff', float('nan')):.1e}")
    from alignvar_edge.quantize.records import validation_line
    return validation_line(p, (quantization or {}).get("target"))


def _graph_facts_line(facts: dict[str, Any]) -> str | None:
    """Attention form (with its nodes per call) and token pruning, where the manifest records them."""
    parts = []
    a = facts.get("attention")
    if isinstance(a, dict):
        parts.append(f"{a.get('form')} attention ({a.get('nodes_per_call')} nodes per call, {a.get('calls')} calls)")
    if facts.get("prune"):
        parts.append(f"token pruning {prune_text(facts['prune'])} (last scales, finest last)")
    return "; ".join(parts) or None


def _source_lines(model: dict[str, Any]) -> list[str]:
    """Where the weights came from, with the hashes a user compares against their checkpoint
    (`sha256sum model.safetensors`) and the hash of the weights as loaded."""
    lines = [f"source     {model.get('source') or 'unknown'}"]
    sha = (model.get("provenance") or {}).get("sha256") or {}
    lines += [f"sha256     {f} {h}" for f, h in sorted(sha.items())]
    if model.get("weights_sha256"):
        lines.append(f"sha256     weights as loaded (state dict) {model['weights_sha256']}")
    if model.get("redacted"):
        lines.append("redacted   built with --redact: the checkpoint by its folder name and SHA-256s, the calibration "
                     "set by its hash and counts; no folder of the build host, no calibration file names")
    return lines


def _shape(io: dict[str, Any]) -> str:
    return f"{io['name']} {io['dtype']}[{','.join(str(d) for d in io['shape'])}]"


# what each OpenVINO IR rewrite does, as `inspect` names it (runtimes/openvino/rewrite.py)
_REWRITES = {"argmax": "argmax as reductions (exact)",
             "group_norm": "GroupNorm channels-last (off the token path)",
             "upsample_deconv": "x2 upsampling + 3x3 conv as one transposed conv (off the token path)"}


def format_inspection(info: dict[str, Any]) -> str:
    if info.get("kind") == "deploy":
        return _deploy_text(info)
    what = (f"{info['backend']} engine, {info['precision']}, device {info['device']}" if info.get("kind") == "engine"
            else f"{info['graph']} graph, {info['precision']}, opset {info['opset']}")
    if info.get("kit"):                 # the graph's precision is not the engine's (an fp16 kit holds fp32 ONNX)
        what = (f"TensorRT build kit for an {info['kit']['precision']} engine (built on the device from the "
                f"{info['graph']} graph in {info['precision']}), opset {info['opset']}")
    lines = [
        f"verdict    {info['verdict']}",
        f"artifact   {info['path']}  ({what}, batch {info['batch']})",
        f"model      {info['model']['name']}  scales {info['model']['scale_schedule']}  "
        f"parameters (inference) {info['parameters']:,}" if info["parameters"] else
        f"model      {info['model']['name']}",
        *_source_lines(info["model"]),
        f"files      {info['files_verified']} verified (SHA-256), {info['bytes_on_disk'] / 1e6:.2f} MB on disk",
    ]
    c = info.get("input_contract")
    if c:
        lines.append(f"input      {c['name']} {c['dtype']} {c['layout']} {c['shape']}, {c['color_order']} in "
                     f"[{c['range'][0]:g}, {c['range'][1]:g}]; tile {c['tile']} px, overlap {c['overlap']}, "
                     f"scale x{c['scale']}, batch {c['batch'] or 'dynamic'}")
        if c.get("noise"):         # VARSR's refiner: the fixed draw every engine feeds
            n = c["noise"]
            lines.append(f"input      {n['name']} {n['dtype']} {n['shape']}, the refiner's fixed draw: {n['values']}")
        if c.get("color_fix"):
            lines.append(f"colour fix {c['color_fix']}")
    facts = _graph_facts_line(info.get("graph_facts") or {})
    if facts:
        lines.append(f"graph      {facts}")
    parity = _parity_line(info.get("parity"), info.get("quantization"))
    if parity:
        lines.append(f"parity     {parity}")
    # an engine built from a quantize output: that step's fidelity against fp32, carried over
    quantized = _parity_line((info.get("parity") or {}).get("quantize"), info.get("quantization"))
    if quantized:
        lines.append(f"quantize   {quantized}")
    # a quantized artifact's or int8 engine's record: the calibration set and what stayed float
    from alignvar_edge.quantize.records import calibration_line, float_lines
    calib = calibration_line(info.get("calibration"))
    if calib:
        lines.append(f"calib      {calib}")
    q = info.get("quantization") or {}
    if q.get("format") == "onnx-qdq":
        lines += [f"float      {line.removeprefix('float ')}" for line in float_lines(q)]
    cp = info.get("compute_precision")
    if cp:
        lines.append("compute    " + ", ".join(f"{g} {_counts(v)}" for g, v in cp.items()))
    split = info.get("split")
    if split:
        image = split.get("image_precision")
        if split.get("image_int8"):          # NNCF's int8 ops, the rest under the part's hint
            image = f"int8 + {image}"
        if info.get("half_checked_in_f32"):  # the hint the part asks for, not what its check computed
            image = f"{image} asked (f32 computed where built)"
        lines.append(f"split      token path {split.get('token_precision')} ({split.get('token_nodes')} nodes), "
                     f"image suffix {image} ({split.get('image_nodes')} nodes), "
                     f"handing on {', '.join(split.get('boundary') or [])}")
    lines += [f"tried      {t}" for t in info.get("tried") or []]
    rewrites = {k: v for k, v in (info.get("ir_rewrites") or {}).items() if v}
    if rewrites:
        lines.append("rewrites   " + ", ".join(f"{_REWRITES.get(k, k)} x{n}" for k, n in rewrites.items()))
    lines += [f"target     {t}" for t in info.get("target") or []]
    if info.get("engine_files"):
        lines.append("engine     " + " + ".join(info["engine_files"].values())
                     + (f"; built from {info['built_from']}" if info.get("built_from") else ""))
    lines.append("tools      " + tools_text(info["tools"]))
    for name, g in info["graphs"].items():
        lines.append("")
        if g["nodes"] is None:
            lines.append(f"== {g['file']}: {g['bytes_on_disk'] / 1e6:.2f} MB; {g['note']}")
            lines.append("   inputs   " + "; ".join(_shape(i) for i in g["inputs"]))
            lines.append("   outputs  " + "; ".join(_shape(o) for o in g["outputs"]))
            continue
        lines.append(f"== {g['file']}: {g['nodes']} nodes, {g['initializer_values']:,} initializer values, "
                     f"{g['bytes_on_disk'] / 1e6:.2f} MB")
        lines.append("   inputs   " + "; ".join(_shape(i) for i in g["inputs"]))
        lines.append("   outputs  " + "; ".join(_shape(o) for o in g["outputs"]))
        lines.append("   ops      " + ", ".join(f"{op} {n}" for op, n in g["ops"].items()))
        for target in TARGETS:
            found = [f for f in g["lint"] if f["target"] == target]
            worst = next((s for s in ("error", "warning", "info") if any(f["severity"] == s for f in found)), "ok")
            lines.append(f"   lint {target}: {worst}")
            lines += [f"     {Finding(**f).line()}" for f in found]
    if any(g["lint"] is not None for g in info["graphs"].values()):
        lines.append("")
        lines.append("lint is advisory (published operator tables and notes, alignvar_edge/data/); "
                     "build on the target to be sure")
    return "\n".join(lines)


def _deploy_text(info: dict[str, Any]) -> str:
    """A deploy output: the verdict, the model, one line per artifact inside it, the steps it skipped
    or failed (their reasons are the plan's)."""
    lines = [f"verdict    {info['verdict']}",
             f"artifact   {info['path']}  (deploy output, precisions {info['precision']})",
             f"model      {info['model']['name']}", *_source_lines(info["model"]),
             f"files      {info['files_verified']} verified (SHA-256), {info['bytes_on_disk'] / 1e6:.2f} MB on disk"]
    for rel, part in info["artifacts"].items():
        lines.append(f"contains   {rel}  ({_part_words(part)})" + _bench_words(part.get("bench"))
                     + ("; its manifest is unverified" if part["manifest_unverified"] else ""))
    lines += [f"step       {_step_name(s)} {s.get('status')}: {s.get('detail')}"
              for s in info["steps"] if s.get("status") in ("skipped", "failed")]
    lines.append("tools      " + tools_text(info["tools"]))
    if info["artifacts"]:
        first = shell_word(os.path.join(info["path"], next(iter(info["artifacts"]))))
        lines.append(f"details    of each folder above: alignvar-edge inspect {first} (and so on); the benchmark: "
                     f"{os.path.join(info['path'], 'report.md')}")
    return "\n".join(lines)


def _part_words(part: dict[str, Any]) -> str:
    if part["tensorrt_kit"]:
        return f"TensorRT build kit, {part['precision']}"
    if part["kind"] == "engine":
        return f"{part['backend']} engine, {part['precision']}"
    return f"{part['graph']} graph, {part['precision']}"


def _bench_words(bench: dict[str, Any] | None) -> str:
    """What the deploy's bench found for an engine: its tokens against PyTorch and the gate, or its
    status where it did not run (unavailable where the deploy ran, failed)."""
    if not bench:
        return ""
    if bench.get("status") != "ok":
        return f": the deploy's bench: {bench.get('status')}"
    tokens = bench.get("token_agreement")
    meets = bench.get("meets_gate")
    gate = "meets the gate" if meets is True else "misses the gate" if meets is False else ""
    return (f": bench tokens {tokens:.2%} vs PyTorch" if isinstance(tokens, (int, float)) else ": benched") + (
        f", {gate}" if gate else "")


def _counts(v: Any) -> str:
    """A group's precision: 'bf16' or, measured per op, 'bf16 36 / f32 3'."""
    return " / ".join(f"{p} {n}" for p, n in v.items()) if isinstance(v, dict) else str(v)
