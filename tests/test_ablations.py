"""eval --ablations: tokens_off really decodes a zero latent, sca_off is alpha = 0, the JSON's shape."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alignvar_edge.cli import main
from alignvar_edge.images import save_image
from alignvar_edge.model import AlignVAR, AlignVARConfig
from alignvar_edge.model.checkpoint import save_pretrained
from alignvar_edge.samples import sample_images
from alignvar_edge.train.ablations import TokensOff, sca_off


@pytest.fixture(scope="module")
def bundled() -> AlignVAR:
    return AlignVAR.from_pretrained("alignvar-tiny").eval()


def lr_tiles(model: AlignVAR, n: int = 4) -> torch.Tensor:
    c = model.config
    rocket = dict(sample_images("heldout"))["rocket"]
    s = c.lr_size
    tiles = [rocket[60 + 5 * s * i:60 + 5 * s * i + s, 200:200 + s] for i in range(n)]
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).contiguous()


def test_tokens_off_decodes_a_zero_latent(bundled: AlignVAR) -> None:
    c = bundled.config
    lr = lr_tiles(bundled)
    with torch.no_grad():
        sr_model = bundled.super_resolve(lr)
        sr_off, *tokens = TokensOff(bundled)(lr)
        zero = bundled.vae.decode(torch.zeros(lr.shape[0], c.vq_cvae, c.latent_size, c.latent_size), lr)
    assert torch.equal(sr_off, zero)
    assert [t.shape for t in tokens] == [(lr.shape[0], p * p) for p in c.patch_nums]
    # the model's tokens do change its output (by a little: the finding in docs/training.md)
    diff = (sr_off - sr_model).abs()
    assert diff.max() > 0.02 and diff.mean() > 1e-3


def test_sca_off_equals_the_model_with_alpha_forced_to_zero(bundled: AlignVAR) -> None:
    lr = lr_tiles(bundled)
    zeroed = AlignVAR(bundled.config).eval()
    zeroed.load_state_dict(bundled.state_dict())
    with torch.no_grad():
        for blk in zeroed.blocks:
            blk.attn.sca_alpha.zero_()
        off = sca_off(bundled)
        assert off is not None
        _, tok_off, log_off = off.rollout(lr)
        _, tok_zero, log_zero = zeroed.rollout(lr)
        _, tok_on, log_on = bundled.rollout(lr)
    for a, b in zip(log_off, log_zero):
        assert torch.equal(a, b)
    # and the bundled alphas (0.35-0.56) do change the logits, so the test could fail
    assert max((a - b).abs().max().item() for a, b in zip(log_on, log_off)) > 1e-3
    assert bundled.sca_guidance is not None, "sca_off must leave the model itself alone"


def _one_image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    coffee = dict(sample_images("heldout"))["coffee"]
    save_image(folder / "coffee.png", coffee[100:228, 200:328])
    return folder


def test_eval_ablations_json_shape(tmp_path: Path, capsys) -> None:
    folder = _one_image_folder(tmp_path)
    out = tmp_path / "abl.json"
    assert main(["eval", "alignvar-tiny", "--images", str(folder), "--ablations", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["variants"]) == ["model", "tokens_off", "sca_off", "bicubic", "vq_ceiling"]
    for name, v in report["variants"].items():
        assert set(v) == {"psnr_y", "ssim_y"}, name
        assert 15 < v["psnr_y"] < 60 and 0 < v["ssim_y"] <= 1, (name, v)
    assert report["tiles"] == 4 and report["seed"] == 0 and report["checkpoint"] == "alignvar-tiny"
    assert report["images"] == [{"name": "coffee.png", "size": [128, 128]}]
    # the model column is the plain eval's model column (same tiles, same LR)
    plain = tmp_path / "plain.json"
    assert main(["eval", "alignvar-tiny", "--images", str(folder), "--json", str(plain)]) == 0
    plain_report = json.loads(plain.read_text())
    assert plain_report["mean_psnr_y"]["model"] == report["variants"]["model"]["psnr_y"]
    # torch's figures move with its thread count and version: both forms say which computed them
    import importlib.metadata

    import torch
    from alignvar_edge.manifest import SOURCE_TOOL, source_digest
    for r in (report, plain_report):
        assert r["torch_threads"] == torch.get_num_threads()
        assert r["tools"] == {"alignvar-edge": importlib.metadata.version("alignvar-edge"), SOURCE_TOOL: source_digest(),
                              "torch": torch.__version__, "numpy": np.__version__}
    assert "tokens_off" in capsys.readouterr().out
    assert report["overlap"] == 4                                   # upscale's default: a quarter tile
    # --overlap changes how the tiled variants are cut and blended, nothing else
    other = tmp_path / "overlap0.json"
    assert main(["eval", "alignvar-tiny", "--images", str(folder), "--overlap", "0", "--json", str(other)]) == 0
    r0 = json.loads(other.read_text())
    assert r0["overlap"] == 0 and r0["mean_psnr_y"]["bicubic"] == report["variants"]["bicubic"]["psnr_y"]
    assert r0["mean_psnr_y"]["model"] != report["variants"]["model"]["psnr_y"]


def test_eval_ablations_json_names_the_images_it_skipped(tmp_path: Path, capsys) -> None:
    """A bare --json prints no text, so the JSON itself must say which images were left out."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    coffee = dict(sample_images("heldout"))["coffee"]
    save_image(folder / "tile.png", coffee[100:164, 200:264])      # one 64 px HR tile
    save_image(folder / "thumb.png", coffee[100:140, 200:248])     # smaller than the tile
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    assert main(["eval", "alignvar-tiny", "--images", str(folder), "--ablations", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == [{"name": "tile.png", "size": [64, 64]}]
    assert report["skipped_smaller_than_tile"] == ["thumb.png"]
    assert [s["name"] for s in report["skipped_unreadable"]] == ["broken.png"]



def test_eval_max_megapixels_is_the_limit_its_skip_warning_names(tmp_path: Path, capsys) -> None:
    """A file over the limit is skipped with a reason that says to raise --max-megapixels: eval has
    that flag, and with it the file is scored."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    coffee = dict(sample_images("heldout"))["coffee"]
    save_image(folder / "small.png", coffee[:64, :64])
    save_image(folder / "wide.png", coffee[:64, :128])                  # 0.0082 MP
    argv = ["eval", "alignvar-tiny", "--images", str(folder)]
    assert main([*argv, "--max-megapixels", "0.005", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["images"]] == ["small.png"]
    assert "--max-megapixels" in report["skipped_unreadable"][0]["reason"]
    assert main([*argv, "--max-megapixels", "0.01", "--json"]) == 0
    assert [s["name"] for s in json.loads(capsys.readouterr().out)["images"]] == ["small.png", "wide.png"]


def test_eval_names_images_by_their_path_under_the_folder() -> None:
    """The folder is read with its subfolders: x/a.png and y/a.png are two rows, told apart."""
    import tempfile

    from alignvar_edge.train.commands import load_eval_images
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for sub, v in (("x", 0.2), ("y", 0.8)):
            (root / sub).mkdir()
            save_image(root / sub / "a.png", np.full((8, 8, 3), v, np.float32))
        save_image(root / "top.png", np.full((8, 8, 3), 0.5, np.float32))
        got = {name: float(img.mean()) for name, img in load_eval_images(str(root))[0]}
    assert got == pytest.approx({"top.png": 128 / 255, "x/a.png": 51 / 255, "y/a.png": 204 / 255})

def test_eval_ablations_sca_off_is_na_without_sca(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = AlignVAR(AlignVARConfig.from_preset("micro", sca=False))
    save_pretrained(model, tmp_path / "ckpt")
    out = tmp_path / "abl.json"
    assert main(["eval", str(tmp_path / "ckpt"), "--images", str(_one_image_folder(tmp_path)),
                 "--ablations", "--json", str(out)]) == 0
    v = json.loads(out.read_text())["variants"]
    assert v["sca_off"] == {"psnr_y": "n/a", "ssim_y": "n/a"}
    assert isinstance(v["tokens_off"]["psnr_y"], float)


def test_eval_of_a_flat_photo_reports_seams_without_dividing_by_zero(bundled: AlignVAR) -> None:
    """A flat photograph's bicubic has no gradient at the tile borders; the seam figure is then the SR's own."""
    from alignvar_edge.bench.evaluate import evaluate
    r = evaluate(bundled, [("flat", np.full((128, 128, 3), 0.5, np.float32))], overlap=2)   # 3 x 3 tiles
    assert r["overlap"] == 2 and np.isfinite(r["mean_seam_ratio_vs_bicubic"])


def test_eval_skips_and_names_images_smaller_than_the_tile(bundled: AlignVAR) -> None:
    from alignvar_edge.bench.evaluate import evaluate, format_eval
    from alignvar_edge.errors import InputError
    flat = np.full((64, 64, 3), 0.5, np.float32)            # one 64 px HR tile of the bundled model
    r = evaluate(bundled, [("thumb", flat[:20, :30]), ("tile", flat)])
    assert [s["name"] for s in r["images"]] == ["tile"] and r["skipped_smaller_than_tile"] == ["thumb"]
    assert "skipped 1 image(s) smaller than the HR tile: thumb" in format_eval(r)
    with pytest.raises(InputError, match="no image is at least 64x64"):
        evaluate(bundled, [("thumb", flat[:20, :30])])
    with pytest.raises(InputError, match="--max-side 32 is below"):
        evaluate(bundled, [("tile", flat)], max_side=32)


def test_eval_refuses_an_overlap_of_a_whole_tile_by_its_flag_before_reading_any_image(tmp_path, capsys) -> None:
    assert main(["eval", "alignvar-tiny", "--overlap", "16", "--images", str(tmp_path / "never-read")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overlap 16 is not below this model's tile of 16 LR pixels" in err[0], err


def test_eval_refuses_a_max_side_below_the_tile_before_reading_any_image(tmp_path, capsys) -> None:
    """The check needs only the checkpoint's config: a folder that does not even exist is never read."""
    assert main(["eval", "alignvar-tiny", "--max-side", "10", "--images", str(tmp_path / "never-read")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-side 10 is below the model's 64 px HR tile" in err[0]


def test_the_bicubic_baseline_runs_where_torch_cannot_be_imported() -> None:
    """bench.fidelity's bicubic tiles (and the demo's) once imported bench.evaluate, and with it
    PyTorch, the model and the ablations, for a numpy resize."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from alignvar_edge.bench.fidelity import bicubic_tiles\n"
            "print(bicubic_tiles(np.full((2, 3, 4, 5), 0.25, np.float32), 4).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2, 3, 16, 20)"


def test_bicubic_upscale_is_pytorch_bicubic_and_fast() -> None:
    """The bicubic column is PyTorch's bicubic (align_corners=False, no antialias); a 128 px LR
    took 37 s as a three-operand einsum, 3/4 of `eval`'s time on 512 px photos."""
    import time

    from alignvar_edge.model.matrices import bicubic_upscale
    lr = np.random.default_rng(0).random((128, 96, 3)).astype(np.float32)     # not square: no axis mix-up
    t0 = time.perf_counter()
    up = bicubic_upscale(lr, 4)
    took = time.perf_counter() - t0
    ref = torch.nn.functional.interpolate(torch.from_numpy(lr).double().permute(2, 0, 1)[None], scale_factor=4,
                                          mode="bicubic", align_corners=False)[0].permute(1, 2, 0).clamp(0, 1)
    assert up.shape == (512, 384, 3) and up.dtype == np.float32
    assert np.abs(up - ref.float().numpy()).max() < 1e-6
    assert took < 5.0, f"bicubic_upscale took {took:.1f} s for a 128 px LR"


def test_eval_numbers_are_those_before_the_speed_up(bundled: AlignVAR, monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured with the code before eval was made faster (batch 16, einsum bicubic): the numbers
    that earlier reports hold must not move. Those reports drew an image's LR from seed * 1000 +
    its place in the folder; this draw (seed 3, first image) is held here, the rule since then in
    test_an_image_scores_the_same_whatever_is_beside_it."""
    from alignvar_edge.bench import evaluate as module
    from alignvar_edge.bench.evaluate import evaluate
    monkeypatch.setattr(module, "image_seed", lambda seed, name: seed * 1000)
    coffee = dict(sample_images("heldout"))["coffee"][100:164, 136:264]
    r = evaluate(bundled, [("coffee", coffee)], seed=3, ablations=True)
    before_psnr = {"model": 28.050415938486136, "tokens_off": 28.04860652288003, "sca_off": 28.047166155742225,
                   "bicubic": 28.05643849321101, "vq_ceiling": 28.25972778303734}
    before_ssim = {"model": 0.8460445931628305, "tokens_off": 0.8465339298711462, "sca_off": 0.8459663077531658,
                   "bicubic": 0.8466802803827876, "vq_ceiling": 0.8491569468214974}
    # reports print 2-4 decimals; float32 kernels of other ISAs (AVX2 vs AVX-512) move the 8th
    assert r["mean_psnr_y"] == pytest.approx(before_psnr, abs=1e-6)
    assert r["mean_ssim_y"] == pytest.approx(before_ssim, abs=1e-7)
    # the seam figure changed since: like-phase pairs, over Pillow's bicubic (`bicubic_seam_figure`;
    # 1.0137208950243453 over the model's own bicubic kernel, 0.8224877809709753 over the HR's)
    assert r["mean_seam_ratio_vs_bicubic"] == pytest.approx(1.006423294822153, abs=1e-6)


def test_an_image_scores_the_same_whatever_is_beside_it(bundled: AlignVAR) -> None:
    """An image's LR is drawn from the seed and its name: another photograph before it, or a file
    skipped as smaller than a tile, moved every score when the draw was the image's place in the list
    (one photograph read 37.60 dB in its folder and 32.62 dB once a thumbnail was added)."""
    from alignvar_edge.bench.evaluate import evaluate
    from alignvar_edge.degrade import DOWNSAMPLE_MODES
    held = dict(sample_images("heldout"))
    coffee, rocket = held["coffee"][100:164, 136:264], held["rocket"][:64, :64]
    thumb = np.zeros((8, 8, 3), np.float32)
    alone = evaluate(bundled, [("coffee", coffee)], seed=3)
    beside = evaluate(bundled, [("thumb", thumb), ("rocket", rocket), ("coffee", coffee)], seed=3)
    assert beside["skipped_smaller_than_tile"] == ["thumb"]
    first, last = alone["images"][0], beside["images"][-1]
    assert last["name"] == "coffee" and last["psnr"] == first["psnr"] and last["ssim"] == first["ssim"]
    assert last["degradation"] == first["degradation"] != beside["images"][0]["degradation"]
    assert set(first["degradation"]) == {"blur_sigma", "downsample", "noise_sigma", "jpeg_quality"}
    assert first["degradation"]["downsample"] in DOWNSAMPLE_MODES


def test_evaluate_takes_images_as_upscale_does(bundled: AlignVAR) -> None:
    """uint8 and uint16 arrays are scaled to [0, 1] (a uint8 array scored -40.7 dB, silently); gray
    is scored as RGB; RGBA's alpha is left out; a 0..255 float image is refused."""
    from alignvar_edge.bench.evaluate import evaluate
    from alignvar_edge.errors import InputError
    u8 = np.round(dict(sample_images("heldout"))["coffee"][100:164, 200:264] * 255).astype(np.uint8)
    rgb = u8.astype(np.float32) / np.float32(255)
    gray = u8[..., 1]

    def psnr(image: object) -> dict[str, float]:
        return evaluate(bundled, [("x", image)])["mean_psnr_y"]
    want = psnr(rgb)
    assert 20 < want["model"] < 50
    assert psnr(u8) == want
    assert psnr(u8.astype(np.uint16) * 257) == want                     # 16-bit codes of the same picture
    assert psnr(np.dstack([u8, np.full(u8.shape[:2], 7, np.uint8)])) == want
    assert psnr(gray) == psnr(np.repeat(gray[..., None].astype(np.float32) / np.float32(255), 3, axis=2))
    with pytest.raises(InputError, match="image 'x': floating-point image with values from"):
        psnr(rgb * 255)


def test_eval_skips_an_unreadable_file_with_one_warning(tmp_path: Path, capsys) -> None:
    """A broken file in --images is skipped and named once, as `train` does; gray 16-bit files are read."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    coffee = dict(sample_images("heldout"))["coffee"]
    save_image(folder / "good.png", coffee[100:164, 200:264])
    save_image(folder / "gray16.png", coffee[100:164, 200:264].mean(axis=2), bits=16)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    out = tmp_path / "eval.json"
    assert main(["eval", "alignvar-tiny", "--images", str(folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [i["name"] for i in report["images"]] == ["good.png", "gray16.png"]
    # the report names what it left out, for a reader who never sees the warning
    assert [s["name"] for s in report["skipped_unreadable"]] == ["broken.png"] and report["skipped_unreadable"][0]["reason"]
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warned) == 1 and "skipping 1 file(s) of --images" in warned[0] and "broken.png (" in warned[0], warned
    # nothing readable: one line, not a traceback
    (folder / "good.png").unlink()
    (folder / "gray16.png").unlink()
    assert main(["eval", "alignvar-tiny", "--images", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no usable images in --images" in err[0] and "broken.png" in err[0], err


def test_eval_holds_one_image_as_float_at_a_time(bundled: AlignVAR) -> None:
    """A folder of large 8-bit photographs is scored without a float copy of every one of them:
    eight 1024 px photographs are 12 MB as float32 each, 100 MB together."""
    import tracemalloc

    from alignvar_edge.bench.evaluate import evaluate
    rng = np.random.default_rng(0)
    photos = [(f"p{i}", rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)) for i in range(8)]
    tracemalloc.start()
    try:
        evaluate(bundled, photos, max_side=64)          # one 64 px HR tile from each: little work
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_float_photo = 1024 * 1024 * 3 * 4
    assert peak < 3 * one_float_photo, f"peak {peak / 2**20:.0f} MiB while scoring"


def test_eval_json_replaces_only_an_eval_report(tmp_path: Path, capsys) -> None:
    """`--json FILE` onto a file eval did not write (a checkpoint's config.json) is refused before
    anything is read (the folder below does not exist); an earlier eval report is replaced."""
    theirs = tmp_path / "config.json"
    theirs.write_text('{"name": "tiny", "depth": 4}')
    assert main(["eval", "--images", str(tmp_path / "never-read"), "--json", str(theirs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--json: {theirs} exists and is not a result alignvar-edge wrote" in err[0], err
    assert theirs.read_text() == '{"name": "tiny", "depth": 4}'
    from alignvar_edge.cli_json import json_target
    ours = tmp_path / "eval.json"             # an eval report from before every result named its writer
    ours.write_text(json.dumps({"images": [], "seed": 0, "degradation": {}, "variants": {}}))
    assert json_target(str(ours)) == str(ours)
    assert json_target(str(tmp_path / "new.json")) == str(tmp_path / "new.json")      # nothing there yet


def test_eval_table_columns_stay_in_line_with_long_names() -> None:
    """A name wider than the old 14-character column pushed its row's scores out from under their labels."""
    from alignvar_edge.bench.evaluate import format_eval
    row = {"psnr": {"model": 28.5, "bicubic": 27.25}, "ssim": {"model": 0.81, "bicubic": 0.8}}
    result = {"images": [{"name": "a.png", "size": (512, 512), "source_size": (512, 512), **row},
                         {"name": "sunset_by_Aitzol_Berasategi.png", "size": (10240, 384), "source_size": (10240, 384),
                          **row}],
              "mean_psnr_y": {"model": 28.5, "bicubic": 27.25}, "mean_ssim_y": {"model": 0.81, "bicubic": 0.8},
              "overlap": 4, "mean_seam_ratio_vs_bicubic": 1.0}
    header, *rows = format_eval(result).splitlines()[:4]        # the header, two images and the mean
    assert [r.split()[0] for r in rows] == ["a.png", "sunset_by_Aitzol_Berasategi.png", "mean"]
    for label, cell in (("model", "28.50/0.810"), ("bicubic", "27.25/0.800")):
        end = header.index(label) + len(label)                 # scores end under their label's end
        assert [r[end - len(cell):end] for r in rows] == [cell] * 3, (label, header, rows)
    x = header.index("size") + len("size") - 5                 # the x of WxH: a 4-digit height after it
    assert [rows[0][x - 5:x + 5], rows[1][x - 5:x + 5]] == ["  512x512 ", "10240x384 "], (header, rows)


def test_eval_max_megapixels_without_an_images_folder_is_refused(capsys) -> None:
    assert main(["eval", "alignvar-tiny", "--max-megapixels", "50"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--max-megapixels limits the files of --images" in err[0], err
