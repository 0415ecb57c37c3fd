"""ONNX models in memory vs on disk, below and above protobuf's 2 GB message limit.

Quantization keeps candidate graphs as ModelProtos and hands them to ONNX Runtime as bytes, which
is fast for the tiny model but impossible past 2 GB (a d16 export at 256 px is ~1.6 GB of fp32
weights, more once the unrolled rollout repeats some). Above `LARGE` bytes a model goes through a
temporary directory with its weights in an external-data file instead.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx

from alignvar_edge.native_paths import native_path

__all__ = ["LARGE", "is_large", "load", "save", "session_source"]

LARGE = 1_500_000_000      # well under 2 GB: the graph itself and ORT's copies need room too


def load(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """The graph at `path` with its weights, wherever they lie (beside it, under any folder name)."""
    with native_path(path) as at:         # onnx reads external weights through a C++ helper
        return onnx.load(at)


def is_large(model: onnx.ModelProto) -> bool:
    return model.ByteSize() > LARGE


def save(model: onnx.ModelProto, path: str | Path, large: bool | None = None, keep: bool = True) -> None:
    """Save as one file, or with weights in `<name>.data` beside it when the model is large.

    The caller's model is left as it was (onnx moves tensors out of the proto it saves), by saving a
    copy; keep=False where the caller is done with it: no second copy of a large model in memory."""
    path = Path(path)
    ext = is_large(model) if large is None else large
    if ext and keep:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    with native_path(path) as at:         # onnx writes external weights through a C++ helper
        onnx.save_model(model, at, save_as_external_data=ext, all_tensors_to_one_file=True,
                        location=f"{path.name}.data" if ext else None)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for t in graph.sparse_initializer:
        yield t.values
        yield t.indices
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _tensors(a.g)
            for g in a.graphs:
                yield from _tensors(g)


@contextlib.contextmanager
def session_source(model: onnx.ModelProto | str | Path) -> Iterator[bytes | str]:
    """Something `onnxruntime.InferenceSession` accepts: the path, bytes, or a temporary file."""
    if isinstance(model, (str, Path)):
        yield str(model)
    elif not is_large(model):
        yield model.SerializeToString()
    else:
        with tempfile.TemporaryDirectory(prefix="alignvar-onnx-") as tmp:
            p = Path(tmp) / "model.onnx"
            save(model, p, large=True)
            yield str(p)
