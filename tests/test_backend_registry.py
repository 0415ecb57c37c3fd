"""What a backend is and can do is declared in one place (the recipe table, and its `Backend` class),
and every verb reads that: a new target is fully supported or the tests say what it lacks."""
from __future__ import annotations

from pathlib import Path

import pytest

from _runtime_fixtures import add_backend, sharp_model
from alignvar_edge import recipes, runtimes
from alignvar_edge.errors import ArtifactError, InputError
from alignvar_edge.runtimes.onnxruntime import OrtBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = Path(__file__).resolve().parent.parent / "docs"


class Xnnpack(OrtBackend):
    """A target as a contributor prototyped it: ONNX Runtime with another execution provider."""
    name = "xnnpack"


def test_the_backends_that_open_an_export_are_one_list_for_the_check_and_its_words(micro_export, monkeypatch):
    """runtimes.check_backend let OpenVINO open an export by its name and said "onnxruntime or openvino"
    in a second spelling: a backend added to one was missing from the other."""
    monkeypatch.setattr(recipes, "EXPORT_READERS", ("onnxruntime",))
    with pytest.raises(InputError) as refused:
        runtimes.check_backend(micro_export, "openvino")
    assert str(refused.value) == (f"{micro_export} is an ONNX export, which runs on onnxruntime, not on openvino: use "
                                  "that (or auto), or build an engine for openvino from it "
                                  f"(`alignvar-edge build {micro_export} --target openvino`)")
    runtimes.check_backend(micro_export, "onnxruntime")


@pytest.mark.parametrize("backend", ["tensorrt", "coreml"])
def test_the_reliability_page_quotes_the_refusal_of_an_export_as_the_code_words_it(micro_export, backend):
    with pytest.raises(InputError) as refused:
        runtimes.check_backend(micro_export, backend)
    said = str(refused.value).replace(str(micro_export), "export/")
    assert f"`` {said} `` (exit 2)" in (DOCS / "reliability.md").read_text()      # `` ``: it holds a command in ` `


def test_a_backend_on_onnx_runtime_checks_its_build_against_onnx_runtime_itself(micro_export, tmp_path):
    """OrtBackend.build loaded its parity reference with `self.load`: a backend built on it (ONNX Runtime
    with another execution provider) checked its engine against itself, under its own name."""
    opened = []

    class OnOrt(OrtBackend):
        def open(self, engine_dir, device=None, **opts):
            opened.append(Path(engine_dir))
            return super().open(engine_dir, device, **opts)

    OnOrt().build(micro_export, tmp_path / "engine")
    assert opened == []


def test_bench_gives_an_engine_the_threads_and_spin_its_backend_declares(micro_export, monkeypatch):
    """bench and deploy passed --threads to the backends named onnxruntime and openvino only: an engine of
    ONNX Runtime with another execution provider ran on every core while the report said 1 thread."""
    from alignvar_edge.bench.subjects import open_subject, parse_spec
    add_backend(monkeypatch, "xnnpack", backend=Xnnpack(), reads_exports=True)
    sub = open_subject(parse_spec(f"xnnpack:{micro_export}"), threads=1, spin=False)
    try:
        assert sub.status == "ok", sub.reason
        assert sub.engine.options["threads"] == 1 and sub.engine.options["spin"] is False
    finally:
        if sub.engine is not None:
            sub.engine.close()


def test_help_and_refusals_list_the_backends_the_table_and_backends_declare(monkeypatch, capsys):
    """deploy --targets, bench's ENGINE and selftest --threads' refusal listed backends by hand: a new
    one was missing from each until someone found the list (as deploy --precision's was, once)."""
    from alignvar_edge.cli import build_parser, main
    add_backend(monkeypatch, "xnnpack", (recipes._row("xnnpack", "fp32", recipes.EXPORT),), backend=Xnnpack())
    verbs = next(a for a in build_parser()._actions if a.dest == "verb").choices
    deploy_help, bench_help = (" ".join(verbs[v].format_help().split()) for v in ("deploy", "bench"))
    assert "comma list of onnxruntime,openvino,tensorrt,coreml,xnnpack (default: auto)" in deploy_help
    assert "unless given: torch, onnxruntime, openvino, tensorrt, coreml, xnnpack)" in bench_help
    assert main(["selftest", "--backend", "tensorrt", "--threads", "1"]) == 2
    assert ("--threads applies to engines whose backend takes a thread count (torch, onnxruntime, openvino, "
            "xnnpack); ") in capsys.readouterr().err



def test_merge_names_the_runtime_a_new_backends_rows_ran_on(monkeypatch):
    """bench merge's runtime of each backend was a hand copy of the Backends' distributions: the rows of
    a backend missing from it were merged without their runtime's version."""
    from alignvar_edge.bench.merge import runtime_versions
    add_backend(monkeypatch, "xnnpack", backend=Xnnpack())
    report = {"host": {"backends": {"xnnpack": {"version": "1.32.0"}}},
              "engines": [{"backend": "xnnpack", "status": "ok"}]}
    assert runtime_versions(report) == {"onnxruntime": "1.32.0"}


# backends whose engines take no thread count, and why: every other one runs on bench's and deploy's --threads
NO_THREADS = {"tensorrt": "it runs on a GPU (or DLA)", "coreml": "Core ML schedules its compute units itself"}


def _story_row(module: str) -> str:
    """Where docs/architecture.md's table of backends names the code of a runtime module."""
    return f"`runtimes/{module.split('.')[0]}/`" if "." in module else f"`runtimes/{module}.py`"


def _missing(name: str) -> list[str]:
    """What the backend `name` of the recipe table lacks, each with where to add it."""
    if name not in runtimes.MODULES:
        return ["its runtime: the module holding its `BACKEND`, named in runtimes.MODULES "
                "(alignvar_edge/runtimes/__init__.py)"]
    b, missing = runtimes.get_backend(name), []
    if b.name != name:
        missing.append(f"its name: {type(b).__name__}.name is {b.name!r}")
    if not (b.module and b.distribution):
        missing.append("the package it imports and the distribution that versions it (Backend.module, distribution)")
    rows = [r for r in recipes.RECIPES.values() if r.backend == name]
    if (name, recipes.default_precision(name)) not in recipes.RECIPES:
        missing.append(f"its rows in recipes._TABLE, one for its default precision "
                       f"({recipes.default_precision(name)}; recipes._DEFAULT sets another)")
    if "threads" not in b.load_options and (name not in NO_THREADS or any("threads" in r.options for r in rows)):
        missing.append("a thread count: 'threads' in its Backend's load_options (bench and deploy time every engine "
                       "on --threads; build --threads records it), or an entry in NO_THREADS here saying why not")
    stories = (DOCS / "architecture.md").read_text().split("## Where each backend's story lives", 1)[1]
    if _story_row(runtimes.MODULES[name]) not in stories.split("\n## ", 1)[0]:
        missing.append(f"its row in docs/architecture.md's 'Where each backend's story lives' "
                       f"({_story_row(runtimes.MODULES[name])})")
    return missing


def test_every_backend_in_the_table_has_everything_a_backend_needs():
    assert {b: m for b in recipes.BACKENDS if (m := _missing(b))} == {}


def test_a_backend_added_in_part_is_told_what_it_lacks(monkeypatch, capsys):
    """The prototype's first run: a name in the table without its runtime made doctor crash with a KeyError
    traceback; with its runtime, what it still lacks is named."""
    from alignvar_edge.cli import main
    monkeypatch.setattr(recipes, "BACKENDS", (*recipes.BACKENDS, "xnnpack"))
    monkeypatch.setattr(runtimes, "BACKENDS", recipes.BACKENDS)
    assert _missing("xnnpack") == ["its runtime: the module holding its `BACKEND`, named in runtimes.MODULES "
                                   "(alignvar_edge/runtimes/__init__.py)"]
    assert main(["doctor"]) == 3
    assert capsys.readouterr().err == ("alignvar-edge doctor: error: xnnpack is not usable here: this alignvar-edge "
                                       "has no runtime module for it (alignvar_edge.runtimes.MODULES names none)\n")

    class Threadless(Xnnpack):
        load_options = frozenset()
    add_backend(monkeypatch, "xnnpack", backend=Threadless())
    said = _missing("xnnpack")
    assert len(said) == 3, said
    assert said[0].startswith("its rows in recipes._TABLE, one for its default precision (fp32;")
    assert said[1].startswith("a thread count: 'threads' in its Backend's load_options")
    assert said[2].endswith("'Where each backend's story lives' (`runtimes/test_backend_xnnpack.py`)")


@pytest.mark.parametrize("backend", recipes.BACKENDS)
def test_a_tampered_engine_of_every_backend_is_refused(backend, micro_export, tmp_path):
    """Each backend's own `open` is held to the manifest's hashes (a prototype's open that read its
    manifest unverified ran an edited engine), not only the backends a list named."""
    import shutil
    b = runtimes.get_backend(backend)
    for usable, why in (b.can_build(), b.can_load()):
        if not usable:
            pytest.skip(f"{backend} engines cannot be built and loaded here: {why}")
    source = micro_export
    if recipes.recipe(backend).source == recipes.CHECKPOINT:
        source = tmp_path / "micro"
        sharp_model("micro").save_pretrained(str(source))
    built = runtimes.build(source, backend, out=tmp_path / "engine")
    copy = shutil.copytree(built, tmp_path / "copy")      # a copy: an engine's graph may be a hard link to the export
    weights = max((p for p in copy.rglob("*") if p.is_file() and p.name != "manifest.json"),
                  key=lambda p: p.stat().st_size)
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ArtifactError, match="SHA-256"):
        runtimes.load(copy)


def test_build_device_help_names_every_openvino_device_kind_without_importing_openvino():
    """build --device's help listed OpenVINO's devices by hand (CPU|GPU|NPU|AUTO): MULTI and HETERO,
    which a build takes, were missing."""
    import subprocess
    import sys
    from alignvar_edge.runtimes.openvino.devices import DEVICE_KINDS
    code = ("import sys; from alignvar_edge.cli import build_parser; "
            "h = ' '.join(build_parser().verb_parsers['build'].format_help().split()); "
            "print(h.split('openvino: ', 1)[1].split(';', 1)[0], 'openvino' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["|".join(DEVICE_KINDS), "False"]


def test_every_backends_runtime_and_every_build_tool_has_its_version_recorded():
    """manifest.TRACKED_TOOLS, the packages whose versions every manifest records, is a list of its own:
    a backend's runtime or a build tool (recipes.TOOLS) missing from it left its version unrecorded."""
    from alignvar_edge.manifest import TRACKED_TOOLS
    runtimes_ = {runtimes.get_backend(b).distribution for b in recipes.BACKENDS}
    tools = {t.module for t in recipes.TOOLS.values()}        # NNCF: its import name is its distribution's
    assert runtimes_ | tools <= set(TRACKED_TOOLS), (runtimes_ | tools) - set(TRACKED_TOOLS)
