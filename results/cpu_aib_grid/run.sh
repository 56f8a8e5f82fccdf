#!/usr/bin/env bash
# Issue 38 §2: DR, Concat and DMA*-SH on AIB's eight non-overlapping tasks, 3 seeds vmapped in
# one program per (task, method), one budget for the whole grid, dm_control's physics with
# MJX_SOLVER. One line, run again session after session until every pair is committed:
#
#   bash results/cpu_aib_grid/run.sh
#
# The program is pinned: a detached worktree of $COMMIT at $TREE, so every session trains the
# same code bitwise (the venv's editable install imports from the working directory). One
# `python -m experiments.aib` per (task, method), in the order of PAIRS below:
#   - a pair whose files are in the repository ($DEST/TASK/ALGO/summary.json) is skipped, so a
#     fresh machine (an empty /tmp) goes on from what is committed;
#   - a pair with a run directory in $OUT resumes from its newest checkpoint (--resume);
#   - a finished pair's config.json, metrics.jsonl, summary.json (and DMA*-SH's
#     diagnostics.json) are copied to $DEST/TASK/ALGO/, to be committed.
# Run directories and checkpoints live outside the repository ($OUT). The log is appended to
# $LOG (in the repository, committed with the runs). One heavy job on this CPU at a time.
set -euo pipefail
COMMIT=${COMMIT:-9acbd81}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TREE=${TREE:-/tmp/aib_grid_tree}
OUT=${OUT:-/tmp/aib_grid}
DEST=${DEST:-$REPO/results/cpu_aib_grid/runs}
LOG=${LOG:-$REPO/results/cpu_aib_grid/grid.log}
PY=${PY:-$REPO/.venv/bin/python}
# The pairs not yet run first; then those whose files were lost (the first sessions' runs of
# DI, DI-Perm, ODE and Cartpole's DR and Concat: see the README).
PAIRS=${PAIRS:-"cartpole:dma_sh cheetah:dr cheetah:concat cheetah:dma_sh
  reacher_easy:dr reacher_easy:concat reacher_easy:dma_sh
  reacher_hard:dr reacher_hard:concat reacher_hard:dma_sh
  reacher_perm:dr reacher_perm:concat reacher_perm:dma_sh
  di:dr di:concat di:dma_sh di_perm:dr di_perm:concat di_perm:dma_sh
  ode:dr ode:concat ode:dma_sh cartpole:dr cartpole:concat"}
if [ ! -d "$TREE" ]; then
  git -C "$REPO" worktree add --detach "$TREE" "$COMMIT"
fi
test "$(git -C "$TREE" rev-parse --short=7 HEAD)" = "${COMMIT:0:7}"
for pair in $PAIRS; do
  task=${pair%%:*}
  algo=${pair#*:}
  dest=$DEST/$task/$algo
  run=$OUT/$task/$algo
  if [ -f "$dest/summary.json" ]; then
    echo "== $task/$algo: committed in ${dest#"$REPO"/}, skipped" >> "$LOG"
    continue
  fi
  MODE=()
  if [ -f "$run/config.json" ]; then MODE=(--resume)
  elif [ -d "$run" ]; then MODE=(--overwrite)   # died before its first write: nothing to keep
  fi
  mkdir -p "$OUT/$task"
  rc=0
  {
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$TREE" rev-parse --short HEAD) $task/$algo ${MODE[*]:-}"
    (cd "$TREE" && "$PY" -m experiments.aib --algo="$algo" --env="$task" \
      --seeds=3 --total_steps=25000 --eval_every=5000 --learning_starts=5000 \
      --eval_episodes=5 --noreport --out_dir="$run" "${MODE[@]}") || rc=$?
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $task/$algo exit $rc"
  } >> "$LOG" 2>&1
  if [ "$rc" != 0 ]; then exit "$rc"; fi
  mkdir -p "$dest"
  cp "$run"/config.json "$run"/metrics.jsonl "$run"/summary.json "$dest"/
  if [ -f "$run/diagnostics.json" ]; then cp "$run"/diagnostics.json "$dest"/; fi
done
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) every pair is in ${DEST#"$REPO"/}" >> "$LOG"
