"""`deploy` and `bench` do what their help says: an fp32 asked for by name is f32, --threads N
(even 1) skips the all-core row, a trtexec log that names no device is not credited to the
machine that imports it, bench flags a run would not read are refused, and the nested verbs
(`bench merge`, `bench trtexec`) name themselves in their errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _runtime_fixtures import sharp_model
from alignvar_edge import cli
from alignvar_edge.bench.runner import BenchOptions
from alignvar_edge.deploy import DeployOptions, deploy
from alignvar_edge.errors import InputError
from alignvar_edge.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
NO_DEVICE_LOG = ROOT / "tests" / "data" / "trtexec" / "trt84-xavier.log"     # a summary only: no device lines
CPU_REPORT = ROOT / "docs" / "results" / "epyc-2core" / "tiny-t1.json"


def _one_line(code: int, err: str) -> str:
    """The one error line a refused command prints (exit 2)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _help_of(verb: str) -> str:
    parser = cli.build_parser().verb_parsers[verb]
    return " ".join(parser.format_help().split())


# ------------------------------------------------------------------------------------------------
# deploy
# ------------------------------------------------------------------------------------------------
@pytest.fixture()
def bf16_host(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """This host as one with fast bf16 units (whatever its CPU), and deploy's half-first build
    recorded instead of run: the targets it was asked for."""
    from alignvar_edge.runtimes import half
    tried: list[str] = []

    def build_auto(source: Any, target: str, *args: Any, **kw: Any) -> Any:
        tried.append(target)
        raise RuntimeError("half-first build")
    monkeypatch.setattr(half, "host_half", lambda backend, device, features=None:
                        "bf16" if backend == "openvino" else None)
    monkeypatch.setattr(half, "build_auto", build_auto)
    return tried


def _deploy_openvino(out: Path, export: Path, **kw: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    opts = DeployOptions(out=str(out), model=sharp_model("micro"), export=str(export), targets="openvino",
                         quick=True, runs=1, warmup=0, bench_tiles=1, **kw)
    return deploy(opts, log=lines.append), lines


def test_deploy_precision_fp32_by_name_builds_f32_and_threads_1_skips_the_all_core_row(
        micro_export: Path, tmp_path: Path, bf16_host: list[str]) -> None:
    # `deploy --precision fp32` built openvino-bf16 on a bf16 CPU, and no option gave an f32 engine
    res, lines = _deploy_openvino(tmp_path / "d", micro_export, precisions=("fp32",), threads=1)
    assert bf16_host == [] and res.exit_code == 0, "\n".join(lines)
    assert any(ln.startswith("[2/4] build openvino-fp32 (") for ln in lines), lines
    engine = read_manifest(tmp_path / "d" / "engines" / "openvino-fp32")
    assert engine.precision == "fp32" and engine.extra["inference_precision_hint"] == "f32"
    assert [e["label"] for e in res.report["engines"] if e["kind"] == "engine"] == ["openvino-fp32"]
    # --threads 1, the default's own count, still states it: no all-core row
    assert "all_cores" not in res.report and not [ln for ln in lines if "second row" in ln]


def test_deploy_without_precision_tries_the_hosts_half_first(micro_export: Path, tmp_path: Path,
                                                             bf16_host: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from alignvar_edge import runtimes

    def build(*args: Any, **kw: Any) -> Any:        # the default's int8 step: not what this test is about
        raise RuntimeError("not built in this test")
    monkeypatch.setattr(runtimes, "build", build)
    res, lines = _deploy_openvino(tmp_path / "d", micro_export, threads=1)
    assert bf16_host == ["openvino"], lines
    assert any(ln.startswith("[2/5] build openvino-bf16 (else fp32) (") for ln in lines), lines
    assert res.report["deploy"]["options"]["precisions"] == ["fp32", "int8"]


def test_deploy_help_says_what_precision_and_threads_do() -> None:
    text = _help_of("deploy")
    assert ("without --precision, OpenVINO's fp32 step builds bf16 first on a CPU with fast bf16 units (kept "
            "where the tokens hold, as `build` without --precision), while a --precision that names fp32 builds "
            "f32") in text, text
    assert "without --threads a second, all-core row follows; --threads N (even 1) skips it" in text, text


# ------------------------------------------------------------------------------------------------
# bench trtexec: a log that names no device
# ------------------------------------------------------------------------------------------------
def test_bench_trtexec_refuses_a_log_naming_no_device_without_label(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.json"
    rc = cli.main(["bench", "trtexec", str(NO_DEVICE_LOG), "--batch", "16", "--out", str(out)])
    line = _one_line(rc, capsys.readouterr().err)
    assert line.startswith(f"alignvar-edge bench trtexec: error: {NO_DEVICE_LOG} names no device ") and "--label" in line
    assert not out.exists()


def test_bench_trtexec_labels_a_log_naming_no_device_as_label_says(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.json"
    rc = cli.main(["bench", "trtexec", str(NO_DEVICE_LOG), "--batch", "16", "--label", "Xavier", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    # the importing machine is kept as the one that imported it, never as the device
    assert report["label"] == "Xavier" and report["host"]["cpu"] == {} and "imported_by" in report["host"]
    assert [g["name"] for g in report["host"]["gpus"]] == ["Xavier"]
    # the log names no precision: the row invents none
    (engine,) = report["engines"]
    assert engine["label"] == "tensorrt" and engine["precision"] is None
    merged = tmp_path / "m.json"
    assert cli.main(["bench", "merge", str(CPU_REPORT), str(out), "--out", str(merged)]) == 0
    capsys.readouterr()
    rows = json.loads(merged.read_text())["rows"]
    assert [r["device"] for r in rows if r["label"] == "tensorrt"] == ["Xavier"]
    # a log of another device under one --out is not replaced without --force
    rc = cli.main(["bench", "trtexec", str(NO_DEVICE_LOG), "--batch", "16", "--label", "Nano", "--out", str(out)])
    assert "is a report timed on another machine" in _one_line(rc, capsys.readouterr().err)
    assert json.loads(out.read_text())["label"] == "Xavier"


# ------------------------------------------------------------------------------------------------
# bench flags a run would not read
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, line", [
    (["--staged", "ES", "--profile-runs", "0"],
     "--staged applies to a per-stage profile only: --profile-runs 0 runs none; leave one of them out"),
    (["--folder-size", "16"], "--folder-size applies to --folder-images only"),
    (["--image-size", "0", "--overlap", "2"],
     "--overlap applies to the whole-image and folder timings only: --image-size 0 times no image, and no "
     "--folder-images is given"),
    (["--image-size", "0", "--image-runs", "3"],
     "--image-runs applies to the whole-image and folder timings only: --image-size 0 times no image, and no "
     "--folder-images is given"),
])
def test_bench_refuses_a_flag_the_run_would_not_read(flags: list[str], line: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    rc = cli.main(["bench", "bicubic", *flags, "--out", str(out)])
    assert _one_line(rc, capsys.readouterr().err) == f"alignvar-edge bench: error: {line}"
    assert not out.exists()


def test_bench_options_name_an_unread_option_as_python_passes_it() -> None:
    with pytest.raises(InputError, match=r"^image_overlap= applies to the whole-image and folder timings only: "
                                         r"image_size=0 times no image, and no folder_images= is given$"):
        BenchOptions(image_size=0, image_overlap=2).validate()
    # read where a folder is timed
    BenchOptions(image_size=0, image_overlap=2, image_runs=3, folder_images=2, folder_size=8).validate()


# ------------------------------------------------------------------------------------------------
# the nested verbs name themselves
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("verb, operand", [("merge", str(CPU_REPORT)), ("trtexec", "t.log"), (None, "bicubic")])
def test_an_unknown_flag_names_the_nested_verb_and_its_help(verb: str | None, operand: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["bench", *([verb] if verb else []), operand, "--bogus"])
    who = f"alignvar-edge bench{f' {verb}' if verb else ''}"
    assert _one_line(rc, capsys.readouterr().err) == (f"{who}: error: unrecognized arguments: --bogus; "
                                                      f"see `{who} --help`")


@pytest.mark.parametrize("argv", [[], ["--out", "t.json"]])
def test_bench_trtexec_without_log_names_the_log_first(argv: list[str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["bench", "trtexec", *argv])
    line = _one_line(rc, capsys.readouterr().err)
    assert line.startswith("alignvar-edge bench trtexec: error: reads one LOG, trtexec's saved output "
                           "(none given): alignvar-edge bench trtexec LOG "), line
