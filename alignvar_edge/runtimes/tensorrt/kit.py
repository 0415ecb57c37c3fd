"""The TensorRT build kit for a device (Jetson): README.md, build_on_device.sh and trtexec.txt.
`adopt` (adopt.py) turns an engine built there (by the script or by hand with trtexec) into an
engine directory with a manifest and golden outputs.

A kit is the ONNX export plus these files and `golden.safetensors`; `build --target tensorrt`
writes one where TensorRT is absent, and every TensorRT engine directory carries the same files
(so it can be rebuilt on another device). The script builds with trtexec (JetPack ships it) in
one run that also times the engine, then, with alignvar-edge installed: `adopt` (manifest),
`bench trtexec` (a bench report for `bench merge`) and `selftest --engine` (parity against the
golden outputs, whose status the script exits with). Which trtexec flags each precision needs comes from `tensorrt.plan.network_plan`.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
from pathlib import Path
from typing import Any

from alignvar_edge.errors import BackendUnavailableError, InputError
from alignvar_edge.manifest import MANIFEST_FILE as MANIFEST, Manifest, input_contract, paths_replaced, shown_name
from alignvar_edge.name_text import shell_word
from alignvar_edge.recipes import precisions
from alignvar_edge.runtimes.golden import GOLDEN_FILE
from alignvar_edge.runtimes.readme import README_FILE, file_checks, golden_check, model_notes, whole_images, write_readme
from alignvar_edge.runtimes.tensorrt.plan import (CACHE as TIMING_CACHE, DLA_CORE_HELP, DLA_CORES, DLA_PRECISION_ERROR,
                                                  ENGINE, FP16_EXPORT_COMMAND, FP16_F32, MAX_ARG, ONNX, SCRIPT_FILE, TRTEXEC_FILE,
                                                  base_args, dla_args, f32_layers_of, half_layers_of, network_plan,
                                                  precision_args, trtexec_command)
from alignvar_edge.runtimes.tensorrt.trtexec_log import parse_trtexec_log, read_trtexec_log

LOG_FILE = "trtexec.log"
# the CLI's exit status where a backend cannot run here (selftest without a usable TensorRT)
UNAVAILABLE_EXIT = BackendUnavailableError.exit_code
# JetPack 6.1 and 6.2 (Jetson Linux 36.4.x): TensorRT 10.3, CUDA 12.6, Python 3.10, Ubuntu 22.04
JETPACK_TRT_MAJOR = 10
# the virtual environment README.md's step 2 installs alignvar-edge into, under the home directory
DEVICE_VENV = "alignvar-venv"
# the first TensorRT that builds strongly typed networks only (plan.network_plan): the script's other flags
STRONGLY_TYPED_MAJOR = 11
# what a kit whose graph cannot give an fp16 engine on TensorRT 11 asks of its host (jetson.md's commands)
# (quoted with ' as it goes into the script's double-quoted strings)
FP16_EXPORT_STEPS = (f"on the host, '{FP16_EXPORT_COMMAND}' (EXPORT: the fp32 export this kit came from), then "
                     "'alignvar-edge build "
                     "EXPORT-fp16 --target tensorrt --precision fp16 --out KIT-fp16', and run KIT-fp16's "
                     "build_on_device.sh here")


# where the script and trtexec.txt find trtexec: on PATH, else where JetPack installs it
TRTEXEC_LOOKUP = "$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)"

def precision_flags(kit_precision: str, f32_layers: list[str] | tuple[str, ...] = (),
                    half_layers: list[str] | None = None, trt_major: int = JETPACK_TRT_MAJOR) -> dict[str, str]:
    """precision -> trtexec flags for TensorRT `trt_major` (10: JetPack 6.1/6.2), or 'ERROR: why'
    where the kit's ONNX cannot give that precision or trtexec cannot take the flags."""
    out = {}
    for p in precisions("tensorrt"):
        try:
            plan = network_plan(trt_major, p, kit_precision, f32_layers, half_layers)
        except InputError as e:
            out[p] = "ERROR: " + str(e).replace("`", "'")
            continue
        args = precision_args(plan)
        if max(map(len, args), default=0) > MAX_ARG:
            out[p] = (f"ERROR: its layer precisions are longer than one command-line argument may be; build "
                      f"it on the device with 'alignvar-edge build KIT --target tensorrt --precision {p}', "
                      "which sets them through TensorRT's Python API")
            continue
        out[p] = " ".join(args)
    return out


def _shown(flags: str) -> str:
    """Flags for a table: a long --layerPrecisions list as its counts (the script has it whole)."""
    words = flags.split()
    for i, w in enumerate(words):
        if w.startswith("--layerPrecisions=*:fp32,"):
            words[i] = f"--layerPrecisions=*:fp32,<{w.count(':fp16')} layers>:fp16"
        elif w.startswith("--layerPrecisions="):
            words[i] = f"--layerPrecisions=<{w.count(':fp32')} layers>:fp32"
    return " ".join(words)


def not_an_engine(kit: str | os.PathLike[str], then: str) -> str:
    """A kit where an engine is asked for (bench, upscale, selftest, load): the one wording, with
    what to do with the engine its script builds (`then`)."""
    script = shell_word(os.path.join(kit, SCRIPT_FILE))
    return f"a TensorRT build kit, not an engine: build it on the device with `sh {script}` and {then}"


def _script_case(precision: str, flags: str, typed: str) -> str:
    """The script's commands for one precision: TensorRT 10's flags and TensorRT 11's (or why not),
    or a refusal where even TensorRT 10 cannot build it from this kit."""
    if flags.startswith("ERROR: "):
        return f'die "{precision}: {flags[len("ERROR: "):]}"'
    if not typed.startswith("ERROR: "):
        return f'FLAGS="{flags}"; FLAGS11="{typed}"'
    why = (f"{precision} needs a graph that carries fp16 there (strongly typed networks only, no FP16 flag): "
           f"{FP16_EXPORT_STEPS}" if precision == "fp16" else f"{precision}: {typed[len('ERROR: '):]}")
    return f'FLAGS="{flags}"; WHY11="{why}"'


# awk: "value key" for each string entry of the top-level object's "files" in a JSON file, read a
# character at a time (POSIX awk: mawk, busybox); a key's \" \\ \/ escapes are read, others kept
LISTED_FILES_AWK = r"""
{ text = text $0 "\n" }
END {
    n = length(text); depth = 0; colon = 0; files = 0; key = ""
    for (i = 1; i <= n; i++) {
        c = substr(text, i, 1)
        if (c == "\"") {
            s = ""
            for (i++; i <= n && (c = substr(text, i, 1)) != "\""; i++) {
                if (c == "\\") { i++; c = substr(text, i, 1) }
                s = s c
            }
            if (!colon) key = s
            else if (files && depth == 2) print s, key
            colon = 0
        } else if (c == ":") colon = 1
        else if (c == ",") colon = 0
        else if (c == "{" || c == "[") {
            depth++
            if (depth == 2) files = (colon && key == "files" && c == "{")
            colon = 0
        } else if (c == "}" || c == "]") {
            depth--
            if (depth < 2) files = 0
        }
    }
}
"""


def build_script(precision: str, kit_precision: str, workspace_mib: int | None, opt_level: int,
                 f32_layers: list[str] | tuple[str, ...] = (), half_layers: list[str] | None = None,
                 checked: tuple[str, ...] = (ONNX,), dla_core: int | None = None) -> str:
    """build_on_device.sh: POSIX sh, passes shellcheck (tests/test_runtimes_tensorrt.py). Before
    anything else it checks every file manifest.json lists against its SHA-256 there (`checked`,
    the files it reads itself, must be listed) and trtexec's major version, so a broken copy or
    the wrong JetPack stops in one line rather than after a long build. `dla_core`: the default
    core (an engine directory built on one rebuilds there, as its trtexec.txt says)."""
    flags = precision_flags(kit_precision, f32_layers, half_layers)
    typed = precision_flags(kit_precision, f32_layers, half_layers, STRONGLY_TYPED_MAJOR)
    cases = "\n".join(f"    {p}) {_script_case(p, f, typed[p])} ;;" for p, f in flags.items())
    checked_words = " ".join(checked)
    # trtexec's fixed flags from the plan module, the one spelling of them (trtexec.txt's too)
    fixed = " ".join(base_args('"$HERE/model.onnx"', '"$WORK/model.engine"', '"$CACHE"', opt_level, workspace_mib))
    return f"""#!/bin/sh
# Build, check and time the AlignVAR TensorRT engine on the device that will run it (an engine is
# specific to the TensorRT version and the GPU). Steps and requirements: README.md beside this file.
#
# usage: sh build_on_device.sh [--precision fp32|fp16|int8] [--dla-core N|none] [--out DIR]
#                              [--timing-cache FILE] [--duration SECONDS]
#   --precision     default {precision}; int8 needs a kit made from the Q/DQ export
#   --dla-core N    run on DLA core N (Orin AGX, NX 16GB: 0 or 1; NX 8GB: 0), unsupported layers fall back to the GPU;
#                   none: the GPU (default {"none" if dla_core is None else dla_core})
#   --out DIR       the engine directory to write (default: <kit>-<precision>[-dlaN] beside the
#                   kit; <kit>-engine when the kit's name already ends in that, <kit>-engine-dlaN
#                   when it ends in the precision); an existing one must be an engine directory
#   --timing-cache  TensorRT timing cache shared by builds (default: {TIMING_CACHE} beside OUT)
#   --duration      seconds trtexec times the engine after building it (default 10)
# Environment: PYTHON (default python3) is the interpreter with alignvar-edge[device] installed.
set -eu

die() {{
    echo "build_on_device.sh: $*" >&2
    exit 2
}}

HERE=$(cd "$(dirname "$0")" && pwd)
PRECISION={precision}
DLA="{"" if dla_core is None else dla_core}"
OUT=""
CACHE=""
DURATION=10
PYTHON=${{PYTHON:-python3}}

while [ $# -gt 0 ]; do
    case "$1" in
        --precision|--dla-core|--out|--timing-cache|--duration)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --precision) PRECISION=$2 ;;
                --dla-core) DLA=$2; [ "$DLA" != none ] || DLA="" ;;
                --out) OUT=$2 ;;
                --timing-cache) CACHE=$2 ;;
                --duration) DURATION=$2 ;;
            esac
            shift 2 ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# trtexec flags per precision for this kit's ONNX ({kit_precision}): FLAGS for TensorRT 10 (JetPack
# 6.1/6.2), FLAGS11 for TensorRT {STRONGLY_TYPED_MAJOR} and later (strongly typed networks only), or WHY11 why not
FLAGS11=""
WHY11=""
case "$PRECISION" in
{cases}
    *) die "--precision must be fp32, fp16 or int8, not '$PRECISION'" ;;
esac
DLA_FLAGS=""
if [ -n "$DLA" ]; then
    case "$DLA" in
        {"|".join(map(str, DLA_CORES))}) ;;
        *) die "--dla-core takes {DLA_CORE_HELP}, not '$DLA'" ;;
    esac
    [ "$PRECISION" != fp32 ] || die "{DLA_PRECISION_ERROR}"
    DLA_FLAGS="{" ".join(dla_args("$DLA"))}"
fi

# the default name says precision and DLA core, once: an engine directory named so rebuilds beside
# it, and one named <kit>-engine[-dlaN] (a rebuild's) into <kit>-engine with its new core, or, on
# the same core, into <itself>-rebuild
SUFFIX="-$PRECISION${{DLA:+-dla$DLA}}"
case "$HERE" in
    *-engine|*-engine-dla[0-9]) BASE="${{HERE%-engine*}}-engine${{DLA:+-dla$DLA}}"
        [ "$BASE" != "$HERE" ] || BASE="$HERE-rebuild" ;;
    *"$SUFFIX") BASE="$HERE-engine" ;;
    *-"$PRECISION") BASE="$HERE-engine${{DLA:+-dla$DLA}}" ;;
    *) BASE="$HERE$SUFFIX" ;;
esac
[ -n "$OUT" ] || OUT=$BASE
# the same directory however it is spelled (./kit, kit/, .., links): compare resolved paths
if [ -d "$OUT" ] && [ "$(cd "$OUT" && pwd -P)" = "$(cd "$HERE" && pwd -P)" ]; then
    die "--out names this kit itself; pass another directory"
fi
[ -n "$CACHE" ] || CACHE="$(dirname "$OUT")/{TIMING_CACHE}"
WORK="$OUT.work"
# a file written inside the kit fails its verification (the manifest lists every file), which adopt
# finds only after the build: refuse such an --out or --timing-cache now (its nearest existing folder)
folder_of() {{
    d=$(dirname "$1")
    while [ ! -d "$d" ]; do d=$(dirname "$d"); done
    echo "$d"
}}
in_kit() {{
    case "$(cd "$(folder_of "$1")" && pwd -P)/" in "$(cd "$HERE" && pwd -P)/"*) return 0 ;; esac
    return 1
}}
! in_kit "$OUT" || die "--out $OUT is inside this kit, whose manifest lists every file it holds: pass a directory outside it"
! in_kit "$CACHE" || die "--timing-cache $CACHE is inside this kit, whose manifest lists every file it holds: pass a file outside it"
# both go beside the kit by default, which may be read-only (a mounted or copied-in kit): say so before
# the long checks, not as mkdir's bare error
D=$(folder_of "$OUT")
[ -w "$D" ] || die "cannot write the engine directory $OUT (and its work folder $WORK): $D is not writable; pass --out DIR and --timing-cache FILE on a writable disk"
D=$(folder_of "$CACHE")
[ -w "$D" ] || die "cannot write the timing cache $CACHE: $D is not writable; pass --timing-cache FILE on a writable disk"
# adopt replaces OUT (--force) only where it is an engine directory of ours, and only after the build:
# refuse anything else now (alignvar-edge's own rule, whose words name the --force that this script,
# not its user, passes); the work folder holds this script's files only
HAVE_AE=""
! "$PYTHON" -c "import alignvar_edge" >/dev/null 2>&1 || HAVE_AE=1
# installed as README.md's step 2 says, but run from a shell where that venv is not active: say so now,
# not after a build that checks nothing
VENV_PYTHON="${{HOME:-}}/{DEVICE_VENV}/bin/python"
if [ -z "$HAVE_AE" ] && [ -x "$VENV_PYTHON" ] && "$VENV_PYTHON" -c "import alignvar_edge" >/dev/null 2>&1; then
    die "alignvar-edge is not importable by $PYTHON, but it is installed in ~/{DEVICE_VENV}: run this script again after '. ~/{DEVICE_VENV}/bin/activate' (or with PYTHON=$VENV_PYTHON in front of 'sh')"
fi
if [ -n "$HAVE_AE" ]; then
    WHY=$("$PYTHON" -c 'import sys
from pathlib import Path
from alignvar_edge.caller import command_line, option
from alignvar_edge.errors import AlignVAREdgeError
from alignvar_edge.outputs import check_out
with command_line():
    try:
        check_out(sys.argv[1], force=True)
    except AlignVAREdgeError as e:      # the line below names --out OUT already
        print(str(e).removeprefix(option("out", Path(sys.argv[1])) + ": ").replace("--force", "this script"))' "$OUT") || die "$PYTHON could not check --out $OUT"
    [ -z "$WHY" ] || die "--out $OUT: $WHY"
fi
for f in "$WORK"/* "$WORK"/.[!.]*; do
    [ -e "$f" ] || continue
    case "${{f##*/}}" in
        {ENGINE}|{LOG_FILE}) ;;
        *) die "$WORK holds files this script did not write, and it removes that folder when done: move them out, or pass another --out" ;;
    esac
done

# every file manifest.json lists (`adopt` verifies them all, after the build), against its SHA-256
sha256() {{
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}}
[ -f "$HERE/{MANIFEST}" ] || die "{MANIFEST} is missing from $HERE: copy the whole kit directory again"
# "SHA-256 path" lines from its top-level "files", however the JSON is laid out (inspect and adopt
# take it reformatted: indented otherwise, compact, its keys in another order)
LISTED=$(awk '{LISTED_FILES_AWK}' "$HERE/{MANIFEST}")
for f in {checked_words}; do
    echo "$LISTED" | grep -q "^[0-9a-f]* $f$" || die "{MANIFEST} in $HERE lists no $f: copy the whole kit directory again"
done
while read -r want f; do
    [ -n "$f" ] || continue
    [ -f "$HERE/$f" ] || die "$f is missing from $HERE: copy the whole kit directory again"
    [ "$(sha256 "$HERE/$f")" = "$want" ] || die "$HERE/$f does not match its SHA-256 in {MANIFEST} (corrupt or partly copied): copy the kit again"
done <<EOF
$LISTED
EOF

TRTEXEC={TRTEXEC_LOOKUP}
[ -x "$TRTEXEC" ] || die "trtexec not found: on JetPack it is /usr/src/tensorrt/bin/trtexec (sudo apt install tensorrt)"
# the flags above are TensorRT 10's; trtexec names its version first ("[TensorRT v100300]": 10.3.0)
V=$("$TRTEXEC" --help 2>&1 | sed -n 's/.*TensorRT\\.trtexec \\[TensorRT v\\([0-9][0-9]*\\)\\].*/\\1/p' | head -n 1)
if [ -n "$V" ]; then
    if [ "$V" -ge 100000 ]; then MAJOR=$((V / 10000)); MINOR=$((V / 100 % 100)); else MAJOR=$((V / 1000)); MINOR=$((V / 100 % 10)); fi
    if [ "$MAJOR" -lt {JETPACK_TRT_MAJOR} ]; then
        die "$TRTEXEC is TensorRT $MAJOR.$MINOR.$((V % 100)); this kit is for TensorRT {JETPACK_TRT_MAJOR} (JetPack 6.1 or 6.2; JetPack 6.0 has 8.6): upgrade JetPack"
    elif [ "$MAJOR" -ge {STRONGLY_TYPED_MAJOR} ]; then
        [ -z "$WHY11" ] || die "$TRTEXEC is TensorRT $MAJOR.$MINOR.$((V % 100)); $WHY11"
        FLAGS=$FLAGS11
    fi
fi
mkdir -p "$WORK"

[ -n "$HAVE_AE" ] || echo "note: alignvar-edge is not importable by $PYTHON: this run builds and times the engine but checks nothing (to check it too: install alignvar-edge, README.md step 2, and run this script with its venv active, or with PYTHON=<venv>/bin/python)" >&2
echo "building $PRECISION${{DLA:+ on DLA core $DLA}} with $TRTEXEC (log: $WORK/{LOG_FILE})"
# one trtexec run builds (reusing the timing cache) and then times the engine; the whole log is kept
# shellcheck disable=SC2086 # FLAGS and DLA_FLAGS are lists of words
if ! "$TRTEXEC" {fixed} $FLAGS $DLA_FLAGS \\
        --warmUp=500 --duration="$DURATION" --useSpinWait >"$WORK/{LOG_FILE}" 2>&1; then
    tail -n 25 "$WORK/{LOG_FILE}" >&2
    die "trtexec failed; the whole log is $WORK/{LOG_FILE}"
fi
sed -n '/=== Performance summary ===/,/Total GPU Compute Time/p' "$WORK/{LOG_FILE}"

if [ -z "$HAVE_AE" ]; then
    echo "engine: $WORK/model.engine, NOT CHECKED: alignvar-edge is not importable by $PYTHON, so there"
    echo "is no manifest, parity check or report yet. Install it (README.md, step 2), or activate the venv it"
    echo "is in ('. ~/{DEVICE_VENV}/bin/activate'; or run this script with PYTHON=<venv>/bin/python), then run"
    # the paths double-quoted, as a shell reads them back (a kit under "Jetson kits/" has a space)
    echo "  alignvar-edge adopt \\"$WORK/model.engine\\" --like \\"$HERE\\" --log \\"$WORK/{LOG_FILE}\\" --precision $PRECISION --out \\"$OUT\\""
    echo "  alignvar-edge selftest --engine \\"$OUT\\""
    echo "  alignvar-edge bench trtexec \\"$WORK/{LOG_FILE}\\" --engine \\"$OUT\\" --out \\"$OUT-report.json\\""
    exit 0
fi

ae() {{
    "$PYTHON" -m alignvar_edge.cli "$@"
}}
if [ -n "$DLA" ]; then set -- --dla-core "$DLA"; else set --; fi
# an earlier run's reports beside OUT are not this engine's: none outlives this run
rm -f "$OUT-report.json" "$OUT-selftest.json"
# the engine directory: engine + manifest (TensorRT version, GPU, precision, DLA) + golden outputs.
# Where TensorRT runs here, adopt also checks the engine against the golden outputs and refuses one
# that fails: its timing still stands (read with the kit's manifest), and adopt's status is the script's
STATUS=0
ae adopt "$WORK/model.engine" --like "$HERE" --log "$WORK/{LOG_FILE}" --precision "$PRECISION" \\
    --out "$OUT" --force "$@" || STATUS=$?
if [ "$STATUS" -ne 0 ]; then
    ae bench trtexec "$WORK/{LOG_FILE}" --engine "$HERE" --out "$OUT-report.json" || true
    echo "done: the engine $WORK/model.engine was not adopted (exit $STATUS, above); its trtexec log is $WORK/{LOG_FILE}"
    exit "$STATUS"
fi
# the bench hand-off: trtexec's timing summary as a report for `alignvar-edge bench merge` (the
# timing stands whatever parity says; adopt kept the log as $OUT/{LOG_FILE})
ae bench trtexec "$OUT/{LOG_FILE}" --engine "$OUT" --out "$OUT-report.json"
rm -rf "$WORK"
# parity: the engine against the golden outputs shipped in the kit; its status is the script's
ae selftest --engine "$OUT" --json "$OUT-selftest.json" || STATUS=$?
# selftest's status: 1 the engine failed the check, {UNAVAILABLE_EXIT} the check could not run here (TensorRT or
# its CUDA binding unusable), another an error before any check
case "$STATUS" in
    0) echo "done: engine directory $OUT, parity $OUT-selftest.json, bench report $OUT-report.json"; exit 0 ;;
    1) PARITY="the parity check did not pass (exit 1, above)" ;;
    {UNAVAILABLE_EXIT}) PARITY="the parity check could not run here (exit {UNAVAILABLE_EXIT}, above): fix what it names, then run: $PYTHON -m alignvar_edge selftest --engine $OUT --json $OUT-selftest.json" ;;
    *) PARITY="the parity check stopped with an error (exit $STATUS, above)" ;;
esac
echo "done: engine directory $OUT, bench report $OUT-report.json; $PARITY"
exit "$STATUS"
"""


def _data_rows(data: list[str] | tuple[str, ...]) -> str:
    """File-table rows for the files that hold model.onnx's weights (export --external-data)."""
    return "".join(f"| `{f}` | the weights of `{ONNX}`, which it reads from this file |\n" for f in data)


def _cell(flags: str) -> str:
    return "`" + _shown(flags) + "`" if flags and not flags.startswith("ERROR") else (
        "(none)" if not flags else "not from this kit: " + flags[len("ERROR: "):])


def _flags_table(manifest: Manifest, kit_precision: str) -> str:
    """The trtexec flags per precision, TensorRT 10 and TensorRT 11, as the script has them."""
    layers = f32_layers_of(manifest), half_layers_of(manifest)
    flags = precision_flags(kit_precision, *layers)
    typed = precision_flags(kit_precision, *layers, trt_major=STRONGLY_TYPED_MAJOR)
    head = f"| precision | TensorRT {JETPACK_TRT_MAJOR} (JetPack 6.1/6.2) | TensorRT {STRONGLY_TYPED_MAJOR} |\n|---|---|---|\n"
    return head + "\n".join(f"| {p} | {_cell(f)} | {_cell(typed[p])} |" for p, f in flags.items())


def kit_readme(manifest: Manifest, precision: str, kit_precision: str, data: list[str] | tuple[str, ...] = ()) -> str:
    """README.md of a kit: the exact steps on JetPack 6.1/6.2, with this kit's names and numbers;
    `data`: the files holding its ONNX's external weights."""
    name = manifest.model.name or (manifest.config or {}).get("name") or "the model"
    c = input_contract(manifest) or {}
    flags = precision_flags(kit_precision, f32_layers_of(manifest), half_layers_of(manifest))
    # DLA runs fp16 and int8 only: the example uses the kit's own precision where DLA can run it
    dla = next((p for p in (precision, "fp16", "int8")
                if p != "fp32" and flags.get(p) is not None and not flags[p].startswith("ERROR")), None)
    dla_example = (f"sh build_on_device.sh --precision {dla} --dla-core 0      # on DLA core 0, GPU fallback\n"
                   if dla else "")
    table = _flags_table(manifest, kit_precision)
    f32 = manifest.extra.get(FP16_F32) or {}
    if (flags.get("fp16") or "ERROR").startswith("ERROR"):
        f32 = {}                      # this kit builds no fp16 engine: nothing to explain
    why_f32 = (f"\nUnder `--fp16`, {len(f32.get('layers') or [])} layers stay fp32 (`--layerPrecisions`, listed in full in "
               f"`{SCRIPT_FILE}`): {f32.get('source')}. "
               + ("The token path decides the tokens in fp32; the image (VQ decoder) computes in fp16. A "
                  f"searched half policy puts more in fp16: `{FP16_EXPORT_COMMAND}`, then `alignvar-edge build EXPORT "
                  "--target tensorrt --precision fp16 --half-policy-from EXPORT-fp16 --out KIT` (EXPORT: the export "
                  "this kit came from). " if f32.get("source") == "token path" else "")
               + "`--noTF32` in every row: TensorRT computes fp32 layers in TF32 (fp16's mantissa) on "
               "Orin unless told not to.\n" if f32 else "")
    contract = (f"`{c.get('name')}` {c.get('dtype')} {c.get('layout')} {c.get('shape')}, {c.get('color_order')} "
                f"in [0, 1]; whole images are cut into {c.get('tile')} px tiles overlapping by "
                f"{c.get('overlap')} px and come back x{c.get('scale')}") if c else "see manifest.json"
    notes = "".join(f"\n\n{line}" for line in model_notes(manifest))
    return f"""# TensorRT build kit: {name} ({precision})

This directory builds, checks and times the TensorRT engine of `{name}` on the device that will
run it. TensorRT engines are specific to the TensorRT version and the GPU, so the engine is built
there, not here. Written by `alignvar-edge build --target tensorrt`; the whole path is in
`docs/jetson.md` of alignvar-edge.

Copy this whole directory to the device (e.g. `scp -r KIT jetson:~/`, KIT being this directory);
`build_on_device.sh` checks the files it uses against `manifest.json` before it builds, and the
`alignvar-edge` verbs check every file the manifest lists.

| file | what |
|---|---|
| `model.onnx` | the exported graph ({kit_precision}{', explicit Q/DQ' if kit_precision == 'int8' else ''}) |
{_data_rows(data)}| `golden.safetensors` | held-out LR tiles with the reference tokens and SR tiles: the parity check |
| `manifest.json` | what this kit holds (SHA-256 of every file, model config, input contract) |
| `build_on_device.sh` | build with trtexec, adopt, check against golden, report (below) |
| `trtexec.txt` | the script's build as one trtexec command, for building by hand from inside this directory (below) |

Input contract: {contract}.{notes}

## 1. The device: JetPack 6.1 or 6.2

Supported: JetPack 6.1 / 6.2 (Jetson Linux 36.4.x: TensorRT 10.3, CUDA 12.6, Python 3.10, Ubuntu
22.04) on Jetson Orin (AGX, NX, Nano). JetPack 6.0 ships TensorRT 8.6, which this toolkit does not
target. Check:

```
cat /etc/nv_tegra_release                       # R36 (release), REVISION: 4.x
dpkg -l | grep -E 'nvinfer|tensorrt' | head     # 10.3.x
python3 -c "import tensorrt; print(tensorrt.__version__)"     # 10.3.0
ls /usr/src/tensorrt/bin/trtexec
```

Missing pieces come from JetPack's apt repository: `sudo apt install nvidia-jetpack` (all of it)
or `sudo apt install tensorrt python3-libnvinfer`. For stable timings: `sudo nvpmodel -m 0` (the
highest power mode; `nvpmodel -q` shows the current one, which the report records) and
`sudo jetson_clocks`.

## 2. A Python environment that sees JetPack's TensorRT

alignvar-edge is not published on PyPI: bring its wheel with the kit. On the host, in a checkout of
alignvar-edge, `python -m pip wheel --no-deps -w dist .` writes it (pure Python, about 6 MB); copy
`dist/alignvar_edge-*.whl` here, then, from the directory holding it:

```
sudo apt install python3-venv
python3 -m venv --system-site-packages ~/{DEVICE_VENV}
. ~/{DEVICE_VENV}/bin/activate
pip install "$(ls alignvar_edge-*.whl)[device]" 'numpy<2' 'cuda-python>=12.6.1,<13'
python -c "import tensorrt, cuda.bindings.runtime; print(tensorrt.__version__)"
```

pip fetches the dependencies from PyPI (numpy, Pillow, safetensors, ONNX Runtime and cuda-python
have aarch64 wheels there). Without internet here, download them on the host, beside `dist/`:

```
pip download --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --python-version 3.10 --implementation cp --only-binary=:all: "$(ls dist/alignvar_edge-*.whl)[device]" 'numpy<2' 'cuda-python>=12.6.1,<13' -d wheels
```

copy the `wheels` folder here, and in the venv install from it alone:
`pip install --no-index --find-links ~/wheels "$(ls ~/wheels/alignvar_edge-*.whl)[device]" 'numpy<2' 'cuda-python>=12.6.1,<13'`.

- `--system-site-packages`: TensorRT's Python bindings are the Debian package
  `python3-libnvinfer`, installed for the system Python 3.10; PyPI's `tensorrt` wheels are not
  built for Jetson (L4T). The venv sees them, and everything else stays inside the venv.
- `alignvar-edge[device]`: numpy, Pillow, safetensors, tqdm, ONNX Runtime (CPU), no PyTorch.
- `numpy<2`: Ubuntu 22.04's and JetPack's Python packages were built against numpy 1.x;
  alignvar-edge works with either.
- `cuda-python` (module `cuda.bindings.runtime`): the runner needs device buffers and a CUDA
  stream for `execute_async_v3`. Without PyTorch it uses NVIDIA's thin CUDA runtime binding
  (prebuilt aarch64 wheels, nothing to compile, unlike pycuda). The major version must match
  JetPack 6's CUDA 12 (cuda-python 13 needs a CUDA 13 driver); 12.6.1 or later has the
  `cuda.bindings` layout the runner imports. PyTorch for Jetson also works (the runner uses its
  CUDA tensors when present), but it is a large NVIDIA-specific wheel that nothing else here needs.

## 3. Build, check, time

From inside this directory, in a shell where the venv of step 2 is active (a new shell, e.g. after
`sudo jetson_clocks`, needs `. ~/{DEVICE_VENV}/bin/activate` again; without alignvar-edge the script only
builds and times):

```
. ~/{DEVICE_VENV}/bin/activate
sh build_on_device.sh                           # {precision}
{dla_example}```

trtexec flags per precision for this kit (TensorRT 11 builds strongly typed networks only: the graph's
own types decide, so an fp16 engine there needs a kit made from an fp16 export, as its cell says):

{table}
{why_f32}
The script first checks the kit: every file `manifest.json` lists against its SHA-256 there, and
that trtexec is TensorRT 10 or later; a file missing or corrupt, or an older TensorRT, stops it in one line
that names the file or the version, before any build. It then runs trtexec
once to build the engine (reusing the timing cache
`{TIMING_CACHE}` beside the output, so later builds are faster) and to time it; then
`alignvar-edge adopt` writes the engine directory (engine, manifest with the TensorRT version, GPU
and DLA core, golden outputs), `alignvar-edge bench trtexec` turns trtexec's timing summary
into a bench report, and `alignvar-edge selftest --engine` checks the engine against the golden
outputs (`RESULT PASS`: fp32 100% tokens and >= 50 dB; fp16/int8 >= 99% and 35/30 dB; its exit
status, non-zero on FAIL, is the script's). Where TensorRT runs, `adopt` checks the engine against
the golden outputs first and refuses one that fails: the script then writes the bench report with
this kit's manifest, keeps the engine and log in `<engine>.work/` and exits with adopt's status.
Outputs, beside this kit by default: `<engine>/` (the engine directory: `<kit>-<precision>[-dlaN]`,
or `<kit>-engine[-dlaN]` where the kit's name already ends in the precision, as `tiny-trt-int8`
does), `<engine>-selftest.json` and `<engine>-report.json`. A run that passes prints
`RESULT    PASS` and ends with `done: engine directory <engine>, parity <engine>-selftest.json, bench
report <engine>-report.json`; without alignvar-edge installed the script builds and times only, and
prints the commands that check the engine.

DLA (`--dla-core N`): Orin AGX and Orin NX 16GB have two DLA cores (0, 1), Orin NX 8GB one (0), Orin Nano none. DLA runs fp16
and int8 only; layers it cannot run (e.g. the argmax and gathers of the token rollout) fall back
to the GPU (`--allowGPUFallback`), and trtexec's log lists them. An engine directory built on a
DLA core rebuilds on it by default; `--dla-core none` builds on the GPU.

## 4. Use the engine

```
alignvar-edge upscale photo.png photo-x4.png --engine <engine>
python -c "from alignvar_edge import runtimes; from PIL import Image; \\
  e = runtimes.load('<engine>'); e.upscale(Image.open('photo.png')).save('x4.png')"
```

## 5. Hand the numbers back

Copy `<engine>-report.json` to the host and merge it there with any bench report of the
same model (`report.json` of `alignvar-edge deploy`, or `alignvar-edge bench ... --out
host-report.json`):
`alignvar-edge bench merge host-report.json <engine>-report.json --md devices.md --plot devices.png`.

## An engine built by hand

From inside this directory, writing everything beside it (a file added inside the kit would fail
its verification: the manifest lists every file it holds):

```
/usr/src/tensorrt/bin/trtexec --onnx=model.onnx --saveEngine=../my.engine $(sed 's/.*--builderOptimizationLevel=[0-9]* //' {TRTEXEC_FILE}) 2>&1 | tee ../my.log
alignvar-edge adopt ../my.engine --like . --log ../my.log --out ../my-engine
alignvar-edge selftest --engine ../my-engine
alignvar-edge bench trtexec ../my.log --engine ../my-engine --out ../my-report.json
```

The `sed` takes this kit's precision flags from `{TRTEXEC_FILE}` (the whole command, layer list
included); add any trtexec flags you like. `sh {TRTEXEC_FILE}` alone runs the script's build: trtexec
from `PATH`, else `/usr/src/tensorrt/bin/trtexec`, writing `../<this directory's name>.engine` and the
timing cache `../{TIMING_CACHE}`, never a file inside the kit. Where the folder above this one is
not writable (a read-only copy), run the script with `--out DIR --timing-cache FILE` on a writable
disk, or point the command above's `--saveEngine` and `tee` there. `adopt` takes the TensorRT version and GPU from `import
tensorrt` and the GPU when it can, else from the trtexec log (`--log`), and the precision and
DLA core from the log's command line (a `--stronglyTyped` build: the kit's precision). A
`--buildOnly` log will do for `adopt`; `bench trtexec` needs the timing run's.

{_shared_sections(manifest, precision)}
## Verified where

Written and checked on a Linux x86-64 machine without TensorRT: the script passes `shellcheck`,
the kit's ONNX runs in ONNX Runtime, the golden outputs match it, the trtexec log import is tested
on TensorRT 8.4 and 10.x summary formats, and `adopt` is tested with such a log. Building,
`selftest` and timing on a Jetson happen only on the device.
"""


def engine_readme(manifest: Manifest, precision: str, kit_precision: str, dla_core: int | None,
                  data: list[str] | tuple[str, ...] = (), has_log: bool = False) -> str:
    """README.md of a TensorRT engine directory: the engine it holds, what it runs on, how to use it,
    and how its build_on_device.sh rebuilds it (on its DLA core by default)."""
    name = manifest.model.name or (manifest.config or {}).get("name") or "the model"
    ex, c = manifest.extra, input_contract(manifest) or {}
    on = f"DLA core {dla_core}" if dla_core is not None else "the GPU"
    contract = (f"`{c.get('name')}` {c.get('dtype')} {c.get('layout')} {c.get('shape')}, {c.get('color_order')} "
                f"in [0, 1], x{c.get('scale')}") if c else "see manifest.json"
    notes = "".join(f"\n\n{line}" for line in model_notes(manifest))
    log_row = f"| `{LOG_FILE}` | trtexec's whole output of the run that built and timed it |\n" if has_log else ""
    bench = (f"alignvar-edge bench trtexec {LOG_FILE} --engine . --out ../report.json    # trtexec's timing as a "
             "bench report\n" if has_log else "")
    rebuild_dla = ("sh build_on_device.sh --dla-core none        # on the GPU\n" if dla_core is not None else
                   "")
    return f"""# TensorRT engine: {name} ({precision}, {on})

This directory holds a TensorRT engine of `{name}`, {precision}, built with TensorRT
{ex.get('tensorrt_version')} for {ex.get('gpu_name')} (compute capability {ex.get('compute_capability')}), to run
on {on}. An engine runs only with the TensorRT version and GPU it was built for: elsewhere
alignvar-edge refuses it and says so; rebuild it there (below). Its parity against the golden
outputs: `alignvar-edge inspect .`; the whole path is in `docs/jetson.md` of alignvar-edge.

| file | what |
|---|---|
| `{ENGINE}` | the engine |
{log_row}| `model.onnx` | the graph it was built from ({kit_precision}), to rebuild it |
{_data_rows(data)}| `golden.safetensors` | held-out LR tiles with the reference tokens and SR tiles: the parity check |
| `manifest.json` | what this directory holds (SHA-256 of every file, TensorRT version, GPU, precision, DLA core) |
| `build_on_device.sh` | rebuild, check and time it on this or another device (below) |
| `{TRTEXEC_FILE}` | the trtexec command of a rebuild: `sh {TRTEXEC_FILE}` from inside this directory writes `../<this directory's name>.engine` |

Input contract: {contract}; whole images are cut into tiles and come back whole.{notes}

## Use it (from inside this directory)

```
alignvar-edge selftest --engine .                  # tokens and PSNR against the golden outputs
alignvar-edge upscale photo.png photo-x4.png --engine .
{bench}```

## Rebuild it (another TensorRT version or device)

```
sh build_on_device.sh                              # {precision} on {on}
{rebuild_dla}```

The script writes the new engine directory beside this one (`sh build_on_device.sh --help` for its
options) and checks its files, trtexec's version, the build, the golden outputs and the timing as
a build kit's does (docs/jetson.md of alignvar-edge). trtexec flags per precision for this graph:

{_flags_table(manifest, kit_precision)}

{_shared_sections(manifest, precision)}"""


def _shared_sections(manifest: Manifest, precision: str) -> str:
    """What every engine README says the same way (`runtimes/readme.py`): whole images, the golden
    check of the engine this directory builds, and the file checks."""
    return "\n".join([*whole_images(manifest), *golden_check(manifest, "tensorrt", precision), *file_checks()])


# trtexec.txt runs from inside its directory (`sh trtexec.txt`, or pasted): trtexec from PATH, else where
# JetPack puts it, as the script finds it; and it writes outside the directory, whose manifest lists
# every file it holds (an engine or cache written inside would make it fail verification)
HAND_TRTEXEC = f'"{TRTEXEC_LOOKUP}"'
HAND_ENGINE = '"../$(basename "$PWD").engine"'


def hand_command(plan: dict[str, Any], workspace_mib: int | None, opt_level: int, dla_core: int | None) -> str:
    """trtexec.txt: the script's build as one shell line, writing `../<this directory>.engine` and the
    timing cache beside the directory."""
    cmd = trtexec_command(plan, engine=HAND_ENGINE, cache=f"../{TIMING_CACHE}", workspace_mib=workspace_mib,
                          opt_level=opt_level, dla_core=dla_core)
    return " ".join([HAND_TRTEXEC, *cmd[1:]])


def copy_log(log: str | Path, root: Path, redacted: bool) -> None:
    """trtexec's log `log` into the engine directory `root` as LOG_FILE: as it is, or for a redacted
    engine without the device's folders that its command line names (trtexec echoes it, and
    build_on_device.sh's names the kit, its work folder and the timing cache by absolute paths)."""
    if not redacted:
        shutil.copy2(log, root / LOG_FILE)
        return
    text = read_trtexec_log(log)
    command = parse_trtexec_log(text, timing=False).get("command", "")
    (root / LOG_FILE).write_text(paths_replaced(text, _folders_shown(command)), encoding="utf-8")


def _folders_shown(command: str) -> dict[str, str]:
    """Each folder of a file trtexec's echoed command line names (the program's, each `--flag=FILE`'s)
    -> how a redacted log shows it: by its name (`kit`, `kit-fp16.work`), as a redacted manifest names
    a folder; but a folder holding another one named (the home folder above the kit, where the timing
    cache lies by default) would name the user, so its files are shown by their names alone. The line
    is the arguments joined by spaces, unquoted: it is split before each `--`, so that a folder with
    a space in its name stays whole."""
    program, *args = re.split(r" (?=--)", command.strip())
    files = [program, *(a.split("=", 1)[1] for a in args if "=" in a)]
    folders = {posixpath.dirname(f.strip()) for f in files}
    folders = {f for f in folders if f not in ("", "/") and posixpath.basename(f) not in (".", "..")}
    shown: dict[str, str] = {}
    for folder in folders:
        if any(other.startswith(folder + "/") for other in folders):
            shown[folder + "/"] = ""
        else:
            shown[folder] = shown_name(folder)
    return shown


def write_build_files(root: Path, manifest: Manifest, precision: str, kit_precision: str,
                      workspace_mib: int | None, opt_level: int, data: list[str],
                      dla_core: int | None = None) -> None:
    """trtexec.txt, build_on_device.sh and README.md into a kit or engine directory: how to
    (re)build it as recommended, on DLA core `dla_core` where the engine runs on one. The layer
    lists come from the manifest's FP16_F32, their one place; `data`: the files beside the ONNX
    that hold its external-data tensors, as `link_onnx` linked them (trtexec reads them too)."""
    f32_layers, half_layers = f32_layers_of(manifest), half_layers_of(manifest)
    plan = network_plan(JETPACK_TRT_MAJOR, precision, kit_precision, f32_layers, half_layers)
    (root / TRTEXEC_FILE).write_text(hand_command(plan, workspace_mib, opt_level, dla_core) + "\n")
    script = root / SCRIPT_FILE
    # the files the script uses that this directory holds (a kit without golden outputs has none)
    checked = tuple(f for f in (ONNX, *data, GOLDEN_FILE) if (root / f).is_file())
    script.write_text(build_script(precision, kit_precision, workspace_mib, opt_level, f32_layers, half_layers,
                                   checked, dla_core))
    script.chmod(0o755)
    readme = (engine_readme(manifest, precision, kit_precision, dla_core, data, (root / LOG_FILE).is_file())
              if manifest.kind == "engine" else kit_readme(manifest, precision, kit_precision, data))
    write_readme(root, readme)


__all__ = ["README_FILE", "build_script", "copy_log", "engine_readme", "kit_readme", "not_an_engine", "precision_flags",
           "write_build_files"]
