"""Shared pieces of the runtime tests: a sharpened random-weight model, its ONNX export (cached
on disk between runs, since the dynamo exporter takes about a minute even for `micro`), crops of
the held-out photographs, and tile agreement helpers.

Random weights give near-uniform logits, so argmax ties between two fp32 runtimes would flip
tokens for reasons that have nothing to do with the runtime. The logits head is multiplied by 50
(`export.random_model`, as the export tests do) so that margins are like a trained model's; the
bundled trained model needs no such help.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from alignvar_edge.model import AlignVAR

ROOT = Path(__file__).resolve().parent.parent


# the smallest model every export path handles; cfg > 0 so that both graph forms also carry the
# image-CFG branch (B2 = 2B rows in the cache)
NANO = dict(hr_size=16, patch_nums=(1, 2, 4), depth=1, cfg=1.0)


def nano_model(seed: int = 0) -> AlignVAR:
    """The NANO config with sharpened random weights."""
    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.model import AlignVARConfig
    return random_model(AlignVARConfig.from_preset("micro", **NANO), seed=seed)


def micro_model(seed: int = 0, **overrides: object) -> AlignVAR:
    """The `micro` preset (with `overrides`) at plain random init, in eval mode."""
    from alignvar_edge.model import AlignVARConfig
    torch.manual_seed(seed)
    return AlignVAR(AlignVARConfig.from_preset("micro", **overrides)).eval()  # type: ignore[arg-type]


@lru_cache(maxsize=None)
def sharp_model(preset: str = "micro", seed: int = 0) -> AlignVAR:
    from alignvar_edge.export.random_model import random_model
    return random_model(preset, seed=seed)


def _model_key(model: AlignVAR) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    # the exporter and the model code change the graph: key on their sources too
    sources = sorted((ROOT / "alignvar_edge/model").glob("*.py"))
    sources += [ROOT / "alignvar_edge/export" / f for f in ("onnx_export.py", "graphs.py")]
    for p in sources:
        h.update(p.read_bytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:16]


def cached_export(root: Path, name: str, model: Callable[[], AlignVAR], batch: int = 1) -> Path:
    """`root/name`: the single-graph ONNX export of `model()`, made only where it is missing. Test
    workers running in parallel (pytest -n) wait on a lock for the one making it."""
    from filelock import FileLock
    out = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (out / "manifest.json").is_file():
            from alignvar_edge.export.onnx_export import export_onnx
            export_onnx(model(), out, graph="single", batch=batch, force=True)
    return out


def export_dir(model: AlignVAR, cache_root: Path, batch: int = 1) -> Path:
    """The model's single-graph ONNX export, made once per (weights, code, batch) and cached."""
    return cached_export(cache_root, f"{model.config.name}-b{batch}-{_model_key(model)}", lambda: model, batch)


def heldout_crops(sizes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Odd-size crops of the held-out photographs (name -> HxWx3 float32), used as LR inputs."""
    from alignvar_edge.samples import sample_images
    imgs = dict(sample_images("heldout"))
    out = {}
    for name, (h, w) in sizes.items():
        img = imgs[name]
        y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        out[name] = np.ascontiguousarray(img[y:y + h, x:x + w])
    return out


# the run's base temporary folder, recorded by conftest's `run_temp` fixture (shared by xdist workers)
RUN_TEMP = pytest.StashKey[Path]()


def cache_root(pytestconfig: pytest.Config, kind: str = "alignvar-runtimes") -> Path:
    """Where exports that outlive a test are kept: $ALIGNVAR_TEST_CACHE, else pytest's cache, else
    (cache plugin off: `-p no:cacheprovider`) the run's base temporary folder, for this run only."""
    env = os.environ.get("ALIGNVAR_TEST_CACHE")
    if env:
        return Path(env)
    cache = getattr(pytestconfig, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(kind))
    root = pytestconfig.stash[RUN_TEMP] / kind
    root.mkdir(exist_ok=True)
    return root


def with_external_weights(export: Path, dst: Path) -> Path:
    """A copy of `export` whose weights live in model.onnx.data (as `export --external-data yes` writes
    them), its manifest's hashes made again: a valid artifact."""
    import shutil

    import onnx

    from alignvar_edge.manifest import read_manifest, write_manifest
    shutil.copytree(export, dst)
    model = onnx.load(str(dst / "model.onnx"))
    onnx.save_model(model, str(dst / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data")
    write_manifest(dst, read_manifest(dst))
    return dst


def add_backend(monkeypatch: pytest.MonkeyPatch, name: str, rows: tuple[object, ...] = (),
                backend: object = None, reads_exports: bool = False) -> None:
    """A new target as a contributor adds it, for one test: `name` among the recipe table's backends
    with its `rows` (recipes._row results), its `Backend` instance in a runtime module of its own (the
    ONNX Runtime module where none is given), and among the backends that open an export."""
    import sys
    import types

    from alignvar_edge import recipes, runtimes
    monkeypatch.setattr(recipes, "BACKENDS", (*recipes.BACKENDS, name))
    monkeypatch.setattr(runtimes, "BACKENDS", recipes.BACKENDS)
    monkeypatch.setattr(recipes, "_TABLE", (*recipes._TABLE, *rows))
    monkeypatch.setattr(recipes, "RECIPES", {**recipes.RECIPES, **{(r.backend, r.precision): r for r in rows}})
    if reads_exports:
        monkeypatch.setattr(recipes, "EXPORT_READERS", (*recipes.EXPORT_READERS, name))
    module = "onnxruntime"
    if backend is not None:
        module = f"test_backend_{name}"
        holder = types.ModuleType(f"alignvar_edge.runtimes.{module}")
        holder.BACKEND = backend                                  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, holder.__name__, holder)
    monkeypatch.setitem(runtimes.MODULES, name, module)
