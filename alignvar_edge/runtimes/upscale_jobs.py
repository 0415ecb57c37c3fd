"""Which files an `upscale` run reads and writes: (input, output) pairs for a file or a folder,
refused before any work where an output would land on an input, on another input's output, on a
folder, below a file, on a broken link, inside an artifact directory or in a folder that cannot be
written; and which files already at a folder run's output paths are not its results
(`foreign_outputs`), or results of an input that changed since (`changed_inputs`), where the run's
record (`upscale_record`) has no word on them; and how far a folder run has got (`FolderTally`):
what it says when it ends, is stopped or fails."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from alignvar_edge import safe_stop
from alignvar_edge.caller import option
from alignvar_edge.errors import InputError, OutputExistsError, SkippedInputsError
from alignvar_edge.fsmodes import (broken_link, file_id, lies_within, not_told_apart, one_name_on_any_disk, same_file,
                                   special_kind, unwritable_folder)
from alignvar_edge.manifest import first_names
from alignvar_edge.outputs import check_outside_artifacts

__all__ = ["FolderTally", "Job", "changed_inputs", "foreign_outputs", "plan_jobs"]

Job = tuple[Path, Path]          # (input image, output path)


def plan_jobs(inp: Path, out: Path, force: bool) -> tuple[list[Job], list[Job], list[str]]:
    """((input, output) pairs to do, pairs of a folder run whose output exists, the lines naming what
    a folder run does not read, so no file is left out silently); a folder maps to a folder with the
    same relative paths. A folder run never reads its own output folder (where it lies inside the
    input, or a link in the input leads to it) and leaves the outputs that exist to
    `foreign_outputs` and `changed_inputs` to judge: without --force, re-running an interrupted
    folder resumes it."""
    from alignvar_edge.images import READ_EXTENSIONS, result_path
    from alignvar_edge.images.folders import list_folder
    for path, fix in ((out, "remove it or choose another output"), (inp, "fix or remove the link")):
        if (broken := broken_link(path)) is not None:
            raise InputError(f"{broken}; {fix}")
    if (kind := special_kind(inp)) is not None:
        raise InputError(f"{inp} is {kind}, not an image file or a folder; pass one of those")
    # a folder run writes into `out`; a file's output lands in `out` where that is a folder
    check_outside_artifacts(out, f"the output {out}", itself=inp.is_dir() or out.is_dir())
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise InputError(f"{out} is a file; for a folder input pass an output folder")
        if same_file(out, inp):              # `Photos` and `photos` are one folder on a case-insensitive disk
            raise InputError(f"the output folder {out} is the input folder; choose another output folder")
        listing = list_folder(inp, READ_EXTENSIONS, skip=out)
        files = listing.images
        if not files:
            raise InputError("; ".join([f"no images ({', '.join(READ_EXTENSIONS)}) under {inp}"
                                        + (f" outside the output folder {out}" if own_output(inp, out) else ""),
                                        *listing.not_read(inp)]))
        jobs = [(f, result_path(out / f.relative_to(inp))) for f in files]
        _refuse_shared_outputs(jobs)
        # an input folder inside the output (`upscale photos/small photos`) maps one input's output
        # onto another input (small/small/a.png -> small/a.png): refused, as onto its own input
        inputs = {file_id(f) for f in files}
        for src, dst in jobs:
            if (dst_id := file_id(dst)) is not None and dst_id in inputs:
                raise InputError(f"refusing to write onto the input {dst}; choose another output")
        _refuse_blocked(jobs)
        _refuse_unwritable(jobs)
        existing = [(s, d) for s, d in jobs if d.exists()]
        todo = jobs if force else [(s, d) for s, d in jobs if not d.exists()]
        return todo, existing, listing.not_read(inp)
    elif inp.is_file():
        if out.is_dir():
            jobs = [(inp, result_path(out / inp.name))]
        else:
            jobs = [(inp, out)]
    else:
        raise InputError(f"{inp} does not exist; pass an image file or a folder")
    for src, dst in jobs:
        if dst.exists() and same_file(src, dst):
            raise InputError(f"refusing to write onto the input {src}; choose another output")
    _refuse_blocked(jobs)
    _refuse_unwritable(jobs)
    clash = [str(d) for _, d in jobs if d.exists()]
    if clash and not force:
        raise OutputExistsError(f"{len(clash)} output(s) already exist: {first_names(clash)}; pass --force to "
                                "replace them")
    return jobs, [], []


def _refuse_shared_outputs(jobs: list[Job]) -> None:
    """Two inputs of a folder with one output (`a.gif` and `a.png`: a GIF's result is a .png):
    the second would replace the first's, or be skipped as finished. Names that differ in case
    alone (`A.png` and `a.gif`), or in how an accented letter is encoded (`café` composed and
    decomposed), are one file where the output lies on macOS's (and for case, Windows's or a memory
    card's) file system, or is copied there later: refused on any. Every such clash is named in the
    one refusal (the first `_CLASHES_SHOWN`, then how many more): one a run, renamed one at a time,
    took a run for each."""
    sharing: dict[str, list[Job]] = {}
    for job in jobs:
        sharing.setdefault(one_name_on_any_disk(job[1]), []).append(job)
    clashes = [_clash(group) for group in sharing.values() if len(group) > 1]
    if not clashes:
        return
    more = len(clashes) - _CLASHES_SHOWN
    pair = len(clashes) == 1 and sum(len(g) for g in sharing.values() if len(g) > 1) == 2
    raise InputError("; ".join(clashes[:_CLASHES_SHOWN]) + (f"; and {more} more such output(s)" if more > 0 else "")
                     + ("; rename one of them" if pair else "; rename them so that no two share an output"))


_CLASHES_SHOWN = 3


def _clash(group: list[Job]) -> str:
    """'A and B would both be written to OUT' for inputs sharing one output, or outputs that are one
    file where the output lies ('OUT1 and OUT2, one file where case is not told apart')."""
    outputs = list(dict.fromkeys(dst for _, dst in group))
    where = (str(outputs[0]) if len(outputs) == 1 else
             f"{_listed(outputs)}, one file where {not_told_apart(outputs[0], outputs[-1])}")
    return f"{_listed([src for src, _ in group])} would {'both' if len(group) == 2 else 'all'} be written to {where}"


def _listed(paths: list[Path]) -> str:
    """'a and b', 'a, b and c'."""
    names = [str(p) for p in paths]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _refuse_blocked(jobs: list[Job]) -> None:
    """An output path that is a folder is no finished output: no image can be written there,
    --force or not (`upscale a.png out/` where out/a.png is a folder, too); nor one below a file
    (`upscale a.png a.png/x.png`: `_refuse_unwritable`'s), nor a broken symbolic link."""
    blocked = [str(d) for _, d in jobs if d.is_dir()]
    if blocked:
        raise InputError(f"output path {blocked[0]} is a folder; move it away"
                         + (f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else ""))
    for _, dst in jobs:
        if (broken := broken_link(dst)) is not None:
            raise InputError(f"{broken}; remove it or choose another output")


def _refuse_unwritable(jobs: list[Job]) -> None:
    # once per output folder, not per image: each check creates and removes a probe file there
    first_output: dict[Path, Path] = {}
    for _, dst in jobs:
        first_output.setdefault(dst.parent, dst)
    for dst in first_output.values():
        if (folder := unwritable_folder(dst)) is not None:
            raise InputError(f"cannot write {dst}: the folder {folder} is not writable; choose another output")


def own_output(inp: Path, out: Path) -> bool:
    """Whether the output folder lies inside the input folder: its files are a run's outputs, never
    inputs. An input folder inside the output is read whole."""
    return lies_within(out.resolve().parent, inp)


def foreign_outputs(existing: list[Job], scale: int) -> list[str]:
    """The files at a folder run's output paths that are not results it would have written (empty,
    not an image, not the input's size times `scale`), each as 'PATH (why)': a file of the user's is
    never skipped as a finished output."""
    from alignvar_edge.images.folders import not_a_result
    return [f"{dst} ({why})" for src, dst in existing if (why := not_a_result(src, dst, scale)) is not None]


# A FAT file system keeps times to 2 s, rounded down: an output written just after its input was
# saved can read as older than it.
_MTIME_SLACK_NS = 2_000_000_000


def changed_inputs(existing: list[Job]) -> list[Job]:
    """The pairs of a folder run whose input was modified after its output was written (a frame
    extracted again, a photo edited): that output is the result of what the input held before, no
    finished one. An input dated in the future (a camera's wrong clock, kept by a copy) says
    nothing about when it changed: its output counts as finished."""
    now = time.time_ns()
    return [(src, dst) for src, dst in existing
            if dst.stat().st_mtime_ns + _MTIME_SLACK_NS < src.stat().st_mtime_ns <= now]


@dataclass
class FolderTally:
    """How far a folder run has got, for the lines it ends with, or stops or fails with."""
    total: int                                  # the images this run set out to do
    force: bool = False                         # --force: it redoes every image, finished ones too
    written: int = 0
    working: set[Path] = field(default_factory=set)     # outputs it started (read, claimed), did not drop
    unusable: list[tuple[Path, str]] = field(default_factory=list)     # (input, why) it went past
    taken: list[Path] = field(default_factory=list)     # outputs another run wrote meanwhile
    left: list[Path] = field(default_factory=list)      # outputs another live run was working on

    def drop(self, dst: Path) -> None:
        """`dst` was started but is another run's: this run will not write it."""
        self.working.discard(dst)

    def _finished_and_dropped(self) -> tuple[int, int]:
        # what is in place, counted by the publishes the CLI records (`safe_stop.kept`): a stop that
        # comes just after an image's rename, before the loop counts it, still counts it
        kept = set(safe_stop.kept())
        dropped = sum(1 for dst in self.working if os.fspath(dst) not in kept)
        return len(self.working) - dropped, dropped

    def stopped(self) -> str:
        """What an interrupt of the run says it kept and dropped (small images share the engine's
        calls, so several may be in progress at once)."""
        finished, dropped = self._finished_and_dropped()
        command, keeps = self._going_on()
        return (f"{finished} of {self.total} image(s) finished and kept; {dropped} in progress dropped; run "
                f"{command} to finish ({keeps})")

    def failed(self) -> str:
        """What a run the system failed (a full disk) says after its error: what it kept, how to go on."""
        finished, _ = self._finished_and_dropped()
        command, keeps = self._going_on()
        return (f"{finished} of {self.total} image(s) were finished and are kept: once that is fixed, {command} "
                f"does the rest ({keeps})")

    def _going_on(self) -> tuple[str, str]:
        """The command that goes on, and what it does with the finished images: with --force the
        same command would redo them too."""
        if self.force:
            return f"the same command without {option('force')}", "it keeps the finished ones"
        return "the same command again", "it skips the finished ones"

    def check_all_used(self, finished_before: int) -> None:
        """The run's end where it went past unusable inputs: `SkippedInputsError` (exit 4) where the
        folder has images done (`finished_before`: skipped as finished when it started), else an
        InputError (exit 2): no image of the folder could be used, nothing was written."""
        if not self.unusable:
            return
        names = first_names([str(src) for src, _ in self.unusable])
        if self.written + len(self.taken) + len(self.left) + finished_before == 0:
            raise InputError(f"none of the {len(self.unusable)} image file(s) could be upscaled ({names}, each "
                             "named above with why); fix or remove them and run the same command again")
        # said from the counts: the other images may be this run's, an earlier run's or another live run's
        done = [f"{n} {what}" for n, what in ((self.written, "upscaled by this run"),
                                              (finished_before, "finished before"),
                                              (len(self.taken), "written by another run meanwhile"),
                                              (len(self.left), "left to another run working on them")) if n]
        raise SkippedInputsError(
            f"of the other images, {', '.join(done)}; {len(self.unusable)} file(s) could not be upscaled: {names} "
            "(each named above with why); fix or remove them and run the same command again (it skips the "
            "finished images)", [(str(src), why) for src, why in self.unusable], self.written)
