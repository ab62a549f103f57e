#!/usr/bin/env bash
# A swarm split into shards that GNU parallel runs side by side, then merged:
# the outputs are byte for byte those of one unsharded `swarm` run.
#
#   scripts/swarm-parallel.sh SHARDS OUT [swarm flags…]
#   scripts/swarm-parallel.sh 4 results/swarm --runs 100000 --seed 7
#
# Each shard runs single-threaded (--jobs 1); parallel runs one per core.
# The same command line, with a scheduler's index in place of {}, runs the
# shards on a Slurm array or a Kubernetes Indexed Job (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
shards=${1:?give the number of shards, e.g. 4}
out=${2:?give the output directory, e.g. results/swarm}
shift 2
command -v parallel >/dev/null || { echo "GNU parallel is needed: apt-get install parallel" >&2; exit 2; }
cargo build --locked -q
bin=target/debug/resilient-relay
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
parallel --halt now,fail=1 --line-buffer \
  "$bin" swarm "$@" --jobs 1 --shard {}/"$shards" --out "$work"/shard-{} ::: $(seq "$shards")
"$bin" merge "$work"/shard-* --out "$out"
