#!/usr/bin/env bash
# The declared minimums, tried: a fresh venv with every dependency of the base install and of the
# host, device, openvino and openvino-int8 extras at the lowest version pyproject.toml allows
# (torch at TORCH, the release the exporter's floors were measured with), this checkout's wheel,
# then the smoke commands a user runs. One line per command (PASS or FAIL, its exit status and
# time), the installed versions and the CPU's ISA line go to stdout and WORK/summary.txt; each
# command's output to WORK/logs/. Exits 1 if any command failed.
# Usage: scripts/check_floors.sh [WORK]   (WORK: its folder, default $TMPDIR/alignvar-floors; a venv
# made there by an earlier run is reused, with this checkout's wheel installed again)
# PYTHON picks the interpreter (default python3.11); TORCH_INDEX the index torch comes from (empty:
# pip's own configuration, e.g. a find-links folder that holds it).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-${TMPDIR:-/tmp}/alignvar-floors}
work=$(mkdir -p "$work" && cd "$work" && pwd)
python=${PYTHON:-python3.11}
torch=${TORCH:-2.13.0}
torch_index=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
index=()
[ -z "$torch_index" ] || index=(--extra-index-url "$torch_index")
extras=host,device,openvino,openvino-int8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$work/logs" "$work/wheel"
: > "$work/summary.txt"
say() { echo "$*" | tee -a "$work/summary.txt"; }

# pkg==floor for every `pkg>=floor` of the base install and of $extras (extras naming ours expanded);
# torch at $torch
floors=$("$python" - "$root/pyproject.toml" "$extras" "$torch" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras, pins = project["optional-dependencies"], {"torch": sys.argv[3]}
todo, seen = sys.argv[2].split(","), set()
reqs = list(project["dependencies"])
while todo:
    extra = todo.pop()
    if extra in seen:
        continue
    seen.add(extra)
    for req in extras[extra]:
        inner = re.fullmatch(r"alignvar-edge\[(.+)\]", req)
        todo += inner.group(1).split(",") if inner else []
        reqs += [] if inner else [req]
release = lambda version: tuple(int(n) for n in re.findall(r"\d+", version))
for req in reqs:        # a package two extras name (onnxruntime: device and host) takes the higher floor
    floor = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", req.split(";")[0].strip())
    if floor and release(floor.group(2)) > release(pins.get(floor.group(1), "0")):
        pins[floor.group(1)] = floor.group(2)
print(" ".join(f"{name}=={version}" for name, version in pins.items()))
EOF
) || { echo "check_floors: cannot read $root/pyproject.toml with $python (Python 3.11 or later)"; exit 2; }

venv=$work/venv
install() {     # pip's output goes to the log; a failure stops the check
  if ! "$venv/bin/pip" "$@" >> "$work/logs/install.log" 2>&1; then
    echo "check_floors: pip $1 failed: see $work/logs/install.log"; exit 2
  fi
}
[ -x "$venv/bin/pip" ] || "$python" -m venv "$venv" || exit 2
install install -q "${index[@]}" "torch==$torch"
rm -f "$work"/wheel/*.whl
install wheel -q --no-deps -w "$work/wheel" "$root"
wheel=$(ls "$work"/wheel/alignvar_edge-*.whl)
# shellcheck disable=SC2086  # $floors is a list of requirements
install install -q "${index[@]}" "${wheel}[$extras]" $floors
install install -q --no-deps --force-reinstall "$wheel"      # this checkout's code, in a venv made before too
ae=$venv/bin/alignvar-edge
say "floors asked: $floors"
say "installed: $("$venv/bin/pip" freeze | grep -iE "^($(echo "$floors" | sed 's/==[^ ]*//g; s/ /|/g'))==" | tr '\n' ' ')"
say "$("$ae" doctor 2>&1 | grep '^ISA' || echo 'ISA: doctor failed')"

failed=0
step() {        # step NAME COMMAND...: runs it, says PASS or FAIL
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" > "$work/logs/$name.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    say "PASS  $name  ($((SECONDS - t0)) s)"
  else
    failed=1
    say "FAIL  $name  (exit $rc, $((SECONDS - t0)) s): $(grep -v '^ ' "$work/logs/$name.log" | tail -1 | cut -c1-200)"
  fi
}
w=$work/run
rm -rf "$w" && mkdir -p "$w"
step export "$ae" export --out "$w/ex" --graph single
step export-simplify "$ae" export --out "$w/ex-slim" --graph single --simplify
step quantize-int8 "$ae" quantize "$w/ex" --calib builtin --precision int8 --target onnxruntime --out "$w/ex-int8"
step build-onnxruntime-fp32 "$ae" build "$w/ex" --target onnxruntime --out "$w/ort"
step build-onnxruntime-int8 "$ae" build "$w/ex-int8" --target onnxruntime --precision int8 --out "$w/ort-int8"
step build-openvino-fp32 "$ae" build "$w/ex" --target openvino --precision fp32 --out "$w/ov-fp32"
step build-openvino-plain "$ae" build "$w/ex" --target openvino --out "$w/ov"
step build-openvino-int8 "$ae" build "$w/ex" --target openvino --precision int8 --calib builtin --out "$w/ov-int8"
# a 40x48 crop of a bundled photograph, as 16-bit RGB (written by the floor's tifffile)
"$venv/bin/python" -c 'import sys, numpy as np, tifffile; from skimage import data
tifffile.imwrite(sys.argv[1], data.astronaut()[200:240, 200:248].astype(np.uint16) * 257, photometric="rgb")' \
  "$w/c16.tif" > "$work/logs/c16.log" 2>&1
step upscale-png "$ae" upscale "$w/c16.tif" "$w/c16-x4.png" --engine "$w/ov-fp32"
step upscale-tiff16 "$ae" upscale "$w/c16.tif" "$w/c16-x4.tif" --engine "$w/ort"
step selftest-backend "$ae" selftest --backend onnxruntime
step selftest-engine "$ae" selftest --engine "$w/ov-int8"
step bench "$ae" bench "$w/ort-int8" "$w/ov-fp32" --threads 1 --runs 3 --warmup 1 --tiles 4 --image-runs 1 \
  --out "$w/bench.json"
step bench-no-reference "$ae" bench "$w/ort-int8" "$w/ov-fp32" --no-reference --threads 1 --runs 3 --warmup 1 \
  --out "$w/bench-device.json"
step eval "$ae" eval alignvar-tiny --json "$w/eval.json"
exit "$failed"
