"""What --force may replace, and what it must keep: a manifest.json edited by hand (an artifact's own,
or an engine's inside a deploy folder), a file under a Finder name that Finder did not write, and a
bench report that may be the only copy of another machine's figures.

Model: the `micro` preset with seeded random weights (see _runtime_fixtures), exported once and
cached; the engine is its ONNX Runtime build.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest

from _runtime_fixtures import cache_root, export_dir, sharp_model
from alignvar_edge import cli, runtimes
from alignvar_edge.errors import ArtifactError, OutputExistsError
from alignvar_edge.manifest import MANIFEST_FILE, ModelInfo, ModelSource, load_verified, new_manifest, write_manifest
from alignvar_edge.outputs import artifact_dir, check_out

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# what Finder writes begins so (Apple's AppleDouble format; Finder's .DS_Store "Bud1" header)
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        "
DS_STORE = b"\x00\x00\x00\x01Bud1" + b"\x00" * 24


@pytest.fixture(scope="module")
def export(pytestconfig: pytest.Config) -> Path:
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


@pytest.fixture(scope="module")
def ort_dir(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return runtimes.build(export, "onnxruntime", out=tmp_path_factory.mktemp("force") / "ort", threads=1)


def _error(code: int, err: str) -> str:
    """The one line a refused command prints."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in err, err
    return lines[0]


def _edit_manifest(root: Path, keep_hash: bool = True) -> None:
    """A note added to `root`'s manifest.json by hand, its content hash kept (or dropped, as an older
    manifest lacks it)."""
    doc = json.loads((root / MANIFEST_FILE).read_text())
    doc["extra"]["my_note"] = "measured on the bench PSU at 5.1 V"
    if not keep_hash:
        doc.pop("content_sha256")
    (root / MANIFEST_FILE).write_text(json.dumps(doc, indent=2))


def test_force_keeps_a_hand_edited_manifest_as_it_keeps_an_edited_readme(export: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "F1"
    build = ["build", str(export), "--target", "onnxruntime", "--out", str(out)]
    assert cli.main(build) == 0
    _edit_manifest(out)
    edited = (out / MANIFEST_FILE).read_text()
    capsys.readouterr()
    line = _error(cli.main([*build, "--force"]), capsys.readouterr().err)
    assert f"'{out}' holds files changed since alignvar-edge wrote them (manifest.json: not the SHA-256" in line
    # moving its own manifest out would leave a folder no longer ours: the fix says what works
    assert "copy what you added to manifest.json elsewhere, then remove the folder yourself or choose another --out" \
        in line
    assert (out / MANIFEST_FILE).read_text() == edited
    # a manifest without the hash (written before it existed) cannot be told from ours: replaced as before
    _edit_manifest(out, keep_hash=False)
    assert cli.main([*build, "--force"]) == 0
    assert "my_note" not in (out / MANIFEST_FILE).read_text()


def _edit_listed(path: Path) -> None:
    """A listed file edited by hand: a note added to a README, or to a graph's metadata."""
    if path.suffix == ".onnx":
        graph = onnx.load(str(path))
        onnx.helper.set_model_props(graph, {"my_note": "sliced for the NPU by hand"})
        onnx.save(graph, str(path))
    else:
        path.write_text(path.read_text() + "\nMeasured on the bench PSU at 5.1 V.\n")


@pytest.mark.parametrize("verb, name", [("build", "README.md"), ("build", "model.onnx"), ("export", "model.onnx")])
def test_force_keeps_a_listed_file_edited_by_hand(export: Path, ort_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], verb: str, name: str) -> None:
    """Not only a manifest: any file the artifact lists, changed since it was written, stops --force."""
    out = tmp_path / verb
    shutil.copytree(ort_dir if verb == "build" else export, out)
    _edit_listed(out / name)
    edited = (out / name).read_bytes()
    args = (["build", str(export), "--target", "onnxruntime"] if verb == "build" else ["export", "--preset", "micro"])
    capsys.readouterr()
    line = _error(cli.main([*args, "--out", str(out), "--force"]), capsys.readouterr().err)
    assert f"'{out}' holds files changed since alignvar-edge wrote them ({name}: not the SHA-256" in line, line
    assert "move the changed files out of the folder, or remove it yourself" in line, line
    assert (out / name).read_bytes() == edited


def _engine_inside(root: Path) -> None:
    """An artifact at `root` holding an engine artifact at engines/x, as a deploy folder does."""
    model = ModelInfo(name="micro-random", source=ModelSource.preset("micro", 0),
                      config={"name": "micro", "patch_nums": [1, 2, 4], "scale": 4, "hr_size": 32},
                      scale_schedule=(1, 2, 4))
    with artifact_dir(root) as tmp:
        engine = tmp / "engines" / "x"
        engine.mkdir(parents=True)
        (engine / "model.xml").write_text("<net/>")
        write_manifest(engine, new_manifest("engine", "openvino", "single", "int8", model))
        (tmp / "report.md").write_text("# report")
        write_manifest(tmp, new_manifest("deploy", "", "single", "", model))


def test_force_keeps_an_engine_manifest_edited_inside_a_deploy_folder(tmp_path: Path) -> None:
    out = tmp_path / "K"
    _engine_inside(out)
    check_out(out, force=True)                                   # as written: ours to replace
    nested = out / "engines" / "x" / MANIFEST_FILE
    _edit_manifest(out / "engines" / "x")
    with pytest.raises(OutputExistsError, match=r"holds files changed since alignvar-edge wrote them "
                                                r"\(engines/x/manifest.json: not the SHA-256") as e:
        check_out(out, force=True)
    assert "\n" not in str(e.value) and "move the changed files out of the folder" in str(e.value)
    with pytest.raises(OutputExistsError, match="engines/x/manifest.json"):
        with artifact_dir(out, force=True) as tmp:               # checked again at the rename: the old one stays
            (tmp / MANIFEST_FILE).write_text("{}")
    assert "my_note" in nested.read_text()
    nested.rename(tmp_path / "kept.json")                        # as the message says: moved out
    check_out(out, force=True)
    nested.write_text("not JSON: no manifest alignvar-edge wrote")
    with pytest.raises(OutputExistsError, match=r"\(engines/x/manifest.json: not the SHA-256"):
        check_out(out, force=True)
    (tmp_path / "kept.json").replace(nested)
    _edit_manifest(out / "engines" / "x", keep_hash=False)       # an older engine's: as before
    check_out(out, force=True)


@pytest.mark.parametrize("name, content", [
    ("._Important-Report.pdf", os.urandom(200_000)),
    ("._model-notes.txt", b"notes\n"),
    (".DS_Store", b"my notes, not Finder's"),
    (".DS_Store", APPLE_DOUBLE),                 # AppleDouble's bytes under Finder's other name
    ("._model.onnx", DS_STORE),
])
def test_a_file_under_a_finder_name_that_finder_did_not_write_is_verified_and_kept(
        ort_dir: Path, tmp_path: Path, name: str, content: bytes) -> None:
    art = tmp_path / "engine"
    shutil.copytree(ort_dir, art)
    (art / name).write_bytes(content)
    with pytest.raises(ArtifactError, match=rf"{name} is not listed in manifest.json"):
        load_verified(art)
    with pytest.raises(OutputExistsError, match=rf"does not list \({name}\)"):
        check_out(art, force=True)
    assert (art / name).read_bytes() == content


def test_what_finder_writes_is_still_ignored_and_a_link_under_its_name_is_not(ort_dir: Path, tmp_path: Path) -> None:
    mac = tmp_path / "on-a-mac"
    shutil.copytree(ort_dir, mac)
    (mac / ".DS_Store").write_bytes(DS_STORE)
    (mac / "._model.onnx").write_bytes(APPLE_DOUBLE + os.urandom(4096))      # a resource fork of any size
    assert load_verified(mac).backend == "onnxruntime"
    check_out(mac, force=True)
    (tmp_path / "real.DS_Store").write_bytes(DS_STORE)
    (mac / ".DS_Store").unlink()
    (mac / ".DS_Store").symlink_to(tmp_path / "real.DS_Store")        # Finder writes no link
    with pytest.raises(ArtifactError, match=r"\.DS_Store is not listed"):
        load_verified(mac)


def test_a_finder_name_that_is_a_fifo_is_never_opened(tmp_path: Path) -> None:
    """Telling Finder's files by their bytes must not wait on a FIFO for a writer."""
    from alignvar_edge.fsmodes import starts_with
    os.mkfifo(tmp_path / "._x")
    assert not starts_with(tmp_path / "._x", b"\x00\x05\x16\x07")
    (tmp_path / "._y").write_bytes(APPLE_DOUBLE)
    assert starts_with(tmp_path / "._y", b"\x00\x05\x16\x07") and not starts_with(tmp_path / "._y", b"\x00\x00")


def _bench(engine: Path, out: Path, *more: str) -> list[str]:
    return ["bench", str(engine), "--no-reference", "--runs", "2", "--warmup", "0", "--threads", "1",
            "--out", str(out), *more]


def _on_another_machine(report: Path, block: str = "cpu", **fields: Any) -> str:
    doc = json.loads(report.read_text())
    doc["host"][block].update(fields)
    report.write_text(json.dumps(doc))
    return report.read_text()


def test_bench_replaces_only_this_machines_report_without_force(ort_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    mine, theirs, merged = tmp_path / "mine.json", tmp_path / "theirs.json", tmp_path / "merged.json"
    assert cli.main(_bench(ort_dir, mine)) == 0
    first = mine.read_text()
    assert cli.main(_bench(ort_dir, mine)) == 0 and mine.read_text() != first      # this machine's: replaced
    # written before a kernel and C library update: still this machine's (its OS's system is)
    _on_another_machine(mine, "os", release="5.15.0-old", platform="Linux-5.15.0-old-x86_64-with-glibc2.31")
    assert cli.main(_bench(ort_dir, mine)) == 0 and json.loads(mine.read_text())["host"]["os"]["release"] != "5.15.0-old"
    shutil.copy(mine, theirs)
    kept = _on_another_machine(theirs, x86_family=999, x86_model=999)
    capsys.readouterr()
    line = _error(cli.main(_bench(ort_dir, theirs)), capsys.readouterr().err)
    cpu, label = json.loads(first)["host"]["cpu"], json.loads(first)["label"]
    assert (f"--out {theirs} is a report timed on another machine ('{label}': x86 family 999 where this run has "
            f"{cpu['x86_family']}; x86 model 999 where this run has {cpu['x86_model']}), perhaps the only copy of its "
            "figures; pass --force to replace it, or choose another file") in line, line
    assert theirs.read_text() == kept
    zen4 = Path(__file__).resolve().parents[1] / "docs" / "results" / "epyc-zen4-2core" / "b16-engines.json"
    assert cli.main(["bench", "merge", str(mine), str(zen4), "--out", str(merged)]) == 0
    merged_text = merged.read_text()
    capsys.readouterr()
    line = _error(cli.main(_bench(ort_dir, merged)), capsys.readouterr().err)
    assert f"--out {merged} is a merged report" in line and "--force" in line
    assert merged.read_text() == merged_text
    assert cli.main(_bench(ort_dir, theirs, "--force")) == 0
    assert json.loads(theirs.read_text())["host"]["cpu"]["x86_model"] == json.loads(first)["host"]["cpu"]["x86_model"]


def test_bench_reads_an_earlier_report_once_per_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before measuring, `bench --out R.json` asks of an existing R.json whether it is a report, which
    kind, and which machine's: each check parses it once (a report may be megabytes of raw timings)."""
    from alignvar_edge.bench.outputs import check_same_machine, check_targets
    zen4 = Path(__file__).resolve().parents[1] / "docs" / "results" / "epyc-zen4-2core" / "b16-engines.json"
    out = tmp_path / "r.json"
    shutil.copy(zen4, out)
    reads: list[Path] = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or read_bytes(self))
    check_targets(str(out), None, None)
    check_same_machine(str(out), force=False, host=json.loads(zen4.read_text())["host"])    # its own machine
    assert [p for p in reads if p.name == out.name] == [out, out]


def test_bench_merge_replaces_a_merged_report_but_not_one_runs_without_force(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    zen4, zen5 = results / "epyc-zen4-2core" / "b16-engines.json", results / "epyc-zen5-2core" / "engines.json"
    single, merged = tmp_path / "single.json", tmp_path / "merged.json"
    shutil.copy(zen4, single)
    merge = ["bench", "merge", str(zen4), str(zen5), "--out"]
    capsys.readouterr()
    line = _error(cli.main([*merge, str(single)]), capsys.readouterr().err)
    assert f"--out {single} is a report of one run, not a merged report" in line and "pass --force to replace it" in line
    assert single.read_bytes() == zen4.read_bytes()
    assert cli.main([*merge, str(merged)]) == 0
    assert cli.main([*merge, str(merged)]) == 0                     # an earlier merge: replaced as before
    assert cli.main([*merge, str(single), "--force"]) == 0
    assert json.loads(single.read_text())["kind"] == "merged"


def test_bench_trtexec_replaces_an_earlier_import_of_its_device_but_not_another_devices(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trtexec log's report is of the log's device, not of the machine that imports it: a log of
    that device imported again replaces it, one of another device needs --force."""
    orin = Path(__file__).resolve().parent / "data" / "trtexec" / "trt10-orin-fp16-dla.log"
    out = tmp_path / "r.json"
    trtexec = ["bench", "trtexec", str(orin), "--batch", "16", "--out", str(out)]
    assert cli.main(trtexec) == 0
    assert cli.main(trtexec) == 0                                   # the same device: replaced
    doc = json.loads(out.read_text())
    gpu = doc["host"]["gpus"][0]["name"]
    doc["host"]["gpus"][0]["name"] = "Jetson AGX Xavier"
    out.write_text(json.dumps(doc))
    kept = out.read_text()
    capsys.readouterr()
    line = _error(cli.main(trtexec), capsys.readouterr().err)
    assert f"--out {out} is a report timed on another machine (" in line
    assert f": GPUs Jetson AGX Xavier where this run has {gpu})" in line, line
    assert out.read_text() == kept
    assert cli.main([*trtexec, "--force"]) == 0 and "Xavier" not in out.read_text()
    # nor does a bench of this machine replace the Orin's figures
    assert cli.main(trtexec) == 0
    capsys.readouterr()
    line = _error(cli.main(["bench", str(tmp_path / "no-engine"), "--no-reference", "--out", str(out)]),
                  capsys.readouterr().err)
    assert "is a report timed on another machine" in line
