"""`bench merge` and the machines behind its columns: reports of one label timed on different machines
(another x86 family and model, another CPU name, a report that records none, other GPUs; never
another kernel or C library: `host.machine_identity`, the one rule a bench's --out reads too) get
columns told apart by what differs, with a warning, and '#2' stays a second report of one machine;
a device with several engines of one kind, whose rows line up by label, says so in a note."""
from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

from _bench_reports import another_run
from alignvar_edge.bench.integrity import made_again
from alignvar_edge.bench.merge import lineup, merge_reports
from alignvar_edge.bench.schema import write_json

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
ZEN4 = RESULTS / "epyc-zen4-2core" / "b16-engines.json"          # an older report: no x86 family and model
ZEN5 = RESULTS / "epyc-zen5-2core" / "engines.json"              # x86 family 26 model 2
LABEL = "AMD EPYC, 2 cores"
_RUNS = itertools.count(1)


def _zen5(created: str = "2030-01-01T00:00:00+00:00", **cpu: Any) -> dict[str, Any]:
    """The Zen 5 report as if written at `created` (another run) on a CPU with the fields `cpu` sets."""
    r = another_run(json.loads(ZEN5.read_text()), 1 + next(_RUNS) / 100)
    r["created"] = created
    r["host"]["cpu"].update(cpu)
    return r


def _labels(merged: dict[str, Any]) -> list[str]:
    return [r["label"] for r in merged["reports"]]


def _cpu_warnings(merged: dict[str, Any]) -> list[str]:
    return [w for w in merged["warnings"] if "were timed on different machines" in w]


def test_the_zen4_and_zen5_reports_get_a_column_each_not_a_second_run_of_one(tmp_path: Path) -> None:
    zen4, zen5 = json.loads(ZEN4.read_text()), json.loads(ZEN5.read_text())
    assert zen4["label"] == zen5["label"] == LABEL and zen4["host"]["cpu"]["model"] == zen5["host"]["cpu"]["model"]
    merged = merge_reports([ZEN4, ZEN5])
    columns = [f"{LABEL}, family and model not recorded", f"{LABEL}, x86 family 26 model 2"]
    assert _labels(merged) == columns
    assert lineup(merged, "speedup")[0] == ["model", "engine", "precision", "batch", "on", *columns]
    assert _cpu_warnings(merged) == [
        f"the reports labelled '{LABEL}' were timed on different machines, or on machines that cannot be told the "
        "same (an older report records no x86 family and model), so each has a column of its own: "
        f"'{columns[0]}', '{columns[1]}'; compare their figures as different machines, not as runs of one"]
    # merged again with one of its parts: the part once, the columns as they were
    again = merge_reports([write_json(tmp_path / "m.json", merged), ZEN5])
    assert _labels(again) == columns and sum("merged once" in w for w in again["warnings"]) == 1


def test_cpus_of_another_family_and_model_are_told_apart_and_a_rerun_of_one_is_its_second(tmp_path: Path) -> None:
    zen4ish = _zen5(x86_family=25, x86_model=17)
    rerun = _zen5("2030-01-02T00:00:00+00:00")
    paths = [write_json(tmp_path / f"{n}.json", r) for n, r in (("a", zen4ish), ("b", _zen5()), ("c", rerun))]
    merged = merge_reports(paths)
    columns = [f"{LABEL}, x86 family 25 model 17", f"{LABEL}, x86 family 26 model 2",
               f"{LABEL}, x86 family 26 model 2 #2"]
    assert _labels(merged) == columns
    warned = _cpu_warnings(merged)
    assert len(warned) == 1 and "cannot be told the same" not in warned[0]
    assert all(f"'{c}'" in warned[0] for c in columns)
    # a merged report's labels are compared without what the merge added: merged again, it stays as it was
    again = merge_reports([write_json(tmp_path / "m.json", merged), paths[0]])
    assert _labels(again) == columns and _cpu_warnings(again) == warned


def test_one_cpu_reported_twice_is_label_and_label_2_without_a_warning(tmp_path: Path) -> None:
    merged = merge_reports([write_json(tmp_path / "a.json", _zen5()),
                            write_json(tmp_path / "b.json", _zen5("2030-01-02T00:00:00+00:00"))])
    assert _labels(merged) == [LABEL, f"{LABEL} #2"] and _cpu_warnings(merged) == []


def test_one_given_label_on_cpus_of_other_names_takes_each_cpus_name(tmp_path: Path) -> None:
    a, b = _zen5(model="AMD EPYC 9B45"), _zen5(model="AMD EPYC 9B14", x86_family=25, x86_model=17)
    a["label"] = b["label"] = "edge-box"
    merged = merge_reports([write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)])
    assert _labels(merged) == ["edge-box, AMD EPYC 9B45 (x86 family 26 model 2)",
                               "edge-box, AMD EPYC 9B14 (x86 family 25 model 17)"]
    assert len(_cpu_warnings(merged)) == 1


def test_an_arm_report_beside_an_x86_one_is_not_said_to_record_no_x86_family(tmp_path: Path) -> None:
    """An Arm CPU has no x86 family and model: the warning said an older report recorded none."""
    arm = _zen5(model="Neoverse-V2", arch="aarch64", x86_family=None, x86_model=None,
                isa=["asimd", "asimddp", "asimdhp", "bf16", "i8mm", "sve"])
    merged = merge_reports([write_json(tmp_path / "arm.json", arm), write_json(tmp_path / "x86.json", _zen5())])
    assert _labels(merged) == [f"{LABEL}, SVE", f"{LABEL}, AVX512-BF16"]
    assert _cpu_warnings(merged) == [
        f"the reports labelled '{LABEL}' were timed on different machines, so each has a column of its own: "
        f"'{LABEL}, SVE', '{LABEL}, AVX512-BF16'; compare their figures as different machines, not as runs of one"]


def _on(report: dict[str, Any], **host: Any) -> dict[str, Any]:
    report["host"].update(host)
    return report


def test_a_kernel_update_is_the_same_machine_and_another_gpu_is_another(tmp_path: Path) -> None:
    """What tells machines apart is `machine_identity`: the OS's system, not its release or C library;
    the GPUs' names."""
    later = _on(_zen5("2030-01-02T00:00:00+00:00"), os={"system": "Linux", "release": "6.19.2",
                                                         "platform": "Linux-6.19.2-x86_64-with-glibc2.41"})
    merged = merge_reports([write_json(tmp_path / "a.json", _zen5()), write_json(tmp_path / "b.json", later)])
    assert _labels(merged) == [LABEL, f"{LABEL} #2"] and _cpu_warnings(merged) == []
    gpu = _on(_zen5("2030-01-03T00:00:00+00:00"), gpus=[{"name": "NVIDIA L4"}])
    merged = merge_reports([write_json(tmp_path / "a.json", _zen5()), write_json(tmp_path / "c.json", gpu)])
    assert _labels(merged) == [f"{LABEL}, GPUs none", f"{LABEL}, GPUs NVIDIA L4"]
    assert len(_cpu_warnings(merged)) == 1
    # merged again with one of its parts: the part once, the columns as they were
    again = merge_reports([write_json(tmp_path / "m.json", merged), tmp_path / "c.json"])
    assert _labels(again) == _labels(merged) and sum("merged once" in w for w in again["warnings"]) == 1


def _with_int8_engines(label: str, engines: list[str], created: str) -> dict[str, Any]:
    """The Zen 5 report under `label` with PyTorch eager and its OpenVINO int8 engine under each of
    `engines`' labels: one build timed once per label."""
    r = _zen5(created)
    r["label"] = label
    eager, int8 = (next(e for e in r["engines"] if e["label"] == name) for name in ("pytorch-eager", "ov-int8"))
    r["engines"] = [eager] + [{**copy.deepcopy(int8), "label": name} for name in engines]
    return made_again(r)


def _by_label_notes(merged: dict[str, Any]) -> list[str]:
    return [n for n in merged["notes"] if "line up across the devices by label" in n]


def test_a_device_with_several_engines_of_one_kind_says_its_rows_line_up_by_label(tmp_path: Path) -> None:
    one = write_json(tmp_path / "a.json", _with_int8_engines("box-a", ["openvino-int8"], "2030-01-01T00:00:00+00:00"))
    three = write_json(tmp_path / "b.json", _with_int8_engines("box-b", ["x", "y", "z"], "2030-01-02T00:00:00+00:00"))
    merged = merge_reports([one, three])
    # what the note explains: four rows, each timed on one device only
    rows = {row[1]: row[5:] for row in lineup(merged, "ms_per_mp")[1:]}
    assert [rows[name].count("–") for name in ("openvino-int8", "x", "y", "z")] == [1, 1, 1, 1]
    assert _by_label_notes(merged) == [
        "alignvar-tiny: box-b timed 3 engines of one kind (openvino int8, batch 16, on cpu): x, y, z; rows of that "
        "kind line up across the devices by label, not by what ran, so each engine of it on another device "
        "(openvino-int8 on box-a) shares a row only with one of its label"]
    assert _by_label_notes(merged)[0] in merge_reports([tmp_path / "b.json", tmp_path / "a.json"])["notes"]


def test_engines_of_one_kind_on_one_device_only_or_once_per_device_give_no_by_label_note(tmp_path: Path) -> None:
    three = write_json(tmp_path / "b.json", _with_int8_engines("box-b", ["x", "y", "z"], "2030-01-02T00:00:00+00:00"))
    assert _by_label_notes(merge_reports([three])) == []           # nothing to line up with
    other = write_json(tmp_path / "c.json", _with_int8_engines("box-c", ["w"], "2030-01-03T00:00:00+00:00"))
    one = write_json(tmp_path / "a.json", _with_int8_engines("box-a", ["openvino-int8"], "2030-01-01T00:00:00+00:00"))
    merged = merge_reports([one, other])
    assert _by_label_notes(merged) == []                          # one each: one row by what ran
    assert [row[1] for row in lineup(merged)[1:]] == ["openvino-int8 / w", "pytorch-eager"]
