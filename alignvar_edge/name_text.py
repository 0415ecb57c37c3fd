"""File names as bytes (for a digest), as text (for what users read), as a word of a command (for
what users paste), and a path argument given as bytes (`path_text`).

Python holds a file name whose bytes its locale cannot decode with surrogate escapes: `caf\\xe9.png`
(Latin-1) becomes 'caf\\udce9.png', and under LC_ALL=C without UTF-8 mode every non-ASCII name does
('Büro' is 'B\\udcc3\\udcbcro'). Such a str cannot be encoded as UTF-8: hashing it with `.encode()`
raised, and so did every file (a Markdown report, a plot's text, JSON a strict reader reads) written
with it. Here the escapes go back to the bytes they stand for, read as UTF-8: a name reads and
hashes the same under a UTF-8 locale and under LC_ALL=C, and an ordinary name is unchanged.

In a line of text (a progress line, a summary, a table, a message) a name is `line_text`: `readable`,
and its control characters as visible escapes too, so a name with a newline in it stays on its
event's one line and an ESC in a name cannot drive the terminal. JSON escapes control characters
itself (`"new\\nline.png"`, the same spelling), so what it holds is `readable` alone.
"""
from __future__ import annotations

import os
import shlex
import sys
import unicodedata
from pathlib import PurePath
from typing import Any, TypeAlias

__all__ = ["PathArg", "line_text", "name_bytes", "path_text", "readable", "readable_texts", "shell_word"]

# a path as Python's `open` takes it: bytes too, what os.listdir(b'...') gives (`path_text`)
PathArg: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def name_bytes(name: str) -> bytes:
    """The bytes `name` stands for: its UTF-8, each surrogate escape back as the byte it holds.
    An ordinary name gives its UTF-8 (the digests recorded before are kept), and a name read from
    disk its bytes there under a UTF-8 or C locale alike. A lone surrogate that escapes no byte
    (one half of a pair, from someone's JSON) is kept as its own three bytes."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def readable(text: str, *, one_line: bool = False) -> str:
    """`text` as a user reads it: unchanged unless it holds surrogate escapes; then their bytes are
    read as UTF-8 where they are UTF-8 (under LC_ALL=C 'B\\udcc3\\udcbcro' is 'Büro'), and a byte
    that is not shows as a visible escape ('caf\\udce9.png' is 'caf\\xe9.png'), so names that differ
    in a byte read apart (a name typed with a backslash escape in it aside). `one_line`: each control
    character too, as Python spells it ('new\\nline.png', 'a\\x1b[31m.png'): what a line of text needs."""
    if not text.isascii() and any("\ud800" <= c <= "\udfff" for c in text):
        text = name_bytes(text).decode("utf-8", "backslashreplace")
    if one_line and not text.isprintable():
        text = "".join(_visible_control(c) for c in text)
    return text


def line_text(path: PathArg) -> str:
    """A file name or path, or a line that names them, as a line on the console shows it (progress,
    summaries, tables, messages): `readable` in one line. Bytes are taken as `path_text` takes them.
    Where the file system's encoding is not UTF-8 (LC_ALL=C), a UTF-8 name is kept in its surrogate
    escapes, which the console writes as its bytes (console_text): as readable text it would be '?'.
    Text that held no escapes is left to the console's own spelling: under a Latin-1 locale its
    UTF-8 bytes read back as other letters ('é' as 'Ã©') and C1 controls."""
    text = path_text(path)
    shown = readable(text, one_line=True)
    if text.isascii() or not any("\udc80" <= c <= "\udcff" for c in text):
        return shown
    return os.fsdecode(shown.encode("utf-8"))


def _visible_control(char: str) -> str:
    """`char` as it is, or a control (C0, DEL, C1) or a line or paragraph separator (what ends a
    line or drives a terminal) as its backslash escape."""
    if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
        return char.encode("unicode_escape").decode("ascii")
    return char


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


def path_text(path: PathArg) -> str:
    """`path` as the str Python names its file by. Bytes, the lossless form of a name in another
    encoding (what os.listdir(b'...') gives), are decoded as the file system's with surrogate
    escapes (os.fsdecode), so the same file is opened: the public functions that take a path take
    bytes as Python's `open` does, and say the path as text."""
    return os.fsdecode(path)


def shell_word(path: str | os.PathLike[str]) -> str:
    """`path` as one word of a command a message suggests, to paste into a shell as it is printed:
    quoted where it needs it ('art/int8 ü' in single quotes, `shlex.quote`), unchanged where it does not.
    A character the console may not show as the file system names it (a byte of another encoding,
    a surrogate escape; a control character; 'ü' on a console whose encoding is not the file
    system's) is written as the escapes of its bytes in $'...' quotes ($'caf\\xe9.png'), which bash,
    zsh and ksh turn back into those bytes: never a '?' or a readable '\\xe9' that names another file."""
    text = os.fspath(path)
    console = _console_encoding()
    if all(_shown(c, console) for c in text):
        return shlex.quote(text)
    return "$'" + "".join(_ansi_c(c, console) for c in text) + "'"


def _console_encoding() -> str:
    stream = sys.stderr or sys.stdout          # messages are said on stderr, results printed on stdout
    return getattr(stream, "encoding", None) or "utf-8"


def _fs_bytes(char: str) -> bytes:
    """The bytes the file system names `char` by (`name_bytes` where its encoding has none)."""
    try:
        return os.fsencode(char)
    except UnicodeEncodeError:
        return name_bytes(char)


def _shown(char: str, console: str) -> bool:
    """Whether `char` printed on the console pastes back as the bytes the file system names it by."""
    if not char.isprintable():              # controls, surrogate escapes, invisible separators
        return False
    try:
        return char.encode(console) == _fs_bytes(char)
    except (UnicodeEncodeError, LookupError):
        return False


def _ansi_c(char: str, console: str) -> str:
    """`char` inside $'...': as it is where shown, its bytes as \\xNN escapes where not."""
    if char in "\\'":
        return "\\" + char
    return char if _shown(char, console) else "".join(f"\\x{b:02x}" for b in _fs_bytes(char))
