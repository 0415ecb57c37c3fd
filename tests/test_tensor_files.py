"""Files the toolkit writes are the same bytes for the same content: safetensors wrote its metadata
in a hash map's order, which changes between saves, so a re-saved checkpoint or a rebuilt engine's
golden outputs differed in their SHA-256 with every tensor equal."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from _runtime_fixtures import nano_model
from alignvar_edge.model.checkpoint import save_pretrained
from alignvar_edge.runtimes.golden import write_golden
from alignvar_edge.tensor_files import sort_header


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_sorted_headers_make_equal_saves_equal_bytes(tmp_path):
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.arange(4, dtype=np.int64)}
    metadata = {f"key{i}": f"value {i} é" for i in range(8)}
    hashes = set()
    for i in range(5):
        path = tmp_path / f"t{i}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        sort_header(path)
        hashes.add(_sha(path))
        with safe_open(str(path), "np") as f:
            assert f.metadata() == metadata
            assert all(np.array_equal(f.get_tensor(k), v) for k, v in tensors.items())
    assert len(hashes) == 1


def test_a_checkpoint_and_golden_outputs_saved_twice_are_the_same_bytes(tmp_path):
    model = nano_model()
    one, two = save_pretrained(model, tmp_path / "a"), save_pretrained(model, tmp_path / "b")
    assert _sha(one / "model.safetensors") == _sha(two / "model.safetensors")
    assert _metadata_keys(one / "model.safetensors") == sorted(_metadata_keys(one / "model.safetensors"))
    lr, sr = np.zeros((2, 3, 4, 4), np.float32), np.ones((2, 3, 16, 16), np.float32)
    tokens = [np.zeros((2, 1), np.int64), np.ones((2, 4), np.int64)]
    meta = {"weights_sha256": "0" * 64, "prune": "0.5", "refine": "off", "made_by": "test"}
    g1, g2 = (write_golden(tmp_path / f"g{i}.safetensors", lr, sr, tokens, meta) for i in (1, 2))
    assert _sha(g1) == _sha(g2)
    assert _metadata_keys(g1) == sorted(meta)


def _metadata_keys(path: Path) -> list[str]:
    """The metadata keys in the order the file's header holds them (two keys come out in either
    order unsorted, so equal hashes alone pass half the time without sorting)."""
    import json
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return list(header["__metadata__"])
