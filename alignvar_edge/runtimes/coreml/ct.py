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
    # its k-means workers log every step at INFO through loggers with their own levels and handlers
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def import_ct() -> Any:
    with quiet():       # its import prints "Failed to load _MLModelProxy" on Linux
        import coremltools
    return coremltools
