"""What every engine directory's README.md says the same way, whichever backend wrote it: whether
the build checked the engine, the input contract in one line, the two alignvar-edge commands that
run it, how to feed a graph's extra inputs and what `upscale` adds to the graph's output. Each
backend adds how to run its files without alignvar-edge (`openvino/readme.py`,
`onnxruntime.engine_readme`)."""
from __future__ import annotations

from alignvar_edge.manifest import Manifest, db_text, input_contract, parity_figures

__all__ = ["INPUT_LINE", "README_FILE", "checked_line", "commands", "extra_feed_lines", "model_notes"]

README_FILE = "README.md"

INPUT_LINE = ("Input: RGB tiles in [0, 1], NCHW float32; each output tile is 4x the input tile "
              "(`manifest.json: input_contract` has the tile, overlap and batch).")


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
