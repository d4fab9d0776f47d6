#!/usr/bin/env bash
# Install (Debian package), start and prepare a local PostgreSQL for the test suite; prints the URL the
# tests read from CRITMIN_TEST_POSTGRES_URL. Idempotent. Exits non-zero when PostgreSQL cannot be started.
# Only the URL goes to stdout, which the caller captures: whatever the tools print ("Removed stale pid
# file.", notices) goes to stderr, and no started server inherits the captured pipe (it would hold the
# caller's $(...) open).
set -euo pipefail
exec 3>&1 1>&2
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }

prepare() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    $SUDO apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1 \
      || { $SUDO apt-get update >/dev/null 2>&1 && $SUDO apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1; }
  fi
  VER=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$VER main$"; then
    $SUDO pg_createcluster "$VER" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk '$1=="'"$VER"'" && $2=="main" {print $4}' | grep -q online; then
    $SUDO pg_ctlcluster "$VER" main start
  fi
  PORT=$(pg_lsclusters -h | awk '$1=="'"$VER"'" && $2=="main" {print $3}')
  case "$PORT" in ''|*[!0-9]*) echo "error: no port for PostgreSQL cluster $VER/main" >&2; exit 1 ;; esac
  as_pg "psql -p $PORT -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='critmin'\" | grep -q 1 || psql -p $PORT -qc \"CREATE ROLE critmin LOGIN PASSWORD 'critmin' CREATEDB\"" >/dev/null
  as_pg "psql -p $PORT -qtAc \"SELECT 1 FROM pg_database WHERE datname='critmin_test'\" | grep -q 1 || createdb -p $PORT -O critmin critmin_test" >/dev/null
}

prepare 3>&-
echo "postgresql+psycopg://critmin:critmin@127.0.0.1:$PORT/critmin_test" >&3
