#!/usr/bin/env bash
# A small Table 2 slice at CPU scale (lift_cube_stiffness): experts for the three training
# specs of the released split (k = 700, 1000, 1300), each the k = 1000 CPU expert
# (../expert_k1000/params.npz) fine-tuned on its own spec; their demonstrations (cut at
# success); HyperZero and HyPoGen; success on the eight held-out specs beside the experts'.
# The run directory (dataset ~90 MB) stays under runs/; the small files are copied here.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUN=runs/table2_slice
STEPS=${STEPS:-150000}
.venv/bin/python -m experiments.hypogen --task=lift_cube_stiffness --algo=hyperzero,hypogen \
    --expert_specs=train --ppo_preset=cpu \
    --ppo_init=results/cpu_manipulation/expert_k1000/params.npz --expert_steps="$STEPS" \
    --episodes_per_spec="${EPISODES:-50}" --eval_episodes="${EVAL_EPISODES:-20}" \
    --epochs="${EPOCHS:-40}" --eval_every="${EVAL_EVERY:-20}" --run_dir="$RUN" "$@" \
    2>&1 | grep --line-buffered -Ev "cpu_aot_loader|pjrt_executable|^[EWI][0-9]{4} [0-9:.]+ +[0-9]+ [a-z_]+\.cc" \
    | tee results/cpu_manipulation/table2_slice/log.txt
OUT=results/cpu_manipulation/table2_slice
cp "$RUN"/results.md "$RUN"/results.json "$RUN"/experts_log.jsonl "$OUT"/
for algo in hyperzero hypogen; do
    mkdir -p "$OUT/$algo"
    cp "$RUN/$algo"/seed_123/log.jsonl "$RUN/$algo"/seed_123/result.json "$OUT/$algo"/
done
