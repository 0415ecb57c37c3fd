"""What a device needs from an engine directory: images of any kind in and out, the input
contract in the manifest, golden outputs shipped with the engine, and no PyTorch.

Model: the `micro` preset with seeded random weights (see _runtime_fixtures), exported once and
cached; engines are ONNX Runtime and OpenVINO builds of it.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import cache_root, export_dir, heldout_crops, sharp_model
from alignvar_edge import runtimes
from alignvar_edge.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def export(pytestconfig) -> Path:
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


@pytest.fixture(scope="module")
def ort_dir(export, tmp_path_factory) -> Path:
    return runtimes.build(export, "onnxruntime", out=tmp_path_factory.mktemp("dev") / "ort", threads=1)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return heldout_crops({"coffee": (21, 18)})["coffee"]           # float32 HxWx3 in [0, 1]


def test_upscale_returns_the_kind_it_was_given(ort_dir, photo):
    u8 = np.round(photo * 255).astype(np.uint8)
    with runtimes.load(ort_dir) as engine:
        ref = engine.upscale(u8.astype(np.float32) / 255)           # the float path on the same pixels
        assert ref.dtype == np.float32 and ref.shape == (84, 72, 3)
        out8 = engine.upscale(u8)
        assert out8.dtype == np.uint8 and out8.shape == (84, 72, 3)
        np.testing.assert_array_equal(out8, np.round(np.clip(ref, 0, 1) * 255).astype(np.uint8))
        out64 = engine.upscale(u8.astype(np.float64) / 255)
        assert out64.dtype == np.float64
        np.testing.assert_allclose(out64, ref, atol=1e-6)
        u16 = u8.astype(np.uint16) * 257                             # the same image in 16 bits
        out16 = engine.upscale(u16)
        assert out16.dtype == np.uint16
        assert np.abs(out16.astype(np.int64) - np.round(np.clip(ref, 0, 1) * 65535)).max() <= 1

        pil = engine.upscale(Image.fromarray(u8))
        assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (72, 84)
        np.testing.assert_array_equal(np.asarray(pil), out8)
        gray = Image.fromarray(u8[..., 1])
        g = engine.upscale(gray)
        assert g.mode == "L" and g.size == (72, 84)
        rgba = np.dstack([u8, np.full(u8.shape[:2], 200, np.uint8)])
        ra = engine.upscale(Image.fromarray(rgba))
        assert ra.mode == "RGBA" and np.asarray(ra)[..., 3].min() >= 199
        np.testing.assert_array_equal(np.asarray(ra)[..., :3], out8)
        la = engine.upscale(Image.fromarray(rgba).convert("LA"))
        assert la.mode == "LA" and la.size == (72, 84)
        pal = engine.upscale(Image.fromarray(u8).convert("P"))      # palette: back as RGB
        assert pal.mode == "RGB" and pal.size == (72, 84)
        with pytest.raises(InputError, match="uint8, uint16 or float"):
            engine.upscale(u8.astype(np.int32))


def test_manifest_states_the_input_contract_and_the_engine_keeps_it(ort_dir, export, photo):
    import json

    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    written = json.loads((ort_dir / "manifest.json").read_text())["input_contract"]
    assert {k: written[k] for k in ("name", "color_order", "range", "layout", "dtype", "shape", "tile",
                                    "overlap", "scale", "batch")} == {
        "name": "lr", "color_order": "RGB", "range": [0.0, 1.0], "layout": "NCHW", "dtype": "float32",
        "shape": [1, 3, 8, 8], "tile": 8, "overlap": 2, "scale": 4, "batch": 1}
    assert written["output"]["shape"] == [1, 3, 32, 32]
    assert "input      lr float32 NCHW [1, 3, 8, 8], RGB in [0, 1]; tile 8 px, overlap 2, scale x4" in \
        format_inspection(inspect_artifact(export))
    with runtimes.load(ort_dir) as engine:
        assert engine.input_contract == written
        # the contract is what the graph really takes: one tile fed by hand as the contract says
        # (RGB planes, NCHW, float32 in [0, 1]) gives exactly what upscale gives for that image
        tile = photo[:8, :8]
        by_hand = engine.infer({"lr": tile.transpose(2, 0, 1)[None].astype(np.float32)})["sr"][0]
        np.testing.assert_allclose(by_hand.transpose(1, 2, 0), engine.upscale(tile), atol=1e-6)
        # and it is not BGR: swapping the channels changes the result
        bgr = engine.infer({"lr": tile[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32)})["sr"][0]
        assert np.abs(bgr[::-1] - by_hand).max() > 1e-3


# The host tools' pip command: the `host` extra's requirements (alignvar-edge is not on PyPI), torch
# from its CPU index (PyPI's Linux torch is a multi-GB CUDA build).
HOST_TOOLS = (r"install the host tools: `pip install --extra-index-url https://download\.pytorch\.org/whl/cpu "
              r"'torch>=[\d.]+'[^`]*` \(that index gives PyTorch's CPU build[^)]*\)")

# A finder that makes imports fail as on a device with only alignvar-edge[device] (+ openvino):
# no PyTorch (every try is recorded), and none of the host's ONNX / scikit-image / NNCF tool chain.
# A device install, as an import sees it: the host-only packages are not there. Every import
# finder is wrapped so that their modules are not found (find_spec returns None, import raises
# ModuleNotFoundError) and their distributions are not listed, as where they were never installed.
_BLOCK_TORCH = '''
import sys
class _NoTorch:
    tried = []
    host_only = ("torch", "onnx", "onnxscript", "skimage", "nncf", "coremltools")
    host_dists = ("torch", "onnx", "onnxscript", "scikit_image", "nncf", "coremltools")
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in self.host_only:
            if top == "torch":
                _NoTorch.tried.append(name)
            return None
        find = getattr(self.finder, "find_spec", None)
        return None if find is None else find(name, path, target)
    def find_distributions(self, *args, **kwargs):
        find = getattr(self.finder, "find_distributions", None)
        return [] if find is None else [d for d in find(*args, **kwargs) if (d.metadata["Name"] or "").lower()
                                        .replace("-", "_") not in self.host_dists]
    def __getattr__(self, name):
        return getattr(self.finder, name)
sys.meta_path[:] = [_NoTorch(f) for f in sys.meta_path]
import importlib.util, importlib.metadata
assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("skimage") is None
try:
    importlib.metadata.version("torch")
    raise AssertionError("torch's distribution is still listed")
except importlib.metadata.PackageNotFoundError:
    pass
_NoTorch.tried.clear()
'''

_DEVICE_SCRIPT = _BLOCK_TORCH + '''
import json
import numpy as np
from alignvar_edge import runtimes
from alignvar_edge.bench.device import bench_engine_dir
from alignvar_edge.runtimes.selftest import selftest_engine
photo = np.load(sys.argv[1])
out = {}
for name in sys.argv[2:]:
    with runtimes.load(name) as engine:
        sr = engine.upscale(photo)
        out[name] = {"backend": engine.backend, "dtype": str(sr.dtype), "shape": list(sr.shape),
                     "sr": sr.tolist()}
    r = selftest_engine(name, runs=2)
    out[name]["selftest"] = [r["result"], r["tokens"]["overall"], r["psnr_vs_golden_db"]]
report = bench_engine_dir(sys.argv[2:], runs=3, warmup=1)
out["bench"] = [[e["label"], e["status"], e["fidelity"]["vs_reference"]["token_agreement"],
                 e["latency"]["per_tile_ms"]["p50"]] for e in report["engines"]]
out["torch_tried"] = _NoTorch.tried
out["torch_loaded"] = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def ov_dir(export, tmp_path_factory) -> Path:
    return runtimes.build(export, "openvino", out=tmp_path_factory.mktemp("dev") / "ov")


def test_engines_upscale_selftest_and_bench_without_pytorch(ort_dir, ov_dir, photo, tmp_path):
    import json
    import os
    import subprocess
    import sys
    u8 = np.round(photo * 255).astype(np.uint8)
    np.save(tmp_path / "photo.npy", u8)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT, str(tmp_path / "photo.npy"), str(ort_dir),
                          str(ov_dir)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["torch_tried"] == [] and out["torch_loaded"] == []
    with runtimes.load(ort_dir) as engine:             # here, with PyTorch: the same images
        expected = engine.upscale(u8)
    for d in (ort_dir, ov_dir):
        got = out[str(d)]
        assert got["dtype"] == "uint8" and got["shape"] == [84, 72, 3]
        assert np.abs(np.asarray(got["sr"], np.int64) - expected.astype(np.int64)).max() <= 1
        result, tokens, psnr_db = got["selftest"]
        assert result == "PASS" and tokens == 1.0 and float(psnr_db) >= 50
    assert [b[:3] for b in out["bench"]] == [["onnxruntime-fp32", "ok", 1.0], ["openvino-fp32", "ok", 1.0]]
    assert all(b[3] > 0 for b in out["bench"])


def test_running_engines_leaves_home_untouched_and_stderr_quiet(ort_dir, ov_dir, tmp_path):
    """ONNX Runtime kept a device ID in ~/.cache/Microsoft and OpenVINO a usage counter in ~/intel
    (and sent telemetry), with their own warnings where HOME could not be written: both are off for
    the toolkit's process, and a user's explicit ORT_DISABLE_TELEMETRY is left as it is."""
    import os
    import subprocess
    import sys
    code = """
import os
import sys
import numpy as np
from alignvar_edge import load
for engine_dir in sys.argv[1:]:
    with load(engine_dir, threads=1) as engine:
        engine.upscale(np.zeros((12, 10, 3), np.uint8))
print(os.environ["ORT_DISABLE_TELEMETRY"])
"""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", code, str(ort_dir), str(ov_dir)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list(home.rglob("*")) == [] and res.stderr == "" and res.stdout.split() == ["1"]
    res = subprocess.run([sys.executable, "-c", code, str(ort_dir)], capture_output=True, text=True,
                         env={**env, "ORT_DISABLE_TELEMETRY": "0"}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    # the user's own choice stands (whether ONNX Runtime then writes into HOME is the runtime's affair
    # and differs between hosts, so it is not asserted)
    assert res.stdout.split() == ["0"]


def test_a_program_importing_the_toolkit_keeps_its_own_openvino_telemetry(ort_dir):
    """OpenVINO's telemetry is off where the toolkit imports OpenVINO, not from `import load` on: a
    service running ONNX Runtime engines got "import of openvino_telemetry halted; None in sys.modules"."""
    import importlib.metadata
    import subprocess
    import sys
    try:        # by its distribution: in this process the toolkit's stand-in hides the module
        importlib.metadata.version("openvino-telemetry")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("openvino-telemetry is not installed here: nothing for the toolkit to leave importable")
    code = """
import sys
import numpy as np
from alignvar_edge import load, runtimes
with load(sys.argv[1], threads=1) as engine:
    engine.upscale(np.zeros((8, 8, 3), np.uint8))
import openvino_telemetry
print(openvino_telemetry.__name__)
del sys.modules["openvino_telemetry"]
runtimes.get_backend("openvino")           # the toolkit's OpenVINO: its telemetry off
print(sys.modules["openvino_telemetry"])
"""
    res = subprocess.run([sys.executable, "-c", code, str(ort_dir)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["openvino_telemetry", "None"]


def test_cli_runs_device_verbs_without_pytorch(ort_dir, tmp_path):
    import json
    import os
    import subprocess
    import sys
    code = _BLOCK_TORCH + '''
from alignvar_edge.cli import main
rc = [main(["selftest", "--engine", sys.argv[1], "--runs", "2"]),
      main(["bench", sys.argv[1], "bicubic", "--runs", "2", "--warmup", "0", "--out", sys.argv[2]]),
      main(["bench", "bicubic", "--out", sys.argv[2] + ".none"])]
print("RC", rc, sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
'''
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", code, str(ort_dir), str(tmp_path / "r.json")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "RC [0, 0, 2] []" in res.stdout
    assert "RESULT    PASS" in res.stdout
    assert "PyTorch is not installed" in res.stderr                 # bench chose the device mode
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["engines"][0]["fidelity"]["vs_reference"]["token_agreement"] == 1.0
    # bicubic (a baseline of the full bench) has no golden outputs to be checked against: it is left
    # out with a note, and alone it is one line, not an AssertionError's traceback
    assert [e["label"] for e in report["engines"]] == ["onnxruntime-fp32"]
    assert "bicubic is not timed here" in res.stderr
    assert "alignvar-edge bench: error: the device bench times engine directories" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "r.json.none").exists()


def test_the_python_api_without_pytorch_says_to_install_the_host_tools(export, tmp_path):
    """AlignVAR, export and build on a device install: one error naming the `host` extra (an
    ImportError still), not a bare `No module named 'torch'`, and nothing written."""
    import json
    import os
    import subprocess
    import sys
    code = _BLOCK_TORCH + '''
import json
import alignvar_edge
from alignvar_edge.errors import HostToolsError
calls = {"AlignVAR": lambda: alignvar_edge.AlignVAR.from_pretrained("alignvar-tiny"),
         "from-import": lambda: exec("from alignvar_edge import AlignVAR"),
         "export": lambda: alignvar_edge.export(None, sys.argv[2]),
         "build": lambda: alignvar_edge.build(sys.argv[1], "openvino", out=sys.argv[2])}
out = {}
for name, call in calls.items():
    try:
        call()
    except HostToolsError as e:
        out[name] = [str(e), isinstance(e, ImportError), e.exit_code]
print(json.dumps(out))
'''
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", code, str(export), str(tmp_path / "out")], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    fix = ", which a device install does not have; " + HOST_TOOLS
    assert out["AlignVAR"] == out["from-import"] and out["AlignVAR"][1:] == out["export"][1:] == [True, 3]
    assert re.fullmatch(r"alignvar_edge\.AlignVAR needs torch" + fix, out["AlignVAR"][0]), out["AlignVAR"]
    assert re.fullmatch(r"alignvar_edge\.export needs torch" + fix, out["export"][0]), out["export"]
    message, is_import_error, _ = out["build"]
    assert re.fullmatch("building .*" + fix, message) and is_import_error, message
    assert not (tmp_path / "out").exists()


def test_building_on_a_device_says_to_install_the_host_tools_not_to_pass_images(export, tmp_path):
    """An fp32 ONNX Runtime build checks its engine on the bundled held-out photographs (from
    scikit-image's wheel); a device install has none, and --images / --calib do not stand in for them."""
    import os
    import subprocess
    import sys
    # a build step announces itself once it has run START_AFTER_S; at 0 any work before the refusal shows
    code = _BLOCK_TORCH + '''
import alignvar_edge.progress
alignvar_edge.progress.START_AFTER_S = 0
from alignvar_edge.cli import main
sys.exit(main(["build", sys.argv[1], "--target", "onnxruntime", "--out", sys.argv[2]]))
'''
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", code, str(export), str(tmp_path / "ort")], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 3, res.stderr[-3000:]
    assert re.fullmatch(
        r"alignvar-edge build: error: building an engine \(checked on the bundled held-out photographs\) needs "
        r"scikit-image, which a device install does not have; " + HOST_TOOLS, res.stderr.strip()), res.stderr
    assert not (tmp_path / "ort").exists()


@pytest.mark.parametrize("lost", ["golden.safetensors", "model.onnx"])
def test_an_engine_copied_without_one_of_its_files_is_refused_naming_it(ort_dir, tmp_path, capsys, lost):
    # what a device sees after a partial copy: the file is named, and the fix is to copy again
    # (before, only "Re-create it", which a device without the host tools cannot do)
    import shutil

    from alignvar_edge.cli import main
    copy = tmp_path / "engine"
    shutil.copytree(ort_dir, copy)
    (copy / lost).unlink()
    for argv in (["selftest", "--engine", str(copy)], ["upscale", str(tmp_path / "in.png"), str(tmp_path / "o.png"),
                                                       "--engine", str(copy)]):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{lost} is missing" in err and "Copy the whole directory again" in err, err
    assert not (tmp_path / "o.png").exists()


def test_an_export_named_where_an_engine_is_wanted_says_to_build_one(ort_dir, export):
    """An ONNX export carries no golden outputs (the engines built from it do): selftest and the
    device bench say so, and the bench still times the engines named beside it."""
    from alignvar_edge.bench.device import bench_engine_dir
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.runtimes.selftest import selftest_engine
    with pytest.raises(ArtifactError, match=r"is an ONNX export, .*`alignvar-edge build .* --target onnxruntime`"):
        selftest_engine(export, runs=1)
    report = bench_engine_dir([str(ort_dir), str(export)], runs=1, warmup=0)
    ok, failed = report["engines"]
    assert ok["status"] == "ok" and ok["fidelity"]["vs_reference"]["token_agreement"] == 1.0
    assert failed["status"] == "failed" and "is an ONNX export" in failed["reason"]
    assert (ok["label"], failed["label"]) == ("onnxruntime-fp32", "onnxruntime-fp32#2")     # one row each
    assert report["summary"]["failed"] == {"onnxruntime-fp32#2": failed["reason"]}


def test_the_device_bench_labels_the_precision_an_engine_computed_as_the_host_bench_does(ov_dir, monkeypatch):
    """A bf16 engine on a CPU without bf16 units computes f32: the host bench's row says
    'bf16 (ran f32 ...)', and the device bench's row must not claim the bf16 that did not run
    (simulated: the fp32 engine says it computed bf16)."""
    import warnings

    from alignvar_edge.bench.device import bench_engine_dir
    from alignvar_edge.bench.render import terminal_table
    from alignvar_edge.runtimes.openvino import backend as ovb
    monkeypatch.setattr(ovb.OpenVINOEngine, "_effective_precision", lambda self, core: "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ovb.PrecisionWarning)
        report = bench_engine_dir([str(ov_dir)], runs=1, warmup=0, threads=1)
    (row,) = report["engines"]
    assert (row["compute_precision"], row["expected_precision"]) == ("bf16", "f32")
    assert "fp32 (ran bf16)" in terminal_table(report)


def test_a_device_report_records_its_own_load_and_merges_with_a_host_report_in_one_line(ort_dir, tmp_path):
    """Merged with a host's report, a device report (no PyTorch, engines one at a time) is said to be
    one in one line, not as a difference in every setting only the host records."""
    import copy
    import json

    from alignvar_edge.bench.device import bench_engine_dir
    from alignvar_edge.bench.integrity import made_again
    from alignvar_edge.bench.merge import merge_reports
    from alignvar_edge.bench.schema import write_json
    device = bench_engine_dir([str(ort_dir)], runs=2, warmup=0, threads=1, label="phone")
    host = device["host"]
    assert host["load_average_end"] is not None and 0 < host["own_load"] < 4
    root = Path(__file__).resolve().parent.parent
    pc = json.loads((root / "docs" / "results" / "epyc-avx512bf16-2core" / "shared-condition-b16.json").read_text())
    pc["model"] = copy.deepcopy(device["model"])            # the same model: only the settings differ
    for r in (pc, device):
        r["host"]["load_average"] = r["host"]["load_average_end"] = None
    pc["settings"].update({k: device["settings"][k] for k in ("threads", "runs", "warmup", "duration_s")})
    pc = made_again(pc)                     # its figures per megapixel of that model's tile
    warned = merge_reports([write_json(tmp_path / "pc.json", pc), write_json(tmp_path / "d.json", device)])["warnings"]
    assert [w for w in warned if "device report" in w] == [
        "phone: device report(s), timed without PyTorch (engines one at a time, or trtexec): no eager, peak, "
        "whole-image or PSNR-vs-HR cells"]
    assert not any(w.startswith("setting ") or "did not time" in w for w in warned), warned
    device["settings"]["runs"] = pc["settings"]["runs"] + 1            # a setting both record still differs
    warned = merge_reports([write_json(tmp_path / "pc.json", pc), write_json(tmp_path / "d.json", device)])["warnings"]
    assert any(w.startswith("setting 'runs' differs") for w in warned), warned


def test_a_device_bench_of_engines_of_two_models_is_refused_and_one_of_one_model_merges(ort_dir, tmp_path, capsys,
                                                                                        pytestconfig):
    """A report holds one model block, whose tile `bench merge` makes every engine's ms/MP again by: a
    bench of a micro and a tiny engine was written (exit 0), then refused by `bench merge` as edited."""
    import json

    from alignvar_edge.cli import main
    tiny = export_dir(sharp_model("tiny"), cache_root(pytestconfig))
    other, out = runtimes.build(tiny, "onnxruntime", out=tmp_path / "tiny", threads=1), tmp_path / "r.json"
    bench = ["bench", "--no-reference", "--runs", "2", "--warmup", "0", "--threads", "1", "--out", str(out)]
    assert main([*bench, str(ort_dir), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"alignvar-edge bench: error: {ort_dir} (micro, 32x32 SR tile) and {other} (tiny, "
                   "64x64 SR tile) are engines of different models; one model per report: bench each model on its own")
    assert not out.exists()
    assert main([*bench, str(ort_dir), str(ort_dir)]) == 0                  # two engines of one model
    assert [e["label"] for e in json.loads(out.read_text())["engines"]] == ["onnxruntime-fp32", "onnxruntime-fp32#2"]
    assert main(["bench", "merge", str(out), "--md", str(tmp_path / "m.md")]) == 0


def test_device_bench_prints_its_host_isa_threads_and_why_p99_is_empty(ort_dir, tmp_path, capsys):
    import json

    from alignvar_edge.cli import main
    from alignvar_edge.cpuinfo import cpu_info, cpu_words, machine_detail
    out = tmp_path / "r.json"
    assert main(["bench", str(ort_dir), "--no-reference", "--runs", "2", "--warmup", "0", "--threads", "1",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out.splitlines()
    isa = " ".join(cpu_info()["isa"]) or "–"
    assert f"ISA {isa};" in text[0] and text[0].endswith("; 1 thread(s)"), text[0]
    # model, host, ISA, threads, as the host bench: the host once, not its default label before it;
    # the CPU with its x86 family and model (a VM may say only "AMD EPYC"), then in brackets a VM's
    # clock and caches as the report records them (a current clock moves between two readings)
    cpu = json.loads(out.read_text())["host"]["cpu"]
    detail = machine_detail(cpu)
    host = cpu_words(cpu) + (f" [{detail}]" if detail else "")
    assert f" on {host}, {cpu['usable_cores']} usable cores, " in text[0], text[0]
    assert text[0].count(cpu_words(cpu)) == 1, text[0]
    assert "p99 –: p99 needs >= 100 runs, this run has 2; pass --runs 100 (or a --duration that gives as many)." in text


def test_golden_outputs_come_from_the_checkpoint_when_the_export_names_one(tmp_path, ort_dir):
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.model.checkpoint import resolve_checkpoint_dir
    from alignvar_edge.runtimes.golden import GOLDEN_FILE, read_golden
    from alignvar_edge.runtimes.onnxruntime import ship_golden
    from alignvar_edge.runtimes.selftest import selftest_engine
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    # what `export alignvar-tiny` records; the bundled checkpoint's golden file (PyTorch outputs) is shipped
    from alignvar_edge.manifest import ModelInfo, ModelSource, new_manifest
    tiny = ModelInfo(source=ModelSource("bundled", name="alignvar-tiny"))
    entry = ship_golden(new_manifest("onnx", "onnx", "single", "int8", tiny), src, dest)
    assert entry is not None and entry["origin"] == "checkpoint alignvar-tiny" and entry["tiles"] == 4
    bundled = resolve_checkpoint_dir("alignvar-tiny") / GOLDEN_FILE
    assert (dest / GOLDEN_FILE).read_bytes() == bundled.read_bytes()
    lr, sr, tokens, _ = read_golden(dest / GOLDEN_FILE)
    assert lr.shape == (4, 3, 16, 16) and sr.shape == (4, 3, 64, 64) and len(tokens) > 1
    # no checkpoint and not an fp32 export: nothing to ship, and selftest --engine says so
    preset = ModelInfo(source=ModelSource.preset("micro", 0))
    assert ship_golden(new_manifest("onnx", "onnx", "single", "int8", preset), src, tmp_path / "none") is None
    import shutil
    bare = tmp_path / "bare"
    shutil.copytree(ort_dir, bare)
    (bare / GOLDEN_FILE).unlink()
    # listed in its manifest but gone: a partial copy, named as one
    with pytest.raises(ArtifactError, match="golden.safetensors is missing. Copy the whole directory again"):
        selftest_engine(bare)
    # an engine made before golden outputs were shipped (its manifest lists none): rebuild it
    from alignvar_edge.manifest import read_manifest, write_manifest
    write_manifest(bare, read_manifest(bare))
    with pytest.raises(ArtifactError, match="carries no golden.safetensors; rebuild it"):
        selftest_engine(bare)


def test_selftest_of_an_engine_whose_golden_file_is_gone_hashes_its_files_once(ort_dir, tmp_path, monkeypatch):
    """The golden file listed in the manifest but gone (a partial copy): engine_golden was asked twice,
    once more for its advice, and verified (hashed) every file the engine lists both times."""
    import shutil

    from alignvar_edge import manifest
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.runtimes.golden import GOLDEN_FILE
    from alignvar_edge.runtimes.selftest import selftest_engine
    bare = tmp_path / "bare"
    shutil.copytree(ort_dir, bare)
    (bare / GOLDEN_FILE).unlink()
    verified = []
    verify_files = manifest.verify_files
    monkeypatch.setattr(manifest, "verify_files", lambda *a, **k: verified.append(a[0]) or verify_files(*a, **k))
    with pytest.raises(ArtifactError, match="golden.safetensors is missing. Copy the whole directory again"):
        selftest_engine(bare)
    assert verified == [bare]


def test_an_engine_selftest_names_the_engine_file_it_checked(ort_dir):
    """A report brought back from a device says which engine gave its figures, not only its folder."""
    import hashlib

    from alignvar_edge.runtimes.selftest import format_report, selftest_engine
    r = selftest_engine(ort_dir, runs=1)
    want = hashlib.sha256((ort_dir / "model.onnx").read_bytes()).hexdigest()
    assert r["result"] == "PASS" and r["engine_sha256"] == want
    assert f"engine    {want} (SHA-256)" in format_report(r).splitlines()


def test_an_engine_the_runtime_cannot_compile_here_is_one_line_naming_it_and_the_fp32_fix(export, tmp_path):
    """A bf16 engine built on a CPU with bf16 units, opened where oneDNN has fewer ISA extensions
    (ONEDNN_MAX_CPU_ISA caps them, as on an older CPU): OpenVINO's compile error was a traceback
    from `upscale` and `selftest --engine`; it is one line with the engine, the reason and the fix."""
    import os
    import subprocess
    import sys

    from alignvar_edge.runtimes.half import host_half
    if host_half("openvino", "CPU") != "bf16":
        pytest.skip("this CPU has no bf16 units (needs AVX512-BF16 or AMX) to build the bf16 engine on")
    bf16 = runtimes.build(export, "openvino", "bf16", out=tmp_path / "bf16")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    code = _BLOCK_TORCH + '''
from alignvar_edge.cli import main
sys.exit(main(sys.argv[1:]))
'''
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "ONEDNN_MAX_CPU_ISA": "AVX2"}
    for argv in (["selftest", "--engine", str(bf16), "--threads", "1"],
                 ["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--engine", str(bf16)]):
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=600)
        err = res.stderr.strip()
        assert res.returncode == 3 and len(err.splitlines()) == 1, err[-3000:]
        assert err.startswith(f"alignvar-edge {argv[0]}: error: openvino cannot compile {bf16} here ("), err
        assert err.endswith("an fp32 engine of the same export compiles where bf16 ones may not: build one on the "
                            "host (`alignvar-edge build EXPORT --target openvino --precision fp32`) and use it here")
    assert not (tmp_path / "out.png").exists()


def test_a_quantized_export_named_where_an_engine_is_wanted_gives_a_build_command_that_works(export, tmp_path):
    """The build it suggests for an int8 export carries the export's precision (a plain
    `--target onnxruntime` build of it is refused), and the other way names what --backend needs."""
    import shlex

    from alignvar_edge.cli import main
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    from alignvar_edge.runtimes.selftest import selftest_engine
    int8 = quantize_artifact(export, tmp_path / "int8", QuantizeOptions(search=False, tiles=8, val_tiles=8))
    with pytest.raises(ArtifactError) as err:
        selftest_engine(int8, runs=1)
    message = str(err.value)
    # the host tools are installed here: the other way is this host's own check, with no install line
    assert message.endswith(", or check this host's tools with `alignvar-edge selftest --backend onnxruntime`"), message
    build = re.search(r"`(alignvar-edge build [^`]+)`, on the host", message)
    assert build is not None, message
    argv = shlex.split(build.group(1))[1:]
    assert argv == ["build", str(int8), "--target", "onnxruntime", "--precision", "int8"]
    assert main([*argv, "--out", str(tmp_path / "engine")]) == 0
    from alignvar_edge.manifest import read_manifest
    assert read_manifest(tmp_path / "engine").precision == "int8"


def test_selftest_backend_on_a_device_names_selftest_engine_which_works_there(ort_dir):
    """The README's first command on a new device is `selftest --backend`; without PyTorch it says
    that --backend needs the host tools and that a device checks a built engine with --engine."""
    import os
    import subprocess
    import sys
    code = _BLOCK_TORCH + '''
from alignvar_edge.cli import main
print("RC", [main(["selftest", "--backend", "onnxruntime"]), main(["selftest", "--backend", "torch"]),
             main(["selftest", "--engine", sys.argv[1], "--runs", "1"])])
'''
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", code, str(ort_dir)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert "RC [3, 3, 0]" in res.stdout, res.stderr[-3000:]
    line = (r"alignvar-edge selftest: error: --backend \(it builds an engine from the package's model here\) needs "
            r"torch, which a device install does not have; " + HOST_TOOLS + "; on a device, check an engine built on "
            r"the host instead: alignvar-edge selftest --engine ENGINE_DIR")
    assert sum(bool(re.fullmatch(line, ln)) for ln in res.stderr.splitlines()) == 2, res.stderr
    assert "Traceback" not in res.stderr and "RESULT    PASS" in res.stdout


def test_doctor_on_a_device_does_not_advise_the_tensorrt_kit_build_it_cannot_run(export, tmp_path):
    """Writing a TensorRT build kit needs the host tools (onnx): doctor's tensorrt line on a device
    install leaves that advice out, and the build it named is indeed refused there."""
    import json
    import os
    import subprocess
    import sys

    from alignvar_edge.runtimes.tensorrt.backend import BACKEND
    if BACKEND.is_available()[0] or BACKEND.version() is not None:
        pytest.skip("TensorRT is installed here")
    code = _BLOCK_TORCH + '''
from alignvar_edge.cli import main
main(["doctor", "--json", sys.argv[1]])
print("RC", main(["build", sys.argv[3], "--target", "tensorrt", "--out", sys.argv[2]]))
'''
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d.json"), str(tmp_path / "kit"), str(export)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert "RC 3" in res.stdout, res.stderr[-3000:]
    (trt,) = [b for b in json.loads((tmp_path / "d.json").read_text())["backends"] if b["name"] == "tensorrt"]
    assert trt["reason"].startswith("TensorRT is not installed") and "build" not in trt["reason"], trt["reason"]
    assert "alignvar-edge build: error:" in res.stderr and re.search(HOST_TOOLS, res.stderr), res.stderr
    assert not (tmp_path / "kit").exists()


def test_an_onnxruntime_engine_carries_a_readme_whose_commands_and_snippet_run(ort_dir, tmp_path, monkeypatch, capsys):
    """What a device user receives with an ONNX Runtime engine: what to install and run, the graph's
    I/O, and a plain onnxruntime call that gives what the engine gives (hashed like every file)."""
    import shlex

    from alignvar_edge.cli import main
    from alignvar_edge.manifest import read_manifest
    text = (ort_dir / "README.md").read_text()
    assert "README.md" in read_manifest(ort_dir).files
    assert text.startswith("# ONNX Runtime engine: ") and 'pip install "$(ls dist/alignvar_edge-*.whl)[device]"' in text
    assert "| `model.onnx` | `lr` float32[1,3,8,8] | `sr` float32[1,3,32,32], `tokens_0` int64[" in text
    # the commands, as printed, with DIR and the image paths filled in
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "IN.png")
    block = re.search(r"```\n(alignvar-edge selftest.*?)\n```", text, re.S)
    assert block is not None, text
    monkeypatch.chdir(tmp_path)
    for line in block.group(1).splitlines():
        argv = [str(ort_dir) if a == "DIR" else a for a in shlex.split(line)[1:]]
        assert main(argv) == 0, capsys.readouterr().err
    assert "RESULT    PASS" in capsys.readouterr().out and (tmp_path / "OUT.png").is_file()
    # the plain onnxruntime snippet, run in the engine directory, gives the engine's own output
    snippet = re.search(r"```python\n(.*?)```", text, re.S)
    assert snippet is not None, text
    monkeypatch.chdir(ort_dir)
    scope: dict = {}
    exec(snippet.group(1), scope)
    with runtimes.load(ort_dir) as engine:
        want = engine.infer({"lr": scope["tiles"]})["sr"]
    np.testing.assert_array_equal(scope["sr"], want)
