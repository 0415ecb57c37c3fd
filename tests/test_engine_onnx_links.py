"""Engine directories hold the ONNX they run or rebuild from as a hard link to their export's where
the file system allows (`runtimes.artifacts.link_onnx`), else as a copy: ONNX Runtime's engines as
TensorRT's kits and engines (tests/test_runtimes_tensorrt.py)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from _graph_bytes import stand_in_graph
from _runtime_fixtures import cache_root, export_dir, sharp_model, with_external_weights
from alignvar_edge import runtimes
from alignvar_edge.manifest import load_verified

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRAPH_FILES = ("model.onnx", "model.onnx.data")


@pytest.fixture(scope="module")
def external(pytestconfig, tmp_path_factory) -> Path:
    """A write-protected export whose weights live in model.onnx.data (a user's, or a large preset's)."""
    ext = with_external_weights(export_dir(sharp_model("micro"), cache_root(pytestconfig)),
                                tmp_path_factory.mktemp("export") / "ext")
    for name in GRAPH_FILES:
        (ext / name).chmod(0o444)
    return ext


def _same_outputs(engine_dir: Path, export: Path) -> None:
    """The engine directory verifies and runs as its export does."""
    load_verified(engine_dir)
    lr = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    with runtimes.load(engine_dir, threads=1) as engine, runtimes.load(export, threads=1) as source:
        (sr, tokens), (want_sr, want_tokens) = engine.run(lr), source.run(lr)
    assert np.array_equal(sr, want_sr) and all(np.array_equal(a, b) for a, b in zip(tokens, want_tokens))


def test_an_onnxruntime_engine_links_its_exports_onnx_and_its_external_data(external, tmp_path):
    out = runtimes.build(external, "onnxruntime", out=tmp_path / "ort", threads=1)
    m = load_verified(out)
    linked = {m.engine_file: "model.onnx", "model.onnx.data": "model.onnx.data"}     # the engine file keeps its name
    for mine, theirs in linked.items():
        assert os.path.samefile(out / mine, external / theirs), mine
        # publishing the engine dir left the shared file's mode, the export's, as it was
        assert (external / theirs).stat().st_mode & 0o777 == 0o444, theirs
    # the graph's files only: none of the export's other files (its README, its golden outputs as files)
    assert not [f for f in os.listdir(out) if f.endswith(".onnx") and f != m.engine_file]
    _same_outputs(out, external)


def test_an_onnxruntime_engine_on_another_file_system_copies_its_onnx(external):
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == external.stat().st_dev:
        pytest.skip("no second file system here to build across")
    with tempfile.TemporaryDirectory(dir=other) as d:
        out = runtimes.build(external, "onnxruntime", out=Path(d) / "ort", threads=1)
        for name in GRAPH_FILES:
            assert not os.path.samefile(out / name, external / name), name
            assert (out / name).read_bytes() == (external / name).read_bytes(), name
        _same_outputs(out, external)


def test_the_data_files_linked_are_the_ones_the_manifest_lists_the_graph_is_not_read(external, tmp_path):
    """link_onnx read the whole graph (up to 2 GiB with its weights inside) and parsed it to find
    its data files, which the artifact's verified manifest lists: a graph it could not parse was an
    error, though linking needs none of its content (here a graph naming no data file at all)."""
    import shutil

    from alignvar_edge.manifest import read_manifest, write_manifest
    from alignvar_edge.runtimes.artifacts import link_onnx
    art = tmp_path / "art"
    shutil.copytree(external, art)
    (art / "model.onnx").chmod(0o644)
    (art / "model.onnx").write_bytes(stand_in_graph("not an onnx graph"))
    write_manifest(art, read_manifest(art))
    dest = tmp_path / "dest"
    dest.mkdir()
    assert link_onnx(art / "model.onnx", dest, "model.onnx", load_verified(art)) == ["model.onnx.data"]
    assert sorted(os.listdir(dest)) == list(GRAPH_FILES)
    assert all(os.path.samefile(dest / f, art / f) for f in GRAPH_FILES)
