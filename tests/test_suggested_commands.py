"""Commands that messages suggest (`alignvar-edge selftest --engine DIR`, `... inspect DIR`, ...) paste
and run as printed, whatever the folder's name: a space and an accent ('eng torch ü'), a quote, or a
byte of another encoding is one word of the command (`name_text.shell_word`). Such names were printed
bare (`alignvar-edge selftest --engine eng torch ü`), which a shell reads as three words."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.cli import main
from alignvar_edge.model.bundled import PRETRAINED_DIR
from alignvar_edge.name_text import shell_word

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASH = shutil.which("bash")
ROOT = Path(__file__).resolve().parent.parent
# the command-line program as a shell in this checkout runs it
PROGRAM = f"{shlex.quote(sys.executable)} -m alignvar_edge"


def _suggested(said: str, verb: str) -> str:
    """The command `alignvar-edge VERB ...` that `said` suggests: in backticks, else to the end of its line."""
    found = (re.search(rf"`(alignvar-edge {verb} [^`]*)`", said)
             or re.search(rf"(alignvar-edge {verb} .*)$", said, re.M))
    assert found, said
    return found.group(1)


def _shell_words(command: str) -> list[bytes]:
    """The arguments bash gives the program of `command`, as the bytes the program receives."""
    if BASH is None:
        pytest.skip("bash is not installed: no shell to read the command")
    run = subprocess.run([BASH, "-c", "printf '%s\\0' " + command.split(" ", 1)[1]], capture_output=True, check=True)
    return run.stdout.split(b"\0")[:-1]


def _run_in_shell(command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`command` pasted into bash, its program this checkout's alignvar-edge."""
    if BASH is None:
        pytest.skip("bash is not installed: no shell to run the command")
    return subprocess.run([BASH, "-c", PROGRAM + command.removeprefix("alignvar-edge")], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture()
def spaced(tmp_path: Path) -> Path:
    """A folder whose name has a space and an accent, holding a checkpoint ('ck mein ü': the bundled one)."""
    folder = tmp_path / "Fotos mein ü"
    shutil.copytree(PRETRAINED_DIR / "alignvar-tiny", folder / "ck mein ü")
    return folder


def _said(capsys: pytest.CaptureFixture[str], argv: list[str], rc: int) -> str:
    """What the verb `argv` printed and said, its exit status checked."""
    assert main(argv) == rc, capsys.readouterr()
    out, err = capsys.readouterr()
    return out + err


# each case: what a verb said about a folder under `spaced`, the verb of the command it suggests, the
# folder that command names, and whether to run the command here (a few seconds) or only read it
Case = Callable[[Path, Path, pytest.CaptureFixture[str]], tuple[str, str, Path, bool]]


def _build_torch(folder: Path, export: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, bool]:
    eng = folder / "eng torch ü"
    said = _said(capsys, ["build", str(folder / "ck mein ü"), "--target", "torch", "--out", str(eng)], 0)
    return said, "selftest --engine", eng, True


def _quantize(folder: Path, export: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, bool]:
    out = folder / "art fp16 ü"
    said = _said(capsys, ["quantize", str(export), "--precision", "fp16", "--target", "onnxruntime",
                          "--out", str(out)], 0)
    return said, "inspect", out, True


def _inspect_a_checkpoint(folder: Path, export: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, bool]:
    return _said(capsys, ["inspect", str(folder / "ck mein ü")], 2), "info", folder / "ck mein ü", True


def _upscale_a_checkpoint_on_onnxruntime(folder: Path, export: Path,
                                         capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, bool]:
    photo = folder / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(photo)
    said = _said(capsys, ["upscale", str(photo), str(folder / "o.png"), "--engine", str(folder / "ck mein ü"),
                          "--backend", "onnxruntime"], 2)
    return said, "export", folder / "ck mein ü", False            # an export takes a minute


def _int8_build_of_the_fp32_export(folder: Path, export: Path,
                                   capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, bool]:
    said = _said(capsys, ["build", str(export), "--target", "onnxruntime", "--precision", "int8"], 2)
    return said, "quantize", export, False                        # calibrating takes a while


def _selftest_of_an_export(folder: Path, export: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, bool]:
    return _said(capsys, ["selftest", "--engine", str(export)], 2), "build", export, True


def _bench_of_a_report(folder: Path, export: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, bool]:
    report = folder / "Bericht ü.json"
    report.write_text("{}")
    said = _said(capsys, ["bench", str(report), "--out", str(folder / "b.json")], 2)
    return said, "bench merge", report, False                     # `...` stands for the other reports


CASES: list[Case] = [_build_torch, _quantize, _inspect_a_checkpoint, _upscale_a_checkpoint_on_onnxruntime,
                     _int8_build_of_the_fp32_export, _selftest_of_an_export, _bench_of_a_report]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.lstrip("_") for c in CASES])
def test_a_suggested_command_takes_a_folder_with_a_space_and_an_accent_as_one_word(
        case: Case, spaced: Path, micro_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = Path(shutil.copytree(micro_export, spaced / "exp mein ü"))
    said, verb, path, runs = case(spaced, export, capsys)
    command = _suggested(said, verb)
    words = shlex.split(command)
    assert str(path) in words, command
    assert os.fsencode(path) in _shell_words(command)
    if runs:
        assert main(words[1:]) == 0, capsys.readouterr()


def test_a_folder_named_in_another_encoding_is_a_word_the_shell_turns_back_into_its_bytes(
        tmp_path: Path, micro_export: Path) -> None:
    """A Latin-1 byte (Python's surrogate escape '\\udce9') was printed as the raw byte, which a UTF-8
    terminal shows as U+FFFD and a --json reader as '\\xe9': neither pastes back to the folder."""
    export = os.path.join(os.fsencode(tmp_path), b"caf\xe9 exp")
    try:
        shutil.copytree(micro_export, os.fsdecode(export))
    except OSError as e:            # APFS, for one, refuses a name that is not UTF-8
        pytest.skip(f"this file system refuses the folder name {export!r}: {e}")
    said = _run_in_shell("alignvar-edge selftest --engine " + shlex.quote(os.fsdecode(export)))
    assert said.returncode == 2, said.stderr[-2000:]
    command = _suggested(said.stderr.decode("utf-8", "replace"), "build")
    assert command.isascii() and command.isprintable(), command       # what every console shows
    assert _shell_words(command) == [b"build", export, b"--target", b"onnxruntime"]
    run = _run_in_shell(command)
    assert run.returncode == 0, run.stderr[-2000:]
    assert os.path.isfile(export + b"-onnxruntime-fp32/manifest.json")


def test_an_accent_the_console_cannot_show_is_a_word_of_its_bytes_not_a_question_mark(spaced: Path) -> None:
    """Under an ASCII console (PYTHONIOENCODING=ascii, LC_ALL=C without UTF-8 mode) 'ü' was
    written '?', and the pasted command named another folder."""
    ck = spaced / "ck mein ü"
    run = _run_in_shell(f"alignvar-edge inspect {shlex.quote(str(ck))}", env={"PYTHONIOENCODING": "ascii"})
    assert run.returncode == 2
    command = _suggested(run.stderr.decode("ascii"), "info")
    assert _shell_words(command) == [b"info", os.fsencode(ck)]
    assert _run_in_shell(command, env={"PYTHONIOENCODING": "ascii"}).returncode == 0


@pytest.mark.parametrize("name", ["art/int8", "/tmp/exp-1.2_x/model@v2", "eng torch ü", "it's here", "two\nlines",
                                  "tab\there", "\\back", "-"])
def test_a_shell_word_reads_back_as_the_path(name: str) -> None:
    word = shell_word(name)
    assert "\n" not in word and "\t" not in word                         # a message stays one line
    assert _shell_words(f"x {word}") == [os.fsencode(name)]
    if not word.startswith("$'"):
        assert shlex.split(word) == [name]


def test_a_path_that_needs_no_quotes_is_printed_as_it_is() -> None:
    """What the docs and the tests show of ordinary paths stays as it was."""
    assert shell_word("art/int8") == "art/int8" and shell_word(Path("/tmp/exp-1.2_x")) == "/tmp/exp-1.2_x"
