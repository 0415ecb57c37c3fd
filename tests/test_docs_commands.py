"""Every `alignvar-edge` command line in the README and docs/ takes verbs, flags and values the CLI
knows, so a renamed or dropped option cannot leave a doc telling users to type what fails. (What
the quick starts do is run end to end by tests/test_docs_quick.py.)"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from alignvar_edge.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a line showing a choice or an elided part is a template, not a command to type
TEMPLATE = re.compile(r"\[|\.\.\.|…|\||<[A-Za-z]")


def doc_commands(doc: Path) -> list[str]:
    """The `alignvar-edge` command lines of the doc's code blocks, continuation lines joined and
    comments dropped, templates left out."""
    out = []
    for block in re.findall(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", doc.read_text(), flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("alignvar-edge "):
                command = line.split(" #")[0].strip()
                # a line of output (`doctor`'s banner: "alignvar-edge 0.1.0 on ...") is no command
                if re.fullmatch(r"[a-z][a-z-]*|-\S*", command.split()[1]) and not TEMPLATE.search(command):
                    out.append(command)
    return out


def test_the_docs_hold_enough_commands_to_check():
    assert sum(len(doc_commands(d)) for d in DOCS) >= 60


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_command_in_the_doc_parses(doc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    wrong = []
    for command in doc_commands(doc):
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            wrong.append(f"{command}\n    {capsys.readouterr().err.strip().splitlines()[-1]}")
    assert not wrong, "\n".join(wrong)


def test_no_documented_train_command_warms_up_for_all_its_steps() -> None:
    """README's `train decoder ... --steps 100` took the default --warmup 100: the tool's own warning
    that the learning rate never reaches --lr, on a command the docs give."""
    parser = build_parser()
    trains = [(d.name, c) for d in DOCS for c in doc_commands(d) if c.split()[1] == "train"]
    assert len(trains) >= 4
    for doc, command in trains:
        args = parser.parse_args(shlex.split(command)[1:])
        assert args.warmup < args.steps, f"{doc}: {command}"


# names the docs cite that belong to other tools (OpenVINO's runtime-info keys)
FOREIGN_NAMES = {"disable_fp16_compression", "precise_0"}
# keys of older reports that the docs name so a reader can tell such a report apart
FORMER_NAMES = {"mean_seam_ratio_vs_hr", "seam_ratio_vs_hr"}


def test_every_name_the_docs_cite_exists() -> None:
    """A `snake_case` name in the docs (a function, test or option the reader may look up) is
    defined somewhere in the project, so a renamed helper cannot leave a doc citing a ghost."""
    sources = "\n".join(p.read_text() for folder in ("alignvar_edge", "tests", "scripts")
                        for p in sorted((ROOT / folder).rglob("*.py")))
    defined = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", sources))
    cited = {(doc.name, name) for doc in DOCS for name in re.findall(r"`([a-z][a-z0-9]*_[a-z0-9_]+)`", doc.read_text())}
    ghosts = sorted(f"{doc}: {name}" for doc, name in cited if name not in defined | FOREIGN_NAMES | FORMER_NAMES)
    assert not ghosts, ghosts
