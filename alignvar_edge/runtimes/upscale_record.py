"""What made each output of a folder `upscale` run: a hidden record (`RECORD_NAME`) that the run keeps
in its output folder, so that a rerun tells an output made from other input bytes, by another engine
or with other options that change its bytes (`--strip-metadata`, `--quality`, ...) from a finished
one, and redoes it. Each entry holds the input's real path and the SHA-256 of its bytes, the fingerprint of what made
the output, and the output's inode, size and modification time as it was written (every write
renames a new file into place): an entry describes that very file and no other. An output that no
entry describes (made before records were kept, written or copied since, its entry lost to another
run's update of the record, or a record that cannot be read) is judged as before by its size and
times (`upscale_jobs.foreign_outputs`, `changed_inputs`): a lost entry can only fall back to that
rule, never vouch for another file."""
from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignvar_edge import jsonsafe, progress
from alignvar_edge.errors import AlignVAREdgeError
from alignvar_edge.fsmodes import write_text
from alignvar_edge.manifest import ctime_is_kept, sha256_file, stat_key
from alignvar_edge.runtimes.upscale_jobs import Job, changed_inputs

__all__ = ["RECORD_NAME", "FolderRecord", "Hashed", "input_digest"]

# hidden and no image: no folder listing reads it or names it
RECORD_NAME = ".alignvar-edge-upscale.json"
# a folder of 10,000 small images is not rewritten after each one, nor is a large record saved
# for more than about 1/_SAVE_SHARE of the run; a stop saves what is left
_SAVE_EVERY_S = 2.0
_SAVE_SHARE = 20

_Stat = tuple[int, int, int]          # an output's (inode, size, modification time in ns)
_STAT_KEYS = ("inode", "size", "mtime_ns")


class FolderRecord:
    """The record of a folder run into `folder`. `made_by()`: the engine and the options that change
    the pixels of its results, as text (asked once, when first needed: a run with nothing to judge
    reads no engine); `strip_metadata` changes the bytes written too. Used as a context manager
    around the run's writing: leaving it saves the entries not yet saved, however the run ends."""

    def __init__(self, folder: Path, made_by: Callable[[], str], strip_metadata: bool) -> None:
        self.path = folder / RECORD_NAME
        self._folder = folder
        self._made_by, self._strip_metadata = made_by, strip_metadata
        self._fingerprint: str | None = None
        self._ours: dict[str, dict[str, Any]] = {}   # entries this run wrote, laid again over the file's at each save
        self._unsaved = False
        self._saved_at = time.monotonic()
        self._save_every = _SAVE_EVERY_S
        self._planned: dict[Path, _Stat | None] = {}  # outputs to redo -> what they were when planned
        self._save_failed = False

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            made = jsonsafe.dumps({"made_by": self._made_by(), "strip_metadata": self._strip_metadata}, indent=None)
            self._fingerprint = hashlib.sha256(made.encode()).hexdigest()
        return self._fingerprint

    def split(self, existing: list[Job]) -> tuple[list[Job], list[Job]]:
        """(pairs whose output an entry describes: this tool's results, and those no entry describes)."""
        entries = _read(self.path)
        ours: list[Job] = []
        others: list[Job] = []
        for job in existing:
            entry = entries.get(self._key(job[1]))
            (ours if entry is not None and _describes(entry, job) else others).append(job)
        return ours, others

    def made_otherwise(self, ours: list[Job]) -> tuple[list[Job], list[Job]]:
        """Of `split`'s own results: (those made from other input bytes than the input's now, those
        made by another engine or other options); either is to be redone. The rest are finished."""
        entries = _read(self.path)
        other_input, other_make = [], []
        for src, dst in ours:
            entry = entries.get(self._key(dst))
            if entry is None or not _describes(entry, (src, dst)):
                continue                # rewritten since `split`: judged there already
            # an input whose file is as it was when hashed is not read again (a rerun over a NAS of
            # photos read them all); a copy over it (`cp -p` keeps the time) has a new ctime
            if (entry.get("input_file") is None or entry["input_file"] != _input_file(src)) and _sha256(input_digest(src)) != entry["input_sha256"]:
                other_input.append((src, dst))
            elif entry["made_by"] != self.fingerprint:
                other_make.append((src, dst))
        for _, dst in other_input + other_make:
            self._planned[dst] = _stat(dst)
        return other_input, other_make

    def finished_by_another_run(self, job: Job, digest: Hashed | None) -> bool:
        """Whether `job`'s output, absent or to be redone when this run planned it, is now a finished
        result that another run into the folder wrote since: by its entry where one describes it (the
        input bytes `digest` and this run's fingerprint), else by the size and time rule."""
        src, dst = job
        now = _stat(dst)
        if now is None or (dst in self._planned and now == self._planned[dst]):
            return False                # not written since the plan
        entry = _read(self.path).get(self._key(dst))
        if entry is not None and _describes(entry, job):
            return digest is not None and (entry["input_sha256"], entry["made_by"]) == (digest[0], self.fingerprint)
        return not changed_inputs([job])

    def published(self, job: Job, digest: Hashed | None) -> None:
        """`dst` was just written from input bytes hashed as `digest` (None: not known, no
        entry: the size and time rule judges it)."""
        src, dst = job
        st = _stat(dst)
        if digest is None or st is None:
            return
        self._ours[self._key(dst)] = {"input": _input_key(src), "input_file": digest[1], "input_sha256": digest[0],
                                      "made_by": self.fingerprint, **dict(zip(_STAT_KEYS, st))}
        self._unsaved = True
        if time.monotonic() - self._saved_at >= self._save_every:
            self.save()

    def save(self, tidy: bool = False) -> None:
        """This run's entries written over the record as it is now: another run's entries are kept;
        `tidy`: those that no longer describe their output are dropped. A record that cannot be
        written is said once; the run goes on (its outputs are then judged by size and time)."""
        if not self._unsaved:
            return
        started = time.monotonic()
        entries = {**_read(self.path), **self._ours}
        if tidy:
            entries = {key: e for key, e in entries.items() if _stat(self._folder / key) == _written(e)}
        try:
            write_text(self.path, jsonsafe.dumps({"outputs": entries}, indent=None))
        except (OSError, AlignVAREdgeError) as e:
            if not self._save_failed:
                progress.note(f"cannot keep the record of what made each output ({e}); a rerun judges this run's "
                              "outputs by their size and time alone")
            self._save_failed = True
            return
        self._unsaved = False
        self._saved_at = time.monotonic()
        self._save_every = max(_SAVE_EVERY_S, _SAVE_SHARE * (self._saved_at - started))

    def __enter__(self) -> FolderRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save(tidy=True)

    def _key(self, dst: Path) -> str:
        return dst.relative_to(self._folder).as_posix()


# an input's SHA-256 (as the XMP InstanceID hashes it) and its `_input_file` identity just before
Hashed = tuple[str, "list[int] | None"]


def input_digest(src: Path) -> Hashed | None:
    """SHA-256 of an input's bytes (not kept in the artifacts' cache), with the file's identity taken
    before they were read: a file changed while it is hashed has other times than those recorded, and
    is hashed again on the next run. None where it is no regular file (a FIFO would wait for ever) or
    cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(src).st_mode):
            return None
        before = _input_file(src)
        return sha256_file(src, remember=False), before
    except OSError:
        return None


def _sha256(hashed: Hashed | None) -> str | None:
    return None if hashed is None else hashed[0]


def _stat(path: Path) -> _Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _describes(entry: dict[str, Any], job: Job) -> bool:
    """Whether `entry` was made for the file at the job's output as it is now (not rewritten since),
    from the job's input: an output of the same name that a run over another folder made is no
    result of this one (`upscale cam1 out`, then `upscale cam2 out`: each has its DSC_0001.jpg)."""
    src, dst = job
    return _stat(dst) == _written(entry) and entry["input"] == _input_key(src)


def _written(entry: dict[str, Any]) -> _Stat:
    return entry["inode"], entry["size"], entry["mtime_ns"]


def _input_file(src: Path) -> list[int] | None:
    """The input file's identity as the artifacts' hash cache keeps it (device, inode, size,
    modification and change times); None, so that it is hashed at every check, where the file
    system keeps no change time that tells an edit the modification time hides (FAT, exFAT)."""
    try:
        st = os.stat(src)
    except OSError:
        return None
    return list(stat_key(st)) if ctime_is_kept(st) else None


def _input_key(src: Path) -> str:
    """The input as the record names it: its real path, whatever the folder was called on the command line."""
    return os.path.realpath(src)


def _read(path: Path) -> dict[str, dict[str, Any]]:
    """The record's well-formed entries; a record that is absent, unreadable or damaged (cut short,
    another program's file of that name) has none."""
    try:
        if not path.is_file():      # a FIFO or a folder there is no record
            return {}
        doc = jsonsafe.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, dict):
        return {}
    return {key: e for key, e in outputs.items() if _well_formed(e)}


def _well_formed(entry: object) -> bool:
    return (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("input", "input_sha256", "made_by"))
            and all(type(entry.get(k)) is int for k in _STAT_KEYS))
