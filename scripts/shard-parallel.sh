#!/usr/bin/env bash
# A search split into shards that GNU parallel runs side by side, then
# merged: the outputs are byte for byte those of one unsharded run.
#
#   scripts/shard-parallel.sh SEARCH SHARDS OUT [flags of the search…]
#   scripts/shard-parallel.sh swarm 4 results/swarm --runs 100000 --seed 7
#   scripts/shard-parallel.sh map 2 results/map-retry-storm retry-storm --axis duration=1..20
#   scripts/shard-parallel.sh tune 2 results/tune-steady experiments/scenarios/steady.toml
#
# Each shard runs single-threaded (--jobs 1); parallel runs one per core.
# A swarm or a map is one round of shards and a merge. A tune runs in
# stages (its halving rounds, then the margins): each stage's shards
# resume from the state the previous stage's merge wrote, until the merge
# writes the results. The same command lines, with a scheduler's index in
# place of {}, run on a Slurm array or a Kubernetes Indexed Job (README).
set -euo pipefail
cd "$(dirname "$0")/.."
search=${1:?give the search: swarm, map or tune}
shards=${2:?give the number of shards, e.g. 4}
out=${3:?give the output directory, e.g. results/swarm}
shift 3
case "$search" in
  swarm | map | tune) ;;
  *) echo "unknown search \`$search\`: give swarm, map or tune" >&2; exit 2 ;;
esac
command -v parallel >/dev/null || { echo "GNU parallel is needed: apt-get install parallel" >&2; exit 2; }
cargo build --locked -q
bin=target/debug/resilient-relay
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one stage's shards (extra flags after the search's own) into $1.
shards_of() {
  local dir=$1
  shift
  parallel --halt now,fail=1 --line-buffer \
    "$bin" "$search" "$@" --jobs 1 --shard {}/"$shards" --out "$dir"/shard-{} ::: $(seq "$shards")
}

if [ "$search" != tune ]; then
  shards_of "$work" "$@"
  "$bin" merge "$work"/shard-* --out "$out"
  exit 0
fi

resume=()
for stage in $(seq 1 64); do
  shards_of "$work/stage-$stage" "$@" "${resume[@]}"
  state="$work/stage-$stage/merged"
  "$bin" merge "$work/stage-$stage"/shard-* --out "$state"
  if [ -f "$state/summary.md" ]; then
    mkdir -p "$out"
    cp "$state"/* "$out"/
    echo "tune: $stage stages; results in $out"
    exit 0
  fi
  resume=(--resume "$state")
done
echo "tune did not finish within 64 stages" >&2
exit 1
