"""What a short disk or a short memory does to export and the OpenVINO build: refused before the
work where the output's size is known to be past the free room, one line where memory runs out
(protobuf's serialiser, OpenVINO's compile), and advice that fits the verb. The failures are raised
in this process (no real memory or disk limits)."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import EncodeError

from _runtime_fixtures import sharp_model
from alignvar_edge import errors, fsmodes
from alignvar_edge.cli import main
from alignvar_edge.errors import ArtifactError, OutOfMemoryError, out_of_memory

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _graph_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("model.onnx"))


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The run's one error line (its progress lines aside), with no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _no_tracing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """export_graph recorded instead of run: what an export traced."""
    from alignvar_edge.export import onnx_export
    traced: list[str] = []
    monkeypatch.setattr(onnx_export, "export_graph", lambda spec, *a, **k: traced.append(spec.file))
    return traced


# --- disk ------------------------------------------------------------------------------------------

def test_the_export_estimate_is_no_more_than_what_an_export_writes(micro_export):
    """A refusal must never stop an export that would have fitted: the estimate stays below the
    bytes a real export wrote (its graph files, measured on disk)."""
    from alignvar_edge.export.onnx_export import output_bytes
    estimate = output_bytes(sharp_model("micro"), "single")
    # a model this small is mostly the graph's constants (resampling matrices): 0.39x here, 1.01x at d16
    assert 0.3 * _graph_bytes(micro_export) <= estimate <= _graph_bytes(micro_export)


@pytest.mark.parametrize("graph, refine", [("single", False), ("staged", False), ("staged", True)])
def test_the_estimate_stays_below_what_an_export_of_a_model_with_a_refiner_writes(graph, refine, tmp_path):
    """The staged form's step graphs each hold the transformer; without the refiner (--no-refine)
    no graph holds it: an estimate that counted it refused a VARSR export that would have fitted."""
    import torch

    from alignvar_edge.export.onnx_export import export_onnx, output_bytes
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AlignVAR(AlignVARConfig.from_preset("micro", refiner_width=256, refiner_depth=3,
                                                    refiner_steps=2)).eval()
    export_onnx(model, tmp_path / "e", graph=graph, refine=refine, batch=1, n_tiles=1)
    written = _graph_bytes(tmp_path / "e") if graph == "single" else sum(
        f.stat().st_size for f in (tmp_path / "e").rglob("*") if f.is_file() and ".onnx" in f.name)
    assert 0.3 * written <= output_bytes(model, graph, refine) <= written


def test_an_export_past_the_free_room_is_refused_before_any_tracing(tmp_path, monkeypatch, capsys):
    traced = _no_tracing(monkeypatch)
    monkeypatch.setattr(fsmodes, "free_bytes", lambda path: 58_000_000 if Path(path) == tmp_path / "d16" else None)
    monkeypatch.setattr("alignvar_edge.export.onnx_export.output_bytes", lambda *_: 1_700_000_000)
    assert main(["export", "--preset", "micro", "--out", str(tmp_path / "d16")]) == 2
    assert _one_line(capsys) == (f"alignvar-edge export: error: export needs about 1.7 GB at {tmp_path / 'd16'}; "
                                 "58 MB free there: free some space or choose another --out")
    assert traced == [] and not (tmp_path / "d16").exists()


def test_an_export_with_room_for_its_estimate_goes_on(tmp_path, monkeypatch):
    from alignvar_edge.export import onnx_export
    model = sharp_model("micro")
    monkeypatch.setattr(fsmodes, "free_bytes", lambda path: onnx_export.output_bytes(model, "single"))

    def stop(spec: Any, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(onnx_export, "export_graph", stop)
    with pytest.raises(KeyboardInterrupt):                   # it reached the tracing
        onnx_export.export_onnx(model, tmp_path / "e")


def test_free_room_is_read_at_the_nearest_folder_that_exists(tmp_path):
    assert fsmodes.free_bytes(tmp_path / "not" / "yet" / "made") == fsmodes.free_bytes(tmp_path) > 0


def test_sizes_read_as_people_read_them():
    assert [fsmodes.byte_text(n) for n in (1_676_000_000, 58_123_456, 12_108_243, 120_000_000_000, 4_096, 12)] == \
        ["1.7 GB", "58 MB", "12 MB", "120 GB", "4.1 kB", "12 bytes"]


def _short_disk(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every disk has 1 kB free and every export needs 1.7 GB: the export is refused before tracing."""
    monkeypatch.setattr(fsmodes, "free_bytes", lambda path: 1_000)
    monkeypatch.setattr("alignvar_edge.export.onnx_export.output_bytes", lambda *_: 1_700_000_000)
    return _no_tracing(monkeypatch)


def test_selftest_short_of_room_names_its_cache_and_the_variable_that_moves_it(tmp_path, monkeypatch, capsys):
    """It named the hashed entry it was making and said 'choose another --out': selftest has none."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(cache))
    traced = _short_disk(monkeypatch)
    from alignvar_edge.runtimes import golden
    sharp_model("micro").save_pretrained(str(tmp_path / "micro"))
    golden.make_golden(tmp_path / "micro", n=1)
    assert main(["selftest", "--backend", "onnxruntime", "--model", str(tmp_path / "micro")]) == 2
    assert _one_line(capsys) == (f"alignvar-edge selftest: error: export needs about 1.7 GB at {cache}; 1.0 kB free "
                                 "there: free some space or set ALIGNVAR_EDGE_CACHE to a folder on a disk with more room")
    assert traced == []


def test_deploy_short_of_room_names_its_out_not_its_staging_folder(tmp_path, monkeypatch, capsys):
    """It named its hidden staging folder, removed by the time the line is read."""
    traced = _short_disk(monkeypatch)
    assert main(["deploy", "--preset", "micro", "--targets", "onnxruntime", "--quick",
                 "--out", str(tmp_path / "dep")]) == 2
    assert _one_line(capsys) == (f"alignvar-edge deploy: error: export needs about 1.7 GB at {tmp_path / 'dep'}; "
                                 "1.0 kB free there: free some space or choose another --out")
    assert traced == []


def test_a_disk_full_during_the_export_says_how_much_the_output_needed(tmp_path, monkeypatch, capsys):
    from alignvar_edge.export import onnx_export
    monkeypatch.setattr(onnx_export, "output_bytes", lambda *_: 1_520_000_000)
    monkeypatch.setattr(fsmodes, "free_bytes", lambda path: None)          # room that cannot be told

    def disk_full(spec: Any, path: Path, *args: Any) -> None:
        path.write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(onnx_export, "export_graph", disk_full)
    assert main(["export", "--preset", "micro", "--out", str(tmp_path / "d16")]) == 1
    assert _one_line(capsys) == (f"alignvar-edge export: error: no space left on the device writing "
                                 f"{tmp_path / 'd16'} (it needs about 1.5 GB); free some space or choose another output")


# --- memory ----------------------------------------------------------------------------------------

class _Program:
    """What torch.onnx.export returns, whose save fails as protobuf fails."""
    model = None

    def save(self, path: str, external_data: bool) -> None:
        raise EncodeError("Failed to serialize proto")


def _saving_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from alignvar_edge.export import onnx_export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: _Program())
    monkeypatch.setattr(onnx_export, "_light_optimize", lambda model: None)
    monkeypatch.setattr(onnx_export, "_portable_stack_traces", lambda model: None)


def test_protobuf_failing_to_serialise_an_export_is_one_out_of_memory_line(tmp_path, monkeypatch, capsys):
    _saving_fails(monkeypatch)
    assert main(["export", "--preset", "micro", "--out", str(tmp_path / "e")]) == 1
    line = _one_line(capsys)
    assert line.startswith("alignvar-edge export: error: ran out of memory saving model.onnx (Failed to serialize "
                           "proto); close other programs"), line


def test_protobuf_failing_on_a_graph_past_its_2_gib_limit_is_not_called_out_of_memory(tmp_path, monkeypatch):
    from alignvar_edge.export.graphs import specs_for
    from alignvar_edge.export.onnx_export import export_graph
    _saving_fails(monkeypatch)
    spec = specs_for(sharp_model("micro"), "single", 1, True)[0]
    with pytest.raises(EncodeError):
        export_graph(spec, tmp_path / "model.onnx", 18, False, 3 * 2**30)
    with pytest.raises(OutOfMemoryError):            # its weights in a .data file: the graph is small
        export_graph(spec, tmp_path / "model.onnx", 18, True, 3 * 2**30)


def test_protobuf_failing_to_serialise_the_split_graph_is_out_of_memory(micro_export, monkeypatch):
    from alignvar_edge.runtimes.openvino import split

    def no_memory(model: Any) -> None:
        raise EncodeError("Failed to serialize proto")
    monkeypatch.setattr(split, "Extractor", no_memory)
    with pytest.raises(OutOfMemoryError, match=r"^ran out of memory splitting model.onnx for OpenVINO"):
        split.split_at_tokens(micro_export / "model.onnx")


# OpenVINO 2026.4's words when compile_model's allocation fails under `prlimit --as`, and its words
# with no reason in them
_CANT_ALLOC = ("Exception from src/inference/src/cpp/core.cpp:117:\n"
               "Exception from src/inference/src/dev/plugin.cpp:54:\ncan't alloc\n\n")
_NO_REASON = "Exception from src/inference/src/cpp/core.cpp:117:\nException from src/inference/src/dev/plugin.cpp:54:\n"


@pytest.fixture()
def ov_compile_fails(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("openvino", reason="OpenVINO is not installed (the `openvino` extra)")
    from alignvar_edge.runtimes.openvino import backend

    def failing(text: str) -> None:
        def engine(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(text)
        monkeypatch.setattr(backend, "OpenVINOEngine", engine)
    return failing


def test_openvino_failing_to_allocate_while_compiling_the_build_is_out_of_memory(micro_export, tmp_path,
                                                                                 ov_compile_fails, capsys):
    ov_compile_fails(_CANT_ALLOC)
    assert main(["build", str(micro_export), "--target", "openvino", "--precision", "fp32",
                 "--out", str(tmp_path / "ov")]) == 1
    line = _one_line(capsys)
    assert line.startswith("alignvar-edge build: error: ran out of memory compiling the fp32 model in OpenVINO CPU "
                           "(can't alloc); close other programs"), line
    assert not (tmp_path / "ov").exists()


def test_openvino_failing_with_no_reason_where_memory_is_short_is_out_of_memory(micro_export, tmp_path,
                                                                                ov_compile_fails, monkeypatch):
    from alignvar_edge import runtimes
    ov_compile_fails(_NO_REASON)
    monkeypatch.setattr(errors, "memory_is_short", lambda: True)
    with pytest.raises(OutOfMemoryError, match=r"^ran out of memory compiling the fp32 model in OpenVINO CPU; "):
        runtimes.build(micro_export, "openvino", "fp32", out=tmp_path / "ov")


def test_openvino_failing_with_no_reason_and_memory_to_spare_names_memory_among_the_causes(
        micro_export, tmp_path, ov_compile_fails, monkeypatch):
    from alignvar_edge import runtimes
    ov_compile_fails(_NO_REASON)
    monkeypatch.setattr(errors, "memory_is_short", lambda: False)
    with pytest.raises(ArtifactError) as info:
        runtimes.build(micro_export, "openvino", "fp32", out=tmp_path / "ov")
    said = str(info.value)
    assert "(Exception from src/inference/src/cpp/core.cpp:117:)" in said and "memory is short" in said, said


def _fake_cgroup(tmp_path: Path, monkeypatch, limit: str, current: int, inactive_file: int) -> None:
    (tmp_path / "self_cgroup").write_text("0::/ctr\n")
    (tmp_path / "ctr").mkdir()
    (tmp_path / "ctr" / "memory.max").write_text(f"{limit}\n")
    (tmp_path / "ctr" / "memory.current").write_text(f"{current}\n")
    (tmp_path / "ctr" / "memory.stat").write_text(f"anon 1000\nfile 5000\ninactive_file {inactive_file}\n")
    monkeypatch.setattr(errors, "_PROC_CGROUP", str(tmp_path / "self_cgroup"))
    monkeypatch.setattr(errors, "_CGROUP_ROOT", str(tmp_path))


@pytest.mark.parametrize("inactive_file, short", [(0, True), (2**30, False)])
def test_a_cgroup_at_its_limit_with_page_cache_to_drop_is_not_short(tmp_path, monkeypatch, inactive_file, short):
    """After heavy file I/O memory.current sits at memory.max: the page cache the kernel can drop
    counted as used, and an OpenVINO compile failure with no reason read as out of memory."""
    _fake_cgroup(tmp_path, monkeypatch, limit=str(4 * 2**30), current=4 * 2**30 - 2**20, inactive_file=inactive_file)
    assert errors.memory_is_short() is short


def test_a_cgroup_with_no_limit_leaves_it_to_the_probe(tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, limit="max", current=2**40, inactive_file=0)
    assert not errors.memory_is_short()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from Linux's /proc")
def test_the_memory_probe_takes_no_memory():
    """The probe zero-filled 256 MiB (a process's peak rose to 264 MiB; at a container's limit that
    brings the OOM killer): a mapping that is never touched costs nothing."""
    import subprocess
    import sys
    peak = subprocess.run([sys.executable, "-c", "from alignvar_edge import errors\n"
                           "errors._cgroup_headroom = lambda: None\n"
                           "assert not errors.memory_is_short()\n"
                           "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"],
                          capture_output=True, text=True, check=True).stdout
    assert int(peak) * 1024 < 128 * 2**20


def test_memory_is_short_where_a_probe_cannot_be_had_or_the_cgroup_is_at_its_limit(monkeypatch):
    monkeypatch.setattr(errors, "_cgroup_headroom", lambda: None)
    assert not errors.memory_is_short()
    monkeypatch.setattr(errors, "_cgroup_headroom", lambda: 10 * 2**20)
    assert errors.memory_is_short()
    monkeypatch.setattr(errors, "_cgroup_headroom", lambda: None)
    monkeypatch.setattr(errors, "_HEADROOM", 2**62)          # no process maps that much
    assert errors.memory_is_short()


def test_a_runtime_error_with_no_reason_is_not_memory_unless_the_caller_says_its_runtime_fails_so(monkeypatch):
    monkeypatch.setattr(errors, "memory_is_short", lambda: True)
    assert out_of_memory(RuntimeError(_NO_REASON)) is None
    assert out_of_memory(RuntimeError("Exception from x.cpp:1:\nCheck 'rank == 4' failed"), wordless=True) is None
    assert out_of_memory(RuntimeError(_NO_REASON), wordless=True) is not None


# --- advice that fits the verb ---------------------------------------------------------------------

@pytest.mark.parametrize("verb, argv, says", [
    ("train", ["train", "vqvae", "--out", "R", "--steps", "1"], "train with a smaller --batch, fewer --workers or a "
                                                                "smaller --max-megapixels"),
    ("quantize", ["quantize", "E"], "quantize an export made with a smaller --batch"),
    ("export", ["export", "--out", "E"], "export with --external-data yes (the weights beside the graph, not inside "
                                         "it) or a smaller --batch"),
])
def test_running_out_of_memory_gives_advice_that_fits_the_verb(verb, argv, says, monkeypatch, capsys):
    from alignvar_edge.export import commands as export_commands
    from alignvar_edge.quantize import commands as quantize_commands
    from alignvar_edge.train import commands as train_commands

    def no_memory(args: Any) -> int:      # quantize's sessions say it before the CLI does
        raise out_of_memory(MemoryError(), "loading model.onnx in ONNX Runtime") if verb == "quantize" else MemoryError()
    monkeypatch.setattr({"train": train_commands, "quantize": quantize_commands, "export": export_commands}[verb],
                        f"run_{verb}", no_memory)
    assert main(argv) == 1
    line = _one_line(capsys)
    assert f"; close other programs, or {says}" in line and "tiles" not in line, line
