"""coremltools, imported and run quietly: it draws progress bars on stderr and logs version
warnings (and "Failed to load _MLModelProxy" on import, on Linux)."""
from __future__ import annotations

import contextlib
import logging
from typing import Any

from alignvar_edge.muted import muted, quieted

__all__ = ["import_ct", "quiet"]

# coremltools logs through loggers under its own name; its torch k-means (the palette fidelity
# proxy) through one with its own level and handler, which a level on "coremltools" does not reach
CT_LOGGERS = ("coremltools", "coremltools.optimize.torch")


@contextlib.contextmanager
def quiet() -> Any:
    """coremltools draws tqdm bars on stderr (no setting of its turns them off) and logs version
    warnings; keep builds readable. stdout, where it prints nothing, is every thread's and left alone,
    and so are other loggers than coremltools' own."""
    with muted("stderr"), quieted(CT_LOGGERS, logging.ERROR):
        yield


def import_ct() -> Any:
    with quiet():       # its import logs "Failed to load _MLModelProxy" on Linux
        import coremltools
    return coremltools
