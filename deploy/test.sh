#!/usr/bin/env bash
# deploy/test.sh — THE test command (README, CI's .ci/run): installs the test servers'
# binaries (deploy/dev/install-test-deps.sh: MariaDB from apt, MySQL 9.7 extracted from
# Debian sid into the cache) and runs the whole workspace's tests against real servers.
#
#   ROWSTREAM_TEST_REQUIRE_SERVERS=1  a test that cannot start a server fails (no skips)
#   ROWSTREAM_MYSQL_ROOT              the extracted MySQL tree the harness starts mysqld from
#
# Release build: the integration tests push millions of rows through the binlog.
# Arguments are passed to cargo test after the crate selection, e.g.
#   deploy/test.sh --test harness_smoke        deploy/test.sh -- some_test_name
# Exit code: cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."

# The one place the test flags live.
CARGO_TEST=(cargo test --workspace --release)
TEST_THREADS=(--test-threads=2)

ROWSTREAM_MYSQL_ROOT=$(deploy/dev/install-test-deps.sh | tail -1)
[[ -x $ROWSTREAM_MYSQL_ROOT/usr/sbin/mysqld ]] || { echo "install-test-deps.sh gave no MySQL tree" >&2; exit 1; }
export ROWSTREAM_MYSQL_ROOT
export ROWSTREAM_TEST_REQUIRE_SERVERS=1

# Split the caller's args at the first `--`: before it cargo's, after it the test binary's.
CARGO_ARGS=() BIN_ARGS=()
while [[ $# -gt 0 && $1 != -- ]]; do CARGO_ARGS+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
BIN_ARGS=("$@")

echo "+ ${CARGO_TEST[*]} ${CARGO_ARGS[*]} -- ${TEST_THREADS[*]} ${BIN_ARGS[*]}" >&2
# Servers a crashed test process left behind (target/test-servers/<flavor>-<pid>-<n>
# whose pid is gone): the harness purges them on its next start; after the last test
# binary there is no next start, so do it here. Live test processes' servers are untouched.
reap_leftover_servers() {
  local d pid
  for d in target/test-servers/*-*-*; do
    [[ -d $d ]] || continue
    pid=$(basename "$d" | cut -d- -f2)
    [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null || continue
    case $(basename "$d") in
      osmem-*) deploy/dev/stop-osmem.sh --kill --purge "$d" >/dev/null 2>&1 || true ;;
      *) deploy/dev/stop.sh --kill --purge "$d" >/dev/null 2>&1 || true ;;
    esac
  done
}

# Code checks first (cheap, and a red one names the problem at once): clippy at
# the workspace's lint level ([workspace.lints], clippy.toml: no warning, no
# function over 150 lines), the build without the optional sinks, and no import
# cycles between modules. Skipped when the caller selects tests (arguments given).
if [[ ${#CARGO_ARGS[@]} -eq 0 && ${#BIN_ARGS[@]} -eq 0 ]]; then
  echo "+ cargo clippy --workspace --all-targets -- -D warnings" >&2
  cargo clippy --workspace --all-targets -- -D warnings
  echo "+ cargo check --no-default-features (no Kafka, no Elasticsearch)" >&2
  cargo check --quiet --no-default-features
  echo "+ deploy/dev/import-cycles.py" >&2
  python3 deploy/dev/import-cycles.py
fi

rc=0
"${CARGO_TEST[@]}" "${CARGO_ARGS[@]}" -- "${TEST_THREADS[@]}" "${BIN_ARGS[@]}" || rc=$?
reap_leftover_servers
exit "$rc"
