# shellcheck shell=bash
# tests/lib/procs.sh - process helpers shared by the shell drivers
# (tests/bench/run.sh, tests/faults/soak.sh): stop a child by PID, find a free
# port, await a log line. Sourced, not run; the caller owns its children and
# LOGDIR (where wait_line makes its fifo).

# stop_pid PID NAME: SIGTERM, up to 5 s for it to exit, then SIGKILL; reaps it.
stop_pid() {
    local pid=$1 name=$2
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    timeout 5 tail --pid="$pid" -f /dev/null
    if kill -0 "$pid" 2>/dev/null; then
        echo "${0##*/}: $name (pid $pid) ignored SIGTERM for 5 s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
}

# A free TCP port on 127.0.0.1 below the ephemeral range (no listener on it).
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_line FILE REGEX SECONDS PID: 0 once a line matches; 1 when PID exits
# first or the time is up. Follows the file (tail -f --pid), no polling.
wait_line() {
    local file=$1 re=$2 secs=$3 pid=$4 fifo follower
    fifo=$(mktemp -u "$LOGDIR/follow.XXXXXX") && mkfifo "$fifo" || return 1
    timeout "$secs" tail -n +1 --pid="$pid" -f "$file" >"$fifo" 2>/dev/null &
    follower=$!
    grep -qE -m1 "$re" <"$fifo"
    kill "$follower" 2>/dev/null # once grep has its line
    wait "$follower" 2>/dev/null
    rm -f "$fifo"
    grep -qE "$re" "$file"
}
