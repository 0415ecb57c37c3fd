"""Quantize an exported artifact: INT8 / FP16 ONNX with a token-fidelity target, or hand off.

    >>> from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    >>> quantize_artifact("exports/tiny", "exports/tiny-int8", QuantizeOptions(precision="int8"))

`onnxruntime` and `tensorrt` targets produce a new ONNX artifact directory (explicit Q/DQ for
int8, half-precision tensors for fp16) whose manifest records the recipe, the calibration-set
hash, what stayed in float and why, and the fidelity measured on the validation split against the
fp32 engine. `openvino` and `coreml` quantize with their own tools when their backends build
(`alignvar_edge.runtimes.build`, given `calibration_for`'s set; the `quantize` verb does that). A result that misses the fidelity target is not written (ParityError),
unless the search is switched off, in which case it is written and marked `target_met: false`.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import onnx

from alignvar_edge.argtypes import check_fraction, check_nonneg_float, check_seed
from alignvar_edge.caller import option, python_call
from alignvar_edge.errors import ArtifactError, ConfigError, InputError, ParityError
from alignvar_edge.export import onnx_io
from alignvar_edge.export.onnx_export import check_graph, graph_io
from alignvar_edge.graph_names import NOISE, SINGLE_GRAPH
from alignvar_edge.onnx_session import open_session
from alignvar_edge.name_text import PathArg, path_text, shell_word
from alignvar_edge.native_paths import check_temp_folder
from alignvar_edge.manifest import (MANIFEST_FILE, BuiltFrom, Manifest, listed_bytes, listed_file, load_verified,
                                    new_manifest, recorded_path, sha256_file, tools_here, write_manifest)
from alignvar_edge.outputs import artifact_dir, check_out
from alignvar_edge.quantize.calibration.sets import (DEFAULT_TILES, DEFAULT_VALIDATION_TILES, CalibrationSet,
                                            TileSplit, check_calib, model_config, rounding_note)
from alignvar_edge.quantize.fp16 import to_fp16
from alignvar_edge.quantize.half_policy import HalfPolicy, check_half_form, search_half
from alignvar_edge.quantize.int8 import (Int8Builder, check_opset_version, int8_weight_readers, qdq_kind_of,
                                         target_recipe)
from alignvar_edge.quantize.policy import COMPONENTS, DEFAULT_INT8, Policy
from alignvar_edge.quantize.records import drop_text, target_words
from alignvar_edge.quantize.sensitivity import Evaluator, FidelityTarget, SearchResult, search
from alignvar_edge.recipes import Recipe, engine_precision, quantize_precisions, quantize_targets, quantized_in_build
from alignvar_edge.recipes import recipe as backend_recipe

__all__ = ["PRECISIONS", "TARGETS", "QuantizeOptions", "calibration_for", "calibration_set", "quantize_artifact"]

PRECISIONS = quantize_precisions()
TARGETS = quantize_targets()
SENSITIVITY_TILES = 8
Log = Callable[[str], object]      # its result is ignored (a progress bar's write returns one)
Progress = Callable[..., Iterable[Any]]

# FP16 escalation: each rung keeps more in fp32 until the validation split meets the target
# fp16 candidates keep only the token argmax in f32 by op type; every other f32 node comes from
# the half policy's searched groups
FP16_KEEP_OPS = frozenset({"ArgMax"})


@dataclass
class QuantizeOptions:
    precision: str = "int8"
    target: str = "onnxruntime"
    method: str = "minmax"
    percentile: float = 99.99
    calib: str = "builtin"                   # "builtin" or a folder of photographs
    tiles: int = DEFAULT_TILES
    val_tiles: int = DEFAULT_VALIDATION_TILES
    seed: int = 0
    fidelity: FidelityTarget = field(default_factory=FidelityTarget)
    search: bool = True
    reduce_range: bool | None = None         # None: decided from the CPU (VNNI)
    sensitivity_tiles: int = SENSITIVITY_TILES   # calibration tiles each group is scored on
    int8_components: frozenset[str] = DEFAULT_INT8
    float_copy_weights: str = "int8"         # see Int8Recipe.float_copy_weights
    # the attributes the user set explicitly (the CLI: flags typed, even at their default value),
    # which `validate` refuses where the chosen pass does not read them
    given: frozenset[str] = frozenset()

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        targets = quantize_targets()
        if self.target not in targets:
            raise ConfigError(f"target must be one of {', '.join(targets)}, got {self.target!r}")
        if self.precision == "int8" and not quantized_in_build(self.target):
            qdq_kind_of(self.target)        # a target with no Q/DQ kind: refused now, not after calibrating
        check_fraction("min_token_agreement", self.fidelity.min_token_agreement, ConfigError)
        check_seed("seed", self.seed, ConfigError)
        # nan passed a `< 0` check here, ran the whole search and then missed "drop <= nan dB"
        check_nonneg_float("max_psnr_drop", self.fidelity.max_psnr_drop, ConfigError)
        # an option the chosen pass does not read is refused, not silently dropped: a user who asked
        # for fp32 float-copy weights or a stricter target must not believe they got it
        default = QuantizeOptions()

        def set_(attr: str) -> bool:
            # `--min-token-agreement 0.99` where it is not read is refused like 0.999: its user believes
            # the target held
            return attr in self.given or getattr(self, attr) != getattr(default, attr)
        changed = [attr for attr in _PASS_OPTIONS if set_(attr)]
        if quantized_in_build(self.target) and changed:
            own_pass = " or ".join(option("target", t) for t in targets if not quantized_in_build(t))
            raise ConfigError(f"{self._named(changed[0])} applies to {own_pass} only: "
                              f"{option('target', self.target)} quantizes with its own tool")
        unread = [attr for attr in _CALIBRATION_OPTIONS if set_(attr)]
        if unread and not self.reads_calibration:
            raise ConfigError(f"{self._named(unread[0])} applies where a calibration set is read: "
                              f"{option('target', self.target)} {option('precision', self.precision)} uses none; "
                              "leave it out")
        int8_only = [attr for attr in changed if attr in _INT8_OPTIONS]
        if self.precision != "int8" and int8_only:
            raise ConfigError(f"{self._named(int8_only[0])} applies to {option('precision', 'int8')} only")
        if set_("percentile") and self.method != "percentile":
            raise ConfigError(f"{option('percentile')} applies to {option('method', 'percentile')} only")

    def _named(self, attr: str) -> str:
        """Option `attr` as the caller spells it; a switch as it was set (--no-search, --no-reduce-range),
        `fidelity` as the two options that set it."""
        if attr == "fidelity":
            return f"{option('min_token_agreement')}/{option('max_psnr_drop')}"
        value = getattr(self, attr)
        return option(attr, value) if isinstance(value, bool) else option(attr)

    @property
    def build_recipe(self) -> Recipe:
        """The recipe row of the engine these options make: Core ML's int8 is its int8-weights build."""
        return backend_recipe(self.target, engine_precision(self.target, self.precision) or self.precision)

    @property
    def reads_calibration(self) -> bool:
        """Our ONNX pass always calibrates; a backend that quantizes in its build where its recipe
        says so (OpenVINO int8: NNCF; Core ML compresses weights alone and fp16 builds take none)."""
        return not quantized_in_build(self.target) or self.build_recipe.calibration


# options read only by this package's own ONNX pass (not by openvino's or coreml's tools); the int8
# ones are not read by the fp16 pass either. The validation split is the search's judge: openvino
# and coreml builds judge on their own held-out tiles instead
_PASS_OPTIONS = ("val_tiles", "method", "percentile", "reduce_range", "float_copy_weights", "search", "fidelity")
# what picks the calibration set: refused where no calibration set is read (QuantizeOptions.reads_calibration)
_CALIBRATION_OPTIONS = ("calib", "tiles", "seed")
_INT8_OPTIONS = frozenset({"method", "percentile", "reduce_range", "float_copy_weights"})


class FloatGroups(list[str]):
    """Module groups an int8 artifact's search returned to float, with where they came from
    (`origin`: the artifact's path and manifest SHA-256, the export and weights it was quantized
    from), so a build can refuse groups of another model and record which artifact it read."""

    def __init__(self, groups: Iterable[str], origin: dict[str, Any]) -> None:
        super().__init__(groups)
        self.origin = origin


def searched_float_groups(quantized_dir: str | os.PathLike[str]) -> FloatGroups:
    """The module groups an int8 artifact keeps in float beyond the policy (its fidelity search's
    result), for another backend's int8 build to keep the same layers in float. An engine built
    from such an artifact stands for it, read where its manifest says it was built from."""
    m = load_verified(quantized_dir)
    q = m.quantization or {}
    if m.precision != "int8" or q.get("format") != "onnx-qdq":
        raise InputError(f"'{quantized_dir}' is not an int8 ONNX artifact from `alignvar-edge quantize` "
                         f"(precision {m.precision}); pass one to take its float groups from")
    built = m.built_from if m.kind == "engine" else None
    if built is not None and built.path:
        # an engine copies its quantize output's groups but not which export that came from: read the output
        return searched_float_groups(_quantize_output_of(Path(quantized_dir), m, built))
    origin = {"path": recorded_path(Path(quantized_dir)),
              "manifest_sha256": sha256_file(Path(quantized_dir) / MANIFEST_FILE),
              "source_artifact": m.extra.get("source_artifact"),
              "source_model_sha256": m.extra.get("source_model_sha256"),
              "model": m.model.display_name, "weights_sha256": m.model.weights_sha256}
    return FloatGroups(sorted((q.get("policy") or {}).get("float_groups") or []), origin)


def _quantize_output_of(engine_dir: Path, m: Manifest, built: BuiltFrom) -> Path:
    """The artifact an engine was built from, as its manifest records it, where it is still there
    unchanged; otherwise one line asking for it."""
    src = Path(str(built.path))
    manifest = src / MANIFEST_FILE
    if manifest.is_file() and sha256_file(manifest) == built.manifest_sha256:
        return src
    state = "changed since" if manifest.is_file() else "not found here"
    raise InputError(f"--float-groups-from {engine_dir} is an engine ({m.backend} {m.precision}), and the artifact it "
                     f"was built from ({built.path}) is {state}: pass the `alignvar-edge quantize` output the "
                     "engine was built from")


def check_float_groups_source(groups: Any, src: Manifest, src_dir: Path, graph_file: str) -> None:
    """Refuse float groups searched on another model: the int8 artifact must have been quantized
    from this very export (its graph's SHA-256), or at least from the same weights and config."""
    origin = getattr(groups, "origin", None)
    if not origin:           # a plain list from Python: nothing recorded to compare
        return
    same_graph = origin.get("source_model_sha256") == src.files.get(graph_file)
    if same_graph:
        return
    mine, theirs = src.model.weights_sha256, origin.get("weights_sha256")
    what = ("other weights" if mine and theirs and mine != theirs else
            f"another export ({origin.get('source_artifact') or 'its graph'}, not this one's {graph_file})")
    raise InputError(f"--float-groups-from {origin['path']} was quantized from {what} (model "
                     f"{origin.get('model')}; this export: {src.model.display_name}): its float groups fit that "
                     f"model only. Quantize this export (`alignvar-edge quantize {shell_word(recorded_path(src_dir))} "
                     "--precision int8`) and pass its output")


def _what(m: Any) -> str:
    """An artifact in a few words: 'an int8 ONNX export', 'a coreml fp16 engine'."""
    return f"an {m.precision} ONNX export" if m.kind == "onnx" else f"a {m.backend} {m.precision} {m.kind}"


def searched_half_policy(fp16_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The half policy (compute precision per group) an fp16 artifact's search chose, for another
    backend's half build (TensorRT layer precisions, Core ML fp32 ops) to keep the same groups f32."""
    m = load_verified(fp16_dir)
    q = m.quantization or {}
    if m.precision != "fp16" or not q.get("half_policy"):
        raise InputError(f"'{fp16_dir}' is not an fp16 ONNX artifact from `alignvar-edge quantize --precision fp16` "
                         f"({_what(m)}); pass one to take its half policy from")
    return dict(q["half_policy"])


def calibration_set(calib: str, config: Any, n: int, n_val: int, seed: int) -> CalibrationSet:
    """`builtin` (bundled sample photographs, train split) or a folder of images."""
    if calib == "builtin":
        return CalibrationSet.builtin(config, n=n, seed=seed, n_val=n_val)
    return CalibrationSet.from_folder(calib, config, n=n, seed=seed, n_val=n_val)


def calibration_for(src: str | os.PathLike[str], opts: QuantizeOptions,
                    log: Log = lambda _m: None) -> CalibrationSet:
    """The options checked, and the calibration set they name for the export at `src` (logged). A
    build that cannot run here for want of its tool (OpenVINO int8 without NNCF) is refused first:
    the set would be made for nothing."""
    opts.validate()
    opts.build_recipe.require_tool()
    check_calib(opts.calib)             # a folder that is not there: named as the caller passes `calib`
    m = load_verified(Path(src))
    _check_source(Path(src), m)          # before the calibration set is made: the input is right
    batch = m.static_batch
    (tiles, val_tiles), note = rounding_note("calibration and validation tiles", (opts.tiles, opts.val_tiles), batch)
    if note:
        log(note)
    cs = calibration_set(opts.calib, model_config(m.config), tiles, val_tiles, opts.seed)
    log(f"calibration set {cs.hash[:12]}: {len(cs.calibration)} tiles from {cs.recipe['calibration_images']} "
        f"image(s), {len(cs.validation)} validation tiles from {cs.recipe['validation_images']}"
        + (f"; skipped {len(cs.skipped)} file(s): " + "; ".join(f"{a} ({b})" for a, b in cs.skipped[:5])
           if cs.skipped else ""))
    if cs.recipe.get("validation_shares_images"):
        # the target is then judged on crops of the picture the ranges came from: say so where it shows
        log("note: one usable image, so the validation tiles are other crops of the same picture: the "
            "fidelity target is not checked on an unseen photograph; add photographs for an independent check")
    return cs


def _check_source(src: Path, m: Manifest) -> dict[str, Any]:
    """Quantization starts from the fp32 single-graph export: its single graph's `graphs` entry."""
    if m.kind != "onnx" or m.precision != "fp32":
        kind = "ONNX" if m.kind == "onnx" else m.kind
        raise ArtifactError(f"'{src}' is an {m.precision} {kind} artifact; quantize an fp32 "
                            "ONNX export (`alignvar-edge export`)")
    entry = m.single_graph_entry()
    if m.graph != "single" or entry is None:
        raise ArtifactError(f"'{src}' holds the {m.graph} graph form; quantization works on the "
                            f"single graph: export with {option('graph', 'single')}")
    return entry


def _single_graph(src: Path, m: Manifest) -> tuple[Path, int, dict[str, np.ndarray]]:
    """The single graph's file, static batch, and the inputs fed beside the LR tiles (graph_names.INPUT)."""
    entry = _check_source(src, m)
    batch = m.static_batch
    # a graph with VARSR's refiner also takes the sampler's noise: the draw every engine feeds
    noise = model_config(m.config).refiner_noise(batch) if m.takes_noise else None
    return listed_file(src, m, entry["file"]), batch, {} if noise is None else {NOISE: noise}


@python_call()
def quantize_artifact(src: PathArg, out: PathArg, opts: QuantizeOptions,
                      force: bool = False, log: Log = lambda _m: None,
                      progress: Progress = lambda it, **_k: it) -> Path:
    """Quantize the fp32 single-graph export at `src` into a new artifact directory `out`, what
    `alignvar-edge quantize` does for `opts.target` onnxruntime or tensorrt (see the module
    docstring); `build(out, opts.target, precision=opts.precision)` makes its engine. `log` takes
    each progress line, `progress` wraps the calibration and search loops (tqdm's signature).
    Either path may be bytes, as os.listdir(b'...') gives a name in another encoding (`path_text`)."""
    opts.validate()             # options it cannot take are refused, not handed on in a hint
    if quantized_in_build(opts.target):
        raise ConfigError(_build_hint(opts))
    src, out = Path(path_text(src)), path_text(out)
    m = load_verified(src)
    _check_source(src, m)
    # every refusal before the calibration set is made (and logged): one line per error
    check_out(out, force, source=src)
    if opts.precision == "int8":
        check_temp_folder()
        if m.opset is not None:
            check_opset_version(m.opset)
    if opts.precision == "fp16":
        check_half_form(m.attention_form, str(src))
    cfg = model_config(m.config)
    t0 = time.perf_counter()
    cs = calibration_for(src, opts, log)
    model_path, batch, extra = _single_graph(src, m)
    if opts.precision == "int8":
        model, quant, result = _int8(model_path, cs, opts, batch, cfg.scale, log, progress, extra)
    else:
        model, quant, result = _fp16(model_path, cs, opts, batch, cfg.scale, log, extra)
    if not result.met and opts.search:
        f = result.fidelity
        raise ParityError(
            f"{opts.precision} for {opts.target} misses the target ({target_words(opts.fidelity.to_dict())}) "
            f"even with {len(result.float_groups)} group(s) in float: tokens {f.token_agreement:.2%}, "
            f"drop {drop_text(f.judged_drop)} dB on {f.tiles} validation tiles. Nothing was written; loosen the "
            "target" + (f", try another {option('method')} or more {option('tiles')}, or use "
                        f"{option('precision', 'fp16')}"
                        if opts.precision == "int8" else " or keep the fp32 export"))
    elapsed = time.perf_counter() - t0
    return _write(src, Path(out), m, model, model_path, opts, quant, result, cs, batch, elapsed, force, log)


def _build_hint(opts: QuantizeOptions) -> str:
    """The build that quantizes for a target with its own tool, as a Python call: with the calibration
    set only where its recipe reads one (Core ML's weight compression and fp16 builds take none)."""
    calibration = ", calibration=alignvar_edge.quantize.calibration_for(src, opts)" if opts.reads_calibration else ""
    return (f"{opts.target} quantizes with its own tool: build with `alignvar_edge.build(src, '{opts.target}', "
            f"'{opts.build_recipe.precision}'{calibration})` (what `alignvar-edge quantize` does)")


def _int8(model_path: Path, cs: CalibrationSet, opts: QuantizeOptions, batch: int,
          scale: int, log: Log, progress: Progress, extra: dict[str, np.ndarray]
          ) -> tuple[onnx.ModelProto, dict[str, Any], SearchResult]:
    recipe = target_recipe(opts.target, opts.method, opts.percentile, reduce_range=opts.reduce_range,
                           float_copy_weights=opts.float_copy_weights)
    policy = Policy(int8_components=frozenset(opts.int8_components))
    log(f"int8 for {opts.target}: {recipe.method} ranges, {recipe.activation_type} activations"
        f"{' (symmetric)' if recipe.symmetric_activations else ''}, per-channel int8 weights"
        f"{', reduce_range (no VNNI on this CPU)' if recipe.reduce_range and recipe.vnni is False else ''}"
        f"{', reduce_range' if recipe.reduce_range and recipe.vnni is not False else ''}")
    feeds = cs.feeds(batch=batch, extra=extra)
    # judged on the runtime's real int8 kernels where they run here (ONNX Runtime's), else on exact fake-quant
    optimized = not backend_recipe(opts.target, "int8").judged_as_fake_quant
    with Int8Builder(model_path, recipe, feeds, candidates=policy,
                     progress=lambda it: progress(it, desc="calibrating", unit="tile")) as b:
        selected = b.selected(policy)
        if any(n.component == "linear" for n in b.nodes):
            # `linear` is the structural fallback: without the exporter's module scopes (onnxslim
            # strips them) AdaLN, the SCA path and the coarsest scales cannot be told apart
            log("warning: the graph carries no module scopes (simplified with onnxslim, or edited): the "
                "policy falls back to graph structure and quantizes AdaLN, the SCA path and the coarsest "
                f"scales too; quantize an export made without {option('simplify', True)}")
        sizes = dict(Counter(n.group for n in selected))
        groups = sorted(sizes)
        log(f"policy: {len(selected)} MatMul/Gemm/Conv nodes in {len(groups)} module groups to int8; "
            f"{sum(1 for n in b.nodes if not policy.selects(n))} kept float by policy")
        # Unoptimized (fake-quant) runs compare with the pre-processed float graph the Q/DQ went
        # into: its fused Gemms round differently from the export, and on small logit margins
        # that alone flips tokens. Optimized runs compare with the exported fp32 engine.
        def float_graph() -> onnx.ModelProto:
            return b.build(policy.with_float(frozenset(groups)))

        val = Evaluator(str(model_path) if optimized else float_graph(), cs.validation, batch=batch,
                        border=scale, optimized=optimized, extra=extra)
        k = max(batch, opts.sensitivity_tiles)     # at least one call of the static batch
        sub = TileSplit(cs.calibration.lr[:k], cs.calibration.hr[:k], cs.calibration.names[:k])

        def sens() -> Evaluator:             # only built when the search has to rank groups
            return Evaluator(float_graph(), sub, batch=batch, border=scale, optimized=False, extra=extra)

        def build(float_groups: frozenset[str]) -> onnx.ModelProto:
            return b.build(policy.with_float(float_groups))

        if opts.search:
            log(f"checking the validation split ({len(cs.validation)} tiles) against the target: "
                f"{target_words(opts.fidelity.to_dict())}")
            result = search(build, groups, val, sens, opts.fidelity, sizes,
                            progress=lambda it: progress(it, desc="sensitivity", unit="group"), log=log)
        else:
            f = val.evaluate(build(frozenset()))
            result = SearchResult(f.meets(opts.fidelity), [], f, f)
        final_policy = policy.with_float(frozenset(result.float_groups))
        model = build(frozenset(result.float_groups))
        by_policy = Counter(r for r in (policy.why_float(n) for n in b.nodes) if r is not None)
        # float nodes that compute on the int8 weight their int8 copies share (--float-copy-weights int8)
        on_int8 = {n.name for n in b.nodes if not final_policy.selects(n)} & int8_weight_readers(model)
        int8_weights = Counter(policy.why_float(n) for n in b.nodes if n.name in on_int8)
        searched_on_int8 = Counter(n.group for n in selected if n.name in on_int8)
        quant = {
            "format": "onnx-qdq", "recipe": recipe.to_dict(), "policy": final_policy.to_dict(),
            "int8_nodes": sum(1 for n in b.nodes if final_policy.selects(n)),
            "float_by_policy": {c: {"nodes": k, "int8_weights": int8_weights[c], "what": COMPONENTS[c]}
                                for c, k in sorted(by_policy.items())},
            "float_by_search": [{"group": g, **result.scores.get(g, {}), "int8_weights": searched_on_int8[g],
                                 "why": "ranked by its token/PSNR error budget share; returning it "
                                        "helped the validation split reach the target"}
                                for g in result.float_groups],
            "target": opts.fidelity.to_dict(), "search": result.to_dict() if opts.search else None,
            "judged_on": "onnxruntime CPU int8 kernels" if optimized else
                         f"onnxruntime fake-quant (Q/DQ computed literally; quantize never runs {opts.target})",
        }
    return model, quant, result


def _fp16(model_path: Path, cs: CalibrationSet, opts: QuantizeOptions, batch: int,
          scale: int, log: Log, extra: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, dict[str, Any], SearchResult]:
    """fp16 per half-policy group (export/half_policy.py): from every group in fp16, the search
    returns the groups the validation split needs to f32."""

    src = onnx_io.load(model_path)
    val = Evaluator(str(model_path), cs.validation, batch=batch, border=scale, optimized=True, extra=extra)
    k = max(batch, opts.sensitivity_tiles)         # at least one call of the static batch
    sub = TileSplit(cs.calibration.lr[:k], cs.calibration.hr[:k], cs.calibration.names[:k])
    if opts.search:
        policy, result = search_half(src, "fp16", val, lambda: Evaluator(str(model_path), sub, batch=batch, border=scale,
                                                                         optimized=True, extra=extra),
                                     opts.fidelity, log=log)
        model, report = to_fp16(src, FP16_KEEP_OPS, policy.f32_nodes(src))
    else:
        policy = HalfPolicy.of_graph(src, "fp16")
        model, report = to_fp16(src, FP16_KEEP_OPS, policy.f32_nodes(src))
        f = val.evaluate(model)          # the graph kept is the one judged
        result = SearchResult(f.meets(opts.fidelity), [], f, f)
    quant = {"format": "onnx-fp16", "io": "float32", "keep_fp32_ops": sorted(FP16_KEEP_OPS),
             "half_policy": policy.to_dict(), "fp16_nodes": report.fp16_nodes,
             "fp32_nodes": len(report.fp32_nodes), "casts": report.casts,
             "clipped_weights": report.clipped_values, "target": opts.fidelity.to_dict(),
             "search": result.to_dict() if opts.search else None,
             "judged_on": "onnxruntime CPU (fp16 storage; ops without a CPU half kernel compute in fp32)"}
    return model, quant, result


def _drop_unused_opsets(model: onnx.ModelProto) -> None:
    """Keep only the opset imports a node uses (and the default domain's), in place. ONNX Runtime's
    pre-processing saves the graph importing every domain it knows (ai.onnx.ml 5, ai.onnx.preview,
    com.microsoft.nchwc, ...), and a runtime checks each import's version before it loads a graph,
    used or not: the ONNX Runtime an engine's README names (`runtimes.onnxruntime.runtime_line`)
    answers for the default domain only. Computation is untouched."""
    used = {"", "ai.onnx"} | _node_domains(model.graph)
    for f in model.functions:
        used |= {f.domain} | {n.domain for n in f.node}
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _node_domains(graph: onnx.GraphProto) -> set[str]:
    """The domains of a graph's nodes, its subgraphs' (If, Loop, Scan) included."""
    domains = set()
    for node in graph.node:
        domains.add(node.domain)
        for a in node.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                domains |= _node_domains(g)
    return domains


def _write(src: Path, out: Path, m: Manifest, model: onnx.ModelProto, model_path: Path,
           opts: QuantizeOptions, quant: dict[str, Any], result: SearchResult, cs: CalibrationSet,
           batch: int, elapsed: float, force: bool, log: Log) -> Path:

    src_bytes = listed_bytes(src, m)
    with artifact_dir(out, force=force) as tmp:
        path = tmp / "model.onnx"
        external = onnx_io.is_large(model)
        _drop_unused_opsets(model)
        onnx_io.save(model, path, external)
        check_graph(path)              # the export-time checks: onnx.checker (full) + forbidden constructs
        open_session(path)             # and ONNX Runtime loads it
        out_bytes = sum(p.stat().st_size for p in tmp.iterdir() if p.is_file())
        parity = {"reference": f"fp32 engine of {src.name} (onnxruntime CPU) on the validation split",
                  "target_met": result.met, "validation": result.fidelity.to_dict(),
                  "initial_validation": result.initial.to_dict()}
        manifest = new_manifest(
            "onnx", "onnx", "single", opts.precision, m.model, opset=m.opset, tools=tools_here(m),
            graphs={SINGLE_GRAPH: {"file": "model.onnx", **graph_io(path)}},
            quantization={**quant, "target_runtime": opts.target}, calibration=cs.summary(), parity=parity,
            extra={**m.graph_facts, "batch": batch, "source_artifact": recorded_path(src), "source_model_sha256": m.files.get(
                model_path.name), "bytes": {"fp32": src_bytes, opts.precision: out_bytes,
                                           "ratio": round(out_bytes / max(src_bytes, 1), 4)},
                   "quantize_s": round(elapsed, 1), "external_data": external})
        write_manifest(tmp, manifest)
    log(f"wrote {out} ({out_bytes / 1e6:.1f} MB, {out_bytes / max(src_bytes, 1):.0%} of fp32)")
    return out
