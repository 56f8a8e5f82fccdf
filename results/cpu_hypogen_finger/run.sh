#!/bin/bash
# The CPU-scale HyPoGen pipeline on finger_speed (issue 18 §1). Stage 1: experts, demonstrations
# and the cheap Cond Policy; stage 2 reuses them for all four models. Run from the repo root.
set -e
RUN=${RUN:-runs/cpu_hypogen_finger}
COMMON="--task=finger_speed --num_specs=10 --test_fraction=0.5 --expert_steps=80000 \
 --expert_buffer=80000 --expert_std_steps=8000 --episodes_per_spec=10 --eval_episodes=10 \
 --epochs=100 --eval_every=10 --seeds=1 --run_dir=$RUN"
date -u; python -m experiments.hypogen --algo=cond $COMMON
date -u; python -m experiments.hypogen --algo=all $COMMON
date -u
