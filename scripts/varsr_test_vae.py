"""Write the reference VARSR VQ-VAE checkpoint (`tests/data/upstream/varsr/vae.pth`) from its layout.

    PYTHONPATH=. python scripts/varsr_test_vae.py [--out tests/data/upstream/varsr/vae.pth]

The parity data under tests/data/upstream/varsr was made by VARSR's own classes with weights seeded
by `scripts/make_reference.py` (`_seed_weights`: one torch.Generator walks the modules in order,
conv/linear weights N(0, 1/fan_in), biases N(0, 0.05), norm affine 1 + N(0, 0.1) / N(0, 0.1),
embeddings N(0, 0.5), all rounded to fp16). Those 8.9 MB of weights follow from the seed and the
module layout alone, so the repository keeps the layout (`vae_layout.json`: each state-dict entry's
name, shape and rule, in the order the generator drew them, the SHA-256 of the tensors upstream
saved and that of the file) and this script draws them again, bit for bit, in the checkpoint format
VARSR saves. It refuses to write weights whose hash differs from the recorded one; the file's bytes
(which the tests compare with the recorded file hash) are torch.save's, so they hold for the torch
that made the reference.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent.parent / "tests" / "data" / "upstream" / "varsr"
LAYOUT = HERE / "vae_layout.json"
DEFAULT_OUT = HERE / "vae.pth"


def state_sha256(sd: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every entry's name, dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for name, t in sd.items():
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def draw_state(layout: dict) -> dict[str, torch.Tensor]:
    """The state dict the seeding rule gives for this layout (fp16, as the checkpoint holds it)."""
    gen = torch.Generator().manual_seed(int(layout["seed"]))

    def rn(shape: list[int], std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std + mean

    sd: dict[str, torch.Tensor] = {}
    for name, shape, rule in layout["entries"]:
        if rule == "zeros":                       # a buffer (the quantizer's usage counts): not drawn
            t = torch.zeros(shape)
        elif rule == "fan_in":                    # conv / linear weight
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            t = rn(shape, 1.0 / fan_in ** 0.5)
        elif rule == "bias":
            t = rn(shape, 0.05)
        elif rule == "norm_weight":
            t = rn(shape, 0.1, 1.0)
        elif rule == "norm_bias":
            t = rn(shape, 0.1)
        elif rule == "embedding":
            t = rn(shape, 0.5)
        else:
            raise ValueError(f"{LAYOUT}: unknown rule {rule!r} for {name}")
        sd[name] = t.half()
    return sd


def write_vae(out: str | os.PathLike[str] = DEFAULT_OUT) -> Path:
    """Draw the weights, check them against the recorded hash and save them as VARSR saves its VQ-VAE
    (atomically: parallel test workers may write the same file)."""
    layout = json.loads(LAYOUT.read_text())
    sd = draw_state(layout)
    got = state_sha256(sd)
    if got != layout["state_sha256"]:
        raise SystemExit(f"{LAYOUT}: the drawn weights hash to {got}, not the recorded {layout['state_sha256']}")
    from alignvar_edge.fsmodes import write_atomically     # (make_reference.py's venv imports only the hash)
    out = Path(out)
    # the layout of VARSR's training checkpoints (its trainer's state and the run's argparse args)
    ckpt = {"epoch": 1, "iter": 100, "trainer": {"vae_local": sd},
            "args": argparse.Namespace(vocab=int(layout["vocab"]))}
    with tempfile.TemporaryDirectory() as folder:
        # torch.save names the archive's records after the file: saved under out's own name, the
        # bytes are those of torch.save(ckpt, out), which make_reference.py's vae.pth is
        named = Path(folder) / out.name
        torch.save(ckpt, named)
        data = named.read_bytes()
    write_atomically(out, lambda tmp: tmp.write_bytes(data))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    print(write_vae(ap.parse_args().out))


if __name__ == "__main__":
    main()
