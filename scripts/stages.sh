# shellcheck shell=bash
# Shared by the training experiment scripts (source it): resumable stages and their evaluations.
# The caller sets `ae` (the CLI), `run` (the run folder) and optionally HELDOUT (a photo folder).

# stage NAME ARGS...: `train ARGS` into RUN/NAME unless it already finished (RUN/NAME/final); a
# stopped run (killed, or the machine went down) goes on from its last saved state.
stage() {
  local name=$1; shift
  if [ -d "${run:?}/$name/final" ]; then echo "== $name: already trained"; return; fi
  local fresh=--force
  if [ -f "$run/$name/state/state.json" ] || [ -f "$run/$name/.state.old/state.json" ]; then fresh=--resume; fi
  echo "== $name ${fresh#--}"; ${ae:?} train "$@" --out "$run/$name" "$fresh" --save-every 100
}

# evaluate NAME...: `eval --ablations` of each RUN/NAME/final on the bundled held-out photographs
# (RUN/NAME/eval.json) and, with HELDOUT=DIR, on DIR's (RUN/NAME/eval-heldout.json); an evaluation
# already written is kept (a retrained stage replaced its folder, and its evaluations with it).
evaluate() {
  local name
  for name in "$@"; do
    if [ -f "$run/$name/eval.json" ]; then echo "== eval $name: already done"
    else echo "== eval $name"; $ae eval "$run/$name/final" --max-side 256 --ablations --json "$run/$name/eval.json"
    fi
  done
  [ -n "${HELDOUT:-}" ] || return 0
  for name in "$@"; do
    [ -f "$run/$name/eval-heldout.json" ] && continue
    echo "== eval $name on $HELDOUT"
    $ae eval "$run/$name/final" --images "$HELDOUT" --max-side 512 --ablations --json "$run/$name/eval-heldout.json"
  done
}
