"""What an extra of alignvar-edge installs, and the pip command that installs it where the user is.

alignvar-edge is not on PyPI, so `pip install 'alignvar-edge[openvino]'` cannot resolve (and would
install a stranger's package if someone registered the name). The advice names the extra's own
requirements instead, read from the installed distribution's metadata (`openvino>=2024.4`), which
PyPI serves; a checkout run without an install has no metadata and gets the wheel's command.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
from collections.abc import Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["DISTRIBUTION", "TORCH_CPU_INDEX", "device_install", "extra_requirements", "install_command",
           "installed_version", "is_installed", "older_than_required", "pip_install", "requirement_of"]

DISTRIBUTION = "alignvar-edge"
# PyPI's torch for Linux is a multi-GB CUDA build; this index holds the CPU build, for every OS
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _asked_by(req: Requirement, extra: str) -> bool:
    """Whether `extra` adds `req` here: its marker holds with `extra` (the host's python_version and
    sys_platform included) and not in the base install (a requirement of every install is not the extra's)."""
    return req.marker is not None and req.marker.evaluate({"extra": extra}) and not req.marker.evaluate({"extra": ""})


def _unmarked(req: Requirement) -> str:
    """`req` as pip takes it on a command line: `torch>=2.6`, `pkg @ URL`, without its marker."""
    bare = Requirement(str(req))
    bare.marker = None
    return str(bare)


def _declared() -> list[str] | None:
    """The installed distribution's requirements as written in its metadata; None without one."""
    try:
        return importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None


def extra_requirements(extra: str) -> list[str] | None:
    """The requirements (`openvino>=2024.4`) that `extra` installs, an extra naming alignvar-edge's
    own extras (openvino-int8 = openvino + nncf) expanded; None where no metadata is installed."""
    declared = _declared()
    if declared is None:
        return None
    out: list[str] = []

    def add(wanted: str, seen: set[str]) -> None:
        for req in map(Requirement, declared):
            if not _asked_by(req, wanted):
                continue
            if canonicalize_name(req.name) == DISTRIBUTION:
                for inner in sorted(req.extras):
                    if inner not in seen:
                        add(inner, seen | {inner})
            elif _unmarked(req) not in out:
                out.append(_unmarked(req))

    add(extra, {extra})
    return out


def requirement_of(package: str) -> str:
    """What alignvar-edge's metadata requires of distribution `package` (`onnxscript>=0.6`), in its
    base or any extra; the bare name where it states none."""
    for req in map(Requirement, _declared() or []):
        if canonicalize_name(req.name) == canonicalize_name(package) and (req.specifier or req.url):
            return _unmarked(req)
    return package


def older_than_required(package: str) -> bool:
    """Whether the installed distribution of import package `package` is a release that alignvar-edge's
    metadata rules out (onnxslim 0.1.26 where it asks onnxslim>=0.1.27); False where either is unknown."""
    dist, version = installed_version(package)
    needed = Requirement(requirement_of(dist))
    if version is None or not needed.specifier:
        return False
    try:
        return not needed.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:          # a version PEP 440 cannot read: no claim on it either way
        return False


def pip_install(requirements: list[str], upgrade: bool = False, flags: Sequence[str] = ()) -> str:
    """The pip command (in backticks) that installs `requirements` with pip's `flags`
    (`--force-reinstall`), taking torch from its CPU index."""
    options = (["--upgrade"] if upgrade else []) + list(flags)
    if any(canonicalize_name(Requirement(r).name) == "torch" for r in requirements):
        options += ["--extra-index-url", TORCH_CPU_INDEX]
    command = "`pip install " + " ".join(options + [shlex.quote(r) for r in requirements]) + "`"
    if "--extra-index-url" in options:
        return (command + " (that index gives PyTorch's CPU build; PyPI's own torch on Linux is a multi-GB "
                "CUDA build: for a GPU, take the index pytorch.org names for your CUDA)")
    return command


def install_command(extra: str) -> str:
    """The pip command (in backticks) that installs the packages of alignvar-edge's extra `extra` here."""
    requirements = extra_requirements(extra)
    if requirements:
        return pip_install(requirements)
    # no metadata (a checkout on PYTHONPATH, never installed): the wheel's own command
    return device_install(extra)


def device_install(extras: str) -> str:
    """How a device installs alignvar-edge with `extras`: from its wheel, as it is not on PyPI."""
    return (f"`pip install \"$(ls dist/alignvar_edge-*.whl)[{extras}]\"`, the wheel built in an alignvar-edge "
            "checkout with `python -m pip wheel --no-deps -w dist .` (alignvar-edge is not on PyPI)")


def is_installed(name: str) -> bool:
    """Whether `name` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):      # a parent package missing, or a broken install
        return False


def installed_version(package: str) -> tuple[str, str | None]:
    """(the distribution that installs import package `package`, its version or None)."""
    dists = importlib.metadata.packages_distributions().get(package) or [package]
    try:
        return dists[0], importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        return dists[0], None
