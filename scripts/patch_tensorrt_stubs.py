"""Make tensorrt-stubs parse for mypy (what `make venv` runs after installing them).

    python scripts/patch_tensorrt_stubs.py STUBS_DIR

tensorrt-stubs 10.13.0.35.1 is not valid Python: parameters named `in`, a required parameter after
defaulted ones, and an import of tensorrt_libs (not shipped). In Python rather than `sed -i -E`,
whose flags BSD sed (macOS) reads differently. Running it twice changes nothing.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path


def _patch(path: Path, *edits: tuple[str, str]) -> None:
    with open(path, encoding="utf-8", newline="") as f:        # the stubs' own line endings (CRLF)
        text = f.read()
    for pattern, replacement in edits:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def main() -> None:
    stubs = Path(sys.argv[1])
    _patch(stubs / "tensorrt_bindings" / "tensorrt.pyi",
           (r"\bin: list\[", "in_: list["),
           (r"power: Weights = None, channel_axis: int\)", "power: Weights = None, channel_axis: int = ...)"))
    _patch(stubs / "tensorrt" / "__init__.pyi", (r"^import tensorrt_libs as tensorrt_libs\r?\n", ""))


if __name__ == "__main__":
    main()
