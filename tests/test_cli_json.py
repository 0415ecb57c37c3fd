"""`--json [FILE]` means the same on every verb: alone, JSON on stdout instead of the text; with a
FILE, the text on stdout and the JSON in FILE."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alignvar_edge.cli import build_parser, main

JSON_VERBS = ("info", "inspect", "eval", "compare", "doctor", "selftest")


def _json_action(verb: str):
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return next(a for a in sub.choices[verb]._actions if a.dest == "json")


@pytest.mark.parametrize("verb", JSON_VERBS)
def test_every_verb_takes_an_optional_file(verb):
    action = _json_action(verb)
    assert action.nargs == "?" and action.const == "-" and action.metavar == "FILE"


def test_bare_json_prints_only_json(capsys):
    assert main(["doctor", "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)                       # the whole stdout is one document
    assert {"alignvar_edge", "host", "backends"} <= set(doc)


def test_json_file_keeps_the_text_and_writes_the_same_result(tmp_path, capsys):
    target = tmp_path / "doctor.json"
    assert main(["doctor", "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alignvar-edge ") and "ISA:" in out
    doc = json.loads(target.read_text())
    assert [b["name"] for b in doc["backends"]] == ["torch", "onnxruntime", "openvino", "tensorrt", "coreml"]


def test_a_file_that_is_not_json_is_one_line_naming_the_flag(capsys):
    assert main(["info", "--json", "alignvar-tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--json" in err[0] and "must end in .json" in err[0]


@pytest.mark.parametrize("verb", ["doctor", "info"])
def test_json_file_never_replaces_a_benchmark_report(verb, tmp_path, capsys):
    # `doctor --json report.json` next to the bench reports being compared would lose a device's run
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema": "alignvar-edge.bench", "schema_version": 1, "kind": "bench"}))
    before = report.read_bytes()
    assert main([verb, "--json", str(report)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--json" in err[0] and "is a benchmark report" in err[0], err
    assert report.read_bytes() == before
    # an earlier result of the verb itself is replaced
    own = tmp_path / "own.json"
    assert main([verb, "--json", str(own)]) == 0 and main([verb, "--json", str(own)]) == 0


@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
def test_json_file_is_written_when_stdout_is_closed(micro_export, tmp_path, unbuffered):
    """`inspect ART --json FILE | head -1`: the reader closing stdout must not cost the FILE, nor
    print a traceback. Unbuffered, the text used to fail before FILE was written; buffered, the
    exit's flush failed after it ("Exception ignored ... BrokenPipeError", status 120)."""
    target = tmp_path / "inspect.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update({"OMP_NUM_THREADS": "1", **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})})
    read_end, write_end = os.pipe()
    os.close(read_end)                              # the reader is gone before anything is printed
    try:
        r = subprocess.run([sys.executable, "-m", "alignvar_edge", "inspect", str(micro_export),
                            "--json", str(target)], stdout=write_end, stderr=subprocess.PIPE, text=True,
                           env=env, cwd=Path(__file__).resolve().parent.parent, timeout=300)
    finally:
        os.close(write_end)
    assert r.returncode == 128 + signal.SIGPIPE and r.stderr == ""
    assert json.loads(target.read_text())["verdict"].startswith("OK")


@pytest.mark.parametrize("content", ['{"name": "tiny", "depth": 4}', "[1, 2]", "not json at all"],
                         ids=["a config", "a list", "not json"])
def test_json_file_never_replaces_a_file_no_verb_wrote(content, tmp_path, capsys):
    # `eval ckpt --json ckpt/config.json` would cost the checkpoint its config
    mine = tmp_path / "config.json"
    mine.write_text(content)
    assert main(["doctor", "--json", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--json" in err[0] and "is not a result alignvar-edge wrote" in err[0], err
    assert mine.read_text() == content


def test_every_result_names_its_writer_and_an_empty_file_is_taken(tmp_path, capsys):
    from alignvar_edge import __version__
    empty = tmp_path / "made-by-mktemp.json"
    empty.touch()
    assert main(["info", "alignvar-tiny", "--json", str(empty)]) == 0
    doc = json.loads(empty.read_text())
    assert next(iter(doc)) == "alignvar_edge" and doc["alignvar_edge"] == __version__ and doc["name"] == "alignvar-tiny"
    capsys.readouterr()
    assert main(["info", "alignvar-tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == doc          # stdout and FILE: the same result


def _stale_then_failed(verb_args: list[str], failing: list[str], target: Path, capsys) -> dict:
    """Run `verb_args --json target` (a success), then `failing --json target` (an error): the
    failed run's --json FILE, which must no longer hold the first run's result."""
    assert main([*verb_args, "--json", str(target)]) == 0
    earlier = json.loads(target.read_text())
    assert "result" not in earlier
    capsys.readouterr()
    assert main([*failing, "--json", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    doc = json.loads(target.read_text())
    assert doc["result"] == "ERROR" and doc["reason"] in err and doc != earlier
    assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]   # no temp file left
    return doc


def test_a_failed_info_replaces_its_earlier_json_file(tmp_path, capsys):
    """`info nosuchdir --json FILE` left the earlier run's result (alignvar-tiny) in FILE."""
    doc = _stale_then_failed(["info", "alignvar-tiny"], ["info", str(tmp_path / "nosuchdir")],
                             tmp_path / "info.json", capsys)
    assert doc["info"] == str(tmp_path / "nosuchdir") and "name" not in doc


def test_a_failed_inspect_replaces_its_earlier_json_file(micro_export, tmp_path, capsys):
    """An artifact that no longer verifies: its earlier `OK` verdict was left in FILE."""
    import shutil
    art = tmp_path / "art"
    shutil.copytree(micro_export, art)
    target = tmp_path / "inspect.json"
    assert main(["inspect", str(art), "--json", str(target)]) == 0
    assert json.loads(target.read_text())["verdict"].startswith("OK")
    with open(art / "model.onnx", "ab") as fh:           # no longer the graph its manifest lists
        fh.write(b"x")
    capsys.readouterr()
    assert main(["inspect", str(art), "--json", str(target)]) == 2
    doc = json.loads(target.read_text())
    assert doc["result"] == "ERROR" and doc["inspect"] == str(art) and "verdict" not in doc
    assert doc["reason"] in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--json"], ["--json", "-"]], ids=["bare", "dash"])
def test_a_failed_run_prints_its_error_result_on_stdout(flag, micro_export, tmp_path, capsys, monkeypatch):
    """`inspect nothere --json | jq` read nothing at all: stdout gets the ERROR result FILE gets,
    one JSON document, and the exit status is the error's; a stopped run's reason names its stop."""
    gone = tmp_path / "nothere"
    assert main(["inspect", str(gone), *flag]) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["result"] == "ERROR" and doc["inspect"] == str(gone) and doc["reason"] in err
    import alignvar_edge.export.inspect_artifact as inspect_artifact

    def stopped(*_a, **_k):
        raise KeyboardInterrupt("SIGINT")
    monkeypatch.setattr(inspect_artifact, "inspect_artifact", stopped)
    assert main(["inspect", str(micro_export), *flag]) == 128 + signal.SIGINT
    doc = json.loads(capsys.readouterr().out)
    assert doc["result"] == "ERROR" and doc["reason"] == "interrupted (SIGINT)"


def test_a_refused_flag_prints_its_error_result_on_stdout(tmp_path, capsys):
    """compare's --max-megapixels without --images was refused before its run began: exit 2 with
    nothing on stdout for `--json | jq` (eval's same refusal printed its ERROR result)."""
    assert main(["compare", str(tmp_path / "engine"), "--json", "--max-megapixels", "5"]) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["result"] == "ERROR" and "--max-megapixels limits the files of --images" in doc["reason"]
    assert doc["reason"] in err


def test_a_failed_eval_replaces_an_earlier_json_file(tmp_path, capsys):
    doc = _stale_then_failed(["info", "alignvar-tiny"], ["eval", str(tmp_path / "nosuchdir")],
                             tmp_path / "eval.json", capsys)
    assert doc["eval"] == str(tmp_path / "nosuchdir")


def test_a_failed_run_never_touches_a_file_no_verb_wrote(tmp_path):
    """FILE was checked when the options were read; a file of the user's put there since is not ours."""
    from alignvar_edge.cli_json import no_stale_result
    mine = tmp_path / "mine.json"
    mine.write_text('{"name": "tiny"}')
    with pytest.raises(ValueError), no_stale_result(str(mine), {"info": "x"}):
        raise ValueError("failed")
    assert mine.read_text() == '{"name": "tiny"}'


def test_a_result_file_that_cannot_be_written_leaves_no_earlier_result(small_disk, capsys):
    """Writing FILE was outside the guard of failed runs: on a full disk `info X --json FILE` failed
    and left the earlier run's result of another model in FILE, as if it were this run's."""
    disk = small_disk("64K")
    target = disk / "info.json"
    assert main(["info", "--preset", "micro", "--json", str(target)]) == 0
    assert json.loads(target.read_text())["name"] != "alignvar-tiny"
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError):                      # the disk is full now
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    capsys.readouterr()
    assert main(["info", "alignvar-tiny", "--json", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"alignvar-edge info: error: no space left on the device writing {target}"), err
    assert not target.exists() or json.loads(target.read_text())["result"] == "ERROR"
    assert sorted(p.name for p in disk.iterdir()) == ["filler"] + (["info.json"] if target.exists() else [])


def test_a_deeply_nested_file_is_not_taken_for_a_result(tmp_path, capsys):
    """Deciding whether FILE is a result was json.load: a file nested 100,000 deep was a
    RecursionError traceback; it is someone else's file, refused in one line and left as it was."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["info", "alignvar-tiny", "--json", str(deep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{deep} exists and is not a result alignvar-edge wrote, so it is not replaced" in err[-1], err
    assert deep.read_text().startswith("[[[")


@pytest.mark.parametrize("content", ['{"my": "precious notes"}',
                                     json.dumps({"schema": "alignvar-edge.bench", "schema_version": 1, "kind": "bench"})],
                         ids=["a user's file", "a benchmark report"])
def test_a_file_written_to_the_json_file_while_the_verb_ran_is_kept(content, tmp_path, capsys, monkeypatch):
    """FILE was free when --json was read; the user's file (or a bench report) put there while the
    verb ran is kept, in one line naming it (exit 2), and the result still reaches stdout."""
    import alignvar_edge.cli_json as cli_json

    target = tmp_path / "S.json"
    dumps = cli_json.dumps

    def written_meanwhile(payload, *args, **kwargs):     # the result is ready: the user writes FILE now
        target.write_text(content)
        return dumps(payload, *args, **kwargs)

    monkeypatch.setattr(cli_json, "dumps", written_meanwhile)
    assert main(["doctor", "--json", str(target)]) == 2
    out, err = capsys.readouterr()
    err = err.strip().splitlines()
    assert len(err) == 1 and f"--json {target}" in err[0] and "while this run was working, and is kept" in err[0], err
    assert target.read_text() == content
    assert "onnxruntime" in out                  # doctor's text: the result is not lost
