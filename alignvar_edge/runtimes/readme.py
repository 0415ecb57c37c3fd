"""What every engine directory's README.md says the same way, whichever backend wrote it: whether
the build checked the engine, the input contract in one line, the two alignvar-edge commands that
run it, and how to feed a graph's extra inputs. Each backend adds how to run its files without
alignvar-edge (`openvino/readme.py`, `onnxruntime.engine_readme`)."""
from __future__ import annotations

from alignvar_edge.manifest import Manifest, db_text, parity_figures

__all__ = ["INPUT_LINE", "README_FILE", "checked_line", "commands", "device_install", "extra_inputs_line"]

README_FILE = "README.md"

INPUT_LINE = ("Input: RGB tiles in [0, 1], NCHW float32; each output tile is 4x the input tile "
              "(`manifest.json: input_contract` has the tile, overlap and batch).")


def checked_line(m: Manifest) -> str:
    """The build's parity figures, or that the engine was not checked where it was built."""
    par = parity_figures(m.parity)
    return (f"Checked at build against {par.reference}: tokens {par.tokens_pct}, SR PSNR {db_text(par.psnr_db)} dB."
            if par else "Not checked at build: run `alignvar-edge selftest --engine DIR` on the device before "
            "trusting it.")


def device_install(extras: str) -> str:
    """How a device installs alignvar-edge with `extras`: from its wheel, as it is not on PyPI."""
    return (f"`pip install \"$(ls dist/alignvar_edge-*.whl)[{extras}]\"`, the wheel built in an alignvar-edge "
            "checkout with `python -m pip wheel --no-deps -w dist .` (alignvar-edge is not on PyPI)")


def commands(intro: str) -> list[str]:
    """`intro` ("With alignvar-edge, which ...:") and the commands that check and run the engine."""
    return [intro, "", "```", "alignvar-edge selftest --engine DIR",
            "alignvar-edge upscale IN.png OUT.png --engine DIR", "```", ""]


def extra_inputs_line(names: list[str], lr_name: str, where: str = "") -> str:
    """How to feed the graph's inputs beside the tiles (the refiner's noise); `where`: to which parts."""
    return (f"Feed {', '.join(f'`{n}`' for n in names)} beside `{lr_name}`, by name{where}: alignvar-edge "
            "feeds the fixed draw `runtimes.load(DIR).config.refiner_noise(batch)`.")
