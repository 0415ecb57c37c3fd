"""Every engine directory's README.md lets an integrator without alignvar-edge (C++ on a device)
reproduce `upscale` and check the engine: how whole images are cut, run and blended (held to
`runtimes/tiling.py`'s constants and behaviour, and followed by code written from the section's
words alone, whose image must be `upscale`'s), the oldest runtime that reads the graph, the golden
outputs' format and pass criterion, the file checks with standard tools, and what an int8 graph's
calibration assumed of the CPU."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alignvar_edge import runtimes
from alignvar_edge.images.transparency import fill_transparent
from alignvar_edge.manifest import Manifest, read_manifest
from alignvar_edge.recipes import recipe
from alignvar_edge.runtimes import readme, tiling


@pytest.fixture(scope="module")
def ort_engine(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX Runtime fp32 engine of the micro export, with golden outputs."""
    return runtimes.build(micro_export, "onnxruntime", out=tmp_path_factory.mktemp("ort") / "eng")


@pytest.fixture(scope="module")
def trt_kit(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TensorRT build kit of the micro export (written without TensorRT)."""
    return runtimes.build(micro_export, "tensorrt", out=tmp_path_factory.mktemp("trt") / "kit")


def _section(text: str, title: str) -> str:
    """The body of a README's `## title` section (up to the next `## `)."""
    parts = re.split(r"^## ", text, flags=re.M)
    found = [p for p in parts if p.startswith(title + "\n")]
    assert found, f"no section '## {title}' in:\n{text}"
    return found[0]


def _tensorrt_engine_readme(kit: Path) -> str:
    """The README of a TensorRT engine directory adopted from `kit` (no TensorRT here: the kit's
    manifest as an engine's)."""
    from alignvar_edge.runtimes.tensorrt.kit import engine_readme
    m = read_manifest(kit)
    m = dataclasses.replace(m, kind="engine", backend="tensorrt",
                            extra={**m.extra, "tensorrt_version": "10.3.0", "gpu_name": "Orin",
                                   "compute_capability": "8.7"})
    return engine_readme(m, "fp32", "fp32", None)


def test_every_engine_readme_says_how_upscale_makes_whole_images(ort_engine: Path, trt_kit: Path,
                                                                 micro_export: Path, tmp_path: Path) -> None:
    """The ONNX Runtime, OpenVINO, TensorRT and Core ML READMEs all carry the one "Whole images" section,
    with this engine's tile, overlap and batch, and its rules are tiling's: the pad mode, where tiles
    start, the window's sampling and where two ramps meet."""
    m = read_manifest(ort_engine)
    c = m.input_contract
    t, ov, s = c["tile"], c["overlap"], c["scale"]
    dirs = [ort_engine, trt_kit]
    if _installed("openvino"):
        dirs.append(runtimes.build(micro_export, "openvino", out=tmp_path / "ov", check=False))
    if _installed("coremltools"):
        from _runtime_fixtures import sharp_model
        dirs.append(runtimes.build("in-memory", "coreml", out=tmp_path / "cm", model=sharp_model("micro"), proxy=False))
    texts = [((d / "README.md").read_text(), read_manifest(d)) for d in dirs]
    texts.append((_tensorrt_engine_readme(trt_kit), read_manifest(trt_kit)))
    for text, of in texts:
        assert "\n".join(readme.whole_images(of)) in text, of.backend
        assert "mirror-padded" not in text, of.backend      # the ambiguous word the section replaces
        batch = of.input_contract["batch"]
        assert (f"{batch} per call, the last call padded by repeating its last tile" in text) == (batch > 1)
    body = _section(texts[0][0], "Whole images")
    # the pad: numpy's mode as tiling pads, OpenCV's name for it, bottom and right only
    assert f'mode="{tiling.PAD_MODE}"' in body and "BORDER_REFLECT`, not its default `BORDER_REFLECT_101`" in body
    assert "padded at its end (bottom, right)" in body
    image = np.random.default_rng(0).random((3, 5, 3)).astype(np.float32)
    tiles, _, _ = tiling.extract_tiles(image, t, ov)
    padded = np.pad(image, ((0, t - 3), (0, t - 5), (0, 0)), mode=tiling.PAD_MODE)
    np.testing.assert_array_equal(tiles[0], padded.transpose(2, 0, 1))
    assert not np.array_equal(tiles[0], np.pad(image, ((0, t - 3), (0, t - 5), (0, 0)), mode="reflect")
                              .transpose(2, 0, 1))
    # where tiles start: the README's formula is tiling's, for every side length
    st = t - ov
    assert f"`min(i * {st}, L - {t})` for i = 0 .. ceil((L - {t}) / {st})" in body
    for side in range(t, 6 * t):
        said = sorted({min(i * st, side - t) for i in range(math.ceil((side - t) / st) + 1)})
        assert said == tiling.tile_starts(side, t, ov), side
    # the window: sin² sampled at (i + RAMP_OFFSET) / n, the smaller where a tile's two ramps meet
    assert f"sin²(π/2 · (i + {tiling.RAMP_OFFSET:g}) / n)" in body and "the smaller weight holds" in body
    starts = tiling.tile_starts(t + st + 1, t, ov)            # the last tile moved back: ramps meet
    assert len(starts) == 3

    def ramp(n: int) -> np.ndarray:
        return np.sin(np.pi / 2 * (np.arange(n) + tiling.RAMP_OFFSET) / n) ** 2
    left, right = (starts[0] + t - starts[1]) * s, (starts[1] + t - starts[2]) * s
    assert left + right > t * s
    want = np.ones(t * s)
    want[:left] = ramp(left)
    want[t * s - right:] = np.minimum(want[t * s - right:], ramp(right)[::-1])
    np.testing.assert_allclose(tiling.blend_window(starts, t, 1, s), want, atol=0)
    # gray: the mean of the three channels the model returns, not a luma
    assert "gray takes the mean of the three channels (not a luma)" in body
    gray = np.random.default_rng(1).random((11, 9)).astype(np.float32)
    with runtimes.load(ort_engine, threads=1) as e:
        np.testing.assert_allclose(e.upscale(gray), e.upscale(np.stack([gray] * 3, axis=2)).mean(axis=2),
                                   atol=1e-6)


def _recipe_of(body: str) -> dict[str, Any]:
    """The numbers and rules a reader takes from a "Whole images" section's words."""
    tile, overlap = map(int, re.search(r"Tiles: (\d+)x\1 tiles overlapping by (\d+) px", body).groups())
    stride, last = map(int, re.search(r"start at `min\(i \* (\d+), L - (\d+)\)`", body).groups())
    scale = int(re.search(r"\(n = (\d+) x the LR px they share", body).group(1))
    offset = float(re.search(r"`w\[i\] = sin²\(π/2 · \(i \+ ([\d.]+)\) / n\)`", body).group(1))
    calls = re.search(r"(\d+) per call, the last call padded by repeating its last tile", body)
    assert (stride, last) == (tile - overlap, tile)
    assert "copies row `j = k mod 2H`, or `2H - 1 - j` where `j >= H`" in body
    return {"tile": tile, "stride": stride, "scale": scale, "offset": offset, "batch": int(calls[1]) if calls else 1}


def _filled_as_the_readme_says(rgb: np.ndarray, alpha: np.ndarray, body: str) -> np.ndarray:
    """Step 1's fill of the colour under alpha 0 of 8- or 16-bit `rgb`, written from its words: the visible
    pixels, how an odd side is halved, the unweighted mean, the bilinear upsampling's alignment, and the
    arithmetic of both in float32, in the order the words give."""
    for words in ("the visible ones (alpha > 0)", "one of ceil(H / 2) x ceil(W / 2) (on an odd side the last row or "
                  "column makes blocks of its own, 1 px across)", "the plain mean of the pixels of its 2x2 block "
                  "that have a colour", "weighted neither by alpha nor by how many image pixels each stands for",
                  "their sum in float32, added top left, top right, bottom left, bottom right, divided by their count",
                  "pixel k takes 3/4 of coarser pixel k // 2 and 1/4 of coarser pixel k // 2 - 1 for even k, "
                  "k // 2 + 1 for odd k (the edge pixel again past an edge)", "in float32 and rows first: "
                  "`0.75 * a + 0.25 * b` of the two coarser rows (a the nearer), then the same of the two columns of "
                  "that (each product and sum rounded to float32)", "The coarser levels are kept in float32",
                  "rounded to whole samples (to nearest, ties to even)"):
        assert words in body, words
    f32 = np.float32
    levels = [(rgb.astype(f32), alpha > 0)]
    while not levels[-1][1].all():                          # halve until every pixel has a colour
        colour, has = levels[-1]
        h, w = has.shape
        sums, counts = np.zeros((-(-h // 2), -(-w // 2), 3), f32), np.zeros((-(-h // 2), -(-w // 2)), f32)
        for y, x in zip(*np.nonzero(has)):                  # raster order: a block's TL, TR, BL, BR
            sums[y // 2, x // 2] += colour[y, x]
            counts[y // 2, x // 2] += 1
        levels.append((sums / np.maximum(counts, 1)[..., None], counts > 0))

    def taps(k: int, n: int) -> list[int]:                  # the nearer coarser pixel, then the other
        return [k // 2, min(max(k // 2 + (1 if k % 2 else -1), 0), n - 1)]
    for (colour, has), (coarse, _) in reversed(list(zip(levels, levels[1:]))):     # from the coarsest back
        for y, x in zip(*np.nonzero(~has)):
            (a, b), (c, d) = taps(y, coarse.shape[0]), taps(x, coarse.shape[1])
            rows = f32(0.75) * coarse[a, [c, d]] + f32(0.25) * coarse[b, [c, d]]
            colour[y, x] = f32(0.75) * rows[0] + f32(0.25) * rows[1]
    return np.where((alpha > 0)[..., None], rgb, np.round(levels[0][0])).astype(rgb.dtype)


def _upscale_as_the_readme_says(image: np.ndarray, body: str, run: Any) -> np.ndarray:
    """An 8-bit RGB or RGBA image upscaled by the steps of a README's "Whole images" section, written
    from its words (not from tiling.py): `run(tiles)` is one call of the graph, NCHW float32 in, SR
    tiles out."""
    r = _recipe_of(body)
    t, s = r["tile"], r["scale"]
    rgb, alpha = image[..., :3], image[..., 3] if image.shape[2] == 4 else None
    if alpha is not None:
        rgb = _filled_as_the_readme_says(rgb, alpha, body)
    x = rgb.astype(np.float32) / 255                                           # 1. samples
    H, W = x.shape[:2]

    def mirrored(n: int, k: int) -> int:                                       # 2. pad: row k >= n copies ...
        j = k % (2 * n)
        return j if j < n else 2 * n - 1 - j
    x = x[[mirrored(H, k) for k in range(max(H, t))]][:, [mirrored(W, k) for k in range(max(W, t))]]

    def starts(L: int) -> list[int]:                                           # 3. tiles
        return sorted({min(i * r["stride"], L - t) for i in range(math.ceil((L - t) / r["stride"]) + 1)})
    ys, xs = starts(x.shape[0]), starts(x.shape[1])
    cut = [x[y:y + t, c:c + t].transpose(2, 0, 1) for y in ys for c in xs]       # raster order
    sr: list[np.ndarray] = []
    for k in range(0, len(cut), r["batch"]):
        call = cut[k:k + r["batch"]]
        n = len(call)
        sr += list(run(np.stack(call + [call[-1]] * (r["batch"] - n)))[:n])

    def ramp(n: int) -> np.ndarray:                                              # 4. blend
        return np.sin(np.pi / 2 * (np.arange(n) + r["offset"]) / n) ** 2

    def weights(starts_: list[int], i: int) -> np.ndarray:
        w = np.ones(t * s)
        if i > 0 and (n := (starts_[i - 1] + t - starts_[i]) * s) > 0:
            w[:n] = ramp(n)
        if i < len(starts_) - 1 and (n := (starts_[i] + t - starts_[i + 1]) * s) > 0:
            w[t * s - n:] = np.minimum(w[t * s - n:], ramp(n)[::-1])
        return w
    total = np.zeros((x.shape[0] * s, x.shape[1] * s, 3))
    wsum = np.zeros(total.shape[:2])
    raster = [(i, y, j, c) for i, y in enumerate(ys) for j, c in enumerate(xs)]
    for (i, y, j, c), tile_sr in zip(raster, sr):
        w = np.outer(weights(ys, i), weights(xs, j))
        total[y * s:(y + t) * s, c * s:(c + t) * s] += tile_sr.transpose(1, 2, 0) * w[..., None]
        wsum[y * s:(y + t) * s, c * s:(c + t) * s] += w
    out = np.clip((total / wsum[..., None])[:H * s, :W * s], 0, 1)
    if alpha is not None:                                                        # 5. out: alpha on its own
        assert f"`Image.resize((W * {s}, H * {s}), Image.BICUBIC)` resizes a float image" in body
        from PIL import Image
        plane = Image.fromarray(alpha.astype(np.float32) / 255, mode="F").resize((W * s, H * s), Image.BICUBIC)
        out = np.dstack([out, np.clip(np.asarray(plane), 0, 1)])
    return np.round(out * 255).astype(np.uint8)                                 # 8 bits


def test_code_written_from_the_readme_gives_upscales_image(ort_engine: Path) -> None:
    """The "Whole images" steps, followed by code of one's own around a plain ONNX Runtime session,
    give `upscale`'s image to within the 1 level of 255 the README promises, at sizes that pad, move
    a last tile back and need several tile rows, RGB and RGBA with transparent pixels: where tiling.py
    and the README's words part, this fails."""
    import onnxruntime as ort
    body = _section((ort_engine / "README.md").read_text(), "Whole images")
    # the fill's arithmetic as the words give it: in float64, or columns first, a sample of one of these
    # 8-bit images and of several 16-bit ones rounds the other way
    for dtype in (np.uint8, np.uint16):
        draw = np.random.default_rng(1)
        for _ in range(80):
            h, w = draw.integers(2, 20, 2)
            rgb = draw.integers(0, np.iinfo(dtype).max + 1, (h, w, 3), dtype=dtype)
            alpha = (draw.random((h, w)) < draw.uniform(0.2, 0.9)).astype(np.float32)
            if alpha.any():
                assert np.array_equal(_filled_as_the_readme_says(rgb, alpha, body),
                                      fill_transparent(rgb, alpha)), (dtype, h, w)
    # a few small holes, at edges too, which the fill fills from the pixels around them alone
    draw = np.random.default_rng(2)
    for _ in range(30):
        rgb = draw.integers(0, 256, (61, 64, 3), dtype=np.uint8)
        alpha = np.ones((61, 64), np.float32)
        for _ in range(draw.integers(1, 4)):
            y, x = draw.integers(0, 61), draw.integers(0, 64)
            alpha[y:y + draw.integers(1, 8), x:x + draw.integers(1, 8)] = 0
        assert np.array_equal(_filled_as_the_readme_says(rgb, alpha, body), fill_transparent(rgb, alpha))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(ort_engine / "model.onnx"), options, providers=["CPUExecutionProvider"])
    (lr,) = [i.name for i in session.get_inputs()]           # the micro model takes the tiles alone

    def run(tiles: np.ndarray) -> np.ndarray:
        return session.run(["sr"], {lr: tiles})[0]
    rng = np.random.default_rng(0)
    with runtimes.load(ort_engine, threads=1) as engine:
        for size in ((21, 21), (5, 3), (23, 17), (8, 8), (30, 14)):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            ours, theirs = _upscale_as_the_readme_says(image, body, run), engine.upscale(image)
            assert ours.shape == theirs.shape == (size[0] * 4, size[1] * 4, 3)
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, (size, ours.astype(int) - theirs)
        # transparent pixels: the colour under them filled from the visible ones, as the words say, on odd
        # sides, over holes that take several levels to fill, beside faint (alpha 1) and unequal alphas
        for size in ((21, 21), (23, 17), (30, 14), (5, 3)):
            image = rng.integers(0, 256, (*size, 4), dtype=np.uint8)
            image[..., 3] = rng.choice([0, 1, 90, 255], size)
            image[1:9, 2:12, 3] = 0
            image[image[..., 3] == 0, :3] = 0                  # black under transparency, as editors leave it
            filled = _filled_as_the_readme_says(image[..., :3], image[..., 3], body)
            assert np.array_equal(filled, fill_transparent(image[..., :3], image[..., 3] / 255)), size
            ours, theirs = _upscale_as_the_readme_says(image, body, run), engine.upscale(image)
            assert ours.shape == theirs.shape == (size[0] * 4, size[1] * 4, 4)
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, (size, ours.astype(int) - theirs)


def _installed(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def test_the_ort_readme_names_the_graph_versions_and_the_oldest_runtime_that_reads_them(ort_engine: Path) -> None:
    """The graph's IR version and opset, read from the file, and the oldest ONNX Runtime that reads them
    by ONNX Runtime's compatibility table: IR version 10 needs 1.18 (1.17.3 refuses it: 'max supported
    IR version: 9'), 1.18.1 and 1.20.1 read it."""
    import onnx

    from alignvar_edge.onnx_wire import model_versions
    from alignvar_edge.runtimes.onnxruntime import runtime_line
    graph = onnx.load(str(ort_engine / "model.onnx"), load_external_data=False)
    opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    assert model_versions((ort_engine / "model.onnx").read_bytes()) == (
        graph.ir_version, {o.domain: o.version for o in graph.opset_import})
    text = (ort_engine / "README.md").read_text()
    assert f"The graph is ONNX IR version {graph.ir_version}, opset {opset}: ONNX Runtime " in text
    assert runtime_line("1.32.0", 10, 18) == (
        "The graph is ONNX IR version 10, opset 18: ONNX Runtime 1.18 or later reads it (ONNX Runtime's "
        "compatibility table: 1.17 reads up to IR version 9, opset 20). Built and checked with ONNX Runtime 1.32.0.")
    assert "ONNX Runtime 1.16 or later reads it" in runtime_line("1.32.0", 9, 18)
    assert "ONNX Runtime 1.17 or later reads it" in runtime_line("1.32.0", 9, 20)
    # past the table (an opset-23 fused export): a release after its last row, never "no release reads it"
    past = runtime_line("1.32.0", 10, 23)
    assert "a release after 1.20 is needed: 1.32.0, which built it, reads it" in past and "no release" not in past


def test_a_quantized_graph_imports_only_the_domains_its_nodes_use(micro_export: Path, tmp_path: Path) -> None:
    """A runtime checks every opset import before it loads a graph, used or not, and the README's oldest
    ONNX Runtime answers for the default domain: the int8 graph imports nothing else (ONNX Runtime's
    pre-processing had added ai.onnx.ml 5, ai.onnx.preview, com.microsoft.nchwc and five more)."""
    import onnx

    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    q = quantize_artifact(micro_export, tmp_path / "q", QuantizeOptions(search=False, tiles=8, val_tiles=8))
    graph = onnx.load(str(q / "model.onnx"), load_external_data=False)
    used = {n.domain for n in graph.graph.node}
    opset = read_manifest(micro_export).opset
    assert "QuantizeLinear" in {n.op_type for n in graph.graph.node} and used == {""}
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", opset)]
    engine = runtimes.build(q, "onnxruntime", "int8", out=tmp_path / "eng", threads=1)
    assert f"The graph is ONNX IR version {graph.ir_version}, opset {opset}: ONNX Runtime " in (
        engine / "README.md").read_text()


@pytest.mark.skipif(not _installed("openvino"), reason="OpenVINO is not installed")
def test_the_openvino_readme_says_older_releases_were_not_checked(micro_export: Path, tmp_path: Path) -> None:
    import openvino as ov
    out = runtimes.build(micro_export, "openvino", out=tmp_path / "ov", check=False)
    first = (out / "README.md").read_text().split("\n")[2]
    assert first.startswith(f"Built with OpenVINO {ov.__version__.split('-')[0]} on a CPU with ")
    assert "older OpenVINO releases were not checked with it" in first


def _safetensors_header(path: Path) -> dict[str, dict]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return {k: v for k, v in json.loads(raw[8:8 + n]).items() if k != "__metadata__"}


def test_every_readme_with_golden_outputs_says_how_to_check_them_by_hand(ort_engine: Path, trt_kit: Path) -> None:
    """The golden file's tensors as the file itself declares them, how to run them on a fixed batch,
    that the engine's int64 tokens are compared by value, and the gate selftest holds the engine to."""
    for root, backend, text in ((ort_engine, "onnxruntime", (ort_engine / "README.md").read_text()),
                                (trt_kit, "tensorrt", (trt_kit / "README.md").read_text())):
        body = _section(text, "Check it without alignvar-edge")
        head = _safetensors_header(root / "golden.safetensors")
        n = head["lr"]["shape"][0]
        for name in ("lr", "sr"):
            assert f"| `{name}` | {head[name]['dtype']} | ({', '.join(map(str, head[name]['shape']))}) |" in body
        tokens = sorted((k for k in head if k.startswith("tokens_")), key=lambda k: int(k.split("_")[1]))
        assert {head[k]["dtype"] for k in tokens} == {"I32"}
        assert (f"| `{tokens[0]}` .. `{tokens[-1]}` | I32 | "
                + ", ".join(f"({', '.join(map(str, head[k]['shape']))})" for k in tokens) + " |") in body
        assert "the engine's tokens are int64: compare values" in body
        gate = recipe(backend, "fp32")
        assert gate.tokens == 1.0 and "all the tokens (every scale together)" in body
        assert f"is at least {gate.psnr_db:g} dB" in body and "10 · log10(1 / mean((sr - golden sr)²))" in body
        assert f"Run the {n} tiles" in body
    # a batch bigger than the golden tiles: pad by repeating, keep the first n
    m = read_manifest(ort_engine)
    m16 = dataclasses.replace(m, input_contract={**m.input_contract, "batch": 16}, precision="int8")
    body = "\n".join(readme.golden_check(m16, "onnxruntime", "int8"))
    n = m.extra["golden"]["tiles"]
    assert (f"Run the {n} tiles as one call, padded to the engine's batch of 16 by repeating the last tile, and keep "
            f"the first {n} of each output") in body
    assert "at least 99% of all the tokens" in body and "at least 30 dB" in body


def test_every_readme_says_how_to_check_its_files_with_standard_tools(ort_engine: Path, trt_kit: Path,
                                                                      tmp_path: Path) -> None:
    """The README's two shell lines, run as written in the directory: every listed file checks out, and
    the second prints manifest.json's content_sha256, which a hand edit no longer matches."""
    for tool in ("jq", "sha256sum", "grep", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    for root in (ort_engine, trt_kit):
        block = _section((root / "README.md").read_text(), "Check the files").split("```\n")[1]
        files_line, content_line = block.strip().split("\n")
        assert (files_line, content_line) == (readme.FILES_COMMAND, readme.CONTENT_COMMAND)
        copy = shutil.copytree(root, tmp_path / root.name)
        checked = subprocess.run(["bash", "-c", files_line], cwd=copy, capture_output=True, text=True, check=True)
        listed = json.loads((copy / "manifest.json").read_text())["files"]
        assert sorted(checked.stdout.split("\n")[:-1]) == sorted(f"{f}: OK" for f in listed)

        def content() -> str:
            out = subprocess.run(["bash", "-c", content_line], cwd=copy, capture_output=True, text=True, check=True)
            return out.stdout.split()[0]
        doc = json.loads((copy / "manifest.json").read_text())
        assert content() == doc["content_sha256"]
        text = (copy / "manifest.json").read_text()
        (copy / "manifest.json").write_text(text.replace('"precision": "fp32"', '"precision": "int8"'))
        assert content() != doc["content_sha256"]


def _ort_int8_readme(ort_engine: Path, vnni: bool | None, reduce_range: bool | None) -> str:
    """The README of an int8 engine whose quantize step ran the onnxruntime recipe for a CPU with or
    without VNNI (`quantize.int8.target_recipe`, as `quantize` records it)."""
    from alignvar_edge.quantize.int8 import target_recipe
    from alignvar_edge.runtimes.onnxruntime import engine_readme
    m: Manifest = read_manifest(ort_engine)
    r = target_recipe("onnxruntime", vnni=vnni, reduce_range=reduce_range).to_dict()
    return engine_readme(dataclasses.replace(m, precision="int8", quantization={"recipe": r}), "1.32.0", (10, 18))


def test_an_ort_int8_readme_names_the_cpu_its_quantization_assumed(ort_engine: Path, micro_export: Path,
                                                                    tmp_path: Path) -> None:
    """Quantized on a VNNI CPU (8-bit weights): the README says so and what to do on x86 without VNNI,
    in the words OpenVINO's int8 README uses for the same rule; quantized with reduce_range: any CPU."""
    from alignvar_edge.cli import build_parser
    vnni = _ort_int8_readme(ort_engine, True, None)
    shared = "; on an x86 CPU without VNNI or AMX its int8 dot products may saturate, which costs fidelity: "
    assert ("Its int8 graph was quantized on a CPU with VNNI, with 8-bit weights (`reduce_range` off)" + shared) in vnni
    (command,) = re.findall(r"`(alignvar-edge quantize [^`]+)`", vnni)
    assert "--reduce-range" in command
    args = build_parser().parse_args(command.replace("EXPORT", str(micro_export)).split()[1:])
    assert args.reduce_range is True and args.target == "onnxruntime"
    seven = _ort_int8_readme(ort_engine, False, None)       # a CPU without VNNI: reduce_range by default
    assert ("Its int8 weights are 7-bit (`reduce_range`), as an x86 CPU without VNNI or AMX needs: it runs on "
            "any CPU.") in seven and shared not in seven
    assert shared not in (ort_engine / "README.md").read_text()          # fp32: nothing to say
    if _installed("openvino"):
        from alignvar_edge.cpuinfo import isa_features
        from alignvar_edge.runtimes.half import isa_phrase
        from alignvar_edge.runtimes.openvino.readme import engine_readme
        out = runtimes.build(micro_export, "openvino", out=tmp_path / "ov", check=False)
        m = read_manifest(out)
        ov8 = engine_readme(out, dataclasses.replace(m, precision="int8", quantization={"overflow_fix": "DISABLE"}),
                            {"model.xml": "f32"}, isa_phrase(isa_features()))
        assert shared in ov8 and "overflow fix DISABLE" in ov8
