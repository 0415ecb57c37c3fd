"""Running out of memory, as a small board does, is one line and exit status 1 (the README's table):
not a runtime's traceback, an empty line, 'not installed' or 'build an fp32 engine'. The memory
caps are real (`prlimit --as`), set between what this host's own processes are measured to need
before and after the step that must fail, so no fixed number decides it."""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.cli import main
from alignvar_edge.cli_json import no_stale_result
from alignvar_edge.errors import OutOfMemoryError, out_of_memory

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRLIMIT = shutil.which("prlimit")
needs_prlimit = pytest.mark.skipif(PRLIMIT is None, reason="prlimit (util-linux) is not installed, so no memory "
                                   "cap can be set on a subprocess: install util-linux to run this test")
# one malloc arena: each thread's own arena reserves 64 MiB of address space, which a cap counts
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"}

# prints this process's peak address space after importing what the upscale verb imports ('cli'),
# the backend's library ('lib') or loading the engine ('loaded'): what a cap must leave room for, or deny
_PEAK = """
import sys
import PIL.Image
from alignvar_edge import cli, runtimes
import alignvar_edge.runtimes.commands
stage, engine = sys.argv[1:]
if stage == "lib":
    runtimes.get_backend(runtimes.detect_backend(engine)).import_module()
if stage == "loaded":
    runtimes.load(engine, threads=1)
print(next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmPeak")))
"""


def _peak(stage: str, engine: Path) -> int:
    r = subprocess.run([sys.executable, "-c", _PEAK, stage, str(engine)], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def _built(export: Path, root: Path, target: str, *options: str) -> Path:
    """An engine of `export` for `target` in `root`, beside the small photo (in.png) it upscales."""
    engine = root / target
    assert main(["build", str(export), "--target", target, *options, "--out", str(engine)]) == 0
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(root / "in.png")
    return engine


@pytest.fixture(scope="module")
def ort_engine(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _built(micro_export, tmp_path_factory.mktemp("oom-ort"), "onnxruntime", "--threads", "1")


@pytest.fixture(scope="module")
def ov_engine(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("openvino", reason="OpenVINO is not installed (the `openvino` extra)")
    return _built(micro_export, tmp_path_factory.mktemp("oom-ov"), "openvino", "--precision", "fp32")


def _capped_upscale(cap: int, engine: Path, tmp_path: Path, image: Path | None = None) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "out.png"
    r = subprocess.run([PRLIMIT or "prlimit", f"--as={cap}", sys.executable, "-m", "alignvar_edge", "upscale",
                        str(image or engine.parent / "in.png"), str(out), "--engine", str(engine), "--threads", "1",
                        "--quiet"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert not out.exists()
    return r


def _says_out_of_memory(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    line = r.stderr.strip()
    assert line.startswith("alignvar-edge upscale: error: ran out of memory"), line
    assert "close other programs" in line and "ulimit -v" in line, line
    return line


def _capped_between(before: str, engine: Path, gap_mib: int, tmp_path: Path) -> str:
    """`upscale` capped halfway between the peaks of stage `before` and of the loaded engine (so the
    step between them fails), which must lie at least `gap_mib` apart; its one out-of-memory line."""
    low, loaded = _peak(before, engine), _peak("loaded", engine)
    assert loaded - low > gap_mib * 2**20, f"the step after '{before}' needs too little memory here to cap between"
    return _says_out_of_memory(_capped_upscale((low + loaded) // 2, engine, tmp_path))


@needs_prlimit
def test_no_memory_to_load_onnxruntime_is_not_called_a_missing_package(ort_engine, tmp_path):
    line = _capped_between("cli", ort_engine, 20, tmp_path)
    assert "pip install" not in line and "not usable" not in line


@needs_prlimit
def test_no_memory_to_compile_an_openvino_engine_is_no_fp32_advice_and_exit_1(ov_engine, tmp_path):
    line = _capped_between("lib", ov_engine, 40, tmp_path)
    assert "compiling" in line and "fp32" not in line and "cannot compile" not in line


@needs_prlimit
def test_a_bare_memory_error_is_a_line_that_says_out_of_memory_not_an_empty_one(ort_engine, tmp_path):
    """Decoding a 3000x3000 photo (27 MB, again for each copy) with 16 MiB to spare: Pillow raises a
    MemoryError without a message."""
    big = tmp_path / "big.png"
    Image.fromarray(np.full((3000, 3000, 3), 90, np.uint8)).save(big)
    ort = ort_engine
    line = _says_out_of_memory(_capped_upscale(_peak("loaded", ort) + 16 * 2**20, ort, tmp_path, big))
    assert line.startswith("alignvar-edge upscale: error: ran out of memory; close other programs"), line


# loads the engine, then lets this process grow by a few pages only: ONNX Runtime's arena fails
_RUN_OUT = """
import resource, sys
from alignvar_edge import runtimes
import numpy as np
engine = runtimes.load(sys.argv[1], threads=1)
feeds = engine.feeds_for(np.full((engine.batch, 3, engine.tile_size, engine.tile_size), 0.5, np.float32))
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 2**16, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    engine.infer(feeds)
except MemoryError as e:
    print(type(e).__name__, e)
"""


def test_onnxruntime_running_out_of_memory_mid_run_raises_out_of_memory_error(ort_engine):
    r = subprocess.run([sys.executable, "-c", _RUN_OUT, str(ort_engine)], capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OutOfMemoryError ran out of memory running the onnxruntime engine ("), r.stdout


# a graph with 64 MiB of weights, opened with 16 MiB to spare: ONNX Runtime's loader throws std::bad_alloc
_LOAD_OUT = """
import resource, sys
import numpy as np
from onnx import TensorProto, helper, numpy_helper, save
from alignvar_edge.export.onnx_export import _runtime_refused
from alignvar_edge.onnx_session import open_session
weights = numpy_helper.from_array(np.ones((64, 2**18), np.float32), "w")
graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weights])
save(helper.make_model(graph), sys.argv[1])
del weights, graph
open_session(sys.argv[1], threads=1)       # ONNX Runtime's environment, made once per process
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 16 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    open_session(sys.argv[1], threads=1)
except Exception as e:
    print(type(e).__name__, e)
    print(_runtime_refused(e, "single", 18))
"""


def test_no_memory_to_load_a_graph_in_onnx_runtime_is_out_of_memory_not_re_export_advice(tmp_path):
    r = subprocess.run([sys.executable, "-c", _LOAD_OUT, str(tmp_path / "big.onnx")], capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    loading, checking = r.stdout.splitlines()
    assert loading.startswith(f"OutOfMemoryError ran out of memory loading {tmp_path / 'big.onnx'} in ONNX Runtime ("), loading
    assert "bad_alloc" in loading and "re-export" not in loading, loading
    # export's check says what it was doing, not which temporary file it was loading
    assert checking.startswith("ran out of memory checking the exported single graph in ONNX Runtime ("), checking


# an OpenVINO engine in throughput mode, its requests made, then no room to grow: upscale's
# parallel requests (infer_many) running out of memory; os._exit: OpenVINO's threads abort at exit
_RUN_OUT_ASYNC = """
import os, resource, sys
from alignvar_edge import runtimes
import numpy as np
engine = runtimes.load(sys.argv[1], hint="throughput")
if engine.parallel_requests < 2:
    print("one request")
    os._exit(0)
feeds = engine.feeds_for(np.full((engine.batch, 3, engine.tile_size, engine.tile_size), 0.5, np.float32))
engine.infer_many([feeds] * 4)
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
limit = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (size, limit[1]))
try:
    engine.infer_many([feeds] * 256)        # its results alone need memory the cap refuses
    print("ran")
except MemoryError as e:
    print(type(e).__name__, e, flush=True)
    resource.setrlimit(resource.RLIMIT_AS, limit)
    engine.infer_many([feeds] * 4)          # room again: the engine's requests are free to run
    print("usable after", flush=True)
os._exit(0)
"""


def test_openvino_running_parallel_requests_out_of_memory_raises_out_of_memory_error(ov_engine):
    r = subprocess.run([sys.executable, "-c", _RUN_OUT_ASYNC, str(ov_engine)], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    if r.stdout.startswith("one request"):
        pytest.skip("OpenVINO makes one request in throughput mode on this CPU, so infer_many runs none in parallel")
    if r.stdout.startswith("ran"):
        pytest.skip("OpenVINO ran the requests in memory it had already mapped, so no cap here makes them fail")
    assert r.stdout.startswith("OutOfMemoryError ran out of memory running the openvino engine"), r.stdout
    assert r.stdout.splitlines()[-1] == "usable after", r.stdout    # no request left busy by the failed call


def test_a_bare_memory_error_and_the_runtimes_words_say_out_of_memory_and_other_errors_do_not():
    bare = out_of_memory(MemoryError())
    assert isinstance(bare, OutOfMemoryError) and str(bare).startswith("ran out of memory; close other programs")
    assert "(" not in str(bare).split(";")[0]
    ov = RuntimeError("Exception from src/inference/src/cpp/core.cpp:109:\n"
                      "Can not create file mapping for 4, err=Cannot allocate memory\n")
    assert str(out_of_memory(ov, "compiling E")).startswith(
        "ran out of memory compiling E (Can not create file mapping for 4, err=Cannot allocate memory);")
    # the loader's TLS shortage (a Jetson's libgomp) and a permission error are cured by no free memory
    assert out_of_memory(ImportError("libgomp.so.1: cannot allocate memory in static TLS block")) is None
    assert out_of_memory(ImportError("x.so: failed to map segment from shared object: Operation not permitted")) is None
    assert out_of_memory(BlockingIOError(11, "Resource temporarily unavailable")) is None
    assert out_of_memory(RuntimeError("the graph is invalid")) is None


# caps this process's address space at what it already maps (through libc: importing `resource` here
# would load it before the cap, hiding what this checks), then says it ran out of memory; the hard
# limit is kept (raising it needs CAP_SYS_RESOURCE)
_NO_ROOM_LEFT = """
import ctypes
from alignvar_edge.errors import out_of_memory
class Limit(ctypes.Structure):
    _fields_ = [("soft", ctypes.c_ulong), ("hard", ctypes.c_ulong)]
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
RLIMIT_AS, libc, limit = 9, ctypes.CDLL(None, use_errno=True), Limit()
assert libc.getrlimit(RLIMIT_AS, ctypes.byref(limit)) == 0
assert libc.setrlimit(RLIMIT_AS, ctypes.byref(Limit(size, limit.hard))) == 0
print(out_of_memory(MemoryError()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is 9 on Linux only")
def test_the_address_space_limit_is_named_even_with_no_room_left_to_load_a_library():
    r = subprocess.run([sys.executable, "-c", _NO_ROOM_LEFT], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ran out of memory; close other programs"), r.stdout
    assert "of address space (its `ulimit -v`): raise or lift that limit" in r.stdout, r.stdout


def test_our_errors_and_pythons_own_are_never_called_out_of_memory_whatever_their_words():
    from alignvar_edge.errors import EngineClosedError, InputError
    for error in (ValueError("x failed to allocate"), TypeError("bad_alloc"), KeyError("out of memory"),
                  AssertionError("cannot allocate memory"), InputError("the image failed to allocate"),
                  EngineClosedError("closed: out of memory")):
        assert out_of_memory(error) is None, error

    class Fail(Exception):       # how ONNX Runtime's own exceptions derive: from Exception, not RuntimeError
        pass
    assert isinstance(out_of_memory(Fail("Failed to allocate memory for requested buffer of size 4096")),
                      OutOfMemoryError)


def test_cuda_running_out_of_memory_through_pytorch_or_tensorrt_is_out_of_memory():
    torch = pytest.importorskip("torch")
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                                  "7.44 GiB of which 1.02 GiB is free.")
    assert str(out_of_memory(cuda, "exporting")).startswith(
        "ran out of memory exporting (CUDA out of memory. Tried to allocate 2.00 GiB."), out_of_memory(cuda)
    # recognised as the allocator's error class whatever its words
    assert isinstance(out_of_memory(torch.OutOfMemoryError("allocator refused")), OutOfMemoryError)
    trt = RuntimeError("[defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime (out of memory)")
    assert isinstance(out_of_memory(trt), OutOfMemoryError)


# a thread that cannot start (pthread_create's EAGAIN, in a library's words) with and without a memory cap
_NO_THREAD = """
from alignvar_edge.errors import out_of_memory
print(out_of_memory(RuntimeError("pthread_create failed: Resource temporarily unavailable")) is not None)
"""


def _thread_failure_is_out_of_memory(address_space: str) -> str:
    """What `_NO_THREAD` prints under `prlimit --as=address_space` (soft:hard, as prlimit takes it)."""
    r = subprocess.run([PRLIMIT or "prlimit", f"--as={address_space}", sys.executable, "-c", _NO_THREAD],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@needs_prlimit
def test_a_thread_that_cannot_start_under_an_address_space_limit_is_out_of_memory():
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    cap = 8 * 10**9 if hard == resource.RLIM_INFINITY else min(8 * 10**9, hard)   # a hard cap can only be lowered
    assert _thread_failure_is_out_of_memory(f"{cap}:") == "True\n"


@needs_prlimit
def test_a_thread_that_cannot_start_without_an_address_space_limit_is_not_out_of_memory():
    """Without a limit on address space it is a limit on processes or threads, which no memory cures."""
    if resource.getrlimit(resource.RLIMIT_AS)[1] != resource.RLIM_INFINITY:
        pytest.skip("this host's hard address-space limit is fixed (no CAP_SYS_RESOURCE), so no process here runs "
                    "without one")
    assert _thread_failure_is_out_of_memory("unlimited") == "False\n"


def test_a_json_result_of_a_run_out_of_memory_says_so(tmp_path):
    target = tmp_path / "result.json"
    with pytest.raises(MemoryError), no_stale_result(str(target), {"engine": "E"}):
        raise MemoryError()
    result = json.loads(target.read_text())
    assert result["result"] == "ERROR" and result["reason"].startswith("ran out of memory; close other programs")
