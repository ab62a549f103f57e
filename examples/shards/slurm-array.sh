#!/usr/bin/env bash
# A swarm of 1,000,000 scenarios as a Slurm job array of 100 shards.
#   sbatch examples/shards/slurm-array.sh
# then, once every task has finished:
#   resilient-relay merge shards/swarm-* --out results/swarm
#SBATCH --job-name=relay-swarm
#SBATCH --array=1-100
#SBATCH --cpus-per-task=2
#SBATCH --time=00:30:00
set -euo pipefail
resilient-relay swarm --runs 1000000 --seed 1 --stuck report \
  --shard "${SLURM_ARRAY_TASK_ID}/100" --jobs "${SLURM_CPUS_PER_TASK}" \
  --out "shards/swarm-${SLURM_ARRAY_TASK_ID}"
