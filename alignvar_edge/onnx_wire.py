"""Where an ONNX file keeps tensors outside itself, read from the protobuf wire format directly.

Artifact verification needs this on devices that have ONNX Runtime but not the `onnx` package, so
it walks the bytes itself: ModelProto.graph -> initializers, sparse initializers and every node
attribute's tensors and subgraphs -> TensorProto.data_location / external_data["location"]. It walks
a file front to back in blocks, never holding it whole (a graph with its weights inside is hundreds
of megabytes, and a device loads it right after), and can hand every block to a hash on the way.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

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
        if shift > 63:          # ten bytes at most: a longer run is no varint (and grew a huge int)
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one small message held in memory: ints for varints, bytes for
    length-delimited fields; the rest skipped as `_Wire.fields` skips them."""
    wire = _Wire(io.BytesIO(buf), None, len(buf))
    for field, wire_type, value in wire.fields(None):
        yield field, wire.take(value - wire.pos) if wire_type == 2 else value


def model_versions(model_bytes: bytes) -> tuple[int, dict[str, int]]:
    """(IR version, {opset domain: version}) of an ONNX file, as a runtime checks them before it
    loads it; the default domain is ''. Raises ValueError on a malformed file."""
    ir, opsets = 0, {}
    wire = _Wire(io.BytesIO(model_bytes), None, len(model_bytes))
    for field, wire_type, value in wire.fields(None):         # the graph is skipped, never copied
        if field == MODEL_IR_VERSION and wire_type == 0:
            ir = value
        elif field == MODEL_OPSET_IMPORT and wire_type == 2:
            entry = dict(_fields(wire.take(value - wire.pos)))
            domain, version = entry.get(OPSET_DOMAIN, b""), entry.get(OPSET_VERSION, 0)
            if isinstance(domain, bytes) and isinstance(version, int):
                opsets[domain.decode("utf-8", "replace")] = version
    return ir, opsets


def external_locations(model: bytes | BinaryIO, on_read: Callable[[bytes], None] | None = None) -> list[str]:
    """The `location` of every tensor stored outside the file (relative to it, as written);
    '' marks an external tensor with no location. Raises ValueError on a malformed file.

    `model`: the file's bytes, or the file open for reading, read from its start in blocks and never
    held whole: the tensors' own data is sought past, so a graph of gigabytes costs a few reads.
    `on_read`: given every block as it is read, in order, to the end of the file (nothing is sought
    past): a hash of the same read. Where it raises, the file is left where the walk stopped, for the
    caller to read the rest."""
    fh = io.BytesIO(model) if isinstance(model, bytes) else model
    # where seeking is allowed the size bounds every field; where every byte is read, a short read does
    wire = _Wire(fh, on_read, None if on_read else _size(fh))
    out: list[str] = []
    for field, wire_type, end in wire.fields(None):
        if field == MODEL_GRAPH and wire_type == 2:
            for loc in wire.graph_locations(end):
                if loc not in out:
                    out.append(loc)
    return out


def _size(fh: BinaryIO) -> int:
    """The size of the file open as `fh`, from its position on; an in-memory stream (io.BytesIO) has
    no file descriptor to ask, so its end is sought."""
    try:
        return os.fstat(fh.fileno()).st_size - fh.tell()
    except io.UnsupportedOperation:
        here = fh.tell()
        size = fh.seek(0, io.SEEK_END) - here
        fh.seek(here)
        return size


class _Wire:
    """One protobuf message read front to back from a file, in blocks: fields are walked by their
    end offsets, and a field nobody reads is skipped (sought past, or read and dropped where every
    byte must pass `on_read`)."""

    BLOCK = 1 << 20

    def __init__(self, fh: BinaryIO, on_read: Callable[[bytes], None] | None, size: int | None) -> None:
        self._fh, self._on_read, self._size = fh, on_read, size
        self._buf, self._i, self._base = b"", 0, 0      # bytes read, from file offset _base; walked up to _i

    @property
    def pos(self) -> int:
        return self._base + self._i

    def _more(self, n: int) -> bool:
        """Whether `n` more bytes are buffered after reading what the file still has (up to a block)."""
        while len(self._buf) - self._i < n:
            block = self._fh.read(max(self.BLOCK, n))
            if not block:
                return False
            if self._on_read:
                self._on_read(block)
            self._base += self._i
            self._buf, self._i = self._buf[self._i:] + block, 0
        return True

    def varint(self) -> int:
        self._more(10)          # a varint is at most 10 bytes; the file may end sooner
        value, self._i = _varint(self._buf, self._i)
        return value

    def take(self, n: int) -> bytes:
        if not self._more(n):
            raise ValueError("truncated field")
        self._i += n
        return self._buf[self._i - n:self._i]

    def skip(self, n: int) -> None:
        buffered = len(self._buf) - self._i
        if n <= buffered:
            self._i += n
            return
        self._base, self._buf, self._i, n = self.pos + buffered, b"", 0, n - buffered
        if self._on_read is None:
            self._fh.seek(n, io.SEEK_CUR)
            self._base += n
            return
        while n:
            block = self._fh.read(min(n, self.BLOCK))
            if not block:
                raise ValueError("truncated field")
            self._on_read(block)
            self._base, n = self._base + len(block), n - len(block)

    def fields(self, end: int | None) -> Iterator[tuple[int, int, int]]:
        """(field number, wire type, value) of the message that ends at offset `end` (None: at the end of
        the file): a varint's value, or a length-delimited field's end offset, its bytes next to read;
        what the caller leaves of them unread is skipped, and so are fixed-size fields and groups."""
        while self.pos < end if end is not None else self._more(1):
            tag = self.varint()
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                yield field, wire, self.varint()
            elif wire == 2:
                stop = self._stop(end)
                yield field, wire, stop
                self.skip(stop - self.pos)
            elif wire == 3:
                self._skip_group(field, end)
            else:
                self._skip_fixed(wire)
        if end is not None and self.pos != end or self._size is not None and self.pos > self._size:
            raise ValueError("truncated field")

    def _stop(self, end: int | None) -> int:
        """The end offset of the length-delimited field whose length is next to read."""
        stop = self.varint()
        stop += self.pos
        if (end is not None and stop > end) or (self._size is not None and stop > self._size):
            raise ValueError("truncated field")
        return stop

    def _skip_fixed(self, wire: int) -> None:
        if wire not in (1, 5):
            raise ValueError("an end-group tag outside any group" if wire == 4 else f"unsupported wire type {wire}")
        self.skip(8 if wire == 1 else 4)

    def _skip_group(self, field: int, end: int | None) -> None:
        """Past the group that field `field` opened (wire type 3), to its end-group tag (wire type 4),
        groups inside it included: protobuf keeps a group onnx.proto does not declare aside, so onnx and
        ONNX Runtime load the file, and the fields after it must be walked all the same."""
        open_groups = [field]
        while open_groups:
            if end is not None and self.pos >= end:
                raise ValueError(f"group {open_groups[-1]} not ended")
            tag = self.varint()
            inner, wire = tag >> 3, tag & 7
            if wire == 0:
                self.varint()
            elif wire == 2:
                self.skip(self._stop(end) - self.pos)
            elif wire == 3:
                open_groups.append(inner)
            elif wire == 4:
                if open_groups.pop() != inner:
                    raise ValueError(f"group ended by field {inner}'s end-group tag")
            else:
                self._skip_fixed(wire)

    def graph_locations(self, end: int) -> Iterator[str]:
        """The external-data location of each tensor of the GraphProto ending at `end` that keeps its
        data outside: initializers, sparse initializers, and every node attribute's tensors and subgraphs."""
        for field, wire, stop in self.fields(end):
            if wire != 2:
                continue
            if field == GRAPH_INITIALIZER:
                yield from self._tensor_location(stop)
            elif field == GRAPH_SPARSE_INITIALIZER:
                for f, w, part in self.fields(stop):
                    if f in (SPARSE_VALUES, SPARSE_INDICES) and w == 2:
                        yield from self._tensor_location(part)
            elif field == GRAPH_NODE:
                for f, w, attr in self.fields(stop):
                    if f == NODE_ATTRIBUTE and w == 2:
                        yield from self._attribute_locations(attr)

    def _attribute_locations(self, end: int) -> Iterator[str]:
        for field, wire, stop in self.fields(end):
            if field in (ATTR_T, ATTR_TENSORS) and wire == 2:
                yield from self._tensor_location(stop)
            elif field in (ATTR_G, ATTR_GRAPHS) and wire == 2:
                yield from self.graph_locations(stop)

    def _tensor_location(self, end: int) -> Iterator[str]:
        """The TensorProto ending at `end`: its location where it keeps its data outside the file."""
        external, loc = False, ""
        for field, wire, value in self.fields(end):
            if field == TENSOR_DATA_LOCATION and wire == 0 and value == EXTERNAL:
                external = True
            elif field == TENSOR_EXTERNAL_DATA and wire == 2:
                entry = dict(_fields(self.take(value - self.pos)))       # a key and a value: a few bytes
                found = entry.get(ENTRY_VALUE)
                if entry.get(ENTRY_KEY) == b"location" and isinstance(found, bytes):
                    loc = found.decode("utf-8", "replace")
        if external:
            yield loc
