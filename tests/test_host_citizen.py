"""The library inside a host application: it leaves the process's shared state alone.

A host embedding alignvar-edge runs other threads beside our calls, so nothing we do may change
what those threads see, even for a moment: the umask, the logging levels and handlers, torch's
random generator, the modules torch imports.
"""
from __future__ import annotations

import logging
import os
import stat
import types

import numpy as np
import pytest

from alignvar_edge import fsmodes
from alignvar_edge.images import save_image
from alignvar_edge.muted import loggers_at


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _umask_untouchable(monkeypatch) -> None:
    """`os.umask` can only be read by setting it: any call during a save is a moment in which the
    host's other threads create world-writable files."""
    def refused(mask: int) -> int:
        raise AssertionError(f"os.umask({mask:#o}) called: the process umask changed under the host")
    monkeypatch.setattr(os, "umask", refused)


def test_saving_an_image_reads_the_umask_without_setting_it(tmp_path, umask_027, monkeypatch) -> None:
    _umask_untouchable(monkeypatch)
    out = save_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


def test_a_published_folder_follows_the_umask_without_setting_it(tmp_path, umask_027, monkeypatch) -> None:
    folder = tmp_path / "artifact"
    folder.mkdir(mode=0o700)
    (folder / "data.bin").write_bytes(b"x")
    os.chmod(folder / "data.bin", 0o600)
    _umask_untouchable(monkeypatch)
    fsmodes.publish_mode(folder)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(folder / "data.bin").st_mode) == 0o640


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002, 0o000], ids=oct)
def test_the_umask_is_read_right_with_and_without_proc(mask, monkeypatch) -> None:
    old = os.umask(mask)
    try:
        assert fsmodes.umask() == mask
        monkeypatch.setattr(fsmodes, "_umask_from_proc", lambda: None)       # macOS: no /proc
        _umask_untouchable(monkeypatch)
        assert fsmodes.umask() == mask
    finally:
        monkeypatch.undo()
        os.umask(old)


def test_without_proc_or_a_usable_temporary_folder_the_umask_is_still_read(tmp_path, monkeypatch) -> None:
    """macOS with its $TMPDIR gone: saving an image is not failed by the probe's folder, which is
    not the output's; the umask is then read the one way left."""
    import tempfile

    monkeypatch.setattr(fsmodes, "_umask_from_proc", lambda: None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    old = os.umask(0o027)
    try:
        save_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.png").st_mode) == 0o640


# ---- logging: a library block quietens its tool's own loggers, and puts back what it found

class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def host_log():
    """The host's logger `host.app` at INFO with its own handler, and the root logger as the host set it."""
    kept, app, root = _Kept(), logging.getLogger("host.app"), logging.getLogger()
    app.addHandler(kept)
    app.setLevel(logging.INFO)
    root_level = root.level
    try:
        yield app, kept
    finally:
        app.removeHandler(kept)
        app.setLevel(logging.NOTSET)
        root.setLevel(root_level)


def test_a_quieted_tool_logger_gets_its_level_back_and_host_records_pass(host_log) -> None:
    app, kept = host_log
    tool = logging.getLogger("some.tool")
    tool.setLevel(logging.DEBUG)
    root_level = logging.getLogger().level
    with loggers_at(("some.tool",), logging.ERROR):
        assert not tool.isEnabledFor(logging.WARNING)
        assert logging.getLogger().level == root_level
        app.warning("disk almost full")
    assert tool.level == logging.DEBUG
    assert kept.messages == ["disk almost full"]


def test_a_level_set_on_the_tool_logger_during_the_block_is_kept() -> None:
    """By the host, or by the tool's own import (coremltools sets its k-means logger to INFO)."""
    tool = logging.getLogger("other.tool")
    tool.setLevel(logging.NOTSET)
    with loggers_at(("other.tool",), logging.ERROR):
        tool.setLevel(logging.INFO)
    assert tool.level == logging.INFO


def test_the_root_logger_is_never_quieted() -> None:
    with pytest.raises(ValueError, match="root logger"):
        with loggers_at(("",), logging.ERROR):
            pass


def test_a_core_ml_build_leaves_other_loggers_talking(host_log) -> None:
    """`logging.disable` lost every other thread's warnings for the whole conversion."""
    from alignvar_edge.runtimes.coreml.ct import quiet

    app, kept = host_log
    before = logging.getLogger("coremltools").level
    with quiet():
        assert not logging.getLogger("coremltools.models.model").isEnabledFor(logging.WARNING)
        assert not logging.getLogger("coremltools.optimize.torch._utils.k_means").isEnabledFor(logging.INFO)
        app.warning("disk almost full")
    assert kept.messages == ["disk almost full"]
    assert logging.root.manager.disable == logging.NOTSET
    assert logging.getLogger("coremltools").level == before


@pytest.mark.parametrize("host_level", [logging.ERROR, logging.WARNING, logging.DEBUG])
def test_an_openvino_int8_build_puts_back_the_nncf_level_the_host_set(host_level) -> None:
    pytest.importorskip("nncf", reason="NNCF (the openvino-int8 extra) is not installed")
    from alignvar_edge.runtimes.openvino.nncf import _quiet_nncf

    nncf_log = logging.getLogger("nncf")
    before = nncf_log.level
    nncf_log.setLevel(host_level)
    try:
        with _quiet_nncf():
            assert not nncf_log.isEnabledFor(logging.WARNING)
        assert nncf_log.level == host_level          # nncf.set_log_level(INFO) left INFO
    finally:
        nncf_log.setLevel(before)


def test_the_onnxruntime_pre_processing_leaves_the_root_logger_alone(tmp_path, host_log, monkeypatch) -> None:
    """Its root level went to ERROR around the call: the host's records below that were lost."""
    from alignvar_edge.quantize import int8

    app, kept = host_log
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    seen: dict[str, object] = {}

    def pre_process(src, dst, **kw) -> None:
        seen["root level"] = root.level
        app.warning("disk almost full")
        tool = logging.getLogger("onnxruntime.quantization.shape_inference")
        seen["its failure shown"] = tool.isEnabledFor(logging.ERROR)

    monkeypatch.setattr(int8, "ortq", types.SimpleNamespace(quant_pre_process=pre_process))
    (tmp_path / "model.onnx").write_bytes(b"")
    int8._pre_process(tmp_path / "model.onnx", tmp_path / "pre.onnx", False, 0)
    assert seen == {"root level": logging.INFO, "its failure shown": False}
    assert kept.messages == ["disk almost full"]
    assert root.level == logging.INFO


# ---- loading a checkpoint: no compiler stack, no random numbers drawn

def test_loading_the_bundled_model_does_not_import_torchs_compiler_stack(tmp_path) -> None:
    """A meta-device build ran `normal_` and `log` through torch._refs, which imported torch._dynamo
    and _inductor (seconds, tens of MB) and set TORCHINDUCTOR_CACHE_DIR."""
    import subprocess
    import sys

    probe = ("import os, sys\n"
             "from alignvar_edge import AlignVAR, load\n"
             "AlignVAR.from_pretrained('alignvar-tiny')\n"
             "load('alignvar-tiny')\n"
             "print(sorted(m for m in ('torch._dynamo', 'torch._inductor') if m in sys.modules),"
             " os.environ.get('TORCHINDUCTOR_CACHE_DIR'))\n")
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split("\n")[-2] == "[] None", out.stderr[-2000:]
    assert not list(tmp_path.glob("torchinductor_*"))


def test_loading_a_model_draws_no_random_numbers() -> None:
    """The host's next random numbers do not depend on whether it loaded a model; and the weights
    are the checkpoint's, whatever the generator held."""
    import torch

    from alignvar_edge import AlignVAR

    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = AlignVAR.from_pretrained("alignvar-tiny")
    assert torch.equal(torch.rand(4), expected)
    torch.manual_seed(7)
    again = AlignVAR.from_pretrained("alignvar-tiny")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_a_config_larger_than_its_weights_is_refused_before_its_model_is_written(tmp_path) -> None:
    """A config.json that says depth 16, width 1024 over the bundled model's weights is refused at
    the header, before the model it describes (800 MB of float32) is written: the depth scaling
    of the residual projections wrote a third of every block first (about 370 MB here; a config
    at the bounds would run out of memory before its error)."""
    import json
    import shutil
    import subprocess
    import sys

    from alignvar_edge.model.checkpoint import resolve_checkpoint_dir

    ckpt = tmp_path / "big"
    shutil.copytree(resolve_checkpoint_dir("alignvar-tiny"), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config.update(depth=16, width=1024, heads=16)
    (ckpt / "config.json").write_text(json.dumps(config))
    probe = ("import resource, sys, torch\n"
             "from alignvar_edge.errors import CheckpointError\n"
             "from alignvar_edge.model.alignvar import load_pretrained\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "try:\n"
             "    load_pretrained(sys.argv[1])\n"
             "except CheckpointError:\n"
             "    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(ckpt)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    assert out.stdout.strip(), f"the load was not refused: {out.stderr[-2000:]}"
    assert int(out.stdout) < 100, f"{out.stdout.strip()} MB written before the refusal"


def test_a_seeded_random_model_leaves_the_hosts_generator_where_it_was() -> None:
    """`export --preset`'s seeded weights come from a generator of their own: the host's next random
    numbers are those it would have drawn, and the weights are the seed's, whatever the host held."""
    import torch

    from alignvar_edge.export.random_model import random_model

    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = random_model("micro", seed=5)
    assert torch.equal(torch.rand(4), expected)
    torch.manual_seed(7)
    again = random_model("micro", seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_a_model_loaded_unfilled_equals_the_one_it_was_saved_from(tmp_path) -> None:
    """Built without random weights, then filled: every weight and every buffer (the masks, rope
    tables and SCA kernels computed at build, which no file holds) is the saved model's."""
    import torch

    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.model.alignvar import load_pretrained

    saved = random_model("micro", seed=3)
    saved.save_pretrained(tmp_path / "ckpt")
    loaded = load_pretrained(tmp_path / "ckpt")
    ours, theirs = dict(saved.named_buffers()), dict(loaded.named_buffers())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert all(torch.equal(a, b) for a, b in zip(saved.parameters(), loaded.parameters()))
