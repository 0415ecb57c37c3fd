"""Every command of the docs' "Quick start" sections runs as written, in reading order, in one
fresh folder (each quick start builds on the ones it names). The README's quick start is `make
demo` / `make test`: CI itself runs the latter, and tests/test_demo.py the demo."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from alignvar_edge.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = Path(__file__).resolve().parent.parent / "docs"
# the order a reader follows them (later ones use what earlier ones wrote)
ORDER = ("export.md", "runtimes.md", "quantization.md", "benchmarks.md", "training.md")


def quick_commands(doc: Path) -> list[str]:
    """The alignvar-edge command lines in the plain ``` blocks of the doc's "## Quick start"."""
    text = doc.read_text()
    m = re.search(r"^## Quick start\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    if not m:
        return []
    blocks = re.findall(r"^```\n(.*?)^```", m.group(1), flags=re.S | re.M)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("alignvar-edge ")]


def test_every_doc_with_a_quick_start_is_run_here():
    have = {p.name for p in DOCS.glob("*.md") if quick_commands(p)}
    assert have == set(ORDER)


def test_quick_starts_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(tmp_path / "cache"))
    ran = 0
    for name in ORDER:
        for line in quick_commands(DOCS / name):
            argv = shlex.split(line)[1:]
            rc = main(argv)
            err = capsys.readouterr().err
            assert rc == 0, f"{name}: `{line}` exited {rc}: {err.strip()[-400:]}"
            ran += 1
    assert ran >= 12
    assert (tmp_path / "out" / "demo" / "lr-x4.png").is_file() and (tmp_path / "out" / "bench.json").is_file()
