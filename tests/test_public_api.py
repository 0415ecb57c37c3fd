"""The public Python API and the CLI's conventions, as a user meets them."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alignvar_edge
from alignvar_edge.cli import build_parser
from alignvar_edge.errors import CheckpointError


def test_top_level_names_are_the_documented_api() -> None:
    from alignvar_edge import AlignVAR, AlignVARConfig, build, export, load
    from alignvar_edge.model.alignvar import AlignVAR as Model
    from alignvar_edge.runtimes import build as build_engine, load as load_engine

    assert (AlignVAR, build, load) == (Model, build_engine, load_engine)
    assert callable(export) and export.export_onnx.__name__ == "export_onnx"
    assert AlignVARConfig.from_preset("micro").lr_size == 8
    with pytest.raises(AttributeError):
        alignvar_edge.no_such_name  # noqa: B018
    # completion offers the lazy names (dir() of a module lists only what is imported)
    assert {"AlignVAR", "AlignVARConfig", "build", "export", "load", "__version__"} <= set(dir(alignvar_edge))


def test_dir_of_the_package_lists_its_public_names_and_submodules_only() -> None:
    """dir() returned the module's globals: completion offered `Any`, `TYPE_CHECKING` and
    `annotations`, which the package imports for itself."""
    import importlib.util
    listed = set(dir(alignvar_edge))
    assert set(alignvar_edge.__all__) | {"runtimes", "images", "bench", "samples"} <= listed
    assert not {"Any", "TYPE_CHECKING", "annotations"} & listed
    # every other name is a submodule that `import alignvar_edge.<name>` finds
    for name in listed - set(alignvar_edge.__all__):
        assert importlib.util.find_spec(f"alignvar_edge.{name}") is not None, name


def test_importing_the_package_and_its_config_needs_no_torch() -> None:
    code = ("import sys, alignvar_edge, alignvar_edge.model, alignvar_edge.runtimes.base; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_doctor_and_the_backend_list_work_where_torch_cannot_be_imported() -> None:
    """A device install has no PyTorch: `doctor` is the first thing its user runs."""
    code = ("import sys, json; sys.modules['torch'] = None\n"       # `import torch` now raises ImportError
            "from alignvar_edge import runtimes\n"
            "infos = {i.name: i for i in runtimes.available_backends()}\n"
            "assert not infos['torch'].available and infos['onnxruntime'].available, infos\n"
            "from alignvar_edge.cli import main\n"
            "sys.exit(main(['doctor', '--json']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    backends = {b["name"]: b for b in json.loads(out.stdout)["backends"]}
    assert list(backends)[:2] == ["torch", "onnxruntime"]
    # the way to get PyTorch is the host extra's requirements (torch >= 2.6, from its CPU index), not
    # a bare `pip install torch` (a multi-GB CUDA build on Linux) nor alignvar-edge[host] (not on
    # PyPI), and on a device the way around it is a built engine
    why = backends["torch"]["reason"]
    assert "pip install --extra-index-url https://download.pytorch.org/whl/cpu 'torch>=" in why and "--engine DIR" in why
    assert "pip install torch" not in why and "alignvar-edge[" not in why


def test_a_missing_backend_names_the_extra_that_installs_it() -> None:
    code = ("import sys; sys.modules['openvino'] = None; sys.modules['coremltools'] = None\n"
            "from alignvar_edge import runtimes\n"
            "print(runtimes.get_backend('openvino').is_available()[1])\n"
            "print(runtimes.get_backend('coreml').is_available()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ov, ct = out.stdout.strip().splitlines()
    assert re.search(r"install it with `pip install 'openvino>=[\d.]+'`$", ov), ov
    assert re.search(r"install it with `pip install 'coremltools>=[\d.]+'( 'numpy<[\d.]+')?`$", ct), ct


def _device_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`alignvar-edge ARGS` where the host's packages cannot be imported, as on alignvar-edge[device]."""
    code = ("import sys\n"
            "for m in ('torch', 'onnx', 'onnxscript', 'skimage', 'matplotlib'): sys.modules[m] = None\n"
            "from alignvar_edge.cli import main\n"
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_host_verbs_are_listed_on_a_device_and_say_in_one_line_what_they_need(tmp_path) -> None:
    # `quantize` once vanished from a device install's verbs ("invalid choice"), as its --method
    # choices came from a module that imports onnx at its top
    for verb, *args in (("quantize", str(tmp_path)), ("export", "--out", str(tmp_path / "x"))):
        out = _device_cli(verb, *args)
        assert out.returncode == 3, out.stderr
        assert out.stderr.startswith(f"alignvar-edge {verb}: error: this verb needs ")
        assert "install the host tools: `pip install --extra-index-url https://download.pytorch.org/whl/cpu 'torch>=" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_plot_without_matplotlib_is_one_line_and_writes_nothing(tmp_path) -> None:
    # `bench merge --plot` on a device install: a ModuleNotFoundError traceback, after --out was written
    report = str(Path(__file__).resolve().parent.parent / "docs/results/epyc-2core/tiny-t1.json")
    out = _device_cli("bench", "merge", report, "--out", str(tmp_path / "m.json"), "--plot", str(tmp_path / "m.png"))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("alignvar-edge bench merge: error: --plot needs matplotlib, which is not installed "
                                  "here: pip install matplotlib (the host extra has it), or leave out --plot")
    assert list(tmp_path.iterdir()) == []


def test_every_verb_describes_itself() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    for verb, p in sub.choices.items():
        assert p.description and len(p.description) > 40, f"`alignvar-edge {verb} --help` has no description"
        # a positional argument's help is all `--help` says of what to pass (`eval CHECKPOINT` had none)
        bare = [a.dest for a in p._actions if not a.option_strings and not a.help]
        assert bare == [], f"`alignvar-edge {verb} --help` says nothing of {bare}"


def test_export_is_callable_as_the_api_says(tmp_path) -> None:
    from alignvar_edge import AlignVAR, AlignVARConfig, export, load

    torch.manual_seed(0)
    out = export(AlignVAR(AlignVARConfig.from_preset("micro")), tmp_path / "micro", n_tiles=1)
    with load(out) as engine:
        sr = engine.upscale((torch.rand(12, 10, 3) * 255).byte().numpy())
    assert sr.shape == (48, 40, 3) and sr.dtype.name == "uint8"


def test_save_pretrained_into_an_existing_empty_folder(tmp_path) -> None:
    from alignvar_edge import AlignVAR, AlignVARConfig

    torch.manual_seed(0)
    model = AlignVAR(AlignVARConfig.from_preset("micro"))
    (tmp_path / "empty").mkdir()
    model.save_pretrained(str(tmp_path / "empty"))
    assert (tmp_path / "empty" / "model.safetensors").is_file()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        model.save_pretrained(str(tmp_path / "full"))
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_inspect_of_an_export_on_a_device_verifies_it_and_says_what_needs_onnx(tmp_path) -> None:
    # a Jetson given a TensorRT kit (an export with build files) could not inspect it at all
    from alignvar_edge import AlignVAR, AlignVARConfig, export

    torch.manual_seed(0)
    out = export(AlignVAR(AlignVARConfig.from_preset("micro")), tmp_path / "micro", n_tiles=1)
    r = _device_cli("inspect", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("verdict    OK: ")
    assert "== model.onnx: " in r.stdout and "ops and lints need the onnx package" in r.stdout
    assert "inputs   lr float32[16,3,8,8]" in r.stdout and "lint " not in r.stdout
    (out / "model.onnx").write_bytes((out / "model.onnx").read_bytes()[:-1])     # still verified first
    bad = _device_cli("inspect", str(out))
    assert bad.returncode != 0 and "model.onnx does not match" in bad.stderr


@pytest.mark.parametrize("as_path", [False, True])
def test_a_path_with_an_unexpanded_tilde_says_so_and_names_the_expanded_path(tmp_path, monkeypatch, as_path) -> None:
    """load('~/engines/e') said "'~/engines/e' is not a directory" where the folder exists: the API
    takes paths as they are (as open() does), and says so with the path to pass."""
    from alignvar_edge import InputError, build, load
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "engines" / "e").mkdir(parents=True)
    given = Path("~/engines/e") if as_path else "~/engines/e"
    for call in (load, lambda p: build(p, "onnxruntime")):
        with pytest.raises(InputError, match="'~' is not expanded") as e:
            call(given)
        assert f"pass '{tmp_path}/engines/e'" in str(e.value)
    assert not Path("~").exists()                    # nothing made in the working folder either
