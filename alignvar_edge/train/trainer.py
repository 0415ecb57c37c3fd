"""AlignVAR training on CPU: the VQ-VAE, then the transformer on its frozen tokens, then
(optionally) the VQ decoder on the latents the trained transformer itself builds, or ("joint")
the transformer and the decoder together on the image its own rollout decodes to.

Every stage shares one loop: AdamW with warm-up + cosine decay, an EMA copy (the weights that are
exported), a CSV/JSON loss log, atomic resumable state every `save_every` steps, and a final
checkpoint (`final/`: config.json + model.safetensors) written from the EMA weights.
Batch b of a run is a pure function of (seed, b), so `--resume` continues bit for bit.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from alignvar_edge import jsonsafe, safe_stop
from alignvar_edge.argtypes import SEED_LIMIT, check_seed
from alignvar_edge.caller import warn_caller, warnings_changed
from alignvar_edge.cli_json import is_own_result
from alignvar_edge.errors import CheckpointError, ConfigError, InputError, OutputExistsError
from alignvar_edge.fsmodes import not_a_folder, write_text
from alignvar_edge.images import DEFAULT_MAX_MEGAPIXELS, list_images
from alignvar_edge.manifest import RUN_FILE, first_names
from alignvar_edge.name_text import name_bytes, shell_word
from alignvar_edge.outputs import check_out
from alignvar_edge.model import AlignVAR, AlignVARConfig
from alignvar_edge.model.config import named_by_flags
from alignvar_edge.model.alignvar import load_pretrained
from alignvar_edge.model.checkpoint import (CHECKPOINT_FILES, INIT_LINEAGE, TRAINED_IN, init_dir,
                                           check_checkpoint_out, checkpoint_source, save_pretrained,
                                           training_lineage, training_record)
from alignvar_edge.samples import sample_images
from alignvar_edge.train.losses import (decoder_loss, decoder_modules, joint_loss, negative_targets,
                                        transformer_loss, vqvae_loss)
from alignvar_edge.train.data import ImageFolderDataset, prefetch
from alignvar_edge.train.state import STATE_DIR, has_state, load_state, save_state

STAGES = ("vqvae", "transformer", "decoder", "joint")
# What the decoder stage decodes: the trained transformer's own greedy latent, or (the equal-budget
# control that says what the tokens are worth) a zero latent, the LR path alone.
DECODER_LATENTS = ("model", "zero")
RESTART_EVERY = 25


@dataclass
class TrainOptions:
    stage: str
    out: Path
    steps: int
    preset: str = "tiny"
    init: str | None = None            # checkpoint to start from (the transformer stage needs the VQ-VAE)
    images: str | None = None          # folder; None = the built-in sample photographs
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    ema: float = 0.995
    seed: int = 0
    save_every: int = 200
    log_every: int = 10
    hcc_weight: float | None = None    # None: the config's value
    sca: bool | None = None            # None: the config's value
    resume: bool = False
    force: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    decoder_latent: str = "model"      # the decoder stage's input (DECODER_LATENTS)
    progress: bool = True
    device: str = "auto"               # torch device to train on; "auto": CUDA where torch has it, else CPU
    workers: int = 0                   # threads that make the next batches while the device trains (0: none)
    max_minutes: float | None = None   # stop (and save) after the step that passes this wall time; --resume goes on
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS   # larger files in --images are skipped (each is held whole)

    def validate(self) -> None:
        """Every option checked before anything on disk is touched (an invalid --force run must
        not have deleted the old run first)."""
        if self.stage not in STAGES:
            raise InputError(f"unknown stage '{self.stage}'; choose one of {STAGES}")
        if self.stage == "transformer" and not self.init:
            raise InputError("the transformer stage trains on frozen VQ-VAE tokens: pass --init with the "
                             "VQ-VAE stage's output (RUN_DIR/final)")
        if self.stage in ("decoder", "joint") and not self.init:
            raise InputError(f"the {self.stage} stage decodes a trained transformer's latents: pass --init with "
                             "the transformer stage's output (RUN_DIR/final)")
        if self.decoder_latent not in DECODER_LATENTS:
            raise InputError(f"--latent must be one of {DECODER_LATENTS}, got {self.decoder_latent!r}")
        ints = {"--steps": (self.steps, 1), "--batch": (self.batch, 1), "--save-every": (self.save_every, 1),
                "log_every": (self.log_every, 1), "warmup": (self.warmup, 0)}
        for flag, (v, low) in ints.items():
            if not isinstance(v, int) or v < low:
                raise InputError(f"{flag} must be an integer >= {low}, got {v!r}")
        check_seed("seed", self.seed)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr must be a finite number > 0, got {self.lr}")
        for flag, w in (("weight_decay", self.weight_decay), ("--hcc-weight", self.hcc_weight)):
            if w is not None and not (math.isfinite(w) and w >= 0):
                raise InputError(f"{flag} must be a finite number >= 0, got {w}")
        if not 0 <= self.ema < 1:
            raise InputError(f"ema must lie in [0, 1), got {self.ema}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise InputError(f"--max-minutes must be a finite number > 0, got {self.max_minutes}")
        if not (math.isfinite(self.max_megapixels) and self.max_megapixels > 0):
            raise InputError(f"--max-megapixels must be a finite number > 0, got {self.max_megapixels}")
        if self.images is not None and (why := not_a_folder(self.images)) is not None:
            raise InputError(f"--images {self.images} {why}; pass a folder of images, or leave --images "
                             "out to train on the built-in sample photographs")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise InputError(f"--workers must be an integer >= 0, got {self.workers!r}")
        resolve_device(self.device)

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def fingerprint(self) -> dict[str, Any]:
        """What must match for --resume to continue the same run."""
        d = asdict(self)
        # a run may resume on another device, with other data workers or another time budget: none
        # changes what a step computes
        for k in ("out", "steps", "resume", "force", "save_every", "log_every", "progress", "device", "workers",
                  "max_minutes"):
            d.pop(k)
        if d["max_megapixels"] == DEFAULT_MAX_MEGAPIXELS:     # runs saved before the option resume as they were
            d.pop("max_megapixels")
        return json.loads(json.dumps(d, default=str))


# Config fields a run may change on a checkpoint it starts from (--init): they change how the
# transformer is trained or where SCA's constant bias reaches, never the shape or meaning of a weight.
INIT_OVERRIDABLE = ("hcc_weight", "hcc_scale_weights", "hcc_rollout", "hcc_tau", "cond_drop", "cfg_negative",
                    "sca_exclude_radius", "sca_gate")


def resolve_device(name: str) -> torch.device:
    """The torch device of --device ("auto", "cpu", "cuda", "cuda:N"), checked against this torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"--device {name!r} is not a device torch knows ({e}); use auto, cpu or cuda[:N]") from e
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name!r}: training runs on cpu or cuda[:N] (or auto)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA device; "
                             "use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def build_model(opts: TrainOptions) -> AlignVAR:
    if opts.init:
        model = load_pretrained(opts.init)
        refused = sorted(set(opts.overrides) - set(INIT_OVERRIDABLE))
        if refused:
            raise ConfigError(f"--init {opts.init}: {refused} cannot change on an existing checkpoint; "
                              f"set them when training the VQ-VAE stage (changeable: {list(INIT_OVERRIDABLE)})")
        changes = dict(opts.overrides)
        changes.update({k: v for k, v in (("hcc_weight", opts.hcc_weight),) if v is not None})
        if changes:
            with named_by_flags(changes, _FLAGS):
                config = model.config.replace(**changes)
            if config.sca_gate != model.config.sca_gate or config.sca_exclude_radius != model.config.sca_exclude_radius:
                sd = model.state_dict()
                with torch.random.fork_rng():        # rebuilding for SCA's constants draws no run randomness
                    model = AlignVAR(config)
                model.load_state_dict(sd)
            else:
                model.config = config
        if opts.sca is False and model.config.sca:
            sd = model.state_dict()
            model = AlignVAR(model.config.replace(sca=False))
            model.load_state_dict({k: v for k, v in sd.items() if "sca_alpha" not in k})
        return model
    overrides = dict(opts.overrides)
    if opts.sca is not None:
        overrides["sca"] = opts.sca
    if opts.hcc_weight is not None:
        overrides["hcc_weight"] = opts.hcc_weight
    with named_by_flags(overrides, _FLAGS):
        config = AlignVARConfig.from_preset(opts.preset, **overrides)
    return AlignVAR(config)


def trainable_parameters(model: AlignVAR, stage: str) -> list[torch.nn.Parameter]:
    if stage == "vqvae":
        return [p for p in model.vae.parameters()]
    frozen = {id(p) for p in model.vae.parameters()}
    transformer = [p for p in model.parameters() if id(p) not in frozen]
    decoder = [p for m in decoder_modules(model) for p in m.parameters()]
    return {"transformer": transformer, "decoder": decoder, "joint": transformer + decoder}[stage]


def set_modes(model: AlignVAR, stage: str) -> None:
    """Train mode where the stage learns; eval mode (no dropout) wherever its input must be what
    inference computes: the frozen VQ-VAE's tokens, or the rollout the decoder and joint stages decode."""
    if stage in ("decoder", "joint"):
        model.eval()
        for m in decoder_modules(model):
            m.train()
        return
    model.train()
    if stage == "transformer":
        model.vae.eval()


def make_batches(images: str | None, config: AlignVARConfig, batch: int, seed: int,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Batch b = dataset items b*batch .. b*batch+batch-1: a pure function of (seed, b)."""
    source = images if images is not None else sample_images("train")
    ds = ImageFolderDataset(source, crop=config.hr_size, scale=config.scale,
                            degradation=config.lr_degradation(),
                            seed=seed, samples_per_image=10**9, max_megapixels=max_megapixels)
    if images is not None:
        _warn_few_photos(images, len(ds.images), batch)

    def get(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = [ds[(b * batch + i) % len(ds)] for i in range(batch)]
        return torch.stack([it["hr"] for it in items]), torch.stack([it["lr"] for it in items])

    return get


def _warn_few_photos(images: str, photos: int, batch: int) -> None:
    """Fewer photographs in --images than a batch holds: every batch repeats crops of the same ones,
    and the model fits those photographs rather than photographs in general."""
    if photos < batch:
        some = "1 usable photograph" if photos == 1 else f"{photos} usable photographs"
        warn_caller(f"--images {images} holds {some}, fewer than --batch {batch}: every batch repeats crops of "
                    "the same ones, so the model fits them rather than photographs in general (expect other "
                    f"photographs to score worse in `eval`); add photographs, at least {batch}")


def lr_at(step: int, opts: TrainOptions) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    t = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def warn_short_warmup(opts: TrainOptions) -> None:
    """A warm-up the run ends inside (a short run with the default of 100): the learning rate never
    reaches --lr. Said once the run starts, so that a refused command still prints one line."""
    if opts.warmup >= opts.steps:
        warn_caller(f"--warmup {opts.warmup} is not shorter than --steps {opts.steps}: the learning rate "
                    f"never reaches --lr {opts.lr:g}; pass a smaller --warmup")


# the stages that train the transformer
TRANSFORMER_STAGES = ("transformer", "joint")


def _never_trained_transformer(lineage: dict[str, Any]) -> bool:
    """Whether a `training_lineage` shows that no stage trained the transformer: none back to the
    first stage is a transformer or joint stage. A lineage that is not known to its first stage
    (no training record: bundled, imported, saved from Python, moved) is not that."""
    stage = lineage
    while isinstance(stage.get("stage"), str):
        if stage["stage"] in TRANSFORMER_STAGES:
            return False
        if "init" not in stage:
            return True
        stage = stage["init"]
    return False


def _check_trained_transformer(opts: TrainOptions) -> None:
    """The decoder stage freezes the transformer and decodes the latent it builds: from a checkpoint
    whose transformer no stage trained, that latent is noise for the whole run, and the decoder
    learns to ignore it (the --latent zero control under another name). Refused before any work."""
    if opts.stage != "decoder" or opts.decoder_latent != "model" or opts.init is None:
        return
    lineage = training_lineage(opts.init)
    if _never_trained_transformer(lineage):
        raise InputError(f"--init {opts.init} is a {lineage['stage']}-stage checkpoint whose transformer no stage "
                         "trained: the decoder stage keeps the transformer frozen, so the latent it decodes would "
                         f"be noise; train the transformer first (`alignvar-edge train transformer --init "
                         f"{shell_word(opts.init)} --out RUN`) and pass RUN/final, or add --latent zero (the decoder "
                         "on a zero latent, the control)")


def _init_sha256(init: str | None) -> dict[str, str] | None:
    """The SHA-256s of the --init checkpoint's files, by which --resume finds it moved or renamed."""
    return None if init is None else dict(checkpoint_source(init).sha256)


def _saved_a_state(out: Path) -> bool:
    """Whether the run in `out` got as far as saving a state (a state being replaced counts), whole
    or not: `has_state` says whether one is whole, for --resume to continue."""
    return (out / STATE_DIR).exists() or (out / ".state.old").exists()


def _check_resume(opts: TrainOptions) -> None:
    """Refuse a --resume that would not continue the run in opts.out as it started. Reads only."""
    out = opts.out
    fp_path = out / RUN_FILE
    if not _saved_a_state(out):
        if fp_path.exists():        # started, and stopped (killed) before its first save
            raise InputError(f"--resume: '{out}' holds a run that stopped before its first save, so there is "
                             "no training state to continue; start it over with --force")
        raise InputError(f"--resume: '{out}' holds no training state; start without --resume")
    try:
        old = jsonsafe.loads(fp_path.read_bytes()) if fp_path.exists() else None
    except ValueError as e:         # not JSON, not UTF-8, too deep, an integer too long (jsonsafe.loads)
        raise CheckpointError(f"--resume: {fp_path} is not valid JSON ({e}); the run cannot be resumed: "
                              "start it again with --force or choose another --out") from e
    run: dict[str, Any] = old if isinstance(old, dict) else {}
    was: dict[str, Any] = run["options"] if isinstance(run.get("options"), dict) else {}
    # name what differs: the user must not have to diff run.json by hand
    was_cwd = run.get("cwd")
    differ = option_differences(_without_init(was), _without_init(opts.fingerprint()), was_cwd)
    differ += _init_differences(opts, was.get("init"), was_cwd, run.get("init_sha256"))
    if not isinstance(old, dict) or differ:
        raise OutputExistsError(f"--resume: '{out}' was trained with other options "
                                f"({'; '.join(differ) or fp_path}); resume with the same options or start a "
                                "new run directory")
    if "images_sha256" in old and old["images_sha256"] != images_digest(opts.images):    # older runs: unchecked
        raise InputError(f"--resume: the image files in --images {opts.images} are not those '{out}' started "
                         "with (added, removed or resized), so its batches would differ; restore the folder "
                         "or start a new run directory")
    results = _eval_results(out / "final")
    if results:
        # ours, but of the weights --resume replaces: neither deleted with them nor left beside new ones
        raise OutputExistsError(f"--resume: {out / 'final' / results[0]} is an eval result of the checkpoint that "
                                f"--resume replaces; move it out of {out / 'final'} (into '{out}' it is kept) "
                                "and resume again")
    check_checkpoint_out(out / "final", True, "--resume")    # now, not after the run has trained


def _without_init(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "init"}


def _init_differences(opts: TrainOptions, was_init: Any, was_cwd: str | None, recorded_sha256: Any) -> list[str]:
    """--init as option_differences names it, but a checkpoint moved or renamed since the run started
    is the same --init where the run recorded its files' SHA-256s (hashed only where the paths
    differ); a run that did not (older versions) names the path it no longer finds."""
    differ = option_differences({"init": was_init}, {"init": opts.init}, was_cwd)
    if not differ:
        return []
    if isinstance(recorded_sha256, dict):
        return [] if _init_sha256(opts.init) == recorded_sha256 else differ
    where = init_dir(was_init, was_cwd) if isinstance(was_init, str) else None
    if where is not None and not where.exists():
        raise InputError(f"--resume: '{opts.out}' started from --init {was_init}, which is no longer at "
                         f"'{where}' (moved, renamed or deleted; this run did not record its "
                         "content, so another path cannot be checked as the same checkpoint): put it back there "
                         "and resume with the same --init, or start a new run directory")
    return differ


def _prepare_out(opts: TrainOptions, init_sha256: dict[str, str] | None, cwd: str | None) -> Path | None:
    """Make opts.out ready for a new run, recording `init_sha256` (hashed by the caller, before the
    stop is held); with --force, the old run is moved aside (returned) and deleted only once the new
    run has finished (`_finish_out`)."""
    out = opts.out
    fp_path = out / RUN_FILE
    fingerprint: dict[str, Any] = {"options": opts.fingerprint()}
    digest = images_digest(opts.images)
    if digest is not None:
        fingerprint["images_sha256"] = digest
    if init_sha256 is not None:     # --resume finds a moved or renamed --init by it
        fingerprint["init_sha256"] = init_sha256
    aside = None
    taken = out_taken(out)
    # a file, someone's folder, a folder inside an artifact: neither --force nor --resume would take
    # it, so that is said first, whatever the flags
    check_out(out, force=True, replaces=RUN_FILE)
    stray = _not_made_by_a_run(out) if taken else []
    if stray:
        raise OutputExistsError(f"'{out}' holds files a training run did not write ({first_names(stray)}): "
                                + ("--force would delete them; " if opts.force else "")
                                + "move them out of the folder, or choose another --out")
    if taken and not opts.force:
        if not _saved_a_state(out):
            raise OutputExistsError(f"'{out}' holds a run that stopped before its first save; pass --force to "
                                    "start it over, or choose another --out")
        raise OutputExistsError(f"'{out}' already holds a run; pass --force to replace it, "
                                "--resume to continue it, or choose another --out")
    if taken:
        aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, aside)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fingerprint["cwd"] = cwd       # where --images and --init were given from (option_differences)
        fp_path.write_text(json.dumps(fingerprint, indent=1) + "\n")
    except BaseException:
        _finish_out(out, aside, ok=False)      # a full disk: the old run back, not left hidden
        raise
    return aside


# how --resume's refusal names an option: its flag (an option without one: its TrainOptions name)
_FLAGS = {"preset": "--preset", "init": "--init", "images": "--images", "batch": "--batch", "lr": "--lr",
          "warmup": "--warmup", "seed": "--seed", "hcc_weight": "--hcc-weight", "sca": "--no-sca",
          "decoder_latent": "--latent", "max_megapixels": "--max-megapixels", "hcc_rollout": "--hcc-rollout",
          "hcc_tau": "--hcc-tau", "cfg_negative": "--cfg-negative"}
_PATH_OPTIONS = ("init", "images")


def option_differences(was: dict[str, Any], now: dict[str, Any], was_cwd: str | None) -> list[str]:
    """What differs between a run's recorded options and --resume's, each as the user gave it
    ("started with --batch 2, now with --batch 8"). A path given another way (`./imgs/`, an absolute
    path, from another folder) is the same option: relative paths are resolved from the folder each
    command ran in (`was_cwd`; runs that did not record it: this one's)."""
    def same(key: str, a: Any, b: Any) -> bool:
        if a == b or key not in _PATH_OPTIONS or not (isinstance(a, str) and isinstance(b, str)):
            return a == b
        return Path(was_cwd or os.getcwd(), a).resolve() == Path(b).resolve()

    over = set(was.get("overrides") or {}) | set(now.get("overrides") or {})

    def given(key: str, value: Any) -> str:
        if key == "sca" and value is not None:       # --no-sca, or the API's sca=True
            return "with --no-sca" if value is False else f"with sca={value}"
        flag = _FLAGS.get(key, f"overrides[{key!r}]" if key in over else key)
        return f"without {flag}" if value is None else f"with {flag} {value}"

    pairs = [(k, was.get(k), now.get(k)) for k in sorted((set(was) | set(now)) - {"overrides"})]
    pairs += [(k, (was.get("overrides") or {}).get(k), (now.get("overrides") or {}).get(k)) for k in sorted(over)]
    differ = []
    for key, a, b in pairs:
        if same(key, a, b):
            continue
        if key == "stage":
            differ.append(f"started as the {a} stage, now the {b} stage")
        else:
            differ.append(f"started {given(key, a)}, now {given(key, b)}")
    return differ


def out_taken(out: Path) -> bool:
    """Does --out hold anything (a run --force would replace, or something it refuses)?"""
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def _not_made_by_a_run(out: Path) -> list[str]:
    """What in the run folder `out` neither the run nor an `eval --json` beside it (the training scripts
    write RUN/eval.json) wrote: someone's own files, which --force must not delete."""
    stray = []
    for p in sorted(out.iterdir()):
        # save_state's and save_pretrained's own folders (left by a run killed while it saved)
        if p.name in (STATE_DIR, ".state.old") or p.name.startswith((".state.", ".final.", f".{LATEST_DIR}.")):
            continue
        if p.name in ("final", LATEST_DIR) and p.is_dir() and not p.is_symlink():
            stray += [f"{p.name}/{f.name}" for f in sorted(p.iterdir()) if f.name not in CHECKPOINT_FILES]
        elif not (p.name in (RUN_FILE, "log.csv")
                  or (p.is_file() and p.suffix == ".json" and is_own_result(str(p)))):
            stray.append(p.name)
    return stray


def _eval_results(checkpoint: Path) -> list[str]:
    """The `eval --json` results saved inside a checkpoint folder."""
    if not checkpoint.is_dir():
        return []
    return sorted(p.name for p in checkpoint.iterdir()
                  if p.name not in CHECKPOINT_FILES and p.suffix == ".json" and p.is_file() and is_own_result(str(p)))


def images_digest(images: str | None) -> str | None:
    """SHA-256 of what --images held when a run started: its image files' names and sizes. Batch b
    takes the dataset's items by index, so a file added, removed or replaced changes the batches."""
    if images is None:
        return None
    root = Path(images)
    h = hashlib.sha256()
    for path in list_images(root):
        try:
            size = str(path.stat().st_size)
        except OSError:             # a broken link: the dataset skips it, as it would a fixed one's size
            size = "unreadable"
        h.update(name_bytes(f"{path.relative_to(root).as_posix()}\0{size}\n"))
    return h.hexdigest()


def _finish_out(out: Path, aside: Path | None, ok: bool) -> None:
    """After the run: drop the replaced run, or (the new run failed or was interrupted) put it back."""
    if aside is None:
        return
    if ok:
        shutil.rmtree(aside, ignore_errors=True)
        return
    with safe_stop.held():                 # a second Ctrl-C between the two must not leave it hidden
        shutil.rmtree(out, ignore_errors=True)
        os.replace(aside, out)


def _undo_new_out(out: Path, out_was_there: bool) -> None:
    """--out as it was before a run that saved nothing: gone where the run made it, else emptied
    (it was empty: `_prepare_out` takes no other folder for a new run)."""
    if not out_was_there:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _within_seed_range(n: int) -> int:
    """A seed derived from the run's (its seed + 7, a step's), folded into what PyTorch takes: the
    run's own seed may be as large as 2**64-1. Derived seeds already in range are unchanged."""
    return n % SEED_LIMIT


def _working_folder() -> str | None:
    """The folder this command runs in, or None where it cannot be read (removed before the start)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def train(opts: TrainOptions, batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None) -> Path:
    """Run a stage; returns the final checkpoint directory. `batches(b)` -> (hr, lr) for batch b."""
    # read once, as the command starts: the folder may be removed while the run trains, and every
    # save records it (TRAINED_IN: the folder this command's relative paths are from)
    cwd = _working_folder()
    opts.validate()
    _check_trained_transformer(opts)
    torch.manual_seed(opts.seed)
    model = build_model(opts)
    if opts.stage == "transformer" and "hcc_tau" in opts.overrides and model.config.hcc_rollout != "gumbel":
        # the temperature of a Gumbel rollout this run does not make: it would be recorded, never used
        raise InputError(f"--hcc-tau {opts.overrides['hcc_tau']} is the temperature of --hcc-rollout gumbel, but this "
                         f"run's HCC rollout is {model.config.hcc_rollout!r}: add --hcc-rollout gumbel, or drop --hcc-tau")
    if opts.stage == "joint" and (model.use_cfg or model.diffloss is not None):
        raise ConfigError(f"--init {opts.init}: the joint stage trains through the unguided greedy rollout, but "
                          "this model guides its tokens (cfg > 0) or refines its last scale; use the decoder stage")
    if not model.config.degradation:       # record the exact LR recipe for calibration and eval
        model.config.degradation = model.config.lr_degradation().to_dict()
    # what the images say (files skipped) is said once the run starts: a refused command prints one line
    with warnings_changed(record=True) as notices:      # this thread's only
        if batches is None:
            batches = make_batches(opts.images, model.config, opts.batch, opts.seed, opts.max_megapixels)
    model.to(opts.torch_device())
    out_was_there = opts.out.is_dir()       # an empty folder of the user's: an interrupted run leaves it
    aside: Path | None = None
    prepared = False
    try:
        if opts.resume:
            _check_resume(opts)          # reads only: a stop during it has nothing to put back
            prepared = True
        else:
            init_sha256 = _init_sha256(opts.init)     # not held: a stop need not wait for a large --init
            # held: a stop right after the old run was moved aside waits until `aside` names it, then
            # lands here, where the old run is put back (it was left hidden beside --out)
            with safe_stop.held():
                aside = _prepare_out(opts, init_sha256, cwd)
                prepared = True
        # a run that replaces another stops at once when asked: it is not kept (see below), so
        # finishing its step would only delay putting the old run back
        final = _run(opts, model, batches, cwd, stop_gracefully=aside is None, notices=notices)
    except BaseException:
        # Ctrl-C / SIGTERM, or an error (a full disk at the first save): a --force run puts back the
        # run it was replacing; otherwise a run that saved a state is kept (--resume goes on from
        # it), and one stopped before its first save leaves --out as it found it, so the same
        # command runs again (a run.json alone would be refused by it, and by --resume); a resumed
        # run's folder is never this run's to undo, even where its state is unreadable
        if not prepared:
            raise                          # refused before --out was touched
        _finish_out(opts.out, aside, ok=False)
        if aside is None and not opts.resume and not has_state(opts.out):
            _undo_new_out(opts.out, out_was_there)
        raise
    _finish_out(opts.out, aside, ok=True)
    return final


def _run(opts: TrainOptions, model: AlignVAR, batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
         cwd: str | None, stop_gracefully: bool = True, notices: list[warnings.WarningMessage] | None = None) -> Path:
    params = trainable_parameters(model, opts.stage)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=opts.lr, betas=(0.9, 0.95))
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    start = 0
    lineage = _init_lineage(opts)          # before a resumed run's saves replace what it recorded
    device = opts.torch_device()
    # the run's own draws (dead-code restarts, quality labels, Gumbel noise), on the CPU whatever the device
    gen = torch.Generator().manual_seed(_within_seed_range(opts.seed + 7))
    usage = torch.zeros(model.config.vq_vocab, dtype=torch.bool, device=device)   # codes used since the last restart
    if opts.resume:
        meta = load_state(opts.out, model, ema, opt, gen)
        start = int(meta["step"])
        if start > opts.steps:
            # the loop would not run, and the state would be saved again as step --steps with the
            # weights of step `start`: a later --resume would then train those steps twice
            raise InputError(f"--resume: '{opts.out}' has trained {start} steps, more than --steps {opts.steps}; "
                             f"pass --steps {start} or more")
        _trim_log(opts.out / "log.csv", start)
        usage[:] = True
        usage[torch.tensor(meta.get("unused_codes", []), dtype=torch.long, device=device)] = False
    for notice in notices or ():            # every check has passed: the run starts here
        warnings.warn_explicit(notice.message, notice.category, notice.filename, notice.lineno)
    warn_short_warmup(opts)
    trained = {id(p) for p in params}
    for p in model.parameters():            # what the stage freezes builds no gradient
        p.requires_grad_(id(p) in trained)
    set_modes(model, opts.stage)

    log_path = opts.out / "log.csv"
    bar = tqdm(range(start, opts.steps), initial=start, total=opts.steps, disable=not opts.progress,
               desc=f"train {opts.stage}", dynamic_ncols=True)
    t0 = time.perf_counter()
    deadline = None if opts.max_minutes is None else t0 + 60 * opts.max_minutes
    done = opts.steps
    ahead = prefetch(batches, range(start, opts.steps), opts.workers)
    # Ctrl-C or SIGTERM from the CLI: the step in progress finishes and the run is saved there
    # (a second Ctrl-C stops at once, losing the steps since the last save)
    window: contextlib.AbstractContextManager[None] = (
        safe_stop.window("the run stops after this step and is saved there") if stop_gracefully
        else contextlib.nullcontext())
    with window:
        for step in bar:
            hr, lr_img = (t.to(device, non_blocking=True) for t in next(ahead))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, opts)
            if opts.stage == "vqvae":
                loss, stats = vqvae_loss(model, hr, lr_img, usage)
            elif opts.stage == "decoder":
                loss, stats = decoder_loss(model, hr, lr_img, opts.decoder_latent)
            elif opts.stage == "joint":
                loss, stats = joint_loss(model, hr, lr_img)
            else:
                gen.manual_seed(_within_seed_range(opts.seed * 1_000_003 + step))  # quality labels: a function of step
                drop = torch.rand(hr.shape[0], generator=gen) < model.config.cond_drop   # drawn on the CPU
                target_hr = negative_targets(hr, drop, model.config, gen)
                loss, stats = transformer_loss(model, hr, lr_img, drop.long().to(device), gen, target_hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 2.0)
            opt.step()
            with torch.no_grad():
                d = min(opts.ema, (1 + step) / (10 + step))
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - d)
            if opts.stage == "vqvae" and step % RESTART_EVERY == 0:   # step 0: data-dependent init
                if step < 0.6 * opts.steps:   # let the codebook settle in the last 40%
                    _restart_dead_codes(model, hr, lr_img, usage, gen)
                usage[:] = False
            if step % opts.log_every == 0 or step == opts.steps - 1:
                stats.update(step=step, lr=opt.param_groups[0]["lr"],
                             img_per_s=hr.shape[0] * (step + 1 - start) / (time.perf_counter() - t0))
                _append_csv(log_path, stats)
                bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items() if k in ("loss", "psnr", "token_acc")})
            if step + 1 < opts.steps and ((stop_gracefully and safe_stop.asked() is not None)
                                          or (deadline is not None and time.perf_counter() > deadline)):
                done = step + 1                 # out of time or asked to stop: save this point of the schedule
                break
            if (step + 1) % opts.save_every == 0 and step + 1 < opts.steps:
                save_state(opts.out, step + 1, model, ema, opt,
                           {"stage": opts.stage, "unused_codes": (~usage).nonzero().flatten().tolist()}, gen)
                _checkpoint(opts, ema, step + 1, LATEST_DIR, lineage, cwd)
        bar.close()
        ahead.close()                    # a run stopped early: the threads drop the batches made ahead
        save_state(opts.out, done, model, ema, opt,
                   {"stage": opts.stage, "unused_codes": (~usage).nonzero().flatten().tolist()}, gen)
        final = _checkpoint(opts, ema, done, "final", lineage, cwd)
        shutil.rmtree(opts.out / LATEST_DIR, ignore_errors=True)          # final is now the newest
        return final


# RUN/latest: the EMA weights of the last save while the run trains, a checkpoint like RUN/final
# (`eval RUN/latest` follows a long run's held-out quality); removed once final is written
LATEST_DIR = "latest"


def _checkpoint(opts: TrainOptions, ema: AlignVAR, steps: int, name: str, lineage: dict[str, Any] | None,
                cwd: str | None) -> Path:
    # the folder the options' relative paths are from (`cwd`, read as the command started): a --resume
    # may run in another than run.json's
    made: dict[str, Any] = {"stage": opts.stage, "steps": steps, "planned_steps": opts.steps,
                            "options": opts.fingerprint(), TRAINED_IN: cwd}
    if lineage is not None:         # what eval reports this run rests on, even after --init moves
        made[INIT_LINEAGE] = lineage
    return save_pretrained(ema, opts.out / name, overwrite=True, extra=made)


def _init_lineage(opts: TrainOptions) -> dict[str, Any] | None:
    """The --init checkpoint's lineage as it was when the run started from it, once per run: a resumed
    run keeps what it recorded at its first save (another run may have trained at --init since, or
    --init be another run's RUN/latest that moved on)."""
    if opts.init is None:
        return None
    if opts.resume:
        for name in (LATEST_DIR, "final"):
            kept = training_record(opts.out / name).get(INIT_LINEAGE)
            if isinstance(kept, dict):
                return kept
    return training_lineage(opts.init)


@torch.no_grad()
def _restart_dead_codes(model: AlignVAR, hr: torch.Tensor, lr_img: torch.Tensor, usage: torch.Tensor,
                        gen: torch.Generator) -> None:
    """Re-seed codebook entries no token used since the last restart with residual vectors.

    The candidates are the vectors the codebook actually had to match (every scale's residual
    r_k), so a re-seeded code is in use at once. Without this a small CPU run collapses to one
    code per scale and the decoder learns to output nothing (measured: codebook of 1).
    """
    vae = model.vae
    dead = (~usage).nonzero().flatten()
    if len(dead) == 0:
        return
    residuals: list[torch.Tensor] = []
    vae.quantize.quantize(vae.encode(hr, lr_img), residuals)
    pool = torch.cat(residuals)
    # drawn on the CPU generator, so a run's draws do not depend on the device it trains on
    pick = torch.randint(0, pool.shape[0], (len(dead),), generator=gen).to(pool.device)
    noise = torch.randn(len(dead), pool.shape[1], generator=gen).to(pool.device) * pool.std() * 0.01
    vae.quantize.embedding.weight[dead] = pool[pick] + noise


def _trim_log(path: Path, start: int) -> None:
    """Drop the log's rows of steps >= `start`: a run stopped after its last save logged steps that
    the resumed run does again, and the loss curve must hold each step once."""
    if not path.is_file():
        return
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or "step" not in rows[0]:
        return
    col = rows[0].index("step")
    kept = [rows[0]] + [r for r in rows[1:] if len(r) > col and r[col].isdigit() and int(r[col]) < start]
    if len(kept) < len(rows):
        buf = io.StringIO()
        csv.writer(buf).writerows(kept)
        write_text(path, buf.getvalue())


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted(row))
        if new:
            w.writeheader()
        w.writerow(row)
