"""Resumable training state without pickles: tensors in safetensors, everything else in JSON.

A state holds the model, its EMA copy, the AdamW moments, the torch RNG and the step. Batches are a
pure function of (seed, step), so restoring these is enough for `--resume` to continue bit for bit.
The state directory is replaced atomically: a run killed while saving keeps the previous state.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from alignvar_edge import jsonsafe
from alignvar_edge.errors import CheckpointError, InputError
from alignvar_edge.fsmodes import as_write_error, publish_mode, replace_dir
from alignvar_edge.native_paths import native_path

STATE_DIR = "state"


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"opt.{pid}.{name}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_state(run_dir: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module,
               opt: torch.optim.Optimizer, meta: dict[str, Any], gen: torch.Generator | None = None) -> None:
    """The run at `step`: weights, EMA, optimizer, torch's RNG and the run's own generator `gen`."""
    # host copies: the state file is the same whichever device trained
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if gen is not None:
        tensors["rng.run"] = gen.get_state()
    tmp = Path(tempfile.mkdtemp(prefix=".state.", suffix=".tmp", dir=run_dir))
    try:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "optimizer": opt_meta, **meta}, indent=1))
        publish_mode(tmp)                 # mkdtemp made it 0700; follow the umask like any output
        final = run_dir / STATE_DIR
        old = run_dir / ".state.old"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)     # a run killed while deleting it left part of one
        replace_dir(tmp, final, aside=old)      # killed between its renames: load_state reads `old`
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        error = as_write_error(e, run_dir)      # the run's folder, not the hidden .state.* one
        if error is None:
            raise
        raise error from e


def _saved_dir(run_dir: Path) -> Path | None:
    """The folder of the state --resume continues: `state`, else `.state.old` (a run killed between
    the two renames of a save: the old state is whole); None where the run saved none."""
    return next((d for d in (run_dir / STATE_DIR, run_dir / ".state.old") if (d / "state.json").is_file()), None)


def has_state(run_dir: Path) -> bool:
    """Has the run in `run_dir` saved a training state that --resume can continue?"""
    return _saved_dir(run_dir) is not None


def saved_step(run_dir: Path) -> int | None:
    """The step of the state --resume would continue from; None where there is none, or it is unreadable."""
    d = _saved_dir(run_dir)
    try:
        return None if d is None else int(jsonsafe.loads((d / "state.json").read_bytes())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_state(run_dir: Path, model: torch.nn.Module, ema: torch.nn.Module,
               opt: torch.optim.Optimizer, gen: torch.Generator | None = None) -> dict[str, Any]:
    d = _saved_dir(run_dir) or run_dir / STATE_DIR
    try:
        meta = jsonsafe.loads((d / "state.json").read_bytes())
        with native_path(d / "tensors.safetensors") as at:     # safetensors' torch loader: UTF-8 names only
            tensors = load_file(at)
    except InputError:      # native_path's: a folder name it cannot hand on, not a corrupt state
        raise
    except (OSError, ValueError, SafetensorError) as e:     # ValueError: any bad JSON (jsonsafe.loads)
        raise CheckpointError(f"cannot resume from '{run_dir}': its training state is missing or corrupt "
                              f"({e}); start again without --resume (and with --force)") from e
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as e:
        raise CheckpointError(f"the training state in '{run_dir}' does not fit this model: {e}") from e
    opt_meta = meta["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, val in opt_meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    opt.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    if gen is not None and "rng.run" in tensors:      # states saved before it was kept restart it from its seed
        gen.set_state(tensors["rng.run"])
    return meta
