"""`alignvar_edge.quantize` from Python: the documented call quantizes an export whose int8 engine
ONNX Runtime builds and runs, its errors name Python keywords (`tiles=`, not `--tiles`), and an int8
build of the fp32 export names the call to make first (the command, on the command line)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from alignvar_edge import build
from alignvar_edge.caller import command_line
from alignvar_edge.errors import ConfigError, InputError, ParityError
from alignvar_edge.manifest import load_verified, read_manifest, write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOC = Path(__file__).resolve().parent.parent / "docs" / "quantization.md"


def _from_python_snippet() -> str:
    """The python block of docs/quantization.md's "From Python" section."""
    section = re.search(r"^## From Python\n(.*?)(?=^## )", DOC.read_text(), flags=re.S | re.M)
    assert section is not None, "docs/quantization.md lost its From Python section"
    (code,) = re.findall(r"^```python\n(.*?)^```", section.group(1), flags=re.S | re.M)
    return code


def test_the_documented_python_call_quantizes_and_its_int8_engine_upscales(
        micro_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs' example, run as written on the micro export in place of out/tiny."""
    code = _from_python_snippet()
    assert '"out/tiny"' in code
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (24, 20), (90, 120, 150)).save("photo.png")
    said: list[str] = []
    scope = {"print": said.append}
    exec(code.replace('"out/tiny"', repr(str(micro_export))), scope)
    quantized = load_verified(tmp_path / "out" / "tiny-int8-py")
    assert quantized.precision == "int8" and quantized.quantization["format"] == "onnx-qdq"
    assert quantized.parity["target_met"] is True and any(line.startswith("wrote ") for line in said)
    engine = read_manifest(tmp_path / "out" / "tiny-ort-int8-py")
    assert engine.backend == "onnxruntime" and engine.precision == "int8"
    assert isinstance(scope["sr"], Image.Image) and scope["sr"].size == (96, 80)


def test_the_public_names_are_the_quantize_passes_own() -> None:
    import alignvar_edge.quantize as q
    from alignvar_edge.quantize import artifact, sensitivity
    assert (q.quantize_artifact, q.QuantizeOptions, q.calibration_for) == (
        artifact.quantize_artifact, artifact.QuantizeOptions, artifact.calibration_for)
    assert q.FidelityTarget is sensitivity.FidelityTarget
    assert sorted(q.__all__) == ["FidelityTarget", "QuantizeOptions", "calibration_for", "quantize_artifact"]
    with pytest.raises(AttributeError):
        q.quantize          # noqa: B018 - no such name


def test_an_int8_build_of_the_fp32_export_names_the_python_call_from_python(
        micro_export: Path, tmp_path: Path) -> None:
    """From Python the refusal gave `alignvar-edge quantize ...`, a command; now the call, which
    runs as pasted (into the folder the command writes), and builds."""
    src = tmp_path / "tiny"
    shutil.copytree(micro_export, src)
    with pytest.raises(InputError) as e:
        build(src, "onnxruntime", precision="int8", out=tmp_path / "e")
    said = str(e.value)
    assert said.startswith("onnxruntime int8 engines build from quantize's output (explicit Q/DQ, uint8 activations, "
                           "reduce_range on x86 without VNNI), not the fp32 export: build from the output of `from "
                           "alignvar_edge.quantize import QuantizeOptions, quantize_artifact; quantize_artifact("), said
    assert "alignvar-edge" not in said and "--" not in said and not (tmp_path / "e").exists()
    call = re.search(r"`(.*?)`", said)
    assert call is not None
    exec(call.group(1), {})
    engine = build(tmp_path / "tiny-int8-onnxruntime", "onnxruntime", precision="int8", out=tmp_path / "e",
                   threads=1)
    assert read_manifest(engine).precision == "int8"
    with command_line(), pytest.raises(InputError) as e:
        build(src, "onnxruntime", precision="int8", out=tmp_path / "e2")
    assert str(e.value).endswith(f"build from the output of `alignvar-edge quantize {src} --precision int8 --target onnxruntime`")


def test_quantize_errors_name_python_keywords_in_python_and_flags_in_a_verb(
        micro_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alignvar_edge.quantize import FidelityTarget, QuantizeOptions, quantize_artifact
    from alignvar_edge.quantize import artifact
    from alignvar_edge.quantize.sensitivity import Fidelity, SearchResult

    opset23 = tmp_path / "opset23"
    shutil.copytree(micro_export, opset23)
    m = read_manifest(opset23)
    m.opset = 23
    write_manifest(opset23, m)
    fused = tmp_path / "fused"
    shutil.copytree(micro_export, fused)
    m = read_manifest(fused)
    m.extra["attention"] = {"form": "fused"}
    write_manifest(fused, m)
    missing = tmp_path / "none"
    cases = [  # (export, options, error, in Python, in a verb)
        (micro_export, QuantizeOptions(calib=str(missing)), InputError,
         f"calib='{missing}' does not exist; pass a folder of photographs or builtin",
         f"--calib {missing} does not exist"),
        (opset23, QuantizeOptions(), ConfigError, "Re-export with opset=18 or 20", "Re-export with --opset 18 or 20"),
        (fused, QuantizeOptions(precision="fp16"), ConfigError,
         "(ONNX Attention, RotaryEmbedding, RMSNormalization; attention='fused'), whose fp16 graph misses the token "
         "target even with every half group in f32: re-export with attention='explicit' opset=18",
         "re-export with --attention explicit --opset 18")]
    for n, (src, opts, error, in_python, in_a_verb) in enumerate(cases):
        with pytest.raises(error) as e:
            quantize_artifact(src, tmp_path / f"q{n}", opts)
        assert in_python in str(e.value) and "--" not in str(e.value), e.value
        with command_line(), pytest.raises(error) as e:
            quantize_artifact(src, tmp_path / f"q{n}", opts)
        assert in_a_verb in str(e.value), e.value

    # a result that misses its target even with every group in float (forced: the search's outcome)
    miss = Fidelity(tiles=8, token_agreement=0.5, per_scale=[0.5], identical_samples=0.0, psnr_y_hr=20.0,
                    psnr_y_hr_fp32=21.0, psnr_y_vs_fp32=30.0, mse_vs_fp32=0.1, mse_hr_fp32=0.1)
    monkeypatch.setattr(artifact, "search", lambda *a, **k: SearchResult(False, ["head"], miss, miss))
    opts = QuantizeOptions(tiles=8, val_tiles=8, fidelity=FidelityTarget(0.99, 0.1))
    with pytest.raises(ParityError) as e:
        quantize_artifact(micro_export, tmp_path / "q", opts)
    assert str(e.value).endswith("loosen the target, try another method= or more tiles=, or use precision='fp16'")
    with command_line(), pytest.raises(ParityError) as e:
        quantize_artifact(micro_export, tmp_path / "q", opts)
    assert str(e.value).endswith("loosen the target, try another --method or more --tiles, or use --precision fp16")
    assert not (tmp_path / "q").exists()


def test_a_build_from_an_output_that_missed_its_target_says_how_to_quantize_again_in_the_callers_words() -> None:
    from alignvar_edge.quantize.records import missed_target_warning
    missed = {"target_met": False, "validation": {"tiles": 8}}
    for search, in_python, in_a_verb in (
            ({"float_groups": []}, "more tiles=, another method= or precision='fp16'",
             "more --tiles, another --method or --precision fp16"),
            (None, "quantized with search=False: quantize again without it",
             "quantized with --no-search: quantize again without it")):
        said = missed_target_warning(missed, {"search": search})
        assert said is not None and said.endswith(in_python) and "--" not in said, said
        with command_line():
            said = missed_target_warning(missed, {"search": search})
        assert said is not None and said.endswith(in_a_verb), said


@pytest.mark.parametrize("tokens, drop, refused", [
    (0.99, float("nan"), "max_psnr_drop=nan must be a finite number >= 0"),
    (0.99, float("inf"), "max_psnr_drop=inf must be a finite number >= 0"),
    (0.99, True, "max_psnr_drop=True must be a finite number >= 0"),
    (0.99, -1.0, "max_psnr_drop=-1.0 must be a finite number >= 0"),
    (True, 0.1, "min_token_agreement=True must be a number in [0, 1]"),
])
def test_a_fidelity_target_the_flags_would_refuse_is_refused_before_any_work(
        tokens: object, drop: object, refused: str, tmp_path: Path) -> None:
    """FidelityTarget(0.99, nan) passed a `< 0` check, ran the whole search and then raised "misses
    the target (drop <= nan dB) ... drop +0.0000 dB"; the flag --max-psnr-drop takes a finite number
    >= 0 only. Refused before the export is even read (there is none here)."""
    from alignvar_edge.quantize import FidelityTarget, QuantizeOptions, quantize_artifact
    opts = QuantizeOptions(fidelity=FidelityTarget(tokens, drop))  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as e:
        quantize_artifact(tmp_path / "no-export", tmp_path / "q", opts)
    assert str(e.value) == refused
    with command_line(), pytest.raises(ConfigError) as e:
        quantize_artifact(tmp_path / "no-export", tmp_path / "q", opts)
    assert str(e.value).startswith(f"--{refused.split('=')[0].replace('_', '-')} ")
    assert not (tmp_path / "q").exists()


def test_a_target_that_quantizes_in_its_build_has_its_options_checked_before_its_hint(tmp_path: Path) -> None:
    """quantize_artifact gave the build hint of OpenVINO and Core ML before checking the options:
    precision='int4' got a hint instead of a refusal, and Core ML's val_tiles=8 a hint whose
    calibration_for call then raised; Core ML's hint handed its build a calibration set it never reads."""
    from alignvar_edge.quantize import QuantizeOptions, quantize_artifact
    with pytest.raises(ConfigError, match=r"^precision must be one of fp16, int8, got 'int4'$"):
        quantize_artifact(tmp_path / "e", tmp_path / "q", QuantizeOptions(precision="int4", target="openvino"))
    with pytest.raises(ConfigError, match=r"^val_tiles= applies to target='onnxruntime' or target='tensorrt' only"):
        quantize_artifact(tmp_path / "e", tmp_path / "q", QuantizeOptions(target="coreml", val_tiles=8))
    hints = {}
    for target in ("openvino", "coreml"):
        with pytest.raises(ConfigError) as e:
            quantize_artifact(tmp_path / "e", tmp_path / "q", QuantizeOptions(target=target))
        hints[target] = re.findall(r"`(.*?)`", str(e.value))[0]
    assert hints == {"openvino": "alignvar_edge.build(src, 'openvino', 'int8', "
                                 "calibration=alignvar_edge.quantize.calibration_for(src, opts))",
                     "coreml": "alignvar_edge.build(src, 'coreml', 'int8-weights')"}
    assert not (tmp_path / "q").exists()
