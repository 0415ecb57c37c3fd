"""Paths as C++ libraries open them (ONNX Runtime's sessions, the ONNX checker and shape inference).

Their Python bindings encode a path's str as UTF-8, while Python names a file by the file system's
own bytes (`os.fsencode`). The two differ for a folder named in another encoding (Python holds its
odd bytes as surrogate escapes) and for any non-ASCII name under a locale that is not UTF-8 (é is
one byte in Latin-1, two in UTF-8): the library then looks for another file, and says it does not
exist. There `native_path` gives the file through its open folder, /proc/self/fd/N/NAME, whose
bytes are the same either way.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from alignvar_edge.errors import InputError

__all__ = ["check_temp_folder", "native_path", "opened_natively"]

_FD_ALIASES = "/proc/self/fd"


def _opens_as_named(path: str) -> bool:
    """Whether a library that encodes `path` as UTF-8 reaches the file Python means by it."""
    try:
        return path.encode("utf-8") == os.fsencode(path)
    except UnicodeEncodeError:            # lone surrogates: bytes that are no UTF-8
        return False


def opened_natively(path: str | os.PathLike[str]) -> tuple[str, int | None]:
    """`path` as a str a C++ library opens, and the descriptor of the folder it goes through (None
    where `path` itself serves), which the caller closes once the library is done with the path:
    `path` itself where its UTF-8 is its file-system name, else the same file through its folder's
    descriptor. The file's own name (ours are ASCII: model.onnx) must be one the library can spell;
    files it finds beside it (external weights) are found through the same folder."""
    text = os.fspath(path)
    if _opens_as_named(text):
        return text, None
    folder, name = os.path.split(os.path.abspath(text))
    if not (_opens_as_named(name) and os.path.isdir(_FD_ALIASES)):
        raise InputError(f"{path}: this name is not UTF-8 as the file system holds it, and the ONNX libraries "
                         "open files by UTF-8 names; rename it (and any folder above it) to a UTF-8 name, "
                         "or run in a UTF-8 locale (LC_ALL=C.UTF-8)")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    return f"{_FD_ALIASES}/{fd}/{name}", fd


@contextlib.contextmanager
def native_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """`opened_natively(path)` for the duration of the block."""
    at, fd = opened_natively(path)
    try:
        yield at
    finally:
        if fd is not None:
            os.close(fd)


def check_temp_folder() -> None:
    """Refuse, before any work, a $TMPDIR the ONNX libraries cannot name: ONNX Runtime's int8
    quantizer makes its own scratch folders there and opens them by UTF-8 names."""
    temp = tempfile.gettempdir()
    if not _opens_as_named(temp):
        raise InputError(f"the temporary folder {temp} ($TMPDIR) is not named in UTF-8 as the file system holds "
                         "it, and ONNX Runtime's int8 quantization opens its scratch files there by UTF-8 names; set "
                         "TMPDIR to a folder with a UTF-8 name (`TMPDIR=DIR alignvar-edge ...`)")
