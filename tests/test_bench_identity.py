"""Which engine a bench report timed: every entry opened from an artifact names it by its manifest
(its graph files, its content hash, the export it was built from); `bench merge` warns where one
engine x device row joins engines built from other graphs, or with other flags on like hardware, and
notes what each device computed in; a manifest without its content hash is said, once, to leave what
the report copies from it unverified."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from _bench_reports import another_run
from _runtime_fixtures import sharp_model, with_external_weights
from alignvar_edge import runtimes
from alignvar_edge.bench.merge import merge_reports
from alignvar_edge.bench.schema import write_json
from alignvar_edge.manifest import graph_files, graph_files_sha256, read_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
TRTEXEC_LOG = Path(__file__).resolve().parent / "data" / "trtexec" / "trt10-orin-fp16-dla.log"
UNVERIFIED = ("manifest.json carries no content_sha256 (written by an older alignvar-edge, or edited by hand), so "
              "its own fields (model, parity, I/O) are unverified; the build_parity shown is as that manifest "
              "states it. Re-create the engine to be sure.")


def _content_hash(root: Path) -> str:
    return json.loads((root / "manifest.json").read_text())["content_sha256"]


def _without_content_hash(src: Path, dst: Path) -> Path:
    """A copy of an artifact whose manifest.json has no content hash, as an older alignvar-edge wrote it."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    del doc["content_sha256"]
    (dst / "manifest.json").write_text(json.dumps(doc))
    return dst


@pytest.fixture(scope="module")
def engines(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ONNX Runtime engine of the micro export, its rebuild by the same call, and a copy of it whose
    manifest has no content hash."""
    root = tmp_path_factory.mktemp("identity")
    built = {name: runtimes.build(micro_export, "onnxruntime", out=root / name, threads=1)
             for name in ("ort", "again")}
    return {**built, "old": _without_content_hash(built["ort"], root / "old")}


def test_a_device_report_names_each_engine_by_its_manifest(micro_export: Path, engines: dict[str, Path]) -> None:
    from alignvar_edge.bench.device import bench_engine_dir
    from alignvar_edge.bench.render import terminal_table
    report = bench_engine_dir([str(engines[k]) for k in ("ort", "again", "old")], runs=1, warmup=0, threads=1)
    ort, again, old = report["engines"]
    assert ort["content_sha256"] == _content_hash(engines["ort"])
    # the export it was built from, by the SHA-256 of that export's manifest.json, as the build recorded it
    assert ort["built_from"]["manifest_sha256"] == hashlib.sha256((micro_export / "manifest.json").read_bytes()).hexdigest()
    assert ort["built_from"]["backend"] == "onnx" and ort["built_from"]["precision"] == "fp32"
    # ... and by its graph files, the same for the export made again by the same command
    assert ort["built_from"]["files_sha256"] == graph_files_sha256(read_manifest(micro_export))
    # a rebuild by the same call writes the same files: one engine, whatever its manifest's `created`
    assert again["files_sha256"] == ort["files_sha256"] and len(ort["files_sha256"]) == 64
    # the unhashed copy: recorded as such, its parity copied as stated, and said once (JSON and console)
    assert "content_sha256" in old and old["content_sha256"] is None and old["files_sha256"] == ort["files_sha256"]
    assert old["build_parity"] == ort["build_parity"]
    said = [n for n in report["notes"] if "content_sha256" in n]
    assert said == [f"Unverified manifest: {old['label']}: {UNVERIFIED}"]
    assert terminal_table(report).count("Unverified manifest") == 1


def test_a_host_report_names_each_engine_and_says_an_unverified_manifest(micro_export: Path,
                                                                       engines: dict[str, Path]) -> None:
    from alignvar_edge.bench.render import report_markdown
    from alignvar_edge.bench.runner import BenchOptions, run_bench
    quick = BenchOptions(runs=1, warmup=0, tiles=1, threads=1, peak_n=128, profile_runs=0, image_size=0)
    report = run_bench([str(micro_export), f"old={engines['old']}"], reference=sharp_model("micro"), options=quick)
    by = {e["label"]: e for e in report["engines"]}
    export, old = by["onnxruntime-fp32"], by["old"]
    assert export["content_sha256"] == _content_hash(micro_export) and export["built_from"] is None
    assert old["content_sha256"] is None and old["build_parity"]
    # the baselines have no manifest: nothing to name, and nothing said to be unverified
    assert "content_sha256" not in by["pytorch-eager"] and "content_sha256" not in by["bicubic"]
    assert [n for n in report["notes"] if "content_sha256" in n] == [f"Unverified manifest: old: {UNVERIFIED}"]
    assert f"- Unverified manifest: old: {UNVERIFIED}" in report_markdown(report)


def test_the_files_hash_is_of_graph_files_and_their_external_data(micro_export: Path, tmp_path: Path) -> None:
    """files_sha256 covers the graphs and their external data only: a TensorRT kit's trtexec.txt and
    build_on_device.sh are build records, so the kit hashes as the export whose graph it carries;
    a TensorRT engine's plan is compiled by its GPU anew at each build, so it has none (what it was
    built from names it)."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes.tensorrt import backend as trt_backend
    external = with_external_weights(micro_export, tmp_path / "external")
    assert graph_files(read_manifest(external)) == ["model.onnx", "model.onnx.data"]
    kit = trt_backend.BACKEND.build(micro_export, tmp_path / "kit", precision="fp16", kit=True)
    listed = read_manifest(kit).files
    assert {"trtexec.txt", "build_on_device.sh"} <= set(listed) and graph_files(read_manifest(kit)) == ["model.onnx"]
    assert graph_files_sha256(read_manifest(kit)) == graph_files_sha256(read_manifest(micro_export))
    engine = tmp_path / "my.engine"
    engine.write_bytes(b"a plan built on the device")
    assert main(["adopt", str(engine), "--like", str(kit), "--log", str(TRTEXEC_LOG), "--out", str(tmp_path / "e")]) == 0
    adopted = read_manifest(tmp_path / "e")
    assert "model.engine" in adopted.files and graph_files_sha256(adopted) is None
    assert adopted.built_from is not None and adopted.built_from.files_sha256 == graph_files_sha256(read_manifest(kit))


# a Core ML build of `micro` in a process of its own, converted "on" another day than today
_COREML_BUILD_ANOTHER_DAY = """
import datetime, sys
sys.path.insert(0, sys.argv[1])
import coremltools.converters._converters_entry as entry
assert isinstance(entry.date, type), 'coremltools no longer dates its conversions with datetime.date'
class AnotherDay(datetime.date):
    @classmethod
    def today(cls):
        return cls(2001, 2, 3)
entry.date = AnotherDay
from _runtime_fixtures import sharp_model
from alignvar_edge import runtimes
runtimes.build('in-memory', 'coreml', out=sys.argv[2], model=sharp_model('micro'), proxy=False)
"""


def test_a_core_ml_package_built_twice_has_one_files_hash(tmp_path: Path) -> None:
    """Two builds of one command, in two processes on two days, write the same package but its
    Manifest.json, which holds random identifiers and which their files_sha256 leaves out: the spec
    (model.mlmodel) came out with its maps (the metadata) in another order in every process, and
    with coremltools' conversion date."""
    import os
    import subprocess
    import sys
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    tests = Path(__file__).resolve().parent
    res = subprocess.run([sys.executable, "-c", _COREML_BUILD_ANOTHER_DAY, str(tests), str(tmp_path / "b")],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    runtimes.build("in-memory", "coreml", out=tmp_path / "a", model=sharp_model("micro"), proxy=False)
    built = [read_manifest(tmp_path / n) for n in ("a", "b")]
    spec = "model.mlpackage/Data/com.apple.CoreML/model.mlmodel"
    assert (tmp_path / "a" / spec).read_bytes() == (tmp_path / "b" / spec).read_bytes()
    differ = [f for f in built[0].files if built[0].files[f] != built[1].files.get(f)]
    assert differ == ["model.mlpackage/Manifest.json"]
    assert "model.mlpackage/Manifest.json" not in graph_files(built[0]) and spec in graph_files(built[0])
    assert graph_files_sha256(built[0]) == graph_files_sha256(built[1]) is not None


def _not_one_build(merged: dict[str, Any]) -> list[str]:
    return [w for w in merged["warnings"] if "is not one build" in w]


def test_merging_cpus_that_compute_otherwise_notes_it_and_warns_of_no_other_build() -> None:
    """One command's OpenVINO int8 engine computes f32 on an AVX2 EPYC and bf16 on an AVX512-BF16 one:
    the merge called it 'not one engine' and told the user to build with one command, as they had."""
    merged = merge_reports([RESULTS / "epyc-zen1-2core" / "deploy-quick-b16.json",
                            RESULTS / "epyc-zen4-2core" / "b16-engines.json"])
    assert _not_one_build(merged) == []
    assert merged["notes"] == [
        "alignvar-tiny: openvino-int8 / ov-int8 computed in f32 image, f32 tokens on AMD EPYC, 2 cores, AVX2; "
        "bf16 image, f32 tokens on AMD EPYC, 2 cores, AVX512-BF16"]


@pytest.fixture(scope="module")
def simplified_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX Runtime engine of the micro model exported with --simplify: other graphs of the same model."""
    from alignvar_edge.export.onnx_export import export_onnx
    root = tmp_path_factory.mktemp("simplified")
    export = export_onnx(sharp_model("micro"), root / "export", graph="single", batch=1, simplify=True)
    return runtimes.build(export, "onnxruntime", out=root / "ort", threads=1)


def _device_report(engine: Path, label: str, path: Path) -> Path:
    from alignvar_edge.bench.device import bench_engine_dir
    report = bench_engine_dir([f"ort={engine}"], runs=1, warmup=0, threads=1, label=label)
    return write_json(path, report)


def test_merge_warns_where_one_row_joins_engines_built_from_other_exports(
        engines: dict[str, Path], simplified_engine: Path, tmp_path: Path) -> None:
    """The same build command run on each device from one export lines up without a word; an engine
    built from another export of the same model (here: simplified) is not one engine with it."""
    a = _device_report(engines["ort"], "device A", tmp_path / "a.json")
    same = merge_reports([a, _device_report(engines["again"], "device B", tmp_path / "b.json")])
    assert _not_one_build(same) == [] and same["notes"] == []
    other = merge_reports([a, _device_report(simplified_engine, "device C", tmp_path / "c.json")])
    sources = [r["source_sha256"] for r in other["rows"]]
    assert len(set(sources)) == 2 and None not in sources
    assert _not_one_build(other) == [
        f"micro: ort is not one build across the devices (built from other graphs: {sources[0][:12]}… on device A, "
        f"{sources[1][:12]}… on device C): its engine x device cells do not time one engine on several devices; "
        "build every device's engine from one export with the same command and flags"]


def test_merge_lines_up_tensorrt_engines_built_on_each_device_from_one_kit(micro_export: Path, tmp_path: Path) -> None:
    """Every device builds its own TensorRT plan (other bytes each time): engines from one kit line up
    without a word."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes.tensorrt import backend as trt_backend
    kit = trt_backend.BACKEND.build(micro_export, tmp_path / "kit", precision="fp16", kit=True)
    reports = []
    for device in ("orin-a", "orin-b"):
        plan = tmp_path / f"{device}.engine"
        plan.write_bytes(f"the plan {device} built".encode())
        out, rep = tmp_path / device, tmp_path / f"{device}.json"
        assert main(["adopt", str(plan), "--like", str(kit), "--log", str(TRTEXEC_LOG), "--out", str(out)]) == 0
        assert main(["bench", "trtexec", str(TRTEXEC_LOG), "--engine", str(out), "--label", device,
                     "--out", str(rep)]) == 0
        reports.append(rep)
    merged = merge_reports(reports)
    assert [r["files_sha256"] for r in merged["rows"]] == [None, None]
    assert _not_one_build(merged) == []


def _two_hosts() -> tuple[dict[str, Any], dict[str, Any]]:
    a = json.loads((RESULTS / "epyc-zen4-2core" / "b16-engines.json").read_text())
    b = another_run(a)
    b["label"] = "other host"
    return a, b


def _engine(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(e for e in report["engines"] if e["label"] == label)


def test_merge_tells_engines_of_other_flags_apart_on_like_hardware_only(tmp_path: Path) -> None:
    """A plain OpenVINO bf16 build and one made with --no-token-bf16 share the row 'openvino-bf16 |
    bf16 | 16': from one export, on two hosts of one CPU class, their files differ by the flag alone.
    On CPUs of other classes the build itself picks other rungs, so files are not compared there."""
    a, b = _two_hosts()

    def merged() -> dict[str, Any]:
        return merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])
    assert _not_one_build(merged()) == []        # reports before the files were recorded: nothing to tell
    for r in (a, b):
        for e in r["engines"]:
            if e["kind"] == "engine":            # built from one export by one command
                e.update(files_sha256="1" * 64, built_from={"path": "export", "files_sha256": "e" * 64})
    assert _not_one_build(merged()) == []
    _engine(b, "ov-bf16").update(files_sha256="2" * 64, compute_precision="bf16 image, f32 tokens")
    _engine(a, "ov-bf16")["compute_precision"] = "bf16 image, f32 tokens with bf16 matmuls"
    result = merged()
    assert _not_one_build(result) == [
        f"alignvar-tiny: ov-bf16 is not one build across the devices (other files on like hardware (AVX512-BF16): "
        f"111111111111… on {a['label']}, 222222222222… on other host): its engine x device cells do not time one "
        "engine on several devices; build every device's engine from one export with the same command and flags"]
    assert result["notes"] == [f"alignvar-tiny: ov-bf16 computed in bf16 image, f32 tokens with bf16 matmuls on "
                               f"{a['label']}; bf16 image, f32 tokens on other host"]
    # the other host an AVX2 CPU: its build chose its own rungs, and only what it computed in is said
    b["host"]["cpu"]["isa"] = [f for f in b["host"]["cpu"]["isa"] if not f.startswith("avx512")]
    result = merged()
    assert _not_one_build(result) == [] and len(result["notes"]) == 1
