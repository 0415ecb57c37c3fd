"""The runtime interface with the engines that run here: torch (reference), ONNX Runtime, OpenVINO.

Model: the `micro` preset with seeded random weights and the logits head scaled x50 (see
_runtime_fixtures), exported once with `export_onnx` and cached between runs. Inputs: odd-size
crops of the held-out photographs (astronaut, coffee, rocket), used directly as LR images.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from _runtime_fixtures import cache_root, export_dir, heldout_crops, sharp_model
from alignvar_edge import runtimes
from alignvar_edge.errors import (ArtifactError, BackendUnavailableError, EngineClosedError, InputError,
                                  OutputExistsError)
from alignvar_edge.export.parity import psnr
from alignvar_edge.manifest import load_verified
from alignvar_edge.runtimes import tiling
from alignvar_edge.runtimes.torch_backend import TorchEngine

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CROPS = {"astronaut": (29, 37), "coffee": (23, 19), "rocket": (31, 25)}


@pytest.fixture(scope="module")
def export(pytestconfig) -> Path:
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


@pytest.fixture(scope="module")
def reference():
    with TorchEngine.from_model(sharp_model("micro")) as e:
        yield e


@pytest.fixture(scope="module")
def built(export, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("engines")
    return {"onnxruntime": runtimes.build(export, "onnxruntime", out=root / "ort", threads=1),
            "openvino": runtimes.build(export, "openvino", out=root / "ov")}


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    return heldout_crops(CROPS)


def test_exports_are_cached_in_the_runs_temporary_folder_with_pytests_cache_plugin_off(tmp_path):
    """A CI that turns the cache plugin off (`-p no:cacheprovider`, a read-only checkout) and sets no
    $ALIGNVAR_TEST_CACHE: every test of a cached export errored in setup (no `pytestconfig.cache`)."""
    import subprocess
    import sys
    tests = Path(__file__).parent
    (tmp_path / "test_probe.py").write_text(
        "from _runtime_fixtures import cache_root\n\n\n"
        "def test_probe(pytestconfig):\n    print('cache_root', cache_root(pytestconfig))\n")
    # a run of its own: not taken for one of this run's xdist workers (whose base folder is shared)
    env = {k: v for k, v in os.environ.items() if k != "ALIGNVAR_TEST_CACHE" and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(tests), env.get("PYTHONPATH"))))
    base = tmp_path / "base"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "conftest",
                          "--basetemp", str(base), "test_probe.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"cache_root {base / 'alignvar-runtimes'}\n" in run.stdout
    assert (base / "alignvar-runtimes").is_dir()


def test_available_backends_report_every_backend_with_a_reason():
    infos = {i.name: i for i in runtimes.available_backends()}
    assert set(infos) == {"torch", "onnxruntime", "openvino", "tensorrt", "coreml"}
    for name in ("torch", "onnxruntime", "openvino"):
        assert infos[name].available and infos[name].version and infos[name].devices
    for name in ("tensorrt", "coreml"):       # absent on this Linux CPU machine
        assert not infos[name].available and infos[name].reason and "\n" not in infos[name].reason


def test_backends_are_imported_lazily():
    import subprocess
    import sys
    code = ("import sys, alignvar_edge.runtimes as r; r.get_backend('onnxruntime'); "
            "print(sorted(m for m in ('onnxruntime', 'openvino', 'coremltools', 'tensorrt', 'nncf') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_fp32_engines_match_torch_tile_by_tile_on_odd_size_photos(backend, built, reference, crops):
    with runtimes.load(built[backend]) as engine:
        assert engine.backend == backend and engine.metadata.kind == "engine"
        for name, img in crops.items():
            tiles, ys, xs = tiling.extract_tiles(img, engine.tile_size)
            ref_sr, ref_tok = reference.run(tiles)
            sr, tok = engine.run(tiles)
            same = np.all([np.array_equal(a, b) for a, b in zip(ref_tok, tok)], axis=0)
            per_tile = np.stack([np.all(a == b, axis=1) for a, b in zip(ref_tok, tok)]).all(axis=0)
            assert same and per_tile.all(), f"{backend} {name}: {int((~per_tile).sum())} tiles differ"
            up = tiling.blend_tiles(sr, ys, xs, img.shape[:2], engine.tile_size, engine.scale)
            ref_up = tiling.blend_tiles(ref_sr, ys, xs, img.shape[:2], engine.tile_size, engine.scale)
            assert up.shape == (4 * img.shape[0], 4 * img.shape[1], 3)
            assert psnr(ref_up, up) >= 50.0
        # the public path gives the same image as stitching the tiles
        img = crops["coffee"]
        out = engine.upscale(img)
        assert out.shape == (4 * img.shape[0], 4 * img.shape[1], 3)
        assert psnr(reference.upscale(img), out) >= 50.0


def test_build_records_parity_and_manifest(built, export):
    from alignvar_edge.manifest import load_verified
    ov = load_verified(built["openvino"])
    assert ov.backend == "openvino" and ov.precision == "fp32"
    assert ov.extra["compress_to_fp16"] is False
    assert ov.parity["tokens"]["overall"] == 1.0
    assert ov.parity["psnr_db"] == "inf" or ov.parity["psnr_db"] > 60
    # every greedy choice of the graph (one ArgMax per scale) is rewritten, none is left as TopK
    import onnx
    import openvino
    argmaxes = sum(n.op_type == "ArgMax" for n in onnx.load(str(export / "model.onnx")).graph.node)
    assert argmaxes > 0 and ov.extra["ir_rewrites"]["argmax"] == argmaxes
    ir = openvino.Core().read_model(str(built["openvino"] / "model.xml"))
    assert not [op for op in ir.get_ordered_ops() if op.get_type_name() == "TopK"]
    # the decoder's GroupNorms are rewritten, the token path's are not: against a plain conversion
    # of the export, compiled f32, the tokens are bit for bit the same and the pixels agree
    assert ov.extra["ir_rewrites"]["group_norm"] > 0
    # so is the decoder's x2 upsampling: no nearest Interpolate is left, a transposed conv per upsample
    assert ov.extra["ir_rewrites"]["upsample_deconv"] > 0
    kinds = [op.get_type_name() for op in ir.get_ordered_ops()]
    assert kinds.count("ConvolutionBackpropData") == ov.extra["ir_rewrites"]["upsample_deconv"]
    core, f32 = openvino.Core(), {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    plain = core.compile_model(openvino.convert_model(str(export / "model.onnx")), "CPU", f32)
    shape = [d.get_length() if d.is_static else 2 for d in plain.inputs[0].get_partial_shape()]
    lr = np.random.default_rng(1).random(shape, dtype=np.float32)
    want = {o.get_any_name(): v for o, v in plain({0: lr}).items()}
    got = {o.get_any_name(): v for o, v in core.compile_model(ir, "CPU", f32)({0: lr}).items()}
    assert set(got) == set(want)
    for name, value in want.items():
        if name == "sr":
            np.testing.assert_allclose(got[name], value, rtol=0, atol=2e-5)
        else:
            np.testing.assert_array_equal(got[name], value)
    ort = load_verified(built["onnxruntime"])
    assert ort.extra["session"]["threads"] == 1
    assert ort.extra["source"]["path"] == str(export)
    # the ORT build proves itself against the source graph, not merely "it opens and runs"
    assert ort.parity["tokens"]["overall"] == 1.0 and ort.parity["tiles"] >= 4
    assert "source artifact" in ort.parity["reference"]


def test_openvino_throughput_mode_runs_batches_in_parallel_with_the_same_pixels(export, crops):
    """Throughput hint: tile batches as asynchronous requests on parallel streams; same output."""
    img = next(iter(crops.values()))
    with runtimes.load(export, backend="openvino", threads=2) as lat:
        assert lat.parallel_requests == 1
        ref = lat.upscale(img)
    with runtimes.load(export, backend="openvino", threads=2, hint="throughput") as tp:
        if tp.parallel_requests < 2:
            pytest.skip("OpenVINO made one stream on this host (one usable core)")
        got = tp.upscale(img)
        tiles = np.random.default_rng(0).random((5, 3, tp.tile_size, tp.tile_size), dtype=np.float32)
        a, ta = tp.run(tiles)
    np.testing.assert_array_equal(got, ref)
    with runtimes.load(export, backend="openvino", threads=2) as lat:
        b, tb = lat.run(tiles)
    np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(x, y) for x, y in zip(ta, tb))


def test_a_closed_throughput_engine_is_freed(export, crops):
    """A closed (or dropped) OpenVINO engine that ran batches in parallel is freed with its compiled
    models and request threads: the asynchronous queue's callback held the engine's part, a loop
    through OpenVINO's C++ that the collector cannot see (about 325 MB per closed engine, measured)."""
    import gc
    import weakref
    img = next(iter(crops.values()))
    for close in (True, False):
        tp = runtimes.load(export, backend="openvino", threads=2, hint="throughput")
        if tp.parallel_requests < 2:
            pytest.skip("OpenVINO made one stream on this host (one usable core)")
        tp.upscale(img)
        parts = [weakref.ref(p) for p in tp._parts]
        if close:
            tp.close()
        del tp
        gc.collect()
        assert [p() for p in parts] == [None] * len(parts), "closed" if close else "dropped"


# a service that loads an engine and then forks (gunicorn --preload, a fork pool): the child refuses the
# inherited engine in one line, exits at once, and loads engines of its own
_FORKED_CHILD = """
import os, sys, concurrent.futures as cf, multiprocessing as mp
import numpy as np
from alignvar_edge import load
from alignvar_edge.errors import EngineClosedError
IMG = np.zeros((8, 8, 3), np.uint8)
def init(path):
    global ENGINE
    ENGINE = load(path, backend="openvino", threads=1)   # replaces (frees) the inherited one
def task(i):
    return ENGINE.upscale(IMG).shape
if __name__ == "__main__":
    ENGINE = load(sys.argv[1], backend="openvino", threads=1)
    ENGINE.upscale(IMG)
    pid = os.fork()
    if pid == 0:
        try:
            ENGINE.upscale(IMG)
        except EngineClosedError as e:
            print("child:", e, flush=True)
        ENGINE.close()
        sys.exit(0)
    print("child exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("fork"), initializer=init, initargs=(sys.argv[1],)) as ex:
        print("pool", list(ex.map(task, range(2))), flush=True)
    print("parent", ENGINE.upscale(IMG).shape)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_openvino_engine_inherited_by_a_forked_child_is_refused_and_the_child_exits(export, tmp_path):
    import subprocess
    import sys
    script = tmp_path / "forked.py"
    script.write_text(_FORKED_CHILD)
    run = subprocess.Popen([sys.executable, str(script), str(export)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:        # OpenVINO's own objects freed in the child waited forever for the parent's threads
        stdout, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)          # the hung child too
        pytest.fail(f"a forked child hung: {run.communicate()[0]!r}")
    assert run.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == ("child: this openvino engine was loaded before os.fork(), and openvino engines cannot run "
                        "in a forked child: load engines after forking, in each worker (a pool's initializer; "
                        "gunicorn without --preload), or start workers with spawn or forkserver")
    assert lines[1:] == ["child exit 0", "pool [(32, 32, 3), (32, 32, 3)]", "parent (32, 32, 3)"]


def test_threads_none_runs_on_the_count_the_build_recorded_and_selftest_says_so(built, capsys):
    # built["onnxruntime"] was built with threads=1: its selftest latency said "the runtime's default threads"
    from alignvar_edge.cli import main
    with runtimes.load(built["onnxruntime"]) as e:
        assert e.session.get_session_options().intra_op_num_threads == 1
    assert main(["selftest", "--engine", str(built["onnxruntime"]), "--runs", "1"]) == 0
    assert re.search(r"ms best, 1 thread\n", capsys.readouterr().out)
    assert main(["selftest", "--engine", str(built["onnxruntime"]), "--runs", "1", "--threads", "1"]) == 0
    assert re.search(r"ms best, 1 thread\n", capsys.readouterr().out)


def test_an_engine_recording_more_threads_than_the_cores_here_runs_on_the_cores_and_says_so(export, tmp_path, capsys):
    """`build --threads N` may record more than this host's cores (for the device the engine runs on)
    and says so; a run here ran it on N, oversubscribed, without a word: capped, in one warning."""
    import json
    import warnings
    from alignvar_edge.cli import main
    from alignvar_edge.cpuinfo import usable_cores
    cores = usable_cores()
    wide = cores + 3
    assert main(["build", str(export), "--target", "onnxruntime", "--out", str(tmp_path / "E"), "--threads",
                 str(wide)]) == 0
    assert (f"alignvar-edge build: warning: --threads {wide} is more than the {cores} core(s) this process may use "
            "here: recorded for the device the engine runs on") in capsys.readouterr().err
    assert load_verified(tmp_path / "E").extra["session"]["threads"] == wide        # kept for that device
    with pytest.warns(UserWarning, match=rf"records threads={wide}, more than the {cores} core\(s\) this process may "
                                         rf"use here: it runs on {cores}$"):
        with runtimes.load(tmp_path / "E") as e:
            assert e.session.get_session_options().intra_op_num_threads == cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # a count the caller gives is theirs: no warning
        with runtimes.load(tmp_path / "E", threads=1) as e:
            assert e.session.get_session_options().intra_op_num_threads == 1
    # selftest said "2 threads (recorded in the engine)" of an engine recording more, run on 2
    assert main(["selftest", "--engine", str(tmp_path / "E"), "--runs", "1", "--json", str(tmp_path / "st.json")]) == 0
    said = capsys.readouterr()
    assert f"records threads={wide}, more than the {cores} core(s)" in said.err
    s = "s" if cores > 1 else ""
    assert re.search(rf"ms best, {cores} thread{s} \(the engine records {wide}\)\n", said.out), said.out
    report = json.loads((tmp_path / "st.json").read_text())
    assert (report["threads"], report["threads_recorded"]) == (cores, wide)


def test_build_recording_more_threads_than_the_cores_here_checks_its_engine_on_these_cores(export, tmp_path,
                                                                                          monkeypatch):
    """`build --threads 64` on a smaller host said the engine runs there on the host's cores, but its
    own parity check opened the engine on 64 threads (2.8-3.0 s against 0.4 s on the micro export)."""
    from alignvar_edge.cpuinfo import usable_cores
    from alignvar_edge.runtimes import onnxruntime as ortrt
    opened, real_open = [], ortrt.open_session

    def watched(*args, **kwargs):          # the real session, its thread count noted
        session = real_open(*args, **kwargs)
        opened.append(session.get_session_options().intra_op_num_threads)
        return session
    monkeypatch.setattr(ortrt, "open_session", watched)
    cores = usable_cores()
    with pytest.warns(UserWarning, match="recorded for the device the engine runs on"):
        runtimes.build(export, "onnxruntime", out=tmp_path / "E", threads=cores + 3)
    assert load_verified(tmp_path / "E").extra["session"]["threads"] == cores + 3        # kept for that device
    assert opened and max(opened) <= cores, opened


def test_load_auto_detects_the_backend(export, built, tmp_path):
    with runtimes.load(export) as e:                    # an ONNX export runs on onnxruntime
        assert e.backend == "onnxruntime"
    with runtimes.load(export, backend="openvino") as e:   # OpenVINO reads ONNX directly
        assert e.backend == "openvino"
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    with runtimes.load(ckpt) as e:                      # a checkpoint is the torch engine
        assert e.backend == "torch"
    with pytest.raises(InputError, match="is an openvino engine, not one for onnxruntime: use backend openvino"):
        runtimes.load(built["openvino"], backend="onnxruntime")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        runtimes.load(tmp_path)


def test_every_backend_refuses_an_artifact_for_another_in_one_wording(export, tmp_path):
    """Each backend's open refused another's engine in its own words (Core ML's: 'not a Core ML engine'),
    where `load` had said check_backend's; Backend.load asks check_backend for all of them. With it: an
    alias ('ort') is its backend, not 'not on ort', and a deploy output named for a backend says where
    its engines are, not 'an engine for multi; load it with that backend'."""
    from alignvar_edge.manifest import new_manifest, write_manifest
    coreml = tmp_path / "coreml-engine"
    coreml.mkdir()
    write_manifest(coreml, new_manifest("engine", "coreml", "single", "fp16", {}))
    for name in ("torch", "onnxruntime", "openvino", "tensorrt"):
        with pytest.raises(InputError, match=f"coreml-engine is a coreml engine, not one for {name}: use backend "
                                             r"coreml \(or auto\)$"):
            runtimes.get_backend(name).load(coreml)
    ort = tmp_path / "ort-engine"
    ort.mkdir()
    write_manifest(ort, new_manifest("engine", "onnxruntime", "single", "fp32", {}))
    with pytest.raises(InputError, match="ort-engine is an onnxruntime engine, not one for coreml"):
        runtimes.get_backend("coreml").load(ort)
    with runtimes.load(export, backend="ort", threads=1) as e:
        assert e.backend == "onnxruntime"
    deployed = tmp_path / "deploy-out"
    (deployed / "engines" / "onnxruntime-fp32").mkdir(parents=True)
    write_manifest(deployed, new_manifest("deploy", "multi", "single", "fp32", {}))
    with pytest.raises(ArtifactError, match="is the output of `deploy`; its engines are in .*: pass one of them "
                                            r"\(onnxruntime-fp32\)"):
        runtimes.load(deployed, backend="onnxruntime")


def test_several_engines_in_one_process_and_threads_agree(built, crops):
    img = crops["rocket"][:11, :13]
    a, b = runtimes.load(built["onnxruntime"]), runtimes.load(built["openvino"])
    try:
        outs: dict[str, np.ndarray] = {}

        def work(key, engine):
            outs[key] = engine.upscale(img)

        threads = [threading.Thread(target=work, args=(f"{k}{i}", e))
                   for i in range(2) for k, e in (("ort", a), ("ov", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        np.testing.assert_array_equal(outs["ort0"], outs["ort1"])
        np.testing.assert_array_equal(outs["ov0"], outs["ov1"])
        assert psnr(outs["ort0"], outs["ov0"]) >= 50
        assert a.last_latency_ms is not None and a.last_latency_ms > 0
    finally:
        a.close()
        b.close()
    with pytest.raises(EngineClosedError, match="closed"):
        a.infer({"lr": np.zeros((1, 3, 8, 8), np.float32)})


def test_close_waits_for_the_call_in_flight_and_a_waiting_call_is_refused_in_one_line():
    # close() used to release the engine under a running call, and a call already waiting for
    # the engine's lock then ran on the released engine (AttributeError on None)
    engine = TorchEngine.from_model(sharp_model("micro"))
    lr = np.zeros((1, 3, engine.config.lr_size, engine.config.lr_size), np.float32)
    entered, go_on = threading.Event(), threading.Event()
    eager = engine._infer

    def slow_infer(feeds):
        entered.set()
        go_on.wait(10)
        return eager(feeds)

    engine._infer = slow_infer
    results: dict[str, object] = {}

    def call(name: str) -> None:
        try:
            results[name] = engine.infer({"lr": lr})
        except Exception as e:  # noqa: BLE001 - the test reads what each thread met
            results[name] = e

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=call, args=("second",))      # waits for the engine's lock
    second.start()
    closer = threading.Thread(target=engine.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()                  # close waits for the call in flight
    go_on.set()
    for t in (first, second, closer):
        t.join(30)
    assert isinstance(results["first"], dict) and "sr" in results["first"]
    second_result = results["second"]
    # the second call either ran before close took the lock, or was refused in one line
    if not isinstance(second_result, dict):
        assert isinstance(second_result, EngineClosedError) and "closed" in str(second_result)
    with pytest.raises(EngineClosedError, match="engine is closed; load it again"):
        engine.infer({"lr": lr})


def test_infer_and_run_check_their_inputs(built):
    with runtimes.load(built["onnxruntime"]) as e:
        assert e.input_spec == {"lr": ((1, 3, 8, 8), np.dtype(np.float32))}
        out = e.infer({"lr": np.zeros((1, 3, 8, 8), np.float32)})
        assert set(out) == {"sr", "tokens_0", "tokens_1", "tokens_2", "tokens_3"}
        with pytest.raises(InputError, match="shape"):
            e.infer({"lr": np.zeros((2, 3, 8, 8), np.float32)})
        with pytest.raises(InputError, match="expects inputs"):
            e.infer({"x": np.zeros((1, 3, 8, 8), np.float32)})
        sr, tok = e.run(np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32))
        assert sr.shape == (3, 3, 32, 32) and [t.shape for t in tok] == [(3, 1), (3, 4), (3, 16), (3, 64)]
        with pytest.raises(InputError, match="LR tiles"):
            e.run(np.zeros((1, 3, 9, 9), np.float32))


def test_gray_rgba_and_tiny_images(built):
    with runtimes.load(built["openvino"]) as e:
        assert e.upscale(np.full((1, 1, 3), 0.5, np.float32)).shape == (4, 4, 3)
        assert e.upscale(np.linspace(0, 1, 15, dtype=np.float32).reshape(3, 5)).shape == (12, 20)
        rgba = np.random.default_rng(1).random((6, 10, 4), dtype=np.float32)
        assert e.upscale(rgba).shape == (24, 40, 4)


def test_no_visible_seams_on_a_photo(built, crops):
    with runtimes.load(built["onnxruntime"]) as e:
        img = crops["astronaut"]
        _, ys, xs = tiling.extract_tiles(img, e.tile_size)
        assert tiling.seam_ratio(e.upscale(img), ys, xs, e.tile_size, e.scale) < 1.5


def test_build_refuses_what_it_cannot_do(export, tmp_path):
    with pytest.raises(InputError, match="quantize"):
        runtimes.build(export, "onnxruntime", precision="int8", out=tmp_path / "x")
    with pytest.raises(InputError, match="calibration"):
        runtimes.build(export, "openvino", precision="int8", out=tmp_path / "y")
    with pytest.raises(InputError, match="unknown backend"):
        runtimes.build(export, "tflite", out=tmp_path / "z")
    out = runtimes.build(export, "onnxruntime", out=tmp_path / "ort")
    with pytest.raises(OutputExistsError, match="pass force=True to replace it or choose another out=$"):
        runtimes.build(export, "onnxruntime", out=out)          # its keywords: a Python caller has no --force
    src = Path(shutil.copytree(export, tmp_path / "src"))
    for onto in (src, src / "ort"):            # never onto or into its input, even with force
        with pytest.raises(OutputExistsError, match="the input artifact"):
            runtimes.build(src, "onnxruntime", out=onto, force=True)
    assert load_verified(src).kind == "onnx"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]    # no temp leftovers


def test_openvino_device_that_is_absent_is_explained(built):
    with pytest.raises(BackendUnavailableError, match="NPU is not present"):
        runtimes.load(built["openvino"], device="NPU")
    # a device no machine has (a typo) is not sent to look for one
    with pytest.raises(InputError, match="OpenVINO has no device CUP; its devices are CPU, GPU, NPU, AUTO"):
        runtimes.load(built["openvino"], device="cup")


def test_device_advice_names_the_keyword_in_python_and_the_flag_on_the_command_line(export, tmp_path, capsys):
    # a service calling load() was told to "use --device cpu", which it has no flag to pass
    import onnxruntime
    import torch
    from alignvar_edge import cli
    from alignvar_edge.runtimes.openvino.backend import BACKEND as OV
    absent = next(d for d in ("NPU", "GPU") if d not in OV.devices())
    python = [("alignvar-tiny", {"device": "bogus"}, "device='bogus' is not a torch device; use cpu"),
              (export, {"backend": "openvino", "device": absent}, "or on CPU: device='CPU'$"),
              (export, {"backend": "openvino", "device": "cup"}, "pass one of them, e.g. device='CPU'$")]
    if not torch.cuda.is_available():
        python.append(("alignvar-tiny", {"device": "cuda"}, "pass device='cpu' or run on a machine that has it"))
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        python.append((export, {"device": "cuda"}, "install onnxruntime-gpu for CUDA/TensorRT, or use device='cpu'$"))
    for path, opts, said in python:
        with pytest.raises((InputError, BackendUnavailableError), match=said):
            runtimes.load(path, **opts)
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    flags = [(["alignvar-tiny", "--device", "bogus"], "--device bogus is not a torch device; use cpu"),
             ([str(export), "--backend", "openvino", "--device", absent],
              r"or on CPU: `--device CPU` \(upscale, selftest\), `openvino@CPU:PATH` \(bench\)$")]
    for engine_args, said in flags:
        capsys.readouterr()
        code = cli.main(["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--engine", *engine_args,
                         "--threads", "1", "--quiet"])
        assert code != 0 and re.search(said, capsys.readouterr().err.strip())


def test_openvino_cache_dir_is_keyed_on_the_engine_and_a_bad_one_is_one_line(export, built, tmp_path):
    # OpenVINO's compiled-model cache: a second load reads it; an engine rebuilt in place at the same
    # path gets its own entry (the cache is keyed on the model, not the path), never the old one
    eng, cache = tmp_path / "ov", tmp_path / "cache" / "ov"
    shutil.copytree(built["openvino"], eng)
    x = np.random.default_rng(0).random(runtimes.load(eng).input_spec["lr"][0], dtype=np.float32)
    with runtimes.load(eng, cache_dir=str(cache)) as e:
        fp32 = e.infer({"lr": x})["sr"]
    assert len(list(cache.iterdir())) == 1
    runtimes.build(export, "openvino", "int8-weights", out=eng, force=True, check=False)
    with runtimes.load(eng) as plain, runtimes.load(eng, cache_dir=str(cache)) as cached:
        int8w = plain.infer({"lr": x})["sr"]
        np.testing.assert_array_equal(cached.infer({"lr": x})["sr"], int8w)
    assert not np.array_equal(int8w, fp32) and len(list(cache.iterdir())) == 2
    # OpenVINO ignores a cache it cannot write (a file) and fails with a C++ trace on one it cannot make
    (tmp_path / "afile").write_text("")
    for bad in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(InputError, match=re.escape(f"OpenVINO cache_dir '{bad}' cannot be made a folder")):
            runtimes.load(eng, cache_dir=str(bad))


@pytest.mark.parametrize("bad", [123, b"/tmp/ov-cache", ""])
def test_openvino_cache_dir_that_is_no_path_is_one_line(export, bad):
    # pathlib's bare TypeError ("expected str, bytes or os.PathLike object, not int") named no option
    with pytest.raises(InputError, match=re.escape("OpenVINO cache_dir must be a folder path (a str or "
                                                   f"os.PathLike), or None for no cache; got {bad!r}")):
        runtimes.load(export, backend="openvino", cache_dir=bad)


def test_openvino_build_refuses_a_device_openvino_does_not_have(export, tmp_path):
    # an absent GPU / NPU is built unchecked for another machine; a misspelt device never runs anywhere
    with pytest.raises(InputError, match="OpenVINO has no device CUP; its devices are CPU, GPU, NPU, AUTO"):
        runtimes.build(export, "openvino", "fp32", out=tmp_path / "ov", device="cup")
    assert not (tmp_path / "ov").exists()


def test_per_head_scales_are_widened_without_changing_values():
    # OpenVINO 2026.4's CPU plugin fails to compile INT8 models with a (1, H, 1, 1) head-scale
    # Multiply (trained models); the build broadcasts it to (1, H, 1, hd) first
    import openvino as ov
    import openvino.opset13 as ops

    from alignvar_edge.runtimes.openvino.nncf import widen_head_scales
    x = ops.parameter([1, 4, 8, 16], np.float32)
    scale = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 4, 1, 1)
    model = ov.Model([ops.multiply(x, ops.constant(scale))], [x])
    inp = np.random.default_rng(0).random((1, 4, 8, 16), dtype=np.float32)
    before = ov.Core().compile_model(model, "CPU")({0: inp})[0]
    assert widen_head_scales(model) == 1
    consts = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]
    assert [list(c.get_output_shape(0)) for c in consts] == [[1, 4, 1, 16]]
    np.testing.assert_array_equal(ov.Core().compile_model(model, "CPU")({0: inp})[0], before)


def test_argmax_rewrite_picks_numpys_first_maximum_ties_included(tmp_path):
    # ONNX ArgMax as OpenVINO converts it (a TopK), then rewritten; numpy is the reference
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper

    from alignvar_edge.runtimes.openvino.rewrite import argmax_as_reductions
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["i"], axis=-1, keepdims=0)], "argmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 1024])],
        [helper.make_tensor_value_info("i", TensorProto.INT64, [2, 5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "a.onnx")
    model = ov.convert_model(str(tmp_path / "a.onnx"))
    assert [op.get_type_name() for op in model.get_ordered_ops()].count("TopK") == 1
    assert argmax_as_reductions(model) == 1
    assert "TopK" not in [op.get_type_name() for op in model.get_ordered_ops()]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(2, 5, 1024)).astype(np.float32)      # many ties per row
    x[0, 0] = 0.0                                                    # all tied: index 0
    x[1, 4, 1023] = 9.0                                              # the last column
    x[1, 3, :] = -np.inf
    x[1, 3, 700] = -1e30
    got = ov.Core().compile_model(model, "CPU")({0: x})[0]
    np.testing.assert_array_equal(got, np.argmax(x, axis=-1))
    assert got.dtype == np.int64 and got[0, 0] == 0 and got[1, 4] == 1023 and got[1, 3] == 700


def test_group_norm_rewrite_computes_the_exported_graph_without_nchw(export):
    # the whole exported graph, compiled f32 before and after: OpenVINO's own MVN is the reference
    import openvino as ov

    from alignvar_edge.runtimes.openvino.rewrite import group_norm_channels_last
    core = ov.Core()
    model = ov.convert_model(str(export / "model.onnx"))
    norms = [op for op in model.get_ordered_ops() if op.get_type_name() == "MVN"]
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    before = core.compile_model(model, "CPU", config)
    shape = [d.get_length() if d.is_static else 3 for d in before.inputs[0].get_partial_shape()]
    lr = np.random.default_rng(0).random(shape, dtype=np.float32)
    want = before({0: lr})
    rewritten = group_norm_channels_last(model)
    assert 0 < rewritten < len(norms)          # the decoder's GroupNorms, not the LayerNorms
    assert len([op for op in model.get_ordered_ops() if op.get_type_name() == "MVN"]) == len(norms) - rewritten
    got = core.compile_model(model, "CPU", config)({0: lr})
    for out in before.outputs:
        a, b = want[out], got[out.get_any_name()]
        if a.dtype == np.int64:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=0, atol=2e-5)


def test_group_norm_rewrite_spares_the_token_path_and_matches_numpy(tmp_path):
    # two GroupNorms as torch exports them: one feeds tokens_0 (spared), one feeds sr (rewritten)
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    from alignvar_edge.runtimes.openvino.rewrite import group_norm_channels_last
    rng = np.random.default_rng(0)
    gamma, beta = rng.random(4, dtype=np.float32) + 0.5, rng.random(4, dtype=np.float32)
    consts = {"grouped": np.array([0, 2, -1], np.int64), "back": np.array([2, 4, 3, 5], np.int64),
              "ones": np.ones(2, np.float32), "zeros": np.zeros(2, np.float32),
              "gamma": gamma.reshape(1, 4, 1, 1), "beta": beta.reshape(1, 4, 1, 1), "axes": np.array([2, 3], np.int64),
              "two": np.array(2.0, np.float32)}
    nodes = [helper.make_node("Mul", ["x", "two"], ["x2"])]      # two inputs: OpenVINO would merge equal norms
    for tag in ("t", "s"):
        nodes += [helper.make_node("Reshape", ["x" if tag == "t" else "x2", "grouped"], [f"{tag}g"]),
                  helper.make_node("InstanceNormalization", [f"{tag}g", "ones", "zeros"], [f"{tag}n"], epsilon=1e-5),
                  helper.make_node("Reshape", [f"{tag}n", "back"], [f"{tag}b"]),
                  helper.make_node("Mul", [f"{tag}b", "gamma"], [f"{tag}m"]),
                  helper.make_node("Add", [f"{tag}m", "beta"], ["sr" if tag == "s" else "tn"])]
    nodes += [helper.make_node("ReduceMean", ["tn", "axes"], ["tm"], keepdims=0),
              helper.make_node("ArgMax", ["tm"], ["tokens_0"], axis=-1, keepdims=0)]
    graph = helper.make_graph(nodes, "gn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 3, 5])],
                              [helper.make_tensor_value_info("sr", TensorProto.FLOAT, [2, 4, 3, 5]),
                               helper.make_tensor_value_info("tokens_0", TensorProto.INT64, [2])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "gn.onnx")
    model = ov.convert_model(str(tmp_path / "gn.onnx"))
    assert group_norm_channels_last(model, spare_outputs=("tokens_0",)) == 1
    assert [op.get_type_name() for op in model.get_ordered_ops()].count("MVN") == 1    # the token path's
    x = (rng.standard_normal((2, 4, 3, 5)) * 3 + 1).astype(np.float32)
    out = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({0: x}).to_dict()
    out = {o.get_any_name(): v for o, v in out.items()}

    def group_norm(v: np.ndarray) -> np.ndarray:
        g = v.reshape(2, 2, -1).astype(np.float64)
        normed = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)).reshape(v.shape)
        return normed * gamma.reshape(1, 4, 1, 1) + beta.reshape(1, 4, 1, 1)
    np.testing.assert_allclose(out["sr"], group_norm(2 * x), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(out["tokens_0"], np.argmax(group_norm(x).mean(axis=(2, 3)), axis=-1))


def test_bf16_islands_run_bf16_inside_an_f32_compiled_model():
    # OpenVINO ignores per-node f32 marks under a bf16 hint, but keeps explicit Converts: the named
    # MatMul runs bf16, the other stays f32, in one model compiled with the f32 hint
    import openvino as ov
    import openvino.opset13 as ops

    from alignvar_edge.runtimes.half import host_half
    from alignvar_edge.runtimes.openvino.rewrite import bf16_islands
    if host_half("openvino", "CPU") != "bf16":
        pytest.skip("this CPU has no fast bf16 (AVX512-BF16 or AMX): the build adds no islands here")
    rng = np.random.default_rng(0)
    w1, w2 = (rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2))
    x = ops.parameter([8, 16, 64], np.float32)
    island = ops.matmul(x, ops.constant(w1), False, True)
    island.set_friendly_name("island")
    stays = ops.matmul(x, ops.constant(w2), False, True)
    stays.set_friendly_name("stays")
    model = ov.Model([island, stays], [x])
    assert bf16_islands(model, {"island", "absent"}) == 1
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ran = {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
           for op in compiled.get_runtime_model().get_ordered_ops()
           if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"}
    assert ran == {"island": "bf16", "stays": "f32"}
    inp = rng.standard_normal((8, 16, 64)).astype(np.float32)
    got = compiled({0: inp})
    for i, w in enumerate((w1, w2)):
        want = inp @ w.T
        err = np.abs(got[i] - want).max() / np.abs(want).max()
        assert (1e-6 < err < 3e-2) if i == 0 else err < 1e-5     # bf16's 8-bit mantissa: off f32, but close


def test_openvino_ignored_scope_covers_every_weighted_op_it_cannot_place(export):
    # ops OpenVINO creates itself (a constant Multiply folded into a conv on the SCA path) map to
    # no ONNX node: they must stay float, or NNCF quantizes the token path behind the policy's back
    import openvino as ov

    from alignvar_edge.quantize.policy import Policy
    from alignvar_edge.runtimes.openvino.nncf import ignored_scope_names
    onnx_path = export / "model.onnx"
    model = ov.convert_model(str(onnx_path))
    weighted = {op.get_friendly_name() for op in model.get_ordered_ops()
                if op.get_type_name() in ("MatMul", "Convolution")}
    nothing, _ = ignored_scope_names(onnx_path, model, Policy(int8_components=frozenset()))
    assert set(nothing) == weighted
    default, why = ignored_scope_names(onnx_path, model)
    assert 0 < len(default) < len(weighted)
    assert {"head", "attn_product"} <= set(why.values())


def test_openvino_int8_engine_is_split_with_the_policy_scope_in_its_token_part(export, tmp_path):
    # OpenVINO compiles one precision per model: split, the token part keeps the f32 hint for its
    # float ops while the image suffix may take the host's half; both parts carry int8 ops
    import warnings

    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    from alignvar_edge.runtimes.half import host_half
    from alignvar_edge.runtimes.openvino.backend import PrecisionWarning, _graph_only, _group_of
    cfg = runtimes.load(export).config
    out = runtimes.build(export, "openvino", precision="int8", out=tmp_path / "ov8",
                         calibration=lr_tiles(cfg, 8, seed=0), check=False)
    m = read_manifest(out)
    assert m.extra["files"] == {"engine": "model.xml", "image": "image.xml"}
    assert m.extra["split"]["token_precision"] == "int8 + f32" and m.extra["split"]["image_int8"]
    half = "bf16" if host_half("openvino", "CPU") else "f32"
    with runtimes.load(out) as e:
        ran = e.runtime_precision(_group_of(_graph_only(export / "model.onnx")))
        # as compiled, not as requested: OpenVINO reports each part's inference precision
        assert e.compute_precision == e.expected_precision == f"{half} image, f32 tokens"
    int8 = {"u8", "i8"}
    assert int8 & set(ran["transformer_matmuls"]) and int8 & set(ran["decoder_convs"])
    assert int8.isdisjoint(ran["logits_head"])
    # OpenVINO's own defaults compute the token part in bf16 on a bf16 CPU: flagged there, not elsewhere
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        runtimes.load(out, parity=False).close()
    assert any(issubclass(x.category, PrecisionWarning) for x in w) == (half == "bf16")


def test_openvino_int8_calibrates_a_refiner_export_with_its_noise(tmp_path):
    # VARSR's refiner takes a second input, the sampler's noise, used only by the image suffix:
    # calibration feeds it the draw every engine feeds, and the image part receives it
    import torch

    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    torch.manual_seed(0)
    cfg = AlignVARConfig.from_preset("micro", refiner_width=16, refiner_depth=1, refiner_steps=2)
    src = export_onnx(AlignVAR(cfg).eval(), tmp_path / "exp", graph="single", batch=1)
    out = runtimes.build(src, "openvino", precision="int8", out=tmp_path / "ov8", calibration=lr_tiles(cfg, 8, seed=0))
    m = read_manifest(out)
    assert "noise" in m.extra["split"]["boundary"] and m.parity["tokens"]["overall"] >= 0.99
    with runtimes.load(out) as e, runtimes.load(src) as ref:
        assert set(e.input_spec) == {"lr", "noise"}
        x = lr_tiles(cfg, 2, seed=3)
        (sr, tokens), (_, want) = e.run(x), ref.run(x)
        same = sum(int((a == b).sum()) for a, b in zip(tokens, want)) / sum(b.size for b in want)
        assert same >= 0.95 and np.isfinite(sr).all()


def test_openvino_int8_falls_back_to_a_decoder_only_scope_below_the_token_target(export, tmp_path, monkeypatch):
    # the first rung's measured tokens are lowered below the target, which forces the second rung:
    # a split engine, the token path compiled f32 and only the VQ decoder of the image part in
    # int8; both rungs are measured and recorded, and the engine that was kept is the last one
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.runtimes.half import host_half
    from alignvar_edge.runtimes.openvino.backend import OpenVINOBackend
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    real_check, checks = OpenVINOBackend._check, []

    def first_rung_misses(self, *a, **k):
        parity = real_check(self, *a, **k)
        checks.append(parity["tokens"]["overall"])
        if len(checks) == 1:
            parity["tokens"]["overall"] = 0.9
        return parity
    monkeypatch.setattr(OpenVINOBackend, "_check", first_rung_misses)
    cfg = runtimes.load(export).config
    # without the bf16-island rung a bf16 CPU tries between them (tested in test_openvino_half.py)
    out = runtimes.build(export, "openvino", precision="int8", out=tmp_path / "ov8",
                         calibration=lr_tiles(cfg, 8, seed=0), float_groups=["blocks.0.ffn.fc1"], token_bf16=False)
    assert len(checks) == 2
    q = read_manifest(out).quantization
    assert [r["rung"] for r in q["ladder"]] == ["policy + searched float groups", "decoder only, token path f32 (split)"]
    assert q["ladder"][0]["int8_policy"]["float_groups"] == ["blocks.0.ffn.fc1"]
    assert q["policy"]["int8_components"] == ["vq_decoder"]
    # the token path is float and untouched (NNCF's SmoothQuant and int8 embedding tables, which
    # rescale float ops too, are off): every token equals the fp32 export's
    assert q["ladder"][-1]["token_agreement"] == 1.0
    m = read_manifest(out)
    assert m.parity["tokens"]["overall"] == q["ladder"][-1]["token_agreement"]
    assert m.extra["split"]["token_precision"] == "f32" and "image" in m.extra["files"]
    assert m.extra["split"]["image_precision"] == ("bf16" if host_half("openvino", "CPU") else "f32")
    assert m.quantization["token_part"] == "not quantized" and m.quantization["split"]
    # as compiled: the decoder convolutions run int8, the transformer and the logits head f32 only
    ran = m.extra["compute_precision"]
    assert {"u8", "i8"} & set(ran["decoder_convs"])
    assert set(ran["transformer_matmuls"]) == {"f32"} and set(ran["logits_head"]) == {"f32"}
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    assert "split      token path f32 (" in format_inspection(inspect_artifact(out))
    shown = format_inspection(inspect_artifact(out))
    assert "image suffix int8 + " in shown
    # which rung was kept, and why the faster one was not
    assert "tried      policy + searched float groups: tokens" in shown and "not kept: below the token or image target" in shown
    assert "tried      decoder only, token path f32 (split): tokens 100.00%" in shown
    with runtimes.load(out) as e:
        sr, _ = e.run(lr_tiles(cfg, 2, seed=3))
        assert np.isfinite(sr).all()
    with pytest.raises(InputError, match="float groups apply to precision='int8' only"):
        runtimes.build(export, "openvino", precision="fp16", out=tmp_path / "x", float_groups=["a"])


def test_openvino_int8_that_misses_the_selftest_gate_says_so(export, tmp_path, monkeypatch):
    # the build holds every rung to the gate selftest applies (recipes.py: tokens and SR PSNR vs
    # fp32); here the image gate is out of reach: the most careful rung is kept, and says so
    import dataclasses

    from alignvar_edge import recipes
    from alignvar_edge.export.inspect_artifact import tried_rungs
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    real = recipes.recipe
    monkeypatch.setattr(recipes, "recipe", lambda *a, **k: dataclasses.replace(real(*a, **k), psnr_db=1e6))
    cfg = runtimes.load(export).config
    out = runtimes.build(export, "openvino", precision="int8", out=tmp_path / "ov8",
                         calibration=lr_tiles(cfg, 8, seed=0), token_bf16=False)   # the two rungs every CPU has
    ladder = read_manifest(out).quantization["ladder"]
    assert len(ladder) == 2 and ladder[-1]["short_of_gate"] == "99% tokens and 1e+06 dB"
    assert "selftest will fail it" in tried_rungs(read_manifest(out))[-1]


def test_selftest_advice_for_a_failing_openvino_int8_engine_is_what_its_build_takes(export, tmp_path, monkeypatch,
                                                                                   capsys):
    # OpenVINO int8 is calibrated by the build (NNCF), whose flags are not quantize's search flags
    # (quantize --target openvino refuses --min-token-agreement / --val-tiles): the advice names the
    # build's, and the build takes them as printed
    import dataclasses

    from alignvar_edge import recipes
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes import selftest
    real = recipes.recipe
    out_of_reach = lambda *a, **k: dataclasses.replace(real(*a, **k), psnr_db=1e6)   # noqa: E731
    monkeypatch.setattr(recipes, "recipe", out_of_reach)
    monkeypatch.setattr(selftest, "recipe", out_of_reach)
    build = ["build", str(export), "--target", "openvino", "--precision", "int8", "--calib", "builtin",
             "--no-token-bf16", "--out"]
    assert main([*build, str(tmp_path / "ov8"), "--calib-tiles", "8"]) == 0
    assert main(["selftest", "--engine", str(tmp_path / "ov8"), "--runs", "1"]) == 1
    reason = capsys.readouterr().out.split("RESULT")[-1]
    assert "--min-token-agreement" not in reason and "--val-tiles" not in reason, reason
    assert "calibrated by the openvino build on 8 tiles" in reason and "--calib-tiles (default 64)" in reason
    advised = re.findall(r"--[a-z-]+", reason)
    assert main([*build, str(tmp_path / "again"), "--calib-tiles", "16"]) == 0 and "--calib-tiles" in advised


def test_openvino_int8_weights_keeps_the_policys_float_ops_float(export, tmp_path):
    # weight-only int8 follows the same policy as int8: the logits head (whose rounding flips greedy
    # choices: the bundled model kept 98.1% of its tokens, short of the 99% gate, with it in int8)
    # keeps f32 weights, the transformer's linears are compressed
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.runtimes.openvino.backend import _graph_only, _group_of
    out = runtimes.build(export, "openvino", precision="int8-weights", out=tmp_path / "w8", check=False)
    with runtimes.load(out) as e:
        ran = e.runtime_precision(_group_of(_graph_only(export / "model.onnx")))
    # the kernels widen the int8 weights and compute f32 (`op_precision`)
    assert "f32 (u8 weights)" in ran["transformer_matmuls"]
    assert set(ran["logits_head"]) == set(ran["attention"]) == {"f32"}
    assert read_manifest(out).quantization["ignored_by_component"]["head"] > 0


def test_openvino_int8_built_with_vnni_warns_on_a_cpu_without_it(export, tmp_path, monkeypatch):
    # built where VNNI made NNCF's overflow fix unnecessary, then moved to a CPU without VNNI or AMX
    # (simulated: cpuinfo says so), whose int8 dot products saturate: the load says so and what to do
    import warnings

    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    from alignvar_edge.runtimes.openvino import backend as ovb
    from alignvar_edge.runtimes.openvino import nncf as ovn
    monkeypatch.setattr(ovn, "has_vnni", lambda: True)
    cfg = runtimes.load(export).config
    out = runtimes.build(export, "openvino", precision="int8", out=tmp_path / "ov8",
                         calibration=lr_tiles(cfg, 8, seed=0), check=False)
    assert read_manifest(out).quantization["image_part"]["overflow_fix"] == "DISABLE"
    assert "overflow fix DISABLE" in (out / "README.md").read_text()
    for here, warned in ((True, False), (False, True), (None, False)):      # None: flags unknown
        monkeypatch.setattr(ovb, "has_vnni", lambda here=here: here)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            runtimes.load(out).close()
        said = [str(x.message) for x in w if issubclass(x.category, ovb.PrecisionWarning) and "VNNI" in str(x.message)]
        assert len(said) == warned, (here, said)
        assert all("rebuild it here" in line and f"selftest --engine {out}`" in line for line in said)
        assert all("quantized for a CPU with VNNI or AMX" in line for line in said)
    # built on an Arm host, which needs no fix: the warning on such an x86 CPU says where it was built
    monkeypatch.setattr(ovn, "has_vnni", lambda: None)
    monkeypatch.setattr(ovn, "is_x86", lambda: False)
    arm = runtimes.build(export, "openvino", precision="int8", out=tmp_path / "ov8-arm",
                         calibration=lr_tiles(cfg, 8, seed=0), check=False)
    assert read_manifest(arm).quantization["image_part"]["overflow_fix_reason"] == "not an x86 CPU"
    monkeypatch.setattr(ovb, "has_vnni", lambda: False)
    with pytest.warns(ovb.PrecisionWarning, match=r"quantized for a CPU whose int8 does not saturate \(not an x86 CPU\)"):
        runtimes.load(arm).close()


def test_upscale_many_shares_calls_and_equals_upscale_one_at_a_time(pytestconfig) -> None:
    """A real static-batch engine: small images pooled into shared calls give exactly the bytes
    `upscale` gives each alone (a tile's result does not depend on the tiles beside it)."""
    export = export_dir(sharp_model("micro"), cache_root(pytestconfig), batch=4)
    rng = np.random.default_rng(0)
    images = [(rng.random((h, w, 3)) * 255).astype(np.uint8) for h, w in [(6, 9), (8, 8), (13, 11), (5, 5)]]
    images.insert(2, images[1][..., 0])                       # a gray one among them
    with runtimes.load(export) as engine:
        assert engine.batch == 4
        alone = [engine.upscale(im) for im in images]
        pooled = list(engine.upscale_many(iter(images)))
    assert len(pooled) == len(images)
    for got, want in zip(pooled, alone):
        assert got.dtype == np.uint8 and np.array_equal(got, want)


@pytest.mark.parametrize(("fill", "dtype", "said"), [
    (np.nan, np.float32, r"^calibration tiles contain NaN or Inf; pass finite values"),
    (50.0, np.float32, r"^calibration tiles with values from 50 to 50, outside \[0, 1\]"),
    (0, np.uint8, r"^calibration tiles must be float32 in \[0, 1\], got dtype uint8; divide "
                  r"uint8 tiles by 255: calibration\.astype\(np\.float32\) / 255$")])
def test_an_int8_build_refuses_calibration_tiles_outside_their_contract(export, tmp_path, fill, dtype, said):
    """NaN or 0..255 calibration tiles built an int8 engine fitted to nothing (35 dB where the bundled
    photographs give 49), which then passed selftest: they are refused before any work, as a wrong
    shape is."""
    from alignvar_edge.runtimes.base import config_from_manifest
    t = config_from_manifest(load_verified(export)).lr_size
    out = tmp_path / "never"
    with pytest.raises(InputError, match=said):
        runtimes.build(export, "openvino", precision="int8", calibration=np.full((4, 3, t, t), fill, dtype), out=out,
                       check=False)
    assert not out.exists()


def test_a_failed_parallel_call_leaves_the_engine_usable():
    """One item of a throughput call failing (out of memory, Ctrl-C) left the others' requests
    running, and every later call of the engine failed with 'Infer Request is busy'."""
    ov = pytest.importorskip("openvino")
    import openvino.opset13 as ops

    from alignvar_edge.runtimes.openvino.backend import _Part
    x = ops.parameter([1, 512, 512], np.float32, name="x")
    y = x
    for _ in range(8):                      # long enough that the first item still runs when the second fails
        y = ops.matmul(y, ops.constant(np.full((512, 512), 1 / 512, np.float32)), False, False)
    y.output(0).get_tensor().set_names({"sr"})
    compiled = ov.Core().compile_model(ov.Model([y], [x]), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                   "INFERENCE_NUM_THREADS": "2"})
    part = _Part(compiled, ["sr"], True, {})
    good = [{"x": np.ones((1, 512, 512), np.float32)} for _ in range(3)]
    with pytest.raises(RuntimeError):
        part.run_async([dict(good[0]), {"x": np.zeros((1, 5, 5), np.float32)}, dict(good[1])], 2)
    again = [dict(g) for g in good]
    part.run_async(again, 2)
    assert all(np.allclose(v["sr"], 1.0) for v in again)
    assert np.allclose(part.request.infer({"x": good[0]["x"]})[0], 1.0)
