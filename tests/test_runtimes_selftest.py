"""`selftest`: golden outputs, the report, and the verdicts (PASS / BUILT-ONLY) per backend."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _graph_bytes import stand_in_graph
from _runtime_fixtures import cache_root, sharp_model
from alignvar_edge.cli import main
from alignvar_edge.errors import ArtifactError
from alignvar_edge.runtimes import golden
from alignvar_edge.runtimes import selftest as st

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("st") / "micro"
    sharp_model("micro").save_pretrained(str(d))
    golden.make_golden(d, n=2)
    return d


def test_golden_file_is_small_and_complete(ckpt):
    f = ckpt / st.GOLDEN_FILE
    assert f.stat().st_size < 64_000
    lr, sr, tok = st.load_golden(ckpt)
    assert lr.shape == (2, 3, 8, 8) and sr.shape == (2, 3, 32, 32) and len(tok) == 4


def test_the_golden_command_the_errors_print_writes_them_beside_the_weights(tmp_path):
    # the command load_golden (and engine_golden) print, run as printed: a folder name with a space
    # in it was two arguments to the shell, and the command printed its usage instead
    from alignvar_edge.model.checkpoint import CHECKPOINT_FILES, GOLDEN_FILE
    assert golden.GOLDEN_FILE is GOLDEN_FILE and GOLDEN_FILE in CHECKPOINT_FILES    # one name, one owner
    d = tmp_path / "my micro"
    sharp_model("micro").save_pretrained(str(d))
    with pytest.raises(ArtifactError) as e:
        st.load_golden(d)
    command = shlex.split(re.search(r"`(python -m [^`]+)`", str(e.value)).group(1))
    assert command[:3] == ["python", "-m", "alignvar_edge.runtimes.golden"], command
    done = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(d / "golden.safetensors")
    lr, sr, tok = st.load_golden(d)            # made for these weights (their hash is in its metadata)
    assert lr.shape == (4, 3, 8, 8) and sr.shape == (4, 3, 32, 32) and len(tok) == 4


def test_the_golden_command_refuses_anything_but_one_checkpoint_dir(tmp_path, capsys):
    for argv in ([], ["--golden", str(tmp_path)], [str(tmp_path), str(tmp_path)]):
        assert golden.main(argv) == 2
        assert capsys.readouterr().err.strip() == "usage: python -m alignvar_edge.runtimes.golden CHECKPOINT_DIR"
    assert golden.main([str(tmp_path / "none")]) == 2            # not a checkpoint: one line, exit 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "none" in err, err


def test_the_older_golden_command_says_where_it_moved(tmp_path):
    """`python -m alignvar_edge.runtimes.selftest --golden DIR` (older docs) exited 0 having made nothing."""
    r = subprocess.run([sys.executable, "-m", "alignvar_edge.runtimes.selftest", "--golden", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "python -m alignvar_edge.runtimes.golden CHECKPOINT_DIR" in r.stderr, r
    assert list(tmp_path.iterdir()) == []


def test_missing_or_stale_golden_is_explained(tmp_path, ckpt):
    with pytest.raises(ArtifactError, match="golden"):
        st.load_golden(tmp_path)
    import shutil
    other = tmp_path / "other"
    shutil.copytree(ckpt, other)
    from alignvar_edge.export.random_model import random_model
    random_model("micro", seed=1).save_pretrained(str(other), overwrite=True)
    shutil.copy2(ckpt / st.GOLDEN_FILE, other / st.GOLDEN_FILE)
    with pytest.raises(ArtifactError, match="other weights.*regenerate"):
        st.load_golden(other)


def test_torch_selftest_passes_and_prints_a_report(ckpt, capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(["selftest", "--backend", "torch", "--model", str(ckpt), "--runs", "2",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "RESULT    PASS" in text and "tokens    100.00%" in text and "ms per tile" in text
    r = json.loads(out.read_text())
    assert r["tokens"]["overall"] == 1.0 and r["host"]["usable_cores"] >= 1
    # the fingerprint engines record for these weights, so reports of one model compare equal
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.model.checkpoint import weights_sha256
    assert r["weights_sha256"] == weights_sha256(load_pretrained(ckpt))[:16]


def test_threads_reach_the_engine_and_the_report_and_are_refused_where_they_mean_nothing(ckpt, capsys, tmp_path,
                                                                                         monkeypatch):
    from alignvar_edge.runtimes.torch_backend import BACKEND
    opened: list[dict] = []
    real_open = BACKEND.open
    monkeypatch.setattr(BACKEND, "open", lambda d, dev, **o: opened.append(o) or real_open(d, dev, **o))
    out = tmp_path / "r.json"
    assert main(["selftest", "--engine", str(ckpt), "--runs", "1", "--threads", "1", "--json", str(out)]) == 0
    assert opened == [{"threads": 1}] and json.loads(out.read_text())["threads"] == 1
    assert "ms best, 1 thread\n" in capsys.readouterr().out
    assert main(["selftest", "--engine", str(ckpt), "--runs", "1"]) == 0
    assert opened[1] == {} and "ms best, the runtime's default threads" in capsys.readouterr().out
    # no CPU threads to set on TensorRT; more threads than cores would only time the waiting
    assert main(["selftest", "--backend", "tensorrt", "--threads", "1"]) == 2
    assert main(["selftest", "--engine", str(ckpt), "--threads", "100000"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 2 and "--threads applies to engines whose backend takes a thread count (torch, onnxruntime, " \
                             "openvino); " in err[0], err
    assert "--threads 100000 is more than the" in err[1] and len(opened) == 2, err


@pytest.mark.slow
@pytest.mark.parametrize("backend,result", [("openvino", "PASS"), ("tensorrt", "BUILT-ONLY")])
def test_engine_selftests(backend, result, ckpt, pytestconfig, monkeypatch):
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(cache_root(pytestconfig) / "selftest"))
    r = st.selftest(backend, model=str(ckpt), runs=2)
    if backend == "tensorrt" and r["result"] == "PASS":       # a machine with TensorRT and a GPU
        return
    assert r["result"] == result, st.format_report(r)
    if result == "PASS":
        assert r["tokens"]["overall"] == 1.0
        assert r["psnr_vs_golden_db"] == "inf" or r["psnr_vs_golden_db"] >= 50
        assert np.isfinite(r["ms_per_tile_p50"])


@pytest.mark.parametrize("what", ["file", "missing", "empty", "checkpoint", "loop", "fifo"])
def test_engine_that_is_no_engine_directory_says_so(tmp_path, capsys, ckpt, what):
    """`--engine photo.png` (or a folder that is no artifact) is named as such, not as an engine
    that lacks its golden file (which would send the user off to rebuild something); a checkpoint
    without golden outputs is told how to make them."""
    target = {"file": tmp_path / "photo.png", "missing": tmp_path / "nope", "empty": tmp_path / "empty",
              "checkpoint": tmp_path / "ckpt", "loop": tmp_path / "eloop", "fifo": tmp_path / "pipe"}[what]
    if what == "loop":
        target.symlink_to(target.name)
    elif what == "fifo":
        os.mkfifo(target)
    elif what == "file":
        target.write_bytes(b"\x89PNG\r\n\x1a\n")
    elif what == "empty":
        target.mkdir()
    elif what == "checkpoint":
        target.mkdir()
        for f in ("config.json", "model.safetensors"):
            (target / f).write_bytes((ckpt / f).read_bytes())
    assert main(["selftest", "--engine", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(target) in err
    assert {"file": "is a file, not a folder; pass the engine directory",
            "missing": f"--engine {target} does not exist; pass the engine directory `alignvar-edge build`",
            "empty": "no manifest.json", "loop": "leads into a symlink loop",
            "fifo": "is a FIFO (named pipe), not a folder; pass the engine directory",
            "checkpoint": "python -m alignvar_edge.runtimes.golden"}[what] in err
    assert what == "checkpoint" or "golden" not in err


def test_a_deploy_output_is_told_where_its_engines_are_as_load_tells_it(tmp_path, capsys):
    """`selftest --engine DEPLOY_OUTPUT` said to rebuild it with `build ... --target multi`, which no
    build takes, where `load` and `upscale --engine` name the engines inside it: now selftest gives
    their line."""
    from alignvar_edge import runtimes
    from alignvar_edge.manifest import new_manifest, write_manifest
    deployed = tmp_path / "dep"
    (deployed / "engines" / "onnxruntime-fp32").mkdir(parents=True)
    write_manifest(deployed, new_manifest("deploy", "multi", "single", "fp32", {}))
    with pytest.raises(ArtifactError, match=r"is the output of `deploy`; its engines are in .*\(onnxruntime-fp32\)$") as e:
        runtimes.load(deployed)
    capsys.readouterr()
    assert main(["selftest", "--engine", str(deployed)]) == 2
    assert capsys.readouterr().err.strip() == f"alignvar-edge selftest: error: {e.value}"


@pytest.mark.parametrize("flags", [["--model", "alignvar-tiny"], ["--precision", "fp16"],
                                   ["--precision", "fp16", "--model", "x"]])
def test_engine_selftest_refuses_the_model_or_precision_of_a_backend_selftest(ckpt, capsys, flags):
    # an engine is checked against the golden outputs it carries, of the model it was built from:
    # a --model beside --engine was ignored without a word (the run checked the engine's own model)
    assert main(["selftest", "--engine", str(ckpt), "--runs", "1", *flags]) == 2
    err = capsys.readouterr().err.strip()
    named = " and ".join(f for f in flags if f.startswith("--"))
    assert len(err.splitlines()) == 1 and f"error: {named} go" in err and "with --backend" in err, err


def test_failed_rerun_leaves_no_stale_pass(ckpt, tmp_path, capsys):
    """A re-run that errors replaces the --json FILE a passing run wrote (the TensorRT kit reads
    it as the engine's parity record): the file says ERROR and why, the exit status is non-zero."""
    import shutil
    engine = tmp_path / "engine"
    shutil.copytree(ckpt, engine)
    out = tmp_path / "engine-selftest.json"
    assert main(["selftest", "--engine", str(engine), "--runs", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["result"] == "PASS"
    (engine / "config.json").unlink()            # the engine breaks: it no longer loads
    capsys.readouterr()
    assert main(["selftest", "--engine", str(engine), "--runs", "1", "--json", str(out)]) != 0
    r = json.loads(out.read_text())
    assert r["result"] == "ERROR" and r["engine"] == str(engine) and r["reason"]
    assert r["reason"] in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]    # no temp file left


def test_fail_says_which_gate_missed_and_by_how_much(ckpt, tmp_path, capsys):
    """A FAIL names the figure below its gate (the report and the --json FILE), not a bare verdict."""
    import shutil

    from alignvar_edge.runtimes.golden import read_golden, write_golden
    engine = tmp_path / "engine"
    shutil.copytree(ckpt, engine)
    lr, sr, tok, meta = read_golden(engine / st.GOLDEN_FILE)
    tok[-1] = tok[-1] + 1                      # every token of the finest scale now disagrees
    write_golden(engine / st.GOLDEN_FILE, lr, sr, tok, meta)
    out = tmp_path / "r.json"
    assert main(["selftest", "--engine", str(engine), "--runs", "1", "--json", str(out)]) == 1
    r = json.loads(out.read_text())
    share = 1 - tok[-1].size / sum(t.size for t in tok)
    gate = r["thresholds"]["token_agreement"]
    assert r["result"] == "FAIL" and r["reason"].startswith(f"tokens {share:.2%} < {gate * 100:g}%, the gate for torch fp32")
    assert f"RESULT    FAIL: {r['reason']}" in capsys.readouterr().out


def test_the_report_shows_a_scale_that_lost_tokens_with_the_overall_figures_decimals(ckpt):
    """One token of the last scale changed (1 of 2 x 8 x 8): that scale reads 99.22%, not a rounded 100%."""
    from alignvar_edge.export.parity import token_agreement
    r = st.selftest_engine(ckpt, runs=1)
    _, _, golden = st.load_golden(ckpt)
    ran = [t.copy() for t in golden]
    ran[-1].flat[0] += 1
    r["tokens"] = token_agreement(golden, ran)
    line = next(ln for ln in st.format_report(r).splitlines() if ln.startswith("tokens "))
    assert "per scale 100%/100%/100%/99.22%); tiles identical 50%" in line, line


class _Touch:
    """A pickle that, if ever unpickled, creates the file `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("content, says", [("text", "not a golden-outputs file alignvar-edge wrote"),
                                           ("pickle", "is a PyTorch (pickle) file, not safetensors")])
def test_a_corrupt_golden_file_whose_hash_matches_is_one_line(ckpt, tmp_path, capsys, content, says):
    """golden.safetensors replaced (and its hash re-made, as a forger or a file corrupt when written
    would have it) gave safetensors' 'header too large' traceback in selftest --engine; a pickle
    named golden.safetensors is named as one and never run."""
    import pickle

    from alignvar_edge.manifest import read_manifest, write_manifest
    eng, marker = tmp_path / "te", tmp_path / "PWNED"
    assert main(["build", str(ckpt), "--target", "torch", "--out", str(eng)]) == 0
    golden = eng / st.GOLDEN_FILE
    golden.write_bytes(b"not safetensors\n" if content == "text" else pickle.dumps(_Touch(marker)))
    write_manifest(eng, read_manifest(eng))                  # the hashes agree with the bad file
    capsys.readouterr()
    assert main(["selftest", "--engine", str(eng), "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{golden} " in err[0] and says in err[0], err
    assert not marker.exists()


def test_the_export_cache_follows_xdg_and_names_its_variable_where_it_cannot_be_written(ckpt, tmp_path,
                                                                                         monkeypatch):
    """An empty or relative XDG_CACHE_HOME is unset (the XDG spec), not the working folder, which got
    a stray alignvar-edge/; a HOME where no cache can be made names ALIGNVAR_EDGE_CACHE, the way to
    choose another folder (selftest has no output option), before any export."""
    from alignvar_edge.errors import InputError
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ALIGNVAR_EDGE_CACHE", raising=False)
    for xdg in ("", "relative"):
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert st.cache_dir() == home / ".cache" / "alignvar-edge"
    assert list(work.iterdir()) == []
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert st.cache_dir() == tmp_path / "xdg" / "alignvar-edge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")
    logged = []
    with pytest.raises(InputError, match="set ALIGNVAR_EDGE_CACHE to a writable folder"):
        st.cached_export(ckpt, logged.append)
    assert logged == []                                     # nothing exported
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(tmp_path / "mine"))
    assert st.cache_dir() == tmp_path / "mine"


def test_a_read_only_cache_holding_the_export_is_reused(ckpt, tmp_path, monkeypatch):
    """A pre-filled ALIGNVAR_EDGE_CACHE on a read-only disk was refused (exit 2) because the cache
    was probed for writing before the export in it was looked for: it is used as it is; only an
    export missing from it is refused, naming the variable, before any work."""
    from alignvar_edge.errors import InputError
    cache = tmp_path / "cache"
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(cache))
    made = _cached_artifact(cache, ckpt)
    # read-only, stood in for (root writes anywhere): every folder refuses a new file
    monkeypatch.setattr(st, "unwritable_folder", lambda path: Path(path).parent)
    logged = []
    assert st.cached_export(ckpt, logged.append) == (made, 0.0, True)
    shutil.rmtree(made)
    with pytest.raises(InputError, match=re.escape(f"the export cache {cache} is not writable; set "
                                                   "ALIGNVAR_EDGE_CACHE to a writable folder")):
        st.cached_export(ckpt, logged.append)
    assert logged == [] and not made.exists()                # nothing exported


def _cached_artifact(cache: Path, ckpt: Path) -> Path:
    """A small artifact that passes verification, where selftest looks for `ckpt`'s export in `cache`."""
    from alignvar_edge.manifest import ModelInfo, new_manifest, write_manifest
    from alignvar_edge.outputs import artifact_dir
    made = cache / "exports" / st.export_cache_key(ckpt)
    made.parent.mkdir(parents=True, exist_ok=True)
    with artifact_dir(made) as tmp:
        (tmp / "model.onnx").write_bytes(stand_in_graph("stands in for the export"))
        write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", ModelInfo(config={"name": "micro"})))
    return made


def _exports_counted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """export_onnx stood in for by one that makes a verified artifact: the folders it was asked for."""
    import alignvar_edge.export.onnx_export as onnx_export
    from alignvar_edge.manifest import ModelInfo, new_manifest, write_manifest
    from alignvar_edge.outputs import artifact_dir
    asked: list[Path] = []

    def export_onnx(_model, out, **_kwargs):
        asked.append(Path(out))
        with artifact_dir(out) as tmp:
            (tmp / "model.onnx").write_bytes(stand_in_graph("made again"))
            write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", ModelInfo(config={"name": "micro"})))
        return Path(out)

    monkeypatch.setattr(onnx_export, "export_onnx", export_onnx)
    return asked


def test_a_damaged_cached_export_is_made_again_with_a_warning(ckpt, tmp_path, monkeypatch):
    """The export cache is selftest's own: an entry whose model.onnx was cut short failed every later
    selftest with advice meant for a user's artifact ('Copy the whole directory again ...'). It is
    made again, said in one warning naming it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(cache))
    made = _cached_artifact(cache, ckpt)
    (made / "model.onnx").write_bytes(b"stands in")                  # cut short
    asked = _exports_counted(monkeypatch)
    with pytest.warns(UserWarning, match=re.escape(f"selftest's cached export {made} failed verification")):
        out, _seconds, cached = st.cached_export(ckpt, lambda _m: None)
    assert (out, cached, asked) == (made, False, [made])
    assert (made / "model.onnx").read_bytes() == stand_in_graph("made again")


def test_leftovers_of_a_killed_selftest_are_removed_where_no_run_is_making_them(ckpt, tmp_path, monkeypatch):
    """A selftest killed (SIGKILL) while exporting left a hidden `.KEY.tmp-*` folder in the cache for
    good. The next one that makes an entry removes such a folder where the entry's lock is free (no
    live run makes it): its own entry's, and a free one's; not one whose lock a live run holds, nor
    one with no lock file (an older version's run, which takes no lock, may be making it)."""
    import fcntl

    cache = tmp_path / "cache"
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(cache))
    exports = cache / "exports"
    key = st.export_cache_key(ckpt)
    leftovers = {name: exports / f".{name}.tmp-abcd1234" for name in (key, "free", "live", "older", "fresh")}
    for name, folder in leftovers.items():
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"half")
        if name != "older":
            (exports / f".{name}.lock").touch()
        if name != "fresh":            # untouched for two hours; a fresh one may be another machine's live run
            two_hours_ago = time.time() - 7200
            os.utime(folder, (two_hours_ago, two_hours_ago))
    asked = _exports_counted(monkeypatch)
    with open(exports / ".live.lock") as live:
        fcntl.flock(live, fcntl.LOCK_EX)                          # a run making "live" now
        assert st.cached_export(ckpt, lambda _m: None)[0] == exports / key
    assert asked == [exports / key]
    assert sorted(name for name, folder in leftovers.items() if folder.exists()) == ["fresh", "live", "older"]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_an_int8_selftest_calibrates_on_the_builtin_photographs_whoever_quantizes(backend, ckpt, micro_export,
                                                                                   monkeypatch):
    """`selftest --backend openvino --precision int8` failed with 'pass --calib builtin', a flag
    selftest does not take, where ONNX Runtime's int8 used the builtin photographs itself: the
    OpenVINO build (which quantizes with NNCF) now gets that set, as quantize's defaults make it."""
    pytest.importorskip(backend)
    if backend == "openvino":
        pytest.importorskip("nncf")
    from alignvar_edge import runtimes
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.quantize.calibration.sets import (DEFAULT_TILES, DEFAULT_VALIDATION_TILES, CalibrationSet,
                                                         model_config)
    monkeypatch.setattr(st, "cached_export", lambda _ckpt, _log: (micro_export, 0.0, True))
    built = []

    class Built(Exception):
        pass

    def build(source, target, precision, calibration=None, **_kw):
        built.append((Path(source), read_manifest(source).precision, calibration))
        raise Built
    monkeypatch.setattr(runtimes, "build", build)
    with pytest.raises(Built):
        st.selftest(backend, model=str(ckpt), precision="int8")
    [(source, source_precision, calibration)] = built
    if backend == "onnxruntime":            # our ONNX pass quantized the export first: the build takes no set
        assert calibration is None and source_precision == "int8"
        return
    builtin = CalibrationSet.builtin(model_config(read_manifest(micro_export).config), n=DEFAULT_TILES, n_val=DEFAULT_VALIDATION_TILES, seed=0)
    assert (source, source_precision) == (micro_export, "fp32") and calibration.hash == builtin.hash


def test_an_engine_run_under_another_runtime_version_says_which_built_and_checked_it(micro_export, tmp_path,
                                                                                      capsys):
    """An OpenVINO int8 engine built with 2026.4.1 gave 53% of its pixels other values under 2025.0.0,
    and selftest passed naming 2025.0.0 alone: the report names the build's version beside this one,
    and notes where they differ (the verdict is this runtime's own check); load says so once."""
    import importlib.metadata
    import warnings

    from alignvar_edge import runtimes
    from alignvar_edge.manifest import read_manifest, write_manifest
    engine = runtimes.build(micro_export, "onnxruntime", out=tmp_path / "ort", threads=1)
    here = importlib.metadata.version("onnxruntime")
    out = tmp_path / "same.json"
    assert main(["selftest", "--engine", str(engine), "--runs", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["backend_version"], r["backend_version_built"]) == (here, here) and "runtime_note" not in r
    text = capsys.readouterr().out
    assert f"runtime   engine built and checked with onnxruntime {here}\n" in text and "\nnote " not in text

    m = read_manifest(engine)
    m.tools["onnxruntime"] = "1.18.0"              # as built on a host with another ONNX Runtime
    write_manifest(engine, m)
    out = tmp_path / "other.json"
    assert main(["selftest", "--engine", str(engine), "--runs", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["result"] == "PASS" and (r["backend_version"], r["backend_version_built"]) == (here, "1.18.0")
    note = (f"onnxruntime {here} runs it, not the 1.18.0 that built and checked it: its results may differ from "
            "its build's checks")
    assert r["runtime_note"] == note
    said = capsys.readouterr()
    text = said.out
    assert "runtime   engine built and checked with onnxruntime 1.18.0\n" in text and f"note      {note}\n" in text
    assert "checks it with this one" not in said.err, said.err      # the load's warning said the note again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):                          # a service's loop: one note, not one per load
            runtimes.load(engine).close()
    assert [str(w.message) for w in caught] == [
        f"{engine}: {note}; `alignvar-edge selftest --engine {engine}` checks it with this one"]
