"""The command on a device install (the wheel with `[device]`, no PyTorch): its help lists the verbs
that run there, a host verb called there is one line and exit 3 whatever its arguments, and
`--version` answers without building the parser.

A device install is simulated in a child process by test_runtimes_device's import finder, which makes
torch and the host tool chain unimportable (and unfindable, as where they were never installed)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alignvar_edge import __version__, cli
from test_runtimes_device import _BLOCK_TORCH, HOST_TOOLS

# what the device verbs are: every one of them runs without PyTorch
DEVICE_VERBS = ["inspect", "upscale", "doctor", "adopt", "selftest", "bench"]
HOST_ONLY = ["info", "demo", "import", "train", "eval", "export", "quantize", "compare", "deploy"]

# runs `alignvar-edge ARGV` for each ARGV of the JSON list it is given, in one process: its status,
# stdout and stderr each, then the verb modules and torch as imported by then
_RUN = _BLOCK_TORCH + '''
import contextlib, io, json
from alignvar_edge.cli import main
runs = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    runs.append([code, out.getvalue(), err.getvalue()])
loaded = sorted(m for m in sys.modules if m.endswith(".commands") or m in ("torch", "onnxruntime"))
print(json.dumps({"runs": runs, "loaded": loaded}))
'''


# an OpenVINO-only device (the wheel with `[openvino]`, no `[device]`): ONNX Runtime not found either
_NO_ONNXRUNTIME = '''
class _NoOrt:
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        find = getattr(self.finder, "find_spec", None)
        return None if name.split(".")[0] == "onnxruntime" or find is None else find(name, path, target)
    def __getattr__(self, name):
        return getattr(self.finder, name)
sys.meta_path[:] = [_NoOrt(f) for f in sys.meta_path]
'''


def _device(*argvs: list[str], path: Path | None = None,
            openvino_only: bool = False) -> tuple[list[tuple[int, str, str]], list[str]]:
    """([(status, stdout, stderr)] of `alignvar-edge ARGV` for each of `argvs`, as a device install runs
    them, in one process; the verb modules imported by then). `path`: a folder put first on the import
    path; `openvino_only`: ONNX Runtime not installed either."""
    paths = ([str(path)] if path else []) + [p for p in sys.path if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    run = _RUN.replace("from alignvar_edge.cli import main", _NO_ONNXRUNTIME + "from alignvar_edge.cli import main")
    res = subprocess.run([sys.executable, "-c", run if openvino_only else _RUN, json.dumps(argvs)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return [tuple(run) for run in out["runs"]], out["loaded"]


def _listed(help_text: str) -> list[str]:
    """The verbs `alignvar-edge --help` lists, in order."""
    return re.findall(r"^    (\w+)  ", help_text, flags=re.M)


def test_a_device_install_lists_only_the_verbs_it_runs() -> None:
    """Its --help listed train, export, quantize, build, deploy, compare, eval, demo, import and info,
    every one of which stops with exit 3 there; the modules registering only host verbs are not
    imported, and torch is looked up, never imported."""
    [(code, out, err)], loaded = _device(["--help"])
    assert code == 0, err
    assert _listed(out) == DEVICE_VERBS, out
    assert loaded == ["alignvar_edge.bench.commands", "alignvar_edge.export.commands",
                      "alignvar_edge.runtimes.commands"], loaded


def test_build_is_listed_on_a_device_where_tensorrt_is_installed(tmp_path: Path) -> None:
    """A device builds a TensorRT engine from a kit (`build KIT --target tensorrt`): listed where
    TensorRT can be imported (a stand-in package here), and run, not refused, where it cannot."""
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text("")
    [(code, out, err)], _ = _device(["--help"], path=tmp_path)
    assert code == 0, err
    assert _listed(out) == ["inspect", "build", *DEVICE_VERBS[1:]], out
    [(code, out, err)], _ = _device(["build", "--help"])           # no TensorRT: unlisted, still its parser
    assert code == 0 and out.startswith("usage: alignvar-edge build"), err


def test_a_host_verb_on_a_device_is_one_line_and_exit_3_whatever_its_arguments() -> None:
    """Each was parsed first: `export` alone said `--out` is required (exit 2), `export --help` showed
    options that cannot run there, and only a complete command reached the exit-3 line."""
    argvs = [[verb, *rest] for verb in HOST_ONLY for rest in ([], ["--help"], ["NO_SUCH_DIR", "--no-such-flag"])]
    runs, loaded = _device(*argvs)
    for argv, (code, out, err) in zip(argvs, runs):
        assert code == 3 and out == "" and len(err.splitlines()) == 1, (argv, err[-3000:])
        assert re.fullmatch(f"alignvar-edge {argv[0]}: error: this verb needs torch, which a device install does "
                            f"not have; {HOST_TOOLS}", err.strip()), err
    assert loaded == [], loaded


def test_the_version_is_printed_without_building_the_parser(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` built the whole parser, importing every verb's module (half of the command's start)."""
    def no_parser() -> None:
        raise AssertionError("the parser was built")
    monkeypatch.setattr(cli, "build_parser", no_parser)
    for argv in (["--version"], ["--debug", "--version"], ["--version", "upscale"]):
        assert cli.main(argv) == 0
        assert capsys.readouterr().out == f"alignvar-edge {__version__}\n"


def test_the_version_printed_early_is_the_one_argparse_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """The same line where argparse answers (`--vers`, an abbreviation), and `-h` before `--version` is
    still the help, as argparse reads it."""
    assert cli.main(["--vers"]) == 0
    assert capsys.readouterr().out == f"alignvar-edge {__version__}\n"
    assert cli.main(["-h", "--version"]) == 0
    assert capsys.readouterr().out.startswith("usage: alignvar-edge")


def test_the_verb_table_names_what_each_module_registers() -> None:
    """COMMAND_MODULES says which verbs each module registers, so a device install can skip a module
    that registers host verbs only: it must match what the modules register, in the listed order."""
    import argparse
    import importlib
    listed = []
    for name, verbs in cli.COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(sub)
        assert tuple(sub.choices) == verbs, name
        listed += verbs
    assert set(cli.HOST_VERBS) | set(cli.DEVICE_VERB_NEEDS) < set(listed)
    assert _listed(cli.build_parser().format_help()) == listed


def test_an_openvino_only_device_runs_its_engines_without_onnx_runtime(tmp_path: Path, pytestconfig) -> None:
    """The docs gave `[device,openvino]` for an OpenVINO device: the wheel with `[openvino]` alone
    (no ONNX Runtime, 314 MB against 395 MB) checks, upscales, benches and inspects its engines."""
    import numpy as np
    from PIL import Image

    from _runtime_fixtures import cache_root, export_dir, sharp_model
    from alignvar_edge import runtimes
    engine = str(runtimes.build(export_dir(sharp_model("micro"), cache_root(pytestconfig)), "openvino", "fp32",
                                out=tmp_path / "ov"))
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "in.png")
    argvs = [["selftest", "--engine", engine, "--runs", "1"],
             ["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--engine", engine],
             ["bench", engine, "--no-reference", "--runs", "2", "--warmup", "0", "--out", str(tmp_path / "r.json")],
             ["inspect", engine]]
    runs, loaded = _device(*argvs, openvino_only=True)
    for argv, (code, out, err) in zip(argvs, runs):
        assert code == 0, (argv, err[-3000:])
    assert "RESULT    PASS" in runs[0][1] and runs[3][1].startswith("verdict    OK: engine (openvino)")
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    assert json.loads((tmp_path / "r.json").read_text())["engines"][0]["status"] == "ok"
    assert "onnxruntime" not in loaded and "torch" not in loaded, loaded
