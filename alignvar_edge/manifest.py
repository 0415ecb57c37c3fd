"""`manifest.json`: what an artifact directory holds, written last and atomically, verified on load.

Every directory the toolkit produces (exported ONNX graphs, quantized graphs, built engines) is
made by `artifact_dir(...)`: files go into a hidden temporary sibling, the manifest (with the
SHA-256 of every file) is written last, and only then is the directory renamed into place. A run
killed half-way leaves a hidden `.NAME.tmp-*` directory and never a directory that looks complete.

Trust model (the manifest cannot vouch for itself; docs/reliability.md): `verify_files` accepts a
directory only if `files` is non-empty, lists every file in it, each path stays inside it (no `..`,
no absolute path, no symlink out), every graph file and ONNX external-data location is listed, and
every hash matches; files are then opened through `listed_file` only. `check_out` is the one rule
for replacing an output: --force replaces only an empty folder or one of ours (manifest.json or
run.json), and `artifact_dir` re-checks it at the rename.

Schema (version 1), all keys present in every manifest:
    schema_version   int
    kind             "onnx" | "engine"
    backend          "onnx" for exported graphs; the backend name for engines
    graph            "single" | "staged"
    precision        "fp32" | "fp16" | "int8" | "int8-weights" | ...
    model            the AlignVAR config (dict) and model name
    files            {relative path: sha256}
    graphs           {graph name: {"file": path, "inputs": [io], "outputs": [io]}}, io = {name, shape, dtype}
    opset            int | null
    quantization     recipe dict | null
    calibration      {"hash": str, "images": int, ...} | null
    parity           dict of figures measured when the artifact was made | null
    tools            {package: version}
    created          ISO-8601 UTC
    input_contract   what the graph's input expects, for anyone feeding it without this package
                     (see `input_contract`): colour order, range, layout, dtype, tile, overlap,
                     scale, batch; null for artifacts without a single-graph `lr` input
    extra            backend-specific (e.g. TensorRT version and GPU compute capability)
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import importlib.metadata
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from alignvar_edge.errors import ArtifactError, OutputExistsError
from alignvar_edge.fsmodes import publish_mode

MANIFEST_FILE = "manifest.json"
RUN_FILE = "run.json"          # marks a training run directory (alignvar_edge.train)
OWN_MARKERS = (MANIFEST_FILE, RUN_FILE)
SCHEMA_VERSION = 1
TRACKED_TOOLS = ("alignvar-edge", "torch", "numpy", "onnx", "onnxruntime", "onnxscript", "openvino",
                 "nncf", "coremltools", "tensorrt")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tool_versions(names: tuple[str, ...] = TRACKED_TOOLS) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def new_manifest(kind: str, backend: str, graph: str, precision: str, model: dict[str, Any],
                 **fields: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "kind": kind, "backend": backend, "graph": graph,
        "precision": precision, "model": model, "files": {}, "graphs": {}, "opset": None,
        "quantization": None, "calibration": None, "parity": None, "tools": tool_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "extra": {},
        "input_contract": None,
    }
    unknown = set(fields) - set(m)
    if unknown:
        raise ValueError(f"unknown manifest fields {sorted(unknown)}")
    m.update(fields)
    return m


def hash_files(root: Path) -> dict[str, str]:
    """SHA-256 of every file under root except the manifest itself."""
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE}


def contract(tile: int, scale: int, batch: int | None, dtype: str = "float32") -> dict[str, Any]:
    """The input contract of an AlignVAR graph: `lr` RGB planes in [0, 1], NCHW, `dtype`, tiles of
    `tile` LR pixels (batch `batch`, None: dynamic); whole images are cut into tiles overlapping by
    `overlap` LR pixels and blended (`runtimes/tiling.py`); `sr` is the same, `scale` x larger."""
    from alignvar_edge.runtimes.tiling import default_overlap
    n = batch if batch else -1
    return {"name": "lr", "color_order": "RGB", "range": [0.0, 1.0], "layout": "NCHW", "dtype": dtype,
            "shape": [n, 3, tile, tile], "tile": tile, "overlap": default_overlap(tile), "scale": scale,
            "batch": batch,
            "output": {"name": "sr", "color_order": "RGB", "range": [0.0, 1.0], "layout": "NCHW",
                       "shape": [n, 3, tile * scale, tile * scale]},
            "images": "Engine.upscale takes uint8/uint16/float [0, 1] arrays (HxW, HxWx1/3/4) or PIL "
                      f"images of any size and returns the same kind, exactly x{scale} larger"}


def input_contract(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """`contract` for an artifact whose single graph has an `lr` input; None otherwise."""
    model = manifest.get("model") or {}
    cfg = model.get("config", model) if isinstance(model, dict) else {}
    graphs = manifest.get("graphs") or {}
    if manifest.get("graph") != "single" or not isinstance(graphs, dict):
        return None
    graph = graphs.get("single") or graphs.get("model") or (next(iter(graphs.values())) if len(graphs) == 1 else {})
    lr = next((io for io in graph.get("inputs") or [] if io.get("name") == "lr"), None)
    if lr is None or not isinstance(cfg, dict) or "scale" not in cfg:
        return None
    shape = list(lr["shape"])
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return contract(int(shape[-1]), int(cfg["scale"]), batch, str(lr.get("dtype", "float32")))


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    manifest["files"] = hash_files(root)
    if manifest.get("input_contract") is None:
        manifest["input_contract"] = input_contract(manifest)
    tmp = root / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, root / MANIFEST_FILE)


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    root = Path(root)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise ArtifactError(f"'{root}' is not a directory; pass an artifact directory made by "
                            "`alignvar-edge export`, `quantize` or `build`")
    if not path.is_file():
        raise ArtifactError(f"'{root}' has no {MANIFEST_FILE}: it is not a finished artifact (an "
                            "interrupted run, or not made by alignvar-edge); re-run the command that makes it")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}); re-create the artifact") from e
    if not isinstance(m, dict) or m.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{path} has schema version {m.get('schema_version') if isinstance(m, dict) else '?'}, "
                            f"this alignvar-edge reads version {SCHEMA_VERSION}; re-create the artifact")
    return m


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
    real, base = path.resolve(), root.resolve()
    if real == base or base not in real.parents:
        raise ArtifactError(f"artifact '{root}' failed verification: {rel} leads outside the artifact directory "
                            f"(to {real}, through a symlink); refusing it, re-create the artifact")
    return path


def listed_file(root: str | os.PathLike[str], manifest: dict[str, Any], rel: Any) -> Path:
    """The path of `rel` inside a verified artifact, only if its manifest lists it (a folder such as
    a .mlpackage counts when files under it are listed): nothing unlisted is ever opened."""
    files = manifest.get("files") or {}
    path = confined(root, rel)
    if rel not in files and not any(f.startswith(f"{rel}/") for f in files):
        raise ArtifactError(f"artifact '{root}' failed verification: it uses {rel}, which {MANIFEST_FILE} "
                            "does not list with a SHA-256; re-create the artifact")
    return path


def _external_data_problems(root: Path, rel: str, files: dict[str, Any]) -> list[str]:
    """Each tensor an ONNX graph keeps in another file must name a listed file inside root."""
    from alignvar_edge.onnx_wire import external_locations
    try:
        locations = external_locations((root / rel).read_bytes())
    except (OSError, ValueError):   # not parseable: the loaders report it as such
        return []
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


def verify_files(root: str | os.PathLike[str], manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trust nothing the manifest does not prove: it must list every file in the directory with its
    SHA-256 (an empty list proves nothing), every path must stay inside the directory (no `..`,
    no absolute path, no symlink out), every graph file and every ONNX external-data location must
    be one of the listed files, and each listed file must match its hash."""
    root = Path(root)
    m = manifest if manifest is not None else read_manifest(root)
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"artifact '{root}' failed verification: {MANIFEST_FILE} lists no files, so it "
                            "proves nothing; re-create the artifact with the command that made it")
    problems = []
    for rel, digest in files.items():
        p = confined(root, rel)
        if not p.is_file():
            problems.append(f"{rel} is missing")
        elif not isinstance(digest, str) or sha256_file(p) != digest:
            problems.append(f"{rel} does not match its recorded SHA-256 (truncated or edited)")
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if (p.is_file() or p.is_symlink()) and p.name != MANIFEST_FILE}
    problems += [f"{rel} is not listed in {MANIFEST_FILE}" for rel in sorted(on_disk - set(files))]
    for name, entry in (m.get("graphs") or {}).items():
        rel = entry.get("file") if isinstance(entry, dict) else None
        if rel:
            confined(root, rel)
            if rel not in files and not any(f.startswith(f"{rel}/") for f in files):
                problems.append(f"graph '{name}' is {rel}, which {MANIFEST_FILE} does not list")
    if not problems:
        for rel in files:
            if rel.endswith(".onnx"):
                problems += _external_data_problems(root, rel, files)
    if problems:
        raise ArtifactError(f"artifact '{root}' failed verification: {'; '.join(problems)}. "
                            "Re-create it; never edit files inside an artifact directory")
    return m


def load_verified(root: str | os.PathLike[str]) -> dict[str, Any]:
    return verify_files(root, read_manifest(root))


def check_out(out: str | os.PathLike[str], force: bool) -> None:
    """May `out` be written? Yes if it does not exist. With force, only if it is ours to replace:
    an empty folder, or a folder holding our manifest.json (export, quantize, build, deploy) or
    run.json (a training run). Anything else (a file, a symlink, someone's folder) is refused."""
    out = Path(out)
    if not os.path.lexists(out):
        return
    if not force:
        raise OutputExistsError(f"'{out}' already exists; pass --force to replace it or choose another --out")
    if out.is_symlink() or not out.is_dir():
        raise OutputExistsError(f"'{out}' is not a folder alignvar-edge made; --force only replaces our own "
                                "outputs: remove it yourself or choose another --out")
    if any(out.iterdir()) and not any((out / f).is_file() for f in OWN_MARKERS):
        raise OutputExistsError(f"'{out}' holds files but no {MANIFEST_FILE} or {RUN_FILE}, so alignvar-edge did not "
                                "make it; --force only replaces our own outputs: remove it yourself or choose "
                                "another --out")


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished `tmp` to `out`, re-checking `out` now: another run may have published
    there since we started. Without force the rename itself refuses an existing artifact."""
    check_out(out, force)
    if os.path.lexists(out):
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, out)           # fails on an existing non-empty folder or a file
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise OutputExistsError(f"'{out}' appeared while this run was working (another run wrote it); "
                                    "kept that one: pass --force to replace it or choose another --out") from e
        raise


@contextlib.contextmanager
def artifact_dir(out: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Build an artifact in a temporary sibling; rename into place only if the block succeeds.

    The block must call `write_manifest(tmp, manifest)` last. An existing `out` is replaced only
    with force=True, only if it is ours (see `check_out`, checked before and again at the rename),
    and only after the new artifact is complete. The result gets the umask's modes.
    """
    out = Path(out)
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if not (tmp / MANIFEST_FILE).is_file():
            raise ArtifactError(f"internal error: artifact for '{out}' was finished without a manifest")
        publish_mode(tmp)
        _publish(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
