"""coremltools, imported and run quietly: it draws progress bars on stderr and logs version
warnings (and "Failed to load _MLModelProxy" on import, on Linux)."""
from __future__ import annotations

import contextlib
import io
import logging
import threading
import warnings
from typing import Any

__all__ = ["import_ct", "quiet"]

# `quiet` swaps process-wide state (sys.stderr, logging's disable level): one block at a time, so
# that each puts back what was there before it; two at once in two threads left sys.stderr a StringIO
_QUIET = threading.RLock()


@contextlib.contextmanager
def quiet() -> Any:
    """coremltools draws tqdm bars on stderr (no setting of its turns them off) and logs version
    warnings; keep builds readable. stdout, where it prints nothing, is every thread's and left alone."""
    with _QUIET:
        # its k-means workers log every step at INFO through loggers with their own levels and handlers
        disabled = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                yield
        finally:
            logging.disable(disabled)


def import_ct() -> Any:
    with quiet():       # its import logs "Failed to load _MLModelProxy" on Linux
        import coremltools
    return coremltools
