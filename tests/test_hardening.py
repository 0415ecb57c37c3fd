"""Hardening: bad input, interrupted work and untrusted files.

A table-driven CLI fault suite (in-process through `cli.main`, and a few through a subprocess), a
SIGKILL/SIGINT interruption test of `export`, a hypothesis fuzz of `load_image`, unsafe pickles,
and concurrency on one engine. Cases and observed results are listed in docs/reliability.md.

Every bad case must: exit non-zero, print exactly one stderr line naming the problem, and never a
traceback. One small ONNX export (`micro` shrunk to a 16 px tile, as in test_export.py) is made
once per module and reused.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _graph_bytes import stand_in_graph
from _runtime_fixtures import NANO, nano_model
from alignvar_edge import cli
from alignvar_edge.errors import ArtifactError, CheckpointError, InputError
from alignvar_edge.manifest import load_verified
from alignvar_edge.images import IMAGE_EXTENSIONS, load_image

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def nano():
    return nano_model()


@pytest.fixture(scope="module")
def export(nano, tmp_path_factory):
    from alignvar_edge.export.onnx_export import export_onnx
    return export_onnx(nano, tmp_path_factory.mktemp("hard") / "nano", graph="single", batch=1, n_tiles=1)


@pytest.fixture(scope="module")
def ckpt(nano, tmp_path_factory):
    from alignvar_edge.model.checkpoint import save_pretrained
    return save_pretrained(nano, tmp_path_factory.mktemp("ck") / "nano")


def _png(path: Path, size=(12, 10)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# the fault table: (id, setup(tmp, export, ckpt) -> argv, needle in the error line, check after)
# ---------------------------------------------------------------------------------------------
def _up(tmp, exp, src, out="out.png", *extra):
    return ["upscale", str(src), str(tmp / out), "--engine", str(exp), "--quiet", *extra]


def s_zero_byte(tmp, exp, ck):
    (tmp / "zero.png").write_bytes(b"")
    return _up(tmp, exp, tmp / "zero.png")


def s_text_png(tmp, exp, ck):
    (tmp / "text.png").write_text("hello, I am not a picture\n" * 20)
    return _up(tmp, exp, tmp / "text.png")


def s_truncated_png(tmp, exp, ck):
    data = _png(tmp / "full.png", (64, 48)).read_bytes()
    (tmp / "trunc.png").write_bytes(data[: len(data) // 2])
    return _up(tmp, exp, tmp / "trunc.png")


def s_missing_input(tmp, exp, ck):
    return _up(tmp, exp, tmp / "nope.png")


def s_output_exists(tmp, exp, ck):
    _png(tmp / "in.png")
    (tmp / "out.png").write_bytes(b"precious")
    return _up(tmp, exp, tmp / "in.png")


def c_output_unchanged(tmp):
    assert (tmp / "out.png").read_bytes() == b"precious"


def s_inspect_no_manifest(tmp, exp, ck):
    (tmp / "art").mkdir()
    (tmp / "art" / "model.onnx").write_bytes(b"x")
    return ["inspect", str(tmp / "art")]


def _copy_export(tmp, exp):
    dst = tmp / "copy"
    shutil.copytree(exp, dst)
    return dst


def _truncate_onnx(tmp, exp):
    dst = _copy_export(tmp, exp)
    onnx_file = next(dst.glob("*.onnx"))
    data = onnx_file.read_bytes()
    onnx_file.write_bytes(data[: len(data) // 2])
    return dst


def s_inspect_truncated(tmp, exp, ck):
    return ["inspect", str(_truncate_onnx(tmp, exp))]


def s_load_truncated(tmp, exp, ck):
    _png(tmp / "in.png")
    return _up(tmp, _truncate_onnx(tmp, exp), tmp / "in.png", "out.png", "--backend", "onnxruntime")


def s_manifest_not_json(tmp, exp, ck):
    dst = _copy_export(tmp, exp)
    (dst / "manifest.json").write_text("{this is not json")
    return ["inspect", str(dst)]


def s_manifest_nested_deep(tmp, exp, ck):
    dst = _copy_export(tmp, exp)
    (dst / "manifest.json").write_text('{"a":' * 50000 + "1" + "}" * 50000)     # json: RecursionError
    _png(tmp / "in.png")
    return ["upscale", str(tmp / "in.png"), str(tmp / "out.png"), "--engine", str(dst), "--quiet"]


def s_load_manifest_not_json(tmp, exp, ck):
    dst = _copy_export(tmp, exp)
    (dst / "manifest.json").write_text("[1, 2")
    _png(tmp / "in.png")
    return ["upscale", str(tmp / "in.png"), str(tmp / "out.png"), "--engine", str(dst), "--quiet"]


def s_info_unknown_preset(tmp, exp, ck):
    return ["info", "--preset", "nosuch"]


def s_info_missing_ckpt(tmp, exp, ck):
    return ["info", str(tmp / "no-ckpt")]


def s_eval_missing_ckpt(tmp, exp, ck):
    return ["eval", str(tmp / "no-ckpt")]


def s_export_unknown_preset(tmp, exp, ck):
    return ["export", "--preset", "nosuch", "--out", str(tmp / "x")]


def _mismatched_ckpt(tmp, ck):
    dst = tmp / "ck"
    shutil.copytree(ck, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["depth"] = int(cfg.get("depth", 1)) + 1
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def s_info_ckpt_mismatch(tmp, exp, ck):
    return ["info", str(_mismatched_ckpt(tmp, ck)), "--no-flops"]


def s_eval_ckpt_mismatch(tmp, exp, ck):
    return ["eval", str(_mismatched_ckpt(tmp, ck))]


def s_ckpt_bad_config_json(tmp, exp, ck):
    dst = tmp / "ck"
    shutil.copytree(ck, dst)
    (dst / "config.json").write_text("{nope")
    return ["info", str(dst), "--no-flops"]


def s_ckpt_truncated_weights(tmp, exp, ck):
    dst = tmp / "ck"
    shutil.copytree(ck, dst)
    w = dst / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    return ["info", str(dst), "--no-flops"]


def s_info_torch_file(tmp, exp, ck):
    return ["info", str(Path(__file__).parent / "data" / "upstream" / "varsr" / "var.pth"), "--no-flops"]


def s_eval_weights_file(tmp, exp, ck):
    return ["eval", str(ck / "model.safetensors")]


def s_inspect_checkpoint(tmp, exp, ck):
    return ["inspect", str(ck)]


def s_info_export(tmp, exp, ck):
    return ["info", str(exp)]


def s_export_images_not_a_folder(tmp, exp, ck):
    return ["export", str(ck), "--out", str(tmp / "x"), "--images", "nowhere-at-all"]


def s_build_bundled_name(tmp, exp, ck):
    return ["build", "alignvar-tiny", "--target", "openvino", "--out", str(tmp / "ov")]


def s_quantize_empty_calib(tmp, exp, ck):
    (tmp / "empty").mkdir()
    return ["quantize", str(exp), "--calib", str(tmp / "empty"), "--out", str(tmp / "q")]


def s_quantize_unreadable_calib(tmp, exp, ck):
    (tmp / "bad").mkdir()
    (tmp / "bad" / "a.png").write_bytes(b"")
    (tmp / "bad" / "b.jpg").write_text("not a jpeg")
    return ["quantize", str(exp), "--calib", str(tmp / "bad"), "--out", str(tmp / "q")]


def c_no_q(tmp):
    assert not (tmp / "q").exists()


FAULTS = [
    ("upscale-0-byte-png", s_zero_byte, "empty", None),
    ("upscale-text-as-png", s_text_png, "text.png", None),
    ("upscale-truncated-png", s_truncated_png, "trunc.png", None),
    ("upscale-missing-input", s_missing_input, "does not exist", None),
    ("upscale-output-exists", s_output_exists, "--force", c_output_unchanged),
    ("inspect-no-manifest", s_inspect_no_manifest, "no manifest.json", None),
    ("inspect-truncated-onnx", s_inspect_truncated, "failed verification", None),
    ("upscale-engine-truncated-onnx", s_load_truncated, "failed verification", None),
    ("inspect-manifest-not-json", s_manifest_not_json, "not valid JSON", None),
    ("upscale-engine-manifest-not-json", s_load_manifest_not_json, "not valid JSON", None),
    ("upscale-engine-manifest-nested-deep", s_manifest_nested_deep, "not valid JSON (it is nested too deeply", None),
    ("info-unknown-preset", s_info_unknown_preset, "nosuch", None),
    ("export-unknown-preset", s_export_unknown_preset, "nosuch", None),
    ("info-missing-checkpoint", s_info_missing_ckpt, "no checkpoint directory", None),
    ("eval-missing-checkpoint", s_eval_missing_ckpt, "no checkpoint directory", None),
    ("info-config-weights-mismatch", s_info_ckpt_mismatch, "do not match", None),
    ("eval-config-weights-mismatch", s_eval_ckpt_mismatch, "do not match", None),
    ("info-config-not-json", s_ckpt_bad_config_json, "config", None),
    ("info-truncated-safetensors", s_ckpt_truncated_weights, "safetensors", None),
    ("info-torch-file", s_info_torch_file, "convert VARSR's or VAR's with `alignvar-edge import", None),
    ("eval-weights-file", s_eval_weights_file, "is a file of a checkpoint; pass its folder", None),
    ("inspect-checkpoint", s_inspect_checkpoint, "is a model checkpoint, not an exported artifact; export it", None),
    ("info-export", s_info_export, "is an artifact of alignvar-edge (an export or an engine: it has manifest.json), "
     "not a model checkpoint", None),
    ("export-images-not-a-folder", s_export_images_not_a_folder,
     "--images nowhere-at-all does not exist; pass a folder of images", None),
    # a mistyped path was 'not a folder' or 'not a directory', as a file is: said missing, as upscale says
    ("eval-images-missing", lambda tmp, exp, ck: ["eval", str(ck), "--images", "nowhere-at-all"],
     "--images nowhere-at-all does not exist; pass a folder of PNG/JPEG files or 'builtin'", None),
    ("compare-images-missing", lambda tmp, exp, ck: ["compare", str(exp), "--reference", str(ck), "--images",
                                                  "nowhere-at-all"],
     "--images nowhere-at-all does not exist; pass a folder of images", None),
    ("inspect-missing", lambda tmp, exp, ck: ["inspect", "nowhere-at-all"],
     "'nowhere-at-all' does not exist; pass an artifact directory made by", None),
    ("build-bundled-name", s_build_bundled_name, "'alignvar-tiny' is a bundled model checkpoint, not an exported "
     "artifact; export it first", None),
    ("quantize-empty-calib-folder", s_quantize_empty_calib, "no images", c_no_q),
    ("quantize-unreadable-calib-folder", s_quantize_unreadable_calib, "no usable calibration image", c_no_q),
]


def _one_line_error(code: int, err: str, needle: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert ": error: " in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("setup, needle, check", [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_cli_fault_in_process(setup, needle, check, export, ckpt, tmp_path, capsys):
    argv = setup(tmp_path, export, ckpt)
    before = {p: _sha(p) for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = cli.main(argv)
    _one_line_error(code, capsys.readouterr().err, needle)
    if check:
        check(tmp_path)
    for p, h in before.items():                           # inputs are never modified
        assert p.is_file() and _sha(p) == h, p


SUBPROCESS_FAULTS = ("upscale-text-as-png", "inspect-manifest-not-json", "info-config-weights-mismatch")


@pytest.mark.parametrize("fault", [f for f in FAULTS if f[0] in SUBPROCESS_FAULTS], ids=SUBPROCESS_FAULTS)
def test_cli_fault_subprocess(fault, export, ckpt, tmp_path):
    _, setup, needle, _ = fault
    argv = setup(tmp_path, export, ckpt)
    r = subprocess.run([sys.executable, "-m", "alignvar_edge.cli", *argv], capture_output=True, text=True,
                       env=ENV, timeout=120)
    _one_line_error(r.returncode, r.stderr, needle)
    if fault[0] != SUBPROCESS_FAULTS[0]:
        return
    # --debug shows the traceback instead (checked once: each subprocess pays torch's import)
    r = subprocess.run([sys.executable, "-m", "alignvar_edge.cli", "--debug", *argv], capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_upscale_never_modifies_input(export, tmp_path, capsys):
    src = _png(tmp_path / "in.png")
    h = _sha(src)
    assert cli.main(_up(tmp_path, export, src)) == 0
    assert _sha(src) == h and (tmp_path / "out.png").is_file()
    # over itself is refused even with --force
    assert cli.main(["upscale", str(src), str(src), "--engine", str(export), "--quiet", "--force"]) != 0
    assert _sha(src) == h


# ---------------------------------------------------------------------------------------------
# untrusted pickles: the payload must never run
# ---------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("wrap", ["bare", "varsr"])
def test_pickle_payload_never_runs(tmp_path, wrap):
    import torch

    from alignvar_edge.model.torch_files import read_torch_file
    from alignvar_edge.model.upstream import import_varsr
    marker = tmp_path / "pwned"
    obj = _Payload(str(marker))
    if wrap == "varsr":
        obj = {"trainer": {"var_wo_ddp": {"w": torch.zeros(1)}, "vae_local": obj}}
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump(obj, f)                          # legacy (non-zip) format
    bad_zip = tmp_path / "evil_zip.pth"
    torch.save(obj, bad_zip)                          # torch's zip format
    for p in (bad, bad_zip):
        if wrap == "varsr" or p == bad:
            with pytest.raises(CheckpointError, match="not a PyTorch zip|not a state dict"):
                import_varsr(p, p) if wrap == "varsr" else read_torch_file(p)
        else:                                        # the payload comes back inert, never called
            assert type(read_torch_file(p)).__name__ == "Skipped"
    assert not marker.exists()


def test_import_of_a_truncated_or_damaged_pth_says_fetch_it_again(tmp_path, capsys):
    upstream = Path(__file__).parent / "data" / "upstream" / "varsr"
    whole = (upstream / "var.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])         # an interrupted download
    flipped = bytearray(whole)
    flipped[len(whole) // 10] ^= 0xFF                                     # a bit flipped in a tensor
    (tmp_path / "flipped.pth").write_bytes(bytes(flipped))
    for name in ("cut.pth", "flipped.pth"):
        capsys.readouterr()
        code = cli.main(["import", "varsr", "--var", str(tmp_path / name), "--vae", str(upstream / "vae.pth"),
                         "--out", str(tmp_path / "out")])
        line = _one_line_error(code, capsys.readouterr().err, "damaged or truncated")
        assert name in line and "fetch the file again" in line and "re-save" not in line
        assert not (tmp_path / "out").exists()


def test_import_of_the_wrong_files_names_the_file_and_the_fix(tmp_path, capsys):
    import torch
    upstream = Path(__file__).parent / "data" / "upstream" / "varsr"
    other = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)                    # some other network's weights
    cases = [(["var", "--var", str(upstream / "var.pth"), "--vae", str(upstream / "vae.pth")],
              "a VARSR one? use `alignvar-edge import varsr`"),
             (["var", "--vae", str(other), "--patch-nums", "1,2"], f"'{other}' lacks"),
             (["var", "--var", str(other), "--vae", str(other), "--patch-nums", "1,2"], "as --var")]
    for argv, needle in cases:
        capsys.readouterr()
        code = cli.main(["import", *argv, "--out", str(tmp_path / "out")])
        _one_line_error(code, capsys.readouterr().err, needle)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# calibration at the API level
# ---------------------------------------------------------------------------------------------
def test_calibration_empty_unreadable_and_too_few(tmp_path, nano):
    from alignvar_edge.quantize.calibration import CalibrationSet
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        CalibrationSet.from_folder(tmp_path / "empty", nano.config)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    (bad / "b.jpg").write_text("no")
    (bad / "c.png").write_bytes(_png(tmp_path / "x.png").read_bytes()[:30])
    with pytest.raises(InputError, match="no usable calibration image"):
        CalibrationSet.from_folder(bad, nano.config)
    with pytest.raises(InputError, match="no such|does not exist"):
        CalibrationSet.from_folder(tmp_path / "missing", nano.config)
    # fewer images than tiles requested: tiles still come (several per image), with no error
    one = tmp_path / "one"
    one.mkdir()
    _png(one / "a.png", (64, 64))
    with pytest.warns(UserWarning, match=r"only 1 image\(s\) for 8 tiles"):     # said, not an error
        cs = CalibrationSet.from_folder(one, nano.config, n=8, n_val=2)
    assert cs is not None


# ---------------------------------------------------------------------------------------------
# fuzz: load_image on random bytes behind image extensions
# ---------------------------------------------------------------------------------------------
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
         b"II*\x00", b"MM\x00*", b"GIF89a"]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")     # Pillow's, on the random bytes
def test_fuzz_load_image(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    root = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from(MAGIC), st.binary(max_size=600), st.sampled_from(IMAGE_EXTENSIONS))
    def run(magic, body, ext):
        p = root / f"f{ext}"
        p.write_bytes(magic + body)
        try:
            rgb, alpha = load_image(p, max_megapixels=1.0)
        except InputError as e:
            assert str(e) and "\n" not in str(e).strip()
            return
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and np.isfinite(rgb).all()

    run()


def test_fuzz_mutated_real_png(tmp_path):
    """Bit flips and cuts of a real PNG/JPEG: InputError or a decoded image, nothing else."""
    rng = np.random.default_rng(1)
    for ext in (".png", ".jpg"):
        good = _png(tmp_path / f"good{ext}", (24, 20)).read_bytes()
        for i in range(25):
            data = bytearray(good)
            for _ in range(int(rng.integers(1, 6))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            if i % 3 == 0:
                data = data[: int(rng.integers(8, len(data)))]
            p = tmp_path / f"m{i}{ext}"
            p.write_bytes(bytes(data))
            try:
                load_image(p)
            except InputError:
                pass


# ---------------------------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------------------------
def test_upscale_from_threads_and_two_engines(export):
    from alignvar_edge import runtimes
    rng = np.random.default_rng(2)
    imgs = [rng.random((9 + i, 11, 3), dtype=np.float32) for i in range(3)]
    with runtimes.load(export, backend="onnxruntime") as a, runtimes.load(export, backend="onnxruntime") as b:
        ref = [a.upscale(im) for im in imgs]
        results: dict[tuple[str, int, int], np.ndarray] = {}
        errors: list[BaseException] = []

        def work(tag, eng, k):
            try:
                for r in range(2):
                    for i, im in enumerate(imgs):
                        results[(tag, k, r * 10 + i)] = eng.upscale(im)
            except BaseException as e:    # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=("a", a, k)) for k in range(3)]
        threads += [threading.Thread(target=work, args=("b", b, 0))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(results) == 4 * 6
        for (tag, k, idx), out in results.items():
            np.testing.assert_array_equal(out, ref[idx % 10], err_msg=f"{tag} thread {k} image {idx}")


# ---------------------------------------------------------------------------------------------
# interruption: SIGKILL / SIGINT during `export` leaves nothing that loads while incomplete
# ---------------------------------------------------------------------------------------------
def _no_incomplete_artifact(parent: Path, out: Path) -> None:
    if out.exists():
        load_verified(out)                       # it exists only if complete
    for tmp in parent.glob(f".{out.name}.tmp-*"):
        with pytest.raises(ArtifactError):
            load_verified(tmp)
    r = subprocess.run([sys.executable, "-m", "alignvar_edge.cli", "inspect", str(out)],
                       capture_output=True, text=True, env=ENV, timeout=120)
    if not out.exists():
        assert r.returncode != 0 and "Traceback" not in r.stderr


def _default_sigint() -> None:
    # a test run started in the background of a shell without job control inherits SIGINT ignored,
    # and the CLI rightly leaves an ignored SIGINT alone: give the child the terminal's default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_interrupted_export(tmp_path, sig):
    out = tmp_path / "X"
    proc = subprocess.Popen([sys.executable, "-m", "alignvar_edge.cli", "export", "--preset", "micro",
                             "--out", str(out), "--tiles", "8"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    # signal soon after the temporary sibling appears (the export has really started): on an idle
    # machine a micro export finishes about two seconds later, so a longer wait can miss it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".X.tmp-*")) and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"export did not stop after {sig!r}")
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert "Traceback" not in err, err
        assert "interrupted" in err
        assert not list(tmp_path.glob(".X.tmp-*")), "SIGINT should clean up the temporary directory"
    if sig == signal.SIGTERM:                        # handled like SIGINT (issue: artifacts that cannot lie)
        assert proc.returncode == 143, (proc.returncode, err)
        assert "Traceback" not in err and "terminated (SIGTERM)" in err, err
        assert not list(tmp_path.glob(".X.tmp-*")), "SIGTERM should clean up the temporary directory"
    _no_incomplete_artifact(tmp_path, out)
    assert not out.exists()


def test_python_m_keeps_the_interrupted_status_after_exec_code_was_interrupted(tmp_path):
    # The flake behind SIGTERM's status read -2: a KeyboardInterrupt that ended code exec() ran from
    # a string (libraries build classes that way during an export) makes CPython's `-m` runner kill
    # the process with SIGINT at exit, even though the CLI caught it and chose 143. Here the verb is
    # interrupted inside such code on purpose, then `python -m alignvar_edge` runs as usual.
    (tmp_path / "interrupted_in_exec.py").write_text(
        "import runpy, signal\n"
        "import alignvar_edge.cli as cli\n"
        "def main(argv=None):\n"
        "    try:\n"
        "        exec('raise KeyboardInterrupt')\n"
        "    except KeyboardInterrupt:\n"
        "        print('verb cleaned up', flush=True)\n"
        "        return 128 + signal.SIGTERM\n"
        "cli.main = main\n"
        "runpy.run_module('alignvar_edge', run_name='__main__')\n")
    env = dict(ENV, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), ENV.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-m", "interrupted_in_exec"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 128 + signal.SIGTERM, (r.returncode, r.stderr)
    assert r.stdout == "verb cleaned up\n"


# ---------------------------------------------------------------------------------------------
# more CLI faults: engine for a backend that is not here, megapixel limit, renamed graph I/O
# ---------------------------------------------------------------------------------------------
def s_export_on_backend(backend):
    def setup(tmp, exp, ck):
        _png(tmp / "in.png")
        return _up(tmp, exp, tmp / "in.png", "out.png", "--backend", backend)
    return setup


def s_megapixels(tmp, exp, ck):
    _png(tmp / "in.png", (64, 64))
    return _up(tmp, exp, tmp / "in.png", "out.png", "--max-megapixels", "0.001")


def _rewrite_graph(tmp, exp, edit):
    """A copy of the export whose graph was edited AND whose manifest hashes were updated to
    match: the manifest check passes, so the runtime's own checks must refuse it."""
    import onnx

    from alignvar_edge.manifest import hash_files, read_manifest, write_manifest
    dst = _copy_export(tmp, exp)
    f = next(dst.glob("*.onnx"))
    m = onnx.load(str(f))
    edit(m)
    onnx.save(m, str(f))
    man = read_manifest(dst)
    man.files = hash_files(dst)
    write_manifest(dst, man)
    load_verified(dst)
    _png(tmp / "in.png")
    return _up(tmp, dst, tmp / "in.png", "out.png", "--backend", "onnxruntime")


def _rename_input(m):
    old = m.graph.input[0].name
    m.graph.input[0].name = "renamed"
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = "renamed"


def _rename_output(m):
    old = m.graph.output[0].name
    m.graph.output[0].name = "renamed_out"
    for n in m.graph.node:
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = "renamed_out"


def s_renamed_input(tmp, exp, ck):
    return _rewrite_graph(tmp, exp, _rename_input)


def s_renamed_output(tmp, exp, ck):
    return _rewrite_graph(tmp, exp, _rename_output)


def s_output_under_a_file(tmp, exp, ck):
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp / "in.png")
    (tmp / "afile").write_text("not a folder")
    return _up(tmp, exp, tmp / "in.png", "afile/out.png")


def s_float_tiff_0_255(tmp, exp, ck):
    Image.fromarray(np.full((5, 6), 200.0, np.float32), mode="F").save(tmp / "f255.tif")
    return _up(tmp, exp, tmp / "f255.tif")


def c_no_demo_folder(tmp):
    assert not (tmp / "demo").exists()


def s_rgba_to_jpeg(tmp, exp, ck):
    Image.fromarray(np.full((5, 6, 4), 128, np.uint8)).save(tmp / "rgba.png")
    return _up(tmp, exp, tmp / "rgba.png", "out.jpg")


def s_multi_page_tiff(tmp, exp, ck):
    pages = [Image.fromarray(np.full((5, 6, 3), v, np.uint8)) for v in (10, 120, 240)]
    pages[0].save(tmp / "pages.tif", save_all=True, append_images=pages[1:])
    return _up(tmp, exp, tmp / "pages.tif")


def s_hint_on_onnxruntime(tmp, exp, ck):
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp / "in.png")
    return _up(tmp, exp, tmp / "in.png", "out.png", "--hint", "throughput")


MORE_FAULTS = [
    ("demo-size-too-small", lambda t, e, c: ["demo", "--out", str(t / "demo"), "--size", "10"], "--size 10",
     c_no_demo_folder),
    ("upscale-output-under-a-file", s_output_under_a_file, "is a file", None),
    ("upscale-rgba-to-jpeg", s_rgba_to_jpeg, "cannot store transparency", None),
    ("upscale-multi-page-tiff", s_multi_page_tiff, "pages.tif holds 3 frames", None),
    ("upscale-hint-on-onnxruntime", s_hint_on_onnxruntime, "--hint applies to OpenVINO engines", None),
    ("upscale-float-tiff-0-255", s_float_tiff_0_255, "f255.tif", None),
    ("upscale-export-on-tensorrt", s_export_on_backend("tensorrt"), "an ONNX export, which runs on onnxruntime or "
     "openvino, not on tensorrt", None),
    ("upscale-export-on-coreml", s_export_on_backend("coreml"), "an ONNX export, which runs on onnxruntime or "
     "openvino, not on coreml", None),
    ("upscale-over-megapixel-limit", s_megapixels, "megapixel", None),
    ("upscale-graph-wrong-opset", lambda t, e, c: _rewrite_graph(t, e, _wrong_opset), "cannot load", None),
    ("upscale-graph-output-dropped", lambda t, e, c: _rewrite_graph(t, e, _drop_output), "output", None),
]


def test_a_0_255_float_image_is_refused_not_clipped_to_white(export) -> None:
    from alignvar_edge import runtimes
    with runtimes.load(export, backend="onnxruntime") as e:
        with pytest.raises(InputError, match="divide it by its full-scale value"):
            e.upscale(np.full((6, 7, 3), 200.0, np.float32))
        # the overshoot of a resampled image is clipped, not refused
        assert e.upscale(np.full((6, 7, 3), 1.002, np.float32)).shape == (24, 28, 3)


def test_reports_written_atomically_get_the_umask_modes(tmp_path) -> None:
    from alignvar_edge.fsmodes import write_text
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "r" / "report.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644          # not mkstemp's private 0600


def test_golden_outputs_are_written_atomically_with_the_umask_modes(tmp_path, monkeypatch) -> None:
    """safetensors writes its files 0600 and in place: a golden file is published like a report,
    and a failed write leaves the one before it whole."""
    import errno

    import safetensors.numpy

    from alignvar_edge.runtimes.golden import read_golden, write_golden
    lr, sr, tokens = np.zeros((1, 3, 4, 4), np.float32), np.ones((1, 3, 16, 16), np.float32), [np.arange(4)]
    old = os.umask(0o022)
    try:
        path = write_golden(tmp_path / "golden.safetensors", lr, sr, tokens, {"seed": "0"})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


    def full(data, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 8)             # part of it written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    with pytest.raises(OSError, match="No space left") as info:
        write_golden(path, lr, sr, tokens, {"seed": "1"})
    assert info.value.filename == str(path)               # the output, not the hidden temporary file
    assert read_golden(path)[3] == {"seed": "0"} and sorted(p.name for p in tmp_path.iterdir()) == [path.name]



def test_a_report_that_cannot_be_written_is_reported_on_its_own_path(tmp_path, monkeypatch) -> None:
    """`--json FILE` on a read-only or full disk: the one line names FILE, not the hidden temporary
    file (read-only), and not nothing at all (a full disk's error carries no file name)."""
    import errno

    from alignvar_edge import fsmodes
    target = tmp_path / "r.json"

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".r.json.x1y2.tmp"))
    monkeypatch.setattr(fsmodes, "temp_file_beside", read_only)     # root writes past file modes here
    with pytest.raises(OSError) as info:
        fsmodes.write_text(target, "{}")
    assert cli._os_error_line(info.value) == (f"cannot write or read {target} (Read-only file system); "
                                              "choose another path or fix its permissions")
    monkeypatch.undo()

    def full(tmp):
        tmp.write_bytes(b"{")                             # part of it written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError) as info:
        fsmodes.write_atomically(target, full)
    assert cli._os_error_line(info.value) == (f"no space left on the device writing {target}; "
                                              "free some space or choose another output")
    assert list(tmp_path.iterdir()) == []                 # no report, no temporary file

def test_a_safetensors_write_error_is_the_os_error_it_wraps(tmp_path) -> None:
    """safetensors raises SafetensorError, no OSError, for the file system's errors ('I/O error: No
    space left on device (os error 28)'): the CLI's one line never saw them (a traceback from
    train's save_state); as_write_error gives the OSError back, about the output the user named."""
    import errno

    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    from alignvar_edge import fsmodes
    with pytest.raises(SafetensorError) as info:
        save_file({"a": np.zeros(4, np.float32)}, str(tmp_path))          # a folder: EISDIR, from the library
    error = fsmodes.as_write_error(info.value, tmp_path / "out")
    assert isinstance(error, OSError) and error.errno == errno.EISDIR and error.filename == str(tmp_path / "out")
    assert fsmodes.as_write_error(ValueError("no OS error in here"), tmp_path) is None
    with pytest.raises(OSError) as raised:           # write_atomically (golden files) says it the same way
        fsmodes.write_atomically(tmp_path / "g.safetensors", lambda tmp: save_file({}, str(tmp_path)))
    assert raised.value.errno == errno.EISDIR and raised.value.filename == str(tmp_path / "g.safetensors")


def test_a_build_onto_a_full_or_read_only_disk_names_the_output(export, small_disk, capsys) -> None:
    """The line named the input (shutil.copy2's ENOSPC gives the source as `filename`) or the hidden
    temporary folder (mkdtemp on a read-only disk), not the --out the user typed."""
    full, ro = small_disk("1M"), small_disk("1M", read_only=True)
    with open(full / "fill", "wb", buffering=0) as fh:       # to the last block
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    # a full disk is met during the work (exit 1); a read-only one is refused before it (exit 2)
    for out, status, says in ((full / "e1", 1, "no space left on the device writing {out}; free some space or "
                                               "choose another output"),
                              (ro / "e1", 2, "--out '{out}': the folder {ro} is not writable; choose another --out")):
        # OpenVINO's failed IR write is a bare RuntimeError: the same line, not a traceback
        for target in (["onnxruntime", "--threads", "1"], ["openvino", "--precision", "fp32"]):
            capsys.readouterr()
            code = cli.main(["build", str(export), "--target", *target, "--out", str(out)])
            assert code == status
            err = capsys.readouterr().err                 # after the progress line OpenVINO's build prints
            err = "\n".join(ln for ln in err.splitlines() if not ln.startswith("building the "))
            line = _one_line_error(code, err, says.format(out=out, ro=ro))
            assert ".tmp-" not in line
    assert sorted(p.name for p in full.iterdir()) == ["fill"] and list(ro.iterdir()) == []


def test_a_folder_run_names_the_files_it_does_not_read(export, tmp_path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(src / "a.png")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(src / "b.gif")          # read, written as .png
    (src / "notes.txt").write_text("not an image")
    assert cli.main(["upscale", str(src), str(tmp_path / "out"), "--engine", str(export), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "not reading 1 file(s) of other kinds (notes.txt); images are .png .jpg .jpeg .bmp .webp .tif .tiff .gif" \
        in err and "upscaled 2 image(s)" in err


def test_a_folder_run_goes_past_unusable_files_and_ends_with_an_error(export, tmp_path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "c.png"):
        Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(src / name)
    (src / "b.png").write_bytes(b"")                       # damaged, between two good ones
    assert cli.main(["upscale", str(src), str(tmp_path / "out"), "--engine", str(export), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "skipping: " in err and "b.png is empty" in err and "1 file(s) could not be upscaled" in err
    from alignvar_edge.runtimes.upscale_record import RECORD_NAME
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != RECORD_NAME) == ["a.png", "c.png"]


def test_an_output_ending_in_a_slash_is_a_folder(export, tmp_path, capsys) -> None:
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "in.png")
    assert cli.main(["upscale", str(tmp_path / "in.png"), f"{tmp_path / 'new'}/", "--engine", str(export),
                     "--quiet"]) == 0
    assert Image.open(tmp_path / "new" / "in.png").size == (24, 20)


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys) -> None:
    from alignvar_edge.runtimes import commands

    def doctor(args):
        raise BrokenPipeError(32, "Broken pipe")        # `alignvar-edge doctor | head -1`
    monkeypatch.setattr(commands, "run_doctor", doctor)
    assert cli.main(["doctor"]) == 128 + signal.SIGPIPE
    assert capsys.readouterr().err == ""


def _wrong_opset(m):
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 7


def _drop_output(m):
    del m.graph.output[:]


@pytest.mark.parametrize("edit", [_rename_input, _rename_output], ids=["input", "output"])
def test_renamed_graph_io_is_refused_or_equivalent(edit, export, tmp_path):
    """Renamed graph I/O (hashes re-made to match): either a clear refusal or identical results."""
    from alignvar_edge import runtimes
    from alignvar_edge.errors import AlignVAREdgeError
    argv = _rewrite_graph(tmp_path, export, edit)
    img = np.random.default_rng(4).random((9, 10, 3), dtype=np.float32)
    with runtimes.load(export, backend="onnxruntime") as a:
        ref = a.upscale(img)
    try:
        with runtimes.load(argv[4], backend="onnxruntime") as b:
            out = b.upscale(img)
    except AlignVAREdgeError:
        return
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("setup, needle, check", [f[1:] for f in MORE_FAULTS], ids=[f[0] for f in MORE_FAULTS])
def test_more_cli_faults(setup, needle, check, export, ckpt, tmp_path, capsys):
    test_cli_fault_in_process(setup, needle, check, export, ckpt, tmp_path, capsys)


# ---------------------------------------------------------------------------------------------
# odd but valid images go all the way through `upscale`
# ---------------------------------------------------------------------------------------------
def _odd_image(kind, path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (7, 9, 3), dtype=np.uint8)
    if kind == "1x1":
        Image.fromarray(rgb[:1, :1]).save(path)
    elif kind == "gray16":
        Image.fromarray(rng.integers(0, 65535, (7, 9), dtype=np.uint16)).save(path)
    elif kind == "gray":
        Image.fromarray(rgb[..., 0]).save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full((7, 9), 128, np.uint8)])).save(path)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(path)
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path)
    return path


@pytest.mark.parametrize("kind, ext", [("1x1", ".png"), ("gray16", ".png"), ("gray", ".png"),
                                       ("rgba", ".png"), ("palette", ".png"), ("cmyk", ".jpg")])
def test_odd_valid_images_upscale(kind, ext, export, tmp_path, capsys):
    src = _odd_image(kind, tmp_path / f"in{ext}")
    h = _sha(src)
    out = tmp_path / f"out{ext}"
    code = cli.main(_up(tmp_path, export, src, out.name))
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    with Image.open(src) as a, Image.open(out) as b:
        assert b.size == (a.size[0] * 4, a.size[1] * 4)
    assert _sha(src) == h


# ---------------------------------------------------------------------------------------------
# issue "artifacts that cannot lie" (a): --force replaces only what we made
# ---------------------------------------------------------------------------------------------
def _foreign(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    return path


def test_an_artifact_verb_never_replaces_a_training_run(export, tmp_path, capsys):
    """export/quantize/build/deploy --force deleted a training run (its resumable state/, final/,
    log.csv) when given its folder as --out, while train refuses an artifact: each kind of verb
    replaces only its own kind."""
    from alignvar_edge.errors import OutputExistsError
    from alignvar_edge.outputs import check_out
    run = tmp_path / "run"
    assert cli.main(["train", "vqvae", "--preset", "micro", "--out", str(run), "--steps", "1", "--batch", "2",
                     "--save-every", "1"]) == 0
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert Path("state") in before and Path("run.json") in before
    capsys.readouterr()
    for force in ([], ["--force"]):
        code = cli.main(["build", str(export), "--target", "onnxruntime", "--out", str(run), *force])
        line = _one_line_error(code, capsys.readouterr().err, "is a training run")
        assert "choose another --out" in line and "pass --force" not in line, line
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    for force in (False, True):          # the one check export, quantize and deploy make too
        with pytest.raises(OutputExistsError, match="is a training run"):
            check_out(run, force=force)
    check_out(run, force=True, replaces="run.json")


def test_force_replaces_only_our_outputs(export, tmp_path, capsys):
    from alignvar_edge.errors import OutputExistsError
    from alignvar_edge.outputs import artifact_dir, check_out
    foreign = _foreign(tmp_path / "foreign")
    (tmp_path / "a-file").write_text("x")
    for bad in (foreign, tmp_path / "a-file"):
        with pytest.raises(OutputExistsError, match="only replaces our own outputs"):
            check_out(bad, force=True)
    for ok in ("empty", "art", "run"):
        (tmp_path / ok).mkdir()
    (tmp_path / "art" / "manifest.json").write_text('{"schema_version": 1, "kind": "onnx", "files": {}}')
    (tmp_path / "run" / "run.json").write_text('{"options": {}}')
    for ok in ("empty", "art"):
        check_out(tmp_path / ok, force=True)
    check_out(tmp_path / "run", force=True, replaces="run.json")       # train's
    # someone else's manifest.json / run.json (a web app's, a notebook's) does not make a folder ours
    for name, text in (("manifest.json", '{"name": "my app", "icons": []}'), ("manifest.json", "{}"),
                       ("run.json", "[1, 2]"), ("manifest.json", "not json")):
        theirs = _foreign(tmp_path / f"theirs-{name}-{len(text)}")
        (theirs / name).write_text(text)
        with pytest.raises(OutputExistsError, match="only replaces our own outputs"):
            check_out(theirs, force=True)
    # through the CLI: one line, and the folder is untouched
    capsys.readouterr()
    code = cli.main(["build", str(export), "--target", "onnxruntime", "--out", str(foreign), "--force"])
    _one_line_error(code, capsys.readouterr().err, "only replaces our own outputs")
    assert (foreign / "thesis.tex").read_text() == "years of work"
    # our artifact with someone's file put inside it: that file is not ours to delete
    ours = tmp_path / "ours"
    assert cli.main(["build", str(export), "--target", "onnxruntime", "--out", str(ours)]) == 0
    (ours / "notes").mkdir()
    (ours / "notes" / "results.txt").write_text("measured by hand")
    (ours / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")             # Finder's litter does not count
    capsys.readouterr()
    code = cli.main(["build", str(export), "--target", "onnxruntime", "--out", str(ours), "--force"])
    _one_line_error(code, capsys.readouterr().err, "does not list (notes/results.txt)")
    assert (ours / "notes" / "results.txt").read_text() == "measured by hand"
    (ours / "notes" / "results.txt").unlink()
    (ours / "notes").rmdir()
    assert cli.main(["build", str(export), "--target", "onnxruntime", "--out", str(ours), "--force"]) == 0
    # ours is replaced only once the new one is complete: a failing block keeps the old one
    with pytest.raises(RuntimeError):
        with artifact_dir(tmp_path / "art", force=True) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")
    assert (tmp_path / "art" / "manifest.json").read_text().startswith('{"schema_version": 1')
    assert not list(tmp_path.glob(".art.*"))


def test_train_force_validates_before_touching(tmp_path, capsys):
    from alignvar_edge.train.trainer import TrainOptions, train
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"options": {}}')
    (run / "log.csv").write_text("step\n0\n")
    for bad in (dict(lr=float("nan")), dict(batch=0), dict(save_every=0), dict(ema=1.5)):
        with pytest.raises(InputError):
            train(TrainOptions(stage="vqvae", out=run, steps=1, preset="micro", force=True, progress=False, **bad))
        assert (run / "log.csv").read_text() == "step\n0\n", bad
    foreign = _foreign(tmp_path / "foreign")
    capsys.readouterr()
    code = cli.main(["train", "vqvae", "--preset", "micro", "--out", str(foreign), "--steps", "1", "--force"])
    _one_line_error(code, capsys.readouterr().err, "only replaces our own outputs")
    assert (foreign / "thesis.tex").is_file()
    # a corrupt run.json on --resume is one line, not a traceback
    (run / "state").mkdir()
    (run / "run.json").write_text("{not json")
    code = cli.main(["train", "vqvae", "--preset", "micro", "--out", str(run), "--steps", "1", "--resume"])
    _one_line_error(code, capsys.readouterr().err, "run.json")


# ---------------------------------------------------------------------------------------------
# (b) the manifest trust model: listed, hashed, confined; nothing unlisted is opened
# ---------------------------------------------------------------------------------------------
def _write_raw_manifest(root: Path, edit) -> None:
    """Edit manifest.json by hand (no re-hashing: the manifest says whatever the attacker wants).
    The edit drops the manifest's own content hash, as an older manifest has none, so the checks
    behind it are what is tested."""
    m = json.loads((root / "manifest.json").read_text())
    m.pop("content_sha256", None)
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _refused_everywhere(root: Path, needle: str, tmp: Path, capsys) -> None:
    with pytest.raises(ArtifactError, match=needle):
        load_verified(root)
    _png(tmp / "in.png")
    for argv in (["inspect", str(root)], _up(tmp, root, tmp / "in.png", "o.png", "--backend", "onnxruntime"),
                 ["build", str(root), "--target", "onnxruntime", "--out", str(tmp / "eng")]):
        capsys.readouterr()
        _one_line_error(cli.main(argv), capsys.readouterr().err, needle)
    assert not (tmp / "eng").exists() and not (tmp / "o.png").exists()


def test_manifest_empty_files_is_refused(export, tmp_path, capsys):
    dst = _copy_export(tmp_path, export)
    (dst / "model.onnx").write_bytes((dst / "model.onnx").read_bytes()[:100])       # swapped graph
    _write_raw_manifest(dst, lambda m: m.update(files={}))
    _refused_everywhere(dst, "lists no files", tmp_path, capsys)


def test_manifest_partial_files_is_refused(export, tmp_path, capsys):
    dst = _copy_export(tmp_path, export)
    (dst / "notes.onnx.data").write_bytes(b"\0" * 64)
    _refused_everywhere(dst, "notes.onnx.data is not listed", tmp_path, capsys)
    (dst / "notes.onnx.data").unlink()
    _write_raw_manifest(dst, lambda m: m["files"].update({"other.bin": m["files"].pop("model.onnx")}))
    (dst / "other.bin").write_bytes((dst / "model.onnx").read_bytes())
    _refused_everywhere(dst, "model.onnx is not listed", tmp_path, capsys)


def test_manifest_paths_outside_are_refused(export, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(export / "model.onnx", other / "model.onnx")
    digest = _sha(other / "model.onnx")
    dst = _copy_export(tmp_path, export)
    (dst / "model.onnx").unlink()

    def point_out(m):
        m["files"] = {"../other/model.onnx": digest}
        m["graphs"]["model"]["file"] = "../other/model.onnx"
    _write_raw_manifest(dst, point_out)
    _refused_everywhere(dst, "not a plain path inside", tmp_path, capsys)
    # the same through a symlink named like the listed file
    _write_raw_manifest(dst, lambda m: (m.update(files={"model.onnx": digest}),
                                        m["graphs"]["model"].update(file="model.onnx")))
    (dst / "model.onnx").symlink_to(other / "model.onnx")
    _refused_everywhere(dst, "leads outside the artifact directory", tmp_path, capsys)


def test_a_listed_file_that_is_a_symlink_loop_is_refused_in_one_line(export, tmp_path, capsys):
    """model.onnx replaced by a link to itself: Path.resolve's RuntimeError('Symlink loop') was a
    traceback in every verb; so was an --out that loops."""
    dst = _copy_export(tmp_path, export)
    (dst / "model.onnx").unlink()
    (dst / "model.onnx").symlink_to("model.onnx")
    _refused_everywhere(dst, "failed verification: model.onnx is a symlink loop", tmp_path, capsys)
    (tmp_path / "loop").symlink_to("loop")
    capsys.readouterr()
    code = cli.main(["build", str(export), "--target", "onnxruntime", "--out", str(tmp_path / "loop"), "--force"])
    _one_line_error(code, capsys.readouterr().err, "leads into a symlink loop")
    assert (tmp_path / "loop").is_symlink()


def test_onnx_runtime_opens_an_artifact_whose_path_is_not_utf8(export, tmp_path, capsys):
    """A folder named in another encoding (b'ex\\xffe p'): ONNX Runtime's constructor refused the
    surrogate-escaped str with a pybind error the line blamed on the artifact ('re-export'), and a
    graph whose weights lie beside it could not be opened at all; OpenVINO ran both. Now ORT opens
    the file through its folder's descriptor, which finds the weights beside it too."""
    odd = tmp_path / os.fsdecode(b"ex\xffe p")
    shutil.copytree(export, odd)
    _png(tmp_path / "in.png")
    capsys.readouterr()
    assert cli.main(_up(tmp_path, odd, tmp_path / "in.png", "o.png", "--backend", "onnxruntime", "--threads", "1")) == 0
    assert cli.main(["build", str(odd), "--target", "onnxruntime", "--out", str(tmp_path / "eng"), "--threads", "1"]) == 0
    load_verified(tmp_path / "eng")


def test_export_writes_into_a_folder_whose_name_is_not_utf8(nano, export, tmp_path):
    """The ONNX checker opens the graph by its name encoded as UTF-8: an export into a folder named
    in another encoding ran to its end, then failed with a pybind TypeError traceback. With its
    weights beside the graph (found only through the graph's folder), ONNX Runtime opens it too:
    export's own parity check, and an engine loaded from it."""
    from alignvar_edge import runtimes
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.onnx_session import CPU, open_session
    out = tmp_path / os.fsdecode(b"lat\xe9 dir") / "exp"
    export_onnx(nano, out, graph="single", batch=1, n_tiles=1, external_data=True, simplify=True)
    assert "model.onnx.data" in load_verified(out).files
    with runtimes.load(out, backend="onnxruntime", threads=1) as engine:
        assert engine.upscale(np.zeros((8, 8, 3), np.float32)).shape == (32, 32, 3)
    # ORT opens a session's file again (set_providers, a GPU provider's fallback): through the same folder
    session = open_session(out / "model.onnx", threads=1)
    other = [open_session(export / "model.onnx", threads=1) for _ in range(2)]      # other descriptors
    session.set_providers([CPU])
    assert session.get_inputs()[0].shape == other[0].get_inputs()[0].shape


def test_int8_quantization_refuses_a_temporary_folder_no_onnx_library_can_name(export, tmp_path, monkeypatch):
    """ONNX Runtime's quantizer makes its scratch folders in $TMPDIR and opens them by UTF-8 names:
    a TMPDIR named in another encoding failed minutes in, blaming the export, in several lines. It
    is refused before any work: no calibration set is made first."""
    import tempfile

    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    odd = tmp_path / os.fsdecode(b"tmp\xff")
    odd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(odd))
    said: list[str] = []
    with pytest.raises(InputError, match=re.escape(f"the temporary folder {odd} ($TMPDIR) is not named in UTF-8 ")
                       + r".* set TMPDIR to a folder with a UTF-8 name"):
        quantize_artifact(export, tmp_path / "q", QuantizeOptions(precision="int8", target="onnxruntime",
                                                                  tiles=1, val_tiles=1, search=False), log=said.append)
    assert not (tmp_path / "q").exists() and list(odd.iterdir()) == [] and said == []


def _latin1_locale(tmp: Path) -> dict[str, str]:
    """The environment of a Latin-1 locale compiled into `tmp` (skips where localedef cannot)."""
    if shutil.which("localedef") is None:
        pytest.skip("localedef is not installed: no Latin-1 locale to run under")
    made = subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(tmp / "en_US.ISO-8859-1")],
                          capture_output=True, text=True)
    if not (tmp / "en_US.ISO-8859-1").is_dir():
        pytest.skip(f"localedef could not compile en_US.ISO-8859-1 here: {made.stderr.strip()[:200]}")
    return {**ENV, "LOCPATH": str(tmp), "LC_ALL": "en_US.ISO-8859-1", "PYTHONUTF8": "0",
            "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}


def test_a_latin1_locale_runs_an_engine_in_a_folder_named_with_accents(export, tmp_path):
    """Under a Latin-1 locale 'é' is one byte on disk and two in UTF-8, so a C++ library handed the
    str looked for another file: `selftest --engine` of an intact ONNX Runtime engine in such a
    folder said 'File doesn't exist; re-export the artifact'."""
    env = _latin1_locale(tmp_path)
    r = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
                       capture_output=True, text=True, env=env)
    if r.stdout.strip().lower().replace("-", "") not in ("iso88591", "latin1"):
        pytest.skip(f"the locale did not take: file system encoding {r.stdout.strip()!r}")
    folder = tmp_path / "ex"
    engine = folder / "engine é"             # the CLI given the name in Latin-1 bytes, as a shell would
    r = subprocess.run([sys.executable, "-m", "alignvar_edge.cli", "build", str(export), "--target", "onnxruntime",
                        "--threads", "1", "--out", os.fsencode(str(folder)) + b"/engine \xe9"],
                       capture_output=True, encoding="latin-1", env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (folder / os.fsdecode(b"engine \xe9")).is_dir() and not engine.exists()
    r = subprocess.run([sys.executable, "-m", "alignvar_edge.cli", "selftest", "--engine",
                        os.fsencode(str(folder)) + b"/engine \xe9", "--threads", "1"],
                       capture_output=True, encoding="latin-1", env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "PASS" in r.stdout


def test_a_torch_build_names_the_users_weights_file_not_its_hidden_copy(ckpt, tmp_path, capsys):
    """A pickle named model.safetensors: `build --target torch` named '.T.tmp-xxxx/model.safetensors',
    a file gone once the run ends, where info, export and upscale name the checkpoint's own."""
    src = tmp_path / "ck"
    shutil.copytree(ckpt, src)
    (src / "model.safetensors").write_bytes(pickle.dumps({"a": [0.0, 0.0]}))
    capsys.readouterr()
    code = cli.main(["build", str(src), "--target", "torch", "--out", str(tmp_path / "T")])
    line = _one_line_error(code, capsys.readouterr().err,
                           f"{src / 'model.safetensors'} is a PyTorch (pickle) file, not safetensors")
    assert ".tmp-" not in line and not (tmp_path / "T").exists()


def _with_external_data(tmp: Path, exp: Path, location: str | None = None) -> Path:
    """A copy of the export whose weights live in model.onnx.data, hashes re-made (a valid
    artifact), or with every tensor's location rewritten to `location` afterwards."""
    import onnx

    from alignvar_edge.manifest import read_manifest, write_manifest
    dst = _copy_export(tmp, exp)
    m = onnx.load(str(dst / "model.onnx"))
    onnx.save_model(m, str(dst / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    if location is not None:
        m = onnx.load(str(dst / "model.onnx"), load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(m, str(dst / "model.onnx"))
    write_manifest(dst, read_manifest(dst))
    return dst


def test_external_data_locations_are_checked(export, tmp_path, capsys):
    (tmp_path / "g").mkdir()
    good = _with_external_data(tmp_path / "g", export)
    assert "model.onnx.data" in load_verified(good).files
    capsys.readouterr()
    assert cli.main(["inspect", str(good)]) == 0
    (tmp_path / "o").mkdir()
    shutil.copy(good / "model.onnx.data", tmp_path / "o" / "outside.data")
    bad = _with_external_data(tmp_path / "o", export, "../outside.data")
    _refused_everywhere(bad, "outside the artifact directory", tmp_path / "o", capsys)
    # external data cut short, hashes re-made to match: inspect says so in one line
    from alignvar_edge.manifest import read_manifest, write_manifest
    data = good / "model.onnx.data"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    write_manifest(good, read_manifest(good))
    _one_line_error(cli.main(["inspect", str(good)]), capsys.readouterr().err, "cannot be read with its external data")


def test_inspect_prints_verdict_and_reads_quantize_output(export, tmp_path, capsys):
    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    capsys.readouterr()
    assert cli.main(["inspect", str(export)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("verdict    OK: ") and "SHA-256" in out[0]
    q = quantize_artifact(export, tmp_path / "q", QuantizeOptions(precision="fp16", search=False, tiles=2,
                                                                  val_tiles=2))
    code = cli.main(["inspect", str(q)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "Traceback" not in cap.err and "validation tiles" in cap.out


# ---------------------------------------------------------------------------------------------
# (c) the checkpoint an export came from: recorded by absolute path and content, compared on use
# ---------------------------------------------------------------------------------------------
def test_export_checkpoint_is_recorded_and_compared(ckpt, tmp_path, monkeypatch, capsys):
    from alignvar_edge.model.checkpoint import save_pretrained
    (tmp_path / "a").mkdir()
    shutil.copytree(ckpt, tmp_path / "a" / "ck")
    other = save_pretrained(nano_model(seed=1), tmp_path / "b" / "ck")
    exp = tmp_path / "E"
    monkeypatch.chdir(tmp_path / "a")
    assert cli.main(["export", "ck", "--out", str(exp), "--tiles", "1"]) == 0
    rec = json.loads((exp / "manifest.json").read_text())["model"]["checkpoint"]
    assert rec["path"] == str((tmp_path / "a" / "ck").resolve())
    # from another folder holding a same-named, different checkpoint: the recorded one is used
    monkeypatch.chdir(tmp_path / "b")
    assert cli.main(["build", str(exp), "--target", "torch", "--out", str(tmp_path / "T")]) == 0
    assert _sha(tmp_path / "T" / "model.safetensors") == _sha(tmp_path / "a" / "ck" / "model.safetensors")
    # the recorded checkpoint changed in place: refused (build and compare), nothing written
    shutil.copy(other / "model.safetensors", tmp_path / "a" / "ck" / "model.safetensors")
    capsys.readouterr()
    for argv in (["build", str(exp), "--target", "torch", "--out", str(tmp_path / "T2")],
                 ["compare", str(exp), "--limit", "1"]):
        _one_line_error(cli.main(argv), capsys.readouterr().err, "is not the one this artifact was made from")
    assert not (tmp_path / "T2").exists()
    # an older manifest (relative name only): the state-dict hash still catches the other checkpoint
    _write_raw_manifest(exp, lambda m: (m["model"].pop("checkpoint"), m["model"].pop("provenance"),
                                             m["model"].update(source="checkpoint ck")))
    _one_line_error(cli.main(["build", str(exp), "--target", "torch", "--out", str(tmp_path / "T3")]),
                    capsys.readouterr().err, "is not the one this artifact was made from")
    assert not (tmp_path / "T3").exists()


def test_build_torch_proves_the_checkpoint_loads(ckpt, tmp_path, capsys):
    import torch

    from safetensors.torch import load_file
    dst = tmp_path / "ck"
    shutil.copytree(ckpt, dst)
    torch.save(load_file(str(ckpt / "model.safetensors")), dst / "model.safetensors")   # a pickle now
    capsys.readouterr()
    code = cli.main(["build", str(dst), "--target", "torch", "--out", str(tmp_path / "T")])
    _one_line_error(code, capsys.readouterr().err, "safetensors")
    assert not (tmp_path / "T").exists()


# ---------------------------------------------------------------------------------------------
# (d) concurrent publish: two runs writing the same --out never both succeed
# ---------------------------------------------------------------------------------------------
def test_concurrent_publish_keeps_the_first(tmp_path):
    from alignvar_edge.errors import OutputExistsError
    from alignvar_edge.manifest import load_verified, new_manifest, write_manifest
    from alignvar_edge.outputs import artifact_dir
    out = tmp_path / "same"

    def fill(tmp, tag):
        (tmp / "model.onnx").write_bytes(stand_in_graph(tag))
        write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", {"name": tag}))

    first = artifact_dir(out)
    second = artifact_dir(out)
    t1, t2 = first.__enter__(), second.__enter__()        # both started while --out did not exist
    fill(t1, "first")
    fill(t2, "second")
    assert not first.__exit__(None, None, None)
    with pytest.raises(OutputExistsError, match="appeared while this run was working|already exists"):
        second.__exit__(None, None, None)
    assert load_verified(out).model.name == "first"
    assert (out / "model.onnx").read_bytes() == stand_in_graph("first")
    assert not t2.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["same"]


def test_an_artifact_published_by_another_run_just_before_our_rename_is_kept(tmp_path, monkeypatch):
    """Between the last check of --out and the rename another run may publish there: the rename itself
    must refuse it. The shared replace moved it aside and deleted it (it re-checked --out itself)."""
    from alignvar_edge import safe_stop
    from alignvar_edge.errors import OutputExistsError
    from alignvar_edge.manifest import load_verified, new_manifest, write_manifest
    from alignvar_edge.outputs import artifact_dir
    out = tmp_path / "same"

    def other_run_publishes(staged, where):
        if Path(where) != out:                            # the manifest's own atomic write inside ours
            return
        out.mkdir()
        (out / "model.onnx").write_bytes(stand_in_graph("theirs"))
        write_manifest(out, new_manifest("onnx", "onnx", "single", "fp32", {"name": "theirs"}))
    monkeypatch.setattr(safe_stop, "publishing", other_run_publishes)    # called just before the rename
    with pytest.raises(OutputExistsError, match="appeared while this run was working"):
        with artifact_dir(out) as tmp:
            (tmp / "model.onnx").write_bytes(stand_in_graph("ours"))
            write_manifest(tmp, new_manifest("onnx", "onnx", "single", "fp32", {"name": "ours"}))
    assert load_verified(out).model.name == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


# ---------------------------------------------------------------------------------------------
# (e) numeric flags are checked when parsed; --device is checked for the torch engine
# ---------------------------------------------------------------------------------------------
BAD_FLAGS = [
    (["upscale", "a.png", "b.png", "--threads", "-1"], "--threads"),
    (["upscale", "a.png", "b.png", "--max-megapixels", "nan"], "--max-megapixels"),
    (["upscale", "a.png", "b.png", "--max-megapixels", "0"], "--max-megapixels"),
    # infinities are numbers to float(): no limit, no end of the run, no step size
    (["upscale", "a.png", "b.png", "--max-megapixels", "inf"], "--max-megapixels"),
    (["bench", "x", "--duration", "inf"], "--duration"),
    (["train", "vqvae", "--out", "r", "--steps", "1", "--lr", "inf"], "--lr"),
    (["train", "vqvae", "--out", "r", "--steps", "1", "--lr=-inf"], "--lr"),
    (["quantize", "x", "--max-psnr-drop", "inf"], "--max-psnr-drop"),
    (["upscale", "a.png", "b.png", "--overlap", "-2"], "--overlap"),
    (["build", "x", "--target", "onnxruntime", "--threads", "0"], "--threads"),
    (["compare", "x", "--limit", "-1"], "--limit"),
    (["compare", "x", "--limit", "0"], "--limit"),
    (["compare", "x", "--max-size", "0"], "--max-size"),
    (["train", "vqvae", "--out", "r", "--steps", "1", "--lr", "nan"], "--lr"),
    (["train", "vqvae", "--out", "r", "--steps", "1", "--lr", "-0.001"], "--lr"),
    (["train", "vqvae", "--out", "r", "--steps", "1", "--seed", "-1"], "--seed"),
    (["train", "vqvae", "--out", "r", "--steps", "0"], "--steps"),
    (["export", "--out", "x", "--seed", "-1"], "--seed"),
    (["quantize", "x", "--percentile", "nan"], "--percentile"),
    (["quantize", "x", "--min-token-agreement", "1.5"], "--min-token-agreement"),
    (["bench", "x", "--threads", "-1"], "--threads"),
    # tile counts: at most MAX_TILES, since every tile is cut and held in memory before the work
    # (`bench --tiles 100000000` filled memory for hours); 0 and negatives as before
    (["bench", "x", "--tiles", "100000000"], "--tiles"),
    (["bench", "x", "--tiles", "0"], "--tiles"),
    (["quantize", "x", "--tiles", "1025"], "--tiles"),
    (["quantize", "x", "--val-tiles", "5000"], "--val-tiles"),
    (["build", "x", "--target", "onnxruntime", "--calib-tiles", "2000"], "--calib-tiles"),
    (["export", "--out", "x", "--tiles", "-3"], "--tiles"),
    # tiles per call: at most MAX_BATCH (a batch past an image's tiles only pads, and one call of
    # `--batch 100000` traced and validated until memory ran out)
    (["export", "--out", "x", "--batch", "100000"], "--batch"),
    (["build", "x", "--target", "coreml", "--batch", "257"], "--batch"),
    (["deploy", "x", "--batch", "0"], "--batch"),
    (["bench", "trtexec", "log.txt", "--batch", "1000"], "--batch"),
]


def _verbs_with_a_seed() -> list[str]:
    return sorted(verb for verb, parser in cli.build_parser().verb_parsers.items()
                  if "--seed" in parser._option_string_actions)


SEED_VERBS = _verbs_with_a_seed()


def test_the_seed_verbs_are_found():
    assert {"train", "eval", "export", "quantize", "bench", "deploy"} <= set(SEED_VERBS)


@pytest.mark.parametrize("verb", SEED_VERBS)
def test_every_seed_flag_takes_pytorchs_range_only(verb, capsys, tmp_path, monkeypatch):
    # train --seed 2**64 was a traceback from torch.manual_seed ('Overflow when unpacking long long')
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for seed in (2**64, 10**20, -1):
        code = cli.main([verb, "--seed", str(seed)])
        line = _one_line_error(code, capsys.readouterr().err,
                               f"argument --seed: must be an integer from 0 to 2**64-1, got '{seed}'")
        assert code == 2 and line.startswith(f"alignvar-edge {verb}: error: "), line
    assert sorted(tmp_path.iterdir()) == []


def test_every_seed_option_of_the_python_api_takes_pytorchs_range_only(tmp_path):
    # DeployOptions(preset=..., seed=2**64) reached torch.manual_seed (a traceback after the export
    # began); a negative seed reached numpy's SeedSequence in bench and quantize
    from alignvar_edge.bench.runner import BenchOptions, run_bench
    from alignvar_edge.deploy import DeployOptions, deploy
    from alignvar_edge.errors import ConfigError
    from alignvar_edge.quantize.artifact import QuantizeOptions, calibration_for
    for seed in (2**64, -1):
        refused = rf"^seed={seed} must be an integer from 0 to 2\*\*64-1$"
        with pytest.raises(InputError, match=refused):
            deploy(DeployOptions(out=str(tmp_path / "deploy"), preset="micro", seed=seed))
        with pytest.raises(InputError, match=refused):
            run_bench([], options=BenchOptions(seed=seed))
        with pytest.raises(ConfigError, match=refused):
            calibration_for(tmp_path / "export", QuantizeOptions(seed=seed))
    assert sorted(tmp_path.iterdir()) == []
    for largest in (DeployOptions(out=str(tmp_path / "d"), preset="micro", seed=2**64 - 1),
                    BenchOptions(seed=2**64 - 1), QuantizeOptions(seed=2**64 - 1)):
        largest.validate()


@pytest.mark.parametrize("argv", [["compare", "eng/ort", "--images", "fin", "--threads", "1"],
                                  ["upscale", "a", "b", "--bogus"], ["bench", "merge", "a.json", "--nope", "x"]])
def test_an_argument_no_verb_reads_is_the_verbs_error(argv, capsys):
    # argparse reported it at the top level: `alignvar-edge: error: ...; see `alignvar-edge --help``
    code = cli.main(argv)
    line = _one_line_error(code, capsys.readouterr().err, "unrecognized arguments: ")
    verb = " ".join(argv[:2]) if argv[:2] == ["bench", "merge"] else argv[0]       # a nested verb names itself
    assert code == 2 and line.startswith(f"alignvar-edge {verb}: error: unrecognized arguments: "), line
    assert line.endswith(f"; see `alignvar-edge {verb} --help`"), line
    code = cli.main(["--bogus"])                 # no verb: the top level's own
    assert _one_line_error(code, capsys.readouterr().err, "--bogus").startswith("alignvar-edge: error: ")


@pytest.mark.parametrize("argv", [[], ["--debug"]])
def test_no_verb_is_a_usage_error_on_stderr(argv, capsys):
    # it printed the whole help on stdout, where a script reads results, and exited 2
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["usage: alignvar-edge [-h] [--version] [--debug] VERB ...",
                                              "alignvar-edge: error: choose a verb (alignvar-edge --help lists them)"]


def test_debug_after_the_verb_shows_the_traceback_as_before_it(tmp_path, capsys):
    from alignvar_edge.errors import AlignVAREdgeError
    missing = str(tmp_path / "nowhere")
    assert cli.main(["info", missing]) == 2 and "nowhere" in capsys.readouterr().err      # one line, no traceback
    for argv in (["--debug", "info", missing], ["info", missing, "--debug"]):
        with pytest.raises(AlignVAREdgeError):
            cli.main(argv)


def test_a_process_forked_during_a_verb_dies_on_a_signal_without_a_traceback(capfd):
    # OpenVINO's telemetry forks a sender per event and kills it when the send hangs (an offline host)
    import multiprocessing
    previous = cli._watch_signals([], "build")
    try:
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
        child.start()
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGINT)
        child.join(10)
        assert child.exitcode == -signal.SIGINT
        assert "Traceback" not in capfd.readouterr().err
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_a_batch_takes_1_to_max_batch():
    import argparse
    from alignvar_edge.argtypes import MAX_BATCH, MAX_TILES, batch_size
    assert MAX_BATCH == 256 <= MAX_TILES and batch_size("1") == 1 and batch_size("256") == 256
    for bad in ("0", "-4", "257", "100000", "8.0", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"from 1 to 256 \\(tiles per call\\), got '{bad}'"):
            batch_size(bad)


def test_a_tile_count_takes_1_to_max_tiles():
    import argparse
    from alignvar_edge.argtypes import MAX_TILES, tile_count
    assert MAX_TILES == 1024 and tile_count("1") == 1 and tile_count("1024") == 1024
    for bad in ("0", "-1", "1025", "100000000", "1e3", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"from 1 to 1024 .*got '{bad}'"):
            tile_count(bad)


def test_a_fraction_option_of_the_python_api_is_no_bool():
    """True is an int to Python (1): `min_token_agreement=True` is a slip, not 100%."""
    from alignvar_edge.argtypes import check_fraction
    assert check_fraction("min_token_agreement", 1) == 1.0
    for bad in (True, False):
        with pytest.raises(InputError, match=f"^min_token_agreement={bad} must be a number in \\[0, 1\\]$"):
            check_fraction("min_token_agreement", bad)


@pytest.mark.parametrize("argv, flag", BAD_FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_FLAGS])
def test_numeric_flags_checked_at_parse_time(argv, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = cli.main(argv)                             # an argparse error: one line, exit 2
    assert code == 2
    _one_line_error(code, capsys.readouterr().err, f"argument {flag}: must be")
    assert sorted(p.name for p in tmp_path.iterdir()) == []          # nothing was created


@pytest.mark.parametrize("argv, where", [
    (["upscale", "", "out"], "argument 2 (after 'upscale')"),
    (["upscale", "in.png", ""], "argument 3 (after 'in.png')"),
    (["export", "--out", ""], "argument 3 (after '--out')"),
    (["bench", "x", "--out", "r.json", "--images", ""], "argument 6 (after '--images')"),
])
def test_an_empty_argument_is_refused_before_anything_runs(argv, where, capsys, tmp_path, monkeypatch):
    # a path of '' is the working directory: `upscale "$IN" out` with IN unset would upscale every
    # image below it (it did, before this check)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.png").write_bytes(b"")
    capsys.readouterr()
    code = cli.main(argv)
    assert code == 2
    _one_line_error(code, capsys.readouterr().err, f"{where} is empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]        # nothing was created


def test_torch_device_is_checked(ckpt, tmp_path, capsys):
    import torch
    src = _png(tmp_path / "in.png")
    bad = [("bogus", "is not a torch device")]
    if not torch.cuda.is_available():
        bad.append(("cuda", "is not available here"))
    for dev, needle in bad:
        capsys.readouterr()
        code = cli.main(["upscale", str(src), str(tmp_path / "o.png"), "--engine", str(ckpt), "--device", dev,
                         "--quiet"])
        _one_line_error(code, capsys.readouterr().err, needle)
        assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------------------------------------
# (f) outputs get the modes the umask gives, not mkdtemp's 0700 / 0600
# ---------------------------------------------------------------------------------------------
def _modes(root: Path) -> set[tuple[str, int]]:
    """The modes of what `root` holds of its own: a file hard-linked from its source (an engine's ONNX
    is its export's) is the source's file, with the source's mode."""
    return {("d" if p.is_dir() else "f", p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]
            if p.is_dir() or p.stat().st_nlink == 1}


def test_outputs_follow_the_umask(export, nano, tmp_path):
    from alignvar_edge import runtimes
    from alignvar_edge.model.checkpoint import save_pretrained
    from alignvar_edge.train.trainer import TrainOptions, train
    upstream = Path(__file__).parent / "data" / "upstream" / "varsr"
    old = os.umask(0o027)
    try:
        eng = runtimes.build(export, "onnxruntime", out=tmp_path / "eng")
        run = tmp_path / "run"
        train(TrainOptions(stage="vqvae", out=run, steps=1, batch=1, preset="micro", warmup=0, progress=False,
                           overrides=dict(NANO)))
        ck = save_pretrained(nano, tmp_path / "ck")
        assert cli.main(["import", "varsr", "--var", str(upstream / "var.pth"), "--vae", str(upstream / "vae.pth"),
                         "--out", str(tmp_path / "imported")]) == 0
    finally:
        os.umask(old)
    assert _modes(eng) == {("d", 0o750), ("f", 0o640)}
    linked = [p for p in eng.rglob("*") if p.is_file() and p.stat().st_nlink > 1]
    assert linked and all(p.stat().st_ino in {q.stat().st_ino for q in export.rglob("*")} for p in linked)
    assert _modes(ck) == {("d", 0o750), ("f", 0o640)}
    assert _modes(tmp_path / "imported") == {("d", 0o750), ("f", 0o640)}
    assert _modes(run / "final") == {("d", 0o750), ("f", 0o640)}
    assert _modes(run / "state") == {("d", 0o750), ("f", 0o640)}


# ---------------------------------------------------------------------------------------------
# (g) folder upscale: never reads its own output folder; resumes (skips finished outputs)
# ---------------------------------------------------------------------------------------------
def test_folder_upscale_skips_its_output_and_resumes(export, tmp_path, capsys):
    inp = tmp_path / "photos"
    inp.mkdir()
    for name in ("a.png", "b.png"):
        _png(inp / name)
    out = inp / "x4"                                 # the output folder lies inside the input folder
    argv = ["upscale", str(inp), str(out), "--engine", str(export), "--quiet"]
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "b.png"]
    # an interrupted run: one output missing, one finished; the next run only makes the missing one
    (out / "b.png").unlink()
    done = _sha(out / "a.png")
    os.utime(inp / "a.png", ns=(1, 1))
    os.utime(out / "a.png", ns=(2, 2))              # a marker, still newer than its input: finished
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "skipping 1 finished output" in err and "upscaled 1 image(s)" in err, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "b.png"]  # no x4/x4/
    assert (out / "a.png").stat().st_mtime_ns == 2 and _sha(out / "a.png") == done
    # --force redoes every output, still reading only the two inputs
    assert cli.main([*argv, "--force"]) == 0
    assert "upscaled 2 image(s)" in capsys.readouterr().err
    assert (out / "a.png").stat().st_mtime_ns != 2
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "b.png"]


def test_folder_upscale_into_a_folder_that_holds_the_input(export, tmp_path, capsys):
    """`upscale photos/small photos`: the input folder lies inside the output; every input is read
    (it is not the run's output folder), and an output that would land on another input is refused."""
    inp = tmp_path / "photos" / "small"
    inp.mkdir(parents=True)
    for name in ("a.png", "b.png"):
        _png(inp / name)
    out = tmp_path / "photos"
    argv = ["upscale", str(inp), str(out), "--engine", str(export), "--quiet"]
    assert cli.main(argv) == 0
    assert "upscaled 2 image(s)" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]
    # small/small/a.png's output is photos/small/a.png: an input, never written, even with --force
    (inp / "small").mkdir()
    _png(inp / "small" / "a.png")
    before = _sha(inp / "a.png")
    code = cli.main([*argv, "--force"])
    _one_line_error(code, capsys.readouterr().err, f"refusing to write onto the input {inp / 'a.png'}")
    assert _sha(inp / "a.png") == before


def test_an_unwritable_output_folder_is_refused_before_any_work(export, tmp_path, capsys, monkeypatch):
    """A read-only mount refuses writes even to root, who ignores permission bits: the folder is
    made unwritable through os.access, what the check asks (the write itself is not reached)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != ro and real_access(p, mode, **kw))
    loads = []
    import alignvar_edge.runtimes as rt
    monkeypatch.setattr(rt, "load", lambda *a, **k: loads.append(a))
    src = _png(tmp_path / "in.png")
    for argv in (_up(tmp_path, export, src, "ro/out.png"), _up(tmp_path, export, src, "ro/new/deeper/out.png"),
                 ["upscale", str(tmp_path), str(ro / "folder-out"), "--engine", str(export), "--quiet"]):
        assert cli.main(argv) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and f"the folder {ro} is not writable" in err[0], err
    assert not loads                         # refused before the engine was even opened
    # --json FILE: at parse time, before the verb runs
    assert cli.main(["info", "--no-flops", "--json", str(ro / "info.json")]) == 2
    assert f"the folder {ro} is not writable" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(ro / "d"), "--size", "64"]) == 2
    assert f"{ro} is not writable" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, a folder that takes no new files")
def test_a_folder_that_takes_no_files_is_refused_before_any_work(export, tmp_path, capsys, monkeypatch):
    """/proc takes no new file, though os.access says it is writable to root: each verb's output
    there is refused by trying, before any work, with exit 2 and its flag named (a bench ran to
    its end and then lost its measurements with exit 1)."""
    from alignvar_edge.fsmodes import unwritable_folder
    assert unwritable_folder("/proc/x.json") == Path("/proc")
    assert unwritable_folder("/proc/new/deeper/x.json") == Path("/proc")
    assert unwritable_folder(tmp_path / "new" / "x.json") is None and list(tmp_path.iterdir()) == []   # no probe left
    loads = []
    import alignvar_edge.runtimes as rt
    monkeypatch.setattr(rt, "load", lambda *a, **k: loads.append(a))
    src = _png(tmp_path / "in.png")
    for argv, said in ((_up(tmp_path, export, src, "/proc/x.png"), "cannot write /proc/x.png"),
                       (["info", "--no-flops", "--json", "/proc/x.json"], "argument --json: cannot write /proc/x.json"),
                       (["bench", "bicubic", "--out", "/proc/b.json"], "--out /proc/b.json"),
                       (["bench", "bicubic", "--out", str(tmp_path / "b.json"), "--md", "/proc/new/b.md"],
                        "--md /proc/new/b.md"),
                       (["build", str(export), "--target", "onnxruntime", "--out", "/proc/E"], "--out '/proc/E'")):
        assert cli.main(argv) == 2, argv
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and said in err[0] and "the folder /proc is not writable; choose another" in err[0], err
    assert not loads and not (tmp_path / "b.json").exists()


def test_an_output_below_a_file_is_refused_before_any_work(export, tmp_path, capsys, monkeypatch):
    """`eval ... --json some.png/x.json` did all the work and then failed with exit 1 ("some.png is
    a file, where a folder is needed"); `build --out some.png/E` failed at once, but with exit 1.
    Every output flag is refused before any work, with exit 2, by one check, which names the flag
    (`bench --out`'s refusal named only the path) and a FIFO as what it is (it was "a file")."""
    loads = []
    import alignvar_edge.runtimes as rt
    monkeypatch.setattr(rt, "load", lambda *a, **k: loads.append(a))
    src = _png(tmp_path / "in.png")
    below = tmp_path / "in.png"
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    fifo = "a FIFO (named pipe)"
    for argv, named, parent, kind in (
            (["eval", "alignvar-tiny", "--json", str(below / "e.json")], f"{below / 'e.json'}", below, "a file"),
            (["compare", str(export), "--json", str(below / "c.json")], f"{below / 'c.json'}", below, "a file"),
            (["selftest", "--backend", "onnxruntime", "--json", str(below / "s.json")], f"{below / 's.json'}", below,
             "a file"),
            (["bench", "bicubic", "--out", str(below / "b.json")], f"--out {below / 'b.json'}", below, "a file"),
            (["bench", "bicubic", "--out", str(pipe / "b.json")], f"--out {pipe / 'b.json'}", pipe, fifo),
            (["build", str(export), "--target", "onnxruntime", "--out", str(below / "E")], f"--out '{below / 'E'}'",
             below, "a file"),
            (["build", str(export), "--target", "onnxruntime", "--out", str(pipe / "E")], f"--out '{pipe / 'E'}'",
             pipe, fifo),
            (_up(tmp_path, export, src, "in.png/x.png"), f"{below / 'x.png'}", below, "a file")):
        assert cli.main(argv) == 2, argv
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and f"cannot write {named}: {parent} is {kind}, where a folder is needed" in err[0], err
    assert not loads and below.is_file()


def _cli_with(closed: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI run by a shell that closes a stream first (`2>&-`, `>&-`), as cron and daemons do."""
    return subprocess.run(["bash", "-c", f'"$@" {closed}', "_", sys.executable, "-m", "alignvar_edge", *args],
                          capture_output=True, text=True, timeout=300)


def test_a_closed_stdout_or_stderr_is_written_to_nowhere(export, tmp_path):
    """With fd 2 closed, upscale and build failed with exit 1 and no word (tqdm wrote to None) and
    print's stderr lines fell back to stdout; with fd 1 closed, flushing stdout was a traceback, then
    the result was dropped with exit 0. A closed stdout fails a run whose result it carries, not one
    whose result is a file."""
    src = _png(tmp_path / "in.png")
    for extra in ((), ("--quiet",)):
        out = tmp_path / f"out{len(extra)}.png"
        r = _cli_with("2>&-", "upscale", str(src), str(out), "--engine", str(export), "--threads", "1", *extra)
        assert r.returncode == 0 and out.is_file() and r.stdout == "", (r.returncode, r.stdout)
    r = _cli_with("2>&-", "build", str(export), "--target", "onnxruntime", "--out", str(tmp_path / "E"),
                  "--threads", "1")
    assert r.returncode == 0 and (tmp_path / "E" / "manifest.json").is_file(), r.stdout
    # a result printed on a closed stdout reaches nobody: one line says so (it was lost with exit 0)
    report = str(ROOT / "docs" / "results" / "epyc-zen5-2core" / "engines.json")
    for args in (("info", "--no-flops", "--json"), ("--version",), ("--help",), ("bench", "merge", report)):
        r = _cli_with(">&-", *args)
        err = r.stderr.splitlines()
        assert r.returncode == 1 and len(err) == 1 and "cannot write the output to stdout (it is closed)" in err[0], err
    # where stdout carries only a summary of work whose result is a file, the summary goes nowhere and
    # the status is the work's (it was 1 after the engine and the Markdown table were written)
    r = _cli_with(">&-", "build", str(export), "--target", "onnxruntime", "--out", str(tmp_path / "E1"),
                  "--threads", "1")
    assert r.returncode == 0 and (tmp_path / "E1" / "manifest.json").is_file(), r.stderr
    r = _cli_with(">&-", "bench", "merge", report, "--md", str(tmp_path / "m.md"))
    assert r.returncode == 0 and r.stderr == "" and (tmp_path / "m.md").is_file(), r.stderr
    # a failed run's ERROR document meets the closed stdout too: the run's own status and error line
    # (it was "Exception ignored ... Bad file descriptor" from the interpreter's exit, and 120)
    r = _cli_with(">&-", "inspect", str(tmp_path / "nothere"), "--json")
    err = r.stderr.splitlines()
    assert r.returncode == 2 and len(err) == 1 and "nothere' does not exist" in err[0], r.stderr


def test_openvino_int8_without_nncf_names_the_extra_that_installs_it(export, tmp_path):
    """The `openvino` extra runs engines without NNCF; building int8 says which extra brings it."""
    pytest.importorskip("openvino")
    code = ("import sys; sys.modules['nncf'] = None\n"           # an install without NNCF
            "from alignvar_edge.cli import main\n"
            f"sys.exit(main(['build', {str(export)!r}, '--target', 'openvino', '--precision', 'int8', "
            f"'--calib', 'builtin', '--out', {str(tmp_path / 'ov8')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=600)
    err = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr[-2000:]
    # the extra's own requirements (alignvar-edge is not on PyPI): the runtime and NNCF
    assert len(err) == 1 and re.search(r"`pip install 'openvino>=[\d.]+' 'nncf>=[\d.]+'`$", err[0]), err
    assert not (tmp_path / "ov8").exists()


def test_a_failed_copy_or_move_is_named_by_its_destination_where_the_disk_is_to_blame() -> None:
    """shutil.copy2 and os.replace raise with the source as `filename` and the destination as
    `filename2`: a full or read-only disk (or an existing target) is the destination's, and other
    errors name both, never the input alone as if it were the output."""
    import errno

    from alignvar_edge import cli
    for code, says in ((errno.ENOSPC, "no space left on the device writing out/model.onnx;"),
                       (errno.EROFS, "cannot write or read out/model.onnx (x);"),
                       (errno.EEXIST, "out/model.onnx already exists;"),
                       (errno.EACCES, "cannot write or read in/model.onnx -> out/model.onnx (x);")):
        line = cli._os_error_line(OSError(code, "x", "in/model.onnx", None, "out/model.onnx"))
        assert line.startswith(says), (code, line)
    assert cli._os_error_line(OSError(errno.ENOSPC, "x", "out/a")).startswith("no space left on the device writing out/a")


def test_a_graph_onnx_runtime_refuses_is_one_line_with_its_reason_not_its_cpp_places(tmp_path, capfd) -> None:
    """A graph whose external weights were cut short: ONNX Runtime logged its own coloured error
    line (C++ file, line and function) before ours, and ours repeated those places; now its log is
    silent and the line gives the innermost reason."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.onnx_session import open_session

    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    open_session(path).run(None, {"x": np.ones((1, 64), np.float32)})          # whole, it runs
    with open(tmp_path / "m.onnx.data", "r+b") as f:
        f.truncate(1000)
    capfd.readouterr()
    with pytest.raises(ArtifactError) as info:
        open_session(path)
    line = str(info.value)
    assert "out of bounds or can not be read in full; re-export the artifact" in line, line
    assert ".cc:" not in line and "[ONNXRuntimeError]" not in line and "\n" not in line, line
    assert capfd.readouterr().err == ""                    # ONNX Runtime's own log stays quiet


def test_a_folder_run_skips_a_result_another_run_wrote_meanwhile(export, tmp_path, capsys, monkeypatch) -> None:
    """Two folder upscales into one folder: an output that appeared after this run checked for it is
    the other run's result, kept and skipped as a finished one is (the run went on failing)."""
    from alignvar_edge import images

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(src / name)
    real = images.save_image

    def other_run_first(dst, *a, **kw):
        if Path(dst).name == "b.png":
            Path(dst).write_bytes(b"theirs")           # the other run publishes b.png meanwhile
        return real(dst, *a, **kw)
    monkeypatch.setattr(images, "save_image", other_run_first)
    capsys.readouterr()
    assert cli.main(["upscale", str(src), str(tmp_path / "out"), "--engine", str(export)]) == 0
    err = capsys.readouterr().err
    assert f"skipping: {tmp_path / 'out' / 'b.png'} was written by another run meanwhile; kept that one" in err, err
    assert "upscaled 1 image(s) (1 written by another run meanwhile)" in err, err
    assert (tmp_path / "out" / "b.png").read_bytes() == b"theirs"
    assert Image.open(tmp_path / "out" / "a.png").size == (24, 20)


def test_a_folder_run_checks_each_output_folder_once_and_names_its_first_output(tmp_path, monkeypatch):
    """Whether an output folder can be written was asked once per image, and each asking creates and
    removes a probe file there: once per folder, the refusal naming the first output under it."""
    from alignvar_edge import fsmodes
    from alignvar_edge.runtimes import upscale_jobs
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    for rel in ("a.png", "b.png", "c.png", "sub/d.png", "sub/e.png"):
        _png(src / rel)
    asked = []

    def watched(path):                  # the real check, its question noted
        asked.append(Path(path).relative_to(out).as_posix())
        return fsmodes.unwritable_folder(path)
    monkeypatch.setattr(upscale_jobs, "unwritable_folder", watched)
    todo, _, _ = upscale_jobs.plan_jobs(src, out, force=False)
    assert len(todo) == 5 and asked == ["a.png", "sub/d.png"], asked
    # a read-only sub/ (root writes anywhere: stood in for)
    monkeypatch.setattr(upscale_jobs, "unwritable_folder",
                        lambda path: out / "sub" if Path(path).parent == out / "sub" else None)
    with pytest.raises(InputError, match=re.escape(f"cannot write {out / 'sub' / 'd.png'}: the folder {out / 'sub'} "
                                                   "is not writable; choose another output")):
        upscale_jobs.plan_jobs(src, out, force=False)


def test_an_artifact_is_published_without_a_second_write_probe_after_the_work(tmp_path, monkeypatch):
    """check_out's write probe ran again at the rename, after the export or build: pointless (the work's
    folder was just made beside the output) and a refusal there (exit 2) lost all the work."""
    from alignvar_edge import outputs
    out = tmp_path / "E"
    with outputs.artifact_dir(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
        # the probe failing once the work is done (stood in for: root writes anywhere)
        monkeypatch.setattr(outputs, "unwritable_folder", lambda path, named=None: Path(path).parent)
    assert (out / "manifest.json").read_text() == "{}"
    with pytest.raises(InputError, match=re.escape(f"out='{tmp_path / 'F'}': the folder {tmp_path} is not "
                                                   "writable; choose another out=")):
        with outputs.artifact_dir(tmp_path / "F"):       # before the work, it is asked
            pytest.fail("the work ran in a folder refused beforehand")


def test_a_plot_says_nothing_about_a_home_it_cannot_write(tmp_path):
    """With HOME unwritable (a service account, a read-only container) `bench --plot` and `bench
    merge --plot` printed matplotlib's two lines about its config folder beside the verb's own."""
    pytest.importorskip("matplotlib")
    (tmp_path / "file").write_text("")
    env = {k: v for k, v in ENV.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    report = ROOT / "docs" / "results" / "epyc-zen5-2core" / "engines.json"
    r = subprocess.run([sys.executable, "-m", "alignvar_edge", "bench", "merge", str(report), "--out",
                        str(tmp_path / "m.json"), "--plot", str(tmp_path / "m.png")],
                       capture_output=True, text=True, timeout=300, env={**env, "HOME": str(tmp_path / "file" / "home")})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.png").stat().st_size > 0
    assert "matplotlib" not in r.stderr.lower(), r.stderr
