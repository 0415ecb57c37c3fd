"""PyTorch eager: the reference every other engine is compared with (KV-cached rollout).

Its "engine" is the checkpoint itself (a directory with config.json + model.safetensors, or a
bundled name such as 'alignvar-tiny'); `build` only copies it beside a manifest that records the
precision to run in. It takes any batch (the graph engines have a static one).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.caller import option
from alignvar_edge.errors import BackendUnavailableError, CheckpointError, InputError
from alignvar_edge.graph_names import INPUT, SR, token_name
from alignvar_edge.lazy import lazy_import
from alignvar_edge.manifest import (SOURCE_TOOL, Manifest, ModelInfo, ModelSource, contract, load_verified,
                                    new_manifest, read_manifest, recorded_path, tool_versions, write_manifest)
from alignvar_edge.outputs import artifact_dir as staging_dir
from alignvar_edge.model.checkpoint import is_checkpoint
from alignvar_edge.runtimes.artifacts import checkpoint_and_export, leaves_out_refiner, model_name, single_graph_io
from alignvar_edge.runtimes.base import Backend, Engine, TensorSpec
from alignvar_edge.runtimes.golden import copy_golden
from alignvar_edge import recipes

torch = lazy_import("torch")

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_BATCH = 4          # tiles per call when none is given (eager takes any batch)


def torch_record() -> dict[str, Any]:
    """What figures computed on the PyTorch path (eval's scores, compare's reference) depend on
    beyond their inputs and weights, for a result's JSON: the versions that computed them (`tools`,
    as a manifest records them; compare adds the runtimes that ran beside it) and PyTorch's thread count
    (`torch_threads`): its sums split by thread, so 1 and 2 threads differ in the 9th digit of a
    PSNR. Engines of ONNX Runtime and OpenVINO give the same bytes on any thread count."""
    tools = tool_versions(("alignvar-edge", SOURCE_TOOL, "torch", "numpy"))
    return {"tools": tools, "torch_threads": torch.get_num_threads()}


class TorchEngine(Engine):
    backend = "torch"
    # on CPU an engine loaded before os.fork() runs in the child, and the child exits (measured);
    # a CUDA or Metal context does not carry over (set per engine in __init__)
    survives_fork = True

    def __init__(self, model: Any, metadata: Manifest, device: str = "cpu",
                 precision: str = "fp32", batch: int = DEFAULT_BATCH, engine_dir: Path | None = None,
                 cuda_graphs: bool | None = None, refine: bool = True):
        recipes.recipe("torch", precision)
        on_cuda = device.startswith("cuda")
        if cuda_graphs and not on_cuda:
            raise InputError(f"cuda_graphs=True needs a CUDA device, not {device!r}: pass device='cuda' "
                             "or leave cuda_graphs unset")
        super().__init__(metadata, model.config, device, engine_dir)
        self.survives_fork = device == "cpu"
        self._torch = torch
        self.model = model.eval().to(device=device, dtype=getattr(torch, DTYPES[precision]))
        from alignvar_edge.model.transformer import inference_form, set_attention_form
        set_attention_form(self.model, inference_form(device))
        self.precision = precision
        self.preferred_batch = max(1, int(batch))
        self.refine = bool(refine)     # False: the rollout an export made with --no-refine computes
        # on CUDA the rollout replays as one captured graph unless turned off (cuda_graphs=False):
        # launch-bound at small batches: at paper size in fp16 an engine call took 99.6 ms as a
        # graph against 405.7 eager (medians) on an H200 (docs/runtimes.md)
        self._rollout: Any = self.model
        if on_cuda and cuda_graphs is not False:
            from alignvar_edge.runtimes.cuda_graph import GraphedRollout
            self._rollout = GraphedRollout(self.model)

    @classmethod
    def from_model(cls, model: Any, device: str = "cpu", precision: str = "fp32",
                   batch: int = DEFAULT_BATCH, cuda_graphs: bool | None = None, refine: bool = True) -> TorchEngine:
        """Wrap an in-memory AlignVAR (e.g. the reference inside `compare`, or a test model)."""
        meta = new_manifest("engine", "torch", "eager", precision,
                            ModelInfo(name=model.config.name, source=ModelSource.memory(), config=model.config.to_dict()))
        return cls(model, meta, device, precision, batch, cuda_graphs=cuda_graphs, refine=refine)

    @property
    def input_spec(self) -> dict[str, TensorSpec]:
        t = self.config.lr_size
        return {INPUT: ((-1, 3, t, t), np.dtype(np.float32))}

    @property
    def refines(self) -> bool:
        return self.refine and self.config.has_refiner

    def weights_sha256(self) -> str | None:
        """Of the model it holds (a model in memory or a checkpoint records none): fp32 weights only."""
        from alignvar_edge.runtimes.artifacts import model_weights
        return self.metadata.model.weights_sha256 or (model_weights(self.model) if self.model is not None else None)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        p = next(self.model.parameters())
        lr = torch.from_numpy(feeds[INPUT]).to(device=p.device, dtype=p.dtype)
        with torch.inference_mode():
            sr, *tokens = self._rollout(lr, self.model.engine_noise(lr, self.refine))   # what the graphs are fed
        out = {SR: sr.float().cpu().numpy()}
        out.update({token_name(k): t.cpu().numpy().astype(np.int64) for k, t in enumerate(tokens)})
        return out

    def _release(self) -> None:
        self.model = self._rollout = None

    def _after_fork_in_child(self) -> None:
        """As every engine's, and PyTorch on one thread: its OpenMP threads stayed in the parent, and
        once the parent ran an op on several, the child's first op on several hung for ever (measured,
        tests/test_fork.py), on this engine or any other. `torch.set_num_threads` raises it again."""
        super()._after_fork_in_child()
        if torch.get_num_threads() > 1:
            torch.set_num_threads(1)


class TorchBackend(Backend):
    name = "torch"
    module = "torch"
    distribution = "torch"
    extra = "host"
    load_options = frozenset({"precision", "batch", "threads", "cuda_graphs", "refine"})

    def missing_reason(self, error: BaseException) -> str:
        # a device has no PyTorch by design: what it runs instead is an engine built on the host
        return (f"{super().missing_reason(error)}, or run an engine built on the host from an export "
                "(`upscale --engine DIR`, `runtimes.load(DIR)`)")

    def devices(self) -> list[str]:
        devs = ["cpu"]
        if torch.cuda.is_available():
            devs += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            devs.append("mps")
        return devs

    def check_device(self, device: str | None) -> str:
        """A torch device this machine has ('cpu', 'cuda', 'cuda:N', 'mps'), or one clear error."""
        d = (device or "cpu").strip().lower()
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", d):
            raise InputError(f"{option('device', device)} is not a torch device; use cpu, cuda, cuda:N or mps")
        have = self.devices()
        if (f"{d}:0" if d == "cuda" else d) not in have:
            raise BackendUnavailableError(f"{option('device', d)} is not available here (torch sees {', '.join(have)}); "
                                          f"pass {option('device', 'cpu')} or run on a machine that has it")
        return d

    def runs_on(self, engine_dir: str | os.PathLike[str], device: str | None = None) -> str:
        """The device an engine opened from `engine_dir` (a checkpoint or a torch engine) runs on:
        `device`, else the one a built engine records, else the CPU."""
        if device is None and not is_checkpoint(engine_dir):
            device = read_manifest(engine_dir).extra.get("device")
        return self.check_device(device)

    def build(self, artifact_dir: Path, out: Path, precision: str = "fp32",
              calibration: np.ndarray | None = None, device: str | None = None,
              force: bool = False, **opts: Any) -> Path:
        """Copy the checkpoint into an engine dir whose manifest records the run precision; the copy
        is loaded (safetensors only, matched to its config) before anything is published."""
        recipes.recipe(self.name, precision)     # an unknown precision: one line naming the known
        from alignvar_edge.model.alignvar import load_pretrained
        from alignvar_edge.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, checkpoint_source, load_config
        device = self.check_device(device)
        # from an export: its rollout as it computes it (pruned or not) at its batch, the checkpoint's
        # weights being those it was traced from (checkpoint_and_export checks them)
        src, export = checkpoint_and_export(artifact_dir, self.name)
        config = load_config(src)
        prune = list((export.graph_facts.get("prune") if export else None) or ())
        batch = export.static_batch if export else DEFAULT_BATCH
        # an export made with --no-refine computes the model without VARSR's refiner: so does its engine
        unrefined = export is not None and leaves_out_refiner(export)
        with staging_dir(out, force=force) as tmp:
            for f in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copy2(src / f, tmp / f)
            try:
                load_pretrained(tmp)      # a build is proof: these exact files load as this model
            except CheckpointError as e:  # about the user's files, not the hidden copy that goes with the run
                raise CheckpointError(str(e).replace(str(tmp), str(src))) from e
            # eager takes any batch (-1 in the graph, None in the contract); `open` feeds tiles_per_call
            # tiles per call (the export's batch, else DEFAULT_BATCH) unless told otherwise
            m = new_manifest("engine", "torch", "eager", precision,
                             ModelInfo(name=model_name(artifact_dir), source=checkpoint_source(src),
                                       config=config.to_dict()),
                             graphs={"eager": {"file": WEIGHTS_FILE, **single_graph_io(config, -1)}},
                             input_contract=contract(config.lr_size, config.scale, None, config=config),
                             extra={"source": {"path": recorded_path(src)}, "device": device,
                                    "tiles_per_call": batch, **({"prune": prune} if prune else {}),
                                    **({"refine": False} if unrefined else {})})
            # what `selftest --engine` checks this engine against, as every other backend's build ships
            m.extra["golden"] = copy_golden(None, src, tmp, prune=prune, refine=not unrefined)
            from alignvar_edge.runtimes.readme import write_readme
            write_readme(tmp, engine_readme(m))
            write_manifest(tmp, m)
        return out

    def open(self, engine_dir: Path, device: str | None = None, **opts: Any) -> TorchEngine:
        from alignvar_edge.model.alignvar import load_pretrained
        from alignvar_edge.model.checkpoint import checkpoint_source
        precision = opts.pop("precision", None)
        batch = opts.pop("batch", None)
        threads = opts.pop("threads", None)
        graphs = opts.pop("cuda_graphs", None)      # it and threads are checked by Backend.load
        refine = opts.pop("refine", None)                  # checked by Backend.load too
        if threads:
            torch.set_num_threads(int(threads))     # process-wide in PyTorch: only when asked
        path: str | os.PathLike[str] = engine_dir
        if is_checkpoint(engine_dir):
            model = load_pretrained(engine_dir)
            meta = new_manifest("engine", "torch", "eager", precision or "fp32",
                                ModelInfo(name=model.config.name, source=checkpoint_source(engine_dir, hashed=False),
                                          config=model.config.to_dict()),
                                extra={"source": {"path": str(engine_dir)}})
            return TorchEngine(model, meta, self.runs_on(engine_dir, device), precision or "fp32",
                               int(batch or DEFAULT_BATCH), cuda_graphs=graphs, refine=refine is not False)
        m = load_verified(path)               # a torch engine: Backend.load refused any other
        model = load_pretrained(path)    # the engine dir holds config.json + weights
        model.prune = tuple(m.extra.get("prune") or ())     # built from a pruned export: its rollout
        return TorchEngine(model, m, self.check_device(device or m.extra.get("device")),   # as runs_on, read once
                           precision or m.precision, int(batch or m.extra.get("tiles_per_call") or DEFAULT_BATCH),
                           Path(path), cuda_graphs=graphs,
                           # unless told otherwise, as built: without the refiner from a --no-refine export
                           refine=m.extra.get("refine") is not False if refine is None else refine)


def engine_readme(m: Manifest) -> str:
    """README.md of a torch engine directory: a checkpoint that PyTorch runs through alignvar-edge (there
    is no graph to run without them), in the words every engine README shares (`runtimes/readme.py`)."""
    from alignvar_edge.extras import device_install
    from alignvar_edge.runtimes.readme import checked_line, commands, copying
    device = str(m.extra.get("device") or "cpu")
    return "\n".join([
        f"# PyTorch engine: {m.model.name}, {m.precision}, built for {device}", "",
        "The model's checkpoint (`config.json`, `model.safetensors`), run in eager PyTorch: the machine that "
        f"runs it needs PyTorch and alignvar-edge ({device_install('host')}). It runs on `{device}` unless "
        f"`--device` (`load(DIR, device=...)`) names another: `cpu`, `cuda`, `cuda:N` or `mps`. {checked_line(m)}",
        "`selftest --engine` checks it against the golden outputs it carries (`golden.safetensors`).", "",
        *commands("With alignvar-edge, which checks every file's SHA-256 and tiles images of any size with "
                  "overlap blending:"),
        "In Python:", "",
        "```python",
        "from PIL import Image",
        "from alignvar_edge import load",
        "",
        'with load("DIR") as engine:',
        '    engine.upscale(Image.open("IN.png")).save("OUT.png")',
        "```", "", *copying()])


BACKEND = TorchBackend()
