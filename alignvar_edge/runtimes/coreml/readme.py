"""README.md of a Core ML engine directory: what an app developer needs to use the package without
reading our manifest, with this package's own names, shapes, dtypes and numbers (read from the
package's spec and the manifest at build time, never from a template of another model)."""
from __future__ import annotations

from typing import Any

from alignvar_edge.graph_names import INPUT, SR, token_scale
from alignvar_edge.manifest import Manifest, db_text
from alignvar_edge.recipes import recipe
from alignvar_edge.extras import device_install
from alignvar_edge.runtimes.readme import README_FILE, file_checks, golden_check, whole_images

# a build whose Linux proxy misses the selftest gate: the build's output and the README say it
SHORT_OF_GATE = ("the build-time proxy is short of the selftest gate ({gate}): selftest on a Mac will likely fail "
                 "this package; build a higher precision (fp16, or more palette bits) for a faithful image")

__all__ = ["README_FILE", "SHORT_OF_GATE", "from_apple_image", "package_readme"]

# a deployment target and the releases of the other OS that share its Core ML version (the
# --target-os names): a Mac developer reads "iOS17" as no statement about their macOS
_SAME_CORE_ML = {"iOS16": "macOS 13", "iOS17": "macOS 14", "iOS18": "macOS 15",
                 "macOS13": "iOS 16", "macOS14": "iOS 17", "macOS15": "iOS 18"}
_SWIFT_UNITS = {"CPU_AND_NE": ".cpuAndNeuralEngine", "ALL": ".all", "CPU_ONLY": ".cpuOnly",
                "CPU_AND_GPU": ".cpuAndGPU"}


def _io_rows(io: dict[str, dict[str, Any]], inputs: list[str], image: bool, scales: list[int],
             tile: int, sr_tile: int) -> list[str]:
    rows = ["| name | in/out | Core ML type | shape | values |", "|---|---|---|---|---|"]
    for name, f in io.items():
        shape = "(" + ", ".join(map(str, f["shape"])) + ")"
        if name in inputs and image:
            rows.append(f"| `{name}` | input | image, RGB, 8 bits per channel (`CVPixelBuffer` / `CGImage`) | "
                        f"{tile}x{tile} pixels | 0..255, scaled by 1/255 inside the model |")
        elif name in inputs:
            rows.append(f"| `{name}` | input | MLMultiArray {f['dtype']} | {shape} NCHW | RGB planes in [0, 1] |")
        elif name == SR:
            rows.append(f"| `{name}` | output | MLMultiArray {f['dtype']} | {shape} NCHW, {sr_tile}x{sr_tile} "
                        "per tile | RGB in [0, 1] (clip before converting to 8 bits) |")
        else:
            k = token_scale(name)
            assert k is not None, name          # validate_spec refuses any other output
            p = scales[k] if k < len(scales) else 0
            rows.append(f"| `{name}` | output | MLMultiArray {f['dtype']} | {shape} | codebook indices of "
                        f"scale {k + 1}/{len(scales)} ({p}x{p}, row-major), for checks against the golden outputs |")
    return rows


def _also(target: str) -> str:
    """What else the target loads on, and what to build for an older OS."""
    other = _SAME_CORE_ML.get(target)
    if other is None:
        return ""
    os_name = target.rstrip("0123456789")
    older = f"{os_name}{min(int(t[len(os_name):]) for t in _SAME_CORE_ML if t.startswith(os_name))}"
    return (f": loads on {os_name} {target[len(os_name):]} and {other} or later; an older OS refuses it"
            + (f", so build with `--target-os {older}` for one" if target != older else ""))


def from_apple_image(image_input: bool) -> list[str]:
    """The "From a UIImage / CGImage" section: how an app gets the samples that "Whole images" starts
    from out of Apple's image types, and its result back into one, as `upscale` treats a file
    (images/read.py: turned upright, an RGB file's samples as stored, its ICC profile written back);
    with `image_input`, also what the package's image input does with alpha and colour."""
    lines = [
        "## From a UIImage / CGImage", "",
        "`alignvar-edge upscale` turns a file upright by its EXIF orientation, gives the model an RGB file's "
        "samples as stored, not converted to sRGB, and writes the file's ICC profile back on the result. "
        "To give the model the same:", "",
        "- Upright: `UIImage.cgImage` holds the pixels unturned: apply `UIImage.imageOrientation` (a rotation or "
        "mirror in the transform of the `CGContext` you draw the image into).",
        "- Colour: make that `CGContext` with the image's own `colorSpace` (where its model is RGB), not a fixed "
        "sRGB one, which would convert a Display P3 photo's samples; make the result's `CGImage` in the same colour space.",
        "- Alpha: an 8-bit RGBA `CGContext` holds premultiplied alpha (`CGImageAlphaInfo.premultipliedLast`), "
        "while the steps of \"Whole images\" take straight alpha: un-premultiply "
        "(`vImageUnpremultiplyData_RGBA8888`) before step 1, and premultiply the result "
        "(`vImagePremultiplyData_RGBA8888`) before making a `CGImage` of it.",
    ]
    if image_input:
        lines.append(
            "- The image input (`--image-input`): Core ML gives the model each tile's R, G and B (0..255) and "
            "drops its alpha, without un-premultiplying it or filling the colour under transparency: cut the tiles "
            "from the image after step 1 (straight alpha, colour filled). Fill `CVPixelBuffer`s "
            "(`kCVPixelFormatType_32BGRA`) with them rather than passing `CGImage`s, which Core ML converts to the "
            "model's pixels by rules this kit has not checked (colour spaces included).")
    return [*lines, ""]


def package_readme(m: Manifest, io: dict[str, dict[str, Any]], package: str) -> str:
    """README.md for an engine directory holding `package` and described by `m` (before its
    files are hashed); `io` is `validate_spec`'s features of the package."""
    ex, c = m.extra, m.input_contract or {}
    image = bool(ex.get("image_input"))
    tile, scale, batch = int(c["tile"]), int(c["scale"]), int(ex["batch"])
    sr_tile = tile * scale
    cfg = m.config or {}
    scales = [int(p) for p in cfg.get("patch_nums") or []]
    units, target, precision = ex["compute_units"], ex["deployment_target"], m.precision
    inputs = [n for n in io if n == INPUT]
    gate = recipe("coreml", precision)
    per_group = ", ".join(f"{g} {p}" for g, p in sorted((ex.get("compute_precision_per_group") or {}).items()))
    lint = ex.get("ane_lint") or []
    lint_lines = [f"- {f['level']}: `{f['rule']}` x{f['count']} ({f['why']}), e.g. "
                  + ", ".join(f"`{o}`" for o in f["ops"][:3]) for f in lint] or ["- nothing flagged"]
    golden = ex.get("golden") or None
    parity = m.parity or {}
    proxy = (f"tokens {parity['tokens']['overall']:.2%}, SR PSNR {db_text(parity['psnr_db'])} dB; "
             f"{parity.get('reference', 'proxy')}." if isinstance(parity.get("tokens"), dict) else
             "none recorded for this precision.")
    if parity.get("short_of_gate"):
        proxy += f" Warning: {SHORT_OF_GATE.format(gate=parity['short_of_gate'])}."
    name = m.model.display_name      # the checkpoint as given, as the other engines' READMEs name it
    lr_swift = ("let out = try sr.prediction(input: AlignVARInput(lrWith: cgTile))   "
                f"// a {tile}x{tile} CGImage; gray is converted to RGB, alpha is ignored"
                if image else
                f"let lr = try MLMultiArray(shape: [{batch}, 3, {tile}, {tile}], dataType: .float32)\n"
                f"// lr[[b, c, y, x] as [NSNumber]] = NSNumber(value: Float(pixel) / 255)   (c: 0 R, 1 G, 2 B)\n"
                "let out = try sr.prediction(lr: lr)")
    lr_py = (f"lr = Image.open('tile.png').convert('RGB')   # a {tile}x{tile} RGB PIL image" if image else
             f"lr = np.random.rand({batch}, 3, {tile}, {tile}).astype(np.float32)   # RGB planes in [0, 1]")
    files = ["| file | what |", "|---|---|",
             f"| `{package}` | the Core ML model (ML Program); drag it into Xcode |",
             "| `manifest.json` | everything on this page as data, and the SHA-256 of every file |"]
    if golden:
        files.append(f"| `{golden['file']}` | {golden['tiles']} LR tiles with the reference ({golden['reference']}) SR "
                     "tiles and tokens (below: Check it without alignvar-edge) |")
    files.append(f"| `{README_FILE}` | this page |")
    return "\n".join([
        f"# AlignVAR x{scale} super-resolution for Core ML: {name}, {precision}",
        "",
        f"Built by alignvar-edge {m.tools.get('alignvar-edge', '?')} with coremltools "
        f"{m.tools.get('coremltools', '?')}. Minimum deployment target {target} (ML Program{_also(target)}). Built for the "
        f"compute units `{units}` (Swift `{_SWIFT_UNITS.get(units, units)}`), {precision} "
        f"({'weights compressed, ' if (m.quantization or {}).get('weights_only') else ''}computing in "
        f"{ex.get('compute_precision', precision)}; per group: {per_group}).",
        "",
        "## Files",
        "",
        *files,
        "",
        *file_checks(),
        "## Inputs and outputs",
        "",
        *_io_rows(io, inputs, image, scales, tile, sr_tile),
        "",
        (f"One prediction takes one {tile}x{tile} tile." if image or batch == 1 else
         f"One prediction takes {batch} tiles (the last batch of an image: Whole images, below).")
        + " Core ML may return arrays with padded strides: read them through `MLShapedArray<Float>(out.sr)` "
        "(or `strides`), not the raw data pointer. The same facts are in the package's user-defined "
        "metadata (keys `com.alignvar-edge.*`), which Xcode shows.",
        "",
        *whole_images(m, 1 if image else batch),
        *from_apple_image(image),
        "## Swift",
        "",
        "Rename `model.mlpackage` to the class name you want (e.g. `AlignVAR.mlpackage`) and add it to the "
        "target; Xcode generates `AlignVAR`, `AlignVARInput` and `AlignVAROutput`.",
        "",
        "```swift",
        "import CoreML",
        "",
        "let config = MLModelConfiguration()",
        f"config.computeUnits = {_SWIFT_UNITS.get(units, '.all')}",
        "let sr = try AlignVAR(configuration: config)",
        lr_swift,
        f"let srTiles = MLShapedArray<Float>(out.sr)          // ({1 if image else batch}, 3, {sr_tile}, {sr_tile})",
        "let tokens0 = MLShapedArray<Int32>(out.tokens_0)    // only for checks against the golden outputs",
        "```",
        "",
        "## Python on a Mac",
        "",
        "```python",
        "import coremltools as ct",
        "import numpy as np" if not image else "from PIL import Image",
        "",
        f"model = ct.models.MLModel('{package}', compute_units=ct.ComputeUnit.{units})",
        lr_py,
        "out = model.predict({'lr': lr})",
        f"out['sr'].shape    # ({1 if image else batch}, 3, {sr_tile}, {sr_tile}), float32 RGB in [0, 1]",
        "```",
        "",
        f"Whole images with tiling and blending done for you ({device_install('device,coreml')}):",
        "`alignvar_edge.load('DIR').upscale(image)` in Python, or "
        "`alignvar-edge upscale photo.png photo-x4.png --engine DIR`.",
        "",
        "## Check it on the Mac",
        "",
        "`alignvar-edge selftest --engine DIR` (macOS, with alignvar-edge installed as above) runs "
        + (f"the {golden['tiles']} golden tiles" if golden else "the golden tiles (this directory has none: "
           "build from a checkpoint with golden outputs, such as `alignvar-tiny`)")
        + f" through Core ML and compares them with the reference: it passes at >= {gate.tokens:.0%} of the "
        f"tokens equal (all scales together; it prints each scale's) and SR PSNR >= {gate.psnr_db:g} dB, and times the package; "
        + ", ".join(f"`--device {u}`" for u in _SWIFT_UNITS if u != units)
        + " try the other compute units.",
        "",
        *golden_check(m, "coreml", precision, 1 if image else batch),
        f"Measured at build time, without Core ML: {proxy}",
        "",
        "## Neural Engine",
        "",
        "Ops the ANE lint expects to leave the Neural Engine (Xcode's Performance report or `MLComputePlan` "
        "shows the real placement):",
        "",
        *lint_lines,
        "",
    ])
