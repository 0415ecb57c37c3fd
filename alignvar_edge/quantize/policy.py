"""Which nodes of an exported AlignVAR graph may be quantized: components, groups and the policy.

Only MatMul / Gemm / Conv are ever quantized (Q/DQ on their inputs); Softmax, normalisations,
AdaLN, rotary and SCA arithmetic, ArgMax and every elementwise op stay in float because ONNX
Runtime's quantizer is never asked to touch them. Among the matmuls and convs each node gets a
*component* from the module scope the dynamo exporter records in its metadata
(`pkg.torch.onnx.name_scopes` / `class_hierarchy`, e.g. scope `blocks.0.ffn.fc1`, class `Linear`).
The *group* of a node is its module path (`blocks.0.ffn.fc1`): the unrolled rollout calls each
module once per scale, and those copies share weights, so they are kept in float together.

Default policy, from measurement (docs/quantization.md): int8 for the LR embedding,
the attention / FFN linears, the token embedding, the residual phi convs and the VQ decoder; float
for AdaLN (`ada_lin`), attention score/value products (activation x activation: 18% -> 86% tokens
kept when excluded), the logits head (its argmax decides the tokens), the SCA bias path and the
constant resampling matrices (area / bicubic are exact matrices; int8 would blur them).

Graphs without the exporter's metadata (an external tool stripped it) fall back to structure:
a MatMul/Gemm/Conv with a constant weight is a `linear`, the matmul feeding ArgMax is the `head`,
a MatMul with a constant left operand is `resample`, others are `attn_product`.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

import onnx

from alignvar_edge.errors import ConfigError
from alignvar_edge.graph_names import STACK_TRACE

__all__ = ["COMPONENTS", "DEFAULT_INT8", "EXACT_SCOPES", "QUANT_OP_TYPES", "TOKEN_PATH", "Policy", "QuantNode",
           "classify", "exact_nodes", "name_scopes"]

QUANT_OP_TYPES = ("MatMul", "Gemm", "Conv")

# component -> what it is (shown in reports)
COMPONENTS: dict[str, str] = {
    "lr_embed": "LR conditioning conv stack",
    "attn_linear": "attention q/k/v and output projections",
    "ffn": "feed-forward linears",
    "word_embed": "token embedding of the coarser scales",
    "phi": "VQ residual convs (phi) on the token path",
    "vq_decoder": "VQ-VAE decoder convs",
    "linear": "constant-weight matmul/conv (graph without scope metadata)",
    "adaln": "AdaLN modulation linears",
    "attn_product": "attention score / value products (activation x activation)",
    "head": "logits head (feeds argmax)",
    "sca": "SCA structural-guidance path",
    "resample": "constant area / bicubic resampling matrices",
    "structural": "functional matmuls outside any module (resampling, SCA affinity)",
    "other": "unclassified",
    "coarse_scales": "transformer linears at the coarsest scales (few tokens; their flips cascade)",
}
DEFAULT_INT8 = frozenset({"lr_embed", "attn_linear", "ffn", "word_embed", "phi", "vq_decoder", "linear"})
# per-scale transformer work: its copies at the coarsest scales are the roots of token cascades
TOKEN_PATH = frozenset({"attn_linear", "ffn", "word_embed", "linear"})


# Modules whose arithmetic is exact integer arithmetic in float32 (Pillow's uint8 resize of VARSR's
# LR input; token pruning's integer keys, up to 2**24): every node in them stays float32 in every
# precision, or the result is not Pillow's / not the tokens PyTorch keeps.
EXACT_SCOPES = ("con_embedding.resize", "select_pivotal")


def name_scopes(node: onnx.NodeProto) -> list[str]:
    """The PyTorch module scopes the exporter recorded on a node (its metadata), outermost first."""
    return _list(_meta(node).get("pkg.torch.onnx.name_scopes"))


def exact_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes inside an EXACT_SCOPES module (by the exporter's scope metadata)."""
    out = set()
    for idx, n in enumerate(model.graph.node):
        scopes = name_scopes(n)
        if any(sc == e or sc.startswith(e + ".") for sc in scopes for e in EXACT_SCOPES):
            out.add(n.name or f"{n.op_type}_{idx}")
    return out


@dataclass(frozen=True)
class QuantNode:
    name: str
    op_type: str
    component: str
    group: str                  # module path shared by the per-scale copies
    tokens: int | None = None   # rows of the token axis (p_k^2 for scale k, 1+P^2 for the prefix)


@dataclass
class Policy:
    """Components quantized to int8; `float_groups` are module groups returned to float on top.

    `float_coarse_tokens`: transformer-path copies that process at most this many tokens stay
    float. They are the coarsest scales (1, 4, 9 tokens): a flip there changes every finer scale
    (measured on the tiny default: one flipped first token took a held-out tile from ~99% to 56%
    agreement), while their share of the compute is a few percent (tokens 14 of 130 on tiny,
    14 of 680 on d16). 0 quantizes them too.
    """

    int8_components: frozenset[str] = DEFAULT_INT8
    float_groups: frozenset[str] = field(default_factory=frozenset)
    float_coarse_tokens: int = 9

    def __post_init__(self) -> None:
        unknown = set(self.int8_components) - set(COMPONENTS)
        if unknown:
            raise ConfigError(f"unknown components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")

    def coarse(self, n: QuantNode) -> bool:
        return (n.component in TOKEN_PATH and n.tokens is not None and n.tokens <= self.float_coarse_tokens)

    def selects(self, n: QuantNode) -> bool:
        return (n.component in self.int8_components and n.group not in self.float_groups
                and not self.coarse(n))

    def why_float(self, n: QuantNode) -> str | None:
        """The policy's reason for keeping n in float (None: n is int8 or returned by the search)."""
        if n.component not in self.int8_components:
            return n.component
        if self.coarse(n):
            return "coarse_scales"
        return None

    def with_float(self, groups: set[str] | frozenset[str]) -> Policy:
        return Policy(self.int8_components, frozenset(self.float_groups | set(groups)), self.float_coarse_tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"int8_components": sorted(self.int8_components), "float_groups": sorted(self.float_groups),
                "float_coarse_tokens": self.float_coarse_tokens}


def _meta(node: onnx.NodeProto) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def _list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else []


def _scope_component(scope: str, module_class: str, aten: str, trace: str) -> str:
    """Component from the module path of a node (its innermost module) and its aten op."""
    parts = scope.split(".")
    if "matmul" in aten and "Linear" not in module_class:
        # activation x activation (attention in the transformer and in the decoder's AttnBlocks)
        # or a functional resampling / SCA product: never a weight
        return "attn_product" if ".attn" in scope else "other"
    if scope == "head":
        return "head"
    if scope.startswith("head_nm") or ".ada_lin" in scope or parts[-1] == "ada_lin":
        return "adaln"
    if scope.startswith("blocks.") and ".attn" in scope:
        return "attn_linear" if "linear" in aten or module_class.endswith("Linear") else "attn_product"
    if scope.startswith("blocks.") and ".ffn" in scope:
        return "ffn"
    if scope.startswith("word_embed"):
        return "word_embed"
    if scope.startswith("lr_embed"):
        return "lr_embed"
    if scope.startswith("vae.quantize.quant_resi"):
        return "phi"
    if scope.startswith(("vae.decoder", "vae.post_quant_conv")) or (scope.startswith("vae.")
                                                                     and module_class.endswith("Conv2d")):
        return "vq_decoder"       # decoder-side convs, incl. the LR skip of the LR-aware decoder
    if scope.startswith("sca_guidance") or "/sca.py" in trace:
        return "sca"
    if "/resample.py" in trace or "resample" in scope:
        return "resample"
    return "other"


def classify(model: onnx.ModelProto) -> list[QuantNode]:
    """Every MatMul / Gemm / Conv of the graph with its component and group."""
    g = model.graph
    consts = {i.name for i in g.initializer}
    consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in [*g.input, *g.value_info, *g.output]}
    out = []
    for idx, n in enumerate(g.node):
        if n.op_type not in QUANT_OP_TYPES:
            continue
        shape = dims.get(n.input[0]) or []
        tokens = shape[-2] if len(shape) == 3 else None     # (B, L, C) activations of the transformer
        name = n.name or f"{n.op_type}_{idx}"
        md = _meta(n)
        scopes = _list(md.get("pkg.torch.onnx.name_scopes"))
        classes = _list(md.get("pkg.torch.onnx.class_hierarchy"))
        trace = md.get(STACK_TRACE, "")
        inputs_named = [i for i in n.input[:2] if i in consts]
        if len(scopes) >= 2:
            scope = scopes[-2]
            comp = _scope_component(scope, classes[-2] if len(classes) >= 2 else "",
                                    classes[-1] if classes else "", trace)
            if scope == "":       # top-level functional op: resampling matrices / SCA by input names
                if comp == "other":
                    comp = _named_component(n, consts)
                comp = "structural" if comp == "other" else comp
                scope = f"{comp}:{name}"
            elif comp == "attn_linear" and scope.endswith(".attn"):
                scope += ".mat_qkv"       # q/k/v is a functional linear inside SelfAttention
        else:
            comp = _structural_component(n, consts, consumers)
            scope = inputs_named[-1] if inputs_named else name
        if comp == "other":
            comp = _named_component(n, consts)
        out.append(QuantNode(name, n.op_type, comp, scope, tokens))
    return out


def _named_component(n: onnx.NodeProto, consts: set[str]) -> str:
    """Top-level matmuls/convs by the names of their constant inputs."""
    for i in n.input:
        if i in consts and ("resample" in i or "lr_up" in i or "bicubic" in i or "area" in i):
            return "resample"
        if i in consts and i.startswith("sca"):
            return "sca"
    return "other"


def _structural_component(n: onnx.NodeProto, consts: set[str],
                          consumers: dict[str, list[onnx.NodeProto]]) -> str:
    """Fallback without scope metadata (see the module docstring)."""
    out = n.output[0]
    seen = 0
    while seen < 3:   # MatMul -> (Add) -> ArgMax
        users = consumers.get(out, [])
        if any(u.op_type == "ArgMax" for u in users):
            return "head"
        if len(users) == 1 and users[0].op_type in ("Add", "Reshape"):
            out = users[0].output[0]
            seen += 1
            continue
        break
    if len(n.input) > 1 and n.input[1] in consts:
        return "linear"
    if n.input[0] in consts:
        return "resample"
    return "attn_product"
