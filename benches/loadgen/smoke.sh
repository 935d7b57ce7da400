#!/usr/bin/env bash
# Runs every loadgen scenario against presenced and redis-server, each server pinned to core 0
# and loadgen to core 1, on free loopback ports. Prints one CSV row per run.
#
#   benches/loadgen/smoke.sh [USERS] [SECONDS]        (defaults: 1000000 users, 3 s per run)
#
# Env: PRESENCED=path to the presenced binary (default target/release/presenced),
#      LOADGEN_ARGS=extra loadgen flags (e.g. "--connections 20 --pipeline 32").
set -euo pipefail
cd "$(dirname "$0")/../.."

users=${1:-1000000}
secs=${2:-3}
presenced=${PRESENCED:-target/release/presenced}
loadgen=target/release/loadgen
[[ -x $loadgen ]] || cargo build --release -p loadgen
[[ -x $presenced ]] || cargo build --release
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

rport=$(free_port)
taskset -c 0 redis-server --port "$rport" --save '' --appendonly no --loglevel warning &
rpid=$!
pids+=("$rpid")
pport=$(free_port)
taskset -c 0 "$presenced" --port "$pport" --log-level warn &
ppid=$!
pids+=("$ppid")
wait_port "$rport"
wait_port "$pport"

header=
run() { # target port pid scenario [args...]
    local target=$1 port=$2 pid=$3 scenario=$4
    shift 4
    # shellcheck disable=SC2086
    taskset -c 1 "$loadgen" --target "$target" --port "$port" --server-pid "$pid" \
        --scenario "$scenario" --users "$users" --csv $header ${LOADGEN_ARGS:-} "$@"
    header=--no-header
}

status=0
for target in presenced redis; do
    if [[ $target == presenced ]]; then port=$pport pid=$ppid; else port=$rport pid=$rpid; fi
    run $target "$port" "$pid" ping --duration-s "$secs" || status=1
    run $target "$port" "$pid" populate || status=1
    run $target "$port" "$pid" heartbeat --duration-s "$secs" || status=1
    run $target "$port" "$pid" batch-heartbeat --duration-s "$secs" || status=1
    run $target "$port" "$pid" lookup --duration-s "$secs" || status=1
    run $target "$port" "$pid" dropin --duration-s "$secs" || status=1
done
exit $status
