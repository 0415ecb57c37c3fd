"""OpenVINO half precision: the hint each engine sets, the per-group record, the default's warning."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from test_quantize import export  # noqa: F401  (the cached lively micro export)

pytest.importorskip("openvino")

from alignvar_edge import runtimes  # noqa: E402
from alignvar_edge.errors import ArtifactError  # noqa: E402
from alignvar_edge.runtimes.openvino.backend import PrecisionWarning, compile_config, inference_precision  # noqa: E402


def test_hint_follows_the_build_precision_and_device() -> None:
    assert compile_config("CPU", True, None, None, "bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    assert compile_config("CPU", True, None, None, "fp32")["INFERENCE_PRECISION_HINT"] == "f32"
    assert compile_config("GPU.0", True, None, None, "fp16")["INFERENCE_PRECISION_HINT"] == "f16"
    assert compile_config("CPU", True, None, None, "fp16")["INFERENCE_PRECISION_HINT"] == "f32"
    assert "INFERENCE_PRECISION_HINT" not in compile_config("CPU", False, None, None, "fp32")
    assert inference_precision("int8", "CPU") == "f32"


def _default_cpu_precision() -> str:
    import openvino as ov
    v = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    return "bf16" if "bfloat16" in v else "f16" if "float16" in v else "f32"


def test_fp32_engine_records_per_group_precision_and_flags_the_default(export: Path, tmp_path: Path) -> None:  # noqa: F811
    out = runtimes.build(export, "openvino", "fp32", out=tmp_path / "ov")
    m = json.loads((out / "manifest.json").read_text())
    assert m["extra"]["inference_precision_hint"] == "f32"
    cp = m["extra"]["compute_precision"]
    assert {"transformer_matmuls", "decoder_convs", "logits_head"} <= set(cp)
    assert all(set(v) == {"f32"} for v in cp.values())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with runtimes.load(out) as e:
            assert e.compute_precision == "f32"
        assert not [x for x in w if issubclass(x.category, PrecisionWarning)]
        with runtimes.load(out, parity=False) as e:
            assert e.compute_precision == _default_cpu_precision()
        flagged = [x for x in w if issubclass(x.category, PrecisionWarning)]
        assert len(flagged) == (0 if _default_cpu_precision() == "f32" else 1)


def test_bf16_build_keeps_the_tokens_or_writes_nothing(export: Path, tmp_path: Path) -> None:  # noqa: F811
    if _default_cpu_precision() != "bf16":
        pytest.skip("this CPU has no bf16 units (needs AVX512-BF16 or AMX)")
    out = tmp_path / "bf16"
    try:
        runtimes.build(export, "openvino", "bf16", out=out)
    except ArtifactError as e:
        assert "ignores per-node f32 islands" in str(e) and not out.exists()
        return
    m = json.loads((out / "manifest.json").read_text())
    assert m["parity"]["tokens"]["overall"] >= 0.99
    assert m["extra"]["inference_precision_hint"] == "bf16"
    assert any("bf16" in v for v in m["extra"]["compute_precision"].values())
