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
from typing import Any, BinaryIO

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import cli
from alignvar_edge.manifest import CONTENT_KEY, content_hash
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.name_text import line_text, name_bytes, readable

MICRO = AlignVARConfig.from_preset("micro")          # 32 px HR tile
DOC_REPORT = Path(__file__).resolve().parents[1] / "docs" / "results" / "epyc-2core" / "tiny-t1.json"
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


def test_bench_with_labels_that_are_no_utf8_writes_markdown_and_plot_and_prints_its_table(
        micro_export: Path, tmp_path: Path) -> None:
    """`bench "ORT\\xe9=EXP"`, and `--label Büro` under LC_ALL=C: the plot and the Markdown failed
    after the timing, the table was never printed, and the report kept the escapes for merge. The
    Markdown's link to a plot named in UTF-8, with a space, is percent-encoded: CommonMark drew no
    image for `](Grafik ü.png)`."""
    folder = tmp_path / "bench ü"
    folder.mkdir()
    out, md, plot = folder / "r.json", folder / "r.md", folder / "Grafik ü.png"
    run = _verb("bench", b"ORT\xe9=" + os.fsencode(micro_export), "--reference", "preset:micro", "--runs", "1",
                "--warmup", "0", "--tiles", "1", "--image-size", "0", "--peak-n", "64", "--profile-runs", "0",
                "--threads", "1", "--label", "Büro", "--out", out, "--md", md, "--plot", plot, env=POSIX)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert b"\nORT\xe9 " in run.stdout and b"wrote " in run.stdout        # the table (the name's bytes), then the files
    assert plot.stat().st_size > 1000
    page = md.read_text(encoding="utf-8")
    assert "on Büro" in page and "| ORT\\xe9 |" in page and "](Grafik%20%C3%BC.png)" in page
    assert _linked_image(page) == b"Grafik \xc3\xbc.png"
    report = json.loads(out.read_text())
    assert report["label"] == "Büro" and "ORT\\xe9" in [e["label"] for e in report["engines"]]


def _linked_image(page: str) -> bytes:
    """The name of the file a Markdown page's one image links to, as a CommonMark reader finds it
    (markdown-it-py, where installed): its destination's percent-escapes as bytes."""
    from urllib.parse import unquote_to_bytes
    markdown_it = pytest.importorskip("markdown_it", reason="no CommonMark reader (markdown-it-py) here")
    images = [t for block in markdown_it.MarkdownIt("commonmark").parse(page) for t in block.children or ()
              if t.type == "image"]
    assert len(images) == 1, page
    return unquote_to_bytes(str(images[0].attrs["src"]))


def _older_report(label: str) -> dict[str, Any]:
    """A committed report, relabelled `label`, with its content hash as a bench wrote it."""
    report = json.loads(DOC_REPORT.read_text())
    report["label"] = label
    report.pop(CONTENT_KEY, None)
    report[CONTENT_KEY] = content_hash(report)
    return report


def test_a_report_file_holds_its_labels_as_text(tmp_path: Path) -> None:
    """What a device bench and `bench trtexec` write (--label under LC_ALL=C): jq read U+FFFD."""
    from alignvar_edge.bench.schema import read_report, write_json
    path = write_json(tmp_path / "r.json", _older_report(_held(b"ORT\xe9")))
    assert json.loads(path.read_text())["label"] == "ORT\\xe9"
    assert read_report(path)["label"] == "ORT\\xe9"              # its content hash is of what it holds


def test_bench_merge_reads_an_older_report_with_a_label_that_is_no_utf8(tmp_path: Path) -> None:
    """A report written before labels were made text keeps "ORT\\udce9" (content hash and all): a
    merge of it on a UTF-8 host failed the same way. Its file name reads as text too, and the
    Markdown links the plot by its bytes, percent-encoded: `](m\\xe9.png)` named no file."""
    with _new_file(tmp_path / "older", b"r\xe9.json") as fh:       # "ORT\udce9", as Python's json wrote it
        fh.write(json.dumps(_older_report(_held(b"ORT\xe9"))).encode("ascii"))
        older = fh.name
    outs = os.path.join(os.fsencode(tmp_path), b"m\xe9")
    os.mkdir(outs)
    md, plot = os.path.join(outs, b"m.md"), os.path.join(outs, b"m\xe9.png")
    run = _verb("bench", "merge", older, "--out", tmp_path / "m.json", "--md", md, "--plot", plot)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert os.path.getsize(plot) > 1000
    with open(md, encoding="utf-8") as fh:
        page = fh.read()
    assert "**ORT\\xe9**" in page and "](m%E9.png)" in page
    assert _linked_image(page) == b"m\xe9.png"
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["reports"][0]["label"] == "ORT\\xe9"
    assert merged["sources"] == [f"{tmp_path}/older/r\\xe9.json"]


def test_a_checkpoint_and_a_training_run_in_a_latin1_folder_load(tmp_path: Path) -> None:
    """safetensors' torch loader opens files by UTF-8 names only: a checkpoint saved into a Latin-1
    folder did not load again ("Path ... is not valid UTF-8; re-download or re-export it"), nor did a
    run's training state there resume."""
    from _runtime_fixtures import nano_model
    from alignvar_edge.model import AlignVAR
    from alignvar_edge.model.checkpoint import weights_sha256
    folder = _held(os.path.join(os.fsencode(tmp_path), b"caf\xe9"))
    try:
        os.mkdir(folder)
    except OSError as e:
        pytest.skip(f"this file system refuses a name that is not UTF-8: {e}")
    model = nano_model()
    model.save_pretrained(os.path.join(folder, "ckpt"))
    assert weights_sha256(AlignVAR.from_pretrained(os.path.join(folder, "ckpt"))) == weights_sha256(model)
    photos = tmp_path / "photos"
    _photo(photos, b"plain.png", 1, 40)
    argv = ["train", "vqvae", "--preset", "micro", "--out", os.path.join(folder, "run"), "--batch", "1",
            "--warmup", "0", "--images", str(photos)]
    assert cli.main([*argv, "--steps", "1"]) == 0
    assert cli.main([*argv, "--steps", "2", "--resume"]) == 0


def test_where_such_a_folder_cannot_be_handed_on_its_name_is_said_not_a_damaged_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc/self/fd (a container without /proc, a BSD) the folder's name is what to fix: it
    was said as weights to re-download, or a training state to throw away."""
    from _runtime_fixtures import nano_model
    from alignvar_edge import native_paths
    from alignvar_edge.errors import InputError
    from alignvar_edge.model import AlignVAR
    folder = _held(os.path.join(os.fsencode(tmp_path), b"caf\xe9"))
    try:
        os.mkdir(folder)
    except OSError as e:
        pytest.skip(f"this file system refuses a name that is not UTF-8: {e}")
    nano_model().save_pretrained(os.path.join(folder, "ckpt"))
    monkeypatch.setattr(native_paths, "_FD_ALIASES", str(tmp_path / "no-proc"))
    with pytest.raises(InputError, match="this name is not UTF-8 as the file system holds it"):
        AlignVAR.from_pretrained(os.path.join(folder, "ckpt"))


# a newline, an ESC and a Latin-1 byte in names, and how each line of text shows them
ODD_NAMES = {b"new\nline.png": "new\\nline.png", b"caf\xe9.png": "caf\\xe9.png",
             b"esc\x1b[31mred.png": "esc\\x1b[31mred.png"}


def test_a_name_in_a_line_of_text_shows_its_control_characters_and_odd_bytes_as_escapes() -> None:
    assert line_text("Fotoğraf café.png") == "Fotoğraf café.png"         # ordinary text: as it is
    assert line_text(_held(b"new\nline\t\x1b[31m\xe9.png")) == "new\\nline\\t\\x1b[31m\\xe9.png"
    assert line_text(b"caf\xe9\r.png") == "caf\\xe9\\r.png"               # bytes, as os.listdir(b'.') names it
    assert line_text("a\u2028b\x85c\x7f.png") == "a\\u2028b\\x85c\\x7f.png"  # what ends a line elsewhere
    # JSON writes a control character as its own escape: what it is given is the name itself
    assert readable("new\nline.png") == "new\nline.png"


def test_a_line_without_held_bytes_is_left_to_the_consoles_own_spelling() -> None:
    """Where the file system's encoding is not UTF-8, text that held no escapes ('2×3 – café') was
    read back from its UTF-8 bytes: a Latin-1 locale showed 'cafÃ©' and raw C1 controls, an ASCII
    one raw UTF-8 bytes where console_text spells '-' and 'x'. It comes back as it is, twice over."""
    probe = ("import sys; from alignvar_edge.name_text import line_text\n"
             "line = '2\\u00d73 \\u2013 caf\\u00e9.png'\n"
             "print(sys.getfilesystemencoding(), line_text(line) == line, line_text(line_text(line)) == line)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"})
    assert out.stdout.split() == ["ascii", "True", "True"], out.stdout + out.stderr


def _lines(stderr: bytes) -> list[str]:
    """stderr's lines, where no byte may come out raw: an ESC drives the terminal, a Latin-1 byte
    is no text."""
    assert b"\x1b" not in stderr and b"\xe9" not in stderr, stderr
    return stderr.decode("utf-8").splitlines()


def test_upscale_says_each_image_and_each_file_it_skips_on_one_line_with_its_name_escaped(tmp_path: Path) -> None:
    """`... -> oddout2/new` and `line.png` on two lines of a log, `caf` and a raw byte: one event is
    one line, a script that reads the log line by line reads each image as one."""
    folder = tmp_path / "odd"
    for i, name in enumerate(ODD_NAMES):
        _photo(folder, name, i, 40)
    with _new_file(folder, b"bad\xe9\nx.png") as fh:
        fh.write(b"not an image")
    run = _verb("upscale", folder, tmp_path / "out")
    assert run.returncode == 4, run.stderr.decode(errors="replace")[-2000:]
    lines = _lines(run.stderr)
    for shown in ODD_NAMES.values():           # its size and tiles, said in a log before its work
        assert sum(line.startswith(f"{shown} (") for line in lines) == 1, lines
    # the skipping line and the error that names the file again, each whole
    assert [line.split(":")[0] for line in lines if "bad\\xe9\\nx.png" in line] == [
        "skipping", "alignvar-edge upscale"], lines
    assert not any(line.startswith(("line.png", "x.png")) for line in lines), lines
    one = _verb("upscale", folder / _held(b"new\nline.png"), f"{tmp_path / 'one'}/", "--quiet")
    assert one.returncode == 0, one.stderr.decode(errors="replace")[-2000:]
    assert _lines(one.stderr)[-1].endswith(" -> " + str(tmp_path / "one" / "new\\nline.png"))


def test_eval_rows_and_progress_name_each_image_on_one_line_and_json_holds_the_names(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    for i, name in enumerate(ODD_NAMES):
        _photo(folder, name, i, 64)
    run = _verb("eval", "alignvar-tiny", "--images", folder, "--json", tmp_path / "e.json")
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    rows, progress_lines = _lines(run.stdout), _lines(run.stderr)
    for k, shown in enumerate(sorted(ODD_NAMES.values()), 1):
        assert sum(row.startswith(f"{shown}  ") for row in rows) == 1, rows
        assert sum(line.startswith(f"{shown} ({k}/3):") for line in progress_lines) == 1, progress_lines
    # JSON's own escapes keep a newline and an ESC exactly; a byte that is no UTF-8 reads as its escape
    names = {i["name"] for i in json.loads((tmp_path / "e.json").read_text())["images"]}
    assert names == {"new\nline.png", "caf\\xe9.png", "esc\x1b[31mred.png"}


def test_compare_table_and_summary_name_an_engine_and_an_image_on_one_row() -> None:
    from alignvar_edge.runtimes.compare import EngineResult, ImageResult, format_summary, format_table
    image = ImageResult(_held(b"new\nline\xe9.png"), (64, 96), 6, 1.0, [1.0], 1.0, 40.0, 41.0, 0.99, 1.0)
    result = EngineResult(_held(b"eng\x1b[2J"), "onnxruntime", "fp32", "cpu", [image], 2.0)
    table = format_table([result]).splitlines()
    assert len(table) == 3 and table[2].startswith("eng\\x1b[2J [onnxruntime fp32]  new\\nline\\xe9.png 96x64 ")
    assert format_summary(result).startswith("eng\\x1b[2J: tiles identical")
