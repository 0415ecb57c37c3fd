"""What every engine directory's README.md says the same way, whichever backend wrote it: whether
the build checked the engine, the input contract in one line, the two alignvar-edge commands that
run it, how to feed a graph's extra inputs and what `upscale` adds to the graph's output; how
`upscale` makes whole images from the graph's tiles (`whole_images`, as `runtimes/tiling.py` does
it), how to check the engine against its golden outputs (`golden_check`) and its files
(`file_checks`) without alignvar-edge, how to copy it (`copying`), and what an int8 graph
calibrated for VNNI risks on a CPU without it (`int8_cpu_note`). Each backend adds how to run its
files without alignvar-edge (`openvino/readme.py`, `onnxruntime.engine_readme`, `coreml/readme.py`,
`tensorrt/kit.py`)."""
from __future__ import annotations

from pathlib import Path

from alignvar_edge.graph_names import INPUT, SR, token_name
from alignvar_edge.manifest import CONTENT_KEY, MANIFEST_FILE, Manifest, db_text, input_contract, parity_figures
from alignvar_edge.recipes import recipe
from alignvar_edge.runtimes.tiling import PAD_MODE, RAMP_OFFSET, count_tiles, tile_starts

__all__ = ["CONTENT_COMMAND", "FILES_COMMAND", "INPUT_LINE", "README_FILE", "WHOLE_IMAGES", "checked_line",
           "commands", "copying", "extra_feed_lines", "file_checks", "golden_check", "int8_cpu_note", "model_notes",
           "whole_images", "write_readme"]

README_FILE = "README.md"


def write_readme(root: Path, text: str) -> Path:
    """An engine directory's README.md (in UTF-8 whatever the locale, as `fsmodes.write_text` writes:
    its recipe writes ², π and ×)."""
    from alignvar_edge.fsmodes import write_text
    return write_text(Path(root) / README_FILE, text)

INPUT_LINE = ("Input: RGB tiles in [0, 1], NCHW float32; each output tile is 4x the input tile "
              "(`manifest.json: input_contract` has the tile, overlap and batch; whole images: the section "
              "\"Whole images\" below).")

def checked_line(m: Manifest) -> str:
    """The build's parity figures, or that the engine was not checked where it was built."""
    par = parity_figures(m.parity)
    return (f"Checked at build against {par.reference}: tokens {par.tokens_pct}, SR PSNR {db_text(par.psnr_db)} dB."
            if par else "Not checked at build: run `alignvar-edge selftest --engine DIR` on the device before "
            "trusting it.")


def commands(intro: str) -> list[str]:
    """`intro` ("With alignvar-edge, which ...:") and the commands that check and run the engine."""
    return [intro, "", "```", "alignvar-edge selftest --engine DIR",
            "alignvar-edge upscale IN.png OUT.png --engine DIR", "```", ""]


def model_notes(m: Manifest) -> list[str]:
    """What feeding the graph by hand must add to INPUT_LINE for this model (`input_contract`): the
    refiner noise its graph takes, and the colour fix alignvar-edge's `upscale` gives its images
    (VARSR's); nothing for a model with neither."""
    c = input_contract(m) or {}
    notes = []
    noise = c.get("noise")
    if noise:
        notes.append(f"The graph also takes `{noise['name']}` {noise['dtype']}{noise['shape']}, the sampler noise of "
                     "VARSR's refiner: feed the fixed draw alignvar-edge feeds every engine, `" + noise["values"]
                     + "` (numpy as np; `manifest.json: input_contract.noise`), to get the tiles alignvar-edge gets.")
    if c.get("color_fix"):
        notes.append(f"Colour fix: {c['color_fix']}.")
    return notes


def extra_feed_lines(m: Manifest, names: list[str], feeds: str) -> list[str]:
    """Python lines that put the graph's inputs beside the tiles (`names`: the refiner's noise) into the
    dict `feeds`, with the fixed draw `model_notes` states."""
    noise = (input_contract(m) or {}).get("noise") or {}
    return [f'{feeds}["{n}"] = {noise["values"]}   # the refiner\'s fixed draw' for n in names if n == noise.get("name")]


# the title of the section `whole_images` writes (a Core ML package's description points to it)
WHOLE_IMAGES = "Whole images"


# numpy's np.pad mode that tiling pads a short side with (`tiling.PAD_MODE`), in the words of
# OpenCV, whose default border (BORDER_REFLECT_101) repeats no edge pixel and so differs
_PAD_WORDS = {"symmetric": "mirrored with the edge pixel repeated (`np.pad(..., mode=\"symmetric\")`; OpenCV "
                           "`cv::BORDER_REFLECT`, not its default `BORDER_REFLECT_101`): padded row k >= H copies "
                           "row `j = k mod 2H`, or `2H - 1 - j` where `j >= H`, and columns likewise"}


def whole_images(m: Manifest, batch: int | None = None) -> list[str]:
    """The "Whole images" section: how `upscale` makes a whole image from the graph's tiles, step by
    step as `runtimes/tiling.py` and the image conversions do it, with this engine's tile, overlap,
    scale and `batch` (None: the input contract's), so that code of one's own gives its result."""
    c = input_contract(m) or {}
    if "tile" not in c:                  # a manifest that records no input contract: nothing to say
        return []
    t, ov, s = int(c["tile"]), int(c["overlap"]), int(c["scale"])
    b = batch if batch is not None else c.get("batch")
    steps = [
        "Samples: the image as float32 RGB in [0, 1] (8-bit: k / 255; 16-bit: k / 65535). A gray image runs as "
        "R = G = B; an alpha channel never enters the graph (the last step), but pixels whose alpha is 0 first take "
        "the colour of the visible ones (alpha > 0) around them, on the image's own samples (an image with no "
        "visible pixel is left as it is; so is one whose alpha is data, a mask or a packed texture, as "
        "`--alpha-is-data` leaves it): halve the image level by level, a level of H x W pixels giving one of "
        "ceil(H / 2) x ceil(W / 2) (on an odd side the last row or column makes blocks of its own, 1 px across), "
        "each pixel the plain mean of the pixels of its 2x2 block that have a colour (in the image: the visible "
        "ones; weighted neither by alpha nor by how many image pixels each stands for): their sum in float32, added "
        "top left, top right, bottom left, bottom right, divided by their count; and without a colour where "
        "none has one, until a level has no pixel without; then from the coarsest level back, each pixel without a "
        "colour (in the image: alpha 0) takes the next level's bilinear 2x upsampling with pixel centres aligned "
        "(PyTorch's `interpolate(scale_factor=2, mode=\"bilinear\", align_corners=False)`, the extra last row or "
        "column of an odd side dropped): along each axis, pixel k takes 3/4 of coarser pixel k // 2 and 1/4 of "
        "coarser pixel k // 2 - 1 for even k, k // 2 + 1 for odd k (the edge pixel again past an edge), in float32 "
        "and rows first: `0.75 * a + 0.25 * b` of the two coarser rows (a the nearer), then the same of the two "
        "columns of that (each product and sum rounded to float32). The coarser levels are kept in float32; in an "
        "8- or 16-bit image the result is rounded to whole samples (to nearest, ties to even).",
        f"Pad: a side shorter than {t} px is padded at its end (bottom, right) to {t} px, {_PAD_WORDS[PAD_MODE]}.",
        _tiles_step(t, ov, b), _blend_step(t, ov, s),
        *(["Colour fix (above): on the whole RGB result of the blend."] if c.get("color_fix") else []),
        "Out: gray takes the mean of the three channels (not a luma); alpha is resized on its own as Pillow's "
        f"`Image.resize((W * {s}, H * {s}), Image.BICUBIC)` resizes a float image (Keys kernel a = -0.5, taps cut "
        "at the image's edges and renormalised) and clipped to [0, 1]; 8 bits: `round(v * 255)`, to nearest with "
        "ties to even, as numpy's `np.round` and C's `lrintf` round (16 bits: `* 65535`).",
    ]
    n128 = count_tiles((128, 128), t, ov)
    calls = f" in {-(-n128 // b)} calls" if b and b > 1 else ""
    return [f"## {WHOLE_IMAGES}", "",
            "What `alignvar-edge upscale` does around the graph, so that code of your own gives its image (to "
            "within 1 level of 255):", "",
            *(f"{i}. {step}" for i, step in enumerate(steps, 1)), "",
            f"The result is exactly x{s} (W x H in, {s}W x {s}H out). A 128x128 image is {n128} tiles{calls}.", ""]


def _tiles_step(t: int, ov: int, batch: int | None) -> str:
    """Where tiles start (`tiling.tile_starts`) and how they are run, `batch` per call."""
    st = t - ov
    side = t + 2 * st + 1                          # an example side whose last tile moves back
    return (f"Tiles: {t}x{t} tiles overlapping by {ov} px. Along a side of L px (after padding) they start at "
            f"`min(i * {st}, L - {t})` for i = 0 .. ceil((L - {t}) / {st}): every {st} px, the last one moved back "
            f"to end at the edge (a {side} px side: {', '.join(map(str, tile_starts(side, t, ov)))}). A tile is "
            "every (row start, column start) pair; run them in raster order (rows top to bottom, each left to right)"
            + (f", {batch} per call, the last call padded by repeating its last tile and those outputs dropped (a "
               "tile's result does not depend on the others in its call)." if batch and batch > 1 else "."))


def _blend_step(t: int, ov: int, s: int) -> str:
    """The blend window (`tiling.blend_window`) and the normalised sum."""
    ts, ramp = t * s, f"sin²(π/2 · (i + {RAMP_OFFSET:g}) / n)"
    return (f"Blend: along each axis a tile's {ts} SR weights are 1, except across the n SR px it shares with the "
            f"tile before it (n = {s} x the LR px they share: {ov * s} for tiles {t - ov} px apart, more where a last "
            f"tile was moved back), where they rise as `w[i] = {ramp}` for i = 0 .. n-1, and across the n px it "
            f"shares with the tile after it, where they fall as `w[{ts - 1} - i] = {ramp}`; where the two meet, the "
            "smaller weight holds. A tile's weight at (y, x) is its row weight times its column weight. Each SR "
            "pixel is the sum of weight x SR value over the tiles that cover it, divided by the sum of their "
            f"weights (float64); then crop to {s}x the unpadded size and clip to [0, 1].")


def golden_check(m: Manifest, backend: str, precision: str, batch: int | None = None) -> list[str]:
    """The "Check it without alignvar-edge" section of an engine directory with golden outputs
    (`extra.golden`: `runtimes/golden.py` writes them; none: no section): the file's tensors, how
    to run them in calls of `batch` (None: the input contract's), and the gate `selftest --engine`
    holds the engine of (`backend`, `precision`) to."""
    golden = m.extra.get("golden") or None
    if not golden:
        return []
    c = input_contract(m) or {}
    n, t, s = int(golden["tiles"]), int(c["tile"]), int(c["scale"])
    scales = [int(p) for p in (m.config or {}).get("patch_nums") or []]
    gate = recipe(backend, precision)
    batch = batch if batch is not None else c.get("batch")
    tokens = _output_dtype(m, token_name(0))
    k = len(scales) - 1
    shapes = ", ".join(f"({n}, {p * p})" for p in scales)
    return [
        "## Check it without alignvar-edge", "",
        f"`{golden['file']}` holds {n} held-out LR tiles and what the reference ({golden['reference']}) computes "
        "from them. It is safetensors: an 8-byte little-endian header length, a JSON header (each tensor's "
        "`dtype`, `shape` and `data_offsets` into the bytes after the header), then the raw little-endian arrays:",
        "", "| tensor | dtype | shape | what |", "|---|---|---|---|",
        f"| `{INPUT}` | F32 | ({n}, 3, {t}, {t}) | the LR tiles, RGB in [0, 1] |",
        f"| `{SR}` | F16 | ({n}, 3, {t * s}, {t * s}) | the reference SR tiles, RGB in [0, 1] |",
        f"| `{token_name(0)}` .. `{token_name(k)}` | I32 | {shapes} | each scale's codebook indices, "
        "row-major |", "",
        _golden_calls(n, batch)
        + (f" (the engine's tokens are {tokens}: compare values)" if tokens and tokens != "int32" else "")
        + ". The engine passes where "
        + ("all the tokens" if gate.tokens >= 1 else f"at least {gate.tokens * 100:g}% of all the tokens")
        + " (every scale together) equal the golden ones and the SR PSNR, `10 · log10(1 / mean((sr - golden "
        f"sr)²))` over every value of the {n} SR tiles in float64, is at least {gate.psnr_db:g} dB: what "
        "`alignvar-edge selftest --engine DIR` checks.", ""]


def _golden_calls(n: int, batch: int | None) -> str:
    """How to run `n` golden tiles on an engine that takes `batch` per call (None: any number)."""
    if not batch or batch == n:
        return f"Run the {n} tiles as one call"
    if batch == 1:
        return f"Run the {n} tiles one per call"
    if batch > n:
        return (f"Run the {n} tiles as one call, padded to the engine's batch of {batch} by repeating the last tile, "
                f"and keep the first {n} of each output")
    return f"Run the {n} tiles {batch} per call" + (", the last call padded by repeating its last tile (keep "
                                                    f"the first {n} outputs)" if n % batch else "")


def _output_dtype(m: Manifest, name: str) -> str | None:
    """The dtype the manifest records for the graph output `name`, or None."""
    for g in m.graphs.values():
        for o in (g.get("outputs") or []) if isinstance(g, dict) else []:
            if o.get("name") == name:
                return str(o.get("dtype"))
    return None


# the commands `file_checks` gives: every listed file against its SHA-256, and manifest.json's own
# hash, which is the SHA-256 of its text without the line that records it (`manifest.content_hash`
# of the JSON as `write_manifest` spells it: sorted keys, 2-space indent, so that line is never last).
# Its line endings are taken as LF: the tool reads its JSON, so a CRLF copy (core.autocrlf) passes both
FILES_COMMAND = f"""jq -r '.files|to_entries[]|"\\(.value)  \\(.key)"' {MANIFEST_FILE} | sha256sum -c"""
CONTENT_COMMAND = f"tr -d '\\r' < {MANIFEST_FILE} | grep -v '^  \"{CONTENT_KEY}\": ' | sha256sum"


def file_checks() -> list[str]:
    """The "Check the files" section: how to verify an engine directory with standard tools; then
    `copying`."""
    return [
        "## Check the files", "",
        "`alignvar-edge inspect DIR` checks every file against the SHA-256 that `manifest.json` lists, and "
        "`manifest.json` itself. Without alignvar-edge, from inside this directory (jq and coreutils; macOS: "
        "`shasum -a 256` for `sha256sum`):", "",
        "```", FILES_COMMAND, CONTENT_COMMAND, "```", "",
        f"The first checks every file the manifest lists (not that nothing was added). The second prints the "
        f"SHA-256 of `manifest.json` without its `{CONTENT_KEY}` line, which must equal that line's value: a "
        "manifest edited by hand no longer does.", "", *copying()]


def copying() -> list[str]:
    """The "Copy it" section: how to copy or pack an engine directory so that every file it lists
    arrives, the ONNX graphs a build shares by hard links (`manifest.HARD_LINKED`) included."""
    return [
        "## Copy it", "",
        "Copy the whole directory: `rsync -a` and `scp -r` need nothing more. A build shares an ONNX graph (and "
        "its `.data`) by a hard link where it can: the export's file is every engine's built from it. An archive "
        "of several folders (`tar -czf rel.tgz DEPLOY_OUTPUT`) holds such a file once and its other names as links "
        "to it, so a folder extracted alone from it can lack that file (tar: `Cannot hard link to ...`). Pack this "
        "directory on its own, `tar -czf DIR.tgz -C PARENT DIR`, or an archive of several with GNU tar's "
        "`--hard-dereference`, which holds every name in full.", ""]


def int8_cpu_note(calibrated: str, remedy: str | None) -> str:
    """What an int8 engine's calibration means for the CPU it runs on, in the words every int8 README
    shares: `calibrated` says how it was calibrated; `remedy`, for a calibration that relies on
    VNNI or AMX, what to do on an x86 CPU without them; None for one made for such a CPU."""
    if remedy is None:
        return f"{calibrated}, as an x86 CPU without VNNI or AMX needs: it runs on any CPU."
    return (f"{calibrated}; on an x86 CPU without VNNI or AMX its int8 dot products may saturate, which costs "
            f"fidelity: {remedy}.")
