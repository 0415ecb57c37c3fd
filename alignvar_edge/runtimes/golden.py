"""Golden outputs: a few held-out LR tiles with the reference's tokens and SR tiles, made on the host
by `make_golden` beside a checkpoint's weights (`golden.safetensors`; the bundled model ships its
own) and copied into every engine directory, so `selftest --engine` checks an engine on the device
without the package's model or PyTorch. `GOLDEN_COMMAND CHECKPOINT_DIR` makes them on the host.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from alignvar_edge.errors import ArtifactError, CheckpointError
from alignvar_edge.fsmodes import write_atomically
from alignvar_edge.tensor_files import sort_header
from alignvar_edge.graph_names import INPUT, SR, token_name, token_scale
from alignvar_edge.manifest import Manifest, prune_text, rebuild_command, sha256_file
from alignvar_edge.model.checkpoint import GOLDEN_FILE, WEIGHTS_FILE
from alignvar_edge.name_text import shell_word
from alignvar_edge.runtimes.artifacts import leaves_out_refiner, source_checkpoint

__all__ = ["GOLDEN_COMMAND", "GOLDEN_FILE", "check_golden_rollout", "copy_golden", "engine_golden", "golden_command",
           "golden_entry", "golden_made_as", "load_golden", "made_as_metadata", "make_golden", "read_golden",
           "rollout_text", "write_golden"]

# the host command that makes a checkpoint's golden outputs beside its weights (`main` below)
GOLDEN_COMMAND = "python -m alignvar_edge.runtimes.golden"


def golden_command(model_dir: str | os.PathLike[str]) -> str:
    """`GOLDEN_COMMAND` for `model_dir`, as a shell takes it."""
    return f"{GOLDEN_COMMAND} {shell_word(model_dir)}"


def make_golden(model_dir: str | os.PathLike[str], n: int = 4, seed: int = 0, prune: Sequence[float] = (),
                out: Path | None = None, refine: bool = True) -> Path:
    """Write golden.safetensors for a checkpoint: held-out LR tiles, reference tokens and SR.
    Host side: it runs the PyTorch model as every engine does (`AlignVAR.engine_noise`: VARSR's
    refiner on the fixed noise draw the exported graphs are fed). With `prune` ratios the rollout
    is the pruned one an export with `--prune` computes, with `refine` off the one an export with
    `--no-refine` computes (either written to `out`, an engine directory's file: beside the weights
    lives the whole model's)."""
    import torch

    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.model.checkpoint import resolve_checkpoint_dir
    from alignvar_edge.model.pruning import pruning
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    path = resolve_checkpoint_dir(model_dir)
    model = load_pretrained(path)
    lr = lr_tiles(model.config, n, seed=seed, split="heldout")
    x = torch.from_numpy(lr)
    with torch.inference_mode(), pruning(model, tuple(prune)):
        # as every engine runs it: VARSR's refiner on its fixed noise draw
        sr, *tokens = model(x, model.engine_noise(x, refine))
    refine = refine or not model.config.has_refiner
    meta = {"seed": str(seed), "split": "heldout", "reference": "PyTorch" + rollout_text(prune, refine),
            "weights_sha256": sha256_file(path / WEIGHTS_FILE), **made_as_metadata(prune, refine)}
    return write_golden(out or path / GOLDEN_FILE, lr, sr.numpy(), [t.numpy() for t in tokens], meta)


def rollout_text(prune: Sequence[float], refine: bool) -> str:
    """The rollout golden outputs come from, for their reference and origin: ", pruned X" and
    ", without the refiner", as they apply ('' for the whole model with its refiner)."""
    return (f", pruned {prune_text(prune)}" if prune else "") + ("" if refine else ", without the refiner")


def made_as_metadata(prune: Sequence[float], refine: bool) -> dict[str, str]:
    """The golden file's metadata on the rollout its outputs come from (read by `golden_made_as`):
    the pruning, and the refiner left out."""
    return {**({"prune": prune_text(prune)} if prune else {}), **({} if refine else {"refine": "off"})}


def write_golden(path: Path, lr: np.ndarray, sr: np.ndarray, tokens: list[np.ndarray],
                 metadata: dict[str, str]) -> Path:
    """The golden file format: lr float32, sr float16 (keeps the file small), tokens_k int32."""
    from safetensors.numpy import save_file
    data: dict[str, np.ndarray] = {INPUT: np.ascontiguousarray(lr, np.float32),
                                   SR: np.asarray(sr).astype(np.float16)}
    data.update({token_name(k): np.asarray(t).astype(np.int32) for k, t in enumerate(tokens)})
    def write(tmp: Path) -> None:
        save_file(data, str(tmp), metadata=metadata)
        sort_header(tmp)
    return write_atomically(path, write)


def read_golden(f: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], dict[str, str]]:
    """(LR tiles, reference SR float32, reference tokens per scale int64, metadata) of a golden file.
    A file safetensors cannot read (a pickle named golden.safetensors, text, a cut copy whose hash
    was re-made) or without the tensors `write_golden` writes is one ArtifactError naming it."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file
    try:
        with safe_open(str(f), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
        d = load_file(str(f))
        scales = sorted(k for k in map(token_scale, d) if k is not None)
        return d[INPUT], d[SR].astype(np.float32), [d[token_name(k)].astype(np.int64) for k in scales], meta
    except (SafetensorError, ValueError, KeyError) as e:     # an OSError is the disk's, said as such
        from alignvar_edge.model.checkpoint import file_kind
        what = ("a PyTorch (pickle) file, not safetensors (it was not opened: pickles are never loaded here)"
                if file_kind(f) in ("zip", "pickle") else f"not a golden-outputs file alignvar-edge wrote ({e})")
        raise ArtifactError(f"{f} is {what}; copy the directory again from where it was made, or re-create "
                            "it") from e


def engine_golden(root: Path, otherwise: str | Callable[[], str]) -> Path:
    """The golden file an engine directory carries, or an ArtifactError saying how to get one;
    `otherwise` is the caller's alternative (", or run ..."), or what makes it: called only where a
    refusal says it (a device's selftest looks up what is installed there and nowhere else)."""
    f = root / GOLDEN_FILE
    from alignvar_edge.errors import AlignVAREdgeError
    from alignvar_edge.manifest import read_manifest, verify_files
    try:
        m = read_manifest(root)
    except AlignVAREdgeError:
        m = None
    if f.is_file():
        if m is not None:
            check_golden_rollout(f, m)
        return f
    if m is not None and GOLDEN_FILE in m.files:
        verify_files(root, m)       # listed but gone (a partial copy): that error names it and the fix
    if m is not None and m.kind == "onnx":      # an export (fp32 or quantized): the engines built from it carry them
        # a quantized export builds only at the precision its graph carries (recipes.exported_precision_error)
        precision = f" --precision {m.precision}" if m.precision != "fp32" else ""
        raise ArtifactError(f"{root} is an ONNX export, which carries no {GOLDEN_FILE}: build an engine from it "
                            f"(`alignvar-edge build {shell_word(root)} --target onnxruntime{precision}`, on the host) "
                            f"and use that{_said(otherwise)}")

    bundled = _bundled_golden(m) if m is not None and m.kind == "engine" else None
    if bundled is not None:
        return bundled
    if m is not None and "golden" in m.extra and m.extra["golden"] is None:
        # built by a version that ships golden outputs: the model it came from had none to ship
        ckpt = m.model.source.reference or "CHECKPOINT_DIR"
        raise ArtifactError(f"{root} carries no {GOLDEN_FILE}: the model it was built from "
                            f"({m.model.source.describe()}) has none; make them beside its weights with "
                            f"`{golden_command(ckpt)}` (on the host), then build "
                            f"the engine again{_said(otherwise)}")
    raise ArtifactError(f"{root} carries no {GOLDEN_FILE}; rebuild it with this alignvar-edge, which ships golden "
                        f"outputs: {_rebuild_command(m)}{_said(otherwise)}")


def _said(otherwise: str | Callable[[], str]) -> str:
    return otherwise() if callable(otherwise) else otherwise


def _bundled_golden(m: Manifest) -> Path | None:
    """The golden file of the bundled model an engine without one was built from (by the SHA-256s of
    the checkpoint it records: an older build), where it holds the rollout the engine computes."""
    from alignvar_edge.model.checkpoint import PRETRAINED_DIR, bundled_by_content
    name = bundled_by_content(m.model.source.sha256)
    f = PRETRAINED_DIR / name / GOLDEN_FILE if name else None
    if f is None or not f.is_file():
        return None
    try:
        check_golden_rollout(f, m)
    except ArtifactError:       # a pruned or refiner-less engine: the bundled outputs are not its rollout
        return None
    return f


def _rebuild_command(m: Manifest | None) -> str:
    """`alignvar-edge build SOURCE --target BACKEND` for the engine `m` describes (`rebuild_command`)."""
    return f"`{rebuild_command(m)}`" if m is not None else "`alignvar-edge build`"


def load_golden(model_dir: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    f = model_dir / GOLDEN_FILE
    if not f.is_file():
        raise ArtifactError(f"{f} is missing: the self-test needs golden outputs beside the weights; make "
                            f"them from this checkpoint with `{golden_command(model_dir)}` (for the bundled model: "
                            "reinstall alignvar-edge)")
    lr, sr, tokens, meta = read_golden(f)
    made_for = meta.get("weights_sha256")
    if made_for and made_for != sha256_file(model_dir / WEIGHTS_FILE):
        raise ArtifactError(f"{f} was made for other weights than {model_dir / WEIGHTS_FILE}; "
                            f"regenerate it: {golden_command(model_dir)}")
    return lr, sr, tokens


def copy_golden(src_manifest: Manifest | None, src_dir: Path, dest: Path,
                prune: Sequence[float] | None = None, refine: bool | None = None) -> dict[str, Any] | None:
    """Put golden outputs for the model behind `src_dir` into an engine directory being built
    (`dest`), so `selftest --engine` checks the engine on the device without the package's model
    or PyTorch. Returns the manifest's `extra.golden` entry, or None when there is no golden file.

    In order: a golden file the source already carries (a build kit or engine dir) made for the
    same rollout (pruning, refiner); the golden file of the checkpoint the source was exported from (PyTorch outputs,
    weights checked), or for a pruned source (`prune`, else its manifest's `extra.prune`) the pruned
    rollout's PyTorch outputs made here: the checkpoint's own are the unpruned model's, whose tokens
    a pruned engine does not compute; likewise with `refine` off (by default: where the source's
    graph leaves out the refiner of a model that has one, an export made with --no-refine), the
    outputs of the model without VARSR's refiner. An fp32 ONNX export without
    either gets its own outputs in ONNX Runtime: `onnxruntime.ship_golden`."""
    if prune is None:
        prune = (src_manifest.graph_facts.get("prune") if src_manifest else None) or ()
    if refine is None:
        refine = src_manifest is None or not leaves_out_refiner(src_manifest)
    out = dest / GOLDEN_FILE
    if (src_dir / GOLDEN_FILE).is_file() and golden_made_as(src_dir / GOLDEN_FILE) == (prune_text(prune), refine):
        shutil.copy2(src_dir / GOLDEN_FILE, out)
        return golden_entry(out, f"copied from {src_dir}")
    ckpt: Path | None = src_dir                # src_manifest None: src_dir is the checkpoint
    if src_manifest is not None:
        try:
            ckpt = source_checkpoint(src_manifest)
        except ImportError:                  # a build host without PyTorch: no checkpoint lookup
            ckpt = None
    if ckpt is not None and (prune or not refine):
        try:
            make_golden(ckpt, prune=prune, out=out, refine=refine)
        except ImportError:                  # no PyTorch here to run the pruned rollout
            return None
        return golden_entry(out, f"checkpoint {ckpt.name}" + rollout_text(prune, refine))
    if ckpt is not None and (ckpt / GOLDEN_FILE).is_file():
        try:
            load_golden(ckpt)
        except ArtifactError:
            ckpt = None
        else:
            shutil.copy2(ckpt / GOLDEN_FILE, out)
            return golden_entry(out, f"checkpoint {ckpt.name}")
    return None


def golden_made_as(f: Path) -> tuple[str, bool]:
    """(the pruning, '' for none; whether VARSR's refiner ran) of the rollout a golden file's outputs
    come from, as `made_as_metadata` recorded it (a model without a refiner: True)."""
    meta = read_golden(f)[3]
    return meta.get("prune", ""), meta.get("refine") != "off"


def check_golden_rollout(f: Path, m: Manifest) -> None:
    """An engine's golden outputs must come from the rollout it computes: a pruned engine held to
    the unpruned model's tokens, or an engine without the refiner held to the refined model's
    outputs, fails while correct (engines built before golden files said so)."""
    want = prune_text(m.graph_facts.get("prune")), not leaves_out_refiner(m)
    have = golden_made_as(f)
    if want != have:
        name_refiner = want[1] != have[1]
        raise ArtifactError(f"{f} holds outputs of {_rollout_text(*have, name_refiner)}, but {f.parent} computes "
                            f"{_rollout_text(*want, name_refiner)}: build the engine again with this alignvar-edge "
                            "(it ships the golden outputs of the rollout it builds)")


def _rollout_text(prune: str, refine: bool, name_refiner: bool) -> str:
    model = f"the model pruned {prune}" if prune else "the unpruned model"
    return model + ((" with VARSR's refiner" if refine else " without VARSR's refiner") if name_refiner else "")


def golden_entry(f: Path, origin: str) -> dict[str, Any]:
    lr, _, _, meta = read_golden(f)
    return {"file": GOLDEN_FILE, "tiles": int(lr.shape[0]), "reference": meta.get("reference", "PyTorch"),
            "origin": origin}


def main(argv: list[str] | None = None) -> int:
    """`GOLDEN_COMMAND CHECKPOINT_DIR`: golden outputs beside a checkpoint's weights (host side)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print(f"usage: {GOLDEN_COMMAND} CHECKPOINT_DIR", file=sys.stderr)
        return 2
    try:
        print(make_golden(args[0]))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
