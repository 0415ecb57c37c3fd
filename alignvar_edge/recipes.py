"""The recipe table: what each (backend, precision) pair is built from, and who quantizes it.

`build`, `quantize`, `deploy` and `selftest` all ask this table; adding a precision to a backend is
one row here plus that backend's own code. Plain data, no imports beyond the standard library,
errors.py and caller.py (extras.py when a missing tool's install line is said), so a device
install (no PyTorch) reads it too.

    source      what `build` takes: the fp32 ONNX export, or the checkpoint (torch, Core ML)
    quantizer   who makes the lower precision:
                  none       nothing to do (fp32)
                  quantize   our ONNX pass, `alignvar-edge quantize`, BEFORE build (Q/DQ int8 or
                             fp16 ONNX, with the token-fidelity search); build takes its output
                  backend    the backend's own quantizer INSIDE build (NNCF, coremltools)
                  builder    the engine builder computes in this precision from fp32 weights
                             (TensorRT's FP16 flag, OpenVINO's inference precision, a torch dtype)
    calibration build takes calibration tiles (`--calib`)
    serves      the precisions a user asks `deploy` for that this row answers (Core ML's Neural
                Engine computes in fp16, so an fp32 request gets the fp16 package)
    options     the backend build options this pair takes (`build --kit`, `--batch`, ...)
    qdq         an int8 row our ONNX pass quantizes: the Q/DQ graph it makes for the backend (QDQ_KINDS)
    tokens, psnr_db  what an engine of this precision must keep against the golden outputs
                (`Recipe.misses` judges it, `Recipe.gate_words` says it)
    tool        a package the build needs beyond the backend's runtime (TOOLS: NNCF for OpenVINO
                int8), which an install may lack: deploy skips the row then, and a build says so
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass

from alignvar_edge.caller import on_command_line, option
from alignvar_edge.errors import BackendUnavailableError, InputError
from alignvar_edge.name_text import shell_word

__all__ = ["ALIASES", "BACKENDS", "BUILD_MIN_TOKENS", "CALIB_TILES", "CHECKPOINT", "DEFAULT_MIN_TOKENS", "DEPLOY_DEFAULT",
           "EXPORT", "EXPORT_READERS", "OPTION_FLAGS", "PRECISIONS", "QDQ_KINDS", "Recipe", "TOOLS", "Tool",
           "backend_name", "deploy_precisions", "deploy_targets", "quantize_out",
           "check_options", "default_precision", "where", "engine_precision", "exported_precision_error", "precisions",
           "qdq_kind", "qdq_targets", "quantize_precisions", "quantize_targets", "quantized_in_build", "recipe",
           "table_markdown"]

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt", "coreml")
ALIASES = {"ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt", "pytorch": "torch"}
# the backends whose engines open an ONNX export as it is, without a build (`load`, `upscale --engine
# EXPORT --backend B`, `bench B:EXPORT`); backend "auto" opens one on the first
EXPORT_READERS = ("onnxruntime", "openvino")
CHECKPOINT, EXPORT = "checkpoint", "export"
NONE, QUANTIZE, BACKEND, BUILDER = "none", "quantize", "backend", "builder"
CALIB_TILES = 64        # `build --calib` tiles when --calib-tiles is not given
# the share of tokens a lower precision must keep: its rows' gate, and the default target of
# `quantize --min-token-agreement` and of bench's "best engine"
DEFAULT_MIN_TOKENS = 0.99
# An ONNX Runtime build is compared with its source graph (other session options, same weights), not
# with the golden outputs: rounding may differ there even for fp32, whose golden gate is 1.0 (the
# engine still has to pass that gate in selftest), so the build refuses only below this bar.
BUILD_MIN_TOKENS = DEFAULT_MIN_TOKENS
# The int8 Q/DQ graph `alignvar-edge quantize` makes for a backend (its int8 row's `qdq`; quantize/int8.py
# holds each kind's settings), in the words `quantize --help` says it:
QDQ_KINDS = {
    # for ONNX Runtime's CPU int8 kernels, which quantize's fidelity search runs here
    "asymmetric": "uint8 activations, reduce_range on x86 without VNNI",
    # zero points 0, as TensorRT requires; quantize never runs that runtime, so it judges exact fake-quant
    "symmetric": "symmetric int8 (zero points 0)",
}


@dataclass(frozen=True)
class Tool:
    """A package some builds need beyond their backend's runtime, installed by an extra of its own
    (the `openvino` extra runs engines; only building OpenVINO int8 ones needs NNCF)."""

    module: str         # its import name
    name: str           # as its users know it
    extra: str          # the alignvar-edge extra that installs it
    builds: str         # the builds that need it, in words

    def installed(self) -> bool:
        """Whether it is installed here (found, not imported: NNCF's import takes seconds)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):       # a broken or stand-in entry in sys.modules
            return False

    def missing(self) -> str:
        """The one line that says it is not installed, with the pip command that installs it here."""
        from alignvar_edge.extras import install_command     # packaging: only when said
        return f"{self.builds} need {self.name}, which is not installed; {install_command(self.extra)}"


TOOLS = {"nncf": Tool("nncf", "NNCF", "openvino-int8", "OpenVINO int8 builds")}


@dataclass(frozen=True)
class Recipe:
    backend: str
    precision: str
    source: str
    quantizer: str = NONE
    calibration: bool = False
    serves: tuple[str, ...] = ()
    options: frozenset[str] = frozenset()
    tokens: float = DEFAULT_MIN_TOKENS
    psnr_db: float = 30.0
    qdq: str | None = None
    tool: Tool | None = None

    def missing_tool(self) -> Tool | None:
        """The tool this row's build needs that is not installed here, or None."""
        return self.tool if self.tool is not None and not self.tool.installed() else None

    def require_tool(self) -> None:
        """Refuse this row's build where its tool is not installed here, as an absent backend is
        refused: one line with the pip command, before any work (a Python build met NNCF's bare
        ModuleNotFoundError deep inside)."""
        if (tool := self.missing_tool()) is not None:
            raise BackendUnavailableError(tool.missing())

    @property
    def needs_quantize(self) -> bool:
        """The build input is `alignvar-edge quantize`'s output, not the fp32 export."""
        return self.quantizer == QUANTIZE

    @property
    def judged_as_fake_quant(self) -> bool:
        """quantize's fidelity search cannot run this row's int8 graph on the kernels its engine runs
        (TensorRT's): it judges the Q/DQ arithmetic computed literally instead."""
        return self.qdq == "symmetric"

    @property
    def gate_words(self) -> str:
        """The gate as a user reads it: '99% tokens and 35 dB'."""
        return f"{self.tokens * 100:g}% tokens and {self.psnr_db:g} dB"

    def misses(self, tokens: float, psnr_db: float | None) -> list[str]:
        """What an engine keeping `tokens` (share of the golden tokens) and `psnr_db` (SR PSNR; None:
        not measured) falls short of in this gate, one phrase each ('tokens 97.12% < 99%'); [] passes."""
        missed = [f"tokens {tokens:.2%} < {self.tokens * 100:g}%"] if tokens < self.tokens else []
        if psnr_db is not None and psnr_db < self.psnr_db:
            missed.append(f"SR PSNR {psnr_db:.2f} dB < {self.psnr_db:g} dB")
        return missed

    def quantize_command(self, export: str = "EXPORT", out: str | None = None) -> str:
        """The `alignvar-edge quantize` command that makes this row's build input from `export`."""
        return (f"alignvar-edge quantize {shell_word(export)} --precision {self.precision} --target {self.backend}"
                + (f" --out {shell_word(out)}" if out else ""))

    def quantize_call(self, export: str = "EXPORT") -> str:
        """`quantize_command` from Python: one line to paste, into the folder the command writes by default."""
        return (f"from alignvar_edge.quantize import QuantizeOptions, quantize_artifact; quantize_artifact({export!r}, "
                f"{quantize_out(export, self.precision, self.backend)!r}, "
                f"QuantizeOptions(precision={self.precision!r}, target={self.backend!r}))")

    def quantize_step(self, export: str = "EXPORT") -> str:
        """How the caller makes this row's build input: the command in a verb, the call from Python."""
        return self.quantize_command(export) if on_command_line() else self.quantize_call(export)

    def check_graph(self, graph_precision: str, step: str) -> None:
        """Refuse building this row from a graph carrying `graph_precision` where it cannot: a graph
        quantized to another precision (one precision per engine), or the fp32 export where this row
        builds from quantize's output, which `step` (the quantize command or call) makes."""
        if graph_precision not in ("fp32", self.precision):
            raise exported_precision_error(graph_precision, self.precision)
        if self.needs_quantize and graph_precision != self.precision:
            graph = f"explicit Q/DQ, {QDQ_KINDS[self.qdq]}" if self.qdq else f"{self.precision} types"
            raise InputError(f"{self.backend} {self.precision} engines build from quantize's output ({graph}), "
                             f"not the fp32 export: build from the output of `{step}`")


def quantize_out(export: str, precision: str, target: str) -> str:
    """Where `alignvar-edge quantize` writes without --out: EXPORT-PRECISION-TARGET."""
    return f"{export.rstrip('/')}-{precision}-{target}"


def exported_precision_error(artifact_precision: str, precision: str) -> InputError:
    """A build of `precision` from an export whose graph already carries another one (its Q/DQ or
    fp16 types): one precision per engine."""
    return InputError(f"this export is {artifact_precision} (its graph carries that precision): build it "
                      f"with --precision {artifact_precision}, or build {precision} from the fp32 export")


# backend build option -> the `alignvar-edge build` flag that sets it
OPTION_FLAGS = {"kit": "--kit", "target_os": "--target-os", "threads": "--threads", "image_input": "--image-input", "batch": "--batch",
                "float_groups": "--float-groups-from", "half_policy": "--half-policy-from",
                "token_bf16": "--token-bf16"}
# build options every row of a backend takes; precision-specific ones are given on the row
_BACKEND_OPTIONS = {"tensorrt": {"kit"}, "coreml": {"target_os", "image_input", "batch"}, "onnxruntime": {"threads"}}


def _row(backend: str, precision: str, source: str, quantizer: str = NONE, calibration: bool = False,
         serves: tuple[str, ...] | None = None, options: tuple[str, ...] = (), qdq: str | None = None,
         tool: str | None = None) -> Recipe:
    # an int8 row of our ONNX pass without its Q/DQ kind was offered by `quantize --target` and refused
    # once calibration had started: the table cannot hold one
    ours = quantizer == QUANTIZE and precision == "int8"
    if (qdq in QDQ_KINDS) != ours:
        raise ValueError(f"recipes: the {backend} {precision} row " + (
            f"is quantized by `alignvar-edge quantize`: give it qdq= one of {', '.join(QDQ_KINDS)}" if ours else
            "takes no qdq=: only an int8 row that `alignvar-edge quantize` makes has a Q/DQ kind"))
    tokens, psnr = {"fp32": (1.0, 50.0), "fp16": (DEFAULT_MIN_TOKENS, 35.0),
                    "bf16": (DEFAULT_MIN_TOKENS, 35.0)}.get(precision, (DEFAULT_MIN_TOKENS, 30.0))
    return Recipe(backend, precision, source, quantizer, calibration, (precision,) if serves is None else serves,
                  frozenset(options) | _BACKEND_OPTIONS.get(backend, set()), tokens, psnr, qdq,
                  None if tool is None else TOOLS[tool])


_TABLE = (
    _row("torch", "fp32", CHECKPOINT),
    _row("torch", "fp16", CHECKPOINT, BUILDER),
    _row("torch", "bf16", CHECKPOINT, BUILDER),
    _row("onnxruntime", "fp32", EXPORT),
    _row("onnxruntime", "fp16", EXPORT, QUANTIZE),
    _row("onnxruntime", "int8", EXPORT, QUANTIZE, qdq="asymmetric"),
    _row("openvino", "fp32", EXPORT),
    _row("openvino", "fp16", EXPORT, BUILDER),
    _row("openvino", "bf16", EXPORT, BUILDER, options=("token_bf16",)),
    _row("openvino", "int8", EXPORT, BACKEND, calibration=True, options=("float_groups", "token_bf16"), tool="nncf"),
    _row("openvino", "int8-weights", EXPORT, BACKEND, serves=(), tool="nncf"),
    _row("tensorrt", "fp32", EXPORT),
    _row("tensorrt", "fp16", EXPORT, BUILDER, options=("half_policy",)),
    _row("tensorrt", "int8", EXPORT, QUANTIZE, qdq="symmetric"),
    _row("coreml", "fp32", CHECKPOINT, serves=()),
    _row("coreml", "fp16", CHECKPOINT, BUILDER, serves=("fp32", "fp16"), options=("half_policy",)),
    _row("coreml", "int8-weights", CHECKPOINT, BACKEND, serves=("int8",)),
    *(_row("coreml", f"palette{bits}", CHECKPOINT, BACKEND, serves=()) for bits in (2, 4, 6, 8)),
)
RECIPES: dict[tuple[str, str], Recipe] = {(r.backend, r.precision): r for r in _TABLE}
PRECISIONS = tuple(dict.fromkeys(r.precision for r in _TABLE))
_DEFAULT = {"coreml": "fp16"}      # the Neural Engine computes in fp16; elsewhere fp32 is the reference
DEPLOY_DEFAULT = ("fp32", "int8")   # what `deploy` builds when --precision is not given


def backend_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BACKENDS:
        raise InputError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    return key


def precisions(backend: str) -> tuple[str, ...]:
    b = backend_name(backend)
    return tuple(p for (rb, p) in RECIPES if rb == b)


def default_precision(backend: str) -> str:
    return _DEFAULT.get(backend_name(backend), "fp32")


def recipe(backend: str, precision: str | None = None) -> Recipe:
    """The row for (backend, precision); precision None is the backend's default. An unknown pair is
    one line naming what the backend takes."""
    b = backend_name(backend)
    p = precision or default_precision(b)
    if (b, p) not in RECIPES:
        raise InputError(f"{b} has no {option('precision', p)}; choose one of {', '.join(precisions(b))}")
    return RECIPES[(b, p)]


def check_options(backend: str, precision: str | None, given: Mapping[str, object]) -> None:
    """A build option (OPTION_FLAGS) that this pair does not take is one line naming where it applies,
    by the flag as typed: a switch given False by its "--no-" form."""
    r = recipe(backend, precision)
    for name, value in given.items():
        if name not in r.options:
            flag = OPTION_FLAGS[name]
            raise InputError(f"{'--no-' + flag[2:] if value is False else flag} applies to {where(name)} only")


def calibrating_builds() -> str:
    """The builds that calibrate inside the backend, as flags: '--target openvino --precision int8'."""
    return ", ".join(f"--target {r.backend} --precision {r.precision}" for r in _TABLE if r.calibration) or "none"


def where(option: str) -> str:
    """The build commands that take `option`, as flags: '--target tensorrt --precision fp16, ...'."""
    places = []
    for b in BACKENDS:
        rows = [r for r in _TABLE if r.backend == b]
        having = [r.precision for r in rows if option in r.options]
        if having and len(having) == len(rows):
            places.append(f"--target {b}")
        elif having:
            places.append(f"--target {b} --precision {'|'.join(having)}")
    return ", ".join(places) or "no build"


def engine_precision(backend: str, requested: str) -> str | None:
    """The precision of the engine that answers a user's request (fp32, fp16, int8) on this backend:
    itself where the backend has it, Core ML's fp16 package for fp32; None where no row serves it."""
    b = backend_name(backend)
    return next((p for (rb, p), r in RECIPES.items() if rb == b and requested in r.serves), None)


def deploy_precisions() -> tuple[str, ...]:
    """What `deploy --precision` takes: every precision some row serves, but bf16. Nobody asks for it:
    an fp32 request builds bf16 first where this host computes it fast, and fp32 where that misses
    its target (runtimes.half.build_auto), so the host, not the user, picks it."""
    return tuple(p for p in dict.fromkeys(p for r in _TABLE for p in r.serves) if p != "bf16")


def deploy_targets() -> tuple[str, ...]:
    """What `deploy --targets` takes: every backend but torch, which is the reference, not a deployment."""
    return tuple(b for b in BACKENDS if b != "torch")


def quantize_precisions() -> tuple[str, ...]:
    """What `alignvar-edge quantize --precision` makes: the precisions some backend builds from its output."""
    return tuple(dict.fromkeys(r.precision for r in _TABLE if r.needs_quantize))


def quantize_targets() -> tuple[str, ...]:
    """`alignvar-edge quantize --target`: every backend with a quantized row, by us or by itself."""
    return tuple(b for b in BACKENDS if any(r.quantizer in (QUANTIZE, BACKEND) and r.backend == b for r in _TABLE))


def qdq_kind(backend: str) -> str | None:
    """The int8 Q/DQ graph `alignvar-edge quantize` makes for `backend` (QDQ_KINDS); None where it makes none."""
    row = RECIPES.get((backend_name(backend), "int8"))
    return row.qdq if row else None


def qdq_targets() -> tuple[str, ...]:
    """The backends `alignvar-edge quantize` makes an int8 Q/DQ graph for."""
    return tuple(b for b in BACKENDS if qdq_kind(b))


def quantized_in_build(backend: str) -> bool:
    """`quantize --target B` hands the job to B's build (NNCF, coremltools) instead of our ONNX pass."""
    int8 = engine_precision(backend, "int8")
    return int8 is not None and RECIPES[(backend_name(backend), int8)].quantizer == BACKEND


def table_markdown() -> str:
    """The table as docs/architecture.md shows it (a test keeps the two the same)."""
    quantizer = {NONE: "—", QUANTIZE: "`alignvar-edge quantize` first", BACKEND: "the backend, inside build",
                 BUILDER: "the engine builder"}
    rows = ["| backend | precision | build from | quantized by | calibration | serves | build options |",
            "|---|---|---|---|---|---|---|"]
    for r in _TABLE:
        source = "fp32 ONNX export" if r.source == EXPORT else "checkpoint"
        if r.needs_quantize:
            source = f"`quantize --precision {r.precision} --target {r.backend}` output"
        by = quantizer[r.quantizer] + (f" ({r.qdq} Q/DQ)" if r.qdq else "")
        rows.append(f"| {r.backend} | {r.precision} | {source} | {by} | "
                    f"{'yes' if r.calibration else ''} | {', '.join(r.serves)} | "
                    f"{', '.join(OPTION_FLAGS[o] for o in sorted(r.options))} |")
    return "\n".join(rows) + "\n"
