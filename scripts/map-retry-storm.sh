#!/usr/bin/env bash
# Regenerates results/map-retry-storm/: the retry storm's recover/stay-down
# boundary over the spike's peak rate and length, clients re-sending at once
# with no budget beside the same clients behind a shared token-bucket retry
# budget (10 tokens, a retry spends 1, a success earns 0.1). The horizon is
# 120 s so that a 40 s spike still leaves 30 s to recover plus a judged
# window. Extra arguments go to cargo (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked "$@" -- map retry-storm \
  --axis spike=40..240 --axis duration=1..40 --steps 6 --seeds 16 \
  --set horizon_s=120 --set 'clients[0].schedule[2].until_s=120' \
  --variant no-budget \
  --variant 'budget:clients[0].retry.budget.kind=token-bucket;clients[0].retry.budget.tokens_max=10;clients[0].retry.budget.tokens_per_success=0.1' \
  --out results/map-retry-storm
