"""Half-precision (bf16 / fp16) policy per component group, searched by the token-fidelity loop.

Six groups, each a set of ONNX nodes of the exported graph (a graph has those its model has: one
without SCA, such as VARSR, has no `sca_bias`, and a policy lists only the graph's groups):

  decoder_convs        VQ-VAE decoder, phi and LR-embedding convs
  transformer_matmuls  attention / FFN / AdaLN linears and the token embedding (the fused form's Einsums)
  attention            attention score / value products and their Softmax (the fused Attention and
                       RotaryEmbedding)
  norms                normalisations and the reductions, powers and roots inside them (RMSNormalization)
  logits_head          the logits head (its argmax decides the tokens)
  sca_bias             the SCA structural-guidance bias path

Elementwise ops outside the groups follow the precision of the graph; EXACT_SCOPES nodes (Pillow's
integer resize) are f32 in every policy. The search is `sensitivity.search`, the same loop as the
int8 and fp16 ONNX searches: it starts from every group in half (the fastest assignment) and
returns groups to f32, most sensitive first, until the validation split keeps >= 99% of the fp32
tokens and loses <= 0.1 dB PSNR-Y. The candidates are fp16 ONNX graphs (`fp16.to_fp16`) run by
ONNX Runtime, or whatever `Evaluator` the caller passes (e.g. OpenVINO with a bf16 hint).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx

from alignvar_edge.caller import option
from alignvar_edge.errors import ConfigError
from alignvar_edge.quantize.fp16 import to_fp16
from alignvar_edge.quantize.policy import classify, exact_nodes, name_scopes
from alignvar_edge.quantize.sensitivity import search

__all__ = ["HALF_GROUPS", "HALF_PRECISIONS", "HalfPolicy", "check_half_form", "graph_groups", "half_candidate",
           "node_groups", "search_half"]

HALF_PRECISIONS = ("bf16", "fp16")
HALF_GROUPS: dict[str, str] = {
    "decoder_convs": "VQ-VAE decoder, phi and LR-embedding convs",
    "transformer_matmuls": "attention / FFN / AdaLN linears and the token embedding",
    "attention": "attention score / value products and their Softmax",
    "norms": "normalisations and the reductions, powers and roots inside them",
    "logits_head": "logits head (feeds argmax)",
    "sca_bias": "SCA structural-guidance bias path",
}
# quantize_policy component -> half group (matmul / conv nodes)
_COMPONENT_GROUP = {"vq_decoder": "decoder_convs", "phi": "decoder_convs", "lr_embed": "decoder_convs",
                    "attn_linear": "transformer_matmuls", "ffn": "transformer_matmuls",
                    "word_embed": "transformer_matmuls", "adaln": "transformer_matmuls",
                    "linear": "transformer_matmuls", "attn_product": "attention", "head": "logits_head",
                    "sca": "sca_bias"}
_NORM_OPS = frozenset({"LayerNormalization", "GroupNormalization", "InstanceNormalization", "ReduceMean",
                       "ReduceL2", "ReduceSumSquare", "Pow", "Sqrt", "Reciprocal", "RMSNormalization"})
# the fused attention form's own ops (`--attention fused`, opset 23): the attention core and its
# rotary positions, and the per-head q/k/v and output projections written as Einsums. Outside a
# group they would stay in half under every policy, so no search could recover their tokens
_FUSED_OP_GROUP = {"Attention": "attention", "RotaryEmbedding": "attention", "Einsum": "transformer_matmuls"}


def _name(n: onnx.NodeProto, idx: int) -> str:
    return n.name or f"{n.op_type}_{idx}"


def node_groups(model: onnx.ModelProto) -> dict[str, set[str]]:
    """Node names of each HALF_GROUPS group (groups without nodes are present and empty)."""
    out: dict[str, set[str]] = {g: set() for g in HALF_GROUPS}
    for q in classify(model):
        g = _COMPONENT_GROUP.get(q.component)
        if g:
            out[g].add(q.name)
    for idx, n in enumerate(model.graph.node):
        scopes = name_scopes(n)
        if n.op_type == "Softmax":
            out["attention"].add(_name(n, idx))
        elif n.op_type in _FUSED_OP_GROUP:
            out[_FUSED_OP_GROUP[n.op_type]].add(_name(n, idx))
        elif n.op_type in _NORM_OPS:
            out["norms"].add(_name(n, idx))
        elif any(s.startswith("sca_guidance") for s in scopes):
            out["sca_bias"].add(_name(n, idx))
    return out


def graph_groups(model: onnx.ModelProto) -> list[str]:
    """The HALF_GROUPS groups this graph has nodes in (a model without SCA has no `sca_bias`)."""
    return [g for g, nodes in node_groups(model).items() if nodes]


def check_half_form(attention: str | None, source: str) -> None:
    """Refuse an fp16 ONNX pass of a fused-attention export (`attention`: its manifest's
    `attention_form`) before any calibration work. Its Attention, RotaryEmbedding and
    RMSNormalization are in the groups, but the elementwise ops around them (AdaLN modulation, the
    projections' weight reshapes) stay fp16 in every policy, and they alone tip the fused rollout:
    tiny kept 96.2% of its tokens on 16 validation tiles with every group in f32, the explicit
    form 99.95% with every group in fp16."""
    if attention == "fused":
        raise ConfigError(f"'{source}' has the fused attention form (ONNX Attention, RotaryEmbedding, "
                          f"RMSNormalization; {option('attention', 'fused')}), whose fp16 graph misses the token "
                          f"target even with every half group in f32: re-export with {option('attention', 'explicit')} "
                          f"{option('opset', 18)} and quantize that, or build this export at fp32")


@dataclass(frozen=True)
class HalfPolicy:
    """Compute precision per group: `precision` for every group except `f32_groups`. `groups`: the
    groups the graph has, which `per_group` (and the manifest's record) lists; `of_graph` reads them."""

    precision: str = "bf16"
    f32_groups: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = frozenset(HALF_GROUPS)

    def __post_init__(self) -> None:
        if self.precision not in HALF_PRECISIONS:
            raise ConfigError(f"half precision must be one of {', '.join(HALF_PRECISIONS)}, got {self.precision!r}")
        unknown = (set(self.f32_groups) | set(self.groups)) - set(HALF_GROUPS)
        if unknown:
            raise ConfigError(f"unknown half groups {sorted(unknown)}; known: {', '.join(HALF_GROUPS)}")

    @classmethod
    def of_graph(cls, model: onnx.ModelProto, precision: str, f32_groups: frozenset[str] = frozenset()) -> HalfPolicy:
        return cls(precision, f32_groups, frozenset(graph_groups(model)))

    def per_group(self) -> dict[str, str]:
        return {g: "f32" if g in self.f32_groups else self.precision for g in HALF_GROUPS if g in self.groups}

    def f32_nodes(self, model: onnx.ModelProto) -> set[str]:
        """Nodes this policy keeps in f32 (its f32 groups and the exact-arithmetic scopes)."""
        groups = node_groups(model)
        return set().union(*(groups[g] for g in self.f32_groups)) | exact_nodes(model)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "f32_groups": sorted(self.f32_groups), "per_group": self.per_group()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HalfPolicy:
        groups = frozenset(d.get("per_group") or HALF_GROUPS)      # older records listed every group
        return cls(str(d.get("precision", "bf16")), frozenset(d.get("f32_groups") or ()), groups)


def half_candidate(model: onnx.ModelProto, policy: HalfPolicy) -> onnx.ModelProto:
    """An fp16 ONNX graph computing `policy`'s f32 groups in f32 (ArgMax always f32)."""
    half, _ = to_fp16(model, keep_ops=("ArgMax",), keep_nodes=policy.f32_nodes(model))
    return half


def search_half(model: onnx.ModelProto, precision: str, validation: Any, calibration: Any, target: Any,
                build: Callable[[onnx.ModelProto, HalfPolicy], Any] = half_candidate,
                log: Callable[[str], object] = lambda _m: None) -> tuple[HalfPolicy, Any]:
    """The searched policy and the `SearchResult` (see the module docstring)."""
    groups = graph_groups(model)
    result = search(lambda f32: build(model, HalfPolicy(precision, frozenset(f32), frozenset(groups))), groups,
                    validation, calibration, target, log=log, start=f"every group {precision}")
    return HalfPolicy(precision, frozenset(result.float_groups), frozenset(groups)), result
