"""Exporting one's own checkpoint: `inspect` names the checkpoint with the hashes that prove it and
the photographs it was validated on, and does not vouch for a manifest it cannot verify; `--out`
never replaces or enters the checkpoint, nor `inspect --json FILE` the artifact; ONNX Runtime
refusing the graph and a --prune ratio below one token are one line each, leaving nothing.

One real export of a saved nano checkpoint (the sharpened random model of the export tests); the
other exports reuse its traced graph."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from _runtime_fixtures import nano_model
from alignvar_edge import cli
from alignvar_edge.model.checkpoint import save_pretrained


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training run as `train` leaves it: run.json beside the final checkpoint."""
    run = tmp_path_factory.mktemp("run") / "tf"
    save_pretrained(nano_model(), run / "final")
    (run / "run.json").write_text(json.dumps({"options": {"steps": 2}}))
    return run


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "art"
    assert cli.main(["export", str(run_dir / "final"), "--out", str(out), "--batch", "1", "--tiles", "1"]) == 0
    return out


def test_inspect_names_the_checkpoint_with_its_hashes(run_dir: Path, exported: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    sha = {f: hashlib.sha256((run_dir / "final" / f).read_bytes()).hexdigest()
           for f in ("config.json", "model.safetensors")}
    capsys.readouterr()
    assert cli.main(["inspect", str(exported)]) == 0
    text = capsys.readouterr().out
    assert f"checkpoint {(run_dir / 'final').resolve()}" in text
    assert all(f"{f} {h}" in text for f, h in sha.items()), text
    assert cli.main(["inspect", str(exported), "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["provenance"]["sha256"] == sha and model["provenance"]["path"] == str((run_dir / "final").resolve())
    assert len(model["weights_sha256"]) == 64


@pytest.mark.parametrize("where", ["run", "checkpoint", "inside"])
def test_out_never_replaces_or_enters_the_checkpoint(run_dir: Path, where: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = {"run": run_dir, "checkpoint": run_dir / "final", "inside": run_dir / "final" / "onnx"}[where]
    before = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*"))
    capsys.readouterr()
    assert cli.main(["export", str(run_dir / "final"), "--out", str(out), "--batch", "1", "--force"]) != 0
    err = capsys.readouterr().err.strip()
    # the checkpoint itself was refused before (no manifest.json of ours); the run holding it and a
    # folder inside it were not
    assert len(err.splitlines()) == 1 and "--out" in err and str(run_dir / "final") in err, err
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")) == before


@pytest.mark.parametrize("fails", ["load", "run"])
def test_onnxruntime_refusing_the_graph_is_one_line_and_leaves_nothing(
        exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str) -> None:
    """An onnxruntime too old for the opset (load) or out of memory at the batch (run)."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.export import onnx_export as ox

    class Refusing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            if fails == "load":
                raise ort_errors.Fail("[ONNXRuntimeError] : 1 : FAIL : Load model failed: Opset 23 is "
                                      "under development and support for this is limited.")

        def run(self, *args: object) -> None:
            raise ort_errors.RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad allocation")

        def get_inputs(self) -> list[object]:
            return []

    # the traced graph is reused: what is under test is the runtime's refusal
    monkeypatch.setattr(ox, "export_graph", lambda spec, path, *_: path.write_bytes(
        (exported / "model.onnx").read_bytes()))
    monkeypatch.setattr(ort, "InferenceSession", Refusing)
    out = tmp_path / "art"
    with pytest.raises(ArtifactError) as e:
        ox.export_onnx(nano_model(), out, batch=1, n_tiles=1)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and f"ONNX Runtime {ort.__version__} could not {fails}" in msg, msg
    assert ("Opset 23" if fails == "load" else "bad allocation") in msg and "nothing was written" in msg
    assert ".tmp-" not in msg and "re-export" not in msg
    assert list(tmp_path.iterdir()) == []


def test_a_prune_ratio_below_one_token_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # nano's scales have 1, 4 and 16 tokens: 0.05 of 16 is no token, 0.25 of 4 is one
    from alignvar_edge.export import onnx_export as ox
    from alignvar_edge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"0\.05 of scale 2's 16 tokens is less than one token.*0\.0625"):
        ox.export_onnx(nano_model(), tmp_path / "a", batch=1, prune=(0.25, 0.05))
    assert list(tmp_path.iterdir()) == []
    from alignvar_edge.model.pruning import keep_counts       # export's rule
    assert keep_counts((1, 2, 4), (0.25, 0.0625)) == [None, 3, 15]     # one token at each: accepted
    assert keep_counts((1, 2, 4), (0.0, 0.5)) == [None, None, 8]       # 0 leaves a scale unpruned


def test_validation_images_are_recorded_and_shown_with_their_full_path(
        exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from PIL import Image

    from alignvar_edge.export import onnx_export as ox
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact

    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "photos" / "a.png")
    monkeypatch.setattr(ox, "export_graph", lambda spec, path, *_: path.write_bytes(
        (exported / "model.onnx").read_bytes()))
    monkeypatch.chdir(tmp_path)                    # --images given relative to where export ran
    art = ox.export_onnx(nano_model(), tmp_path / "art", batch=1, n_tiles=1, tile_images="photos")
    text = format_inspection(inspect_artifact(art))
    assert f"1 tiles of {tmp_path / 'photos'} (seed 0) vs PyTorch" in text, text


def test_inspect_does_not_vouch_for_a_manifest_without_its_content_hash(exported: Path, tmp_path: Path) -> None:
    """Editing the parity figures and deleting `content_sha256` loads (old manifests have none):
    the verdict must say that the manifest's own fields are unverified."""
    from alignvar_edge.export.inspect_artifact import inspect_artifact

    assert "unverified" not in inspect_artifact(exported)["verdict"]
    art = tmp_path / "art"
    shutil.copytree(exported, art)
    doc = json.loads((art / "manifest.json").read_text())
    doc["parity"]["psnr_db"] = 200.0
    del doc["content_sha256"]
    (art / "manifest.json").write_text(json.dumps(doc))
    verdict = inspect_artifact(art)["verdict"]
    assert "carries no content_sha256" in verdict and "unverified" in verdict, verdict


@pytest.mark.parametrize("name", ["report.json", "manifest.json"])
def test_inspect_json_file_is_never_written_into_the_artifact(exported: Path, tmp_path: Path, name: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "art"
    shutil.copytree(exported, art)
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    capsys.readouterr()
    assert cli.main(["inspect", str(art), "--json", str(art / name)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--json" in err and "outside" in err, err
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert cli.main(["inspect", str(art), "--json", str(tmp_path / "report.json")]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["graph"] == "single"


def test_exporting_a_vqvae_stage_checkpoint_warns_that_its_tokens_are_noise(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the --out inside the checkpoint is refused right after the warning: no export is needed to see it
    for stage in ("vqvae", "transformer"):
        save_pretrained(nano_model(), tmp_path / stage, extra={"stage": stage})
        assert cli.main(["export", str(tmp_path / stage), "--out", str(tmp_path / stage / "onnx")]) != 0
        err = capsys.readouterr().err
        assert "lies inside the input artifact" in err
        assert ("warning: " in err and "was written by `train vqvae`: its transformer is untrained" in err) == \
            (stage == "vqvae"), err


def test_the_python_export_of_a_from_pretrained_model_records_its_checkpoint_as_the_cli_does(
        run_dir: Path, exported: Path, tmp_path: Path) -> None:
    """`export(AlignVAR.from_pretrained(...), out)` recorded an "in-memory model": a later torch or
    Core ML build could not find the checkpoint, and engines carried no golden outputs of PyTorch.
    A name or directory is taken as the CLI takes it; weights changed after loading are another model."""
    import torch

    from alignvar_edge.errors import InputError
    from alignvar_edge.export import onnx_export as ox
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.model.alignvar import AlignVAR

    ckpt = run_dir / "final"
    cli_made = read_manifest(exported)
    model = AlignVAR.from_pretrained(ckpt)                  # a Path, as from_pretrained's hint says
    for given, out in ((model, tmp_path / "a"), (str(ckpt), tmp_path / "b")):
        made = read_manifest(ox.export_onnx(given, out, batch=1, n_tiles=1))
        assert made.source == cli_made.source and made.source.kind == "checkpoint"
        assert made.model.name == str(ckpt) == cli_made.model.name
    with torch.no_grad():
        model.head.bias.data += 1.0                        # fine-tuned after loading: not that checkpoint
    assert ox._model_info(model, None, None).source.kind == "memory"
    with pytest.raises(InputError, match=r"^export takes an AlignVAR model \(AlignVAR\.from_pretrained\('alignvar-tiny'\)\) "
                                         r"or a bundled name or checkpoint directory, got int$"):
        ox.export_onnx(42, tmp_path / "c")                 # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_from_pretrained_model_is_compared_with_its_checkpoint_when_exported_not_hashed_at_load(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every from_pretrained hashed the whole state dict (seconds at paper size) for export alone,
    and a path given to export was hashed twice; now export compares the weights with the
    checkpoint's: one written over since loading is not recorded as where these weights came from."""
    import torch

    from alignvar_edge.errors import ConfigError
    from alignvar_edge.export import onnx_export as ox
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.model import alignvar, checkpoint
    from alignvar_edge.model.alignvar import AlignVAR
    hashed: list[str] = []

    def counted(model: torch.nn.Module) -> str:
        hashed.append(type(model).__name__)
        return checkpoint.weights_sha256(model)
    monkeypatch.setattr(alignvar, "weights_sha256", counted)
    monkeypatch.setattr(ox, "weights_sha256", counted)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run_dir / "final", ckpt)
    model = AlignVAR.from_pretrained(ckpt)
    assert hashed == []
    assert ox._model_info(model, None, None).source.path == str(ckpt.resolve())
    hashed.clear()
    made = read_manifest(ox.export_onnx(str(ckpt), tmp_path / "exp", batch=1, n_tiles=1))
    assert made.source.kind == "checkpoint" and made.model.name == str(ckpt) and len(hashed) == 1
    other = nano_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    save_pretrained(other, ckpt, overwrite=True)      # the checkpoint written over after loading
    assert ox._model_info(model, None, None).source.kind == "memory"
    with pytest.raises(ConfigError, match="opset 5 is not supported"):      # said before any loading
        ox.export_onnx(str(tmp_path / "not-yet-trained"), tmp_path / "exp2", opset=5)
