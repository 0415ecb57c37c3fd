"""`build --redact`: engines shipped to others record the checkpoint by its folder name and SHA-256s
and the calibration set by its hash and counts, and no folder of the build host (its user, its
project) nor any calibration photo's file name, in any file of the engine directory."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import nano_model
from alignvar_edge import runtimes
from alignvar_edge.cli import main as cli
from alignvar_edge.manifest import read_manifest, sha256_file
from alignvar_edge.runtimes.artifacts import engine_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PHOTOS = ("jane_doe_passport_scan.png", "patient_4711_xray.png", "home_123_main_st.png")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build host's folders: a checkpoint in a user's project, its export, and calibration photos
    whose file names are private."""
    root = tmp_path_factory.mktemp("host")
    ckpt = root / "home" / "jane.doe" / "acme-secret-project" / "ckpt"
    nano_model().save_pretrained(ckpt)
    photos = root / "private_calib"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(photos / name)
    assert cli(["export", str(ckpt), "--out", str(root / "export")]) == 0
    return root


def _private_words(host: Path) -> list[str]:
    return [str(host), "jane.doe", "acme-secret-project", "private_calib", *(Path(p).stem for p in PHOTOS)]


def _leaks(engine: Path, words: list[str]) -> list[str]:
    return [f"{f.relative_to(engine)}: {w}" for f in sorted(engine.rglob("*")) if f.is_file()
            for w in words if w.encode() in f.read_bytes()]


@pytest.mark.parametrize("build", [
    ["--target", "onnxruntime"],
    ["--target", "torch"],
    ["--target", "tensorrt", "--kit"],
    ["--target", "openvino", "--precision", "int8", "--calib", "{photos}"],
], ids=lambda b: "-".join(b[1:4:2]))
def test_a_redacted_engine_names_no_folder_of_the_host_and_no_calibration_photo(host: Path, build: list[str]) -> None:
    if build[1] == "openvino":
        pytest.importorskip("nncf", reason="OpenVINO int8 calibrates with NNCF")
    ckpt = host / "home" / "jane.doe" / "acme-secret-project" / "ckpt"
    out = host / f"redacted-{build[1]}"
    args = [a.replace("{photos}", str(host / "private_calib")) for a in build]
    assert cli(["build", str(host / "export"), *args, "--out", str(out), "--redact", "--force"]) == 0
    assert _leaks(out, _private_words(host)) == []
    m = read_manifest(out)
    assert m.redacted and m.model.name == "ckpt" and m.source.describe() == "checkpoint ckpt"
    # what proves which checkpoint it was stays: its files' SHA-256s
    assert dict(m.source.sha256) == {f: sha256_file(ckpt / f) for f in ("config.json", "model.safetensors")}
    assert (out / "README.md").read_text().splitlines()[0].endswith(("ckpt, fp32", "ckpt, int8, built for CPU",
                                                                     "ckpt (fp32)", "ckpt, fp32, built for cpu"))
    if build[1] == "openvino":       # the set by its hash and counts
        cal = m.calibration or {}
        assert len(cal["hash"]) == 64 and cal["images"] == 3 and cal["tiles"] > 0 and "files" not in cal


def test_a_redacted_openvino_int8_engine_names_not_the_int8_artifact_of_its_float_groups(host: Path) -> None:
    """deploy --redact hands the onnxruntime int8 search's float groups to the OpenVINO int8 build
    (`build --float-groups-from DIR --redact` too): the engine recorded that artifact's path."""
    pytest.importorskip("nncf", reason="OpenVINO int8 calibrates with NNCF")
    from alignvar_edge.quantize.artifact import FloatGroups, searched_float_groups
    from alignvar_edge.quantize.calibration import CalibrationSet
    quantized = host / "home" / "jane.doe" / "acme-secret-project" / "q-int8"
    assert cli(["quantize", str(host / "export"), "--precision", "int8", "--no-search", "--tiles", "16",
                "--val-tiles", "16", "--out", str(quantized), "--force"]) == 0
    searched = searched_float_groups(quantized)
    groups = FloatGroups(["sca_bias"], searched.origin)         # as a search that kept SCA's bias in float
    cfg = runtimes.load(host / "export").config
    out = runtimes.build(host / "export", "openvino", precision="int8", out=host / "redacted-openvino-groups",
                         calibration=CalibrationSet.from_folder(host / "private_calib", cfg, n=16, n_val=16),
                         float_groups=groups, redact=True, force=True)
    assert _leaks(out, _private_words(host)) == []
    recorded = read_manifest(out).extra["float_groups_from"]
    # which artifact it was stays provable: its manifest's SHA-256
    assert recorded["path"] is None and recorded["manifest_sha256"] == sha256_file(quantized / "manifest.json")
    assert groups.origin["path"] == str(quantized)          # the caller's groups keep where they came from


def test_inspect_and_selftest_name_the_checkpoint_by_its_folder_name(host: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = host / "redacted-inspect"
    assert runtimes.build(host / "export", "onnxruntime", out=out, redact=True) == out      # the Python API
    capsys.readouterr()
    assert cli(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "redacted   built with --redact" in shown and "source     checkpoint ckpt" in shown
    assert cli(["selftest", "--engine", str(out), "--runs", "1"]) == 0
    shown = capsys.readouterr().out
    assert "model     ckpt engine" in shown and "jane.doe" not in shown


def test_an_engine_made_from_a_redacted_kit_stays_redacted(host: Path) -> None:
    """As `adopt` on the device makes the TensorRT engine of a redacted kit, outside `--redact`."""
    kit = host / "redacted-kit"
    assert cli(["build", str(host / "export"), "--target", "tensorrt", "--kit", "--out", str(kit), "--redact"]) == 0
    source = read_manifest(kit)
    m = engine_manifest(source, kit, "tensorrt", "fp32", {"engine": "model.engine"}, batch=source.static_batch)
    assert m.redacted and m.model.name == "ckpt" and m.extra["source"]["path"] is None
    assert str(host) not in json.dumps(m.to_json())


def test_an_engine_adopted_from_a_redacted_kit_keeps_trtexecs_log_without_the_devices_folders(
        host: Path, tmp_path: Path) -> None:
    """trtexec echoes its command line, which build_on_device.sh gives absolute paths: the kit's, its
    work folder's and the timing cache's beside them (in the user's home folder). A stand-in log in
    trtexec's format, as the script writes it (no TensorRT here)."""
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    home = host / "home" / "jane.doe"
    kit, work = home / "kit", home / "kit-fp16.work"
    assert cli(["build", str(host / "export"), "--target", "tensorrt", "--kit", "--out", str(kit), "--redact"]) == 0
    work.mkdir()
    (work / "model.engine").write_bytes(b"engine")
    text = (Path(__file__).parent / "data" / "trtexec" / "trt10-orin-fp16-dla.log").read_text()
    log = work / "trtexec.log"
    log.write_text(text.replace("/home/nvidia/kit/", f"{kit}/").replace("/home/nvidia/kit-fp16-dla0.work/", f"{work}/")
                   .replace("/home/nvidia/", f"{home}/"))
    assert f"--onnx={kit}/model.onnx" in log.read_text()            # the stand-in names the device's folders
    out = adopt(work / "model.engine", kit, tmp_path / "adopted", log=log)
    assert read_manifest(out).redacted and _leaks(out, _private_words(host)) == []
    assert _leaks(out, [str(tmp_path)]) == []       # the device's folder of the engine itself (selftest's hint)
    kept = (out / "trtexec.log").read_text()
    assert ("--onnx=kit/model.onnx --saveEngine=kit-fp16.work/model.engine --timingCacheFile=alignvar-timing.cache"
            in kept)
    # what reads the log still does: the engine's timing for a bench report
    assert cli(["bench", "trtexec", str(out / "trtexec.log"), "--engine", str(out), "--out",
                str(tmp_path / "report.json")]) == 0


@pytest.fixture(scope="module")
def redacted(host: Path) -> Path:
    return runtimes.build(host / "export", "onnxruntime", out=host / "redacted-reference", redact=True, force=True)


@pytest.fixture
def other_ckpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current folder holding another checkpoint of the same architecture, named as the engine's."""
    nano_model(seed=1).save_pretrained(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "ckpt"


@pytest.mark.parametrize("here", ["another", "a copy"])
def test_bench_and_compare_of_a_redacted_engine_ask_for_its_checkpoint(
        host: Path, redacted: Path, other_ckpt: Path, here: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Its model name is its checkpoint's folder name, no path: bench took ./ckpt for it and ran against
    other weights without a word (tokens 0.00%). A folder that happens to hold a copy is not taken either."""
    if here == "a copy":
        shutil.rmtree(other_ckpt)
        shutil.copytree(host / "home" / "jane.doe" / "acme-secret-project" / "ckpt", other_ckpt)
    bench = ["bench", str(redacted), "--out", "report.json", "--threads", "1", "--runs", "1", "--warmup", "0"]
    for verb in (bench, ["compare", str(redacted)]):
        capsys.readouterr()
        assert cli(verb) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith(
            "redacted-reference was built with --redact: pass its checkpoint (ckpt) as --reference"), (verb[0], err)


def test_a_reference_that_is_not_the_recorded_checkpoint_is_named_in_one_warning(
        host: Path, redacted: Path, other_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine records its weights' hash: a reference of other weights is said once by compare
    (the verb and Python's compare_engines, which said nothing) and by bench, by what each was given."""
    from alignvar_edge.bench.runner import resolve_reference
    from alignvar_edge.bench.subjects import EngineSpec
    from alignvar_edge.runtimes.compare import compare_engines
    recorded = read_manifest(redacted).model.weights_sha256
    assert recorded
    clause = ("is not the model redacted-reference was built from (ckpt: its weights hash to ")
    capsys.readouterr()
    assert cli(["compare", str(redacted), "--reference", "ckpt", "--limit", "1", "--max-size", "16"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith(
        f"alignvar-edge compare: warning: the reference (checkpoint {other_ckpt}) {clause}"), warned
    assert warned[0].endswith(f", recorded {recorded[:12]}): its figures compare other weights"), warned
    spec = EngineSpec(str(redacted), None, "auto", None, str(redacted))
    said = f"reference='ckpt' is not the model {redacted} was built from (ckpt: its weights hash to "
    with pytest.warns(UserWarning, match=re.escape(said)):     # bench's, in Python, naming the engine by its path
        resolve_reference("ckpt", [spec])
    tile = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    with runtimes.load(redacted) as engine, runtimes.load(other_ckpt, backend="torch") as ref:
        with pytest.warns(UserWarning, match=re.escape(f"the reference (checkpoint {other_ckpt}) {clause}")):
            compare_engines([("redacted-reference", engine)], ref, [("tile", tile)])
    ckpt = host / "home" / "jane.doe" / "acme-secret-project" / "ckpt"       # its own: not a word
    assert cli(["compare", str(redacted), "--reference", str(ckpt), "--limit", "1", "--max-size", "16"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_bench_takes_no_reference_from_a_manifest_whose_checkpoint_files_it_does_not_find(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export of `ckpt` as typed: where that folder is gone, bench tried the name as a path of
    the current folder, and ran another ./ckpt it found there."""
    from alignvar_edge.bench.runner import resolve_reference
    from alignvar_edge.bench.subjects import EngineSpec
    from alignvar_edge.errors import CheckpointError
    made, elsewhere = tmp_path / "made", tmp_path / "elsewhere"
    nano_model().save_pretrained(made / "ckpt")
    monkeypatch.chdir(made)
    assert cli(["export", "ckpt", "--out", "export"]) == 0
    (made / "ckpt").rename(made / "moved")
    nano_model(seed=1).save_pretrained(elsewhere / "ckpt")
    monkeypatch.chdir(elsewhere)
    export = str(made / "export")
    with pytest.raises(CheckpointError, match="no longer exists there"):
        resolve_reference(None, [EngineSpec(export, None, "auto", None, export)])


def test_deploy_redact_ships_redacted_engines_and_keeps_the_rest(host: Path) -> None:
    """deploy --redact: its engines as `build --redact` makes them, from a quantize output that
    records the calibration photos; that output, on the host, keeps them."""
    ckpt, out = host / "home" / "jane.doe" / "acme-secret-project" / "ckpt", host / "deployed"
    assert cli(["deploy", str(ckpt), "--export", str(host / "export"), "--out", str(out), "--redact", "--quick",
                "--targets", "onnxruntime", "--precision", "int8", "--calib", str(host / "private_calib"),
                "--threads", "1", "--runs", "1", "--warmup", "0"]) == 0
    engine = out / "engines" / "onnxruntime-int8"
    assert _leaks(engine, _private_words(host)) == []
    m = read_manifest(engine)
    assert m.redacted and m.model.name == "ckpt" and "files" not in (m.calibration or {})
    assert (m.calibration or {}).get("hash") == read_manifest(out / "quantized" / "onnxruntime-int8").calibration["hash"]
    assert {f["file"] for f in read_manifest(out / "quantized" / "onnxruntime-int8").calibration["files"]} <= set(PHOTOS)


def test_a_redacted_build_of_an_export_whose_graph_names_host_folders_is_refused(
        host: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An export made by an older alignvar-edge names the exporting machine's folders in its graph's
    stack traces (thousands of them): `build --redact` of it shipped them inside model.onnx while
    `inspect` said the engine named no folder of the build host. A current export builds."""
    from alignvar_edge.export import onnx_export
    monkeypatch.setattr(onnx_export, "_portable_stack_traces", lambda model: None)     # as older exports were
    assert cli(["export", str(host / "home" / "jane.doe" / "acme-secret-project" / "ckpt"),
                "--out", str(tmp_path / "old")]) == 0
    capsys.readouterr()
    assert cli(["build", str(tmp_path / "old"), "--target", "onnxruntime", "--redact", "--out",
                str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"alignvar-edge build: error: {tmp_path / 'old'}: its graph model.onnx names the folders of the machine "
        "that exported it (its per-node stack traces, from an older alignvar-edge), which a redacted engine "
        "would ship; export it again with this alignvar-edge and build from that with --redact")
    assert not (tmp_path / "e").exists()
    assert cli(["build", str(tmp_path / "old"), "--target", "onnxruntime", "--out", str(tmp_path / "plain")]) == 0
    assert cli(["build", str(host / "export"), "--target", "onnxruntime", "--redact", "--out",
                str(tmp_path / "current")]) == 0


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")   # torch's own import
def test_a_compiled_reference_model_hashes_as_the_model_it_wraps() -> None:
    """torch.compile wraps a model whose state-dict keys carry `_orig_mod.`: its hash never matched
    what an export of the same weights records, so bench warned of other weights that were not."""
    import torch

    from alignvar_edge.model.checkpoint import weights_sha256
    model = nano_model()
    compiled = torch.compile(model)          # lazy: nothing is compiled until it runs
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    assert weights_sha256(compiled) == weights_sha256(model)
    assert weights_sha256(torch.compile(nano_model(seed=1))) != weights_sha256(model)
