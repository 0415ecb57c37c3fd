"""Fixtures shared by the test modules (pytest finds them here; no imports needed)."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import pytest
import torch
from _runtime_fixtures import RUN_TEMP, cache_root, export_dir, sharp_model

# Under `pytest -n` every worker is one of several processes sharing the cores: one thread each, here
# and in the CLI subprocesses the tests start, or PyTorch's spinning threads stall the other workers.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


# The files that take minutes on two cores, heaviest first (measured: `--durations=0`). Under
# `--dist loadfile` a worker takes whole files and the last one it takes decides when the run ends;
# xdist's own order (most tests first, `--no-loadscope-reorder` in the Makefile turns it off) started
# these last, so one worker ran the quick starts for minutes while the other sat idle.
SLOW_FILES = ("test_runtimes.py", "test_runtimes_coreml.py", "test_docs_quick.py", "test_upstream_parity.py",
              "test_quantize.py", "test_openvino_half.py", "test_export.py", "test_deploy.py", "test_pruning.py",
              "test_train.py", "test_export_bundled.py", "test_hardening.py", "test_bench.py", "test_types.py")


def pytest_configure(config: pytest.Config) -> None:
    """The reference VARSR VQ-VAE checkpoint the parity tests import (8.9 MB of seeded weights) is
    drawn again from its recorded layout and hash, not kept in the repository
    (scripts/varsr_test_vae.py; every xdist worker may write it, atomically, the same bytes).
    Ctrl-C is Python's default: a suite started in the background of a script (`nohup make test &`)
    inherits SIGINT ignored, and the tests of what a verb does on Ctrl-C saw nothing arrive."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    vae = Path(__file__).parent / "data" / "upstream" / "varsr" / "vae.pth"
    if not vae.is_file():
        import importlib.util
        script = Path(__file__).parent.parent / "scripts" / "varsr_test_vae.py"
        spec = importlib.util.spec_from_file_location("varsr_test_vae", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.write_vae(vae)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """SLOW_FILES first, in that order; the other files, and every file's own tests, keep theirs."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def run_temp(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's base temporary folder, where `cache_root` keeps exports when pytest's cache plugin
    is off; an xdist worker's is a folder of the run's, so the workers share theirs."""
    base = tmp_path_factory.getbasetemp()
    pytestconfig.stash[RUN_TEMP] = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return pytestconfig.stash[RUN_TEMP]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One PyTorch thread for a module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`):
    on two cores shared with other jobs, PyTorch's spinning threads slowed eager runs ~20x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def varsr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference VARSR checkpoints (tests/data/upstream/varsr, written by upstream's classes)
    imported with `alignvar-edge import varsr`."""
    from alignvar_edge.cli import main as cli
    varsr = Path(__file__).parent / "data" / "upstream" / "varsr"
    out = tmp_path_factory.mktemp("import") / "varsr"
    assert cli(["import", "varsr", "--var", str(varsr / "var.pth"), "--vae", str(varsr / "vae.pth"),
                "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def micro_export(pytestconfig: pytest.Config) -> Path:
    """The sharpened `micro` model's single-graph ONNX export (cached on disk between runs)."""
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`small_disk(size="3M", read_only=False)`: a file system of its own (tmpfs) under tmp_path, for
    what a full or read-only disk does to a verb; skipped where mounting is not allowed (not root).
    A user namespace cannot stand in: the verbs run in this process, and unshare(CLONE_NEWUSER)
    refuses a process with threads (PyTorch's) with EINVAL."""
    mounts: list[Path] = []

    def mount(size: str = "3M", read_only: bool = False) -> Path:
        mnt = tmp_path / f"disk{len(mounts)}"
        mnt.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        _mount_or_skip(["-t", "tmpfs", "-o", opts, "tmpfs"], mnt, "a small tmpfs",
                       "what a full or read-only disk does")
        mounts.append(mnt)
        return mnt
    try:
        yield mount
    finally:
        for mnt in mounts:
            subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture()
def second_name(tmp_path: Path) -> Iterator[Callable[[Path, str], Path]]:
    """`second_name(folder, name)`: the existing `folder` also reached as tmp_path/name (a bind
    mount), as `photos` reaches `Photos` on a case-insensitive disk; skipped where mounting is not
    allowed (not root)."""
    mounts: list[Path] = []

    def bind(folder: Path, name: str) -> Path:
        alias = tmp_path / name
        alias.mkdir()
        _mount_or_skip(["--bind", str(folder)], alias, "a folder (--bind)", "a folder with two names")
        mounts.append(alias)
        return alias
    try:
        yield bind
    finally:
        for alias in reversed(mounts):
            subprocess.run(["umount", str(alias)], check=False)


def _mount_or_skip(args: list[str], at: Path, what: str, untested: str) -> None:
    """`mount ARGS AT`, or skip the test where mounting is not allowed (not root), saying what it
    could not mount and what is therefore not tested."""
    r = subprocess.run(["mount", *args, str(at)], capture_output=True, text=True)
    if r.returncode:
        said = r.stderr.strip().splitlines()[0] if r.stderr.strip() else f"exit status {r.returncode}"
        pytest.skip(f"cannot mount {what} here ({said}), so {untested} is not tested: run this test as root "
                    "with CAP_SYS_ADMIN")


@pytest.fixture
def sigint_after_moving(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """`sigint_after_moving(path)`: from then on, a real SIGINT is sent right after `path` is renamed
    away by os.replace (between the two renames of a replace); Python's own SIGINT handler is
    the suite's (`pytest_configure`)."""
    real = os.replace

    def moving(path: Path) -> None:
        def replace(src: Any, dst: Any) -> None:
            real(src, dst)
            if Path(src) == path:
                os.kill(os.getpid(), signal.SIGINT)
        monkeypatch.setattr(os, "replace", replace)
    yield moving
    monkeypatch.undo()
