#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer targets and fuzz each for a budget.
#
#   tests/fuzz/run.sh [--seconds N (default 60)] [--target proto|auth|config|sio|sio_adapter]...
#
# Configures and builds with clang in build-fuzz/ (BUILD_DIR= to change it;
# CC=clang cmake -DWSGATE_FUZZ=ON), then runs each target for N seconds,
# one after the other:
#   proto   client frames: strict JSON scanner, request parser, json_object,
#           HTTP publish body parser, message framing  (corpus_proto)
#   auth    connect tokens and --anonymous-channels lists   (corpus_auth)
#   config  flags, WSGATE_* variables, --listen and --redis URL parsing
#                                                             (corpus_config)
#   sio     Engine.IO polling payloads and packets, Socket.IO packets, the
#           EVENT <-> {event,args} mapping                    (corpus_sio)
#   sio_adapter  MessagePack messages on the Socket.IO redis-adapter channel
#           socket.io#/#, their verdicts and payloads   (corpus_sio_adapter)
# Each run starts from tests/fuzz/corpus_<target>; what it finds goes to a
# scratch directory, and only the inputs that add coverage are merged back
# (-merge=1), so the corpus grows by a few small files. Prints executions,
# coverage and corpus growth per target. A crash, leak, timeout or failed
# check leaves its reproducer in build-fuzz/crashes/<target>/ and makes the
# script exit 1 (after the other targets have run); a build failure exits 2.
# Add a reproducer to the corpus once the bug is fixed, so ctest replays it.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO/build-fuzz}
SECONDS_PER=60
TARGETS=()

usage() {
    sed -n '2,/^set -u$/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
    echo "run.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --seconds)
        if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
            die "--seconds needs a positive whole number"
        fi
        SECONDS_PER=$2
        shift 2
        ;;
    --target)
        [ $# -ge 2 ] || die "--target needs a name"
        case $2 in proto | auth | config | sio | sio_adapter) TARGETS+=("$2") ;; *) die "unknown target '$2'" ;; esac
        shift 2
        ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(proto auth config sio sio_adapter)

command -v clang >/dev/null || die "clang not found"
echo "== build ($BUILD_DIR)"
CC=clang cmake -S "$REPO" -B "$BUILD_DIR" -DWSGATE_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD_DIR.cmake.log" 2>&1 ||
    { cat "$BUILD_DIR.cmake.log" >&2; die "cmake failed"; }
rm -f "$BUILD_DIR.cmake.log"
cmake --build "$BUILD_DIR" -j2 --target "${TARGETS[@]/#/fuzz_}" >/dev/null ||
    die "build failed (cmake --build $BUILD_DIR --target fuzz_<name> shows why)"

stat_of() { # stat_of NAME LOG: the value of libFuzzer's final "stat::NAME:"
    sed -n "s/^stat::$1: *//p" "$2" | tail -1
}

count() { find "$1" -maxdepth 1 -type f | wc -l; }

failed=0
summary=()
for t in "${TARGETS[@]}"; do
    bin=$BUILD_DIR/tests/fuzz_$t
    corpus=$HERE/corpus_$t
    scratch=$BUILD_DIR/scratch/$t
    crashes=$BUILD_DIR/crashes/$t
    log=$BUILD_DIR/fuzz_$t.log
    rm -rf "$scratch" "$crashes" # no stale reproducers from an earlier run
    mkdir -p "$scratch" "$crashes" "$corpus"
    dict=()
    [ -f "$HERE/$t.dict" ] && dict=(-dict="$HERE/$t.dict")
    before=$(count "$corpus")
    echo "== $t: ${SECONDS_PER}s from $before inputs"
    # New inputs go to the first directory (scratch); the corpus is read.
    "$bin" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" \
        "$scratch" "$corpus" >"$log" 2>&1
    rc=$?
    execs=$(stat_of number_of_executed_units "$log")
    rate=$(stat_of average_exec_per_sec "$log")
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    status=ok
    if [ $rc -ne 0 ]; then
        status="CRASH (exit $rc)"
        failed=1
        echo "-- $t failed; reproducer(s):"
        find "$crashes" -type f | sed "s|^|   |"
        grep -E 'ERROR: |SUMMARY: |==[0-9]+==|deadly signal|#[0-3] ' "$log" | head -20 | sed 's/^/   /'
        echo "   full log: $log"
    fi
    # Keep only inputs that reach new edges (hit counts ignored: far fewer files).
    "$bin" -merge=1 -use_counters=0 -timeout=10 "$corpus" "$scratch" >"$log.merge" 2>&1 ||
        echo "-- $t: merge failed, see $log.merge"
    added=$(($(count "$corpus") - before))
    line=$(printf '%-7s execs %-10s (%s/s)  cov %-5s  corpus %s (+%s)  %s' \
        "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$(count "$corpus")" "$added" "$status")
    echo "$line"
    summary+=("$line")
done

echo "== summary (${SECONDS_PER}s per target)"
printf '%s\n' "${summary[@]}"
exit $failed
