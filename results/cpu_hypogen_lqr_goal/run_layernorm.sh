#!/bin/bash
# Issue 18 §2, the deciding run: HyPoGen without the whole-tensor LayerNorm of its decoded
# updates (everything else the default). Run from the repo root after run.sh.
set -e
R=${R:-runs/cpu_hypogen_lqr_goal}
echo "== $(date -u +%T) --noupdate_layernorm"
python -m experiments.hypogen --task=lqr_di_goal --seeds=1 --algo=hypogen --noupdate_layernorm \
  --run_dir=$R/no_update_layernorm | grep -v "^  epoch"
echo "== $(date -u +%T) done"
