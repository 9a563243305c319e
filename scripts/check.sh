#!/bin/sh
# check.sh — the whole test suite, as `make check` runs it: build, unit
# tests (cmocka), system tests (pytest), then the same again built with
# AddressSanitizer + UndefinedBehaviorSanitizer, and the console in
# headless Chromium (tests/web, node --test).  Ends with one line
# "N passed, N failed" over everything; exits non-zero on any failure.
#
#   scripts/check.sh                 everything
#   scripts/check.sh --unit-only B   unit tests of build dir B only
set -u
cd "$(dirname "$0")/.."

PASSED=0
FAILED=0
LOG=build/check
mkdir -p "$LOG"
export GOCACHE="${GOCACHE:-$PWD/build/gocache}"
export GOFLAGS="${GOFLAGS:-}"
export HOME="${HOME:-/root}"

count_cmocka() { # file
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
    PASSED=$((PASSED + ${p:-0}))
    FAILED=$((FAILED + ${f:-0}))
}

run_unit() { # build dir
    b=$1
    for t in "$b"/tests/test_*; do
        [ -x "$t" ] || continue
        out="$LOG/$(basename "$b")-$(basename "$t").log"
        if ! timeout 300 "$t" >"$out" 2>&1; then
            if ! grep -q '^\[  FAILED  \]' "$out"; then
                echo "$t: crashed or timed out (exit $?)" >>"$out"
                FAILED=$((FAILED + 1))
            fi
        fi
        cat "$out"
        count_cmocka "$out"
    done
}

run_system() { # build dir, san flag
    b=$1
    out="$LOG/pytest-$(basename "$b").log"
    SONDE_BUILD="$b" SONDE_SAN="$2" timeout 1800 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        tests/system >"$out" 2>&1
    rc=$?
    cat "$out"
    line=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|no tests ran' "$out" | tail -1)
    p=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) failed.*/\1/p')
    e=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) error.*/\1/p')
    PASSED=$((PASSED + ${p:-0}))
    FAILED=$((FAILED + ${f:-0} + ${e:-0}))
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ -z "$f$e" ]; then
        FAILED=$((FAILED + 1))
    fi
}

run_web() { # build dir: the console in headless Chromium (node's test runner)
    b=$1
    out="$LOG/web-$(basename "$b").log"
    SONDE_BUILD="$b" timeout 1200 node --test --test-concurrency=1 tests/web/ >"$out" 2>&1
    rc=$?
    cat "$out"
    p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -1)
    f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -1)
    PASSED=$((PASSED + ${p:-0}))
    FAILED=$((FAILED + ${f:-0}))
    if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
        FAILED=$((FAILED + 1))
    fi
}

if [ "${1:-}" = "--unit-only" ]; then
    run_unit "${2:-build}"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit
fi

JOBS=$(nproc 2>/dev/null || echo 2)
echo "== build (plain)"
if ! make -s -j"$JOBS" all; then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "== build (ASan + UBSan)"
if ! make -s -j"$JOBS" SAN=1 all; then
    echo "0 passed, 1 failed"
    exit 1
fi

echo "== build (TSan, unit tests only: the agent's threads)"
if ! make -s -j"$JOBS" SAN=thread all; then
    echo "0 passed, 1 failed"
    exit 1
fi

echo "== unit tests (plain)"
run_unit build
echo "== system tests (plain)"
run_system build 0
echo "== console tests (headless Chromium)"
run_web build

echo "== unit tests (ASan + UBSan)"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_unit build/san
unset ASAN_OPTIONS UBSAN_OPTIONS
echo "== system tests (ASan + UBSan)"
run_system build/san 1

echo "== unit tests (TSan)"
export TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0
run_unit build/tsan
unset TSAN_OPTIONS

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
