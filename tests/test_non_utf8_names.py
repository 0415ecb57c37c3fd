"""File names that are not UTF-8 (a Latin-1 `caf\\xe9.png`), and non-ASCII names under LC_ALL=C
without Python's UTF-8 mode: Python holds their odd bytes as surrogate escapes ('caf\\udce9.png').
No verb may crash on them (hashing one with `.encode()` did: train, quantize, build, deploy), and
what users read (--json, bench's Markdown, plot and report) shows them as text, two files apart."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import cli
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.name_text import name_bytes, readable

MICRO = AlignVARConfig.from_preset("micro")          # 32 px HR tile
# a shell under LC_ALL=C, Python's UTF-8 mode and locale coercion off: every non-ASCII name escaped
POSIX = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def _held(name: bytes) -> str:
    """The str Python holds for the file name `name` under a UTF-8 locale."""
    return name.decode("utf-8", "surrogateescape")


def _new_file(folder: Path, name: bytes) -> BinaryIO:
    """The file `name` (bytes, as the file system holds it) made in `folder`, open for writing; the
    test is skipped where the file system refuses the name."""
    folder.mkdir(exist_ok=True)
    try:
        return open(os.path.join(os.fsencode(folder), name), "wb")
    except OSError as e:            # APFS, for one, refuses a name that is not UTF-8
        pytest.skip(f"this file system refuses the file name {name!r}: {e}")


def _photo(folder: Path, name: bytes, seed: int, size: int = 48) -> int:
    """A PNG under the byte name `name`; its size in bytes."""
    with _new_file(folder, name) as fh:
        pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(fh, format="PNG")
        return fh.tell()


def test_a_name_reads_as_its_utf8_text_or_as_a_visible_escape_of_its_byte() -> None:
    assert readable("Fotoğraf café.png") == "Fotoğraf café.png"         # ordinary text: as it is
    # under LC_ALL=C, Python holds a UTF-8 name's bytes as escapes: read back as the UTF-8 they are
    assert readable("Büro.png".encode().decode("ascii", "surrogateescape")) == "Büro.png"
    # a Latin-1 byte is no UTF-8: a visible escape, one of its own per byte
    assert readable(_held(b"caf\xe9.png")) == "caf\\xe9.png"
    assert readable(_held(b"caf\xe8.png")) == "caf\\xe8.png"
    assert readable(_held(b"\xc3\xbc \xe9")) == "ü \\xe9"
    # a digest's bytes of a name are those on disk, and an ordinary name's its UTF-8
    assert name_bytes(_held(b"caf\xe9.png")) == b"caf\xe9.png"
    assert name_bytes("Fotoğraf café.png") == "Fotoğraf café.png".encode("utf-8")


def test_the_images_digest_of_a_utf8_name_is_unchanged_and_the_same_under_lc_all_c(tmp_path: Path) -> None:
    """run.json records it; --resume compares it. A UTF-8 name must hash as it always did (its UTF-8),
    and under LC_ALL=C (every non-ASCII name escaped) the same: that run crashed."""
    from alignvar_edge.train.trainer import images_digest
    folder = tmp_path / "photos"
    sizes = {name: _photo(folder, name, i) for i, name in enumerate((b"Fotograf caf\xc3\xa9.png", b"plain.png"))}
    want = hashlib.sha256(b"".join(b"%s\0%d\n" % (name, size) for name, size in sorted(sizes.items()))).hexdigest()
    assert images_digest(str(folder)) == want
    code = "import sys; from alignvar_edge.train.trainer import images_digest; print(images_digest(sys.argv[1]))"
    run = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                         env={**os.environ, **POSIX})
    assert run.returncode == 0 and run.stdout.strip() == want, run.stderr[-2000:]


def test_the_images_digest_of_a_latin1_name_is_of_its_bytes(tmp_path: Path) -> None:
    from alignvar_edge.train.trainer import images_digest
    folder = tmp_path / "photos"
    size = _photo(folder, b"caf\xe9.png", 0)
    assert images_digest(str(folder)) == hashlib.sha256(b"caf\xe9.png\0%d\n" % size).hexdigest()


def _old_calibration_hash(cs) -> str:
    """CalibrationSet.hash as every recorded one was made: its names' UTF-8."""
    h = hashlib.sha256(json.dumps({k: v for k, v in cs.recipe.items() if k != "source"}, sort_keys=True).encode())
    for split in (cs.calibration, cs.validation):
        for arr in (split.lr, split.hr):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
        h.update("\n".join(split.names).encode("utf-8"))
    h.update(b"v1")
    return h.hexdigest()


def test_a_calibration_set_of_a_latin1_folder_hashes_and_a_utf8_names_hash_is_unchanged(tmp_path: Path) -> None:
    from alignvar_edge.quantize.calibration.sets import CalibrationSet
    utf8, latin1 = tmp_path / "utf8", tmp_path / "latin1"
    for i, name in enumerate((b"Fotograf caf\xc3\xa9.png", b"plain.png")):
        _photo(utf8, name, i)
    for i, name in enumerate((b"caf\xe9.png", b"plain.png")):
        _photo(latin1, name, i)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # few images for the tiles: not what this is about
        cs = CalibrationSet.from_folder(utf8, MICRO, n=2, n_val=1)
        assert cs.hash == _old_calibration_hash(cs)
        other = CalibrationSet.from_folder(latin1, MICRO, n=2, n_val=1)
    assert len(other.hash) == 64 and other.hash != cs.hash
    assert {f["file"] for f in other.summary()["files"]} == {_held(b"caf\xe9.png"), "plain.png"}


def test_train_runs_and_resumes_over_a_folder_with_a_latin1_name(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    _photo(folder, b"caf\xe9.png", 0, 40)
    _photo(folder, b"plain.png", 1, 40)
    argv = ["train", "vqvae", "--preset", "micro", "--out", str(tmp_path / "run"), "--batch", "1", "--warmup", "0",
            "--images", str(folder)]
    assert cli.main([*argv, "--steps", "1"]) == 0
    assert cli.main([*argv, "--steps", "2", "--resume"]) == 0           # the folder's digest found unchanged


def test_quantize_calibrates_on_a_latin1_folder_and_inspect_json_names_the_file_readably(
        micro_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    _photo(folder, b"caf\xe9.png", 0, 96)
    _photo(folder, b"plain.png", 1, 96)
    out = tmp_path / "q"
    assert cli.main(["quantize", str(micro_export), "--calib", str(folder), "--out", str(out),
                     "--tiles", "4", "--val-tiles", "2", "--no-search"]) == 0
    # the manifest keeps the name Python opens the file by
    recorded = json.loads((out / "manifest.json").read_text())["calibration"]["files"]
    assert all((folder / f["file"]).is_file() for f in recorded)
    capsys.readouterr()
    assert cli.main(["inspect", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["calibration"]["files"]
    assert sorted(f["file"] for f in shown) == ["caf\\xe9.png", "plain.png"]


def _verb(*argv: str | bytes | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`alignvar-edge ARGV` as a shell runs it (its console writes a name's own bytes; pytest's
    capture refuses them), in the locale `env` sets."""
    return subprocess.run([sys.executable, "-m", "alignvar_edge", *(os.fsencode(a) for a in argv)],
                          capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=600)


def test_eval_json_names_two_latin1_files_apart_and_a_utf8_name_as_text_under_lc_all_c(tmp_path: Path) -> None:
    """`caf\\xe9.png` and `caf\\xe8.png` were both "caf\\udcXX.png", which jq and browsers read as
    U+FFFD: two files in one; under LC_ALL=C a UTF-8 name was escapes too."""
    folder = tmp_path / "photos"
    for i, name in enumerate((b"caf\xe9.png", b"caf\xe8.png", "Ünïcødé café.png".encode())):
        _photo(folder, name, i, 64)
    run = _verb("eval", "alignvar-tiny", "--images", folder, "--json", env=POSIX)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    names = sorted(i["name"] for i in json.loads(run.stdout)["images"])
    assert names == ["caf\\xe8.png", "caf\\xe9.png", "Ünïcødé café.png"]
