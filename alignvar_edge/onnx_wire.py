"""Where an ONNX file keeps tensors outside itself, read from the protobuf wire format directly.

Artifact verification needs this on devices that have ONNX Runtime but not the `onnx` package, so
it walks the bytes itself: ModelProto.graph -> initializers, sparse initializers and every node
attribute's tensors and subgraphs -> TensorProto.data_location / external_data["location"].
"""
from __future__ import annotations

from collections.abc import Iterator

# field numbers of onnx.proto
MODEL_IR_VERSION, MODEL_GRAPH, MODEL_OPSET_IMPORT = 1, 7, 8
OPSET_DOMAIN, OPSET_VERSION = 1, 2
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
NODE_ATTRIBUTE = 5
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS = 5, 6, 10, 11
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: ints for varints, bytes for length-delimited."""
    i = 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield field, value
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            yield field, buf[i:i + n]
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _graph_tensors(graph: bytes) -> Iterator[bytes]:
    for field, value in _fields(graph):
        if not isinstance(value, bytes):
            continue
        if field == GRAPH_INITIALIZER:
            yield value
        elif field == GRAPH_SPARSE_INITIALIZER:
            yield from (v for f, v in _fields(value) if f in (SPARSE_VALUES, SPARSE_INDICES) and isinstance(v, bytes))
        elif field == GRAPH_NODE:
            for f, attr in _fields(value):
                if f != NODE_ATTRIBUTE or not isinstance(attr, bytes):
                    continue
                for af, av in _fields(attr):
                    if af in (ATTR_T, ATTR_TENSORS) and isinstance(av, bytes):
                        yield av
                    elif af in (ATTR_G, ATTR_GRAPHS) and isinstance(av, bytes):
                        yield from _graph_tensors(av)


def model_versions(model_bytes: bytes) -> tuple[int, dict[str, int]]:
    """(IR version, {opset domain: version}) of an ONNX file, as a runtime checks them before it
    loads it; the default domain is ''. Raises ValueError on a malformed file."""
    ir, opsets = 0, {}
    for field, value in _fields(model_bytes):
        if field == MODEL_IR_VERSION and isinstance(value, int):
            ir = value
        elif field == MODEL_OPSET_IMPORT and isinstance(value, bytes):
            entry = dict(_fields(value))
            domain, version = entry.get(OPSET_DOMAIN, b""), entry.get(OPSET_VERSION, 0)
            if isinstance(domain, bytes) and isinstance(version, int):
                opsets[domain.decode("utf-8", "replace")] = version
    return ir, opsets


def external_locations(model_bytes: bytes) -> list[str]:
    """The `location` of every tensor stored outside the file (relative to it, as written);
    '' marks an external tensor with no location. Raises ValueError on a malformed file."""
    out: list[str] = []
    for field, graph in _fields(model_bytes):
        if field != MODEL_GRAPH or not isinstance(graph, bytes):
            continue
        for tensor in _graph_tensors(graph):
            external, loc = False, ""
            for f, v in _fields(tensor):
                if f == TENSOR_DATA_LOCATION and v == EXTERNAL:
                    external = True
                elif f == TENSOR_EXTERNAL_DATA and isinstance(v, bytes):
                    entry = dict(_fields(v))
                    value = entry.get(ENTRY_VALUE)
                    if entry.get(ENTRY_KEY) == b"location" and isinstance(value, bytes):
                        loc = value.decode("utf-8", "replace")
            if external and loc not in out:
                out.append(loc)
    return out
