# shellcheck shell=bash
# Shared by the training experiment scripts (source it): resumable stages and their evaluations.
# The caller sets `ae` (the CLI), `run` (the run folder) and optionally HELDOUT (a photo folder).

# finished NAME: RUN/NAME/final holds every step the stage planned. A stage stopped by --max-minutes
# or by a first Ctrl-C or SIGTERM also writes final, at the step it reached: its training.json's
# "steps" is below "planned_steps".
finished() {
  local info=${run:?}/$1/final/training.json steps planned
  [ -d "$run/$1/final" ] || return 1
  [ -f "$info" ] || return 0                   # a checkpoint made elsewhere (a link to a finished run)
  steps=$(sed -n 's/^ *"steps": *\([0-9]*\).*/\1/p' "$info")
  planned=$(sed -n 's/^ *"planned_steps": *\([0-9]*\).*/\1/p' "$info")
  [ -z "$planned" ] || [ "${steps:-0}" -ge "$planned" ]
}

# stage NAME ARGS...: `train ARGS` into RUN/NAME unless it already finished; a stopped run (killed,
# stopped by --max-minutes, or the machine went down) goes on from its last saved state.
# A stage whose --init checkpoint is newer than the stage's run (that stage was resumed or trained
# again since, e.g. the VQ-VAE under ablation.sh's variants) is trained again from the start: its
# weights came from the checkpoint --init held then.
stage() {
  local name=$1; shift
  local a prev='' from=''
  for a in "$@"; do
    if [ "$prev" = --init ]; then from=$a; fi
    prev=$a
  done
  if [ -n "$from" ] && [ -f "$run/$name/run.json" ] && [ "$from/model.safetensors" -nt "$run/$name/run.json" ]; then
    echo "== $name: $from changed since $name started from it; $name starts again"
    ${ae:?} train "$@" --out "$run/$name" --force --save-every 100
    return
  fi
  if finished "$name"; then echo "== $name: already trained"; return; fi
  local fresh=--force
  if [ -f "$run/$name/state/state.json" ] || [ -f "$run/$name/.state.old/state.json" ]; then fresh=--resume; fi
  echo "== $name ${fresh#--}"; ${ae:?} train "$@" --out "$run/$name" "$fresh" --save-every 100
}

# evaluate NAME...: `eval --ablations` of each RUN/NAME/final on the bundled held-out photographs
# (RUN/NAME/eval.json) and, with HELDOUT=DIR, on DIR's (RUN/NAME/eval-heldout.json); an evaluation
# newer than its checkpoint is kept (a resumed stage rewrote final, so its evaluations are redone).
evaluated() { [ "$run/$1/$2" -nt "$run/$1/final/model.safetensors" ]; }
evaluate() {
  local name
  for name in "$@"; do
    if evaluated "$name" eval.json; then echo "== eval $name: already done"
    else echo "== eval $name"; $ae eval "$run/$name/final" --max-side 256 --ablations --json "$run/$name/eval.json"
    fi
  done
  [ -n "${HELDOUT:-}" ] || return 0
  for name in "$@"; do
    evaluated "$name" eval-heldout.json && continue
    echo "== eval $name on $HELDOUT"
    $ae eval "$run/$name/final" --images "$HELDOUT" --max-side 512 --ablations --json "$run/$name/eval-heldout.json"
  done
}
