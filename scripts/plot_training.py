"""Plot the loss curves of a default-model run into a PNG.

    python scripts/plot_training.py runs/default docs/training-loss.png
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path) -> dict[str, list[float]]:
    cols: dict[str, list[float]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                cols.setdefault(k, []).append(float(v))
    return cols


def main() -> None:
    ap = argparse.ArgumentParser(description="Plot the loss curves of a default-model run into a PNG.")
    ap.add_argument("run", type=Path, help="the run folder (its vqvae/ and transformer/ hold log.csv)")
    ap.add_argument("out", type=Path, help="the PNG to write")
    args = ap.parse_args()
    run, out = args.run, args.out
    vq, tf = read(run / "vqvae" / "log.csv"), read(run / "transformer" / "log.csv")
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(vq["step"], vq["l1"], label="L1")
    ax[0].plot(vq["step"], vq["vq"], label="VQ")
    ax[0].set_title("VQ-VAE losses")
    ax[1].plot(vq["step"], vq["psnr"], label="reconstruction PSNR (train crops)")
    ax[1].set_title("VQ-VAE PSNR (dB)")
    ax[2].plot(tf["step"], tf["ce"], label="CE")
    ax[2].plot(tf["step"], [h * 100 for h in tf["hcc"]], label="HCC x100")
    ax2 = ax[2].twinx()
    ax2.plot(tf["step"], tf["token_acc"], color="gray", label="token acc")
    ax[2].set_title("transformer")
    for a in ax:
        a.set_xlabel("step")
        a.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
