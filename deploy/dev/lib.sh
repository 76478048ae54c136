# shellcheck shell=bash
# lib.sh — helpers shared by the deploy/dev scripts. Source it, don't run it.
#
# Throwaway MySQL / MariaDB servers for development and the integration tests.
# Nothing here needs a system service, a container or (for MySQL) root.
#
# Environment (all optional):
#   ROWSTREAM_CACHE       cache dir: MySQL tree, datadir templates
#                         (default ${XDG_CACHE_HOME:-$HOME/.cache}/rowstream... see below)
#   ROWSTREAM_MYSQL_ROOT  extracted Debian sid MySQL tree (default $ROWSTREAM_CACHE/mysql-sid/root)
#   DB_ROOT_PASSWORD      root password of the servers (default root)
#   DB_REPL_PASSWORD      repl password of the servers (default repl)
set -euo pipefail

DEV_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROWSTREAM_CACHE=${ROWSTREAM_CACHE:-$HOME/.cache/rowstream}
ROWSTREAM_MYSQL_ROOT=${ROWSTREAM_MYSQL_ROOT:-$ROWSTREAM_CACHE/mysql-sid/root}
export ROWSTREAM_CACHE ROWSTREAM_MYSQL_ROOT
ROOT_PW=${DB_ROOT_PASSWORD-root}
REPL_PW=${DB_REPL_PASSWORD-repl}

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
now()  { date +%s.%N; }
# elapsed START -> seconds since START with 2 decimals
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN{printf "%.2f", e-s}'; }

# mysql_tool_cmd TOOL -> sets TOOL_CMD: how to run a binary of the extracted sid MySQL
# tree. sid's libc (>= 2.38) cannot be loaded by bookworm's ld.so, and LD_LIBRARY_PATH
# alone fails, so every binary is run through sid's own dynamic loader.
mysql_tool_cmd() {
  local tool=$1 x=$ROWSTREAM_MYSQL_ROOT bin
  case $tool in
    mysqld) bin=$x/usr/sbin/mysqld ;;
    */*) die "tool must be a bare name: $tool" ;;
    *) bin=$x/usr/bin/$tool ;;
  esac
  [[ -x $bin ]] || die "$bin not found: run deploy/dev/setup-mysql.sh (or install-test-deps.sh)"
  TOOL_CMD=("$x/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$x/usr/lib/x86_64-linux-gnu" "$bin")
}
mysql_tool() { local TOOL_CMD; mysql_tool_cmd "$1"; shift; "${TOOL_CMD[@]}" "$@"; }

# port_free PORT -> 0 when nothing listens on 127.0.0.1:PORT
port_free() {
  local p=$1
  if command -v ss >/dev/null 2>&1; then
    ! ss -Htln "sport = :$p" | grep -q .
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
  fi
}
# check_port PORT -> dies when PORT is not a number or is taken
check_port() {
  [[ $1 =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )) || die "port must be a number in 1..65535: $1"
  port_free "$1" || die "port $1 already in use"
}

# pid_alive PID. A zombie whose threads have all exited counts as dead (PID 1 of some
# VMs / containers reaps orphans late); a zombie thread-group leader whose other threads
# are still exiting does not: they still hold the process's files, e.g. its listening port.
pid_alive() {
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
  local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $st ]] || return 1
  [[ $st != Z ]] && return 0
  local tasks=("/proc/$1/task/"*)
  (( ${#tasks[@]} > 1 ))
}
# wait_pid_gone PID TIMEOUT_S -> 1 on timeout
wait_pid_gone() {
  local pid=$1 t=${2:-60} i=0
  while pid_alive "$pid"; do
    sleep 0.05; i=$((i+1))
    (( i > t*20 )) && return 1
  done
  return 0
}
# running_server DATADIR -> prints the PID of the server running on DATADIR, if any.
# Only a process whose command line names DATADIR counts (a recycled PID does not).
running_server() {
  local d=$1 pid
  [[ -f $d/server.pid ]] || return 1
  pid=$(cat "$d/server.pid")
  pid_alive "$pid" || return 1
  local cmd; cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) "
  [[ $cmd == *" --datadir=$d "* || $cmd == *" --datadir=$d/db "* ]] || return 1
  echo "$pid"
}

# socket_path DATADIR -> a unix socket path for the server. Inside DATADIR unless that is
# too long for sun_path (108 bytes), then under /tmp keyed by a hash of DATADIR.
socket_path() {
  local s=$1/mysqld.sock
  if (( ${#s} > 100 )); then s=/tmp/rowstream-$(printf '%s' "$1" | md5sum | cut -c1-16).sock; fi
  echo "$s"
}

# write_client_cnf DATADIR PORT -> DATADIR/client.cnf: root over TCP, for --defaults-file=
# (keeps the password off command lines and avoids the CLI's password warning).
write_client_cnf() {
  cat >"$1/client.cnf" <<CNF
[client]
host=127.0.0.1
port=$2
user=root
password=$ROOT_PW
default-character-set=utf8mb4
CNF
  chmod 600 "$1/client.cnf"
}

# print_info: the sourceable KEY=VALUE block every start script prints on stdout
# (values shell-quoted). Uses FLAVOR VERSION PORT DATADIR SERVER_ID PID SOCK.
print_info() {
  local kv
  for kv in "FLAVOR=$FLAVOR" "VERSION=$VERSION" "HOST=127.0.0.1" "PORT=$PORT" "DATADIR=$DATADIR" \
            "SERVER_ID=$SERVER_ID" "PID=$PID" "SOCKET=$SOCK" \
            "URL=mysql://root:$ROOT_PW@127.0.0.1:$PORT" "REPL_URL=mysql://repl:$REPL_PW@127.0.0.1:$PORT" \
            "CLIENT_CNF=$DATADIR/client.cnf" "ERROR_LOG=$DATADIR/error.log"; do
    printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

# wait_ready PID DEADLINE_S PING_CMD... -> waits until PING_CMD succeeds; dies (showing the
# error log) when the server exits or the deadline passes.
wait_ready() {
  local pid=$1 deadline=$(( $(date +%s) + $2 )); shift 2
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$pid"; then
      tail -40 "$DATADIR/error.log" >&2 || true
      die "$FLAVOR server exited during startup (see $DATADIR/error.log)"
    fi
    if (( $(date +%s) > deadline )); then
      tail -40 "$DATADIR/error.log" >&2 || true
      kill -KILL "$pid" 2>/dev/null || true
      die "timeout waiting for the $FLAVOR server on port $PORT"
    fi
    sleep 0.05
  done
}

# owner_watchdog PID: when ROWSTREAM_OWNER_PID is set, a background watchdog SIGKILLs PID
# once that owner process is gone. A test binary shares one JVM server between its tests
# and has no hook that runs at its exit, so the server must not outlive it.
owner_watchdog() {
  [[ -n ${ROWSTREAM_OWNER_PID:-} ]] || return 0
  nohup bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
                 kill -0 "$2" 2>/dev/null && kill -KILL "$2"' watchdog "$ROWSTREAM_OWNER_PID" "$1" \
    >/dev/null 2>&1 </dev/null &
}

# stop_recorded DIR PIDFILE MARK WHAT KILL: stops the process whose pid DIR/PIDFILE records,
# only while its command line still contains MARK (a recycled pid is left alone): SIGTERM
# and up to STOP_TIMEOUT (30 s) before SIGKILL, or SIGKILL at once when KILL is non-empty.
# Removes the pid file. Returns 1 when the process would not die.
stop_recorded() {
  local d=$1 pidfile=$1/$2 mark=$3 what=$4 kill=$5 p cmd t
  [[ -f $pidfile ]] || return 0
  p=$(cat "$pidfile")
  cmd=" $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true) "
  if ! pid_alive "$p" || [[ $cmd != *"$mark"* ]]; then
    log "$d: not running"; rm -f "$pidfile"; return 0
  fi
  t=$(now)
  if [[ -n $kill ]]; then kill -KILL "$p" 2>/dev/null || true; else kill -TERM "$p" 2>/dev/null || true; fi
  if ! wait_pid_gone "$p" "${STOP_TIMEOUT:-30}"; then
    log "$d: pid $p did not stop in time, SIGKILL"; kill -KILL "$p" 2>/dev/null || true
    wait_pid_gone "$p" 10 || { log "$d: pid $p still alive"; return 1; }
  fi
  log "$d: stopped $what pid $p ($([[ -n $kill ]] && echo SIGKILL || echo clean)) in $(elapsed "$t")s"
  rm -f "$pidfile"
}

# make_test_certs DIR LOG: a throwaway CA (DIR/ca.pem, DIR/ca.key) and a server key and
# certificate it signed for 127.0.0.1 and localhost (DIR/server.key, DIR/server.crt),
# valid 7 days, made with openssl; its output goes to LOG. For the test servers' TLS.
make_test_certs() {
  local t=$1
  mkdir -p "$t"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=rowstream-test-ca \
      -keyout "$t/ca.key" -out "$t/ca.pem"
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$t/server.key" -out "$t/server.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$t/san.ext"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
      -days 7 -extfile "$t/san.ext" -out "$t/server.crt"
  } >>"$2" 2>&1 || die "openssl failed making the test certificates (see $2)"
}

# compile_java JAVAC SOURCE LIBDIR CACHEDIR: compiles the one-class SOURCE against LIBDIR/*
# into CACHEDIR/classes-<sha of SOURCE>, once (an edit of SOURCE recompiles it; a failed
# compile leaves only a .tmp directory behind); sets CLASSES to that directory.
compile_java() {
  local javac=$1 src=$2 lib=$3 cache=$4 name sha
  name=$(basename "$src" .java)
  sha=$(sha256sum "$src" | cut -c1-12)
  CLASSES=$cache/classes-$sha
  [[ ! -f $CLASSES/$name.class ]] || return 0
  rm -rf "$CLASSES.tmp"; mkdir -p "$CLASSES.tmp"
  "$javac" -nowarn -cp "$lib/*" -d "$CLASSES.tmp" "$src" >&2 || die "javac $name.java failed"
  rm -rf "$CLASSES"; mv "$CLASSES.tmp" "$CLASSES"
}
