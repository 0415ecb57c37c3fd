"""A manifest's quantization and calibration records in words, for `quantize`'s table and log,
`inspect`, the engine READMEs and `build`'s warnings alike (one wording for all)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alignvar_edge.caller import option

if TYPE_CHECKING:
    from alignvar_edge.recipes import Recipe

__all__ = ["PSNR_DROP_DECIMALS", "calibration_line", "drop_text", "float_lines", "looser_target_warning",
           "missed_target_warning", "target_words", "validation_line"]

# The PSNR-Y drop is judged, recorded and printed at this many decimals (0.0001 dB), so two lines
# showing the same figure never get opposite verdicts (sensitivity.Fidelity.judged_drop)
PSNR_DROP_DECIMALS = 4


def drop_text(v: Any) -> str:
    """A PSNR-Y drop as it is judged: '+0.0008'."""
    return _fig(v, f"+.{PSNR_DROP_DECIMALS}f")


def target_words(target: Mapping[str, Any] | None) -> str:
    """A fidelity target as a user reads it: 'tokens >= 99%, PSNR-Y drop <= 0.1 dB'."""
    if not isinstance(target, Mapping) or "min_token_agreement" not in target:
        return "not recorded"
    tokens = target["min_token_agreement"]
    share = _fig(tokens * 100 if isinstance(tokens, (int, float)) else None, "g")
    return f"tokens >= {share}%, PSNR-Y drop <= {_fig(target.get('max_psnr_drop'), 'g')} dB"


def float_lines(q: Mapping[str, Any]) -> list[str]:
    """What an int8 Q/DQ artifact keeps in float: by policy (component and node count) and by the
    search (group, its score and node count), as the manifest's `quantization` entry records it.
    A float node that reads its weight dequantized from the int8 copy its int8 twins share computes
    in f32 on int8-rounded weights, and the words say how many do."""
    shared = ((q.get("recipe") or {}).get("float_copy_weights") or "int8") == "int8"
    pol = ", ".join(f"{c} ({v['nodes']}{_int8_weights(v, shared and c == 'coarse_scales')})"
                    for c, v in (q.get("float_by_policy") or {}).items())
    srch = q.get("float_by_search") or []
    return [f"float by policy: {pol or 'nothing'}",
            "float by search: " + (", ".join(f"{s['group']} (score {s.get('score')}, {s.get('nodes')} nodes"
                                             f"{_int8_weights(s)})" for s in srch) or "nothing")]


def _int8_weights(entry: Mapping[str, Any], may_share: bool = False) -> str:
    """'; 47: f32 compute, int8 weights' for the nodes of a float entry that read int8 weights, ''
    where none does. A record from before the count: the coarse-scale copies (`may_share`) read the
    int8 weight of their finer copies wherever those were int8, which it does not say."""
    if "int8_weights" not in entry:
        return "; f32 compute, int8 weights where their finer copies are int8 (not counted)" if may_share else ""
    k = entry["int8_weights"]
    if not k:
        return ""
    return f"; {'all' if k == entry.get('nodes') else k}: f32 compute, int8 weights"


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


def validation_line(p: Mapping[str, Any] | None, target: Mapping[str, Any] | None) -> str | None:
    """A quantize output's fidelity record (`parity`: vs the fp32 engine on the validation split)
    in one line, with the target it was judged against (`target`: the manifest's
    `quantization.target`, which records it) and whether it met it; None for any other parity record."""
    if not isinstance(p, Mapping) or not isinstance(p.get("validation"), Mapping):
        return None
    val = p["validation"]
    return (f"{val.get('tiles')} validation tiles vs {p.get('reference', 'the fp32 engine')}: tokens "
            f"{_fig(val.get('token_agreement'), '.2%')}, PSNR-Y drop {drop_text(val.get('psnr_drop'))} dB; "
            f"target: {target_words(target)}: {'met' if p.get('target_met') else 'NOT met'}")


def missed_target_warning(quantized: Mapping[str, Any] | None, quantization: Mapping[str, Any] | None) -> str | None:
    """What an engine built from a quantize output that missed its fidelity target must say (its
    own build-time parity compares it with that output, not with fp32); None where it met it."""
    if not isinstance(quantized, Mapping) or quantized.get("target_met") is not False:
        return None
    searched = (quantization or {}).get("search") is not None
    fix = (f"quantize again with more {option('tiles')}, another {option('method')} or {option('precision', 'fp16')}"
           if searched else f"it was quantized with {option('search', False)}: quantize again without it")
    line = validation_line(quantized, (quantization or {}).get("target"))
    return f"its source missed the quantize step's fidelity target ({line}); {fix}"


def looser_target_warning(quantization: Mapping[str, Any] | None, gate: Recipe) -> str | None:
    """What an engine built from a quantize output must say when that output was judged against a
    looser token target than the gate `selftest --engine` applies to the engine's precision (the
    recipe table's row): met there, it may still fail here. None where the target is as strict."""
    target = (quantization or {}).get("target")
    tokens = target.get("min_token_agreement") if isinstance(target, Mapping) else None
    if not isinstance(tokens, (int, float)) or tokens >= gate.tokens:
        return None
    return (f"its source was quantized to a looser target ({target_words(target)}) than the gate `selftest "
            f"--engine` applies to {gate.backend} {gate.precision} ({gate.gate_words}), so selftest may fail it; "
            f"quantize again with {option('min_token_agreement', f'{gate.tokens:g}')} or more for an engine that "
            "passes it")


def _fig(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"
