#!/usr/bin/env bash
# install-test-deps.sh — installs what the integration tests need, idempotently:
#   1. MariaDB 10.11 from Debian (apt-get install mariadb-server mariadb-client), only
#      when mariadbd is missing. The system service is not needed (tests start private
#      instances); it is kept from starting during the install when possible.
#   2. Oracle MySQL 9.7 from Debian sid, extracted into $ROWSTREAM_MYSQL_ROOT
#      (default ${ROWSTREAM_CACHE:-$HOME/.cache/rowstream}/mysql-sid/root) by setup-mysql.sh.
#   3. The Kafka-protocol broker noida-db (PyPI wheel, pip download) into
#      $ROWSTREAM_CACHE/noida-db-0.2.3 by start-kafka.sh --fetch.
#   4. The Elasticsearch/OpenSearch-API server osmem-server (PyPI wheel, pip download) into
#      $ROWSTREAM_CACHE/osmem-server-0.1.6 by start-osmem.sh --fetch.
# Runs apt-get as root, or through sudo when not root. Prints the MySQL tree's path last.
source "$(dirname "$0")/lib.sh"

T0=$(now)
if command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; then
  log "mariadb present: $( (command -v mariadbd || echo /usr/sbin/mariadbd) | head -1)"
else
  SUDO=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "mariadb-server is missing and this is not root: apt-get install mariadb-server mariadb-client"
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Keep the system mariadb service from being started by the package (docker-style
  # policy-rc.d), unless the machine already has a policy.
  POLICY=/usr/sbin/policy-rc.d
  if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
  fi
  t=$(now)
  "${SUDO[@]}" apt-get -q update >/dev/null 2>&1 || log "WARNING: apt-get update failed, trying the install anyway"
  "${SUDO[@]}" apt-get -q -y install mariadb-server mariadb-client >/tmp/rowstream-apt-mariadb.log 2>&1 \
    || { tail -30 /tmp/rowstream-apt-mariadb.log >&2; die "apt-get install mariadb-server mariadb-client failed"; }
  log "installed mariadb-server mariadb-client in $(elapsed "$t")s"
fi
for t in mariadb mariadb-admin mariadb-install-db; do
  command -v "$t" >/dev/null || die "$t missing after the mariadb install"
done

"$DEV_SCRIPTS/start-kafka.sh" --fetch >/dev/null
"$DEV_SCRIPTS/start-osmem.sh" --fetch >/dev/null
"$DEV_SCRIPTS/setup-mysql.sh"
log "test dependencies ready in $(elapsed "$T0")s"
