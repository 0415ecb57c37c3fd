"""Text on a console whose encoding cannot show it: a legacy locale (Latin-1, or ASCII under
LC_ALL=C without Python's UTF-8 mode) has no '–' for the reports' empty cells and no 'é' for a
path; printing one raised UnicodeEncodeError after the work was done, and the verb exited 1.

`ERRORS` is the error handler the CLI gives stdout and stderr: a file name's own bytes (Python's
surrogate escapes of a name in another encoding) are written as they are, so the name can be
pasted back; typography becomes its ASCII spelling; anything else '?'.
"""
from __future__ import annotations

import codecs
import io
from typing import TextIO

__all__ = ["ERRORS", "tolerant"]

ERRORS = "alignvar-edge-console"

_ASCII = {"–": "-", "—": "-", "−": "-", "×": "x", "…": "...", "≥": ">=", "≤": "<=", "→": "->", "←": "<-",
          "’": "'", "‘": "'", "“": '"', "”": '"', "·": ".", "²": "^2", "³": "^3", "µ": "u", "±": "+-",
          "°": " deg", "≈": "~"}
_ESCAPED_BYTES = range(0xDC80, 0xDD00)          # surrogateescape's stand-ins for undecodable bytes


def _console_spelling(error: UnicodeError) -> tuple[str | bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    chars = error.object[error.start:error.end]
    if "a".encode(error.encoding, "ignore") != b"a":       # UTF-16/32: no place for a name's raw bytes
        return "".join("?" if ord(c) in _ESCAPED_BYTES else _ASCII.get(c, "?") for c in chars), error.end
    out = bytearray()
    for char in chars:
        code = ord(char)
        out += bytes([code - 0xDC00]) if code in _ESCAPED_BYTES else _ASCII.get(char, "?").encode("ascii")
    return bytes(out), error.end


codecs.register_error(ERRORS, _console_spelling)


def tolerant(stream: TextIO | None) -> None:
    """Let `stream` write what its encoding lacks (see the module docstring) instead of raising."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors=ERRORS)
