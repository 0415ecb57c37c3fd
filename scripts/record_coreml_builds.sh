#!/usr/bin/env bash
# Re-record the log of alignvar-tiny's Core ML builds that docs/apple.md's table quotes (and that
# tests/test_runtimes_coreml.py holds it to): every precision built and inspected, the unvectorized
# fp16 build, and the proxy's token agreement on the golden and validation tiles. One thread.
# Usage, from the repository root with the venv's tools first on PATH:
#   PATH=$PWD/.venv/bin:$PATH scripts/record_coreml_builds.sh docs/results/epyc-zen5-2core/coreml-builds.log
set -euo pipefail
log=$(realpath -m "${1:?usage: $0 LOG}")
commit=$(git -C "$(dirname "$0")" rev-parse --short HEAD)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1

run() {                       # the command as typed, then what it printed (stdout and stderr)
    echo "\$ $*"
    "$@" 2>&1
    echo
}

golden="from alignvar_edge.model.alignvar import load_pretrained; from alignvar_edge.model.checkpoint import resolve_checkpoint_dir; from alignvar_edge.runtimes.golden import read_golden; from alignvar_edge.runtimes.coreml.backend import fidelity_proxy; m = load_pretrained('alignvar-tiny'); lr = read_golden(resolve_checkpoint_dir('alignvar-tiny') / 'golden.safetensors')[0]; print({p: fidelity_proxy(m, lr, p)['tokens']['overall'] for p in ('fp16', 'int8-weights', 'palette8', 'palette6')})"
validation="from alignvar_edge.model.alignvar import load_pretrained; from alignvar_edge.runtimes.artifacts import validation_tiles; from alignvar_edge.runtimes.coreml.backend import fidelity_proxy; m = load_pretrained('alignvar-tiny'); print({p: fidelity_proxy(m, validation_tiles(m.config, 16), p)['tokens']['overall'] for p in ('fp16', 'int8-weights', 'palette8', 'palette6', 'palette4', 'palette2')})"

{
    python - "$commit" <<'PY'
import platform, re, sys
import coremltools, torch
info = open("/proc/cpuinfo").read()
cpu, family = re.search(r"model name\s*:\s*(.*)", info), re.search(r"cpu family\s*:\s*(\d+)", info)
flags = set(re.search(r"flags\s*:\s*(.*)", info)[1].split())
isa = ", ".join(f"{'' if f in flags else 'no '}{f}" for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile"))
print(f"# host: {cpu[1] if cpu else platform.processor()} (cpu family {family[1] if family else '?'}; {isa}), "
      f"{len(__import__('os').sched_getaffinity(0))} cores; "
      f"torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()} (torch's CPU capability, the kernels "
      f"it dispatched), coremltools {coremltools.__version__}; alignvar-edge at commit {sys.argv[1]}; OMP_NUM_THREADS=1")
PY
    for precision in fp16 int8-weights palette8 palette6 palette4 palette2; do
        run alignvar-edge build alignvar-tiny --target coreml --precision "$precision" --out "coreml/tiny-$precision"
        run alignvar-edge inspect "coreml/tiny-$precision"
    done
    echo "# the same fp16 build with torch's unvectorized CPU kernels"
    echo "\$ ATEN_CPU_CAPABILITY=default alignvar-edge build alignvar-tiny --target coreml --precision fp16 --out coreml/tiny-fp16-default"
    ATEN_CPU_CAPABILITY=default alignvar-edge build alignvar-tiny --target coreml --precision fp16 --out coreml/tiny-fp16-default 2>&1
    echo
    echo "# the golden tiles selftest checks (docs/runtimes.md, Core ML section)"
    echo "\$ python -c \"$golden\""; python -c "$golden" 2>&1; echo
    echo "# 16 validation tiles (docs/runtimes.md, Core ML section)"
    echo "\$ python -c \"$validation\""; python -c "$validation" 2>&1; echo
} > "$work/log.txt"
mv "$work/log.txt" "$log"
echo "wrote $log"
