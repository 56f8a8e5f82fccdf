#!/usr/bin/env bash
# Issue 38 §2: DR, Concat and DMA*-SH on AIB's eight non-overlapping tasks, 3 seeds vmapped in
# one program per (task, method), one budget for the whole grid, dm_control's physics with
# MJX_SOLVER. One study command, resumed session after session:
#
#   bash results/cpu_aib_grid/run.sh            # first session: makes the pinned worktree
#   bash results/cpu_aib_grid/run.sh            # later sessions: the same line resumes
#
# The program is pinned: a detached worktree of $COMMIT at $TREE, so every session resumes the
# same code bitwise (the venv's editable install imports from the working directory). Run
# directories and checkpoints live outside the repository ($OUT); the log appends to
# $OUT.log. One heavy job on this CPU at a time: nothing else should train beside it.
set -euo pipefail
COMMIT=${COMMIT:-9acbd81}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TREE=${TREE:-/tmp/aib_grid_tree}
OUT=${OUT:-/tmp/aib_grid}
PY=${PY:-$REPO/.venv/bin/python}
if [ ! -d "$TREE" ]; then
  git -C "$REPO" worktree add --detach "$TREE" "$COMMIT"
fi
test "$(git -C "$TREE" rev-parse --short=7 HEAD)" = "${COMMIT:0:7}"
cd "$TREE"
RESUME=()
if [ -d "$OUT" ]; then RESUME=(--resume); fi
{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD) ${RESUME[*]:-}"
  rc=0
  "$PY" -m experiments.aib --algo=dr,concat,dma_sh \
    --env=di,di_perm,ode,cartpole,cheetah,reacher_easy,reacher_hard,reacher_perm \
    --seeds=3 --total_steps=25000 --eval_every=5000 --learning_starts=5000 \
    --eval_episodes=5 --out_dir="$OUT" "${RESUME[@]}" || rc=$?
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) exit $rc"
} >> "$OUT.log" 2>&1
