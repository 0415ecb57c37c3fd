"""Host-aware half precision: ISA features, the (backend, device) table, the half-then-fp32 build."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pytest

from alignvar_edge.cpuinfo import ISA_FEATURES, has_vnni, isa_features
from alignvar_edge.errors import HalfPrecisionError
from alignvar_edge.runtimes import half

AMX = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"]
ZEN4 = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]
AVX2 = ["avx2", "fma", "f16c"]


def test_isa_features_and_class_from_cpuinfo_flags() -> None:
    assert isa_features(AMX) == {"AMX": True, "AVX512-BF16": True, "AVX512-FP16": False, "VNNI": True}
    assert half.isa_class(isa_features(AMX)) == "AMX"
    assert half.isa_class(isa_features(ZEN4)) == "AVX512-BF16"
    assert isa_features(AVX2) == dict.fromkeys(ISA_FEATURES, False)
    assert half.isa_class(isa_features(AVX2)) == "no half units"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="has_vnni applies to x86 only")
@pytest.mark.parametrize("flags", [AMX, ZEN4, AVX2, ["avx2", "avx_vnni"], ["avx512f", "amx_tile"]])
def test_the_quantizer_and_doctor_agree_on_vnni(tmp_path: Path, flags: list[str]) -> None:
    """has_vnni (the int8 recipe) and isa_features (doctor, the engine manifest) read one flag list:
    AMX's tile registers alone (amx_tile, no amx_int8) once counted as VNNI to the quantizer only."""
    cpu = tmp_path / "cpuinfo"
    cpu.write_text(f"processor : 0\nflags : fpu sse {' '.join(flags)}\n")
    assert has_vnni(cpu) is isa_features(flags)["VNNI"]
    assert has_vnni(cpu) is any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


@pytest.mark.parametrize(("backend", "device", "isa", "want"), [
    ("openvino", "CPU", AMX, "bf16"), ("openvino", None, ZEN4, "bf16"), ("openvino", "CPU", AVX2, None),
    ("openvino", "GPU.0", AVX2, "fp16"), ("openvino", "NPU", AVX2, "fp16"), ("onnxruntime", "cpu", AMX, None)])
def test_host_half_table(backend: str, device: str | None, isa: list[str], want: str | None) -> None:
    assert half.host_half(backend, device, isa_features(isa)) == want


def test_build_auto_keeps_fp32_when_half_misses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from alignvar_edge import runtimes
    calls: list[str] = []

    def fake_build(src: Any, target: str, precision: str, out: Path, **kw: Any) -> Path:
        calls.append(precision)
        if precision == "bf16":
            raise HalfPrecisionError("OpenVINO CPU bf16 keeps 95.00% of the fp32 tokens")
        return out

    monkeypatch.setattr(runtimes, "build", fake_build)
    monkeypatch.setattr(half, "isa_features", lambda isa=None: {"AMX": True})
    log: list[str] = []
    out, used = half.build_auto(tmp_path, "openvino", lambda p: tmp_path / p, log=log.append)
    assert (out, used, calls) == (tmp_path / "fp32", "fp32", ["bf16", "fp32"])
    assert "missed the target" in log[0]
    monkeypatch.setattr(half, "isa_features", lambda isa=None: {"AMX": False})
    calls.clear()
    assert half.build_auto(tmp_path, "openvino", lambda p: tmp_path / p)[1] == "fp32" and calls == ["fp32"]


def test_bench_and_inspect_show_the_compute_precision() -> None:
    from alignvar_edge.runtimes.base import precision_label

    def _precision(e: dict[str, Any]) -> str | None:
        return precision_label(e.get("precision"), e.get("compute_precision"), e.get("expected_precision"))
    from alignvar_edge.export.inspect_artifact import compute_precision
    assert _precision({"precision": "fp32", "compute_precision": "bf16"}) == "fp32 (ran bf16)"
    assert _precision({"precision": "fp32", "compute_precision": "f32"}) == "fp32"
    assert _precision({"precision": "bf16", "compute_precision": "bf16"}) == "bf16"
    assert _precision({"precision": "int8", "compute_precision": None}) == "int8"
    # an int8 engine's float ops are meant to run f32; a split engine says which part ran what
    assert _precision({"precision": "int8", "compute_precision": "f32", "expected_precision": "f32"}) == "int8"
    assert (_precision({"precision": "int8", "compute_precision": "bf16", "expected_precision": "f32"})
            == "int8 (float ops ran bf16)")
    both_f32 = "f32 image, f32 tokens"       # a split int8 engine: not "int8 (f32 ...)", as if nothing ran int8
    assert (_precision({"precision": "int8", "compute_precision": both_f32, "expected_precision": both_f32})
            == f"int8 (float ops {both_f32})")
    # an fp16 engine checked and run in f32 (OpenVINO on a CPU: f16 weights) does not pass for f16 compute
    assert _precision({"precision": "fp16", "compute_precision": "f32", "expected_precision": "f32"}) == "fp16 (f32 compute)"
    split = "bf16 image, f32 tokens"
    assert _precision({"precision": "bf16", "compute_precision": split, "expected_precision": split}) == f"bf16 ({split})"
    assert (_precision({"precision": "bf16", "compute_precision": "bf16 image, bf16 tokens", "expected_precision": split})
            == "bf16 (ran bf16 image, bf16 tokens)")
    from alignvar_edge.manifest import new_manifest

    def manifest(**fields: Any) -> Any:
        return new_manifest("onnx", "onnx", "single", "fp16", {}, **fields)
    per = {"decoder_convs": "fp16", "logits_head": "f32"}
    assert compute_precision(manifest(quantization={"half_policy": {"per_group": per}})) == per
    measured = {"transformer_matmuls": {"bf16": 112}}
    assert compute_precision(manifest(extra={"compute_precision": measured})) == measured
    kit = manifest(extra={"tensorrt_kit": {"plan": {"f32_layers": ["a", "b"], "tf32": False}},
                          "fp16_f32_layers": {"source": "token path", "layers": ["a", "b"]}})
    assert compute_precision(kit) == {"f32 layers under FP16 (--layerPrecisions)": "2: token path", "TF32": "off"}
    # the layout since: the plan says it obeys the list, which only fp16_f32_layers holds
    one_owner = manifest(extra={"tensorrt_kit": {"plan": {"obey_f32_layers": True, "tf32": False}},
                                "fp16_f32_layers": {"source": "token path", "layers": ["a", "b", "c"]}})
    assert compute_precision(one_owner) == {"f32 layers under FP16 (--layerPrecisions)": "3: token path",
                                            "TF32": "off"}
    # an engine built without the constraints (a bare --fp16) claims none, whatever the list says
    bare = manifest(extra={"plan": {"flags": ["FP16"], "tf32": True},
                           "fp16_f32_layers": {"source": "token path", "layers": ["a", "b"]}})
    assert compute_precision(bare) is None
    assert compute_precision(manifest(extra={})) is None


def test_one_reading_of_openvino_device_names() -> None:
    """The backend, the engine README and the half choice all take a device's kind from devices.py."""
    import subprocess
    import sys
    from alignvar_edge.runtimes.openvino.devices import device_kind
    names = {None: "CPU", "": "CPU", "cpu": "CPU", "GPU.1": "GPU", "NPU": "NPU", "AUTO": "AUTO",
             "HETERO:GPU.0,CPU": "HETERO", "MULTI:GPU,CPU": "MULTI"}
    assert {d: device_kind(d) for d in names} == names
    # half's choice of a device, without loading the OpenVINO backend module (or openvino)
    code = ("import sys; from alignvar_edge.runtimes import half\n"
            "print(half.host_half('openvino', 'gpu.1', {}), half.host_half('openvino', 'HETERO:GPU,CPU', {}),\n"
            "      'alignvar_edge.runtimes.openvino.backend' in sys.modules, 'openvino' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["fp16", "None", "False", "False"]


@pytest.mark.parametrize(("isa", "want"), [(AVX2, "fp32"), (AMX, "bf16")])
def test_auto_precision_from_python_builds_what_a_plain_cli_build_does(
        micro_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isa: list[str], want: str) -> None:
    """runtimes.build(..., "auto") is the CLI's `build` without --precision: the host's fast half
    first (kept where its build holds the tokens), fp32 where the host has no half units."""
    from alignvar_edge import runtimes
    from alignvar_edge.manifest import read_manifest
    monkeypatch.setattr(half, "isa_features", lambda flags=None: isa_features(isa))
    out = runtimes.build(micro_export, "openvino", "auto", out=tmp_path / "engine")
    assert out == tmp_path / "engine" and read_manifest(out).precision == want


JETSON_ORIN = ["fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
               "cpuid", "asimdrdm", "lrcpc", "dcpop", "asimddp", "uscat", "ilrcpc", "flagm", "paca", "pacg"]


def test_an_arm_cpu_is_described_by_its_own_features() -> None:
    """A Jetson's flags name NEON's dot product and fp16, not "none of AMX, AVX512-BF16, ..., VNNI"
    (what doctor and every engine README said on one), and it is in no x86 half class."""
    from alignvar_edge.cpuinfo import ARM_ISA_FEATURES
    from alignvar_edge.runtimes.half import isa_phrase
    features = isa_features(JETSON_ORIN)
    assert set(features) == set(ARM_ISA_FEATURES)
    assert features["NEON-DOT"] and features["NEON-FP16"] and not features["I8MM"]
    assert isa_phrase(features).startswith("NEON-DOT, NEON-FP16 (without")
    assert half.isa_class(features) == "no half units"


@pytest.mark.parametrize(("vnni", "x86", "fix", "why"), [
    (True, True, False, "CPU has VNNI/AMX"), (False, True, True, "CPU without VNNI/AMX"),
    (None, True, True, "x86 CPU whose features could not be read"), (None, False, False, "not an x86 CPU")])
def test_nncfs_overflow_fix_is_for_the_x86_cpus_that_saturate(vnni: bool | None, x86: bool, fix: bool,
                                                               why: str) -> None:
    """An Arm build once took the fix, recorded as needed on "a CPU without VNNI/AMX"."""
    pytest.importorskip("nncf")
    from alignvar_edge.runtimes.openvino.nncf import overflow_fix
    assert overflow_fix(vnni, x86) == (fix, why)
