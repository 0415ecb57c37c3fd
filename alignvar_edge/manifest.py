"""`manifest.json`: what an artifact directory holds, written last and atomically, verified on load.

Every directory the toolkit produces (exported ONNX graphs, quantized graphs, built engines) is
made by `outputs.artifact_dir(...)`: the manifest (with the SHA-256 of every file) is written last,
and only then is the directory renamed into place (alignvar_edge/outputs.py: where outputs go and
how they are published and replaced).

Trust model (the manifest cannot vouch for itself; docs/reliability.md): `verify_files` accepts a
directory only if `files` is non-empty, lists every file in it, each path stays inside it (no `..`,
no absolute path, no symlink out), every graph file and ONNX external-data location is listed, and
every hash matches; files are then opened through `listed_file` only.

Readers get a typed `Manifest` (`read_manifest`, `load_verified`), never the raw JSON. Schema
(version 1; keys this version does not know are kept and written back unchanged):
    schema_version   int
    kind             "onnx" | "engine" | "deploy"
    backend          "onnx" for exported graphs; the backend name for engines
    graph            "single" | "staged"
    precision        "fp32" | "fp16" | "int8" | "int8-weights" | ...
    model            `ModelInfo`: name, config (the AlignVAR config dict), scale_schedule,
                     parameters, weights_sha256 (state-dict hash), and where the weights came
                     from (`ModelSource`): `provenance` (structured), `source` (its sentence,
                     for people) and, for a checkpoint, `checkpoint` {path, sha256 of its files}
    files            {relative path: sha256}
    graphs           {graph name: {"file": path, "inputs": [io], "outputs": [io]}}, io = {name, shape, dtype}
    opset            int | null
    quantization     recipe dict | null
    calibration      {"hash": str, "images": int, ...} | null
    parity           dict of figures measured when the artifact was made | null
    tools            {package: version} of the host that made it (`tools_here`), and `alignvar-edge-source`:
                     the SHA-256 of its code (`source_digest`); onnxslim only where it rewrote the graph
    created          ISO-8601 UTC
    input_contract   what the graph's input expects, for anyone feeding it without this package
                     (see `input_contract`): colour order, range, layout, dtype, tile, overlap,
                     scale, batch; null for artifacts without a single-graph `lr` input
    extra            backend-specific (e.g. TensorRT version and GPU compute capability; for an
                     engine, `source`: the artifact it was built from, `files.engine`)

Manifests written before `model.provenance` existed hold only the `source` sentence; reading one
turns that sentence into a `ModelSource` once, here (`ModelSource.from_legacy`), and nowhere else.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import posixpath
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from alignvar_edge import jsonsafe
from alignvar_edge.argtypes import SEED_LIMIT
from alignvar_edge.errors import ArtifactError, InputError
from alignvar_edge.fsmodes import not_a_folder, special_kind, starts_with, symlink_loop, write_text
from alignvar_edge.graph_names import ENGINE_GRAPH, INPUT, NOISE, SINGLE_GRAPH, SR
from alignvar_edge.jsonsafe import dumps
from alignvar_edge.name_text import shell_word
from alignvar_edge.onnx_wire import external_locations

if TYPE_CHECKING:
    from alignvar_edge.model.config import AlignVARConfig

MANIFEST_FILE = "manifest.json"
RUN_FILE = "run.json"          # marks a training run directory (alignvar_edge.train)
OWN_MARKERS = (MANIFEST_FILE, RUN_FILE)
# the keys every manifest.json / run.json we write has (any schema version): many projects keep a
# manifest.json of their own (web apps, extensions), and --force must not delete their folder
MARKER_KEYS = {MANIFEST_FILE: ("schema_version", "kind", "files"), RUN_FILE: ("options",)}
SCHEMA_VERSION = 1
# `tools`' entry for the SHA-256 of this package's code (`source_digest`): not a package, but what
# tells two commits of one release apart
SOURCE_TOOL = "alignvar-edge-source"
TRACKED_TOOLS = ("alignvar-edge", SOURCE_TOOL, "torch", "numpy", "onnx", "onnxruntime", "onnxscript", "openvino",
                 "nncf", "coremltools", "tensorrt")
# tools that rewrite a graph when asked (`export --simplify`): recorded only by the artifact they
# rewrote and by every artifact made from it, whose graph is theirs (onnxslim decides its IR version)
GRAPH_TOOLS = ("onnxslim",)
SOURCE_KINDS = ("bundled", "checkpoint", "upstream", "preset", "memory", "other")
PRESET_REFERENCE = "preset:"     # ModelSource.reference of seeded random weights: preset:NAME:SEED


@dataclass(frozen=True)
class FileRead:
    """What one read of a file found: its SHA-256 and, where the read also walked it as an ONNX graph
    (`read_file(graph=True)`), the location of each tensor it keeps in another file, in order; None
    where it was not walked, () where it keeps none. `unreadable`: why the walk found no ONNX graph
    (verification fails on it: what was not walked was not checked)."""

    sha256: str
    external_data: tuple[str, ...] | None = None
    unreadable: str | None = None


# (device, inode, size, mtime, ctime) -> what a read of each file found in this process: one command
# verifies an artifact several times (build, load, --force's check before the work and at the
# rename), a program verifies every engine it loads, and files can be gigabytes. ctime is in the
# key: a write in place can keep the size and have its mtime set back (os.utime), but every write or
# utime moves the ctime, which no one can set (where the file system keeps one: `ctime_is_kept`);
# linking a graph into an engine moves it too, so that file is read once more.
_READS: dict[tuple[int, int, int, int, int], FileRead] = {}
# a write within the file system's clock tick (FAT's 2 s; Linux's coarse clock a few ms) keeps every
# time: a file is remembered only once its mtime and ctime are that old, or new content would be
# taken for the old
_SETTLED_NS = 2_000_000_000


def sha256_file(path: Path, remember: bool = True) -> str:
    """SHA-256 of the file at `path`, as `read_file` reads it. `remember=False`: not kept, for files
    that are no artifact's (a service's input photos, one entry each, for as long as it runs)."""
    if not remember:
        return _read_contents(path, graph=False).sha256
    return read_file(path).sha256


def read_file(path: Path, graph: bool = False) -> FileRead:
    """The file at `path` read once per process while its size, mtime and ctime hold, where its
    ctime is its own (`ctime_is_kept`). `graph`: also walked as an ONNX graph for the files its
    tensors are kept in, in the same read as the hash, so what was walked is what the hash proves
    (never a file swapped between two reads)."""
    st = os.stat(path)
    key = stat_key(st)
    known = _READS.get(key)
    if known is None or (graph and known.external_data is None):
        known = _read_contents(path, graph)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS and ctime_is_kept(st):
            _READS[key] = known
    return known


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


# FAT keeps times in 2 s steps and exFAT in 10 ms steps: a time on this grid may be theirs
_FAT_TIME_STEP_NS = 10_000_000


def ctime_is_kept(st: os.stat_result) -> bool:
    """Whether `st`'s ctime can tell a change the mtime hides. FAT and exFAT keep none: their ctime
    reads as the mtime, on their coarse grid, so setting the mtime back after an edit in place sets
    both back. A file whose two times are equal and on that grid is hashed at every check (a read,
    never a wrong answer); one written and not touched since on another file system (a `cp` copy)
    has equal times too, in nanoseconds off the grid, and stays cached."""
    return st.st_ctime_ns != st.st_mtime_ns or st.st_mtime_ns % _FAT_TIME_STEP_NS != 0


def hard_link(src: Path, dst: Path) -> None:
    """`os.link(src, dst)`, keeping what this process read of `src`: the link moves the file's ctime,
    which keys the cache, but not its bytes, and a build verifies the graph it linked again (it was
    read again for each check in the next 2 s)."""
    before = os.stat(src)
    os.link(src, dst)
    known = _READS.get(stat_key(before))
    st = os.stat(src)
    unchanged = (st.st_size, st.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if known is not None and unchanged and ctime_is_kept(st):
        _READS[stat_key(st)] = known


def _read_contents(path: Path, graph: bool, sha256: str | None = None) -> FileRead:
    """One pass over the file in blocks (never held whole): the hash, and where `graph` asks, the
    external-data locations walked from the same blocks. `sha256`: the digest a caller has just
    checked against the content, taken as the hash: the graph is walked alone, its tensors' data
    sought past."""
    h, hashing = hashlib.sha256(), sha256 is None
    with open(path, "rb") as fh:
        locations: tuple[str, ...] | None = None
        unreadable = None
        if graph:
            try:
                locations = tuple(external_locations(fh, on_read=h.update if hashing else None))
            except ValueError as e:     # the walk stopped there: the hash reads the rest
                locations, unreadable = (), str(e)
        while hashing and (block := fh.read(1 << 20)):
            h.update(block)
    return FileRead(h.hexdigest() if sha256 is None else sha256, locations, unreadable)


_PACKAGE_ROOT = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def source_digest(root: Path = _PACKAGE_ROOT) -> str:
    """SHA-256 of the .py files of the alignvar_edge package at `root` (this installed one): `__version__`
    is the same for every commit of a release, while what the code makes (an exported graph's bytes, an
    engine's numbers) changes with any edit of it."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def tool_versions(names: tuple[str, ...] = TRACKED_TOOLS) -> dict[str, str]:
    """{package: version} of the `names` installed here; SOURCE_TOOL is this code's `source_digest`."""
    out = {}
    for n in names:
        if n == SOURCE_TOOL:
            out[n] = source_digest()
            continue
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def tools_here(made_from: Manifest | None = None, ran: tuple[str, ...] = ()) -> dict[str, str]:
    """The `tools` of an artifact made here: this host's TRACKED_TOOLS, the GRAPH_TOOLS that rewrote
    `made_from`'s graph (the artifact it is made from, at the versions it records), and the graph
    tools that ran here (`ran`). A graph tool merely installed is left out: it touched nothing."""
    inherited = {k: v for k, v in (made_from.tools if made_from else {}).items() if k in GRAPH_TOOLS}
    return {**tool_versions(), **inherited, **tool_versions(ran)}


def tools_text(tools: Mapping[str, Any]) -> str:
    """A `tools` record as one line of text, the code's digest (SOURCE_TOOL) shortened beside its version."""
    shown = {k: str(v) for k, v in tools.items() if k != SOURCE_TOOL}
    if tools.get(SOURCE_TOOL):
        shown["alignvar-edge"] = f"{shown.get('alignvar-edge', '?')} (source {str(tools[SOURCE_TOOL])[:12]})"
    return ", ".join(f"{k} {v}" for k, v in sorted(shown.items()))


def shown_name(path: str) -> str:
    """The last part of a path written with either separator: how a redacted manifest names a
    folder of the build host (`redact`), and an exported graph's stack traces a file of no module."""
    return re.split(r"[\\/]", path.rstrip("\\/"))[-1] or path


def default_overlap(tile: int) -> int:
    """A quarter of the tile: wide enough for the cross-fade to hide tile-edge effects (the
    overlap every input contract states; `runtimes/tiling.py` cuts images with it)."""
    return max(1, tile // 4)


# ------------------------------------------------------------------------------------------------
# where the weights came from
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """Where an artifact's weights came from; `describe()` is the one sentence for people.

    kind       "bundled" (name: a model shipped in the package), "checkpoint" (path, sha256),
               "upstream" (a checkpoint `alignvar-edge import` converted: path, sha256, upstream),
               "preset" (name, seed: seeded random weights), "memory" (a model handed in from
               Python), "other" (text: what an API caller said, or an old manifest's sentence)
    path       the checkpoint directory, absolute (relative only in old manifests)
    sha256     {file name: SHA-256} of the checkpoint's config.json and model.safetensors
    upstream   what the import recorded: {"kind": "varsr"|"var", "var": path, "vae": path}
    redacted   recorded without the build host's folders (`without_paths`): a checkpoint by its
               folder name (`name`) and its files' SHA-256s, with no `path`
    """

    kind: str
    name: str | None = None
    path: str | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)
    seed: int | None = None
    upstream: Mapping[str, Any] | None = None
    text: str | None = None
    redacted: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown model source kind {self.kind!r}; one of {SOURCE_KINDS}")

    @classmethod
    def preset(cls, name: str, seed: int) -> ModelSource:
        return cls("preset", name=name, seed=int(seed))

    @classmethod
    def memory(cls, name: str | None = None) -> ModelSource:
        return cls("memory", name=name)

    @classmethod
    def other(cls, text: str) -> ModelSource:
        return cls("other", text=text)

    def without_paths(self) -> ModelSource:
        """This source as a redacted engine records it: a checkpoint by its folder name and its
        files' SHA-256s, an import's upstream files by their names; no folder of the build host."""
        upstream = {k: shown_name(v) if isinstance(v, str) else v for k, v in (self.upstream or {}).items()}
        name = self.name or (shown_name(self.path) if self.path else None)
        return dataclasses.replace(self, name=name, path=None, upstream=upstream or None, redacted=True)

    @property
    def reference(self) -> str | None:
        """What loads these weights again: a checkpoint path or bundled name, `preset:NAME:SEED`
        for seeded random weights; None for a model that only existed in memory (or whose
        checkpoint's path was left out: `without_paths`)."""
        if self.kind == "preset":
            return f"{PRESET_REFERENCE}{self.name}:{self.seed if self.seed is not None else 0}"
        if self.kind in ("checkpoint", "upstream"):
            return self.path
        if self.kind == "bundled":
            return self.name
        return None

    def describe(self) -> str:
        if self.kind == "preset":
            return f"preset {self.name}, random weights, seed {self.seed}"
        if self.kind == "bundled":
            return f"checkpoint {self.name} (bundled)"
        if self.kind == "checkpoint":
            return f"checkpoint {self.path or self.name}"
        if self.kind == "upstream":
            up = self.upstream or {}
            files = ", ".join(str(up[k]) for k in ("var", "vae") if up.get(k))
            return (f"checkpoint {self.path or self.name}, imported from {up.get('kind', 'upstream')}"
                    + (f" ({files})" if files else ""))
        if self.kind == "memory":
            return "in-memory model" + (f" {self.name}" if self.name else "")
        return self.text or "unknown"

    def to_json(self) -> dict[str, Any]:
        d = {"kind": self.kind, "name": self.name, "path": self.path, "sha256": dict(self.sha256) or None,
             "seed": self.seed, "upstream": dict(self.upstream) if self.upstream else None, "text": self.text,
             "redacted": self.redacted or None}
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelSource:
        kind = d.get("kind")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"provenance kind {kind!r} is not one of {SOURCE_KINDS}")
        seed = d.get("seed")
        return cls(kind, name=d.get("name"), path=d.get("path"), sha256=dict(d.get("sha256") or {}),
                   seed=int(seed) if seed is not None else None, upstream=d.get("upstream"), text=d.get("text"),
                   redacted=d.get("redacted") is True)

    @classmethod
    def from_legacy(cls, sentence: Any, checkpoint: Any) -> ModelSource:
        """The source an old manifest (no `provenance`) states: its `checkpoint` record
        {path, sha256}, or else the sentence the export wrote ('preset NAME, random weights, seed
        N' / 'checkpoint NAME'). The only place such a sentence is ever read."""
        text = sentence if isinstance(sentence, str) else None
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("path"), str):
            sha = checkpoint.get("sha256")
            return cls("checkpoint", path=checkpoint["path"], sha256=dict(sha) if isinstance(sha, Mapping) else {})
        if isinstance(checkpoint, str) and checkpoint:
            return cls("checkpoint", path=checkpoint)
        if text and text.startswith("preset ") and ", random weights" in text:
            name, _, rest = text[len("preset "):].partition(",")
            seed = rest.rsplit("seed", 1)[-1].strip() if "seed" in rest else "0"
            return cls.preset(name.strip(), int(seed) if seed.isdigit() else 0)
        if text and text.startswith("checkpoint ") and text[len("checkpoint "):].strip():
            return cls("checkpoint", path=text[len("checkpoint "):].strip())
        return cls.other(text or "unknown")


_MODEL_KEYS = ("name", "source", "provenance", "checkpoint", "config", "scale_schedule", "parameters",
               "weights_sha256")


@dataclass(frozen=True)
class ModelInfo:
    """The manifest's `model` entry. `config` is the AlignVAR config as a dict (this module does
    not import the model; `runtimes.base.config_from_manifest` builds the config object)."""

    name: str | None = None
    source: ModelSource = field(default_factory=lambda: ModelSource.other("unknown"))
    config: Mapping[str, Any] | None = None
    scale_schedule: tuple[int, ...] | None = None
    parameters: Mapping[str, Any] | None = None
    weights_sha256: str | None = None
    other: Mapping[str, Any] = field(default_factory=dict)      # keys this version does not know

    @property
    def display_name(self) -> str:
        return self.name or (self.config or {}).get("name") or "unknown"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.other, "name": self.name, "source": self.source.describe(),
                             "provenance": self.source.to_json(), "config": dict(self.config) if self.config else None}
        if self.source.path and self.source.sha256:         # the record older readers use
            d["checkpoint"] = {"path": self.source.path, "sha256": dict(self.source.sha256)}
        if self.scale_schedule is not None:
            d["scale_schedule"] = list(self.scale_schedule)
        if self.parameters is not None:
            d["parameters"] = self.parameters
        if self.weights_sha256 is not None:
            d["weights_sha256"] = self.weights_sha256
        return d

    @classmethod
    def from_json(cls, d: Any) -> ModelInfo:
        if isinstance(d, ModelInfo):
            return d
        if not isinstance(d, Mapping):
            raise ValueError("`model` is not an object")
        if "config" not in d and "patch_nums" in d:       # the oldest form: `model` is the config itself
            sched = d["patch_nums"]
            return cls(name=d.get("name"), config=dict(d),
                       scale_schedule=tuple(sched) if isinstance(sched, list) else None)
        prov = d.get("provenance")
        source = (ModelSource.from_json(prov) if isinstance(prov, Mapping)
                  else ModelSource.from_legacy(d.get("source"), d.get("checkpoint")))
        cfg = d.get("config")
        # engines built from a checkpoint (torch, Core ML) record the config only: its patch_nums
        # is the schedule, which `inspect` otherwise printed as None
        sched = d.get("scale_schedule", (cfg or {}).get("patch_nums") if isinstance(cfg, Mapping) else None)
        return cls(name=d.get("name"), source=source, config=dict(cfg) if isinstance(cfg, Mapping) else None,
                   scale_schedule=tuple(sched) if isinstance(sched, list) else None,
                   parameters=d.get("parameters") if isinstance(d.get("parameters"), Mapping) else None,
                   weights_sha256=d.get("weights_sha256") if isinstance(d.get("weights_sha256"), str) else None,
                   other={k: v for k, v in d.items() if k not in _MODEL_KEYS})


# An artifact made in a staging directory and renamed into place (`deploy`) records the paths its
# sources will have after the rename, not the staging ones, which are gone by then.
_STAGED_AS: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("staged_as", default=None)


@contextlib.contextmanager
def staged_as(staging: str | os.PathLike[str], final: str | os.PathLike[str]) -> Iterator[None]:
    """Within it, `recorded_path` writes a path under `staging` as the same path under `final`."""
    token = _STAGED_AS.set((str(staging), str(final)))
    try:
        yield
    finally:
        _STAGED_AS.reset(token)


def recorded_path(path: str | os.PathLike[str]) -> str:
    """A source's path as a manifest records it (see `staged_as`)."""
    text, staged = str(path), _STAGED_AS.get()
    if staged and (text == staged[0] or text.startswith(staged[0] + os.sep)):
        return staged[1] + text[len(staged[0]):]
    return text


# ------------------------------------------------------------------------------------------------
# redaction: an engine to ship records nothing of the build host's folders and calibration photos
# ------------------------------------------------------------------------------------------------
# Inside `redacting()`: each path a manifest left out -> the name shown in its place, for the whole
# build, so that a field filled in after the manifest was made (the golden file's origin) is cleaned too.
_REDACTING: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("redacting", default=None)
# how a redacted manifest names the calibration photos' folder (and a parity check's --tile-images)
REDACTED_FOLDER = "folder (redacted)"
# calibration sources that name no folder (quantize/calibration/sets.py: the bundled photographs'
# `builtin:SPLIT`, in-memory images, LR tiles given as an array)
_FOLDERLESS_SOURCES = ("images", "array")


@contextlib.contextmanager
def redacting() -> Iterator[None]:
    """Within it, every manifest made or written is redacted (`redact`): `build --redact`."""
    token = _REDACTING.set({})
    try:
        yield
    finally:
        _REDACTING.reset(token)


def redacting_now() -> bool:
    """Whether this build runs inside `redacting()`."""
    return _REDACTING.get() is not None


def redact(m: Manifest, hidden: dict[str, str] | None = None) -> None:
    """Leave out of `m`, in place, what it records of the build host's folders and of the
    calibration photos, none of which a device reads (docs/export.md, "What an engine records"):
    the checkpoint is named by its folder name (its files' SHA-256s and the weights' hash stay), the
    artifact it was built from by nothing (its manifest's SHA-256 stays), the calibration set by its
    hash and counts (no folder, no file names, no per-file SHA-256s). Any other string naming a path
    so left out (the golden file's origin) names it as the record does. `hidden` gathers those paths
    (path -> name shown) across one build; `m.redacted` says it was done."""
    hidden = {} if hidden is None else hidden
    source, name = m.model.source, m.model.name
    for path in (source.path, *(source.upstream or {}).values()):
        _hide(hidden, path)
    if name and name != shown_name(name):          # a checkpoint named by its path, as given
        _hide(hidden, name)
        name = shown_name(name)
    m.model = dataclasses.replace(m.model, name=name, source=source.without_paths())
    if m.extra.get("source_artifact"):
        _hide(hidden, m.extra["source_artifact"])
        m.extra["source_artifact"] = None
    # an artifact's path left out: the export (or quantize output) built from, a kit's source, the
    # int8 artifact whose searched float groups an OpenVINO int8 build kept (its SHA-256s stay)
    for record, key in (("source", "path"), ("tensorrt_kit", "source"), ("float_groups_from", "path")):
        owner = m.extra.get(record)
        if isinstance(owner, dict) and owner.get(key):
            _hide(hidden, owner[key])
            m.extra[record] = {**owner, key: None}      # a copy: the caller's FloatGroups holds that dict
    groups_from = m.extra.get("float_groups_from")
    if isinstance(groups_from, dict):        # the export it was quantized from, its model as typed: by name
        for key in ("source_artifact", "model"):
            _hide(hidden, groups_from.get(key))
    if m.calibration:           # a copy: the source's manifest may hold the same dict
        m.calibration = {k: v for k, v in m.calibration.items() if k not in ("files", "skipped_files")}
        _hide_folder(hidden, m.calibration, "source")
    if m.parity:
        m.parity = dict(m.parity)
        _hide_folder(hidden, m.parity, "tiles_source")      # an export's --tile-images (a kit carries it)
    m.extra.update(_scrubbed(m.extra, hidden))    # the same dict: a builder adds to it after this
    m.parity, m.calibration = _scrubbed(m.parity, hidden), _scrubbed(m.calibration, hidden)
    m.quantization = _scrubbed(m.quantization, hidden)


def paths_replaced(text: str, shown: Mapping[str, str]) -> str:
    """`text` with each path of `shown` replaced by what it maps to, longest first, as `redact`
    replaces in a manifest's other strings the paths it left out: for a file a redacted engine
    ships (trtexec's log, which echoes its command line)."""
    return str(_scrubbed(text, shown))


# a frame of an exporter's per-node stack trace naming an absolute path (POSIX or Windows): what
# exports made before their traces were made module-relative hold, thousands per graph
_HOST_FRAME = re.compile(rb'File "(?:/|[A-Za-z]:\\)')


def graphs_naming_host_folders(root: Path, m: Manifest) -> list[str]:
    """The graph files of the artifact at `root` whose stack traces name this (or another) machine's
    absolute paths: a redacted engine built from them would ship those paths inside its graph. The
    bytes are searched as they lie on disk (mapped, not read whole: a graph may hold its weights)."""
    import mmap
    found = []
    for g in m.graphs.values():
        path = root / g["file"]
        if not path.is_file() or path.stat().st_size == 0:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if _HOST_FRAME.search(data):
                found.append(g["file"])
    return found


def _hide(hidden: dict[str, str], path: Any, shown: str | None = None) -> None:
    if isinstance(path, str) and path:
        hidden[path] = shown or shown_name(path)


def _hide_folder(hidden: dict[str, str], record: dict[str, Any], key: str) -> None:
    """`record[key]`, a folder of the user's photographs, as REDACTED_FOLDER."""
    value = record.get(key)
    if isinstance(value, str) and not value.startswith(("builtin:", "sample:")) and value not in _FOLDERLESS_SOURCES:
        _hide(hidden, value, REDACTED_FOLDER)
        record[key] = REDACTED_FOLDER


def _scrubbed(value: Any, hidden: Mapping[str, str]) -> Any:
    """`value` (JSON) with every path of `hidden` in its strings replaced by its name, longest first."""
    if isinstance(value, str):
        for path in sorted(hidden, key=len, reverse=True):
            value = value.replace(path, hidden[path])
        return value
    if isinstance(value, dict):
        return {k: _scrubbed(v, hidden) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, hidden) for v in value]
    return value


def _redact_if_asked(m: Manifest) -> None:
    """Redact `m` inside `redacting()`, and always where it inherits a redacted model record (an
    engine built from a redacted kit or engine stays redacted)."""
    hidden = _REDACTING.get()
    if hidden is not None or m.redacted:
        redact(m, hidden)


# ------------------------------------------------------------------------------------------------
# the manifest
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltFrom:
    """An engine's `extra.source`: the artifact it was built from. `files_sha256` is its
    `graph_files_sha256`, the same for a re-export by the same command (its `manifest_sha256`, the
    SHA-256 of its manifest.json, is not); None in engines built before it was recorded."""

    path: str | None = None
    backend: str | None = None
    precision: str | None = None
    manifest_sha256: str | None = None
    files_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TOP_KEYS = ("schema_version", "kind", "backend", "graph", "precision", "model", "files", "graphs", "opset",
             "quantization", "calibration", "parity", "tools", "created", "input_contract", "extra")


def prune_text(ratios: Sequence[float] | None) -> str:
    """Pruning ratios as manifests' readers, reports and golden files write them ('0.5,0.75'; '' for none)."""
    return ",".join(f"{float(r):g}" for r in ratios or ())


@dataclass
class Manifest:
    """A typed manifest.json. Mutable while a builder fills it (parity, extra), then written by
    `write_manifest`; what `read_manifest` / `load_verified` return is to be read only.

    `extra` is the backend's own (JSON) fields; `other` keeps top-level keys this version does not
    know, so a newer manifest read and written back loses nothing."""

    kind: str
    backend: str
    graph: str
    precision: str
    model: ModelInfo
    files: dict[str, str] = field(default_factory=dict)
    graphs: dict[str, dict[str, Any]] = field(default_factory=dict)
    opset: int | None = None
    quantization: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    tools: dict[str, str] = field(default_factory=tool_versions)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    input_contract: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    other: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # the fields' own repr is thousands of characters (the config, every file's hash): a notebook's wall
        return (f"<Manifest {self.kind} {self.backend} {self.precision} {self.model.display_name!r}, "
                f"{len(self.files)} file(s), created {self.created}>")

    @property
    def config(self) -> Mapping[str, Any] | None:
        return self.model.config

    @property
    def source(self) -> ModelSource:
        return self.model.source

    @property
    def redacted(self) -> bool:
        """Whether it was made without the build host's folders and calibration file names (`redact`)."""
        return self.model.source.redacted

    @property
    def static_batch(self) -> int:
        """The batch fixed in the graphs: the first input of the first graph with a static leading dim
        (a single graph's `lr`, a staged export's `cond.onnx` input); 1 when none says."""
        for g in self.graphs.values():
            shape = ((g.get("inputs") or [{}])[0]).get("shape") or []
            if shape and isinstance(shape[0], int) and shape[0] > 0:
                return int(shape[0])
        return 1

    @property
    def graph_facts(self) -> dict[str, Any]:
        """What the exported graph itself computes (token pruning, attention form): every artifact
        made from this one (quantized graphs, engines) carries it in its `extra` too. Ratios of 0 at
        every scale (an export before they were dropped) prune nothing, so they are no pruning."""
        facts = {k: self.extra[k] for k in ("prune", "attention") if self.extra.get(k)}
        if not any(facts.get("prune") or ()):
            facts.pop("prune", None)
        return facts

    @property
    def attention_form(self) -> str | None:
        """The exported graph's attention form ('explicit' or 'fused'); None where not recorded."""
        attention = self.graph_facts.get("attention")
        return attention.get("form") if isinstance(attention, dict) else None

    @property
    def engine_file(self) -> str | None:
        """An engine's main file (`extra.files.engine`), relative to its directory."""
        files = self.extra.get("files")
        return files.get("engine") if isinstance(files, dict) else None

    @property
    def engine_sha256(self) -> str | None:
        """The SHA-256 this manifest records for its engine file (verified on load): it names the
        engine a report's figures came from."""
        return self.files.get(self.engine_file) if self.engine_file else None

    @property
    def built_from(self) -> BuiltFrom | None:
        """The artifact an engine was built from (`extra.source`), if it says."""
        src = self.extra.get("source")
        if not isinstance(src, Mapping):
            return None
        return BuiltFrom(**{f.name: src.get(f.name) for f in dataclasses.fields(BuiltFrom)})

    @property
    def tensorrt_kit(self) -> dict[str, Any] | None:
        """A TensorRT build kit's record (`extra.tensorrt_kit`): the directory holds no engine yet."""
        kit = self.extra.get("tensorrt_kit")
        return kit if isinstance(kit, dict) and kit else None

    def single_graph_entry(self) -> dict[str, Any] | None:
        """The `graphs` entry of the single graph (an engine's ENGINE_GRAPH, an export's SINGLE_GRAPH, or
        the only one)."""
        g = self.graphs.get(ENGINE_GRAPH) or self.graphs.get(SINGLE_GRAPH)
        if g is None and len(self.graphs) == 1:
            g = next(iter(self.graphs.values()))
        return g if isinstance(g, dict) else None

    @property
    def takes_noise(self) -> bool:
        """Whether the single graph takes VARSR's refiner noise (an export without `--no-refine` of a
        model with a refiner, and everything built from it)."""
        return any(io.get("name") == NOISE for io in (self.single_graph_entry() or {}).get("inputs") or [])

    def to_json(self) -> dict[str, Any]:
        d = {**self.other}
        for f in dataclasses.fields(self):
            if f.name != "other":
                d[f.name] = getattr(self, f.name)
        d["model"] = self.model.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: object = "the manifest") -> Manifest:
        """Check each field's type and build the manifest; ArtifactError naming `where` if wrong."""
        def want(key: str, types: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
            if d.get(key) is None:
                if required:
                    raise ArtifactError(f"{where} has no '{key}'; re-create the artifact")
                return default
            if not isinstance(d[key], types):
                raise _wrong_type(where, key, d[key])
            return d[key]
        try:
            model = ModelInfo.from_json(d.get("model") or {})
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"{where} has a 'model' entry that is not valid ({e}); re-create the artifact") from e
        return cls(kind=want("kind", str, required=True), backend=want("backend", str, ""),
                   graph=want("graph", str, ""), precision=want("precision", str, ""), model=model,
                   files=want("files", dict, {}), graphs=want("graphs", dict, {}), opset=want("opset", int),
                   quantization=want("quantization", dict), calibration=want("calibration", dict),
                   parity=want("parity", dict), tools=want("tools", dict, {}), created=want("created", str, ""),
                   input_contract=want("input_contract", dict), extra=want("extra", dict, {}),
                   schema_version=d.get("schema_version", SCHEMA_VERSION),
                   other={k: v for k, v in d.items() if k not in _TOP_KEYS and k != CONTENT_KEY})


@dataclass(frozen=True)
class ParityFigures:
    """The figures a one-line parity summary shows, read from a manifest's `parity` by `parity_figures`."""

    tokens: float               # overall token agreement against the reference, 0..1
    psnr_db: Any                # SR PSNR in dB as recorded (a number, "inf"), None where not recorded
    reference: str | None       # what it was measured against, as recorded

    @property
    def tokens_pct(self) -> str:
        """The token agreement as every summary line prints it: a percentage to two places."""
        return f"{self.tokens:.2%}"


def parity_figures(parity: Any) -> ParityFigures | None:
    """The one reading of a manifest's `parity` for summary lines: the overall token agreement (an
    engine's or export's `tokens.overall`, else a quantize output's `validation.token_agreement`),
    its SR PSNR and reference. None where no token agreement was recorded (an engine for a device
    this host lacks, a Core ML palette, a TensorRT engine not yet checked against the golden outputs)."""
    if not isinstance(parity, dict):
        return None
    tokens, val = parity.get("tokens"), parity.get("validation")
    tok = tokens.get("overall") if isinstance(tokens, dict) else None
    if tok is None and isinstance(val, dict):
        tok = val.get("token_agreement")
    if isinstance(tok, bool) or not isinstance(tok, (int, float)):
        return None
    ref = parity.get("reference")
    return ParityFigures(float(tok), parity.get("psnr_db"), ref if isinstance(ref, str) else None)


def token_share(agreement: float) -> str:
    """A per-scale token agreement for a summary line, with the overall figure's decimals: "100%"
    only when exact (rounded to whole percents, a scale at 99.6% read as 100% and hid the scale
    that lost tokens)."""
    return "100%" if agreement == 1 else f"{agreement:.2%}"


def db_text(psnr_db: Any, places: int = 1) -> str:
    """A PSNR in dB (without the unit) for a summary line or table, measured or as recorded: "inf"
    where the images are identical (a float inf, or "inf" as a manifest records it), "–" where none
    was measured (None), else `places` decimals (a NaN output reads "nan")."""
    if psnr_db is None:
        return "–"
    v = float(psnr_db)
    return "inf" if math.isinf(v) else f"{v:.{places}f}"


def new_manifest(kind: str, backend: str, graph: str, precision: str, model: ModelInfo | Mapping[str, Any],
                 **fields: Any) -> Manifest:
    names = {f.name for f in dataclasses.fields(Manifest)} - {"kind", "backend", "graph", "precision", "model",
                                                              "schema_version", "other"}
    unknown = set(fields) - names
    if unknown:
        raise ValueError(f"unknown manifest fields {sorted(unknown)}")
    m = Manifest(kind, backend, graph, precision, ModelInfo.from_json(model), **fields)
    _redact_if_asked(m)          # at birth: a README written from it names no path either
    return m


# how the files Finder writes begin: its own .DS_Store, and AppleDouble's magic number (._NAME)
_DS_STORE_HEAD, _APPLE_DOUBLE_HEAD = b"\0\0\0\1Bud1", b"\0\5\26\7"


def finder_litter(path: Path) -> bool:
    """Files macOS writes into any folder it shows or copies (Finder's .DS_Store, AppleDouble ._*
    on non-Apple volumes): never part of an artifact, so neither hashed nor refused. Told by their
    first bytes as well as their names: a file saved as `._notes.txt`, or random bytes named
    .DS_Store, is an unlisted file like any other, which --force never deletes. Without this an
    engine copied to a Mac and opened in Finder fails verification."""
    if path.name == ".DS_Store":
        head = _DS_STORE_HEAD
    elif path.name.startswith("._"):
        head = _APPLE_DOUBLE_HEAD
    else:
        return False
    return not path.is_symlink() and starts_with(path, head)


def hash_files(root: Path) -> dict[str, str]:
    """SHA-256 of every file under root except the manifest itself (and Finder's litter)."""
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE and not finder_litter(p)}


# backends whose engine file is compiled by a device, anew at each build: a TensorRT plan (its
# tactics timed on the GPU that builds it), so that one command writes other bytes every time
DEVICE_COMPILED = ("tensorrt",)
# what a graph that is a folder (a Core ML package) writes with random identifiers at each save
PACKAGE_MANIFEST = "Manifest.json"


def graph_files(manifest: Manifest) -> list[str]:
    """The files a manifest lists that hold what its artifact computes: each graph's file (`graphs`,
    and an engine's `extra.files`: an OpenVINO split's second IR), their external data (an ONNX
    graph's `.data`, an OpenVINO IR's `.bin`), and the files of a graph that is a folder (a Core ML
    package) but its Manifest.json. Not README.md, the golden outputs (reference data, not what the
    artifact computes) or build records (a TensorRT kit's trtexec.txt and build_on_device.sh, a
    timing cache); none for an engine a device compiles (DEVICE_COMPILED)."""
    if manifest.kind == "engine" and manifest.backend in DEVICE_COMPILED:
        return []
    named = {g.get("file") for g in manifest.graphs.values() if isinstance(g, dict)}
    listed = manifest.extra.get("files")
    named |= set(listed.values()) if isinstance(listed, dict) else set()
    graphs = {str(f) for f in named if f}
    data = {f"{g}.data" for g in graphs} | {f"{g.removesuffix('.xml')}.bin" for g in graphs if g.endswith(".xml")}
    return [f for f in sorted(manifest.files) if f in graphs or f in data
            or any(f.startswith(f"{g}/") and f != f"{g}/{PACKAGE_MANIFEST}" for g in graphs)]


def graph_files_sha256(manifest: Manifest) -> str | None:
    """One SHA-256 over the SHA-256s a manifest lists for its `graph_files`: the same for a
    re-export or rebuild that wrote the same graphs, whose `created`, timings and so content hash
    differ; None where it lists none (a TensorRT engine: what it was built from names it)."""
    files = graph_files(manifest)
    if not files:
        return None
    return hashlib.sha256(json.dumps({f: manifest.files[f] for f in files}, sort_keys=True).encode()).hexdigest()


# what `upscale` does beyond the graph for a model with VARSR's colour fix (`config.color_fix`)
COLOR_FIX_NOTE = ("`alignvar-edge upscale` gives each whole SR image the per-channel mean and standard deviation "
                  "of the input image resized x{scale} with Pillow's bicubic filter (VARSR's AdaIN colour fix: "
                  "`alignvar_edge.images.color_fix.color_fixed(sr, image, {scale})` on HxWx3 float images); the "
                  "graph's `sr` tiles have none. Off: `alignvar-edge upscale --no-color-fix`, "
                  "`engine.upscale(image, color_fix=False)`")


def contract(tile: int, scale: int, batch: int | None, dtype: str = "float32",
             config: AlignVARConfig | None = None, noise: bool = False) -> dict[str, Any]:
    """The input contract of an AlignVAR graph: `lr` RGB planes in [0, 1], NCHW, `dtype`, tiles of
    `tile` LR pixels (batch `batch`, None: dynamic); whole images are cut into tiles overlapping by
    `overlap` LR pixels and blended (`runtimes/tiling.py`); `sr` is the same, `scale` x larger.
    With the model's `config`: `noise` (where the graph takes VARSR's refiner noise: its shape and
    the fixed draw every engine feeds, as numpy code) and `color_fix` (what `upscale` adds, or None)."""
    n = batch if batch else -1
    c: dict[str, Any] = {
        "name": INPUT, "color_order": "RGB", "range": [0.0, 1.0], "layout": "NCHW", "dtype": dtype,
        "shape": [n, 3, tile, tile], "tile": tile, "overlap": default_overlap(tile), "scale": scale,
        "batch": batch,
        "output": {"name": SR, "color_order": "RGB", "range": [0.0, 1.0], "layout": "NCHW",
                   "shape": [n, 3, tile * scale, tile * scale]},
        "images": "Engine.upscale takes uint8/uint16/float [0, 1] arrays (HxW, HxWx1/2/3/4) or PIL "
                  f"images of any size and returns the same kind, exactly x{scale} larger"}
    if config is None:
        return c
    if noise and config.has_refiner:
        steps, tokens, channels = config.noise_shape(batch or 1)
        c["noise"] = {"name": NOISE, "dtype": "float32", "shape": [steps, tokens if batch else -1, channels],
                      "values": config.refiner_noise_code(batch or 1)}
    c["color_fix"] = COLOR_FIX_NOTE.format(scale=scale) if config.color_fix else None
    return c


def parse_preset_reference(text: str) -> tuple[str, int] | None:
    """(NAME, SEED) of `preset:NAME[:SEED]`, the text `ModelSource.reference` writes for a preset (SEED
    0 where left out); None for any other text: a checkpoint's path or a bundled model's name, which
    load as checkpoints do. A malformed preset reference, or none at all, is refused."""
    if text and not text.startswith(PRESET_REFERENCE):
        return None
    name, *seed = text[len(PRESET_REFERENCE):].split(":")
    if (not name or len(seed) > 1 or not all(s.isascii() and s.isdigit() for s in seed)
            or (seed and int(seed[0]) >= SEED_LIMIT)):
        raise InputError(f"model reference '{text}' is neither a checkpoint nor preset:NAME[:SEED] "
                         f"with a whole-number SEED below 2**64 (e.g. {PRESET_REFERENCE}micro:0)")
    return name, int(seed[0]) if seed else 0


def input_contract(manifest: Manifest) -> dict[str, Any] | None:
    """The manifest's `input_contract`, or `contract` for an artifact whose single graph has an
    `lr` input (and `noise`, VARSR's refiner's); None otherwise."""
    if manifest.input_contract is not None:
        return manifest.input_contract
    cfg = manifest.config or {}
    graph = manifest.single_graph_entry() if manifest.graph == "single" else None
    inputs = (graph or {}).get("inputs") or []
    lr = next((io for io in inputs if io.get("name") == INPUT), None)
    if lr is None or "scale" not in cfg:
        return None
    from alignvar_edge.model.config import AlignVARConfig
    try:
        config: AlignVARConfig | None = AlignVARConfig.from_dict(dict(cfg))
    except (TypeError, ValueError):         # the loaders refuse such a config with its reason
        config = None
    shape = list(lr["shape"])
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return contract(int(shape[-1]), int(cfg["scale"]), batch, str(lr.get("dtype", "float32")), config,
                    noise=manifest.takes_noise)


# manifest.json cannot list its own hash among `files`: it carries the hash of the rest of its
# content instead, so a hand edit (a precision changed, a parity result improved) is caught like an
# edited weight file. Manifests written before it have none and load as before.
CONTENT_KEY = "content_sha256"


def content_hash(doc: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest's JSON without its own content hash, in the one spelling we write."""
    rest = {k: v for k, v in doc.items() if k != CONTENT_KEY}
    return hashlib.sha256(dumps(rest, sort_keys=True).encode()).hexdigest()


# what a manifest without its content hash leaves unproven (`inspect`, `bench`): a hand edit that
# also drops the hash cannot be told from an older manifest
UNHASHED = (f"{MANIFEST_FILE} carries no {CONTENT_KEY} (written by an older alignvar-edge, or edited by hand), "
            "so its own fields (model, parity, I/O) are unverified")


def unverified_caution(root: str | os.PathLike[str], deploy: str | os.PathLike[str] | None = None) -> str | None:
    """The one line `inspect`, `selftest` and `upscale` say where `root`'s manifest.json records no
    content hash: UNHASHED and the command that re-creates it (`deploy`: the deploy output `root`
    lies in, which is re-created whole). None where it records one, or where `root` has no
    manifest.json (a checkpoint: its own files are the model)."""
    if not (Path(root) / MANIFEST_FILE).is_file() or recorded_content_hash(root) is not None:
        return None
    return f"{UNHASHED}: to be sure, {_remake(Path(deploy if deploy is not None else root))}"


def _remake(root: Path) -> str:
    """How to re-create the artifact at `root`, replacing it: an engine or build kit is rebuilt from
    its source (`rebuild_command`); an export, quantize or deploy output is made again by its verb,
    whose options only the user knows."""
    again = f"with `--out {shell_word(root)} --force`"
    try:
        m = read_manifest(root)
    except ArtifactError:            # unreadable now: the loader says so where it is used
        return f"re-run the command that made it {again}"
    if m.kind == "engine" or m.tensorrt_kit:
        return f"rebuild it: `{rebuild_command(m, root)}`"
    if m.kind == "deploy":           # said of an artifact inside it too: "it" would be that one
        return f"re-run the `alignvar-edge deploy` that made the deploy output {again}"
    return f"re-run the `alignvar-edge {'quantize' if m.quantization else 'export'}` that made it {again}"


def rebuild_command(m: Manifest, out: str | os.PathLike[str] | None = None) -> str:
    """`alignvar-edge build SOURCE --target BACKEND` for the engine or TensorRT build kit `m`
    describes, from what it was built from where that is still there, else the checkpoint it
    records; with `out`, the folder it replaces (`--out OUT --force`)."""
    kit = m.tensorrt_kit
    built = kit.get("source") if kit else m.built_from.path if m.built_from else None
    source = built if isinstance(built, str) and Path(built).exists() else m.model.source.reference or "CHECKPOINT_DIR"
    backend, precision = ("tensorrt", kit.get("precision")) if kit else (m.backend, m.precision)
    flags = f" --precision {precision}" if precision and precision != "fp32" else ""
    flags += f" --out {shell_word(out)} --force" if out is not None else ""
    return f"alignvar-edge build {shell_word(source)} --target {backend}{flags}"


def recorded_content_hash(root: str | os.PathLike[str]) -> str | None:
    """The content hash `root`'s manifest.json records (`load_verified` checks it where there is
    one); None where it records none, or cannot be read."""
    try:
        value = jsonsafe.loads((Path(root) / MANIFEST_FILE).read_text()).get(CONTENT_KEY)
    except (OSError, ValueError, AttributeError):      # AttributeError: JSON that is no object
        return None
    return value if isinstance(value, str) else None


def write_manifest(root: Path, manifest: Manifest) -> None:
    _redact_if_asked(manifest)   # again: fields filled in since it was made
    manifest.files = hash_files(root)
    manifest.input_contract = input_contract(manifest)
    doc = json.loads(dumps(manifest.to_json(), sort_keys=True))      # as a reader will parse it
    doc[CONTENT_KEY] = content_hash(doc)
    write_text(root / MANIFEST_FILE, dumps(doc, sort_keys=True))


def content_edited(doc: Mapping[str, Any]) -> bool:
    """Whether a manifest's JSON no longer matches the content hash it records (False where it
    records none: an older manifest cannot tell)."""
    recorded = doc.get(CONTENT_KEY)
    return recorded is not None and recorded != content_hash(doc)


def _check_content(root: Path, doc: Mapping[str, Any]) -> None:
    if content_edited(doc):
        raise ArtifactError(f"artifact '{root}' failed verification: {root / MANIFEST_FILE} was edited after it "
                            f"was written (its content does not match its {CONTENT_KEY}). Re-create it; never "
                            "edit files inside an artifact directory")


def read_manifest(root: str | os.PathLike[str]) -> Manifest:
    """The typed manifest of `root` (not yet verified against the files: `load_verified` does)."""
    with readable(root):
        doc = _read_json(Path(root))
    return Manifest.from_json(doc, where=Path(root) / MANIFEST_FILE)


@contextlib.contextmanager
def readable(root: str | os.PathLike[str]) -> Iterator[None]:
    """Within it, a file or folder of the artifact at `root` this user may not read (a folder made
    under umask 077 and extracted by root, run as another user) is one ArtifactError naming it
    (`unreadable`), whoever met it; permission errors elsewhere (a cache being written) pass."""
    try:
        yield
    except PermissionError as e:
        if not isinstance(e.filename, str) or not _within(e.filename, root):
            raise
        raise unreadable(Path(e.filename)) from e


def _within(path: str, root: str | os.PathLike[str]) -> bool:
    """Whether `path` is `root` or lies inside it, as written (nothing resolved: it may not be readable)."""
    path, top = os.path.abspath(path), os.path.abspath(root)
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def unreadable(path: Path) -> ArtifactError:
    """The one line for a `path` this user may not read: the folder on the way to it that cannot be
    searched where there is one (its files' own names then mean nothing: a probe of a path the artifact
    does not even hold was named), else `path` itself."""
    blocked = next((f for f in reversed(path.parents) if os.path.isdir(f) and not os.access(f, os.X_OK)), path)
    what = f"the folder {blocked}" if os.path.isdir(blocked) else str(blocked)
    return ArtifactError(f"cannot read {what}: permission denied: make it readable by the user running this")


def _read_json(root: Path) -> dict[str, Any]:
    """manifest.json of `root` as parsed JSON of our schema version (ArtifactError otherwise)."""
    path = root / MANIFEST_FILE
    if not root.is_dir():
        from alignvar_edge.model.bundled import BUNDLED
        if str(root) in BUNDLED:          # a bundled model's name, where an artifact is expected
            raise ArtifactError(f"'{root}' is a bundled model checkpoint, not an exported artifact; export it first "
                                f"(`alignvar-edge export {shell_word(root)} --out DIR`) and pass DIR")
        raise ArtifactError(f"'{root}' {not_a_folder(root)}; pass an artifact directory made by "
                            "`alignvar-edge export`, `quantize` or `build`")
    if root.suffix.lower() == ".mlpackage" or (root / "Data" / "com.apple.CoreML").is_dir():
        # checked first: on a Mac's case-insensitive disk the package's Manifest.json reads as ours
        parent = root.resolve().parent
        where = (f"pass the engine directory that holds it: '{parent}'" if (parent / MANIFEST_FILE).is_file() else
                 "pass the engine directory it came from (the package with manifest.json and the golden outputs), "
                 "as `alignvar-edge build --target coreml` wrote it")
        raise ArtifactError(f"'{root}' is a Core ML package, not an engine directory: {where}")
    from alignvar_edge.model.bundled import checkpoint_files_in
    if not path.is_file() and checkpoint_files_in(root):
        raise ArtifactError(f"'{root}' is a model checkpoint, not an exported artifact; export it first "
                            f"(`alignvar-edge export {shell_word(root)} --out DIR`), or describe it with "
                            f"`alignvar-edge info {shell_word(root)}`")
    if os.path.lexists(path):
        _check_manifest_file(root, path)
    if not path.is_file():
        raise ArtifactError(f"'{root}' has no {MANIFEST_FILE}: it is not a finished artifact (an "
                            "interrupted run, or not made by alignvar-edge); re-run the command that makes it")
    try:
        m = jsonsafe.loads(path.read_text())
    except ValueError as e:           # also non-UTF-8, too deep, an integer too long (jsonsafe.loads)
        raise ArtifactError(f"{path} is not valid JSON ({e}); re-create the artifact") from e
    if not isinstance(m, dict):
        raise ArtifactError(f"{path} is not a JSON object (it holds {_json_kind(m)}); re-create the artifact")
    version = m.get("schema_version")
    if version is None:
        raise ArtifactError(f"{path} has no 'schema_version'; re-create the artifact")
    # by type first: the string "1" would be said as schema version 1 (true equals 1 to Python)
    if isinstance(version, bool) or not isinstance(version, (int, float)):
        raise _wrong_type(path, "schema_version", version)
    if version != SCHEMA_VERSION:
        raise ArtifactError(f"{path} has schema version {version}, this alignvar-edge reads version {SCHEMA_VERSION}; "
                            "re-create the artifact")
    return m


def _wrong_type(where: object, key: str, value: Any) -> ArtifactError:
    """A manifest's `key` of the wrong type, named with its type, and with its value where that is
    short: the string '1' and the number 1 print alike."""
    shown = repr(value)
    detail = f"{_json_kind(value)} {shown}" if len(shown) <= 40 else _json_kind(value)
    return ArtifactError(f"{where} has a '{key}' of the wrong type ({detail}); re-create the artifact")


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words."""
    kinds = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"), (list, "a list"),
             (dict, "an object"))
    return "null" if value is None else next((name for t, name in kinds if isinstance(value, t)), type(value).__name__)


def _check_manifest_file(root: Path, path: Path) -> None:
    """`root`'s manifest.json must be a file inside it, as every file it lists must be: a link to one
    outside would make a file anyone can change there the proof of this artifact."""
    confined(root, MANIFEST_FILE)          # a symlink loop, or a link leading outside
    not_a_file = _not_a_file(path)
    if not_a_file is not None and path.exists():     # a dangling link is no manifest.json: said below
        raise ArtifactError(f"artifact '{root}' failed verification: {MANIFEST_FILE} {not_a_file}. Copy the whole "
                            "directory again from where it was made, or re-create it")


def confined(root: str | os.PathLike[str], rel: Any) -> Path:
    """`root/rel` if `rel` is a plain relative path that stays inside `root` once every symlink is
    resolved; ArtifactError otherwise. A manifest must not be able to point us anywhere else."""
    root = Path(root)
    bad = not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel
    parts = PurePosixPath(rel).parts if not bad else ()
    if bad or PurePosixPath(rel).is_absolute() or ".." in parts or "." in parts:
        raise ArtifactError(f"artifact '{root}' failed verification: {MANIFEST_FILE} names {rel!r}, which is "
                            "not a plain path inside the artifact directory; refusing it, re-create the artifact")
    path = root / rel
    if symlink_loop(path):
        raise ArtifactError(f"artifact '{root}' failed verification: {rel} is a symlink loop (it leads back to "
                            "itself, never to a file); refusing it, re-create the artifact")
    real, base = path.resolve(), root.resolve()
    if real == base or base not in real.parents:
        raise ArtifactError(f"artifact '{root}' failed verification: {rel} leads outside the artifact directory "
                            f"(to {real}, through a symlink); refusing it, re-create the artifact")
    return path


def listed_bytes(root: str | os.PathLike[str], manifest: Manifest) -> int:
    """Bytes of every file the artifact's manifest lists: its size as `inspect` and the quantize
    table give it (the files it verifies, nothing put beside them)."""
    return sum((Path(root) / f).stat().st_size for f in manifest.files)


def listed_file(root: str | os.PathLike[str], manifest: Manifest, rel: Any) -> Path:
    """The path of `rel` inside a verified artifact, only if its manifest lists it (a folder such as
    a .mlpackage counts when files under it are listed): nothing unlisted is ever opened."""
    files = manifest.files
    path = confined(root, rel)
    if rel not in files and not any(f.startswith(f"{rel}/") for f in files):
        raise ArtifactError(f"artifact '{root}' failed verification: it uses {rel}, which {MANIFEST_FILE} "
                            "does not list with a SHA-256; re-create the artifact")
    return path


def _external_data_problems(root: Path, rel: str, locations: Sequence[str], files: dict[str, Any]) -> list[str]:
    """Each tensor the ONNX graph `rel` keeps in another file (`locations`, as `read_file` walked
    them) must name a listed file inside root."""
    problems = []
    for loc in locations:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), loc)) if loc else ""
        if not loc or PurePosixPath(loc).is_absolute() or target.startswith("../") or target == "..":
            problems.append(f"{rel} keeps tensors in {loc!r}, outside the artifact directory")
        elif target not in files:
            problems.append(f"{rel} keeps tensors in {loc}, which {MANIFEST_FILE} does not list")
        else:
            confined(root, target)
    return problems


def unlisted_files(root: Path, files: Mapping[str, Any]) -> list[str]:
    """The files under `root` that its manifest's `files` do not list (manifests and Finder's
    litter aside): not ours, so verification refuses them and --force never deletes them."""
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if (p.is_file() or p.is_symlink()) and p.name != MANIFEST_FILE and not finder_litter(p)}
    return sorted(on_disk - set(files))


def manifests_under(root: Path) -> list[Path]:
    """The manifest.json files under `root`, its own included (a deploy folder holds one per
    artifact). By name as listed, not a glob: on a case-insensitive disk a Core ML package's
    Manifest.json would match too."""
    return sorted(p for p in root.rglob("*") if p.name == MANIFEST_FILE)


def edited_manifests(root: Path) -> list[str]:
    """The manifest.json files under `root` (`manifests_under`) that are not as alignvar-edge wrote
    them: their JSON no longer matches the content hash it records, or is no manifest of ours at
    all. A manifest cannot list itself among `files`, so this is what keeps --force from deleting a
    hand-edited one. One without the hash but with our keys (written before the hash existed)
    cannot be told from ours, and counts as ours. Not one reached through a link: deleting `root`
    removes the link only."""
    return [p.relative_to(root).as_posix() for p in manifests_under(root)
            if p.is_file() and not p.is_symlink() and not _as_written(p)]


def _as_written(manifest: Path) -> bool:
    doc = own_marker(manifest)
    return doc is not None and not content_edited(doc)


def own_marker(path: Path) -> dict[str, Any] | None:
    """`path` (a manifest.json or run.json, `OWN_MARKERS`) parsed, where it is a marker we may have
    written: a plain file holding a JSON object with that file's `MARKER_KEYS`. None otherwise: a
    link (someone's), a FIFO (reading it waits for a writer), not text, not JSON, JSON nested too
    deeply, or someone's own manifest.json. Whether it is as written is `content_edited`'s."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        doc = jsonsafe.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and all(k in doc for k in MARKER_KEYS[path.name]) else None


def _not_a_file(path: Path) -> str | None:
    """Why a listed `path` is not the file its manifest lists ('is missing', 'is a folder, not a
    file', 'is a FIFO (named pipe), not a file'); None where it is one."""
    if path.is_file():
        return None
    if path.is_dir():
        return "is a folder, not a file"
    kind = special_kind(path)
    return f"is {kind}, not a file" if kind else MISSING


MISSING = "is missing"
# the files a build shares with the artifact it is built from by a hard link, where the file system
# allows (`runtimes.artifacts.link_onnx`): an ONNX graph and its external data. An archive of several
# artifacts (tar of a deploy output) holds such a file once, and its other names as links to it
HARD_LINKED = (".onnx", ".onnx.data")


def _missing(rel: str) -> str:
    """What verification says of a listed file `rel` that is missing: for one a build may have shared
    by a hard link (HARD_LINKED), how an archive loses it and how to pack the folder so it does not."""
    if not rel.endswith(HARD_LINKED):
        return f"{rel} {MISSING}"
    return (f"{rel} {MISSING} (an archive may have held it as a hard link to a file outside this folder, which "
            "extracting the folder alone cannot make: extract the whole archive, or pack the folder on its own, "
            "`tar -czf DIR.tgz -C PARENT DIR`)")


# git's test for a text file it may convert: no NUL byte in its first 8000 bytes; and the largest
# file read whole to see whether its line endings were converted
_TEXT_HEAD, _TEXT_LIMIT = 8000, 64 << 20


def _crlf_converted(path: Path, digest: str) -> bool:
    """Whether the listed file at `path`, which does not match `digest`, is the recorded file with its
    line endings turned into CRLF (a git checkout with core.autocrlf): a text file holding CRLF whose
    bytes with CRLF turned back into LF match."""
    if path.stat().st_size > _TEXT_LIMIT:
        return False
    data = path.read_bytes()
    if b"\0" in data[:_TEXT_HEAD] or b"\r\n" not in data:
        return False
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest() == digest


CONVERTED_FIX = "add `* -text` to .gitattributes, or copy it without conversion"


def _and_list(names: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c': names in a sentence."""
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]


def edited_files(root: Path, files: Mapping[str, Any]) -> list[str]:
    """The files under `root` its manifest lists that no longer match their recorded SHA-256 (edited,
    or replaced by someone's own): not what we made, so --force never deletes them. Only files
    deleting `root` would delete: not one reached through a link (rmtree removes the link, not what
    it leads to), nor one missing; files in a folder where a file was listed are `unlisted_files`."""
    edited = []
    for rel, digest in files.items():
        try:
            path = confined(root, rel)
        except ArtifactError:            # a path leading outside: deleting `root` leaves it alone
            continue
        if path.is_file() and path.resolve() == root.resolve() / rel and sha256_file(path) != digest:
            edited.append(rel)
    return sorted(edited)


def verify_files(root: str | os.PathLike[str], manifest: Manifest | None = None,
                 hashed: Mapping[str, FileRead] | None = None, reads: dict[str, FileRead] | None = None) -> Manifest:
    """Trust nothing the manifest does not prove: it must list every file in the directory with its
    SHA-256 (an empty list proves nothing), every path must stay inside the directory (no `..`,
    no absolute path, no symlink out), every graph file and every ONNX external-data location must
    be one of the listed files, and each listed file must match its hash. `hashed`: what the caller's
    own read of files in `root` found (a deploy output's verification, for an artifact inside it:
    each digest checked against its manifest, each graph walked in the read that hashed it), used
    instead of reading those files again; `reads`, where given, gets what this verification's read
    of each listed file found, to hand on so. A file or folder of it this user may not read is named
    as such (`readable`)."""
    with readable(root):
        m = manifest if manifest is not None else read_manifest(root)
        found = _verify_files(Path(root), m, hashed or {})
    if reads is not None:
        reads.update(found)
    return m


def _verify_files(root: Path, m: Manifest, hashed: Mapping[str, FileRead]) -> dict[str, FileRead]:
    """`verify_files`' checks; what the read of each listed file found, by its path inside root."""
    files = m.files
    if not files:
        raise ArtifactError(f"artifact '{root}' failed verification: {MANIFEST_FILE} lists no files, so it "
                            "proves nothing; re-create the artifact with the command that made it")
    problems: list[str] = []
    converted: list[str] = []
    external: dict[str, Sequence[str]] = {}      # each graph's external-data files, from the read that hashed it
    unreadable: list[str] = []                   # graphs that read as no ONNX graph, why
    reads: dict[str, FileRead] = {}
    for rel, digest in files.items():
        p = confined(root, rel)
        if (not_a_file := _not_a_file(p)) is not None:
            problems.append(_missing(rel) if not_a_file == MISSING else f"{rel} {not_a_file}")
            continue
        read = _listed_read(p, rel, hashed.get(rel)) if isinstance(digest, str) else None
        if read is not None:
            reads[rel] = read
        if read is not None and read.external_data is not None:
            external[rel] = read.external_data
        if read is not None and read.unreadable is not None:
            unreadable.append(f"{rel} cannot be read as an ONNX graph: {read.unreadable}")
        if read is None or read.sha256 != digest:
            if isinstance(digest, str) and _crlf_converted(p, digest):
                converted.append(rel)
            else:
                problems.append(f"{rel} does not match its recorded SHA-256 (truncated or edited)")
    if converted:
        problems.append(f"the line endings of {_and_list(converted)} were converted to CRLF (git core.autocrlf?), "
                        f"so {'it does' if len(converted) == 1 else 'they do'} not match the recorded SHA-256")
    stray = unlisted_files(root, files)
    problems += [f"{rel} is not listed in {MANIFEST_FILE}" for rel in stray]
    for name, entry in m.graphs.items():
        graph_file = entry.get("file") if isinstance(entry, dict) else None
        if graph_file:
            confined(root, graph_file)
            if graph_file not in files and not any(f.startswith(f"{graph_file}/") for f in files):
                problems.append(f"graph '{name}' is {graph_file}, which {MANIFEST_FILE} does not list")
    if len(problems) == len(stray):           # no problem but files it does not list, if any
        if unreadable:          # made so, or listed so: copying it again copies the same bytes
            raise ArtifactError(f"artifact '{root}' failed verification: {'; '.join(unreadable)}; "
                                f"{_remake(root)}")
        for rel, locations in external.items():
            problems += _external_data_problems(root, rel, locations, files)
    if converted and len(problems) == 1:        # copying again as before would convert them again
        raise ArtifactError(f"artifact '{root}' failed verification: {problems[0]}: {CONVERTED_FIX}")
    if stray and len(problems) == len(stray):
        # every listed file checks: the files written into it after it was made are the fault, not the copy
        raise ArtifactError(f"artifact '{root}' failed verification: {'; '.join(problems)}, while every file it "
                            f"lists checks: remove {_and_list(stray)} from it (never write files inside an artifact "
                            "directory)")
    if problems:
        # a device gets its engines by copying: a file left out or cut short is fixed by copying again
        raise ArtifactError(f"artifact '{root}' failed verification: {'; '.join(problems)}. Copy the whole "
                            "directory again from where it was made, or re-create it; never edit files inside "
                            "an artifact directory" + (f"; where line endings were converted, {CONVERTED_FIX}"
                                                       if converted else ""))
    return reads


def _listed_read(path: Path, rel: str, checked: FileRead | None) -> FileRead:
    """What verification needs of a listed file: its SHA-256 and, for an ONNX graph, where it keeps
    tensors (`read_file`). `checked`: the caller's read of it (`verify_files`' `hashed`), not read
    again; where it did not walk a graph, the walk is this process's earlier one of it, or a walk
    alone."""
    graph = rel.endswith(".onnx")
    if checked is None:
        return read_file(path, graph)
    if not graph or checked.external_data is not None:
        return checked
    known = _READS.get(stat_key(os.stat(path)))
    if known is not None and known.sha256 == checked.sha256 and known.external_data is not None:
        return known
    return _read_contents(path, graph=True, sha256=checked.sha256)


def load_verified(root: str | os.PathLike[str], hashed: Mapping[str, FileRead] | None = None) -> Manifest:
    """`root`'s manifest, once its own content hash and every file it lists check out, and for a
    deploy output each artifact inside it (`load_verified_parts` also hands those back); `hashed`
    as `verify_files` takes it."""
    return load_verified_parts(root, hashed)[0]


def load_verified_parts(root: str | os.PathLike[str],
                        hashed: Mapping[str, FileRead] | None = None) -> tuple[Manifest, dict[str, Manifest]]:
    """`load_verified`, with the artifacts inside a deploy output that it verified on the way
    (`verified_parts`; none for any other kind), so a caller that shows them verifies them once."""
    with readable(root):
        doc = _read_json(Path(root))          # parsed once: its own content hash, then its fields
    _check_content(Path(root), doc)
    reads: dict[str, FileRead] = {}
    m = verify_files(root, Manifest.from_json(doc, where=Path(root) / MANIFEST_FILE), hashed, reads)
    # its own hashes skip the manifests of the artifacts inside it
    return m, (verified_parts(root, m, reads) if m.kind == "deploy" else {})


def verified_parts(root: str | os.PathLike[str], manifest: Manifest,
                   reads: Mapping[str, FileRead] | None = None) -> dict[str, Manifest]:
    """The artifacts inside a `deploy` output (its export, quantized graphs and engines: each folder
    holding a manifest.json), by path inside `root`, each verified as `load_verified` verifies it: the
    deploy manifest hashes their files but not their manifests. `manifest` is the output's, its files
    already verified (`verify_files`): a part's listed files are compared with its digests, not hashed
    again, and `reads` (what that verification's read of each found) hands each graph's walk on, so
    no graph is read a second time. A file it lists in a subfolder that no such folder holds (its manifest.json deleted) fails
    the whole output."""
    root = Path(root)
    parts = sorted(p.parent.relative_to(root).as_posix() for p in manifests_under(root) if p.parent != root)
    orphans = [f for f in manifest.files if "/" in f and not any(f.startswith(f"{part}/") for part in parts)]
    if orphans:
        lie = "lies" if len(orphans) == 1 else "lie"
        raise ArtifactError(f"artifact '{root}' failed verification: {first_names(orphans)} {lie} in no artifact "
                            f"folder of it (the {MANIFEST_FILE} of its folder is missing). Copy the whole directory "
                            "again from where it was made, or re-create it")
    # the deploy manifest's digests were just checked against the files: a part compares its own with them
    if reads is None:
        reads = {rel: FileRead(digest) for rel, digest in manifest.files.items() if isinstance(digest, str)}
    return {part: load_verified(root / part, _reads_under(reads, part)) for part in parts}


def _reads_under(reads: Mapping[str, FileRead], folder: str) -> dict[str, FileRead]:
    """The reads of the files in `folder`, by path inside it."""
    return {rel.removeprefix(f"{folder}/"): read for rel, read in reads.items() if rel.startswith(f"{folder}/")}


def first_names(names: Sequence[str], shown: int = 3) -> str:
    """'a, b, c and 2 more': the first few of a list of files, for a one-line message."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
