"""A `deploy` output verifies as a whole: `inspect OUT` checks every file its manifest lists
(report.json included) and each artifact inside it (export, engines, build kits) as it checks one
alone, exits 0 with a verdict when all hold and 2 naming the file when one does not."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _runtime_fixtures import sharp_model
from alignvar_edge import cli
from alignvar_edge.deploy import DeployOptions, deploy
from alignvar_edge.errors import ArtifactError
from alignvar_edge.manifest import load_verified

ENGINE = "engines/onnxruntime-fp32"


@pytest.fixture(scope="module")
def deployed(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "out"
    res = deploy(DeployOptions(out=str(out), model=sharp_model("micro"), export=str(micro_export),
                               targets="onnxruntime,tensorrt", precisions=("fp32",), quick=True, runs=2, warmup=0,
                               threads=1, bench_tiles=2))
    assert res.exit_code == 0
    return out


@pytest.fixture()
def copy(deployed: Path, tmp_path: Path) -> Path:
    """A copy of the deploy output, as a board receives it, for a test to tamper with."""
    dst = tmp_path / "kit"
    shutil.copytree(deployed, dst)
    return dst


def _inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.main(["inspect", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip()


def _rewrite(path: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True))


def test_inspect_verifies_an_intact_deploy_output_and_prints_its_verdict(copy: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _inspect(capsys, str(copy))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == ("verdict    OK: deploy output, every file listed in manifest.json matching its SHA-256 "
                        "(report.json included), and each of the 3 artifact(s) inside it against its own "
                        "manifest.json (its content hash and files)"), lines[0]
    assert "unverified" not in lines[0]
    assert f"contains   {ENGINE}  (onnxruntime engine, fp32): bench tokens 100.00% vs PyTorch, meets the gate" in lines
    assert "contains   export  (single graph, fp32)" in lines
    assert any(ln.startswith("contains   engines/tensorrt-fp32  (TensorRT build kit, fp32)") for ln in lines), out
    # --json prints the same result as data
    rc, out, err = _inspect(capsys, str(copy), "--json")
    info = json.loads(out)
    assert rc == 0 and info["kind"] == "deploy" and info["verdict"] == lines[0].removeprefix("verdict    ")
    assert info["artifacts"][ENGINE]["bench"]["token_agreement"] == 1.0
    assert sorted(info["artifacts"]) == ["engines/onnxruntime-fp32", "engines/tensorrt-fp32", "export"]


def test_an_edited_report_json_fails_the_deploy_output(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def faster(doc: dict[str, Any]) -> None:                      # one engine's speedup x 3: what a forger would do
        for e in doc["engines"]:
            if e["label"] == "onnxruntime-fp32":
                e["speedup_vs_eager"] *= 3
    _rewrite(copy / "report.json", faster)
    rc, out, err = _inspect(capsys, str(copy))
    assert rc == 2 and out == "" and len(err.splitlines()) == 1, err
    assert "report.json does not match its recorded SHA-256" in err and "Copy the whole directory again" in err


def test_an_engine_manifest_edited_inside_the_output_fails_it(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The deploy manifest hashes the engines' files but not their manifests: each is verified as
    its own artifact, so a precision changed by hand is caught (it was read as intact)."""
    _rewrite(copy / ENGINE / "manifest.json", lambda doc: doc.update(precision="int8"))
    with pytest.raises(ArtifactError, match=f"{ENGINE}/manifest.json was edited after it was written"):
        load_verified(copy)
    rc, out, err = _inspect(capsys, str(copy))
    assert rc == 2 and out == "" and f"{ENGINE}/manifest.json was edited" in err, err


def test_an_engine_whose_manifest_is_gone_fails_the_output(copy: Path) -> None:
    (copy / ENGINE / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=rf"{ENGINE}/README.md, .* lie in no artifact folder of it \(the "
                                            r"manifest.json of its folder is missing\)"):
        load_verified(copy)


def test_an_engine_manifest_without_its_content_hash_is_said_unverified(deployed: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """... with the command that re-creates it: the deploy, which makes the engines inside it (a
    build into the engine's folder would be refused, inside an artifact), its folder quoted."""
    copy = Path(shutil.copytree(deployed, tmp_path / "my kit"))
    _rewrite(copy / ENGINE / "manifest.json", lambda doc: doc.pop("content_sha256"))
    rc, out, err = _inspect(capsys, str(copy))
    assert rc == 0, err
    assert out.splitlines()[0].endswith(
        f"; but in {ENGINE}, manifest.json carries no content_sha256 (written by an older alignvar-edge, or edited by "
        "hand), so its own fields (model, parity, I/O) are unverified: to be sure, re-run the `alignvar-edge deploy` "
        f"that made the deploy output with `--out '{copy}' --force`"), out
    assert f"contains   {ENGINE}  (onnxruntime engine, fp32): bench tokens 100.00% vs PyTorch, meets the gate; its " \
           "manifest is unverified" in out.splitlines()


def test_the_details_line_names_a_command_that_runs_where_the_path_has_a_space(
        deployed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex
    copy = Path(shutil.copytree(deployed, tmp_path / "my kit"))
    rc, out, err = _inspect(capsys, str(copy))
    (details,) = [ln for ln in out.splitlines() if ln.startswith("details ")]
    command = shlex.split(details.split("above: ")[1].split(" (and so on)")[0])
    assert rc == 0 and command == ["alignvar-edge", "inspect", str(copy / "engines/onnxruntime-fp32")], details
    rc, out, err = _inspect(capsys, *command[2:])
    assert rc == 0 and out.startswith("verdict    OK: engine (onnxruntime)"), err


def test_the_report_names_the_command_that_checks_the_folder(deployed: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    md = (deployed / "report.md").read_text()
    assert "Check this folder wherever it is copied: `alignvar-edge inspect DIR` (DIR: this folder)" in md
    rc, out, err = _inspect(capsys, str(deployed))         # and the command it names works
    assert rc == 0 and out.startswith("verdict    OK: deploy output"), err


def test_inspect_hashes_each_file_of_the_output_once(deployed: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Each artifact inside is verified once, and its files, which the deploy manifest has just
    hashed, are compared with that manifest's digests instead of being hashed again."""
    from collections import Counter

    from alignvar_edge import manifest
    hashed: Counter[str] = Counter()
    read_file = manifest.read_file

    def counted(path: Path, graph: bool = False) -> manifest.FileRead:
        hashed[Path(path).relative_to(deployed).as_posix()] += 1
        return read_file(path, graph)
    monkeypatch.setattr(manifest, "read_file", counted)
    rc, out, err = _inspect(capsys, str(deployed))
    assert rc == 0, err
    listed = json.loads((deployed / "manifest.json").read_text())["files"]
    assert any(rel.startswith(f"{ENGINE}/") for rel in listed)
    assert hashed == Counter(list(listed)), hashed


def test_an_engine_file_edited_and_rehashed_in_the_output_manifest_fails_its_engine(copy: Path) -> None:
    """The engine's own manifest still holds its files: a file whose new digest only the deploy
    manifest records (re-written after the edit) is named against the engine's record."""
    from alignvar_edge.manifest import read_manifest, write_manifest
    (copy / ENGINE / "README.md").write_text("edited on the board\n")
    write_manifest(copy, read_manifest(copy))
    with pytest.raises(ArtifactError, match=f"artifact '{copy / ENGINE}' failed verification: README.md does not "
                                            "match its recorded SHA-256"):
        load_verified(copy)
