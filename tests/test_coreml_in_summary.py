"""Which engines bench's summary chooses its best engine among: those on this machine's CPU and, on a
Mac, Core ML's (its compute units are parts of the same SoC); never another runtime's GPU. Core ML
cannot run here, so the rule is held on report rows; deploy's line for a package its build never ran
says what the bench then does with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alignvar_edge import runtimes
from alignvar_edge.bench.render import all_cores_line, summary_lines
from alignvar_edge.bench.runner import BenchOptions, _summary
from alignvar_edge.bench.subjects import EAGER


def _row(label: str, backend: str, device: str, tile_ms: float, image_ms: float,
         tokens: float | None = 1.0, kind: str = "engine") -> dict[str, Any]:
    """A timed report row: p50 per tile and per whole image, token agreement against eager."""
    return {"label": label, "backend": backend, "kind": kind, "status": "ok", "device": device,
            "latency": {"per_tile_ms": {"p50": tile_ms}},
            "image": {"per_image_ms": {"p50": image_ms}, "megapixels_per_s": 0.262144 / image_ms * 1e3,
                      "batch": 16, "lr": [128, 128], "sr": [512, 512]},
            "fidelity": None if tokens is None else {"vs_reference": {"token_agreement": tokens}}}


def _report(*engines: dict[str, Any]) -> dict[str, Any]:
    """A report around `engines`, eager PyTorch on the CPU first, summarised as bench does."""
    entries = [_row(EAGER, "torch", "cpu", 10.0, 1000.0, tokens=None, kind="baseline"), *engines]
    summary = _summary(entries, BenchOptions(min_token_agreement=0.99), flops_total=1e9, peak_gflops=100.0)
    return {"summary": summary, "engines": entries, "settings": {"threads": 1}, "model": {"tile": {"hr": 64}}}


@pytest.mark.parametrize("units", ["CPU_AND_NE", "ALL", "CPU_ONLY", "CPU_AND_GPU"])
def test_a_core_ml_engine_is_the_best_engine_on_a_mac(units: str) -> None:
    report = _report(_row("onnxruntime-fp32", "onnxruntime", "cpu", 5.0, 500.0),
                     _row("coreml-fp16", "coreml", units, 2.0, 250.0))
    s = report["summary"]
    assert s["engines_meeting_fidelity"] == ["onnxruntime-fp32", "coreml-fp16"]
    assert s["best_cpu"]["label"] == "coreml-fp16" and s["best_cpu"]["speedup_vs_eager"] == 5.0
    assert s["image"]["best_cpu"]["label"] == "coreml-fp16" and s["image"]["best_cpu"]["speedup_vs_eager"] == 4.0
    lines = summary_lines(report)
    assert lines[0].startswith("Best CPU engine at >= 99% token agreement: **coreml-fp16**"), lines
    assert not [ln for ln in lines if ln.startswith("No engine reached")], lines


@pytest.mark.parametrize("units", ["CPU_AND_NE", "ALL", "CPU_AND_GPU"])
def test_a_core_ml_engine_beyond_the_cpu_is_named_with_its_compute_units_and_no_thread_count(units: str) -> None:
    """A Neural Engine or GPU run read 'Best CPU engine ... coreml-fp16 ... 1 thread(s)': a thread
    count it never took, on parts that are not the CPU. The lines name the units; the thread count
    is eager's alone."""
    report = _report(_row("onnxruntime-fp32", "onnxruntime", "cpu", 5.0, 500.0),
                     _row("coreml-fp16", "coreml", units, 2.0, 250.0))
    s = report["summary"]
    assert s["best_cpu"]["compute_units"] == s["image"]["best_cpu"]["compute_units"] == units
    best, image = summary_lines(report)[:2]
    assert best == (f"Best CPU engine at >= 99% token agreement: **coreml-fp16** on {units}, 2.00 ms/tile, 5.00x "
                    "PyTorch eager (100.00% tokens); PyTorch eager ran 1 thread(s), Core ML takes no thread count.")
    assert image.startswith("Whole 512x512 SR image (") and f": **coreml-fp16** on {units} 1.049 MP/s" in image
    assert image.endswith("(batch 16); PyTorch eager ran 1 thread(s), Core ML takes no thread count."), image
    row = {"threads": 2, "load_average": 0.5, "best_cpu": s["best_cpu"], "image": s["image"]}
    assert f"coreml-fp16 on {units} 5.00x PyTorch eager per tile, coreml-fp16 on {units} 4.00x" in all_cores_line(row)


def test_a_core_ml_engine_on_the_cpu_claims_no_thread_count_either() -> None:
    # the bench gives Core ML no thread count (it has none to set), CPU_ONLY included
    report = _report(_row("coreml-fp16", "coreml", "CPU_ONLY", 2.0, 250.0))
    assert report["summary"]["best_cpu"]["compute_units"] == "CPU_ONLY"
    best, image = summary_lines(report)[:2]
    assert best.startswith("Best CPU engine at >= 99% token agreement: **coreml-fp16**, 2.00 ms/tile"), best
    assert best.endswith("; PyTorch eager ran 1 thread(s), Core ML takes no thread count."), best
    assert ": **coreml-fp16** 1.049 MP/s" in image and image.endswith("Core ML takes no thread count."), image


def test_a_cpu_runtime_keeps_its_thread_count_and_no_compute_units() -> None:
    report = _report(_row("onnxruntime-fp32", "onnxruntime", "cpu", 5.0, 500.0))
    s = report["summary"]
    assert "compute_units" not in s["best_cpu"] and "compute_units" not in s["image"]["best_cpu"]
    best, image = summary_lines(report)[:2]
    assert best.endswith("**onnxruntime-fp32**, 5.00 ms/tile, 2.00x PyTorch eager (100.00% tokens), 1 thread(s)."), best
    assert image.endswith("(batch 16), 1 thread(s)."), image


def test_the_only_faithful_engine_being_core_ml_is_not_reported_as_none():
    # what the review saw on a Mac: Core ML at 100% tokens, the summary saying no engine reached 99%
    report = _report(_row("onnxruntime-int8", "onnxruntime", "cpu", 4.0, 400.0, tokens=0.95),
                     _row("coreml-fp16", "coreml", "CPU_AND_NE", 2.0, 250.0))
    assert report["summary"]["best_cpu"]["label"] == "coreml-fp16"
    assert report["summary"]["image"]["best_cpu"]["label"] == "coreml-fp16"
    assert not [ln for ln in summary_lines(report) if ln.startswith("No engine reached")]


@pytest.mark.parametrize("backend, device", [("torch", "cuda:0"), ("onnxruntime", "cuda"), ("openvino", "GPU.0"),
                                             ("tensorrt", "NVIDIA H200"), ("openvino", "NPU")])
def test_another_runtimes_gpu_stays_out_of_the_best_cpu_engine(backend: str, device: str) -> None:
    report = _report(_row("cpu-engine", "onnxruntime", "CPU", 5.0, 500.0),
                     _row("gpu-engine", backend, device, 1.0, 100.0))
    s = report["summary"]
    assert s["best_cpu"]["label"] == "cpu-engine" and s["image"]["best_cpu"]["label"] == "cpu-engine"
    # OpenVINO's AUTO starts on the CPU: it competes, as before
    auto = _report(_row("ov-auto", "openvino", "AUTO:GPU,CPU", 5.0, 500.0),
                   _row("gpu-engine", backend, device, 1.0, 100.0))
    assert auto["summary"]["best_cpu"]["label"] == "ov-auto"


def test_no_line_says_no_engine_reached_the_gate_when_one_did_on_a_gpu():
    report = _report(_row("onnxruntime-int8", "onnxruntime", "cpu", 4.0, 400.0, tokens=0.95),
                     _row("trt-fp16", "tensorrt", "cuda:0", 1.0, 100.0))
    s = report["summary"]
    assert s["best_cpu"] is None and s["engines_meeting_fidelity"] == ["trt-fp16"]
    lines = summary_lines(report)
    assert lines[0] == ("At >= 99% token agreement: trt-fp16, none on this machine's CPU (no best CPU engine; each "
                        "row has its speed-up).")
    assert not [ln for ln in lines if ln.startswith("No engine reached")], lines


def _coreml_engine_dir(root: Path) -> Path:
    """An engine directory as a Core ML build without its proxy (`deploy --quick`) leaves it: no parity."""
    from alignvar_edge.manifest import ModelInfo, new_manifest, write_manifest
    root.mkdir()
    write_manifest(root, new_manifest("engine", "coreml", "single", "fp16", ModelInfo(name="tiny")))
    return root


def test_deploy_says_the_bench_checks_a_core_ml_package_where_a_mac_runs_it(tmp_path, monkeypatch):
    from alignvar_edge.deploy import _build_detail
    engine = _coreml_engine_dir(tmp_path / "coreml-fp16")
    coreml = runtimes.get_backend("coreml")
    monkeypatch.setattr(coreml, "is_available", lambda: (True, ""))          # as on a Mac
    assert _build_detail(engine) == "no build-time parity check: the bench checks its tokens against PyTorch"
    monkeypatch.setattr(coreml, "is_available", lambda: (False, "running it needs macOS"))
    assert _build_detail(engine) == "not run here: no parity check"


def test_a_merged_reports_line_names_its_core_ml_best_engines_compute_units(tmp_path: Path) -> None:
    """`bench merge` said 'best CPU engine coreml-fp16 5.00x eager' of a Neural Engine run, as the
    report's own lines no longer do."""
    import json

    from _bench_reports import another_run
    from alignvar_edge.bench.integrity import made_again
    from alignvar_edge.bench.merge import merge_markdown, merge_reports
    mac = json.loads((Path(__file__).parents[1] / "docs/results/epyc-zen4-2core/b16-engines.json").read_text())
    cpu = another_run(mac)
    cpu["label"] = "cpu host"
    # the Mac's best engine ran through Core ML on the Neural Engine
    best = next(e for e in mac["engines"] if e["label"] == mac["summary"]["best_cpu"]["label"])
    best.update(label="coreml-fp16", backend="coreml", device="CPU_AND_NE")
    mac = made_again(mac)
    assert mac["summary"]["best_cpu"]["compute_units"] == "CPU_AND_NE"
    paths = []
    for name, report in (("mac", mac), ("cpu", cpu)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(report))
    lines = merge_markdown(merge_reports(paths)).splitlines()
    speedup = mac["summary"]["best_cpu"]["speedup_vs_eager"]
    assert [ln for ln in lines if f"best CPU engine coreml-fp16 on CPU_AND_NE {speedup:.2f}x eager" in ln]
    cpu_best = cpu["summary"]["best_cpu"]
    assert [ln for ln in lines if f"best CPU engine {cpu_best['label']} {cpu_best['speedup_vs_eager']:.2f}x" in ln]
