"""Every `scripts/*.py` command line in the README's and docs' code blocks takes arguments its script
knows, so a renamed or dropped option cannot leave a doc telling users to type what fails. The
scripts run up to their argument parsing only: what they measure is timed in the docs, not here."""
from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT = re.compile(r"(?:^|\s)scripts/([a-z_]+\.py)(\s.*)?$")


def doc_script_commands() -> list[tuple[str, str, str]]:
    """(doc, script, argument string) of each script command in a code block, continuation lines
    joined, trailing comments dropped."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", doc.read_text(), flags=re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                m = SCRIPT.search(line.split(" #")[0].strip())
                if m:
                    out.append((doc.name, m.group(1), (m.group(2) or "").strip()))
    return out


class _Parsed(Exception):
    """Raised in place of the script's work once its arguments parsed."""


_PARSE = argparse.ArgumentParser.parse_args


def _parse_only(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> NoReturn:
    _PARSE(self, args, namespace)
    raise _Parsed


def test_the_docs_hold_script_commands_to_check():
    assert len({script for _, script, _ in doc_script_commands()}) >= 12


@pytest.mark.parametrize("doc,script,args", [pytest.param(*c, id=f"{c[0]}-{c[1]}-{i}")
                                              for i, c in enumerate(doc_script_commands())])
def test_every_script_command_in_the_docs_parses(doc: str, script: str, args: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "scripts" / script
    assert path.is_file(), f"{doc} runs scripts/{script}, which does not exist"
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", _parse_only)
    monkeypatch.setattr(sys, "argv", [str(path), *shlex.split(args)])
    monkeypatch.syspath_prepend(str(ROOT))
    with pytest.raises((_Parsed, SystemExit)) as raised:
        runpy.run_path(str(path), run_name="__main__")
    if raised.type is SystemExit:
        pytest.fail(f"{doc}: `scripts/{script} {args}` is refused by the script: "
                    f"{capsys.readouterr().err.strip().splitlines()[-1:]}")
