"""mypy run on a user's code outside the checkout, as it sees alignvar_edge installed: through a
path .pth in site-packages, which is what `make venv`'s editable install writes in setuptools'
compat mode, so the package's py.typed marker and its public annotations are what count (errors
inside the package itself are not the user's and are not reported)."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mypy_as_a_user(tmp_path: Path, files: list[Path], *flags: str) -> subprocess.CompletedProcess[str]:
    """mypy over `files` (one run, its cache under `tmp_path`), from `tmp_path`: no project config."""
    pytest.importorskip("mypy", reason="mypy is in the dev extra (`make venv` installs it)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
    # the package, and numpy, Pillow and torch (their own types) from the environment running this test
    Path(site.stdout.strip(), "alignvar_edge.pth").write_text(f"{ROOT}\n{sysconfig.get_paths()['purelib']}\n")
    # the TensorRT stubs, as the project's own check reads them (pyproject's mypy_path)
    env = {**os.environ, "MYPYPATH": str(ROOT / ".venv" / "typing-stubs")}
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--python-executable",
                           str(venv / "bin" / "python"), *flags, *map(str, files)],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
