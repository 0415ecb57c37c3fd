"""Engines and os.fork(): a service that loads an engine and then forks its workers (gunicorn
--preload, a fork pool). Each case runs in a script of its own whose child is forked with os.fork();
the script gives up on a child that has not exited after CHILD_LIMIT seconds and kills it, so a hang
fails the test instead of hanging the suite.

Measured (ONNX Runtime 1.32, PyTorch 2.13 on CPU): a child of a process holding an ONNX Runtime
session with its own thread pool hung for ever at its ordinary exit, freeing that session; a
torch engine runs in the child and exits, on one thread: the first call of a child whose parent had
run PyTorch on two threads hung, until the engine's after-fork hook set one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _fork_wait import WAIT_FOR_CHILD
from alignvar_edge.cpuinfo import usable_cores

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

CHILD_LIMIT = 60        # seconds: a child that has done its work exits in about one

# the script: python fork_case.py BACKEND ENGINE CASE; prints the child's lines, then "child exit N"
# or "child hung"
_SCRIPT = """
import os, sys, threading, time
import numpy as np
from alignvar_edge import load
from alignvar_edge.errors import EngineClosedError

backend, path, case = sys.argv[1:]
# ONNX Runtime's hang needs its own thread pool: more than one thread (`forked` skips the "exit" case
# where this process may use one core)
from alignvar_edge.cpuinfo import usable_cores
opts = {"onnxruntime": {"threads": min(2, usable_cores())}, "openvino": {"threads": 1},
        "torch": {"threads": 1}}[backend]
if case == "parent_ran":         # PyTorch's own threads (OMP_NUM_THREADS), not the engine's
    opts = {}
IMAGE = np.zeros((8, 8, 3), np.uint8)
engine = load(path, backend=backend, **opts)          # loaded, not run: ONNX Runtime's hang
if case == "parent_ran":
    print("parent first:", engine.upscale(IMAGE).shape, flush=True)


def call_in_flight():
    # another thread inside an engine call (holding the engine's lock) while the process forks
    inside, done = threading.Event(), threading.Event()
    run_tiles = engine._infer

    def held(feeds):
        inside.set()
        done.wait()
        return run_tiles(feeds)
    engine._infer = held
    worker = threading.Thread(target=engine.run, args=(np.zeros((1, 3, engine.tile_size, engine.tile_size),
                                                                 np.float32),))
    worker.start()
    inside.wait()
    engine._infer = run_tiles        # the child's own calls run as usual
    return done, worker


if case == "in_flight":
    done, worker = call_in_flight()
pid = os.fork()
if pid == 0:
    if case in ("inherited", "in_flight", "parent_ran"):
        try:
            print("child:", engine.upscale(IMAGE).shape, flush=True)
        except EngineClosedError as e:
            print("child:", e, flush=True)
    if case == "own":
        with load(path, backend=backend, **opts) as own:
            print("child:", own.upscale(IMAGE).shape, flush=True)
    sys.exit(0)                      # a worker's ordinary exit
if case == "in_flight":
    done.set()
    worker.join()
limit = float(os.environ["CHILD_LIMIT"])
""" + WAIT_FOR_CHILD + """
print("parent:", engine.upscale(IMAGE).shape, flush=True)
"""

REFUSED = ("this {} engine was loaded before os.fork(), and {} engines cannot run in a forked child: load "
           "engines after forking, in each worker (a pool's initializer; gunicorn without --preload), or start "
           "workers with spawn or forkserver")


@pytest.fixture(scope="module")
def engines(micro_export: Path) -> dict[str, str]:
    return {"onnxruntime": str(micro_export), "openvino": str(micro_export), "torch": "alignvar-tiny"}


def forked(tmp_path: Path, engines: dict[str, str], backend: str, case: str, **env_vars: str) -> list[str]:
    """The lines the script prints for `case` on `backend`'s engine, with `env_vars` set; it must end cleanly."""
    if backend == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is not installed")
    if backend == "onnxruntime" and case == "exit" and usable_cores() < 2:
        # one thread has no pool of its own, whose hang this case is about: it would pass untested
        pytest.skip("ONNX Runtime's fork hang needs two threads; this process may use one core")
    script = tmp_path / "fork_case.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "CHILD_LIMIT": str(CHILD_LIMIT), **env_vars}
    run = subprocess.Popen([sys.executable, str(script), backend, engines[backend], case], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=CHILD_LIMIT + 240)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)           # the parent blocked with its child
        pytest.fail(f"the forking script hung: {run.communicate()[0]!r}")
    assert run.returncode == 0, stderr
    return stdout.splitlines()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torch"])
def test_a_child_forked_after_an_engine_was_loaded_exits(tmp_path, engines, backend):
    # ONNX Runtime: the child hung for ever in sys.exit(0), in the session's destructor
    assert forked(tmp_path, engines, backend, "exit") == ["child exit 0", "parent: (32, 32, 3)"]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_an_inherited_engine_of_a_backend_that_does_not_survive_a_fork_is_refused_in_one_line(
        tmp_path, engines, backend):
    assert forked(tmp_path, engines, backend, "inherited") == [
        "child: " + REFUSED.format(backend, backend), "child exit 0", "parent: (32, 32, 3)"]


def test_an_inherited_torch_engine_runs_in_the_child(tmp_path, engines):
    assert forked(tmp_path, engines, "torch", "inherited") == [
        "child: (32, 32, 3)", "child exit 0", "parent: (32, 32, 3)"]


def test_a_torch_engine_the_parent_ran_on_several_threads_runs_in_the_child(tmp_path, engines):
    """Loaded with PyTorch's default threads (two, whatever the cores) and run before the fork: the
    child's first call hung for ever (PyTorch's OpenMP threads stayed in the parent)."""
    assert forked(tmp_path, engines, "torch", "parent_ran", OMP_NUM_THREADS="2") == [
        "parent first: (32, 32, 3)", "child: (32, 32, 3)", "child exit 0", "parent: (32, 32, 3)"]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torch"])
def test_a_childs_own_engine_runs_and_the_child_exits(tmp_path, engines, backend):
    assert forked(tmp_path, engines, backend, "own") == ["child: (32, 32, 3)", "child exit 0", "parent: (32, 32, 3)"]


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_a_call_in_flight_on_another_thread_at_the_fork_does_not_block_the_child(tmp_path, engines, backend):
    # the engine's lock, held by a thread the child does not have, was held there for ever
    said = "child: (32, 32, 3)" if backend == "torch" else "child: " + REFUSED.format(backend, backend)
    assert forked(tmp_path, engines, backend, "in_flight") == [said, "child exit 0", "parent: (32, 32, 3)"]
