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


def test_an_image_a_column_reproduces_exactly_is_left_out_of_every_mean_and_named() -> None:
    """A flat image's degraded LR is flat, so its bicubic upscale is the HR: PSNR-Y inf, and
    bicubic's mean was inf (text and JSON), hiding the other images. The means now leave it out of
    every column alike, so the columns stay compared on the same images, and say so."""
    import math

    from alignvar_edge.bench.evaluate import format_eval
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    model = AlignVAR(AlignVARConfig.from_preset("micro")).eval()
    photo = (np.add.outer(np.arange(40), np.arange(36)) * 3 % 256).astype(np.uint8)
    flat = np.full((40, 36), 128, np.uint8)
    result = evaluate(model, [("photo", photo), ("flat", flat)])
    by_name = {s["name"]: s for s in result["images"]}
    assert math.isinf(by_name["flat"]["psnr"]["bicubic"])             # the case itself
    for kind, mean in result["mean_psnr_y"].items():
        assert mean == by_name["photo"]["psnr"][kind] and math.isfinite(mean)
        assert result["mean_ssim_y"][kind] == by_name["photo"]["ssim"][kind]
    assert result["left_out_of_means"] == ["flat"]
    assert ("the means leave out 1 of 2 image(s) that a column reproduces exactly (infinite PSNR-Y): flat"
            in format_eval(result).splitlines())
    # every image reproduced exactly: nothing to leave out, and the infinite mean is the truth
    alone = evaluate(model, [("flat", flat)])
    assert alone["left_out_of_means"] == [] and math.isinf(alone["mean_psnr_y"]["bicubic"])
