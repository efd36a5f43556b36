#!/usr/bin/env bash
# Runs every test: a normal build, then the same suite built with ASan+UBSan.
# Usage: tests/run.sh [--no-sanitize]   (from anywhere; needs the packages
# listed in README.md). Exits non-zero if either pass fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

pass() { # build dir, extra cmake args...
    local dir=$1; shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
    # shellcheck disable=SC2086 # ctest_args: optional extra ctest words
    ctest --test-dir "$dir" --output-on-failure -j"$jobs" ${ctest_args:-}
}

echo "== pass 1: release build"
pass build
if [ "${1:-}" != "--no-sanitize" ]; then
    echo "== pass 2: ASan + UBSan build"
    # compose builds a container image: nothing of ours runs sanitized there;
    # the soak's RSS slope means nothing under ASan's allocator; faults is
    # timing-bound (deadlines of 1 s) and runs in pass 1
    ctest_args="-LE compose|soak|faults" \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        pass build-asan -DWSGATE_SANITIZE=ON
fi
