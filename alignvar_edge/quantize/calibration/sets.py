"""Calibration sets: LR tiles made the way the model's training LR was made, cut to the engine tile.

A `CalibrationSet` holds two disjoint splits of (LR, HR) tile pairs, NCHW float32 in [0, 1]:
`calibration` (activation statistics) and `validation` (the fidelity search judges candidates on
it, so the search never grades itself on the tiles it calibrated on). HR crops are degraded by the
exact chain recorded in the checkpoint config (`config.degradation`), so engines see the kind of
LR they will meet. Everything is a pure function of (images, config, n, seed): the same inputs give
the same `.hash`, which goes into every quantized artifact's manifest.

Images go to one split or the other (a quarter of them, at least one, to validation) so the two
splits share no picture; a folder with a single image falls back to independent crops of that image.
`n` counts tiles, not images: tiles cycle over the images with fresh random crops, so a folder with
fewer images than `n` still works (with a warning: fewer pictures means less diverse statistics).
Unreadable files, and images smaller than one HR tile, are skipped, counted (`.skipped`) and
reported; a folder with no usable image is an `InputError`. `.files` names every image used, its
split and (for a folder) the SHA-256 of the file, so a manifest says which photographs to keep.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.caller import option, warn_caller
from alignvar_edge.degrade import DegradationConfig, degrade
from alignvar_edge.errors import ConfigError, InputError
from alignvar_edge.fsmodes import not_a_folder
from alignvar_edge.graph_names import INPUT
from alignvar_edge.images.folders import list_folder, read_images, said_not_read, skipped_list
from alignvar_edge.images import DEFAULT_MAX_MEGAPIXELS, READ_EXTENSIONS
from alignvar_edge.manifest import sha256_file
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.name_text import name_bytes
from alignvar_edge.samples import sample_images

__all__ = ["CalibrationSet", "TileSplit", "model_config", "rounding_note"]

DEFAULT_TILES = 32
DEFAULT_VALIDATION_TILES = 16
VALIDATION_SHARE = 0.25          # share of the images held out for the validation split
HASH_VERSION = 1                 # bump when the tile recipe changes meaning


def whole_calls(n: int, batch: int) -> int:
    """n tiles rounded up to whole calls of a static-batch graph (the tile counts asked for are a
    minimum: a graph of batch 16 calibrates and validates on 16 tiles when 8 are asked for)."""
    return -(-n // batch) * batch


def rounding_note(what: str, asked: tuple[int, ...], batch: int) -> tuple[tuple[int, ...], str | None]:
    """The tile counts `asked` rounded up to whole calls (`whole_calls`), and the line that says so
    where any changed ("`what` rounded up to whole calls of the export's batch 16: 16 (asked for 4)")."""
    got = tuple(whole_calls(n, batch) for n in asked)
    if got == asked:
        return got, None
    return got, (f"{what} rounded up to whole calls of the export's batch {batch}: "
                 f"{' and '.join(map(str, got))} (asked for {' and '.join(map(str, asked))})")


def full_batches(n: int, batch: int) -> range:
    """Start indices of the whole calls of `batch` tiles that n tiles make (a short tail is
    dropped). Fewer tiles than one call is an error: a static-batch graph takes whole batches only."""
    if n < batch:
        raise InputError(f"{n} tiles cannot fill one call of a batch-{batch} graph, which takes whole batches "
                         f"only; use at least {batch} calibration and validation tiles (--tiles, --val-tiles)")
    return range(0, n - batch + 1, batch)


@dataclass(frozen=True)
class TileSplit:
    """N tile pairs: `lr` (N,3,h,w) and `hr` (N,3,H,W) float32 in [0,1]; `names` = 'image@y,x'."""

    lr: np.ndarray
    hr: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.lr.shape[0])

    def batches(self, batch: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(lr, hr) batches of exactly `batch` tiles (static-shape engines); a short tail is dropped."""
        for i in full_batches(len(self), batch):
            yield self.lr[i:i + batch], self.hr[i:i + batch]


def model_config(config: AlignVARConfig | Mapping[str, Any] | None) -> AlignVARConfig:
    """An AlignVARConfig from a config object, its dict, or a manifest's `model` entry."""
    if isinstance(config, AlignVARConfig):
        return config
    if config is None:
        raise ConfigError("the artifact's manifest has no model config; re-export it with `alignvar-edge export`")
    if isinstance(config, Mapping):
        d = config.get("config", config)        # a manifest's "model" may wrap the config
        if isinstance(d, Mapping):
            return AlignVARConfig.from_dict(dict(d))
    raise ConfigError(f"expected an AlignVAR config or its dict, got {type(config).__name__}")


def check_calib(calib: str) -> None:
    """The `calib` option (`builtin` or a folder of photographs), checked before any work: a folder
    that exists and lists images, else one line naming the option as the caller passes it."""
    if calib == "builtin":
        return
    if (why := not_a_folder(calib)) is not None:
        raise InputError(f"{option('calib', calib)} {why}; pass a folder of photographs or builtin")
    checked_calibration_folder(calib)


def checked_calibration_folder(path: str | os.PathLike[str]) -> Path:
    """A --calib FOLDER that exists and lists image files, checked before any work (`deploy` asks
    before its export and timing, not minutes later when it calibrates); else one line saying what
    is there instead. (`from_folder` finds the same while it reads: one listing of the folder.)"""
    folder = _existing_folder(path)
    listing = list_folder(folder)
    if not listing.images:
        raise _holds_no_images(folder, listing.not_read(folder))
    return folder


def _existing_folder(path: str | os.PathLike[str]) -> Path:
    folder = Path(path)
    if (what := not_a_folder(folder)) is not None:
        raise InputError(f"calibration folder '{folder}' {what}; pass a folder of photographs "
                         "(--calib FOLDER) or `builtin`")
    return folder


def _holds_no_images(folder: Path, not_read: Sequence[str]) -> InputError:
    return InputError(f"calibration folder '{folder}' holds no images (looked for {', '.join(READ_EXTENSIONS)})"
                      f"{said_not_read(not_read, '', refused=True)}; add photographs or use `builtin`")


class CalibrationSet:
    """Calibration and validation tiles for one model configuration (see the module docstring)."""

    def __init__(self, calibration: TileSplit, validation: TileSplit, recipe: dict[str, Any],
                 skipped: Sequence[tuple[str, str]] = (), files: Sequence[dict[str, str]] = ()) -> None:
        if len(calibration) == 0 or len(validation) == 0:
            raise InputError("a calibration set needs at least one calibration and one validation tile")
        self.calibration = calibration
        self.validation = validation
        self.recipe = recipe
        self.skipped: list[tuple[str, str]] = list(skipped)
        # the images the tiles came from: {"file", "split", "sha256" (of a folder's file)}
        self.files: list[dict[str, str]] = [dict(f) for f in files]

    # --- constructors ---------------------------------------------------------------------------
    @classmethod
    def builtin(cls, config: AlignVARConfig | dict[str, Any], n: int = DEFAULT_TILES, seed: int = 0,
                n_val: int = DEFAULT_VALIDATION_TILES, split: str = "train") -> CalibrationSet:
        """Tiles from the bundled sample photographs (`train` split by default; `heldout` for reports)."""

        return cls.from_images(sample_images(split), config, n=n, seed=seed, n_val=n_val,  # type: ignore[arg-type]
                               source=f"builtin:{split}")

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], config: AlignVARConfig | dict[str, Any],
                    n: int = DEFAULT_TILES, seed: int = 0, n_val: int = DEFAULT_VALIDATION_TILES,
                    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> CalibrationSet:
        """Tiles from every image under `path` (recursive); bad files are skipped and counted."""
        folder = _existing_folder(path)
        images: list[tuple[str, np.ndarray]] = []
        skipped: list[tuple[str, str]] = []
        left_out: list[str] = []
        digests: dict[str, str] = {}
        # no calibrating verb has a flag that raises the limit
        for name, rgb in read_images(folder, skipped, max_megapixels, raise_limit=None, not_read=left_out):
            images.append((name, rgb))
            digests[name] = sha256_file(folder / name)
        # with files skipped and none read, from_images refuses the folder naming them
        if not images and not skipped:
            raise _holds_no_images(folder, left_out)
        said_not_read(left_out, f"calibration folder '{folder}'", refused=False)
        return cls.from_images(images, config, n=n, seed=seed, n_val=n_val, source=str(folder),
                               skipped=skipped, file_sha256=digests)

    @classmethod
    def from_images(cls, images: Sequence[tuple[str, np.ndarray]], config: AlignVARConfig | dict[str, Any],
                    n: int = DEFAULT_TILES, seed: int = 0, n_val: int = DEFAULT_VALIDATION_TILES,
                    source: str = "images", skipped: Sequence[tuple[str, str]] = (),
                    file_sha256: Mapping[str, str] | None = None) -> CalibrationSet:
        """Tiles from in-memory (name, HxWx3 float32) images; `file_sha256` (name -> digest of the
        file it was read from) goes into `.files`."""
        cfg = model_config(config)
        if n < 1 or n_val < 1:
            raise ConfigError(f"need at least one calibration and one validation tile, got n={n}, n_val={n_val}")
        deg = cfg.lr_degradation()        # the chain recorded in the checkpoint, or the trainer's default
        if deg.scale != cfg.scale:
            raise ConfigError(f"the recorded degradation scales by {deg.scale} but the model by {cfg.scale}")
        tile = cfg.hr_size
        skipped = list(skipped)
        usable = []
        for name, img in images:
            if min(img.shape[:2]) < tile:
                skipped.append((name, f"{img.shape[1]}x{img.shape[0]} is smaller than the {tile} px HR tile"))
            else:
                usable.append((name, img))
        if not usable:
            detail = skipped_list(skipped)
            raise InputError(f"no usable calibration image in {source} ({len(skipped)} skipped"
                             f"{': ' + detail if detail else ''}); pass readable photographs of at "
                             f"least {tile}x{tile} px")
        if skipped:
            warn_caller(f"calibration: skipped {len(skipped)} file(s) in {source}: {skipped_list(skipped)}")

        calib_imgs, val_imgs, shared = _split_images(usable, seed)
        if len(calib_imgs) < min(n, 4):
            warn_caller(f"calibration: only {len(calib_imgs)} image(s) for {n} tiles; tiles repeat "
                        "pictures with other crops, so statistics are less diverse")
        # Stream ids keep the splits' crops and degradations independent (and disjoint when shared).
        cal = _cut_tiles(calib_imgs, n, tile, deg, seed, stream=1)
        val = _cut_tiles(val_imgs, n_val, tile, deg, seed, stream=2)
        recipe = {
            "source": source, "seed": int(seed), "tiles": int(n), "validation_tiles": int(n_val),
            "hr_tile": tile, "lr_tile": cfg.lr_size, "degradation": deg.to_dict(),
            "images": len(usable), "calibration_images": len(calib_imgs),
            "validation_images": len(val_imgs), "validation_shares_images": shared,
        }
        splits = {name: "calibration" for name, _ in calib_imgs}
        for name, _ in val_imgs:
            splits[name] = "both" if name in splits else "validation"
        digests = file_sha256 or {}
        files = [{"file": name, "split": splits[name], **({"sha256": digests[name]} if name in digests else {})}
                 for name, _ in usable]
        return cls(cal, val, recipe, skipped, files)

    # --- use ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.calibration)

    @property
    def hash(self) -> str:
        """SHA-256 of the tile recipe and of every tile's pixels, both splits."""
        h = hashlib.sha256()
        h.update(json.dumps({k: v for k, v in self.recipe.items() if k != "source"},
                            sort_keys=True).encode())
        for split in (self.calibration, self.validation):
            for arr in (split.lr, split.hr):
                h.update(str(arr.shape).encode())
                h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
            h.update(name_bytes("\n".join(split.names)))
        h.update(f"v{HASH_VERSION}".encode())
        return h.hexdigest()

    def feeds(self, batch: int = 1, split: str = "calibration",
              extra: dict[str, np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
        """Input dicts for the single graph: {INPUT: (batch,3,h,w) float32, **extra}."""
        tiles = self._split(split)
        return [{INPUT: np.ascontiguousarray(lr), **(extra or {})} for lr, _ in tiles.batches(batch)]

    def _split(self, split: str) -> TileSplit:
        if split == "calibration":
            return self.calibration
        if split == "validation":
            return self.validation
        raise ConfigError(f"split must be 'calibration' or 'validation', got {split!r}")

    def summary(self) -> dict[str, Any]:
        """What a manifest records about the set."""
        return {"hash": self.hash, **self.recipe, "files": [dict(f) for f in self.files],
                "skipped": len(self.skipped),
                "skipped_files": [{"file": a, "reason": b} for a, b in self.skipped[:20]]}


def _split_images(images: list[tuple[str, np.ndarray]], seed: int
                  ) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]], bool]:
    """Disjoint image lists for calibration and validation (shared only with a single image)."""
    if len(images) == 1:
        return images, images, True
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0])).permutation(len(images))
    n_val = max(1, int(round(len(images) * VALIDATION_SHARE)))
    val = [images[i] for i in sorted(order[:n_val])]
    cal = [images[i] for i in sorted(order[n_val:])]
    return cal, val, False


def _cut_tiles(images: list[tuple[str, np.ndarray]], n: int, tile: int, deg: DegradationConfig,
               seed: int, stream: int) -> TileSplit:
    lrs, hrs, names = [], [], []
    for i in range(n):
        name, img = images[i % len(images)]
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), stream, i]))
        top = int(rng.integers(img.shape[0] - tile + 1))
        left = int(rng.integers(img.shape[1] - tile + 1))
        hr = np.ascontiguousarray(img[top:top + tile, left:left + tile], dtype=np.float32)
        lr = degrade(hr, deg, int(rng.integers(2**63)))
        hrs.append(hr.transpose(2, 0, 1))
        lrs.append(lr.transpose(2, 0, 1))
        names.append(f"{name}@{top},{left}")
    return TileSplit(np.ascontiguousarray(np.stack(lrs)), np.ascontiguousarray(np.stack(hrs)), tuple(names))
