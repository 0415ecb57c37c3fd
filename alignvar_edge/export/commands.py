"""CLI verbs `export` and `inspect` (registered by alignvar_edge.cli)."""
from __future__ import annotations

import argparse
import time
from typing import Any

from alignvar_edge.argtypes import MAX_TILES, batch_size, random_seed, tile_count
from alignvar_edge.caller import option
from alignvar_edge.cli_json import add_json_option, no_stale_result
from alignvar_edge.graph_names import GRAPH_FORMS
from alignvar_edge.manifest import read_manifest
from alignvar_edge.model.config import ATTENTION_FORMS
from alignvar_edge.model.bundled import CHECKPOINT_HELP
from alignvar_edge.name_text import shell_word
from alignvar_edge.progress import note



def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a model to validated ONNX graphs (single or staged)",
                       description="Trace the whole AlignVAR rollout to ONNX, check it, run it in ONNX "
                                   "Runtime on held-out photographs against PyTorch (100% tokens, >= 60 dB), "
                                   "and write the graphs with manifest.json.")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help=CHECKPOINT_HELP)
    p.add_argument("--preset", help="export a preset with seeded random weights instead (e.g. micro, "
                                    "tiny, d16, d24-512); the logits head is scaled x50 so greedy "
                                    "choices are as stable as a trained model's")
    p.add_argument("--out", required=True, help="artifact directory to create")
    p.add_argument("--graph", choices=GRAPH_FORMS, default="single",
                   help="single: the whole rollout in one static graph; staged: a conditioning graph, one graph "
                        "per scale with explicit KV inputs and outputs, and a decoder graph (default %(default)s)")
    p.add_argument("--opset", type=int, choices=(18, 20, 23), default=18,
                   help="18 (default, most portable), 20 (TensorRT 10.3's maximum) or 23")
    p.add_argument("--attention", choices=ATTENTION_FORMS, default="explicit",
                   help="attention in the graphs: explicit, plain ops (default: every target parses "
                        "them) or fused, one ONNX RMSNormalization, RotaryEmbedding and Attention "
                        "per call, the KV cache concatenated outside Attention (needs --opset 23; "
                        "TensorRT >= 10.15)")
    p.add_argument("--prune", metavar="R[,R...]", default="",
                   help="token pruning (FastVAR-style, training-free): the share of tokens each of the "
                        "last scales leaves out, finest last, e.g. 0.5,0.75")
    p.add_argument("--batch", type=batch_size,
                   help="fixed batch of the graphs: tiles per call (default: 16 for SR tiles up to 64 px, "
                        "where batches serve OpenVINO's whole images faster (ONNX Runtime's run about as fast "
                        "at batch 1), 1 for larger tiles; `deploy` measures)")
    p.add_argument("--tiles", type=tile_count, default=4,
                   help=f"validation tiles, at least (default 4, up to {MAX_TILES}): rounded up to whole "
                        "calls of the graphs' batch, so a plain export of 64 px SR tiles (batch 16) validates 16")
    p.add_argument("--images", help="folder of photographs for the validation tiles "
                                    "(default: the bundled held-out samples)")
    p.add_argument("--seed", type=random_seed, default=0,
                   help="seed of the validation tiles' crops and of --preset's weights (default %(default)s)")
    p.add_argument("--simplify", action="store_true", help="simplify with onnxslim (re-validated)")
    p.add_argument("--external-data", choices=("auto", "yes", "no"), default="auto",
                   help="weights in a .onnx.data file (default %(default)s: above 1.8 GB of weights; "
                        "ONNX's protobuf limit is 2 GB)")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="leave VARSR's diffusion refiner out of the graphs (tokens only at the last scale); "
                        "with it, the graph that runs the last scale takes the sampler's noise as input; "
                        "refused for a model without the refiner")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    # the graph being serialised is held whole in memory, its weights inside unless kept beside it
    p.set_defaults(func=run_export, stdout_is_a_summary=True,
                   memory_advice=lambda: (f"export with {option('external_data')} yes (the weights beside the "
                                          f"graph, not inside it) or a smaller {option('batch')}"))

    q = sub.add_parser("inspect", help="summarise and verify an export, an engine or a deploy output, lint "
                                       "graphs per target",
                       description="Verify an artifact against its manifest (every file listed, hashed and "
                                   "inside the folder), then show its model, input contract, graphs, ops, "
                                   "parameters, size and parity, and the ops each target (TensorRT 10.3, "
                                   "OpenVINO NPU, Core ML/ANE) may reject, by node name. For an engine: "
                                   "what it was built from, its build-time parity, the precision each "
                                   "component computes in and the layouts its build tried. For a deploy "
                                   "output: the whole folder, each engine inside it included.")
    q.add_argument("artifact", help="artifact directory (made by `alignvar-edge export`, `quantize`, `build` "
                                    "or `deploy`)")
    add_json_option(q, "the summary")
    q.set_defaults(func=run_inspect)


def run_export(args: argparse.Namespace) -> int:
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.export.random_model import load_model
    from alignvar_edge.model.pruning import parse_prune

    model, name, source = load_model(args.checkpoint, args.preset, args.seed)
    ext = {"auto": None, "yes": True, "no": False}[args.external_data]
    t0 = time.perf_counter()
    out = export_onnx(model, args.out, graph=args.graph, batch=args.batch, opset=args.opset, refine=args.refine,
                      attention=args.attention, prune=parse_prune(args.prune),
                      n_tiles=args.tiles, seed=args.seed, simplify=args.simplify, force=args.force,
                      external_data=ext, model_name=name, source=source, tile_images=args.images,
                      log=lambda msg: note(f"export: {msg}"))
    batch = read_manifest(out).static_batch
    print(f"wrote {out} ({args.graph} graph, opset {args.opset}, {args.attention} attention, batch {batch}) in "
          f"{time.perf_counter() - t0:.1f} s; inspect it with: alignvar-edge inspect {shell_word(out)}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact

    with no_stale_result(args.json, {"inspect": str(args.artifact)}) as result:
        info = inspect_artifact(args.artifact)
        result.emit(info, format_inspection(info))
    return 0
