#!/usr/bin/env bash
# tests/faults/soak.sh - long run: two gateways sharing one redis-server.
#
#   tests/faults/soak.sh [--minutes N (default 10)] [--subs N (2000)]
#                        [--rate R (50 msg/s)] [--churn F (0.01 per second)]
#                        [--max-slope KB/min (256)] [--verbose]
#
# Starts redis-server and two wsgate processes on free ports on 127.0.0.1,
# then the driver (tests/faults/soak.c with the WebSocket client it shares
# with the benchmark, tests/bench/wsclient.c, compiled here with cc into the
# build directory): N subscribers spread over both gateways on one channel, R
# messages per second published through both gateways in turn, a fraction F
# of the subscribers closing and reconnecting every second; RSS of each
# gateway is sampled every second. At the end it prints messages published,
# delivered, lost in reconnect gaps (published between a subscriber's close
# and its next subscribe ack: expected today, nothing replays them) and lost
# outside them, the RSS of each gateway at the start and the end with its
# slope over the second half (KB/min: the lower of the growth rates of its
# two quarters, so one step of the allocator's high-water mark under a
# backlog does not read as a leak; see soak.c), and CPU of gateways, Redis
# and driver.
#
# Exit status: 0 when nothing was lost outside a reconnect gap, no gateway
# closed a connection, every publish was acked, every RSS slope is at most
# --max-slope and both gateways are still alive; 1 otherwise; 2 for bad
# usage or a missing binary. Builds only the driver: it expects build/wsgate
# (BUILD_DIR=/path/to/build, or WSGATE=/path/to/wsgate). Everything it starts
# is stopped by PID; logs are kept in a temp directory when it fails
# (KEEP_LOGS=1: always).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO/build}
WSGATE=${WSGATE:-$BUILD_DIR/wsgate}
DRIVER=$BUILD_DIR/tests/faults-soak

MINUTES=10
SUBS=2000
RATE=50
CHURN=0.01
MAX_SLOPE=256
VERBOSE=()

usage() {
    sed -n '2,/^set -u$/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
    echo "soak.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --minutes | --subs | --rate | --churn | --max-slope)
        [ $# -ge 2 ] || die "$1 needs a value"
        [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$1 wants a number, got '$2'"
        case $1 in
        --minutes) MINUTES=$2 ;;
        --subs) SUBS=$2 ;;
        --rate) RATE=$2 ;;
        --churn) CHURN=$2 ;;
        --max-slope) MAX_SLOPE=$2 ;;
        esac
        shift 2
        ;;
    --verbose) VERBOSE=(--verbose); shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[ -x "$WSGATE" ] || die "missing $WSGATE (build first, or set BUILD_DIR)"
command -v redis-server >/dev/null || die "redis-server not found"
mkdir -p "$(dirname "$DRIVER")"
WSCLIENT=$REPO/tests/bench/wsclient
if [ ! -x "$DRIVER" ] || [ "$HERE/soak.c" -nt "$DRIVER" ] ||
    [ "$WSCLIENT.c" -nt "$DRIVER" ] || [ "$WSCLIENT.h" -nt "$DRIVER" ]; then
    ${CC:-cc} -O2 -Wall -Wextra -o "$DRIVER" "$HERE/soak.c" "$WSCLIENT.c" ||
        die "cannot build the driver"
fi

# Each gateway holds about SUBS/2 client sockets, the driver SUBS.
need=$((SUBS + 256))
[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge "$need" ] ||
    die "--subs $SUBS needs $need file descriptors; the hard limit is $(ulimit -Hn)"
ulimit -n "$(ulimit -Hn)"

LOGDIR=$(mktemp -d /tmp/wsgate-soak.XXXXXX)
GW_PIDS=()
GW_PORTS=()
REDIS_PID=
DRIVER_PID=


# shellcheck source=tests/lib/procs.sh
. "$(dirname "$0")/../lib/procs.sh"

# shellcheck disable=SC2317 # called through trap
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    [ -n "$DRIVER_PID" ] && stop_pid "$DRIVER_PID" driver
    for i in "${!GW_PIDS[@]}"; do
        stop_pid "${GW_PIDS[$i]}" "gateway $((i + 1))"
    done
    [ -n "$REDIS_PID" ] && stop_pid "$REDIS_PID" redis-server
    if [ "${KEEP_LOGS:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "soak.sh: logs kept in $LOGDIR" >&2
    else
        rm -rf "$LOGDIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM



echo "soak.sh: machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
REDIS_URL=
for attempt in 1 2 3; do
    port=$(free_port) || die "no free port for redis"
    : >"$LOGDIR/redis.log"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$LOGDIR" --logfile "$LOGDIR/redis.log" &
    REDIS_PID=$!
    if wait_line "$LOGDIR/redis.log" 'Ready to accept connections' 10 "$REDIS_PID"; then
        REDIS_URL=redis://127.0.0.1:$port
        break
    fi
    stop_pid "$REDIS_PID" redis-server
    REDIS_PID=
    echo "soak.sh: redis-server did not start on port $port (attempt $attempt)" >&2
done
[ -n "$REDIS_URL" ] || { echo "soak.sh: cannot start redis-server" >&2; exit 1; }
echo "soak.sh: redis-server pid $REDIS_PID on $REDIS_URL"

for i in 1 2; do
    log=$LOGDIR/gateway$i.log
    : >"$log"
    "$WSGATE" --listen 127.0.0.1:0 --redis "$REDIS_URL" --node-id "soak$i" \
        --drain-seconds 1 --max-connections $((SUBS + 100)) >"$log" 2>&1 &
    pid=$!
    GW_PIDS+=("$pid")
    if ! wait_line "$log" 'broker up' 10 "$pid" ||
        ! wait_line "$log" 'listening on 127\.0\.0\.1:[0-9]+' 10 "$pid"; then
        echo "soak.sh: gateway $i (pid $pid) did not start; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    port=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$log" | head -n 1 | sed 's/.*://')
    GW_PORTS+=("$port")
    echo "soak.sh: gateway $i pid $pid on 127.0.0.1:$port"
done

args=(--subs "$SUBS" --minutes "$MINUTES" --rate "$RATE" --churn "$CHURN"
    --max-slope "$MAX_SLOPE" --aux-pid "$REDIS_PID" "${VERBOSE[@]}")
for i in "${!GW_PIDS[@]}"; do
    args+=(--port "${GW_PORTS[$i]}" --gateway-pid "${GW_PIDS[$i]}")
done
echo "soak.sh: $DRIVER ${args[*]}"
# The driver stops by itself (run + 30 s drain at most); timeout(1) bounds
# it should it hang.
bound=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 + 300 }')
timeout --kill-after=5 "$bound" "$DRIVER" "${args[@]}" &
DRIVER_PID=$!
wait "$DRIVER_PID"
status=$?
DRIVER_PID=
[ "$status" -eq 124 ] && echo "soak.sh: the driver did not stop within $bound s (killed)" >&2

for i in "${!GW_PIDS[@]}"; do
    pid=${GW_PIDS[$i]}
    log=$LOGDIR/gateway$((i + 1)).log
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"
        echo "soak.sh: GATEWAY $((i + 1)) (pid $pid) DIED, exit status $?; its last lines:" >&2
        tail -n 20 "$log" >&2
        status=1
        continue
    fi
    echo "soak.sh: gateway $((i + 1)) log: $(wc -l <"$log") lines," \
        "$(grep -cE ' (warn|error) ' "$log") at warn or error"
    grep -E ' (warn|error) ' "$log" | head -n 5 | sed 's/^/    /'
done
if ! kill -0 "$REDIS_PID" 2>/dev/null; then
    echo "soak.sh: redis-server DIED" >&2
    status=1
fi
echo "soak.sh: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
