"""What a backend is and can do is declared in one place (the recipe table, and its `Backend` class),
and every verb reads that: a new target is fully supported or the tests say what it lacks."""
from __future__ import annotations

from pathlib import Path

import pytest

from _runtime_fixtures import add_backend
from alignvar_edge import recipes, runtimes
from alignvar_edge.errors import InputError
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
    with pytest.raises(InputError, match=rf"^{micro_export} is an ONNX export, which runs on onnxruntime, not on "
                                         r"openvino: use that \(or auto\)$"):
        runtimes.check_backend(micro_export, "openvino")
    runtimes.check_backend(micro_export, "onnxruntime")


@pytest.mark.parametrize("backend", ["tensorrt", "coreml"])
def test_the_reliability_page_quotes_the_refusal_of_an_export_as_the_code_words_it(micro_export, backend):
    with pytest.raises(InputError) as refused:
        runtimes.check_backend(micro_export, backend)
    said = str(refused.value).replace(str(micro_export), "export/")
    assert f"`{said}` (exit 2)" in (DOCS / "reliability.md").read_text()


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
