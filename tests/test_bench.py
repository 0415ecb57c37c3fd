"""Benchmark reports: schema, merge, unavailable backends, fingerprint, statistics, CLI errors.

One real (tiny) benchmark of the micro model runs once per module on its cached ONNX export; the
other tests read or edit that report. Keep runs minimal: the point is the report, not the numbers.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _bench_reports import another_run
from _runtime_fixtures import sharp_model
from alignvar_edge import cli, runtimes
from alignvar_edge.bench.host import fingerprint
from alignvar_edge.bench.image import FOLDER_LR, IMAGE_LR
from alignvar_edge.bench.integrity import made_again
from alignvar_edge.bench.memory import PeakRSS
from alignvar_edge.bench.merge import merge_reports
from alignvar_edge.bench.runner import BenchOptions, run_bench
from alignvar_edge.bench.schema import SCHEMA_VERSION, ReportSchemaError, check_report, read_report, write_json
from alignvar_edge.bench.stats import latency_summary, percentiles
from alignvar_edge.bench.subjects import parse_spec
from alignvar_edge.errors import InputError

QUICK = BenchOptions(runs=2, warmup=0, tiles=2, threads=1, peak_n=256, profile_runs=1, image_size=16, image_runs=2)


@pytest.fixture(scope="module")
def kit(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TensorRT build kit (what `build --target tensorrt` writes where TensorRT is absent)."""
    if runtimes.get_backend("tensorrt").is_available()[0]:
        pytest.skip("TensorRT is installed here: build writes an engine, not a kit")
    return runtimes.build(micro_export, "tensorrt", "fp16", out=tmp_path_factory.mktemp("trt") / "kit")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Core ML package of the micro model (coremltools converts on Linux; only prediction needs macOS)."""
    if sys.platform == "darwin":
        pytest.skip("Core ML runs on macOS: the package would be timed, not reported unavailable")
    return runtimes.build("in-memory", "coreml", out=tmp_path_factory.mktemp("cm") / "eng", model=sharp_model("micro"))


@pytest.fixture(scope="module")
def report(micro_export: Path, kit: Path, package: Path) -> dict[str, Any]:
    engines = [str(micro_export), f"ov=openvino:{micro_export}", str(kit), f"cml={package}"]
    # and a folder of five 8x8 LR thumbnails: one micro tile each
    return run_bench(engines, reference=sharp_model("micro"),
                     options=dataclasses.replace(QUICK, folder_images=5, folder_size=8))


def _entry(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(e for e in report["engines"] if e["label"] == label)


def test_report_has_schema_engines_baselines_and_figures(report: dict[str, Any], tmp_path: Path) -> None:
    check_report(report)
    assert report["schema_version"] == SCHEMA_VERSION and report["kind"] == "bench"
    labels = [e["label"] for e in report["engines"]]
    assert labels[0] == "pytorch-eager" and labels[-1] == "bicubic" and "onnxruntime-fp32" in labels
    ort = _entry(report, "onnxruntime-fp32")
    assert ort["status"] == "ok" and ort["reason"] is None
    lat = ort["latency"]
    assert lat["runs"] == 2 and "p50" in lat["per_tile_ms"] and "p90" not in lat["per_tile_ms"] and lat["p90_omitted"]
    # two runs cannot estimate a 99th percentile: omitted, with the reason; the raw times are kept
    assert "p99" not in lat["per_tile_ms"] and "--runs 100" in lat["p99_omitted"]
    assert len(lat["raw_call_ms"]) == 2 and min(lat["raw_call_ms"]) == lat["per_call_ms"]["min"]
    assert lat["per_megapixel_ms"]["p50"] == pytest.approx(lat["per_tile_ms"]["p50"] / (32 * 32 / 1e6), rel=1e-3)
    assert lat["gflops_achieved"] > 0 and 0 < lat["roofline_fraction"]
    # an fp32 export of the same weights chooses PyTorch's tokens exactly
    assert ort["fidelity"]["vs_reference"]["token_agreement"] == 1.0 and ort["meets_fidelity"] is True
    assert ort["fidelity"]["vs_hr"]["psnr_y_db"] > 5 and ort["artifact_bytes"] > 0
    assert ort["memory"]["method"] and "load_rss_mb" in ort["memory"]
    eager = _entry(report, "pytorch-eager")
    assert eager["speedup_vs_eager"] == 1.0 and eager["fidelity"]["vs_reference"]["psnr_y_db"] == float("inf")
    bic = _entry(report, "bicubic")
    assert bic["fidelity"]["vs_reference"]["token_agreement"] is None and "gflops_achieved" not in bic["latency"]
    m = report["model"]
    assert m["parameters"]["inference"] > 0 and m["flops_per_tile"]["total"] == sum(m["flops_per_stage"].values())
    assert report["peak"]["gflops"] > 0 and report["summary"]["best_cpu"] is not None
    assert report["peak"]["in_run"]["samples"] == 2                 # one GEMM per timed round
    assert report["peak"]["gflops"] == report["peak"]["best_gflops"] >= report["peak"]["in_run"]["best_gflops"]
    assert {r["stage"] for r in report["profile"]["groups"]} == {"conditioning", "scales", "decoder"}
    # JSON round trip through the atomic writer (inf becomes "inf")
    path = write_json(tmp_path / "r.json", report)
    assert read_report(path)["engines"][0]["fidelity"]["vs_reference"]["psnr_y_db"] == "inf"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_host_and_device_reports_share_one_envelope(report: dict[str, Any], micro_export: Path,
                                                   tmp_path: Path) -> None:
    """`bench merge` reads host and device reports alike: the same parts, model and summary keys
    (schema.new_report / model_block build both), every gate through one rule (meets_fidelity)."""
    from alignvar_edge.bench.device import bench_engine_dir
    ort = runtimes.build(micro_export, "onnxruntime", out=tmp_path / "ort", threads=1)     # golden outputs in it
    device = bench_engine_dir([str(ort)], runs=1, warmup=0, threads=1, min_token_agreement=1.0)
    check_report(device)
    assert list(device) == list(report) and list(device["model"]) == list(report["model"])
    assert device["model"]["tile"] == report["model"]["tile"] and device["kind"] == report["kind"] == "bench"
    assert set(report["summary"]) >= set(device["summary"])
    (row,) = device["engines"]
    assert row["meets_fidelity"] is (row["fidelity"]["vs_reference"]["token_agreement"] >= 1.0)
    assert device["settings"]["min_token_agreement"] == device["summary"]["min_token_agreement"] == 1.0


def test_unavailable_backends_are_reported_not_faked(report: dict[str, Any]) -> None:
    trt = _entry(report, "tensorrt-fp16")
    assert trt["status"] == "unavailable" and "TensorRT build kit, not an engine" in trt["reason"]
    assert "onnxruntime:" in trt["reason"]          # where its ONNX does run
    assert "latency" not in trt and "fidelity" not in trt and "speedup_vs_eager" not in trt
    cml = _entry(report, "cml")
    assert cml["status"] == "unavailable" and "macOS" in cml["reason"] and "latency" not in cml
    assert set(report["summary"]["unavailable"]) >= {"tensorrt-fp16", "cml"}
    from alignvar_edge.bench.render import report_markdown, terminal_table
    assert "unavailable: " in report_markdown(report) and "unavailable: " in terminal_table(report)


def test_a_staged_export_that_is_no_folder_is_said_as_what_it_is(tmp_path: Path) -> None:
    """--staged said 'is not a directory' for a path that does not exist."""
    with pytest.raises(InputError, match=r"^staged='.*absent' does not exist; pass a staged export"):
        run_bench([], options=BenchOptions(staged=str(tmp_path / "absent")))
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputError, match=r"^staged='.*afile' is a file, not a folder; pass a staged export"):
        run_bench([], options=BenchOptions(staged=str(tmp_path / "afile")))


def test_fingerprint_fields() -> None:
    fp = fingerprint()
    cpu = fp["cpu"]
    assert cpu["model"] and cpu["logical_cores"] >= 1 and cpu["usable_cores"] >= 1
    assert isinstance(cpu["isa"], list) and fp["os"]["system"] and fp["python"]
    if cpu["arch"] in ("x86_64", "AMD64"):
        assert "sse4_2" in cpu["isa"] or "avx" in cpu["isa"]
    assert isinstance(fp["gpus"], list) and (fp["jetson"] is None or "power_mode" in fp["jetson"])
    assert fp["backends"]["onnxruntime"]["available"] and fp["backends"]["onnxruntime"]["version"]
    assert set(fp["backends"]) == set(runtimes.BACKENDS) and "torch" in fp["tools"]


def _idle(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of a report as if run on an idle machine: a busy one is a merge warning of its own."""
    r = copy.deepcopy(report)
    r["host"]["load_average"] = r["host"]["load_average_end"] = None
    return r


def test_merge_table_plot_and_schema_refusal(report: dict[str, Any], tmp_path: Path) -> None:
    a, b = _idle(report), another_run(_idle(report))
    b["label"] = "jetson-orin (MAXN)"
    pa, pb = write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)
    merged = merge_reports([pa, pb])
    assert merged["kind"] == "merged" and len(merged["reports"]) == 2 and merged["warnings"] == []
    assert len(a["model"]["weights_sha256"]) == 64                  # the reference's state-dict hash
    assert {r["device"] for r in merged["rows"]} == {a["label"], "jetson-orin (MAXN)"}
    rc = cli.main(["bench", "merge", str(pa), str(pb), "--out", str(tmp_path / "m.json"),
                   "--md", str(tmp_path / "m.md"), "--plot", str(tmp_path / "m.png")])
    assert rc == 0 and (tmp_path / "m.png").stat().st_size > 1000
    md = (tmp_path / "m.md").read_text()
    assert "jetson-orin (MAXN)" in md and "unavailable: " in md and "m.png" in md
    # a merged report merges again (as its parts); a re-run on the same device gets '#2'
    rerun = another_run(a, 3.0)
    rerun["created"] = "2030-01-01T00:00:00+00:00"
    again = merge_reports([tmp_path / "m.json", write_json(tmp_path / "rerun.json", rerun)])
    assert len(again["reports"]) == 3
    assert {r["device"] for r in again["rows"]} == {a["label"], f"{a['label']} #2", "jetson-orin (MAXN)"}
    # the same report given twice (a file, its copy, a merged report holding it) is merged once, said once
    (tmp_path / "copy.json").write_bytes(pa.read_bytes())
    once = merge_reports([tmp_path / "m.json", pa, tmp_path / "copy.json", pb])
    assert len(once["reports"]) == 2 and len(once["rows"]) == len(merged["rows"])
    said = [w for w in once["warnings"] if "merged once" in w]
    assert len(said) == 3 and said[0].startswith(f"{pa} repeats the report of {a['label']}"), said
    # one device reporting two models is one device: no suffix
    c = another_run(_idle(report), 3.0)
    c["model"]["name"] = "d16-random"
    two = merge_reports([pa, write_json(tmp_path / "c.json", c)])
    assert {(r["device"], r["model"]) for r in two["rows"]} == {(a["label"], a["model"]["name"]),
                                                                 (a["label"], "d16-random")}
    assert len(two["warnings"]) == 1 and "different models" in two["warnings"][0]
    # same model from other weights, at another thread count: both said, naming the reports
    d = copy.deepcopy(b)
    d["model"]["source"], d["settings"]["threads"] = "checkpoint retrained", 8
    d["model"]["weights_sha256"] = "0" * 64
    warned = merge_reports([pa, write_json(tmp_path / "d.json", d)])["warnings"]
    assert any("different weights" in w for w in warned)
    assert any(w.startswith("setting 'threads' differs") and "jetson-orin (MAXN)=8" in w for w in warned)
    # rows line up by engine x device: one column per device
    from alignvar_edge.bench.merge import lineup
    grid = lineup(merged, "speedup")
    assert grid[0] == ["model", "engine", "precision", "batch", "on", a["label"], "jetson-orin (MAXN)"]
    ort_row = next(r for r in grid if r[1] == "onnxruntime-fp32")
    assert ort_row[5] == ort_row[6] == f"{_entry(report, 'onnxruntime-fp32')['speedup_vs_eager']:.2f}x"
    assert "## Engine x device: whole-image SR MP/s" in md
    old = copy.deepcopy(report)
    old["schema_version"] = SCHEMA_VERSION + 1
    po = write_json(tmp_path / "old.json", old)
    with pytest.raises(ReportSchemaError, match="schema version"):
        merge_reports([pa, po])


def _who(argv: list[str]) -> str:
    """The command an error line names: the verb, or bench's nested verb (`bench merge`)."""
    nested = argv[0] == "bench" and len(argv) > 1 and argv[1] in ("merge", "trtexec")
    return "alignvar-edge " + " ".join(argv[:2] if nested else argv[:1])


def test_cli_errors_are_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             report: dict[str, Any]) -> None:
    cases = [
        ["bench", str(tmp_path / "missing"), "--out", str(tmp_path / "r.json")],
        ["bench", "merge", str(write_json(tmp_path / "x.json", {"schema": "other"})), "--md", str(tmp_path / "m.md")],
        ["bench", "merge", str(tmp_path / "nothing.json"), "--md", str(tmp_path / "m.md")],
        ["bench", "bicubic"],                                                   # no --out
        ["deploy", "--preset", "micro", "--precision", "int4", "--out", str(tmp_path / "d")],
        ["deploy", "--preset", "micro", "--targets", "tpu", "--out", str(tmp_path / "d")],
    ]
    bad_version = copy.deepcopy(report)
    bad_version["schema_version"] = 0
    cases.append(["bench", "merge", str(write_json(tmp_path / "v0.json", bad_version)), "--md", str(tmp_path / "m.md")])
    for argv in cases:
        rc = cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert rc != 0, argv
        assert len(err.splitlines()) == 1 and err.startswith(f"{_who(argv)}: error: "), (argv, err)
    assert not (tmp_path / "d").exists() and not (tmp_path / "r.json").exists()


DOC_REPORT = Path(__file__).resolve().parents[1] / "docs" / "results" / "epyc-2core" / "tiny-t1.json"


@pytest.mark.parametrize("edit", [
    lambda r: r.__setitem__("engines", None), lambda r: r.__setitem__("engines", ["label backend kind status"]),
    lambda r: r.__setitem__("engines", [1]), lambda r: r["model"].pop("name"),
    lambda r: r.__setitem__("model", "alignvar-tiny"), lambda r: r["host"].pop("os"),
    lambda r: r.__setitem__("settings", []),
    # a figure merge sorts on, not a number (it was a TypeError traceback); an ok entry without its timing
    lambda r: r["engines"][1]["latency"]["per_tile_ms"].__setitem__("p50", "fast"),
    lambda r: r["engines"][1].pop("latency"), lambda r: r["engines"][1].__setitem__("speedup_vs_eager", "2x"),
])
def test_merge_refuses_a_hand_edited_report_in_one_line(edit: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    good = json.loads(DOC_REPORT.read_text())
    bad = copy.deepcopy(good)
    edit(bad)
    pb = write_json(tmp_path / "bad.json", bad)
    rc = cli.main(["bench", "merge", str(write_json(tmp_path / "good.json", good)), str(pb),
                   "--out", str(tmp_path / "m.json"), "--md", str(tmp_path / "m.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("alignvar-edge bench merge: error: ") and str(pb) in err and "hand-edited" in err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("text,says", [("[" * 100000 + "]" * 100000, "is nested too deeply to read"),
                                       ('{"schema_version": ' + "9" * 5000 + "}", "holds an integer of more than")])
def test_merge_refuses_a_hostile_report_or_out_in_one_line(text: str, says: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A report nested 100,000 deep (json's RecursionError) or holding an integer longer than Python
    converts was a traceback, both as a report to merge and as the --out bench decides it may replace."""
    good = write_json(tmp_path / "good.json", json.loads(DOC_REPORT.read_text()))
    hostile = tmp_path / "hostile.json"
    hostile.write_text(text)
    for argv, refusal in (([str(good), str(hostile), "--out", str(tmp_path / "m.json")], f"{hostile} is not valid "
                           f"JSON (it {says}"),
                          ([str(good), str(good), "--out", str(hostile)], f"--out {hostile}: the file exists and "
                           "is not a bench report")):
        rc = cli.main(["bench", "merge", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and refusal in err, err
    assert hostile.read_text() == text and not (tmp_path / "m.json").exists()


def test_merge_tells_weights_apart_by_their_hash_not_their_path(tmp_path: Path) -> None:
    a = json.loads(DOC_REPORT.read_text())
    a["model"]["weights_sha256"] = "1" * 64
    b = copy.deepcopy(a)
    b["label"], b["model"]["source"] = "jetson", "checkpoint /home/me/alignvar-tiny"   # a copy, elsewhere
    pa, pb = write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)
    assert not any("different weights" in w for w in merge_reports([pa, pb])["warnings"])
    b["model"]["source"], b["model"]["weights_sha256"] = a["model"]["source"], "2" * 64  # retrained in place
    warned = merge_reports([pa, write_json(tmp_path / "b.json", b)])["warnings"]
    assert any("alignvar-tiny comes from different weights" in w for w in warned), warned
    del b["model"]["weights_sha256"]            # an older report from another path: it cannot be told
    b["model"]["source"] = "checkpoint /home/me/alignvar-tiny"
    warned = merge_reports([pa, write_json(tmp_path / "b.json", b)])["warnings"]
    assert not any("different weights" in w for w in warned), warned
    assert [w for w in warned if "same weights cannot be told" in w] == [
        "model alignvar-tiny: whether the reports ran the same weights cannot be told (checkpoint "
        "/home/me/alignvar-tiny; checkpoint alignvar-tiny): jetson recorded no weights hash (an older report) "
        "and a source and parameter count cannot stand for the weights hash the others record (one checkpoint "
        "name can hold other weights: a model saved again in place); compare fidelity and speed-ups across these "
        "reports with care"]


def test_merge_compares_a_report_without_the_weights_hash_by_what_it_records(tmp_path: Path) -> None:
    # an older report (no hash, its bundled checkpoint written 'checkpoint alignvar-tiny') and a newer
    # one (hash, 'checkpoint alignvar-tiny (bundled)'): one name and parameter count, yet other weights
    # (the bundled model was saved again in fp16 between them), so a source cannot stand for a hash
    old = json.loads((DOC_REPORT.parents[1] / "xeon-amx" / "xeon-tiny-t1.json").read_text())
    new = json.loads((DOC_REPORT.parents[1] / "epyc-zen4-2core" / "b16-engines.json").read_text())
    assert "weights_sha256" not in old["model"] and new["model"]["source"].endswith("(bundled)")
    assert old["model"]["parameters"]["inference"] == new["model"]["parameters"]["inference"]
    po, pn = write_json(tmp_path / "old.json", old), write_json(tmp_path / "new.json", new)
    warned = [w for w in merge_reports([pn, po])["warnings"] if "weights" in w]
    assert len(warned) == 1 and warned[0].startswith(
        "model alignvar-tiny: whether the reports ran the same weights cannot be told") and (
        f"{old['label']} recorded no weights hash" in warned[0]), warned
    # two older reports naming one source are taken as the same weights: nothing else was recorded
    older = copy.deepcopy(old)
    older["label"] = "other"
    assert not [w for w in merge_reports([po, write_json(tmp_path / "older.json", older)])["warnings"]
                if "weights" in w]
    # what the older report records still tells weights apart: its parameter count
    old["model"]["parameters"]["inference"] += 1
    warned = merge_reports([pn, write_json(tmp_path / "old.json", old)])["warnings"]
    assert any(w.startswith("model alignvar-tiny comes from different weights") for w in warned), warned
    # two random-weight presets of other seeds are other weights, hash or not
    a, b = copy.deepcopy(old), copy.deepcopy(old)
    a["model"]["source"], b["model"]["source"] = ("preset tiny, random weights, seed 0",
                                                  "preset tiny, random weights, seed 1")
    b["label"] = "other"
    warned = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])["warnings"]
    assert any("comes from different weights" in w for w in warned), warned


def test_bench_outputs_never_replace_an_input_or_a_file_of_another_kind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)                 # where `--out -` would leave a file named '-'
    a = write_json(tmp_path / "a.json", json.loads(DOC_REPORT.read_text()))
    b = write_json(tmp_path / "b.json", {**another_run(json.loads(DOC_REPORT.read_text())), "label": "other"})
    notes, other, photo = tmp_path / "notes.md", tmp_path / "other.json", tmp_path / "photo.png"
    notes.write_text("my notes\n")
    other.write_text('{"x": 1}\n')
    from PIL import Image
    Image.new("RGB", (50, 40), (200, 120, 40)).save(photo)            # a PNG, but no plot of bench's
    before = {p: p.read_bytes() for p in (a, b, notes, other, photo)}
    merge = ["bench", "merge", str(a), str(b)]
    cases = [merge + ["--md", str(b)],                                  # a report being merged
             merge + ["--out", str(b)], merge + ["--out", str(a)],      # as --out too: it was replaced
             merge + ["--plot", str(photo)],                            # someone's picture
             merge + ["--md", str(notes)], merge + ["--out", str(other)],
             merge + ["--out", str(tmp_path / "m.json"), "--plot", str(notes)],   # not a PNG: nothing written
             merge + ["--out", str(tmp_path / "m.json"), "--md", str(tmp_path / "m.json")],
             merge + ["--out", "-"],                                    # not stdout: a file named '-'
             ["bench", "bicubic", "--out", str(other)]]                 # refused before any measuring
    for argv in cases:
        rc = cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and err.startswith(f"{_who(argv)}: error: --"), (argv, err)
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "m.json").exists()
    assert not (tmp_path / "-").exists()
    # a folder that cannot be written is found before the bench measures for minutes (root may write
    # anywhere, so the read-only folder is what os.access would say of one)
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == ro else real(p, mode, **k))
    assert cli.main(["bench", "bicubic", "--out", str(ro / "r.json")]) == 2
    assert f"--out {ro / 'r.json'}: the folder {ro} is not writable" in capsys.readouterr().err
    # its own earlier outputs are replaced
    outs = ["--out", str(tmp_path / "m.json"), "--md", str(tmp_path / "m.md"), "--plot", str(tmp_path / "m.png")]
    assert cli.main(merge + outs) == 0 and cli.main(merge + outs) == 0
    assert len(read_report(tmp_path / "m.json")["reports"]) == 2


def test_every_printed_figure_names_its_host_isa_and_threads(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from alignvar_edge.bench.render import summary_lines, terminal_table
    a = json.loads(DOC_REPORT.read_text())
    isa = " ".join(a["host"]["cpu"]["isa"])
    head = terminal_table(a).splitlines()[0]
    # the default label is the host in short: the host is said once (not 'on AMD EPYC, 2 cores: AMD EPYC, ...')
    assert head.startswith(f"alignvar-tiny on {a['host']['cpu']['model']}, ") and f"ISA {isa};" in head, head
    assert head.count(a["host"]["cpu"]["model"]) == 1 and head.endswith("; 1 thread(s)"), head
    named = terminal_table({**a, "label": "lab-pc"}).splitlines()[0]          # a label of one's own is kept
    assert named == head.replace("alignvar-tiny on ", "alignvar-tiny on lab-pc: ", 1), named
    # and every column its unit
    columns = terminal_table(a).splitlines()[1]
    assert all(c in columns for c in ("p50 ms/tile", "p99 ms", "PSNR-Y/ref dB", "PSNR-Y/HR dB", "mem MB")), columns
    # a report of 30 runs as this version writes it: no p99, and why; the '–' in its column is explained once
    for e in a["engines"]:
        if e.get("latency"):
            e["latency"]["per_tile_ms"].pop("p99", None)
            e["latency"]["p99_omitted"] = "p99 needs >= 100 runs, this run has 30; pass --runs 100"
    assert "p99 –: p99 needs >= 100 runs, this run has 30; pass --runs 100" in "\n".join(summary_lines(a))
    bound = next(ln for ln in summary_lines(a) if ln.startswith("fp32 roofline bound"))
    assert bound.endswith("for an fp32 engine, 1 thread(s).") and "as measured in this run" in bound, bound
    b = copy.deepcopy(a)
    b["label"], b["settings"]["threads"], b["host"]["cpu"]["isa"] = "xeon", 16, ["avx512_bf16", "amx_bf16"]
    pa, pb = write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)
    # merged, on stdout (no --md) as in Markdown: each device with its ISA and thread count
    assert cli.main(["bench", "merge", str(pa), str(pb), "--out", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert cli.main(["bench", "merge", str(pa), str(pb), "--md", str(tmp_path / "m.md")]) == 0
    for text in (out, (tmp_path / "m.md").read_text()):
        assert f"- **{a['label']}**: " in text and f"ISA {isa}; " in text and "; 1 thread(s); torch " in text
        assert "- **xeon**: " in text and "ISA avx512_bf16 amx_bf16; " in text and "; 16 thread(s); torch " in text
        assert "| p50 ms/tile | ms/MP |" in text and "| PSNR-Y/HR dB |" in text


def test_flags_that_would_oversubscribe_the_cores_or_fill_memory_are_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cores
    bench = ["bench", "alignvar-tiny", "--out", str(tmp_path / "r.json")]
    cases = [(["--threads", str(cores + 1)], f"--threads {cores + 1} is more than the {cores} core(s)"),
             (["--image-size", "100000"], "must be at most 1024 LR px a side, and the folder's images x their "
              "size^2 at most 1024^2 LR pixels (the images are held in memory); got --image-size 100000,"),
             (["--folder-images", "100000"], "at most 1024^2 LR pixels (the images are held in memory); got "
              f"--image-size {IMAGE_LR}, --folder-images 100000 x --folder-size {FOLDER_LR}^2"),
             (["--peak-n", "100000"], "the peak's n from 64 to 8192 (three n x n fp32 matrices are held); got "
              "--profile-runs 3, --peak-n 100000")]
    for flags, said in cases:
        rc = cli.main(bench + flags)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and said in err, (flags, err)
    assert cli.main(["deploy", "--out", str(tmp_path / "d"), "--threads", str(cores + 1)]) == 2
    assert f"--threads {cores + 1} is more than" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "d").exists()


def test_merge_says_once_when_reports_come_from_different_alignvar_edge_versions(tmp_path: Path) -> None:
    a = json.loads(DOC_REPORT.read_text())
    b = another_run(a)                  # a copy would be one measurement, merged once
    b["label"] = "jetson"
    pa = write_json(tmp_path / "a.json", a)
    assert not any("versions" in w for w in merge_reports([pa, write_json(tmp_path / "b.json", b)])["warnings"])
    b["host"]["alignvar_edge"] = "9.9.9"
    warned = [w for w in merge_reports([pa, write_json(tmp_path / "b.json", b)])["warnings"] if "versions" in w]
    assert warned == [f"the reports were written by different alignvar-edge versions (0.1.0: {a['label']}; "
                      "9.9.9: jetson): how a figure is measured may differ; re-run with one version for "
                      "like-for-like rows"]


def test_merge_names_each_devices_runtime_versions_and_warns_where_they_differ(tmp_path: Path) -> None:
    """Reports whose engines ran other torch / onnxruntime / openvino versions merged without a word,
    and the merged Markdown named no runtime version."""
    from alignvar_edge.bench.merge import merge_markdown, runtime_versions
    a = json.loads(DOC_REPORT.read_text())
    b = copy.deepcopy(a)
    b["label"] = "jetson"
    pa = write_json(tmp_path / "a.json", a)
    assert not any("runtime" in w for w in merge_reports([pa, write_json(tmp_path / "b.json", b)])["warnings"])
    b["host"]["backends"]["onnxruntime"]["version"] = "1.30.0"
    # a runtime that only recorded another version, but ran no row there, is no difference
    b["host"]["backends"]["openvino"]["version"] = "2025.0.0"
    for e in b["engines"]:
        if e["backend"] == "openvino":
            e.update(status="unavailable", reason="not here")
    b = made_again(b)                           # its summary without them, as the bench wrote it
    merged = merge_reports([pa, write_json(tmp_path / "b.json", b)])
    assert [w for w in merged["warnings"] if "runtime" in w] == [
        f"runtime 'onnxruntime' differs on one platform (Linux x86_64, cpu engines): {a['label']}=1.32.0, "
        "jetson=1.30.0; re-run with the same versions for like-for-like rows"] and merged["notes"] == []
    md = merge_markdown(merged)
    assert "1 thread(s); torch 2.13.0+cpu, onnxruntime 1.32.0, openvino 2026.4.1; peak" in md, md
    assert "1 thread(s); torch 2.13.0+cpu, onnxruntime 1.30.0; peak" in md, md
    # a Jetson runs the releases of its JetPack: versions that differ from another platform's are
    # said once, in a note, not as a warning per runtime; one release built for another device
    # (a local tag: '+cpu') is no difference at all
    b["host"]["jetson"] = {"model": "NVIDIA Jetson AGX Orin", "l4t_release": "R36.4.3", "power_mode": None}
    b["host"]["backends"]["torch"]["version"] = "2.5.0a0+872d972e41.nv24.08"
    merged = merge_reports([pa, write_json(tmp_path / "b.json", b)])
    assert not [w for w in merged["warnings"] if "runtime" in w], merged["warnings"]
    assert merged["notes"] == ["the devices ran other versions of torch, onnxruntime, on other platforms or kinds "
                               "of device (each device's line names its own): a figure includes its runtime's "
                               "version"]
    assert "**Notes:**\n\n- the devices ran other versions of torch, onnxruntime" in merge_markdown(merged)
    del b["host"]["jetson"]
    b["host"]["backends"]["onnxruntime"]["version"] = "1.32.0"
    b["host"]["backends"]["torch"]["version"] = "2.13.0"
    merged = merge_reports([pa, write_json(tmp_path / "b.json", b)])
    assert not [w for w in merged["warnings"] if "runtime" in w] and len(merged["notes"]) == 1
    # a device report records packages (`tools`), a trtexec report its log's TensorRT
    trtexec = {"host": {"tools": {"torch": "2.11.0", "tensorrt": "8.6.1"}}, "settings": {"trtexec": {
        "tensorrt_version": "10.3.0"}}, "engines": [{"backend": "tensorrt", "status": "ok"},
                                                    {"backend": "torch", "status": "failed"}]}
    assert runtime_versions(trtexec) == {"tensorrt": "10.3.0"}


def test_bench_names_an_engine_path_that_is_not_an_engine_before_looking_for_its_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("hi\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    report = write_json(tmp_path / "r.json", json.loads(DOC_REPORT.read_text()))
    for path, said in ((tmp_path / "notes", "has no manifest.json"), (tmp_path / "broken", "is not valid JSON"),
                       (report, "is a file, not an engine; to merge bench reports run `alignvar-edge bench merge")):
        for extra in ([], ["--no-reference"]):
            rc = cli.main(["bench", str(path), "--out", str(tmp_path / "out.json"), *extra])
            err = capsys.readouterr().err.strip()
            assert rc == 2 and len(err.splitlines()) == 1 and str(path) in err and said in err, (path, err)
    assert not (tmp_path / "out.json").exists()


def test_merge_plot_of_reports_without_a_timed_engine_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a device where every engine was unavailable (a TensorRT kit, a Core ML package off macOS)
    r = json.loads(DOC_REPORT.read_text())
    for e in r["engines"]:
        e.update(status="unavailable", reason="not here")
        e.pop("latency", None)
    pr = write_json(tmp_path / "r.json", made_again(r))
    outs = ["--out", str(tmp_path / "m.json"), "--md", str(tmp_path / "m.md"), "--plot", str(tmp_path / "m.png")]
    assert cli.main(["bench", "merge", str(pr), *outs]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--plot: no engine of these reports was timed" in err, err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("m")]
    assert cli.main(["bench", "merge", str(pr), *outs[:4]]) == 0          # without the plot it merges


@pytest.mark.parametrize("flags", [["--runs", "5"], ["--threads", "1"], ["--no-reference"], ["--label", "x"],
                                   ["--tiles", "2", "--seed", "3"]])
def test_merge_refuses_a_bench_flag_it_would_ignore_in_one_line(flags: list[str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["bench", "merge", str(DOC_REPORT), "--out", str(tmp_path / "m.json"), *flags])
    err = capsys.readouterr().err.strip()
    named = [f for f in flags if f.startswith("--")]
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"alignvar-edge bench merge: error: {', '.join(named)} ") and "bench merge" in err, err
    assert not (tmp_path / "m.json").exists()
    assert cli.main(["bench", "merge", str(DOC_REPORT), "--out", str(tmp_path / "m.json")]) == 0


@pytest.mark.parametrize("mode, flags", [
    ("device", ["--images", "photos"]), ("device", ["--tiles", "2", "--seed", "3"]),
    ("device", ["--reference", "alignvar-tiny"]), ("device", ["--folder-images", "4"]),
    ("device", ["--engine", "x"]), ("trtexec", ["--runs", "5"]), ("host", ["--batch", "4"])])
def test_bench_refuses_a_flag_its_mode_would_ignore_in_one_line(mode: str, flags: list[str], kit: Path,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # the device bench (no PyTorch) and `bench trtexec` read a few of the bench's flags; a host bench
    # does not read trtexec's. Before: --images, --tiles, ... were dropped without a word
    args = {"device": [str(kit), "--no-reference"], "trtexec": ["trtexec", str(tmp_path / "t.log")],
            "host": [str(kit)]}[mode]
    rc = cli.main(["bench", *args, "--out", str(tmp_path / "r.json"), *flags])
    err = capsys.readouterr().err.strip()
    named = [f for f in flags if f.startswith("--")]
    assert rc == 2 and len(err.splitlines()) == 1, err
    who = "alignvar-edge bench trtexec" if mode == "trtexec" else "alignvar-edge bench"
    assert err.startswith(f"{who}: error: {', '.join(named)} ") and "leave" in err, err
    assert not (tmp_path / "r.json").exists()


def test_device_bench_that_can_time_no_engine_fails_in_one_line(kit: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # a kit is not an engine: nothing is timed, and a script must not read success (it exited 0)
    rc = cli.main(["bench", str(kit), "--no-reference", "--runs", "1", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and err[-1].startswith("alignvar-edge bench: error: no engine could be timed here, so no "
                                          "report was written: tensorrt-fp16: a TensorRT build kit, not an engine"), err
    # nothing written, nothing said to be: a report of no timing would merge as a device's figures
    assert not (tmp_path / "r.json").exists() and not [ln for ln in err if ln.startswith("wrote")]


def test_a_bench_that_could_time_none_of_its_engines_exits_3_on_every_path(
        kit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the bench with PyTorch would time its baselines, but not what was asked for: refused once the
    # engines are open, before the baselines are timed, and nothing is written (it wrote the report)
    out = tmp_path / "r.json"
    for sequential in ([], ["--sequential"]):      # one engine at a time: found after the timing
        rc = cli.main(["bench", str(kit), "--reference", "preset:micro", "--runs", "1", "--warmup", "0", "--tiles",
                       "1", "--image-size", "0", "--peak-n", "64", "--profile-runs", "0", "--threads", "1",
                       "--out", str(out), "--md", str(tmp_path / "r.md"), *sequential])
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert rc == 3 and err[-1].startswith("alignvar-edge bench: error: no engine could be timed here, so no report "
                                              "was written: tensorrt-fp16: a TensorRT build kit, not an engine"), err
        assert not list(tmp_path.iterdir()) and "wrote" not in captured.out
        assert sequential or not any("timing pytorch-eager" in ln for ln in err), err


def test_bench_refuses_an_engine_that_fails_verification_before_timing_anything(
        micro_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # as upscale and selftest do; it timed everything, wrote a report with a failed row and exited 1
    import shutil
    edited = tmp_path / "edited"
    shutil.copytree(micro_export, edited)
    listed = next(iter(json.loads((edited / "manifest.json").read_text())["files"]))
    with open(edited / listed, "ab") as fh:
        fh.write(b" ")
    for mode in ([], ["--no-reference"]):
        rc = cli.main(["bench", str(micro_export), str(edited), "--runs", "1", "--threads", "1",
                       "--out", str(tmp_path / "r.json"), *mode])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, (mode, err)
        assert err.startswith(f"alignvar-edge bench: error: artifact '{edited}' failed verification: {listed} "
                              "does not match"), err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("folder", ["torch-engine", "export-with-config"])
def test_an_engine_holding_a_config_json_is_verified_before_timing(
        folder: str, micro_export: Path, tmp_path: Path) -> None:
    # a config.json alone is no checkpoint: a torch engine (weights + config + manifest), or an
    # export someone put a config.json into, is verified as every engine is
    import shutil
    from alignvar_edge.bench.subjects import check_exists
    from alignvar_edge.errors import ArtifactError
    if folder == "torch-engine":
        eng = runtimes.build("alignvar-tiny", "torch", out=tmp_path / "eng")
        with open(eng / "model.safetensors", "ab") as fh:
            fh.write(b" ")
        wrong = "model.safetensors does not match"
    else:
        eng = tmp_path / "eng"
        shutil.copytree(micro_export, eng)
        (eng / "config.json").write_text("{}")
        wrong = "config.json is not listed"
    with pytest.raises(ArtifactError, match=f"artifact '{eng}' failed verification: {wrong}"):
        check_exists(parse_spec(str(eng)))


def test_a_reference_with_a_seed_that_is_no_number_is_one_line(
        micro_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # it was a ValueError traceback from parsing 'preset:NAME:SEED' by hand
    rc = cli.main(["bench", str(micro_export), "--reference", "preset:micro:abc", "--runs", "1", "--threads", "1",
                   "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("alignvar-edge bench: error: --reference: model reference 'preset:micro:abc' is neither "
                               "a checkpoint nor preset:NAME[:SEED] with a whole-number SEED below 2**64 "
                               "(e.g. preset:micro:0)"), err
    assert not (tmp_path / "r.json").exists()


TRTEXEC_LOGS = Path(__file__).resolve().parent / "data" / "trtexec"


@pytest.fixture(scope="module")
def trt_engine(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit's engine as adopted from trtexec's log (fp16 on DLA core 0, TensorRT 10.3.0, Orin 8.7)."""
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    where = tmp_path_factory.mktemp("adopted")
    engine = where / "my.engine"
    engine.write_bytes(b"serialized engine bytes")
    return adopt(engine, kit, where / "my-engine", log=TRTEXEC_LOGS / "trt10-orin-fp16-dla.log")


def test_bench_trtexec_refuses_a_log_of_another_engine(trt_engine: Path, kit: Path, micro_export: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the report row names --engine's engine (SHA-256, precision, DLA core): a log of another
    # precision, core, TensorRT or GPU was labelled with it, and a TensorRT 8.4 log credited to this CPU
    text = (TRTEXEC_LOGS / "trt10-orin-fp16-dla.log").read_text()
    other = tmp_path / "other.engine"
    other.write_bytes(b"another engine")
    cases = {"precision int8": text.replace("--fp16", "--int8"),
             "DLA core 1": text.replace("--useDLACore=0", "--useDLACore=1"),
             "DLA core none": text.replace("--useDLACore=0 --allowGPUFallback", ""),
             "compute capability 8.6": text.replace("Compute Capability: 8.7", "Compute Capability: 8.6"),
             f"'{other}' (--saveEngine), another file than": text.replace(
                 "/home/nvidia/kit-fp16-dla0.work/model.engine", str(other)),
             "TensorRT version 8.4.0": (TRTEXEC_LOGS / "trt84-xavier.log").read_text(),
             "has no '&&&& RUNNING TensorRT.trtexec' line": (TRTEXEC_LOGS / "pasted-no-prefix.log").read_text()}
    out = tmp_path / "r.json"
    for said, log_text in cases.items():
        log = tmp_path / "t.log"
        log.write_text(log_text)
        rc = cli.main(["bench", "trtexec", str(log), "--engine", str(trt_engine), "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and said in err, (said, err)
        assert not out.exists()
    log = tmp_path / "t.log"
    log.write_text(text)
    rc = cli.main(["bench", "trtexec", str(log), "--engine", str(micro_export), "--out", str(out)])
    assert rc == 2 and "holds no TensorRT engine or build kit" in capsys.readouterr().err
    # its own log (a copy of the engine named by --saveEngine is the same engine) and a kit's run
    (tmp_path / "copy.engine").write_bytes((trt_engine / "model.engine").read_bytes())
    log.write_text(text.replace("/home/nvidia/kit-fp16-dla0.work/model.engine", str(tmp_path / "copy.engine")))
    assert cli.main(["bench", "trtexec", str(log), "--engine", str(trt_engine), "--out", str(out)]) == 0
    assert read_report(out)["engines"][0]["engine_sha256"] == load_manifest(trt_engine).engine_sha256
    assert cli.main(["bench", "trtexec", str(log), "--engine", str(kit), "--out", str(tmp_path / "k.json")]) == 0


def test_bench_trtexec_reads_a_logs_precision_and_dla_core_as_adopt_does(
        trt_engine: Path, kit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a --stronglyTyped build is of the graph's precision (adopt knew; bench read "not said" and took
    # the fp32 graph's build as the fp16 engine's), and a --loadEngine run's build flags say nothing
    # (trtexec ignores them there; bench refused an fp16 engine's run given --int8)
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    text = (TRTEXEC_LOGS / "trt10-orin-fp16-dla.log").read_text()
    typed = tmp_path / "typed.log"
    typed.write_text(text.replace("--fp16", "--stronglyTyped"))
    with pytest.raises(InputError, match=r"log of a fp32 build \(--stronglyTyped\), but --precision fp16 was given"):
        adopt(trt_engine / "model.engine", kit, tmp_path / "a", log=typed, precision="fp16")
    out = tmp_path / "r.json"
    rc = cli.main(["bench", "trtexec", str(typed), "--engine", str(trt_engine), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{typed} timed an engine of precision fp32 (--stronglyTyped), and the engine in " \
                       f"{trt_engine} has precision fp16" in err, err
    assert not out.exists()
    # the same log built on the GPU: adopt records an fp32 engine, and bench takes the log as its
    gpu = tmp_path / "typed-gpu.log"
    gpu.write_text(typed.read_text().replace(" --useDLACore=0 --allowGPUFallback", ""))
    fp32 = adopt(trt_engine / "model.engine", kit, tmp_path / "fp32", log=gpu)
    assert cli.main(["bench", "trtexec", str(gpu), "--engine", str(fp32), "--out", str(out)]) == 0
    assert read_report(out)["engines"][0]["precision"] == "fp32"
    run = tmp_path / "run.log"
    run.write_text(text.replace("--onnx=/home/nvidia/kit/model.onnx --saveEngine=/home/nvidia/kit-fp16-dla0.work/"
                                "model.engine", f"--loadEngine={trt_engine / 'model.engine'}")
                   .replace("--fp16", "--int8"))
    assert cli.main(["bench", "trtexec", str(run), "--engine", str(trt_engine), "--out", str(out)]) == 0, \
        capsys.readouterr().err


def load_manifest(root: Path) -> Any:
    from alignvar_edge.manifest import load_verified
    return load_verified(root)


def test_bench_trtexec_needs_the_tiles_per_inference(trt_engine: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # without --engine it assumed batch 1: per-tile figures 16x off for the kit's batch-16 engine
    log, out = str(TRTEXEC_LOGS / "trt10-orin-fp16-dla.log"), tmp_path / "r.json"
    rc = cli.main(["bench", "trtexec", log, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "pass --engine DIR" in err and "or --batch N" in err, err
    rc = cli.main(["bench", "trtexec", log, "--engine", str(trt_engine), "--batch", "16", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"--batch 16: the engine in {trt_engine} takes 1 tile(s) per inference" in err, err
    assert not out.exists()
    assert cli.main(["bench", "trtexec", log, "--batch", "16", "--out", str(out)]) == 0
    e = read_report(out)["engines"][0]
    assert e["batch"] == 16 and e["latency"]["throughput"]["tiles_per_s"] == round(130.298 * 16, 3)
    assert e["latency"]["per_tile_ms"]["p50"] == pytest.approx(7.16092 / 16, rel=1e-3)


def test_bench_trtexec_names_a_log_without_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "g.log").write_text("[I] Engine built in 12.3 sec.\n")      # a --buildOnly log: nothing timed
    rc = cli.main(["bench", "trtexec", str(tmp_path / "g.log"), "--batch", "1", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"{tmp_path / 'g.log'}: no trtexec performance summary" in err, err
    assert not (tmp_path / "r.json").exists()


def test_bench_trtexec_help_is_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "trtexec", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: alignvar-edge bench trtexec "), out
    assert "LOG" in out and "--engine DIR" in out and "--runs" not in out and "--threads" not in out, out


def test_merge_warns_when_fidelity_tiles_or_the_best_engine_gate_differ(tmp_path: Path) -> None:
    a = json.loads(DOC_REPORT.read_text())
    b = copy.deepcopy(a)
    b["label"], b["settings"]["seed"], b["settings"]["min_token_agreement"] = "jetson", 7, 0.95
    warned = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])["warnings"]
    assert any(w.startswith("setting 'seed' differs") and "jetson=7" in w for w in warned), warned
    assert any(w.startswith("setting 'min_token_agreement' differs") and "jetson=0.95" in w for w in warned)


def test_a_third_run_of_one_device_merged_onto_a_merged_report_gets_its_own_column(tmp_path: Path) -> None:
    from alignvar_edge.bench.merge import lineup
    runs = []
    for i in range(3):                          # three runs on one machine, no --label: one default label
        r = another_run(json.loads(DOC_REPORT.read_text()), i + 2)
        r["created"] = f"2030-01-0{i + 1}T00:00:00+00:00"
        runs.append(write_json(tmp_path / f"run{i}.json", r))
    first = write_json(tmp_path / "m.json", merge_reports(runs[:2]))
    merged = merge_reports([first, runs[2]])
    label = json.loads(DOC_REPORT.read_text())["label"]
    assert [r["label"] for r in merged["reports"]] == [label, f"{label} #2", f"{label} #3"]
    assert lineup(merged, "speedup")[0] == ["model", "engine", "precision", "batch", "on", label, f"{label} #2",
                                            f"{label} #3"]


def test_one_default_label_on_cpus_of_other_isa_classes_gets_each_class(tmp_path: Path) -> None:
    from alignvar_edge.bench.host import isa_word
    from alignvar_edge.bench.merge import lineup
    avx2 = json.loads(DOC_REPORT.read_text())
    zen4 = json.loads((DOC_REPORT.parents[1] / "epyc-zen4-2core" / "b16-engines.json").read_text())
    assert avx2["label"] == zen4["label"] == "AMD EPYC, 2 cores"           # one CPU name, one core count
    avx512 = another_run(zen4)                  # an AVX-512 CPU without half units
    avx512["host"]["cpu"]["isa"] = [f for f in zen4["host"]["cpu"]["isa"] if f != "avx512_bf16"]
    avx512["created"] = "2030-01-01T00:00:00+00:00"
    assert [isa_word(r["host"]) for r in (avx2, zen4, avx512)] == ["AVX2", "AVX512-BF16", "AVX-512"]
    paths = [write_json(tmp_path / f"{i}.json", r) for i, r in enumerate((avx2, zen4, avx512))]
    merged = merge_reports(paths)
    labels = ["AMD EPYC, 2 cores, AVX2", "AMD EPYC, 2 cores, AVX512-BF16", "AMD EPYC, 2 cores, AVX-512"]
    assert [r["label"] for r in merged["reports"]] == labels
    assert lineup(merged, "speedup")[0] == ["model", "engine", "precision", "batch", "on", *labels]
    # merged again with one of its parts and a re-run on the AVX2 machine: the part once, the re-run '#2'
    rerun = another_run(avx2)
    rerun["created"] = "2030-01-02T00:00:00+00:00"
    again = merge_reports([write_json(tmp_path / "m.json", merged), paths[0], write_json(tmp_path / "r.json", rerun)])
    assert [r["label"] for r in again["reports"]] == [*labels, "AMD EPYC, 2 cores, AVX2 #2"]
    assert sum("merged once" in w for w in again["warnings"]) == 1


def test_parse_spec() -> None:
    s = parse_spec("ov-int8=openvino@GPU:engines/x")
    assert (s.label, s.backend, s.device, s.path) == ("ov-int8", "openvino", "GPU", "engines/x")
    assert parse_spec("ort:exports/t").backend == "onnxruntime"
    assert parse_spec("exports/t").backend == "auto" and parse_spec("BICUBIC").backend == "bicubic"
    with pytest.raises(InputError):
        parse_spec("ov-int8=openvino:")
    t = parse_spec("openvino@CPU+throughput:engines/x")
    assert (t.backend, t.device, t.hint, t.path) == ("openvino", "CPU", "throughput", "engines/x")
    assert parse_spec("openvino:engines/x").hint is None
    for bad in ("onnxruntime+throughput:x", "openvino+fast:x"):
        with pytest.raises(InputError, match=r"\+throughput"):
            parse_spec(bad)


def test_a_misspelt_backend_is_named_as_one_not_as_a_missing_path(micro_export: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["bench", f"openvin:{micro_export}", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (f"alignvar-edge bench: error: unknown backend 'openvin' in engine 'openvin:{micro_export}'; "
                               "choose one of torch, onnxruntime, openvino, tensorrt, coreml"), err
    assert not (tmp_path / "r.json").exists()


def test_statistics() -> None:
    p = percentiles([1.0, 2.0, 3.0, 4.0, 100.0] * 2)
    assert p["p50"] == 3.0 and p["min"] == 1.0 and p["max"] == 100.0 and p["p90"] == 100.0
    s = latency_summary([10.0, 10.0, 10.0], tiles_per_call=2, sr_megapixels_per_tile=0.25,
                        flops_per_tile=1e9, peak_gflops=400.0)
    assert s["per_tile_ms"]["p50"] == 5.0 and s["per_megapixel_ms"]["p50"] == 20.0
    assert s["throughput"]["tiles_per_s"] == 200.0 and s["gflops_achieved"] == 200.0
    assert s["roofline_fraction"] == 0.5 and s["below_peak_x"] == 2.0 and s["roofline_fraction_best"] == 0.5
    assert s["raw_call_ms"] == [10.0, 10.0, 10.0] and "p99" not in s["per_call_ms"] and s["p99_omitted"]


def test_tail_percentiles_only_with_enough_runs() -> None:
    few, many = percentiles([1.0] * 99 + [50.0]), percentiles([1.0] * 99)
    assert few["p99"] == pytest.approx(1.49) and "p99" not in many
    # p90 of 9 runs lies between the two slowest: left out as p99 is, with why
    assert percentiles([1.0] * 10)["p90"] == 1.0 and "p90" not in percentiles([1.0] * 9)
    nine = latency_summary([1.0] * 9, 1, 1.0)
    assert "p90" not in nine["per_tile_ms"] and nine["p90_omitted"].startswith("p90 needs >= 10 runs, this run has 9")
    assert "p90_omitted" not in latency_summary([1.0] * 10, 1, 1.0)
    s = latency_summary(list(np.linspace(1.0, 2.0, 100)), 1, 1.0)
    assert s["per_call_ms"]["p99"] == pytest.approx(1.99) and "p99_omitted" not in s


def test_peak_rss_sees_an_allocation() -> None:
    with PeakRSS() as p:
        a = np.ones(64 * 2 ** 20 // 8)              # 64 MiB, touched
        del a
    r = p.result()
    assert r["peak_delta_mb"] > 30 or "ru_maxrss" in r["method"]


def test_report_json_is_plain_json(report: dict[str, Any], tmp_path: Path) -> None:
    text = write_json(tmp_path / "r.json", report).read_text()
    assert "Infinity" not in text and "NaN" not in text
    json.loads(text)


def test_engine_model_check_reads_only_recorded_config_keys() -> None:
    from alignvar_edge.bench.runner import _same_model
    from alignvar_edge.bench.subjects import Subject
    from alignvar_edge.manifest import new_manifest
    from alignvar_edge.model.config import AlignVARConfig
    ref = AlignVARConfig.from_preset("d16")
    old = ref.to_dict()
    old.pop("decoder_lr", None)          # a manifest written before that field existed
    sub = Subject("x", "onnxruntime", "engine", manifest=new_manifest("engine", "onnxruntime", "single", "fp32",
                                                                      {"config": old}))
    assert _same_model(sub, ref) and not _same_model(sub, AlignVARConfig.from_preset("d20"))


def test_gpu_script_writes_a_mergeable_report_on_cpu(tmp_path: Path, report: dict[str, Any]) -> None:
    # scripts/gpu_bench.py is run for real on GPU machines; here its CPU smoke mode checks that its
    # report passes the schema, renders, and merges beside a CPU bench report, in the same envelope
    import subprocess
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "g.json"
    res = subprocess.run([sys.executable, str(root / "scripts" / "gpu_bench.py"), "--preset", "micro",
                          "--device", "cpu", "--dtypes", "fp16,bf16", "--runs", "2", "--warmup", "0",
                          "--out", str(out), "--md", str(tmp_path / "g.md")],
                         capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1",
                                                                            "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    g = read_report(out)
    check_report(g)
    labels = [e["label"] for e in g["engines"]]
    assert labels[0] == "pytorch-eager" and "torch-eager-bf16" in labels
    # its summary names the rows it could not time, as a CPU report's does (it held none: {})
    assert g["summary"]["unavailable"] == {"torch-eager-fp16": "fp16 matmuls on CPU are not a deployment path"}
    assert set(g["model"]) == set(report["model"]) and g["model"]["flops_per_tile"]["total"] > 0
    # the weights it timed, named as an export of the same preset and seed names them
    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.model.checkpoint import weights_sha256
    assert g["model"]["source"] == "preset micro, random weights, seed 0"
    assert g["model"]["weights_sha256"] == weights_sha256(random_model("micro", seed=0))
    md = (tmp_path / "g.md").read_text()
    # a 32 px tile is not the paper's 512x512 image: no comparison with its 0.43 s
    assert "Best GPU configuration" in md and "paper" not in md.split("## Backends")[0]
    merged = merge_reports([write_json(tmp_path / "cpu.json", report), out])
    assert {r["model"] for r in merged["rows"]} == {report["model"]["name"], "micro-random"}


def test_duration_sets_the_rounds_with_runs_as_the_minimum() -> None:
    from alignvar_edge.bench.runner import rounds
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0            # every look at the clock: one second later
        return now[0]
    assert list(rounds(3, None, clock)) == [0, 1, 2]
    assert len(list(rounds(2, 10.0, clock))) == 11      # 2 rounds, then 9 more while t < 11
    assert len(list(rounds(20, 1.0, clock))) == 20      # the duration never cuts below --runs
    with pytest.raises(InputError, match="duration=0.0"):          # Python names the keyword
        BenchOptions(duration=0.0).validate()


def test_interleaved_rounds_rotate_the_order_so_each_subject_runs_in_each_place() -> None:
    """docs/benchmarks.md: the order rotates each round, so background load hits every engine alike."""
    from alignvar_edge.bench.runner import interleaved
    from alignvar_edge.bench.subjects import Subject
    subjects = [Subject(label, "onnxruntime", "engine") for label in ("a", "b", "c")]
    order: list[str] = []
    calls = {id(s): (lambda label=s.label: order.append(label)) for s in subjects}
    times = interleaved(subjects, calls, range(6), lambda it, **_k: it, "tiles")
    assert all(len(t) == 6 for t in times.values())
    rounds_ = [order[i:i + 3] for i in range(0, len(order), 3)]
    assert len(rounds_) == 6 and all(sorted(r) == ["a", "b", "c"] for r in rounds_)
    for place in range(3):              # over three rounds running, every subject in every place
        assert {r[place] for r in rounds_[:3]} == {"a", "b", "c"}
        assert [r[place] for r in rounds_[:3]] == [r[place] for r in rounds_[3:]]


def test_whole_image_figures(report: dict[str, Any]) -> None:
    # a 16x16 LR image on micro's 8 px tiles (overlap 2): starts 0, 6, 8 per side -> 9 tiles
    ort, eager = _entry(report, "onnxruntime-fp32"), _entry(report, "pytorch-eager")
    img = ort["image"]
    assert img["lr"] == [16, 16] and img["sr"] == [64, 64] and img["runs"] == 2 and len(img["raw_ms"]) == 2
    assert (img["tiles"], img["batch"], img["calls"], img["padded_tiles"]) == (9, 1, 9, 0)
    assert img["megapixels_per_s"] == pytest.approx(64 * 64 / 1e6 / (img["per_image_ms"]["p50"] / 1e3), rel=1e-3)
    # eager batches the image's tiles as the torch backend does: 4 per call; its batch is dynamic,
    # so the short last call runs one tile, not four
    assert (eager["image"]["batch"], eager["image"]["calls"], eager["image"]["padded_tiles"]) == (4, 3, 0)
    assert eager["image_speedup_vs_eager"] == 1.0
    assert ort["image_speedup_vs_eager"] == pytest.approx(
        eager["image"]["per_image_ms"]["p50"] / img["per_image_ms"]["p50"], rel=1e-2)
    best = report["summary"]["image"]["best_cpu"]
    assert best["speedup_vs_eager"] == max(e.get("image_speedup_vs_eager") or 0 for e in report["engines"]
                                           if e["label"] in report["summary"]["engines_meeting_fidelity"])


def test_folder_figures(report: dict[str, Any]) -> None:
    from alignvar_edge.bench.render import report_markdown, terminal_table
    ort, eager = _entry(report, "onnxruntime-fp32"), _entry(report, "pytorch-eager")
    f = ort["folder"]
    assert (f["images"], f["image_lr"], f["image_sr"], f["runs"]) == (5, [8, 8], [32, 32], 2)
    assert (f["tiles"], f["batch"], f["calls"], f["calls_one_at_a_time"]) == (5, 1, 5, 5)
    assert f["megapixels_per_s"] == pytest.approx(5 * 32 * 32 / 1e6 / (f["per_folder_ms"]["p50"] / 1e3), rel=1e-3)
    # eager's batch of 4: the five one-tile images share two calls instead of taking five
    e = eager["folder"]
    assert (e["batch"], e["tiles"], e["calls"], e["padded_tiles"], e["calls_one_at_a_time"]) == (4, 5, 2, 0, 5)
    assert ort["folder_speedup_vs_eager"] == pytest.approx(
        e["per_folder_ms"]["p50"] / f["per_folder_ms"]["p50"], rel=1e-2)
    assert report["summary"]["folder"]["images"] == 5 and "p99_omitted" in f and "--image-runs" in f["p99_omitted"]
    assert report["settings"]["folder_images"] == 5 and report["settings"]["folder_lr"] == 8
    assert "folder MP/s" in terminal_table(report) and "folder rounds (5 images" in report_markdown(report)
    # a report without a folder timing shows no folder columns
    bare = copy.deepcopy(report)
    for entry in bare["engines"]:
        entry.pop("folder", None)
    assert "folder MP/s" not in terminal_table(bare)


def test_sequential_runs_keep_the_call_counts_and_a_whole_tile_overlap_is_refused_first(
        micro_export: Path) -> None:
    # one engine at a time: each is closed before the report is assembled, yet its counts stay
    opts = dataclasses.replace(QUICK, sequential=True, folder_images=2, folder_size=8, profile_runs=0)
    rep = run_bench([str(micro_export)], reference=sharp_model("micro"), options=opts)
    ort = _entry(rep, "onnxruntime-fp32")
    assert (ort["image"]["tiles"], ort["image"]["batch"]) == (9, 1)
    assert (ort["folder"]["tiles"], ort["folder"]["calls"]) == (2, 2)
    assert rep["summary"]["image"]["best_cpu"]["batch"] == 1
    # micro's tile is 8 LR px: an overlap of 8 is refused before anything is timed
    with pytest.raises(InputError, match="--overlap"):
        run_bench([str(micro_export)], reference=sharp_model("micro"),
                  options=dataclasses.replace(QUICK, image_overlap=8))


def test_folder_geometry_reads_the_pooling_off_the_tiling() -> None:
    from alignvar_edge.bench.image import folder_geometry, folder_lrs

    lrs = folder_lrs(32, 32)
    assert len(lrs) == 32 and lrs[0].shape == (32, 32, 3) and lrs[0].dtype == np.float32
    assert np.array_equal(np.round(lrs[3] * 255) / 255, lrs[3])          # on the uint8 grid of a file
    assert all(np.array_equal(a, b) for a, b in zip(lrs, folder_lrs(32, 32)))   # seeded
    # 32 images of 9 tiles (16 px tiles, overlap 4: starts 0, 12, 16): 288 tiles in 18 full calls,
    # where one image at a time pads each to a call of 16
    assert folder_geometry(lrs, 16, 16) == {"tiles": 288, "overlap": 4, "batch": 16, "calls": 18,
                                            "padded_tiles": 0, "calls_one_at_a_time": 32}
    # 33 images: the last call has 9 tiles, padded to 16 by a static batch only
    lrs = folder_lrs(32, 33)
    assert folder_geometry(lrs, 16, 16)["padded_tiles"] == 7
    assert folder_geometry(lrs, 16, 16, static=False)["padded_tiles"] == 0
    # two requests in flight (OpenVINO's throughput mode): pooled in runs of 32 tiles, 16 per call
    assert folder_geometry(lrs, 16, 16, parallel=2)["calls"] == 19
    with pytest.raises(InputError, match="--folder-size"):
        folder_lrs(100000, 2)
    with pytest.raises(InputError, match="folder_images=-1"):
        BenchOptions(folder_images=-1).validate()


def test_image_geometry_counts_overlap_and_padding() -> None:
    from alignvar_edge.bench.image import image_geometry
    # 32 px LR tiles (tiny32), overlap 8 -> 5 x 5 tiles for a 128x128 LR image
    assert image_geometry((128, 128), 32, 4) == {"tiles": 25, "overlap": 8, "batch": 4, "calls": 7,
                                                  "padded_tiles": 3}
    assert image_geometry((128, 128), 32, 5)["padded_tiles"] == 0
    assert image_geometry((20, 20), 32, 1)["tiles"] == 1            # smaller than a tile: one padded tile
    # `bench --overlap 2` on 16 px tiles: 9 x 9 tiles instead of the default (4 px) 11 x 11
    assert image_geometry((128, 128), 16, 8)["tiles"] == 121
    assert image_geometry((128, 128), 16, 8, overlap=2) == {"tiles": 81, "overlap": 2, "batch": 8, "calls": 11,
                                                            "padded_tiles": 7}
    with pytest.raises(InputError, match="image_overlap=-1"):
        BenchOptions(image_overlap=-1).validate()


def test_peak_counts_the_runtimes_own_gemms() -> None:
    # numpy's and torch's BLAS may run AVX2 kernels where ONNX Runtime and OpenVINO use AVX-512:
    # the roof is the best GEMM of every library installed, at the run's thread count
    from alignvar_edge.bench.peak import gemm_call, measure_peak
    peak = measure_peak(n=128, repeats=1, threads=1)
    assert {k.split("/")[0] for k in peak["by_config"]} == {"numpy", "torch", "onnxruntime", "openvino"}
    assert all(k.endswith("/1t") for k in peak["by_config"])
    assert peak["gflops"] == max(peak["by_config"].values()) > 0
    for library in ("onnxruntime", "openvino"):
        call, flops = gemm_call(128, library, threads=1)
        assert flops == 2 * 128 ** 3
        out = call()
        assert np.asarray(out[0] if library == "onnxruntime" else next(iter(out.values()))).shape == (128, 128)


def test_summary_says_when_no_engine_ran_rather_than_that_none_was_faithful():
    from alignvar_edge.bench.render import summary_lines
    base = {"summary": {"min_token_agreement": 0.99}, "settings": {"threads": 1}, "model": {"tile": {"hr": 64}}}
    off_mac = {**base, "engines": [{"label": "coreml-fp16", "kind": "engine", "status": "unavailable"},
                                   {"label": "eager", "kind": "baseline", "status": "ok"}]}
    assert summary_lines(off_mac) == ["No engine ran here (see each row's reason), so none was timed or checked."]
    unfaithful = {**base, "engines": [{"label": "ort-int8", "kind": "engine", "status": "ok"}]}
    assert summary_lines(unfaithful) == ["No engine reached 99% token agreement with PyTorch eager."]
    # `bench bicubic --reference M`: no engine asked for, none missing
    baselines = {**base, "engines": [{"label": "pytorch-eager", "kind": "baseline", "status": "ok"},
                                     {"label": "bicubic", "kind": "baseline", "status": "ok"}]}
    assert summary_lines(baselines) == ["No engine was asked for: the baselines alone were timed."]


def test_a_busy_machine_is_detected_and_a_multi_thread_run_on_it_is_called_flattering():
    from alignvar_edge.bench.host import shared_load
    from alignvar_edge.bench.render import summary_lines
    cpu = {"usable_cores": 2}
    assert shared_load({"cpu": cpu, "load_average": [0.3, 0.2, 0.1], "load_average_end": [0.9, 0.5, 0.2]}) is None
    assert shared_load({"cpu": cpu, "load_average": None}) is None
    # a two-thread run on an idle machine is its own load: not shared
    assert shared_load({"cpu": cpu, "load_average": [1.6, 0.5, 0.2], "load_average_end": [2.1, 0.9, 0.4],
                        "own_load": 1.85}) is None
    busy = shared_load({"cpu": cpu, "load_average": [0.4, 0.2, 0.1], "load_average_end": [3.35, 1.0, 0.5],
                        "own_load": 1.2})
    assert busy == {"start": 0.4, "end": 3.35, "own": 1.2, "others": 2.15, "cores": 2}
    # a report written before `own_load`: the averages as they are
    old = shared_load({"cpu": cpu, "load_average": [1.5, 0.2, 0.1], "load_average_end": [0.9, 0.5, 0.2]})
    assert old == {"start": 1.5, "end": 0.9, "own": None, "others": 1.5, "cores": 2}
    eager = {"label": "pytorch-eager", "kind": "baseline", "status": "ok", "speedup_vs_eager": 1.0}
    ran = [eager, {"label": "ort", "kind": "engine", "status": "ok", "speedup_vs_eager": 2.1}]
    report = {"summary": {"min_token_agreement": 0.99, "shared_load": busy}, "model": {"tile": {"hr": 64}},
              "engines": ran}
    two = summary_lines({**report, "settings": {"threads": 2}})[-1]
    assert two.startswith("Caution: the machine was shared (1-min load average 0.4 at the start, 3.35 at the "
                          "end, 1.2 of it the run's own, on 2 usable cores)")
    assert "ran 2 threads" in two and "--threads 1" in two
    one = summary_lines({**report, "settings": {"threads": 1, "interleaved": True}})[-1]
    assert one.startswith("Caution:") and "protects the ratios only partly" in one and "--threads" not in one
    # timed one after another (a device report, --sequential): no ratio is protected from the load
    apart = summary_lines({**report, "settings": {"threads": 1, "interleaved": False}})[-1]
    assert "hold" not in apart and "not protected from the load" in apart, apart
    # no engine ratio to flatter: the engine could not run here, or a device report has no eager
    absent = [eager, {"label": "trt", "kind": "engine", "status": "unavailable"}]
    for engines in (absent, [{"label": "ov", "kind": "engine", "status": "ok"}]):
        line = summary_lines({**report, "engines": engines, "settings": {"threads": 2}})[-1]
        assert line.startswith("Caution:") and "absolute times are inflated" in line, line
        assert "flattered" not in line and "--threads" not in line, line


def test_merge_warns_on_settings_of_reports_that_share_a_label_and_not_on_a_default_given(tmp_path: Path) -> None:
    a = json.loads((DOC_REPORT.parents[1] / "epyc-avx512bf16-2core" / "shared-condition-b16.json").read_text())
    assert a["settings"]["image_lr"] and a["model"]["tile"]["lr"] == 16
    a["settings"]["image_overlap"] = None       # written before the overlap used was recorded
    b = another_run(a)
    b["label"], b["settings"]["image_overlap"] = "other", 4      # the default, a quarter tile, given
    merged = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])
    assert not any("image_overlap" in w for w in merged["warnings"]), merged["warnings"]
    c = another_run(a, 3.0)                     # the same device label, another model and thread count
    c["model"]["name"], c["settings"]["threads"] = "d16-random", a["settings"]["threads"] + 3
    warned = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "c.json", c)])["warnings"]
    assert any("different models" in w for w in warned)
    threads = [w for w in warned if w.startswith("setting 'threads' differs")]
    assert threads and f"({'d16-random'})={a['settings']['threads'] + 3}" in threads[0], warned


def test_merge_warnings_on_the_command_line_name_the_command(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    a = json.loads((DOC_REPORT.parents[1] / "epyc-avx512bf16-2core" / "shared-condition-b16.json").read_text())
    c = another_run(a, 3.0)
    c["model"]["name"] = "d16-random"
    rc = cli.main(["bench", "merge", str(write_json(tmp_path / "a.json", a)), str(write_json(tmp_path / "c.json", c)),
                   "--md", str(tmp_path / "m.md")])
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert rc == 0 and any("different models" in w for w in warned), warned
    assert all(w.startswith("alignvar-edge bench merge: warning: ") for w in warned), warned


def test_merge_names_a_skipped_image_timing_once_and_a_busy_multi_thread_report(tmp_path: Path) -> None:
    a = json.loads((DOC_REPORT.parents[1] / "epyc-avx512bf16-2core" / "shared-condition-b16.json").read_text())
    a["host"]["cpu"]["usable_cores"] = 2
    a["host"]["load_average"], a["host"]["load_average_end"] = [0.1, 0.1, 0.1], [0.2, 0.1, 0.1]
    b = another_run(a)
    b["label"] = "busy"
    b["settings"].update(threads=2, image_lr=None, image_runs=None, image_overlap=None)
    b["host"]["load_average_end"] = [2.4, 1.0, 0.5]
    warned = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])["warnings"]
    assert not any(w.startswith(("setting 'image_lr'", "setting 'image_runs'", "setting 'image_overlap'"))
                   for w in warned), warned
    assert "busy did not time whole images (--image-size): those cells stay empty" in warned
    busy = [w for w in warned if w.startswith("busy ran on a shared machine")]
    assert busy and "2.4 at the end" in busy[0] and "at 2 threads" in busy[0] and "--threads 1" in busy[0]
    assert not any(w.startswith(f"{a['label']} ran on a shared machine") for w in warned)


def test_gpu_report_says_slower_when_slower_than_the_paper() -> None:
    # a real H200 report: VARSR-d24's best row at >= 99% tokens took 470.6 ms against the paper's 430
    from alignvar_edge.bench.render import report_markdown
    root = Path(__file__).resolve().parent.parent
    md = report_markdown(read_report(root / "docs" / "results" / "gpu-h200-fast" / "gpu-varsr-d24.json"))
    assert "1.09x slower than the paper's 0.43 s" in md and "faster than the paper" not in md


def test_gpu_fast_paths_time_each_setting_and_gate_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    # the --fast-paths rows run on CUDA graphs; here the graph is replaced by eager calls, which
    # checks the settings stack, the token comparison against fp32 and the pruned row's note
    import argparse
    import importlib.util

    import torch

    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.model.transformer import SelfAttention
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("gpu_bench", root / "scripts" / "gpu_bench.py")
    assert spec is not None and spec.loader is not None
    gb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gb)
    forms: list[set[str]] = []

    def eager_graph(m: Any, lr: Any, noise: Any = None) -> Any:
        forms.append({a.form for a in m.modules() if isinstance(a, SelfAttention)})
        with torch.inference_mode():
            return (lambda: m(lr, noise)), m(lr, noise)
    monkeypatch.setattr(gb, "_graph", eager_graph)
    m = random_model("micro")
    lr = torch.from_numpy(lr_tiles(m.config, 2, seed=0))
    with torch.inference_mode():
        ref = list(m(lr)[1:])
    args = argparse.Namespace(prune="0.5,0.75", runs=1, warmup=0, batch=2, profile=None)
    rows = gb._fast_paths(m, lr, None, "fp16", ref, gb._timer(torch.device("cpu")), args, 0.1, 10 ** 9, 1.0)
    assert [r["label"] for r in rows] == ["torch-cudagraph-fp16-sdpa", "torch-cudagraph-fp16-sdpa+cl",
                                          "torch-cudagraph-fp16-sdpa+cl+prune0.5-0.75"]
    assert forms == [{"fused"}] * 3
    tokens = [r["fidelity"]["vs_reference"]["token_agreement"] for r in rows]
    assert tokens[0] == tokens[1] == 1.0 and tokens[2] < 0.99          # pruning changes tokens by design
    assert "by design" in rows[2]["note"]
    assert {a.form for a in m.modules() if isinstance(a, SelfAttention)} == {"explicit"} and m.prune == ()


def test_the_peak_gemm_model_opens_in_the_oldest_onnxruntime_we_support() -> None:
    # onnx's make_model writes its own newest IR version (1.23: 14), which an older onnxruntime
    # refuses (1.30 reads up to 13): measured on a machine with onnx 1.23 and onnxruntime 1.30.
    # onnxruntime 1.18, the floor in pyproject.toml, reads IR versions up to 10.
    from alignvar_edge.bench.peak import matmul_model
    model = matmul_model((4, 4), np.ones((4, 4), np.float32))
    assert model.ir_version <= 10
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]


def test_merge_lines_engines_up_by_what_ran_not_by_their_label(tmp_path: Path) -> None:
    from alignvar_edge.bench.merge import lineup
    a = json.loads((DOC_REPORT.parents[1] / "epyc-zen4-2core" / "b16-engines.json").read_text())
    b = copy.deepcopy(a)
    b["label"] = "other host"
    byl = {e["label"]: e for e in b["engines"]}
    byl["ov-int8"]["label"], byl["ort-b16"]["label"] = "openvino-int8", "onnxruntime-fp32"   # deploy's labels
    byl["ov-bf16"].update(precision="int8", batch=1)                # one label, another engine
    byl["ov-fp32"].update(status="unavailable", reason="not here")  # could not run on that host
    for k in ("latency", "batch", "device"):
        byl["ov-fp32"].pop(k)
    b = made_again(b)                           # its summary as the bench wrote it with those engines
    merged = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])
    mp = {e["label"]: f"{e['latency']['per_megapixel_ms']['p50']:.0f}" for e in a["engines"]}
    grid = lineup(merged, "ms_per_mp")      # a device report has this figure too: the first lineup
    assert grid[0] == ["model", "engine", "precision", "batch", "on", a["label"], "other host"]
    rows = {(r[1], r[2], r[3]): r[5:] for r in grid[1:]}
    assert rows[("ov-int8 / openvino-int8", "int8", "16")] == [mp["ov-int8"], mp["ov-int8"]]
    assert rows[("ort-b16 / onnxruntime-fp32", "fp32", "16")] == [mp["ort-b16"], mp["ort-b16"]]
    assert rows[("ov-bf16", "bf16", "16")] == [mp["ov-bf16"], "–"]
    assert rows[("ov-bf16", "int8", "1")] == ["–", mp["ov-bf16"]]
    assert rows[("ov-fp32", "fp32", "16")] == [mp["ov-fp32"], "unavailable"]
    assert len(grid) == 1 + 7
    said = [w for w in merged["warnings"] if "one label names different engines" in w]
    assert len(said) == 1 and "ov-bf16 (precision bf16/int8, batch 1/16)" in said[0], merged["warnings"]
    from alignvar_edge.bench.merge import merge_markdown
    from alignvar_edge.bench.render import report_markdown
    # the batch of every row, in the merged table and in a report's own (eager's is its row's)
    assert "| engine | precision | batch | graph | p50 ms/tile |" in merge_markdown(merged)
    assert "| pytorch-eager | fp32 | 16 | " in report_markdown(a)


def test_bench_merge_help_is_merges_own(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "merge", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: alignvar-edge bench merge "), out
    assert "--plot" in out and "--runs" not in out and "--threads" not in out, out
    assert cli.main(["bench", "--help"]) == 0 and "--runs" in capsys.readouterr().out


def test_merge_compares_the_fidelity_photographs_by_content_not_by_path(report: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    a = _idle(report)
    h = a["settings"]["fidelity_tiles_sha256"]
    assert len(h) == 64
    # another seed crops other tiles: another hash (the path string alone said nothing)
    other = run_bench(["bicubic"], reference=sharp_model("micro"), options=dataclasses.replace(QUICK, seed=1))
    assert other["settings"]["fidelity_tiles_sha256"] != h
    same_path = another_run(_idle(report))
    same_path["label"], same_path["settings"]["fidelity_tiles_sha256"] = "b", other["settings"]["fidelity_tiles_sha256"]
    moved = another_run(_idle(report))
    moved["label"], moved["settings"]["images"] = "c", "/elsewhere/photos"     # one folder, another path
    pa = write_json(tmp_path / "a.json", a)
    warned = merge_reports([pa, write_json(tmp_path / "b.json", same_path)])["warnings"]
    assert any(w.startswith("setting 'fidelity_tiles_sha256' differs") and f"b={h[:12]}" not in w for w in warned), warned
    assert merge_reports([pa, write_json(tmp_path / "c.json", moved)])["warnings"] == []


def test_bench_refuses_a_backend_that_cannot_open_its_path_before_any_timing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 'openvino+throughput:CHECKPOINT' (a typo'd backend) failed its row only after a whole bench
    from _runtime_fixtures import sharp_model
    ckpt = tmp_path / "micro"
    sharp_model("micro").save_pretrained(str(ckpt))
    for extra in ([], ["--no-reference"]):
        rc = cli.main(["bench", f"x=openvino+throughput:{ckpt}", "--out", str(tmp_path / "out.json"), *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert f"{ckpt} is a model checkpoint, which runs on torch, not on openvino" in err, err
    assert not (tmp_path / "out.json").exists()


def test_merge_warns_where_one_engine_row_lines_up_different_graphs(tmp_path: Path) -> None:
    """Rows line up by what ran (backend, precision, batch, device kind); where the engines of one
    row ran different graphs on different devices (fused vs explicit attention, another opset,
    pruning), the merge says so, naming each device's graph; reports that record no graph do not."""
    a = json.loads((DOC_REPORT.parents[1] / "epyc-zen4-2core" / "b16-engines.json").read_text())
    b = another_run(a)
    b["label"] = "other host"
    same = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])
    assert not [w for w in same["warnings"] if "different graphs" in w]        # an older report: none recorded
    for r, form, opset in ((a, "explicit", 18), (b, "fused", 23)):
        for e in r["engines"]:
            if e["kind"] == "engine":
                e.update(attention=form, opset=opset, prune=None)
    byl = {e["label"]: e for e in b["engines"]}
    byl["ov-int8"].update(attention="explicit", opset=18, prune=[0.5, 0.75])
    merged = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])
    said = [w for w in merged["warnings"] if "different graphs" in w]
    assert len(said) == len([e for e in a["engines"] if e["kind"] == "engine" and e["status"] == "ok"]), said
    ort = next(w for w in said if "ort-b16 ran" in w)
    assert (f"explicit attention, opset 18 on {a['label']}; fused attention, opset 23 on other host" in ort), ort
    ov = next(w for w in said if "ov-int8 ran" in w)
    assert "explicit attention, opset 18, pruned 0.5,0.75 on other host" in ov, ov
    from alignvar_edge.bench.merge import merge_markdown
    assert "| ort-b16 | fp32 | 16 | fused attention, opset 23 |" in merge_markdown(merged)


def test_a_merge_without_output_files_prints_its_markdown_as_its_help_says(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench merge A.json B.json > devices.md` was refused ('needs at least one of --out, --md,
    --plot'), though --md's help says the table is printed on stdout when it is left out."""
    monkeypatch.chdir(tmp_path)
    a = write_json(tmp_path / "a.json", json.loads(DOC_REPORT.read_text()))
    b = write_json(tmp_path / "b.json", {**another_run(json.loads(DOC_REPORT.read_text())), "label": "other device"})
    assert cli.main(["bench", "merge", str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]          # no file written
    assert "\n| other device | " in printed and "\n| device | model | engine |" in printed, printed
    assert cli.main(["bench", "merge", str(a), str(b), "--md", str(tmp_path / "m.md")]) == 0
    assert printed.strip() and printed.strip() in (tmp_path / "m.md").read_text()     # the page's table


def test_a_file_written_to_the_plot_while_it_was_drawn_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's file written at --plot while the plot was drawn (after the JSON was written) is kept,
    in one line naming it (exit 2): it was replaced by the PNG, exit 0."""
    pytest.importorskip("matplotlib")
    import alignvar_edge.bench.outputs as outputs
    import alignvar_edge.bench.runner as runner

    out, png = tmp_path / "R.json", tmp_path / "R.png"
    report = json.loads(DOC_REPORT.read_text())
    report["host"] = fingerprint(with_backends=False)
    monkeypatch.setattr(runner, "run_bench", lambda *_a, **_k: report)
    plot = outputs.plot_report

    def drawn(*args: Any, **kwargs: Any) -> Any:
        png.write_bytes(b"my own picture")
        return plot(*args, **kwargs)
    monkeypatch.setattr(outputs, "plot_report", drawn)
    assert cli.main(["bench", "bicubic", "--out", str(out), "--plot", str(png)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"--plot {png}" in lines[0] and "while this run was working" in lines[0], lines
    assert png.read_bytes() == b"my own picture"


@pytest.mark.parametrize("taken", ["--out", "--md"])
def test_a_file_written_to_a_bench_output_while_it_measured_is_kept(taken: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--out and --md were free when the bench began. The user's notes written to one of them while it
    measured (--out) or while its Markdown was being rendered (--md, after the JSON was written) are
    kept, in one line naming the file (exit 2): they were replaced, exit 0. A target taken before the
    writing starts leaves none written; the figures are printed either way."""
    import alignvar_edge.bench.outputs as outputs
    import alignvar_edge.bench.runner as runner

    out, md = tmp_path / "R.json", tmp_path / "R.md"
    notes = {"--out": (out, '{"my": "precious notes"}'), "--md": (md, "# my notes\n")}[taken]
    report = json.loads(DOC_REPORT.read_text())
    report["host"] = fingerprint(with_backends=False)              # timed here, as a bench's report is

    def measured(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        if taken == "--out":
            notes[0].write_text(notes[1])
        return report

    markdown = outputs.report_markdown

    def rendered(*args: Any, **kwargs: Any) -> str:
        if taken == "--md":
            notes[0].write_text(notes[1])
        return markdown(*args, **kwargs)

    monkeypatch.setattr(runner, "run_bench", measured)
    monkeypatch.setattr(outputs, "report_markdown", rendered)
    assert cli.main(["bench", "bicubic", "--out", str(out), "--md", str(md)]) == 2
    printed, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{taken} {notes[0]}" in lines[0] and "while this run was working" in lines[0], lines
    assert notes[0].read_text() == notes[1]
    assert "onnxruntime-fp32" in printed                          # the figures are not lost
    if taken == "--out":
        assert not md.exists()
    else:
        assert read_report(out)["label"] == report["label"]
