#!/usr/bin/env bash
# run.sh HOST PORT USER PASSWORD DB PREFIX MAX_RECORDS TIMEOUT_SECS [KEY=VALUE...]
# run.sh --fetch      (only download Debezium and compile the runner)
#
# Runs Debezium 3.6.1.Final's MySQL connector (embedded engine) against a server and prints
# its records as JSON lines (see DebeziumRunner.java); KEY=VALUE arguments set connector
# properties. Debezium is fetched once with
# `mvn dependency:copy-dependencies` on pom.xml into $ROWSTREAM_CACHE/debezium-3.6.1/lib; the
# runner is compiled with javac into $ROWSTREAM_CACHE/debezium-3.6.1/classes-<sha of the
# source>, so an edit recompiles it. Used by tests/debezium_compat.rs.
# Env: JAVA / JAVAC (17 or newer), DEBEZIUM_HEAP (256m),
#      DEBEZIUM_JAVA_OPTS: JVM options replacing the test defaults (-Xmx$DEBEZIUM_HEAP
#      -XX:+UseSerialGC -XX:TieredStopAtLevel=1: a fast start for short tests, not for
#      throughput), e.g. benches/peers.sh: "-Xmx2g -Drunner.buffered=true" (full JIT,
#      the JVM's default GC; runner.buffered: see DebeziumRunner.java).
source "$(dirname "$0")/../lib.sh"

DIR=$(cd "$(dirname "$0")" && pwd)
JAVA=${JAVA:-java}
JAVAC=${JAVAC:-javac}
DBZ=$ROWSTREAM_CACHE/debezium-3.6.1
LIB=$DBZ/lib

fetch() {
  if [[ ! -f $LIB/.complete ]]; then
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    local t; t=$(now)
    log "fetching Debezium 3.6.1.Final (Maven Central) into $LIB"
    rm -rf "$LIB.tmp"
    mvn -q -B -f "$DIR/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" >&2 \
      || die "mvn dependency:copy-dependencies (debezium/pom.xml) failed"
    touch "$LIB.tmp/.complete"
    rm -rf "$LIB"; mv "$LIB.tmp" "$LIB"
    log "Debezium ready in $(elapsed "$t")s"
  fi
  compile_java "$JAVAC" "$DIR/DebeziumRunner.java" "$LIB" "$DBZ"
}

fetch
[[ ${1:-} == --fetch ]] && exit 0
[[ $# -ge 8 ]] || die "usage: $0 HOST PORT USER PASSWORD DB PREFIX MAX_RECORDS TIMEOUT_SECS [KEY=VALUE...] | $0 --fetch"
if [[ -n ${DEBEZIUM_JAVA_OPTS:-} ]]; then read -ra JOPTS <<<"$DEBEZIUM_JAVA_OPTS"
else JOPTS=(-Xmx"${DEBEZIUM_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1); fi
exec "$JAVA" "${JOPTS[@]}" \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.logFile=System.err \
  -cp "$CLASSES:$LIB/*" DebeziumRunner "$@"
