"""A bench report cannot lie silently: reading one makes again every figure that follows from what it
holds (percentiles, ms/MP, tiles/s and MP/s from the raw timings; ratios to eager and the best
engine from those) and refuses one that contradicts itself; a report carries a content hash that
reading verifies; and one measurement given twice, under any label or time, is merged once."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from _bench_reports import another_run
from alignvar_edge import cli
from alignvar_edge.bench import runner
from alignvar_edge.bench.integrity import check_figures, made_again
from alignvar_edge.bench.merge import merge_reports
from alignvar_edge.bench.schema import ReportSchemaError, is_report, read_report, write_json

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
ZEN5 = RESULTS / "epyc-zen5-2core" / "engines.json"        # a host report with raw timings and whole images
OLD = RESULTS / "epyc-2core" / "tiny-t1.json"              # an older report: no raw timings, no content hash


def _zen5() -> dict[str, Any]:
    return json.loads(ZEN5.read_text())


def _current() -> dict[str, Any]:
    """The Zen 5 report as this version's bench writes it: its summary chosen by today's rules."""
    report = made_again(_zen5())
    assert report["summary"]["rules"] == runner.SUMMARY_RULES
    return report


def _engine(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(e for e in report["engines"] if e["label"] == label)


def _merge_error(paths: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`bench merge PATHS` refused in one line (exit 2), with nothing written; that line."""
    rc = cli.main(["bench", "merge", *map(str, paths), "--out", str(tmp_path / "m.json"), "--md", str(tmp_path / "m.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("alignvar-edge bench merge: error: "), err
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "m.md").exists()
    return err


def test_the_reviewers_forgery_is_refused_naming_the_file_engine_and_figure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A copy relabelled as a Xeon with AMX, every engine's p50 per tile divided by 4 and its tokens set
    to 100%: merged as a second device at 4x the speed, though its p50 lay below its own min and its
    ms/MP, tiles/s and raw timings were the real ones."""
    forged = _zen5()
    forged["label"] = "xeon-lab"
    forged["host"]["cpu"]["model"] = "Intel Xeon Platinum 8480+"
    forged["host"]["cpu"]["isa"] += ["amx_bf16", "amx_int8", "amx_tile"]
    for e in forged["engines"]:
        if e["status"] == "ok":
            e["latency"]["per_tile_ms"]["p50"] /= 4
            if e.get("fidelity"):
                e["fidelity"]["vs_reference"]["token_agreement"] = 1.0
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))          # by hand: no content hash, as an older report
    first = forged["engines"][0]
    real = _engine(_zen5(), first["label"])["latency"]["per_tile_ms"]["p50"]
    err = _merge_error([ZEN5, path], tmp_path, capsys)
    assert f"{path}: engine {first['label']}: latency.per_tile_ms.p50 is {real / 4}, but its raw_call_ms give " in err
    assert err.endswith("; was it edited after it was written? Merge reports as `alignvar-edge bench` wrote them, or "
                        "run the bench again"), err


@pytest.mark.parametrize("what, edit", [
    ("engine ov-int8: latency.per_tile_ms.p50", lambda r: _scale(_engine(r, "ov-int8")["latency"]["per_tile_ms"], "p50")),
    ("engine ov-int8: latency.per_call_ms.max",
     lambda r: _scale(_engine(r, "ov-int8")["latency"]["per_call_ms"], "max")),
    ("engine ov-int8: latency.per_megapixel_ms.p50",
     lambda r: _scale(_engine(r, "ov-int8")["latency"]["per_megapixel_ms"], "p50")),
    ("engine ov-int8: latency.throughput.tiles_per_s",
     lambda r: _scale(_engine(r, "ov-int8")["latency"]["throughput"], "tiles_per_s")),
    ("engine ov-int8: image.megapixels_per_s", lambda r: _scale(_engine(r, "ov-int8")["image"], "megapixels_per_s")),
    ("engine ov-int8: speedup_vs_eager", lambda r: _scale(_engine(r, "ov-int8"), "speedup_vs_eager")),
    ("engine ov-int8: image_speedup_vs_eager", lambda r: _scale(_engine(r, "ov-int8"), "image_speedup_vs_eager")),
    ("summary.best_cpu.speedup_vs_eager", lambda r: _scale(r["summary"]["best_cpu"], "speedup_vs_eager")),
    ("summary.best_cpu.label is 'ov-plain'", lambda r: r["summary"]["best_cpu"].update(label="ov-plain")),
    ("summary.image.best_cpu.mp_per_s", lambda r: _scale(r["summary"]["image"]["best_cpu"], "mp_per_s")),
    ("summary.eager_p50_ms_per_tile", lambda r: _scale(r["summary"], "eager_p50_ms_per_tile")),
])
def test_a_figure_edited_by_one_percent_is_refused(what: str, edit: Callable[[dict[str, Any]], None],
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _current()
    edit(report)
    path = write_json(tmp_path / "edited.json", report)        # its content hash made anew: the figures tell it
    err = _merge_error([path], tmp_path, capsys)
    assert f"{path}: {what}" in err and "edited after it was written" in err, err


def _scale(block: dict[str, Any], key: str) -> None:
    block[key] = round(block[key] * 1.01, 6)


def _mac(tile_ms_factor: float = 1 / 3) -> dict[str, Any]:
    """The Zen 5 report as a Mac's: its ov-plain row a Core ML engine on the Neural Engine, faster than
    any CPU engine (its raw timings `tile_ms_factor` of ov-plain's), figures made again."""
    mac = _zen5()
    coreml = _engine(mac, "ov-plain")
    coreml.update(label="coreml-fp16", backend="coreml", device="CPU_AND_NE")
    for part, key in (("latency", "raw_call_ms"), ("image", "raw_ms")):
        coreml[part][key] = [round(t * tile_ms_factor, 4) for t in coreml[part][key]]
    return made_again(mac)


def test_a_report_whose_summary_chose_by_earlier_rules_reads_and_its_arithmetic_is_checked(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Before Core ML could be the best engine, a Mac's summary named the best CPU engine beside a
    faster Core ML one; remaking its choices by today's rules refused such a report as edited."""
    assert _mac()["summary"]["best_cpu"]["label"] == "coreml-fp16"          # today's rules
    with monkeypatch.context() as m:                 # the rules before: Core ML rows do not compete
        m.setattr(runner, "_SOC_BACKENDS", ())
        older = _mac()
    del older["summary"]["rules"]                     # written before summaries recorded their rules
    assert older["summary"]["best_cpu"]["label"] == older["summary"]["image"]["best_cpu"]["label"] == "ov-int8"
    assert len(merge_reports([write_json(tmp_path / "mac.json", older)])["reports"]) == 1
    # its figures still follow from the engines it names: an edited one is refused
    edited = copy.deepcopy(older)
    _scale(edited["summary"]["best_cpu"], "speedup_vs_eager")
    with pytest.raises(ReportSchemaError, match=r"summary.best_cpu.speedup_vs_eager is .* but the engines' timings"):
        check_figures(edited, "mac.json")
    edited = copy.deepcopy(older)
    _scale(edited["summary"]["image"]["best_cpu"], "mp_per_s")
    with pytest.raises(ReportSchemaError, match=r"summary.image.best_cpu.mp_per_s is "):
        check_figures(edited, "mac.json")
    _scale(_engine(older, "coreml-fp16"), "speedup_vs_eager")         # and every ratio from its p50s
    with pytest.raises(ReportSchemaError, match=r"engine coreml-fp16: speedup_vs_eager is "):
        check_figures(older, "mac.json")


def test_a_choice_edited_in_a_report_of_todays_rules_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same summary, every figure agreeing with the engine it names, under today's rules: the
    faster Core ML engine was left out of the choice, so it was edited."""
    with monkeypatch.context() as m:
        m.setattr(runner, "_SOC_BACKENDS", ())
        edited = _mac()
    assert edited["summary"]["rules"] == runner.SUMMARY_RULES
    with pytest.raises(ReportSchemaError, match=r"summary.best_cpu.label is 'ov-int8', but the engines' timings give "
                                                r"'coreml-fp16'; was it edited"):
        check_figures(edited, "mac.json")
    check_figures(_mac(), "mac.json")


def test_a_per_round_spread_follows_from_the_raw_timings(tmp_path: Path) -> None:
    report = another_run(_zen5())                # this version's report: each ratio with its per-round spread
    spread = _engine(report, "ov-int8")["speedup_vs_eager_rounds"]
    assert spread["rounds"] == len(_engine(report, "ov-int8")["latency"]["raw_call_ms"])
    check_figures(report, "r.json")
    spread["p75"] += 0.5
    with pytest.raises(ReportSchemaError, match=r"engine ov-int8: speedup_vs_eager_rounds.p75 is "):
        check_figures(report, "r.json")


def test_a_report_without_raw_timings_is_checked_by_what_it_holds() -> None:
    report = json.loads(OLD.read_text())
    lat = _engine(report, "onnxruntime-fp32")["latency"]
    assert "raw_call_ms" not in lat
    check_figures(report, "old.json")
    edited = copy.deepcopy(report)
    _scale(_engine(edited, "onnxruntime-fp32")["latency"]["per_tile_ms"], "p50")
    with pytest.raises(ReportSchemaError, match=r"latency.per_tile_ms.p50 is .* but its per-call figures give "):
        check_figures(edited, "old.json")
    edited = copy.deepcopy(report)
    _engine(edited, "onnxruntime-fp32")["latency"]["per_call_ms"]["min"] = lat["per_call_ms"]["max"] + 1
    with pytest.raises(ReportSchemaError, match=r"latency.per_call_ms has its min .* above its p50"):
        check_figures(edited, "old.json")


def test_a_device_report_claims_no_ratio_to_an_eager_it_did_not_time() -> None:
    report = _zen5()
    report["engines"] = [e for e in report["engines"] if e["label"] not in ("pytorch-eager", "bicubic")]
    report["summary"] = {**report["summary"], "best_cpu": None, "image": None, "folder": None,
                         "eager_p50_ms_per_tile": None, "fp32_bound_ms_per_tile": None, "fp32_bound_speedup": None}
    with pytest.raises(ReportSchemaError, match=r"engine ov-plain: speedup_vs_eager is 3.337, but the engines' "
                                                r"timings give missing"):
        check_figures(report, "device.json")


def test_every_committed_report_reads() -> None:
    """The reports under docs/results were written by earlier versions (p90 of 5 runs, no per-round
    spreads, no raw timings, no content hash): every one reads, its figures agreeing with its data."""
    paths = [p for p in sorted(RESULTS.rglob("*.json")) if is_report(p)]
    assert len(paths) > 60
    for p in paths:
        check_figures(read_report(p), str(p))


def test_a_report_carries_its_content_hash_and_a_careless_edit_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "r.json", _zen5())
    written = json.loads(path.read_text())
    assert len(written["content_sha256"]) == 64 and read_report(path)["label"] == written["label"]
    path.write_text(path.read_text().replace('"token_agreement": 0.991226', '"token_agreement": 1.0'))
    err = _merge_error([path], tmp_path, capsys)
    assert f"{path} was edited after it was written (its content does not match its content_sha256)" in err, err
    # a merged report's hash covers its parts, which merging relabels: they keep none of their own
    merged = write_json(tmp_path / "m.json", merge_reports([ZEN5, write_json(tmp_path / "b.json", another_run(_zen5()))]))
    doc = read_report(merged)
    assert len(doc["content_sha256"]) == 64 and not [r for r in doc["reports"] if "content_sha256" in r]
    assert len(merge_reports([merged])["reports"]) == 2


@pytest.mark.parametrize("copy_of", [lambda r: r.update(label="jetson-orin"),
                                     lambda r: r.update(created="2030-01-01T00:00:01+00:00"),
                                     lambda r: r.update(label="jetson-orin", created="2030-01-01T00:00:01+00:00")])
def test_one_measurement_under_another_label_or_time_is_merged_once(copy_of: Callable[[dict[str, Any]], None],
                                                                   tmp_path: Path) -> None:
    again = _zen5()
    copy_of(again)
    path = write_json(tmp_path / "copy.json", again)
    merged = merge_reports([ZEN5, path])
    assert [r["label"] for r in merged["reports"]] == [_zen5()["label"]]
    said = [w for w in merged["warnings"] if "merged once" in w]
    assert len(said) == 1 and said[0].startswith(f"{path} repeats the report of {_zen5()['label']}"), said
    assert "the same raw timings on the same machine" in said[0]
    # another run of that machine is a second column
    rerun = write_json(tmp_path / "rerun.json", another_run(_zen5()))
    assert len(merge_reports([ZEN5, path, rerun])["reports"]) == 2


def test_one_measurement_on_another_host_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    moved = _zen5()
    moved["label"], moved["host"]["cpu"]["model"] = "xeon-lab", "Intel Xeon Platinum 8480+"
    path = write_json(tmp_path / "moved.json", moved)
    err = _merge_error([ZEN5, path], tmp_path, capsys)
    assert (f"{path} holds the raw timings of every engine of {ZEN5} ({_zen5()['label']}), timed on another "
            f"machine: CPU name Intel Xeon Platinum 8480+ where {ZEN5} has AMD EPYC; one of them was edited after it "
            "was written") in err, err
    # what does not tell machines apart (a kernel update, the load) is one machine: the run merged once
    again = _zen5()
    again["label"], again["host"]["os"]["release"], again["host"]["load_average"] = "later", "7.0.1", [9.0, 9.0, 9.0]
    merged = merge_reports([ZEN5, write_json(tmp_path / "again.json", again)])
    assert len(merged["reports"]) == 1 and [w for w in merged["warnings"] if "merged once" in w]


def test_one_trtexec_log_imported_on_two_machines_is_merged_once(tmp_path: Path) -> None:
    """A report without raw timings (trtexec's) is one measurement by its content, not by the machine
    that imported the log (`imported_by`): imported on a laptop and a workstation it merged twice."""
    from alignvar_edge.bench.device import trtexec_report
    log = Path(__file__).resolve().parent / "data" / "trtexec" / "trt10-orin-fp16-dla.log"
    here, laptop = trtexec_report(log, batch=16), trtexec_report(log, batch=16)
    assert "imported_by" in here["host"]
    laptop["created"] = "2030-01-01T00:00:00+00:00"
    laptop["host"]["imported_by"]["cpu"].update(model="Intel Core i7-12700", x86_family=6, x86_model=151)
    merged = merge_reports([write_json(tmp_path / "here.json", here), write_json(tmp_path / "laptop.json", laptop)])
    assert [r["label"] for r in merged["reports"]] == [here["label"]]
    assert [w for w in merged["warnings"] if "merged once" in w] == [
        f"{tmp_path / 'laptop.json'} repeats the report of {here['label']} ({here['created']}) in "
        f"{tmp_path / 'here.json'} (dated 2030-01-01T00:00:00+00:00: the same figures on the same machine): merged once"]
    # another log of that device is another measurement
    other = trtexec_report(log, batch=16)
    other["engines"][0]["latency"]["per_call_ms"] = {k: v * 2 for k, v in other["engines"][0]["latency"]["per_call_ms"].items()}
    assert len(merge_reports([tmp_path / "here.json", write_json(tmp_path / "o.json", made_again(other))])["reports"]) == 2
