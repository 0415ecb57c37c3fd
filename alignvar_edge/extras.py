"""What an extra of alignvar-edge installs, and the pip command that installs it where the user is.

alignvar-edge is not on PyPI, so `pip install 'alignvar-edge[openvino]'` cannot resolve (and would
install a stranger's package if someone registered the name). The advice names the extra's own
requirements instead, read from the installed distribution's metadata (`openvino>=2024.4`), which
PyPI serves; a checkout run without an install has no metadata and gets the wheel's command.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex

__all__ = ["DISTRIBUTION", "TORCH_CPU_INDEX", "device_install", "extra_requirements", "install_command",
           "installed_version", "is_installed", "pip_install", "requirement_of"]

DISTRIBUTION = "alignvar-edge"
# PyPI's torch for Linux is a multi-GB CUDA build; this index holds the CPU build, for every OS
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*)(?:;(.*))?$")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parsed(requirement: str) -> tuple[str, list[str], str, str | None]:
    """(name, its extras, its version specifier, the extra that asks for it or None)."""
    m = _REQUIREMENT.match(requirement)
    if m is None:
        return requirement.strip(), [], "", None
    name, extras, spec, marker = m.groups()
    extra = _EXTRA_MARKER.search(marker or "")
    return (name, [e.strip() for e in (extras or "").split(",") if e.strip()], spec.replace(" ", ""),
            extra.group(1) if extra else None)


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
        for req in declared:
            name, extras, spec, asked_by = _parsed(req)
            if asked_by != wanted:
                continue
            if _normalized(name) == DISTRIBUTION:
                for inner in extras:
                    if inner not in seen:
                        add(inner, seen | {inner})
            elif name + spec not in out:
                out.append(name + spec)

    add(extra, {extra})
    return out


def requirement_of(package: str) -> str:
    """What alignvar-edge's metadata requires of distribution `package` (`onnxscript>=0.6`), in its
    base or any extra; the bare name where it states none."""
    for req in _declared() or []:
        name, _, spec, _ = _parsed(req)
        if _normalized(name) == _normalized(package) and spec:
            return name + spec
    return package


def pip_install(requirements: list[str], upgrade: bool = False) -> str:
    """The pip command (in backticks) that installs `requirements`, taking torch from its CPU index."""
    flags = ["--upgrade"] if upgrade else []
    if any(_normalized(_parsed(r)[0]) == "torch" for r in requirements):
        flags += ["--extra-index-url", TORCH_CPU_INDEX]
    command = "`pip install " + " ".join(flags + [shlex.quote(r) for r in requirements]) + "`"
    if "--extra-index-url" in flags:
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
