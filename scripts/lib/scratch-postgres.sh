# Sourced by the scripts that need a PostgreSQL server for a while:
# `start_scratch_postgres` makes a cluster in a temporary directory, run by
# an unprivileged user (postgres when run as root) on a free loopback port,
# exports its URL as UDPCHAT_TEST_POSTGRES, and `stop_scratch_postgres`
# stops and removes it. Needs Debian's postgresql package.

scratch_postgres_dir=""

scratch_postgres_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_scratch_postgres() {
  scratch_postgres_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  scratch_postgres_dir=$(mktemp -d /tmp/udpchat-pg-XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres "$scratch_postgres_dir"
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  scratch_postgres_as_owner "$scratch_postgres_bin/initdb" -D "$scratch_postgres_dir/data" -A trust -U udpchat_test \
    >"$scratch_postgres_dir/initdb.log" 2>&1 || { cat "$scratch_postgres_dir/initdb.log" >&2; return 1; }
  # The role udpchat_password signs in with a password (SCRAM), as in
  # production; every other role is trusted.
  local hba="$scratch_postgres_dir/data/pg_hba.conf"
  { echo "host all udpchat_password 127.0.0.1/32 scram-sha-256"; cat "$hba"; } >"$hba.new" && mv "$hba.new" "$hba"
  [ "$(id -u)" = 0 ] && chown postgres "$hba"
  scratch_postgres_as_owner "$scratch_postgres_bin/pg_ctl" -D "$scratch_postgres_dir/data" -l "$scratch_postgres_dir/server.log" -w -t 60 \
    -o "-k $scratch_postgres_dir -p $port -c listen_addresses=127.0.0.1 -c fsync=${SCRATCH_POSTGRES_FSYNC:-off} -c max_connections=200" \
    start >/dev/null || { cat "$scratch_postgres_dir/server.log" >&2; return 1; }
  export UDPCHAT_TEST_POSTGRES="postgres://udpchat_test@127.0.0.1:$port/postgres?sslmode=disable"
}

stop_scratch_postgres() {
  [ -n "$scratch_postgres_dir" ] || return 0
  scratch_postgres_as_owner "$scratch_postgres_bin/pg_ctl" -D "$scratch_postgres_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$scratch_postgres_dir"
  scratch_postgres_dir=""
}
