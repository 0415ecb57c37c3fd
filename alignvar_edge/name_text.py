"""File names as bytes (for a digest) and as text (for what users read).

Python holds a file name whose bytes its locale cannot decode with surrogate escapes: `caf\\xe9.png`
(Latin-1) becomes 'caf\\udce9.png', and under LC_ALL=C without UTF-8 mode every non-ASCII name does
('Büro' is 'B\\udcc3\\udcbcro'). Such a str cannot be encoded as UTF-8: hashing it with `.encode()`
raised, and so did every file (a Markdown report, a plot's text, JSON a strict reader reads) written
with it. Here the escapes go back to the bytes they stand for, read as UTF-8: a name reads and
hashes the same under a UTF-8 locale and under LC_ALL=C, and an ordinary name is unchanged.
"""
from __future__ import annotations

from pathlib import PurePath
from typing import Any

__all__ = ["name_bytes", "readable", "readable_texts"]


def name_bytes(name: str) -> bytes:
    """The bytes `name` stands for: its UTF-8, each surrogate escape back as the byte it holds.
    An ordinary name gives its UTF-8 (the digests recorded before are kept), and a name read from
    disk its bytes there under a UTF-8 or C locale alike. A lone surrogate that escapes no byte
    (one half of a pair, from someone's JSON) is kept as its own three bytes."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def readable(text: str) -> str:
    """`text` as a user reads it: unchanged unless it holds surrogate escapes; then their bytes are
    read as UTF-8 where they are UTF-8 (under LC_ALL=C 'B\\udcc3\\udcbcro' is 'Büro'), and a byte
    that is not shows as a visible escape ('caf\\udce9.png' is 'caf\\xe9.png'), so names that differ
    in a byte read apart (a name typed with a backslash escape in it aside)."""
    if text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return name_bytes(text).decode("utf-8", "backslashreplace")


def readable_texts(x: Any) -> Any:
    """`x` (dicts, lists and tuples of them, as JSON holds) with every str in it, keys included,
    `readable`, and a path as its readable str (JSON writes it as its str); anything else as it is."""
    if isinstance(x, str):
        return readable(x)
    if isinstance(x, PurePath):
        return readable(str(x))
    if isinstance(x, dict):
        return {readable_texts(k): readable_texts(v) for k, v in x.items()}
    if isinstance(x, list):
        return [readable_texts(v) for v in x]
    if isinstance(x, tuple):
        return tuple(readable_texts(v) for v in x)
    return x
