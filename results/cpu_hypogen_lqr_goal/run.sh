#!/bin/bash
# Issue 18 §2: why HyPoGen overfits lqr_di_goal. One factor changed at a time against the
# default (seed 123: 6 train / 28 test specs, 200 epochs, lr 5e-4, deep supervision).
# Run from the repo root; each run directory is separate, so reruns skip what is done.
set -e
R=${R:-runs/cpu_hypogen_lqr_goal}
G="--task=lqr_di_goal --seeds=1"
run() { echo "== $(date -u +%T) $*"; python -m experiments.hypogen $G "$@" | grep -v "^  epoch"; }
run --algo=all --run_dir=$R/default
run --algo=hypogen --learning_rate=1e-4 --run_dir=$R/lr_1e-4
run --algo=hypogen --nodeep_supervision --run_dir=$R/final_block_only
# more training specs, about as many transitions: 17 train specs x 4 episodes (6,800) against
# 6 x 10 (6,000)
run --algo=hypogen,hyperzero,cond --test_fraction=0.5 --episodes_per_spec=4 --run_dir=$R/train_17_specs
echo "== $(date -u +%T) done"
