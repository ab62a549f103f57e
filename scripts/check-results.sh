#!/usr/bin/env bash
# Regenerates every experiment's results with the default seeds and fails if a
# committed CSV or summary differs: the decision log must quote what the code
# produces. (meta.json carries wall time and charts are checked by tests.)
# The retry storm's map is a `map` run, not an experiment: its script
# regenerates it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked -- experiment all
scripts/map-retry-storm.sh
# The project's own defaults re-derived by `tune` (the budgets are in each
# scenario's [tune] section).
for scenario in steady spike outage flaky; do
  cargo run --locked -- tune "experiments/scenarios/$scenario.toml"
done
changed=$(git status --porcelain -- results | grep -E '\.(csv|md)$' || true)
if [ -n "$changed" ]; then
  echo "results/ differ from what the code produces:"
  echo "$changed"
  git --no-pager diff --stat -- results
  echo "regenerate with: cargo run --release -- experiment all; scripts/map-retry-storm.sh --release; tune on steady, spike, outage and flaky (see above); then commit results/"
  exit 1
fi
echo "results/ are up to date"
cargo run --locked -- log --check
