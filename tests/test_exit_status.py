"""The README's exit-status table is what the CLI does: the errors' exit codes, and the statuses
cli.py returns for interruptions and a reader that went away."""
from __future__ import annotations

import argparse
import inspect
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from alignvar_edge import cli, errors

README = Path(__file__).resolve().parent.parent / "README.md"


def _table() -> dict[int, str]:
    """status -> its row's text, from the table under '### Exit status'."""
    section = README.read_text(encoding="utf-8").split("### Exit status", 1)[1].split("\n### ", 1)[0]
    rows: dict[int, str] = {}
    for line in section.splitlines():
        cells = line.split(" | ")
        if line.startswith("| ") and re.fullmatch(r"\| [\d, ]+", cells[0]):
            for code in cells[0][2:].split(","):
                rows[int(code)] = line
    return rows


def test_the_table_lists_every_status_and_no_other():
    assert sorted(_table()) == [0, 1, 2, 3, 4, 128 + signal.SIGHUP, 128 + signal.SIGINT, 128 + signal.SIGPIPE,
                                128 + signal.SIGTERM]


def test_each_error_class_exits_with_the_status_its_row_names():
    """An error's row is the one naming it, or its nearest base class the table names."""
    rows = _table()
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.AlignVAREdgeError)]
    assert len(classes) >= 9
    for cls in classes:
        named = next(base for base in cls.__mro__ if any(f"`{base.__name__}`" in row for row in rows.values()))
        row_code = next(code for code, row in rows.items() if f"`{named.__name__}`" in row)
        assert cls.exit_code == row_code, (cls.__name__, named.__name__, row_code)


def test_interruptions_and_a_gone_reader_exit_as_the_table_says(capsys):
    rows = _table()
    for signals, says in (([signal.SIGINT], "Ctrl-C"), ([signal.SIGTERM], "SIGTERM"), ([signal.SIGHUP], "SIGHUP")):
        code = cli._interrupted(argparse.Namespace(verb="upscale"), signals)
        assert says in rows[code]
    assert "reader of stdout went away" in rows[cli._reader_gone()]


def test_bad_input_and_no_verb_exit_2_as_the_table_says(tmp_path, capsys):
    assert "bad input" in _table()[2]
    assert cli.main(["info", str(tmp_path / "nosuchdir")]) == 2
    assert cli.main(["info", "--no-such-flag"]) == 2
    assert cli.main([]) == 2


@pytest.mark.parametrize("argv, name", [
    (["upscale", "in.png", "{long}.jpg", "--threads", "1"], "{long}.jpg"),
    (["upscale", "in.png", "out/{long}/x.png", "--threads", "1"], "{long}"),
    (["export", "--preset", "micro", "--out", "{long}"], "{long}"),
    (["info", "--json", "{long}.json"], "{long}.json"),
])
def test_an_output_name_too_long_is_bad_input_with_its_fix(argv, name, tmp_path, monkeypatch, capsys):
    # it was the system failing (exit 1) with the OS's 'File name too long', after the export's work
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")         # 255 on ext4, XFS, tmpfs
    if name_max > 1024:
        pytest.skip(f"this file system takes names of {name_max} bytes: one longer would pass the path's own limit")
    long = "M" * (name_max + 1)
    argv, name = [arg.format(long=long) for arg in argv], name.format(long=long)
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save("in.png")
    capsys.readouterr()
    code = cli.main(argv)
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and "cannot be written (a folder that takes no files, a name longer than" in _table()[2]
    assert len(lines) == 1 and f"its name '{name}' is {len(name)} bytes, more than the {name_max} a file name can " \
        "have on this file system; choose a shorter name" in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["in.png"]



def test_a_report_prints_under_an_ascii_locale(tmp_path) -> None:
    """Under LC_ALL=C without Python's UTF-8 mode the console is ASCII: `bench merge` wrote its
    report, then raised UnicodeEncodeError on the table's '–' cells and exited 1; a file name's
    own bytes still come out as they are."""
    report = Path(__file__).resolve().parent.parent / "docs" / "results" / "epyc-zen5-2core" / "engines.json"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    out = subprocess.run([sys.executable, "-m", "alignvar_edge", "bench", "merge", str(report),
                          "--out", os.fsencode(tmp_path) + b"/m\xe9rged.json"], env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "–".encode() not in out.stdout and b"| - |" in out.stdout, out.stdout[:500]
    assert (tmp_path / os.fsdecode(b"m\xe9rged.json")).is_file()


def test_an_error_line_names_a_file_by_its_escaped_bytes_on_any_console(tmp_path) -> None:
    """stderr names a file's odd byte as the visible escape `--json` and the progress lines use
    (`no\\xff`: its '\\udcff' surrogate could not be written, a raw byte reached the terminal), the
    same on an ASCII console and on a UTF-16 one, which has no place for a lone byte (it lost
    sys.stderr and exited 1)."""
    missing = os.fsencode(tmp_path) + b"/no\xff"
    for env, encoding in (({"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}, "ascii"),
                          ({"PYTHONIOENCODING": "utf-16"}, "utf-16")):
        out = subprocess.run([sys.executable, "-m", "alignvar_edge", "inspect", missing], capture_output=True,
                             timeout=120, env={**os.environ, **env})
        assert out.returncode == 2, out.stderr
        line = out.stderr.decode(encoding)
        assert line.startswith("alignvar-edge inspect: error: ") and f"'{tmp_path}/no\\xff' does not exist" in line, line


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["upscale", "--help"], ["bench", "merge", "--help"]])
def test_a_version_or_help_stdout_does_not_take_exits_as_a_verbs_output_does(args):
    """`--version | true` was a BrokenPipeError traceback (exit 1), `--version > /dev/full` an OSError
    traceback, `--help > /dev/full` exit 0 with the help lost (`bench merge --help`, a nested verb's
    own parser, still so): a gone reader stops quietly (141), a stdout that cannot be written is one
    line and exit 1, as for a verb's output."""
    cli_ = [sys.executable, "-m", "alignvar_edge", *args]
    read_end, write_end = os.pipe()
    os.close(read_end)                              # the reader is gone before anything is printed
    try:
        gone = subprocess.run(cli_, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert gone.returncode == 128 + signal.SIGPIPE and gone.stderr == "", gone.stderr
    if not os.path.exists("/dev/full"):
        return
    full = subprocess.run(["bash", "-c", '"$@" > /dev/full', "_", *cli_], capture_output=True, text=True, timeout=120)
    err = full.stderr.splitlines()
    assert full.returncode == 1 and len(err) == 1, full.stderr
    assert "cannot write the output to stdout (No space left on device)" in err[0], err


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
def test_sending_stdout_nowhere_leaves_no_descriptor_open(tmp_path, monkeypatch) -> None:
    """Each time a stdout that cannot take output is sent to os.devnull (a failed result, a closed
    stdout's summary, what is left at exit) the descriptor opened for it was kept: one more per
    call, for the rest of an in-process caller's life."""
    from alignvar_edge import cli

    with open(tmp_path / "out.txt", "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        before = len(os.listdir("/proc/self/fd"))
        cli._stdout_to_nowhere()
        cli._stdout_to_nowhere()
        assert len(os.listdir("/proc/self/fd")) == before
