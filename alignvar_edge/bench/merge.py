"""Merge reports from several devices into one table and one plot.

Every input must be a report of this schema version (a merged report counts as its parts). Rows
are compared per megapixel of SR output, which stays meaningful across models with different tile
sizes; speed-ups are always within a device (against that device's PyTorch eager).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alignvar_edge.bench.host import (MACHINE_FIELDS, identity_words, isa_word, load_words, machine_differences,
                                      machine_identity, shared_load)
from alignvar_edge.bench.integrity import RAW_TIMINGS, check_figures
from alignvar_edge.bench.render import (cache_note, engine_rows, figure_cell, flattered, graph_words, host_words,
                                        markdown_image, markdown_table, plain_log_ticks, pyplot, save_figure,
                                        threads_words, units_words)
from alignvar_edge.bench.schema import DEVICE_REFERENCE, ReportSchemaError, device_kind, read_report, report_header
from alignvar_edge.cpuinfo import cpu_words, is_x86
from alignvar_edge.errors import InputError
from alignvar_edge.manifest import CONTENT_KEY, default_overlap
from alignvar_edge.name_text import PathArg, path_text, readable, readable_texts

__all__ = ["build_warnings", "by_label_notes", "cpu_warnings", "graph_warnings", "label_warnings",
           "lineup", "lineup_keys", "merge_markdown", "merge_reports", "merge_warnings", "plot_merged", "plot_rows",
           "precision_notes", "runtime_notes", "runtime_packages", "runtime_versions", "runtime_warnings"]


def _parts(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report["reports"]) if report.get("kind") == "merged" else [report]


def merge_reports(paths: Sequence[PathArg]) -> dict[str, Any]:
    """Read, check and combine reports; device labels are made unique ('label #2'). A path may be
    bytes (`path_text`)."""
    if not paths:
        raise ReportSchemaError("bench merge needs at least one report.json")
    parts: list[dict[str, Any]] = []
    # a report given twice (the same file, a copy under another label or time, or inside a merged
    # report) is merged once: its rows would otherwise appear again as a second device
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    repeated = []
    # each report's file name and contents as text (name_text): a label or name that is no UTF-8,
    # which an older report keeps as a surrogate escape, failed the merged Markdown and plot
    texts = [path_text(p) for p in paths]
    sources = [readable(p) for p in texts]
    for p, source in zip(texts, sources):
        report = read_report(p)
        check_figures(report, str(p))
        for r in _parts(report):
            # merging relabels it: the merged report's hash covers it
            r = readable_texts({k: v for k, v in r.items() if k != CONTENT_KEY})
            measured = _measurement(r)
            if measured in seen:
                _refuse_other_machine(source, r, *seen[measured])
                repeated.append(_repeat_line(source, r, *seen[measured]))
                continue
            seen[measured] = (source, r)
            parts.append(r)
    _label_machines(parts)
    # one device may report several models; only a repeated (device, model) pair needs telling apart.
    # Labels a report already has are kept (a merged report's 'X #2' included), and a repeat takes
    # the first free number: two reports under one label would share one column of the lineups.
    used: set[tuple[str, str]] = set()
    repeats = []
    for r in parts:
        key = (r["label"], r["model"]["name"])
        if key in used:
            repeats.append(r)
        else:
            used.add(key)
    for r in repeats:
        n = 2
        while (f"{r['label']} #{n}", r["model"]["name"]) in used:
            n += 1
        r["label"] = f"{r['label']} #{n}"
        used.add((r["label"], r["model"]["name"]))
    rows = []
    for r in parts:
        for row in engine_rows(r):
            rows.append({"device": r["label"], "model": r["model"]["name"],
                         "weights_sha256": r["model"].get("weights_sha256"),
                         "tile_hr": r["model"]["tile"]["hr"], "created": r["created"], **row})
    hardware = {r["label"]: _hardware(r) for r in parts}
    return {**report_header("merged"), "sources": sources, "reports": parts, "rows": rows,
            "warnings": repeated + cpu_warnings(parts) + merge_warnings(parts) + label_warnings(rows)
            + graph_warnings(rows) + build_warnings(rows, hardware),
            "notes": precision_notes(rows) + by_label_notes(rows) + runtime_notes(parts)
            + [f"{r['label']}: {note}" for r in parts if (note := cache_note(r["engines"]))]}


def _raw_timings(r: dict[str, Any]) -> str | None:
    """Every timed engine's raw timings (of its calls, whole image and folder), in report order: two
    runs never share them. None where the report keeps none (trtexec's, an older report's)."""
    raw = [[(e.get(part) or {}).get(key) for part, key in RAW_TIMINGS.items()]
           for e in r["engines"] if e["status"] == "ok"]
    return json.dumps(raw) if any(any(t) for t in raw) else None


def _measurement(r: dict[str, Any]) -> str:
    """What one run measured, whatever its label and time say: its raw timings (no two runs share
    them); a report without raw timings (trtexec's, an older one) by all its content but those and
    its host, of which only its machine (`machine_identity`) counts: a log imported on two machines
    (`imported_by`) is one measurement."""
    raw = _raw_timings(r)
    if raw is None:
        rest = {k: v for k, v in r.items() if k not in ("label", "created", "host")}
        return json.dumps({**rest, "machine": machine_identity(r["host"])}, sort_keys=True)
    return raw


def _repeat_line(path: str | os.PathLike[str], r: dict[str, Any], first: str, earlier: dict[str, Any]) -> str:
    """The warning for a report that repeats one merged already (the same measurement), naming the
    label and time a copy was given where they differ."""
    told = [f"as '{r['label']}'"] if _label_parts(r)[0] != _label_parts(earlier)[0] else []
    told += [f"dated {r['created']}"] if r["created"] != earlier["created"] else []
    same = "raw timings" if _raw_timings(r) is not None else "figures"
    return (f"{path} repeats the report of {earlier['label']} ({earlier['created']}) in {first}"
            + (f" ({', '.join(told)}: the same {same} on the same machine)" if told else "") + ": merged once")


def _refuse_other_machine(path: str | os.PathLike[str], r: dict[str, Any], first: str, earlier: dict[str, Any]) -> None:
    """Two reports with the raw timings of one run but other machines: one of them was edited."""
    differ = machine_differences(r["host"], earlier["host"], first)
    if differ:
        raise ReportSchemaError(f"{path} holds the raw timings of every engine of {first} ({earlier['label']}), timed "
                                f"on another machine: {'; '.join(differ)}; one of them was edited after it was "
                                "written: merge reports as `alignvar-edge bench` wrote them")


def _label_parts(r: dict[str, Any]) -> tuple[str, str]:
    """A report's label as (label without what a merge adds: its CPU's ISA class and CPU, `_label_machines`;
    its '#2' or '')."""
    label = re.sub(r" #\d+$", "", str(r["label"]))
    num = str(r["label"])[len(label):]
    words = _machine_label_words(r).values() if _machine(r) else ()
    for word in (*words, isa_word(r["host"])):          # added in this order, taken off in reverse
        if word:
            label = label.removesuffix(f", {word}")
    return label, num


def _machine(r: dict[str, Any]) -> str | None:
    """Which machine a report was timed on (`machine_identity`), as a key; None where it records no CPU
    (a trtexec log imported on another machine), whose labels are left as they are."""
    return json.dumps(machine_identity(r["host"]), sort_keys=True) if (r["host"].get("cpu") or {}).get("model") else None


def _machine_label_words(r: dict[str, Any]) -> dict[str, str]:
    """The word a label may take for each field of a report's machine that tells it from others under
    one label (MACHINE_FIELDS): the CPU's name (with its x86 family and model where recorded:
    `cpu_words`), its x86 family and model ('family and model not recorded' for an older report), else
    the field and its value ('OS Darwin', 'GPUs NVIDIA L4')."""
    cpu, identity = r["host"].get("cpu") or {}, machine_identity(r["host"])
    numbers = (f"x86 family {cpu['x86_family']} model {cpu['x86_model']}" if cpu.get("x86_family") is not None
               else "family and model not recorded")
    words = {field: f"{field} {identity_words(identity[field]) if field in identity else 'not recorded'}"
             for field in MACHINE_FIELDS}
    return {**words, "CPU name": cpu_words(cpu), "x86 family": numbers, "x86 model": numbers}


def _label_machines(parts: list[dict[str, Any]]) -> None:
    """A default label names a CPU and its cores ('AMD EPYC, 2 cores'), not which machine it is: where
    reports under one label were timed on different machines (`machine_identity`), each label takes
    what tells them apart, so that the columns tell the machines apart: the ISA class where the classes
    differ ('AMD EPYC, 2 cores, AVX2'), else the first field of their machines that differs: the CPU's
    name or x86 family and model ('AMD EPYC, 2 cores, x86 family 26 model 2' beside '..., x86 family
    25 model 17', or '..., family and model not recorded' for an older report: a cloud VM often names
    its CPU only 'AMD EPYC'), else the field and its value ('..., GPUs NVIDIA L4'). A label that
    already has them (a merged report's) is compared without them; its '#2' is kept."""
    split = {id(r): _label_parts(r) for r in parts}
    classes: dict[str, set[str | None]] = {}
    for r in parts:
        classes.setdefault(split[id(r)][0], set()).add(isa_word(r["host"]))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in parts:
        label, word = split[id(r)][0], isa_word(r["host"])
        groups.setdefault(f"{label}, {word}" if word and len(classes[label]) > 1 else label, []).append(r)
    for label, group in groups.items():
        timed = [r for r in group if _machine(r)]
        field = _first_difference(timed)
        for r in group:
            told = f"{label}, {_machine_label_words(r)[field]}" if field and _machine(r) else label
            r["label"] = told + split[id(r)][1]


def _first_difference(reports: list[dict[str, Any]]) -> str | None:
    """The first field (MACHINE_FIELDS) whose value differs between the machines of `reports`, a field
    one records and another does not included; None where they are one machine."""
    identities = [machine_identity(r["host"]) for r in reports]
    return next((f for f in MACHINE_FIELDS if len({repr(i.get(f, "not recorded")) for i in identities}) > 1), None)


def cpu_warnings(parts: list[dict[str, Any]]) -> list[str]:
    """One line per label that reports timed on different machines share (`_label_machines` has told
    their columns apart): their figures are of different machines, not runs of one."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in parts:
        if _machine(r):
            groups.setdefault(_label_parts(r)[0], []).append(r)
    out = []
    for label, group in groups.items():
        if len({(isa_word(r["host"]), _machine(r)) for r in group}) < 2:
            continue
        # an Arm CPU has no x86 family and model to record: only an x86 report can lack them
        x86 = [r for r in group if is_x86(str((r["host"].get("cpu") or {}).get("arch") or ""))]
        unrecorded = sum((r["host"].get("cpu") or {}).get("x86_family") is None for r in x86)
        out.append(f"the reports labelled '{label}' were timed on different machines"
                   + (", or on machines that cannot be told the same (an older report records no x86 family and "
                      "model)" if 0 < unrecorded < len(x86) else "")
                   + ", so each has a column of its own: " + ", ".join(f"'{r['label']}'" for r in group)
                   + "; compare their figures as different machines, not as runs of one")
    return out


# settings that change what a figure means; two reports differing in one are not like for like
# (seed: which tiles fidelity is measured on; min_token_agreement: which engine is "best")
_COMPARED_SETTINGS = ("threads", "runs", "duration_s", "warmup", "eager_batch", "interleaved", "image_lr",
                      "image_runs", "image_overlap", "folder_images", "folder_lr", "fidelity_tiles", "images",
                      "fidelity_tiles_sha256", "seed", "min_token_agreement", "ort_spin")


def merge_warnings(parts: list[dict[str, Any]]) -> list[str]:
    """One line per way the merged reports are not like for like: models, weights, settings."""
    out = []
    models = sorted({r["model"]["name"] for r in parts})
    if len(models) > 1:
        out.append(f"the reports benchmark different models ({', '.join(models)}): compare rows within a model only")
    for name in models:
        line = _weights_line(name, [r for r in parts if r["model"]["name"] == name])
        if line:
            out.append(line)

    def who(r: dict[str, Any]) -> str:
        # one entry per report: two reports may share a device label (different models)
        return f"{r['label']} ({r['model']['name']})" if len(models) > 1 else r["label"]

    # one schema version reads them all, but how a figure is measured can change between releases
    versions: dict[str, list[str]] = {}
    for r in parts:
        h = r["host"]
        v = h.get("alignvar_edge") or (h.get("imported_by") or {}).get("alignvar_edge")
        if v:
            versions.setdefault(str(v), []).append(who(r))
    if len(versions) > 1:
        out.append("the reports were written by different alignvar-edge versions ("
                   + "; ".join(f"{v}: {', '.join(w)}" for v, w in sorted(versions.items()))
                   + "): how a figure is measured may differ; re-run with one version for like-for-like rows")
    out += runtime_warnings(parts, who)
    hosts = [r for r in parts if not _device_report(r)]
    # the photographs fidelity was measured on: by their content where every report records it (one
    # folder under two paths is the same; two folders under one relative path are not), else the path
    hashed = all(_setting(r, "fidelity_tiles_sha256") for r in hosts)
    for key in _COMPARED_SETTINGS:
        if key == ("images" if hashed else "fidelity_tiles_sha256"):
            continue
        # a device report has only the timing settings, where it records them (trtexec's: none)
        seen = [(who(r), _setting(r, key)) for r in hosts] + [
            (who(r), _setting(r, key)) for r in parts
            if _device_report(r) and key in _DEVICE_SETTINGS and _setting(r, key) is not None]
        timed = {repr(v) for _, v in seen if v is not None}
        if key in _TIMING_SETTINGS and len(timed) <= 1:
            continue              # only a timing some reports skipped: one line below, not one per setting
        if len({repr(v) for _, v in seen}) > 1:
            out.append(f"setting '{key}' differs: " + ", ".join(f"{k}={_short(v)}" for k, v in seen)
                       + "; re-run with the same settings for like-for-like rows")
    for key, what, flag in (("image_lr", "whole images", "--image-size"),
                            ("folder_images", "folders", "--folder-images")):
        skipped = [who(r) for r in hosts if _setting(r, key) is None]
        if skipped and len(skipped) < len(hosts):
            out.append(f"{', '.join(skipped)} did not time {what} ({flag}): those cells stay empty")
    devices = [who(r) for r in parts if _device_report(r)]
    if devices and hosts:
        out.append(f"{', '.join(devices)}: device report(s), timed without PyTorch (engines one at a time, "
                   "or trtexec): no eager, peak, whole-image or PSNR-vs-HR cells")
    for r in parts:
        load = shared_load(r["host"])
        if load:
            threads = (r.get("settings") or {}).get("threads")
            out.append(f"{who(r)} ran on a shared machine ({load_words(load)})"
                       + (f" at {threads} threads: its ratios against eager PyTorch are flattered; "
                          "re-run it with --threads 1" if flattered(r) else ": its absolute times are inflated"))
    return out


def runtime_packages() -> dict[str, str]:
    """The package each backend's engines run on (its Backend's distribution), as a host's `tools` names
    it (its `backends` name the backend)."""
    from alignvar_edge import recipes, runtimes
    return {b: runtimes.get_backend(b).distribution for b in recipes.BACKENDS}


def runtime_versions(report: dict[str, Any]) -> dict[str, str]:
    """{package: version} of each runtime a report's timed rows ran on, as its host block records it
    (a trtexec report's TensorRT: the log's); a runtime whose version was not recorded is left out."""
    host, settings = report["host"], report.get("settings") or {}
    backends, tools, trtexec = _block(host, "backends"), _block(host, "tools"), _block(settings, "trtexec")
    ran = {e["backend"] for e in report["engines"] if e["status"] == "ok"}
    out = {}
    for backend, package in runtime_packages().items():
        if backend not in ran:
            continue
        version = ((backend == "tensorrt" and trtexec.get("tensorrt_version"))
                   or _block(backends, backend).get("version") or tools.get(package))
        if version:
            out[package] = str(version)
    return out


def _runtime_runs(report: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...] | None, str | None]]:
    """(package, version, platform, device kind) of each runtime a report's timed rows ran on, once
    per kind of device its engines ran on there (`runtime_versions`, `_platform`, `device_kind`)."""
    versions, platform, packages = runtime_versions(report), _platform(report), runtime_packages()
    kinds = {(packages[e["backend"]], device_kind(e["backend"], e.get("device"))) for e in report["engines"]
             if e["status"] == "ok" and packages.get(e["backend"]) in versions}
    return [(package, versions[package], platform, kind) for package, kind in sorted(kinds, key=repr)]


def _platform(report: dict[str, Any]) -> tuple[str, ...] | None:
    """Which releases of a runtime a report's machine could run: a Jetson's are those of its JetPack,
    another machine's those built for its OS and CPU architecture; None where not recorded (a
    trtexec log imported elsewhere)."""
    host = report["host"]
    if host.get("jetson"):
        return ("Jetson",)
    system, arch = (host.get("os") or {}).get("system"), (host.get("cpu") or {}).get("arch")
    return (str(system), str(arch)) if system and arch else None


def _release(version: str) -> str:
    """A version without its local tag ('2.13.0+cpu' -> '2.13.0'): the same release, built for another device."""
    return version.split("+", 1)[0]


def _release_groups(parts: list[dict[str, Any]], who: Callable[[dict[str, Any]], str]
                    ) -> list[tuple[str, tuple[str, ...], str | None, list[tuple[str, str]]]]:
    """(package, platform, device kind, [(report as `who` names it, version)]) for each group of reports
    of one model (rows are compared within a model), platform and kind of device whose engines ran
    other releases of one runtime."""
    seen: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
    for r in parts:
        for package, version, platform, kind in _runtime_runs(r):
            if platform is not None:
                seen.setdefault((package, platform, kind, r["model"]["name"]), []).append((who(r), version))
    return [(package, platform, kind, ran) for (package, platform, kind, _), ran in seen.items()
            if len({_release(v) for _, v in ran}) > 1]


def runtime_warnings(parts: list[dict[str, Any]], who: Callable[[dict[str, Any]], str]) -> list[str]:
    """One line per runtime whose release differs between reports of one platform and kind of device
    (a runtime's version changes its kernels and fusions, so every figure of the engines it ran):
    there the same release could have run. Across platforms (a Jetson's torch and TensorRT are its
    JetPack's) or kinds of device (torch's CPU and CUDA builds) `runtime_notes` says it once."""
    return [f"runtime '{package}' differs on one platform ({' '.join(platform)}, {kind or 'device'} engines): "
            + ", ".join(f"{k}={v}" for k, v in ran) + "; re-run with the same versions for like-for-like rows"
            for package, platform, kind, ran in _release_groups(parts, who)]


def runtime_notes(parts: list[dict[str, Any]]) -> list[str]:
    """One line naming the runtimes whose versions differ between the reports where no warning of
    `runtime_warnings` names them: each device's line in the merged Markdown names its own."""
    versions: dict[str, set[str]] = {}
    for r in parts:
        for package, version in runtime_versions(r).items():
            versions.setdefault(package, set()).add(version)
    warned = {group[0] for group in _release_groups(parts, lambda r: r["label"])}
    differ = [p for p, v in versions.items() if len(v) > 1 and p not in warned]
    if not differ:
        return []
    return [f"the devices ran other versions of {', '.join(differ)}, on other platforms or kinds of device (each "
            "device's line names its own): a figure includes its runtime's version"]


def _block(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """`parent[key]` where it is an object, else {} (a report that does not record it)."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _runtime_words(report: dict[str, Any]) -> str:
    """'; torch 2.13.0, onnxruntime 1.32.0': the runtimes a report's rows ran on ('' where none is recorded)."""
    versions = runtime_versions(report)
    return "; " + ", ".join(f"{p} {v}" for p, v in versions.items()) if versions else ""


def _short(value: Any) -> Any:
    """A setting as a warning names it: a hash by its first 12 hex digits."""
    return f"{value[:12]}…" if isinstance(value, str) and len(value) == 64 else value


def _weights_line(name: str, reports: list[dict[str, Any]]) -> str | None:
    """Whether the reports of one model ran the same weights, by what each records: the state-dict
    hash (the same checkpoint copied to another path is the same weights), else, where every report
    was written before the hash, the parameter count and where the weights were loaded from. None
    where they agree; one line where they differ, or where nothing recorded can tell (a report
    without the hash beside one with it included)."""
    models = [r["model"] for r in reports]
    # reports before the hash wrote a bundled checkpoint as 'checkpoint NAME', without '(bundled)'
    sources = [re.sub(r" \(bundled\)$", "", str(m.get("source"))) for m in models]
    listed = "; ".join(sorted({str(m.get("source")) for m in models}))
    hashes = {m["weights_sha256"] for m in models if m.get("weights_sha256")}
    params = {(m.get("parameters") or {}).get("inference") for m in models} - {None}
    # a preset's seed is its weights: two preset sources differ
    presets = len(set(sources)) > 1 and all(s.startswith("preset ") for s in sources)
    if len(hashes) > 1 or len(params) > 1 or presets:
        return (f"model {name} comes from different weights ({listed}): fidelity and speed-ups are not "
                "comparable across these reports")
    unhashed = [r["label"] for r in reports if not r["model"].get("weights_sha256")]
    # reports without the hash (older ones) are taken as the same weights where they name one source;
    # beside a hash, a source and parameter count prove nothing: one name and size can hold other
    # weights (the bundled model saved again in fp16, a checkpoint retrained in place)
    if not unhashed or (not hashes and len(set(sources)) == 1):
        return None
    why = ("and a source and parameter count cannot stand for the weights hash the others record (one checkpoint "
           "name can hold other weights: a model saved again in place)" if hashes
           else "and no source another report names")
    return (f"model {name}: whether the reports ran the same weights cannot be told ({listed}): "
            f"{', '.join(unhashed)} recorded no weights hash (an older report) {why}; compare fidelity and "
            "speed-ups across these reports with care")


# the settings a device report (`bench --no-reference`, `bench trtexec`) has
_DEVICE_SETTINGS = ("threads", "runs", "duration_s", "warmup")


def _device_report(report: dict[str, Any]) -> bool:
    return (report.get("settings") or {}).get("reference") == DEVICE_REFERENCE


# settings of the whole-image and folder timings: None where a report did not time them
_TIMING_SETTINGS = ("image_lr", "image_runs", "image_overlap", "folder_images", "folder_lr")


def _setting(report: dict[str, Any], key: str) -> Any:
    settings = report.get("settings") or {}
    value = settings.get(key)
    if key == "image_overlap" and value is None and (settings.get("image_lr") or settings.get("folder_images")):
        # reports before the overlap used was recorded: None meant the default, a quarter tile
        return default_overlap(report["model"]["tile"]["lr"])
    return value


def _what_ran(r: dict[str, Any]) -> tuple[Any, ...]:
    """An engine row's identity across reports: backend, built precision, batch and device kind."""
    return (r["backend"], r.get("built_precision") or r["precision"], r.get("batch"),
            device_kind(r["backend"], r.get("engine_device")))


def _model_key(merged_rows: list[dict[str, Any]]) -> Any:
    """(model, weights hash) of a row; the hash only where one model name has several recorded."""
    hashes: dict[str, set[str]] = {}
    for r in merged_rows:
        if r.get("weights_sha256"):
            hashes.setdefault(r["model"], set()).add(r["weights_sha256"])
    return lambda r: (r["model"], r.get("weights_sha256") if len(hashes.get(r["model"], ())) > 1 else None)


def _identities(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(model and weights, what ran) of each merged row: the engine x device row it lines up in."""
    model_of = _model_key(rows)
    return [(model_of(r), _what_ran(r)) for r in rows]


def _kinds_per_device(rows: list[dict[str, Any]], ident: list[tuple[Any, ...]]
                      ) -> dict[tuple[Any, ...], list[str]]:
    """The labels of the timed engines of each (device, model and weights, what ran)."""
    kinds: dict[tuple[Any, ...], list[str]] = {}
    for r, i in zip(rows, ident):
        if r["status"] == "ok":
            kinds.setdefault((r["device"], *i), []).append(r["label"])
    return kinds


def lineup_keys(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The engine x device row each merged row belongs to: the same engine (what ran, of the same
    model and weights) lines up whatever its label on each device; one label that names different
    engines gives a row each. A device with two engines of one identity tells them apart by label.
    An engine that could not run (no batch or device recorded) joins the row of its backend and
    precision that carries its label, or the only such row; else it gets a row of its own."""
    ident = _identities(rows)
    twice = {at[1:] for at, labels in _kinds_per_device(rows, ident).items() if len(labels) > 1}
    keys: list[tuple[Any, ...]] = [(*i, r["label"] if i in twice else None) if r["status"] == "ok" else ()
                                   for r, i in zip(rows, ident)]
    labels: dict[tuple[Any, ...], set[str]] = {}
    devices: dict[tuple[Any, ...], set[str]] = {}
    for r, k in zip(rows, keys):
        if k:
            labels.setdefault(k, set()).add(r["label"])
            devices.setdefault(k, set()).add(r["device"])
    for n, (r, (model, (backend, precision, _, _))) in enumerate(zip(rows, ident)):
        if keys[n]:
            continue
        fits = [k for k in labels if k[0] == model and k[1][0] == backend and r["device"] not in devices[k]
                and (precision is None or k[1][1] == precision)]
        named = [k for k in fits if r["label"] in labels[k]]
        keys[n] = named[0] if named else fits[0] if len(fits) == 1 else (model, (backend, precision, None, None),
                                                                          r["label"])
    return keys


def by_label_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per device that timed several engines of one kind (backend, precision, batch, device
    kind) where another device timed that kind too: `lineup_keys` cannot tell by what ran which of
    them another device's engine is, so those rows line up by label, and an engine under another
    label has a row of its own."""
    kinds = _kinds_per_device(rows, _identities(rows))
    out = []
    for (device, model, what), labels in kinds.items():
        others = [f"{', '.join(lab)} on {d}" for (d, *kind), lab in kinds.items()
                  if kind == [model, what] and d != device]
        if len(labels) > 1 and others:
            backend, precision, batch, on = what
            out.append(f"{model[0]}: {device} timed {len(labels)} engines of one kind ({backend} {precision}, batch "
                       f"{batch}, on {on}): {', '.join(labels)}; rows of that kind line up across the devices by "
                       f"label, not by what ran, so each engine of it on another device ({'; '.join(others)}) "
                       "shares a row only with one of its label")
    return out


def label_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model whose engine labels name different engines (backend, precision, batch,
    device kind) in different reports, saying how they differ: the engine x device tables give each
    its own row."""
    seen: dict[str, dict[str, set[tuple[Any, ...]]]] = {}
    for r, k in zip(rows, lineup_keys(rows)):
        if r["status"] == "ok":
            seen.setdefault(r["model"], {}).setdefault(r["label"], set()).add(k[1])
    out = []
    for model, by_label in seen.items():
        differ = []
        for label, whats in by_label.items():
            if len(whats) > 1:
                parts = [f"{name} {'/'.join(sorted({str(w[i]) for w in whats}))}"
                         for i, name in enumerate(("backend", "precision", "batch", "on")) if len({w[i] for w in whats}) > 1]
                differ.append(f"{label} ({', '.join(parts)})")
        if differ:
            out.append(f"{model}: one label names different engines across the reports, so each has its own row in "
                       f"the engine x device tables: {'; '.join(differ)}")
    return out


def graph_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """One line per engine x device row whose engines ran different graphs (attention form, opset,
    token pruning) on different devices. Rows line up by what ran (`_what_ran`), not by the graph:
    reports written before the graph was recorded have none, and keying on it would split their
    engines from the same engines in newer reports; so the row stays one and the merge says how its
    cells differ."""
    graphs: dict[tuple[Any, ...], dict[str, tuple[Any, ...]]] = {}
    keys = lineup_keys(rows)
    for r, k in zip(rows, keys):
        graph = (r.get("attention"), r.get("opset"), tuple(r.get("prune") or ()))
        if r["status"] != "ok" or graph == (None, None, ()):
            continue
        graphs.setdefault(k, {})[r["device"]] = graph
    names = _labels(rows, keys)
    out = []
    for k, by_device in graphs.items():
        if len(set(by_device.values())) > 1:
            cells = "; ".join(f"{graph_words({'attention': a, 'opset': o, 'prune': p}) or 'not recorded'} on {d}"
                              for d, (a, o, p) in by_device.items())
            out.append(f"{k[0][0]}: {' / '.join(names[k])} ran different graphs across the devices ({cells}): its "
                       "engine x device cells compare different graphs, not one engine on several devices; "
                       "build every device's engine from one export")
    return out


def _hardware(report: dict[str, Any]) -> tuple[Any, ...] | None:
    """The hardware a report's engines were built and timed on, as far as a build's own choices go:
    the CPU's ISA class (an OpenVINO bf16 or int8 build tries bf16 rungs only where the CPU has bf16
    units, and may keep another), its GPUs and Jetson model; None where none is recorded."""
    host = report["host"]
    gpus = tuple(str(g.get("name")) for g in host.get("gpus") or () if isinstance(g, dict))
    jetson = (host.get("jetson") or {}).get("model")
    found = tuple(str(w) for w in (isa_word(host), *gpus, jetson) if w)
    return found or None


def _by_row(rows: list[dict[str, Any]]) -> tuple[dict[tuple[Any, ...], dict[str, dict[str, Any]]],
                                                 dict[tuple[Any, ...], list[str]]]:
    """The timed engines of each engine x device row by device, and each row's labels (`_labels`)."""
    by: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    keys = lineup_keys(rows)
    for r, k in zip(rows, keys):
        if r["status"] == "ok":
            by.setdefault(k, {})[r["device"]] = r
    return by, _labels(rows, keys)


def _on(values: dict[str, Any]) -> str:
    """'1a2b3c4d5e6f… on A, 7a8b9c0d1e2f… on B': a value per device."""
    return ", ".join(f"{_short(v)} on {d}" for d, v in values.items())


def build_warnings(rows: list[dict[str, Any]], hardware: dict[str, tuple[Any, ...] | None]) -> list[str]:
    """One line per engine x device row whose engines are not one build: built from other graphs
    (`source_sha256`: another export, an export made again otherwise) on any devices, or, where the
    sources agree, written as other files (`files_sha256`) on devices of one hardware class
    (`hardware`: device label -> `_hardware`): another flag, as a plain OpenVINO bf16 build beside
    one made with --no-token-bf16 on two AVX512-BF16 hosts. Files are not compared across hardware
    classes, where a build's own choices differ (OpenVINO's bf16 rungs), nor where a device compiled
    them (a TensorRT plan records none); what each device computed in is `precision_notes`' line.
    What a report did not record (an older report, an engine without a manifest) is not told apart."""
    by_row, names = _by_row(rows)
    out = []
    for k, by_device in by_row.items():
        sources = {d: r["source_sha256"] for d, r in by_device.items() if r.get("source_sha256")}
        differ = [f"built from other graphs: {_on(sources)}"] if len(set(sources.values())) > 1 else []
        classes: dict[tuple[Any, ...], dict[str, str]] = {}
        for d, r in by_device.items():
            if r.get("files_sha256") and (cls := hardware.get(d)):
                classes.setdefault(cls, {})[d] = r["files_sha256"]
        if not differ:           # one source: other files on like hardware come of another flag
            differ = [f"other files on like hardware ({', '.join(map(str, c))}): {_on(files)}"
                      for c, files in classes.items() if len(set(files.values())) > 1]
        if differ:
            out.append(f"{k[0][0]}: {' / '.join(names[k])} is not one build across the devices ({'; '.join(differ)}): "
                       "its engine x device cells do not time one engine on several devices; build every device's "
                       "engine from one export with the same command and flags")
    return out


def precision_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per engine x device row whose engines computed in other precisions on other devices:
    a fact of each device, not another build (OpenVINO computes bf16 from the same files where the
    CPU has bf16 units, f32 where it has none)."""
    by_row, names = _by_row(rows)
    out = []
    for k, by_device in by_row.items():
        computed: dict[str, list[str]] = {}
        for d, r in by_device.items():
            if r.get("compute_precision"):
                computed.setdefault(str(r["compute_precision"]), []).append(d)
        if len(computed) > 1:
            out.append(f"{k[0][0]}: {' / '.join(names[k])} computed in "
                       + "; ".join(f"{p} on {', '.join(ds)}" for p, ds in computed.items()))
    return out


def _labels(rows: list[dict[str, Any]], keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], list[str]]:
    """The labels each engine x device row's engines carry, in report order, each once."""
    names: dict[tuple[Any, ...], list[str]] = {}
    for r, k in zip(rows, keys):
        names.setdefault(k, [])
        if r["label"] not in names[k]:
            names[k].append(r["label"])
    return names


def lineup(merged: dict[str, Any], key: str = "img_mps") -> list[list[str]]:
    """Engine x device: one row per engine (what ran, see `lineup_keys`), one column per device,
    cells `key`; an engine that could not run on a device says so (unavailable / failed)."""
    rows = merged["rows"]
    devices = list(dict.fromkeys(r["device"] for r in rows))
    cells: dict[tuple[Any, ...], dict[str, str]] = {}
    keys = lineup_keys(rows)
    for r, k in zip(rows, keys):
        cells.setdefault(k, {})[r["device"]] = figure_cell(key, r.get(key)) if r["status"] == "ok" else r["status"]
    names = _labels(rows, keys)
    table = [["model", "engine", "precision", "batch", "on", *devices]]
    body = []
    for k, by in cells.items():
        backend, precision, batch, kind = k[1]
        body.append([k[0][0], " / ".join(names[k]), str(precision or "–"), str(batch or "–"), kind or "–",
                     *(by.get(d, "–") for d in devices)])
    return table + sorted(body)


MERGED_COLUMNS = [("device", "device"), ("model", "model"), ("engine", "label"), ("precision", "precision"),
                  ("batch", "batch"), ("graph", "graph"),
                  ("p50 ms/tile", "p50"), ("ms/MP", "ms_per_mp"), ("tiles/s", "tiles_per_s"),
                  ("% peak", "roofline"), ("vs eager", "speedup"),
                  ("image MP/s", "img_mps"), ("image vs eager", "img_speedup"), ("tokens", "tokens"),
                  ("PSNR-Y/HR dB", "psnr_hr"), ("mem MB", "mem"), ("size MB", "size")]


def merge_markdown(merged: dict[str, Any], plot: str | None = None) -> str:
    table = [[h for h, _ in MERGED_COLUMNS]]
    for r in sorted(merged["rows"], key=lambda r: (r["model"], r["device"], r["p50"] or float("inf"))):
        if r["status"] != "ok":
            table.append([r["device"], r["model"], r["label"], r["precision"] or "–",
                          f"{r['status']}: {r['reason']}"] + [""] * (len(MERGED_COLUMNS) - 5))
        else:
            table.append([str(r[k]) if k in ("device", "model") else figure_cell(k, r[k]) for _, k in MERGED_COLUMNS])
    lines = ["# alignvar-edge benchmarks across devices", "",
             f"{len(merged['reports'])} report(s), schema version {merged['schema_version']}.", ""]
    for r in merged["reports"]:
        best = (r["summary"] or {}).get("best_cpu")
        lines.append(f"- **{r['label']}**: {host_words(r)}; {threads_words(r)}{_runtime_words(r)}; peak "
                     f"{figure_cell('gflops', (r.get('peak') or {}).get('gflops'))} GFLOP/s; "
                     f"model {r['model']['name']}; {r['created']}"
                     + (f"; best CPU engine {best['label']}{units_words(best)} {best['speedup_vs_eager']:.2f}x eager" if best else ""))
    lines += ["", markdown_table(table)]
    if merged.get("warnings"):
        lines += ["", "**Not like for like:**", "", *(f"- {w}" for w in merged["warnings"])]
    if merged.get("notes"):
        lines += ["", "**Notes:**", "", *(f"- {n}" for n in merged["notes"])]
    # ms per megapixel first: the one figure every report has (a device report has no eager)
    lineups = [("ms_per_mp", "p50 ms per SR megapixel"),
               ("speedup", "speed-up per tile vs that device's PyTorch eager"),
               ("img_mps", "whole-image SR MP/s"), ("img_speedup", "whole image vs that device's eager")]
    if any(r.get("folder_mps") for r in merged["rows"]):
        lineups += [("folder_mps", "SR MP/s of a folder of small images"),
                    ("folder_speedup", "folder vs that device's eager")]
    for key, title in lineups:
        lines += ["", f"## Engine x device: {title}", "", markdown_table(lineup(merged, key))]
    if plot:
        lines += ["", markdown_image("latency per megapixel across devices", plot)]
    return "\n".join(lines) + "\n"


def plot_rows(merged: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows the plot draws (timed engines), or an InputError where there is none: called before
    any output is written, so --plot fails alone, not after --out."""
    rows = [r for r in merged["rows"] if r["status"] == "ok" and r["ms_per_mp"]]
    if not rows:
        raise InputError("--plot: no engine of these reports was timed (every row is unavailable or failed), "
                         "so there is nothing to plot; leave out --plot")
    return sorted(rows, key=lambda r: (r["device"], r["model"], r["ms_per_mp"]))


def plot_merged(merged: dict[str, Any], path: str | os.PathLike[str], recheck: Callable[[], None] | None = None
                ) -> Path:
    """One horizontal bar per (device, engine): p50 ms per SR megapixel, log scale, colour per device."""
    plt = pyplot()

    rows = plot_rows(merged)
    devices = list(dict.fromkeys(r["device"] for r in rows))
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(4, len(rows)) + 1.5))
    ax.barh(range(len(rows)), [r["ms_per_mp"] for r in rows],
            color=[cmap(devices.index(r["device"]) % 10) for r in rows])
    ax.set_yticks(range(len(rows)), [f"{r['label']} · {r['model']}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per megapixel of SR output (p50, log)")
    plain_log_ticks(ax)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=cmap(i % 10), label=d) for i, d in enumerate(devices)],
              fontsize=7, loc="lower right")
    # an engine that could not run has no bar: it is named under the plot, not left out unsaid
    untimed = [f"{r['label']} · {r['model']} on {r['device']}: {r['status']}" for r in merged["rows"]
               if r["status"] != "ok"]
    if untimed:
        ax.set_title("no bar (not timed): " + "; ".join(untimed), fontsize=6, wrap=True, loc="left")
    fig.tight_layout()
    return save_figure(fig, path, recheck)
