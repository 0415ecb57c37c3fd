"""TensorRT: engines for NVIDIA GPUs and Jetson, built from the exported ONNX (explicit Q/DQ for INT8).

One build path for TensorRT 10 and 11:
  TRT 10  weakly typed network by default; precision comes from builder flags (FP16; INT8 with
          the Q/DQ graph from `alignvar-edge quantize --target tensorrt`).
  TRT 11  strongly typed networks only (the FP16/INT8 flags and implicit calibrators are gone):
          the ONNX carries its own types, so fp16 needs an fp16 export and int8 a Q/DQ export.
`plan.network_plan` decides flags from (version, precision, artifact precision) and nothing else
branches on the version. A timing cache is reused across builds (`alignvar-timing.cache`).

The engine manifest records the TensorRT version and the GPU (name, compute capability); an
engine is specific to both, and a mismatch is refused with a message instead of failing inside
deserialisation. Every engine dir (and, where TensorRT is absent, a *build kit*: the export plus
scripts) holds `trtexec.txt`, the equivalent trtexec command, and `build_on_device.sh`, which
builds on the device itself (the usual practice on a Jetson).

The runner binds device buffers and calls `execute_async_v3`, using torch CUDA tensors when
PyTorch has CUDA, else cuda-python (`cuda.bindings.runtime`).
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignvar_edge import recipes
from alignvar_edge.cpuinfo import is_jetson
from alignvar_edge.errors import ArtifactError, BackendUnavailableError, InputError
from alignvar_edge.extras import is_installed
from alignvar_edge.graph_names import INPUT, SR, token_names
from alignvar_edge.lazy import lazy_import
from alignvar_edge.native_paths import native_path
from alignvar_edge.outputs import artifact_dir as staging_dir
from alignvar_edge.manifest import (Manifest, listed_file, load_verified, new_manifest, recorded_path, tools_here,
                                    write_manifest)
from alignvar_edge.runtimes.artifacts import check_quantized_for, engine_manifest, link_onnx, single_graph
from alignvar_edge.runtimes.base import Backend, Engine, TensorSpec, config_from_manifest, input_roles
from alignvar_edge.runtimes.onnxruntime import ship_golden
from alignvar_edge.runtimes.tensorrt.kit import write_build_files
from alignvar_edge.runtimes.tensorrt.plan import (CACHE, ENGINE, FP16_F32, ONNX, SCRIPT_FILE, network_plan, plan_record,
                                                  recorded_f32, trt_major)

if TYPE_CHECKING:
    import tensorrt as trt
else:
    trt = lazy_import("tensorrt")
torch = lazy_import("torch")      # CUDA buffers, where PyTorch has CUDA

NOT_INSTALLED = ("TensorRT is not installed (PyPI's tensorrt wheels only fetch from NVIDIA's index: use "
                 "JetPack on a Jetson, or pip's --extra-index-url https://pypi.nvidia.com on a CUDA "
                 "machine)")
KIT_STILL_BUILDS = "; `build --target tensorrt` still writes an on-device build kit"


# ------------------------------------------------------------------------------------------------
# TensorRT itself
# ------------------------------------------------------------------------------------------------
def gpu_probe(index: int = 0) -> tuple[dict[str, Any] | None, str]:
    """(name and compute capability of CUDA device `index`, "") or (None, why not): no CUDA
    binding to ask with, a CUDA error, or no such GPU."""
    try:
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            major, minor = torch.cuda.get_device_capability(index)
            return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}, ""
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return None, ("TensorRT is installed but the runner has no CUDA binding: install cuda-python "
                      "(pip install 'cuda-python>=12.6.1,<13') or PyTorch with CUDA")
    err, props = cudart.cudaGetDeviceProperties(index)
    if int(err) != 0:
        return None, f"TensorRT is installed but CUDA cannot open GPU {index} (cudaGetDeviceProperties: {err})"
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"name": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}, ""


def gpu_info(index: int = 0) -> dict[str, Any] | None:
    """Name and compute capability of CUDA device `index`, or None without a usable GPU."""
    return gpu_probe(index)[0]


def _logger() -> trt.ILogger:
    return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_path: Path, plan: dict[str, Any], cache_path: Path,
                 workspace_mib: int | None = None, opt_level: int = 3) -> bytes:
    """Parse the ONNX, configure the builder from `plan`, build; updates the timing cache file."""
    logger = _logger()
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan["strongly_typed"] else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with native_path(onnx_path) as at:            # its C++ opens the graph (and weights beside it) by UTF-8 name
        parsed = parser.parse_from_file(at)
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    for name in plan["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if not plan.get("tf32", True):
        config.clear_flag(trt.BuilderFlag.TF32)      # on by default from Ampere: fp16's mantissa in fp32 layers
    f32 = set(plan.get("f32_layers") or ())
    if f32:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in f32:
                layer.precision = trt.float32
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    config.builder_optimization_level = int(opt_level)
    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path.name} "
                            "(see the log above); try --precision fp32 or a larger workspace")
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def fp16_f32_layers(onnx_path: Path, half: Any = None, recorded: Manifest | None = None) -> dict[str, Any]:
    """The layers (ONNX node names) an FP16 build keeps in f32, and why. The first choice made:
    `half`, a searched half policy given for this build (a HalfPolicy or its manifest dict); what
    `recorded`, the source's manifest, already chose (a kit's or engine's FP16_F32, which its script
    and `adopt` build with, or the half policy an fp16 export's search recorded); else the token
    path's float layers, so that an fp16 engine decides its tokens in f32 and computes the image in half."""
    kept = recorded_f32(recorded) if half is None and recorded is not None else None
    if kept is not None and kept["half_layers"] is not None:
        return kept                        # both lists recorded: the graph need not be read
    if half is None and kept is None and recorded is not None:
        half = (recorded.quantization or {}).get("half_policy")      # an fp16 export's searched policy
    import onnx

    from alignvar_edge.quantize.token_path import float_compute_nodes, token_path_float_nodes
    model = onnx.load(str(onnx_path), load_external_data=False)
    floats = float_compute_nodes(model)
    if kept is not None:                   # an older manifest kept no list of the other float layers
        source, f32 = kept["source"], set(kept["layers"])
    elif half is None:
        source, f32 = "token path", token_path_float_nodes(model, floats)
    else:
        from alignvar_edge.quantize.half_policy import HalfPolicy
        policy = half if isinstance(half, HalfPolicy) else HalfPolicy.from_dict(dict(half))
        source = f"half policy (f32 groups: {', '.join(sorted(policy.f32_groups)) or 'none'})"
        f32 = policy.f32_nodes(model)
    # the complement too: a trtexec command line may name the fewer of the two (plan.precision_args)
    return {"source": source, "layers": sorted(f32),
            "half_layers": sorted(set(floats.values()) - f32)}


def check_compatible(manifest: Manifest, trt_version: str, gpu: dict[str, Any] | None) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture."""
    ex = manifest.extra
    built_v, built_cc = ex.get("tensorrt_version"), ex.get("compute_capability")
    # `adopt` may only know trtexec's three-part version (10.3.0) of a four-part build (10.3.0.30)
    same = built_v == trt_version or (isinstance(built_v, str) and built_v.count(".") == 2
                                      and trt_version.startswith(built_v + "."))
    if not same:
        raise ArtifactError(f"this engine was built with TensorRT {built_v}, this machine has "
                            f"{trt_version}; rebuild it here (sh {SCRIPT_FILE} in the engine dir)")
    if gpu is None:
        raise BackendUnavailableError("no CUDA GPU is visible; TensorRT engines need one")
    if built_cc != gpu["compute_capability"]:
        raise ArtifactError(f"this engine was built for compute capability {built_cc} "
                            f"({ex.get('gpu_name')}), this GPU is {gpu['compute_capability']} "
                            f"({gpu['name']}); rebuild it here (sh {SCRIPT_FILE} in the engine dir)")


def _np_dtype(dt: trt.DataType) -> np.dtype:
    table = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16,
             trt.DataType.INT32: np.int32, trt.DataType.INT64: np.int64,
             trt.DataType.INT8: np.int8, trt.DataType.BOOL: np.bool_}
    if dt not in table:
        raise ArtifactError(f"engine I/O uses TensorRT type {dt}, which the runner does not map")
    return np.dtype(table[dt])


class _TorchBuffers:
    """Device buffers and a stream from PyTorch CUDA."""

    def __init__(self, device: int):
        self.torch = torch
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(self.device)
        self.bufs: dict[str, Any] = {}

    def alloc(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        t = self.torch.empty(shape, dtype=getattr(self.torch, dtype.name if dtype.name != "bool" else "bool"),
                             device=self.device)
        self.bufs[name] = t
        return int(t.data_ptr())

    @property
    def handle(self) -> int:
        return int(self.stream.cuda_stream)

    def upload(self, name: str, x: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            self.bufs[name].copy_(self.torch.from_numpy(x), non_blocking=False)

    def download(self, name: str) -> np.ndarray:
        self.stream.synchronize()
        return np.asarray(self.bufs[name].cpu().numpy())

    def free(self) -> None:
        self.bufs.clear()


class _CudaPythonBuffers:
    """The same with cuda-python (no PyTorch CUDA needed, e.g. a slim Jetson image)."""

    def __init__(self, device: int):
        from cuda.bindings import runtime as cudart
        self.rt = cudart
        self._ok(cudart.cudaSetDevice(device))
        self.stream = self._ok(cudart.cudaStreamCreate())
        self.ptrs: dict[str, tuple[int, tuple[int, ...], np.dtype]] = {}

    def _ok(self, res: Any) -> Any:
        err, *rest = res if isinstance(res, tuple) else (res,)
        if int(err) != 0:
            raise BackendUnavailableError(f"CUDA error {err}")
        return rest[0] if rest else None

    def alloc(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        ptr = self._ok(self.rt.cudaMalloc(int(np.prod(shape)) * dtype.itemsize))
        self.ptrs[name] = (int(ptr), shape, dtype)
        return int(ptr)

    @property
    def handle(self) -> int:
        return int(self.stream)

    def upload(self, name: str, x: np.ndarray) -> None:
        ptr, _, _ = self.ptrs[name]
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, kind, self.stream))

    def download(self, name: str) -> np.ndarray:
        ptr, shape, dtype = self.ptrs[name]
        out = np.empty(shape, dtype)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, kind, self.stream))
        self._ok(self.rt.cudaStreamSynchronize(self.stream))
        return out

    def free(self) -> None:
        for ptr, _, _ in self.ptrs.values():
            self.rt.cudaFree(ptr)
        self.ptrs.clear()
        self.rt.cudaStreamDestroy(self.stream)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, engine_path: Path, metadata: Manifest, device: str = "cuda:0",
                 engine_dir: Path | None = None):
        config = config_from_manifest(metadata)
        index = int(device.partition(":")[2] or 0)
        check_compatible(metadata, trt.__version__, gpu_info(index))
        self.runtime = trt.Runtime(_logger())
        dla = metadata.extra.get("dla_core")
        if dla is not None:                      # an engine built for a DLA core runs on that core
            self.runtime.DLA_core = int(dla)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"TensorRT could not deserialise {engine_path}; rebuild it here")
        self.context = self.engine.create_execution_context()
        super().__init__(metadata, config, device, engine_dir)
        self.buffers: _TorchBuffers | _CudaPythonBuffers = _make_buffers(index)
        self._inputs: dict[str, TensorSpec] = {}
        self._outputs: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dims = self.engine.get_tensor_shape(name)
            shape = tuple(int(dims[j]) for j in range(len(dims)))
            dtype = _np_dtype(self.engine.get_tensor_dtype(name))
            self.context.set_tensor_address(name, self.buffers.alloc(name, shape, dtype))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs[name] = (shape, dtype)
            else:
                self._outputs.append(name)
        want = [SR, *token_names(config.num_scales)]
        if sorted(self._outputs) != sorted(want) or list(self._inputs) != input_roles(list(self._inputs), engine_path):
            raise ArtifactError(f"engine I/O {list(self._inputs)} -> {self._outputs} is not the single "
                                f"graph's ({INPUT} [, noise] -> {want}); rebuild from an alignvar-edge export")

    @property
    def input_spec(self) -> dict[str, TensorSpec]:
        return self._inputs

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, x in feeds.items():       # lr, and the refiner's noise where the graph has one
            self.buffers.upload(name, x)
        if not self.context.execute_async_v3(self.buffers.handle):
            raise ArtifactError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        return {name: self.buffers.download(name) for name in self._outputs}

    def _release(self) -> None:
        self.buffers.free()
        del self.context, self.engine


def _make_buffers(index: int) -> _TorchBuffers | _CudaPythonBuffers:
    try:
        if torch.cuda.is_available():
            return _TorchBuffers(index)
    except ImportError:
        pass
    try:
        return _CudaPythonBuffers(index)
    except ImportError as e:
        raise BackendUnavailableError("the TensorRT runner needs PyTorch with CUDA or cuda-python "
                                      "(`pip install cuda-python`)") from e


class TensorRTBackend(Backend):
    name = "tensorrt"
    module = "tensorrt"
    distribution = "tensorrt"

    def missing_reason(self, error: BaseException) -> str:
        if isinstance(error, ImportError) and "libnvinfer" in str(error):
            return f"TensorRT's Python bindings are present but libnvinfer is not ({error})"
        if is_jetson():
            # on a Jetson the bindings are JetPack's Debian package, for the system Python only
            return ("TensorRT is not importable by this Python: JetPack installs it for the system Python "
                    "(sudo apt install python3-libnvinfer); in a virtual environment, create it with "
                    "`python3 -m venv --system-site-packages`")
        # the kit is built with the host tools (onnx): a device install cannot write one
        return NOT_INSTALLED + (KIT_STILL_BUILDS if is_installed("onnx") else "")

    def is_available(self) -> tuple[bool, str]:
        ok, why = super().is_available()
        if not ok:
            return ok, why
        gpu, why = gpu_probe(0)
        if gpu is None:
            return False, why
        return True, ""

    def can_build(self) -> tuple[bool, str]:
        return True, ""          # without TensorRT, build writes a kit for the device

    def version(self) -> str | None:
        try:
            return str(trt.__version__)
        except Exception:   # noqa: BLE001 - absent or broken install: no version to report
            return None

    def built_version(self, manifest: Manifest) -> str | None:
        """The TensorRT that compiled the plan (a plan built on the device records it, not the host's tools)."""
        return manifest.extra.get("tensorrt_version") or super().built_version(manifest)

    def other_version(self, manifest: Manifest) -> str | None:
        return None             # a plan of another TensorRT is refused at load (`check_compatible`)

    def devices(self) -> list[str]:
        info = gpu_info(0)
        return ["cuda:0"] if info else []

    def describe(self, manifest: Manifest) -> list[str]:
        """Its TensorRT version, GPU and DLA core (and where adopt took them from), and whether it
        was checked against the golden outputs yet."""
        extra = manifest.extra
        adopted = extra.get("adopted") or {}
        lines = [f"TensorRT {extra.get('tensorrt_version')} on {extra.get('gpu_name')} (compute capability "
                 f"{extra.get('compute_capability')})"
                 + (f", DLA core {extra['dla_core']}" if extra.get("dla_core") is not None else "")
                 + (f"; versions from the {adopted.get('versions_from')}" if adopted else "")]
        if manifest.parity is None:
            lines.append("not checked against the golden outputs yet: run `alignvar-edge selftest --engine` on the device")
        return lines

    def build(self, artifact_dir: Path, out: Path, precision: str = "fp32",
              calibration: Any = None, device: str | None = None, force: bool = False,
              **opts: Any) -> Path:
        """An engine dir when TensorRT and a GPU are here; otherwise a build kit (see module doc)."""
        src, onnx_path = _source(Path(artifact_dir))
        check_quantized_for(src, Path(artifact_dir), self.name)
        _check_quantized(src, Path(artifact_dir), precision)
        workspace = opts.pop("workspace_mib", None)
        opt_level = int(opts.pop("opt_level", 3))
        kit = opts.pop("kit", None)
        half = opts.pop("half_policy", None)
        if opts:
            raise InputError(f"unknown tensorrt build options {sorted(opts)}; known: workspace_mib, opt_level, kit, "
                             "half_policy")
        # what an FP16 flag must leave in f32; kept for every kit, whose script can build fp16 too
        f32 = fp16_f32_layers(onnx_path, half, recorded=src)
        f32_layers, half_layers = f32["layers"], f32["half_layers"]
        ok, why = self.is_available()
        if kit or not ok:
            # plan for the newest API we know; the script re-plans on the device
            major = trt_major(self.version() or "10")
            plan = network_plan(major, precision, src.precision or "fp32", f32_layers, half_layers)
            return self._write_kit(src, Path(artifact_dir), onnx_path, out, plan, precision,
                                   workspace, opt_level, force, why, f32)
        plan = network_plan(trt_major(trt.__version__), precision, src.precision or "fp32", f32_layers, half_layers)
        index = int((device or "cuda:0").partition(":")[2] or 0)
        gpu = gpu_info(index)
        assert gpu is not None
        with staging_dir(out, force=force) as tmp:
            data = link_onnx(onnx_path, tmp, ONNX, src)
            cache = tmp / CACHE
            prior = Path(artifact_dir) / CACHE
            if CACHE in src.files and prior.is_file():     # only a cache the manifest vouches for
                shutil.copy2(prior, cache)
            (tmp / ENGINE).write_bytes(build_engine(onnx_path, plan, cache, workspace, opt_level))
            # the layer lists once, in FP16_F32; the equivalent trtexec command is trtexec.txt
            extra = {"tensorrt_version": trt.__version__, "compute_capability": gpu["compute_capability"],
                     "gpu_name": gpu["name"], "plan": plan_record(plan, f32), "device": f"cuda:{index}",
                     FP16_F32: f32}
            m = engine_manifest(src, Path(artifact_dir), self.name, precision, {"engine": ENGINE},
                                batch=src.static_batch, extra=extra)
            m.extra["golden"] = ship_golden(src, Path(artifact_dir), tmp)
            write_build_files(tmp, m, precision, src.precision or "fp32", workspace, opt_level, data)
            write_manifest(tmp, m)
        return out

    def _write_kit(self, src: Manifest, src_dir: Path, onnx_path: Path, out: Path,
                   plan: dict[str, Any], precision: str, workspace: int | None, opt_level: int,
                   force: bool, why: str, f32: dict[str, Any]) -> Path:
        """The export plus trtexec.txt and build_on_device.sh: an ONNX artifact that also builds."""
        with staging_dir(out, force=force) as tmp:
            data = link_onnx(onnx_path, tmp, ONNX, src)
            graphs = {name: {**g, "file": ONNX} for name, g in src.graphs.items()}
            extra = dict(src.extra)
            # the layer lists once, in FP16_F32; the trtexec command that spells them out is trtexec.txt
            extra[FP16_F32] = f32
            extra["tensorrt_kit"] = {"precision": precision, "plan": plan_record(plan, f32), "built_here": False,
                                     # what stopped a build here; that a kit is still written is this kit
                                     "reason": (why or "kit requested").removesuffix(KIT_STILL_BUILDS),
                                     "source": recorded_path(src_dir)}
            m = new_manifest("onnx", src.backend or "onnx", src.graph or "single",
                             src.precision or "fp32", src.model, graphs=graphs,
                             opset=src.opset, quantization=src.quantization,
                             calibration=src.calibration, parity=src.parity, extra=extra, tools=tools_here(src))
            extra["golden"] = ship_golden(src, src_dir, tmp)
            write_build_files(tmp, m, precision, src.precision or "fp32", workspace, opt_level, data)
            write_manifest(tmp, m)
        return out

    def open(self, engine_dir: Path, device: str | None = None, **opts: Any) -> TensorRTEngine:
        m = load_verified(engine_dir)         # a TensorRT engine: Backend.load refused a kit, an export or another's
        return TensorRTEngine(listed_file(engine_dir, m, m.engine_file), m,
                              device or m.extra.get("device", "cuda:0"), Path(engine_dir))


def _check_quantized(src: Manifest, artifact_dir: Path, precision: str) -> None:
    """A Q/DQ precision built from the fp32 export itself: how to quantize this export first, by its
    path, in the caller's words (the command in a verb, the call from Python). From a kit or an
    engine, whose export is not here, `network_plan` says it."""
    r = recipes.recipe("tensorrt", precision)
    if src.kind == "onnx" and not src.tensorrt_kit:
        r.check_graph(src.precision or "fp32", r.quantize_step(str(artifact_dir)))


def _source(path: Path) -> tuple[Manifest, Path]:
    """An ONNX export or kit; or a TensorRT engine dir (it keeps its ONNX so it can be rebuilt)."""
    m = load_verified(path)
    if m.kind == "engine" and m.backend == "tensorrt":
        built = m.built_from
        return dataclasses.replace(m, precision=(built.precision if built else None) or m.precision), path / ONNX
    return single_graph(path, m)


BACKEND = TensorRTBackend()
