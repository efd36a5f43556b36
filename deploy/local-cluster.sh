#!/usr/bin/env bash
# deploy/local-cluster.sh — the docker-compose topology as local processes:
# redis-server, N wsgate gateways on free ports and HAProxy (deploy/haproxy.cfg)
# on one port, in the foreground. Ctrl-C or SIGTERM stops everything it started,
# by PID, and removes its temporary files.
#
#   deploy/local-cluster.sh [--gateways N] [--port P] [--host ADDR] [--log-dir DIR]
#
#   --gateways N   gateway processes (default 3)
#   --port P       HAProxy port, the URL to open (default 8080)
#   --host ADDR    address HAProxy binds (default 127.0.0.1; 0.0.0.0 for the LAN)
#   --log-dir DIR  keep each process's log in DIR (default: in the temp dir,
#                  removed on exit)
#
# Environment: WSGATE_BIN (default <repo>/build/wsgate), WSGATE_LOG_LEVEL and
# other WSGATE_* variables pass through to the gateways; presence is on for
# every channel (the chat lists who is in a room) unless
# WSGATE_PRESENCE_CHANNELS is set (empty: off). With HAProxy on a
# loopback --host, the HTTP API (POST /api/publish) is open (--api-insecure):
# only this machine reaches it. Otherwise, or with WSGATE_API_KEY or
# WSGATE_API_KEY_FILE set, it needs the key (and without one answers 403).
#
# While it runs, <temp dir>/cluster.state lists what it started, one per line:
#   <role> <name> <pid> <address>
# roles: redis, gateway, haproxy, and "stats - - <CLI socket path>" for HAProxy's
# stats socket ("show stat"). The path is printed as "state file: PATH".
# A gateway that exits is reported ("gateway gw2 (pid N) exited with status S")
# and the cluster keeps running; if redis or haproxy exits, everything stops.
set -u -o pipefail

prog=local-cluster.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "$prog: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

gateways=3 port=8080 host=127.0.0.1 log_dir=
while [ $# -gt 0 ]; do
    case $1 in
        --gateways) [ $# -ge 2 ] || die "--gateways needs a number"; gateways=$2; shift 2 ;;
        --gateways=*) gateways=${1#*=}; shift ;;
        --port) [ $# -ge 2 ] || die "--port needs a number"; port=$2; shift 2 ;;
        --port=*) port=${1#*=}; shift ;;
        --host) [ $# -ge 2 ] || die "--host needs an address"; host=$2; shift 2 ;;
        --host=*) host=${1#*=}; shift ;;
        --log-dir) [ $# -ge 2 ] || die "--log-dir needs a directory"; log_dir=$2; shift 2 ;;
        --log-dir=*) log_dir=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $gateways =~ ^[1-9][0-9]?$ ]] || { echo "$prog: --gateways must be 1..99, got '$gateways'" >&2; exit 2; }
if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "$prog: --port must be 1..65535, got '$port'" >&2; exit 2
fi

# ---- dependencies --------------------------------------------------------
wsgate=${WSGATE_BIN:-$repo/build/wsgate}
[ -x "$wsgate" ] || die "gateway binary $wsgate not found: build it first (cmake -S . -B build && cmake --build build) or set WSGATE_BIN"
redis_server=$(PATH=$PATH:/usr/sbin:/sbin command -v redis-server) ||
    die "redis-server not found (Debian: apt-get install redis-server)"
haproxy=$(PATH=$PATH:/usr/sbin:/sbin command -v haproxy) ||
    die "haproxy not found (Debian: apt-get install haproxy)"
cfg_src=$repo/deploy/haproxy.cfg
[ -r "$cfg_src" ] || die "$cfg_src not found"

# A TCP port is taken when something accepts on it. (bash's /dev/tcp: no extra tool.)
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
connect_host=$host
case $host in 0.0.0.0|'*'|'') connect_host=127.0.0.1 ;; esac
(exec 3<>"/dev/tcp/$connect_host/$port") 2>/dev/null &&
    die "port $port on $host is already in use (choose another with --port)"

# ---- temp dir, state, cleanup --------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-cluster.XXXXXX") || die "cannot create a temp dir"
if [ -n "$log_dir" ]; then
    mkdir -p "$log_dir" || die "cannot create --log-dir $log_dir"
    log_dir=$(cd "$log_dir" && pwd)
else
    log_dir=$tmp
fi
state=$tmp/cluster.state
: >"$state"

declare -A name_of=() role_of=()   # pid -> name / role
order=()                           # pids in start order

cleaned=0
cleanup() {
    [ "$cleaned" = 1 ] && return
    cleaned=1
    trap '' INT TERM HUP
    # Stop the LB first (no new clients), then the gateways (they drain and
    # send 1001), then Redis.
    local pid role wave deadline
    for wave in haproxy gateway redis; do
        for pid in "${order[@]}"; do
            [ "${role_of[$pid]}" = "$wave" ] && kill -TERM "$pid" 2>/dev/null
        done
        deadline=$((SECONDS + 10))
        for pid in "${order[@]}"; do
            [ "${role_of[$pid]}" = "$wave" ] || continue
            while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
                sleep 0.05
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "$prog: ${name_of[$pid]} (pid $pid) did not stop in 10 s, killing it" >&2
                kill -KILL "$pid" 2>/dev/null
            fi
        done
    done
    wait 2>/dev/null
    rm -rf "$tmp"
}
on_exit() { local rc=$?; cleanup; exit "$rc"; }
trap on_exit EXIT
trap 'echo "$prog: stopping"; exit 0' INT TERM HUP

# start ROLE NAME LOGFILE CMD...: start CMD in the background and record it.
started_pid=
start() {
    local role=$1 name=$2 log=$3; shift 3
    "$@" </dev/null >>"$log" 2>&1 &
    started_pid=$!
    name_of[$started_pid]=$name role_of[$started_pid]=$role
    order+=("$started_pid")
}

# await_line PID LOG REGEX SECONDS: wait until LOG has a line matching REGEX.
# Fails at once if PID exits, or after SECONDS. Prints the matching line.
await_line() {
    local pid=$1 log=$2 re=$3 deadline=$((SECONDS + $4)) line
    while :; do
        line=$(grep -E -m1 -- "$re" "$log" 2>/dev/null) && { printf '%s\n' "$line"; return 0; }
        kill -0 "$pid" 2>/dev/null || return 1
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}
fail_start() {  # fail_start WHAT LOG
    echo "$prog: $1; last lines of $2:" >&2
    tail -n 5 "$2" | sed 's/^/    /' >&2
    exit 1
}

# ---- redis ---------------------------------------------------------------
# redis-server cannot pick a free port itself (--port 0 disables TCP): try a
# few random free ones and keep the first that binds.
redis_port='' redis_pid=''
for _ in 1 2 3 4 5 6 7 8; do
    p=$((20000 + RANDOM % 30000))
    port_taken "$p" && continue
    redis_log=$log_dir/redis.log
    : >"$redis_log"
    start redis redis "$redis_log" "$redis_server" --port "$p" --bind 127.0.0.1 \
        --save '' --appendonly no --dir "$tmp" --daemonize no --logfile ''
    if await_line "$started_pid" "$redis_log" 'Ready to accept connections' 10 >/dev/null; then
        redis_port=$p redis_pid=$started_pid
        break
    fi
    kill -TERM "$started_pid" 2>/dev/null; wait "$started_pid" 2>/dev/null
    role_of[$started_pid]=exited
    grep -q 'Address already in use' "$redis_log" || fail_start "redis-server did not start" "$redis_log"
done
[ -n "$redis_port" ] || die "found no free port for redis-server"
echo "redis redis $redis_pid 127.0.0.1:$redis_port" >>"$state"
echo "redis    pid $redis_pid  on 127.0.0.1:$redis_port"

# ---- gateways ------------------------------------------------------------
# Reached from this machine only: the API is open on purpose, unless a key was given.
api_flags=()
case $host in
    127.*|localhost|::1) [ -n "${WSGATE_API_KEY:-}${WSGATE_API_KEY_FILE:-}${WSGATE_API_INSECURE:-}" ] ||
        api_flags=(--api-insecure) ;;
esac
export WSGATE_PRESENCE_CHANNELS=${WSGATE_PRESENCE_CHANNELS-*}
server_lines=()
for i in $(seq 1 "$gateways"); do
    name=gw$i
    log=$log_dir/$name.log
    : >"$log"
    start gateway "$name" "$log" "$wsgate" --listen 127.0.0.1:0 \
        --redis "redis://127.0.0.1:$redis_port" --node-id "$name" --web-root "$repo/web" \
        "${api_flags[@]}"
    pid=$started_pid
    line=$(await_line "$pid" "$log" 'listening on [^ ]*:[0-9]+' 10) ||
        fail_start "gateway $name did not start listening" "$log"
    [[ $line =~ listening\ on\ [^\ ]*:([0-9]+) ]] || fail_start "gateway $name: no port in '$line'" "$log"
    gport=${BASH_REMATCH[1]}
    await_line "$pid" "$log" 'broker up' 10 >/dev/null ||
        fail_start "gateway $name did not connect to redis" "$log"
    echo "gateway $name $pid 127.0.0.1:$gport" >>"$state"
    echo "gateway  pid $pid  on 127.0.0.1:$gport  (node $name)"
    server_lines+=("    server $name 127.0.0.1:$gport")
done

# ---- haproxy -------------------------------------------------------------
# The template step: deploy/haproxy.cfg with its server-template block
# replaced by one server line per gateway.
cfg=$tmp/haproxy.cfg
printf '%s\n' "${server_lines[@]}" >"$tmp/servers"
awk -v servers="$tmp/servers" '
    /^[ \t]*# >>> servers/ { print; while ((getline l < servers) > 0) print l; skip = 1; next }
    /^[ \t]*# <<< servers/ { skip = 0 }
    !skip { print }
' "$cfg_src" >"$cfg" || die "cannot write $cfg"
grep -q '^    server gw1 ' "$cfg" || die "$cfg_src has no '# >>> servers' block to fill"

export WSGATE_LB_BIND="$host:$port" WSGATE_LB_CHECK_INTER=500ms \
       WSGATE_LB_STATS_SOCKET=$tmp/haproxy.sock WSGATE_LB_MAXCONN=4000
"$haproxy" -q -c -f "$cfg" >"$tmp/haproxy-check.log" 2>&1 ||
    fail_start "haproxy rejects $cfg" "$tmp/haproxy-check.log"
haproxy_log=$log_dir/haproxy.log
: >"$haproxy_log"
start haproxy haproxy "$haproxy_log" "$haproxy" -db -f "$cfg"
haproxy_pid=$started_pid
# Ready once the frontend accepts (and the stats socket exists).
deadline=$((SECONDS + 10))
until [ -S "$tmp/haproxy.sock" ] && (exec 3<>"/dev/tcp/$connect_host/$port") 2>/dev/null; do
    if ! kill -0 "$haproxy_pid" 2>/dev/null; then
        grep -qiE 'address already in use|cannot bind' "$haproxy_log" &&
            die "port $port on $host is already in use (choose another with --port)"
        fail_start "haproxy exited at start" "$haproxy_log"
    fi
    [ $SECONDS -lt $deadline ] || fail_start "haproxy did not open port $port in 10 s" "$haproxy_log"
    sleep 0.05
done
echo "haproxy haproxy $haproxy_pid $host:$port" >>"$state"
echo "stats - - $tmp/haproxy.sock" >>"$state"
echo "haproxy  pid $haproxy_pid  on $host:$port"
echo "state file: $state"
echo "logs: $log_dir"
url_host=$host
case $host in 0.0.0.0|'*'|'') url_host=localhost ;; esac
echo "wsgate cluster ready: http://$url_host:$port/  ($gateways gateways; Ctrl-C stops it)"

# ---- run until a signal, or until redis or haproxy exits -----------------
while :; do
    exited=
    wait -n -p exited 2>/dev/null      # (bash would also print "Killed" job notices)
    status=$?
    if [ -z "$exited" ]; then
        [ "$status" = 127 ] && exit 1     # no child left (cannot happen while redis runs)
        continue                          # interrupted by a signal: its trap exits
    fi
    name=${name_of[$exited]:-?} role=${role_of[$exited]:-?}
    role_of[$exited]=exited               # reaped: its pid may be reused, never signal it again
    echo "$role $name (pid $exited) exited with status $status"
    case $role in
        redis|haproxy)
            echo "$prog: $name is gone, stopping the cluster" >&2
            exit 1 ;;
    esac
done
