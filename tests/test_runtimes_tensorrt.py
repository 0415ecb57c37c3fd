"""TensorRT: what can be checked without libnvinfer (build plans, trtexec command, the on-device
build kit, refusal of mismatched engines), and the engine tests that skip here with the reason.

No fake TensorRT: the engine tests run only where `tensorrt` imports and a GPU is visible.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from _runtime_fixtures import cache_root, export_dir, sharp_model
from alignvar_edge import runtimes
from alignvar_edge.errors import ArtifactError, BackendUnavailableError, InputError
from alignvar_edge.runtimes import tensorrt as trt_backend

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


def test_one_plan_for_tensorrt_10_and_11():
    plan = trt_backend.network_plan
    assert plan(10, "fp32", "fp32") == {"strongly_typed": False, "flags": []}
    assert plan(10, "fp16", "fp32") == {"strongly_typed": False, "flags": ["FP16"]}
    assert plan(10, "int8", "int8") == {"strongly_typed": False, "flags": ["INT8", "FP16"]}
    assert plan(10, "fp16", "fp16")["strongly_typed"]
    # TRT 11: strongly typed only, the FP16/INT8 flags are gone
    assert plan(11, "fp32", "fp32") == {"strongly_typed": True, "flags": []}
    assert plan(11, "int8", "int8") == {"strongly_typed": True, "flags": []}
    with pytest.raises(InputError, match="strongly typed"):
        plan(11, "fp16", "fp32")
    with pytest.raises(InputError, match="Q/DQ"):
        plan(10, "int8", "fp32")


def test_trtexec_command_matches_the_plan():
    cmd = trt_backend.trtexec_command({"strongly_typed": False, "flags": ["FP16"]}, workspace_mib=512)
    assert cmd[:3] == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine"]
    assert "--fp16" in cmd and "--timingCacheFile=timing.cache" in cmd
    assert "--memPoolSize=workspace:512M" in cmd and "--stronglyTyped" not in cmd
    assert "--stronglyTyped" in trt_backend.trtexec_command({"strongly_typed": True, "flags": []})


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
    assert "--target tensorrt --precision fp16" in text and "--fp16" in text
    assert (kit / "trtexec.txt").read_text().startswith("trtexec --onnx=model.onnx")
    from alignvar_edge.export.manifest import load_verified
    m = load_verified(kit)
    assert m["kind"] == "onnx" and m["extra"]["tensorrt_kit"]["reason"] == REASON
    with pytest.raises(ArtifactError, match="build kit"):
        trt_backend.BACKEND.load(kit)
    with runtimes.load(kit) as e:          # the kit is still a valid export: ONNX Runtime runs it
        assert e.backend == "onnxruntime"
        assert e.run(np.zeros((1, 3, 8, 8), np.float32))[0].shape == (1, 3, 32, 32)


def test_engine_for_another_version_or_gpu_is_refused():
    m = {"extra": {"tensorrt_version": "10.3.0.26", "compute_capability": "8.7", "gpu_name": "Orin"}}
    with pytest.raises(ArtifactError, match="built with TensorRT 10.3.0.26.*has 10.13.0.35"):
        trt_backend.check_compatible(m, "10.13.0.35", {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(ArtifactError, match="compute capability 8.7.*8.9"):
        trt_backend.check_compatible(m, "10.3.0.26", {"name": "L4", "compute_capability": "8.9"})
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        trt_backend.check_compatible(m, "10.3.0.26", None)
    trt_backend.check_compatible(m, "10.3.0.26", {"name": "Orin", "compute_capability": "8.7"})


@pytest.mark.skipif(not AVAILABLE, reason=f"TensorRT engines cannot run here: {REASON}")
def test_tensorrt_fp32_engine_matches_onnxruntime(export, tmp_path):
    eng_dir = runtimes.build(export, "tensorrt", precision="fp32", out=tmp_path / "trt")
    tiles = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    with runtimes.load(eng_dir) as trt_e, runtimes.load(export) as ort_e:
        sr, tok = trt_e.run(tiles)
        ref_sr, ref_tok = ort_e.run(tiles)
    assert all(np.array_equal(a, b) for a, b in zip(tok, ref_tok))
    assert float(np.abs(sr - ref_sr).max()) < 1e-3
