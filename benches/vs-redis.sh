#!/usr/bin/env bash
# presenced side by side with redis-server: every scenario against both, one table of figures
# and ratios. `benches/vs-redis.sh --quick` finishes in a few minutes (CI runs it); the full run
# is what docs/BENCHMARKS.md records. Both servers run on core 0, the load generator on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo build --release --quiet -p loadgen
command -v redis-server >/dev/null || { echo "redis-server is not installed (scripts/install-test-deps)" >&2; exit 1; }
exec python3 benches/vs_redis.py "$@"
