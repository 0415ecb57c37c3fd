"""`deploy` end to end on the micro model: plan, builds, parity, bench, atomic output directory.

The export is reused from the runtime tests' cache (`--export`), so the test measures the pipeline
around it rather than the minute-long dynamo trace; ONNX Runtime fp32 is built and benched, and a
TensorRT build kit is written (TensorRT cannot run here, which the report must say).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from _runtime_fixtures import sharp_model
from alignvar_edge import cli, recipes, runtimes
from alignvar_edge.deploy import DeployOptions, deploy, plan
from alignvar_edge.errors import ArtifactError, OutputExistsError
from alignvar_edge.manifest import load_verified, read_manifest


def _opts(out: Path, export: Path, **kw: Any) -> DeployOptions:
    base: dict[str, Any] = dict(out=str(out), model=sharp_model("micro"), export=str(export),
                                targets="onnxruntime,tensorrt", precisions=("fp32",), quick=True,
                                runs=2, warmup=0, threads=1, bench_tiles=2)
    base.update(kw)
    return DeployOptions(**base)


def test_deploy_end_to_end(micro_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    lines: list[str] = []
    res = deploy(_opts(out, micro_export), log=lines.append)
    assert res.exit_code == 0 and res.out == out
    assert any(ln.startswith("[1/") for ln in lines) and any("benchmark" in ln for ln in lines)  # progress
    names = sorted(p.name for p in out.iterdir())
    assert {"manifest.json", "report.json", "report.md", "report.png", "export", "engines"} <= set(names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".deploy")]     # no temp leftovers
    report = json.loads((out / "report.json").read_text())
    by = {e["label"]: e for e in report["engines"]}
    assert by["onnxruntime-fp32"]["status"] == "ok"
    assert by["onnxruntime-fp32"]["fidelity"]["vs_reference"]["token_agreement"] == 1.0
    assert by["onnxruntime-fp32"]["path"] == "engines/onnxruntime-fp32"
    assert by["tensorrt-fp32"]["status"] == "unavailable" or runtimes.get_backend("tensorrt").is_available()[0]
    assert {"pytorch-eager", "bicubic"} <= set(by)
    steps = {s["target"] + "-" + s["precision"]: s for s in report["deploy"]["steps"]}
    assert steps["onnxruntime-fp32"]["status"] == "built" and steps["tensorrt-fp32"]["status"] in ("built", "kit")
    kit = out / "engines" / "tensorrt-fp32"
    assert " --onnx=model.onnx " in (kit / "trtexec.txt").read_text() and (kit / "build_on_device.sh").is_file()
    if by["tensorrt-fp32"]["status"] == "unavailable":     # the kit's script where it lies after the rename
        assert f"`sh {kit}/build_on_device.sh`" in by["tensorrt-fp32"]["reason"]
        assert ".tmp-" not in (out / "report.md").read_text()
        assert ".tmp-" not in (out / "report.json").read_text()     # the summary repeats the reason
    # every manifest names its sources where they lie after the rename, not in the staging directory
    for m in out.rglob("manifest.json"):
        assert ".deploy-" not in m.read_text(), m
    if read_manifest(kit).tensorrt_kit:
        assert read_manifest(kit).tensorrt_kit["source"] == str(out / "export")
    assert read_manifest(out / "engines" / "onnxruntime-fp32").built_from.path == str(out / "export")
    manifest = load_verified(out)
    assert manifest.kind == "deploy" and manifest.parity["onnxruntime-fp32"]["meets_gate"] is True
    assert "report.json" in manifest.files and "engines/onnxruntime-fp32/model.onnx" in manifest.files
    md = (out / "report.md").read_text()
    assert "## Deploy plan" in md and "report.png" in md and "tensorrt-fp32" in md
    assert "onnxruntime-fp32" in res.summary and "deploy finished" in res.summary
    # an existing output is never clobbered without --force, and is replaced whole with it
    with pytest.raises(OutputExistsError):
        deploy(_opts(out, micro_export))


def test_plan_skips_with_reasons() -> None:
    steps = {s.name: s for s in plan(["onnxruntime", "tensorrt", "coreml"], ("fp32", "int8"), quick=True)}
    assert steps["onnxruntime-int8"].status == "planned"
    assert steps["tensorrt-int8"].status == "skipped" and "--quick" in steps["tensorrt-int8"].detail
    # the rule's own reason (its int8 is judged on fake-quant), not "needs its own calibration pass"
    assert steps["tensorrt-int8"].detail == (
        "skipped in --quick: quantize judges tensorrt int8 on fake-quant only (Q/DQ computed literally), never on "
        "tensorrt's own int8 kernels, so a first look leaves it out; run without --quick, or "
        "`alignvar-edge quantize EXPORT --precision int8 --target tensorrt`")
    assert steps["coreml-fp16"].built_precision == "fp16" and steps["coreml-int8-weights"].status == "skipped"
    full = {s.name: s for s in plan(["coreml"], ("fp32", "int8"), quick=False)}
    assert full["coreml-int8-weights"].status == "planned"


def test_a_target_whose_build_tool_is_not_installed_is_skipped_with_its_install_line(
        micro_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An install with the `openvino` extra but not `openvino-int8` (no NNCF): its OpenVINO int8 step
    ran, failed with "ModuleNotFoundError: No module named 'nncf'" and deploy exited 1. A tool that is
    not installed makes the target not buildable here, as an absent backend does: skipped, with the
    line `build` says (the recipe's), and deploy exits 0."""
    pytest.importorskip("openvino")
    monkeypatch.setitem(sys.modules, "nncf", None)          # an install without NNCF
    missing = recipes.TOOLS["nncf"].missing()
    assert missing.startswith("OpenVINO int8 builds need NNCF, which is not installed; `pip install ")
    planned = {s.name: s for s in plan(["openvino"], ("fp32", "int8"), quick=False)}
    assert planned["openvino-int8"].status == "skipped" and planned["openvino-fp32"].status == "planned"
    assert planned["openvino-int8"].detail == f"cannot build here: {missing}"
    res = deploy(_opts(tmp_path / "d", micro_export, targets="openvino", precisions=("fp32", "int8")))
    steps = {s.name: s for s in res.steps}
    assert res.exit_code == 0, res.summary
    assert steps["openvino-fp32"].status == "built" and steps["openvino-int8"].status == "skipped"
    row = next(ln.split(None, 2) for ln in res.summary.splitlines() if ln.strip().startswith("openvino-int8 "))
    assert row == ["openvino-int8", "skipped", f"cannot build here: {missing}"], res.summary


def test_reused_export_must_match_the_model(micro_export: Path, tmp_path: Path) -> None:
    from alignvar_edge.export.random_model import random_model
    with pytest.raises(ArtifactError, match="another model"):
        deploy(_opts(tmp_path / "d", micro_export, model=random_model("tiny")))
    assert not (tmp_path / "d").exists()


def test_a_reused_export_of_other_weights_is_refused_before_any_work(micro_export: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The same config with one weight changed (a fine-tune of the exported model): the engines would
    come from the export and Core ML from the checkpoint, so it is refused, naming both weights."""
    import torch

    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.model.checkpoint import save_pretrained, weights_sha256
    tuned = random_model("micro")
    with torch.no_grad():
        tuned.head.bias[0] += 1.0
    ckpt = save_pretrained(tuned, tmp_path / "tuned")
    out = tmp_path / "d"
    rc = cli.main(["deploy", str(ckpt), "--export", str(micro_export), "--out", str(out), "--quick",
                   "--targets", "onnxruntime", "--precision", "fp32", "--threads", "1"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    recorded = read_manifest(micro_export).model.weights_sha256
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"--export '{micro_export}' was exported from" in err and f"weights SHA-256 {recorded[:12]}" in err
    assert f"checkpoint {ckpt.resolve()} (weights SHA-256 {weights_sha256(tuned)[:12]})" in err, err
    assert f"`alignvar-edge export {ckpt.resolve()} --out DIR`" in err and "leave out --export" in err
    assert "[1/" not in captured.out and not out.exists()          # refused before any step


def test_a_reused_export_that_records_no_weights_hash_is_said_to_be_uncheckable(
        micro_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An older export records no weights SHA-256: deploy cannot know whether it was exported from the
    model to deploy, so it says that, not that it came from other weights; nothing is written."""
    import dataclasses
    import shutil

    from alignvar_edge.manifest import write_manifest
    from alignvar_edge.model.checkpoint import save_pretrained
    ckpt = save_pretrained(sharp_model("micro"), tmp_path / "ckpt")
    export = tmp_path / "old-export"
    shutil.copytree(micro_export, export)
    m = read_manifest(export)
    m.model = dataclasses.replace(m.model, weights_sha256=None)
    write_manifest(export, m)
    out = tmp_path / "d"
    rc = cli.main(["deploy", str(ckpt), "--export", str(export), "--out", str(out), "--quick",
                   "--targets", "onnxruntime", "--precision", "fp32", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (f"alignvar-edge deploy: error: --export '{export}' records no weights SHA-256, so "
                               f"it cannot be checked against checkpoint {ckpt.resolve()}: re-export with "
                               f"`alignvar-edge export {ckpt.resolve()} --out DIR`, or leave out --export"), err
    assert not out.exists()


def _checkpoint_and_its_export(micro_export: Path, tmp_path: Path, golden: bool = False) -> tuple[Path, Path]:
    """A checkpoint of the sharp micro model (with its golden outputs where `golden`) and a copy of
    the micro export whose manifest names it, as `export CKPT` records these weights."""
    import dataclasses
    import shutil

    from alignvar_edge.manifest import write_manifest
    from alignvar_edge.model.checkpoint import checkpoint_source, save_pretrained
    from alignvar_edge.runtimes.golden import make_golden
    ckpt = save_pretrained(sharp_model("micro"), tmp_path / "ckpt")
    if golden:
        make_golden(ckpt)
    export = tmp_path / "export"
    shutil.copytree(micro_export, export)
    m = read_manifest(export)
    m.model = dataclasses.replace(m.model, name=str(ckpt), source=checkpoint_source(ckpt))
    write_manifest(export, m)
    return ckpt, export


def test_the_core_ml_package_names_the_checkpoint_as_the_other_engines_do(micro_export: Path, tmp_path: Path) -> None:
    """deploy hands Core ML the model it loaded: the package recorded an in-memory model, and its
    README the config's name, while the ONNX Runtime engine beside it named the checkpoint."""
    from alignvar_edge.model.checkpoint import checkpoint_source
    ckpt, export = _checkpoint_and_its_export(micro_export, tmp_path)
    out = tmp_path / "d"
    assert cli.main(["deploy", str(ckpt), "--export", str(export), "--out", str(out), "--quick", "--targets",
                     "onnxruntime,coreml", "--precision", "fp32", "--threads", "1", "--runs", "1", "--warmup", "0"]) == 0
    ort, package = (read_manifest(out / "engines" / e) for e in ("onnxruntime-fp32", "coreml-fp16"))
    assert package.model.source == ort.model.source == checkpoint_source(ckpt)
    assert package.model.name == ort.model.name == str(ckpt)
    assert package.built_from is not None and package.built_from.path == str(ckpt.resolve())
    titles = {e: (out / "engines" / e / "README.md").read_text().splitlines()[0]
              for e in ("onnxruntime-fp32", "coreml-fp16")}
    assert titles == {"onnxruntime-fp32": f"# ONNX Runtime engine: {ckpt}, fp32",
                      "coreml-fp16": f"# AlignVAR x4 super-resolution for Core ML: {ckpt}, fp16"}, titles


def test_deploys_core_ml_package_carries_the_checkpoints_golden_outputs(micro_export: Path, tmp_path: Path) -> None:
    """deploy's package shipped no golden file (its README saying 'build from a checkpoint with golden
    outputs, such as alignvar-tiny' of one built from alignvar-tiny), where `build CKPT --target coreml`
    ships the checkpoint's: selftest on a Mac then needed the checkout's copy."""
    ckpt, export = _checkpoint_and_its_export(micro_export, tmp_path, golden=True)
    out = tmp_path / "d"
    assert cli.main(["deploy", str(ckpt), "--export", str(export), "--out", str(out), "--quick", "--targets",
                     "coreml", "--threads", "1", "--runs", "1", "--warmup", "0"]) == 0
    package = out / "engines" / "coreml-fp16"
    assert (package / "golden.safetensors").read_bytes() == (ckpt / "golden.safetensors").read_bytes()
    assert read_manifest(package).extra["golden"]["tiles"] > 0
    assert "this directory has none" not in (package / "README.md").read_text()


def test_deploy_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["deploy", "--preset", "micro", "--export", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--export" in err


def test_a_crashing_backend_fails_its_step_only(micro_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    real_build = runtimes.build

    def build(src: Any, target: str, *a: Any, **kw: Any) -> Any:
        if target == "tensorrt":
            raise RuntimeError(f"Exception from src/plugin.cpp:54:\nshape inference failed for node X of {kw['out']}")
        return real_build(src, target, *a, **kw)

    monkeypatch.setattr(runtimes, "build", build)
    out = tmp_path / "d"
    res = deploy(_opts(out, micro_export))
    steps = {s.name: s for s in res.steps}
    assert res.exit_code == 1 and steps["onnxruntime-fp32"].status == "built"
    assert steps["tensorrt-fp32"].status == "failed"
    # named where it lies once published, not in the staging folder that is gone by then
    said = f"RuntimeError: shape inference failed for node X of {out / 'engines' / 'tensorrt-fp32'}"
    assert steps["tensorrt-fp32"].detail == said
    report = json.loads((out / "report.json").read_text())
    assert [s["detail"] for s in report["deploy"]["steps"] if s["status"] == "failed"] == [said]
    # inspect: the files are intact (exit 0), but the output is not what was asked, and it says so
    rc = cli.main(["inspect", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and lines[0].startswith("verdict    INCOMPLETE: 1 step of the deploy failed (tensorrt-fp32, "
                                           "its reason below)"), lines[0]
    assert f"step       tensorrt-fp32 failed: {said}" in lines


def test_a_full_disk_during_a_build_stops_the_deploy_and_keeps_the_old_output(
        micro_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk is the machine failing, not the target: the deploy went on for minutes and then
    replaced a complete output with one short of the engines the disk could not take (exit 1, no
    error line)."""
    import errno
    import os
    import shutil

    out = tmp_path / "dep"
    shutil.copytree(micro_export, out)                      # an output of ours, for --force to replace
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(src: Any, target: str, *a: Any, **kw: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(kw["out"]))
    monkeypatch.setattr(runtimes, "build", full)
    benched: list[Any] = []
    monkeypatch.setattr("alignvar_edge.deploy._bench", lambda *a, **kw: benched.append(a))
    with pytest.raises(OSError) as info:
        deploy(_opts(out, micro_export, force=True))
    assert cli._os_error_line(info.value) == (f"no space left on the device writing {out}; free some space or "
                                              "choose another output")
    assert benched == []                                    # stopped at the build
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dep"]        # no staging folder left


def test_running_out_of_memory_during_a_build_stops_the_deploy(micro_export: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from alignvar_edge.errors import OutOfMemoryError

    def no_memory(src: Any, target: str, *a: Any, **kw: Any) -> Any:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested "
                           "buffer of size 1048576")
    monkeypatch.setattr(runtimes, "build", no_memory)
    with pytest.raises(OutOfMemoryError, match="ran out of memory"):
        deploy(_opts(tmp_path / "dep", micro_export))
    assert list(tmp_path.iterdir()) == []                   # no output, no staging folder


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"),
    RuntimeError("[TRT] [E] 1: [defaultAllocator.cpp::allocate::20] Error Code 1: Cuda Runtime (out of memory)"),
])
def test_a_gpu_out_of_its_memory_fails_its_step_only(error: Exception, micro_export: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU target out of device memory stopped the whole deploy as the host running out does:
    the other targets, on the host, fare no worse for it."""
    real_build = runtimes.build

    def build(src: Any, target: str, *a: Any, **kw: Any) -> Any:
        if target == "tensorrt":
            raise error
        return real_build(src, target, *a, **kw)
    monkeypatch.setattr(runtimes, "build", build)
    res = deploy(_opts(tmp_path / "d", micro_export))
    steps = {s.name: s for s in res.steps}
    assert res.exit_code == 1 and steps["onnxruntime-fp32"].status == "built"
    assert steps["tensorrt-fp32"].status == "failed" and "out of memory" in steps["tensorrt-fp32"].detail


def test_openvino_int8_keeps_the_groups_the_onnx_int8_search_chose(micro_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "d8"
    lines: list[str] = []
    res = deploy(_opts(out, micro_export, targets="onnxruntime,openvino", precisions=("int8",)), log=lines.append)
    assert res.exit_code == 0, res.summary
    ort_q = json.loads((out / "quantized" / "onnxruntime-int8" / "manifest.json").read_text())["quantization"]
    ov_q = json.loads((out / "engines" / "openvino-int8" / "manifest.json").read_text())["quantization"]
    assert ov_q["ladder"][0]["int8_policy"]["float_groups"] == ort_q["policy"]["float_groups"]
    assert any("as the onnxruntime int8 search chose" in ln for ln in lines)
    # whichever rung was kept, the engine in the report is the one the manifest describes
    report = json.loads((out / "report.json").read_text())
    ov = next(e for e in report["engines"] if e["label"] == "openvino-int8")
    assert ov["status"] == "ok" and ov["fidelity"]["vs_reference"]["token_agreement"] is not None


def test_all_core_figure_is_a_labelled_second_row() -> None:
    from alignvar_edge.bench.render import summary_lines
    from alignvar_edge.deploy import all_cores_row
    best = {"label": "ort", "speedup_vs_eager": 18.48, "p50_ms_per_tile": 1.0, "token_agreement": 1.0}
    img = {"lr": [128, 128], "sr": [512, 512], "eager_mp_per_s": 0.02, "eager_batch": 4,
           "best_cpu": {"label": "ort", "mp_per_s": 0.05, "batch": 4, "speedup_vs_eager": 2.5}}
    every = {"settings": {"threads": 2}, "host": {"load_average": [3.0, 3.0, 3.0]},
             "summary": {"best_cpu": best, "image": img}}
    one = {"settings": {"threads": 1}, "model": {"tile": {"hr": 64}},
           "summary": {"best_cpu": {**best, "speedup_vs_eager": 2.18}, "min_token_agreement": 0.99,
                       "image": img},
           "all_cores": all_cores_row(every)}
    lines = summary_lines(one)
    assert "2.18x PyTorch eager (100.00% tokens), 1 thread(s)" in lines[0]
    assert "2.50x PyTorch eager's 0.020 MP/s (batch 4), 1 thread(s)" in lines[1]
    assert lines[2].startswith("All 2 cores (second row, not the headline") and "18.48x" in lines[2]


def test_tiles_too_large_to_batch_are_exported_once_at_batch_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy's batch search exports every candidate batch; for tiles past the batching limit
    (d16's 256 px) that would be four paper-size exports for nothing: one export at batch 1."""
    from types import SimpleNamespace

    from alignvar_edge import deploy as dp
    from alignvar_edge.export import onnx_export
    from alignvar_edge.manifest import ModelSource
    from alignvar_edge.model import AlignVARConfig
    batches: list[int] = []
    monkeypatch.setattr(onnx_export, "export_onnx", lambda model, path, **kw: batches.append(kw["batch"]) or path)
    model = SimpleNamespace(config=AlignVARConfig.from_preset("d16"))
    lines: list[str] = []
    path, search = dp._export(model, tmp_path, "d16", ModelSource.memory("d16"),
                              _opts(tmp_path / "out", tmp_path, quick=False), lines.append)
    assert batches == [1] and search is None and path == tmp_path / "export"
    assert any("not batched" in ln for ln in lines)


def test_the_host_extra_installs_what_deploy_writes_its_report_with() -> None:
    # deploy always writes report.png: with the plotting library only in the dev extra, a host
    # installed as the README says (`alignvar-edge[host]`) lost a finished deploy at its last step
    import tomllib
    root = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.split(">")[0].split("=")[0].strip() == "matplotlib" for req in extras["host"])
    assert not any(req.startswith("matplotlib") for req in extras["device"])


def test_the_build_progress_line_names_the_engine_the_step_builds(micro_export: Path, tmp_path: Path) -> None:
    """On a host with fast half units an fp32 openvino step builds the half engine first: its
    progress line names that precision, not fp32 (it read `build openvino-fp32` over a bf16 build)."""
    lines: list[str] = []
    res = deploy(_opts(tmp_path / "d", micro_export, targets="openvino"), log=lines.append)
    step = next(s for s in res.report["deploy"]["steps"] if s["target"] == "openvino")
    assert step["status"] == "built", step
    label = next(ln for ln in lines if "] build openvino-" in ln)
    assert f"] build openvino-{step['built_precision']}" in label, (label, step)


def test_quick_help_states_the_tile_counts_quick_uses(capsys, monkeypatch) -> None:
    """--quick's help says its tile counts are rounded up to whole calls of the batch, as they are
    (deploy._calib_sizes, export's n_tiles): 16 of each at the default batch 16."""
    from alignvar_edge.export.batch import default_batch
    from alignvar_edge.model import AlignVARConfig
    from alignvar_edge.quantize.calibration.sets import whole_calls
    monkeypatch.setenv("COLUMNS", "400")
    assert cli.main(["deploy", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ("8 calibration and validation tiles and 2 export-validation tiles, each rounded up to whole calls of "
            "the export's batch (16 of each at the default batch 16)") in text
    b = default_batch(AlignVARConfig.from_preset("tiny"))
    assert b == 16 and whole_calls(8, b) == whole_calls(2, b) == 16


def test_a_calibration_folder_without_images_is_refused_before_the_export(tmp_path, capsys):
    """`deploy --calib DIR` with no image in DIR exported and timed the batch first, then failed
    minutes later when it calibrated."""
    calib = tmp_path / "photos"
    calib.mkdir()
    (calib / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code = cli.main(["deploy", "--preset", "micro", "--out", str(out), "--calib", str(calib), "--quick",
                     "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"calibration folder '{calib}' holds no images (looked for .png" in err[0], err
    assert "not reading 1 file(s) of other kinds (notes.txt)" in err[0], err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
