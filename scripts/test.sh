#!/usr/bin/env bash
# The whole test suite, once per storage backend:
#   1. SQLite: `cargo test --workspace --locked` (every crate);
#   2. PostgreSQL: the `unlockd` package again with UNLOCKD_TEST_DATABASE_URL set, so that
#      every test gets a fresh database of its own on that server.
# The PostgreSQL server is UNLOCKD_TEST_DATABASE_URL if set, else
# postgres://postgres@127.0.0.1:5432/test. When it is not reachable, the script says so and
# runs SQLite only, unless UNLOCKD_REQUIRE_POSTGRES=1 (CI), which makes that a failure.
# Extra arguments go to both `cargo test` runs (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url="${UNLOCKD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

postgres_reachable() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -t 5 -d "$pg_url"
}

echo "== tests on SQLite"
start=$(date +%s)
env -u UNLOCKD_TEST_DATABASE_URL cargo test --workspace --locked "$@"
sqlite_secs=$(( $(date +%s) - start ))
echo "== SQLite run passed in ${sqlite_secs}s"

if postgres_reachable; then
    echo "== tests on PostgreSQL (${pg_url%%\?*})"
    start=$(date +%s)
    UNLOCKD_TEST_DATABASE_URL="$pg_url" cargo test -p unlockd --locked "$@"
    pg_secs=$(( $(date +%s) - start ))
    echo "== PostgreSQL run passed in ${pg_secs}s"
    echo "== both backends passed (SQLite ${sqlite_secs}s, PostgreSQL ${pg_secs}s)"
else
    echo "!! PostgreSQL is not reachable at ${pg_url%%\?*}: the tests ran on SQLite ONLY"
    if [ "${UNLOCKD_REQUIRE_POSTGRES:-0}" = "1" ]; then
        echo "!! UNLOCKD_REQUIRE_POSTGRES=1: failing"
        exit 1
    fi
fi
