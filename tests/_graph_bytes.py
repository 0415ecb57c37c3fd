"""An .onnx file's bytes for tests where the graph itself does not matter (hashes, copies, folders)."""
from __future__ import annotations

_DOC_STRING_TAG = b"\x32"          # ModelProto field 6 (doc_string), length-delimited


def stand_in_graph(text: str | bytes) -> bytes:
    """A ModelProto holding `text` as its doc_string and nothing else: verification reads it as an
    ONNX graph (it refuses a file that is none), no runtime can run it. Texts of one length give
    files of one length."""
    data = text.encode() if isinstance(text, str) else text
    n, length = len(data), b""
    while n > 0x7F:
        length, n = length + bytes([n & 0x7F | 0x80]), n >> 7
    return _DOC_STRING_TAG + length + bytes([n]) + data
