"""Every verb's help says what each option does and its default; a flag a combination would not read
is refused by name, as the verbs refuse other unread flags; a misuse error names what the help shows."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from alignvar_edge.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

def _verb_parsers() -> dict[str, argparse.ArgumentParser]:
    return dict(build_parser().verb_parsers)


def _states_a_default(action: argparse.Action) -> bool:
    """An option whose default is a value the user would want to know: not 'not given' (None, ''),
    nor a switch's off state."""
    return (action.default not in (None, "", argparse.SUPPRESS)
            and not isinstance(action.default, bool))


def _shown(default: object) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def test_every_option_has_a_help_line_that_states_its_default():
    missing, silent = [], []
    for verb, parser in _verb_parsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.help == argparse.SUPPRESS:
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help:
                missing.append(f"{verb} {name}")
                continue
            shown = formatter._expand_help(action)         # as --help prints it, %(default)s filled in
            if _states_a_default(action) and ("default" not in shown or _shown(action.default) not in shown):
                silent.append(f"{verb} {name} (default {action.default!r}): {shown}")
    assert not missing, f"options without help: {missing}"
    assert not silent, "options whose help does not state their default:\n" + "\n".join(silent)


@pytest.mark.parametrize("verb,option,says", [
    ("quantize", "--precision", "default int8"), ("quantize", "--target", "default onnxruntime"),
    ("export", "--graph", "default single"), ("train", "--batch", "default 12"), ("train", "--lr", "default 0.001"),
    ("train", "--workers", "default 0"), ("eval", "--seed", "default 0"),
    ("demo", "--checkpoint", "default: alignvar-tiny"), ("build", "--precision", "palette2|4|6|8"),
    ("eval", "--max-side", "HR pixels"), ("compare", "--max-size", "LR pixels")])
def test_the_reviewed_options_say_their_default_or_unit(verb, option, says, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([verb, "--help"])
    assert e.value.code == 0
    # one option's entry: from its line up to the next option's
    text = capsys.readouterr().out.split(f"\n  {option} ", 1)[1].split("\n  -", 1)[0]
    assert says in " ".join(text.split()), text


@pytest.mark.parametrize("argv,shown", [
    (["import", "--bogus"], "{varsr,var}"), (["train", "--bogus"], "{vqvae,transformer,decoder,joint}")])
def test_a_missing_positional_is_named_as_the_help_shows_it(argv, shown, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"the following arguments are required: {shown}," in err, err
    assert main([argv[0], "--help"]) == 0
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.rstrip().endswith(shown), usage


def test_an_unknown_precision_names_the_flag_and_the_choices(tmp_path, capsys):
    assert main(["build", "alignvar-tiny", "--target", "torch", "--precision", "int4", "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip() == ("alignvar-edge build: error: torch has no --precision int4; choose one "
                                               "of fp32, fp16, bf16")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("flags", [["--target", "onnxruntime"], ["--target", "openvino", "--precision", "fp32"]])
def test_no_token_bf16_where_no_host_would_read_it_is_refused(flags, tmp_path, capsys):
    # refused before the source is read: the flags alone decide
    assert main(["build", str(tmp_path / "E"), *flags, "--no-token-bf16", "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip() == ("alignvar-edge build: error: --no-token-bf16 applies to --target "
                                               "openvino --precision bf16|int8 only")


class _Built(Exception):
    """Stands for the build: what matters is what it was asked."""


def test_no_token_bf16_on_a_cpu_without_bf16_asks_nothing(tmp_path, monkeypatch):
    """A plain `build --target openvino` is bf16 on a CPU with bf16 units, where --no-token-bf16 keeps
    the token path f32; elsewhere it builds fp32, and the same command asks nothing of it."""
    from alignvar_edge import runtimes
    from alignvar_edge.runtimes import half
    monkeypatch.setattr(half, "isa_features", lambda *a: {"AMX": False, "AVX512-BF16": False, "AVX512-FP16": False})
    asked: list[dict] = []

    def build(source, target, precision, **kw):
        asked.append({"target": target, "precision": precision, **kw})
        raise _Built

    monkeypatch.setattr(runtimes, "build", build)
    with pytest.raises(_Built):
        main(["build", str(tmp_path / "E"), "--target", "openvino", "--no-token-bf16", "--out", str(tmp_path / "e")])
    assert asked[0]["target"] == "openvino" and asked[0]["precision"] is None and "token_bf16" not in asked[0]


def test_import_var_refuses_refiner_steps(tmp_path, capsys):
    # VAR has no refiner: the flag, even at VARSR's value, would be ignored; refused before any file is read
    for steps in ("3", "10"):
        assert main(["import", "var", "--vae", str(tmp_path / "vae.pth"), "--refiner-steps", steps,
                     "--out", str(tmp_path / "ck")]) == 2
        assert capsys.readouterr().err.strip() == ("alignvar-edge import: error: --refiner-steps applies to `import "
                                                   "varsr` only: VAR has no refiner; drop --refiner-steps")
    assert not (tmp_path / "ck").exists()


@pytest.fixture
def png(tmp_path):
    from PIL import Image
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("argv", [
    ["upscale", "IN", "OUT", "--engine", "alignvar-tiny", "--backend", "torch", "--device", "cpu", "--no-cuda-graphs"],
    ["upscale", "IN", "OUT", "--no-cuda-graphs"],           # the default engine: torch from a checkpoint, on the CPU
    ["selftest", "--backend", "torch", "--model", "alignvar-tiny", "--device", "cpu", "--runs", "1", "--no-cuda-graphs"],
    ["selftest", "--backend", "torch", "--runs", "1", "--no-cuda-graphs"]])
def test_no_cuda_graphs_on_a_torch_engine_on_the_cpu_is_refused(argv, png, tmp_path, monkeypatch, capsys):
    from alignvar_edge.runtimes.torch_backend import TorchBackend
    opened: list[object] = []
    monkeypatch.setattr(TorchBackend, "open", lambda *a, **k: opened.append(a) or pytest.fail("opened"))
    out = tmp_path / "out.png"
    argv = [str(png) if a == "IN" else str(out) if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"alignvar-edge {argv[0]}: error: --no-cuda-graphs applies to torch engines on a CUDA device only; "
                   "alignvar-tiny runs on torch on cpu here: drop --no-cuda-graphs, or pass --device cuda on a machine "
                   "with a CUDA GPU"), err
    assert not out.exists() and not opened
