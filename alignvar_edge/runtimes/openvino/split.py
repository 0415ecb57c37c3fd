"""Cut a single exported graph where the tokens end: the token path and the image suffix.

The token path is every node some `tokens_k` output depends on; the image suffix is the rest, the
nodes only `sr` depends on (the VQ decoder, the LR skip, the last scale's latent update). Nothing
in the suffix can change a token, so it may compute in half precision while the token path stays
f32: OpenVINO's CPU plugin applies one inference precision per compiled model and ignores per-node
f32 marks, so two compiled models are how it gets f32 islands.

    token part   the graph's inputs -> tokens_0..tokens_{K-1}, boundary tensors
    image part   boundary tensors (graph inputs among them) -> sr

Build hosts only (needs `onnx`); the engine runs the two IRs with openvino alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx.utils import Extractor

from alignvar_edge.errors import PROTOBUF_LIMIT, ArtifactError, out_of_memory
from alignvar_edge.export import onnx_io
from alignvar_edge.graph_names import SR
from alignvar_edge.quantize.token_path import token_outputs, token_path

__all__ = ["TokenSplit", "split_at_tokens"]


@dataclass(frozen=True)
class TokenSplit:
    token_part: onnx.ModelProto
    image_part: onnx.ModelProto
    boundary: tuple[str, ...]     # the image part's inputs, in order

    def to_dict(self) -> dict[str, object]:
        return {"boundary": list(self.boundary), "image_nodes": len(self.image_part.graph.node),
                "token_nodes": len(self.token_part.graph.node)}


def split_at_tokens(onnx_path: Path) -> TokenSplit:
    """The token part and the image part of a single graph (see the module docstring)."""
    model = onnx_io.load(onnx_path)
    g = model.graph
    outputs = [o.name for o in g.output]
    if SR not in outputs:
        raise ArtifactError(f"{onnx_path} has no '{SR}' output (outputs: {outputs}); cannot split it")
    tokens = token_outputs(g)
    needed = token_path(g, tokens)
    suffix = [n for i, n in enumerate(g.node) if i not in needed]
    made = {o for n in suffix for o in n.output}
    if SR not in made:
        raise ArtifactError(f"{onnx_path}: '{SR}' is computed entirely on the token path; nothing to split")
    weights = {t.name for t in g.initializer}
    boundary = tuple(dict.fromkeys(x for n in suffix for x in n.input
                                   if x and x not in made and x not in weights))
    graph_inputs = [i.name for i in g.input if i.name not in weights]
    handed_on = [b for b in boundary if b not in graph_inputs and b not in tokens]
    size = model.ByteSize()           # Extractor's shape inference serialises the whole model
    if size >= PROTOBUF_LIMIT:
        raise ArtifactError(f"{onnx_path}: a graph of {size / 2**30:.1f} GiB with its weights is past "
                            "protobuf's 2 GiB limit, so it cannot be split into a token part and an image part; "
                            "build --precision fp32")
    try:
        # Extractor infers the intermediate tensors' shapes and keeps node names and metadata
        ex = Extractor(model)
        token_part = ex.extract_model(graph_inputs, [o for o in outputs if o != SR] + handed_on)
        image_part = ex.extract_model(list(boundary), [SR])
    except Exception as e:      # protobuf's EncodeError where serialising the graph ran out of memory
        memory = out_of_memory(e, f"splitting {onnx_path.name} for OpenVINO", message_bytes=size)
        if memory is None:
            raise
        raise memory from e
    return TokenSplit(token_part, image_part, boundary)
