"""Long steps say they are running: a stage writes a start and an end line to stderr in a log, and
never touches stdout."""
from __future__ import annotations

import pytest

from alignvar_edge.progress import stage


def test_a_stage_in_a_log_writes_start_and_end_on_stderr(capsys):
    with stage("building the thing"):
        pass
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0] == "building the thing ..." and lines[-1].startswith("building the thing: done in ")


def test_a_failing_stage_says_so_and_the_error_passes_through(capsys):
    with pytest.raises(ValueError, match="boom"):
        with stage("converting"):
            raise ValueError("boom")
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("converting: failed after ")


def test_build_shows_its_stage(micro_export_for_progress, tmp_path, capsys):
    from alignvar_edge.cli import main
    assert main(["build", str(micro_export_for_progress), "--target", "onnxruntime", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "building the onnxruntime fp32 engine: done in" in err


@pytest.fixture(scope="module")
def micro_export_for_progress(pytestconfig):
    from _runtime_fixtures import cache_root, export_dir, sharp_model
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))
