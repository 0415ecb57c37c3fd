"""ONNX Runtime: runs the exported (or quantized) ONNX graph as it is.

Execution providers: CPU always; CUDA and TensorRT when this onnxruntime build has them
(device "auto" prefers TensorRT, then CUDA, then CPU; ORT falls back per node). Session options
(`threads`, `inter_threads`, `optimization`, `spin`): `onnx_session`, which opens every session.

An ONNX export directory loads directly; `build` makes an engine dir holding the graph (a hard
link to the export's where the file system allows) and the session options, so a deployment is
one self-describing directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge import recipes
from alignvar_edge.caller import option
from alignvar_edge.errors import ArtifactError, BackendUnavailableError, InputError, ParityError
from alignvar_edge.graph_names import SR, token_names
from alignvar_edge.lazy import lazy_import
from alignvar_edge.manifest import Manifest, listed_file, load_verified, write_manifest
from alignvar_edge.outputs import artifact_dir as staging_dir
from alignvar_edge.onnx_session import CPU, open_session
from alignvar_edge.runtimes.artifacts import (check_quantized_for, engine_manifest, leaves_out_refiner, link_onnx,
                                              parity_vs, single_graph, validation_tiles)
from alignvar_edge.runtimes.base import (Backend, Engine, TensorSpec, input_roles, check_load_options,
                                         config_from_manifest, threads_here)
from alignvar_edge.runtimes.golden import (GOLDEN_FILE, copy_golden, golden_entry, made_as_metadata, rollout_text,
                                          write_golden)

ort = lazy_import("onnxruntime")

PROVIDERS = {"cpu": CPU, "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
# the device names `providers_for` takes: auto, then each provider's (a GPU's with its index)
DEVICES = ("auto", *(kind if kind == "cpu" else f"{kind}[:N]" for kind in PROVIDERS))
ENGINE_FILE = "model.onnx"
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(double)": np.float64}


def providers_for(device: str | None) -> list[Any]:
    """Execution providers for a device name (DEVICES: auto | cpu | cuda[:N] | tensorrt[:N])."""
    have = ort.get_available_providers()
    dev = (device or "auto").lower()
    if dev == "auto":
        return [p for p in (PROVIDERS["tensorrt"], PROVIDERS["cuda"]) if p in have] + [PROVIDERS["cpu"]]
    kind, _, idx = dev.partition(":")
    if kind not in PROVIDERS:
        raise InputError(f"onnxruntime device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got '{device}'")
    name = PROVIDERS[kind]
    if name not in have:
        raise BackendUnavailableError(f"this onnxruntime build has no {name} (it has {', '.join(have)}); "
                                      f"install onnxruntime-gpu for CUDA/TensorRT, or use {option('device', 'cpu')}")
    if kind == "cpu":
        return [name]
    opts = {"device_id": int(idx or 0)}
    chain = [(name, opts)]
    if kind == "tensorrt" and PROVIDERS["cuda"] in have:
        chain.append((PROVIDERS["cuda"], opts))
    return chain + [PROVIDERS["cpu"]]


class OrtEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, model_path: Path, metadata: Manifest, device: str | None = None,
                 engine_dir: Path | None = None, threads: int | None = None,
                 inter_threads: int | None = None, optimization: str = "all",
                 spin: bool | None = None):
        config = config_from_manifest(metadata)
        self.session = open_session(model_path, providers_for(device), threads, inter_threads, optimization, spin,
                                    fix="re-export the artifact (or rebuild the engine)")
        used = self.session.get_providers()
        super().__init__(metadata, config, _device_name(used), engine_dir)
        self.providers = used
        self.options = {"threads": threads, "inter_threads": inter_threads,
                        "optimization": optimization, "spin": spin}
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        want_in = input_roles([i.name for i in inputs], model_path)
        self._in_names = dict(zip(want_in, (i.name for i in inputs)))
        self._spec = {name: (tuple(d if isinstance(d, int) else -1 for d in i.shape),
                             np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                      for name, i in zip(want_in, inputs)}
        want = [SR, *token_names(config.num_scales)]
        names = [o.name for o in outputs]
        if len(names) != len(want):
            raise ArtifactError(f"{model_path} has outputs {names}; expected {want}")
        self._out_names = names
        self._out_map = dict(zip(names, want)) if set(names) != set(want) else {n: n for n in names}

    @property
    def input_spec(self) -> dict[str, TensorSpec]:
        return self._spec

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = self.session.run(self._out_names, {self._in_names[n]: x for n, x in feeds.items()})
        return {self._out_map[n]: r for n, r in zip(self._out_names, res)}

    def _release(self) -> None:
        self.session = None


def _device_name(providers: list[str]) -> str:
    first = providers[0] if providers else PROVIDERS["cpu"]
    return {v: k for k, v in PROVIDERS.items()}.get(first, first)


class OrtBackend(Backend):
    name = "onnxruntime"
    checks_on_photos = True
    module = "onnxruntime"
    distribution = "onnxruntime"
    extra = "device"
    load_options = frozenset({"threads", "inter_threads", "optimization", "spin"})

    def version(self) -> str | None:
        try:
            return str(ort.__version__)
        except ImportError:
            return None

    def devices(self) -> list[str]:
        have = ort.get_available_providers()
        return [k for k, v in PROVIDERS.items() if v in have]

    def build(self, artifact_dir: Path, out: Path, precision: str = "fp32",
              calibration: np.ndarray | None = None, device: str | None = None,
              force: bool = False, **opts: Any) -> Path:
        """The graph (linked, else copied) beside a manifest holding the session options; check that
        it opens and runs."""
        src_manifest, onnx_path = single_graph(artifact_dir)
        check_quantized_for(src_manifest, Path(artifact_dir), self.name)
        r = recipes.recipe(self.name, precision)
        r.check_graph(src_manifest.precision or "fp32", r.quantize_step(str(artifact_dir)))
        sess_opts = {"threads": opts.pop("threads", None), "inter_threads": opts.pop("inter_threads", None),
                     "optimization": opts.pop("optimization", "all"), "spin": opts.pop("spin", None)}
        if opts:
            raise InputError(f"unknown onnxruntime build options {sorted(opts)}")
        check_load_options(self.name, sess_opts, here=False)      # recorded for the machine it runs on
        check_opts = threads_here(sess_opts)                       # the build's check runs here
        with staging_dir(out, force=force) as tmp:
            link_onnx(onnx_path, tmp, ENGINE_FILE, src_manifest)
            m = engine_manifest(src_manifest, Path(artifact_dir), self.name, precision,
                                {"engine": ENGINE_FILE}, batch=src_manifest.static_batch,
                                extra={"session": sess_opts, "device": device or "auto"})
            # the engine proves itself: its session options against the source graph as exported
            eng = OrtEngine(tmp / ENGINE_FILE, m, device, **check_opts)
            # the reference is ONNX Runtime's own, not a subclass's (another backend on ORT checks against it)
            ref = BACKEND.load(Path(artifact_dir))
            try:
                m.parity = parity_vs(ref, eng, validation_tiles(eng.config), "onnxruntime on the source artifact")
                m.extra["providers"] = eng.providers
            finally:
                eng.close()
                ref.close()
            if m.parity["tokens"]["overall"] < recipes.BUILD_MIN_TOKENS:
                raise ParityError(f"the built engine keeps {m.parity['tokens']['overall']:.2%} of the source's "
                                  f"tokens on held-out tiles (< {recipes.BUILD_MIN_TOKENS:.0%}); nothing was written. "
                                  f"Try {option('device', 'cpu')} or the default session options")
            _carry_quantize_fidelity(src_manifest, m)
            m.extra["golden"] = ship_golden(src_manifest, Path(artifact_dir), tmp)
            _write_readme(tmp, m)
            write_manifest(tmp, m)
        return out

    def open(self, engine_dir: Path, device: str | None = None, **opts: Any) -> OrtEngine:
        m = load_verified(engine_dir)
        given = {k: v for k, v in opts.items() if v is not None}
        if m.kind == "onnx":
            m, path = single_graph(engine_dir)
            session: dict[str, Any] = given
        else:                             # an onnxruntime engine: Backend.load refused any other
            path = listed_file(engine_dir, m, m.engine_file)
            session = threads_here(dict(m.extra.get("session") or {}), engine_dir, given)
            device = device or m.extra.get("device")
        return OrtEngine(path, m, device, Path(engine_dir), **session)


def _carry_quantize_fidelity(src: Manifest, m: Manifest) -> None:
    """An engine of a quantize output keeps that step's fidelity against fp32 (its own parity
    compares it with the quantized graph it copies); `build` warns where the step missed its target
    (`runtimes.commands.engine_warnings`)."""
    from alignvar_edge.quantize.records import validation_line
    if not validation_line(src.parity, None):
        return
    assert m.parity is not None
    m.parity["quantize"] = src.parity
    m.parity["target_met"] = src.parity["target_met"]        # type: ignore[index]


def ship_golden(src_manifest: Manifest | None, src_dir: Path, dest: Path) -> dict[str, Any] | None:
    """Golden outputs for an engine directory being built (`dest`): the source's or its checkpoint's
    golden file (`golden.copy_golden`); for an fp32 ONNX export without one, its own outputs on
    held-out tiles here (the export was checked against PyTorch before it was kept: 100% tokens).
    Returns the manifest's `extra.golden` entry, or None when there is no reference."""
    entry = copy_golden(src_manifest, src_dir, dest)
    if entry is not None or not src_manifest or src_manifest.kind != "onnx" or src_manifest.precision != "fp32":
        return entry
    out = dest / GOLDEN_FILE
    with BACKEND.load(src_dir, threads=1) as ref:
        lr = validation_tiles(config_from_manifest(src_manifest), n=4, seed=0)
        sr, tokens = ref.run(lr)
    # the export's own rollout: pruned as it is, without the refiner where it leaves it out
    refine, prune = not leaves_out_refiner(src_manifest), src_manifest.graph_facts.get("prune") or ()
    meta = {"seed": "0", "split": "heldout",
            "reference": "ONNX Runtime on the fp32 export (checked against PyTorch at export)"
                         + rollout_text(prune, refine),
            **made_as_metadata(prune, refine)}
    write_golden(out, lr, sr, tokens, meta)
    return golden_entry(out, f"fp32 export {src_dir}")


BACKEND = OrtBackend()


def _write_readme(root: Path, m: Manifest) -> None:
    from alignvar_edge.onnx_wire import model_versions
    from alignvar_edge.runtimes.readme import write_readme
    ir, opsets = model_versions((root / ENGINE_FILE).read_bytes())
    write_readme(root, engine_readme(m, str(ort.__version__), (ir, _default_opset(opsets))))


def _default_opset(opsets: dict[str, int]) -> int:
    """The ONNX (default domain) opset among a graph's opset imports, which `runtime_line` judges by
    ONNX Runtime's compatibility table. A runtime checks every import's version before it loads a
    graph, used by a node or not: 1.18.1, 1.20.1 and 1.32.0 refuse an unused ai.onnx.ml 6 and load
    ai.onnx.ml 5 (the table's own ai.onnx.ml column, 4 for 1.18 to 1.20, counts kernels). The graphs
    we write import the default domain alone: `quantize` drops the imports no node uses that ONNX
    Runtime's pre-processing adds (ai.onnx.ml 5, ai.onnx.preview, com.microsoft.nchwc, ...); an older
    quantize output still carries them, and 1.18.1 and 1.20.1 load it (checked)."""
    return opsets.get("", opsets.get("ai.onnx", 0))


# ONNX Runtime's compatibility table (onnxruntime.ai/docs/reference/compatibility.html), row by row
# from the oldest: a release and the newest ONNX opset and IR version it reads
_ORT_READS = (("1.0", 11, 6), ("1.1", 11, 6), ("1.2", 11, 6), ("1.3", 12, 7), ("1.4", 12, 7), ("1.5", 12, 7),
              ("1.6", 13, 7), ("1.7", 13, 7), ("1.8", 14, 7), ("1.9", 15, 8), ("1.10", 15, 8), ("1.11", 16, 8),
              ("1.12", 17, 8), ("1.13", 17, 8), ("1.14", 18, 8), ("1.15", 19, 8), ("1.16", 19, 9), ("1.17", 20, 9),
              ("1.18", 21, 10), ("1.19", 21, 10), ("1.20", 21, 10))


def runtime_line(ort_version: str, ir_version: int, opset: int) -> str:
    """What a deployer needs of the ONNX Runtime on the device: the graph's IR version and opset,
    the oldest release `_ORT_READS` says reads them (and what the one before it reads), and the
    release it was built and checked with."""
    first = next((i for i, (_, max_opset, max_ir) in enumerate(_ORT_READS)
                  if ir_version <= max_ir and opset <= max_opset), None)
    if first is None:
        # past the table's last row, not past every release: the one that built it read it
        said = (f"that is newer than ONNX Runtime's compatibility table lists ({_reads_up_to(_ORT_READS[-1])}), "
                f"so a release after {_ORT_READS[-1][0]} is needed: {ort_version}, which built it, reads it; check "
                "the release you deploy with `alignvar-edge selftest --engine DIR`")
    else:
        said = (f"ONNX Runtime {_ORT_READS[first][0]} or later reads it (ONNX Runtime's compatibility table"
                + (f": {_reads_up_to(_ORT_READS[first - 1])}" if first else "") + ")")
    return (f"The graph is ONNX IR version {ir_version}, opset {opset}: {said}. Built and checked with ONNX Runtime "
            f"{ort_version}.")


def _reads_up_to(row: tuple[str, int, int]) -> str:
    release, max_opset, max_ir = row
    return f"{release} reads up to IR version {max_ir}, opset {max_opset}"


def _int8_note(m: Manifest) -> list[str]:
    """An int8 graph's CPU assumption, where its Q/DQ kind has one (asymmetric: VNNI, reduce_range)."""
    r = ((m.quantization or {}).get("recipe") or {}) if m.precision == "int8" else {}
    target = r.get("target")
    if target not in recipes.qdq_targets() or recipes.qdq_kind(target) != "asymmetric":
        return []
    from alignvar_edge.runtimes.readme import int8_cpu_note
    if r.get("reduce_range"):
        return [int8_cpu_note("Its int8 weights are 7-bit (`reduce_range`)", None), ""]
    built = {True: "a CPU with VNNI", False: "a CPU without VNNI",
             None: "a CPU that is no x86 or whose features could not be read"}
    again = f"{recipes.recipe(target, 'int8').quantize_command()} --reduce-range"
    return [int8_cpu_note(f"Its int8 graph was quantized on {built.get(r.get('vnni'))}, with 8-bit weights "
                          "(`reduce_range` off)",
                          f"quantize it again with `--reduce-range` (`{again}`, the default on such a CPU) and build "
                          "from that"), ""]


def engine_readme(m: Manifest, ort_version: str, graph_versions: tuple[int, int]) -> str:
    """README.md of an ONNX Runtime engine directory (`m`: its manifest before the files are hashed;
    `graph_versions`: its graph's IR version and ONNX opset): what to run with alignvar-edge on the
    device, and the graph's I/O with a plain onnxruntime call, in the words every engine README
    shares (`runtimes/readme.py`)."""
    from alignvar_edge.quantize.records import validation_line
    from alignvar_edge.extras import device_install
    from alignvar_edge.runtimes.readme import (INPUT_LINE, checked_line, commands, extra_feed_lines, file_checks,
                                               golden_check, model_notes, whole_images)
    graph = next(iter(m.graphs.values()))
    # a quantized graph's build parity is against itself: what it lost is its quantize step's record
    quantized = validation_line((m.parity or {}).get("quantize"), (m.quantization or {}).get("target"))

    def tensor(t: dict[str, Any]) -> str:
        return f"`{t['name']}` {t['dtype']}[{','.join(str(d) for d in t['shape'])}]"
    ins, outs = graph["inputs"], graph["outputs"]
    lr, others = ins[0], [t["name"] for t in ins[1:]]
    shape = tuple(int(d) for d in lr["shape"])
    return "\n".join([
        f"# ONNX Runtime engine: {m.model.name}, {m.precision}", "",
        f"{runtime_line(ort_version, *graph_versions)} {checked_line(m)}"
        + (f" Its {m.precision} graph, when quantized: {quantized}." if quantized else ""), INPUT_LINE,
        *model_notes(m), "",
        *commands(f"With alignvar-edge ({device_install('device')}: ONNX Runtime, no PyTorch), "
                  "which checks every file's SHA-256 and tiles images of any size with overlap blending "
                  "(`runtimes.load(DIR).upscale(image)` in Python):"),
        "## With ONNX Runtime alone", "",
        "| file | inputs | outputs |", "|---|---|---|",
        f"| `{ENGINE_FILE}` | {', '.join(tensor(t) for t in ins)} | {', '.join(tensor(t) for t in outs)} |", "",
        "```python", "import numpy as np", "import onnxruntime as ort", "",
        f'session = ort.InferenceSession("{ENGINE_FILE}", providers=["CPUExecutionProvider"])',
        f"tiles = np.random.default_rng(0).random({shape}, dtype=np.float32)",
        f'feeds = {{"{lr["name"]}": tiles}}', *extra_feed_lines(m, others, "feeds"),
        "outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))",
        'sr = outputs["sr"]                 # RGB in [0, 1]; tokens_k: each scale\'s codebook indices',
        "```", "", *_int8_note(m),
        *whole_images(m), *golden_check(m, "onnxruntime", m.precision), *file_checks()])
