"""The Python API an embedding service calls: what `Engine.upscale`, `upscale_many`, `close` and
`load` refuse, and in which exception class, on a real ONNX Runtime engine of the `micro` model."""
from __future__ import annotations

import os
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _typing_user import mypy_as_a_user
from alignvar_edge import runtimes
from alignvar_edge.errors import InputError


@pytest.fixture(scope="module")
def engine(micro_export: Path):
    with runtimes.load(micro_export, threads=1) as e:
        yield e


@pytest.mark.parametrize("one", [np.zeros((20, 24, 3), np.uint8), Image.new("RGB", (6, 5)), "photo.png",
                                 Path("photo.png"), (np.zeros((4, 4, 3)), None)],
                         ids=["array", "pil", "str", "path", "load_image-pair"])
def test_upscale_many_of_one_image_is_refused_at_the_call_naming_the_list_to_pass(engine, one) -> None:
    """An array was iterated row by row (20 gray results for one HxWx3 image), a path character by
    character ("got the path 'p'"), a PIL image raised a bare TypeError."""
    with pytest.raises(InputError, match=r"^upscale_many takes an iterable of images, got one image \(.*\); "
                                         r"pass a list, upscale_many\(\[image\]\), or call upscale\(image\)$"):
        engine.upscale_many(one)         # at the call, before any result is asked for


def test_upscale_many_of_a_list_of_one_image_is_that_image_upscaled(engine) -> None:
    img = (np.random.default_rng(0).random((5, 6, 3)) * 255).astype(np.uint8)
    (out,) = engine.upscale_many([img])
    assert np.array_equal(out, engine.upscale(img))


BAD_THREADS = [(-1, "an integer >= 1"), (0, "an integer >= 1"), ("2", "an integer >= 1"), (1.5, "an integer >= 1"),
               (True, "an integer >= 1"), (10**6, "is more than the .* core")]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("threads,why", BAD_THREADS, ids=[repr(t) for t, _ in BAD_THREADS])
def test_a_bad_thread_count_is_one_input_error_from_load_on_every_backend(micro_export, backend, threads, why) -> None:
    """OpenVINO raised a multi-line C++ RuntimeError for -1, ONNX Runtime never returned from 10**6,
    and both took 0, '2', 1.5 and True."""
    with pytest.raises(InputError, match=rf"^threads={threads!r}(:| ).*{why}.*$"):
        runtimes.load(micro_export, backend=backend, threads=threads)


def test_onnxruntime_inter_threads_and_spin_are_checked_too(micro_export) -> None:
    with pytest.raises(InputError, match=r"^inter_threads=-3: a thread count must be an integer >= 1"):
        runtimes.load(micro_export, inter_threads=-3)
    with pytest.raises(InputError, match=r"^onnxruntime spin must be True or False, got 'maybe'$"):
        runtimes.load(micro_export, spin="maybe")
    with runtimes.load(micro_export, threads=np.int64(1), spin=False) as e:      # a count read from a config
        assert e.upscale(np.zeros((3, 3), np.uint8)).shape == (12, 12)


def test_upscale_threads_past_the_cores_names_the_flag_and_writes_nothing(micro_export, tmp_path, capsys) -> None:
    from alignvar_edge.cli import main
    Image.new("RGB", (5, 4)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--engine", str(micro_export),
                 "--threads", "100000", "--quiet"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--threads 100000 is more than the" in err[0] and "pass --threads " in err[0], err
    assert not (tmp_path / "b.png").exists()


def test_a_closed_engine_is_a_lifecycle_error_not_bad_input_and_an_upscale_it_cut_short_says_so(micro_export) -> None:
    """A closed engine raised InputError, a ValueError: a service answering those with "bad image"
    blamed the user's photo for its own shutdown. close() waits for one engine call, not for a whole
    upscale: closed between two of its calls (here by its own progress callback), the upscale stops."""
    from alignvar_edge.errors import EngineClosedError
    img = np.zeros((40, 40, 3), np.uint8)            # many tiles, one per call on this batch-1 export
    e = runtimes.load(micro_export, threads=1)
    seen: list[int] = []

    def close_after_the_first_call(done: int, total: int) -> None:
        seen.append(done)
        e.close()
    with pytest.raises(EngineClosedError, match=r"^this onnxruntime engine is closed; load it again$") as cut:
        e.upscale(img, progress=close_after_the_first_call)
    assert seen == [1] and not isinstance(cut.value, ValueError) and isinstance(cut.value, RuntimeError)
    for call in (lambda: e.upscale(img), lambda: e.run(np.zeros((1, 3, 8, 8), np.float32))):
        with pytest.raises(EngineClosedError):
            call()
    # a notebook shows the engine closed, and `with` it refuses at once, not at the first call inside
    assert repr(e) == f"<OrtEngine onnxruntime/cpu fp32 batch=1 {micro_export} (closed)>"
    with pytest.raises(EngineClosedError, match=r"^this onnxruntime engine is closed; load it again$"):
        with e:
            pass


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_the_alpha_channel_is_refused_as_in_rgb(engine, bad) -> None:
    """A NaN alpha pixel came back as a transparent hole (alpha 0.05 around it in a 0.7 image) and an
    Inf one pushed its neighbours to 0.98, while the same values in RGB were refused."""
    rgba = np.full((20, 20, 4), 0.5)
    rgba[..., 3] = 0.7
    assert np.allclose(engine.upscale(rgba)[..., 3], 0.7, atol=1e-3)     # a finite alpha comes back as it was
    rgba[5, 5, 3] = bad
    with pytest.raises(InputError, match=r"^the image's alpha channel contains NaN or Inf values$"):
        engine.upscale(rgba)
    rgba[5, 5, 3], rgba[5, 5, 0] = 0.7, bad
    with pytest.raises(InputError, match=r"^the image contains NaN or Inf values$"):
        engine.upscale(rgba)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_or_closed_pil_image_is_one_input_error_naming_its_file(engine, tmp_path, fmt) -> None:
    """Pillow decodes on first use, inside upscale: a truncated upload escaped as Pillow's own
    OSError, and an image whose `with` block had ended as a bare AssertionError."""
    pixels = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)   # headers well inside the half
    whole, cut = tmp_path / f"whole.{fmt.lower()}", tmp_path / f"cut.{fmt.lower()}"
    Image.fromarray(pixels).save(whole, fmt)
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=rf"^{re.escape(str(cut))} is truncated or corrupt \(.*truncated.*\); re-download or re-export"):
        engine.upscale(Image.open(cut))
    with Image.open(whole) as closed:
        pass
    with pytest.raises(InputError, match=rf"^{re.escape(str(whole))}: its file was closed before its pixels were read; call \.load\(\)"):
        engine.upscale(closed)
    with Image.open(whole) as loaded:
        loaded.load()                       # as the message says: then it works after the block
    assert engine.upscale(loaded.crop((0, 0, 5, 4))).size == (20, 16)


@pytest.mark.parametrize("order", [">", "<"])
def test_sixteen_bit_arrays_of_either_byte_order_upscale_alike_and_keep_their_order(engine, order) -> None:
    """Big-endian uint16 (FITS, np.frombuffer of network data) was refused as "must be ... uint16"
    while big-endian floats were accepted."""
    native = (np.random.default_rng(1).random((5, 7, 3)) * 65535).astype(np.uint16)
    got = engine.upscale(native.astype(f"{order}u2"))
    assert got.dtype == np.dtype(f"{order}u2")
    assert np.array_equal(got.astype(np.uint16), engine.upscale(native))


def test_the_documented_errors_and_precision_warning_import_from_the_package_without_a_runtime() -> None:
    """They were only in alignvar_edge.errors (named nowhere in the README), and PrecisionWarning
    only in the OpenVINO backend, which imports OpenVINO to set a warnings filter."""
    import subprocess
    import sys
    code = ("import sys; from alignvar_edge import (AlignVAREdgeError, InputError, HalfPrecisionError, "
            "BackendUnavailableError, EngineClosedError, PrecisionWarning); import alignvar_edge; "
            "print(sorted(m for m in ('torch', 'openvino', 'onnxruntime', 'numpy') if m in sys.modules), "
            "issubclass(InputError, AlignVAREdgeError), set(alignvar_edge.__all__) <= set(dir(alignvar_edge)))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["[]", "True", "True"]
    import alignvar_edge
    from alignvar_edge.runtimes.openvino import backend as ovb
    assert ovb.PrecisionWarning is alignvar_edge.PrecisionWarning       # what the engine warns with


def test_importing_runtimes_leaves_the_image_readers_unloaded() -> None:
    """A default argument (the megapixel limit) imported the whole images package (readers, writers,
    folders, 16-bit codecs: 23 more modules in all) into every `import alignvar_edge.runtimes`; it is loaded
    where an image is first converted."""
    import subprocess
    import sys
    code = ("import sys, alignvar_edge.runtimes; "
            "print(sorted(m for m in sys.modules if m.startswith('alignvar_edge.images')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["[]"]


def test_an_installed_package_is_typed_for_its_users(tmp_path) -> None:
    """No py.typed marker: mypy treated the installed package as untyped (every name Any), and the
    lazy top-level names were Any even from the sources (the README's `export(model, ...)` was
    "Module not callable"). Installed here as a .pth in a fresh venv, which mypy reads as an install:
    the path .pth that `make venv`'s editable install writes in setuptools' compat mode (its default
    import-hook finder is invisible to mypy: "Cannot find implementation or library stub")."""
    import re
    root = Path(__file__).resolve().parent.parent
    # the wheel carries the marker: it is package data
    assert re.search(r'^alignvar_edge = \[.*"py\.typed"', (root / "pyproject.toml").read_text(), re.M)
    assert (root / "alignvar_edge" / "py.typed").is_file()
    installs = re.findall(r"^\t\$\(PIP\) install .*-e .*$", (root / "Makefile").read_text(), re.M)
    assert len(installs) == 2 and all("$(EDITABLE)" in ln for ln in installs), installs
    assert re.search(r"^EDITABLE := --config-settings editable_mode=compat$", (root / "Makefile").read_text(), re.M)
    user = tmp_path / "service.py"
    user.write_text("from pathlib import Path\n"
                    "import numpy as np\n"
                    "from PIL import Image\n"
                    "from alignvar_edge import AlignVAR, InputError, build, export, load\n"
                    "reveal_type(load('x'))\n"
                    "reveal_type(build('x', 'openvino'))\n"
                    "reveal_type(AlignVAR.from_pretrained(Path('alignvar-tiny')))\n"
                    "reveal_type(export(AlignVAR.from_pretrained('alignvar-tiny'), 'out/tiny'))\n"
                    "reveal_type(load('x').upscale(np.zeros((4, 4, 3), np.uint8)))\n"
                    "reveal_type(load('x').upscale(Image.new('L', (4, 4))))\n"
                    "reveal_type(next(load('x').upscale_many([Image.new('L', (4, 4))])))\n")
    run = mypy_as_a_user(tmp_path, [user])
    revealed = [ln.split("Revealed type is ")[1] for ln in run.stdout.splitlines() if "Revealed type" in ln]
    assert revealed[:4] == ['"alignvar_edge.runtimes.base.Engine"', '"pathlib.Path"',
                            '"alignvar_edge.model.alignvar.AlignVAR"', '"pathlib.Path"'], run.stdout
    # the same kind back: an array for an array, a PIL image for a PIL image (was Any)
    assert revealed[4].startswith('"numpy.ndarray[') and revealed[5:] == ['"PIL.Image.Image"'] * 2, run.stdout
    assert run.returncode == 0, run.stdout


def test_an_onnxruntime_build_checks_the_session_options_it_records(micro_export, tmp_path) -> None:
    """They are the engine's load options on its device: checked as load checks them (but not
    against this host's cores), before anything is written."""
    for bad, said in (({"threads": "2"}, r"^threads='2': a thread count must be an integer >= 1"),
                      ({"spin": "maybe"}, r"^onnxruntime spin must be True or False")):
        with pytest.raises(InputError, match=said):
            runtimes.build(micro_export, "onnxruntime", out=tmp_path / "ort", **bad)
        assert not (tmp_path / "ort").exists()


def test_load_of_a_mistyped_bundled_name_names_the_bundled_model(tmp_path) -> None:
    """load opens bundled names, but a typo was told only to pass an artifact directory."""
    from alignvar_edge.errors import ArtifactError
    with pytest.raises(ArtifactError, match=r"^'alignvar-tiyn' does not exist; did you mean the bundled model "
                                            r"'alignvar-tiny'\? pass an engine directory .* or a bundled model name "
                                            r"\(alignvar-tiny\)$"):
        runtimes.load("alignvar-tiyn")
    # a path that is not there says so, a file is no directory, a broken link (was 'is not a
    # directory') and a FIFO are said as what they are
    with pytest.raises(ArtifactError, match=r"does not exist; pass an engine directory"):
        runtimes.load(tmp_path / "nothing")
    (tmp_path / "afile").write_text("")
    with pytest.raises(ArtifactError, match=r"afile' is a file, not a folder; pass an engine directory"):
        runtimes.load(tmp_path / "afile")
    (tmp_path / "gone").symlink_to(tmp_path / "engine-moved")
    with pytest.raises(ArtifactError, match=r"gone' is a broken symbolic link \(to .*engine-moved\); pass an engine"):
        runtimes.load(tmp_path / "gone")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(ArtifactError, match=r"pipe' is a FIFO \(named pipe\), not a folder; pass an engine"):
            runtimes.load(tmp_path / "pipe")


def test_the_engine_says_whether_it_pads_calls_and_the_manifest_gives_the_graph_batch(engine, micro_export) -> None:
    """`static_batch` meant two things: the manifest's graph batch (an int, 1 when none is fixed) and
    the engine's "calls are padded to the batch" (a bool); the engine's is now `pads_to_batch`."""
    from alignvar_edge.bench.image import engine_shape
    from alignvar_edge.manifest import read_manifest
    batch = read_manifest(micro_export).static_batch
    assert engine.pads_to_batch is True and engine.batch == batch >= 1
    assert engine.input_contract["batch"] == batch and engine_shape(engine)["static"] is True
    assert not hasattr(engine, "static_batch")


def test_run_refuses_integer_tiles_and_floats_outside_0_1_naming_lr_tiles(engine) -> None:
    """uint8 tiles and tiles x10 were clipped to [0, 1] without a word: the model saw an almost
    white tile, while upscale refused the same data."""
    t = engine.tile_size
    tiles = np.random.default_rng(2).random((2, 3, t, t), dtype=np.float32)
    with pytest.raises(InputError, match=r"^Engine\.run's lr_tiles must be float32 in \[0, 1\], got dtype uint8; "
                                         r"divide uint8 tiles by 255: lr_tiles\.astype\(np\.float32\) / 255$"):
        engine.run((tiles * 255).astype(np.uint8))
    with pytest.raises(InputError, match=r"^Engine\.run's lr_tiles with values from .* to .*, outside \[0, 1\]"):
        engine.run(tiles * 10)
    overshoot = tiles * np.float32(1 + 0.5 / 255)                  # a resampled tile's: clipped, as upscale's
    assert np.array_equal(engine.run(overshoot)[0], engine.run(np.clip(overshoot, 0, 1))[0])
    for bad in (np.nan, np.inf, -np.inf):                          # one value among finite ones in range
        spoilt = tiles.copy()
        spoilt[1, 2, t - 1, 0] = bad
        with pytest.raises(InputError, match=r"^Engine\.run's lr_tiles contain NaN or Inf; pass finite values in \[0, 1\]$"):
            engine.run(spoilt)


def test_run_of_no_tiles_is_empty_results_of_the_right_shapes(engine) -> None:
    t, s = engine.tile_size, engine.scale
    sr, tokens = engine.run(np.zeros((0, 3, t, t), np.float32))
    assert sr.shape == (0, 3, t * s, t * s) and [k.shape for k in tokens] == [(0, p * p) for p in engine.config.patch_nums]


@pytest.mark.parametrize("kwargs,said", [
    ({"overlap": 1.9}, r"^overlap must be an integer in \[0, \d+\] LR pixels for tile \d+ \(or None: \d+\), got 1\.9$"),
    ({"overlap": "2"}, r"^overlap must be an integer .* got '2'$"),
    ({"overlap": True}, r"^overlap must be an integer .* got True$"),
    ({"color_fix": "no"}, r"^color_fix must be True or False \(or None: the model's default\), got 'no'$")])
def test_upscale_options_are_checked_not_coerced(engine, kwargs, said) -> None:
    """overlap=1.9 ran as 1, and color_fix='no' turned the colour fix on (bool('no') is True)."""
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(InputError, match=said):
        engine.upscale(img, **kwargs)
    with pytest.raises(InputError, match=said):
        list(engine.upscale_many([img], **kwargs))
    assert engine.upscale(img, overlap=np.int64(2), color_fix=False).shape == (80, 80, 3)


@pytest.mark.parametrize("batch", [0, -1, 1.5, "4", True])
def test_a_torch_batch_that_is_no_tile_count_is_one_input_error_from_load(batch) -> None:
    """0 became 4, -1 became 1, and 1.5 and '4' were taken."""
    with pytest.raises(InputError, match=rf"^torch batch \(tiles per call\) must be an integer >= 1, or None for the "
                                         rf"default, got {re.escape(repr(batch))}$"):
        runtimes.load("alignvar-tiny", batch=batch)


def test_bad_arguments_are_one_input_error_naming_them_not_a_traceback_from_inside(engine, micro_export) -> None:
    """load(None) raised pathlib's TypeError, progress=5 "'int' object is not callable" after the
    first engine call, upscale(None) spoke of "dtype object", and a list was told to call .astype."""
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(InputError, match=r"^load takes an engine directory, an ONNX export or a checkpoint: a path "
                                         r"or a bundled name such as 'alignvar-tiny', got NoneType$"):
        runtimes.load(None)                                            # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^build takes an export directory or a checkpoint: .* got int$"):
        runtimes.build(3, "onnxruntime")                               # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^progress must be a function, called as progress\(done, total\), or None; "
                                         r"got 5$"):
        engine.upscale(img, progress=5)                                # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^progress must be a function, called as progress\(index, done, total\)"):
        engine.upscale_many([img], progress=5)                         # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^got None, not an image; pass a numpy array or a PIL image$"):
        engine.upscale(None)
    with pytest.raises(InputError, match=r"got dtype int64; its values fit in 8 bits: convert with "
                                         r"np\.asarray\(x, np\.uint8\)$"):
        engine.upscale([[1, 2], [3, 4]])


def test_upscale_many_names_the_index_of_the_image_it_cannot_take_after_yielding_those_before(engine) -> None:
    ok = np.zeros((20, 20, 3), np.uint8)
    results = engine.upscale_many([ok, ok, np.zeros((5, 5, 7), np.uint8), ok])
    assert [r.shape for r in itertools.islice(results, 2)] == [(80, 80, 3)] * 2
    with pytest.raises(InputError, match=r"^image 2 \(from 0\) of upscale_many: expected an image HxW, HxWx1, "
                                         r"HxWx2 \(gray and alpha\), HxWx3 or HxWx4, got shape \(5, 5, 7\)$"):
        next(results)
    with pytest.raises(InputError, match=r"^image 1 \(from 0\) of upscale_many: got None, not an image"):
        list(engine.upscale_many([ok, None]))


def test_the_cli_and_the_shared_tiling_say_an_images_error_without_upscale_manys_index(
        engine, micro_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The index names an item of a Python caller's batch: `upscale FILE` names the file (it said
    'image 0 (from 0) of upscale_many: ...' too), and so does the tiling bench shares."""
    from alignvar_edge.cli import main as cli
    from alignvar_edge.runtimes.tiling import upscale_images
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert cli(["upscale", str(bad), str(tmp_path / "out.png"), "--engine", str(micro_export), "--threads", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"alignvar-edge upscale: error: {bad} is not an image Pillow can read, or its header is damaged (zero size, "
        "unknown format); convert it to PNG or JPEG")
    with pytest.raises(InputError, match=r"^expected an image HxW, HxWx1, HxWx2 \(gray and alpha\), HxWx3 or HxWx4, "
                                         r"got shape \(5, 5, 7\)$"):
        list(upscale_images(engine, [np.zeros((20, 20, 3), np.float32), np.zeros((5, 5, 7), np.float32)]))


def test_a_premultiplied_gray_alpha_pil_image_comes_back_la_as_rgba_comes_back_rgba(engine) -> None:
    """Mode La was refused ("convert it to RGB first", which drops the alpha) while RGBa was taken."""
    rng = np.random.default_rng(4)
    la = Image.fromarray(np.dstack([rng.integers(0, 256, (5, 6)), rng.integers(1, 256, (5, 6))]).astype(np.uint8), "LA")
    got = engine.upscale(la.convert("La"))
    assert got.mode == "LA" and got.size == (24, 20)
    assert np.array_equal(np.asarray(got), np.asarray(engine.upscale(la.convert("La").convert("LA"))))


def test_a_pil_image_whose_exif_says_to_turn_it_is_taken_as_held_with_one_line_saying_how_to_turn_it(
        engine, tmp_path) -> None:
    """`engine.upscale(Image.open("phone.jpg"))` of a photo with EXIF orientation 6 came back sideways
    without a word. It is still taken as held (as documented); the warning names the two ways to
    have it upright. Upright, or turned by the caller, nothing is said."""
    import warnings

    from PIL import ImageOps
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (8, 5), (90, 30, 200)).save(tmp_path / "phone.jpg", exif=exif)
    Image.new("RGB", (8, 5)).save(tmp_path / "upright.jpg", exif=Image.Exif())
    with Image.open(tmp_path / "phone.jpg") as phone:
        with pytest.warns(UserWarning) as said:
            assert engine.upscale(phone).size == (32, 20)                 # as held: not turned
        assert [str(w.message) for w in said] == [
            "this PIL image has EXIF orientation 6, which viewers apply and upscale does not: its result is the "
            "pixels as held, not as shown; pass PIL.ImageOps.exif_transpose(image), or "
            "alignvar_edge.images.load_image(path)'s array, to have it upright"]
        assert said[0].filename == __file__                                 # the caller's own line
        turned = ImageOps.exif_transpose(phone)
    with warnings.catch_warnings(), Image.open(tmp_path / "upright.jpg") as upright:
        warnings.simplefilter("error")
        assert engine.upscale(turned).size == (20, 32)
        engine.upscale(upright)


def test_help_on_export_shows_export_onnx_and_the_public_names_say_what_they_are() -> None:
    """`help(export)` showed the package ("torch -> ONNX export ...") and its signature was
    (*args, **kwargs); AlignVAR, Engine.tile_size, scale, num_scales, check_open and get_backend
    had no docstring."""
    import inspect
    import pydoc

    import alignvar_edge
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.runtimes.base import Backend, Engine

    assert inspect.signature(alignvar_edge.export) == inspect.signature(export_onnx)
    shown = pydoc.render_doc(alignvar_edge.export, renderer=pydoc.plaintext)
    assert inspect.getdoc(export_onnx).splitlines()[0] in shown and "opset: 'int' = 18" in shown
    undocumented = [f"{cls.__name__}.{n}" for cls in (Engine, Backend, alignvar_edge.AlignVAR) for n, v in vars(cls).items()
                    if not n.startswith("_") and callable(f := (v.fget if isinstance(v, property) else v))
                    and not inspect.getdoc(f)]
    assert undocumented == [] and alignvar_edge.AlignVAR.__doc__ and runtimes.get_backend.__doc__


def _peak_of(work) -> int:
    """The most bytes Python and numpy held at once during `work()`, above what they held before."""
    import tracemalloc
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_upscale_memory_grows_with_the_image_by_its_result_alone(engine) -> None:
    """Its peak was about 12x the uint8 result (a float32 result, float32 copies of the input and
    three float32 temporaries of the conversion back), not the result plus the tile batch and a strip."""
    rng = np.random.default_rng(2)
    short, tall = ((rng.random((h, 40, 3)) * 255).astype(np.uint8) for h in (30, 150))
    engine.upscale(short)                                # the runtime's first-call buffers, not the tiling's
    grown = _peak_of(lambda: engine.upscale(tall)) - _peak_of(lambda: engine.upscale(short))
    result_grown = 16 * 3 * 40 * (150 - 30)              # the uint8 result's bytes, 4x each way
    assert grown < 1.5 * result_grown, (grown, result_grown)


# 16 bits: heights past the 16-bit PNG writer's buffers, which grow to about 26 MB over its first MB
@pytest.mark.parametrize("bits,short,tall", [(8, 40, 240), (16, 240, 400)])
def test_cli_upscale_memory_grows_with_the_image_by_its_result_alone(micro_export, tmp_path, bits, short,
                                                                     tall) -> None:
    """The CLI handed the engine load_image's float32 RGB, so the whole result was held in float32 and
    converted back: its peak grew by 12x the 8-bit result (38.7 MB for a 256x256 PNG), where
    Engine.upscale of the file's samples grows by the result. Its output is what the float route wrote."""
    from alignvar_edge.cli import main
    from alignvar_edge.images import load_image, save_image
    rng = np.random.default_rng(4)
    full = 2 ** bits - 1
    for h in (short, tall):
        save_image(tmp_path / f"{h}.png", rng.integers(0, full + 1, (h, 160, 3)).astype(f"u{bits // 8}"), bits=bits)

    def cli(h: int):
        return lambda: main(["upscale", str(tmp_path / f"{h}.png"), str(tmp_path / f"out{h}.png"), "--engine",
                             str(micro_export), "--quiet", "--force", "--threads", "1"])
    cli(short)()                                # the first call's buffers
    grown = _peak_of(cli(tall)) - _peak_of(cli(short))
    result_grown = 16 * 3 * 160 * (tall - short) * bits // 8
    assert grown < 1.5 * result_grown, (grown, result_grown)
    with runtimes.load(micro_export, threads=1) as e:
        save_image(tmp_path / "float-route.png", e.upscale(load_image(tmp_path / f"{short}.png")[0]), bits=bits)
    assert np.array_equal(load_image(tmp_path / f"out{short}.png")[0], load_image(tmp_path / "float-route.png")[0])


def test_upscale_refuses_an_image_over_max_megapixels_before_any_work_naming_the_keyword(engine) -> None:
    """An upload of 20000x20000 was taken and failed 1.3 s later with numpy's MemoryError, after a
    4.8 GB float copy of it."""
    huge = np.broadcast_to(np.zeros(3, np.uint8), (20000, 20000, 3))       # no memory of its own
    said = r"^the image is 20000x20000 \(400\.0 MP\), over the 25 MP limit; downscale or crop it, or raise the limit " \
           r"\(max_megapixels=\)$"
    def refused() -> None:
        with pytest.raises(InputError, match=said):
            engine.upscale(huge)
    refused()                       # once first: the modules a refusal imports are not what it allocates
    assert _peak_of(refused) < 1_000_000
    with pytest.raises(InputError, match=r"^the image is 40x30 \(0\.0012 MP\), over the 0\.001 MP limit"):
        engine.upscale(Image.new("RGB", (40, 30)), max_megapixels=0.001)
    assert engine.upscale(np.zeros((30, 40), np.uint8), max_megapixels=None).shape == (120, 160)
    with pytest.raises(InputError, match=r"^image 1 \(from 0\) of upscale_many: the image is 40x30 .*0\.001 MP limit"):
        list(engine.upscale_many([np.zeros((3, 3), np.uint8), np.zeros((30, 40), np.uint8)], max_megapixels=0.001))
    for bad in (0, -1, float("nan"), "24", True):
        with pytest.raises(InputError, match=r"^max_megapixels must be a number of megapixels > 0, or None for no "
                                             rf"limit; got {re.escape(repr(bad))}$"):
            engine.upscale_many([], max_megapixels=bad)


@pytest.mark.parametrize("data", [np.random.default_rng(0).bytes(1_000_000), bytearray(b"\x89PNG\r\n"),
                                  memoryview(b"GIF89a")], ids=["bytes", "bytearray", "memoryview"])
def test_an_encoded_files_bytes_are_refused_in_one_short_line_saying_to_decode_them(engine, data) -> None:
    """An upload's bytes were taken for a path, and the message quoted all of it (3.5 MB of text)."""
    n = len(bytes(data))
    with pytest.raises(InputError, match=rf"^got {n} bytes, not an image; decode them first: "
                                         r"PIL\.Image\.open\(io\.BytesIO\(data\)\)$"):
        engine.upscale(data)


def test_a_long_path_is_quoted_cut_short() -> None:
    from alignvar_edge.images import as_float_image
    with pytest.raises(InputError, match=r"^got the path '(a/){100}'\.\.\. \(5000 characters\), not an image"):
        as_float_image("a/" * 2500)


def test_pickling_an_engine_says_to_load_one_in_each_worker(engine, micro_export) -> None:
    """pickle raised the runtime's own TypeError: "cannot pickle '...InferenceSession' object" (ONNX
    Runtime), "cannot pickle '_thread.lock' object" (torch)."""
    import pickle
    with pytest.raises(TypeError, match=rf"^a loaded onnxruntime engine cannot be pickled or sent to another "
                                        rf"process; load it in each worker process instead: "
                                        rf"alignvar_edge\.load\({re.escape(repr(str(micro_export)))}\) in the "
                                        r"pool's initializer$"):
        pickle.dumps(engine)
