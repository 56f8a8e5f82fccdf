#!/usr/bin/env bash
# Issue 41 §2: the LiftCube-stiffness Table 2 slice (../table2_slice/, 2026-12-03: HyperZero
# and HyPoGen) with all six models on one set of experts and demonstrations: the same command
# and budget (experts = ../expert_k1000 fine-tuned 100,000 PPO steps (its run.sh with STEPS=100000) per training spec, 50
# demonstrations per spec, 20 evaluation episodes, 40 epochs, 1 seed), --algo=all. The experts
# are rebuilt (the run directory of 2026-12-03 is gone); their curves in experts_log.jsonl
# show whether they came out as before (../table2_slice/experts_log.jsonl).
#
#   bash results/cpu_manipulation/table2_slice_six/run.sh     # rerun the same line to resume
#   TASK=lift_cube_damping bash results/cpu_manipulation/table2_slice_six/run.sh
#
# TASK: another LiftCube family at the same budget and from the same k = 1000 expert (the
# default spec of every family: damping 100, cube 0.02), its files in
# ../table2_TASK/ (issue 41 §2's second family: lift_cube_damping, whose released split
# trains on damping 70, 100, 130).
# Pinned like results/cpu_hypogen_columns/run.sh (the same worktree); the run directory
# (dataset ~90 MB) is outside the repository. One heavy job on this CPU at a time.
set -euo pipefail
COMMIT=${COMMIT:-0189c94}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
TREE=${TREE:-/tmp/hypogen_columns_tree}
TASK=${TASK:-lift_cube_stiffness}
if [ "$TASK" = lift_cube_stiffness ]; then NAME=table2_slice_six; else NAME=table2_$TASK; fi
RUN=${RUN:-/tmp/$NAME}
PY=${PY:-$REPO/.venv/bin/python}
DEST="$REPO/results/cpu_manipulation/$NAME"
if [ -f "$DEST/results.md" ]; then   # committed: a fresh machine (empty /tmp) skips it too
  echo "$TASK: finished earlier ($DEST)"; exit 0
fi
if [ ! -d "$TREE" ]; then
  git -C "$REPO" worktree add --detach "$TREE" "$COMMIT"
fi
cd "$TREE"
{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD)"
  rc=0
  "$PY" -m experiments.hypogen --task="$TASK" --algo=all \
      --expert_specs=train --ppo_preset=cpu \
      --ppo_init="$REPO/results/cpu_manipulation/expert_k1000/params.npz" --expert_steps=100000 \
      --episodes_per_spec=50 --eval_episodes=20 --epochs=40 --eval_every=20 \
      --run_dir="$RUN" || rc=$?
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) exit $rc"
} 2>&1 | grep --line-buffered -Ev "cpu_aot_loader|pjrt_executable|^[EWI][0-9]{4} [0-9:.]+ +[0-9]+ [a-z_]+\.cc" \
  >> "$RUN.log"
[ -f "$RUN/results.md" ] || { echo "not finished: see $RUN.log"; exit 1; }
mkdir -p "$DEST"
for d in "$RUN"/*/seed_*; do
  algo=$(basename "$(dirname "$d")")
  mkdir -p "$DEST/$algo"
  cp "$d"/log.jsonl "$d"/result.json "$DEST/$algo"/
done
cp "$RUN"/results.json "$RUN"/experts_log.jsonl "$RUN.log" "$DEST"/
if [ -d "$RUN/plots" ]; then cp -r "$RUN"/plots "$DEST"/; fi
cp "$RUN"/results.md "$DEST"/       # last: its presence in $DEST marks the slice as done
echo "copied to $DEST"
