"""The documented Python API has real types for a user's type checker, not Any: code that uses it
as the docs say passes `mypy --strict`, and code that misuses it fails there, before it runs.

The names of `alignvar_edge.export` and `alignvar_edge.bench` were Any (lazy module attributes
without TYPE_CHECKING imports), so a misspelled keyword or a wrong result type passed; `upscale`
had a catch-all overload, so a path or a file's bytes passed and the result was Any; `progress=`
took only functions returning None, so a progress bar's `update` (bool | None) failed.
`alignvar_edge.quantize`'s lazy names are typed the same way."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

from _typing_user import mypy_as_a_user

# the API as the docs use it; `assert_type` fails where a result is Any or of another type
DOCUMENTED = """
from pathlib import Path
from typing import Any, assert_type

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from alignvar_edge import AlignVAR, build, export, load
from alignvar_edge.bench import BenchOptions, merge_reports, read_report, run_bench
from alignvar_edge.export import StagedRunner, export_onnx
from alignvar_edge.images import file_metadata, file_profile, list_images, load_image, save_image
from alignvar_edge.quantize import FidelityTarget, QuantizeOptions, quantize_artifact


class Bar:
    '''A progress bar whose `update` returns something, as tqdm's does (its stubs: bool | None).'''
    n: int = 0

    def update(self, n: float | None = 1) -> bool | None:
        return None

    def write(self, line: str) -> bool:
        return True


def ship(model: AlignVAR, bar: Bar) -> Path:
    assert_type(export(model, "out/tiny"), Path)
    assert_type(StagedRunner("out/staged", num_scales=4), StagedRunner)
    return export_onnx(model, "out/staged", graph="staged", log=bar.write)


def quantize(bar: Bar) -> Path:
    opts = QuantizeOptions(precision="int8", target="onnxruntime", tiles=16, val_tiles=8,
                           fidelity=FidelityTarget(min_token_agreement=0.99, max_psnr_drop=0.1))
    return quantize_artifact("out/tiny", "out/tiny-int8", opts, force=True, log=bar.write)


def measure(bar: Bar) -> dict[str, Any]:
    report = run_bench(["out/tiny"], options=BenchOptions(runs=3), log=bar.write)
    assert_type(read_report("report.json"), dict[str, Any])
    assert_type(merge_reports(["a.json", "b.json"]), dict[str, Any])
    return report


def upscale(u8: npt.NDArray[np.uint8], f32: npt.NDArray[np.float32], photo: Image.Image,
            tensor: torch.Tensor, bar: Bar) -> None:
    engine = load("out/tiny-ort")
    assert_type(engine.upscale(u8, progress=lambda done, total: bar.update(done - bar.n)), npt.NDArray[np.uint8])
    assert_type(engine.upscale(f32), npt.NDArray[np.float32])
    assert_type(engine.upscale(photo), Image.Image)
    assert_type(engine.upscale(tensor), np.ndarray)
    for sr in engine.upscale_many([u8, u8], progress=lambda index, done, total: bar.update(1)):
        assert_type(sr, npt.NDArray[np.uint8])
    for pil in engine.upscale_many(iter([photo])):
        assert_type(pil, Image.Image)
    mixed: list[npt.NDArray[np.uint8] | Image.Image] = [u8, photo]
    for either in engine.upscale_many(mixed):
        assert_type(either, np.ndarray | Image.Image)


def by_bytes(name: bytes) -> None:
    '''Paths as os.listdir(b'...') gives them, where a name is in another encoding.'''
    model = AlignVAR.from_pretrained(b"alignvar-tiny")
    model.save_pretrained(b"ck")
    export(b"ck", b"out/" + name)
    quantize_artifact(b"out/" + name, b"out/q", QuantizeOptions(precision="fp16"))
    engine = load(build(b"out/" + name, "onnxruntime", out=b"out/ort"))
    rgb, _ = load_image(b"in/" + name)
    save_image(b"out/" + name, engine.upscale(rgb), input_path=b"in/" + name, **file_metadata(b"in/" + name, 4))
    assert_type(file_profile(b"in/" + name), bytes | None)
    assert_type(list_images(b"in"), list[Path])
    assert_type(read_report(b"r.json"), dict[str, Any])
    assert_type(merge_reports([b"r.json", "s.json"]), dict[str, Any])
    StagedRunner(b"out/staged", num_scales=4)
"""

# each line marked `# FAILS` must be an error, of the code named, and no other line may be one
MISUSED = """
from pathlib import Path

from alignvar_edge import AlignVAR, load
from alignvar_edge.bench import BenchOptions, run_bench
from alignvar_edge.export import export_onnx
from alignvar_edge.quantize import QuantizeOptions, quantize_artifact


def misuse(model: AlignVAR, upload: bytes) -> None:
    engine = load("out/tiny-ort")
    engine.upscale("photo.png")                                   # FAILS call-overload
    engine.upscale(Path("photo.png"))                             # FAILS call-overload
    engine.upscale(upload)                                        # FAILS call-overload
    engine.upscale_many(["a.png", "b.png"])                       # FAILS arg-type
    export_onnx(model, "out/tiny", grahp="staged")                # FAILS call-arg
    BenchOptions(runz=3)                                          # FAILS call-arg
    report: str = run_bench(["out/tiny"])                         # FAILS assignment
    QuantizeOptions(tilez=16)                                     # FAILS call-arg
    done: str = quantize_artifact("out/tiny", "out/q", QuantizeOptions())   # FAILS assignment
"""


def _errors(output: str, name: str) -> dict[int, str]:
    """line -> error code of mypy's errors in file `name`."""
    return {int(m[1]): m[2] for m in re.finditer(rf"^{re.escape(name)}:(\d+): error: .*\[([\w-]+)\]$", output, re.M)}


def test_the_documented_api_has_types_that_catch_its_misuse(tmp_path: Path) -> None:
    documented, misused = tmp_path / "documented.py", tmp_path / "misused.py"
    documented.write_text(textwrap.dedent(DOCUMENTED).lstrip())
    misused.write_text(textwrap.dedent(MISUSED).lstrip())
    run = mypy_as_a_user(tmp_path, [documented, misused], "--strict")
    output = run.stdout + run.stderr
    assert _errors(output, "documented.py") == {}, output
    expected = {n: line.split("# FAILS ")[1].strip() for n, line in enumerate(misused.read_text().splitlines(), 1)
                if "# FAILS " in line}
    assert _errors(output, "misused.py") == expected, output
