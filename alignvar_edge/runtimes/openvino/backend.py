"""OpenVINO: IR engines for Intel CPUs, GPUs and NPUs (and AUTO), fp32 / fp16 / INT8 via NNCF.

Build (`ov.convert_model` from the exported ONNX, then `ov.save_model`):
  fp32          IR saved with compress_to_fp16=False: bit-exact weights (the default of
                save_model, True, changed tokens in measurements: the choice is explicit and
                recorded in the manifest).
  fp16          FP16 IR (weights stored fp16) compiled with INFERENCE_PRECISION_HINT=f16 where the
                device has half units (GPU, NPU), else f32.
  bf16          fp32 IR compiled with INFERENCE_PRECISION_HINT=bf16 (CPU). OpenVINO 2026.4's CPU
                plugin ignores per-node f32 marks (`precise` rt_info) under bf16 (measured: every
                FullyConnected / Convolution still ran bf16), so f32 islands take a second compiled
                model. Ladder, checked by build-time parity (tokens >= 99%, SR PSNR vs fp32 above
                the recipe's bar): the whole graph in bf16, else a split engine (`split.py`): the
                token path compiled f32 (model.xml) and the image suffix, which cannot change a
                token, compiled bf16 (image.xml); else nothing is written. The compute precision
                each group actually got (the compiled graphs' kernels, `op_precision`) is recorded in the
                manifest as `extra.compute_precision`, the split as `extra.split`, the rungs tried
                as `extra.half_ladder`. fp16 on a GPU takes the same ladder.
  int8          `nncf.quantize`, model type TRANSFORMER, preset PERFORMANCE (symmetric
                activations), activations calibrated on LR tiles; overflow_fix=ENABLE on CPUs
                without VNNI/AMX (their int8 dot products saturate). The ignored scope keeps in
                float what the ONNX INT8 policy keeps (softmax, norms, attention products, the SCA
                path, the logits head, argmax), any `float_groups` (module paths such as
                `blocks.0.attn.proj`; `deploy` passes those the ONNX INT8 search returned),
                every weighted op OpenVINO created itself (no ONNX node to judge it by) and the
                embedding tables; SmoothQuant is off. Both of the last two rescale or round
                float ops and flipped 1.4% of alignvar-tiny's tokens with no op in int8.
                An int8 engine is a split one (`split.py`) wherever the graph can be cut: the
                token part (model.xml) compiled with the f32 hint, the image suffix (image.xml),
                calibrated on what the token part hands it, with its float ops in half where the
                host computes half fast (bf16 on AMX / AVX512-BF16; `extra.split.image_precision`),
                since OpenVINO compiles one precision per model. Ladder: if build-time parity
                (held-out tiles vs ONNX Runtime fp32) misses `min_token_agreement` (default: the
                recipe's token gate, 99%), the build is redone with the token part unquantized and
                only the VQ decoder in int8 (it cannot change a token; 75% of alignvar-tiny's
                FLOPs). On alignvar-tiny, without VNNI, the policy scope kept 92-97% of the
                tokens (by calibration set), the decoder-only rung 100%.
  int8-weights  `nncf.compress_weights` INT8 weight-only (no calibration data needed), the policy's float
                ops (logits head, attention products, ...) left f32 as in int8.
Load: CPU / GPU / NPU / AUTO. Every engine sets INFERENCE_PRECISION_HINT itself (f32 unless built
bf16/fp16; a split engine's token part always f32, its image part as `image_part_precision` says),
since CPUs with AMX or AVX512-BF16 default to bf16 and GPUs to f16 (alignvar-tiny under the bf16
default: 94.8-95.0% tokens). `parity=False` leaves
the runtime's default, and the engine warns (PrecisionWarning) when it differs from the manifest. The NPU needs static shapes: the model
is reshaped to the manifest's static input shape (and NPU computes in fp16 regardless).
`cache_dir` (else the folder ALIGNVAR_EDGE_CACHE_DIR names, `compile_cache`): OpenVINO's compiled-model
cache, so that a load after the first reads what the first compiled (a call per photo).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from alignvar_edge.caller import WarningFilter, on_command_line, option, warn_caller, warnings_changed
from alignvar_edge.cpuinfo import has_vnni
from alignvar_edge.errors import (ArtifactError, BackendUnavailableError, HalfPrecisionError, InputError,
                                  PrecisionWarning, out_of_memory)
from alignvar_edge.fsmodes import WRITE_LIMITS, lies_within, temp_folder_full
from alignvar_edge.graph_names import INPUT, NOISE, SR, is_token_name, token_names
from alignvar_edge.lazy import lazy_import
from alignvar_edge.progress import duration
from alignvar_edge.manifest import (MANIFEST_FILE, Manifest, db_text, listed_file, load_verified, own_marker,
                                    write_manifest)
from alignvar_edge.name_text import shell_word
from alignvar_edge.outputs import artifact_dir as staging_dir
from alignvar_edge.runtimes.artifacts import (check_calibration, engine_manifest, parity_vs,
                                              single_graph, validation_tiles)
from alignvar_edge.runtimes.base import Backend, Engine, TensorSpec, config_from_manifest, input_roles
from alignvar_edge.runtimes.onnxruntime import ship_golden
from alignvar_edge.runtimes.openvino import CACHE_ENV
from alignvar_edge.runtimes.openvino.devices import DEVICE_KINDS, HARDWARE_KINDS, VIRTUAL_DEVICES, device_kind
from alignvar_edge.runtimes.openvino.readme import engine_readme
from alignvar_edge.runtimes.readme import write_readme
from alignvar_edge import recipes

ov = lazy_import("openvino")

if TYPE_CHECKING:    # building imports the ONNX tool chain; running an engine needs only openvino
    from alignvar_edge.quantize.policy import Policy
    from alignvar_edge.runtimes.openvino.split import TokenSplit

XML, BIN = "model.xml", "model.bin"
IMAGE_XML, IMAGE_BIN = "image.xml", "image.bin"      # a split engine's image suffix
# build precision -> INFERENCE_PRECISION_HINT the engine compiles with (per device kind)
HINTS = {"bf16": {"CPU": "bf16"}, "fp16": {"GPU": "f16", "NPU": "f16"}}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
# held-out tiles behind each rung's keep-or-refuse: 4 tiles (520 tokens of alignvar-tiny) passed
# rungs at 99.2% that kept 97.4-98.8% of 32 tiles' tokens; 32 tiles cost well under a second here
GATE_TILES = 32
# bf16 islands in the token path move logits a little everywhere, and a flip at an early scale
# cascades through the later ones, so 32 tiles judge them noisily (every transformer matmul in bf16:
# 99.16% of the gate's tiles' tokens, 98.5-98.8% of 120-240 others on an AMX Xeon); 256 cost seconds
ISLAND_GATE_TILES = 256
_HINT_NAMES = {"float32": "f32", "f32": "f32", "bfloat16": "bf16", "bf16": "bf16", "float16": "f16", "f16": "f16"}


def inference_precision(precision: str, device: str) -> str:
    """The INFERENCE_PRECISION_HINT an engine of this build precision uses on this device."""
    return HINTS.get(precision, {}).get(device_kind(device), "f32")


def image_part_precision(m: Manifest, device: str) -> str:
    """The hint a split engine's image part compiles with. int8: the fast half of the device it
    runs on (`_int8_image_precision`), a speed choice that cannot change a token. bf16 / fp16: the
    hint its build checked, on the kind of device it was built for; else its precision's here."""
    if m.precision == "int8":
        return _int8_image_precision(device)
    recorded = (m.extra.get("split") or {}).get("image_precision")
    if recorded and device_kind(device) == device_kind(m.extra.get("device")):
        return str(recorded)
    return inference_precision(m.precision or "fp32", device)


def whole_graph_precision(m: Manifest, device: str) -> str:
    """The hint a one-model engine compiles with: its precision's on the kind of device it was built
    (and checked) for, f32 on any other (a half whole graph is judged per device kind)."""
    hint = inference_precision(m.precision or "fp32", device)
    built = device_kind(m.extra.get("device"))
    return hint if built == device_kind(device) else "f32"


def compile_config(device: str, parity: bool, threads: int | None, hint: str | None,
                   precision: str = "fp32", inference: str | dict[str, str] | None = None) -> dict[str, Any]:
    """OpenVINO's compile properties; `inference` (an INFERENCE_PRECISION_HINT, or one per device
    kind for AUTO & co.) overrides the one the build `precision` implies."""
    kind = device_kind(device)
    perf = (hint or "LATENCY").upper()
    if perf not in PERFORMANCE_HINTS:
        raise InputError(f"unknown OpenVINO performance hint {hint!r}; use one of "
                         f"{', '.join(h.lower() for h in PERFORMANCE_HINTS)}")
    cfg: dict[str, Any] = {"PERFORMANCE_HINT": perf}
    if kind in VIRTUAL_DEVICES:
        # AUTO & co. refuse these properties themselves and would leave the hardware at its default
        # (bf16 on AMX / AVX512-BF16 CPUs, every thread): each device they may pick gets them
        inner = {k: compile_config(k, parity, threads, None, precision,
                                   inference.get(k) if isinstance(inference, dict) else inference)
                 for k in HARDWARE_KINDS}
        inner = {k: {n: v for n, v in c.items() if n != "PERFORMANCE_HINT"} for k, c in inner.items()}
        if any(inner.values()):
            cfg["DEVICE_PROPERTIES"] = {k: c for k, c in inner.items() if c}
        return cfg
    if parity and kind in HARDWARE_KINDS:
        given = inference.get(kind) if isinstance(inference, dict) else inference
        cfg["INFERENCE_PRECISION_HINT"] = given or inference_precision(precision, device)
    if threads and kind == "CPU":
        cfg["INFERENCE_NUM_THREADS"] = str(int(threads))
    return cfg


class OpenVINOEngine(Engine):
    """One compiled model, or two for a split engine (token path f32, image suffix in half; see
    `split.py`): the token part's outputs feed the image part by tensor name."""
    backend = "openvino"

    def __init__(self, model_path: Path, metadata: Manifest, device: str = "CPU",
                 engine_dir: Path | None = None, parity: bool = True, threads: int | None = None,
                 hint: str | None = None, cache_dir: Path | None = None, image_path: Path | None = None):
        config = config_from_manifest(metadata)
        core = ov.Core()
        # `cache_dir`: a folder `compile_cache` checked. OpenVINO keys an entry on the model (weights
        # included) and the device, compiles again where its release or the CPU's ISA differs, and
        # applies this load's precision hint and threads to what it reads (outputs measured equal to a
        # fresh compile's, f32 and bf16 either way round: docs/runtimes.md)
        self.cache_dir = cache_dir
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": os.fspath(cache_dir)})
        model = core.read_model(str(model_path))
        roles = input_roles([i.get_any_name() for i in model.inputs], model_path)
        if device_kind(device) == "NPU" or model.inputs[0].get_partial_shape().is_dynamic:
            # the NPU compiles static shapes only; dynamic exports get the manifest's tile shape
            t = config.lr_size
            model.reshape({model.inputs[0].get_any_name(): [metadata.static_batch, 3, t, t]})
        # a split engine keeps the token path's float ops in f32; only its image suffix may compute in
        # half, in the half of the device that runs it (AUTO & co.: of each device they may pick)
        kinds = HARDWARE_KINDS if device_kind(device) in VIRTUAL_DEVICES else (device_kind(device),)
        halves = {k: image_part_precision(metadata, k) if image_path else whole_graph_precision(metadata, k)
                  for k in kinds}
        self.compile_config = compile_config(device, parity, threads, hint, inference="f32" if image_path else halves)
        want = [SR, *token_names(config.num_scales)]
        self._parts = [_Part(core.compile_model(model, device, self.compile_config), want, not image_path,
                             self.compile_config)]
        if image_path:
            image = core.read_model(str(image_path))
            token_io = [*self._parts[0].compiled.inputs, *self._parts[0].compiled.outputs]
            shapes = {n: p.get_partial_shape() for p in token_io for n in p.get_names()}
            image.reshape({i.get_any_name(): shapes[i.get_any_name()] for i in image.inputs
                           if i.get_partial_shape().is_dynamic and i.get_any_name() in shapes})
            image_config = compile_config(device, parity, threads, hint, inference=halves)
            self._parts.append(_Part(core.compile_model(image, device, image_config), [SR], True, image_config))
        self.compiled = self._parts[0].compiled
        # whether every compiled model was read from the cache (None: no cache, or OpenVINO does not say)
        found = [_loaded_from_cache(p.compiled) for p in self._parts]
        self.loaded_from_cache = None if cache_dir is None or None in found else all(found)
        half = halves.get(_ran_on(self.compiled, device), "f32")
        # a token part with bf16 islands (`rewrite.bf16_islands`) compiles f32 around them
        self._islands = " with bf16 matmuls" if (metadata.extra.get("split") or {}).get("token_bf16_matmuls") else ""
        self.expected_precision = f"{half} image, f32 tokens{self._islands}" if image_path else half
        self.compute_precision = self._effective_precision(core)
        self._warn_of_unchecked_precision(metadata, device, parity, engine_dir or model_path)
        if _saturates_here(metadata, device):
            built_for = ("a CPU whose int8 does not saturate (not an x86 CPU)" if _built_off_x86(metadata)
                         else "a CPU with VNNI or AMX")
            warn_caller(f"{engine_dir or model_path}: its int8 ops were quantized for {built_for} "
                        "(NNCF's overflow fix off); this CPU has neither VNNI nor AMX, so its int8 dot products may saturate "
                        "and change tokens: rebuild it here (build --precision int8) or check it with "
                        f"`alignvar-edge selftest --engine {shell_word(engine_dir or model_path)}`", PrecisionWarning)
        # throughput hint: as many requests in flight as OpenVINO made streams for
        self._requests = (int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                          if self.compile_config["PERFORMANCE_HINT"] == "THROUGHPUT" else 1)
        super().__init__(metadata, config, device, engine_dir)
        self.parity_mode = parity
        self._in_names = {role: i.get_any_name() for role, i in zip(roles, self.compiled.inputs)}
        self._spec = {role: (tuple(int(d) for d in i.get_shape()), np.dtype(np.float32))
                      for role, i in zip(roles, self.compiled.inputs)}
        self._want = want
        made = {name for part in self._parts for _, name in part.outputs}
        if not set(want) <= made:
            raise ArtifactError(f"{model_path} computes {sorted(made & set(want))}; expected {want}")

    @property
    def input_spec(self) -> dict[str, TensorSpec]:
        return self._spec

    def _warn_of_unchecked_precision(self, m: Manifest, device: str, parity: bool, where: Path) -> None:
        """A PrecisionWarning where this device computes other than what the build checked: a default
        (parity=False), a device without the half units (f32 under the hint), or half arithmetic
        that the build never ran (its own device computed f32)."""
        ran, expected = self.compute_precision, self.expected_precision
        selftest = f"`alignvar-edge selftest --engine {shell_word(where)}`"
        checked_f32 = half_checked_in_f32(m)
        if ran in (None, expected):
            if parity and checked_f32:
                warn_caller(f"{where}: OpenVINO {device} computes {expected}, which the build never checked (its "
                            f"device computed f32 under the hint); check the engine here with {selftest} before "
                            "trusting it", PrecisionWarning)
            return
        if not parity:
            message = (f"computes in {ran} (its default) but the engine was built and checked for {expected}; open it "
                       "with parity=True (the default) to set INFERENCE_PRECISION_HINT")
        elif checked_f32 and not any(half in ran for half in ("bf16", "f16")):
            # no half units here, none where it was built: it runs as checked, only slower than its label
            message = (f"computes in {ran}, not the {expected} the engine was built for (no {m.precision} units "
                       f"here), as it did where it was built: it runs as checked, at f32 speed, and its {m.precision} "
                       f"arithmetic is unchecked; run {selftest} on a machine that computes {m.precision}")
        else:
            # the hint is set: the device itself computes otherwise, which neither a load option nor a
            # rebuild here changes
            message = (f"computes in {ran} but the engine was built and checked for {expected}; this device does "
                       f"not compute that precision under the hint; check the engine here with {selftest}")
        warn_caller(f"{where}: OpenVINO {device} {message}", PrecisionWarning)

    def _effective_precision(self, core: Any) -> str | None:
        """What the compiled model(s) compute in ('bf16 image, f32 tokens' for a split engine)."""
        found = [_compiled_precision(p.compiled, p.config, core) for p in self._parts]
        if len(found) == 1 or None in found:
            return found[0]
        return f"{found[1]} image, {found[0]} tokens{self._islands}"

    def runtime_precision(self, group_of: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
        """How many MatMul / FullyConnected / (De)Convolution ops of the compiled graph(s) compute in each
        precision (`op_precision`: 'f32', 'bf16', 'u8', or 'f32 (f16 weights)' where narrower stored
        weights are widened for an f32 kernel), per group (`group_of`: ONNX node name -> group;
        OpenVINO keeps the ONNX name as the friendly name, '/...' suffixes aside), else per op type."""
        out: dict[str, dict[str, int]] = {}
        for part in self._parts:
            for op in part.compiled.get_runtime_model().get_ordered_ops():
                ri = op.get_rt_info()
                kind = ri["layerType"].astype(str) if "layerType" in ri else op.get_type_name()
                if kind not in ("FullyConnected", "MatMul", "Convolution", "Deconvolution") or "runtimePrecision" not in ri:
                    continue
                name = op.get_friendly_name()
                key = kind if group_of is None else group_of.get(name, group_of.get(name.split("/")[0], "other"))
                prec = op_precision(op)
                out.setdefault(key, {})[prec] = out.setdefault(key, {}).get(prec, 0) + 1
        return dict(sorted(out.items()))

    def _values(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {self._in_names[role]: x for role, x in feeds.items()}

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._values(feeds)
        for part in self._parts:
            res = part.request.infer({n: values[n] for n in part.inputs})
            values.update({name: np.array(res[port]) for port, name in part.outputs})
        return {name: values[name] for name in self._want}

    @property
    def parallel_requests(self) -> int:
        return self._requests

    def infer_many(self, feeds_list: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """In throughput mode, the batches run as asynchronous requests on OpenVINO's streams
        (a split engine: every batch's token part, then every batch's image part)."""
        if self._requests <= 1 or len(feeds_list) <= 1:
            return super().infer_many(feeds_list)
        self.check_open()
        values = [self._values(self._check_feeds(f)) for f in feeds_list]
        with self._lock:
            self.check_open()             # closed while this call waited for the one before it
            t0 = time.perf_counter()
            with self._running():
                for part in self._parts:
                    part.run_async(values, self._requests)
            self.last_latency_ms = (time.perf_counter() - t0) * 1e3 / len(values)
        return [{name: v[name] for name in self._want} for v in values]

    def _release(self) -> None:
        self._parts = []
        self.compiled = None


class _Part:
    """One compiled model of an engine: its input names and (output port, our name) pairs."""

    def __init__(self, compiled: Any, known: list[str], by_position: bool, config: dict[str, Any]):
        self.compiled = compiled
        self.config = config           # what it was compiled with
        self.request = compiled.create_infer_request()
        self.requests = [self.request]      # run_async's, made as a call first needs them
        self.inputs = [i.get_any_name() for i in compiled.inputs]
        # exports name their outputs sr / tokens_k; a whole graph from elsewhere maps by position,
        # a token part hands its other outputs on under their own names
        self.outputs: list[tuple[Any, str]] = []
        for i, port in enumerate(compiled.outputs):
            mine = next((w for w in known if w in port.get_names()), None)
            fallback = known[i] if by_position and i < len(known) else port.get_any_name()
            self.outputs.append((port, mine or fallback))

    def run_async(self, values: list[dict[str, np.ndarray]], requests: int) -> None:
        """Run every item of `values` (name -> tensor, updated in place with the outputs) on
        `requests` infer requests at once, each started again as soon as its result is read.
        Not an AsyncInferQueue: its callback runs Python on OpenVINO's threads, where a callback
        holding the part kept every closed engine alive (a loop through C++ the collector cannot
        see: about 325 MB and its threads per throughput engine, measured), and a queue whose last
        reference dropped there joined its own thread (std::terminate, measured)."""
        while len(self.requests) < requests:
            self.requests.append(self.compiled.create_infer_request())
        pool = self.requests[:requests]
        running: list[int | None] = [None] * len(pool)

        def collect(slot: int) -> None:
            item = running[slot]
            if item is not None:
                pool[slot].wait()
                values[item].update({name: np.array(pool[slot].get_tensor(port).data) for port, name in self.outputs})
                running[slot] = None

        try:
            for item, v in enumerate(values):
                slot = item % len(pool)
                collect(slot)
                pool[slot].start_async({n: v[n] for n in self.inputs})
                running[slot] = item
            for slot in range(len(pool)):
                collect(slot)
        except BaseException:
            # a failed item (out of memory, Ctrl-C) leaves the others running: settle them, or the
            # engine's next call finds its requests busy
            for slot, busy in enumerate(running):
                if busy is not None:
                    pool[slot].cancel()
                    with contextlib.suppress(Exception):
                        pool[slot].wait()
            raise


def op_precision(op: Any) -> str:
    """What one op of a compiled model's runtime graph computes in: the precision of its data input,
    which is the kernel's (`brgemm_avx512_f32`, `..._bf16`, `..._i8`), and, where its weights are
    stored narrower and widened for that kernel, those too: 'f32 (f16 weights)'. OpenVINO's own
    `runtimePrecision` names the stored weights' there (f16 in an FP16 IR, u8 under int8-weights) for
    an op whose kernel computes f32: an FP16 IR under the f32 hint gives, bit for bit, the outputs of
    an f32 IR holding the same f16-rounded weights (measured, OpenVINO 2026.4 CPU)."""
    data = op.input(0).get_element_type()
    weights = op.input(1).get_element_type() if op.get_input_size() > 1 else data
    if 0 < weights.bitwidth < data.bitwidth:
        return f"{data.get_type_name()} ({weights.get_type_name()} weights)"
    return str(data.get_type_name())


def _computed(counts: dict[str, int]) -> set[str]:
    """The compute precisions of one `runtime_precision` group, stored weights aside."""
    return {p.split(" (")[0] for p in counts}


def half_checked_in_f32(m: Manifest) -> bool:
    """A bf16 / fp16 engine none of whose ops computed that precision where its build checked it
    (a CPU without the units computes f32 under the hint): its parity says nothing of half arithmetic."""
    measured = m.extra.get("compute_precision")
    hint = HINTS.get(m.precision or "", {}).get(device_kind(m.extra.get("device")))
    if hint in (None, "f32") or not isinstance(measured, dict) or not measured:
        return False
    return not any(hint in _computed(counts) for counts in measured.values() if isinstance(counts, dict))


def _ran_on(compiled: Any, device: str) -> str:
    """The kind of hardware device a compiled model runs on (the one AUTO & co. picked)."""
    if device_kind(device) not in VIRTUAL_DEVICES:
        return device_kind(device)
    try:
        return device_kind(str(compiled.get_property("EXECUTION_DEVICES")[0]))
    except (RuntimeError, IndexError, TypeError):
        return "CPU"


def compile_cache(opts: Mapping[str, Any], artifact: Path) -> Path | None:
    """The folder where OpenVINO keeps this load's compiled models: `cache_dir` where the load passes
    it (None: no cache), else CACHE_ENV's where it is set and not empty, else none. Made if missing,
    with each missing folder above it, for this user only. Refused in one line naming the option or the
    variable: a folder OpenVINO cannot use (it ignored a file, compiling at every load without a
    word, and failed on one it could not make with a C++ trace); one inside the artifact loaded or
    the deploy output holding it, whose files would then fail verification (the cache is no part
    of the engine); and one another user could fill: written by every user, another user's, or in
    a folder every user may write without the sticky bit (where anyone may swap it). OpenVINO
    checks neither who wrote a cached model nor its content, and a changed byte ran as the engine
    (measured), so a model put there by anyone else would run in place of this verified one."""
    if "cache_dir" in opts:
        value = opts["cache_dir"]
        if value is None:
            return None
        said = option("cache_dir") if on_command_line() else "cache_dir"
        named, fix = f"OpenVINO {said}", f"pass {{}}, or no {said}"
        if not isinstance(value, (str, os.PathLike)) or not isinstance(os.fspath(value), str) or not value:
            raise InputError(f"{named} must be a folder path (a str or os.PathLike), or None for no cache; "
                             f"got {value!r}")
    else:
        value = os.environ.get(CACHE_ENV)
        if not value:
            return None
        named, fix = CACHE_ENV, f"set {CACHE_ENV} to {{}}, or unset it"
    folder = Path(value)
    if (holder := _artifact_holding(folder, artifact)) is not None:
        raise InputError(f"{named} '{folder}' lies inside '{holder}', whose files are verified at every load: "
                         f"the cache's files would fail that check; {fix.format('a folder outside it')}")
    runs_it = "and OpenVINO would run a compiled model put there in place of the engine's, unchecked"
    if (open_to_all := _folder_above_open_to_all(folder)) is not None:
        raise InputError(f"{named} '{folder}' lies in '{open_to_all}', where every user may put a folder of theirs "
                         f"in its place, {runs_it}; {fix.format('a folder outside it')}")
    try:
        _make_private_folders(folder)
    except OSError as e:
        raise InputError(f"{named} '{folder}' cannot be made a folder ({e.strerror or e}); "
                         f"{fix.format('a writable folder')}") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{named} '{folder}' is not writable; {fix.format('a writable folder')}")
    st = folder.stat()
    if st.st_mode & stat.S_IWOTH:
        raise InputError(f"{named} '{folder}' can be written by every user, {runs_it}; "
                         f"{fix.format('a folder only you (or your group) can write')}")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():       # its owner may write it whatever its mode
        raise InputError(f"{named} '{folder}' belongs to another user (uid {st.st_uid}), {runs_it}; "
                         f"{fix.format('a folder of your own')}")
    return folder


def _artifact_holding(folder: Path, artifact: Path) -> Path | None:
    """The artifact or deploy output that `folder` would lie inside: `artifact`, or a folder above it
    holding one of our manifest.json files (an engine inside a deploy output: its manifest lists
    every file, and `inspect` refuses one it does not)."""
    for above in (artifact, *artifact.resolve().parents):
        if (above == artifact or own_marker(above / MANIFEST_FILE) is not None) and lies_within(folder, above):
            return above
    return None


def _folder_above_open_to_all(folder: Path) -> Path | None:
    """The first folder above `folder` that every user may write without the sticky bit (which /tmp
    has: there only a folder's owner may rename or remove it): anyone may swap `folder` there."""
    for above in folder.resolve().parents:
        with contextlib.suppress(OSError):
            mode = above.stat().st_mode
            if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
                return above
    return None


def _make_private_folders(folder: Path) -> None:
    """`folder` and each missing folder above it, made for this user only: mkdir(parents=True)
    gives its mode to the last folder alone, the others the umask's (0777 under umask 000)."""
    for path in (*reversed(folder.parents), folder):
        if not path.is_dir():
            path.mkdir(mode=0o700, exist_ok=True)


def _loaded_from_cache(compiled: Any) -> bool | None:
    """Whether OpenVINO read a compiled model from its cache (None: its release or device does not say)."""
    try:
        return bool(compiled.get_property("LOADED_FROM_CACHE"))
    except (RuntimeError, TypeError):
        return None


def _compiled_precision(compiled: Any, config: dict[str, Any], core: Any) -> str | None:
    try:
        v = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    except RuntimeError:
        # AUTO & co. do not say: the hardware device they run on computes in the hint it was given
        # (where it has the units), else in its default; devices without the property (NPU) compute as they do
        try:
            (ran,) = compiled.get_property("EXECUTION_DEVICES")
            given = (config.get("DEVICE_PROPERTIES") or {}).get(device_kind(ran), {})
            v = str(given.get("INFERENCE_PRECISION_HINT") or core.get_property(ran, "INFERENCE_PRECISION_HINT"))
        except (RuntimeError, ValueError, TypeError):
            return None
        key = _precision_name(v)
        # a half hint on a device without those units (bf16 on a CPU without AVX512-BF16 or AMX) computes f32
        return "f32" if key in _CAPABILITY_OF and not _device_has(core, ran, _CAPABILITY_OF[key]) else key
    return _precision_name(v)


# the OPTIMIZATION_CAPABILITIES entry a device lists where it computes that half precision
_CAPABILITY_OF = {"bf16": "BF16", "f16": "FP16"}


def _precision_name(value: str) -> str:
    """'bf16' of OpenVINO's printed precision ("<Type: 'bfloat16'>", 'bfloat16' or 'bf16')."""
    name = (value.split("'")[1] if "'" in value else value).lower()
    return _HINT_NAMES.get(name, name)


def _device_has(core: Any, device: str, capability: str) -> bool:
    try:
        return capability in core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    except (RuntimeError, TypeError):
        return True         # a device that does not say: trust the hint


def _graph_only(onnx_path: Path) -> Any:
    """The export's ONNX graph without its weights: what the node maps below read."""
    import onnx
    return onnx.load(str(onnx_path), load_external_data=False)


def _group_of(proto: Any) -> dict[str, str]:
    """ONNX node name -> half-policy group (the manifest's per-group compute precision)."""
    from alignvar_edge.quantize.half_policy import node_groups
    return _with_fused_successors(proto, {n: g for g, names in node_groups(proto).items() for n in names})


def _c_errno() -> Any:
    """This thread's C `errno` (a ctypes int), where the C library says where it is; else None."""
    libc = ctypes.CDLL(None)
    where = getattr(libc, "__errno_location", None) or getattr(libc, "__error", None)   # glibc/musl, macOS
    if where is None:
        return None
    where.restype = ctypes.POINTER(ctypes.c_int)
    return where().contents


def _save_ir(model: Any, xml: Path, compress: bool) -> None:
    """ov.save_model, whose failed write is a bare RuntimeError ('basic_ios::clear: iostream error'):
    as the OSError it is, so the CLI names the --out it hit and why. The C library's errno of the
    failed write still holds the reason (a full disk, the file-size limit); where it does not, the
    files it cut short (at the file-size limit) and the disk (no block left, not writable) tell."""
    c_errno = _c_errno()
    if c_errno is not None:
        c_errno.value = 0                 # any write error found after the call is this call's
    try:
        ov.save_model(model, str(xml), compress_to_fp16=compress)
    except RuntimeError as e:
        import resource
        folder = xml.parent
        code = c_errno.value if c_errno is not None else 0
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        written = [p.stat().st_size for p in (xml, xml.with_suffix(".bin")) if p.is_file()]
        if code not in WRITE_LIMITS:
            code = (errno.EFBIG if limit != resource.RLIM_INFINITY and any(size >= limit for size in written) else
                    errno.ENOSPC if os.statvfs(folder).f_bavail == 0 else
                    errno.EACCES if not os.access(folder, os.W_OK) else 0)
        if code:
            raise OSError(code, os.strerror(code), str(xml)) from e
        raise


def _component_of(proto: Any) -> dict[str, str]:
    """ONNX node name -> INT8-policy component (`ffn`, `attn_linear`, ...): what bf16 islands select by."""
    from alignvar_edge.quantize.policy import classify
    return _with_fused_successors(proto, {q.name: q.component for q in classify(proto)})


def _with_fused_successors(proto: Any, label_of: dict[str, str]) -> dict[str, str]:
    """`label_of` (ONNX node name -> label) extended to the nodes OpenVINO names its fused ops after:
    it names a fused op after its last ONNX node (MatMul + bias Add -> the Add, + a following Mul or
    activation), so those inherit their producer's label (two hops)."""
    for _ in range(2):
        made = {o: label_of[n.name] for n in proto.graph.node if n.name in label_of for o in n.output}
        for n in proto.graph.node:
            if n.name not in label_of:
                g = next((made[i] for i in n.input if i in made), None)
                if g:
                    label_of[n.name] = g
    return label_of


def _half_problem(m: Manifest, min_tokens: float, min_psnr: float, hint: str) -> str | None:
    """Why a bf16 / fp16 rung cannot ship (None: it keeps the tokens and the image)."""
    parity = m.parity or {}
    tokens, psnr = parity["tokens"]["overall"], parity.get("psnr_db")
    if not m.extra.get("split"):
        # a device without half units computes f32 under the hint: the whole graph would pass here
        # and lose tokens on the machine that does compute half, so only the split is safe to ship
        ran = {p for counts in (m.extra.get("compute_precision") or {}).values() for p in _computed(counts)}
        if hint not in ran:
            return f"ran {'/'.join(sorted(ran)) or 'f32'} here, not {hint}, so the whole graph could not be judged"
    where = "with the token path in f32" if m.extra.get("split") else "in the whole graph"
    if tokens < min_tokens:
        return f"keeps {tokens:.2%} of the fp32 tokens (< {min_tokens:.0%}) {where}"
    if psnr is not None and psnr < min_psnr:
        return f"keeps the tokens but its SR is {psnr:.1f} dB from fp32 (< {min_psnr:.0f} dB) {where}"
    return None


def _nncf_recipes(m: Manifest) -> list[dict[str, Any]]:
    """The NNCF recipes of an int8 engine: the whole graph's, or a split's two parts'."""
    q = m.quantization or {}
    return [r for r in (q, q.get("token_part"), q.get("image_part")) if isinstance(r, dict) and "overflow_fix" in r]


def _built_off_x86(m: Manifest) -> bool:
    """An int8 engine built on a CPU that is not x86 (an Arm host), which needs no overflow fix."""
    return any(r.get("built_on_x86") is False for r in _nncf_recipes(m))


def _saturates_here(m: Manifest, device: str) -> bool:
    """An int8 engine calibrated without NNCF's overflow fix (its build CPU had VNNI / AMX, or was
    not x86) about to run on an x86 CPU without them, whose int8 dot products saturate (the reason
    for the fix)."""
    unfixed = any(r.get("overflow_fix") == "DISABLE" for r in _nncf_recipes(m))
    return unfixed and device_kind(device) in ("CPU", *VIRTUAL_DEVICES) and has_vnni() is False


def _int8_image_precision(device: str) -> str:
    """What an int8 split engine's image part computes its float ops in: half where this host (or
    device) computes half fast (AMX / AVX512-BF16 CPUs: bf16), else f32. The part cannot change a
    token, and its int8 convolutions leave only norms, activations and the LR path to that hint."""
    from alignvar_edge.runtimes.half import host_half
    half = host_half("openvino", device)
    return inference_precision(half, device) if half else "f32"


def _calibration_feeds(tiles: np.ndarray | None, batch: int, config: Any) -> list[dict[str, np.ndarray]]:
    """int8 calibration inputs per engine call, by role: the LR tiles in the engine's batches and,
    with VARSR's refiner, the noise every engine feeds it."""
    from alignvar_edge.runtimes.openvino.nncf import tile_batches
    assert tiles is not None
    noise = config.refiner_noise(batch)
    return [{INPUT: x, **({} if noise is None else {NOISE: noise})} for x in tile_batches(tiles, batch)]


def _named(model: Any, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Role-keyed feeds under the model's own input names."""
    names = [i.get_any_name() for i in model.inputs]
    roles = input_roles(names, "the OpenVINO model being quantized")
    return [{n: f[r] for n, r in zip(names, roles)} for f in feeds]


def _handed_on(token_model: Any, boundary: tuple[str, ...],
               feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The image part's inputs for each calibration call: the token part run on the host's CPU
    (f32 float ops, as the engine runs it) on the call's inputs."""
    compiled = ov.Core().compile_model(token_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    handed = []
    for feed in feeds:
        res = request.infer(feed)
        values = {**feed, **{n: np.array(res[port]) for port in compiled.outputs for n in port.get_names()}}
        handed.append({n: values[n] for n in boundary})
    return handed


def _read_onnx(onnx_path: Path, rewrites: dict[str, int]) -> Any:
    """`ov.convert_model`, then the exact rewrites every IR we build gets; counts them in `rewrites`."""
    from alignvar_edge.runtimes.openvino.rewrite import argmax_as_reductions
    with _pytorch_probe_unsaid():
        model = ov.convert_model(str(onnx_path))
    rewrites["argmax"] = rewrites.get("argmax", 0) + argmax_as_reductions(model)
    return model


@contextmanager
def _pytorch_probe_unsaid() -> Iterator[None]:
    """OpenVINO 2025.0-2026.1's convert_model first tries any file as a PyTorch model where torch
    imports (torch.jit.load, then torch.export.load). On our ONNX files both fail, and torch says so
    as if the export were damaged: a 13-line traceback ('PytorchStreamReader failed ... checkpoint
    file is corrupted') and torch.jit.load's deprecation warning. 2026.2 looks at the file first. No
    option of convert_model skips the probe, and Core.read_model, which makes none, also skips the
    conversion passes (attention and GELU fusions) that the rewrites and NNCF scopes were measured
    on; so the probe's words are dropped here, for this call alone."""
    import logging

    from alignvar_edge.muted import quieted
    with quieted(("torch.export",), logging.CRITICAL, r"`torch\.jit\.load` is deprecated"):
        yield


def _off_token_path(model: Any, device: str, rewrites: dict[str, int]) -> None:
    """The CPU rewrites that round differently, on every op no token depends on. After NNCF: it
    calibrated the exported form, and the rewrite computes the same function."""
    if device_kind(device) != "CPU":
        return
    from alignvar_edge.runtimes.openvino.rewrite import group_norm_channels_last, upsample_conv_as_deconvolution
    tokens = tuple(n for o in model.outputs for n in o.get_names() if is_token_name(n))
    rewrites["group_norm"] = group_norm_channels_last(model, spare_outputs=tokens)
    rewrites["upsample_deconv"] = upsample_conv_as_deconvolution(model, spare_outputs=tokens)


def _file_hints(m: Manifest, device: str) -> dict[str, str]:
    """IR file -> the INFERENCE_PRECISION_HINT the build checked it with (a split engine's token part:
    f32); for AUTO & co., those of the CPU."""
    device = "CPU" if device_kind(device) in VIRTUAL_DEVICES else device
    split = m.extra.get("split")
    if not split:
        return {XML: inference_precision(m.precision or "fp32", device)}
    return {XML: "f32", IMAGE_XML: str(split.get("image_precision") or "f32")}


def _token_split(onnx_path: Path, required: bool) -> TokenSplit | None:
    """The graph cut where its tokens end (`split.py`); None where it cannot be cut and the split
    is only a speed-up (int8 keeps the whole graph then), an error where it is `required`."""
    from alignvar_edge.runtimes.openvino.split import split_at_tokens
    try:
        return split_at_tokens(onnx_path)
    except ArtifactError:
        if required:
            raise
        return None


class _RungPace:
    """Progress of a build's rung checks through `log`: each check's rung and tile count before it
    runs and, from the checks so far, what it will cost here (a VARSR tile costs ~100x a bundled
    model's, and the island rung checks 8x the tiles: minutes, not seconds)."""

    def __init__(self, what: str, log: Callable[[str], None]) -> None:
        self.what, self.log = what, log
        self.s_per_tile: float | None = None

    @contextmanager
    def check(self, rung: str, tiles: int, skip: str = "") -> Iterator[None]:
        cost = f", about {duration(self.s_per_tile * tiles)} here" if self.s_per_tile else ""
        self.log(f"{self.what}: checking rung '{rung}' on {tiles} held-out tiles{cost}"
                 + (f" ({skip})" if skip else ""))
        t0 = time.perf_counter()
        yield
        self.s_per_tile = (time.perf_counter() - t0) / tiles


@dataclass(frozen=True)
class _Rung:
    name: str
    policy: Policy | None = None      # INT8 scope (int8 only)
    split: bool = False               # token path (f32 hint) and image suffix compiled apart
    token_int8: bool = True           # an int8 split also quantizes its token part (with `policy`)
    token_bf16: bool = False          # a split's token part runs its MLP matmuls bf16 (islands)


# the INT8-policy components (`_component_of`) whose matmuls a bf16 build runs as bf16 islands:
# the MLPs only. Every transformer matmul in bf16 (q/k/v, projections, AdaLN and the embedding too)
# kept 97.4% of held-out tiles' tokens on an AVX512-BF16 EPYC and 98.5-98.8% on an AMX Xeon
# (the MLPs with only the q/k/v or only the output projection: 98.9-99.0% on some tile sets of
# a Zen 5 EPYC, for 1-4% per tile; scripts/token_bf16_sets.py)
ISLAND_COMPONENTS = frozenset({"ffn"})
# the builds whose split engines have an f32 token part to put them in (bf16; int8 once its token
# part stays float)
ISLAND_PRECISIONS = ("bf16", "int8")


class OpenVINOBackend(Backend):
    name = "openvino"
    checks_on_photos = True
    module = "openvino"
    distribution = "openvino"
    extra = "openvino"
    load_options = frozenset({"parity", "threads", "hint", "cache_dir"})

    def devices(self) -> list[str]:
        return list(ov.Core().available_devices) + ["AUTO"]

    def describe(self, manifest: Manifest) -> list[str]:
        """The CPU its precisions were judged on: another ISA may compute them otherwise."""
        isa = manifest.extra.get("host_isa")
        if not isa:
            return []
        from alignvar_edge.runtimes.half import isa_phrase
        return [f"built and judged on a CPU with {isa_phrase(isa)}"]

    def _check_kind(self, device: str) -> None:
        """A device name OpenVINO has no kind of (a typo) is one line naming the kinds there are."""
        if device_kind(device) not in DEVICE_KINDS:
            raise InputError(f"OpenVINO has no device {device}; its devices are {', '.join(DEVICE_KINDS[:-1])} or "
                             f"{DEVICE_KINDS[-1]} (present here: {', '.join(self.devices())}): pass one of them, "
                             f"e.g. {option('device', 'CPU')}")

    def build(self, artifact_dir: Path, out: Path, precision: str = "fp32",
              calibration: Any = None, device: str | None = None, force: bool = False,
              **opts: Any) -> Path:
        # what selftest checks; an unknown precision: one line naming the known
        gate = recipes.recipe(self.name, precision)
        src, onnx_path = single_graph(artifact_dir)
        if src.precision != "fp32":
            origin = src.extra.get("source_artifact") or "EXPORT"     # the fp32 export `quantize` read
            keep = f" --float-groups-from {shell_word(artifact_dir)}" if src.precision == "int8" else ""
            raise InputError(f"'{artifact_dir}' is quantized ({src.precision}); OpenVINO builds from the fp32 export "
                             f"and NNCF quantizes in the build: `alignvar-edge build {shell_word(origin)} --target "
                             f"openvino --precision {precision} --calib builtin{keep}`"
                             if precision == "int8" else
                             f"'{artifact_dir}' is quantized ({src.precision}); OpenVINO builds from the fp32 export: "
                             f"`alignvar-edge build {shell_word(origin)} --target openvino --precision {precision}`")
        config = config_from_manifest(src)
        device = (device or "CPU").upper()
        # an absent device is built unchecked (for another machine); a misspelt one would never run
        self._check_kind(device)
        kind = device_kind(device)
        if precision in HINTS and kind not in HINTS[precision] and (precision == "bf16" or kind in VIRTUAL_DEVICES):
            # it would compute f32 there under a half label, or half unjudged where AUTO picks a half device
            raise InputError(f"OpenVINO computes {precision} on {' / '.join(HINTS[precision])}, not {device}: build "
                             f"{_built_for(precision, list(HINTS[precision]))}"
                             + (" (AUTO then runs it)" if kind in VIRTUAL_DEVICES else
                                f", or {_built_for('fp16', [device])}" if precision == "bf16" else ""))
        preset = opts.pop("preset", "performance")
        check = opts.pop("check", True)
        searched: Any = opts.pop("float_groups", None) or ()
        float_groups = frozenset(searched)
        min_tokens = float(opts.pop("min_token_agreement", gate.tokens))
        token_bf16 = opts.pop("token_bf16", None)       # None: where the build can judge it
        log: Callable[[str], None] = opts.pop("rung_log", None) or (lambda _m: None)    # each rung's check
        if opts:
            raise InputError(f"unknown openvino build options {sorted(opts)}; known: preset, check, "
                             "float_groups, min_token_agreement, token_bf16, rung_log")
        if float_groups and precision != "int8":
            raise InputError(f"float groups apply to {option('precision', 'int8')} only (the other precisions "
                             "quantize no activations)")
        from alignvar_edge.quantize.artifact import check_float_groups_source
        check_float_groups_source(searched, src, Path(artifact_dir), onnx_path.name)
        tiles, calib_info = check_calibration(calibration, config, needed=precision == "int8")
        batch = src.static_batch
        compress = precision == "fp16"
        extra = {"device": device, "compress_to_fp16": compress, "openvino": ov.get_version(),
                 "static_shapes": True, "vnni": has_vnni(),
                 "inference_precision_hint": inference_precision(precision, device)}
        if getattr(searched, "origin", None):     # which int8 artifact's search the float groups are
            extra["float_groups_from"] = searched.origin
        checking = check and device in self.devices()
        half = inference_precision(precision, device) != "f32"
        min_psnr = gate.psnr_db
        # bf16 islands are judged on the CPU that computes them, or not built
        judged_here = checking and device_kind(device) == "CPU" and _int8_image_precision(device) == "bf16"
        if token_bf16 and precision in ISLAND_PRECISIONS and not judged_here:
            asked = option("token_bf16", True)
            raise InputError(f"{asked} needs the build to run on the CPU that will compute bf16 (AVX512-BF16 "
                             f"or AMX), where its tokens are checked; this build cannot: drop {asked}")
        islands = precision in ISLAND_PRECISIONS and judged_here and (token_bf16 is None or bool(token_bf16))
        with staging_dir(out, force=force) as tmp:
            ladder: list[dict[str, Any]] = []
            cut = _token_split(onnx_path, required=half) if half or precision == "int8" else None
            feeds = _calibration_feeds(tiles, batch, config) if precision == "int8" else None
            rungs = self._rungs(precision, float_groups, checking, half, cut is not None, islands)
            graph = _graph_only(onnx_path) if checking else None        # islands are built checked only
            group_of = _group_of(graph) if checking else {}     # read once: every rung's check uses it
            component_of = _component_of(graph) if islands else {}
            pace = _RungPace(f"openvino {precision}", log)
            for rung in rungs:
                rewrites: dict[str, int] = {}
                files, recipe, split = self._write_ir(tmp, onnx_path, precision, device, (batch, config.lr_size),
                                                      feeds, preset, rung, cut, rewrites, component_of)
                m = engine_manifest(src, Path(artifact_dir), self.name, precision, files, batch=batch,
                                    extra={**extra, "ir_rewrites": rewrites, **({"split": split} if split else {})},
                                    quantization=recipe, calibration=calib_info)
                if not checking:
                    break
                n_tiles = ISLAND_GATE_TILES if rung.token_bf16 else GATE_TILES
                with pace.check(rung.name, n_tiles, skip="--no-token-bf16 skips it" if rung.token_bf16 else ""):
                    m.parity = self._check(tmp, files, m, Path(artifact_dir), device, group_of, n_tiles)
                tokens = m.parity["tokens"]["overall"]
                log(f"  tokens {tokens:.2%}, SR PSNR {db_text(m.parity.get('psnr_db'))} dB")
                step = {"rung": rung.name, "token_agreement": round(tokens, 5), "psnr_db": m.parity.get("psnr_db")}
                if half:              # half arithmetic: keep the tokens, or split, or write nothing
                    ladder.append(step)
                    m.extra["half_ladder"] = ladder
                    problem = _half_problem(m, min_tokens, min_psnr, inference_precision(precision, device))
                    if problem is None:
                        break
                    step["refused"] = problem
                    if rung == rungs[-1]:
                        raise HalfPrecisionError(f"OpenVINO {device} {precision} {problem}; nothing was written. "
                                                 "Build --precision fp32", measured=f"OpenVINO {device} {problem}")
                    continue
                if recipe is None or rung.policy is None:
                    break
                ladder.append({**step, "int8_policy": rung.policy.to_dict()})
                recipe["ladder"] = ladder
                # the ladder stops at the build's token target and the image gate `selftest`
                # holds the engine to (recipes.py)
                psnr = m.parity.get("psnr_db")
                image_ok = psnr is None or psnr >= min_psnr
                if tokens >= min_tokens and image_ok:
                    break
                if rung == rungs[-1] and gate.misses(tokens, psnr):
                    # the most careful rung is kept, and says it will not pass selftest
                    ladder[-1]["short_of_gate"] = gate.gate_words
            m.extra["golden"] = ship_golden(src, Path(artifact_dir), tmp)
            # what a plain `core.compile_model` of each IR file needs, in the manifest and a README
            hints = _file_hints(m, device)
            m.extra["inference_precision_hint"] = hints[XML]
            from alignvar_edge.cpuinfo import isa_features
            from alignvar_edge.runtimes.half import isa_phrase
            m.extra["host_isa"] = isa_features()
            write_readme(tmp, engine_readme(tmp, m, hints, isa_phrase(m.extra["host_isa"])))
            write_manifest(tmp, m)
        return out

    @staticmethod
    def _rungs(precision: str, float_groups: frozenset[str], checking: bool, half: bool,
               splittable: bool, islands: bool = False) -> list[_Rung]:
        """What to try, fastest first, until build-time parity meets the targets.

        INT8: a split engine where the graph can be split (the image suffix's float ops then take
        the host's fast half precision; see `_int8_image_precision`). NNCF's symmetric INT8 loses
        more per layer than the ONNX Q/DQ recipe (on alignvar-tiny the policy scope kept 92-97% of
        tokens on a CPU without VNNI, even with the ONNX search's float groups added), so the
        fallback keeps the whole token path in float and quantizes only the VQ decoder, which
        cannot change a token and holds most of the FLOPs of small models.
        Half: the whole graph in half, else the token path in f32 and the image suffix in half
        (two compiled models, `split.py`); unchecked builds take the split, the layout that cannot
        lose a token.
        `islands` (checked bf16 and int8 builds on CPUs with fast bf16, unless `token_bf16=False`):
        before the split rung with an all-f32 token path (bf16; int8: the decoder-only rung), the
        same rung with the token part's MLP matmuls in bf16 islands (`rewrite.bf16_islands`),
        judged on ISLAND_GATE_TILES; attention projections, AdaLN, logits head, attention core,
        norms and SCA stay f32. Like the whole-graph rung it
        keeps >= 99% of the tokens, not all (on alignvar-tiny 99.4-99.6% of held-out tokens and
        1.15x on the whole image, docs/runtimes.md); `token_bf16=False` keeps the split's exact tokens."""
        from alignvar_edge.quantize.policy import Policy
        if half:
            whole, split = _Rung("whole graph"), _Rung("image suffix only (token path f32)", split=True)
            mixed = _Rung("image suffix, MLP matmuls bf16 (token path otherwise f32)", split=True, token_bf16=True)
            return ([whole] + [mixed] * islands + [split]) if checking else [split]
        int8 = precision == "int8" and splittable
        first = _Rung("policy" + (" + searched float groups" if float_groups else ""),
                      Policy().with_float(float_groups), split=int8)
        if precision != "int8" or not checking:
            return [first]
        decoder = _Rung("decoder only, token path f32" + (" (split)" if int8 else ""),
                        Policy(int8_components=frozenset({"vq_decoder"})), split=int8, token_int8=False)
        if not (islands and int8):
            return [first, decoder]
        # the decoder-only rung's float token part, with its MLP matmuls in bf16, first. Not the
        # policy rung's: NNCF's int8 token part with bf16 islands in it failed to compile in OpenVINO
        mixed = replace(decoder, name="decoder only, MLP matmuls bf16 (token path otherwise f32, split)",
                        token_bf16=True)
        return [first, mixed, decoder]

    def _write_ir(self, tmp: Path, onnx_path: Path, precision: str, device: str, shape: tuple[int, int],
                  feeds: list[dict[str, np.ndarray]] | None, preset: str, rung: _Rung, cut: TokenSplit | None,
                  rewrites: dict[str, int], component_of: dict[str, str]
                  ) -> tuple[dict[str, str], dict[str, Any] | None, dict[str, Any] | None]:
        """Write the rung's IR(s) into `tmp`: (manifest files entry, quantization recipe, split facts).
        `feeds`: int8 calibration inputs per engine call, by role (`_calibration_feeds`); `rewrites`
        counts the rewrites applied (`rewrite.py`); `component_of`: `_component_of` of the export (island rungs)."""
        compress = precision == "fp16"        # the FP16 IR stores fp16 weights; a split's token part never does
        for stale in (IMAGE_XML, IMAGE_BIN):
            (tmp / stale).unlink(missing_ok=True)
        if not rung.split:
            model, recipe = self._convert(onnx_path, precision, device, shape, feeds, preset, rung.policy, rewrites)
            _off_token_path(model, device, rewrites)
            _save_ir(model, tmp / XML, compress)
            return {"engine": XML}, recipe, None
        import tempfile

        from alignvar_edge.export import onnx_io        # a build's: a device install has no onnx
        assert cut is not None
        recipe = None
        image_hint = _int8_image_precision(device) if precision == "int8" else inference_precision(precision, device)
        facts: dict[str, Any] = {"image_precision": image_hint, "token_precision": "f32", **cut.to_dict()}
        with tempfile.TemporaryDirectory() as scratch:        # convert_model reads ONNX from files
            paths = {}
            for part, name in ((cut.token_part, "token"), (cut.image_part, "image")):
                paths[name] = Path(scratch) / f"{name}.onnx"
                try:
                    onnx_io.save(part, paths[name], large=True)        # weights beside it, in NAME.onnx.data
                except OSError as e:
                    if (full := temp_folder_full(e)) is not None:
                        raise full from e
                    raise
            token, image = _read_onnx(paths["token"], rewrites), _read_onnx(paths["image"], rewrites)
            if precision == "int8":
                from alignvar_edge.runtimes.openvino.nncf import nncf_quantize
                assert feeds is not None and rung.policy is not None
                token_feeds = _named(token, feeds)
                token_recipe: dict[str, Any] | str = "not quantized"
                if rung.token_int8:
                    token, token_recipe = nncf_quantize(token, paths["token"], token_feeds, preset, rung.policy)
                    facts["token_precision"] = "int8 + f32"
                # the image part is calibrated on what the engine's token part will hand it
                handed = _handed_on(token, cut.boundary, token_feeds)
                image, image_recipe = nncf_quantize(image, paths["image"], handed, preset, rung.policy)
                recipe = {"tool": image_recipe["tool"], "policy": rung.policy.to_dict(), "split": True,
                          "token_part": token_recipe, "image_part": image_recipe}
                facts["image_int8"] = True
            if rung.token_bf16:
                from alignvar_edge.runtimes.openvino.rewrite import bf16_islands
                facts["token_bf16_matmuls"] = bf16_islands(
                    token, {n for n, c in component_of.items() if c in ISLAND_COMPONENTS})
                facts["token_precision"] = "f32 + bf16 MLP matmuls"
            _off_token_path(image, device, rewrites)
            _save_ir(token, tmp / XML, False)
            _save_ir(image, tmp / IMAGE_XML, compress)
        return {"engine": XML, "image": IMAGE_XML}, recipe, facts

    @staticmethod
    def _convert(onnx_path: Path, precision: str, device: str, shape: tuple[int, int],
                 feeds: list[dict[str, np.ndarray]] | None, preset: str,
                 policy: Policy | None, rewrites: dict[str, int]) -> tuple[Any, dict[str, Any] | None]:
        """The IR for one precision (and INT8 scope); shape = (batch, LR tile side)."""
        batch, t = shape
        model = _read_onnx(onnx_path, rewrites)
        if device_kind(device) == "NPU":
            model.reshape({model.inputs[0].get_any_name(): [batch, 3, t, t]})
        # the NNCF adapter needs the ONNX tool chain (a build host); an engine runs with openvino alone
        from alignvar_edge.runtimes.openvino.nncf import nncf_compress_weights, nncf_quantize
        if precision == "int8":
            assert feeds is not None and policy is not None
            return nncf_quantize(model, onnx_path, _named(model, feeds), preset, policy)
        if precision == "int8-weights":
            return nncf_compress_weights(model, onnx_path, policy)
        return model, None

    def _check(self, tmp: Path, files: dict[str, str], m: Manifest, src_dir: Path, device: str,
               group_of: dict[str, str], tiles: int = GATE_TILES) -> dict[str, Any]:
        """Parity of the new engine against ONNX Runtime on the fp32 export (held-out tiles);
        `group_of` (`_group_of`) names the half-policy group of each op for the precision record."""
        from alignvar_edge.runtimes.onnxruntime import BACKEND as ORT
        try:
            # a device without the half units computes f32 under the hint: the build records what each
            # group computed and judges the rungs by it, so the load's warning (naming this staging
            # folder, which is gone when the build ends) would only mislead
            with warnings_changed(WarningFilter("ignore", category=PrecisionWarning)):
                eng = OpenVINOEngine(tmp / files["engine"], m, device,
                                     image_path=tmp / files["image"] if "image" in files else None)
        except RuntimeError as e:      # OpenVINO's compile errors: keep the one line that matters
            # its allocator's failure ('can't alloc'), or no reason at all where memory is short here
            memory = out_of_memory(e, f"compiling the {m.precision} model in OpenVINO {device}", wordless=True)
            if memory is not None:
                raise memory from e
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if "Requested" in ln or "Check" in ln),
                          next((ln for ln in lines if not ln.startswith("Exception from ")),
                               lines[0] if lines else type(e).__name__))
            raise ArtifactError(f"OpenVINO {device} cannot compile the {m.precision} model it just "
                                f"built ({detail}); nothing was written. Where memory is short (a build of the "
                                "bundled model needs over 1.2 GB), close other programs or raise the limit; "
                                "else try another precision or report it with `alignvar-edge doctor` output") from e
        ref = ORT.load(src_dir)
        try:
            m.extra["compute_precision"] = eng.runtime_precision(group_of)
            return parity_vs(ref, eng, validation_tiles(eng.config, n=tiles), "onnxruntime fp32 (source export)")
        finally:
            eng.close()
            ref.close()

    def open(self, engine_dir: Path, device: str | None = None, **opts: Any) -> OpenVINOEngine:
        m = load_verified(engine_dir)
        if m.kind == "onnx":              # OpenVINO reads ONNX directly
            m, path = single_graph(engine_dir)
        else:                             # an openvino engine: Backend.load refused any other
            path = listed_file(engine_dir, m, m.engine_file)
            image = (m.extra.get("files") or {}).get("image")
            if image:
                opts["image_path"] = listed_file(engine_dir, m, image)
            device = device or m.extra.get("device")
        device = (device or "CPU").upper()
        self._check_kind(device)
        if device_kind(device) not in VIRTUAL_DEVICES and device not in self.devices():
            raise BackendUnavailableError(f"OpenVINO device {device} is not present here (devices: "
                                          f"{', '.join(self.devices())}); run it where {device} is, or on CPU: "
                                          f"{_on_cpu()}")
        opts["cache_dir"] = compile_cache(opts, Path(engine_dir))
        return OpenVINOEngine(path, m, device, Path(engine_dir), **opts)


def _built_for(precision: str, devices: list[str]) -> str:
    """How the caller builds `precision` for one of `devices`: "--precision fp16 --device GPU or NPU"
    on the command line, "precision='fp16' and device='GPU' or 'NPU'" in Python."""
    first, *others = devices
    device = option("device", first) + "".join(f" or {d}" if on_command_line() else f" or {d!r}" for d in others)
    return option("precision", precision) + (" " if on_command_line() else " and ") + device


def _on_cpu() -> str:
    """How the caller asks for the CPU: the keyword in Python; on the command line the flag, or
    bench's engine spec."""
    said = option("device", "CPU")
    return f"`{said}` (upscale, selftest), `openvino@CPU:PATH` (bench)" if on_command_line() else said


BACKEND = OpenVINOBackend()
