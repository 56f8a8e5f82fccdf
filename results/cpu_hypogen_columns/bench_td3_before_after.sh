#!/usr/bin/env bash
# Before/after of 3985c73 on the TD3 expert program, the AIB grid paused.
# Needs the "before" tree: git worktree add --detach /tmp/ab/old_tree 8127995 (the commit before 3985c73).
cd /work/main
G=$(pgrep -f "experiments.aib" | head -1)
[ -n "$G" ] && kill -STOP $G
trap '[ -n "$G" ] && kill -CONT $G' EXIT
echo "# $(date -u +%FT%TZ) $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), $(nproc) CPUs; AIB grid paused"
for tree in /tmp/ab/old_tree /work/main; do
  echo "## $(git -C $tree log --oneline -1 | cut -c1-60)"
  (cd $tree && PYTHONPATH=$tree /work/main/.venv/bin/python benchmarks/hypogen_throughput.py --tasks= \
     --expert_tasks=walker_speed,cheetah_speed,finger_speed --expert_num_specs=10 --expert_steps=500 2>&1 \
     | grep -v "WARNING\|settotalmass")
done
echo "# $(date -u +%FT%TZ) done"
