"""What verifying an artifact costs a device that loads an engine in every call: an ONNX graph is
hashed and walked for the files its tensors are kept in with one read, in blocks (never held whole),
and both results are remembered in the process while the file holds, as its hash alone was.

Graphs: built here with the `onnx` package (a float initializer inside, tensors kept in other files
where a test names them), in artifact directories written as the toolkit writes them."""
from __future__ import annotations

import builtins
import hashlib
import io
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from alignvar_edge import manifest
from alignvar_edge.errors import ArtifactError
from alignvar_edge.manifest import ModelInfo, ModelSource, load_verified, new_manifest, write_manifest
from alignvar_edge.onnx_wire import external_locations
from alignvar_edge.outputs import artifact_dir

MB = 1 << 20


def _kept_in(name: str, location: str) -> TensorProto:
    """A float tensor of 4 values whose data lies in `location` (not read by anything here)."""
    t = helper.make_tensor(name, TensorProto.FLOAT, [4], [0.0] * 4)
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        t.external_data.add(key=key, value=value)
    return t


def _graph(inside_mb: int = 0, kept_in: str | None = None) -> bytes:
    """y = x + sum(w) (+ e): `w` a float initializer of `inside_mb` MB in the graph, `e` kept in `kept_in`."""
    inits = [numpy_helper.from_array(np.ones(inside_mb * MB // 4 or 4, np.float32), "w")]
    if kept_in:
        inits.append(_kept_in("e", kept_in))
    nodes = [helper.make_node("ReduceSum", ["w"], ["s"], keepdims=0), helper.make_node("Add", ["x", "s"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], inits)
    return helper.make_model(g).SerializeToString()


def _artifact(root: Path, graph: bytes, data: str | None = None) -> Path:
    """An ONNX artifact holding `graph` as model.onnx (and a file `data` beside it), its manifest as
    `export` writes one."""
    with artifact_dir(root) as tmp:
        (tmp / "model.onnx").write_bytes(graph)
        if data:
            (tmp / data).write_bytes(bytes(16))
        write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", _INFO,
                                         graphs={"model": {"file": "model.onnx", "inputs": [], "outputs": []}}))
    return root


_INFO = ModelInfo(name="micro-random", source=ModelSource.preset("micro", 0),
                  config={"name": "micro", "patch_nums": [1, 2, 4], "scale": 4, "hr_size": 32}, scale_schedule=(1, 2, 4))


def _opens_of(name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time a file called `name` is opened (by open() or pathlib), its mode."""
    opened: list[str] = []
    real = builtins.open

    def counted(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if Path(str(file)).name == name:
            opened.append(mode)
        return real(file, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", counted)
    monkeypatch.setattr(io, "open", counted)
    return opened


def test_verifying_a_graph_holds_no_copy_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk for external data read the whole graph into memory and copied its graph field out of
    it (twice its size: 347 MB for a 164 MB engine, whose hash alone takes 37 MB); it reads in blocks now."""
    art = _artifact(tmp_path / "a", _graph(inside_mb=24))
    monkeypatch.setattr(manifest, "_SETTLED_NS", 10**30)          # nothing remembered: a full read each time
    tracemalloc.start()
    try:
        load_verified(art)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * MB, f"verifying a 24 MB graph peaked at {peak / MB:.1f} MB"


def test_a_graph_is_hashed_and_walked_in_one_read_remembered_until_it_is_edited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash was remembered in the process, the walk was not (a second load of a 164 MB engine took
    0.55 s), and the two were separate reads, so a graph swapped between them was walked unhashed.
    Now one read does both and is remembered; an edit in place is read and walked again."""
    art = _artifact(tmp_path / "a", _graph(kept_in="model.onnx.data"), data="model.onnx.data")
    monkeypatch.setattr(manifest, "_SETTLED_NS", 0)              # written just now: remembered at once here
    opened = _opens_of("model.onnx", monkeypatch)
    for _ in range(3):
        assert "model.onnx.data" in load_verified(art).files
    assert opened == ["rb"]
    # the same size, pointing outside; the manifest re-made to match: the edit is walked, and refused
    edited = _graph(kept_in="../outside.data")
    assert len(edited) == len(_graph(kept_in="model.onnx.data"))
    (art / "model.onnx").write_bytes(edited)
    write_manifest(art, manifest.read_manifest(art))
    opened.clear()
    for _ in range(2):
        with pytest.raises(ArtifactError, match="model.onnx keeps tensors in '../outside.data', outside the artifact"):
            load_verified(art)
    assert opened == ["rb"]            # hashed again with its walk (write_manifest hashed it alone), remembered


def _subgraph_model() -> tuple[bytes, list[str]]:
    """A graph keeping tensors in other files from every place a TensorProto can sit: a Constant's
    attribute, an If's branch (a subgraph's initializer), initializers (two in one file), a sparse
    initializer's values; with the locations in the order the file holds them (nodes come first)."""
    branch = helper.make_graph([helper.make_node("Identity", ["b"], ["o"])], "then", [],
                               [helper.make_tensor_value_info("o", TensorProto.FLOAT, [4])], [_kept_in("b", "branch.bin")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["o2"])], "else", [],
                              [helper.make_tensor_value_info("o2", TensorProto.FLOAT, [4])])
    nodes = [helper.make_node("Constant", [], ["c"], value=_kept_in("c", "attr.bin")),
             helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=other)]
    sparse = helper.make_sparse_tensor(_kept_in("sv", "sparse.bin"),
                                       numpy_helper.from_array(np.arange(4, dtype=np.int64), "si"), [8])
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                                       helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])],
                          [_kept_in("i", "init.bin"), _kept_in("i2", "init.bin")], sparse_initializer=[sparse])
    return helper.make_model(g).SerializeToString(), ["attr.bin", "branch.bin", "init.bin", "sparse.bin"]


def test_the_walk_from_a_file_finds_what_the_walk_of_its_bytes_finds(tmp_path: Path) -> None:
    """The file is read front to back in blocks, its tensors' data sought past (or, where a hash takes
    every byte, read and handed on): the same locations as from the bytes, and the hash of the file."""
    data, expected = _subgraph_model()
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    assert external_locations(data) == expected
    with open(path, "rb") as fh:
        assert external_locations(fh) == expected
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        assert external_locations(fh, on_read=h.update) == expected
        h.update(fh.read())
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("cut", [1, 3, 40])
def test_a_graph_cut_short_is_malformed_read_any_way(tmp_path: Path, cut: int) -> None:
    data = _subgraph_model()[0][:-cut]
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        external_locations(data)
    for on_read in (None, hashlib.sha256().update):
        with open(path, "rb") as fh, pytest.raises(ValueError):
            external_locations(fh, on_read=on_read)


def _varint(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
    return out + bytes([n])


def _group(field: int, inner: bytes = b"") -> bytes:
    """A protobuf group (wire types 3 and 4) of field `field`: onnx.proto has none, and protobuf,
    onnx and ONNX Runtime skip it as an unknown field."""
    return _varint(field << 3 | 3) + inner + _varint(field << 3 | 4)


# a varint, a string and a group inside a group
_NESTED = _varint(1 << 3) + _varint(5) + _varint(2 << 3 | 2) + _varint(2) + b"ab" + _group(3, _varint(1 << 3) + b"\x01")


def test_a_graph_behind_a_group_field_is_walked_and_refused(tmp_path: Path) -> None:
    """A protobuf group made the walk stop with 'unsupported wire type', which verification took for
    'keeps no tensors outside': a graph reading '../outside.data' verified once a group was appended."""
    graph = _graph(kept_in="../outside.data") + _group(100, _NESTED)
    (tmp_path / "outside.data").write_bytes(bytes(16))
    with pytest.raises(ArtifactError, match="model.onnx keeps tensors in '../outside.data', outside the artifact"):
        load_verified(_artifact(tmp_path / "a", graph))


def test_a_harmless_group_field_verifies(tmp_path: Path) -> None:
    graph = _group(100, _NESTED) + _graph(kept_in="model.onnx.data") + _group(101)
    assert external_locations(graph) == ["model.onnx.data"]
    assert "model.onnx.data" in load_verified(_artifact(tmp_path / "a", graph, data="model.onnx.data")).files


@pytest.mark.parametrize("tail", [_varint(100 << 3 | 3), _varint(5 << 3 | 4), _group(100)[:-1] + _varint(101 << 3 | 4)],
                         ids=["group never ended", "end of no group", "ended by another field"])
def test_a_group_protobuf_refuses_is_malformed(tail: bytes) -> None:
    with pytest.raises(ValueError):
        external_locations(_graph() + tail)


def test_a_graph_in_memory_is_walked_as_its_bytes() -> None:
    """io.BytesIO has no file descriptor to take its size from: it was 'malformed'."""
    data, expected = _subgraph_model()
    assert external_locations(io.BytesIO(data)) == expected


@pytest.mark.parametrize("content", [b"\xff" * 64, _graph()[:-3]], ids=["garbage", "cut short"])
def test_a_listed_graph_that_is_no_onnx_graph_fails_in_one_line(tmp_path: Path, content: bytes) -> None:
    """Such a graph, listed with its own SHA-256, verified without any check of where it keeps tensors."""
    art = _artifact(tmp_path / "a", content)
    with pytest.raises(ArtifactError) as e:
        load_verified(art)
    message = str(e.value)
    assert "\n" not in message
    assert "model.onnx cannot be read as an ONNX graph: " in message
    assert "re-run the `alignvar-edge export` that made it with `--out" in message


def test_an_artifact_inside_a_deploy_output_is_walked_in_the_outputs_one_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine inside a deploy output was compared with the digests the output's read checked, then
    its graph walked in a second read, unhashed, where no walk was remembered (a file written in the
    last 2 s, or on FAT): a graph swapped between the two was walked unproven. The output's read,
    walk included, is handed to each artifact inside it."""
    out = tmp_path / "out"
    _artifact(out / "engines" / "a", _graph(kept_in="model.onnx.data"), data="model.onnx.data")
    write_manifest(out, new_manifest("deploy", "onnx", "single", "fp32", _INFO))
    monkeypatch.setattr(manifest, "_SETTLED_NS", 10**30)          # nothing remembered
    opened = _opens_of("model.onnx", monkeypatch)
    parts = manifest.load_verified_parts(out)[1]
    assert "model.onnx.data" in parts["engines/a"].files
    assert opened == ["rb"]
