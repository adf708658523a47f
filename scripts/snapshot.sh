#!/usr/bin/env bash
# Snapshot prod's schema(s) at capture start, so that test can start from the same state as prod
# (issue 11: a read-write replay only ends where prod ended if it starts where prod started).
#
#   scripts/snapshot.sh dump      consistent dump of prod (--single-transaction) to $OUT, and its
#                                 position in prod's write history, printed and written to $OUT.pos
#   scripts/snapshot.sh restore   load $OUT into test (the databases are dropped first)
#   scripts/snapshot.sh pos       prod's current position (same format)
#
# Start `mrte run` (or `mrte record`) right after `dump`, and give the printed position to mrte
# with --snapshot-pos POS (and --prod DSN): the report then says whether prod's position when
# the capture started equals the snapshot's, i.e. whether prod wrote anything the capture missed.
#
# Position formats: with a binary log, `binlog:FILE:POS` (the dump's --master-data coordinates,
# exact); without one, `writes:N`, N the sum of prod's global write-statement counters (Com_insert,
# Com_update, ...; read before and after the dump, which warns when they moved: rerun it when
# prod is quieter, or enable the binary log).
#
# Env: PROD / TEST: client arguments for prod / test (default: the lab's sockets as root),
#      DATABASES (sbtest), OUT (./snapshot.sql). Needs mariadb-dump (or mysqldump) and mariadb.
set -euo pipefail
cmd=${1:-dump}
LAB_DIR=${LAB_DIR:-/var/tmp/mrte-lab}
PROD=${PROD:-"-S $LAB_DIR/prod.sock -uroot"}
TEST=${TEST:-"-S $LAB_DIR/test.sock -uroot"}
DATABASES=${DATABASES:-sbtest}
OUT=${OUT:-$PWD/snapshot.sql}
DUMP=$(command -v mariadb-dump || command -v mysqldump)
CLI=$(command -v mariadb || command -v mysql)

# shellcheck disable=SC2086
prod() { "$CLI" --no-defaults $PROD -N -B -e "$1"; }
# The statement counters that move when a client writes (not reads, not internal activity).
WRITES="SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN
  ('COM_INSERT','COM_INSERT_SELECT','COM_UPDATE','COM_UPDATE_MULTI','COM_DELETE','COM_DELETE_MULTI',
   'COM_REPLACE','COM_REPLACE_SELECT','COM_LOAD','COM_CREATE_TABLE','COM_ALTER_TABLE','COM_DROP_TABLE',
   'COM_TRUNCATE','COM_RENAME_TABLE','COM_CREATE_DB','COM_DROP_DB','COM_CREATE_INDEX','COM_DROP_INDEX',
   'COM_XA_COMMIT')"

binlog_on() { [ "$(prod 'SELECT @@log_bin')" = 1 ]; }

pos() {
  if binlog_on; then
    prod 'SHOW MASTER STATUS' | awk '{print "binlog:" $1 ":" $2; exit}'
  else
    echo "writes:$(prod "$WRITES")"
  fi
}

case "$cmd" in
  pos) pos ;;
  dump)
    # shellcheck disable=SC2086
    if binlog_on; then
      "$DUMP" --no-defaults $PROD --single-transaction --master-data=2 --databases $DATABASES >"$OUT"
      p=$(sed -n "s/^-- CHANGE MASTER TO MASTER_LOG_FILE='\([^']*\)', MASTER_LOG_POS=\([0-9]*\).*/binlog:\1:\2/p" "$OUT" | head -1)
    else
      before=$(pos)
      "$DUMP" --no-defaults $PROD --single-transaction --databases $DATABASES >"$OUT"
      p=$(pos)
      if [ "$before" != "$p" ]; then
        echo "snapshot: prod wrote during the dump ($before -> $p): the position is not exact" >&2
      fi
    fi
    echo "$p" >"$OUT.pos"
    echo "snapshot of $DATABASES: $OUT ($(wc -c <"$OUT") bytes), position $p" >&2
    echo "$p"
    ;;
  restore)
    for d in $DATABASES; do
      # shellcheck disable=SC2086
      "$CLI" --no-defaults $TEST -e "DROP DATABASE IF EXISTS \`$d\`"
    done
    # shellcheck disable=SC2086
    "$CLI" --no-defaults $TEST <"$OUT"
    echo "snapshot restored into test: $DATABASES" >&2
    ;;
  *) echo "usage: $0 dump|restore|pos" >&2; exit 2 ;;
esac
