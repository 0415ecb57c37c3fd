"""What `alignvar_edge.` offers in a REPL or notebook: the public names and the subpackages the docs
import from, each reachable as an attribute before it is imported, with no PyTorch on a device."""
from __future__ import annotations

import json
import subprocess
import sys

import alignvar_edge

DOCUMENTED = ["bench", "export", "images", "model", "quantize", "runtimes", "samples", "train"]


def test_dir_offers_the_documented_subpackages_and_no_internal_module() -> None:
    """dir() listed every module of the package folder: muted, jsonsafe, onnx_wire, safe_stop..."""
    assert sorted(dir(alignvar_edge)) == sorted({*alignvar_edge.__all__, *DOCUMENTED})


def test_each_subpackage_offered_is_an_attribute_before_it_is_imported_and_without_torch() -> None:
    """`alignvar_edge.bench` raised AttributeError until something imported it, though dir() offered
    it. On a device install (no PyTorch) each is there, and none imports torch to get there."""
    code = ("import sys, json; sys.modules['torch'] = None\n"       # `import torch` now raises ImportError
            "import alignvar_edge\n"
            f"offered = {DOCUMENTED!r}\n"
            "before = [n for n in offered if f'alignvar_edge.{n}' in sys.modules]\n"
            "print(json.dumps([before, {n: getattr(alignvar_edge, n).__name__ for n in offered}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    before, reached = json.loads(out.stdout)
    assert "bench" not in before                    # reached through the attribute, not imported already
    assert reached == {n: f"alignvar_edge.{n}" for n in DOCUMENTED}
