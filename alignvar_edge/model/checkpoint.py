"""Checkpoints: safetensors + config.json and the bundled default.

Nothing here unpickles code: safetensors holds tensors only. Upstream `.pth` files (VAR, VARSR)
are converted by model/upstream.py, which reads them without running their pickles.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from safetensors import SafetensorError, safe_open

from alignvar_edge import jsonsafe
from alignvar_edge.caller import option, python_call
from alignvar_edge.errors import CheckpointError, InputError
from alignvar_edge.fsmodes import as_write_error, hidden_prefix, publish_mode, replace_dir
from alignvar_edge.lazy import lazy_import
from alignvar_edge.manifest import MANIFEST_FILE, RUN_FILE, ModelSource, sha256_file
from alignvar_edge.model.bundled import (BUNDLED, CONFIG_FILE, DEFAULT_CHECKPOINT, PRETRAINED_DIR, WEIGHTS_FILE,
                                         checkpoint_files_in)
from alignvar_edge.model.config import AlignVARConfig, ConfigValueError
from alignvar_edge.name_text import PathArg, path_text, shell_word
from alignvar_edge.native_paths import native_path
from alignvar_edge.tensor_files import sort_header

# names, configs and sources need no PyTorch (a device install reads them); tensors do
if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

TRAINING_FILE = "training.json"      # how it was made (`import` records the upstream files here)
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar")   # torch.save files: `import` converts them
# the selftest's golden outputs (runtimes/golden.py): beside the weights, where make_golden writes
# them, and in every engine directory built from them
GOLDEN_FILE = "golden.safetensors"
# what alignvar-edge writes into a checkpoint directory; replacing a checkpoint may drop these,
# never anything else
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, TRAINING_FILE, GOLDEN_FILE)
# how a checkpoint alignvar-edge wrote (save_pretrained, every version) is told from someone's
# folder with files of the same names (a Hugging Face snapshot): its weights' metadata names us, and
# its config.json has the keys every AlignVAR config has
WEIGHTS_FORMAT = "alignvar-edge"
_CONFIG_MARKER_KEYS = ("scale", "hr_size", "patch_nums", "depth", "width", "heads")


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)      # "name: ckpt shape vs model shape"
    dropped: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        parts = []
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape mismatch", self.mismatched), ("dropped", self.dropped)):
            if names:
                shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts) or "all keys matched"


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """A bundled model name, or a directory with config.json + model.safetensors and no manifest
    (an export or engine, a torch engine's copy of the weights included, is not a checkpoint)."""
    p = Path(path)
    if (p / MANIFEST_FILE).is_file():     # even a folder named as a bundled model is then an artifact
        return False
    return str(path) in BUNDLED or checkpoint_files_in(p)


def chosen_checkpoint(checkpoint: str | os.PathLike[str] | None, preset: str | None) -> str:
    """The checkpoint that a verb taking either a checkpoint or a preset loads where no preset is
    given: `checkpoint`, by default the bundled model. Both given is refused: one would be ignored."""
    if checkpoint and preset:
        raise InputError(f"pass either a checkpoint or {option('preset')}, not both")
    return str(checkpoint or DEFAULT_CHECKPOINT)


def resolve_checkpoint_dir(name_or_dir: PathArg) -> Path:
    """A bundled model name or a directory holding config.json + model.safetensors (bytes too: `path_text`)."""
    s = path_text(name_or_dir)
    if s in BUNDLED:
        path = PRETRAINED_DIR / s
        if not (path / WEIGHTS_FILE).exists():
            raise CheckpointError(f"the bundled model '{s}' is missing from this installation "
                                  f"({path}); reinstall alignvar-edge")
        return path
    path = Path(s)
    if path.is_file() and checkpoint_files_in(path.parent):
        raise CheckpointError(f"'{s}' is a file of a checkpoint; pass its folder '{path.parent}'")
    if path.is_file() and path.suffix.lower() in TORCH_SUFFIXES:
        raise CheckpointError(f"'{s}' is a PyTorch file, not a checkpoint directory (such files are never "
                              "unpickled here); convert VARSR's or VAR's with `alignvar-edge import varsr|var "
                              "... --out DIR` and pass DIR")
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint directory at '{s}'; pass a directory with {CONFIG_FILE} "
                              f"and {WEIGHTS_FILE}, or a bundled model name: {', '.join(BUNDLED)}")
    for f in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / f).is_file() and (path / MANIFEST_FILE).is_file():     # an export or an engine
            raise CheckpointError(f"'{s}' is an artifact of alignvar-edge (an export or an engine: it has "
                                  f"{MANIFEST_FILE}), not a model checkpoint; pass the checkpoint it was made from "
                                  f"(`alignvar-edge inspect {shell_word(s)}` names it), or a bundled model name: "
                                  f"{', '.join(BUNDLED)}")
        if not (path / f).is_file():
            # a training run's folder: its checkpoint is `final` inside it, or while it trains `latest`
            # (the EMA weights of its last save)
            inside = next((path / d for d in ("final", "latest") if (path / d / CONFIG_FILE).is_file()), None)
            still = " (it is still training, or was stopped: the weights of its last save)" \
                if inside is not None and inside.name == "latest" else ""
            hint = (f"; this looks like a training run: pass '{inside}'{still}" if inside else
                    f"; `train`, `import` and `save_pretrained` write {CONFIG_FILE} and {WEIGHTS_FILE} "
                    "together: copy the missing one from where its pair was written")
            raise CheckpointError(f"checkpoint directory '{path}' has no {f}{hint}")
    return path


def load_config(path: Path) -> AlignVARConfig:
    """A checkpoint's config.json, typed and validated (AlignVARConfig.validate): a value the model
    refuses is one line naming the file and the key, before any verb does work with it."""
    try:
        d = jsonsafe.loads((path / CONFIG_FILE).read_text())
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        return AlignVARConfig.from_dict(d)
    except ConfigValueError as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: {e.detail}") from e
    except (ValueError, TypeError) as e:    # ConfigError, and bad JSON of any kind (jsonsafe.loads)
        raise CheckpointError(f"{path / CONFIG_FILE} is not a valid AlignVAR config: {e}") from e


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple) else tuple(v.shape)


def match_state_dict(model: torch.nn.Module | dict[str, tuple[int, ...]], sd: dict[str, Any]
                     ) -> tuple[dict[str, Any], LoadReport]:
    """Keep the entries whose names and shapes fit the model (or a name -> shape map); report the
    rest by name. Entries are tensors or bare shapes (a weights file's header)."""
    own = {k: _shape(v) for k, v in (model.items() if isinstance(model, dict) else model.state_dict().items())}
    report = LoadReport()
    kept: dict[str, Any] = {}
    for k, v in sd.items():
        if k not in own:
            report.unexpected.append(k)
        elif _shape(v) != own[k]:
            report.mismatched.append(f"{k}: {_shape(v)} vs {own[k]}")
        else:
            kept[k] = v
    report.missing = sorted(k for k in own if k not in sd)
    return kept, report


def read_weights(path: Path, expected: dict[str, tuple[int, ...]], strict: bool = True) -> dict[str, torch.Tensor]:
    """The weights of the checkpoint at `path`: the file's header checked against the `expected`
    shapes first (nothing large is read before it agrees), then the tensors, each checked finite."""
    weights = path / WEIGHTS_FILE
    _, report = match_state_dict(expected, weights_header(weights))
    if strict and not report.clean:
        raise CheckpointError(f"weights in {path} do not match its config.json: {report.summary()}")
    from safetensors.torch import load_file
    try:
        with native_path(weights) as at:        # safetensors' torch loader takes UTF-8 names only
            sd = load_file(at)
    except InputError:      # native_path: a folder name it cannot hand on, said as such (not "re-download")
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise unreadable_weights(weights, e) from e
    check_finite(sd, weights)
    return sd


def checkpoint_source(path: str | os.PathLike[str], hashed: bool = True) -> ModelSource:
    """Where a checkpoint's weights come from, as an artifact records it: a bundled name, or the
    checkpoint's absolute path (with what `alignvar-edge import` converted, if it did), and the
    SHA-256 of its files so that a use elsewhere can prove it is the same checkpoint."""
    d = resolve_checkpoint_dir(path)
    sha = {f: sha256_file(d / f) for f in (CONFIG_FILE, WEIGHTS_FILE)} if hashed else {}
    # by name, or by the folder a name resolves to (a build hands on that): a bundled model is
    # recorded by its name, never by the install path a reinstall or another machine does not have
    name = str(path) if str(path) in BUNDLED else bundled_at(d)
    if name is not None:
        return ModelSource("bundled", name=name, path=str(d.resolve()), sha256=sha)
    try:
        upstream = jsonsafe.loads((d / TRAINING_FILE).read_text()).get("imported_from")
    except (OSError, ValueError, AttributeError):
        upstream = None
    if isinstance(upstream, dict):
        return ModelSource("upstream", path=str(d.resolve()), sha256=sha, upstream=upstream)
    return ModelSource("checkpoint", path=str(d.resolve()), sha256=sha)


def bundled_at(d: str | os.PathLike[str]) -> str | None:
    """The name of the bundled model whose folder in this installation `d` is, else None."""
    here = Path(d).resolve()
    return next((name for name in BUNDLED if (PRETRAINED_DIR / name).resolve() == here), None)


def bundled_by_content(sha256: Mapping[str, str]) -> str | None:
    """The name of the bundled model whose config.json and weights have these SHA-256s (an artifact
    that recorded the bundled model by its install path, which a reinstall or another machine does
    not have), else None."""
    want = {f: sha256.get(f) for f in (CONFIG_FILE, WEIGHTS_FILE)}
    return next((name for name in BUNDLED if _bundled_sha256(name) == want), None)


def _bundled_sha256(name: str) -> dict[str, str]:
    # sha256_file remembers each file while its size and times hold: a changed install is read again
    d = PRETRAINED_DIR / name
    return {f: sha256_file(d / f) if (d / f).is_file() else "missing" for f in (CONFIG_FILE, WEIGHTS_FILE)}


def training_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's training.json ({} where it has none, or none readable as a JSON object)."""
    try:
        made = jsonsafe.loads((resolve_checkpoint_dir(path) / TRAINING_FILE).read_text())
    except (OSError, ValueError, CheckpointError):
        return {}
    return made if isinstance(made, dict) else {}


# where a lineage's stages are said to have trained on the built-in sample photographs (no --images)
BUILTIN_IMAGES = "builtin"


def training_lineage(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a checkpoint's training rests on, from its training.json: the stage, its steps (and
    planned steps), batch, training images (a folder, or BUILTIN_IMAGES) and, for a decoder stage,
    its latent; a stage started from --init holds the same of that checkpoint under "init", and so
    on back to the first stage. An --init whose record is not where it was (moved, deleted, not
    shipped with a bundled model, not written by `train`) is {"checkpoint": its path, "record":
    "not found"}. {} where the checkpoint has no training record."""
    return _stage_lineage(resolve_checkpoint_dir(path), set())


def _stage_lineage(d: Path, seen: set[Path]) -> dict[str, Any]:
    made = training_record(d)
    options = made["options"] if isinstance(made.get("options"), dict) else {}
    if not isinstance(made.get("stage"), str) or not isinstance(made.get("steps"), int):
        return {}
    seen.add(Path(os.path.realpath(d)))      # realpath: a symlink loop is a path, not an error
    cwd = _recorded_cwd(d, made)
    stage: dict[str, Any] = {k: made[k] for k in ("stage", "steps", "planned_steps")
                             if isinstance(made.get(k), (int, str))}
    if isinstance(options.get("batch"), int):
        stage["batch"] = options["batch"]
    images = options.get("images")
    stage["images"] = BUILTIN_IMAGES if images is None else str(_as_given_from(str(images), cwd))
    if made["stage"] == "decoder" and isinstance(options.get("decoder_latent"), str):
        stage["latent"] = options["decoder_latent"]
    init = options.get("init")
    if isinstance(init, str):
        where = init_dir(init, cwd)
        # what the earlier stage was when this one started from it (train records it: the earlier run
        # may since have moved, resumed or been replaced), else where it is now; a relative --init
        # from a folder the run did not record is not looked for from this one
        recorded = made.get(INIT_LINEAGE)
        earlier = (recorded if isinstance(recorded, dict) and recorded
                   else _stage_lineage(where, seen) if where.is_absolute() and Path(os.path.realpath(where)) not in seen
                   else {})
        stage["init"] = {"checkpoint": str(where), **(earlier or {"record": "not found"})}
    return stage


# training.json's record of the --init checkpoint's lineage as it was when the stage started from it
INIT_LINEAGE = "init_lineage"
# training.json's record of the folder the `train` command that saved it ran in
TRAINED_IN = "cwd"


def _recorded_cwd(d: Path, made: dict[str, Any]) -> str | None:
    """The folder the `train` command that saved the checkpoint in `d` ran in (`made`: its training.json):
    its relative --init and --images are paths from there. A resumed run's command may run elsewhere
    than the one that started it; a checkpoint saved before training.json said (TRAINED_IN) falls back
    on RUN/run.json beside RUN/final or RUN/latest, the starting command's folder."""
    if isinstance(made.get(TRAINED_IN), str):
        return str(made[TRAINED_IN])
    try:
        cwd = jsonsafe.loads((d.parent / RUN_FILE).read_text()).get("cwd")
    except (OSError, ValueError, AttributeError):
        return None
    return cwd if isinstance(cwd, str) else None


def _as_given_from(path: str, cwd: str | None) -> Path:
    """A path as the run's command gave it, made absolute from the folder it ran in where known."""
    return Path(cwd, path) if cwd is not None else Path(path)


def init_dir(init: str, cwd: str | None) -> Path:
    """The checkpoint folder a run's --init named: a bundled name as `train` reads it, else the path."""
    return PRETRAINED_DIR / init if init in BUNDLED else _as_given_from(init, cwd)


def training_stage(path: str | os.PathLike[str]) -> str | None:
    """The `train` stage that wrote a checkpoint (its training.json), or None (bundled, imported,
    saved from Python, unreadable)."""
    stage = training_record(path).get("stage")
    return stage if isinstance(stage, str) else None


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict (names, shapes, bytes): which weights an artifact was made from.
    A `torch.compile`d model is hashed as the model it wraps (its keys carry an `_orig_mod.` prefix)."""
    model = getattr(model, "_orig_mod", model)
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def weights_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, reading no tensor data."""
    try:
        with native_path(path) as at, safe_open(at, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except InputError:      # native_path's, as above
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise unreadable_weights(path, e) from e


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """What a weights file is by its first bytes: 'empty', 'zip' (torch.save's format since 1.6),
    'pickle' (a legacy torch.save), 'safetensors' (an 8-byte header length, then its JSON header),
    else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return None
    if not head:
        return "empty"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] == b"\x80":              # pickle's PROTO opcode
        return "pickle"
    return "safetensors" if head[8:9] == b"{" else None


def unreadable_weights(path: Path, error: Exception) -> CheckpointError:
    """A checkpoint's weights file that safetensors cannot read, with the fix for what it is."""
    kind = file_kind(path)
    if kind in ("zip", "pickle"):
        return CheckpointError(f"{path} is a PyTorch (pickle) file, not safetensors; it was not opened (pickles "
                               "are never loaded here): convert VARSR's or VAR's files with `alignvar-edge import "
                               "varsr|var ... --out DIR`, or write your model with save_pretrained")
    if kind == "empty":
        return CheckpointError(f"{path} is empty (0 bytes); re-download or re-export it")
    return CheckpointError(f"{path} is not a readable safetensors file ({error}); re-download or re-export it")


def check_finite(sd: dict[str, torch.Tensor], where: Path | str) -> None:
    """Every floating tensor finite, or one line naming the first that is not."""
    for name, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{where}: tensor '{name}' holds {bad} NaN/Inf value(s); the checkpoint is "
                                  "corrupt or diverged in training: use an earlier checkpoint")


def check_checkpoint_out(out: Path, overwrite: bool, switch: str) -> None:
    """May a checkpoint be written to `out`? Yes if it is absent or an empty folder; with `overwrite`
    (the caller's `switch`, named in the error) also if it is a checkpoint directory holding nothing
    but CHECKPOINT_FILES. Anything else is someone's, and replacing the folder would delete it."""
    if not os.path.lexists(out) or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
        return
    if not overwrite:
        raise CheckpointError(f"'{out}' already exists and is not empty; choose another directory or pass {switch}")
    if out.is_symlink() or not checkpoint_files_in(out):
        raise CheckpointError(f"'{out}' is not a checkpoint directory ({CONFIG_FILE} + {WEIGHTS_FILE}); {switch} "
                              "replaces only checkpoints, so choose another directory")
    if not own_checkpoint(out):
        raise CheckpointError(f"'{out}' holds a {CONFIG_FILE} and {WEIGHTS_FILE} that alignvar-edge did not write "
                              f"(not an AlignVAR config, or weights saved by another tool); {switch} replaces only "
                              "checkpoints alignvar-edge wrote: remove it yourself or choose another directory")
    others = sorted(p.name for p in out.iterdir() if p.name not in CHECKPOINT_FILES)
    if others:
        raise CheckpointError(f"'{out}' holds files besides a checkpoint's ({', '.join(others[:3])}"
                              f"{', ...' if len(others) > 3 else ''}); {switch} replaces only what alignvar-edge "
                              "wrote, so move them or choose another directory")


def own_checkpoint(path: Path) -> bool:
    """Did alignvar-edge write the checkpoint at `path`? (WEIGHTS_FORMAT in its weights' metadata, the
    AlignVAR keys in its config.json; reads the weights' header only.)"""
    try:
        config = jsonsafe.loads((path / CONFIG_FILE).read_text())
        with native_path(path / WEIGHTS_FILE) as at, safe_open(at, framework="pt") as f:
            made_by = (f.metadata() or {}).get("format")
    except InputError:      # native_path's, as above: not "someone else's checkpoint"
        raise
    except (OSError, ValueError, SafetensorError):
        return False
    return made_by == WEIGHTS_FORMAT and isinstance(config, dict) and all(k in config for k in _CONFIG_MARKER_KEYS)


@python_call(force="overwrite")
def save_pretrained(model: torch.nn.Module, out_dir: PathArg, extra: dict[str, Any] | None = None,
                    overwrite: bool = False, weights_dtype: torch.dtype | None = None) -> Path:
    """Write config.json + model.safetensors atomically (temp sibling dir, then rename).

    `weights_dtype=torch.float16` stores floating-point tensors in half precision (half the file;
    the bundled default ships so). Loading widens them back into the fp32 model exactly, so the
    model *is* the fp16-rounded weights: compare it with the fp32 original before shipping."""
    from safetensors.torch import save_file
    weights_dtype = weights_dtype or torch.float32
    out = Path(path_text(out_dir))
    check_checkpoint_out(out, overwrite, option("force", True))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=hidden_prefix(out.name, 8 + 4), suffix=".tmp", dir=out.parent))
    try:
        sd = {k: (v.to(weights_dtype) if v.is_floating_point() else v).detach().contiguous().cpu()
              for k, v in model.state_dict().items()}
        save_file(sd, str(tmp / WEIGHTS_FILE),
                  metadata={"format": WEIGHTS_FORMAT, "weights_dtype": str(weights_dtype).removeprefix("torch.")})
        sort_header(tmp / WEIGHTS_FILE)
        cfg = cast(AlignVARConfig, model.config).to_dict()
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        if extra:
            (tmp / TRAINING_FILE).write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n")
        publish_mode(tmp)             # mkdtemp made it 0700: the checkpoint gets what the umask allows
        # an old `out` is deleted only once the new one is in its place: stopped at any point (Ctrl-C
        # while RUN/final is rewritten), one whole checkpoint remains, and `eval RUN/latest` beside a
        # training run finds no half-deleted folder
        replace_dir(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        error = as_write_error(e, out)          # the checkpoint's folder, not the hidden temporary one
        if error is None:
            raise
        raise error from e
    return out
