"""What an installed alignvar-edge tells its user to install, read from its own metadata (it is not
on PyPI), the oldest releases it declares it works with, and what its self-test may reuse of an
earlier install's work."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from alignvar_edge import extras
from alignvar_edge.errors import HostToolsError, host_tools_error
from alignvar_edge.lazy import import_host

# requirements as setuptools writes them into METADATA, with bounds no release of ours states
FAKE_REQUIRES = ["numpy>=1.26", 'torch>=9.1; extra == "host"', 'onnxscript>=9.6; extra == "host"',
                 'openvino>=2099.1; extra == "openvino"', 'alignvar-edge[openvino]; extra == "openvino-int8"',
                 'nncf>=9.12; extra == "openvino-int8"']


ROOT = Path(__file__).resolve().parent.parent
# what scripts/check_floors.sh installs at its floors: every >= bound here is a FLOORS row or a
# NOT_MEASURED entry, and nothing without a >= bound (the script has no floor to install for it)
AT_FLOORS = ("base", "host", "device", "openvino", "openvino-int8")
# (where it is declared, package) -> the floor the code needs, and what needs it; an older release
# fails there (each measured with every other dependency at its floor: scripts/check_floors.sh).
# README's "Oldest releases" paragraph names each.
FLOORS = {
    ("base", "pillow"): ("11.1", "ImageCms.Flags, a TIFF's EXIF orientation, a JPEG output's XMP"),
    ("host", "onnx"): ("1.19", "onnx.utils.Extractor cutting the graph where its tokens end (OpenVINO builds)"),
    ("host", "onnxruntime"): ("1.27", "onnxruntime.quantization's TensorData (quantize --precision int8)"),
    ("host", "onnxscript"): ("0.6", "the exporter API of torch 2.13"),
    ("host", "tifffile"): ("2024.5.22", "imwrite(iccprofile=) (16-bit colour TIFF outputs)"),
    ("host", "onnxslim"): ("0.1.27", "slim() without onnx.mapping, which onnx 1.19 dropped (export --simplify)"),
    ("device", "onnxruntime"): ("1.18", "the exported graphs' ONNX IR version 10"),
    ("openvino", "openvino"): ("2024.4", "building and running engines (2024.x: its ops in openvino.runtime)"),
}
# bounds nobody measured a failure below; check_floors.sh installs them too. The word says why the
# bound is where it is: initial (set when the dependency came, never lowered), security (above what
# the code needs: CVE-2025-32434), inherited (the floor of a package that brings it anyway)
NOT_MEASURED = {
    ("base", "numpy"): ("1.26", "initial"),
    ("base", "safetensors"): ("0.4", "initial"),
    ("base", "tqdm"): ("4.60", "initial"),
    ("base", "packaging"): ("22", "initial"),
    ("host", "torch"): ("2.6", "security"),
    ("host", "scikit-image"): ("0.22", "initial"),
    ("host", "matplotlib"): ("3.7", "initial"),
    ("host", "threadpoolctl"): ("3.5", "inherited"),
    ("openvino-int8", "nncf"): ("2.12", "initial"),        # 2.11.0 builds int8 engines with OpenVINO 2024.4 too
}
# declared packages constraints.txt does not pin, and why
NOT_PINNED = {"tensorrt": "NVIDIA's index or JetPack, never PyPI, from which `make venv` installs the pins"}


def _declared() -> dict[str, list[Requirement]]:
    """pyproject.toml's requirements but our own extras (alignvar-edge[openvino]): the base
    install's as 'base', then each extra's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    theirs = [("base", project["dependencies"]), *project["optional-dependencies"].items()]
    return {where: [r for r in map(Requirement, reqs) if canonicalize_name(r.name) != canonicalize_name(project["name"])]
            for where, reqs in theirs}


def test_each_floor_is_the_release_the_code_needs() -> None:
    declared = _declared()
    for (where, package), (floor, needs) in FLOORS.items():
        [req] = [r for r in declared[where] if r.name == package]
        assert str(req.specifier) == f">={floor}", f"{where} {req}: {needs} needs {package}>={floor}"


def test_every_lower_bound_is_a_measured_floor_or_said_to_be_unmeasured() -> None:
    listed = {key: version for key, (version, _) in {**FLOORS, **NOT_MEASURED}.items()}
    assert not FLOORS.keys() & NOT_MEASURED.keys()
    bounds: dict[tuple[str, str], str] = {}
    for where in AT_FLOORS:
        for req in _declared()[where]:
            lower = [s.version for s in req.specifier if s.operator == ">="]
            assert lower, f"{where}'s {req} has no >= lower bound: scripts/check_floors.sh has no floor to install"
            bounds[(where, canonicalize_name(req.name))] = max(lower, key=Version)
    for key, version in bounds.items():
        assert listed.get(key) == version, (f"{key[0]} {key[1]}>={version}: measure it (a FLOORS row saying what "
                                            f"needs it, and README) or add it to NOT_MEASURED with why")
    assert bounds.keys() == listed.keys(), f"no longer declared: {sorted(listed.keys() - bounds.keys())}"


def test_the_readme_names_every_measured_floor() -> None:
    readme = (ROOT / "README.md").read_text()
    [paragraph] = re.findall(r"^Oldest releases: .*?(?=\n\n)", readme, flags=re.M | re.S)
    words = re.sub(r"\s+", "", paragraph).lower()                 # 'ONNX\nRuntime 1.18' -> 'onnxruntime1.18'
    unsaid = [f"{package} {floor}" for (_, package), (floor, _) in FLOORS.items()
              if not re.search(re.escape(f"{package}{floor}") + r"(?!\.?\d)", words)]    # not 2024.4.0
    assert not unsaid, f"README's 'Oldest releases' paragraph does not name {unsaid}"


def test_the_constraints_pin_every_declared_package_in_its_range() -> None:
    pins = {canonicalize_name(Requirement(ln).name): Requirement(ln)
            for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    assert not pins.keys() & NOT_PINNED.keys(), "pinned after all: take it out of NOT_PINNED"
    for where, reqs in _declared().items():
        for req in reqs:
            name = canonicalize_name(req.name)        # onnx_graphsurgeon==0.6.1 pins onnx-graphsurgeon
            if name in NOT_PINNED:
                continue
            assert name in pins, f"constraints.txt pins no {req.name} ({where}'s {req}): `make constraints`"
            [exact] = pins[name].specifier
            assert req.specifier.contains(exact.version), f"constraints.txt {pins[name]} is outside {where}'s {req}"


def _floors_asked(tmp_path: Path, pyproject: str) -> subprocess.CompletedProcess[str]:
    """scripts/check_floors.sh on `pyproject` up to its first pip command, which fails: a venv made
    before, whose python is this one (it has packaging) and whose pip refuses everything."""
    checkout, bin_ = tmp_path / "checkout", tmp_path / "work" / "venv" / "bin"
    (checkout / "scripts").mkdir(parents=True)
    bin_.mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "check_floors.sh", checkout / "scripts")
    (checkout / "pyproject.toml").write_text(pyproject)
    for name, body in (("python", f'exec "{sys.executable}" "$@"'), ("pip", "exit 1")):
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    return subprocess.run(["bash", str(checkout / "scripts" / "check_floors.sh"), str(tmp_path / "work")],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120)


def test_check_floors_installs_each_passs_floors_whatever_the_requirements_form(tmp_path) -> None:
    # an upper bound or the package's own extras beside the floor were skipped; the host's
    # onnxruntime>=1.27 hid the device's >=1.18, which no pass installed
    pyproject = (ROOT / "pyproject.toml").read_text()
    for plain, other_form in (('"numpy>=1.26"', '"numpy>=1.26,<9"'), ('"tifffile>=', '"tifffile[all] >= ')):
        assert plain in pyproject
        pyproject = pyproject.replace(plain, other_form)
    run = _floors_asked(tmp_path, pyproject)
    assert run.returncode == 2 and "check_floors: pip wheel failed" in run.stdout, run.stdout + run.stderr
    [host] = [ln.split(": ")[1].split() for ln in run.stdout.splitlines() if ln.startswith("host pass, floors asked: ")]
    [device] = [ln.split(": ")[1].split() for ln in run.stdout.splitlines() if ln.startswith("device pass, floors asked: ")]
    assert {"torch==2.13.0", "numpy==1.26", "tifffile==2024.5.22", "onnxruntime==1.27", "nncf==2.12"} <= set(host)
    assert {"numpy==1.26", "pillow==11.1", "onnxruntime==1.18", "openvino==2024.4"} <= set(device)
    assert not any(pin.startswith(("torch==", "onnx==", "nncf==")) for pin in device), device


def test_check_floors_refuses_a_requirement_without_a_lower_bound(tmp_path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text().replace('"safetensors>=0.4"', '"safetensors<9"')
    run = _floors_asked(tmp_path, pyproject)
    assert run.returncode == 2 and "floors asked" not in run.stdout, run.stdout
    assert run.stderr.strip().splitlines() == [
        f"check_floors: {tmp_path / 'checkout' / 'pyproject.toml'}: the base install's requirement 'safetensors<9' has "
        "no >= lower bound, so no floor to install: give it one (the oldest release that works)"], run.stderr


def _dist_info(where: Path, name: str, version: str, requires: list[str] = ()) -> None:
    d = where / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    (d / "METADATA").write_text("\n".join(lines + [f"Requires-Dist: {r}" for r in requires]) + "\n")


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Path:
    """A site folder ahead of the real one whose alignvar-edge metadata states FAKE_REQUIRES."""
    site = tmp_path / "site"
    _dist_info(site, "alignvar-edge", "0.1.0", FAKE_REQUIRES)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_install_advice_names_the_extras_own_requirements_from_the_metadata(installed) -> None:
    from alignvar_edge.runtimes.openvino.backend import BACKEND as OPENVINO
    why = OPENVINO.missing_reason(ModuleNotFoundError("No module named 'openvino'", name="openvino"))
    assert why.endswith("install it with `pip install 'openvino>=2099.1'`"), why
    # an extra that names another of ours is expanded, never sent to an index as alignvar-edge[...]
    assert extras.install_command("openvino-int8") == "`pip install 'openvino>=2099.1' 'nncf>=9.12'`"
    host = str(host_tools_error("this verb", "no_such_host_package"))
    assert ("install the host tools: `pip install --extra-index-url https://download.pytorch.org/whl/cpu "
            "'torch>=9.1' 'onnxscript>=9.6'`") in host, host
    assert "PyTorch's CPU build" in host and "alignvar-edge[" not in host + why


def test_an_extras_requirements_follow_their_markers_on_this_host(tmp_path, monkeypatch) -> None:
    here = sys.platform
    _dist_info(tmp_path, "alignvar-edge", "0.1.0", [
        'tomli>=1; python_version >= "3"',                                      # the base install's, no extra's
        f'shared>=2; (extra == "openvino" or extra == "coreml") and sys_platform == "{here}"',
        f'elsewhere>=3; extra == "openvino" and sys_platform != "{here}"',     # another host's
        'ancient>=4; extra == "openvino" and python_version < "3"',
        'wheel-at @ https://example.invalid/wheel_at-1.0-py3-none-any.whl ; extra == "openvino"',
        'torch (>=2.6); extra == "host"'])
    monkeypatch.syspath_prepend(str(tmp_path))
    assert extras.extra_requirements("openvino") == [
        "shared>=2", "wheel-at @ https://example.invalid/wheel_at-1.0-py3-none-any.whl"]
    assert extras.extra_requirements("coreml") == ["shared>=2"]
    assert extras.extra_requirements("host") == ["torch>=2.6"]
    assert extras.requirement_of("torch") == "torch>=2.6"


def test_without_metadata_the_advice_is_the_wheels_command(monkeypatch) -> None:
    # a checkout on PYTHONPATH that was never installed has no metadata to read the extra from
    monkeypatch.setattr(extras, "DISTRIBUTION", "alignvar-edge-never-installed")
    assert extras.install_command("openvino").startswith('`pip install "$(ls dist/alignvar_edge-*.whl)[openvino]"`')


def test_an_installed_host_package_missing_a_module_of_its_own_is_named_as_mismatched(installed) -> None:
    # onnxscript 0.3 lacks torch 2.13's API module; 0.1 imports onnx_ir, which is absent: both are
    # installed and too old, not missing (which would send a host to the device's advice)
    package = installed / "onnxscript"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "needs_ir.py").write_text("import onnx_ir_absent_here\n")
    _dist_info(installed, "onnxscript", "0.3.0")
    real = {name: m for name, m in sys.modules.items() if name.split(".")[0] == "onnxscript"}
    try:
        for name in real:
            del sys.modules[name]
        for module in ("onnxscript._framework_apis.torch_2_99", "onnxscript.needs_ir"):
            with pytest.raises(HostToolsError) as e:
                import_host(module, "this verb")
            text = str(e.value)
            # older than the metadata asks: said so, not guessed from the import that failed
            assert text.startswith("this verb needs onnxscript>=9.6; the installed onnxscript 0.3.0 is older: "), text
            assert text.endswith("`pip install --upgrade 'onnxscript>=9.6'`") and "device install" not in text, text
        # onnxscript calling back into other code that lacks a module of its own: not onnxscript's fault
        (installed / "callback_target.py").write_text("import absent_outside_the_host_tools\n")
        (package / "calls_back.py").write_text("import callback_target\n")
        with pytest.raises(ModuleNotFoundError) as missing:
            import_host("onnxscript.calls_back", "this verb")
        assert not isinstance(missing.value, HostToolsError)
        assert missing.value.name == "absent_outside_the_host_tools"
    finally:      # the stand-in leaves, the real onnxscript comes back for the tests after this one
        for name in [name for name in sys.modules if name.split(".")[0] == "onnxscript"]:
            del sys.modules[name]
        sys.modules.update(real)


def test_the_missing_sample_advice_reinstalls_the_installed_scikit_image(monkeypatch) -> None:
    import importlib.metadata

    from alignvar_edge import samples
    from alignvar_edge.errors import InputError
    with pytest.raises(InputError) as e:
        samples._load_sample("no-such-sample.png")
    want = f"`pip install --force-reinstall --no-deps scikit-image=={importlib.metadata.version('scikit-image')}`"
    assert want in str(e.value) and "constraints.txt" not in str(e.value), e.value
    assert "where the verb takes one (--images, --calib)" in str(e.value)


def test_the_selftests_source_digest_changes_with_the_installed_code(tmp_path) -> None:
    import alignvar_edge
    from alignvar_edge.manifest import source_digest
    other = tmp_path / "other-install" / "alignvar_edge"
    shutil.copytree(Path(alignvar_edge.__file__).parent, other, ignore=shutil.ignore_patterns("__pycache__", "pretrained"))
    source_digest.cache_clear()          # every manifest takes it: an earlier test's may be of a checkout edited since
    assert source_digest(other) == source_digest()               # the same code: the same export
    with open(other / "degrade.py", "a") as fh:                 # another commit of 0.1.0
        fh.write("\n# changed\n")
    source_digest.cache_clear()          # cached per process, where the code cannot change under it
    assert source_digest(other) != source_digest()


def test_the_selftests_own_export_is_made_once_and_then_reused(tmp_path, monkeypatch) -> None:
    from _runtime_fixtures import sharp_model
    from alignvar_edge import __version__
    from alignvar_edge.runtimes import selftest as st
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "micro"
    sharp_model("micro").save_pretrained(str(ckpt))
    out, _, cached = st.cached_export(ckpt, lambda _m: None)
    assert not cached and (out / "manifest.json").is_file()
    assert st.cached_export(ckpt, lambda _m: None)[::2] == (out, True)     # this code's own export is reused
    report = {"alignvar_edge": __version__, "backend": "onnxruntime", "host": {
        "os": "Linux", "machine": "x86_64", "cpu": "cpu", "usable_cores": 1, "python": "3.11"},
        "model": "m", "weights_sha256": "w", "precision": "fp32", "golden_tiles": 2, "export_s": 0.0,
        "export_cached": True, "export_dir": str(out), "result": "PASS"}
    assert f"export    reused from the cache ({out})" in st.format_report(report)


@pytest.fixture
def stand_in_onnxslim(installed, monkeypatch):
    """A function that installs an onnxslim of `version` whose slim() runs `body`, in place of the real one,
    under alignvar-edge metadata that asks onnxslim>=0.1.27 of the host."""
    with (next(installed.glob("alignvar_edge-*.dist-info")) / "METADATA").open("a") as metadata:
        metadata.write('Requires-Dist: onnxslim>=0.1.27; extra == "host"\n')
    for name in [name for name in sys.modules if name.split(".")[0] == "onnxslim"]:
        monkeypatch.delitem(sys.modules, name)

    def install(version: str, body: str) -> None:
        (installed / "onnxslim").mkdir()
        (installed / "onnxslim" / "__init__.py").write_text(f"def slim(path):\n    {body}\n")
        _dist_info(installed, "onnxslim", version)
    return install


def test_export_simplify_names_an_onnxslim_older_than_the_floor(stand_in_onnxslim, tmp_path) -> None:
    # onnxslim 0.1.26 and older lack slim() or import onnx.mapping: a traceback, or advice to change onnx
    from alignvar_edge.export.onnx_export import simplify_graph
    stand_in_onnxslim("0.1.26", "raise AssertionError('an old onnxslim was run')")
    with pytest.raises(HostToolsError) as e:
        simplify_graph(tmp_path / "model.onnx", external_data=False)
    assert str(e.value) == ("simplify=True needs onnxslim>=0.1.27; the installed onnxslim 0.1.26 is older: install "
                            "a newer one: `pip install --upgrade 'onnxslim>=0.1.27'`")
    assert e.value.name == "onnxslim" and e.value.exit_code == 3


def test_export_simplify_blames_onnxslim_not_onnx_for_a_module_onnxslim_imports(stand_in_onnxslim, tmp_path) -> None:
    # onnxslim 0.1.20-0.1.26 import onnx.mapping (gone from onnx 1.19): the CLI named onnx, which was fine
    from alignvar_edge.export.onnx_export import simplify_graph
    stand_in_onnxslim("0.1.27", "import onnx.mapping")
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(HostToolsError) as e:
        simplify_graph(tmp_path / "model.onnx", external_data=False)
    assert str(e.value).startswith("simplify=True needs onnxslim>=0.1.27; the installed onnxslim 0.1.27 fails to "
                                   "import a module it needs"), e.value
    assert "torch" not in str(e.value) and "onnx>" not in str(e.value) and e.value.name == "onnxslim"


def test_export_simplify_without_onnxslim_names_it(stand_in_onnxslim, tmp_path, monkeypatch) -> None:
    from alignvar_edge.export.onnx_export import simplify_graph
    monkeypatch.setitem(sys.modules, "onnxslim", None)          # not installed
    with pytest.raises(HostToolsError) as e:
        simplify_graph(tmp_path / "model.onnx", external_data=False)
    assert str(e.value).startswith("simplify=True needs onnxslim, which a device install does not have; install "
                                   "the host tools: `pip install "), e.value
    assert e.value.name == "onnxslim"


def test_export_simplify_without_onnxslim_is_refused_before_any_tracing(stand_in_onnxslim, tmp_path,
                                                                        monkeypatch) -> None:
    # the refusal came after the graphs were traced and checked: minutes on a paper-size model
    from alignvar_edge.export import onnx_export
    from alignvar_edge.export.random_model import random_model
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    monkeypatch.setattr(onnx_export, "export_graph", lambda *a, **k: pytest.fail("traced before the refusal"))
    with pytest.raises(HostToolsError) as e:
        onnx_export.export_onnx(random_model("micro", seed=0), tmp_path / "x", simplify=True)
    assert e.value.name == "onnxslim" and not (tmp_path / "x").exists()
