#!/usr/bin/env bash
# tests/bench/run.sh - run the wsgate benchmark end to end on 127.0.0.1.
#
# Starts its own redis-server (Redis mode) and G gateways on free ports, runs
# wsbench against them with --gateway-pid for each gateway (and --aux-pid for
# Redis), prints the figures, stops everything it started by PID and exits
# with wsbench's status. Builds nothing: it expects build/wsgate and
# build/tests/bench/wsbench (or BUILD_DIR=/path/to/build; WSGATE=,
# WSBENCH= and NOURING= name the binaries directly).
#
#   tests/bench/run.sh [--subs N] [--messages M] [--rate R] [--size B]
#                      [--gateways G] [--workers W] [--redis|--embedded] [--batch]
#                      [--no-uring]
#                      [--timeout S (default 300)] [--procs P]
#                      [--server wsgate|wsgate-sio|nchan|socketio]
#                      [--scenario default|all|sidebyside|100k]
#                      [--idle-subs N] [--idle S]
#                      [-- extra wsbench args, e.g. --verbose --window 64]
#
# --procs P runs P load-generator processes (wsbench --procs), the k-th
# connecting from 127.0.0.(2+k) when P > 1: each process has its own
# descriptor limit and each address its own ephemeral ports.
# --server wsgate-sio is wsgate through its Socket.IO dialect (/socket.io/,
# wsbench --proto wsgate-sio).
#
# --server nchan runs G nginx instances (worker_processes 1, nchan websocket
# subscriber /sub/<channel> and publisher /pub/<channel>, storage in the same
# redis-server through nchan_redis_pass, nchan 1.3's form of nchan_use_redis), each in the foreground with its own temporary
# prefix and config; --server socketio runs G `node sio-server/server.js`
# (Socket.IO 4 + @socket.io/redis-adapter). wsbench --proto talks to them with
# the same data JSON, so the latency comes from the same timestamp. Both need
# --redis and a --rate above 0; --batch and --workers are wsgate's (--workers
# also applies to wsgate-sio, which needs a --rate above 0 too).
#
# --workers W starts each gateway with --workers W (Redis only) and measures
# the CPU and RSS of its worker processes.
#
# --no-uring starts the wsgate gateways (and so their workers) under
# build/tests/bench/nouring, a seccomp filter that refuses io_uring as the
# default profiles of Docker and Podman do: each logs "io_uring unavailable"
# and makes one send() per write, as under `docker compose up`. wsbench,
# Redis and the other servers run as usual (x86_64 only).
#
# Default scenario: 1000 subscribers, 2000 messages of 200 bytes at 1000/s,
# Redis, 1 gateway. --scenario all runs, one after the other, 1000 subscribers
# each: a) embedded  b) Redis  c) Redis, batch  d) Redis, 2 gateways (500
# subscribers on each; the publisher is on the first)
# and prints a summary table. --scenario sidebyside runs the same load
# against each server behind its own redis-server (a server that is not
# installed is skipped with one line saying how to install it) and prints the
# same table, where "+redis" is the CPU of the server processes and Redis per
# delivery. --subs/--messages/
# --rate/--size/--timeout given with --scenario all or sidebyside apply to
# every scenario; e.g. 500 subscribers, 50 msg/s for 5 s, 100-byte payloads:
#   tests/bench/run.sh --scenario sidebyside --subs 500 --rate 50 --messages 250 --size 100
#
# --scenario sidebyside also measures, per server, --idle-subs (default
# 10000) connections held idle for --idle seconds (default 30; 0 skips it):
# CPU share and RSS per connection at default settings; and the floor
# (wsbench --floor, 120-byte frames, --subs loopback sockets): the CPU of one
# send() of 1, 4 and 16 frames, and the latency floor: the same subscribers
# and rate fed by 1 and by 2 trivial sender processes, one send() of a ready
# frame per subscriber per message. Its rows: wsgate plain with 1 worker and with
# --workers 2, ?batch=1 and the Socket.IO dialect with --workers 2, and nchan
# and Socket.IO as 2 instances each: 2 server processes but for the first.
#
# --scenario 100k: 100,000 subscribers (--subs) on one channel of one
# gateway with --workers 8 (--workers), from --procs 8 load-generator
# processes on 127.0.0.2..9; 1 broadcast (--messages). It checks the
# machine's limits first (descriptors per process, ephemeral ports per
# source address, somaxconn, tcp_mem; it changes no setting, it prints what
# to raise) and sets WSGATE_MAX_CONNECTIONS=20000 per worker unless given
# (the kernel spreads connections over the workers unevenly).
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
NOURING=${NOURING:-$BUILD_DIR/tests/bench/nouring}

SUBS=1000
MESSAGES=2000
RATE=1000
SIZE=200
GATEWAYS=1
WORKERS=1
MODE=redis
BATCH=0
NO_URING=0
TIMEOUT=300
SCENARIO=default
SERVER=wsgate
PROCS=1
IDLE_SUBS=10000
IDLE_S=30
EXTRA=()
SET_ARGS=() # what the user gave, passed on to each --scenario all run
GIVEN=()    # the options the user set

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
    --subs | --messages | --rate | --size | --gateways | --workers | --timeout | --scenario | \
        --server | --procs | --idle-subs | --idle)
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
        --procs) PROCS=$2 ;;
        --idle-subs) IDLE_SUBS=$2 ;;
        --idle) IDLE_S=$2 ;;
        esac
        case $1 in --scenario | --gateways | --server | --idle-subs | --idle) ;; *) SET_ARGS+=("$1" "$2") ;; esac
        GIVEN+=("$1")
        shift 2
        ;;
    --redis) MODE=redis; shift ;;
    --embedded) MODE=embedded; shift ;;
    --batch) BATCH=1; shift ;;
    --no-uring) NO_URING=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

given() { [[ " ${GIVEN[*]-} " == *" $1 "* ]]; }
if [ "$SCENARIO" = 100k ]; then # its defaults, where the user set none
    given --subs || SUBS=100000
    given --workers || WORKERS=8
    given --procs || PROCS=8
    given --messages || MESSAGES=1
    given --rate || RATE=1
    given --size || SIZE=100
    given --timeout || TIMEOUT=120
    export WSGATE_MAX_CONNECTIONS="${WSGATE_MAX_CONNECTIONS:-20000}"
fi
for v in SUBS MESSAGES RATE SIZE GATEWAYS WORKERS TIMEOUT PROCS IDLE_SUBS IDLE_S; do
    is_uint "${!v}" || die "--${v,,} wants a non-negative integer, got '${!v}'"
done
if [ "$PROCS" -lt 1 ] || [ "$PROCS" -gt 64 ]; then die "--procs wants 1..64"; fi
[ "$PROCS" -le "$SUBS" ] || die "--procs $PROCS is more than --subs $SUBS"
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
    wsgate | wsgate-sio) ;;
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
    *) die "--server wants wsgate, wsgate-sio, nchan or socketio, got '$1'" ;;
    esac
}
missing_server "$SERVER" >/dev/null
if [ "$SERVER" != wsgate ]; then
    [ "$BATCH" = 0 ] || die "--batch is wsgate's with plain v1 clients"
    [ "$RATE" -gt 0 ] || die "--server $SERVER needs --rate above 0 (it acknowledges no publish)"
fi
if [ "$SERVER" = nchan ] || [ "$SERVER" = socketio ]; then
    [ "$MODE" = redis ] || die "--server $SERVER needs --redis"
    [ "$WORKERS" = 1 ] || die "--workers is wsgate's"
    [ "$NO_URING" = 0 ] || die "--no-uring is wsgate's"
fi
if [ "$NO_URING" = 1 ] && [ ! -x "$NOURING" ]; then
    die "--no-uring needs $NOURING (build first; x86_64 only)"
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
        for s in "wsgate|wsgate plain, 1 worker|--workers 1" \
            "wsgate|wsgate plain, --workers 2|--workers 2" \
            "wsgate|wsgate ?batch=1, --workers 2|--workers 2 --batch" \
            "wsgate-sio|wsgate Socket.IO, --workers 2|--workers 2" \
            "nchan|nginx + nchan, 2 instances|--workers 1 --gateways 2" \
            "socketio|socket.io + redis-adapter, 2|--workers 1 --gateways 2"; do
            IFS='|' read -r server name extra <<<"$s"
            why=$(missing_server "$server")
            if [ -n "$why" ]; then
                echo "run.sh: skipping $name: $why"
                continue
            fi
            names+=("$name")
            args+=("--redis --server $server $extra")
        done
        # The floor under every row: what the kernel charges per send(), and
        # the latency of the same load written by trivial senders.
        floor_args=(--floor --subs "$SUBS" --rate "$RATE" --messages "$MESSAGES" --size 120
            --timeout "$TIMEOUT")
        echo "=================================================================="
        echo "floor: $WSBENCH ${floor_args[*]}"
        echo "=================================================================="
        floor=$("$WSBENCH" "${floor_args[@]}" 2>&1)
        echo "$floor"
        floor=$(grep '^RESULT ' <<<"$floor")
        # Idle rows need more connections than one worker's default cap.
        export WSGATE_MAX_CONNECTIONS="${WSGATE_MAX_CONNECTIONS:-20000}"
    fi
    if [ "$NO_URING" = 1 ]; then # the wsgate rows only
        for i in "${!args[@]}"; do
            [[ ${args[$i]} =~ --server\ (nchan|socketio) ]] || args[i]+=" --no-uring"
        done
    fi
    results=() idles=()
    overall=0
    # run_one TITLE ARGS...: one run of this script, tee'd; sets rc and line.
    run_one() {
        local title=$1 out
        shift
        echo "=================================================================="
        echo "scenario $title"
        echo "=================================================================="
        out=$(mktemp /tmp/wsbench-scenario.XXXXXX)
        "$0" "$@" 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        [ "$rc" -eq 0 ] || overall=1
        line=$(grep '^RESULT ' "$out" | tail -n 1)
        line=${line:-RESULT status=no_result}
        rm -f "$out"
        echo
    }
    for i in "${!names[@]}"; do
        # sidebyside: the row's own args last, they win over the user's
        # shellcheck disable=SC2086 # the scenario args are words on purpose
        if [ "$SCENARIO" = sidebyside ]; then
            run_one "${names[$i]}" "${SET_ARGS[@]}" ${args[$i]} -- "${EXTRA[@]}"
        else # the user's --subs etc. replace the scenario's
            run_one "${names[$i]}" ${args[$i]} "${SET_ARGS[@]}" -- "${EXTRA[@]}"
        fi
        results+=("$rc|$line")
        if [ "$SCENARIO" = sidebyside ] && [ "$IDLE_S" -gt 0 ]; then
            # shellcheck disable=SC2086
            run_one "${names[$i]}: $IDLE_SUBS idle connections for $IDLE_S s" ${args[$i]} \
                --subs "$IDLE_SUBS" --messages 1 --rate 1 --size 100 -- --idle "$IDLE_S"
            idles+=("$line")
        fi
    done
    echo "=================================================================="
    echo "summary ($(nproc) CPUs; bench, servers and redis share them; $(date -u '+%Y-%m-%d %H:%M UTC')$(
        [ "$NO_URING" = 1 ] && echo "; wsgate with io_uring forbidden"))"
    echo "=================================================================="
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    ms() { local v; v=$(get "$1"); [ -n "$v" ] && awk -v v="$v" 'BEGIN{printf "%.1f", v/1000}'; }
    idle=() # the last columns: idle CPU and RSS, or RSS of the run
    fmt='%-33s %-6s %5s %9s %7s %6s %8s %8s %8s %8s %8s %8s %8s %9s %9s\n'
    if [ "$SCENARIO" = sidebyside ] && [ "$IDLE_S" -gt 0 ]; then
        idle=("idle %cpu" "idle B/c")
        fmt='%-33s %-6s %5s %9s %7s %6s %8s %8s %8s %8s %8s %8s %8s %9s %8s %9s\n'
    fi
    # shellcheck disable=SC2059 # one format for every row
    printf "$fmt" scenario status subs delivered lost errors "deliv/s" "p50 ms" "p99 ms" \
        "p99.9 ms" "max ms" "cpu-us/d" "+redis" "${idle[@]:-rss/conn}" "other-cpu"
    for i in "${!names[@]}"; do
        rc=${results[$i]%%|*}
        line=${results[$i]#*|}
        st=$(get status)
        [ -n "$st" ] || st="rc=$rc"
        # servers + Redis per delivery, from the CPU-seconds in RESULT
        withredis=$(awk -v g="$(get gw_cpu_s)" -v a="$(get aux_cpu_s)" -v d="$(get deliveries)" \
            'BEGIN{if (d > 0) printf "%.3f", (g + a) * 1e6 / d}')
        row=("${names[$i]}" "$st" "$(get subs)" "$(get deliveries)" "$(get missing)" "$(get errors)"
            "$(get deliveries_per_s)" "$(ms lat_p50_us)" "$(ms lat_p99_us)" "$(ms lat_p999_us)"
            "$(ms lat_max_us)" "$(get cpu_us_per_delivery)" "$withredis")
        other=$(get other_cpu_s)
        if [ ${#idle[@]} -gt 0 ]; then
            line=${idles[$i]}
            st=$(get status)
            [ "$st" = ok ] && st= || st=" ($st)"
            row+=("$(get idle_cpu_pct)$st" "$(get rss_per_conn_bytes)")
        else
            row+=("$(get rss_per_conn_bytes)")
        fi
        # shellcheck disable=SC2059
        printf "$fmt" "${row[@]}" "$other"
    done
    echo "(cpu-us/d: server process CPU per delivery; +redis: the same plus redis-server;"
    if [ ${#idle[@]} -gt 0 ]; then
        echo " idle %cpu, idle B/c: server CPU (share of one core) and RSS growth per connection"
        echo " with $IDLE_SUBS connections held idle $IDLE_S s, default settings;"
    else
        echo " rss/conn: server RSS growth per subscriber connection in bytes;"
    fi
    echo " other-cpu: CPU-s used by unrelated processes during the publish phase, i.e. noise)"
    if [ -n "${floor:-}" ]; then
        line=$(grep ' floor=1 ' <<<"$floor")
        echo "send() floor, same machine: $(get us_per_send_1) CPU-us per send() of 1 frame," \
            "$(get us_per_frame_4) per frame with 4 per send(), $(get us_per_frame_16) with 16" \
            "($(get sockets) loopback sockets, $(get frame_bytes)-byte frames)"
        for k in 1 2; do
            line=$(grep " senders=$k\$" <<<"$floor")
            [ -n "$line" ] || continue
            st=$(get status)
            [ "$st" = ok ] && st= || st=" ($st)"
            echo "latency floor at $(get rate) msg/s x $(get subs), $k trivial sender(s):" \
                "p50 $(ms lat_p50_us) p99 $(ms lat_p99_us) p99.9 $(ms lat_p999_us) ms," \
                "$(get cpu_us_per_delivery) CPU-us per send()$st"
        done
    fi
    exit "$overall"
fi
case $SCENARIO in default | 100k) ;; *) die "--scenario wants default, all, sidebyside or 100k" ;; esac

# ---------------------------------------------------------------------------
# One run.
why=$(missing_server "$SERVER")
[ -z "$why" ] || die "$why"
case $SERVER in wsgate*) [ -x "$WSGATE" ] || die "missing $WSGATE (build first, or set BUILD_DIR)" ;; esac
[ -x "$WSBENCH" ] || die "missing $WSBENCH (build first, or set BUILD_DIR)"
if [ "$MODE" = redis ]; then
    command -v redis-server >/dev/null || die "redis-server not found"
fi

# check_limits: what this machine allows against what the run needs, from
# the gateways' and the generators' point of view. Changes no setting: a
# limit that cannot hold stops the run with what to raise.
check_limits() {
    local nofile lo hi range per_proc per_worker somax conn file_max need avail_kb
    nofile=$(ulimit -Hn)
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
    range=$((hi - lo + 1))
    per_proc=$(((SUBS + PROCS - 1) / PROCS))
    per_worker=$((SUBS / (GATEWAYS * WORKERS)))
    somax=$(cat /proc/sys/net/core/somaxconn)
    file_max=$(cat /proc/sys/fs/file-max)
    conn=$(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null || echo none)
    avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    echo "run.sh: limits: descriptors per process $nofile (hard), ephemeral ports $lo-$hi" \
        "($range per source address), somaxconn $somax, fs.file-max $file_max," \
        "nf_conntrack_max $conn, tcp_mem $(cat /proc/sys/net/ipv4/tcp_mem) pages" \
        "(min pressure max), MemAvailable $((avail_kb / 1024)) MB"
    echo "run.sh: needs: $per_proc connections per load generator ($PROCS), ~$per_worker per" \
        "worker ($((GATEWAYS * WORKERS)) in all), $((2 * SUBS)) TCP sockets on loopback"
    [ "$per_proc" -lt $((nofile - 64)) ] ||
        die "$per_proc connections per load generator exceed its descriptor limit $nofile: raise --procs (or ulimit -Hn)"
    # the kernel spreads connections over SO_REUSEPORT workers unevenly: 10% margin
    [ $((per_worker * 11 / 10)) -lt $((nofile - 64)) ] ||
        die "~$per_worker connections per worker exceed its descriptor limit $nofile: raise --workers"
    [ "$per_proc" -le "$range" ] ||
        die "$per_proc connections from one source address exceed the $range ephemeral ports: raise --procs (each has its own 127.0.0.x), or sysctl -w net.ipv4.ip_local_port_range='1024 65535'"
    need=$((2 * SUBS + 10000))
    [ "$need" -lt "$file_max" ] || die "$need descriptors exceed fs.file-max $file_max: sysctl -w fs.file-max=$((need * 2))"
    if [ "$conn" != none ] && [ "$SUBS" -gt "$conn" ]; then
        echo "run.sh: WARNING: $SUBS connections exceed nf_conntrack_max $conn if loopback is tracked: sysctl -w net.netfilter.nf_conntrack_max=$((SUBS * 2))" >&2
    fi
    [ "$somax" -ge $((128 * PROCS)) ] ||
        echo "run.sh: note: somaxconn $somax < $((128 * PROCS)) handshakes in flight: connects may be retried (sysctl -w net.core.somaxconn=$((128 * PROCS)))" >&2
}

if [ "$SCENARIO" = 100k ] || [ "$SUBS" -gt 15000 ] || [ "$PROCS" -gt 1 ]; then
    check_limits
fi

LOGDIR=$(mktemp -d /tmp/wsbench.XXXXXX)
GW_PIDS=()
WORKER_PIDS=() # workers of --workers gateways: not our children, stopped by PID
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
    for i in "${!WORKER_PIDS[@]}"; do # their supervisor's death signals them; make sure
        stop_pid "${WORKER_PIDS[$i]}" "gateway worker ${WORKER_PIDS[$i]}"
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
    "$rate_txt$([ "$BATCH" = 1 ] && echo ", batch")$([ "$NO_URING" = 1 ] && echo ", io_uring forbidden")"
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
    local i=$1 log=$LOGDIR/gateway$1.log args=()
    [ "$NO_URING" = 1 ] && args=("$NOURING") # it execs wsgate: $! stays the gateway's pid
    args+=("$WSGATE" --listen 127.0.0.1:0 --drain-seconds 2)
    [ "$WORKERS" -gt 1 ] && args+=(--workers "$WORKERS")
    [ -n "$REDIS_URL" ] && args+=(--redis "$REDIS_URL")
    "${args[@]}" >"$log" 2>&1 &
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
    if ! wait_line "$log" 'Redis upstream bench_redis: ready' 30 "$pid"; then
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
    "start_${SERVER%-sio}" "$i" # wsgate-sio: the same gateway
    GW_PORTS+=("$port")
    echo "run.sh: $SERVER $i pid $pid on 127.0.0.1:$port"
done

# a connect costs the box ~0.5 ms all told: 100k take about a minute
SETUP_TIMEOUT=$((SUBS / 500 > 60 ? SUBS / 500 : 60))
bench_args=(--subs "$SUBS" --messages "$MESSAGES" --rate "$RATE" --size "$SIZE"
    --timeout "$TIMEOUT" --setup-timeout "$SETUP_TIMEOUT")
[ "$PROCS" -gt 1 ] && bench_args+=(--procs "$PROCS" --source-addr 127.0.0.2)
[ "$BATCH" = 1 ] && bench_args+=(--batch)
bench_args+=(--proto "$SERVER")
for i in "${!GW_PIDS[@]}"; do
    bench_args+=(--port "${GW_PORTS[$i]}")
    pid=${GW_PIDS[$i]}
    if [ "$WORKERS" -gt 1 ]; then # the workers do the work, not the supervisor
        read -ra workers <"/proc/$pid/task/$pid/children"
        for w in "${workers[@]}"; do bench_args+=(--gateway-pid "$w"); done
        WORKER_PIDS+=("${workers[@]}")
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
timeout --kill-after=5 $((TIMEOUT + SETUP_TIMEOUT + 30)) "$WSBENCH" "${bench_args[@]}" \
    >"$LOGDIR/bench.out" &
BENCH_PID=$!
wait "$BENCH_PID"
status=$?
BENCH_PID=
cat "$LOGDIR/bench.out"
[ "$status" -eq 124 ] && echo "run.sh: wsbench did not stop within its bound (killed)" >&2
if [ "$SCENARIO" = 100k ]; then
    line=$(grep '^RESULT ' "$LOGDIR/bench.out" | tail -n 1)
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    ms() { awk -v v="$(get "$1")" 'BEGIN{printf "%.1f", v/1000}'; }
    echo "100k: $(get subs_complete) of $(get subs) subscribers got all $(get messages)" \
        "broadcast(s) ($(get deliveries) of $(get expected) deliveries, $(get errors) errors);" \
        "latency p50 $(ms lat_p50_us) ms, p99 $(ms lat_p99_us) ms, p99.9 $(ms lat_p999_us) ms," \
        "max $(ms lat_max_us) ms; gateway RSS $(get rss_per_conn_bytes) B per connection" \
        "($WORKERS workers summed; kernel TCP memory $(get tcp_mem_kb_before) ->" \
        "$(get tcp_mem_kb_connected) kB); connect+subscribe $(get setup_s) s for $(get subs) from" \
        "$(get procs) processes; other processes' CPU during the broadcast $(get other_cpu_s) s"
fi

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
    # --no-uring, or a host that forbids io_uring itself: say so beside the figures
    nuring=$(grep -c 'io_uring unavailable' "$log")
    [ "$nuring" -eq 0 ] || echo "run.sh: gateway $i: $nuring process(es) without io_uring:" \
        "$(grep -m 1 -o 'io_uring unavailable.*' "$log")"
done
if [ -n "$REDIS_PID" ] && ! kill -0 "$REDIS_PID" 2>/dev/null; then
    echo "run.sh: redis-server DIED during the run" >&2
    tail -n 20 "$LOGDIR/redis.log" >&2
    [ "$status" -eq 0 ] && status=1
fi

# Stop the gateways here to check that they shut down cleanly. They may
# still be closing the connections wsbench dropped (on 2026-12-02 wsgate took
# ~200 CPU-us per close, 10k in ~2 s): 5 s plus 1 s per 2000 clients.
stop_s=$((5 + SUBS / 2000))
for i in "${!GW_PIDS[@]}"; do
    pid=${GW_PIDS[$i]}
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid"
    t_term=$SECONDS
    for _ in $(seq $((stop_s * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: gateway $i (pid $pid) still running $stop_s s after SIGTERM" >&2
        continue # cleanup() kills it
    fi
    [ $((SECONDS - t_term)) -le 5 ] ||
        echo "run.sh: gateway $i took $((SECONDS - t_term)) s to stop after SIGTERM"

    wait "$pid"
    rc=$?
    [ "$rc" -eq 0 ] || echo "run.sh: gateway $i exited with status $rc after SIGTERM" >&2
done
exit "$status"
