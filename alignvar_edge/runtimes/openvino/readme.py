"""README.md of an OpenVINO engine directory: how to run its IR with OpenVINO alone, with the
INFERENCE_PRECISION_HINT each file was checked with (OpenVINO's CPU defaults to bf16 on AMX /
AVX512-BF16 hosts and its GPU to f16, which change this model's tokens), the names and shapes read
from the IR files themselves, and the CPU the build ran and checked on."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from alignvar_edge.manifest import Manifest
from alignvar_edge.runtimes.openvino import CACHE_ENV
from alignvar_edge.runtimes.openvino.devices import VIRTUAL_DEVICES, device_kind
from alignvar_edge.runtimes.readme import (INPUT_LINE, README_FILE, checked_line, commands, extra_feed_lines,
                                           file_checks, golden_check, int8_cpu_note, model_notes, whole_images)

__all__ = ["README_FILE", "engine_readme"]


def _io(model: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """([(input name, 'f32[4,3,16,16]')], output names) of an IR."""
    ins = [(i.get_any_name(), f"{i.get_element_type().get_type_name()}{i.get_partial_shape()}")
           for i in model.inputs]
    return ins, [o.get_any_name() for o in model.outputs]


def engine_readme(root: Path, m: Manifest, hints: dict[str, str], host: str) -> str:
    """README.md for the engine in `root` (its IR files written, `m` before its files are hashed).
    `hints`: IR file -> the INFERENCE_PRECISION_HINT it was built and checked with; `host`: the
    build host's CPU features, as one phrase."""
    import openvino as ov
    core = ov.Core()
    files = list(hints)
    rows = ["| file | INFERENCE_PRECISION_HINT | inputs | outputs |", "|---|---|---|---|"]
    io = {}
    for f in files:
        io[f] = _io(core.read_model(str(root / f)))
        ins, outs = io[f]
        rows.append(f"| `{f}` | `{hints[f]}` | " + ", ".join(f"`{n}` {s}" for n, s in ins) + " | "
                    + ", ".join(f"`{n}`" for n in outs) + " |")
    device = str(m.extra.get("device") or "CPU")
    kind = device_kind(device)
    run_on = "CPU" if kind in VIRTUAL_DEVICES else device      # AUTO & co.: shown on the CPU
    lr_name, lr_shape = io[files[0]][0][0]
    shape = tuple(int(d) for d in lr_shape[lr_shape.index("[") + 1:-1].split(","))
    other = [n for n, _ in io[files[0]][0][1:]]
    release = str(m.extra.get("openvino", "?")).split("-")[0]
    lines = [
        f"# OpenVINO engine: {m.model.name}, {m.precision}, built for {device}", "",
        f"Built with OpenVINO {release} on a CPU with {host}; older OpenVINO releases were not checked with it: "
        f"check the one you deploy (`alignvar-edge selftest --engine DIR`). {checked_line(m)}",
        INPUT_LINE, *model_notes(m), "",
        *commands("With alignvar-edge, which sets the hints below itself and checks every file's SHA-256:"),
        f"One call per photo: OpenVINO compiles the engine each time it loads (seconds). Set `{CACHE_ENV}` to a "
        "folder of yours (or pass `--cache-dir DIR`) and every call after the first reads the compiled model "
        "from there; or give `upscale` a folder, which loads the engine once.", "",
        "## With OpenVINO alone", "",
        "Set `INFERENCE_PRECISION_HINT` yourself, as below. Without it OpenVINO computes in its device's "
        "default: bf16 on CPUs with AMX or AVX512-BF16, f16 on GPUs, which changes tokens of this model "
        "(the build checked it with these hints, not with the defaults).", "",
        *rows, "",
    ]
    if kind == "NPU":
        lines += ["The NPU computes in f16 whatever it is told (the hints above are what a CPU or GPU would "
                  "need), so the token path is f16 there too: check its tokens on the NPU with "
                  "`alignvar-edge selftest --engine DIR`.", ""]
    elif kind in VIRTUAL_DEVICES:
        lines += [f"On `{device}`, give each hardware device its hint: `{{\"DEVICE_PROPERTIES\": {{\"CPU\": "
                  "{\"INFERENCE_PRECISION_HINT\": ...}}}`; the snippet below runs on the CPU.", ""]
    if len(files) > 1:
        lines += [f"This engine is split: `{files[0]}` computes the tokens (keep it `f32`), `{files[1]}` the image "
                  f"from tensors `{files[0]}` hands on by name.", ""]
    # the NPU computes f16 whatever it is told; CPU and GPU compute what the hint says
    run = ["core = ov.Core()", "parts = ["]
    run += [f'    core.compile_model("{f}", "{run_on}"'
            + ("" if kind == "NPU" else f', {{"INFERENCE_PRECISION_HINT": "{hints[f]}"}}') + "),"
            for f in files]
    run += ["]"]
    lines += ["```python", "import numpy as np", "import openvino as ov", "", *run,
              f"values = {{\"{lr_name}\": np.random.default_rng(0).random({shape}, dtype=np.float32)}}",
              *extra_feed_lines(m, other, "values"),
              "for part in parts:                 # each part reads its inputs by name",
              "    result = part({i.get_any_name(): values[i.get_any_name()] for i in part.inputs})",
              "    values.update({n: result[o] for o in part.outputs for n in o.get_names()})",
              "sr = values[\"sr\"]                  # RGB in [0, 1]; tokens_k: each scale's codebook indices",
              "```", "",
              "`core.set_property({\"CACHE_DIR\": \"DIR\"})` before compiling keeps the compiled models in DIR "
              "for the next run, as `--cache-dir` does.", ""]
    if m.precision == "int8":
        q = m.quantization or {}
        part = q.get("image_part")             # a split engine: its image part's recipe
        fix = (part if isinstance(part, dict) else q).get("overflow_fix", "?")
        lines += [int8_cpu_note(f"Its int8 ops were calibrated with NNCF's overflow fix {fix} for the build CPU",
                                "rebuild it there (alignvar-edge warns when it loads one on such a CPU)"
                                if fix == "DISABLE" else None)]
        if len(files) > 1:
            lines += [f"`{files[1]}`'s float ops may take the fast half of the CPU it runs on (`bf16` with AMX "
                      "or AVX512-BF16, else `f32`): they cannot change a token."]
        lines.append("")
    lines += [*whole_images(m), *golden_check(m, "openvino", m.precision), *file_checks()]
    return "\n".join(lines)
