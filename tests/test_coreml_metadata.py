"""What an app developer is told about a Core ML package: what Xcode shows of it (its spec's metadata,
read back with coremltools on Linux) tells which weights it holds, two checkpoints of one
configuration told apart by the checkpoint's name as given and the weights' SHA-256 the manifest
records, with alignvar-edge's version under its own key; its description points to the README's
blend; and the README and docs/apple.md say how to take pixels out of a UIImage / CGImage."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from _runtime_fixtures import sharp_model
from alignvar_edge import __version__, runtimes
from alignvar_edge.manifest import load_verified

pytestmark = pytest.mark.usefixtures("one_torch_thread")

pytest.importorskip("coremltools", reason="coremltools is not installed")

PREFIX = "com.alignvar-edge."


def _metadata(engine: Path) -> Any:
    """The package's spec metadata (author, version, licence, user-defined keys) as Xcode reads it."""
    import coremltools as ct
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.models.MLModel(str(engine / "model.mlpackage"), skip_model_load=True).get_spec().description.metadata


@pytest.fixture(scope="module")
def two_packages(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    """(the checkpoint as given, its package) for two checkpoints of `micro` with different weights."""
    root = tmp_path_factory.mktemp("cm-meta")
    built = []
    for seed in (0, 1):
        ckpt = root / f"micro-seed{seed}"
        sharp_model("micro", seed=seed).save_pretrained(str(ckpt))
        built.append((str(ckpt), runtimes.build(str(ckpt), "coreml", out=root / f"eng{seed}", proxy=False)))
    return built


def test_two_checkpoints_give_packages_xcode_tells_apart(two_packages: list[tuple[str, Path]]) -> None:
    metas = [_metadata(engine) for _, engine in two_packages]
    for (given, engine), meta in zip(two_packages, metas):
        ud, m = meta.userDefined, load_verified(engine)
        # its name alone: the metadata ships inside the app, and a path names the developer's folders
        assert ud[PREFIX + "checkpoint"] == Path(given).name and m.model.display_name == given
        # the manifest's record of the weights, not a second hash of another kind
        assert ud[PREFIX + "weights_sha256"] == m.model.weights_sha256 and len(m.model.weights_sha256) == 64
        assert meta.versionString == f"weights {m.model.weights_sha256[:12]}"
        assert ud[PREFIX + "version"] == __version__ and ud[PREFIX + "model"] == "micro"
        assert m.extra["user_defined_metadata"]["weights_sha256"] == m.model.weights_sha256
        # the converter is named as the converter; no licence is claimed for weights it did not make
        assert meta.author.startswith("alignvar-edge (the converter;") and meta.license == ""
    a, b = (dict(meta.userDefined) for meta in metas)
    assert {k for k in a if a[k] != b.get(k)} == {PREFIX + "checkpoint", PREFIX + "weights_sha256"}
    assert metas[0].versionString != metas[1].versionString


def test_the_description_points_to_the_readme_section_that_holds_the_blend(two_packages: list[tuple[str, Path]]
                                                                            ) -> None:
    """The description sends the app developer to the recipe's one owner, the README's "Whole images"
    (the metadata holds no blending rule to see), and that README is in the directory beside the package."""
    _, engine = two_packages[0]
    text = _metadata(engine).shortDescription
    assert text.endswith('blend as README.md, shipped beside this package, says in "Whole images"'), text
    assert "user-defined metadata" not in text
    readme = (engine / "README.md").read_text()
    assert "\n## Whole images\n" in readme and "Blend: along each axis" in readme
    assert "README.md" in load_verified(engine).files         # listed and hashed with the package


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_readme_and_apple_doc_say_how_to_take_pixels_from_a_uiimage(two_packages: list[tuple[str, Path]]
                                                                          ) -> None:
    """Upright by imageOrientation, in the image's own colour space (the samples as `upscale` gives a file's),
    straight alpha through vImage both ways; the image input's alpha and colour where it has one. The
    package's README carries the section and docs/apple.md its every line, so the two cannot drift."""
    from alignvar_edge.runtimes.coreml.readme import from_apple_image
    _, engine = two_packages[0]
    readme = (engine / "README.md").read_text()
    section = "\n".join(from_apple_image(False))
    assert section in readme and "## From a UIImage / CGImage" in section
    for words in ("UIImage.imageOrientation", "own `colorSpace`", "samples as stored, not converted to sRGB",
                  "vImageUnpremultiplyData_RGBA8888", "before step 1", "vImagePremultiplyData_RGBA8888",
                  "ICC profile back"):
        assert words in section, words
    assert "--image-input" not in section                  # a float package has no image input to speak of
    image = "\n".join(from_apple_image(True))
    assert "drops its alpha" in image and "kCVPixelFormatType_32BGRA" in image
    doc = _words((Path(__file__).resolve().parent.parent / "docs" / "apple.md").read_text())
    for line in from_apple_image(True)[2:]:
        assert _words(line) in doc, line
