#!/usr/bin/env python3
"""Fetch 27 freely licensed photographs from Debian's wallpaper packages, for training on more than
the eight bundled sample photos.

    python scripts/fetch_debian_photos.py photos/debian
    python scripts/fetch_debian_photos.py photos/debian --debs /tmp/debs   # .deb files already here

Three packages from deb.debian.org (bookworm), each pinned by SHA-256, are read with the standard
library alone (a .deb is an `ar` archive holding `data.tar.xz`), so this runs on any OS with
Python and Pillow. Only the photographs listed below are kept (no illustrations or renders); each
is resized with Lanczos to at most --max-side pixels on its long side (2040 by default, DIV2K's
size, so that a training crop holds detail rather than a patch of out-of-focus background) and
written as PNG to OUT/train or OUT/heldout. The held-out split is every fifth photograph of the
sorted list starting at the third: fixed before any model saw them. OUT/SOURCES.md names each
photograph's author and licence (CC-BY-4.0, CC-BY-SA-4.0 or GPL-2+, as the packages' copyright files
state). The output appears whole or not at all.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

MIRROR = "http://deb.debian.org/debian/pool/main/"
# (pool path, SHA-256 of the .deb, {member inside data.tar: (author, licence)})
LOMIRI = "./usr/share/backgrounds/"
MATE = "./usr/share/backgrounds/mate/nature/"
PACKAGES = [
    ("l/lomiri-wallpapers/lomiri-wallpapers-16.04_20.04.0-2_all.deb",
     "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab", {
         LOMIRI + "Bridge_by_Sander_Klootwijk.jpg": ("Sander Klootwijk", "CC-BY-SA-4.0"),
         LOMIRI + "Dragonfly_by_Bolly.jpg": ("Bolly", "CC-BY-SA-4.0"),
         LOMIRI + "Picture_0B_by_freespace.jpg": ("freespace", "CC-BY-SA-4.0"),
         LOMIRI + "Picture_1A_by_freespace.jpg": ("freespace", "CC-BY-SA-4.0"),
         LOMIRI + "Wine_by_Jakkub_Mede.jpg": ("Jakkub Mede", "CC-BY-SA-4.0"),
         LOMIRI + "aitzgorri_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
         LOMIRI + "analogpattern_by_Peter_Nerlich.jpg": ("Peter Nerlich", "CC-BY-SA-4.0"),
         LOMIRI + "free_by_Peter_Nerlich.jpg": ("Peter Nerlich", "CC-BY-SA-4.0"),
         LOMIRI + "friends_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
         LOMIRI + "greentock_by_Peter_Nerlich.jpg": ("Peter Nerlich", "CC-BY-SA-4.0"),
         LOMIRI + "life_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
         LOMIRI + "picosdeeuropa_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
         LOMIRI + "seeding_by_Clements_Engelhardt.jpg": ("Clements Engelhardt", "CC-BY-SA-4.0"),
         LOMIRI + "sunset_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
     }),
    ("l/lomiri-wallpapers/lomiri-wallpapers-20.04_20.04.0-2_all.deb",
     "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709", {
         LOMIRI + "Kleiber_by_Lukas_Baubkus.jpg": ("Lukas Baubkus", "CC-BY-SA-4.0"),
     }),
    ("m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb",
     "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04", {
         MATE + "Aqua.jpg": ("Charles Barbin", "GPL-2+"),
         MATE + "Blinds.jpg": ("Lennart Poettering, Andrea Cimitan", "GPL-2+"),
         MATE + "Dune.jpg": ("Marco Cogoni, Hylke Bons", "GPL-2+"),
         MATE + "FreshFlower.jpg": ("Jens Ansorg", "GPL-2+"),
         MATE + "Garden.jpg": ("Charles Barbin", "GPL-2+"),
         MATE + "GreenMeadow.jpg": ("Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
         MATE + "LadyBird.jpg": ("Charles Barbin", "GPL-2+"),
         MATE + "RainDrops.jpg": ("blackcombwhistler07", "GPL-2+"),
         MATE + "Storm.jpg": ("the MATE backgrounds' authors (AUTHORS file)", "GPL-2+"),
         MATE + "TwoWings.jpg": ("the MATE backgrounds' authors (AUTHORS file)", "GPL-2+"),
         MATE + "Wood.jpg": ("the MATE backgrounds' authors (AUTHORS file)", "GPL-2+"),
         MATE + "YellowFlower.jpg": ("Charles Barbin", "GPL-2+"),
     }),
]


def fail(msg: str) -> None:
    sys.exit(f"fetch_debian_photos: {msg}")


def deb_bytes(pool_path: str, sha256: str, debs: Path | None) -> bytes:
    name = pool_path.rsplit("/", 1)[1]
    if debs is not None:
        local = debs / name
        if not local.is_file():
            fail(f"--debs {debs} has no {name}; download it from {MIRROR + pool_path}")
        data = local.read_bytes()
        where = str(local)
    else:
        url = MIRROR + pool_path
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
        except OSError as e:
            fail(f"cannot download {url} ({e}); download it elsewhere and pass its folder as --debs")
        where = url
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        fail(f"{where} has SHA-256 {got}, not the pinned {sha256}: Debian replaced the package, so this "
             "list no longer names what it fetches; update PACKAGES in this script")
    return data


def data_tar(deb: bytes, name: str) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (an ar archive: 8-byte magic, then 60-byte member headers)."""
    if not deb.startswith(b"!<arch>\n"):
        fail(f"{name} is not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(deb):
        header = deb[pos:pos + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = deb[pos + 60:pos + 60 + size]
        if member.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        pos += 60 + size + (size & 1)
    fail(f"{name} holds no data.tar member")
    raise AssertionError  # unreachable: fail() exits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to create (train/, heldout/ and SOURCES.md inside)")
    ap.add_argument("--debs", type=Path, help="folder already holding the three .deb files (no download)")
    ap.add_argument("--max-side", type=int, default=2040, help="longest side after resizing (default 2040)")
    ap.add_argument("--force", action="store_true", help="replace OUT if this script made it")
    args = ap.parse_args()
    from PIL import Image    # after argparse, so --help works without Pillow

    out: Path = args.out
    if out.exists():
        if not args.force:
            fail(f"{out} already exists; pass --force to replace it")
        if not (out / "SOURCES.md").is_file() or {p.name for p in out.iterdir()} - {"train", "heldout", "SOURCES.md"}:
            fail(f"--force: {out} was not made by this script (or holds other files); choose another folder")
    photos = []   # (file name, author, licence, package, JPEG bytes)
    for pool_path, sha256, members in PACKAGES:
        package = pool_path.rsplit("/", 1)[1]
        tar = data_tar(deb_bytes(pool_path, sha256, args.debs), package)
        for member, (author, licence) in members.items():
            f = tar.extractfile(member)
            if f is None:
                fail(f"{package} has no {member}")
            photos.append((member.rsplit("/", 1)[1], author, licence, package, f.read()))
    photos.sort(key=lambda p: p[0].lower())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))   # same disk: the rename is atomic
    try:
        rows = []
        for i, (name, author, licence, package, data) in enumerate(photos):
            split = "heldout" if i % 5 == 2 else "train"
            im = Image.open(io.BytesIO(data)).convert("RGB")
            scale = args.max_side / max(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
            png = Path(name).with_suffix(".png").name
            (tmp / split).mkdir(exist_ok=True)
            im.save(tmp / split / png)
            rows.append(f"| {png} | {im.width}x{im.height} | {split} | {author} | {licence} | {package} |")
        (tmp / "SOURCES.md").write_text(
            "# Photographs from Debian's wallpaper packages\n\n"
            f"Made by scripts/fetch_debian_photos.py (resized to at most {args.max_side} px, Lanczos). "
            "Licences as each package's copyright file states them.\n\n"
            "| file | size | split | author | licence | package |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_held = sum(1 for i in range(len(photos)) if i % 5 == 2)
    print(f"{out}: {len(photos) - n_held} training and {n_held} held-out photographs, licences in {out / 'SOURCES.md'}")


if __name__ == "__main__":
    main()
