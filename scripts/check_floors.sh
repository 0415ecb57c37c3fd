#!/usr/bin/env bash
# The declared minimums, tried, in two passes, each a fresh venv with every dependency at the lowest
# version pyproject.toml allows and this checkout's wheel:
# - host: the base install and the host, device, openvino and openvino-int8 extras (torch at TORCH,
#   the release the exporter's floors were measured with; a package two extras name takes the higher
#   floor: onnxruntime at the host's), then the smoke commands a user runs;
# - device: the base install and the device and openvino extras (onnxruntime at the device's floor),
#   no PyTorch, running selftest --engine, upscale and bench --no-reference on engines the host built.
# A requirement without a >= lower bound stops it (exit 2): it has no floor to install.
# One line per command (PASS or FAIL, its exit status and time), the installed versions and the
# CPU's ISA line go to stdout and WORK/summary.txt; each command's output to WORK/logs/. Exits 1 if
# any command failed.
# Usage: scripts/check_floors.sh [WORK]   (WORK: its folder, default $TMPDIR/alignvar-floors; venvs
# made there by an earlier run are reused, with this checkout's wheel installed again)
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
host_extras=host,device,openvino,openvino-int8
device_extras=device,openvino
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$work/logs" "$work/wheel"
: > "$work/summary.txt"
say() { echo "$*" | tee -a "$work/summary.txt"; }

install() {     # install VENV PIP-ARGS...: pip's output goes to the log; a failure stops the check
  local venv=$1
  shift
  if ! "$venv/bin/pip" "$@" >> "$work/logs/install.log" 2>&1; then
    echo "check_floors: pip $1 failed: see $work/logs/install.log"; exit 2
  fi
}

new_venv() {    # new_venv VENV: made with $python, or the one an earlier run made
  [ -x "$1/bin/pip" ] || "$python" -m venv "$1" || exit 2
}

# floors VENV EXTRAS [NAME==VERSION...]: pkg==floor for every requirement of the base install and of
# EXTRAS (extras naming ours expanded), read with VENV's packaging; the pins given stand unless a
# floor is higher
floors() {
  "$1/bin/python" - "$root/pyproject.toml" "${@:2}" <<'EOF'
import sys, tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

path, wanted, given = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
project = tomllib.load(open(path, "rb"))["project"]
ours = canonicalize_name(project["name"])
reqs = [("the base install", Requirement(r)) for r in project["dependencies"]]
todo, seen = list(wanted), set()
while todo:
    extra = todo.pop()
    if extra not in seen:
        seen.add(extra)
        for req in map(Requirement, project["optional-dependencies"][extra]):
            todo += sorted(req.extras) if canonicalize_name(req.name) == ours else []
            reqs += [] if canonicalize_name(req.name) == ours else [(f"the {extra} extra", req)]
pins = {canonicalize_name(name): version for name, version in (pin.split("==") for pin in given)}
for where, req in reqs:
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        print(f"check_floors: not for this host, not installed: {req}", file=sys.stderr)
        continue
    lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
    if not lower:
        print(f"check_floors: {path}: {where}'s requirement '{req}' has no >= lower bound, so no floor to "
              "install: give it one (the oldest release that works)", file=sys.stderr)
        sys.exit(2)
    name = canonicalize_name(req.name)        # a package two extras name takes the higher floor
    if name not in pins or max(lower) > Version(pins[name]):
        pins[name] = str(max(lower))
print(" ".join(f"{name}=={version}" for name, version in pins.items()))
EOF
}

# installed VENV FLOORS: the installed versions of the packages FLOORS names
installed() {
  "$1/bin/pip" freeze | grep -iE "^($(echo "$2" | sed 's/==[^ ]*//g; s/ /|/g'))==" | tr '\n' ' '
}

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "check_floors: $python is not Python 3.11 or later, which reads pyproject.toml (tomllib): set PYTHON"; exit 2; }
venv=$work/venv
new_venv "$venv"
"$venv/bin/python" -c 'import packaging.requirements' 2> /dev/null || install "$venv" install -q packaging
host_floors=$(floors "$venv" "$host_extras" "torch==$torch") || exit 2
device_floors=$(floors "$venv" "$device_extras") || exit 2
say "host pass, floors asked: $host_floors"
say "device pass, floors asked: $device_floors"

rm -f "$work"/wheel/*.whl
install "$venv" wheel -q --no-deps -w "$work/wheel" "$root"
wheel=$(ls "$work"/wheel/alignvar_edge-*.whl)
install "$venv" install -q "${index[@]}" "torch==$torch"
# shellcheck disable=SC2086  # $host_floors is a list of requirements
install "$venv" install -q "${index[@]}" "${wheel}[$host_extras]" $host_floors
install "$venv" install -q --no-deps --force-reinstall "$wheel"      # this checkout's code, in a venv made before too
device_venv=$work/venv-device
new_venv "$device_venv"
# shellcheck disable=SC2086  # $device_floors is a list of requirements
install "$device_venv" install -q "${wheel}[$device_extras]" $device_floors
install "$device_venv" install -q --no-deps --force-reinstall "$wheel"

ae=$venv/bin/alignvar-edge
dae=$device_venv/bin/alignvar-edge
say "installed (host pass): $(installed "$venv" "$host_floors")"
say "installed (device pass): $(installed "$device_venv" "$device_floors")"
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
# a 40x48 crop of a bundled photograph, as 16-bit RGB (written by the floor's tifffile) and as an
# 8-bit PNG for the device pass, which has no tifffile
"$venv/bin/python" -c 'import sys, numpy as np, tifffile; from PIL import Image; from skimage import data
crop = data.astronaut()[200:240, 200:248]
tifffile.imwrite(sys.argv[1], crop.astype(np.uint16) * 257, photometric="rgb")
Image.fromarray(crop).save(sys.argv[2])' "$w/c16.tif" "$w/c8.png" > "$work/logs/crops.log" 2>&1
step upscale-png "$ae" upscale "$w/c16.tif" "$w/c16-x4.png" --engine "$w/ov-fp32"
step upscale-tiff16 "$ae" upscale "$w/c16.tif" "$w/c16-x4.tif" --engine "$w/ort"
step selftest-backend "$ae" selftest --backend onnxruntime
step selftest-engine "$ae" selftest --engine "$w/ov-int8"
step bench "$ae" bench "$w/ort-int8" "$w/ov-fp32" --threads 1 --runs 3 --warmup 1 --tiles 4 --image-runs 1 \
  --out "$w/bench.json"
step bench-no-reference "$ae" bench "$w/ort-int8" "$w/ov-fp32" --no-reference --threads 1 --runs 3 --warmup 1 \
  --out "$w/bench-device.json"
step eval "$ae" eval alignvar-tiny --json "$w/eval.json"

# the device pass: the engines built above, on the device's floors and without PyTorch
step device-without-torch "$device_venv/bin/python" -c \
  'import importlib.util, sys; sys.exit("torch is installed" if importlib.util.find_spec("torch") else 0)'
engines=(ort ort-int8 ov-fp32 ov-int8)
for engine in "${engines[@]}"; do
  step "device-selftest-engine-$engine" "$dae" selftest --engine "$w/$engine"
  step "device-upscale-$engine" "$dae" upscale "$w/c8.png" "$w/c8-x4-$engine.png" --engine "$w/$engine"
done
step device-bench-no-reference "$dae" bench "${engines[@]/#/$w/}" --no-reference --threads 1 --runs 3 --warmup 1 \
  --out "$w/bench-device-pass.json"
exit "$failed"
