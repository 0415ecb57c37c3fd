"""The one contract every backend implements: `Backend` (build + load) and `Engine` (run).

An engine runs the single graph: LR tiles `lr` (B, 3, h, w) float32 in [0, 1] -> `sr`
(B, 3, 4h, 4w) and `tokens_k` (B, p_k^2) int64 for every scale k. Everything else (batching,
tiling, images, timing) is shared here, so a backend only says how to feed its runtime.
"""
from __future__ import annotations

import abc
import contextlib
import ctypes
import dataclasses
import importlib
import importlib.metadata
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import numpy as np

from alignvar_edge.argtypes import DEFAULT_MAX_MEGAPIXELS, is_integer
from alignvar_edge.caller import option, warn_caller
from alignvar_edge.errors import ArtifactError, BackendUnavailableError, EngineClosedError, InputError, out_of_memory
from alignvar_edge.extras import install_command
from alignvar_edge.graph_names import INPUT, NOISE, SR, token_name
from alignvar_edge.manifest import Manifest
from alignvar_edge.model.config import AlignVARConfig        # torch-free: a device may have no PyTorch
from alignvar_edge.recipes import default_precision

if TYPE_CHECKING:           # upscale's PIL overloads; PIL is imported only where a PIL image is passed
    import numpy.typing as npt
    import PIL.Image

    from alignvar_edge.images.arrays import Samples
    from alignvar_edge.runtimes.tiling import ImagesProgress, TileProgress

__all__ = ["Backend", "Engine", "SupportsArray", "TensorSpec", "check_thread_count", "config_from_manifest"]


# (shape, dtype); a dimension of -1 is dynamic
TensorSpec = tuple[tuple[int, ...], np.dtype]

_Sample = TypeVar("_Sample", bound=np.generic)     # an array's sample type, which upscale keeps


class SupportsArray(Protocol):
    """An image numpy converts (`np.asarray`) besides a numpy array: a CPU torch tensor, for one;
    `upscale` returns a numpy array for it. Paths and a file's bytes are none: refused."""

    def __array__(self) -> np.ndarray: ...


def input_roles(names: list[str], where: object) -> list[str]:
    """Our names for a single graph's inputs, by position: `lr`, then `noise` with a refiner.

    A raw export may carry generated names for `lr`; the refiner's input is always `noise`."""
    if len(names) == 1 or (len(names) == 2 and names[1] == NOISE):
        return [INPUT, NOISE][:len(names)]
    raise ArtifactError(f"{where} has inputs {names}; the single graph takes lr (and noise, with VARSR's "
                        "refiner): rebuild it from an alignvar-edge export")


def config_from_manifest(manifest: Manifest) -> AlignVARConfig:
    """The AlignVAR config recorded in a manifest's `model` entry."""
    cfg = manifest.config
    if not cfg:
        raise ArtifactError("the manifest has no model config; re-create the artifact")
    try:
        return AlignVARConfig.from_dict(dict(cfg))
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"the manifest's model config is not valid ({e}); re-create the artifact") from e


def precision_label(precision: str | None, computed: str | None, expected: str | None = None) -> str | None:
    """An engine's precision, and what it computed in where that differs from what it was built and
    checked for (`expected`; e.g. 'fp32 (ran bf16)'), or where it computes in parts ('bf16 (bf16
    image, f32 tokens)', 'int8 (float ops f32 image, f32 tokens)'). bench rows and selftest reports."""
    if not computed or not precision:
        return precision
    nominal = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}.get(precision, precision)
    expected = expected or nominal
    # an int8 engine's precision names its quantized ops; the compute precision is its float ops'
    ops = "float ops " if precision == "int8" else ""
    if computed != expected:
        return f"{precision} ({ops}ran {computed})"
    if "," in computed:
        return f"{precision} ({ops}{computed})"
    # built so, and checked so: an fp16 OpenVINO engine on a CPU stores f16 weights and computes f32
    return f"{precision} ({computed} compute)" if precision in ("fp16", "bf16") and computed != nominal else precision


# load options every backend that takes them reads the same way
THREAD_OPTIONS = ("threads", "inter_threads")        # CPU thread counts
FLAG_OPTIONS = ("spin", "parity", "cuda_graphs", "refine")     # True or False


def check_thread_count(threads: object, name: str = "threads", cores: int | None = None,
                       here: bool = True) -> int | None:
    """A thread count for a runtime: None (its default) or an integer >= 1 and, for a runtime that
    runs `here`, at most the `cores` this process may use (more only wait for one, and ONNX Runtime
    starts each at load: threads=10**6 never returned). `name`: the load option, or the CLI flag."""
    if threads is None:
        return None
    flag = name.startswith("--")
    said = f"{name} {threads}" if flag else f"{name}={threads!r}"
    if not is_integer(threads) or threads < 1:
        leave = "" if flag else ", or None for the runtime's default"
        raise InputError(f"{said}: a thread count must be an integer >= 1{leave}")
    if here:
        if cores is None:
            from alignvar_edge.cpuinfo import usable_cores
            cores = usable_cores()
        if threads > cores:
            most = f"{name} {cores}" if flag else f"{name}={cores}"
            raise InputError(f"{said} is more than the {cores} core(s) this process may use here; "
                             f"pass {most} or fewer")
    return int(threads)


def threads_here(session: dict[str, Any], engine_dir: object = None,
                 given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Session options to run with here: each thread count in `session` that the caller does not
    `given` capped at the cores this process may use (more threads than cores only wait for one: a
    run on them was slower without a word), said in one warning. `engine_dir`: the engine recording
    `session`; None where `build` is recording it, which may be for a device with more cores."""
    from alignvar_edge.cpuinfo import usable_cores
    given = given or {}
    cores = usable_cores()
    over = {name: int(n) for name in THREAD_OPTIONS
            if name not in given and is_integer(n := session.get(name)) and n > cores}
    if over and engine_dir is None:
        said = " and ".join(option(name, n) for name, n in over.items())
        warn_caller(f"{said} is more than the {cores} core(s) this process may use here: recorded for the device "
                    f"the engine runs on; a host with fewer cores runs it on all of its own, as this build's check "
                    "does")
    elif over:
        said = ", ".join(f"{name}={n}" for name, n in over.items())
        warn_caller(f"the engine '{engine_dir}' records {said}, more than the {cores} core(s) this process may "
                    f"use here: it runs on {cores}")
    return {**session, **dict.fromkeys(over, cores), **given}


def check_load_options(backend: str, opts: dict[str, Any], here: bool = True) -> None:
    """The thread counts and True/False flags among a backend's load options, before the runtime
    sees them (OpenVINO raised a multi-line C++ error for threads=-1; ONNX Runtime took '2' and 1.5).
    here=False: options recorded in an engine that runs elsewhere, on cores unknown here."""
    for name in THREAD_OPTIONS:
        check_thread_count(opts.get(name), name, here=here)
    for name in FLAG_OPTIONS:
        check_flag(opts.get(name), f"{backend} {name}")
    batch = opts.get("batch")       # the torch engine's tiles per call: 0 became 4, -1 became 1, '4' was taken
    if batch is not None and (not is_integer(batch) or batch < 1):
        raise InputError(f"{backend} batch (tiles per call) must be an integer >= 1, or None for the default, "
                         f"got {batch!r}")


def check_flag(flag: object, said: str, none: str = "") -> None:
    """A True/False option (`said`: how the message names it; `none`: what None means, where it is
    allowed to mean something), refused in one line as anything else: bool('no') is True."""
    if flag is not None and not isinstance(flag, bool):
        raise InputError(f"{said} must be True or False{none}, got {flag!r}")


class Engine(abc.ABC):
    """A loaded engine. Use as a context manager; `close()` frees the runtime's resources.

    Calls on one engine are serialised by a lock: runtimes differ in thread safety, and one
    engine already uses every core it is given. Use one engine per thread for parallelism.
    """

    backend: str = ""
    # whether an engine loaded before os.fork() runs in the child and lets it exit: True only where
    # measured; the others are refused there (`_after_fork_in_child`)
    survives_fork: bool = False

    def __init__(self, metadata: Manifest, config: AlignVARConfig, device: str,
                 engine_dir: Path | None = None):
        self.metadata = metadata
        self.config = config
        self.device = device
        self.engine_dir = engine_dir
        self.last_latency_ms: float | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._forked = False           # loaded before os.fork() in a parent, and refused here
        _ENGINES.add(self)

    # --- what a backend provides -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def input_spec(self) -> dict[str, TensorSpec]:
        """Input name -> (shape, dtype); -1 marks a dynamic dimension."""

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on validated feeds; return every output by name as numpy arrays."""

    def _release(self) -> None:
        """Free runtime resources (sessions, compiled models, device buffers)."""

    # --- shared behaviour ----------------------------------------------------------------------
    @property
    def batch(self) -> int:
        """Tiles per inference call: the graph's static batch (dynamic graphs: 1 unless set)."""
        b = self.input_spec[INPUT][0][0]
        return b if b > 0 else getattr(self, "preferred_batch", 1)

    @property
    def pads_to_batch(self) -> bool:
        """Whether every call runs exactly `batch` tiles (a static-batch graph: a short last call is
        padded). Not `Manifest.static_batch`, which is the graph's batch itself."""
        return self.input_spec[INPUT][0][0] > 0

    @property
    def input_contract(self) -> dict[str, Any]:
        """What the engine's input expects, as the manifest's `input_contract` states it: colour
        order, range, layout, dtype, tile, overlap, scale and batch. `input_spec` gives the raw
        tensor shapes and dtypes that `infer` checks."""
        from alignvar_edge.manifest import contract
        dtype = self.input_spec[INPUT][1]
        c = contract(self.tile_size, self.scale, self.batch if self.pads_to_batch else None, np.dtype(dtype).name,
                     self.config, noise=NOISE in self.input_spec)
        c["batch"] = self.batch            # what run() and upscale() feed per call
        return c

    @property
    def refines(self) -> bool:
        """Whether the engine runs VARSR's refiner: its graph takes the noise (an export made with
        --no-refine, and its engines, do not)."""
        return NOISE in self.input_spec

    def weights_sha256(self) -> str | None:
        """The hash of the weights it runs, as exports record it (their state dict): the recorded
        one, or None where the manifest records none."""
        return self.metadata.model.weights_sha256

    @property
    def tile_size(self) -> int:
        """The LR tile side the engine runs, in pixels: `run` takes (N, 3, tile_size, tile_size)."""
        return self.config.lr_size

    @property
    def scale(self) -> int:
        """The upscaling factor (4): results are `scale` times the input's height and width."""
        return self.config.scale

    @property
    def num_scales(self) -> int:
        """The model's token scales: `run` returns one token array per scale, coarsest first."""
        return self.config.num_scales

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One raw inference on the engine's graph; `last_latency_ms` times it."""
        self.check_open()
        checked = self._check_feeds(feeds)
        with self._lock:
            self.check_open()             # closed while this call waited for the one before it
            t0 = time.perf_counter()
            with self._running():
                out = self._infer(checked)
            self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return out

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """Around the runtime running the engine: its allocation failure (ONNX Runtime's arena,
        OpenVINO's allocator) is OutOfMemoryError, no bug; any other error passes as it is."""
        try:
            yield
        except Exception as e:
            if (memory := out_of_memory(e, f"running the {self.backend} engine")) is not None:
                raise memory from e
            raise

    @property
    def parallel_requests(self) -> int:
        """Engine calls worth having in flight at once (an OpenVINO engine in throughput mode runs
        them on parallel streams); `run` and `upscale` pass this many batches to `infer_many`."""
        return 1

    def infer_many(self, feeds_list: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Several raw inferences, results in order (one after another unless the engine overlaps them)."""
        return [self.infer(f) for f in feeds_list]

    def feeds_for(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's feeds for one call on LR tiles (N, 3, h, w): the tiles and, where the graph has
        VARSR's refiner, the fixed noise draw every engine and the export's parity check feed
        (`config.refiner_noise`), for as many tiles as the call holds (a dynamic-batch graph's last
        call may hold fewer than `batch`)."""
        feeds = {INPUT: tiles}
        if NOISE in self.input_spec:
            noise = self.config.refiner_noise(tiles.shape[0])
            if noise is not None:
                feeds[NOISE] = noise
        return feeds

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.input_spec
        if set(feeds) != set(spec):
            hint = (f"; feed {NOISE!r} = engine.config.refiner_noise({self.batch}) (the refiner's fixed draw), "
                    "or build the feeds with engine.feeds_for(tiles)" if NOISE in spec and NOISE not in feeds else "")
            raise InputError(f"{self.backend} engine expects inputs {sorted(spec)}, got {sorted(feeds)}{hint}")
        out = {}
        for name, (shape, dtype) in spec.items():
            x = np.asarray(feeds[name])
            if x.ndim != len(shape) or any(s > 0 and s != d for s, d in zip(shape, x.shape)):
                raise InputError(f"input '{name}' must have shape {_fmt_shape(shape)}, got {x.shape}; "
                                 "use Engine.run (batches) or Engine.upscale (any image size)")
            if x.dtype != dtype:
                if x.dtype.kind != np.dtype(dtype).kind:
                    raise InputError(f"input '{name}' must be {np.dtype(dtype).name}, got {x.dtype.name}")
                x = x.astype(dtype)
            out[name] = np.ascontiguousarray(x)
        return out

    def run(self, lr_tiles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """LR tiles (N, 3, h, w) in [0, 1] -> (SR (N, 3, 4h, 4w), tokens per scale (N, p_k^2)).

        Chunks by the engine's batch; a short last chunk is padded by repeating its last tile
        (static-batch engines), and the padding is dropped from the results.
        """
        t = self.tile_size
        x = checked_lr_tiles(lr_tiles, t)
        b = self.batch
        chunks, feeds_list = [], []
        for i in range(0, x.shape[0], b):
            chunk = x[i:i + b]
            chunks.append(chunk.shape[0])
            if chunk.shape[0] < b and self.pads_to_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - chunk.shape[0], axis=0)])
            feeds_list.append(self.feeds_for(chunk))
        srs: list[np.ndarray] = []
        toks: list[list[np.ndarray]] = [[] for _ in range(self.num_scales)]
        for n, out in zip(chunks, self.infer_many(feeds_list)):
            srs.append(np.asarray(out[SR], dtype=np.float32)[:n])
            for k in range(self.num_scales):
                toks[k].append(np.asarray(out[token_name(k)]).astype(np.int64)[:n])
        if not srs:
            h = t * self.scale
            return (np.zeros((0, 3, h, h), np.float32),
                    [np.zeros((0, p * p), np.int64) for p in self.config.patch_nums])
        return np.concatenate(srs), [np.concatenate(tk) for tk in toks]

    @overload
    def upscale(self, image: npt.NDArray[_Sample], overlap: int | None = None,
                progress: TileProgress | None = None, color_fix: bool | None = None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                alpha_is_data: bool = False) -> npt.NDArray[_Sample]: ...

    @overload
    def upscale(self, image: PIL.Image.Image, overlap: int | None = None,
                progress: TileProgress | None = None, color_fix: bool | None = None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                alpha_is_data: bool = False) -> PIL.Image.Image: ...

    @overload
    def upscale(self, image: SupportsArray, overlap: int | None = None,
                progress: TileProgress | None = None, color_fix: bool | None = None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                alpha_is_data: bool = False) -> np.ndarray: ...

    def upscale(self, image: object, overlap: int | None = None,
                progress: TileProgress | None = None, color_fix: bool | None = None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                alpha_is_data: bool = False) -> Any:
        """Any image HxW, HxWx1, HxWx2 (gray, alpha), HxWx3 or HxWx4 -> exactly 4x larger, same layout and kind.

        uint8 in -> uint8 out, uint16 -> uint16, float in [0, 1] -> the same float dtype, a PIL
        image -> a PIL image (`images.as_float_image`), another array numpy converts (a CPU torch
        tensor) -> a numpy array. Colour order RGB(A).
        `overlap`: LR pixels tiles share (None: a quarter tile). `progress(done, total)`: called
        as each tile is blended, with the tiles done so far and the image's tile count (the tiles
        of one engine call come one after another as the call returns: `batch` at a time).
        `color_fix`: VARSR's AdaIN colour fix over the whole image (None: the model's default,
        `config.color_fix`: on for VARSR models, as VARSR's own script applies it).
        `max_megapixels`: a larger image is refused before any work (None: no limit; the default is
        the command line's). Memory besides the input and the result is a few strips of it.
        `alpha_is_data`: the alpha channel is data (a mask, a packed texture), not coverage: the
        colour under alpha 0 reaches the model as it is. By default it is first replaced by that of
        the visible pixels around it (editors leave black there, which bled into the edges).
        An image the engine cannot take is an InputError; a closed engine, EngineClosedError.
        """
        from alignvar_edge.images.arrays import as_samples
        from alignvar_edge.runtimes.tiling import upscale_samples
        _check_progress(progress, "progress(done, total)")
        check_flag(alpha_is_data, option("alpha_is_data"))
        samples = _alpha_read(as_samples(image, *_size_limit(max_megapixels)), alpha_is_data)
        return samples.finish(upscale_samples(self, samples, overlap=overlap, progress=progress,
                                              color_fix=self._color_fix(color_fix)))

    @overload
    def upscale_many(self, images: Iterable[npt.NDArray[_Sample]], overlap: int | None = None,
                     progress: ImagesProgress | None = None,
                     color_fix: bool | None = None,
                     max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                     alpha_is_data: bool = False) -> Iterator[npt.NDArray[_Sample]]: ...

    @overload
    def upscale_many(self, images: Iterable[PIL.Image.Image], overlap: int | None = None,
                     progress: ImagesProgress | None = None,
                     color_fix: bool | None = None,
                     max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                     alpha_is_data: bool = False) -> Iterator[PIL.Image.Image]: ...

    @overload
    def upscale_many(self, images: Iterable[SupportsArray], overlap: int | None = None,
                     progress: ImagesProgress | None = None,
                     color_fix: bool | None = None,
                     max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                     alpha_is_data: bool = False) -> Iterator[np.ndarray]: ...

    @overload       # a batch of both kinds: each result the kind of its image
    def upscale_many(self, images: Iterable[PIL.Image.Image | SupportsArray], overlap: int | None = None,
                     progress: ImagesProgress | None = None,
                     color_fix: bool | None = None,
                     max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                     alpha_is_data: bool = False) -> Iterator[np.ndarray | PIL.Image.Image]: ...

    def upscale_many(self, images: Iterable[object], overlap: int | None = None,
                     progress: ImagesProgress | None = None,
                     color_fix: bool | None = None,
                     max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                     alpha_is_data: bool = False) -> Iterator[Any]:
        """`upscale` of each image, in order, each as soon as it is final (small images are read a
        few calls' worth ahead). Small images share calls instead of padding one each
        (`tiling.upscale_images`): a folder of thumbnails runs in full batches.
        `progress(index, done, total)`: tiles of image `index` done (an image small
        enough to share calls with others is said once, done). `color_fix`,
        `max_megapixels` (each image's) and `alpha_is_data` as in `upscale`.

        `images` is an iterable of images (a list, a generator); one image is refused here, at
        the call, not iterated row by row."""
        from alignvar_edge.images.arrays import refuse_one_image
        from alignvar_edge.runtimes.tiling import checked_overlap
        refuse_one_image(images, "upscale_many")
        checked_overlap(overlap, self.tile_size)         # at the call, not as the first image's fault
        _check_progress(progress, "progress(index, done, total)")
        limit = _size_limit(max_megapixels)
        check_flag(alpha_is_data, option("alpha_is_data"))
        return self._upscale_many(images, overlap, progress, self._color_fix(color_fix), limit, bool(alpha_is_data))

    def _color_fix(self, asked: bool | None) -> bool:
        check_flag(asked, "color_fix", " (or None: the model's default)")
        return self.config.color_fix if asked is None else asked

    def _upscale_many(self, images: Iterable[object], overlap: int | None,
                      progress: ImagesProgress | None, color_fix: bool,
                      limit: tuple[float | None, str], alpha_is_data: bool) -> Iterator[Any]:
        from alignvar_edge.images.arrays import as_samples
        from alignvar_edge.runtimes.tiling import upscale_images
        backs: list[Callable[[np.ndarray], Any]] = []
        said: set[str] = set()              # a warning about its images, once for the call

        def samples(image: Any) -> Samples:
            s = _alpha_read(as_samples(image, *limit, batch_said=said), alpha_is_data)
            backs.append(s.finish)
            return s
        # in a service's batch, the index is what finds the image it cannot take
        for out in upscale_images(self, images, overlap, progress, color_fix, convert=samples,
                                  name_item=lambda index: f"image {index} (from 0) of upscale_many"):
            yield backs.pop(0)(out)

    def check_open(self) -> None:
        """Raise EngineClosedError if `close` has been called, or the engine was loaded before this
        process forked and its backend does not survive that; every engine call checks it."""
        if self._forked:
            raise EngineClosedError(
                f"this {self.backend} engine was loaded before os.fork(), and {self.backend} engines cannot run in "
                "a forked child: load engines after forking, in each worker (a pool's initializer; gunicorn "
                "without --preload), or start workers with spawn or forkserver")
        if self._closed:
            raise EngineClosedError(f"this {self.backend} engine is closed; load it again")

    def close(self) -> None:
        """Release the engine once the engine call in flight (one `infer`: one batch of tiles, on
        another thread) has returned. It does not wait for a whole `upscale`, `run` or
        `upscale_many`: one with tiles left raises EngineClosedError at its next call, as any call
        after close does. Stop and join the threads that use an engine before closing it."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock, since one that a parent's thread held at the fork stays held
        here. An engine that does not survive the fork is refused (`check_open`) and its runtime's
        objects are never freed here: their destructors wait for threads only the parent has (an
        ONNX Runtime session's pool, OpenVINO's streams), and the child hung at its exit."""
        self._lock = threading.Lock()
        if self.survives_fork or self._closed:
            return
        _INHERITED.append(dict(vars(self)))
        self._closed = self._forked = True

    def __enter__(self) -> Engine:
        self.check_open()       # `with engine:` after close: said here, not at the first call inside
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        # a runtime's session, compiled model or GPU context lives in this process; pickle raised
        # the runtime's own TypeError ("cannot pickle '_thread.lock' object" for torch)
        path = repr(str(self.engine_dir)) if self.engine_dir else "path"
        raise TypeError(f"a loaded {self.backend} engine cannot be pickled or sent to another process; load it in "
                        f"each worker process instead: alignvar_edge.load({path}) in the pool's initializer")

    def __repr__(self) -> str:
        where = f" {self.engine_dir}" if self.engine_dir else f" from {self.metadata.source.describe()}"
        return (f"<{type(self).__name__} {self.backend}/{self.device} "
                f"{self.metadata.precision or '?'} batch={self.batch}{where}{' (closed)' if self._closed else ''}>")


# engines loaded in this process, and the runtime objects of those a fork handed down, which are
# kept until the process ends: not freed even at interpreter shutdown
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_INHERITED: list[dict[str, Any]] = []
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_INHERITED))


def _engines_after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_engines_after_fork_in_child)


class Backend(abc.ABC):
    """A runtime: can it run here, how to build an engine directory, how to load one."""

    name: str = ""
    module: str = ""          # the Python package the backend imports (lazily)
    distribution: str = ""    # the pip distribution that reports its version
    # the alignvar-edge extra whose requirements install it at a version this package works with
    # (`extras.install_command`: torch from its CPU index, not PyPI's multi-GB CUDA build)
    extra: str = ""
    load_options: frozenset[str] = frozenset()   # keyword options `load` takes (threads=, batch=, ...)
    # its builds check the engine on the bundled held-out photographs (artifacts.validation_tiles)
    checks_on_photos: bool = False

    @property
    def default_precision(self) -> str:
        """The precision `build` makes without one named (recipes.default_precision)."""
        return default_precision(self.name)

    def import_module(self) -> Any:
        """The backend's package, or BackendUnavailableError saying how to get it."""
        try:
            return importlib.import_module(self.module)
        except Exception as e:   # noqa: BLE001 - a broken install must read as 'unavailable'
            # an installed library the loader cannot map for want of memory is not missing
            if (memory := out_of_memory(e, f"loading {self.module}")) is not None:
                raise memory from e
            raise BackendUnavailableError(f"{self.name} is not usable here: {self.missing_reason(e)}") from e

    def missing_reason(self, error: BaseException) -> str:
        """One line on why the backend's package cannot be imported, and the pip command that installs it."""
        how = install_command(self.extra) if self.extra else f"`pip install {self.distribution or self.module}`"
        return f"cannot import {self.module} ({type(error).__name__}: {error}); install it with {how}"

    def is_available(self) -> tuple[bool, str]:
        """(True, "") when engines can be built and run here, else (False, one-line reason)."""
        try:
            self.import_module()
        except BackendUnavailableError as e:
            return False, str(e).split(": ", 1)[-1]
        return True, ""

    def version(self) -> str | None:
        """The installed version of the backend's distribution, or None where it is not installed."""
        try:
            return importlib.metadata.version(self.distribution or self.module)
        except importlib.metadata.PackageNotFoundError:
            return None

    def built_version(self, manifest: Manifest) -> str | None:
        """The version of this runtime that built the engine of `manifest` and checked it against its
        golden outputs (its build host's `tools`); None where it does not say."""
        return manifest.tools.get(self.distribution or self.module)

    def other_version(self, manifest: Manifest) -> str | None:
        """One line where this runtime here is not the version that built the engine of `manifest` and
        checked it against its golden outputs (other kernels: an OpenVINO int8 engine gave half its
        pixels other values, up to 5 levels); None where they agree or either is unknown. A note, not
        an error: the engine may well be right."""
        built, running = self.built_version(manifest), self.version()
        if not built or not running or built == running:
            return None
        return (f"{self.name} {running} runs it, not the {built} that built and checked it: its results may "
                "differ from its build's checks")

    def devices(self) -> list[str]:
        """The devices engines of this backend can run on here (e.g. "cpu", "cuda", OpenVINO's "GPU")."""
        return ["cpu"]

    def describe(self, manifest: Manifest) -> list[str]:
        """What an engine of this backend was made for and what was checked, from its manifest, as
        `inspect` shows it (its 'target' lines): each backend owns its own; none by default."""
        return []

    def can_build(self) -> tuple[bool, str]:
        """Whether `build` works here (Core ML builds on Linux; TensorRT writes a build kit)."""
        return self.is_available()

    def can_load(self) -> tuple[bool, str]:
        """Whether `load` works here."""
        return self.is_available()

    def require(self) -> Any:
        """The backend's package, or BackendUnavailableError saying why it cannot run here."""
        self._refuse_unless(self.is_available())
        return self.import_module()

    def _refuse_unless(self, usable: tuple[bool, str]) -> None:
        """BackendUnavailableError where `usable` (is_available's or can_load's answer) says no."""
        ok, why = usable
        if not ok:
            raise BackendUnavailableError(f"{self.name} is not usable here: {why}")

    @abc.abstractmethod
    def build(self, artifact_dir: Path, out: Path, precision: str = "fp32",
              calibration: np.ndarray | None = None, device: str | None = None,
              force: bool = False, **opts: Any) -> Path:
        """Make an engine directory (with manifest.json) from an exported artifact."""

    def load(self, engine_dir: Path, device: str | None = None, **opts: Any) -> Engine:
        """Open an engine directory made by `build` (some backends also open ONNX exports or
        checkpoints). Refused in one line, in this order: an artifact for another backend
        (`runtimes.check_backend`, so no backend's `open` repeats it), a backend that cannot load
        here, an option this backend does not take (the ones it does are named)."""
        from alignvar_edge.runtimes import check_backend        # the package imports this module
        check_backend(engine_dir, self.name)
        self._refuse_unless(self.can_load())
        unknown = set(opts) - self.load_options
        if unknown:
            raise InputError(f"unknown {self.name} engine options {sorted(unknown)}; known: "
                             f"{', '.join(sorted(self.load_options)) or 'none'}")
        check_load_options(self.name, opts)
        return self.open(engine_dir, device, **opts)

    @abc.abstractmethod
    def open(self, engine_dir: Path, device: str | None = None, **opts: Any) -> Engine:
        """`load` after its option check: the backend's own loading."""


def _size_limit(max_megapixels: object) -> tuple[float | None, str]:
    """`upscale`'s `max_megapixels`, checked, and how the caller raises it (`--max-megapixels` where
    the command line calls)."""
    from alignvar_edge.images.arrays import checked_megapixels_limit
    return checked_megapixels_limit(max_megapixels), option("max_megapixels")


def _alpha_read(samples: Samples, alpha_is_data: bool) -> Samples:
    """`samples` with their alpha read as `alpha_is_data` says (`Samples.alpha_is_coverage`)."""
    return dataclasses.replace(samples, alpha_is_coverage=False) if alpha_is_data else samples


def _check_progress(progress: object, called: str) -> None:
    """`progress=` is called as tiles are done (`called`: how); anything else failed there, a
    bare TypeError from deep inside the tiling, after the first call's work."""
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be a function, called as {called}, or None; got {progress!r}")


def checked_lr_tiles(lr_tiles: np.ndarray, t: int, what: str = "Engine.run's lr_tiles", name: str = "lr_tiles"
                     ) -> np.ndarray:
    """LR tiles as float32, refused unless they are (N, 3, t, t) finite floats in [0, 1] (`what`
    names them: `Engine.run`'s, a build's calibration tiles; `name` is the argument's): uint8 tiles, or floats of another
    range, were clipped into an almost white tile without a word, and NaN calibration tiles gave an
    int8 engine whose every scale was fitted to nothing."""
    from alignvar_edge.images.arrays import check_unit_range, full_scale
    x = np.asarray(lr_tiles)
    if x.ndim != 4 or x.shape[1:] != (3, t, t):
        raise InputError(f"expected LR tiles of shape (N, 3, {t}, {t}), got {x.shape}; "
                         "use Engine.upscale for whole images")
    if x.dtype.kind != "f":
        full = full_scale(x.dtype)
        how = (f"divide {x.dtype} tiles by {full:g}: {name}.astype(np.float32) / {full:g}" if full
               else "convert them to floats in [0, 1] divided by their full-scale value")
        raise InputError(f"{what} must be float32 in [0, 1], got dtype {x.dtype}; {how}")
    if x.size:
        lo, hi = x.min(), x.max()       # a NaN or an Inf shows in them: one pass each, no mask of every value
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"{what} contain NaN or Inf; pass finite values in [0, 1]")
        if lo < 0 or hi > 1:            # check_unit_range's slack decides, and words, a refusal
            check_unit_range(x, "pass float32 in [0, 1]: divide them by their full-scale value (255 for 8-bit "
                             "data) first", what=what)
    return np.clip(x.astype(np.float32, copy=False), 0.0, 1.0)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("?" if s < 0 else str(s) for s in shape) + ")"
