"""The package type-checks: mypy over alignvar_edge with the project's settings (pyproject.toml),
against the TensorRT stubs `make venv` installs, so a typing slip fails CI, not a user's device."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_type_checks(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra (`make venv` installs it)")
    # from the repository root: pyproject's mypy_path (the stubs) is relative to the working directory
    run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "alignvar_edge"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
