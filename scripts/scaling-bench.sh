#!/usr/bin/env bash
# Measures how the tiers grow, with `udpchat bench fanout` on a release
# build: messages a second through one store on SQLite, one store on
# PostgreSQL and two stores on PostgreSQL (rooms of two, so the store is
# what is measured), then deliveries a second through one edge and through
# two edges sharing the port (REUSE_PORT, one room of 100). docs/scaling.md
# has what it measured.
#
#   scripts/scaling-bench.sh [--quick] [--bin-dir DIR] [--out FILE]
#
# PostgreSQL is a scratch cluster in a temporary directory with fsync on
# (as SQLite's synchronous=FULL), removed at the end. Every program runs
# from a temporary directory with RATE_LIMIT_EXEMPT=127.0.0.1 and
# MESSAGES_PER_USER raised (the runs measure the tiers, not the limit);
# everything started is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
bin_dir=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin_dir" ]; then
  ./scripts/bootstrap.sh --test
  swift build -c release >&2
  bin_dir=.build/release
fi
seconds=10; drain=20
if [ "$quick" = 1 ]; then seconds=3; drain=5; fi

work=$(mktemp -d /tmp/udpchat-scaling-XXXXXX)
# shellcheck source=lib/bench-common.sh
. ./scripts/lib/bench-common.sh
# shellcheck source=lib/scratch-postgres.sh
. ./scripts/lib/scratch-postgres.sh
trap 'stop_all; stop_scratch_postgres; rm -rf "$work"' EXIT
SCRATCH_POSTGRES_FSYNC=on start_scratch_postgres
admin="$UDPCHAT_TEST_POSTGRES"

# Starts keys, STORES stores (on DATABASE: sqlite or postgres) and EDGES
# edges on UDP PORT (several share it with REUSE_PORT).
start_tiers() {
  local database="$1" stores="$2" edges="$3" port="$4"
  stop_all
  rm -rf "$work/data"
  export DATA_DIR="$work/data" KEYS_METRICS_PORT=0 STORE_METRICS_PORT=0 EDGE_METRICS_PORT=0 \
    RATE_LIMIT_EXEMPT=127.0.0.1 MESSAGES_PER_USER=1000000 LOG_LEVEL=warning UDPCHAT_ENV_FILE=/dev/null
  unset DATABASE_URL
  if [ "$database" = postgres ]; then
    local name="scaling_$RANDOM$RANDOM"
    psql -X -q -d "$admin" -c "CREATE DATABASE $name" >/dev/null
    export DATABASE_URL="${admin%/postgres*}/$name?sslmode=disable"
  fi
  "$bin_dir/udpchat-keys" generate >/dev/null
  "$bin_dir/udpchat-keys" >"$work/keys.log" 2>&1 & pids+=($!)
  local store_list="" event_list=""
  for i in $(seq "$stores"); do
    STORE_BIND="ipc://$work/data/run/store$i.sock" EVENTS_BIND="ipc://$work/data/run/events$i.sock" \
      JOBS_BIND="ipc://$work/data/run/jobs$i.sock" STORE_ENDPOINT="ipc://$work/data/run/store$i.sock" \
      "$bin_dir/udpchat-store" >"$work/store$i.log" 2>&1 & pids+=($!)
    wait_for_line "$work/store$i.log" "udpchat-store ready"
    store_list="$store_list${store_list:+,}ipc://$work/data/run/store$i.sock"
    event_list="$event_list${event_list:+,}ipc://$work/data/run/events$i.sock"
  done
  wait_for_line "$work/keys.log" "udpchat-keys ready"
  for i in $(seq "$edges"); do
    local id=""; [ "$edges" -gt 1 ] && id="edge$i"
    SERVER_PORT="$port" REUSE_PORT=$([ "$edges" -gt 1 ] && echo true || echo false) EDGE_ID="$id" \
      STORE_ENDPOINT="$store_list" EVENTS_ENDPOINT="$event_list" \
      "$bin_dir/udpchat-edge" >"$work/edge$i.log" 2>&1 & pids+=($!)
    wait_for_line "$work/edge$i.log" "udpchat-edge ready"
  done
}

fanout() { "$bin_dir/udpchat" bench fanout --duration "$seconds" --drain "$drain" --warmup 1 "$@"; }

# Rates around each setup's limit, then closed loop (each client sends its
# next message when the last is confirmed: what the tier can do at most).
# At a fixed rate a client sends every 100/RATE seconds whether or not the
# last was answered, and the bench counts an answer that comes after the
# next send as unanswered: past the tier's limit, read the fan-out times.
for setup in "sqlite 1 1000 2000 3000 closed" "postgres 1 100 200 300 closed" "postgres 2 100 200 300 closed"; do
  set -- $setup
  database=$1 stores=$2; shift 2
  say "stores: $stores on $database; one edge; 100 clients in 50 rooms of two"
  start_tiers "$database" "$stores" 1 19981
  for rate in "$@"; do
    pace=(--rate "$rate"); label="stores-$database-$stores"
    if [ "$rate" = closed ]; then pace=(); label="$label-closed"; fi
    record fanout --server 127.0.0.1:19981 --clients 100 --rooms 50 "${pace[@]}" --label "$label"
  done
done

for edges in 1 2; do
  say "edges: $edges on one port (REUSE_PORT); one store on SQLite; 100 clients in one room"
  start_tiers sqlite 1 "$edges" 19982
  for rate in 300 400; do
    record fanout --server 127.0.0.1:19982 --clients 100 --rooms 1 --rate "$rate" --label "edges-$edges"
  done
done
stop_all
