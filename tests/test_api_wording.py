"""Errors name an option as their caller passes it: a keyword argument of the function called from
Python (`force=True`, export's `out_dir=`), the flag on the command line (`--force`, `--out`), whose
lines stay word for word as they were."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alignvar_edge import AlignVAR, build, export
from alignvar_edge.caller import command_line, on_command_line, option, python_call
from alignvar_edge.cli import main
from alignvar_edge.errors import CheckpointError, ConfigError, OutputExistsError
from alignvar_edge.images.write import save_image


@pytest.fixture(scope="module")
def tiny() -> AlignVAR:
    return AlignVAR.from_pretrained("alignvar-tiny")


@pytest.fixture
def taken(tmp_path: Path) -> Path:
    """An output folder that exists and is someone's."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    return out


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err.strip()


def test_export_from_python_names_its_keywords(tiny: AlignVAR, taken: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError) as e:
        export(tiny, taken)
    assert str(e.value) == f"'{taken}' already exists; pass force=True to replace it or choose another out_dir="
    with pytest.raises(ConfigError) as e:
        export(tiny, tmp_path / "fused", attention="fused")
    assert str(e.value).startswith("attention='fused' needs opset=23 (") and \
        str(e.value).endswith("at opset 18 use attention='explicit'"), e.value
    with pytest.raises(ConfigError) as e:
        export(tiny, tmp_path / "plain", refine=False)
    assert str(e.value).startswith("refine=False applies to") and str(e.value).endswith("drop refine=False")
    assert (taken / "mine.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_build_from_python_names_its_keywords(taken: Path, tmp_path: Path) -> None:
    source = tmp_path / "E"
    source.mkdir()
    with pytest.raises(OutputExistsError) as e:
        build(source, "onnxruntime", out=source / "x")
    assert str(e.value) == (f"out='{source / 'x'}' lies inside the input artifact '{source}'; writing there would "
                            "replace or corrupt the input: choose an out= outside it")
    with pytest.raises(OutputExistsError) as e:
        build(source, "onnxruntime", out=taken)
    assert str(e.value) == f"'{taken}' already exists; pass force=True to replace it or choose another out="
    with pytest.raises(OutputExistsError) as e:
        build(source, "onnxruntime", out=taken, force=True)
    assert "force=True only replaces our own outputs" in str(e.value) and "--" not in str(e.value)


def test_the_command_line_names_the_flags_word_for_word(taken: Path, tmp_path: Path, capsys) -> None:
    source = tmp_path / "E"
    source.mkdir()
    assert _cli_error(capsys, ["build", str(source), "--target", "onnxruntime", "--out", str(source / "x")]) == (
        f"alignvar-edge build: error: --out '{source / 'x'}' lies inside the input artifact '{source}'; writing "
        "there would replace or corrupt the input: choose an --out outside it")
    assert _cli_error(capsys, ["export", "alignvar-tiny", "--out", str(taken)]) == (
        f"alignvar-edge export: error: '{taken}' already exists; pass --force to replace it or choose another --out")
    assert _cli_error(capsys, ["export", "alignvar-tiny", "--out", str(tmp_path / "f"), "--attention", "fused"]) \
        .startswith("alignvar-edge export: error: --attention fused needs --opset 23 (")


def test_save_image_and_save_pretrained_name_overwrite_in_python_and_force_in_a_verb(tiny: AlignVAR,
                                                                                     taken: Path) -> None:
    image = taken / "x4.png"
    image.write_bytes(b"theirs")
    rgb = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(OutputExistsError, match=r"^\S+x4.png already exists; pass overwrite=True to replace it$"):
        save_image(image, rgb)
    with pytest.raises(CheckpointError, match="choose another directory or pass overwrite=True$"):
        tiny.save_pretrained(taken)
    with command_line():               # as `upscale` and `train` call them
        with pytest.raises(OutputExistsError, match=r"already exists; pass --force to replace it$"):
            save_image(image, rgb)
        with pytest.raises(CheckpointError, match="--force replaces only checkpoints"):
            tiny.save_pretrained(taken, overwrite=True)
    assert image.read_bytes() == b"theirs" and (taken / "mine.txt").read_text() == "mine"


def test_the_function_the_user_called_names_the_options() -> None:
    @python_call(out="out_dir")
    def inner() -> str:
        return option("out")

    @python_call()
    def outer() -> str:
        return inner()

    assert inner() == "out_dir=" and outer() == "out="       # not the keyword of a function called inside
    assert (option("force", True), option("refine", False), option("opset", 18), option("out", Path("a b"))) == \
        ("force=True", "refine=False", "opset=18", "out='a b'")
    with command_line():
        assert inner() == "--out"
        assert (option("force", True), option("refine", False), option("opset", 18), option("out", Path("a b")),
                option("calib_tiles", 4)) == ("--force", "--no-refine", "--opset 18", "--out 'a b'", "--calib-tiles 4")


def test_on_command_line_tells_a_verb_from_a_python_call() -> None:
    @python_call(out="out_dir")
    def public() -> bool:
        return on_command_line()

    assert not on_command_line() and not public()
    with command_line():               # a verb calling a public function is still the command line
        assert on_command_line() and public()
    assert not on_command_line()


def test_the_options_classes_name_their_fields_in_python_and_their_flags_in_a_verb(tmp_path: Path) -> None:
    """BenchOptions, QuantizeOptions and DeployOptions validate what a Python caller set by its field
    name (`min_token_agreement=1.5`); they spoke the CLI's flags (`--min-token-agreement`) to it."""
    from alignvar_edge.bench.runner import BenchOptions
    from alignvar_edge.deploy import DeployOptions
    from alignvar_edge.errors import InputError
    from alignvar_edge.quantize.artifact import QuantizeOptions
    from alignvar_edge.quantize.sensitivity import FidelityTarget
    cases = [(lambda: BenchOptions(min_token_agreement=1.5), InputError,
              "min_token_agreement=1.5 must be a number in [0, 1]", "--min-token-agreement 1.5 must be"),
             (lambda: BenchOptions(image_overlap=-1), InputError,
              "image_overlap=-1 must be >= 0 LR pixels", "--overlap -1 must be"),
             (lambda: BenchOptions(runs=0), InputError,
              "runs must be >= 1, warmup >= 0 and tiles >= 1; got runs=0, warmup=3, tiles=8", "got --runs 0,"),
             (lambda: QuantizeOptions(fidelity=FidelityTarget(min_token_agreement=float("nan"))), ConfigError,
              "min_token_agreement=nan must be a number in [0, 1]", "--min-token-agreement nan must be"),
             (lambda: QuantizeOptions(fidelity=FidelityTarget(max_psnr_drop=-1.0)), ConfigError,
              "max_psnr_drop=-1.0 must be a finite number >= 0", "--max-psnr-drop -1.0 must be"),
             (lambda: QuantizeOptions(percentile=99.0), ConfigError,
              "percentile= applies to method='percentile' only", "--percentile applies to --method percentile only"),
             (lambda: QuantizeOptions(precision="fp16", reduce_range=False), ConfigError,
              "reduce_range=False applies to precision='int8' only", "--no-reduce-range applies to --precision int8"),
             (lambda: QuantizeOptions(target="coreml", search=False), ConfigError,
              "search=False applies to target='onnxruntime' or target='tensorrt' only: target='coreml' quantizes",
              "--no-search applies to --target onnxruntime or --target tensorrt only: --target coreml quantizes"),
             (lambda: QuantizeOptions(target="openvino", fidelity=FidelityTarget(0.999, 0.1)), ConfigError,
              "min_token_agreement=/max_psnr_drop= applies to", "--min-token-agreement/--max-psnr-drop applies to"),
             (lambda: QuantizeOptions(target="coreml", tiles=8), ConfigError,
              "tiles= applies where a calibration set is read: target='coreml' precision='int8' uses none",
              "--tiles applies where a calibration set is read: --target coreml --precision int8 uses none"),
             # the option that is wrong, alone: not "got --runs 0, --warmup None"
             (lambda: DeployOptions(out=str(tmp_path / "d"), runs=0), InputError,
              "runs=0 must be >= 1", "--runs 0 must be >= 1"),
             (lambda: DeployOptions(out=str(tmp_path / "d"), warmup=-1), InputError,
              "warmup=-1 must be >= 0", "--warmup -1 must be >= 0"),
             (lambda: DeployOptions(out=str(tmp_path / "d"), calib=str(tmp_path / "none")), InputError,
              f"calib='{tmp_path / 'none'}' does not exist", f"--calib {tmp_path / 'none'} does not exist")]
    for options, error, in_python, in_a_verb in cases:
        with pytest.raises(error) as e:
            options().validate()
        assert str(e.value).startswith(in_python) and "--" not in str(e.value), e.value
        with command_line(), pytest.raises(error) as e:
            options().validate()
        assert in_a_verb in str(e.value) and "None" not in str(e.value), e.value
