"""A manifest's quantization and calibration records in words, for `quantize`'s table and
`inspect` alike (one wording for both)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["calibration_line", "float_lines", "missed_target_warning", "validation_line"]


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


def validation_line(p: Mapping[str, Any] | None) -> str | None:
    """A quantize output's fidelity record (`parity`: vs the fp32 engine on the validation split)
    in one line, target met or not; None for any other parity record."""
    if not isinstance(p, Mapping) or not isinstance(p.get("validation"), Mapping):
        return None
    val = p["validation"]
    return (f"{val.get('tiles')} validation tiles vs {p.get('reference', 'the fp32 engine')}: tokens "
            f"{_fig(val.get('token_agreement'), '.2%')}, PSNR-Y drop {_fig(val.get('psnr_drop'), '+.3f')} dB, "
            f"target {'met' if p.get('target_met') else 'NOT met'}")


def missed_target_warning(quantized: Mapping[str, Any] | None, quantization: Mapping[str, Any] | None) -> str | None:
    """What an engine built from a quantize output that missed its fidelity target must say (its
    own build-time parity compares it with that output, not with fp32); None where it met it."""
    if not isinstance(quantized, Mapping) or quantized.get("target_met") is not False:
        return None
    searched = (quantization or {}).get("search") is not None
    fix = ("quantize again with more --tiles, another --method or --precision fp16" if searched else
           "it was quantized with --no-search: quantize again without it")
    return f"its source missed the quantize step's fidelity target ({validation_line(quantized)}); {fix}"


def _fig(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"
