"""coremltools, imported and run quietly: it draws progress bars on stderr and logs version
warnings (and "Failed to load _MLModelProxy" on import, on Linux)."""
from __future__ import annotations

import contextlib
import logging
from typing import Any

from alignvar_edge.caller import WarningFilter, warnings_changed
from alignvar_edge.muted import muted

__all__ = ["import_ct", "quiet"]

@contextlib.contextmanager
def quiet() -> Any:
    """coremltools draws tqdm bars on stderr (no setting of its turns them off) and logs version
    warnings; keep builds readable. stdout, where it prints nothing, is every thread's and left alone."""
    with muted("stderr"):       # one at a time: logging's disable level is process-wide too
        # its k-means workers log every step at INFO through loggers with their own levels and handlers
        disabled = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            with warnings_changed(WarningFilter("ignore")):
                yield
        finally:
            logging.disable(disabled)


def import_ct() -> Any:
    with quiet():       # its import logs "Failed to load _MLModelProxy" on Linux
        import coremltools
    return coremltools
