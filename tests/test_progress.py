"""Long steps say they are running: a stage writes a start and an end line to stderr in a log, and
never touches stdout."""
from __future__ import annotations

import pytest

from alignvar_edge.progress import stage


def test_a_stage_in_a_log_says_when_it_starts_if_long_and_when_it_ends(capsys, monkeypatch):
    import alignvar_edge.progress as progress
    with stage("a quick step"):
        pass
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [err.strip()] and err.startswith("a quick step: done in ")
    monkeypatch.setattr(progress, "START_AFTER_S", 0.01)
    with stage("a long step"):
        import time
        time.sleep(0.2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "a long step ..." and lines[-1].startswith("a long step: done in ")


def test_a_failing_stage_adds_no_line_to_the_error(capsys):
    with pytest.raises(ValueError, match="boom"):
        with stage("converting"):
            raise ValueError("boom")
    assert capsys.readouterr().err == ""


def test_build_shows_its_stage(micro_export_for_progress, tmp_path, capsys):
    from alignvar_edge.cli import main
    assert main(["build", str(micro_export_for_progress), "--target", "onnxruntime", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "building the onnxruntime fp32 engine: done in" in err


@pytest.fixture(scope="module")
def micro_export_for_progress(pytestconfig):
    from _runtime_fixtures import cache_root, export_dir, sharp_model
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))
