"""A manifest's quantization and calibration records in words, for `quantize`'s table and
`inspect` alike (one wording for both)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["calibration_line", "float_lines"]


def float_lines(q: Mapping[str, Any]) -> list[str]:
    """What an int8 Q/DQ artifact keeps in float: by policy (component and node count) and by the
    search (group, its score and node count), as the manifest's `quantization` entry records it."""
    pol = ", ".join(f"{c} ({v['nodes']})" for c, v in (q.get("float_by_policy") or {}).items())
    srch = q.get("float_by_search") or []
    return [f"float by policy: {pol or 'nothing'}",
            "float by search: " + (", ".join(f"{s['group']} (score {s.get('score')}, {s.get('nodes')} nodes)"
                                             for s in srch) or "nothing")]


def calibration_line(cal: Mapping[str, Any] | None) -> str | None:
    """The calibration set a manifest records, in one line: its hash, where the images came from,
    tiles and images per split; the per-file SHA-256s stay in the manifest (`calibration.files`)."""
    if not cal or not cal.get("hash"):
        return None
    line = f"{str(cal['hash'])[:12]} from {cal.get('source', '?')}: {cal.get('tiles')} tiles"
    if "calibration_images" in cal:
        line += (f" from {cal['calibration_images']} image(s), {cal.get('validation_tiles')} validation tiles "
                 f"from {cal.get('validation_images')}"
                 + (" (the same picture)" if cal.get("validation_shares_images") else ""))
    if cal.get("skipped"):
        line += f"; {cal['skipped']} file(s) skipped"
    if cal.get("files"):
        line += f"; {len(cal['files'])} file(s) named in manifest.json (calibration.files)"
    return line
