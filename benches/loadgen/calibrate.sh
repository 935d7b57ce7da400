#!/usr/bin/env bash
# Is loadgen ever the bottleneck? Compares it with redis-benchmark against one redis-server
# (server on core 0, client on core 1), alternating the two clients ROUNDS times so that
# background load hits both alike. Client CPU is user+sys of the whole client process
# (/usr/bin/time), the same measure for both.
#
#   benches/loadgen/calibrate.sh [REQUESTS] [ROUNDS]       (defaults: 2000000, 3)
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-2000000}
rounds=${2:-3}
loadgen=target/release/loadgen
[[ -x $loadgen ]] || cargo build --release -p loadgen

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 redis-server --port "$port" --save '' --appendonly no --loglevel warning &
rpid=$!
trap 'kill $rpid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

tmp=$(mktemp)
# Prints "client test rps client_cpu_s".
lg() { # test scenario
    /usr/bin/time -o "$tmp" -f '%U %S' taskset -c 1 "$loadgen" --port "$port" --target redis \
        --scenario "$2" --requests "$n" --connections 50 --pipeline 16 --csv --no-header |
        awk -F, -v t="$1" '{printf "loadgen %s %s ", t, $12}'
    awk '{printf "%.2f\n", $1 + $2}' "$tmp"
}
rb() { # test args...
    local t=$1
    shift
    /usr/bin/time -o "$tmp" -f '%U %S' taskset -c 1 redis-benchmark -p "$port" -c 50 -P 16 \
        -n "$n" --csv "$@" | awk -F, -v t="$t" 'NR==2 {gsub(/"/, "", $2); printf "redis-benchmark %s %.0f ", t, $2}'
    awk '{printf "%.2f\n", $1 + $2}' "$tmp"
}

echo "client test ops_per_s client_cpu_s"
for _ in $(seq "$rounds"); do
    lg ping ping
    rb ping -t ping_mbulk
    lg ping-inline ping-inline
    rb ping-inline -t ping_inline
    lg set heartbeat
    rb set -r 10000000 SET 'user:__rand_int__:presence' online EX 30
done
rm -f "$tmp"
