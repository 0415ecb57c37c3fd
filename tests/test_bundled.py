"""Every model `model/bundled.py` lists ships whole (`scripts/train_default.py --install-from RUN
--name NAME` writes it): config, fp16-stored weights, golden outputs made for those weights and
shaped by the model's own tile and scales, and no folder in pretrained/ that the list leaves out.
Together they stay within the package's budget for weights. Reads files only: no model is run."""
from __future__ import annotations

import pytest
from safetensors import safe_open

from alignvar_edge.model.bundled import BUNDLED, DEFAULT_CHECKPOINT, PRETRAINED_DIR
from alignvar_edge.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_config
from alignvar_edge.runtimes.golden import GOLDEN_FILE, load_golden

BUDGET_BYTES = 25_000_000          # everything under pretrained/, every bundled model together


def test_every_folder_in_pretrained_is_a_listed_bundled_model() -> None:
    # an installed model that bundled.py does not list ships as dead weight, unreachable by name
    assert DEFAULT_CHECKPOINT in BUNDLED
    assert {p.name for p in PRETRAINED_DIR.iterdir() if p.is_dir()} == set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_a_bundled_model_ships_fp16_weights_and_golden_outputs_of_its_own_tile(name: str) -> None:
    d = PRETRAINED_DIR / name
    assert {CONFIG_FILE, WEIGHTS_FILE, GOLDEN_FILE} <= {p.name for p in d.iterdir()}
    with safe_open(str(d / WEIGHTS_FILE), "pt") as f:
        assert f.metadata().get("weights_dtype") == "float16"
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}
    c = load_config(d)
    lr, sr, tokens = load_golden(d)                       # refuses golden outputs of other weights
    assert lr.shape[1:] == (3, c.lr_size, c.lr_size) and sr.shape[1:] == (3, c.hr_size, c.hr_size)
    assert [t.shape[1] for t in tokens] == [p * p for p in c.patch_nums]


def test_the_bundled_models_fit_the_package_budget() -> None:
    total = sum(p.stat().st_size for p in PRETRAINED_DIR.rglob("*") if p.is_file())
    assert total <= BUDGET_BYTES, f"{total / 1e6:.1f} MB of bundled models, over {BUDGET_BYTES / 1e6:.0f} MB"
