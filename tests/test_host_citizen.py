"""The library inside a host application: it leaves the process's shared state alone.

A host embedding alignvar-edge runs other threads beside our calls, so nothing we do may change
what those threads see, even for a moment: the umask, the logging levels and handlers, torch's
random generator, the modules torch imports.
"""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from alignvar_edge import fsmodes
from alignvar_edge.images import save_image


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
