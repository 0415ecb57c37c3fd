"""OpenVINO's compiled-model cache from the command line: `--cache-dir DIR` on the verbs that load
engines (upscale, selftest, bench) and ALIGNVAR_EDGE_CACHE_DIR for every call of a script, which
engines that compile nothing as they load (ONNX Runtime, torch) ignore.

Model: the `micro` preset with sharpened random weights, exported once and cached between runs
(_runtime_fixtures); real OpenVINO compiles and reads its cache."""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import cache_root, export_dir, sharp_model
from alignvar_edge import cli, runtimes
from alignvar_edge.errors import InputError, PrecisionWarning
from alignvar_edge.runtimes.openvino import CACHE_ENV

pytest.importorskip("openvino")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def export(pytestconfig) -> Path:
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


@pytest.fixture(scope="module")
def engine(export, tmp_path_factory) -> Path:
    return runtimes.build(export, "openvino", "fp32", out=tmp_path_factory.mktemp("ov") / "ov")


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (21, 27, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True)
def no_cache_variable(monkeypatch):
    """Each test sets the variable itself: one set in the environment that runs the tests is not theirs."""
    monkeypatch.delenv(CACHE_ENV, raising=False)


def _opened(monkeypatch) -> list[tuple[object, object]]:
    """(cache folder, loaded from it) of each engine the verbs load from now on."""
    seen: list[tuple[object, object]] = []
    load = runtimes.load

    def spy(*args, **kwargs):
        e = load(*args, **kwargs)
        seen.append((getattr(e, "cache_dir", None), getattr(e, "loaded_from_cache", None)))
        return e
    monkeypatch.setattr(runtimes, "load", spy)
    return seen


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_upscale_reads_the_compiled_model_the_call_before_it_kept(engine, photo, tmp_path, monkeypatch, capsys, how):
    cache = tmp_path / "cache" / "ov"           # made, parents too
    flag = ["--cache-dir", str(cache)] if how == "flag" else []
    if how == "variable":
        monkeypatch.setenv(CACHE_ENV, str(cache))
    seen = _opened(monkeypatch)
    outs = [tmp_path / f"out{i}.png" for i in range(2)]
    for out in outs:
        assert cli.main(["upscale", str(photo), str(out), "--engine", str(engine), "--threads", "1", "--quiet",
                         *flag]) == 0, capsys.readouterr().err
    assert seen == [(cache, False), (cache, True)]
    assert [p.suffix for p in cache.iterdir()] == [".blob"]       # OpenVINO's file, one per compiled model
    first, second = (np.asarray(Image.open(p)) for p in outs)
    np.testing.assert_array_equal(first, second)


def test_selftest_report_says_where_the_compiled_model_came_from(engine, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    reports = []
    for run in range(2):
        assert cli.main(["selftest", "--engine", str(engine), "--runs", "1", "--threads", "1", "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert [(r["cache_dir"], r["loaded_from_cache"], r["result"]) for r in reports] == \
        [("cache", False, "PASS"), ("cache", True, "PASS")]       # its name alone: reports are shared
    assert cli.main(["selftest", "--engine", str(engine), "--runs", "1", "--threads", "1"]) == 0
    assert "cache     compiled model read from cache" in capsys.readouterr().out


def test_bench_loads_its_openvino_engines_with_the_cache(engine, export, tmp_path, capsys):
    cache = tmp_path / "cache"
    for i in range(2):
        assert cli.main(["bench", str(engine), "--no-reference", "--runs", "1", "--warmup", "0", "--threads", "1",
                         "--cache-dir", str(cache), "--out", str(tmp_path / f"r{i}.json")]) == 0
    assert len(list(cache.glob("*.blob"))) == 1
    # the flag applies to the engines that take it; a run of none of those refuses it, as any flag it would not read
    assert cli.main(["bench", str(export), "--no-reference", "--cache-dir", str(cache),
                     "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--cache-dir keeps the model an engine compiles as it loads, which only openvino engines do, and no "
        "engine benched here is one: drop it")


def test_a_bench_row_says_its_engine_was_read_from_the_cache(engine, tmp_path, monkeypatch):
    """With the variable set in a shell profile every bench loaded OpenVINO engines from the cache, and
    nothing said that load_s timed reading it rather than compiling: `bench merge` set one against the
    other. The row records it (the folder by its name alone: reports are shared), the merged Markdown
    says it."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "ov-cache"))
    rows, pages = [], []
    for i in range(2):
        out = tmp_path / f"r{i}.json"
        assert cli.main(["bench", str(engine), "--no-reference", "--runs", "1", "--warmup", "0", "--threads", "1",
                         "--label", "box", "--out", str(out)]) == 0
        rows.append(json.loads(out.read_text())["engines"][0])
        assert cli.main(["bench", "merge", str(out), "--md", str(tmp_path / f"m{i}.md"),
                         "--plot", str(tmp_path / f"m{i}.png")]) == 0
        pages.append((tmp_path / f"m{i}.md").read_text())
    assert [(r["cache_dir"], r["loaded_from_cache"]) for r in rows] == [("ov-cache", False), ("ov-cache", True)]
    assert "Compiled-model cache" not in pages[0]
    assert (f"box: Compiled-model cache: {rows[1]['label']} loaded from OpenVINO's cache (ov-cache): their load_s "
            "times reading the compiled model, not compiling it.") in pages[1]


def test_an_onnxruntime_engine_runs_with_the_variable_set_and_refuses_the_flag(export, photo, tmp_path, monkeypatch,
                                                                               capsys):
    # set for a whole script, the variable must not stop the calls of engines that keep no compiled model,
    # even where it names a folder OpenVINO would refuse
    monkeypatch.setenv(CACHE_ENV, "/tmp")
    assert cli.main(["upscale", str(photo), str(tmp_path / "out.png"), "--engine", str(export), "--threads", "1",
                     "--quiet"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["upscale", str(photo), str(tmp_path / "out2.png"), "--engine", str(export), "--quiet",
                     "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(
        f"--cache-dir keeps the model an engine compiles as it loads, which only openvino engines do: drop it; "
        f"{export} runs on onnxruntime")
    assert not (tmp_path / "out2.png").exists() and not (tmp_path / "cache").exists()


def _bad_folders(tmp_path: Path, engine: Path) -> dict[str, tuple[Path, str]]:
    """A folder OpenVINO cannot use, one every user may write, one inside the engine: (path, the refusal's words)."""
    (tmp_path / "afile").write_text("")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    return {"a file": (tmp_path / "afile", "cannot be made a folder"),
            "every user's": (shared, "can be written by every user"),
            "inside the engine": (engine / "cache", f"lies inside '{engine}'")}


@pytest.mark.parametrize("how", ["flag", "variable"])
@pytest.mark.parametrize("which", ["a file", "every user's", "inside the engine"])
def test_a_folder_the_cache_cannot_use_is_one_line_naming_the_flag_or_the_variable(
        engine, photo, tmp_path, monkeypatch, capsys, how, which):
    folder, words = _bad_folders(tmp_path, engine)[which]
    flag = ["--cache-dir", str(folder)] if how == "flag" else []
    if how == "variable":
        monkeypatch.setenv(CACHE_ENV, str(folder))
    out = tmp_path / "out.png"
    assert cli.main(["upscale", str(photo), str(out), "--engine", str(engine), "--quiet", *flag]) == 2
    err = capsys.readouterr().err.strip()
    named = f"OpenVINO --cache-dir '{folder}'" if how == "flag" else f"{CACHE_ENV} '{folder}'"
    fix = "or no --cache-dir" if how == "flag" else f"set {CACHE_ENV} to"
    assert len(err.splitlines()) == 1 and named in err and words in err and fix in err, err
    assert not out.exists() and not (engine / "cache").exists()
    runtimes.load(engine, cache_dir=None).close()       # still verifies: nothing was written into it


def test_a_cache_made_with_other_settings_or_by_another_release_gives_this_loads_outputs(engine, tmp_path):
    """OpenVINO keys an entry on the model and the device, not on the precision hint: the hint of each
    load applies to the model read (an AVX512-BF16 or AMX CPU computes bf16 under parity=False, its
    default); an entry another OpenVINO release wrote is compiled again, not run."""
    import openvino as ov
    cache = tmp_path / "cache"
    x = np.random.default_rng(1).random(runtimes.load(engine).input_spec["lr"][0], dtype=np.float32)

    def sr(**opts) -> tuple[np.ndarray, object]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrecisionWarning)      # parity=False: computes the device's default
            with runtimes.load(engine, threads=1, **opts) as e:
                return e.infer({"lr": x})["sr"], getattr(e, "loaded_from_cache", None)
    for parity in (True, False):
        fresh, _ = sr(parity=parity)
        cached, loaded = sr(parity=parity, cache_dir=cache)
        np.testing.assert_array_equal(cached, fresh)
        assert loaded is (parity is False)        # the second load reads the entry the first made
    (blob,) = cache.iterdir()
    version = ov.get_version().encode()
    data = blob.read_bytes()
    assert version in data[:4096]                 # the header names the release that wrote it
    blob.chmod(0o600)
    blob.write_bytes(data.replace(version, b"0" * len(version)))
    again, loaded = sr(cache_dir=cache)
    assert loaded is False
    np.testing.assert_array_equal(again, sr()[0])
    assert os.access(blob, os.R_OK) and version in blob.read_bytes()[:4096]     # written again by this release


def test_the_engine_readme_tells_a_call_per_photo_how_to_keep_the_compiled_model(engine):
    text = (engine / "README.md").read_text()
    assert f"One call per photo: OpenVINO compiles the engine each time it loads (seconds). Set `{CACHE_ENV}`" in text
    assert '`core.set_property({"CACHE_DIR": "DIR"})` before compiling' in text


def test_the_folders_made_for_the_cache_are_this_users_alone(engine, tmp_path):
    """mkdir(parents=True) gave its mode to the last folder only: under umask 000, --cache-dir pub/a/b
    made pub and pub/a writable by every user, where anyone could swap b for a folder of theirs."""
    old = os.umask(0)
    try:
        runtimes.load(engine, cache_dir=tmp_path / "pub" / "a" / "b").close()
    finally:
        os.umask(old)
    modes = {p: oct((tmp_path / p).stat().st_mode & 0o777) for p in ("pub", "pub/a", "pub/a/b")}
    assert modes == {"pub": "0o700", "pub/a": "0o700", "pub/a/b": "0o700"}


@pytest.mark.parametrize("sticky", [False, True])
def test_a_cache_in_a_folder_every_user_may_write_is_refused_unless_it_is_sticky(engine, tmp_path, sticky):
    """Without the sticky bit anyone may rename a folder there and put theirs in its place; /tmp has
    it (only the owner may rename there), so a cache in /tmp is taken."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777 if sticky else 0o777)
    cache = shared / "mine"
    if sticky:
        runtimes.load(engine, cache_dir=cache).close()
        return
    with pytest.raises(InputError, match=re.escape(f"cache_dir '{cache}' lies in '{shared}', where every user may "
                                                   "put a folder of theirs in its place")):
        runtimes.load(engine, cache_dir=cache)
    assert not cache.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="making a folder another user's needs root (chown)")
def test_a_cache_folder_of_another_user_is_refused(engine, tmp_path, monkeypatch):
    """Its owner may write it whatever its mode says (and ACLs or a shared group may let others):
    a folder only its owner and group may write, owned by another user, passed."""
    cache = tmp_path / "theirs"
    cache.mkdir(mode=0o755)
    os.chown(cache, 65534, 65534)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    with pytest.raises(InputError, match=re.escape(f"{CACHE_ENV} '{cache}' belongs to another user (uid 65534)")):
        runtimes.load(engine)


def test_a_cache_inside_the_deploy_output_holding_the_engine_is_refused(engine, tmp_path):
    """Only the engine's own folder was asked: a cache at deploy-out/cache passed, and then `inspect
    deploy-out` failed on files its manifest does not list."""
    out = tmp_path / "deploy-out"
    shutil.copytree(engine, out / "engines" / "ov")
    (out / "manifest.json").write_text(json.dumps({"schema_version": 1, "kind": "deploy", "files": {}}))
    with pytest.raises(InputError, match=re.escape(f"cache_dir '{out / 'cache'}' lies inside '{out}'")):
        runtimes.load(out / "engines" / "ov", cache_dir=out / "cache")
    assert not (out / "cache").exists()
    (out / "manifest.json").write_text(json.dumps({"name": "a web app's own manifest"}))
    runtimes.load(out / "engines" / "ov", cache_dir=out / "cache").close()
