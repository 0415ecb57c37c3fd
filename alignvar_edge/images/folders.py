"""Folders of images: which files in them are images (`list_images`, recursive, hidden files
skipped, symlinked folders followed once, folders that cannot be listed named), and reading a
folder for figures or training, one rule for the files in it that cannot be used.

A run that reads a folder's pixels (training `--images`, calibration, `compare --images`) goes past
a file it cannot read: the file is named, with its reason, in one warning line for all of them, and
the run stops only when no usable image remains. One corrupt file in a folder of 200 costs that
file, not the run. (`upscale DIR`, which writes an output per input, also goes past them but ends
with an error naming them, exit 4, so that the same command finishes them once they are fixed.)
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from PIL import Image

from alignvar_edge.caller import warn_caller
from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError
from alignvar_edge.images.arrays import checked_megapixels_limit
from alignvar_edge.images.formats import IMAGE_EXTENSIONS, READ_EXTENSIONS, open_quietly, upright_size
from alignvar_edge.fsmodes import is_temporary_name, lies_within, not_a_folder, special_kind
from alignvar_edge.manifest import first_names
from alignvar_edge.name_text import PathArg, path_text
from alignvar_edge.images.read import DEFAULT_MAX_MEGAPIXELS, load_image

__all__ = ["FolderListing", "check_megapixels_flag", "list_folder", "list_images", "not_a_result",
           "read_images", "result_path", "said_not_read", "skipped_list", "usable_images"]


@dataclass
class FolderListing:
    """What is under a folder (`list_folder`), each list sorted by path under it."""
    images: list[Path] = field(default_factory=list)
    others: list[Path] = field(default_factory=list)    # files of other kinds
    hidden: list[Path] = field(default_factory=list)    # hidden images and folders, not read
    loops: list[Path] = field(default_factory=list)     # links to a folder they are in, not followed
    unreadable: list[tuple[Path, str]] = field(default_factory=list)   # folders that could not be listed, why
    extensions: tuple[str, ...] = READ_EXTENSIONS                       # what was taken for an image

    def not_read(self, root: Path) -> list[str]:
        """A clause for each kind of entry left out without a word otherwise (files of other kinds,
        hidden ones, links that loop), each naming the first few; for a folder run's lines and
        "no images" errors."""
        said = []
        if self.others:
            said.append(f"not reading {len(self.others)} file(s) of other kinds ({_names(self.others, root)}); "
                        f"images are {' '.join(self.extensions)}")
        if self.hidden:
            said.append(f"not reading {len(self.hidden)} hidden image(s) or folder(s) ({_names(self.hidden, root)}): "
                        "names that start with '.' are skipped; rename one to have it read")
        if self.loops:
            said.append(f"not following {len(self.loops)} symbolic link(s) back to a folder above them "
                        f"({_names(self.loops, root)}): a loop, which would read that folder again")
        if self.unreadable:
            why = first_names([f"{_name(p, root, '/')} {reason.lower()}" for p, reason in self.unreadable])
            said.append(f"cannot list {len(self.unreadable)} folder(s) ({why}): their images are not read; "
                        "give the user running this read and search permission on them")
        return said


def list_folder(folder: str | os.PathLike[str], extensions: tuple[str, ...] = READ_EXTENSIONS,
                skip: Path | None = None) -> FolderListing:
    """The files under ``folder`` (recursive), by kind: images by ``extensions``, other files, the
    hidden entries left out (never our own temporaries) and the links that loop. Symlinked folders
    are followed, each real folder walked once: at its own path where the folder holds it, else
    through the first link to it. ``skip``: a folder (a run's own output) whose files are not
    read, reached through a link or not, nor linked one by one; unless it holds ``folder`` itself
    (`upscale photos/small photos`), which is then read whole."""
    root = Path(folder)
    if (why := not_a_folder(root)) is not None:
        raise InputError(f"{root} {why}; pass a folder of images")
    found = FolderListing(extensions=extensions)
    walked = {os.path.realpath(root)}
    never = skip if skip is not None and not lies_within(root, skip) else None
    links = _walk_real(root, walked, never, extensions, found)
    while links:            # a link's folder is walked after every real one: a real path wins
        link = links.pop(0)
        real = os.path.realpath(link)
        if lies_within(link.parent, real):        # a link to a folder above it: a loop
            found.loops.append(link)
        elif real not in walked and not _skipped(real, never):
            walked.add(real)
            links += _walk_real(link, walked, never, extensions, found)
    for listed in (found.images, found.others, found.hidden, found.loops):
        # by path under root, so that the order does not depend on where the folder lives
        listed.sort(key=lambda p: p.relative_to(root).as_posix())
    found.unreadable.sort(key=lambda pr: pr[0].relative_to(root).as_posix())
    return found


def list_images(folder: PathArg, extensions: tuple[str, ...] = READ_EXTENSIONS) -> list[Path]:
    """Image files under ``folder`` (recursive, by extension, hidden files skipped, symlinked
    folders followed once), sorted: what every folder run reads (single-frame GIFs included).
    ``folder`` may be bytes (`path_text`); the paths are str, as Python names such files."""
    return list_folder(path_text(folder), extensions).images


def result_path(path: Path) -> Path:
    """Where `upscale` writes the result of the input `path` when it names no output file: the
    same name, as .png where results are not written in its format (GIF: 256 colours)."""
    return path if path.suffix.lower() in IMAGE_EXTENSIONS else path.with_suffix(".png")


def not_a_result(src: Path, dst: Path, scale: int) -> str | None:
    """Why the file `dst` is not `upscale`'s result of the image `src` at `scale` ("empty", "not an
    image", "300x300, not the 256x192 result", "truncated or damaged"), or None where it is one: an
    image of the input's upright size times `scale` that decodes whole (results are written
    atomically, so one of ours never stops short; a copy, a full disk or a crash outside the tool
    can). An input whose header cannot be read gives None: its own refusal comes when it is read."""
    if dst.stat().st_size == 0:
        return "empty"
    if special_kind(src) is not None:       # opening it would wait for a writer; reading it refuses it
        return None
    try:
        with open_quietly(src) as img:
            w, h = upright_size(img, src)
    except (*IMAGE_DECODE_ERRORS, Image.DecompressionBombError):
        return None
    want = (w * scale, h * scale)
    with _no_pixel_ceiling():
        try:
            out = open_quietly(dst)
        except IMAGE_DECODE_ERRORS:
            return "not an image"
        with out:
            if out.size != want:
                return f"{out.size[0]}x{out.size[1]}, not the {want[0]}x{want[1]} result"
            # Decoded only now that its header has the result's size: a photo of another size costs
            # no decoding, and a file decoded costs what the run's own result of it would.
            try:
                out.load()
            except IMAGE_DECODE_ERRORS:
                return "truncated or damaged: its pixels do not decode"
    return None


@contextmanager
def _no_pixel_ceiling() -> Iterator[None]:
    """Pillow's decompression-bomb ceiling (179 MP) lifted: a x4 result passes it from an 11 MP
    photo on (Image.open refused the finished result as "not an image"), and an output is measured
    against the result's size before a pixel of it is decoded."""
    ceiling = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = ceiling


def _walk_real(top: Path, walked: set[str], never: Path | None, extensions: tuple[str, ...],
               found: FolderListing) -> list[Path]:
    """Sort the entries under `top` into `found`, going down its real subfolders (each one's real
    path added to `walked`); returns the symlinked folders met, left for `list_folder` to follow."""
    links: list[Path] = []

    def cannot_list(error: OSError) -> None:
        # os.walk passes over a folder it cannot list without a word; its images would go unread unsaid
        found.unreadable.append((Path(error.filename) if error.filename else top, error.strerror or str(error)))

    for dirpath, dirnames, filenames in os.walk(top, onerror=cannot_list):   # links not followed: listed as folders
        here = Path(dirpath)
        down = []
        for name in sorted(dirnames):
            path = here / name
            if name.startswith("."):
                # hidden entries include our own temporaries (".name.xxxx.tmp", see is_temporary_name)
                if not is_temporary_name(name):
                    found.hidden.append(path)
            elif path.is_symlink():
                links.append(path)
            elif not _skipped(path, never) and (real := os.path.realpath(path)) not in walked:
                walked.add(real)
                down.append(name)
        dirnames[:] = down
        for name in filenames:
            path = here / name
            is_image = path.suffix.lower() in extensions
            if name.startswith("."):
                if is_image and not is_temporary_name(name):
                    found.hidden.append(path)
            elif never is None or not path.is_symlink() or not _skipped(path, never):
                (found.images if is_image else found.others).append(path)
    return links


def _skipped(path: str | os.PathLike[str], never: Path | None) -> bool:
    """Whether `path` is the skipped folder `never` or lies below it, told by the folders themselves
    (`Photos/out` is `photos/out` on a case-insensitive disk), never below no folder."""
    return never is not None and lies_within(path, never)


def _names(paths: Sequence[Path], root: Path) -> str:
    return first_names([_name(p, root, "/" if p.is_dir() else "") for p in paths])


def _name(path: Path, root: Path, tail: str) -> str:
    """`path` as the user knows it under `root` ('.' for the folder itself), with `tail` after it."""
    under = path.relative_to(root).as_posix()
    return "./" if under == "." else under + tail


def read_images(folder: str | os.PathLike[str], skipped: list[tuple[str, str]],
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                raise_limit: str | None = "--max-megapixels",
                not_read: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(name, HxWx3 float32 RGB) of each readable image under `folder` (recursive, sorted), read one
    at a time; a file that cannot be read is appended to `skipped` as (name, reason) instead. A
    name is the path under the folder: subfolders may hold files of the same name. `raise_limit`
    is the flag that raises `max_megapixels` in the verb reading them (None where there is none).
    `not_read` gets the clauses naming what the listing left out without a word otherwise (hidden
    entries, links that loop: `FolderListing.not_read`), for the caller's one line."""
    # here, not per file: a bad limit is the caller's fault, not a reason to skip every file
    max_megapixels = checked_megapixels_limit(max_megapixels)
    root = Path(folder)
    listing = list_folder(root)
    if not_read is not None:
        not_read.extend(listing.not_read(root))
    for path in listing.images:
        name = path.relative_to(root).as_posix()
        try:
            rgb, _ = load_image(path, max_megapixels=max_megapixels, raise_limit=raise_limit)
        except InputError as e:
            skipped.append((name, str(e)))
            continue
        yield name, rgb


def skipped_list(skipped: Sequence[tuple[str, str]]) -> str:
    """Every skipped file with its reason, for the one warning line (each is named: the user fixes
    or removes exactly these)."""
    return "; ".join(f"{name} ({reason})" for name, reason in skipped)


def said_not_read(not_read: Sequence[str], where: str, refused: bool) -> str:
    """What a folder's listing left out (`FolderListing.not_read`), said once: where the caller refuses
    the folder (`refused`: nothing in it to use), the "; ..." clauses its error ends with; else each
    clause warned as "`where`: clause" and "" returned."""
    if refused:
        return "".join(f"; {line}" for line in not_read)
    for line in not_read:
        warn_caller(f"{where}: {line}")
    return ""


def usable_images(folder: str | os.PathLike[str], flag: str, limit: int | None = None,
                  max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                  raise_limit: str | None = "--max-megapixels"
                  ) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """The readable images of the folder a flag (`flag`, e.g. "--images") names, at most `limit`
    (counting usable ones), and the (name, reason) of each file skipped (one over `max_megapixels`
    too): the skipped are named in one warning; a folder with no usable image is refused in one line
    naming them."""
    if (why := not_a_folder(folder)) is not None:
        raise InputError(f"{flag} {folder} {why}; pass a folder of images")
    skipped: list[tuple[str, str]] = []
    left_out: list[str] = []
    images = list(islice(read_images(folder, skipped, max_megapixels, raise_limit, left_out), limit))
    not_read = said_not_read(left_out, f"{flag} {folder}", refused=not images)
    if not images:
        why = (f"{len(skipped)} skipped: {skipped_list(skipped)}" if skipped
               else f"looked for {', '.join(READ_EXTENSIONS)}")
        raise InputError(f"no usable images in {flag} {folder} ({why}){not_read}; pass a folder of readable "
                         "photographs, or leave the flag out for the bundled held-out ones")
    if skipped:
        warn_caller(f"skipping {len(skipped)} file(s) of {flag} {folder} that cannot be read: "
                    f"{skipped_list(skipped)}")
    return images, skipped


def check_megapixels_flag(images: str | None, max_megapixels: float | None) -> None:
    """`--max-megapixels` limits the files of an `--images` folder: without one (the bundled
    photographs) it would be accepted and apply to nothing."""
    if max_megapixels is not None and images in (None, "builtin"):
        raise InputError("--max-megapixels limits the files of --images, and no --images folder was given; "
                         "pass --images DIR or leave --max-megapixels out")
