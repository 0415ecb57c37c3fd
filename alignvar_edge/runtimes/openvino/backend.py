"""OpenVINO: IR engines for Intel CPUs, GPUs and NPUs (and AUTO), fp32 / fp16 / INT8 via NNCF.

Build (`ov.convert_model` from the exported ONNX, then `ov.save_model`):
  fp32          IR saved with compress_to_fp16=False: bit-exact weights (the default of
                save_model, True, changed tokens in measurements: the choice is explicit and
                recorded in the manifest).
  fp16          FP16 IR (weights stored fp16) compiled with INFERENCE_PRECISION_HINT=f16 where the
                device has half units (GPU, NPU), else f32.
  bf16          fp32 IR compiled with INFERENCE_PRECISION_HINT=bf16 (CPU). OpenVINO 2026.4's CPU
                plugin ignores per-node f32 marks (`precise` rt_info) under bf16 (measured: every
                FullyConnected / Convolution still ran bf16), so the half policy is all-or-nothing
                here: build-time parity must meet the token target or nothing is written. The
                compute precision each group actually got (the compiled graph's runtimePrecision)
                is recorded in the manifest as `extra.compute_precision`.
  int8          `nncf.quantize`, model type TRANSFORMER, preset PERFORMANCE (symmetric
                activations), activations calibrated on LR tiles; overflow_fix=ENABLE on CPUs
                without VNNI/AMX (their int8 dot products saturate). The ignored scope keeps in
                float what the ONNX INT8 policy keeps (softmax, norms, attention products, the SCA
                path, the logits head, argmax), any `float_groups` (module paths such as
                `blocks.0.attn.proj`; `deploy` passes those the ONNX INT8 search returned),
                every weighted op OpenVINO created itself (no ONNX node to judge it by) and the
                embedding tables; SmoothQuant is off. Both of the last two rescale or round
                float ops and flipped 1.4% of alignvar-tiny's tokens with no op in int8.
                Ladder: if build-time parity (held-out tiles vs ONNX Runtime fp32) misses
                `min_token_agreement` (0.99), the build is redone with only the VQ decoder in
                int8 (it cannot change a token; 75% of alignvar-tiny's FLOPs). On alignvar-tiny
                the policy scope kept 92-97% of the tokens (by calibration set), decoder-only 100%.
  int8-weights  `nncf.compress_weights` INT8 weight-only (no calibration data needed).
Load: CPU / GPU / NPU / AUTO. Every engine sets INFERENCE_PRECISION_HINT to the precision its
manifest records (f32 unless built bf16/fp16), since CPUs with AMX or AVX512-BF16 default to bf16
and GPUs to f16 (alignvar-tiny under the bf16 default: 94.8-95.0% tokens). `parity=False` leaves
the runtime's default, and the engine warns (PrecisionWarning) when it differs from the manifest. The NPU needs static shapes: the model
is reshaped to the manifest's static input shape (and NPU computes in fp16 regardless).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignvar_edge.cpuinfo import has_vnni
from alignvar_edge.errors import ArtifactError, BackendUnavailableError, HalfPrecisionError, InputError
from alignvar_edge.lazy import lazy_import
from alignvar_edge.manifest import Manifest, listed_file, load_verified, write_manifest
from alignvar_edge.manifest import artifact_dir as staging_dir
from alignvar_edge.runtimes.artifacts import (check_calibration, engine_manifest, parity_vs,
                                              single_graph, validation_tiles)
from alignvar_edge.runtimes.base import (SR, Backend, Engine, TensorSpec, input_roles,
                                         config_from_manifest, token_name)
from alignvar_edge.runtimes.onnxruntime import ship_golden
from alignvar_edge import recipes

ov = lazy_import("openvino")

if TYPE_CHECKING:    # building imports the ONNX tool chain; running an engine needs only openvino
    from alignvar_edge.quantize.policy import Policy

XML, BIN = "model.xml", "model.bin"
# build precision -> INFERENCE_PRECISION_HINT the engine compiles with (per device kind)
HINTS = {"bf16": {"CPU": "bf16"}, "fp16": {"GPU": "f16", "NPU": "f16"}}
_HINT_NAMES = {"float32": "f32", "f32": "f32", "bfloat16": "bf16", "bf16": "bf16", "float16": "f16", "f16": "f16"}
def _device_kind(device: str) -> str:
    return device.split(".")[0].split(":")[0].upper()


class PrecisionWarning(UserWarning):
    """An engine computes in another precision than its manifest records."""


def inference_precision(precision: str, device: str) -> str:
    """The INFERENCE_PRECISION_HINT an engine of this build precision uses on this device."""
    return HINTS.get(precision, {}).get(_device_kind(device), "f32")


def compile_config(device: str, parity: bool, threads: int | None, hint: str | None,
                   precision: str = "fp32") -> dict[str, str]:
    kind = _device_kind(device)
    cfg: dict[str, str] = {"PERFORMANCE_HINT": (hint or "LATENCY").upper()}
    if parity and kind in ("CPU", "GPU"):
        cfg["INFERENCE_PRECISION_HINT"] = inference_precision(precision, device)
    if threads and kind == "CPU":
        cfg["INFERENCE_NUM_THREADS"] = str(int(threads))
    return cfg


class OpenVINOEngine(Engine):
    backend = "openvino"

    def __init__(self, model_path: Path, metadata: Manifest, device: str = "CPU",
                 engine_dir: Path | None = None, parity: bool = True, threads: int | None = None,
                 hint: str | None = None, cache_dir: str | None = None):
        config = config_from_manifest(metadata)
        core = ov.Core()
        if cache_dir:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        model = core.read_model(str(model_path))
        roles = input_roles([i.get_any_name() for i in model.inputs], model_path)
        if _device_kind(device) == "NPU" or model.inputs[0].get_partial_shape().is_dynamic:
            # the NPU compiles static shapes only; dynamic exports get the manifest's tile shape
            t = config.lr_size
            model.reshape({model.inputs[0].get_any_name(): [metadata.static_batch, 3, t, t]})
        precision = metadata.precision or "fp32"
        self.compile_config = compile_config(device, parity, threads, hint, precision)
        self.compiled = core.compile_model(model, device, self.compile_config)
        self.expected_precision = inference_precision(precision, device)
        self.compute_precision = self._effective_precision()
        if self.compute_precision not in (None, self.expected_precision):
            import warnings
            warnings.warn(f"{engine_dir or model_path}: OpenVINO {device} computes in {self.compute_precision} "
                          f"(its default) but the engine was built and checked for {self.expected_precision}; "
                          "open it with parity=True (the default) to set INFERENCE_PRECISION_HINT",
                          PrecisionWarning, stacklevel=3)
        self.request = self.compiled.create_infer_request()
        # throughput hint: as many requests in flight as OpenVINO made streams for
        self._requests = (int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                          if self.compile_config["PERFORMANCE_HINT"] == "THROUGHPUT" else 1)
        super().__init__(metadata, config, device, engine_dir)
        self.parity_mode = parity
        self._in_names = {role: i.get_any_name() for role, i in zip(roles, self.compiled.inputs)}
        self._spec = {role: (tuple(int(d) for d in i.get_shape()), np.dtype(np.float32))
                      for role, i in zip(roles, self.compiled.inputs)}
        want = [SR] + [token_name(k) for k in range(config.num_scales)]
        outs = list(self.compiled.outputs)
        if len(outs) != len(want):
            raise ArtifactError(f"{model_path} has {len(outs)} outputs; expected {want}")
        names = [o.get_names() for o in outs]
        # exports name their outputs sr / tokens_k; otherwise map by position
        self._outs = [(o, next((w for w in want if w in n), want[i])) for i, (o, n) in enumerate(zip(outs, names))]

    @property
    def input_spec(self) -> dict[str, TensorSpec]:
        return self._spec

    def _effective_precision(self) -> str | None:
        try:
            v = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except RuntimeError:          # devices without the property (NPU) compute as they do
            return None
        key = v.split("'")[1] if "'" in v else v
        return _HINT_NAMES.get(key.lower(), key.lower())

    def runtime_precision(self, group_of: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
        """How many MatMul / FullyConnected / Convolution ops of the compiled graph run in each
        precision (its runtimePrecision), per group (`group_of`: ONNX node name -> group; OpenVINO
        keeps the ONNX name as the friendly name, '/...' suffixes aside), else per op type."""
        out: dict[str, dict[str, int]] = {}
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            ri = op.get_rt_info()
            kind = ri["layerType"].astype(str) if "layerType" in ri else op.get_type_name()
            if kind not in ("FullyConnected", "MatMul", "Convolution") or "runtimePrecision" not in ri:
                continue
            name = op.get_friendly_name()
            key = kind if group_of is None else group_of.get(name, group_of.get(name.split("/")[0], "other"))
            prec = ri["runtimePrecision"].astype(str)
            out.setdefault(key, {})[prec] = out.setdefault(key, {}).get(prec, 0) + 1
        return dict(sorted(out.items()))

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = self.request.infer({self._in_names[role]: x for role, x in feeds.items()})
        return {name: np.array(res[port]) for port, name in self._outs}

    @property
    def parallel_requests(self) -> int:
        return self._requests

    def infer_many(self, feeds_list: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """In throughput mode, the batches run as asynchronous requests on OpenVINO's streams."""
        if self._requests <= 1 or len(feeds_list) <= 1:
            return super().infer_many(feeds_list)
        if self._closed:
            raise InputError(f"this {self.backend} engine is closed; load it again")
        checked = [self._check_feeds(f) for f in feeds_list]
        results: list[dict[str, np.ndarray]] = [{} for _ in checked]

        def done(request: Any, i: int) -> None:
            results[i] = {name: np.array(request.get_tensor(port).data) for port, name in self._outs}

        queue = ov.AsyncInferQueue(self.compiled, self._requests)
        queue.set_callback(done)
        with self._lock:
            t0 = time.perf_counter()
            for i, feeds in enumerate(checked):
                queue.start_async({self._in_names[role]: x for role, x in feeds.items()}, userdata=i)
            queue.wait_all()
            self.last_latency_ms = (time.perf_counter() - t0) * 1e3 / len(checked)
        return results

    def _release(self) -> None:
        self.request = None
        self.compiled = None


def _group_of(onnx_path: Path) -> dict[str, str]:
    """ONNX node name -> half-policy group (the manifest's per-group compute precision)."""
    import onnx

    from alignvar_edge.quantize.half_policy import node_groups
    proto = onnx.load(str(onnx_path), load_external_data=False)
    group_of = {n: g for g, names in node_groups(proto).items() for n in names}
    # OpenVINO names a fused op after its last ONNX node (MatMul + bias Add -> the Add, + a
    # following Mul or activation): those inherit their producer's group (two hops)
    for _ in range(2):
        made = {o: group_of[n.name] for n in proto.graph.node if n.name in group_of for o in n.output}
        for n in proto.graph.node:
            if n.name not in group_of:
                g = next((made[i] for i in n.input if i in made), None)
                if g:
                    group_of[n.name] = g
    return group_of


def _check_half(m: dict[str, Any], min_tokens: float, device: str) -> None:
    """A bf16 / fp16 build keeps the tokens or is not written (see the module docstring)."""
    tokens = m.parity["tokens"]["overall"]
    if tokens < min_tokens:
        raise HalfPrecisionError(f"OpenVINO {device} {m.precision} keeps {tokens:.2%} of the fp32 tokens "
                            f"(< {min_tokens:.0%}) and its plugin ignores per-node f32 islands; nothing was "
                            "written. Build --precision fp32, or on a GPU/NPU an fp16 ONNX from "
                            "`alignvar-edge quantize --precision fp16` (searched f32 groups)")


class OpenVINOBackend(Backend):
    name = "openvino"
    module = "openvino"
    distribution = "openvino"
    load_options = frozenset({"parity", "threads", "hint", "cache_dir"})

    def devices(self) -> list[str]:
        return list(ov.Core().available_devices) + ["AUTO"]

    def build(self, artifact_dir: Path, out: Path, precision: str = "fp32",
              calibration: Any = None, device: str | None = None, force: bool = False,
              **opts: Any) -> Path:
        recipes.recipe(self.name, precision)     # an unknown precision: one line naming the known
        src, onnx_path = single_graph(artifact_dir)
        if src.precision != "fp32":
            raise InputError(f"build OpenVINO engines from the fp32 export (this one is "
                             f"{src.precision}): NNCF does its own quantization")
        config = config_from_manifest(src)
        device = (device or "CPU").upper()
        preset = opts.pop("preset", "performance")
        check = opts.pop("check", True)
        float_groups = frozenset(opts.pop("float_groups", None) or ())
        min_tokens = float(opts.pop("min_token_agreement", 0.99))
        if opts:
            raise InputError(f"unknown openvino build options {sorted(opts)}; known: preset, check, "
                             "float_groups, min_token_agreement")
        if float_groups and precision != "int8":
            raise InputError("float groups apply to --precision int8 only (the other precisions quantize "
                             "no activations)")
        tiles, calib_info = check_calibration(calibration, config, needed=precision == "int8")
        batch = src.static_batch
        compress = precision == "fp16"
        extra = {"device": device, "compress_to_fp16": compress, "openvino": ov.get_version(),
                 "static_shapes": True, "vnni": has_vnni(),
                 "inference_precision_hint": inference_precision(precision, device)}
        checking = check and device in self.devices()
        with staging_dir(out, force=force) as tmp:
            ladder: list[dict[str, Any]] = []
            for rung, policy in self._rungs(precision, float_groups, checking):
                model, recipe = self._convert(onnx_path, precision, device, (batch, config.lr_size), tiles,
                                              preset, policy)
                ov.save_model(model, str(tmp / XML), compress_to_fp16=compress)
                del model
                m = engine_manifest(src, Path(artifact_dir), self.name, precision, {"engine": XML},
                                    batch=batch, extra=extra, quantization=recipe, calibration=calib_info)
                if not checking:
                    break
                m.parity = self._check(tmp / XML, m, Path(artifact_dir), device, onnx_path)
                if inference_precision(precision, device) != "f32":     # half arithmetic: keep the tokens
                    _check_half(m, min_tokens, device)
                if recipe is None:
                    break
                tokens = m.parity["tokens"]["overall"]
                ladder.append({"rung": rung, "token_agreement": round(tokens, 5),
                               "psnr_db": m.parity.get("psnr_db"), "int8_policy": policy.to_dict()})
                recipe["ladder"] = ladder
                if tokens >= min_tokens:
                    break
            m.extra["golden"] = ship_golden(src, Path(artifact_dir), tmp)
            write_manifest(tmp, m)
        return out

    @staticmethod
    def _rungs(precision: str, float_groups: frozenset[str], checking: bool) -> list[tuple[str, Policy]]:
        """INT8 scopes to try, widest first, until build-time parity meets the token target.

        NNCF's symmetric INT8 loses more per layer than the ONNX Q/DQ recipe (on alignvar-tiny the
        policy scope kept 92-97% of tokens even with the ONNX search's float groups added), so
        the fallback keeps the whole token path in float and quantizes only the VQ decoder, which
        cannot change a token and holds most of the FLOPs of small models."""
        from alignvar_edge.quantize.policy import Policy
        first = ("policy" + (" + searched float groups" if float_groups else ""),
                 Policy().with_float(float_groups))
        if precision != "int8" or not checking:
            return [first]
        return [first, ("decoder only", Policy(int8_components=frozenset({"vq_decoder"})))]

    @staticmethod
    def _convert(onnx_path: Path, precision: str, device: str, shape: tuple[int, int],
                 tiles: np.ndarray | None, preset: str, policy: Policy) -> tuple[Any, dict[str, Any] | None]:
        """The IR for one precision (and INT8 scope); shape = (batch, LR tile side)."""
        batch, t = shape
        model = ov.convert_model(str(onnx_path))
        if _device_kind(device) == "NPU":
            model.reshape({model.inputs[0].get_any_name(): [batch, 3, t, t]})
        # the NNCF adapter needs the ONNX tool chain (a build host); an engine runs with openvino alone
        from alignvar_edge.runtimes.openvino.nncf import nncf_compress_weights, nncf_quantize
        if precision == "int8":
            assert tiles is not None
            return nncf_quantize(model, onnx_path, tiles, batch, preset, policy)
        if precision == "int8-weights":
            return nncf_compress_weights(model)
        return model, None

    def _check(self, xml: Path, m: Manifest, src_dir: Path, device: str, onnx_path: Path) -> dict[str, Any]:
        """Parity of the new engine against ONNX Runtime on the fp32 export (held-out tiles)."""
        from alignvar_edge.runtimes.onnxruntime import BACKEND as ORT
        try:
            eng = OpenVINOEngine(xml, m, device)
        except RuntimeError as e:      # OpenVINO's compile errors: keep the one line that matters
            detail = next((ln for ln in str(e).splitlines() if "Requested" in ln or "Check" in ln),
                          str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise ArtifactError(f"OpenVINO {device} cannot compile the {m.precision} model it just "
                                f"built ({detail.strip()}); nothing was written. Try another precision "
                                "or report it with `alignvar-edge doctor` output") from e
        ref = ORT.load(src_dir)
        try:
            m.extra["compute_precision"] = eng.runtime_precision(_group_of(onnx_path))
            return parity_vs(ref, eng, validation_tiles(eng.config), "onnxruntime fp32 (source export)")
        finally:
            eng.close()
            ref.close()

    def open(self, engine_dir: Path, device: str | None = None, **opts: Any) -> OpenVINOEngine:
        m = load_verified(engine_dir)
        if m.kind == "onnx":              # OpenVINO reads ONNX directly
            m, path = single_graph(engine_dir)
        elif m.backend == self.name:
            path = listed_file(engine_dir, m, m.engine_file)
            device = device or m.extra.get("device")
        else:
            raise ArtifactError(f"'{engine_dir}' is a {m.backend} engine; load it with that backend")
        device = (device or "CPU").upper()
        if _device_kind(device) not in ("AUTO", "MULTI", "HETERO") and device not in self.devices():
            raise BackendUnavailableError(f"OpenVINO device {device} is not present here (devices: "
                                          f"{', '.join(self.devices())}); pass --device CPU or AUTO")
        return OpenVINOEngine(path, m, device, Path(engine_dir), **opts)


BACKEND = OpenVINOBackend()
