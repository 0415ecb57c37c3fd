"""Publishing files: atomic writes, and the file modes of what we publish: the ones a plain open()/mkdir() would give, i.e. the umask's.

`tempfile.mkdtemp` / `mkstemp` create 0700 / 0600 (private while they are being filled); an output
renamed into place keeps that mode unless it is widened here first. One owner for that rule.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path

from alignvar_edge import safe_stop
from alignvar_edge.errors import InputError, OutputExistsError
from alignvar_edge.name_text import readable

__all__ = ["NO_SPACE", "WRITE_LIMITS", "NoRoomError", "as_write_error", "broken_link", "byte_text", "check_room",
           "file_id", "free_bytes", "hidden_prefix", "is_temp_folder",
           "is_temporary_name", "lies_within", "name_too_long", "not_a_folder", "not_told_apart", "one_name_on_any_disk",
           "umask", "publish_mode",
           "replace_dir", "same_file", "special_kind", "starts_with", "symlink_loop", "temp_file_beside",
           "temp_folder_full",
           "unwritable_folder", "write_atomically",
           "write_error",
           "write_text"]


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)          # the disk, or this user's quota on it, is full
WRITE_LIMITS = (*NO_SPACE, errno.EFBIG)          # ... or a file passed the size limit (`ulimit -f`)


def umask() -> int:
    """The process umask, read without changing it: `os.umask` can only be read by setting it, and
    for that moment every file another thread of the host creates would get mode 0666/0777."""
    mask = _umask_from_proc()
    if mask is None:
        try:
            mask = _umask_from_probe()
        except OSError:         # no usable temporary folder: the one way left, which sets it briefly
            mask = os.umask(0)
            os.umask(mask)
    return mask


def _umask_from_proc() -> int | None:
    """The `Umask:` line of /proc/self/status (Linux 4.7 and later), else None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_from_probe() -> int:
    """The umask as the kernel applies it: a folder made 0777 in a private temporary folder comes
    out 0777 & ~umask (macOS, and Linux without /proc)."""
    with tempfile.TemporaryDirectory(prefix="alignvar-edge-umask-") as private:
        probe = os.path.join(private, "probe")
        os.mkdir(probe, 0o777)
        return 0o777 & ~stat.S_IMODE(os.stat(probe).st_mode)


def publish_mode(path: str | os.PathLike[str]) -> None:
    """Give `path` (a file, or a folder and everything in it) the modes the umask allows.

    Folders get 0777 & ~umask, files 0666 & ~umask (plus x where the file already had it);
    symlinks are left alone, and so are files with other hard links: a mode is the inode's, so it
    would change the other artifact's file too (an engine directory's ONNX linked to its export's)."""
    mask = umask()
    root = Path(path)
    items = [root] + (sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else [])
    for p in items:
        if p.is_symlink():
            continue
        if p.is_dir():
            os.chmod(p, 0o777 & ~mask)
        else:
            st = os.stat(p)
            if st.st_nlink > 1:
                continue
            x = 0o111 if st.st_mode & 0o100 else 0
            os.chmod(p, (0o666 | x) & ~mask)


def unwritable_folder(path: str | os.PathLike[str], named: str | None = None) -> Path | None:
    """The folder that would refuse the write of `path` (the nearest existing one above it, on a
    read-only mount or without write permission), else None. Checked before the work, so a long
    run does not end by failing to save; a full disk can still only show at the write. A name in
    `path` too long for any folder there is InputError (`name_too_long`), and so is a file (or a
    FIFO, a device) where `path` needs a folder (`some.png/x.json`), said of `named`: `path` as the
    caller names it in its own errors (`--out 'E'`)."""
    # looked at as relative as `path` is: an absolute path past PATH_MAX (a very deep working folder)
    # cannot be looked at; named absolute
    folder = _nearest_existing_folder(Path(path))
    if (too_long := name_too_long(path, folder)) is not None:
        raise InputError(too_long)
    if not folder.is_dir():
        raise InputError(f"cannot write {named or path}: {folder} is {special_kind(folder) or 'a file'}, where a "
                         "folder is needed; choose another output path")
    return None if os.access(folder, os.W_OK | os.X_OK) and _can_create_in(folder) else folder.absolute()


def _nearest_existing_folder(path: Path) -> Path:
    folder = path.parent
    # os.path.exists: Path.exists raises for a name too long
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def name_too_long(path: str | os.PathLike[str], folder: Path | None = None) -> str | None:
    """'PATH: its name 'NAME' is N bytes, ...; choose a shorter name' for the first name in `path`
    longer than its file system takes (NAME_MAX, 255 bytes on most; `folder`: the nearest existing
    one above it, whose file system that is), else None. Such a path can be neither read nor
    written, and the OS's 'File name too long' says neither the limit nor what to do."""
    folder = folder if folder is not None else _nearest_existing_folder(Path(path))
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    name = next((n for n in Path(path).parts if len(os.fsencode(n)) > limit), None)
    if name is None:
        return None
    return (f"{path}: its name '{name}' is {len(os.fsencode(name))} bytes, more than the {limit} a file name can "
            "have on this file system; choose a shorter name")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in `folder`, tried rather than asked: os.access says yes to root
    for a folder that takes no files (/proc, /sys)."""
    try:
        fd, probe = temp_file_beside(folder / "write-probe")
    except OSError:
        return False
    os.close(fd)
    probe.unlink(missing_ok=True)
    return True


# what a path can be besides a file or a folder, in words
_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """What `path` is ('a FIFO (named pipe)', 'a socket', ...) where it is neither a file nor a
    folder, else None (also where it does not exist): opening a FIFO waits for a writer, and
    "is missing" or "does not exist" would mislead."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for is_kind, name in _SPECIAL_KINDS if is_kind(mode)), "a special file")


def starts_with(path: str | os.PathLike[str], head: bytes) -> bool:
    """Whether `path` is a file (a link followed) whose first bytes are `head`; False for anything
    else, a FIFO or device included (opened without waiting for a writer, and never read), and for
    what cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, len(head)) == head
    except OSError:
        return False
    finally:
        os.close(fd)


def symlink_loop(path: Path) -> bool:
    """Does resolving `path` go round a loop of symlinks? (Path.resolve raises RuntimeError on
    Python 3.11 and OSError(ELOOP) on 3.13: a traceback unless asked first.)"""
    try:
        path.resolve()
    except RuntimeError:
        return True
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        return True
    return False


# One file can have two spellings: `Photos` and `photos` on a case-insensitive file system (macOS's
# APFS, Windows's NTFS, a memory card's exFAT or FAT), `café` with é composed or decomposed on a
# normalising one (APFS, HFS+), or a name reached through a bind mount. Path.resolve() keeps the
# spelling it is given, so whether an output is an input is asked of the file itself.

def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether `a` and `b` name one file or folder: by the file itself (device and inode) where
    both exist, however they are spelled; by their resolved paths where one does not exist yet."""
    id_a, id_b = file_id(a), file_id(b)
    if id_a is not None and id_b is not None:
        return id_a == id_b
    return Path(a).resolve() == Path(b).resolve()


def lies_within(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether `path` (existing or not) is the folder `folder` or lies below it, however either is
    spelled: its resolved path and each folder above it are asked whether they are `folder`; by
    resolved paths where `folder` does not exist yet."""
    resolved, target = Path(path).resolve(), file_id(folder)
    if target is None:
        return Path(folder).resolve() in (resolved, *resolved.parents)
    return any(file_id(p) == target for p in (resolved, *resolved.parents))


def one_name_on_any_disk(path: str | os.PathLike[str]) -> str:
    """`path` as the file systems that tell neither case nor Unicode normalisation apart see it:
    two paths with one such name are one file there (`A.png` and `a.png`; `café.png` typed with é
    composed and stored decomposed), on the disk written now or the one it is copied to later."""
    # lower(), not casefold(): those file systems map case letter for letter, so `Straße` and
    # `Strasse` are two files there (casefold makes ß "ss"); lowering can undo the decomposition
    # (NFD) before it, hence the second one
    # read as text first: under an ASCII file-system encoding (PYTHONUTF8=0, LC_ALL=C) Python holds
    # a UTF-8 name as surrogate escapes, which no normalisation or case mapping would touch
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", readable(os.fspath(path))).lower())


def not_told_apart(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> str:
    """What makes two paths with one `one_name_on_any_disk` one file, in words for a refusal that
    names both ('case is not told apart'): printed, names that differ in Unicode form look alike."""
    forms = "an accented letter's composed and decomposed Unicode forms"
    a, b = readable(os.fspath(a)), readable(os.fspath(b))      # as `one_name_on_any_disk` reads them
    if unicodedata.normalize("NFD", a) == unicodedata.normalize("NFD", b):
        return f"{forms} are not told apart (macOS)"
    if a.casefold() == b.casefold():
        return "case is not told apart"
    return f"neither case nor {forms} are told apart (macOS)"


def file_id(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The file or folder `path` leads to, as (device, inode): equal for every spelling of one file;
    None where there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):          # missing, unreadable, a name too long, a NUL in it
        return None
    return st.st_dev, st.st_ino


def broken_link(path: Path) -> str | None:
    """'PATH is a broken symbolic link (to TARGET)' or 'PATH leads into a symlink loop' where it is
    one, else None: such a path neither exists nor can be written, and "does not exist" or "already
    exists" would both mislead."""
    clause = _broken_link_clause(path)
    return None if clause is None else f"{path} {clause}"


def _broken_link_clause(path: Path) -> str | None:
    if not path.is_symlink() or path.exists():
        return None
    if symlink_loop(path):
        return "leads into a symlink loop (it never reaches a file)"
    return f"is a broken symbolic link (to {os.readlink(path)})"


def not_a_folder(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is no folder, as what follows its name ('does not exist', 'is a file, not a
    folder', 'is a FIFO (named pipe), not a folder', 'is a broken symbolic link (to T)'), or None
    where it is one: a mistyped path is then said to be missing, not to hold no images."""
    p = Path(path)
    if p.is_dir():
        return None
    if (link := _broken_link_clause(p)) is not None:
        return link
    if not os.path.exists(p):
        return "does not exist"
    return f"is {special_kind(p) or 'a file'}, not a folder"


def is_temp_folder(path: str | os.PathLike[str] | None) -> bool:
    """`path` is the temporary folder itself ($TMPDIR), which an error names for the scratch files a
    verb writes there (an output the user names below it is a path of its own)."""
    return path is not None and os.path.realpath(path) == os.path.realpath(tempfile.gettempdir())


def temp_folder_full(e: BaseException, short_of_room: bool = False) -> OSError | None:
    """`e`, raised writing scratch files under $TMPDIR, as the error that names the temporary folder
    where the disk there is full (the CLI then says to free room there or set TMPDIR, not to free room
    where the output goes), or where the caller found less room there before the work than it needs
    (`short_of_room`: a library that truncates a file it cannot finish raises some other error, and
    deletes its scratch, so the room is back by the time it has failed); None for any other error."""
    temp = tempfile.gettempdir()
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        return OSError(e.errno, e.strerror or os.strerror(e.errno), temp)
    if short_of_room:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), temp)
    return None


class NoRoomError(OSError):
    """A full disk (NO_SPACE) writing an output whose size was estimated before the work: `needed`
    bytes, about, which the error line says (made by `write_error` only)."""

    needed = 0


def write_error(e: OSError, path: str | os.PathLike[str], needed: int | None = None) -> OSError:
    """An error of writing the hidden temporary file, told about the output the user named: a full
    disk raises no file name at all, and the temporary name means nothing to them. A file too large
    (EFBIG) gets what to do: the OS's words alone name no limit. `needed`: about how many bytes the
    output takes, where the writer knows it (a full disk's error then says it)."""
    reason = e.strerror or str(e)
    if e.errno == errno.EFBIG:
        reason = f"{reason} ({_too_large_advice()})"
    if needed is not None and e.errno in NO_SPACE:
        full = NoRoomError(e.errno, reason, str(path))
        full.needed = needed
        return full
    return OSError(e.errno, reason, str(path))


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the disk that would hold `path` (a folder, or a path not made yet: the nearest
    existing folder above it), for this user; None where that cannot be told."""
    p = Path(path)
    try:
        return shutil.disk_usage(p if p.is_dir() else _nearest_existing_folder(p)).free
    except (OSError, ValueError):
        return None


def byte_text(n: int) -> str:
    """`n` bytes as people read a size: '1.7 GB', '58 MB', '12 kB' (powers of 1000, as `df -H`)."""
    for power, unit in ((9, "GB"), (6, "MB"), (3, "kB")):
        if n >= 10**power:
            return f"{n / 10**power:.{1 if n < 10**(power + 1) else 0}f} {unit}"
    return f"{n} bytes"


def check_room(path: str | os.PathLike[str], needed: int, what: str, other: str,
               shown: str | os.PathLike[str] | None = None) -> None:
    """Refuse, before the work, an output `path` whose disk has clearly less free room than the
    `needed` bytes it takes (a low estimate: a run refused here could never have finished), as
    InputError naming `what` ('export'), the place `shown` (default `path`: a caller's staging
    folder names where the user put it) and `other`, what chooses another place ('choose another
    --out'); a disk whose room cannot be told passes."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise InputError(f"{what} needs about {byte_text(needed)} at {shown or path}; {byte_text(free)} free there: "
                         f"free some space or {other}")


def _too_large_advice() -> str:
    """Why a write got EFBIG, and the fix: this process's file-size limit (`ulimit -f`) where one is
    set, else the file system's largest file (FAT32's 4 GiB)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY:
        return "larger than the file system takes (FAT32: 4 GiB); write it to another file system"
    limit = next(f"{soft / 2**p:.0f} {unit}" for p, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB"), (0, "bytes"))
                 if soft >= 2**p or not p)
    if hard == resource.RLIM_INFINITY:
        fix = "raise it with `ulimit -f unlimited` and run the command again"
    elif hard > soft:
        fix = "raise it up to its hard limit (`ulimit -Hf` shows it) and run the command again"
    else:                          # `ulimit -f N` in bash sets the hard limit too: only a new shell lifts it
        fix = "it is also the hard limit, which this shell cannot raise: run the command from a shell without that limit"
    return f"over the file-size limit of {limit} set with `ulimit -f` in the shell that ran it; {fix}"


def as_write_error(e: BaseException, path: str | os.PathLike[str]) -> OSError | None:
    """`e` as `write_error` about `path` where it is the file system's: an OSError, or the error of a
    Rust library that wraps one and is no OSError (safetensors' SafetensorError: 'I/O error: No space
    left on device (os error 28)'), so the CLI says it in its one line; None for any other error."""
    if isinstance(e, OSError):
        return write_error(e, path)
    code = re.search(r"\(os error (\d+)\)", str(e))
    if code is None:
        return None
    return OSError(int(code[1]), os.strerror(int(code[1])), str(path))


def write_text(path: str | os.PathLike[str], text: str, recheck: Callable[[], None] | None = None) -> Path:
    # UTF-8 whatever the locale: reports and READMEs hold ×, – and π, which a latin-1 locale cannot encode
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), recheck)


NAME_MAX = 255         # bytes in one file name on the file systems we write to (ext4, XFS, APFS, NTFS)


def hidden_prefix(name: str, after: int) -> str:
    """`.NAME.`, the prefix of a hidden temporary sibling of the file or folder NAME, with NAME cut
    (at a character) so that the prefix and the `after` bytes that follow it (mkstemp's 8 random
    characters and its suffix, a pid...) still make a name the file system takes: any output name
    it accepts must be writable, and `.NAME.xxxxxxxx.tmp` is 14 bytes longer than NAME."""
    while len(os.fsencode(name)) + 2 + after > NAME_MAX and name:
        name = name[:-1]
    return f".{name}."


# our hidden temporaries: `hidden_prefix` (or `.state.`), then `temp_file_beside`'s / mkdtemp's 8 random
# characters and ".tmp", or a manifest folder's "tmp-" and its 8, or "old-PID" / "replaced-PID" (a
# folder `replace_dir` or training set aside); a training run's `.state.old`. The fixed parts keep a
# user's `.my.holidays/` from being taken for one (8 letters after a dot)
_TEMPORARY_NAME = re.compile(r"\..*\.(?:[a-z0-9_]{8}\.tmp|tmp-[a-z0-9_]{8}|(?:old|replaced)-\d+)|\.state\.old")


def is_temporary_name(name: str) -> bool:
    """Whether `name` is one of our hidden temporary files or folders: a listing of the user's files
    leaves those out without naming them."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


# `temp_file_beside`'s names: `hidden_prefix`, 4 random bytes in hex, ".tmp"
_WRITER_RANDOM_BYTES = 4
_WRITER_TAIL = re.compile(rf"[0-9a-f]{{{2 * _WRITER_RANDOM_BYTES}}}\.tmp")


def _writer_prefix(path: Path) -> str:
    return hidden_prefix(path.name, 2 * _WRITER_RANDOM_BYTES + len(".tmp"))


def is_writer_temp(output: Path, name: str) -> bool:
    """Whether `name` (in `output`'s folder) is one of `temp_file_beside(output)`'s temporary files."""
    prefix = _writer_prefix(output)
    return name.startswith(prefix) and _WRITER_TAIL.fullmatch(name[len(prefix):]) is not None


def temp_file_beside(path: Path) -> tuple[int, Path]:
    """A new hidden temporary file (0600, `.NAME.xxxxxxxx.tmp`) beside `path`, open for writing, and
    its name, relative where `path` is: mkstemp makes it absolute, which no call can open past
    PATH_MAX (a relative output in a very deep working folder)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f"{_writer_prefix(path)}{secrets.token_hex(_WRITER_RANDOM_BYTES)}.tmp"
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object],
                     recheck: Callable[[], None] | None = None) -> Path:
    """`write(tmp)` fills a hidden temporary file beside `path`, which then replaces `path` in one
    step with the modes the umask allows (a writer such as safetensors' makes its files 0600).
    `recheck`: the caller's rule for replacing `path`, asked again just before the rename, as
    `outputs.artifact_dir` asks `check_out` again for a folder: a file written there since the caller
    first asked (by the user, or another run) is kept where the rule raises, and nothing is renamed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = temp_file_beside(p)
        os.close(fd)
    except OSError as e:
        raise write_error(e, p) from e
    try:
        try:
            write(tmp)
        except Exception as e:
            error = as_write_error(e, p)
            if error is None:
                raise
            raise error from e
        publish_mode(tmp)          # made 0600: the file gets what the umask allows
        if recheck is not None:
            recheck()
        safe_stop.publishing(tmp, p)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def written_meanwhile(refusal: str) -> OutputExistsError:
    """A `recheck`'s refusal of `write_atomically`: `refusal` says why the file is not replaced, and
    that it was written there while this run worked, and is kept."""
    return OutputExistsError(f"{refusal} (it was written there while this run was working, and is kept)")


def replace_dir(new: Path, out: Path, aside: Path | None = None, replace: bool = True) -> None:
    """Put the finished folder `new` in `out`'s place. An `out` already there is moved to `aside` (by
    default the hidden sibling `.OUT.old-PID`), `new` moved in, and only then the old one deleted; if
    `new` cannot be moved in, the old one goes back. SIGINT, SIGTERM and SIGHUP are held until it is done:
    between the renames neither is at `out`, and a stop there lost the new one and hid the old one.
    `replace=False`: the caller found no `out`, and one that appeared since (another run's) is kept:
    the rename itself refuses it (OSError)."""
    aside = aside or out.with_name(f"{hidden_prefix(out.name, 4 + 10)}old-{os.getpid()}")
    safe_stop.publishing(new, out)       # an interrupted verb then names it, if the rename is done
    with safe_stop.held():
        if not replace or not os.path.lexists(out):
            os.rename(new, out)          # onto a folder with files in it, or a file: refused
            return
        os.replace(out, aside)
        try:
            os.replace(new, out)
        except BaseException:
            os.replace(aside, out)       # the old one back where it was
            raise
        shutil.rmtree(aside, ignore_errors=True)
