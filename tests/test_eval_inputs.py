"""What eval scores: an image in any layout `upscale` takes, as the RGB the model sees."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.bench.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_gray_and_alpha_image_is_scored_as_its_gray() -> None:
    """`as_float_image` of a PIL LA image is HxWx2 (gray and alpha), as np.asarray of it is, and eval
    refused it ("pass HxW or HxWx1 (gray), HxWx3 (RGB) or HxWx4 (RGBA)"), though upscale takes it.
    Its alpha is left out, as the model never sees it: it scores as its gray image does."""
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    model = AlignVAR(AlignVARConfig.from_preset("micro")).eval()
    gray = (np.add.outer(np.arange(40), np.arange(36)) * 3 % 256).astype(np.uint8)
    alpha = np.full_like(gray, 200)
    la = Image.fromarray(np.dstack([gray, alpha]), "LA")

    def scores(image: object) -> object:
        return evaluate(model, [("photo", image)])["images"]
    assert scores(la) == scores(np.dstack([gray, alpha])) == scores(Image.fromarray(gray, "L"))
