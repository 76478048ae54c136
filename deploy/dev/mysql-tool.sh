#!/usr/bin/env bash
# mysql-tool.sh TOOL [ARGS...] — runs a client tool (mysql, mysqladmin, mysqlbinlog,
# mysqldump, ...) of the extracted Debian sid MySQL 9.7 (setup-mysql.sh) through sid's
# dynamic loader. Debian 12's mariadb-binlog cannot read MySQL 9.7 binlogs; this can.
#   deploy/dev/mysql-tool.sh mysql --defaults-file=DATADIR/client.cnf --get-server-public-key
#   deploy/dev/mysql-tool.sh mysqlbinlog -R -h127.0.0.1 -P3312 -urepl -prepl \
#       --get-server-public-key -v --base64-output=decode-rows mysql-bin.000001
source "$(dirname "$0")/lib.sh"
[[ $# -ge 1 ]] || die "usage: $0 TOOL [ARGS...]"
mysql_tool_cmd "$1"; shift
exec "${TOOL_CMD[@]}" "$@"
