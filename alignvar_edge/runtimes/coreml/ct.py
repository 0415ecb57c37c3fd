"""coremltools, imported and run quietly: it prints progress bars and version warnings on
stdout/stderr (and "Failed to load _MLModelProxy" on import, on Linux)."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

__all__ = ["import_ct", "quiet"]


@contextlib.contextmanager
def quiet() -> Any:
    """coremltools prints progress bars and version warnings on stdout/stderr; keep builds readable."""
    lg = logging.getLogger("coremltools")
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        lg.setLevel(level)


def import_ct() -> Any:
    with quiet():       # its import prints "Failed to load _MLModelProxy" on Linux
        import coremltools
    return coremltools
