"""The typed manifest (alignvar_edge/manifest.py): round trip, older manifests, tampering, provenance."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from _graph_bytes import stand_in_graph
from alignvar_edge.errors import ArtifactError, InputError, OutputExistsError
from alignvar_edge.manifest import (MANIFEST_FILE, Manifest, ModelInfo, ModelSource, load_verified, new_manifest,
                                    parity_figures, parse_preset_reference, read_manifest, write_manifest)
from alignvar_edge.outputs import artifact_dir, check_out

CONFIG = {"name": "micro", "patch_nums": [1, 2, 4], "scale": 4, "hr_size": 32}


def _artifact(root: Path, source: ModelSource, **fields) -> Manifest:
    with artifact_dir(root) as tmp:
        (tmp / "model.onnx").write_bytes(stand_in_graph("not really onnx"))
        (tmp / "sub").mkdir()
        (tmp / "sub" / "notes.txt").write_text("hello")
        m = new_manifest("onnx", "onnx", "single", "fp32",
                         ModelInfo(name="micro-random", source=source, config=CONFIG, scale_schedule=(1, 2, 4),
                                   weights_sha256="ab" * 32),
                         graphs={"model": {"file": "model.onnx",
                                           "inputs": [{"name": "lr", "shape": [1, 3, 8, 8], "dtype": "float32"}],
                                           "outputs": []}},
                         extra={"batch": 1, "tensorrt_version": "10.3.0"}, **fields)
        write_manifest(tmp, m)
    return m


def test_round_trip_keeps_every_field(tmp_path):
    src = ModelSource("checkpoint", path="/ck", sha256={"config.json": "1" * 64, "model.safetensors": "2" * 64})
    written = _artifact(tmp_path / "a", src, opset=18, parity={"tokens": {"overall": 1.0}})
    back = load_verified(tmp_path / "a")
    assert back == written
    assert back.source == src and back.model.weights_sha256 == "ab" * 32
    assert set(back.files) == {"model.onnx", "sub/notes.txt"}
    assert back.input_contract["tile"] == 8 and back.input_contract["scale"] == 4
    raw = json.loads((tmp_path / "a" / MANIFEST_FILE).read_text())
    # what older readers and people look at stays where it was
    assert raw["model"]["checkpoint"] == {"path": "/ck", "sha256": dict(src.sha256)}
    assert raw["model"]["source"] == "checkpoint /ck" and raw["schema_version"] == 1


def test_a_manifests_repr_is_one_short_line_saying_what_it_is(tmp_path):
    """`engine.metadata` in a notebook printed the whole dataclass: about 5000 characters, the config
    and every file's hash."""
    m = _artifact(tmp_path / "a", ModelSource.preset("micro", 0), created="2026-12-07T10:00:00+00:00")
    assert repr(m) == "<Manifest onnx onnx fp32 'micro-random', 2 file(s), created 2026-12-07T10:00:00+00:00>"


def test_unknown_keys_are_kept(tmp_path):
    _artifact(tmp_path / "a", ModelSource.preset("micro", 3))
    path = tmp_path / "a" / MANIFEST_FILE
    raw = json.loads(path.read_text())
    raw["future_field"] = {"x": 1}
    raw["model"]["future_model_field"] = [1, 2]
    path.write_text(json.dumps(raw))
    m = read_manifest(tmp_path / "a")
    assert m.other == {"future_field": {"x": 1}} and m.model.other == {"future_model_field": [1, 2]}
    assert m.to_json()["future_field"] == {"x": 1}
    assert m.to_json()["model"]["future_model_field"] == [1, 2]


# A manifest as alignvar-edge wrote it before `model.provenance` existed, written out by hand.
OLD_MANIFEST = {
    "schema_version": 1, "kind": "onnx", "backend": "onnx", "graph": "single", "precision": "fp32",
    "model": {"name": "micro-random", "source": "preset micro, random weights, seed 7",
              "config": {"name": "micro", "patch_nums": [1, 2, 4], "scale": 4},
              "scale_schedule": [1, 2, 4], "parameters": {"inference": 1234}, "weights_sha256": "cd" * 32},
    "files": {}, "graphs": {"model": {"file": "model.onnx", "inputs": [], "outputs": []}},
    "opset": 18, "quantization": None, "calibration": None, "parity": {"passed": True},
    "tools": {"onnx": "1.17.0"}, "created": "2026-11-01T10:00:00+00:00", "extra": {"batch": 1},
    "input_contract": None,
}


def _old(tmp_path: Path, model: dict) -> Path:
    root = tmp_path / "old"
    root.mkdir()
    (root / "model.onnx").write_bytes(stand_in_graph("graph"))
    import hashlib
    raw = {**OLD_MANIFEST, "model": model,
           "files": {"model.onnx": hashlib.sha256(stand_in_graph("graph")).hexdigest()}}
    (root / MANIFEST_FILE).write_text(json.dumps(raw))
    return root


def test_old_manifests_still_load(tmp_path):
    m = load_verified(_old(tmp_path, OLD_MANIFEST["model"]))
    assert (m.kind, m.backend, m.graph, m.precision, m.opset) == ("onnx", "onnx", "single", "fp32", 18)
    assert m.source == ModelSource.preset("micro", 7)
    assert m.source.reference == "preset:micro:7"
    assert m.model.parameters == {"inference": 1234} and m.config["scale"] == 4
    assert m.parity == {"passed": True} and m.extra == {"batch": 1} and m.input_contract is None


@pytest.mark.parametrize("model, source", [
    ({"name": "ck", "source": "checkpoint ck", "config": CONFIG}, ModelSource("checkpoint", path="ck")),
    ({"name": "ck", "source": "checkpoint ck", "config": CONFIG,
      "checkpoint": {"path": "/abs/ck", "sha256": {"model.safetensors": "9" * 64}}},
     ModelSource("checkpoint", path="/abs/ck", sha256={"model.safetensors": "9" * 64})),
    ({"name": "x", "source": "in-memory model", "config": CONFIG}, ModelSource.other("in-memory model")),
    ({"name": "x", "config": CONFIG}, ModelSource.other("unknown")),
    (CONFIG, ModelSource.other("unknown")),                       # the oldest form: `model` is the config
])
def test_old_sources_become_structured(tmp_path, model, source):
    m = read_manifest(_old(tmp_path, model))
    assert m.source == source and m.config["patch_nums"] == [1, 2, 4]
    assert m.model.scale_schedule == (1, 2, 4)       # from the config: `inspect` printed "scales None"


def test_no_artifact_is_written_inside_another(tmp_path):
    """An export written into an artifact's folder left that artifact failing verification."""
    _artifact(tmp_path / "art", ModelSource.preset("micro", 0))
    for out in (tmp_path / "art" / "new", tmp_path / "art" / "sub" / "deeper"):
        with pytest.raises(OutputExistsError, match="lies inside the artifact"):
            with artifact_dir(out) as tmp:
                write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", ModelInfo(config=CONFIG)))
    assert load_verified(tmp_path / "art").precision == "fp32"
    check_out(tmp_path / "beside", force=False)            # a sibling is fine


@pytest.mark.parametrize("argv, named", [
    (["selftest", "--engine", "{art}", "--json", "{art}/selftest.json"], "--json: {art}/selftest.json lies"),
    (["inspect", "{art}", "--json", "{art}/sub/i.json"], "--json: {art}/sub/i.json lies"),
    (["compare", "{art}", "--json", "{art}/c.json"], "--json: {art}/c.json lies"),
    (["info", "--json", "{art}/info.json"], "--json: {art}/info.json lies"),
    (["bench", "{art}", "--no-reference", "--out", "{art}/r.json"], "--out {art}/r.json lies"),
    (["bench", "{art}", "--out", "{tmp}/r.json", "--plot", "{art}/r.png"], "--plot {art}/r.png lies"),
    (["upscale", "{tmp}/small.png", "{art}/o.png", "--engine", "{art}"], "output {art}/o.png lies"),
    (["upscale", "{tmp}/small.png", "{art}/", "--engine", "{art}"], "output {art}/small.png lies"),
    (["upscale", "{tmp}/photos", "{art}", "--engine", "{art}"], "output {art} is the artifact"),
    (["upscale", "{tmp}/photos", "{art}/sub/x4", "--engine", "{art}"], "output {art}/sub/x4 lies"),
    (["deploy", "--out", "{art}/d", "--quick"], "--out '{art}/d' lies"),
])
def test_no_verb_writes_its_output_inside_an_artifact(tmp_path, capsys, argv, named):
    """A report or image written into an engine directory made it fail verification wherever it was
    used afterwards: every verb refuses such an output before any work, naming it."""
    from PIL import Image

    from alignvar_edge.cli import main
    art = tmp_path / "art"
    _artifact(art, ModelSource.preset("micro", 0))
    (tmp_path / "photos").mkdir()
    for image in (tmp_path / "small.png", tmp_path / "photos" / "a.png"):
        Image.new("RGB", (8, 8)).save(image)
    listed = sorted(p.relative_to(art) for p in art.rglob("*"))
    assert main([a.format(art=art, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert named.format(art=art) in err and f"the artifact '{art}'" in err and len(err.splitlines()) == 1
    assert sorted(p.relative_to(art) for p in art.rglob("*")) == listed
    assert load_verified(art).precision == "fp32"


def test_a_manifest_recording_only_the_config_still_has_its_scale_schedule(tmp_path):
    """torch and Core ML engines (built from a checkpoint) record the config, not the schedule."""
    with artifact_dir(tmp_path / "engine") as tmp:
        (tmp / "model.bin").write_bytes(b"weights")
        write_manifest(tmp, new_manifest("engine", "coreml", None, "fp16", ModelInfo(name="tiny", config=CONFIG)))
    assert load_verified(tmp_path / "engine").model.scale_schedule == (1, 2, 4)


@pytest.mark.parametrize("edit, needle", [
    (lambda root: (root / "model.onnx").write_bytes(b"graph, edited"), "model.onnx does not match"),
    (lambda root: (root / "model.onnx").unlink(), "model.onnx is missing"),
    (lambda root: (root / "extra.bin").write_bytes(b"x"), "extra.bin is not listed"),
    # links are no files to rglob's is_file(): one leading nowhere, or to a folder, is unlisted all the same
    (lambda root: (root / "sub" / "gone.bin").symlink_to(root.parent / "nowhere.bin"), "sub/gone.bin is not listed"),
    (lambda root: ((root.parent / "empty").mkdir(), (root / "folder").symlink_to(root.parent / "empty")),
     "folder is not listed"),
    (lambda root: (root / "sub" / "notes.txt").write_text("changed"), "sub/notes.txt does not match"),
    (lambda root: ((root / "model.onnx").unlink(), (root / "model.onnx").mkdir()), "model.onnx is a folder, not a file"),
    (lambda root: ((root / "model.onnx").unlink(), os.mkfifo(root / "model.onnx")),
     r"model.onnx is a FIFO \(named pipe\), not a file"),
])
def test_tampered_or_missing_files_are_refused_in_one_line(tmp_path, edit, needle):
    _artifact(tmp_path / "a", ModelSource.preset("micro", 0))
    edit(tmp_path / "a")
    with pytest.raises(ArtifactError, match=needle) as e:
        load_verified(tmp_path / "a")
    assert "\n" not in str(e.value)


def test_force_keeps_a_listed_file_changed_since_it_was_written(tmp_path):
    """--force deletes only what we made: a listed file edited (or replaced by someone's own) since
    the artifact was written is named and kept, the new artifact is not published; moved out, the
    rest is replaced. Checked again at the rename: an edit during the work is kept too."""
    a = tmp_path / "a"
    _artifact(a, ModelSource.preset("micro", 0))
    check_out(a, force=True)                              # unchanged: ours to replace
    (a / "sub" / "notes.txt").write_text("hallo")         # same size as "hello": only the hash tells
    with pytest.raises(OutputExistsError, match=r"'.*a' holds files changed since alignvar-edge wrote them "
                                                r"\(sub/notes.txt: not the SHA-256") as e:
        check_out(a, force=True)
    assert "\n" not in str(e.value) and "move the changed files out of the folder" in str(e.value)
    with pytest.raises(OutputExistsError, match="changed since alignvar-edge wrote them"):
        with artifact_dir(a, force=True) as tmp:          # the old one stays
            (tmp / MANIFEST_FILE).write_text("{}")
    assert (a / "sub" / "notes.txt").read_text() == "hallo" and not list(tmp_path.glob(".a.*"))
    (a / "sub" / "notes.txt").rename(tmp_path / "notes.txt")        # as the message says: moved out
    check_out(a, force=True)
    (tmp_path / "notes.txt").rename(a / "sub" / "notes.txt")
    (a / "sub" / "notes.txt").write_text("hello")
    check_out(a, force=True)                              # the recorded content again: ours
    with pytest.raises(OutputExistsError, match=r"sub/notes.txt: not the SHA-256"):
        with artifact_dir(a, force=True) as tmp:          # edited while the new one was made
            (a / "sub" / "notes.txt").write_text("mine!")
            (tmp / MANIFEST_FILE).write_text("{}")
    assert (a / "sub" / "notes.txt").read_text() == "mine!"


def _hashing_count(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each file's contents are read (to hash them, an ONNX graph also walked), by name
    (the real reading runs)."""
    from alignvar_edge import manifest
    counts: dict[str, int] = {}
    real = manifest._read_contents

    def counted(path: Path, *args: Any, **kwargs: Any) -> manifest.FileRead:
        counts[Path(path).name] = counts.get(Path(path).name, 0) + 1
        return real(path, *args, **kwargs)
    monkeypatch.setattr(manifest, "_read_contents", counted)
    return counts


def test_a_file_is_hashed_once_per_process_while_it_holds_and_an_edit_in_place_is_caught(tmp_path, monkeypatch):
    """Verifying an artifact again (a build verifies its source up to six times) and checking it for
    --force read an unchanged file once; a hard link (a build links the graph into its engine)
    moves its ctime, so it is read once more (not a build's own link: manifest.hard_link). An edit in place of the same size with its mtime set
    back was taken for the old content in the same process (the key had no ctime): caught now."""
    from alignvar_edge import manifest
    from alignvar_edge.manifest import edited_files, hash_files
    monkeypatch.setattr(manifest, "_SETTLED_NS", 0)        # written just now: remembered at once here
    a = tmp_path / "a"
    m = _artifact(a, ModelSource.preset("micro", 0))
    counts = _hashing_count(monkeypatch)
    for _ in range(3):
        load_verified(a)
    assert edited_files(a, m.files) == [] and counts["model.onnx"] == 1
    os.link(a / "model.onnx", tmp_path / "linked.onnx")
    assert load_verified(a) == m and hash_files(tmp_path)["linked.onnx"] == m.files["model.onnx"]
    assert counts["model.onnx"] == 2 and "linked.onnx" not in counts
    # the build's own link (manifest.hard_link) keeps the digest: no read again
    manifest.hard_link(a / "model.onnx", tmp_path / "engine.onnx")
    assert load_verified(a) == m and hash_files(tmp_path)["engine.onnx"] == m.files["model.onnx"]
    assert counts["model.onnx"] == 2 and "engine.onnx" not in counts
    st = os.stat(a / "model.onnx")
    (a / "model.onnx").write_bytes(stand_in_graph("not really onnY"))          # same size
    os.utime(a / "model.onnx", ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ArtifactError, match="model.onnx does not match"):
        load_verified(a)
    assert edited_files(a, m.files) == ["model.onnx"]


def test_where_ctime_reads_as_mtime_an_edit_in_place_with_mtime_set_back_is_caught(tmp_path, monkeypatch):
    """FAT and exFAT keep no ctime (it reads as the mtime): an edit in place of the same size with its
    mtime set back (rsync --inplace, an update agent, then cp -p's times) left the whole cache key as
    it was, and a long-running process took the new bytes for the old. Such a file is read at every check."""
    from alignvar_edge import manifest
    a = tmp_path / "a"
    _artifact(a, ModelSource.preset("micro", 0))
    graph = a / "model.onnx"
    real_stat = os.stat

    def fat_stat(path, *args, **kwargs):          # the graph as a FAT volume shows it, all along
        st = real_stat(path, *args, **kwargs)
        if os.fspath(path) != os.fspath(graph):
            return st
        return os.stat_result(tuple(st), {"st_mtime_ns": 10**18, "st_ctime_ns": 10**18})
    monkeypatch.setattr(manifest.os, "stat", fat_stat)
    load_verified(a)
    graph.write_bytes(b"not really onnY")            # same size, same times
    with pytest.raises(ArtifactError, match="model.onnx does not match"):
        load_verified(a)


def test_a_copy_whose_times_are_equal_off_the_fat_grid_is_still_hashed_once(tmp_path, monkeypatch):
    """A file copied with `cp` or `scp` on ext4 has its ctime equal to its mtime too, in nanoseconds
    (not on FAT's 2 s or exFAT's 10 ms grid): it was read at every check, a device's gigabyte graph
    again for each load and selftest."""
    from alignvar_edge import manifest
    a = tmp_path / "a"
    _artifact(a, ModelSource.preset("micro", 0))
    graph = a / "model.onnx"
    real_stat = os.stat

    def copied_stat(path, *args, **kwargs):        # equal times, as ext4 gives a fresh copy, long settled
        st = real_stat(path, *args, **kwargs)
        if os.fspath(path) != os.fspath(graph):
            return st
        return os.stat_result(tuple(st), {"st_mtime_ns": 10**18 + 5_947_324, "st_ctime_ns": 10**18 + 5_947_324})
    monkeypatch.setattr(manifest.os, "stat", copied_stat)
    counts = _hashing_count(monkeypatch)
    load_verified(a)
    load_verified(a)
    assert counts["model.onnx"] == 1


def test_a_file_written_within_2_s_is_hashed_again_each_time(tmp_path, monkeypatch):
    """A write within the file system's clock tick keeps every time stamp: a file written less than
    2 s ago is not remembered (each check reads it), one older is (read once)."""
    import time

    from alignvar_edge import manifest
    a = tmp_path / "a"
    _artifact(a, ModelSource.preset("micro", 0))
    counts = _hashing_count(monkeypatch)
    load_verified(a)
    load_verified(a)
    assert counts["model.onnx"] == 2                       # just written: not remembered
    later = time.time_ns() + 3 * 10**9
    monkeypatch.setattr(manifest.time, "time_ns", lambda: later)
    load_verified(a)
    load_verified(a)
    assert counts["model.onnx"] == 3                       # 2 s old: read once more, then remembered


def _manifest_linked_out(root: Path) -> None:
    (root.parent / "elsewhere.json").write_bytes((root / MANIFEST_FILE).read_bytes())
    (root / MANIFEST_FILE).unlink()
    (root / MANIFEST_FILE).symlink_to(root.parent / "elsewhere.json")


@pytest.mark.parametrize("make, needle", [
    (_manifest_linked_out, "manifest.json leads outside the artifact directory (to {elsewhere}, through a symlink)"),
    (lambda root: (root / MANIFEST_FILE).mkdir(), "manifest.json is a folder, not a file"),
    (lambda root: os.mkfifo(root / MANIFEST_FILE), "manifest.json is a FIFO (named pipe), not a file"),
    (lambda root: (root / MANIFEST_FILE).symlink_to(MANIFEST_FILE), "manifest.json is a symlink loop"),
])
def test_a_manifest_json_that_is_no_file_inside_the_artifact_is_refused_as_what_it_is(tmp_path, make, needle):
    """The manifest is the artifact's proof: one linked from outside (which anyone may change there)
    is refused as a listed file linked out is; a folder, FIFO or loop is named, not 'has no manifest.json'.
    --force never reads a FIFO (it would wait for a writer) and never takes a linked manifest for ours."""
    import threading
    root = tmp_path / "a"
    _artifact(root, ModelSource.preset("micro", 0))
    if make is not _manifest_linked_out:
        (root / MANIFEST_FILE).unlink()
    make(root)
    for read in (load_verified, read_manifest):
        with pytest.raises(ArtifactError) as e:
            read(root)
        assert needle.format(elsewhere=tmp_path / "elsewhere.json") in str(e.value) and "\n" not in str(e.value)
    refused: list[BaseException] = []

    def force() -> None:
        try:
            check_out(root, force=True)
        except OutputExistsError as err:
            refused.append(err)
    t = threading.Thread(target=force, daemon=True)
    t.start()
    t.join(20)
    if t.is_alive():                                       # blocked opening the FIFO: let it go
        os.close(os.open(root / MANIFEST_FILE, os.O_WRONLY | os.O_NONBLOCK))
    assert not t.is_alive() and refused and "no manifest.json or run.json of ours" in str(refused[0])


@pytest.mark.parametrize("edit", [
    lambda m: m.__setitem__("precision", "int8"),                          # what it claims to compute
    lambda m: m.__setitem__("parity", {"tokens": {"overall": 1.0}}),        # a result it never had
    lambda m: m["extra"].__setitem__("batch", 8),
    lambda m: m.__setitem__("content_sha256", "0" * 64),
])
def test_a_hand_edited_manifest_is_refused_by_its_content_hash(tmp_path, edit):
    _artifact(tmp_path / "a", ModelSource.preset("micro", 0), opset=18)
    path = tmp_path / "a" / MANIFEST_FILE
    raw = json.loads(path.read_text())
    assert len(raw["content_sha256"]) == 64
    edit(raw)
    path.write_text(json.dumps(raw, indent=2))
    with pytest.raises(ArtifactError, match="manifest.json was edited after it was written") as e:
        load_verified(tmp_path / "a")
    assert "\n" not in str(e.value)


def test_the_content_hash_survives_reformatting_but_not_a_changed_value(tmp_path):
    _artifact(tmp_path / "a", ModelSource.preset("micro", 0), opset=18)
    path = tmp_path / "a" / MANIFEST_FILE
    raw = json.loads(path.read_text())
    path.write_text(json.dumps(raw, indent=None))          # same content, other whitespace and order
    assert load_verified(tmp_path / "a").opset == 18
    path.write_text(json.dumps({**raw, "opset": 17}))
    with pytest.raises(ArtifactError, match="edited after it was written"):
        load_verified(tmp_path / "a")


# a RecursionError, and a ValueError advising sys.set_int_max_str_digits(), were tracebacks
HOSTILE = ['{"a":' * 50000 + "1" + "}" * 50000,
           json.dumps({**OLD_MANIFEST, "extra": {"batch": 0}}).replace('"batch": 0', '"batch": ' + "9" * 5000)]
HOSTILE_SAYS = [r"not valid JSON \(it is nested too deeply to read\)",
                r"not valid JSON \(it holds an integer of more than 4300 digits\)"]


@pytest.mark.parametrize("raw, needle", [
    ("{not json", "not valid JSON"),
    (json.dumps({**OLD_MANIFEST, "schema_version": 2}), "schema version 2"),
    # the string "1" read 'has schema version 1, this alignvar-edge reads version 1', and [] 'schema version ?'
    (json.dumps({**OLD_MANIFEST, "schema_version": "1"}), r"has a 'schema_version' of the wrong type \(a string '1'\)"),
    (json.dumps({**OLD_MANIFEST, "schema_version": True}), r"'schema_version' of the wrong type \(a boolean True\)"),
    (json.dumps({k: v for k, v in OLD_MANIFEST.items() if k != "schema_version"}), "has no 'schema_version'"),
    ("[]", r"is not a JSON object \(it holds a list\); re-create the artifact"),
    ("null", r"is not a JSON object \(it holds null\); re-create the artifact"),
    (json.dumps({**OLD_MANIFEST, "files": ["model.onnx"]}), "'files' of the wrong type"),
    (json.dumps({**OLD_MANIFEST, "kind": None}), "has no 'kind'"),
    (json.dumps({**OLD_MANIFEST, "model": {"provenance": {"kind": "stolen"}}}), "'model' entry that is not valid"),
    *[(raw, needle) for raw, needle in zip(HOSTILE, HOSTILE_SAYS)],
])
def test_a_broken_manifest_is_one_line_naming_the_file(tmp_path, raw, needle):
    root = tmp_path / "a"
    root.mkdir()
    (root / MANIFEST_FILE).write_text(raw)
    with pytest.raises(ArtifactError, match=needle) as e:
        read_manifest(root)
    assert "\n" not in str(e.value) and str(root / MANIFEST_FILE) in str(e.value)


@pytest.mark.parametrize("raw", HOSTILE)
def test_force_leaves_a_folder_with_a_hostile_manifest_alone(tmp_path, raw):
    root = tmp_path / "a"
    root.mkdir()
    (root / MANIFEST_FILE).write_text(raw)
    with pytest.raises(OutputExistsError, match="only replaces our own outputs"):
        check_out(root, force=True)          # unreadable, so not ours: --force leaves it alone


@pytest.mark.parametrize("source, sentence, reference", [
    (ModelSource.preset("micro", 3), "preset micro, random weights, seed 3", "preset:micro:3"),
    (ModelSource("bundled", name="alignvar-tiny", path="/pkg/alignvar-tiny"), "checkpoint alignvar-tiny (bundled)",
     "alignvar-tiny"),
    (ModelSource("checkpoint", path="/runs/ck"), "checkpoint /runs/ck", "/runs/ck"),
    (ModelSource("upstream", path="/ck", upstream={"kind": "varsr", "var": "/d/var.pth", "vae": "/d/vae.pth"}),
     "checkpoint /ck, imported from varsr (/d/var.pth, /d/vae.pth)", "/ck"),
    (ModelSource.memory(), "in-memory model", None),
    (ModelSource.other("my notes"), "my notes", None),
])
def test_provenance_sentence_and_reference(source, sentence, reference):
    assert source.describe() == sentence and source.reference == reference
    assert ModelSource.from_json(source.to_json()) == source


@pytest.mark.parametrize("reference, preset", [
    ("preset:micro:3", ("micro", 3)),
    ("preset:micro", ("micro", 0)),        # bench --reference may leave the seed out
    ("alignvar-tiny", None),               # a bundled name and a path load as checkpoints
    ("/runs/ck", None),
])
def test_a_preset_reference_reads_back_as_the_preset_that_writes_it(reference, preset):
    assert parse_preset_reference(reference) == preset
    assert parse_preset_reference(ModelSource.preset("micro", 3).reference) == ("micro", 3)


@pytest.mark.parametrize("reference", ["preset:micro:abc", "preset:micro:1:2", "preset:micro:-1", "preset:", "",
                                       f"preset:micro:{2**64}"])      # past the seeds PyTorch takes: a traceback
def test_a_reference_that_names_no_model_is_refused(reference):
    with pytest.raises(InputError, match=f"^model reference '{reference}' is neither a checkpoint nor "
                                         r"preset:NAME\[:SEED\] with a whole-number SEED below 2\*\*64 \(e.g. preset:micro:0\)$"):
        parse_preset_reference(reference)


def test_the_sentence_is_never_read_back(tmp_path):
    """A current manifest's `source` sentence is for people: the structured record decides."""
    _artifact(tmp_path / "a", ModelSource.preset("micro", 3))
    path = tmp_path / "a" / MANIFEST_FILE
    raw = json.loads(path.read_text())
    raw["model"]["source"] = "checkpoint /somewhere/else"
    path.write_text(json.dumps(raw))
    assert read_manifest(tmp_path / "a").source == ModelSource.preset("micro", 3)


def test_unknown_source_kind_is_refused():
    with pytest.raises(ValueError, match="unknown model source kind"):
        ModelSource("guess")


def test_parity_figures_reads_each_parity_form_and_none_where_nothing_was_measured() -> None:
    """The one reading behind build's, adopt's and deploy's parity lines: an engine's overall token
    agreement, else a quantize output's validation figure; None where no tokens were recorded."""
    engine = {"tiles": 4, "tokens": {"overall": 0.987654, "per_scale": [1.0, 0.98]}, "psnr_db": 41.2,
              "reference": "onnxruntime on the source artifact"}
    f = parity_figures(engine)
    assert f is not None and (f.tokens, f.psnr_db) == (0.987654, 41.2)
    assert f.reference == "onnxruntime on the source artifact"
    assert f.tokens_pct == "98.77%"                   # two places, rounded, not truncated (98.76%)
    assert parity_figures({"tokens": {"overall": 1}, "psnr_db": "inf"}).tokens_pct == "100.00%"
    quant = {"reference": "fp32 engine", "validation": {"token_agreement": 0.5, "tiles": 8}}
    q = parity_figures(quant)
    assert q is not None and (q.tokens, q.psnr_db, q.reference) == (0.5, None, "fp32 engine")
    # tokens.overall wins over the validation figure; a missing reference stays None for the caller's default
    both = parity_figures({"tokens": {"overall": 0.9}, "validation": {"token_agreement": 0.1}})
    assert both is not None and (both.tokens, both.reference) == (0.9, None)
    for nothing in (None, {}, [], {"tokens": {}}, {"tokens": None, "psnr_db": 30.0}, {"tokens": {"overall": None}},
                    {"validation": {}}, {"tokens": {"overall": True}}, {"tokens": {"overall": "0.9"}},
                    {"tokens": [0.9], "validation": "x"}):
        assert parity_figures(nothing) is None, nothing


def test_one_psnr_text_for_every_summary_and_per_scale_tokens_through_token_share() -> None:
    """PSNR had three private formatters ("inf dB (identical)", "n/a", 1 or 2 decimals) and was printed
    raw elsewhere (68.30512 dB); export parity's per-scale tokens printed 100.00% where every other
    summary prints 100%."""
    import math

    from alignvar_edge.export.parity import ParityReport
    from alignvar_edge.manifest import db_text
    from alignvar_edge.runtimes.readme import checked_line
    assert [db_text(v) for v in (None, "inf", math.inf, 68.30512, 9.96)] == ["–", "inf", "inf", "68.3", "10.0"]
    assert db_text(68.30512, 2) == "68.31" and db_text(math.nan) == "nan"
    report = ParityReport(tiles=2, tokens={"per_scale": [1.0, 0.9961], "overall": 0.998, "identical_samples": 0.5},
                          psnr_db=math.inf, psnr_y_db=51.234, max_abs_diff=0.0)
    assert report.summary() == ("2 tiles: token agreement per scale [k0=100%, k1=99.61%], overall 99.80%, "
                                "identical samples 50%; SR PSNR inf dB (Y 51.2 dB), max |diff| 0.00e+00")
    m = Manifest("openvino", "openvino", "single", "fp32", ModelInfo.from_json({"name": "micro", "config": CONFIG}),
                 parity={"tokens": {"overall": 1.0}, "psnr_db": 68.30512, "reference": "golden"})
    assert checked_line(m) == "Checked at build against golden: tokens 100.00%, SR PSNR 68.3 dB."


def test_a_file_over_the_size_limit_names_the_limit_and_how_to_raise_it(tmp_path):
    """EFBIG (`ulimit -f`) is a write error about the output the user named, with the limit and
    the fix, as a full disk's is (it was the OS's bare 'File too large'); nothing partial is left."""
    import resource

    from alignvar_edge import cli
    from alignvar_edge.fsmodes import write_text
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < 2**20:
        pytest.skip(f"this shell's hard file-size limit ({hard} bytes) is too small to test under")
    resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, hard))
    try:
        with pytest.raises(OSError) as file_error:
            write_text(tmp_path / "big.txt", "x" * 200_000)
        with pytest.raises(OSError) as artifact_error:
            with artifact_dir(tmp_path / "art") as tmp:
                (tmp / "model.onnx").write_bytes(b"x" * 200_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    fix = ("raise it with `ulimit -f unlimited` and run the command again" if hard == resource.RLIM_INFINITY
           else "raise it up to its hard limit")
    for error, out in ((file_error.value, "big.txt"), (artifact_error.value, "art")):
        line = cli._os_error_line(error)
        assert line.startswith(f"{tmp_path / out}: File too large (over the file-size limit of 100 KiB set with "
                               "`ulimit -f` in the shell that ran it; "), line
        assert fix in line and "\n" not in line
    assert list(tmp_path.iterdir()) == []
