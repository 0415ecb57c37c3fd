"""CLI verbs of the runtimes: doctor, upscale (files, folders, no clobbering), compare, build."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import cache_root, export_dir, heldout_crops, sharp_model
from alignvar_edge.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def export(pytestconfig) -> Path:
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder with an RGB photo crop, a grayscale, a gray RGB and an RGBA image (odd sizes)."""
    root = tmp_path_factory.mktemp("imgs")
    crops = heldout_crops({"astronaut": (13, 17), "coffee": (9, 11)})
    u8 = {k: (v * 255).round().astype(np.uint8) for k, v in crops.items()}
    Image.fromarray(u8["astronaut"]).save(root / "astro.png")
    Image.fromarray(u8["coffee"][..., 1]).save(root / "gray.png")
    Image.fromarray(np.repeat(u8["coffee"][..., 1:2], 3, axis=2)).save(root / "gray-in-rgb.png")
    rgba = np.concatenate([u8["coffee"], np.full((9, 11, 1), 128, np.uint8)], axis=2)
    (root / "sub").mkdir()
    Image.fromarray(rgba).save(root / "sub" / "alpha.png")
    return root


def test_doctor_explains_unusable_backends_in_one_line_each(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:-1]}
    isa = out.splitlines()[-1]         # the ISA features that decide half precision, from /proc/cpuinfo
    assert isa.startswith("ISA: AMX ") and all(f in isa for f in ("AVX512-BF16", "AVX512-FP16", "VNNI"))
    assert set(lines) == {"torch", "onnxruntime", "openvino", "tensorrt", "coreml"}
    assert " ok " in lines["onnxruntime"] and " ok " in lines["openvino"]
    assert " no " in lines["tensorrt"] and "TensorRT is not installed" in lines["tensorrt"]
    assert " no " in lines["coreml"] and "needs macOS" in lines["coreml"]
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {b["name"] for b in info["backends"] if b["available"]} >= {"torch", "onnxruntime", "openvino"}
    assert set(info["host"]["isa_features"]) == {"AMX", "AVX512-BF16", "AVX512-FP16", "VNNI"}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs CPU affinity, 2+ cores")
def test_doctor_reports_the_cores_this_process_may_use_as_the_thread_check_does() -> None:
    """Under taskset (or a container's CPU set) doctor once said "N cores" with N the machine's count,
    and then --threads N was refused as more than the cores this process may use."""
    code = ("import os, sys; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
            "from alignvar_edge.cli import main\n"
            "sys.exit(main(['doctor', '--json']) or main(['doctor']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout[:out.stdout.index("\n}") + 2])
    assert info["host"]["usable_cores"] == 1 and "cores" not in info["host"]
    head = next(ln for ln in out.stdout.splitlines() if ln.startswith("alignvar-edge "))
    assert ", 1 usable cores, Python" in head, head


def test_doctor_and_selftest_say_the_host_in_one_line(capsys) -> None:
    """doctor's first line and selftest's `host` line are cpuinfo.host_line of the same host."""
    from alignvar_edge.cli import main
    from alignvar_edge.cpuinfo import host_info, host_line
    host = {"os": "Linux 6.1", "machine": "aarch64", "cpu": "Cortex-A78AE", "usable_cores": 6, "python": "3.10.12"}
    assert host_line(host) == "Linux 6.1 aarch64, Cortex-A78AE, 6 usable cores, Python 3.10.12"
    capsys.readouterr()
    assert main(["doctor"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f" on {host_line(host_info())}")
    from alignvar_edge.runtimes.selftest import format_report
    report = {"alignvar_edge": "0.1.0", "backend": "onnxruntime", "host": host, "model": "m", "weights_sha256": "0",
              "precision": "fp32", "golden_tiles": 2, "result": "BUILT-ONLY"}
    assert f"host      {host_line(host)}" in format_report(report).splitlines()


def test_upscale_a_file_and_a_folder(export, images, tmp_path, capsys):
    out = tmp_path / "astro_x4.png"
    assert main(["upscale", str(images / "astro.png"), str(out), "--engine", str(export), "--quiet"]) == 0
    assert Image.open(out).size == (68, 52)
    dst = tmp_path / "outdir"
    assert main(["upscale", str(images), str(dst), "--engine", str(export), "--backend", "openvino"]) == 0
    err = capsys.readouterr().err
    assert "upscaled 4 image(s)" in err and "openvino" in err
    assert Image.open(dst / "astro.png").size == (68, 52)
    gray = Image.open(dst / "gray.png")
    assert gray.mode == "L" and gray.size == (44, 36)
    # a file's layout is kept: an RGB file of gray pixels stays RGB
    assert Image.open(dst / "gray-in-rgb.png").mode == "RGB"
    alpha = Image.open(dst / "sub" / "alpha.png")
    assert alpha.mode == "RGBA" and alpha.size == (44, 36)
    assert np.abs(np.asarray(alpha)[..., 3].astype(int) - 128).max() <= 1    # alpha upscaled apart


def test_upscale_keeps_16_bit_gray_where_the_format_holds_it(export, images, tmp_path):
    # the 8-bit gray image again, as 16-bit (v * 257 is the same intensity): the model sees the same
    # image, so the 16-bit result is the 8-bit one with the low bits it had to round away
    gray8 = np.asarray(Image.open(images / "gray.png"))
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    for name in ("g8.png", "g16-out.png", "g16-out.jpg"):
        src = images / "gray.png" if name == "g8.png" else tmp_path / "g16.png"
        assert main(["upscale", str(src), str(tmp_path / name), "--engine", str(export), "--quiet"]) == 0
    out8 = np.asarray(Image.open(tmp_path / "g8.png")).astype(int)
    out16_img = Image.open(tmp_path / "g16-out.png")
    assert out16_img.mode.startswith("I;16") and out16_img.size == (44, 36)
    out16 = np.asarray(out16_img).astype(int)
    assert np.abs(np.round(out16 / 257) - out8).max() <= 1
    assert (out16 % 257 != 0).mean() > 0.5            # finer steps than 8 bits carry
    assert Image.open(tmp_path / "g16-out.jpg").mode == "L"     # JPEG holds 8 bits


def test_upscale_hint_throughput_runs_openvino_streams_and_keeps_the_pixels(export, images, tmp_path, capsys):
    src = images / "astro.png"
    args = ["--engine", str(export), "--backend", "openvino", "--threads", "2", "--quiet"]
    assert main(["upscale", str(src), str(tmp_path / "lat.png"), *args]) == 0
    assert main(["upscale", str(src), str(tmp_path / "tp.png"), *args, "--hint", "throughput"]) == 0
    # the same tiles through parallel requests: the same image
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "tp.png")),
                                  np.asarray(Image.open(tmp_path / "lat.png")))
    capsys.readouterr()
    # a backend without performance hints: one line, nothing written
    assert main(["upscale", str(src), str(tmp_path / "ort.png"), "--engine", str(export),
                 "--backend", "onnxruntime", "--hint", "throughput"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--hint applies to OpenVINO engines" in err[0] and not (tmp_path / "ort.png").exists()


def test_upscale_never_clobbers(export, images, tmp_path, capsys):
    src = images / "astro.png"
    before = src.read_bytes()
    assert main(["upscale", str(src), str(src), "--engine", str(export), "--force", "--quiet"]) == 2
    assert "input" in capsys.readouterr().err and src.read_bytes() == before
    out = tmp_path / "o.png"
    out.write_bytes(b"keep")
    assert main(["upscale", str(src), str(out), "--engine", str(export), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and "Traceback" not in err
    assert out.read_bytes() == b"keep"
    assert main(["upscale", str(src), str(out), "--engine", str(export), "--quiet", "--force"]) == 0
    assert Image.open(out).size == (68, 52)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]      # no temp files left


def test_compare_reports_tokens_and_psnr_against_torch(export, images, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    report = tmp_path / "cmp.json"
    assert main(["compare", str(export), "--images", str(images), "--reference", str(ckpt),
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "tiles identical 100.0%" in out
    doc = json.loads(report.read_text())
    assert doc["reference"] == str(ckpt) and len(doc["images"]) == 4
    res = doc["engines"]
    assert res[0]["backend"] == "onnxruntime" and len(res[0]["images"]) == 4
    assert all(im["tiles_identical"] == 1.0 for im in res[0]["images"])
    assert res[0]["min_psnr_db"] == "inf" or res[0]["min_psnr_db"] >= 50


def test_compare_records_each_runtime_version_as_its_backend_reads_it(export, images, tmp_path, monkeypatch):
    """compare looked the version up by distribution name: a TensorRT of JetPack has no pip metadata
    (its backend reads the module's own), an ONNX Runtime may be installed as onnxruntime-gpu."""
    from alignvar_edge import runtimes
    ort = runtimes.get_backend("onnxruntime")
    monkeypatch.setattr(type(ort), "version", lambda self: "0.0.0+read-by-the-backend")
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    report = tmp_path / "cmp.json"
    assert main(["compare", str(export), "--images", str(images), "--reference", str(ckpt),
                 "--json", str(report)]) == 0
    assert json.loads(report.read_text())["tools"]["onnxruntime"] == "0.0.0+read-by-the-backend"


def test_compare_reference_that_is_no_checkpoint_is_refused_naming_the_flag(export, images, capsys):
    assert main(["compare", str(export), "--images", str(images), "--reference", str(export)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and f"--reference {export} is not a model checkpoint" in err[0], err


def test_compare_goes_on_past_an_engine_for_a_device_that_is_not_here(export, images, tmp_path, capsys):
    """An OpenVINO engine built for a GPU that this host lacks is refused at load: compare says so
    in its row, compares the rest, in the order given, and exits 3 (not everything asked was compared)."""
    pytest.importorskip("openvino")
    from alignvar_edge import runtimes
    if "GPU" in runtimes.get_backend("openvino").devices():
        pytest.skip("this host has an OpenVINO GPU")
    gpu = runtimes.build(export, "openvino", "fp32", out=tmp_path / "ov-gpu", device="GPU")
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    report = tmp_path / "cmp.json"
    assert main(["compare", str(gpu), str(export), "--images", str(images), "--reference", str(ckpt),
                 "--json", str(report)]) == 3
    out = capsys.readouterr().out
    assert "ov-gpu: unavailable here: OpenVINO device GPU is not present here" in out
    assert "run it where GPU is, or on CPU" in out and "`openvino@CPU:PATH` (bench)" in out   # each verb's spelling
    res = json.loads(report.read_text())["engines"]
    assert [(e["engine"], e["backend"], e["device"]) for e in res] == [
        ("ov-gpu", "openvino", "GPU"), (export.name, "onnxruntime", "cpu")]
    assert res[0]["images"] == [] and res[0]["tiles_identical"] is None
    assert len(res[1]["images"]) == 4 and res[1]["tiles_identical"] == 1.0


def test_compare_of_images_too_small_to_score_says_na_in_strict_json(export, tmp_path, capsys):
    """A 1x1 image leaves nothing after the border crop and a 4x4 one is under SSIM's window: the
    scores are n/a, and the JSON stays strict (no bare NaN that jq or a browser would reject)."""
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (1, 1), (200, 40, 90)).save(small / "one.png")
    Image.new("RGB", (4, 4), (20, 140, 90)).save(small / "four.png")
    report = tmp_path / "cmp.json"
    assert main(["compare", str(export), "--images", str(small), "--reference", str(ckpt),
                 "--json", str(report)]) == 0
    captured = capsys.readouterr()
    assert "n/a" in captured.out and "Mean of empty slice" not in captured.err

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")
    doc = json.loads(report.read_text(), parse_constant=no_constants)
    scores = {im["image"]: im for im in doc["engines"][0]["images"]}
    assert scores["one.png"]["psnr_y_db"] == "nan" and scores["one.png"]["ssim_y"] == "nan"
    assert scores["four.png"]["ssim_y"] == "nan" and scores["four.png"]["psnr_y_db"] != "nan"


def test_build_verb_writes_engines_and_the_tensorrt_kit(export, tmp_path, capsys):
    assert main(["build", str(export), "--target", "onnxruntime", "--out", str(tmp_path / "ort")]) == 0
    assert "wrote" in capsys.readouterr().out
    # a device this host lacks: written, but never run, and the line says so
    assert main(["build", str(export), "--target", "openvino", "--device", "NPU", "--out", str(tmp_path / "npu")]) == 0
    assert "not run here (no parity check)" in capsys.readouterr().out
    assert main(["build", str(export), "--target", "tensorrt", "--out", str(tmp_path / "trt")]) == 0
    out = capsys.readouterr().out
    assert "build kit" in out and "build_on_device.sh" in out
    assert main(["build", str(export), "--target", "onnxruntime", "--out", str(tmp_path / "ort")]) == 2
    assert "--force" in capsys.readouterr().err


def test_float_groups_come_only_from_an_int8_artifact_and_only_for_openvino_int8(export, tmp_path, capsys):
    args = ["build", str(export), "--calib", "builtin", "--calib-tiles", "4"]
    assert main([*args, "--target", "onnxruntime", "--float-groups-from", str(export),
                 "--out", str(tmp_path / "a")]) == 2
    assert "--target openvino --precision int8 only" in capsys.readouterr().err
    # the fp32 export is not an int8 artifact: refused by name, nothing written
    assert main([*args, "--target", "openvino", "--precision", "int8", "--float-groups-from", str(export),
                 "--out", str(tmp_path / "b")]) == 2
    assert "not an int8 ONNX artifact" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_upscale_keeps_the_colour_profile_that_still_applies(export, tmp_path):
    """The pixels are kept as the file holds them, so their ICC profile must go with them (a
    Display P3 photo without it is shown as sRGB, dulled); a CMYK one no longer applies."""
    from PIL import ImageCms
    rgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert rgb_icc[16:20] == b"RGB "
    gray_icc = rgb_icc[:16] + b"GRAY" + rgb_icc[20:]              # the header says what it describes
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    px = np.full((5, 6, 3), 90, np.uint8)
    Image.fromarray(px).save(src / "p3.png", icc_profile=rgb_icc)
    Image.fromarray(px).save(src / "p3.jpg", icc_profile=rgb_icc)
    Image.fromarray(px[..., 0]).save(src / "gray.png", icc_profile=gray_icc)
    Image.fromarray(px[..., 0]).save(src / "gray-wrong.png", icc_profile=rgb_icc)   # RGB profile on gray
    Image.fromarray(px).convert("CMYK").save(src / "cmyk.jpg", icc_profile=rgb_icc[:16] + b"CMYK" + rgb_icc[20:])
    Image.fromarray(px).save(src / "plain.png")
    assert main(["upscale", str(src), str(dst), "--engine", str(export), "--quiet"]) == 0
    from alignvar_edge.runtimes.upscale_record import RECORD_NAME
    got = {p.name: Image.open(p).info.get("icc_profile") for p in dst.iterdir() if p.name != RECORD_NAME}
    assert got == {"p3.png": rgb_icc, "p3.jpg": rgb_icc, "gray.png": gray_icc, "gray-wrong.png": None,
                   "cmyk.jpg": None, "plain.png": None}


def test_upscale_overlap_past_the_tile_names_the_flag_and_writes_nothing(export, images, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert main(["upscale", str(images / "astro.png"), str(out), "--engine", str(export),
                 "--overlap", "100", "--quiet"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--overlap 100" in err[0] and "--overlap 0 to" in err[0]
    assert not out.exists()


def test_a_folder_where_a_folder_run_would_write_an_image_is_an_error_not_a_finished_output(
        export, images, tmp_path, capsys):
    dst = tmp_path / "outdir"
    (dst / "astro.png").mkdir(parents=True)
    for force in ([], ["--force"]):
        assert main(["upscale", str(images), str(dst), "--engine", str(export), "--quiet", *force]) == 2
        err = capsys.readouterr().err
        assert "astro.png is a folder" in err and "skipping" not in err
    assert not (dst / "gray.png").exists()


def test_build_says_when_its_only_rung_misses_the_selftest_gate(export, tmp_path, capsys, monkeypatch):
    # int8-weights has one rung: kept short of the gate selftest applies (here out of reach), the
    # build's output said only "wrote ..." and the engine then failed selftest
    import dataclasses

    from alignvar_edge import recipes
    real = recipes.recipe
    monkeypatch.setattr(recipes, "recipe", lambda *a, **k: dataclasses.replace(real(*a, **k), psnr_db=1e6))
    out = tmp_path / "w8"
    assert main(["build", str(export), "--target", "openvino", "--precision", "int8-weights", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "short of the selftest gate (99% tokens and 1e+06 dB): selftest will fail it" in said


class _LosesFinestTokens:
    """An engine whose finest scale's tokens all differ from what it computed: as one whose
    session options or device broke the rollout would give."""

    def __init__(self, engine):
        self.engine = engine

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def run(self, tiles):
        sr, tokens = self.engine.run(tiles)
        return sr, [*tokens[:-1], tokens[-1] + 1]


def test_an_onnxruntime_build_that_loses_tokens_is_refused_and_writes_nothing(export, tmp_path, capsys, monkeypatch):
    from alignvar_edge.runtimes import onnxruntime as backend
    measure = backend.parity_vs
    monkeypatch.setattr(backend, "parity_vs", lambda ref, eng, tiles, what: measure(ref, _LosesFinestTokens(eng),
                                                                                    tiles, what))
    out = tmp_path / "ort"
    assert main(["build", str(export), "--target", "onnxruntime", "--out", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("alignvar-edge build: error: the built engine keeps "), err
    assert "of the source's tokens on held-out tiles (< 99%); nothing was written. Try --device cpu" in err[0], err
    assert list(tmp_path.iterdir()) == []                       # nor a hidden half-written folder


def test_the_host_line_names_an_x86_cpus_family_and_model(tmp_path):
    """A VM's CPU is often only "AMD EPYC": the family and model numbers tell its generation."""
    from alignvar_edge.bench.host import machine_words
    from alignvar_edge.cpuinfo import cpu_info, cpu_words
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\n"
                    "model name\t: AMD EPYC\nstepping\t: 2\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n")
    info = cpu_info(fake, tmp_path / "no-sys")        # this machine's /sys would add its caches
    assert (info["x86_family"], info["x86_model"]) == (23, 1)
    assert cpu_words(info) == "AMD EPYC (x86 family 23 model 1)"
    words = machine_words({"cpu": info, "os": {"platform": "Linux"}})
    assert words.startswith("AMD EPYC (x86 family 23 model 1), ") and "ISA sse4_2 avx avx2 fma f16c" in words
    arm = tmp_path / "arm"          # no family on ARM: the model name alone
    arm.write_text("processor\t: 0\nmodel name\t: ARMv8 Processor rev 1 (v8l)\nFeatures\t: fp asimd\n")
    assert cpu_words(cpu_info(arm)) == "ARMv8 Processor rev 1 (v8l)"


def test_more_files_in_a_folder_runs_way_than_it_shows_are_counted_as_every_list_is(export, images, tmp_path,
                                                                                      capsys):
    """Past the first three, the files in the way are counted in the words of every such list
    ('a, b, c and 1 more', as --force's and train's refusals say it)."""
    dst = tmp_path / "out"
    outputs = [dst / "astro.png", dst / "gray-in-rgb.png", dst / "gray.png", dst / "sub" / "alpha.png"]
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert main(["upscale", str(images), str(dst), "--engine", str(export), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"not finished results of it: {outputs[0]} (empty), {outputs[1]} (empty), {outputs[2]} (empty) and 1 more; " in err


def test_a_folder_run_skips_only_its_own_results_and_names_the_files_in_their_way(export, images, tmp_path,
                                                                                  capsys):
    """Any file at an output path counted as a finished output: an empty file, a photo of another
    size and a non-image were "skipped" with exit 0, and stayed where the results belong."""
    dst = tmp_path / "out"
    argv = ["upscale", str(images), str(dst), "--engine", str(export), "--quiet"]
    assert main(argv) == 0
    assert main(argv) == 0                   # every output is a result: skipped, nothing redone
    assert "skipping 4 finished output(s)" in capsys.readouterr().err
    (dst / "gray.png").write_bytes(b"")
    Image.new("RGB", (300, 300), (9, 9, 9)).save(dst / "astro.png")
    (dst / "sub" / "alpha.png").write_bytes(b"a note, not an image")
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "3 file(s) in" in err[0] and "--force" in err[0], err
    for named in (f"{dst / 'gray.png'} (empty)", f"{dst / 'astro.png'} (300x300, not the 68x52 result)",
                  f"{dst / 'sub' / 'alpha.png'} (not an image)"):
        assert named in err[0], err
    assert (dst / "gray.png").read_bytes() == b"" and Image.open(dst / "astro.png").size == (300, 300)
    assert main([*argv, "--force"]) == 0      # asked for by name: replaced, and said
    assert f"replacing 3 file(s) in {dst} that were not finished results of this run (--force)" in capsys.readouterr().err
    assert Image.open(dst / "astro.png").size == (68, 52) and Image.open(dst / "gray.png").size == (44, 36)


def test_a_broken_symbolic_link_is_named_as_one(export, images, tmp_path, capsys):
    link = tmp_path / "dlink"
    link.symlink_to("nowhere")
    for force in ([], ["--force"]):
        assert main(["upscale", str(images), str(link), "--engine", str(export), "--quiet", *force]) == 2
        err = capsys.readouterr().err
        assert f"{link} is a broken symbolic link (to nowhere); remove it or choose another output" in err, err
    assert main(["upscale", str(images / "astro.png"), str(link), "--engine", str(export), "--quiet"]) == 2
    assert "is a broken symbolic link (to nowhere)" in capsys.readouterr().err
    inp = tmp_path / "fin"
    inp.mkdir()
    (inp / "broken.png").symlink_to("gone.png")
    Image.new("RGB", (5, 4)).save(inp / "ok.png")
    assert main(["upscale", str(inp), str(tmp_path / "o"), "--engine", str(export), "--quiet"]) == 4   # ok.png done
    err = capsys.readouterr().err
    assert f"{inp / 'broken.png'} is a broken symbolic link (to gone.png); fix or remove the link" in err, err
    assert (tmp_path / "o" / "ok.png").is_file()


def test_a_fifo_is_named_as_one_and_never_opened(export, tmp_path, capsys):
    """A FIFO in an input folder hung the run in open() (nothing written, not even the good image),
    and a FIFO given as the input was said not to exist."""
    from _fifo import fifo_fed_if_opened
    inp = tmp_path / "fin"
    inp.mkdir()
    Image.new("RGB", (5, 4)).save(inp / "a.png")
    with fifo_fed_if_opened(inp / "b.png") as fifo:
        assert main(["upscale", str(inp), str(tmp_path / "o"), "--engine", str(export), "--quiet"]) == 4   # a.png done
        err = capsys.readouterr().err
        assert f"skipping: {fifo} is a FIFO (named pipe), not an image file; pass a regular file" in err, err
        assert "1 file(s) could not be upscaled" in err and (tmp_path / "o" / "a.png").is_file()
        assert main(["upscale", str(fifo), str(tmp_path / "o.png"), "--engine", str(export), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"alignvar-edge upscale: error: {fifo} is a FIFO (named pipe), not an image file or a "
                       "folder; pass one of those"], err


def test_the_python_api_refuses_a_backend_that_does_not_open_the_path_as_upscale_does(export):
    from alignvar_edge import runtimes
    from alignvar_edge.errors import InputError
    for path, backend, said in ((export, "torch", "is an ONNX export, which runs on onnxruntime or openvino"),
                                ("alignvar-tiny", "onnxruntime", "is a model checkpoint, which runs on torch")):
        with pytest.raises(InputError, match=said):
            runtimes.load(path, backend=backend)
    with runtimes.load(export, backend="openvino", threads=1) as engine:      # OpenVINO reads ONNX exports
        assert engine.backend == "openvino"


def test_upscale_errors_say_the_fix_and_exit_2(export, images, tmp_path, capsys):
    src = str(images / "astro.png")
    for argv, said in (
            (["--engine", str(export), "--backend", "torch"],
             f"{export} is an ONNX export, which runs on onnxruntime or openvino, not on torch: use one of those "
             "(or auto), or a model checkpoint for torch"),
            (["--engine", "alignvar-tiny", "--backend", "onnxruntime"],
             "alignvar-tiny is a model checkpoint, which runs on torch, not on onnxruntime: use backend torch (or "
             "auto), or export it first (`alignvar-edge export alignvar-tiny --out DIR`) and use DIR")):
        assert main(["upscale", src, str(tmp_path / "o.png"), "--quiet", *argv]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and said in err[0], err
    assert main(["upscale", src, f"{src}/x.png", "--engine", str(export), "--quiet"]) == 2
    assert f"cannot write {src}/x.png: {src} is a file, where a folder is needed" in capsys.readouterr().err


def test_the_megapixel_limit_is_one_constant_in_every_help_and_default() -> None:
    """--max-megapixels' default is DEFAULT_MAX_MEGAPIXELS where the flag is parsed (upscale, train),
    and each help string says that constant, not a '24' of its own; compare and eval keep None
    (not given: check_megapixels_flag refuses it without --images)."""
    import argparse

    from alignvar_edge.argtypes import DEFAULT_MAX_MEGAPIXELS
    from alignvar_edge.cli import build_parser
    parser = build_parser()
    given = {"upscale": ["upscale", "a.png", "b.png"], "train": ["train", "vqvae", "--out", "r", "--steps", "1"],
             "compare": ["compare", "E"], "eval": ["eval"]}
    for verb, argv in given.items():
        want = DEFAULT_MAX_MEGAPIXELS if verb in ("upscale", "train") else None
        assert parser.parse_args(argv).max_megapixels == want, verb
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        flag = next(a for a in subparsers.choices[verb]._actions if "--max-megapixels" in a.option_strings)
        assert f"(default {DEFAULT_MAX_MEGAPIXELS:g}" in flag.help, (verb, flag.help)


def test_the_host_line_says_a_virtual_machine_its_clock_and_caches_where_linux_does(tmp_path):
    """Two hosts of one name ('AMD EPYC', 2 cores) differ by what a VM hides: the report says
    whether it is one, the clock and the cache sizes, each only where Linux gives it."""
    from alignvar_edge.bench.host import machine_words
    from alignvar_edge.cpuinfo import cpu_info
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
                    "cpu MHz\t\t: 2596.096\nflags\t\t: fpu avx2 hypervisor avx512f\n")
    cpu0 = tmp_path / "cpu0"
    for n, (level, kind, size) in enumerate((("1", "Data", "48K"), ("2", "Unified", "1024K"),
                                             ("3", "Unified", "32768K"))):
        index = cpu0 / "cache" / f"index{n}"
        index.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (index / name).write_text(value + "\n")
    info = cpu_info(fake, cpu0)
    if info["arch"] in ("x86_64", "AMD64"):
        assert info["virtual_machine"] is True
    assert (info["clock_mhz"], info["clock"], info["cache_kb"]) == (2596, "current", {"L2": 1024, "L3": 32768})
    assert "L2 1 MB, L3 32 MB]" in machine_words({"cpu": info, "os": {"platform": "Linux"}})
    (cpu0 / "cpufreq").mkdir()
    (cpu0 / "cpufreq" / "cpuinfo_max_freq").write_text("3700000\n")          # kHz, as Linux writes it
    assert cpu_info(fake, cpu0)["clock_mhz"] == 3700 and cpu_info(fake, cpu0)["clock"] == "max"
    bare = tmp_path / "bare"             # a bare-metal CPU's cpuinfo, no /sys folder: nothing claimed
    bare.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: avx2\n")
    info = cpu_info(bare, tmp_path / "none")
    assert info["clock_mhz"] is None and info["cache_kb"] is None and not info["virtual_machine"]
    assert machine_words({"cpu": info, "os": {"platform": "Linux"}}).startswith("AMD EPYC (x86 family 25 model 17), ")
