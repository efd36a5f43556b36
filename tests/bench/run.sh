#!/usr/bin/env bash
# tests/bench/run.sh - run the wsgate benchmark end to end on 127.0.0.1.
#
# Starts its own redis-server (Redis mode) and G gateways on free ports, runs
# wsbench against them with --gateway-pid for each gateway (and --aux-pid for
# Redis), prints the figures, stops everything it started by PID and exits
# with wsbench's status. Builds nothing: it expects build/wsgate and
# build/tests/bench/wsbench (or BUILD_DIR=/path/to/build; WSGATE= and
# WSBENCH= name the binaries directly).
#
#   tests/bench/run.sh [--subs N] [--messages M] [--rate R] [--size B]
#                      [--gateways G] [--workers W] [--redis|--embedded] [--batch]
#                      [--timeout S (default 300)] [--server wsgate|nchan|socketio]
#                      [--scenario default|all|sidebyside]
#                      [-- extra wsbench args, e.g. --verbose --window 64]
#
# --server nchan runs G nginx instances (worker_processes 1, nchan websocket
# subscriber /sub/<channel> and publisher /pub/<channel>, storage in the same
# redis-server through nchan_redis_pass, nchan 1.3's form of nchan_use_redis), each in the foreground with its own temporary
# prefix and config; --server socketio runs G `node sio-server/server.js`
# (Socket.IO 4 + @socket.io/redis-adapter). wsbench --proto talks to them with
# the same data JSON, so the latency comes from the same timestamp. Both need
# --redis and a --rate above 0; --batch and --workers are wsgate's.
#
# --workers W starts each gateway with --workers W (Redis only) and measures
# the CPU and RSS of its worker processes.
#
# Default scenario: 1000 subscribers, 2000 messages of 200 bytes at 1000/s,
# Redis, 1 gateway. --scenario all runs, one after the other, 1000 subscribers
# each: a) embedded  b) Redis  c) Redis, batch  d) Redis, 2 gateways (500
# subscribers on each; the publisher is on the first)
# and prints a summary table. --scenario sidebyside runs, 2 instances behind
# one redis-server each: wsgate plain, wsgate batch, nginx + nchan, Socket.IO
# + redis-adapter (a server that is not installed is skipped with one line
# saying how to install it), and prints the same table, where "+redis" is the
# CPU of the server processes and Redis per delivery. --subs/--messages/
# --rate/--size/--timeout given with --scenario all or sidebyside apply to
# every scenario; e.g. 500 subscribers, 50 msg/s for 5 s, 100-byte payloads:
#   tests/bench/run.sh --scenario sidebyside --subs 500 --rate 50 --messages 250 --size 100
#
# Gateway flags can be changed through the environment, e.g.
# WSGATE_MAX_QUEUE_BYTES=4096 tests/bench/run.sh ... (every WSGATE_* variable
# in effect is printed). KEEP_LOGS=1 keeps the log directory; it is kept
# anyway when a run fails.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO/build}
WSGATE=${WSGATE:-$BUILD_DIR/wsgate}
WSBENCH=${WSBENCH:-$BUILD_DIR/tests/bench/wsbench}

SUBS=1000
MESSAGES=2000
RATE=1000
SIZE=200
GATEWAYS=1
WORKERS=1
MODE=redis
BATCH=0
TIMEOUT=300
SCENARIO=default
SERVER=wsgate
EXTRA=()
SET_ARGS=() # what the user gave, passed on to each --scenario all run

usage() {
    sed -n '2,/^set -u$/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
    echo "run.sh: $*" >&2
    exit 2
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
    case $1 in
    --subs | --messages | --rate | --size | --gateways | --workers | --timeout | --scenario | --server)
        [ $# -ge 2 ] || die "$1 needs a value"
        case $1 in
        --subs) SUBS=$2 ;;
        --messages) MESSAGES=$2 ;;
        --rate) RATE=$2 ;;
        --size) SIZE=$2 ;;
        --gateways) GATEWAYS=$2 ;;
        --workers) WORKERS=$2 ;;
        --timeout) TIMEOUT=$2 ;;
        --scenario) SCENARIO=$2 ;;
        --server) SERVER=$2 ;;
        esac
        case $1 in --scenario | --gateways | --server) ;; *) SET_ARGS+=("$1" "$2") ;; esac
        shift 2
        ;;
    --redis) MODE=redis; shift ;;
    --embedded) MODE=embedded; shift ;;
    --batch) BATCH=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

for v in SUBS MESSAGES RATE SIZE GATEWAYS WORKERS TIMEOUT; do
    is_uint "${!v}" || die "--${v,,} wants a non-negative integer, got '${!v}'"
done
if [ "$GATEWAYS" -lt 1 ] || [ "$GATEWAYS" -gt 16 ]; then die "--gateways wants 1..16"; fi
[ "$SUBS" -ge 1 ] || die "--subs wants at least 1"
[ "$TIMEOUT" -ge 1 ] || die "--timeout wants at least 1"
if [ "$MODE" = embedded ] && [ "$GATEWAYS" -gt 1 ]; then
    die "--gateways $GATEWAYS needs --redis: embedded gateways do not share messages"
fi
if [ "$WORKERS" -lt 1 ] || [ "$WORKERS" -gt 64 ]; then die "--workers wants 1..64"; fi
if [ "$MODE" = embedded ] && [ "$WORKERS" -gt 1 ]; then
    die "--workers $WORKERS needs --redis: embedded workers do not share messages"
fi
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
SIO_DIR=$HERE/sio-server
# missing_server NAME: how to install it, or nothing when it is there.
missing_server() {
    case $1 in
    wsgate) ;;
    nchan)
        if ! command -v nginx >/dev/null || [ ! -f "$NCHAN_MODULE" ]; then
            echo "nginx + nchan not installed: apt-get install nginx-light libnginx-mod-nchan"
        fi
        ;;
    socketio)
        if ! command -v node >/dev/null || [ ! -d "$SIO_DIR/node_modules/socket.io" ]; then
            echo "Socket.IO not installed: apt-get install nodejs npm; (cd tests/bench/sio-server && npm ci)"
        fi
        ;;
    *) die "--server wants wsgate, nchan or socketio, got '$1'" ;;
    esac
}
missing_server "$SERVER" >/dev/null
if [ "$SERVER" != wsgate ]; then
    [ "$MODE" = redis ] || die "--server $SERVER needs --redis"
    if [ "$BATCH" = 1 ] || [ "$WORKERS" != 1 ]; then die "--batch and --workers are wsgate's"; fi
    [ "$RATE" -gt 0 ] || die "--server $SERVER needs --rate above 0 (it acknowledges no publish)"
fi

# ---------------------------------------------------------------------------
# --scenario all|sidebyside: run this script once per scenario, then a
# summary table.
if [ "$SCENARIO" = all ] || [ "$SCENARIO" = sidebyside ]; then
    if [ ! -x "$WSGATE" ] || [ ! -x "$WSBENCH" ]; then
        die "build first: missing $WSGATE or $WSBENCH"
    fi
    if [ "$SCENARIO" = all ]; then
        names=("a) embedded, 1 gateway" "b) redis, 1 gateway" "c) redis, 1 gateway, batch"
            "d) redis, 2 gateways")
        args=("--embedded --subs 1000" "--redis --subs 1000" "--redis --subs 1000 --batch"
            "--redis --gateways 2 --subs 1000")
    else
        names=() args=()
        for s in "wsgate|wsgate plain|" "wsgate|wsgate ?batch=1|--batch" \
            "nchan|nginx + nchan|" "socketio|socket.io + redis-adapter|"; do
            IFS='|' read -r server name extra <<<"$s"
            why=$(missing_server "$server")
            if [ -n "$why" ]; then
                echo "run.sh: skipping $name: $why"
                continue
            fi
            names+=("$name")
            args+=("--redis --gateways 2 --server $server $extra")
        done
    fi
    results=()
    overall=0
    for i in "${!names[@]}"; do
        echo "=================================================================="
        echo "scenario ${names[$i]}"
        echo "=================================================================="
        out=$(mktemp /tmp/wsbench-scenario.XXXXXX)
        # shellcheck disable=SC2086 # the scenario args are words on purpose
        "$0" ${args[$i]} "${SET_ARGS[@]}" -- "${EXTRA[@]}" 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        [ "$rc" -eq 0 ] || overall=1
        line=$(grep '^RESULT ' "$out" | tail -n 1)
        results+=("$rc|${line:-RESULT status=no_result}")
        rm -f "$out"
        echo
    done
    echo "=================================================================="
    echo "summary ($(nproc) CPUs; bench, servers and redis share them; $(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo "=================================================================="
    printf '%-27s %-6s %5s %9s %7s %7s %9s %9s %9s %9s %9s %8s %8s %8s %9s\n' scenario status \
        subs deliveries lost errors "deliv/s" "p50 ms" "p90 ms" "p99 ms" "max ms" "cpu-us/d" \
        "+redis" "rss/conn" "other-cpu"
    for i in "${!names[@]}"; do
        rc=${results[$i]%%|*}
        line=${results[$i]#*|}
        get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
        st=$(get status)
        [ -n "$st" ] || st="rc=$rc"
        ms() { local v; v=$(get "$1"); [ -n "$v" ] && awk -v v="$v" 'BEGIN{printf "%.1f", v/1000}'; }
        # servers + Redis per delivery, from the CPU-seconds in RESULT
        withredis=$(awk -v g="$(get gw_cpu_s)" -v a="$(get aux_cpu_s)" -v d="$(get deliveries)" \
            'BEGIN{if (d > 0) printf "%.3f", (g + a) * 1e6 / d}')
        printf '%-27s %-6s %5s %9s %7s %7s %9s %9s %9s %9s %9s %8s %8s %8s %9s\n' "${names[$i]}" "$st" \
            "$(get subs)" "$(get deliveries)" "$(get missing)" "$(get errors)" \
            "$(get deliveries_per_s)" "$(ms lat_p50_us)" "$(ms lat_p90_us)" "$(ms lat_p99_us)" \
            "$(ms lat_max_us)" "$(get cpu_us_per_delivery)" "$withredis" \
            "$(get rss_per_conn_bytes)" "$(get other_cpu_s)"
    done
    echo "(cpu-us/d: server process CPU per delivery; +redis: the same plus redis-server;"
    echo " rss/conn: server RSS growth per subscriber connection in bytes; other-cpu:"
    echo " CPU-s used by unrelated processes during the publish phase, i.e. noise)"
    exit "$overall"
fi
[ "$SCENARIO" = default ] || die "--scenario wants default, all or sidebyside"

# ---------------------------------------------------------------------------
# One run.
why=$(missing_server "$SERVER")
[ -z "$why" ] || die "$why"
[ "$SERVER" != wsgate ] || [ -x "$WSGATE" ] || die "missing $WSGATE (build first, or set BUILD_DIR)"
[ -x "$WSBENCH" ] || die "missing $WSBENCH (build first, or set BUILD_DIR)"
if [ "$MODE" = redis ]; then
    command -v redis-server >/dev/null || die "redis-server not found"
fi

LOGDIR=$(mktemp -d /tmp/wsbench.XXXXXX)
GW_PIDS=()
GW_PORTS=()
REDIS_PID=
BENCH_PID=
KEEP=${KEEP_LOGS:-0}


# shellcheck source=tests/lib/procs.sh
. "$(dirname "$0")/../lib/procs.sh"

# shellcheck disable=SC2317 # called through trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$BENCH_PID" ] && stop_pid "$BENCH_PID" wsbench
    local i
    for i in "${!GW_PIDS[@]}"; do
        stop_pid "${GW_PIDS[$i]}" "gateway $i"
    done
    [ -n "$REDIS_PID" ] && stop_pid "$REDIS_PID" redis-server
    if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "run.sh: logs kept in $LOGDIR" >&2
    else
        rm -rf "$LOGDIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM



# The bench publisher sends far more than a chat client may: lift the
# per-connection publish limit unless the caller set one.
export WSGATE_PUBLISH_RATE="${WSGATE_PUBLISH_RATE:-0}"

rate_txt="rate $RATE/s"
[ "$RATE" = 0 ] && rate_txt="rate unlimited (publish window)"
echo "run.sh: $SERVER, $MODE, $GATEWAYS gateway(s) x $WORKERS worker(s), $SUBS subscribers, $MESSAGES messages x $SIZE B," \
    "$rate_txt$([ "$BATCH" = 1 ] && echo ", batch")"
env | grep '^WSGATE_' | sed 's/^/run.sh: gateway environment: /'
echo "run.sh: machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

REDIS_URL=
if [ "$MODE" = redis ]; then
    for attempt in 1 2 3 4 5; do
        port=$(free_port) || die "no free port for redis"
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$LOGDIR" --logfile "$LOGDIR/redis.log" &
        REDIS_PID=$!
        if wait_line "$LOGDIR/redis.log" 'Ready to accept connections' 10 "$REDIS_PID"; then
            REDIS_URL=redis://127.0.0.1:$port
            break
        fi
        stop_pid "$REDIS_PID" redis-server
        REDIS_PID=
        echo "run.sh: redis-server did not start on port $port (attempt $attempt)" >&2
        tail -n 5 "$LOGDIR/redis.log" >&2
    done
    [ -n "$REDIS_URL" ] || { echo "run.sh: cannot start redis-server" >&2; exit 1; }
    echo "run.sh: redis-server pid $REDIS_PID on $REDIS_URL"
fi

# start_wsgate I: gateway I on a port of its choosing; sets pid and port.
# shellcheck disable=SC2317 # called as start_$SERVER
start_wsgate() {
    local i=$1 log=$LOGDIR/gateway$1.log args
    args=(--listen 127.0.0.1:0 --drain-seconds 2)
    [ "$WORKERS" -gt 1 ] && args+=(--workers "$WORKERS")
    [ -n "$REDIS_URL" ] && args+=(--redis "$REDIS_URL")
    "$WSGATE" "${args[@]}" >"$log" 2>&1 &
    pid=$!
    GW_PIDS+=("$pid")
    if ! wait_line "$log" 'listening on 127\.0\.0\.1:[0-9]+' 10 "$pid"; then
        echo "run.sh: gateway $i (pid $pid) did not report its port; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    if [ -n "$REDIS_URL" ] && ! wait_line "$log" 'broker up' 10 "$pid"; then
        echo "run.sh: gateway $i (pid $pid) did not connect to Redis; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    port=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$log" | head -n 1 | sed 's/.*://')
}

# start_nchan I: nginx I in the foreground (daemon off) with its own prefix
# and config under LOGDIR; its log is the error log at notice level, which
# says when the worker's Redis link is up (before that it answers 503).
# shellcheck disable=SC2317 # called as start_$SERVER
start_nchan() {
    local i=$1 dir=$LOGDIR/nchan$1 log=$LOGDIR/gateway$1.log nofile
    nofile=$(ulimit -Hn)
    mkdir -p "$dir/tmp"
    port=$(free_port) || die "no free port for nginx"
    cat >"$dir/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $log notice;
events { worker_connections $((nofile - 100)); }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream bench_redis { nchan_redis_server "$REDIS_URL"; }
    server {
        listen 127.0.0.1:$port;
        location ~ ^/sub/([\w.:@-]+)\$ {
            nchan_subscriber websocket;
            nchan_channel_id \$1;
            nchan_redis_pass bench_redis;
        }
        location ~ ^/pub/([\w.:@-]+)\$ {
            nchan_publisher websocket http;
            nchan_channel_id \$1;
            nchan_redis_pass bench_redis;
        }
    }
}
EOF
    nginx -e "$log" -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    pid=$!
    GW_PIDS+=("$pid")
    if ! wait_line "$log" 'Redis upstream bench_redis: ready' 10 "$pid"; then
        echo "run.sh: nginx $i (pid $pid) did not connect to Redis; its log:" >&2
        cat "$log" "$dir/stdout.log" >&2
        exit 1
    fi
}

# start_socketio I: node sio-server/server.js I, up once its Redis clients are.
# shellcheck disable=SC2317 # called as start_$SERVER
start_socketio() {
    local i=$1 log=$LOGDIR/gateway$1.log
    port=$(free_port) || die "no free port for node"
    node "$SIO_DIR/server.js" "$port" "$REDIS_URL" >"$log" 2>&1 &
    pid=$!
    GW_PIDS+=("$pid")
    if ! wait_line "$log" "listening on 127\\.0\\.0\\.1:$port" 15 "$pid"; then
        echo "run.sh: socket.io server $i (pid $pid) did not start; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
}

for i in $(seq 0 $((GATEWAYS - 1))); do
    "start_$SERVER" "$i"
    GW_PORTS+=("$port")
    echo "run.sh: $SERVER $i pid $pid on 127.0.0.1:$port"
done

bench_args=(--subs "$SUBS" --messages "$MESSAGES" --rate "$RATE" --size "$SIZE"
    --timeout "$TIMEOUT" --setup-timeout 60)
[ "$BATCH" = 1 ] && bench_args+=(--batch)
bench_args+=(--proto "$SERVER")
for i in "${!GW_PIDS[@]}"; do
    bench_args+=(--port "${GW_PORTS[$i]}")
    pid=${GW_PIDS[$i]}
    if [ "$WORKERS" -gt 1 ]; then # the workers do the work, not the supervisor
        read -ra workers <"/proc/$pid/task/$pid/children"
        for w in "${workers[@]}"; do bench_args+=(--gateway-pid "$w"); done
    elif [ "$SERVER" = nchan ]; then # the master and its worker
        read -ra workers <"/proc/$pid/task/$pid/children"
        bench_args+=(--gateway-pid "$pid")
        for w in "${workers[@]}"; do bench_args+=(--gateway-pid "$w"); done
    else
        bench_args+=(--gateway-pid "$pid")
    fi
done
[ -n "$REDIS_PID" ] && bench_args+=(--aux-pid "$REDIS_PID")
bench_args+=("${EXTRA[@]}")

echo "run.sh: $WSBENCH ${bench_args[*]}"
# wsbench stops by itself; timeout(1) is a second bound should it hang.
timeout --kill-after=5 $((TIMEOUT + 60 + 30)) "$WSBENCH" "${bench_args[@]}" \
    >"$LOGDIR/bench.out" &
BENCH_PID=$!
wait "$BENCH_PID"
status=$?
BENCH_PID=
cat "$LOGDIR/bench.out"
[ "$status" -eq 124 ] && echo "run.sh: wsbench did not stop within its bound (killed)" >&2

# What the gateways said: anything at warn or above, and whether they lived.
for i in "${!GW_PIDS[@]}"; do
    log=$LOGDIR/gateway$i.log
    pid=${GW_PIDS[$i]}
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"
        echo "run.sh: GATEWAY $i (pid $pid) DIED during the run, exit status $?; last lines:" >&2
        tail -n 30 "$log" >&2
        [ "$status" -eq 0 ] && status=1
        continue
    fi
    warn=' \[?(warn|error|crit|alert|emerg)\]? ' # wsgate's and nginx's levels
    nwarn=$(grep -cE "$warn" "$log")
    nslow=$(grep -c 'closing slow consumer' "$log")
    echo "run.sh: gateway $i log: $(wc -l <"$log") lines, $nwarn at warn/error" \
        "($nslow slow-consumer closes)"
    grep -E "$warn" "$log" | head -n 5 | sed 's/^/    /'
done
if [ -n "$REDIS_PID" ] && ! kill -0 "$REDIS_PID" 2>/dev/null; then
    echo "run.sh: redis-server DIED during the run" >&2
    tail -n 20 "$LOGDIR/redis.log" >&2
    [ "$status" -eq 0 ] && status=1
fi

# Stop the gateways here to check that they shut down cleanly.
for i in "${!GW_PIDS[@]}"; do
    pid=${GW_PIDS[$i]}
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: gateway $i (pid $pid) still running 5 s after SIGTERM" >&2
        continue # cleanup() kills it
    fi
    wait "$pid"
    rc=$?
    [ "$rc" -eq 0 ] || echo "run.sh: gateway $i exited with status $rc after SIGTERM" >&2
done
exit "$status"
