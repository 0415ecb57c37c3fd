"""What an interrupted verb says it kept: a Ctrl-C that comes right after an output was put in place
(an artifact folder or a file), before the verb could say so, names that output; one that comes
right before says that nothing was kept, and nothing is. The signal is sent at that moment by a
wrapper around the publishing step (a real SIGINT through the CLI's own handler, not a race)."""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from _graph_bytes import stand_in_graph
from _runtime_fixtures import cache_root, export_dir, sharp_model
from alignvar_edge import cli, cli_json, outputs, safe_stop
from alignvar_edge.manifest import load_verified

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sigint_around(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, when: str) -> None:
    """`owner.name` (a publishing step) sends this process SIGINT just `when` ('before', 'after') it runs."""
    real: Callable[..., Any] = getattr(owner, name)

    def with_sigint(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            os.kill(os.getpid(), signal.SIGINT)
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)       # the handler runs here, before the verb's next line
        return result
    monkeypatch.setattr(owner, name, with_sigint)


def _last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_sigint_at_an_engines_publication_says_whether_it_was_kept(pytestconfig, tmp_path, monkeypatch,
                                                                       capsys, when):
    export = export_dir(sharp_model("micro"), cache_root(pytestconfig))
    out = tmp_path / "ort"
    _sigint_around(monkeypatch, outputs, "_publish", when)
    code = cli.main(["build", str(export), "--target", "onnxruntime", "--threads", "1", "--out", str(out)])
    assert code == 130
    line = _last_line(capsys)
    if when == "after":
        assert line == (f"alignvar-edge build: interrupted; '{out}' was complete before the interrupt and is kept; "
                        "no partial output was kept"), line
        load_verified(out)
    else:
        assert line == "alignvar-edge build: interrupted; no partial output was kept", line
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["ort"] if when == "after" else [])   # no staging left


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_sigint_at_a_single_image_upscales_publication_says_whether_it_was_kept(pytestconfig, tmp_path,
                                                                                 monkeypatch, capsys, when):
    import numpy as np
    from PIL import Image

    from alignvar_edge.images import write
    export = export_dir(sharp_model("micro"), cache_root(pytestconfig))
    src, out = tmp_path / "lr.png", tmp_path / "sr.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src)
    _sigint_around(monkeypatch, write, "_publish", when)
    code = cli.main(["upscale", str(src), str(out), "--engine", str(export), "--threads", "1", "--quiet"])
    assert code == 130
    line = _last_line(capsys)
    if when == "after":
        assert line == (f"alignvar-edge upscale: interrupted; '{out}' was complete before the interrupt and is kept; "
                        "no partial output was kept"), line
        assert Image.open(out).size == (48, 48)
    else:
        assert line == "alignvar-edge upscale: interrupted; no partial output was kept", line
    assert sorted(p.name for p in tmp_path.iterdir()) == (["lr.png", "sr.png"] if when == "after" else ["lr.png"])


def test_a_sigint_right_after_a_json_result_is_written_names_the_file(tmp_path, monkeypatch, capsys):
    result = tmp_path / "info.json"
    _sigint_around(monkeypatch, cli_json, "write_text", "after")
    assert cli.main(["info", "--preset", "micro", "--json", str(result)]) == 130
    assert _last_line(capsys) == (f"alignvar-edge info: interrupted; '{result}' was complete before the interrupt "
                                  "and is kept; no partial output was kept")
    assert json.loads(result.read_text())["alignvar_edge"]


def test_a_sigint_before_a_json_result_says_the_file_records_the_interrupt(tmp_path, monkeypatch, capsys):
    """A stopped run replaces its --json FILE with an ERROR record (no stale verdict outlives it):
    the line said that FILE 'was complete before the interrupt and is kept', and the record's
    reason was 'KeyboardInterrupt' for SIGINT and SIGTERM alike."""
    result = tmp_path / "info.json"
    result.write_text(json.dumps({"alignvar_edge": "0.0.1", "result": "an earlier run's"}))
    real, calls = cli_json.write_text, []

    def stopped_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:                       # the result itself: the stop lands before it
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)
    monkeypatch.setattr(cli_json, "write_text", stopped_first)
    assert cli.main(["info", "--preset", "micro", "--json", str(result)]) == 130
    assert _last_line(capsys) == (f"alignvar-edge info: interrupted; no partial output was kept; '{result}' now "
                                  "records this run as interrupted")
    record = json.loads(result.read_text())
    assert record["result"] == "ERROR" and record["reason"] == "interrupted (SIGINT)", record


def test_outputs_are_recorded_only_while_the_cli_runs_a_verb(tmp_path):
    from alignvar_edge.fsmodes import write_text
    write_text(tmp_path / "a.txt", "a")                  # the library: nothing recorded, nothing grows
    assert safe_stop.kept() == []
    with safe_stop.recording():
        write_text(tmp_path / "b.txt", "b")
        write_text(tmp_path / "c.txt", "c")
        (tmp_path / "c.txt").unlink()                    # no longer there: not kept
        write_text(tmp_path / "b.txt", "b2")             # written again: named once
        assert safe_stop.kept() == [str(tmp_path / "b.txt")]
    assert safe_stop.kept() == []


def test_a_sigint_between_the_renames_of_a_forced_replace_loses_neither_artifact(tmp_path, sigint_after_moving):
    """--force moves the old artifact aside, then the new one in: a SIGINT sent right after the
    first rename waits for the second, so the new artifact is in place and the old one is gone,
    never the new one deleted with the old one hidden beside it."""
    from alignvar_edge.manifest import new_manifest, write_manifest
    out = tmp_path / "art"

    def publish(tag: str) -> None:
        with outputs.artifact_dir(out, force=True) as tmp:
            (tmp / "model.onnx").write_bytes(stand_in_graph(tag))
            write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", {"name": tag}))
    publish("old")
    sigint_after_moving(out)                            # the old artifact has just left `out`
    with pytest.raises(KeyboardInterrupt):
        publish("new")
    assert load_verified(out).model.name == "new" and (out / "model.onnx").read_bytes() == stand_in_graph("new")
    assert [p.name for p in tmp_path.iterdir()] == ["art"]          # no hidden old or staging folder
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler    # the handler back as it was


def test_a_sigterm_between_the_renames_kills_only_after_the_new_artifact_is_in_place(tmp_path):
    """The library with the OS's SIGTERM (no handler: it kills): sent right after the old artifact
    was moved aside, the process dies once the new one is in place, not between the two."""
    import subprocess
    import sys
    out = tmp_path / "art"
    script = f"""
import os, signal
from alignvar_edge import outputs
from alignvar_edge.manifest import new_manifest, write_manifest
out = outputs.Path({str(out)!r})
def publish(tag):
    with outputs.artifact_dir(out, force=True) as tmp:
        (tmp / "notes.txt").write_text(tag)
        write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", {{"name": tag}}))
publish("old")
real = os.replace
def sigterm_once_moved_aside(src, dst):
    real(src, dst)
    if outputs.Path(src) == out:
        os.kill(os.getpid(), signal.SIGTERM)
os.replace = sigterm_once_moved_aside
publish("new")
print("not killed")
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGTERM and "not killed" not in res.stdout, (res.returncode, res.stderr)
    assert load_verified(out).model.name == "new" and (out / "notes.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["art"]          # the old one deleted before it died


@pytest.mark.parametrize("sig,wrapped", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGINT", "SIGTERM", "SIGINT-as-ImportError"])
def test_a_stop_while_the_parser_is_built_is_the_same_one_line(tmp_path, sig, wrapped):
    """Building the parser imports every verb's module (tenths of a second): a Ctrl-C then printed
    a 30-line traceback, and a SIGTERM killed the process without a word; numpy, interrupted while
    it imports, raises ImportError instead (`wrapped`). The signal is sent from the start of
    build_parser, in a child process (the OS's SIGTERM would end the test run)."""
    import subprocess
    import sys
    script = f"""
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from alignvar_edge import cli
real = cli.build_parser
def stopped_while_building():
    try:
        signal.raise_signal({int(sig)})
    except KeyboardInterrupt:
        if {wrapped}:
            raise ImportError("Error importing numpy") from None
        raise
    return real()
cli.build_parser = stopped_while_building
sys.exit(cli.main(["upscale", "small.png", "tt.png", "--threads", "1"]))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    said = "interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)"
    assert (res.returncode, res.stderr) == (128 + sig, f"alignvar-edge upscale: {said}; no partial output was kept\n")


def test_the_command_leaves_after_an_interrupt_without_the_interpreters_shutdown() -> None:
    """A second Ctrl-C of a double tap landed in the interpreter's shutdown, in a library's exit hook
    (PyTorch's), and printed its traceback under the one line: the command leaves an interrupted
    verb by os._exit, a finished one through the normal shutdown."""
    import importlib.metadata
    hook = "import atexit; from alignvar_edge import cli; atexit.register(lambda: print('shutdown ran', flush=True)); "
    for code, shuts_down in ((130, False), (143, False), (0, True), (2, True)):
        out = subprocess.run([sys.executable, "-c", hook + f"cli.main = lambda: {code}; cli.run_as_program()"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == code and ("shutdown ran" in out.stdout) == shuts_down, (code, out)
    command = importlib.metadata.entry_points(group="console_scripts", name="alignvar-edge")
    assert [c.value for c in command] == ["alignvar_edge.cli:run_as_program"]


def test_messages_name_a_non_ascii_path_with_its_own_bytes_in_a_c_locale(tmp_path) -> None:
    """In a locale that is not UTF-8 a file name's other bytes reach Python as lone surrogates, and
    stderr printed them as '\\udcc3\\udcbc', a path nobody can paste back."""
    missing = os.fsencode(tmp_path) + "/phötö ü.png".encode()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    out = subprocess.run([sys.executable, "-m", "alignvar_edge", "info", missing], env=env, capture_output=True,
                         timeout=120)
    assert out.returncode == 2, out
    assert missing in out.stderr and b"\\udc" not in out.stderr, out.stderr


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 0), (signal.SIGTERM, -signal.SIGTERM)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_ctrl_c_in_the_shutdown_after_a_finished_verb_changes_nothing(sig, status) -> None:
    """Once a verb has ended (`deploy finished ...` printed), Python's shutdown puts the OS's default
    handlers back and then collects every object (2 s after a deploy): a Ctrl-C there killed the
    process (130, no line) with its outputs complete. It is ignored: the status is the verb's. A
    SIGTERM still ends it, so that a supervisor can end a shutdown that hangs. The signal is sent as
    Python clears the command's own module, late in that shutdown."""
    script = f"""
import os, signal, sys, time
from alignvar_edge import cli

class StopInTheShutdown:
    def __del__(self):
        os.kill(os.getpid(), {int(sig)})
        time.sleep(0.2)
        os.write(1, b"still here")

stop = StopInTheShutdown()
sys.argv = ["alignvar-edge", "--version"]
cli.run_as_program()
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (res.returncode, res.stderr) == (status, "") and res.stdout.endswith("still here") == (status == 0), res


# a child's `upscale` that stops with its output's hidden temporary file written, before the rename:
# it says so in `ready` (naming the file) and waits there for the test's signal, or until the test
# removes `ready` (a signal that is ignored)
_UPSCALE_PAUSED_BEFORE_PUBLISHING = """
import os, signal, sys, time
signal.signal(signal.SIGHUP, signal.{hangup})
from alignvar_edge import cli
from alignvar_edge.images import write
real = write._publish
def paused(tmp, path, overwrite):
    with open({ready!r}, "w") as f:
        f.write(os.path.basename(tmp))
    deadline = time.monotonic() + 60
    while os.path.exists({ready!r}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return real(tmp, path, overwrite)
write._publish = paused
sys.argv = ["alignvar-edge", "upscale", {src!r}, {out!r}, "--engine", {engine!r}, "--threads", "1", "--quiet"]
cli.run_as_program()
"""


def _upscale_paused_before_publishing(pytestconfig: pytest.Config, tmp_path: Any, hangup: str,
                                      **popen: Any) -> tuple[subprocess.Popen[bytes], str]:
    """A child running `upscale` into tmp_path/out/sr.png, paused with its temporary output written
    (SIGHUP's handler `hangup`: SIG_DFL as at a terminal, SIG_IGN as under nohup); returns it and
    the temporary file's name once it is there."""
    import time

    import numpy as np
    from PIL import Image
    engine = export_dir(sharp_model("micro"), cache_root(pytestconfig))
    src, out, ready = tmp_path / "lr.png", tmp_path / "out" / "sr.png", tmp_path / "ready"
    out.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src)
    script = _UPSCALE_PAUSED_BEFORE_PUBLISHING.format(hangup=hangup, ready=str(ready), src=str(src), out=str(out),
                                                      engine=str(engine))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, **popen)
    deadline = time.monotonic() + 120
    while not ready.exists() or not ready.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, "upscale never reached its output's rename"
        time.sleep(0.05)
    temp = ready.read_text()
    assert (out.parent / temp).is_file(), temp           # the partial output a stop must not leave
    return proc, temp


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_hangup_while_an_upscale_writes_removes_its_partial_output_and_says_so(pytestconfig, tmp_path):
    """A closed terminal or a dropped ssh session (SIGHUP) killed `upscale` with no line and left its
    hidden temporary output (hundreds of MB for a big image): it stops as SIGTERM does, status 129."""
    proc, _ = _upscale_paused_before_publishing(pytestconfig, tmp_path, "SIG_DFL", stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.decode()) == (
        128 + signal.SIGHUP, "alignvar-edge upscale: terminated (SIGHUP); no partial output was kept\n")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_terminal_that_hangs_up_under_an_upscale_leaves_no_partial_output(pytestconfig, tmp_path):
    """The terminal itself gone (its master side closed, as when an ssh session drops): the kernel
    sends SIGHUP, and the line said then cannot be written (EIO); the run still cleans up and
    exits 129, not 1 with a traceback nobody sees."""
    proc, master = _on_a_terminal(lambda **popen: _upscale_paused_before_publishing(
        pytestconfig, tmp_path, "SIG_DFL", **popen)[0])
    os.close(master)                     # the hangup
    assert proc.wait(timeout=60) == 128 + signal.SIGHUP
    assert list((tmp_path / "out").iterdir()) == []


def _on_a_terminal(start: Any) -> tuple[subprocess.Popen[bytes], int]:
    """A child `start(**popen)` started whose terminal is a pty (stdin, stdout, stderr, and its
    session's controlling terminal); returns it and the pty's master, whose close hangs it up."""
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()

    def own_terminal() -> None:          # the child leads a session whose terminal is the pty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    try:
        proc = start(stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=own_terminal)
    finally:
        os.close(slave)
    return proc, master


# a child's `train vqvae` whose step 3 says so in `ready` and waits there for the stop the test asks
_TRAIN_PAUSED_AT_STEP_3 = """
import os, sys, time
from alignvar_edge import cli, safe_stop
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.train import trainer
get = trainer.make_batches(None, AlignVARConfig.from_preset("micro"), 2, 0)
def batches(b):
    if b == 3:
        open({ready!r}, "w").close()
        deadline = time.monotonic() + 60
        while safe_stop.asked() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    return get(b)
trainer.make_batches = lambda *a, **k: batches
sys.argv = ["alignvar-edge", "train", "vqvae", "--preset", "micro", "--out", {out!r}, "--steps", "6",
            "--batch", "2", "--save-every", "100"]
cli.run_as_program()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_terminal_that_hangs_up_under_training_stops_it_with_129(tmp_path):
    """`train`'s terminal gone at step 3: the run saves step 4 and stops, and its last line cannot be
    written (EIO); that is the stop docs/training.md promises (129), not exit 1 with a traceback."""
    import json
    import time
    # log: the child's uncaught error, which its gone terminal cannot show
    ready, out, log = tmp_path / "ready", tmp_path / "run", tmp_path / "traceback.txt"
    script = _TRAIN_PAUSED_AT_STEP_3.format(ready=str(ready), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc, master = _on_a_terminal(lambda **popen: subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.excepthook = lambda *a: open({str(log)!r}, 'w').write(repr(a[1]))\n"
         + script], env=env, **popen))
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "train never reached step 3"
        time.sleep(0.05)
    os.close(master)                     # the hangup
    assert proc.wait(timeout=60) == 128 + signal.SIGHUP
    assert not log.exists(), log.read_text()
    assert json.loads((out / "state" / "state.json").read_text())["step"] == 4


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_an_ignored_hangup_stays_ignored(pytestconfig, tmp_path):
    """`nohup alignvar-edge upscale ...` starts with SIGHUP ignored, so that the run outlives its
    terminal: the CLI leaves that alone, and the run finishes."""
    proc, _ = _upscale_paused_before_publishing(pytestconfig, tmp_path, "SIG_IGN", stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGHUP)
    (tmp_path / "ready").unlink()        # the child goes on, unless the signal stopped it
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err.decode().startswith("upscaled 1 image(s)"), (proc.returncode, err)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["sr.png"]


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_stop_a_loop_defers_is_asked_for_where_stderr_is_gone() -> None:
    """`train`'s first SIGHUP waits for the step in progress, saying so on stderr: where the terminal
    is gone (a dropped ssh session; here a pipe nobody reads) that write failed, and its OSError
    came out of the signal handler, in the middle of the training step."""
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)       # as at a terminal, not under nohup
    read_end, write_end = os.pipe()
    os.close(read_end)
    stderr = os.dup(2)
    previous = cli._watch_signals([], "train")
    try:
        os.dup2(write_end, 2)
        with safe_stop.window("the run stops after this step and is saved there"):
            os.kill(os.getpid(), signal.SIGHUP)           # its handler runs here
            assert safe_stop.asked() == signal.SIGHUP
    finally:
        os.dup2(stderr, 2)
        for fd in (stderr, write_end):
            os.close(fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGHUP, before)


class _HungUpStream(io.StringIO):
    """A terminal that is gone: every write fails as the kernel fails it (EIO)."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")


def test_an_error_line_its_hung_up_terminal_cannot_take_still_exits_with_the_errors_status(
        tmp_path, monkeypatch) -> None:
    """A verb's error said on a stderr that fails (EIO) raised again from the error handler, and the
    run ended in a traceback instead of its status (2 for a missing artifact)."""
    monkeypatch.setattr(sys, "stderr", _HungUpStream())
    assert cli.main(["inspect", str(tmp_path / "missing")]) == 2
