"""Output folders: where a verb's outputs go, and how they are published and replaced.

Every directory the toolkit produces (exported ONNX graphs, quantized graphs, built engines,
deploy runs) is made by `artifact_dir(...)`: files go into a hidden temporary sibling, the
manifest (with the SHA-256 of every file) is written last, and only then is the directory renamed
into place. A run killed half-way leaves a hidden `.NAME.tmp-*` directory and never a directory
that looks complete.

`check_out` is the one rule for replacing an output: --force replaces only an empty folder or one
of ours (manifest.json or run.json), and `artifact_dir` re-checks it at the rename;
`check_outside_artifacts` is the one rule that no output of any verb (a folder, a report, an image)
is written inside an artifact directory. `OutputClaims` keeps two runs into one folder from working on
the same output at once. What an artifact holds and how it is verified is manifest.py's.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignvar_edge.caller import option
from alignvar_edge.errors import ArtifactError, InputError, OutputExistsError
from alignvar_edge.fsmodes import (WRITE_LIMITS, hidden_prefix, is_temp_folder, is_writer_temp, lies_within,
                                     publish_mode, replace_dir, same_file, symlink_loop, unwritable_folder, write_error)
from alignvar_edge.manifest import (MANIFEST_FILE, OWN_MARKERS, RUN_FILE, edited_files, edited_manifests, first_names,
                                    own_marker, unlisted_files)

try:        # advisory locks (POSIX); where there are none (Windows) no output is claimed, as before
    import fcntl
except ImportError:
    fcntl = None  # type: ignore[assignment]


def check_out(out: str | os.PathLike[str], force: bool, source: str | os.PathLike[str] | None = None,
              replaces: str = MANIFEST_FILE, probe: bool = True) -> None:
    """May `out` be written? Yes if it does not exist. With force, only if it is ours to replace:
    an empty folder, or a folder holding the marker of what this verb makes (`replaces`): our
    manifest.json for export, quantize, build and deploy, run.json for train. The other kind is
    refused with or without force (an export never deletes a training run, nor train an artifact),
    and so is anything else (a file, a symlink, someone's folder), and our artifact holding a file it
    does not list or a listed file changed since it was written (`_check_only_ours_inside`).
    Never the `source` artifact being read, nor a folder inside it or around it: --force would
    replace the input, and a folder inside an artifact fails its verification. `probe`: whether the
    folder `out` goes into takes a file, tried before the work (False after it, as at the rename)."""
    out = Path(out)
    if symlink_loop(out):
        raise OutputExistsError(f"'{out}' leads into a symlink loop, not to a folder alignvar-edge made: remove "
                                f"it or choose another {option('out')}")
    if source is not None and (where := _where_from_source(out, source)) is not None:
        raise OutputExistsError(f"{option('out', out)} {where} the input artifact '{source}'; writing there "
                                f"would replace or corrupt the input: choose an {option('out')} outside it")
    check_outside_artifacts(out, option("out", out))
    # now, not after the export or build
    if probe and (folder := unwritable_folder(out, option("out", out))) is not None:
        raise InputError(f"{option('out', out)}: the folder {folder} is not writable; choose another {option('out')}")
    if not os.path.lexists(out):
        return
    _check_same_kind(out, replaces)         # before "pass --force": force would not take it either
    if not force:
        raise OutputExistsError(f"'{out}' already exists; {_replace_or_choose()}")
    if out.is_symlink() or not out.is_dir():
        raise OutputExistsError(f"'{out}' is not a folder alignvar-edge made; {option('force', True)} only replaces "
                                f"our own outputs: remove it yourself or choose another {option('out')}")
    if any(out.iterdir()) and not any(own_marker(out / f) for f in OWN_MARKERS):
        raise OutputExistsError(f"'{out}' holds files but no {MANIFEST_FILE} or {RUN_FILE} of ours, so alignvar-edge "
                                f"did not make it; {option('force', True)} only replaces our own outputs: remove it "
                                f"yourself or choose another {option('out')}")
    if (doc := own_marker(out / MANIFEST_FILE)) is not None:
        _check_only_ours_inside(out, doc)


def _where_from_source(out: Path, source: str | os.PathLike[str]) -> str | None:
    """'is', 'lies inside' or 'holds': where the output `out` is from the `source` being read, told by
    the folders themselves (`Tiny-Export` is `tiny-export` on a case-insensitive disk); None where
    it is outside it."""
    if same_file(out, source):
        return "is"
    if lies_within(out, source):
        return "lies inside"
    return "holds" if lies_within(source, out) else None


def _replace_or_choose() -> str:
    """What a run told that its output exists can do, in the caller's words (caller.option)."""
    return f"pass {option('force', True)} to replace it or choose another {option('out')}"


def artifact_around(path: str | os.PathLike[str], itself: bool = False) -> Path | None:
    """The artifact directory (a folder holding our manifest.json) that `path` lies inside, the
    nearest one; with `itself`, `path` too where it is one. None where there is none."""
    resolved = Path(path).resolve()
    for folder in ([resolved] if itself else []) + list(resolved.parents):
        # relative where shorter: an absolute path past PATH_MAX (a very deep working folder) opens nothing
        probe = min(str(folder), os.path.relpath(folder), key=len)
        try:
            if own_marker(Path(probe) / MANIFEST_FILE) is not None:
                return folder
        except OSError:            # an unsearchable folder: nothing can be written below it either
            continue
    return None


def check_outside_artifacts(path: str | os.PathLike[str], named: str, itself: bool = False) -> None:
    """Refuse an output `path` (`named` as the user gave it: "--json r.json") inside an artifact
    directory, before any work: an artifact lists every file it holds, so a report or image written
    there makes it fail verification wherever it is used afterwards. `itself`: `path` is a folder
    to write into, refused where it is an artifact too."""
    inside = artifact_around(path, itself)
    if inside is not None:
        where = "is" if inside == Path(path).resolve() else "lies inside"
        raise OutputExistsError(f"{named} {where} the artifact '{inside}', which lists every file it holds "
                                "and would then fail verification: write it outside that folder")


def _check_only_ours_inside(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse our artifact `out` (`manifest`: its manifest.json, parsed) where it holds what someone
    else put there: a file its manifest does not list (an artifact lists every file it holds), or a
    listed file changed since it was written, a manifest.json included (its own, or a deploy's
    engine's: `edited_manifests`)."""
    files = manifest.get("files")
    files = files if isinstance(files, dict) else {}
    stray = unlisted_files(out, files)
    if stray:
        raise OutputExistsError(f"'{out}' holds files its {MANIFEST_FILE} does not list ({first_names(stray)}): "
                                f"alignvar-edge did not make them and {option('force', True)} would delete them; move "
                                "them out of the folder, or remove it yourself")
    edited = sorted(edited_files(out, files) + edited_manifests(out))
    if edited:
        # its own manifest.json moved out, the folder would no longer be ours to replace at all
        fix = (f"copy what you added to {MANIFEST_FILE} elsewhere, then remove the folder yourself or choose another "
               f"{option('out')}" if MANIFEST_FILE in edited else
               "move the changed files out of the folder, or remove it yourself")
        raise OutputExistsError(f"'{out}' holds files changed since alignvar-edge wrote them ({first_names(edited)}: "
                                f"not the SHA-256 recorded when it wrote them) and {option('force', True)} would "
                                f"delete them; {fix}")


def _check_same_kind(out: Path, replaces: str) -> None:
    """Refuse an `out` that holds the other kind of output than the verb makes: one wrong --out in a
    pipeline's export step must not delete hours of resumable training state, nor train an engine."""
    if out.is_symlink():
        return                 # never replaced at all (check_out says so)
    if replaces != RUN_FILE and own_marker(out / RUN_FILE) is not None:
        raise OutputExistsError(f"'{out}' is a training run (it holds a {RUN_FILE}), not an artifact; only train "
                                f"replaces it: choose another {option('out')}")
    if replaces != MANIFEST_FILE and own_marker(out / MANIFEST_FILE) is not None:
        raise OutputExistsError(f"'{out}' is an artifact alignvar-edge made (it holds a {MANIFEST_FILE}), not a "
                                f"training run; a run does not replace it: choose another {option('out')}")


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished `tmp` to `out`, re-checking `out` now: another run may have published
    there since we started. Without force the rename itself refuses an existing artifact. No write
    probe: the work's own folder beside `out` was just made there."""
    check_out(out, force, probe=False)
    replacing = os.path.lexists(out)
    try:
        replace_dir(tmp, out, replace=replacing)
    except OSError as e:              # a rename onto a non-empty folder or a file fails
        if not replacing and e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise OutputExistsError(f"'{out}' appeared while this run was working (another run wrote it); "
                                    f"kept that one: {_replace_or_choose()}") from e
        raise


@contextlib.contextmanager
def artifact_dir(out: str | os.PathLike[str], force: bool = False, needed: int | None = None) -> Iterator[Path]:
    """Build an artifact in a temporary sibling; rename into place only if the block succeeds.

    The block must call `write_manifest(tmp, manifest)` last. An existing `out` is replaced only
    with force=True, only if it is ours (see `check_out`, checked before and again at the rename),
    and only after the new artifact is complete. The result gets the umask's modes. `needed`: about
    how many bytes the artifact takes, where known, which a full disk's error then says.
    """
    out = Path(out)
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{hidden_prefix(out.name, 4 + 8)}tmp-", dir=out.parent))
    except OSError as e:               # a read-only or full disk: about --out, not the hidden name
        raise write_error(e, out) from e
    try:
        yield tmp
        if not (tmp / MANIFEST_FILE).is_file():
            raise ArtifactError(f"internal error: artifact for '{out}' was finished without a manifest")
        publish_mode(tmp)
        _publish(tmp, out, force)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _writing_into(e, tmp):
            raise                      # reading an input: its own name is the one to give
        raise write_error(e, out, needed) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _writing_into(e: OSError, tmp: Path) -> bool:
    """Did `e` come from writing into the temporary folder `tmp`? A full disk did (only writes fill
    it, and its error names the source file where shutil.copy2 made it, or nothing at all; so does a
    file over a size limit); other
    errors name a file inside `tmp` (as `filename2` where they name the source first)."""
    if e.errno in WRITE_LIMITS:                 # ... unless it names $TMPDIR: scratch there (`temp_folder_full`)
        return not is_temp_folder(e.filename)
    inside = os.path.abspath(tmp)
    return any(name and os.path.abspath(name).startswith(inside + os.sep)
               for name in (e.filename2, e.filename) if isinstance(name, str))


# A claim on an output is a lock on `.NAME.inflight.tmp` beside it: 8 letters, as `is_temporary_name`
# knows our temporaries, not all of them hex, so never one of `temp_file_beside`'s (`is_writer_temp`).
_CLAIM_TAIL = "inflight.tmp"
# seconds a claim file must have existed before a run that finds it unlocked takes it for a killed
# claimant's: between its maker's create and lock, another run may lock it first
_CLAIM_GRACE_S = 5.0


class _NoLocks(Exception):
    """The file system refuses flock (some network mounts): nothing can be claimed there."""


class _CannotClaim(Exception):
    """The claim file is there but not one this run can lock: another account's that it may not
    read, a link, a folder or another special file."""


# what opening an existing claim file says where it is not ours to lock (ENXIO: a socket)
_NOT_OURS = (errno.EACCES, errno.EPERM, errno.ELOOP, errno.EISDIR, errno.ENXIO)


class OutputClaims:
    """The outputs one run is working on, so that a second run into the same folder (a nightly job
    starting while last night's still runs) does not start them too: `take` before an image's work,
    `release` once it is written or dropped; leaving the block releases every claim still held.

    A claim is an advisory lock (flock) on the output's hidden `.NAME.inflight.tmp`, which the OS
    drops when its process ends, however it ends; releasing removes the file. A claim file found
    there unlocked is a killed run's (a released one is removed), and only then is what that run
    left of writing the output (`temp_file_beside`'s `.NAME.xxxxxxxx.tmp`) removed: no writer locks
    its temporary file, so one found without that evidence may be another process's (a file run, a
    Python `save_image`, an older version) still writing, and is left alone. Locks are local to
    one host: a folder two hosts write into is not guarded. Without flock (Windows, a file system
    that refuses it) every claim is granted: the check at the rename (`save_image` keeps a result
    another run wrote first) is then the only guard, as before."""

    def __init__(self) -> None:
        self._held: dict[Path, tuple[int, Path] | None] = {}      # output -> (its locked fd, claim file)
        self._temporaries: dict[Path, list[str]] = {}              # folder -> our temporaries' names there
        self.unclaimable: dict[Path, Path] = {}     # output -> its claim file, one this run cannot lock

    def __enter__(self) -> OutputClaims:
        return self

    def __exit__(self, *exc: object) -> None:
        for path in list(self._held):
            self.release(path)

    def take(self, path: Path) -> bool:
        """Claim the output `path` for this run, making its folder; False where another live run
        is working on it now."""
        if fcntl is None:
            self._held[path] = None
            return True
        path.parent.mkdir(parents=True, exist_ok=True)
        claim = path.parent / f"{hidden_prefix(path.name, len(_CLAIM_TAIL))}{_CLAIM_TAIL}"
        if any(held is not None and held[1] == claim for held in self._held.values()):
            self._held[path] = None         # names past NAME_MAX cut to one prefix: this run's claim already
            return True
        try:
            locked = _locked_claim(claim, path)
        except _NoLocks:
            self._held[path] = None
            return True
        except _CannotClaim:
            self.unclaimable[path] = claim
            return False
        if locked is None:
            return False
        fd, stale = locked
        self._held[path] = (fd, claim)
        if stale:
            self._clear_leftovers(path)
        return True

    def release(self, path: Path) -> None:
        """Give the output `path` up (written, dropped or left); a path not held is ignored."""
        held = self._held.pop(path, None)
        if held is None:
            return
        fd, claim = held
        with contextlib.suppress(OSError):
            if _names(claim, fd) and os.fstat(fd).st_size == 0:     # never a file someone put there since
                claim.unlink()       # still locked: a run that opened it before sees it gone (`_locked_claim`)
        os.close(fd)

    def unclaimable_why(self, path: Path) -> str | None:
        """Why this run could not take the claim of output `path` where its claim file is not one it
        can lock (another account's, or not a file), with the fix; None where it was not so."""
        claim = self.unclaimable.get(path)
        if claim is None:
            return None
        return (f"its claim file {claim} cannot be locked by this run (another account's, or not a file); if no "
                "run is working there, remove it and run the same command again")

    def _clear_leftovers(self, path: Path) -> None:
        """Remove the temporary files a killed claimant of `path` left of writing it (regular files
        of `temp_file_beside`'s naming, never a link or anything else)."""
        names = self._temporaries_in(path.parent)
        for name in [n for n in names if is_writer_temp(path, n)]:
            names.remove(name)
            with contextlib.suppress(OSError):      # gone since the folder was listed: nothing to remove
                if stat.S_ISREG(os.lstat(path.parent / name).st_mode):
                    os.unlink(path.parent / name)

    def _temporaries_in(self, folder: Path) -> list[str]:
        """The names of our hidden temporary files in `folder`, listed once a run: leftovers are
        those of runs that ended before it; a live run's claim guards what it writes later."""
        if folder not in self._temporaries:
            try:
                with os.scandir(folder) as entries:
                    self._temporaries[folder] = [e.name for e in entries
                                                 if e.name.startswith(".") and e.name.endswith(".tmp")]
            except OSError:
                self._temporaries[folder] = []
        return self._temporaries[folder]


def _locked_claim(claim: Path, output: Path) -> tuple[int, bool] | None:
    """An open descriptor of the claim file `claim` holding its lock, and whether the file was there
    before (stale: left by a killed claimant); None where another process holds it. Raises _NoLocks
    where the file system takes no flock, _CannotClaim where `claim` is not a file this run can
    open. Read-only, 0644: flock needs no write access, so another account's claim can be taken."""
    # O_NONBLOCK: a FIFO of that name opens at once (and is refused as no regular file)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        stale = False
        try:
            fd = os.open(claim, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            stale = True
            try:
                fd = os.open(claim, flags)
            except FileNotFoundError:
                continue                      # its holder released it between our two opens: again
            except OSError as e:
                if e.errno in _NOT_OURS:
                    raise _CannotClaim() from e
                raise write_error(e, output) from e
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise _CannotClaim()
        except OSError as e:                  # a full disk: about the output, as writing it would be
            raise write_error(e, output) from e
        try:
            locked = _flock(fd)
        except _NoLocks:
            os.close(fd)
            claim.unlink(missing_ok=True)     # nobody can hold it: no file left behind
            raise
        if not locked:
            os.close(fd)
            return None
        if _names(claim, fd):
            # a claim made just now may be one whose maker has not locked it yet (created, not locked):
            # only an older one is a killed claimant's, whose leftovers may go
            return fd, stale and time.time() - os.fstat(fd).st_ctime > _CLAIM_GRACE_S
        os.close(fd)        # its holder released and removed it between our open and our lock: again


def _flock(fd: int) -> bool:
    """Lock the open file `fd` for this process without waiting; False where another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        raise _NoLocks() from e
    return True


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        return os.path.samestat(os.stat(path, follow_symlinks=False), os.fstat(fd))
    except FileNotFoundError:
        return False
