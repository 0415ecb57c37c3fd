"""Exception classes of alignvar-edge.

Every error a user can cause is one of these, with a message that names the problem and what to
do about it. The CLI prints such errors as one line and exits non-zero.
"""
from __future__ import annotations


class AlignVAREdgeError(Exception):
    """Base class: a problem the user can fix (bad input, missing backend, broken artifact)."""

    exit_code = 2


class ConfigError(AlignVAREdgeError, ValueError):
    """A model configuration that cannot work, or an unknown preset."""


class InputError(AlignVAREdgeError, ValueError):
    """An input tensor, image or file that the operation cannot accept."""


class CheckpointError(AlignVAREdgeError):
    """A checkpoint that cannot be loaded: unsafe, corrupt, or not matching the config."""


class ArtifactError(AlignVAREdgeError):
    """An exported/built artifact directory that is missing, incomplete or fails verification."""


class BackendUnavailableError(AlignVAREdgeError):
    """A runtime backend whose package or hardware is not present here."""

    exit_code = 3


class HostToolsError(BackendUnavailableError, ImportError):
    """Something only the host tools do (PyTorch, onnx, scikit-image: the `host` extra), asked of a
    device install (the `device` extra alone). An ImportError too: the missing import it stands for."""


def host_tools_error(what: str, package: str) -> HostToolsError:
    """`what` ('this verb', 'AlignVAR', ...) needs host package `package`, which is not installed, or
    is installed but fails to import a module it needs (too old, or not the release for this
    torch): the one wording of each, with the pip command that works here."""
    from alignvar_edge.extras import install_command, installed_version, is_installed, pip_install, requirement_of
    if not is_installed(package):
        return HostToolsError(f"{what} needs {package}, which a device install does not have; install the host "
                              f"tools: {install_command('host')}", name=package)
    dist, version = installed_version(package)
    needed = requirement_of(dist)
    torch = installed_version("torch")[1] if package != "torch" else None
    against = f" or is not the release for the installed torch {torch}" if torch else ""
    return HostToolsError(f"{what} needs {needed}; the installed {dist} {version or '(version unknown)'} fails "
                          f"to import a module it needs: it is too old{against} (--debug shows which module); "
                          f"install a matching one: {pip_install([needed], upgrade=True)}", name=package)


class EngineClosedError(AlignVAREdgeError, RuntimeError):
    """A call on an engine after `close()`, or one that had tiles left when another thread closed
    the engine: the program's order of calls, never the image's fault (not an InputError)."""


class ParityError(AlignVAREdgeError):
    """An exported or built engine whose outputs do not match the PyTorch reference."""


class OutputExistsError(AlignVAREdgeError):
    """An output path that already holds something; pass --force to replace it."""


class HalfPrecisionError(ArtifactError):
    """A half-precision (bf16 / fp16) build missed the token / PSNR target; nothing was written.
    `measured`: what it missed, without the advice (a build that falls back to fp32 says that)."""

    def __init__(self, message: str, measured: str | None = None) -> None:
        super().__init__(message)
        self.measured = measured or message


class PrecisionWarning(UserWarning):
    """An engine computes in another precision than its manifest records (OpenVINO picks a device's
    default precision); importable here without OpenVINO, to filter it."""


# What Pillow (and tifffile) raise while decoding damaged data: truncated streams, bad chunks, CRC errors.
IMAGE_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError)


def damaged_image_error(what: object, error: Exception) -> InputError:
    """`what` (a path, or a PIL image's name) failed to decode with `error`: the one wording."""
    return InputError(f"{what} is truncated or corrupt ({error}); re-download or re-export the file")
