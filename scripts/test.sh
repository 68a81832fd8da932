#!/usr/bin/env bash
# The whole test suite, once per storage backend:
#   1. SQLite: `cargo test --workspace --locked` (every crate);
#   2. PostgreSQL: the `unlockd` package again with UNLOCKD_TEST_DATABASE_URL set, so that
#      every test gets a fresh database of its own on that server.
# Every test binary runs even when an earlier one fails (`--no-fail-fast`), the PostgreSQL
# pass runs even when the SQLite pass failed, and the script ends with one summary line per
# backend. It exits non-zero if anything failed.
#
# Environment it honours:
#   UNLOCKD_TEST_DATABASE_URL  PostgreSQL server for the second pass
#                              (default postgres://postgres@127.0.0.1:5432/test)
#   UNLOCKD_REQUIRE_POSTGRES=1 an unreachable PostgreSQL is a failure (CI), not a skip
#   UNLOCKD_SKIP_POSTGRES=1    run the SQLite pass only, on purpose
#   CARGO_TARGET_DIR           cargo's build directory, as usual
# Extra arguments go to both `cargo test` runs (e.g. a test name filter).
set -uo pipefail
cd "$(dirname "$0")/.."

pg_url="${UNLOCKD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

postgres_reachable() {
    if ! command -v pg_isready >/dev/null 2>&1; then
        echo "!! pg_isready is not installed, so PostgreSQL cannot be checked"
        return 1
    fi
    pg_isready -q -t 5 -d "$pg_url"
}

# Runs the command after the pass name (a `cargo test`), teeing its output to $logs/NAME.log,
# and leaves a one-line verdict for that backend in $logs/NAME.summary. Returns its status.
run_pass() {
    local name=$1
    shift
    local log="$logs/$name.log"
    local start status
    start=$(date +%s)
    "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    local secs=$(($(date +%s) - start))
    # Totals over every "test result:" line (one per test binary and doc-test run).
    local totals
    totals=$(awk '/^test result:/ {
            binaries++
            for (i = 1; i <= NF; i++) {
                if ($(i) ~ /^passed;?$/) passed += $(i - 1)
                if ($(i) ~ /^failed;?$/) failed += $(i - 1)
            }
        }
        END { printf "%d test binaries, %d tests passed, %d failed", binaries, passed, failed }' "$log")
    if [ "$status" -eq 0 ]; then
        echo "$name: passed in ${secs}s ($totals)" >"$logs/$name.summary"
    else
        # cargo lists the failing targets at the end ("error: N targets failed:" and one
        # indented line each); a build error shows up as a failure with no test results.
        local failed_targets
        failed_targets=$(awk '/targets? failed:/ { listing = 1; next }
            listing && /^ +`/ { gsub(/^ +/, ""); printf "%s%s", sep, $0; sep = ", " }
            listing && !/^ +`/ { listing = 0 }' "$log")
        echo "$name: FAILED in ${secs}s ($totals)${failed_targets:+; failing: $failed_targets}" \
            >"$logs/$name.summary"
    fi
    return "$status"
}

# The console's browser tests (tests/console_browser.rs) drive headless Chromium through
# chromedriver; install Debian's packages when they are missing (as root, or with sudo).
# Without them those tests fail, saying how to install them.
ensure_chromium() {
    if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
        return 0
    fi
    echo "== installing chromium and chromium-driver (for the console's browser tests)"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
            echo "!! not root and no sudo: install them with: apt-get install -y chromium chromium-driver"
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "!! no apt-get: install chromium and chromedriver by hand (or set CHROMIUM and CHROMEDRIVER)"
        return 0
    fi
    # A dpkg run cut short earlier on this machine blocks every install until finished.
    $sudo dpkg --configure -a || true
    $sudo apt-get install -y --no-install-recommends chromium chromium-driver \
        || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends chromium chromium-driver; } \
        || echo "!! could not install chromium and chromium-driver; the browser tests will fail"
}
ensure_chromium

failed=0

echo "== tests on SQLite"
run_pass SQLite env -u UNLOCKD_TEST_DATABASE_URL \
    cargo test --locked --no-fail-fast --workspace "$@" || failed=1

if [ "${UNLOCKD_SKIP_POSTGRES:-0}" = "1" ]; then
    echo "PostgreSQL: SKIPPED (UNLOCKD_SKIP_POSTGRES=1)" >"$logs/PostgreSQL.summary"
elif postgres_reachable; then
    echo "== tests on PostgreSQL (${pg_url%%\?*})"
    run_pass PostgreSQL env UNLOCKD_TEST_DATABASE_URL="$pg_url" \
        cargo test --locked --no-fail-fast -p unlockd "$@" || failed=1
else
    if [ "${UNLOCKD_REQUIRE_POSTGRES:-0}" = "1" ]; then
        echo "PostgreSQL: FAILED: not reachable at ${pg_url%%\?*} and UNLOCKD_REQUIRE_POSTGRES=1" \
            >"$logs/PostgreSQL.summary"
        failed=1
    else
        echo "PostgreSQL: NOT RUN: not reachable at ${pg_url%%\?*}; the tests ran on SQLite ONLY" \
            >"$logs/PostgreSQL.summary"
    fi
fi

echo
echo "== summary"
cat "$logs/SQLite.summary" "$logs/PostgreSQL.summary"
if [ "$failed" -ne 0 ]; then
    echo "== FAILED"
    exit 1
fi
echo "== all passed"
