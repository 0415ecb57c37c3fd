"""An output is refused where it is an input, however the two are spelled: on macOS's, Windows's and
memory cards' file systems `Photos` and `photos` are one file. Linux's disks tell them apart, so a
second name for the same file stands in: a hard link for a file, a bind mount for a folder. Either
gives what such a disk gives the code: two paths whose resolved strings differ and that are one
file. Two inputs whose outputs differ only in case, or in how an accented letter is encoded (one
name on macOS), are refused before any work."""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.errors import InputError, OutputExistsError
from alignvar_edge.images.folders import list_folder
from alignvar_edge.outputs import check_out
from alignvar_edge.runtimes.upscale_jobs import plan_jobs


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(path)
    return path


def test_an_output_file_that_is_its_input_by_another_name_is_refused_with_or_without_force(tmp_path):
    """`upscale Photos/photo.png Photos/Photo.png` on a case-insensitive disk: the output is the input.
    Without --force it was 'already exists ... pass --force', and --force wrote over the photograph."""
    photo = _png(tmp_path / "Photos" / "photo.png")
    other_spelling = tmp_path / "Photos" / "Photo.png"
    os.link(photo, other_spelling)
    for force in (False, True):
        with pytest.raises(InputError, match=re.escape(f"refusing to write onto the input {photo}; choose another "
                                                       "output")):
            plan_jobs(photo, other_spelling, force=force)


def test_a_folder_run_refuses_an_output_that_is_one_of_its_inputs_by_another_name(tmp_path):
    """out/a.png is in/a.png by another name (on a case-insensitive disk: `upscale in IN/..`): a
    finished output to skip, or with --force to replace, it was taken for; it is the input."""
    photo = _png(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    other_spelling = tmp_path / "out" / "a.png"
    os.link(photo, other_spelling)
    for force in (False, True):
        with pytest.raises(InputError, match=re.escape(f"refusing to write onto the input {other_spelling};")):
            plan_jobs(tmp_path / "in", tmp_path / "out", force=force)


def test_an_output_folder_that_is_the_input_folder_by_another_name_is_refused(tmp_path, second_name):
    """`upscale Photos photos --force` replaced the photographs with their results."""
    photos = tmp_path / "Photos"
    _png(photos / "photo.png")
    other_spelling = second_name(photos, "photos")
    for force in (False, True):
        with pytest.raises(InputError, match=re.escape(f"the output folder {other_spelling} is the input folder; "
                                                       "choose another output folder")):
            plan_jobs(photos, other_spelling, force=force)


def test_a_folder_run_does_not_read_its_output_folder_inside_the_input_by_another_name(tmp_path, second_name):
    """`upscale Photos photos/out` run twice: the second run read photos/out's results as inputs
    (out/out/photo.png, an image 16 times the size)."""
    photos = tmp_path / "Photos"
    _png(photos / "photo.png")
    _png(photos / "out" / "photo.png", seed=1)          # the first run's result
    out = second_name(photos, "photos") / "out"
    assert list_folder(photos, skip=out).images == [photos / "photo.png"]
    todo, existing, _ = plan_jobs(photos, out, force=False)
    assert (todo, existing) == ([], [(photos / "photo.png", out / "photo.png")])


def test_check_out_refuses_the_source_artifact_by_another_name(tmp_path, second_name):
    """`build tiny-export --out Tiny-Export --force` replaced the export with the engine; a folder
    inside it or around it by another name is refused as the same spelling is."""
    source = tmp_path / "parent" / "tiny-export"
    source.mkdir(parents=True)
    source_alias, parent_alias = second_name(source, "Tiny-Export"), second_name(tmp_path / "parent", "Parent")
    for out, where in ((source_alias, "is"), (source_alias / "sub", "lies inside"), (parent_alias, "holds")):
        with pytest.raises(OutputExistsError, match=re.escape(f"{out}' {where} the input artifact '{source}'")):
            check_out(out, force=True, source=source)


def test_inputs_whose_names_differ_only_in_unicode_form_are_refused_naming_both(tmp_path):
    """`café.gif` with é decomposed and `café.png` with é composed are one output on macOS: the run
    kept one result, called the other 'written by another run meanwhile', and exited 0."""
    decomposed = _png(tmp_path / "in" / unicodedata.normalize("NFD", "café.gif"))
    composed = _png(tmp_path / "in" / unicodedata.normalize("NFC", "café.png"))
    with pytest.raises(InputError) as refused:
        plan_jobs(tmp_path / "in", tmp_path / "out", force=False)
    said = str(refused.value)
    assert said.startswith(f"{decomposed} and {composed} would both be written to "), said
    assert said.endswith("one file where an accented letter's composed and decomposed Unicode forms are not told "
                         "apart (macOS); rename one of them"), said


def test_inputs_whose_names_differ_in_case_and_unicode_form_are_refused(tmp_path):
    upper = _png(tmp_path / "in" / unicodedata.normalize("NFD", "CAFÉ.gif"))
    lower = _png(tmp_path / "in" / unicodedata.normalize("NFC", "café.png"))
    with pytest.raises(InputError, match=re.escape(f"{upper} and {lower} would both be written to ")) as refused:
        plan_jobs(tmp_path / "in", tmp_path / "out", force=False)
    assert str(refused.value).endswith("one file where neither case nor an accented letter's composed and decomposed "
                                       "Unicode forms are told apart (macOS); rename one of them"), refused.value


def test_inputs_whose_names_differ_only_in_case_are_still_refused(tmp_path):
    upper, lower = _png(tmp_path / "in" / "A.png"), _png(tmp_path / "in" / "a.gif")
    with pytest.raises(InputError, match=re.escape(f"{upper} and {lower} would both be written to ")) as refused:
        plan_jobs(tmp_path / "in", tmp_path / "out", force=False)
    assert str(refused.value).endswith("one file where case is not told apart; rename one of them"), refused.value


def test_names_that_only_full_case_folding_makes_one_are_two_outputs(tmp_path):
    """`Straße.png` and `Strasse.gif` are two files on every case-insensitive disk (case is mapped
    letter for letter there), and were refused as one: casefold() turns ß into "ss"."""
    _png(tmp_path / "in" / "Straße.png")
    _png(tmp_path / "in" / "Strasse.gif")
    todo, done, _ = plan_jobs(tmp_path / "in", tmp_path / "out", force=False)
    assert sorted(out.name for _, out in todo) == ["Strasse.png", "Straße.png"] and not done


def test_names_that_differ_only_in_unicode_form_are_refused_under_an_ascii_file_system_encoding(tmp_path):
    """Under LC_ALL=C with PYTHONUTF8=0 Python holds a UTF-8 name as surrogate escapes, which no
    normalisation touched: the same folder was refused in a UTF-8 locale and run there, writing both
    results to what macOS takes for one file."""
    import subprocess
    import sys
    _png(tmp_path / "in" / unicodedata.normalize("NFD", "café.gif"))
    _png(tmp_path / "in" / unicodedata.normalize("NFC", "café.png"), seed=1)
    script = ("import sys\nfrom pathlib import Path\nfrom alignvar_edge.errors import InputError\n"
              "from alignvar_edge.runtimes.upscale_jobs import plan_jobs\n"
              "assert sys.getfilesystemencoding() == 'ascii', sys.getfilesystemencoding()\n"
              "try:\n    plan_jobs(Path(sys.argv[1], 'in'), Path(sys.argv[1], 'out'), force=False)\n"
              "except InputError as e:\n    print(str(e).encode('ascii', 'backslashreplace').decode())\n")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("one file where an accented letter's composed and decomposed Unicode forms "
                                       "are not told apart (macOS); rename one of them"), run.stdout
