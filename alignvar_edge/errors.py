"""Exception classes of alignvar-edge.

Every error a user can cause is one of these, with a message that names the problem and what to
do about it. The CLI prints such errors as one line and exits non-zero.
"""
from __future__ import annotations

import mmap

try:        # imported now: loading its library under the very memory cap it reports can fail
    import resource
except ImportError:                      # not on POSIX
    resource = None  # type: ignore[assignment]


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


# host packages whose release must match torch's: its ONNX exporter imports their API for its own release
_FOLLOW_TORCH = ("onnx", "onnxscript")


def host_tools_error(what: str, package: str) -> HostToolsError:
    """`what` ('this verb', 'AlignVAR', ...) needs host package `package`, which is not installed, or
    is a release older than alignvar-edge asks, or is installed but fails to import a module it needs
    (too old, or not the release for this torch): the one wording of each, with the pip command that
    works here."""
    from alignvar_edge.extras import (install_command, installed_version, is_installed, older_than_required,
                                      pip_install, requirement_of)
    if not is_installed(package):
        return HostToolsError(f"{what} needs {package}, which a device install does not have; install the host "
                              f"tools: {install_command('host')}", name=package)
    dist, version = installed_version(package)
    needed = requirement_of(dist)
    upgrade = pip_install([needed], upgrade=True)
    if older_than_required(package):
        return HostToolsError(f"{what} needs {needed}; the installed {dist} {version} is older: install a newer "
                              f"one: {upgrade}", name=package)
    torch = installed_version("torch")[1] if package in _FOLLOW_TORCH else None
    against = f" or is not the release for the installed torch {torch}" if torch else ""
    return HostToolsError(f"{what} needs {needed}; the installed {dist} {version or '(version unknown)'} fails "
                          f"to import a module it needs: it is too old{against} (--debug shows which module); "
                          f"install a matching one: {upgrade}", name=package)


class EngineClosedError(AlignVAREdgeError, RuntimeError):
    """A call on an engine after `close()`, or one that had tiles left when another thread closed
    the engine: the program's order of calls, never the image's fault (not an InputError)."""


class ParityError(AlignVAREdgeError):
    """An exported or built engine whose outputs do not match the PyTorch reference."""


class OutputExistsError(AlignVAREdgeError):
    """An output path that already holds something; pass --force to replace it."""


class SkippedInputsError(AlignVAREdgeError):
    """A folder run that finished every image it could and went past inputs it cannot use (a
    truncated file, a text file named .jpg): not a refusal, so not exit 2. Raised by the `upscale`
    verb only (in Python: `cli.main([...])` with --debug, which otherwise returns its exit 4);
    `Engine.upscale_many` never raises it. `skipped`: (file, why) of each, as `usable_images` gives
    them; `finished`: the images this run wrote."""

    exit_code = 4

    def __init__(self, message: str, skipped: list[tuple[str, str]], finished: int) -> None:
        super().__init__(message)
        self.skipped, self.finished = skipped, finished


class HalfPrecisionError(ArtifactError):
    """A half-precision (bf16 / fp16) build missed the token / PSNR target; nothing was written.
    `measured`: what it missed, without the advice (a build that falls back to fp32 says that)."""

    def __init__(self, message: str, measured: str | None = None) -> None:
        super().__init__(message)
        self.measured = measured or message


class PrecisionWarning(UserWarning):
    """An engine computes in another precision than its manifest records (OpenVINO picks a device's
    default precision); importable here without OpenVINO, to filter it."""


class OtherVersionWarning(UserWarning):
    """An engine is loaded by another version of its runtime than the one that built and checked it;
    importable here to filter it (selftest says the same in its report)."""


# What Pillow (and tifffile) raise while decoding damaged data: truncated streams, bad chunks, CRC errors.
IMAGE_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError)


def damaged_image_error(what: object, error: Exception) -> InputError:
    """`what` (a path, or a PIL image's name) failed to decode with `error`: the one wording."""
    return InputError(f"{what} is truncated or corrupt ({error}); re-download or re-export the file")


class OutOfMemoryError(MemoryError):
    """This process ran out of memory (a MemoryError, or a runtime's allocation failure that is
    none): the system failing during the run, not bad input. Made by `out_of_memory` only.
    `what`: what ran out, the line without its advice (a verb words that for itself)."""

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what or message


# How the libraries say an allocation failed, lowercased (ONNX Runtime's arena, C++'s bad_alloc,
# OpenVINO's allocator and its file mappings, the dynamic loader mapping a shared library, CUDA
# through PyTorch and TensorRT).
_ALLOCATION_FAILED = ("failed to allocate", "bad_alloc", "can't alloc", "cannot allocate memory",
                      "failed to map segment from shared object", "out of memory")
# ... and the failures that share those words but that no free memory cures
_NOT_MEMORY = ("static tls", "not permitted", "permission denied")
# pthread_create's EAGAIN: a thread's stack not fitting an address-space limit, else a limit on
# processes or threads, which no free memory cures
_NO_THREAD = "resource temporarily unavailable"
# errors that are never an allocation failure, whatever their text: ours, and Python's own for a bug
_NEVER_MEMORY = (AlignVAREdgeError, ValueError, TypeError, LookupError, AssertionError)


def _allocation_failure(e: BaseException) -> str | None:
    """The library's own words where `e` says an allocation failed ('' for a bare MemoryError), else None."""
    if isinstance(e, MemoryError):
        return str(e)
    if isinstance(e, _NEVER_MEMORY):
        return None
    if isinstance(e, OSError):        # EAGAIN of an OSError is a busy resource, not memory
        import errno
        return e.strerror or "" if e.errno == errno.ENOMEM else None
    text = str(e)
    lowered = text.lower()
    # torch.OutOfMemoryError (CUDA's allocator, a RuntimeError) by its name: torch is not imported here
    by_type = any(c.__name__ == "OutOfMemoryError" for c in type(e).__mro__)
    if not by_type and any(word in lowered for word in _NOT_MEMORY):
        return None
    phrases = _ALLOCATION_FAILED + ((_NO_THREAD,) if _address_space_limit() is not None else ())
    at = min((i for i in map(lowered.find, phrases) if i >= 0), default=-1)
    if at < 0:
        return text.strip().split("\n")[0] if by_type else None
    line_start = text.rfind("\n", 0, at) + 1
    line = text[line_start:].splitlines()[0]
    # a long line is mostly C++ source locations and signatures: keep the words from the failure on
    return (line if len(line) <= 120 else text[at:].splitlines()[0]).strip()


# how an accelerator's allocator says its own memory ran out (PyTorch's CUDA caching allocator,
# the CUDA runtime under TensorRT and ONNX Runtime's CUDA provider), lowercased
_DEVICE_MEMORY = ("cuda", "gpu", "device memory")


def device_memory_failure(e: BaseException) -> bool:
    """Is `e` an accelerator running out of its own memory (torch.OutOfMemoryError, 'CUDA out of
    memory', ...), where the host's memory may be plentiful?"""
    if any(c.__name__ == "OutOfMemoryError" and c.__module__.startswith("torch") for c in type(e).__mro__):
        return True
    return _allocation_failure(e) is not None and any(word in str(e).lower() for word in _DEVICE_MEMORY)


def _address_space_limit() -> int | None:
    """This process's address-space limit in bytes (`ulimit -v`, `prlimit --as`), None where none is set."""
    if resource is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _memory_limit() -> str:
    """This process's address-space limit where one is set, with its fix."""
    limit = _address_space_limit()
    if limit is None:
        return ""
    return (f"; this process may use at most {limit / 2**20:.0f} MiB of address space (its `ulimit -v`): "
            "raise or lift that limit")


# What helps where engines run tiles (upscale, bench, build's checks); a verb that holds other things
# in memory (train's batches, quantize's tiles) says its own (`advice=`)
TILE_ADVICE = ("use fewer or smaller tiles (an export or engine of a smaller --batch) or a smaller image")

# protobuf serialises no message of 2 GiB or more (ONNX graphs with their weights inside)
PROTOBUF_LIMIT = 2**31
# what a probe allocation asks for, and how near a cgroup's limit counts as at it
_HEADROOM = 256 * 2**20


def out_of_memory(e: BaseException, during: str = "", *, advice: str | None = None,
                  message_bytes: int | None = None, wordless: bool = False) -> OutOfMemoryError | None:
    """`e` as the one way alignvar-edge says it ran out of memory (`during`: 'loading onnxruntime',
    ...), where `e` is a MemoryError or a library's allocation failure; None for any other error.
    `advice`: what helps, after 'close other programs, or' (default TILE_ADVICE); an
    OutOfMemoryError made before is worded again with it. `message_bytes`: the size of the protobuf
    message being serialised where `e` may be protobuf's EncodeError, which says the same words for
    a message past its 2 GiB limit (no memory cures that: None) as for a failed allocation.
    `wordless`: the library fails with no reason of its own when memory runs out (OpenVINO's
    compile: 'Exception from src/...' lines only): such an error counts where `memory_is_short`."""
    if isinstance(e, OutOfMemoryError):
        return e if advice is None else _worded(e.what, advice)
    detail = _allocation_failure(e)
    if detail is None and message_bytes is not None and _protobuf_encode_failure(e):
        detail = str(e) if message_bytes < PROTOBUF_LIMIT else None
    if detail is None and wordless and not _reason_in(e) and memory_is_short():
        detail = ""
    if detail is None:
        return None
    return _worded(f"ran out of memory{' ' + during if during else ''}{f' ({detail})' if detail else ''}", advice)


def _worded(what: str, advice: str | None) -> OutOfMemoryError:
    return OutOfMemoryError(f"{what}; close other programs, or {advice or TILE_ADVICE}{_memory_limit()}", what)


def _protobuf_encode_failure(e: BaseException) -> bool:
    """protobuf's EncodeError ('Failed to serialize proto'), told by its class: protobuf is not imported here."""
    return any(c.__name__ == "EncodeError" and c.__module__.startswith("google.protobuf") for c in type(e).__mro__)


def _reason_in(e: BaseException) -> bool:
    """Does `e`'s text give a reason, not only where it was raised (OpenVINO's 'Exception from FILE:LINE:')?"""
    return any(line.strip() and not line.startswith("Exception from ") for line in str(e).splitlines())


def memory_is_short() -> bool:
    """A sound sign that this process is at its memory's end: its cgroup (a container's limit) is
    within 256 MiB of its memory.max, or a probe mapping of that size fails (an address-space limit,
    `ulimit -v`). Asked after a failure that does not say why: the failed work's memory is freed by
    then, and a process that still cannot take the probe was short of it."""
    headroom = _cgroup_headroom()
    if headroom is not None:
        return headroom < _HEADROOM
    try:
        # anonymous and never touched: it costs no memory, where a bytearray zero-fills every page
        mmap.mmap(-1, _HEADROOM).close()
    except (OSError, OverflowError):
        return True
    return False


# where the kernel says this process's cgroup (v2) is, and where the cgroups are mounted
_PROC_CGROUP = "/proc/self/cgroup"
_CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_headroom() -> int | None:
    """Bytes this process's cgroup (v2) may still take before its memory.max, None where it has no
    limit. Page cache the kernel can drop (`inactive_file`) counts as free: after heavy file I/O
    memory.current sits at memory.max with nothing short."""
    try:
        with open(_PROC_CGROUP, encoding="ascii") as f:
            group = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
        root = f"{_CGROUP_ROOT}{group.rstrip('/')}"
        with open(f"{root}/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(f"{root}/memory.current", encoding="ascii") as f:
            used = int(f.read())
        with open(f"{root}/memory.stat", encoding="ascii") as f:
            reclaimable = next((int(line.split()[1]) for line in f if line.startswith("inactive_file ")), 0)
        return int(limit) - (used - reclaimable)
    except (OSError, StopIteration, ValueError, IndexError):
        return None
