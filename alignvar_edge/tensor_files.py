"""safetensors files that are the same bytes for the same tensors and metadata.

safetensors writes its `__metadata__` from a Rust hash map, whose order changes from process to
process: two saves of one checkpoint, or two builds' golden outputs, differed in their SHA-256
while every tensor was equal. `sort_header` rewrites a saved file's header in place with its keys
sorted; readers find tensors by their recorded offsets, so the order means nothing to them.
"""
from __future__ import annotations

import json
import os

__all__ = ["sort_header"]

_LENGTH_BYTES = 8             # the header's length, a little-endian u64, opens the file


def sort_header(path: str | os.PathLike[str]) -> None:
    """Sort the JSON header of the safetensors file at `path`, in place (same length: the same
    characters in another order, padded as safetensors pads it)."""
    with open(path, "r+b") as f:
        length = int.from_bytes(f.read(_LENGTH_BYTES), "little")
        header = json.loads(f.read(length))
        ordered = json.dumps({k: (dict(sorted(v.items())) if k == "__metadata__" else v)
                              for k, v in sorted(header.items())}, separators=(",", ":"), ensure_ascii=False).encode()
        if len(ordered) > length:          # never: the same content, written as compactly
            raise ValueError(f"{path}: the sorted safetensors header is longer than the original")
        f.seek(_LENGTH_BYTES)
        f.write(ordered.ljust(length, b" "))
