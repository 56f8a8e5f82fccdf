#!/usr/bin/env bash
# Issue 41 §1: more Table 1 columns at CPU scale, each with the expert, the random policy and
# all six models, at the finger_speed run's settings (results/cpu_hypogen_finger/run.sh):
# 10 of the paper's 30 specs, the released split rule with 50 % held out, TD3 experts at
# 80,000 steps per spec (all specs in one program), 10 demonstrations and 10 evaluation
# episodes per spec, 100 epochs, 1 seed.
#
#   bash results/cpu_hypogen_columns/run.sh                  # every column, in order
#   bash results/cpu_hypogen_columns/run.sh walker_speed     # one column
#
# Pinned like the AIB grid (results/cpu_aib_grid/run.sh): a detached worktree of $COMMIT at
# $TREE, run directories outside the repository ($OUT/<column>), the CLI's stage skipping and
# the experts' checkpoints as the resume (rerun the same line in a later session). One heavy
# job on this CPU at a time: start it when the grid is not training. When a column finishes,
# its small files are copied to results/cpu_hypogen_<column>/. (EXTRA="--flag=value ...",
# DEST_ROOT and OUT: a tiny trial of this script elsewhere, not the evidence.)
set -euo pipefail
COMMIT=${COMMIT:-3985c73}   # 2026-12-08: the TD3 step batched over specs (cheetah experts ~3x faster), paper cells in the report
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TREE=${TREE:-/tmp/hypogen_columns_tree}
OUT=${OUT:-/tmp/hypogen_columns}
PY=${PY:-$REPO/.venv/bin/python}
COLUMNS=("${@:-walker_speed walker_length cheetah_speed}")
if [ ! -d "$TREE" ]; then
  git -C "$REPO" worktree add --detach "$TREE" "$COMMIT"
fi
cd "$TREE"
mkdir -p "$OUT"
for column in ${COLUMNS[*]}; do
  run="$OUT/$column"
  dest="${DEST_ROOT:-$REPO/results}/cpu_hypogen_$column"
  if [ -f "$dest/results.md" ]; then   # committed: a fresh machine (empty /tmp) skips it too
    echo "$column: finished earlier ($dest)"; continue
  fi
  COMMON=(--task="$column" --num_specs=10 --test_fraction=0.5 --expert_steps=80000
          --expert_buffer=80000 --expert_std_steps=8000 --episodes_per_spec=10
          --eval_episodes=10 --epochs=100 --eval_every=10 --seeds=1 --run_dir="$run" ${EXTRA:-})
  {
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD) $column"
    rc=0
    "$PY" -m experiments.hypogen --algo=all "${COMMON[@]}" || rc=$?
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $column exit $rc"
  } 2>&1 | grep --line-buffered -Ev "cpu_aot_loader|pjrt_executable" >> "$OUT/$column.log"
  [ -f "$run/results.md" ] || { echo "$column did not finish: see $OUT/$column.log"; exit 1; }
  mkdir -p "$dest"
  for d in "$run"/*/seed_*; do      # a missing file stops the script (set -e), named by cp
    algo=$(basename "$(dirname "$d")")
    mkdir -p "$dest/$algo"
    cp "$d"/log.jsonl "$d"/result.json "$dest/$algo"/
  done
  cp "$run"/results.json "$run"/random_floor.json "$OUT/$column.log" "$dest"/
  cp -r "$run"/plots "$dest"/
  cp "$run"/results.md "$dest"/      # last: its presence in $dest marks the column as done
  echo "$column: copied to $dest"
done
